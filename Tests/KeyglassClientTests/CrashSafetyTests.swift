import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// A flag the publishers poll.
final class StopFlag: @unchecked Sendable {
    // @unchecked: `value` is only read and written under `lock`.
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }

    /// `workers` tasks, each running `step(worker, n)` for n = 1, 2, … until this flag is set. A
    /// flag rather than task cancellation: cancelling an in-flight URLSession request on Linux can
    /// leave it hanging for ever.
    func load(workers: Int, _ step: @escaping @Sendable (_ worker: Int, _ n: Int) async -> Void) -> [Task<Void, Never>] {
        (0..<workers).map { worker in
            Task {
                var n = 0
                while !isSet {
                    n += 1
                    await step(worker, n)
                }
            }
        }
    }
}

/// The server is SIGKILLed at random moments under concurrent publishes, round after round. After
/// every restart: each acknowledged publish is in the log at the index it was given, every
/// checkpoint ever served is consistent with the new tree, and an auditor that ran across all the
/// crashes never alerts. `KEYGLASS_CRASH_ROUNDS` sets the rounds (make soak runs more).
final class CrashSafetyTests: XCTestCase {
    actor Acks {
        var entries: [UInt64: String] = [:]
        /// Every distinct checkpoint a publisher was given (one per batch), by size.
        var checkpoints: [UInt64: String] = [:]
        /// Some acknowledged identities, to look up after each crash.
        var identities: [UInt64: String] = [:]
        func add(_ a: PublishAnswer, identity: String) {
            entries[a.index] = a.leaf_hash
            checkpoints[a.tree_size] = a.checkpoint
            if a.index % 40 == 0 { identities[a.index] = identity }
        }
    }

    func testSIGKILLUnderLoadLosesNothingAcknowledged() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["KEYGLASS_CRASH_ROUNDS"] ?? "") ?? 8
        let work = TestLog.temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        // Both engines (`TestStorage`): with KEYGLASS_TEST_STORAGE=postgres the log is in a database.
        let storage = TestStorage.usesPostgres ? ["--storage", try await TestStorage.newDatabase().url] : []
        // A SIGKILLed server leaves its lease to expire: short, so the next one sequences soon.
        let leaseOption = storage.isEmpty ? [] : ["--lease-seconds", "1"]
        let initRun = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "crash.example/log"] + storage)
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let vkey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let acks = Acks()
        var rng = SystemRandomNumberGenerator()
        var auditOptions = Auditor.Options(stateDirectory: work + "/audit", logKey: vkey)
        auditOptions.saveEvery = 64

        for round in 0..<rounds {
            let (server, _, client) = try await Binaries.startServer(data: data, ["--log-level", "error"] + storage + leaseOption, log: work + "/server-\(round).log")
            if !storage.isEmpty {
                // The killed server's lease must expire first: wait until this one sequences, so
                // every round's kill lands under load.
                var sequencing = false
                for _ in 0..<100 where !sequencing {
                    let probe = PublishBody(identity: "probe-\(round)", key_type: "x25519", public_key: Base64.encode(Ed25519.randomBytes(32)))
                    if let answer = try? await client.publish(probe, token: token, notSequencerRetries: 0) { await acks.add(answer, identity: "probe-\(round)"); sequencing = true }
                    else { try await Task.sleep(for: .milliseconds(50)) }
                }
                XCTAssertTrue(sequencing, "round \(round): the restarted server sequences once the old lease expired")
            }

            // Before new load: everything acknowledged so far is still there, at its index.
            try await checkAcknowledged(acks, client, vkey)
            let report = await Auditor(client: client, options: auditOptions).run()
            XCTAssertEqual(report.status, .ok, "round \(round): \(report.text)")

            // Concurrent publishers, then SIGKILL at a random moment.
            let stop = StopFlag()
            let publishers = stop.load(workers: 24) { worker, n in
                let identity = "crash-\(round)-\(worker)-\(n)"
                let body = PublishBody(identity: identity, key_type: "x25519", public_key: Base64.encode(Ed25519.randomBytes(32)))
                guard let answer = try? await client.publish(body, token: token) else { return }
                await acks.add(answer, identity: identity)
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 80...400, using: &rng)))
            await Binaries.kill9(server)
            stop.set()
            for p in publishers { await p.value }
        }

        // A last restart: the final checks, and SQLite's own integrity check.
        let (server, _, client) = try await Binaries.startServer(data: data, storage + leaseOption, log: work + "/server-final.log")
        let acknowledged = try await checkAcknowledged(acks, client, vkey)
        XCTAssertGreaterThan(acknowledged, rounds * 10, "the rounds published under load")
        let report = await Auditor(client: client, options: auditOptions).run()
        XCTAssertEqual(report.status, .ok, report.text)
        await Binaries.kill9(server)
        let check = try Binaries.run("keyglass-server", ["check", "--data", data] + storage)
        XCTAssertEqual(check.status, 0, check.stderr)
        print("crash safety (\(storage.isEmpty ? "SQLite" : "PostgreSQL")): \(rounds) SIGKILL rounds survived, \(acknowledged) acknowledged publishes all present")
    }

    /// `keyglass audit` SIGKILLed part-way, again and again: every next run resumes from the saved
    /// position, the state is never corrupt, and no run raises a false alarm.
    func testAuditorKilledMidAuditResumesWithoutFalseAlarm() async throws {
        let work = TestLog.temporaryDirectory("audit-kill")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        XCTAssertEqual(try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "ak.example/log"]).status, 0)
        XCTAssertEqual(try Binaries.run("keyglass-server", ["bulk-load", "--data", data, "--count", "40000", "--sync", "NORMAL"]).status, 0)
        let (server, _, client) = try await Binaries.startServer(data: data, ["--log-level", "error"], log: work + "/server.log")
        // Each bundle is held 15 ms by a front end, so an audit takes seconds and every kill lands
        // mid-audit (the test used to skip its check when an audit finished before the kill).
        let front = try await FrontEnd.start { _, target in
            target.hasPrefix("/tile/entries/") ? .delay(.milliseconds(15), client) : .forward(client)
        }
        defer { Task { await front.stop() } }
        let args = ["audit", "--log", front.url.absoluteString, "--vkey", data + "/verifier-key", "--state", work + "/state", "--save-every", "1024", "--json"]
        var saved: [Int] = []
        for round in 0..<4 {
            let audit = try Binaries.start("keyglass", args, log: work + "/audit-\(round).log")
            // Kill once the run has saved a position past the last round's (bounded wait).
            let target = (saved.last ?? 0) + 2048
            var position = 0
            for _ in 0..<2000 where position < target {
                position = pendingPosition(work + "/state/state.json")
                if position < target { try await Task.sleep(for: .milliseconds(5)) }
            }
            XCTAssertTrue(audit.isRunning, "round \(round): the audit ended before it could be killed")
            await Binaries.kill9(audit)
            saved.append(pendingPosition(work + "/state/state.json"))
            // The state on disk is always a complete JSON document (atomic replace).
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(try Files.readText(work + "/state/state.json").utf8)))
        }
        XCTAssertEqual(saved, saved.sorted(), "every run resumed from the last saved position and moved on: \(saved)")
        XCTAssertGreaterThan(saved.last ?? 0, 0)
        let final = try Binaries.run("keyglass", args)
        XCTAssertEqual(final.status, 0, final.stdout + final.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(final.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["size"] as? Int, 40000)
        XCTAssertEqual((report["alerts"] as? [Any])?.count, 0)
        let notices = report["notices"] as? [String] ?? []
        XCTAssertTrue(notices.contains { $0.hasPrefix("resuming the audit of checkpoint 40000 at entry \(saved.last!)") }, "\(notices)")
        let killed = saved.count
        await Binaries.kill9(server)
        print("auditor: killed \(killed) times mid-audit, resumed to size 40000 without an alert")
    }


    /// The entry a killed audit's saved position points at (0 when none is saved).
    func pendingPosition(_ stateFile: String) -> Int {
        guard let data = FileManager.default.contents(atPath: stateFile),
              let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let pending = state["pending"] as? [String: Any], let size = pending["size"] as? Int else { return 0 }
        return size
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
        for note in await acks.checkpoints.values {
            let cp = try AnswerVerifier.openCheckpoint(note, logKey: vkey).checkpoint
            guard cp.size > 0 else { continue }
            let proof = try await client.consistencyProof(from: cp.size, to: current.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: cp.size, size2: current.size, root1: cp.root, root2: current.root, proof: proof))
        }
        // Lookups find acknowledged keys after every crash (index rows rebuilt from the entries).
        for (index, identity) in await acks.identities {
            let found = try await KeyLookup(client: client, options: .init(logKey: vkey, stateDirectory: nil)).run(identity: identity)
            XCTAssertEqual(found.entries.map(\.index), [index], "lookup of \(identity)")
        }
        return entries.count
    }
}
