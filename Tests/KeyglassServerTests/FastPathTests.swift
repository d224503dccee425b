import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassServer
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The event-loop fast path (`FastPathHandler`) must be invisible: the same bytes as the router,
/// responses in request order when requests are pipelined, `Connection: close` honoured.
final class FastPathTests: XCTestCase {
    /// A plain TCP connection to the server, speaking HTTP/1.1 by hand.
    final class RawConnection {
        let fd: Int32
        private var buffer: [UInt8] = []

        init(port: Int, timeoutSeconds: Int = 10) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0 else { throw ClientError.network("connect failed") }
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        func send(_ text: String) {
            let bytes = Array(text.utf8)
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return }
                sent += n
            }
        }

        /// Half-closes: the server sees the end of the request stream, and may still answer.
        func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

        /// Reads one response: (status, headers lower-cased, body). nil when the server closed; a
        /// receive timeout fails the test (and returns nil).
        func response() -> (status: Int, headers: [String: String], body: String)? {
            while true {
                if let end = headerEnd() {
                    let head = String(decoding: buffer[..<end], as: UTF8.self)
                    var lines = head.components(separatedBy: "\r\n")
                    let status = Int(lines.removeFirst().split(separator: " ")[1]) ?? 0
                    var headers: [String: String] = [:]
                    for l in lines where !l.isEmpty {
                        let parts = l.split(separator: ":", maxSplits: 1)
                        headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
                    }
                    let length = Int(headers["content-length"] ?? "0") ?? 0
                    if buffer.count >= end + 4 + length {
                        let body = String(decoding: buffer[(end + 4)..<(end + 4 + length)], as: UTF8.self)
                        buffer.removeFirst(end + 4 + length)
                        return (status, headers, body)
                    }
                }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = recv(fd, &chunk, chunk.count, 0)
                if n == 0 { return nil }  // the server closed the connection
                guard n > 0 else {
                    // Neither an answer nor a close within the receive timeout: a hang, never a pass.
                    XCTFail("no answer and no close within the receive timeout (errno \(errno))")
                    return nil
                }
                buffer += chunk[0..<n]
            }
        }

        private func headerEnd() -> Int? {
            guard buffer.count >= 4 else { return nil }
            for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
            return nil
        }
    }

    func testPipelinedRequestsAreAnsweredInOrder() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "alice@example.com")
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port))
            let body = #"{"identity":"bob@example.com","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}"#
            // Router, fast publish, fast read, router, fast read: all in one write.
            conn.send("GET /v1/keys/alice@example.com HTTP/1.1\r\nHost: t\r\n\r\n"
                + "POST /v1/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(log.token)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                + "GET /v1/entries?start=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                + "GET /v1/proof/inclusion?index=1&tree_size=2 HTTP/1.1\r\nHost: t\r\n\r\n")
            let answers = (0..<5).compactMap { _ in conn.response() }
            XCTAssertEqual(answers.map(\.status), [200, 200, 200, 200, 200], answers.map(\.body).joined(separator: "\n"))
            guard answers.count == 5 else { return }
            XCTAssertTrue(answers[0].body.contains("\"identity\":\"alice@example.com\""), answers[0].body)
            let published = try JSONDecoder().decode(PublishAnswer.self, from: Data(answers[1].body.utf8))
            XCTAssertEqual(published.index, 1)
            XCTAssertTrue(answers[2].body.contains("\"tree_size\":2"), "the read after the publish sees it: \(answers[2].body)")
            XCTAssertTrue(answers[3].body.contains("\"entries\""), answers[3].body)
            let proof = try JSONDecoder().decode(InclusionAnswer.self, from: Data(answers[4].body.utf8))
            XCTAssertEqual(proof.leaf_hash, published.leaf_hash)
        }
    }

    /// Publishes pipelined behind a publish: reading pauses while each waits for its commit, and
    /// every answer comes back, in order, each publish integrated after the one before it.
    func testPipelinedPublishesAreAnsweredInOrder() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port))
            var requests = ""
            for k in 0..<4 {
                let key = Data((0..<32).map { UInt8(($0 + k * 7) & 0xff) }).base64EncodedString()
                let body = #"{"identity":"user\#(k)@example.com","key_type":"x25519","public_key":"\#(key)"}"#
                requests += "POST /v1/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(log.token)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            conn.send(requests + "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            let answers = (0..<5).compactMap { _ in conn.response() }
            XCTAssertEqual(answers.map(\.status), [200, 200, 200, 200, 200], answers.map(\.body).joined(separator: "\n"))
            guard answers.count == 5 else { return }
            let indices = try answers[0..<4].map { try JSONDecoder().decode(PublishAnswer.self, from: Data($0.body.utf8)).index }
            XCTAssertEqual(indices, [0, 1, 2, 3])
            XCTAssertTrue(answers[4].body.contains("\"tree_size\":4"), answers[4].body)
            // The connection still reads after the pause: one more request on it is answered.
            conn.send("GET /checkpoint HTTP/1.1\r\nHost: t\r\n\r\n")
            let last = conn.response()
            XCTAssertEqual(last?.status, 200)
            XCTAssertTrue(last?.body.contains("\n4\n") == true, last?.body ?? "no answer")
        }
    }

    /// Requests the router answers, pipelined behind a publish the fast path took: they wait in the
    /// fast path while the publish commits, and are answered afterwards without the client sending
    /// anything more (they used to sit in the async channel's buffer until the next read).
    func testRouterRequestPipelinedBehindAFastPublishIsAnswered() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "alice@example.com")
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port), timeoutSeconds: 5)
            func publish(_ identity: String, _ k: Int) -> String {
                let key = Data((0..<32).map { UInt8(($0 + k * 7) & 0xff) }).base64EncodedString()
                let body = #"{"identity":"\#(identity)","key_type":"x25519","public_key":"\#(key)"}"#
                return "POST /v1/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(log.token)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            let start = Date()
            // Fast publish, router, router, fast publish (taken by the router: one is still there),
            // unknown route: all in one write.
            conn.send(publish("bob@example.com", 1)
                + "GET /v1/keys/alice@example.com HTTP/1.1\r\nHost: t\r\n\r\n"
                + "GET /v1/entries?start=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                + publish("carol@example.com", 2)
                + "GET /v2/nothing HTTP/1.1\r\nHost: t\r\n\r\n")
            let answers = (0..<5).compactMap { _ in conn.response() }
            XCTAssertLessThan(Date().timeIntervalSince(start), 4, "answered without more bytes from the client")
            XCTAssertEqual(answers.map(\.status), [200, 200, 200, 200, 404], answers.map(\.body).joined(separator: "\n"))
            guard answers.count == 5 else { return }
            XCTAssertEqual(try JSONDecoder().decode(PublishAnswer.self, from: Data(answers[0].body.utf8)).index, 1)
            XCTAssertTrue(answers[1].body.contains("\"identity\":\"alice@example.com\""), answers[1].body)
            XCTAssertTrue(answers[2].body.contains("bob@example.com"), "the read after the publish sees it: \(answers[2].body)")
            XCTAssertEqual(try JSONDecoder().decode(PublishAnswer.self, from: Data(answers[3].body.utf8)).index, 2)
            // A fast publish then a router request once more, on the same connection.
            conn.send(publish("dave@example.com", 3) + "GET /v1/keys/dave@example.com HTTP/1.1\r\nHost: t\r\n\r\n")
            let more = (0..<2).compactMap { _ in conn.response() }
            XCTAssertEqual(more.map(\.status), [200, 200], more.map(\.body).joined(separator: "\n"))
        }
    }

    /// One spelling per resource: empty or dot segments, a trailing slash and percent-encoding
    /// outside the identity are 404 before routing, with the same bytes on both paths (Hummingbird's
    /// router alone would route `/checkpoint/` or `//v1/keys` as if they were canonical).
    func testNonCanonicalPathsAre404OnBothPaths() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "alice@example.com")
            try await log.publish(server, identity: "a/b")
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port))
            let refused = ["/checkpoint/", "//checkpoint", "/v1//log", "/healthz/", "/v1/proof/./inclusion?index=0&tree_size=1",
                           "/v1/x/../proof/inclusion?index=0&tree_size=1", "/v1/proof/inclusion/?index=0&tree_size=1",
                           "/tile/0/../entries/000.p/1", "/tile/entries//000.p/1", "/tile//entries/000.p/1", "/tile/entries/%30%30%30.p/1",
                           "/v1/keys/alice@example.com/", "/v1//keys/alice@example.com", "/v1/keys//alice@example.com",
                           "/v1%2Fkeys/alice@example.com", "/v1/keys/./alice@example.com", "/v1/entries/?start=0", "/."]
            for path in refused {
                conn.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
                let fast = try XCTUnwrap(conn.response(), path)
                conn.send("GET \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
                let routed = try XCTUnwrap(conn.response(), path)
                XCTAssertEqual(fast.status, 404, "\(path): \(fast.body)")
                XCTAssertEqual(routed.status, 404, "\(path): \(routed.body)")
                XCTAssertEqual(fast.body, routed.body, path)
                XCTAssertTrue(fast.body.contains("\"error\":\"not_found\""), fast.body)
            }
            // Their canonical spellings answer (the identity is a value: %2F and %40 are fine there).
            for path in ["/checkpoint", "/v1/log", "/healthz", "/v1/proof/inclusion?index=0&tree_size=1", "/tile/entries/000.p/1",
                         "/v1/keys/alice@example.com", "/v1/keys/alice%40example.com", "/v1/entries?start=0", "/v1/keys/a%2Fb"] {
                conn.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
                let answer = try XCTUnwrap(conn.response(), path)
                XCTAssertEqual(answer.status, 200, "\(path): \(answer.body)")
            }
        }
    }

    /// A history longer than the event loop answers (32 entries) is answered by the router, whole,
    /// and the same as a short one is on the loop.
    func testLongHistoryIsAnsweredOffTheEventLoopWhole() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for _ in 0..<40 { try await log.publish(server, identity: "long@example.com") }
            let answer = try await server.client.keys(identity: "long@example.com")
            XCTAssertEqual(answer.entries.count, 40)
            XCTAssertEqual(answer.entries.map(\.index), Array(0..<40))
            XCTAssertNoThrow(try AnswerVerifier.verifyLookup(answer, logKey: log.verifierKey, identity: "long@example.com"))
            try await log.publish(server, identity: "short@example.com")
            let short = try await server.client.keys(identity: "short@example.com")
            XCTAssertEqual(short.entries.count, 1)
        }
    }

    func testFastAndRouterAnswersAreTheSameBytes() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<300 { try await log.publish(server, identity: "p\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            let size = server.sequencer.latestCheckpoint.size
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port))
            let paths = ["/checkpoint", "/v1/log", "/healthz", "/v1/proof/inclusion?index=17&tree_size=\(size)",
                         "/v1/proof/consistency?from=1&to=\(size)", "/tile/0/000", "/tile/entries/000", "/tile/0/001.p/44",
                         "/v1/proof/inclusion?index=\(size)&tree_size=\(size)"]
            for path in paths {
                // A GET with a body is left to the router: the same request, answered both ways.
                conn.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
                let fast = try XCTUnwrap(conn.response(), path)
                conn.send("GET \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
                let routed = try XCTUnwrap(conn.response(), path)
                XCTAssertEqual(fast.status, routed.status, path)
                XCTAssertEqual(fast.body, routed.body, path)
                for h in ["content-type", "cache-control", "content-length", "server"] {
                    XCTAssertEqual(fast.headers[h], routed.headers[h], "\(path): \(h)")
                }
            }
        }
    }

    func testConnectionCloseIsHonoured() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let conn = try RawConnection(port: try XCTUnwrap(server.client.base.port))
            conn.send("GET /checkpoint HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            let answer = try XCTUnwrap(conn.response())
            XCTAssertEqual(answer.status, 200)
            XCTAssertNil(conn.response(), "the server closes the connection after answering")
        }
    }

    /// A key directory answers lookups and the operator's changes on the event loop: the same bytes
    /// as its router (a GET with a body goes to the router), in request order among requests the
    /// router answers, and every request the fast path declines (no credential, a wrong one, a
    /// malformed change) answered by the router as before.
    func testDirectoryLookupsAndChangesOnTheEventLoopKeepTheirOrderAndBytes() async throws {
        var options = DirectoryService.Options()
        options.epoch = .milliseconds(30)
        let d = try await RunningDirectory.start(options: options)
        do { try await checkDirectoryLookups(d) } catch { XCTFail("\(error)") }
        await d.remove()
    }

    private func checkDirectoryLookups(_ d: RunningDirectory) async throws {
        let alice = "alice@example.com"
        let record = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)
        let client = DirectoryClient(log: d.client, logKey: d.verifierKey, lookupToken: d.lookupToken)
        _ = try await client.submit(ChangeBody(identity: alice, change: DeviceChange(kind: .add(record), authority: .operator)), token: d.token)
        var shown = 0
        for _ in 0..<200 where shown == 0 {
            shown = (try? await client.lookup(alice))?.result.devices.count ?? 0
            if shown == 0 { try await Task.sleep(for: .milliseconds(25)) }
        }
        XCTAssertEqual(shown, 1, "a head shows alice's device (a verified lookup)")
        let conn = try RawConnection(port: try XCTUnwrap(d.client.base.port))
        let auth = "Authorization: Bearer \(d.lookupToken)\r\n"
        func get(_ path: String, _ extra: String = auth) -> String { "GET \(path) HTTP/1.1\r\nHost: t\r\n\(extra)\r\n" }
        conn.send(get("/v2/lookup/\(alice)")
            + get("/v2/log", "")
            + "GET /v2/lookup/\(alice) HTTP/1.1\r\nHost: t\r\n\(auth)Content-Length: 1\r\n\r\nx"
            + get("/v2/lookup/\(alice)", "")
            + get("/v2/lookup/\(alice)", "Authorization: Bearer not-a-credential\r\n")
            + get("/v2/lookup/alice%40example.com")
            + get("/v2/lookup/nobody@example.com")
            + get("/v2/lookup/%A9"))
        let answers = (0..<8).compactMap { _ in conn.response() }
        XCTAssertEqual(answers.map(\.status), [200, 200, 200, 401, 403, 200, 200, 400], answers.map(\.body).joined(separator: "\n"))
        guard answers.count == 8 else { return }
        XCTAssertEqual(answers[0].body, answers[2].body, "the event loop's lookup and the router's are the same bytes")
        XCTAssertEqual(answers[0].body, answers[5].body, "the identity is percent-decoded once")
        XCTAssertTrue(answers[1].body.contains("\"vrf_public_key\""), answers[1].body)
        XCTAssertNotEqual(answers[6].body, answers[0].body)
        XCTAssertTrue(answers[7].body.contains("UTF-8"), answers[7].body)
        // Changes: the operator's (token) on the event loop, in order with what surrounds them;
        // without the token or malformed, the router answers as before. A change the device rule
        // refuses (re-adding alice's device id) is answered after the writer refused it.
        func post(_ body: ChangeBody, _ extra: String) throws -> String {
            let json = String(decoding: try JSONEncoder().encode(body), as: UTF8.self)
            return "POST /v2/changes HTTP/1.1\r\nHost: t\r\n\(extra)Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)"
        }
        let token = "Authorization: Bearer \(d.token)\r\n"
        let bob = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)
        let carol = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)
        conn.send(try post(ChangeBody(identity: "bob@example.com", change: DeviceChange(kind: .add(bob), authority: .operator)), token)
            + get("/v2/lookup/\(alice)")
            + "POST /v2/changes HTTP/1.1\r\nHost: t\r\n\(token)Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            + (try post(ChangeBody(identity: "carol@example.com", change: DeviceChange(kind: .add(carol), authority: .operator)), ""))
            + (try post(ChangeBody(identity: alice, change: DeviceChange(kind: .add(record), authority: .operator)), token))
            + (try post(ChangeBody(identity: "carol@example.com", change: DeviceChange(kind: .add(carol), authority: .operator)), token)))
        let changes = (0..<6).compactMap { _ in conn.response() }
        XCTAssertEqual(changes.map(\.status), [200, 200, 400, 401, 403, 200], changes.map(\.body).joined(separator: "\n"))
        guard changes.count == 6 else { return }
        let first = try JSONDecoder().decode(ChangeAnswer.self, from: Data(changes[0].body.utf8))
        let last = try JSONDecoder().decode(ChangeAnswer.self, from: Data(changes[5].body.utf8))
        XCTAssertGreaterThan(last.index, first.index, "answered in the order sent, each durable before its answer")
        XCTAssertTrue(changes[1].body.contains("\"map_proof\""), "a lookup behind a change is answered after it: \(changes[1].body)")
        XCTAssertTrue(changes[4].body.contains("\"error\":\"refused\""), changes[4].body)

        // `Connection: close` on a lookup the fast path answers: answered, then closed.
        // (Against whichever head is newest by now: the changes above may have made another.)
        conn.send(get("/v2/lookup/\(alice)", auth + "Connection: close\r\n"))
        let closing = conn.response()
        XCTAssertEqual(closing?.status, 200)
        XCTAssertTrue(closing?.body.contains("\"map_proof\"") == true, closing?.body ?? "no answer")
        XCTAssertNil(conn.response(), "the server closes the connection after answering")
    }
}
