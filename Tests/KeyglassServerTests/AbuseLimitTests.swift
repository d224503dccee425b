import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import XCTest

/// Per-client rate limits, and idle connections closed.
final class AbuseLimitTests: XCTestCase {
    func testReadAndSelfSignedPublishLimitsButNotTheOperator() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer(configure: { o in
            o.readsPerSecond = 5
            o.signedPublishesPerSecond = 1
            o.burst = 2
        }) { server in
            var statuses: [Int] = []
            for _ in 0..<30 { statuses.append(try await server.client.raw("GET", "/checkpoint").0) }
            XCTAssertEqual(statuses.prefix(5).filter { $0 == 200 }.count, 5, "\(statuses)")
            XCTAssertGreaterThan(statuses.filter { $0 == 429 }.count, 15, "\(statuses)")
            let (status, data) = try await server.client.raw("GET", "/v1/log")
            XCTAssertEqual(status, 429)
            XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("rate_limited"))

            // Publishes without the operator token (self-signed) are limited too...
            let body = Data(#"{"identity":"x","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=","previous_index":0,"signature":"\#(Base64.encode([UInt8](repeating: 1, count: 64)))"}"#.utf8)
            var signed: [Int] = []
            for _ in 0..<10 { signed.append(try await server.client.raw("POST", "/v1/keys", body: body, headers: ["Content-Type": "application/json"]).0) }
            XCTAssertTrue(signed.contains(429), "\(signed)")
            // ...the operator's back end is not.
            for i in 0..<20 { try await log.publish(server, identity: "op\(i)") }
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
