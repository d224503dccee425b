import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassServer
import KeyglassTestSupport
import XCTest

/// Thousands of malformed and boundary requests at every endpoint: each gets an answer below 500
/// (never a 5xx, never a crash), and the tree is unchanged. Seeded, so a failure reproduces.
final class HostileInputTests: XCTestCase {
    static let nasty = ["", "-1", "0", "1", "01", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
                        "1e3", "0x10", " 1", "1 ", "%00", "%ff%fe", "../../etc/passwd", "..%2f..%2f", "\u{202E}", "é", "NaN",
                        String(repeating: "9", count: 400), "x001/x002", "000.p/0", "000.p/256", "%", "%%", "a%2", "AA==", "====",
                        "\u{0}", "\u{7f}", "tile", "entries"]

    func testRandomMalformedRequestsNeverGet5xxAndChangeNothing() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<5 { try await log.publish(server, identity: "h\(i)") }
            let before = try await server.client.checkpoint()
            var rng = SplitMix64(state: 20261123)
            let count = Int(ProcessInfo.processInfo.environment["KEYGLASS_FUZZ_REQUESTS"] ?? "") ?? 2500
            var statuses: [Int: Int] = [:]
            for _ in 0..<count {
                let (method, path, body, headers) = randomRequest(&rng, token: log.token)
                let (status, _) = try await server.client.raw(method, path, body: body, headers: headers)
                statuses[status, default: 0] += 1
                XCTAssertLessThan(status, 500, "\(method) \(path) \(body.map { String(decoding: $0.prefix(80), as: UTF8.self) } ?? "")")
            }
            XCTAssertGreaterThan(statuses.filter { (400..<500).contains($0.key) }.values.reduce(0, +), count / 2, "\(statuses)")
            let after = try await server.client.checkpoint()
            XCTAssertEqual(after, before, "no hostile request changed the tree")
            print("hostile input: \(count) requests, statuses \(statuses.sorted { $0.key < $1.key })")
        }
    }

    /// Publishes whose body is declared larger than the limit get 413 at once, before any of it is
    /// read, and the connection closes (the rest is never read); bodies that end before their
    /// Content-Length (the client half-closes) get a 400 or a closed connection. Never a 500 (the
    /// router used to report the cut-short stream as an internal error, depending on timing), on
    /// either path (operator token: fast path; none: router). Seeded, one connection per try.
    func testOversizedAndTruncatedBodiesGet413Or400NeverA500() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let port = try XCTUnwrap(server.client.base.port)
            let valid = Array(#"{"identity":"t@example.com","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}"#.utf8)
            let limit = ServerOptions().maxBodyBytes
            var rng = SplitMix64(state: 20260417)
            var outcomes: [String: Int] = [:]
            for _ in 0..<240 {
                // A broken server would make every try wait out its timeout: stop at the first failure.
                if (testRun?.failureCount ?? 0) > 0 { break }
                let oversized = Bool.random(using: &rng)
                let token = Bool.random(using: &rng)
                let sent = Int.random(in: 0..<valid.count, using: &rng)
                let declared = oversized
                    ? pick([limit + 1, 20_000, 1 << 20, 1_000_000_000_000, Int.max], &rng)
                    : Int.random(in: (sent + 1)...limit, using: &rng)
                // An oversized declaration is answered without waiting for the body; a truncated one
                // once the client half-closes.
                let halfClose = !oversized || Bool.random(using: &rng)
                let conn = try FastPathTests.RawConnection(port: port, timeoutSeconds: 5)
                conn.send("POST /v1/keys HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    + (token ? "Authorization: Bearer \(log.token)\r\n" : "")
                    + "Content-Length: \(declared)\r\n\r\n" + String(decoding: valid.prefix(sent), as: UTF8.self))
                if halfClose {
                    if Bool.random(using: &rng) { usleep(UInt32.random(in: 0..<3000, using: &rng)) }
                    conn.shutdownWrite()
                }
                let answer = conn.response()
                let what = "Content-Length \(declared), \(sent) bytes sent, token \(token), half-closed \(halfClose)"
                outcomes["\(oversized ? "oversized" : "truncated") \(answer.map { String($0.status) } ?? "closed")", default: 0] += 1
                if oversized {
                    XCTAssertEqual(answer?.status, 413, "\(what): \(answer?.body ?? "no answer")")
                    XCTAssertNil(conn.response(), "\(what): the connection closes after the 413")
                } else if let answer {
                    XCTAssertEqual(answer.status, 400, "\(what): \(answer.body)")
                    XCTAssertEqual(answer.headers["connection"], "close", "\(what): the rest of the stream cannot be parsed")
                }
                if let answer {
                    let json = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
                    XCTAssertNotNil(json?["error"] as? String, "\(what): a JSON error: \(answer.body)")
                }
            }
            print("oversized and truncated bodies: \(outcomes.sorted { $0.key < $1.key })")
            let size = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint.size
            XCTAssertEqual(size, 0)
        }
    }

    /// A client that half-closes right after a publish the fast path holds for its commit, with or
    /// without a request cut short behind it: the publish is answered first, then the broken
    /// request (400, or the connection closes). The end of input and the stream's error used to
    /// overtake the publish: the client got a bare 400, or nothing, where its answer belonged.
    func testBrokenRequestBehindAFastPublishWaitsForThePublishAnswer() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let port = try XCTUnwrap(server.client.base.port)
            for k in 0..<20 {
                let body = #"{"identity":"pipelined\#(k)@example.com","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#
                let conn = try FastPathTests.RawConnection(port: port, timeoutSeconds: 5)
                let broken = "POST /v1/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(log.token)\r\nContent-Type: application/json\r\n"
                    + "Content-Length: 500\r\n\r\n{\"identity\":"
                conn.send("POST /v1/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(log.token)\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" + (k % 2 == 0 ? "" : broken))
                conn.shutdownWrite()
                let first = conn.response()
                XCTAssertEqual(first?.status, 200, first?.body ?? "no answer")
                XCTAssertTrue(first?.body.contains("\"index\":\(k),") == true, first?.body ?? "no answer")
                if let second = conn.response() {
                    XCTAssertEqual(second.status, 400, second.body)
                    XCTAssertTrue(second.body.contains("\"error\":\"bad_request\""), second.body)
                }
            }
        }
    }

    func pick<T>(_ a: [T], _ rng: inout SplitMix64) -> T { a[Int.random(in: 0..<a.count, using: &rng)] }

    func randomString(_ rng: inout SplitMix64) -> String {
        let n = Int.random(in: 0..<3, using: &rng)
        if n == 0 { return pick(Self.nasty, &rng) }
        let len = Int.random(in: 0..<40, using: &rng)
        let alphabet = Array("abcXYZ019/._-%+=@ \u{e9}\u{202e}\u{200b}\u{0301}")
        return String((0..<len).map { _ in pick(alphabet, &rng) })
    }

    func randomRequest(_ rng: inout SplitMix64, token: String) -> (String, String, Data?, [String: String]) {
        func q(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "" }
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: return ("GET", "/v1/proof/inclusion?index=\(q(randomString(&rng)))&tree_size=\(q(randomString(&rng)))", nil, [:])
        case 1: return ("GET", "/v1/proof/consistency?from=\(q(randomString(&rng)))&to=\(q(randomString(&rng)))", nil, [:])
        case 2: return ("GET", "/v1/entries?start=\(q(randomString(&rng)))&end=\(q(randomString(&rng)))", nil, [:])
        case 3: return ("GET", "/tile/\(randomString(&rng).addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "")/\(randomString(&rng).addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "")", nil, [:])
        case 4: return ("GET", "/v1/keys/\(q(randomString(&rng)))", nil, [:])
        case 5:
            // Structurally plausible JSON with hostile values, with or without the token.
            var fields: [String: Any] = [:]
            for k in ["identity", "key_type", "public_key", "signature", "previous_index", "revocation", "extra"] where Bool.random(using: &rng) {
                fields[k] = Bool.random(using: &rng) ? randomString(&rng) : (Bool.random(using: &rng) ? Int.random(in: -5...5, using: &rng) : [1, 2])
            }
            let body = (try? JSONSerialization.data(withJSONObject: fields)) ?? Data()
            var h = ["Content-Type": pick(["application/json", "text/plain", "application/json; charset=utf-8", ""], &rng)]
            if Bool.random(using: &rng) { h["Authorization"] = pick(["Bearer \(token)", "Bearer x", "Basic \(token)", "Bearer"], &rng) }
            return ("POST", "/v1/keys", body, h)
        case 6:
            // Raw garbage bodies: truncated JSON, invalid UTF-8, huge.
            let valid = Array(#"{"identity":"a","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}"#.utf8)
            // Always cut short: a whole valid body would be a legitimate publish.
            var b = Array(valid.prefix(Int.random(in: 0..<valid.count, using: &rng)))
            if Bool.random(using: &rng) { b += [0xff, 0xfe, 0xc3] }
            if Int.random(in: 0..<10, using: &rng) == 0 { b += [UInt8](repeating: 0x41, count: 20_000) }
            return ("POST", "/v1/keys", Data(b), ["Content-Type": "application/json", "Authorization": "Bearer \(token)"])
        default:
            return (pick(["PUT", "DELETE", "PATCH", "GET"], &rng), pick(["/v1/keys", "/checkpoint", "/v1/log", "/healthz", "/../checkpoint", "/v1/keys/", "/tile/", "/tile"], &rng), nil, [:])
        }
    }
}
