import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import XCTest

/// Per-client rate limits, and idle connections closed.
final class AbuseLimitTests: XCTestCase {
    /// Rates so low that nothing refills while the test runs (one token per 100 s), so the counts are
    /// exact however slowly a loaded machine sends the requests: the burst, then 429 with Retry-After.
    func testReadAndSelfSignedPublishLimitsButNotTheOperator() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer(configure: { o in
            o.readsPerSecond = 0.01
            o.signedPublishesPerSecond = 0.01
            o.burst = 500  // bursts of 5 (rate × burst)
        }) { server in
            var answers: [(Int, String?)] = []
            for _ in 0..<30 {
                let (status, fields, _) = try await server.client.rawResponse("GET", "/checkpoint")
                answers.append((status, fields["retry-after"]))
            }
            XCTAssertEqual(answers.map(\.0), Array(repeating: 200, count: 5) + Array(repeating: 429, count: 25))
            XCTAssertTrue(answers.dropFirst(5).allSatisfy { $0.1 == "1" }, "every 429 says when to come back: \(answers)")
            let (status, data) = try await server.client.raw("GET", "/v1/log")
            XCTAssertEqual(status, 429)
            XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("rate_limited"))

            // Publishes without the operator token (self-signed) are limited too...
            let body = Data(#"{"identity":"x","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=","previous_index":0,"signature":"\#(Base64.encode([UInt8](repeating: 1, count: 64)))"}"#.utf8)
            var signed: [(Int, String?)] = []
            for _ in 0..<10 {
                let (status, fields, _) = try await server.client.rawResponse("POST", "/v1/keys", body: body, headers: ["Content-Type": "application/json"])
                signed.append((status, fields["retry-after"]))
            }
            XCTAssertEqual(signed.filter { $0.0 == 429 }.count, 5, "\(signed)")
            XCTAssertTrue(signed.filter { $0.0 == 429 }.allSatisfy { $0.1 == "1" }, "\(signed)")
            // ...the operator's back end is not.
            for i in 0..<20 { try await log.publish(server, identity: "op\(i)") }
        }
    }

    /// A self-signed rotation of `identity` to `key`, signed by `seed`'s key, chained to `previous`.
    static func signedPublishBody(_ identity: String, key: [UInt8], previous: UInt64, seed: [UInt8]) -> String {
        let msg = KeyEntry.rotationMessage(identity: identity, keyType: .ed25519, publicKey: key, revocation: false, previousIndex: previous)
        return #"{"identity":"\#(identity)","key_type":"ed25519","public_key":"\#(Base64.encode(key))","previous_index":\#(previous),"signature":"\#(Base64.encode(Ed25519.sign(message: msg, seed: seed)))"}"#
    }

    /// `/v1/keys/`, `//v1/keys`, `/v1//keys`… used to publish past the signed-publish limit, which
    /// matched only the exact path. Now every spelling but the canonical one is a 404 before any
    /// route or limit sees it, so the limit's path and the route's are the same.
    func testNonCanonicalPathsCannotBypassTheSignedPublishLimit() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        // One self-signed publish per client, then one every 10 s.
        try await log.withServer(configure: { o in
            o.signedPublishesPerSecond = 0.1
            o.burst = 10
        }) { server in
            let first = Ed25519.generate()
            let a0 = try await log.publish(server, identity: "dana", key: first.publicKey)
            let conn = try FastPathTests.RawConnection(port: try XCTUnwrap(server.client.base.port))
            func post(_ path: String, _ body: String, token: Bool = false) -> (status: Int, headers: [String: String], body: String)? {
                conn.send("POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    + (token ? "Authorization: Bearer \(log.token)\r\n" : "") + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
                return conn.response()
            }
            for path in ["/v1/keys/", "//v1/keys", "/v1//keys", "/v1/./keys", "/v1/x/../keys", "/v1%2Fkeys", "/v1/keys//", "///v1/keys"] {
                let rotation = Self.signedPublishBody("dana", key: Ed25519.generate().publicKey, previous: a0.index, seed: first.seed)
                let answer = post(path, rotation)
                XCTAssertEqual(answer?.status, 404, "\(path): \(answer?.body ?? "no answer")")
                XCTAssertTrue(answer?.body.contains("\"error\":\"not_found\"") == true, answer?.body ?? "")
                // The operator's token does not make them canonical either (the fast path refuses too).
                let op = post(path, #"{"identity":"op","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#, token: true)
                XCTAssertEqual(op?.status, 404, "\(path) with the token: \(op?.body ?? "no answer")")
            }
            let size = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint.size
            XCTAssertEqual(size, 1, "no spelling but the canonical one published")
            // The canonical path: the one allowed publish, then the limit.
            let second = Ed25519.generate()
            XCTAssertEqual(post("/v1/keys", Self.signedPublishBody("dana", key: second.publicKey, previous: a0.index, seed: first.seed))?.status, 200)
            let limited = post("/v1/keys", Self.signedPublishBody("dana", key: Ed25519.generate().publicKey, previous: 1, seed: second.seed))
            XCTAssertEqual(limited?.status, 429, limited?.body ?? "no answer")
        }
    }

    /// The signed-publish limit counts every publish that lacks a valid operator token: a wrong
    /// token (which the old rule exempted as "has an Authorization header") and a signature that
    /// fails (an Ed25519 check each) use up the client's allowance like a good signature does.
    func testEveryPublishWithoutAValidTokenCountsAgainstTheSignedLimit() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        // Two self-signed publishes per client, then one every 10 s.
        try await log.withServer(configure: { o in
            o.signedPublishesPerSecond = 0.1
            o.burst = 20
        }) { server in
            let first = Ed25519.generate()
            let a0 = try await log.publish(server, identity: "erin", key: first.publicKey)
            let json = ["Content-Type": "application/json"]
            let wrongToken = try await server.client.raw("POST", "/v1/keys", body: Data(#"{"identity":"erin","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#.utf8),
                                                        headers: json.merging(["Authorization": "Bearer not-the-token"]) { $1 })
            XCTAssertEqual(wrongToken.0, 403)
            let badSignature = Self.signedPublishBody("erin", key: Ed25519.generate().publicKey, previous: a0.index, seed: Ed25519.generate().seed)
            let badStatus = try await server.client.raw("POST", "/v1/keys", body: Data(badSignature.utf8), headers: json).0
            XCTAssertEqual(badStatus, 403)
            let good = Self.signedPublishBody("erin", key: Ed25519.generate().publicKey, previous: a0.index, seed: first.seed)
            let (status, data) = try await server.client.raw("POST", "/v1/keys", body: Data(good.utf8), headers: json)
            XCTAssertEqual(status, 429, String(decoding: data, as: UTF8.self))
            // The operator's back end is never limited here.
            try await log.publish(server, identity: "erin")
        }
    }

    func testIdleConnectionsAreClosed() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer(configure: { $0.idleTimeout = .seconds(1) }) { server in
            let port = try XCTUnwrap(server.client.base.port)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            XCTAssertEqual(rc, 0)
            // Send half a request line and then nothing: the server must hang up by itself.
            _ = "GET /checkpoint HTTP/1.1\r\nHost: x\r\n".withCString { send(fd, $0, strlen($0), 0) }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let start = Date()
            var buf = [UInt8](repeating: 0, count: 256)
            let n = recv(fd, &buf, buf.count, 0)
            XCTAssertLessThanOrEqual(n, 0, "connection closed without an answer")
            XCTAssertLessThan(Date().timeIntervalSince(start), 4.5, "closed by the idle timeout, not the test's")
        }
    }
}
