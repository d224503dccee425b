import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// A real nginx (Debian's, installed by `make test`) in front of a real server, with the locations of
/// `Deploy/nginx/keyglass-locations.conf` (plain HTTP on loopback here; the deployed file adds TLS):
/// publishes, lookups and an audit go through it; full tiles are served from its cache and the
/// checkpoint never is; oversized bodies and floods of publishes stop at nginx.
final class ProxyTests: XCTestCase {
    private var locations: String { Nginx.deployFile("nginx/keyglass-locations.conf") }

    /// Starts nginx in `dir` proxying to `backend` with the deployed locations; returns it and its URL.
    private func startNginx(dir: String, backend: URL) async throws -> (Process, URL) {
        try await Nginx.start(dir: dir, http: """
            upstream keyglass { server \(backend.host!):\(backend.port!); keepalive 8; }
            proxy_cache_path \(dir)/cache levels=1:2 keys_zone=keyglass_tiles:1m max_size=64m inactive=1d use_temp_path=off;
            limit_req_zone $binary_remote_addr zone=keyglass_reads:1m rate=1000r/s;
            limit_req_zone $binary_remote_addr zone=keyglass_publishes:1m rate=5r/s;
            """, server: "include \(locations);", readyPath: "/healthz")
    }

    func testPublishLookupAndAuditThroughNginx() async throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx"), "make test installs nginx (nginx-light)")
        let log = try await TestLog()
        defer { log.remove() }
        let dir = TestLog.temporaryDirectory("nginx")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await log.withServer { server in
            let (nginx, url) = try await startNginx(dir: dir, backend: server.client.base)
            defer { nginx.terminate(); nginx.waitUntilExit() }
            let front = LogClient(base: url, timeout: 5)
            // A publish through nginx, by the operator.
            let key = Ed25519.generate().publicKey
            let receipt = try await front.publish(PublishBody(identity: "alice@example.com", key_type: "ed25519", public_key: Base64.encode(key)), token: log.token)
            XCTAssertEqual(receipt.index, 0)
            // Enough entries behind it for a full tile and a full entry bundle.
            for i in 1..<260 { try await log.publish(server, identity: "u\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            // Full tiles come from nginx's cache the second time; the checkpoint never does.
            for path in ["/tile/0/000", "/tile/entries/000"] {
                var r = try await front.rawResponse("GET", path)
                XCTAssertEqual(r.0, 200, path)
                r = try await front.rawResponse("GET", path)
                XCTAssertEqual(r.1["x-cache-status"], "HIT", path)
            }
            for _ in 0..<2 {
                let r = try await front.rawResponse("GET", "/checkpoint")
                XCTAssertEqual(r.0, 200)
                XCTAssertTrue(r.1["cache-control"]?.contains("no-store") ?? false, "\(r.1)")
                XCTAssertNil(r.1["x-cache-status"])
            }
            // A lookup and a full audit, by the real CLI, through nginx.
            var r = try Binaries.run("keyglass", ["lookup", "--log", url.absoluteString, "--vkey", log.verifierKey.description, "alice@example.com"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains(Base64.encode(key)), r.stdout)
            r = try Binaries.run("keyglass", ["audit", "--log", url.absoluteString, "--vkey", log.verifierKey.description, "--state", dir + "/audit"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            // A body over 16 KiB stops at nginx; so does a flood of publishes from one client.
            let big = try await front.raw("POST", "/v1/keys", body: Data(repeating: 0x20, count: 64 * 1024), headers: ["Content-Type": "application/json"])
            XCTAssertEqual(big.0, 413)
            var fromNginx = 0
            for _ in 0..<60 {
                let (status, headers, _) = try await front.rawResponse("POST", "/v1/keys", body: Data("{}".utf8), headers: ["Content-Type": "application/json"])
                // nginx answers its own refusals with an HTML page; the server's are JSON.
                if status == 429, headers["content-type"]?.hasPrefix("text/html") ?? false { fromNginx += 1 }
            }
            XCTAssertGreaterThan(fromNginx, 0, "nginx's per-client publish limit (5/s, burst 20) refused some of 60 at once")
        }
    }

    /// The deployed `Deploy/nginx/nginx.conf` (TLS, HTTP/2, the redirect, the cache and limits) passes
    /// `nginx -t`, with a throwaway certificate and this checkout's paths in place of the real ones.
    func testDeployedConfigurationPassesNginxCheck() throws {
        let dir = TestLog.temporaryDirectory("nginx-t")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func run(_ tool: String, _ args: [String]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (p.terminationStatus, text)
        }
        let cert = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                               "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "1", "-subj", "/CN=keys.example.com"])
        XCTAssertEqual(cert.0, 0, cert.1)
        let deployed = URL(fileURLWithPath: locations).deletingLastPathComponent().appendingPathComponent("nginx.conf").path
        var conf = try String(contentsOfFile: deployed, encoding: .utf8)
        for (from, to) in [("/etc/letsencrypt/live/keys.example.com/fullchain.pem", dir + "/cert.pem"),
                           ("/etc/letsencrypt/live/keys.example.com/privkey.pem", dir + "/key.pem"),
                           ("/etc/nginx/keyglass-locations.conf", locations), ("/var/log/nginx/", dir + "/"),
                           ("/var/cache/nginx/keyglass", dir + "/cache"), ("/run/nginx.pid", dir + "/nginx.pid")] {
            XCTAssertTrue(conf.contains(from), from)
            conf = conf.replacingOccurrences(of: from, with: to)
        }
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let check = try run("/usr/sbin/nginx", ["-t", "-p", dir, "-c", dir + "/nginx.conf"])
        XCTAssertEqual(check.0, 0, check.1)
        XCTAssertTrue(check.1.contains("syntax is ok"), check.1)
    }
}
