import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import XCTest

/// A flag the publishers poll.
final class StopFlag: @unchecked Sendable {
    // @unchecked: `value` is only read and written under `lock`.
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// The server is SIGKILLed at random moments under concurrent publishes, round after round. After
/// every restart: each acknowledged publish is in the log at the index it was given, every
/// checkpoint ever served is consistent with the new tree, and an auditor that ran across all the
/// crashes never alerts. `KEYGLASS_CRASH_ROUNDS` sets the rounds (make soak runs more).
final class CrashSafetyTests: XCTestCase {
    actor Acks {
        var entries: [UInt64: String] = [:]
        var checkpoints: [String] = []
        func add(_ a: PublishAnswer) {
            entries[a.index] = a.leaf_hash
            if checkpoints.count < 400 { checkpoints.append(a.checkpoint) }
        }
    }

    func testSIGKILLUnderLoadLosesNothingAcknowledged() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["KEYGLASS_CRASH_ROUNDS"] ?? "") ?? 8
        let work = TestLog.temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        let initRun = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "crash.example/log"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let vkey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let acks = Acks()
        var rng = SystemRandomNumberGenerator()
        var auditOptions = Auditor.Options(stateDirectory: work + "/audit", logKey: vkey)
        auditOptions.saveEvery = 64

        for round in 0..<rounds {
            let port = Binaries.freePort()
            let server = try Binaries.start("keyglass-server", ["serve", "--data", data, "--port", "\(port)", "--log-level", "error"], log: work + "/server-\(round).log")
            let client = LogClient(base: URL(string: "http://127.0.0.1:\(port)")!, timeout: 5)
            try await Binaries.waitUntilServing(client, server)

            // Before new load: everything acknowledged so far is still there, at its index.
            try await checkAcknowledged(acks, client, vkey)
            let report = await Auditor(client: client, options: auditOptions).run()
            XCTAssertEqual(report.status, .ok, "round \(round): \(report.text)")

            // Concurrent publishers, then SIGKILL at a random moment. They stop on a flag rather than
            // by task cancellation: cancelling an in-flight URLSession request on Linux can leave it
            // hanging for ever.
            let stop = StopFlag()
            let publishers = (0..<24).map { worker in
                Task {
                    var n = 0
                    while !stop.isSet {
                        n += 1
                        let body = PublishRequestBody(identity: "crash-\(round)-\(worker)-\(n)", key_type: "x25519", public_key: Base64.encode(Ed25519.randomBytes(32)))
                        guard let answer = try? await client.publish(body, token: token) else { continue }
                        await acks.add(answer)
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 80...400, using: &rng)))
            await Binaries.kill9(server)
            stop.set()
            for p in publishers { await p.value }
        }

        // A last restart: the final checks, and SQLite's own integrity check.
        let port = Binaries.freePort()
        let server = try Binaries.start("keyglass-server", ["serve", "--data", data, "--port", "\(port)"], log: work + "/server-final.log")
        let client = LogClient(base: URL(string: "http://127.0.0.1:\(port)")!)
        try await Binaries.waitUntilServing(client, server)
        let acknowledged = try await checkAcknowledged(acks, client, vkey)
        XCTAssertGreaterThan(acknowledged, rounds * 10, "the rounds published under load")
        let report = await Auditor(client: client, options: auditOptions).run()
        XCTAssertEqual(report.status, .ok, report.text)
        await Binaries.kill9(server)
        let check = try Binaries.run("keyglass-server", ["check", "--data", data])
        XCTAssertEqual(check.status, 0, check.stderr)
        print("crash safety: \(rounds) SIGKILL rounds survived, \(acknowledged) acknowledged publishes all present")
    }

    /// `keyglass audit` SIGKILLed part-way, again and again: every next run resumes from the saved
    /// position, the state is never corrupt, and no run raises a false alarm.
    func testAuditorKilledMidAuditResumesWithoutFalseAlarm() async throws {
        let work = TestLog.temporaryDirectory("audit-kill")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        XCTAssertEqual(try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "ak.example/log"]).status, 0)
        XCTAssertEqual(try Binaries.run("keyglass-server", ["bulk-load", "--data", data, "--count", "40000", "--sync", "NORMAL"]).status, 0)
        let port = Binaries.freePort()
        let server = try Binaries.start("keyglass-server", ["serve", "--data", data, "--port", "\(port)", "--log-level", "error"], log: work + "/server.log")
        let client = LogClient(base: URL(string: "http://127.0.0.1:\(port)")!)
        try await Binaries.waitUntilServing(client, server)
        let args = ["audit", "--log", "http://127.0.0.1:\(port)", "--vkey", data + "/verifier-key", "--state", work + "/state", "--save-every", "1024", "--json"]
        var rng = SystemRandomNumberGenerator()
        var killed = 0
        for _ in 0..<4 {
            let audit = try Binaries.start("keyglass", args, log: work + "/audit-\(killed).log")
            try await Task.sleep(for: .milliseconds(Int.random(in: 150...600, using: &rng)))
            guard audit.isRunning else { break }
            await Binaries.kill9(audit)
            killed += 1
            // The state on disk is always a complete JSON document (atomic replace).
            if FileManager.default.fileExists(atPath: work + "/state/state.json") {
                XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(try Files.readText(work + "/state/state.json").utf8)))
            }
        }
        let final = try Binaries.run("keyglass", args)
        XCTAssertEqual(final.status, 0, final.stdout + final.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(final.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["size"] as? Int, 40000)
        XCTAssertEqual((report["alerts"] as? [Any])?.count, 0)
        if killed > 0, let notices = report["notices"] as? [String] {
            XCTAssertTrue(notices.contains { $0.hasPrefix("resuming") } || (report["entries_checked"] as? Int ?? 0) < 40000, "\(notices)")
        }
        await Binaries.kill9(server)
        print("auditor: killed \(killed) times mid-audit, resumed to size 40000 without an alert")
    }


    /// Checks every acknowledged entry and every served checkpoint against the current log.
    @discardableResult
    func checkAcknowledged(_ acks: Acks, _ client: LogClient, _ vkey: NoteVerifierKey) async throws -> Int {
        let current = try AnswerVerifier.openCheckpoint(try await client.checkpoint(), logKey: vkey).checkpoint
        let entries = await acks.entries
        var stored: [UInt64: String] = [:]
        var start: UInt64 = 0
        while start < current.size {
            let page = try await client.entries(start: start, end: current.size)
            for e in page.entries { stored[e.index] = e.leaf_hash }
            start = page.end
        }
        for (index, leaf) in entries {
            XCTAssertEqual(stored[index], leaf, "acknowledged entry \(index) is in the log unchanged")
        }
        for note in await acks.checkpoints {
            let cp = try AnswerVerifier.openCheckpoint(note, logKey: vkey).checkpoint
            guard cp.size > 0 else { continue }
            let proof = try await client.consistencyProof(from: cp.size, to: current.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: cp.size, size2: current.size, root1: cp.root, root2: current.root, proof: proof))
        }
        return entries.count
    }
}
