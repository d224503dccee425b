import CKeyglassSodium
import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// The log operator turns evil, the way a compelled operator would; the auditor must raise the
/// right alarm every time, with signed evidence, and stay quiet while the log is honest.
final class EvilLogTests: XCTestCase {
    func auditor(_ server: RunningServer, _ log: TestLog, state: String, watch: WatchList? = nil,
                 otherViews: [(String, String)] = []) -> Auditor {
        var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
        o.watch = watch
        o.otherViews = otherViews.map { OtherView(source: $0.0, note: $0.1) }
        return Auditor(client: server.client, options: o)
    }

    func watchList(_ lines: [(String, KeyType, [UInt8])]) throws -> WatchList {
        try WatchList(text: lines.map { "\($0.0) \($0.1.rawValue) \(Base64.encode($0.2))" }.joined(separator: "\n") + "\n# end\n")
    }

    // (a) The operator appends a key for a watched identity with its own token.
    func testInjectedKeyIsAnAlertNamingEntryKeyAndCheckpoint() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let owner = Ed25519.generate()
            try await log.publish(server, identity: "alice@example.com", key: owner.publicKey)
            for i in 0..<10 { try await log.publish(server, identity: "other\(i)") }
            let watch = try watchList([("alice@example.com", .ed25519, owner.publicKey)])
            let first = await auditor(server, log, state: state, watch: watch).run()
            XCTAssertEqual(first.status, .ok, first.text)
            XCTAssertEqual(first.entriesChecked, 11)

            let injected = Ed25519.generate().publicKey
            let answer = try await log.publish(server, identity: "alice@example.com", key: injected)
            let report = await auditor(server, log, state: state, watch: watch).run()
            XCTAssertEqual(report.exitCode, 2)
            let alert = try XCTUnwrap(report.alerts.first)
            XCTAssertEqual(report.alerts.count, 1)
            XCTAssertEqual(alert.kind, .injectedKey)
            XCTAssertEqual(alert.index, answer.index)
            XCTAssertTrue(alert.message.contains(Base64.encode(injected)), alert.message)
            // The evidence is the signed checkpoint that commits to the entry: check it independently.
            let cp = try AnswerVerifier.openCheckpoint(try XCTUnwrap(alert.evidence.first), logKey: log.verifierKey).checkpoint
            XCTAssertGreaterThan(cp.size, answer.index)
            let proof = try await server.client.inclusionProof(index: answer.index, treeSize: cp.size)
            XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: answer.index, size: cp.size, leafHash: try XCTUnwrap(Hash(base64: answer.leaf_hash)), proof: proof, root: cp.root))
            // The alert is also on disk for whoever reads the cron mail later.
            XCTAssertTrue(try Files.readText(state + "/alerts.jsonl").contains("injected_key"))
        }
    }

    // (b) An entry's bytes are changed in the database behind the server's back.
    func testEntryChangedInStorageIsARootMismatch() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            for i in 0..<40 { try await log.publish(server, identity: "b\(i)") }
            let other = Ed25519.generate().publicKey
            // Swap entry 17's key bytes for another key, keeping the row's leaf hash.
            let stored = try server.store.entry(at: 17)!
            var entry = try KeyEntry.parse(stored.data)
            entry.publicKey = other
            try log.tamper("UPDATE entries SET data = x'\(Hex.encode(try entry.encode()))' WHERE idx = 17")
            let report = await auditor(server, log, state: state).run()
            XCTAssertEqual(report.exitCode, 2, report.text)
            XCTAssertEqual(report.alerts.map(\.kind), [.rootMismatch])
            XCTAssertEqual(report.alerts.first?.index, 17)
            // The state did not advance past the unproven entries: the next run alerts again.
            let again = await auditor(server, log, state: state).run()
            XCTAssertEqual(again.alerts.map(\.kind), [.rootMismatch])
        }
    }

    // (c) Two servers share the signing key and serve diverging histories (a fork).
    func testForkIsASplitViewWithBothCheckpoints() async throws {
        let a = try await TestLog()
        defer { a.remove() }
        try await a.withServer { server in
            for i in 0..<5 { try await a.publish(server, identity: "shared\(i)") }
        }
        let b = try await TestLog(copying: a)
        defer { b.remove() }
        let state = TestLog.temporaryDirectory("audit")
        let stateCompare = TestLog.temporaryDirectory("audit")
        let serverA = try await a.start()
        let serverB = try await b.start()
        do {
            // Same size on both sides, different entries: the victim sees A, everyone else B.
            for i in 0..<3 { try await a.publish(serverA, identity: "victim-view\(i)") }
            for i in 0..<3 { try await b.publish(serverB, identity: "public-view\(i)") }
            let seenA = await auditor(serverA, a, state: state).run()
            XCTAssertEqual(seenA.status, .ok, seenA.text)
            // The auditor then reaches the other view (e.g. DNS now points at B).
            let report = await auditor(serverB, b, state: state).run()
            XCTAssertEqual(report.alerts.map(\.kind), [.splitView], report.text)
            let evidence = try XCTUnwrap(report.alerts.first?.evidence)
            XCTAssertEqual(evidence.count, 2)
            let c1 = try AnswerVerifier.openCheckpoint(evidence[0], logKey: a.verifierKey).checkpoint
            let c2 = try AnswerVerifier.openCheckpoint(evidence[1], logKey: a.verifierKey).checkpoint
            XCTAssertEqual(c1.size, c2.size)
            XCTAssertNotEqual(c1.root, c2.root, "two valid signatures on contradicting roots")

            // Gossip: an auditor of A compares with a checkpoint another auditor got from B.
            try await b.publish(serverB, identity: "public-view-more")
            let noteB = try await serverB.client.checkpoint()
            let compared = await auditor(serverA, a, state: stateCompare, otherViews: [("witness-b", noteB)]).run()
            XCTAssertEqual(compared.alerts.map(\.kind), [.splitView], compared.text)
            XCTAssertEqual(compared.alerts.first?.evidence.count, 2)

            // Growing past the fork: A cannot prove B's bigger tree extends what the auditor saw.
            let grown = await auditor(serverB, b, state: stateCompare).run()
            XCTAssertEqual(grown.alerts.map(\.kind), [.splitView], grown.text)
        } catch {
            XCTFail("\(error)")
        }
        await serverA.stop()
        await serverB.stop()
    }

    // (d) The log goes backwards: the auditor saw size 8, now it serves an older tree of size 5.
    func testRollbackIsAnAlert() async throws {
        let a = try await TestLog()
        defer { a.remove() }
        try await a.withServer { server in
            for i in 0..<5 { try await a.publish(server, identity: "r\(i)") }
        }
        let old = try await TestLog(copying: a)
        defer { old.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await a.withServer { server in
            for i in 5..<8 { try await a.publish(server, identity: "r\(i)") }
            let r = await auditor(server, a, state: state).run()
            XCTAssertEqual(r.status, .ok, r.text)
        }
        try await old.withServer { server in
            let report = await auditor(server, old, state: state).run()
            XCTAssertEqual(report.alerts.map(\.kind), [.rollback], report.text)
            XCTAssertEqual(report.alerts.first?.evidence.count, 2)
        }
    }

    // (d) A consistency proof that does not verify: a stored interior node is altered, so the
    // log's proofs no longer lead from the old root to the new one.
    func testBadConsistencyProofIsAnAlert() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            for i in 0..<6 { try await log.publish(server, identity: "k\(i)") }
            let baseline = await auditor(server, log, state: state).run()
            XCTAssertEqual(baseline.status, .ok, baseline.text)
            for i in 6..<13 { try await log.publish(server, identity: "k\(i)") }
        }
        // Node (1,3) covers leaves 6–7; the proof from 6 to 13 needs it (level 1, index 3: 1<<48 | 3).
        // The server is restarted on the altered database: it keeps upper tree levels in memory.
        try log.tamper("UPDATE nodes SET hash = zeroblob(32) WHERE id = \((1 << 48) | 3)")
        try await log.withServer { server in
            let report = await auditor(server, log, state: state).run()
            XCTAssertEqual(report.alerts.map(\.kind), [.splitView], report.text)
        }
    }

    // (e) A lookup answer whose proof does not verify is refused.
    func testLookupRefusesAnswerWhoseProofDoesNotVerify() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let good = try await log.withServer { server in
            try await log.publish(server, identity: "erin")
            for i in 0..<7 { try await log.publish(server, identity: "pad\(i)") }
            let good = try await server.client.keys(identity: "erin")
            XCTAssertNoThrow(try AnswerVerifier.verifyLookup(good, logKey: log.verifierKey, identity: "erin"))
            return good
        }
        // The operator serves a key with a made-up proof: alter the level-1 node over leaves 2–3
        // (and restart, as the server keeps upper tree levels in memory).
        try log.tamper("UPDATE nodes SET hash = randomblob(32) WHERE id = \((1 << 48) | 1)")
        try await log.withServer { server in
            let bad = try await server.client.keys(identity: "erin")
            XCTAssertThrowsError(try AnswerVerifier.verifyLookup(bad, logKey: log.verifierKey, identity: "erin")) { error in
                guard case .proof = error as? VerificationError else { return XCTFail("\(error)") }
            }
            // And a checkpoint signed by someone else is refused too.
            let impostor = try NoteSigner.generate(name: log.verifierKey.name)
            XCTAssertThrowsError(try AnswerVerifier.verifyLookup(good, logKey: impostor.verifierKey, identity: "erin"))
        }
    }

    /// Audits a history the operator forged with these timestamps (one x25519 entry each) and
    /// returns the alerts' kinds and indices.
    func auditForgedTimestamps(_ stamps: [UInt64]) async throws -> [(Alert.Kind, UInt64?)] {
        let log = try await TestLog()
        defer { log.remove() }
        try log.forgeHistory(stamps.enumerated().map { i, t in
            KeyEntry(timestampMillis: t, identity: "t\(i)@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32))
        })
        return try await log.withServer { server in
            let report = await auditor(server, log, state: TestLog.temporaryDirectory("audit")).run()
            return report.alerts.map { ($0.kind, $0.index) }
        }
    }

    /// The operator rewrites the history with an entry stamped before the one preceding it
    /// (the honest sequencer never does: timestamps never decrease).
    func testBackdatedEntryIsAnAlert() async throws {
        let now = Sequencer.nowMillis()
        let alerts = try await auditForgedTimestamps((0..<6).map { i in now - 60_000 + UInt64(i) * 1000 - (i == 4 ? 10_000 : 0) })
        XCTAssertEqual(alerts.map(\.0), [.backdated])
        XCTAssertEqual(alerts.first?.1, 4)
    }

    /// A log that makes an alert of every entry (1,500 entries, each stamped before the one
    /// preceding it): the report lists the first `Auditor.maxAlertsListed` and counts the rest,
    /// alerts.jsonl holds every one, and the exit code is 2. Listed in full they grew the report
    /// and the saved state without bound, and comparing old alerts with new ones was quadratic.
    func testAlertFloodIsCountedNotListed() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let now = Sequencer.nowMillis()
        try log.forgeHistory((0..<1_500).map { i in
            KeyEntry(timestampMillis: now - 3_600_000 - UInt64(i) * 1000, identity: "flood\(i)@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32))
        })
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let report = await auditor(server, log, state: state).run()
            XCTAssertEqual(report.alerts.count, Auditor.maxAlertsListed)
            XCTAssertEqual(report.alertsNotListed, 1_499 - UInt64(Auditor.maxAlertsListed))
            XCTAssertEqual(report.exitCode, 2)
            XCTAssertTrue(report.text.contains("and 499 more alerts"), String(report.text.suffix(300)))
            XCTAssertTrue(report.json.contains("\"alerts_not_listed\" : 499"), String(report.json.suffix(300)))
            let logged = try String(contentsOfFile: state + "/alerts.jsonl", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(logged.count, 1_499, "every alert is in alerts.jsonl")
        }
    }

    /// The operator's newest entry is stamped in 2100: the auditor alerts, and the honest server,
    /// restarted on that history, refuses to stamp anything after it (covered in PublishAndProofTests).
    func testEntryStampedInTheFutureIsAnAlert() async throws {
        let now = Sequencer.nowMillis()
        let year2100: UInt64 = 4_102_444_800_000
        let alerts = try await auditForgedTimestamps((0..<6).map { i in i == 5 ? year2100 : now - 60_000 + UInt64(i) * 1000 })
        XCTAssertEqual(alerts.map(\.0), [.futureTimestamp])
        XCTAssertEqual(alerts.first?.1, 5)
    }

    /// An entry stored before today's identity profile (an invisible U+034F in the name): the
    /// server still serves its bytes (the tree holds them) with `malformed` saying why, and the
    /// auditor flags it; nothing answers 500.
    func testEntryStoredUnderOlderRulesIsServedAndFlagged() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let good = KeyEntry(timestampMillis: Sequencer.nowMillis() - 5000, identity: "ok@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32))
        let oldName = "alice\u{034F}@example.com"
        var bytes: [UInt8] = [KeyEntry.version]
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: (Sequencer.nowMillis() - 4000) >> UInt64(shift))) }
        bytes += [UInt8(oldName.utf8.count)] + Array(oldName.utf8) + [6] + Array("x25519".utf8) + [0, 32] + Ed25519.randomBytes(32) + [0]
        XCTAssertThrowsError(try KeyEntry.parse(bytes), "the profile refuses it now")
        try log.forgeHistory(raw: [(good.identity, try good.encode()), (oldName, bytes)])
        try await log.withServer { server in
            let (status, data) = try await server.client.raw("GET", "/v1/entries?start=0&end=2")
            XCTAssertEqual(status, 200, String(decoding: data, as: UTF8.self))
            let page = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            let entries = try XCTUnwrap(page?["entries"] as? [[String: Any]])
            XCTAssertEqual(entries.count, 2)
            XCTAssertNil(entries[0]["malformed"])
            XCTAssertEqual(entries[1]["entry"] as? String, Base64.encode(bytes))
            XCTAssertTrue((entries[1]["malformed"] as? String)?.contains("U+34F") ?? false, "\(entries[1])")
            let report = await auditor(server, log, state: TestLog.temporaryDirectory("audit")).run()
            XCTAssertEqual(report.alerts.map(\.kind), [.malformedEntry], report.text)
            XCTAssertEqual(report.alerts.first?.index, 1)
        }
    }

    /// A key on the curve but outside the main subgroup (a valid key plus a point of order 8): it
    /// passes the form check auditors apply to keys nobody watches, and every client refuses it.
    /// For a watched identity the auditor checks in full and alerts; a lookup refuses it; the log's
    /// own server never stores one (its publish check is the full one).
    func testKeyOutsideTheMainSubgroupIsAnAlertForWatchersAndRefusedByLookups() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let owner = Ed25519.generate()
        let torsioned = try Self.withTorsion(owner.publicKey)
        let forged = KeyEntry(timestampMillis: Sequencer.nowMillis() - 5000, identity: "alice@example.com", keyType: .ed25519, publicKey: torsioned)
        XCTAssertThrowsError(try forged.encode(), "the full check refuses it")
        let unwatched = KeyEntry(timestampMillis: Sequencer.nowMillis() - 4000, identity: "bob@example.com", keyType: .ed25519, publicKey: torsioned)
        try log.forgeHistory(raw: [(forged.identity, try forged.encode(keys: .form)), (unwatched.identity, try unwatched.encode(keys: .form))])
        try await log.withServer { server in
            var o = Auditor.Options(stateDirectory: TestLog.temporaryDirectory("audit"), logKey: log.verifierKey)
            // (A watch file refuses such a key itself: it lists the owner's real one.)
            o.watch = try WatchList(text: "alice@example.com ed25519 \(Base64.encode(owner.publicKey))\n")
            let report = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(report.alerts.map(\.kind), [.malformedEntry, .injectedKey], report.text)
            XCTAssertEqual(report.alerts.map(\.index), [0, 0], "the watched identity's entry; bob's is left to the clients that use it")
            for id in ["alice@example.com", "bob@example.com"] {
                let lookup = KeyLookup(client: server.client, options: .init(logKey: log.verifierKey, stateDirectory: nil))
                do {
                    _ = try await lookup.run(identity: id)
                    XCTFail("a lookup of \(id) accepted a key outside the main subgroup")
                } catch {}
            }
            // And the server refuses to publish it.
            let (status, _) = try await server.client.raw("POST", "/v1/keys", body: Data("{\"identity\":\"carol@example.com\",\"key_type\":\"ed25519\",\"public_key\":\"\(Base64.encode(torsioned))\"}".utf8),
                                                         headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
            XCTAssertEqual(status, 400)
        }
    }

    static func withTorsion(_ key: [UInt8]) throws -> [UInt8] {
        var r = [UInt8](repeating: 0, count: 32)
        let order8 = Hex.decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")!
        guard crypto_core_ed25519_add(&r, key, order8) == 0 else { throw KeyEntry.EntryError.malformed("add failed") }
        return r
    }

    // The honest case: a growing log audited again and again never alerts.
    func testHonestLogAuditedRepeatedlyNeverAlerts() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            var watched: [(String, KeyType, [UInt8])] = []
            var seed: [UInt8]?
            var total: UInt64 = 0
            for round in 0..<6 {
                // Watched owner rotates with their own key each round; others publish around them.
                let next = Ed25519.generate()
                let publisher = Publisher(client: server.client, logKey: log.verifierKey)
                _ = try await publisher.publish(identity: "owner@example.com", keyType: .ed25519, publicKey: next.publicKey,
                                                token: seed == nil ? log.token : nil, signingSeed: seed)
                seed = next.seed
                watched.append(("owner@example.com", .ed25519, next.publicKey))
                let n = [0, 1, 255, 256, 300, 17][round]
                try await withThrowingTaskGroup(of: Void.self) { g in
                    for i in 0..<n { g.addTask { try await log.publish(server, identity: "crowd-\(round)-\(i)") } }
                    try await g.waitForAll()
                }
                total += UInt64(n + 1)
                let report = await auditor(server, log, state: state, watch: try watchList(watched)).run()
                XCTAssertEqual(report.status, .ok, "round \(round): \(report.text)")
                XCTAssertEqual(report.size, total)
                XCTAssertEqual(report.entriesChecked, UInt64(n + 1))
                XCTAssertTrue(report.notices.isEmpty, report.notices.joined())
            }
            // Nothing new: still quiet.
            let idle = await auditor(server, log, state: state, watch: try watchList(watched)).run()
            XCTAssertEqual(idle.status, .ok)
            XCTAssertEqual(idle.entriesChecked, 0)
        }
    }

    func testPinnedVerifierKeyCannotBeSwitchedSilently() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            try await log.publish(server, identity: "p")
            let baseline = await auditor(server, log, state: state).run()
            XCTAssertEqual(baseline.status, .ok, baseline.text)
            var o = Auditor.Options(stateDirectory: state, logKey: try NoteSigner.generate(name: log.verifierKey.name).verifierKey)
            o.watch = nil
            let report = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(report.exitCode, 1)
            XCTAssertTrue(report.error?.contains("refusing to switch keys") ?? false, report.error ?? "")
        }
    }

    func testInterruptedAuditResumesWithoutFalseAlarm() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let owner = Ed25519.generate()
            try await log.publish(server, identity: "watched", key: owner.publicKey)
            try await withThrowingTaskGroup(of: Void.self) { g in
                for i in 0..<1200 { g.addTask { try await log.publish(server, identity: "bulk\(i)") } }
                try await g.waitForAll()
            }
            let injected = try await log.publish(server, identity: "watched")  // an injected key early in the log
            for i in 0..<600 { try await log.publish(server, identity: "late\(i)") }
            let watch = try watchList([("watched", .ed25519, owner.publicKey)])

            // Kill the audit part-way: cancel it from its own progress callback after ~1000 entries.
            var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
            o.watch = watch
            o.saveEvery = 256
            o.prefetch = 1
            let holder = TaskHolder()
            o.progress = { done, _ in if done >= 1300 { holder.cancel() } }
            let auditor = Auditor(client: server.client, options: o)
            let task = Task { await auditor.run() }
            holder.set(task)
            let interrupted = await task.value
            // The alert found before the interruption stands (exit 2) and is already on disk.
            XCTAssertEqual(interrupted.exitCode, 2, interrupted.text)
            XCTAssertEqual(interrupted.alerts.map(\.kind), [.injectedKey], interrupted.text)
            XCTAssertNotNil(interrupted.error, "the run was interrupted")
            XCTAssertEqual(try alertLines(state).map(\.kind), [.injectedKey])

            o.progress = nil
            let resumed = await Auditor(client: server.client, options: o).run()
            XCTAssertTrue(resumed.notices.contains { $0.hasPrefix("resuming") }, resumed.notices.joined(separator: "; "))
            XCTAssertEqual(resumed.alerts.map(\.kind), [.injectedKey], resumed.text)
            XCTAssertEqual(resumed.alerts.first?.index, injected.index)
            XCTAssertEqual(resumed.size, 1802)
            XCTAssertEqual(try alertLines(state).map(\.kind), [.injectedKey], "the resumed run does not write the alert twice")
            let quiet = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(quiet.status, .ok, quiet.text)
        }
    }
}

/// The alerts an auditor wrote to STATE/alerts.jsonl.
func alertLines(_ state: String) throws -> [Alert] {
    try Files.readText(state + "/alerts.jsonl").split(separator: "\n").map { try JSONDecoder().decode(Alert.self, from: Data($0.utf8)) }
}

/// Lets a progress callback cancel the task running the audit.
final class TaskHolder: @unchecked Sendable {
    // @unchecked: `task` is only read and written under `lock`.
    private let lock = NSLock()
    private var task: Task<AuditReport, Never>?
    func set(_ t: Task<AuditReport, Never>) { lock.withLock { task = t } }
    func cancel() { lock.withLock { task?.cancel() } }
}
