import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassTestSupport
import XCTest

/// `keyglass-server export` and `serve --export-tiles`: the log as static files in the
/// c2sp.org/tlog-tiles layout, served by a real nginx with Deploy/nginx/keyglass-static.conf, and
/// audited through it from empty by `keyglass audit`.
final class StaticTilesTests: XCTestCase {
    /// nginx serving `root` with the deployed static locations; returns it and its URL.
    private func startNginx(dir: String, root: String) async throws -> (Process, URL) {
        try await Nginx.start(dir: dir, server: "root \(root);\ninclude \(Nginx.deployFile("nginx/keyglass-static.conf"));",
                              readyPath: "/checkpoint", readyStatuses: [200, 404])
    }

    func testExportedTilesServedByNginxAreAuditedFromEmpty() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let out = TestLog.temporaryDirectory("tiles")
        let work = TestLog.temporaryDirectory("static")
        defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: work) }
        try await log.withServer { server in
            for i in 0..<600 { try await log.publish(server, identity: "static\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            // While the server runs: the tree of its newest checkpoint, checkpoint last.
            var r = try Binaries.run("keyglass-server", ["export", "--data", log.directory.path, "--to", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("tree of 600 entries"), r.stdout)
            // Full tiles are the bytes the server serves at the same paths.
            for path in ["tile/entries/000", "tile/0/000", "tile/entries/002.p/88", "tile/0/002.p/88", "tile/1/000.p/2"] {
                let served = try await server.client.get("/" + path)
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/" + path)), served, path)
            }
            // Again after more entries: only the new partial tiles and the checkpoint are written.
            for i in 0..<10 { try await log.publish(server, identity: "later\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            r = try Binaries.run("keyglass-server", ["export", "--data", log.directory.path, "--to", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("tree of 610 entries") && r.stdout.contains("(4 files written)"), r.stdout)
            // The older partial tiles are gone; the newer ones are there.
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/tile/entries/002.p/88"))
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/tile/entries/002.p/98"))
        }
        let (nginx, url) = try await startNginx(dir: work + "/nginx", root: out)
        defer { nginx.terminate(); nginx.waitUntilExit() }
        let client = LogClient(base: url, timeout: 5)
        let (_, headers, _) = try await client.rawResponse("GET", "/tile/entries/000")
        XCTAssertEqual(headers["cache-control"], "public, max-age=31536000, immutable")
        let checkpointCache = try await client.rawResponse("GET", "/checkpoint").1["cache-control"]
        XCTAssertEqual(checkpointCache, "no-store")
        let other = try await client.raw("GET", "/v1/keys/x").0
        XCTAssertEqual(other, 404, "only tiles and the checkpoint are static")
        // A tile not written yet is a 404 no cache may keep for a year; an export's temporary file is never served.
        let (missing, missingHeaders, _) = try await client.rawResponse("GET", "/tile/0/999")
        XCTAssertEqual(missing, 404)
        XCTAssertNil(missingHeaders["cache-control"])
        try Data("half".utf8).write(to: URL(fileURLWithPath: out + "/tile/0/000.tmp-1"))
        let temporary = try await client.raw("GET", "/tile/0/000.tmp-1").0
        XCTAssertEqual(temporary, 404)
        let audit = try Binaries.run("keyglass", ["audit", "--log", url.absoluteString, "--vkey", log.verifierKey.description,
                                                   "--state", work + "/audit", "--json"])
        XCTAssertEqual(audit.status, 0, audit.stdout + audit.stderr)
        XCTAssertTrue(audit.stdout.contains("\"entries_checked\" : 610") && audit.stdout.contains("\"size\" : 610"), audit.stdout)

        // Later: an owner-signed rotation of an identity published before the first audit, exported
        // again. The resumed audit proves consistency with the tree it audited, and the rotated
        // entry's inclusion, from the hash tiles alone (--static): the mirror answers no proof.
        try await log.withServer { server in
            let owner = Ed25519.generate()
            let first = try await log.publish(server, identity: "owner@example.com", key: owner.publicKey)
            for i in 0..<300 { try await log.publish(server, identity: "more\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            _ = try Binaries.run("keyglass-server", ["export", "--data", log.directory.path, "--to", out])
            let mid = try Binaries.run("keyglass", ["audit", "--static", "--log", url.absoluteString, "--vkey", log.verifierKey.description,
                                                    "--state", work + "/audit", "--json"])
            XCTAssertEqual(mid.status, 0, mid.stdout + mid.stderr)
            _ = try await Publisher(client: server.client, logKey: log.verifierKey)
                .publish(identity: "owner@example.com", keyType: .ed25519, publicKey: Ed25519.generate().publicKey, token: nil, signingSeed: owner.seed)
            XCTAssertGreaterThan(first.index, 600)
            _ = try Binaries.run("keyglass-server", ["export", "--data", log.directory.path, "--to", out])
        }
        let resumed = try Binaries.run("keyglass", ["audit", "--static", "--check-unwatched-rotations", "--log", url.absoluteString,
                                                    "--vkey", log.verifierKey.description, "--state", work + "/audit", "--json"])
        XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("\"size\" : 912"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("refuses"), "the rotation's previous entry was proved and its signature checked: \(resumed.stdout)")
        // Without --static the resumed audit asks the mirror for a proof it cannot give.
        let asked = try Binaries.run("keyglass", ["audit", "--log", url.absoluteString, "--vkey", log.verifierKey.description,
                                                  "--state", work + "/audit", "--json"])
        XCTAssertEqual(asked.status, 0, "nothing new since the last run: \(asked.stdout)")
    }

    /// `serve --export-tiles`: the export follows the log while it is served, its checkpoint with
    /// the witness's cosignature (clients that require one can use the mirror).
    func testServeKeepsTheExportCurrent() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let out = TestLog.temporaryDirectory("served-tiles")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let witness = try await RunningWitness.start(name: "w1.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("tw"))
        let (server, _, client) = try await Binaries.startServer(
            data: log.directory.path, ["--export-tiles", out, "--witness", "\(witness.url.absoluteString)=\(witness.witness.verifierKey)"],
            log: TestLog.temporaryDirectory("export-server") + ".log")
        defer { server.terminate(); server.waitUntilExit() }
        let token = log.token
        for i in 0..<5 {
            let body = #"{"identity":"e\#(i)@example.com","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#
            let (status, _) = try await client.raw("POST", "/v1/keys", body: Data(body.utf8), headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"])
            XCTAssertEqual(status, 200)
        }
        var exported = ""
        for _ in 0..<100 {
            exported = (try? String(contentsOfFile: out + "/checkpoint", encoding: .utf8)) ?? ""
            if exported.hasPrefix("\(log.verifierKey.name)\n5\n"), exported.contains("— w1.example/witness ") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(exported.hasPrefix("\(log.verifierKey.name)\n5\n"), exported)
        XCTAssertTrue(exported.contains("— w1.example/witness "), "the exported checkpoint carries the cosignature: \(exported)")
        let served = try await client.get("/tile/entries/000.p/5")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/tile/entries/000.p/5")), served)
        await witness.stop()
    }
}
