import Foundation
import KeyglassTestSupport
import XCTest

/// Durations and limits given on the command line are bounded where they are parsed: a value too
/// large for the arithmetic that uses it is a usage error (exit 64) with the flag named, never an
/// overflow trap (which kills the process with a signal and no message).
final class FlagBoundsTests: XCTestCase {
    func testHugeDurationsAreUsageErrors() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("flags")
        let vkey = log.verifierKey.description
        for (flag, value) in [("--deadline", "300000000000000000d"), ("--deadline", "99999999999999999999"), ("--timeout", "10000000000"),
                              ("--timeout", "3651d")] {
            let r = try Binaries.run("keyglass", ["audit", "--log", "http://127.0.0.1:1", "--vkey", vkey, "--state", state, flag, value])
            XCTAssertEqual(r.status, 64, "\(flag) \(value): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(flag), r.stderr)
        }
        let r = try Binaries.run("keyglass", ["lookup", "--log", "http://127.0.0.1:1", "--vkey", vkey, "--max-age", "9999999999999999999s", "a@example.com"])
        XCTAssertEqual(r.status, 64, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("--max-age"), r.stderr)
    }

    func testHugeClockSkewIsAUsageError() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let r = try Binaries.run("keyglass-server", ["serve", "--data", log.directory.path, "--port", "0", "--max-clock-skew", "100000000000000000"], timeout: 30)
        XCTAssertEqual(r.status, 64, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("--max-clock-skew"), r.stderr)
    }
}
