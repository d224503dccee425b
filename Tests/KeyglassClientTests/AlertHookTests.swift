import Foundation
import KeyglassCore
import KeyglassFiles
import KeyglassTestSupport
import XCTest

/// `keyglass audit --on-alert COMMAND`, run as cron runs it: the real binary against a real server.
/// The command gets each alert as one line of JSON, once, when it is found; nothing for a clean run;
/// a command that fails or ignores its input changes neither the audit's exit code nor its report.
final class AlertHookTests: XCTestCase {
    func testEachAlertRunsTheCommandOnceAndACleanRunNever() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let work = TestLog.temporaryDirectory("hook")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let own = Ed25519.generate().publicKey
        try Files.writeAtomically("alice@example.com ed25519 \(Base64.encode(own))\n", to: work + "/watch.txt")
        let hooked = work + "/alerts-hooked.jsonl"
        try await log.withServer { server in
            try await log.publish(server, identity: "alice@example.com", key: own)
            try await log.publish(server, identity: "alice@example.com")  // a key alice did not publish
            func audit(_ hook: String) throws -> Binaries.Result {
                try Binaries.run("keyglass", ["audit", "--log", server.client.base.absoluteString, "--vkey", log.verifierKey.description,
                                              "--state", work + "/state", "--watch", work + "/watch.txt", "--on-alert", hook])
            }
            var r = try audit("cat >> '\(hooked)'")
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            let lines = try Files.readText(hooked).split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "one alert, one run of the command")
            let alert = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
            XCTAssertEqual(alert["kind"] as? String, "injected_key")
            XCTAssertEqual(alert["index"] as? Int, 1)
            // Nothing new: a clean run, and the command is not run.
            r = try audit("cat >> '\(hooked)'")
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertEqual(try Files.readText(hooked).split(separator: "\n").count, 1)
            // A command that fails without reading its input: reported, the exit code still the alert's.
            try await log.publish(server, identity: "alice@example.com")
            r = try audit("exit 3")
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            XCTAssertTrue(r.stderr.contains("--on-alert command exited with 3"), r.stderr)
            XCTAssertTrue(r.stdout.contains("ALERT injected_key"), r.stdout)
        }
    }
}
