import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import XCTest

/// The split-view checks through the commands people run (exit codes included), not only the
/// library: `keyglass lookup` against a fork, `keyglass audit --compare` with what a lookup kept,
/// and `--gossip` with a peer showing the fork or not answering at all.
final class ViewCommandTests: XCTestCase {
    func testCommandsRefuseForksAndUnreachableGossip() async throws {
        let honest = try await TestLog()
        defer { honest.remove() }
        try await honest.withServer { server in for i in 0..<5 { try await honest.publish(server, identity: "v\(i)@example.com") } }
        let fork = try await TestLog(copying: honest)
        defer { fork.remove() }
        let honestServer = try await honest.start()
        let forkServer = try await fork.start()
        let work = TestLog.temporaryDirectory("views")
        defer { try? FileManager.default.removeItem(atPath: work) }
        do {
            try await fork.publish(forkServer, identity: "mallory-target@example.com")
            try await honest.publish(honestServer, identity: "someone-else@example.com")
            let vkey = honest.verifierKey.description
            let honestURL = honestServer.client.base.absoluteString, forkURL = forkServer.client.base.absoluteString

            // Lookups only through the fork: refused with exit 2 once /checkpoint is the honest one.
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/v1/keys/") ? .forward(forkServer.client) : .forward(honestServer.client)
            }
            defer { Task { await front.stop() } }
            var r = try Binaries.run("keyglass", ["lookup", "--log", front.url.absoluteString, "--vkey", vkey, "--state", work + "/l1", "mallory-target@example.com"])
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            XCTAssertTrue(r.stderr.contains("split view"), r.stderr)

            // A victim's lookup of the fork (all of it forked) is kept; the auditor of the honest log,
            // handed that state, alerts; and so does an auditor gossiping with the fork.
            r = try Binaries.run("keyglass", ["lookup", "--log", forkURL, "--vkey", vkey, "--state", work + "/victim", "mallory-target@example.com"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let audit = ["audit", "--log", honestURL, "--vkey", vkey, "--state", work + "/audit"]
            XCTAssertEqual(try Binaries.run("keyglass", audit).status, 0)
            let kept = try XCTUnwrap(FileManager.default.subpathsOfDirectory(atPath: work + "/victim").first { $0.hasSuffix("checkpoint") })
            r = try Binaries.run("keyglass", audit + ["--compare", work + "/victim/" + kept])
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("ALERT split_view"), r.stdout)
            r = try Binaries.run("keyglass", audit + ["--gossip", forkURL])
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            // The victim, gossiping with the honest log, is refused too.
            r = try Binaries.run("keyglass", ["lookup", "--log", forkURL, "--vkey", vkey, "--state", work + "/victim", "--gossip", honestURL, "mallory-target@example.com"])
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            // A gossip peer that does not answer is not a pass: exit 3, for both commands.
            r = try Binaries.run("keyglass", audit + ["--gossip", "http://127.0.0.1:1"])
            XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
            r = try Binaries.run("keyglass", ["lookup", "--log", honestURL, "--vkey", vkey, "--state", work + "/l2", "--gossip", "http://127.0.0.1:1", "v1@example.com"])
            XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
        } catch {
            XCTFail("\(error)")
        }
        await honestServer.stop()
        await forkServer.stop()
    }
}
