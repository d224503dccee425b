import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
@testable import KeyglassLog
import KeyglassTestSupport
import XCTest

/// What a lookup shows must be what auditors check. The operator holds the signing key and the
/// database and puts a front end of its choosing before the log; each test is an attack that a
/// lookup used to accept, and must now refuse.
final class LookupViewTests: XCTestCase {
    func lookup(_ client: LogClient, _ log: TestLog, state: String?, configure: (inout KeyLookup.Options) -> Void = { _ in }) -> KeyLookup {
        var o = KeyLookup.Options(logKey: log.verifierKey, stateDirectory: state)
        configure(&o)
        return KeyLookup(client: client, options: o)
    }

    func refusal(_ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line) async -> VerificationError? {
        do {
            try await body()
            XCTFail("expected the lookup to be refused", file: file, line: line)
            return nil
        } catch let e as VerificationError {
            return e
        } catch {
            XCTFail("expected a verification error, got \(error)", file: file, line: line)
            return nil
        }
    }

    /// The log's data directory copied (same signing key), a key injected for alice in the copy, and
    /// a front end that sends `/v1/keys/*` to the copy and everything else to the honest log.
    func testForkServedOnlyToLookupsIsRefused() async throws {
        let honest = try await TestLog()
        defer { honest.remove() }
        let alice = Ed25519.generate()
        try await honest.withServer { server in
            try await honest.publish(server, identity: "alice@example.com", key: alice.publicKey)
            for i in 0..<7 { try await honest.publish(server, identity: "pad\(i)") }
        }
        let fork = try await TestLog(copying: honest)
        defer { fork.remove() }
        let honestServer = try await honest.start()
        let forkServer = try await fork.start()
        let state = TestLog.temporaryDirectory("lookup")
        let auditState = TestLog.temporaryDirectory("audit")
        do {
            let injected = Ed25519.generate().publicKey
            try await fork.publish(forkServer, identity: "alice@example.com", key: injected)
            try await honest.publish(honestServer, identity: "bob@example.com")  // both logs now hold a tree of size 9
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/v1/keys/") ? .forward(forkServer.client) : .forward(honestServer.client)
            }
            defer { Task { await front.stop() } }

            // The auditor, through the same front end, sees the honest log and is content.
            var o = Auditor.Options(stateDirectory: auditState, logKey: honest.verifierKey)
            o.watch = try WatchList(text: "alice@example.com ed25519 \(Base64.encode(alice.publicKey))\n")
            let audit = await Auditor(client: front.client(), options: o).run()
            XCTAssertEqual(audit.status, .ok, audit.text)

            // The lookup, with no state of its own yet, is refused: the answer's tree (size 9, the
            // fork) and the log's /checkpoint (size 9, honest) have different roots.
            let error = await refusal { _ = try await self.lookup(front.client(), honest, state: state).run(identity: "alice@example.com") }
            guard case .splitView = error else { return XCTFail("expected a split view, got \(String(describing: error))") }
            let stateFile = try XCTUnwrap(lookup(front.client(), honest, state: state).checkpointFile)
            XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile), "a refused answer is not remembered")

            // The fork stacked on a smaller head: honest at 9 (bob) — so take the fork's own view of
            // size 8 as the head, with lookups and proofs from the fork. Pinned to the head, the
            // lookup asks the fork for the tree of size 8, where the injected key is not: it is
            // never shown.
            let stackedHead = try XCTUnwrap(try honestServer.store.checkpoint(size: 8)).note
            let stacked = try await FrontEnd.start { _, target in
                target == "/checkpoint" ? .body(Data(stackedHead.utf8), contentType: "text/plain") : .forward(forkServer.client)
            }
            defer { Task { await stacked.stop() } }
            let pinned = try await lookup(stacked.client(), honest, state: nil).run(identity: "alice@example.com")
            XCTAssertEqual(pinned.entries.map(\.entry.publicKey), [alice.publicKey], "the key stacked past the head is not shown")

            // A front end that forks everything fools a lone client once — but its checkpoint,
            // handed to the auditor, is a split view, and the auditor's, handed to the lookup, too.
            let forked = try await FrontEnd.start { _, _ in .forward(forkServer.client) }
            defer { Task { await forked.stop() } }
            let proofs = TestLog.temporaryDirectory("proofs")
            let seen = try await lookup(forked.client(), honest, state: state).run(identity: "alice@example.com")
            XCTAssertEqual(seen.entries.last?.entry.publicKey, injected)
            for (e, proof) in zip(seen.entries, seen.proofs) {
                try FileManager.default.createDirectory(atPath: proofs, withIntermediateDirectories: true)
                try Files.writeAtomically(TLogProof(extra: e.bytes, index: e.index, proof: proof, checkpoint: seen.note).serialized, to: "\(proofs)/\(e.index).tlog-proof")
            }
            for handed in [stateFile, "\(proofs)/\(seen.entries.last!.index).tlog-proof"] {
                var compared = o
                compared.otherViews = [try OtherView.read(handed)]
                let report = await Auditor(client: honestServer.client, options: compared).run()
                XCTAssertEqual(report.alerts.map(\.kind), [.splitView], "\(handed): \(report.text)")
                XCTAssertEqual(report.alerts.first?.evidence.count, 2)
            }
            let againstAuditor = await refusal {
                _ = try await self.lookup(forked.client(), honest, state: TestLog.temporaryDirectory("lookup")) {
                    $0.otherViews = [try! OtherView.read(auditState)]
                }.run(identity: "alice@example.com")
            }
            guard case .splitView = againstAuditor else { return XCTFail("expected a split view, got \(String(describing: againstAuditor))") }

            // And once the lookup has seen the fork, the honest log's answer is refused in turn.
            let back = await refusal { _ = try await self.lookup(honestServer.client, honest, state: state).run(identity: "alice@example.com") }
            guard case .splitView = back else { return XCTFail("expected a split view, got \(String(describing: back))") }
        } catch {
            XCTFail("\(error)")
        }
        await honestServer.stop()
        await forkServer.stop()
    }

    /// A witness cosigns only the history it has seen grow; a lookup that requires its cosignature
    /// refuses the fork, which has none.
    func testLookupRequiringWitnessesRefusesUncosignedFork() async throws {
        let honest = try await TestLog()
        defer { honest.remove() }
        let witness = try await RunningWitness.start(name: "witness.example/w1", logs: [honest.verifierKey], state: TestLog.temporaryDirectory("witness"))
        let server = try await honest.start(witnesses: [witness.config], heartbeat: .milliseconds(50))
        let fork = try await TestLog(copying: honest)
        defer { fork.remove() }
        let forkServer = try await fork.start()
        do {
            try await honest.publish(server, identity: "bob@example.com")
            try await fork.publish(forkServer, identity: "bob@example.com")
            // Wait for the witness to cosign the honest checkpoint (bounded).
            var cosigned = false
            for _ in 0..<200 where !cosigned {
                cosigned = try await server.client.checkpoint().contains("witness.example/w1")
                if !cosigned { try await Task.sleep(for: .milliseconds(25)) }
            }
            XCTAssertTrue(cosigned, "the witness never cosigned")
            let policy: (inout KeyLookup.Options) -> Void = { $0.witnesses = [witness.witness.verifierKey]; $0.quorum = 1 }
            let ok = try await lookup(server.client, honest, state: nil, configure: policy).run(identity: "bob@example.com")
            XCTAssertEqual(ok.entries.count, 1)
            let error = await refusal { _ = try await self.lookup(forkServer.client, honest, state: nil, configure: policy).run(identity: "bob@example.com") }
            guard case .witnesses = error else { return XCTFail("expected the witness policy to refuse, got \(String(describing: error))") }
            // Cosigned, but by a witness last heard from an hour ago (the client's clock an hour on):
            // a frozen view is refused too.
            let later = UInt64(Date().timeIntervalSince1970) + 3600
            let frozen = await refusal {
                _ = try await self.lookup(server.client, honest, state: nil) {
                    policy(&$0)
                    $0.maxAge = 60
                    $0.now = { later }
                }.run(identity: "bob@example.com")
            }
            guard case .witnesses(let why) = frozen, why.contains("old") else { return XCTFail("expected a stale cosignature, got \(String(describing: frozen))") }
        } catch {
            XCTFail("\(error)")
        }
        await server.stop()
        await forkServer.stop()
        await witness.stop()
    }

    /// An older answer replayed against a newer log, and an answer missing the identity's first
    /// entry, are refused; a history longer than the server's page is read whole.
    func testStaleAndGappedAnswersAreRefusedAndLongHistoriesPaged() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer(configure: { $0.maxKeysPerIdentity = 3 }) { server in
            var seed: [UInt8]?
            let publisher = Publisher(client: server.client, logKey: log.verifierKey)
            for _ in 0..<7 {
                let next = Ed25519.generate()
                _ = try await publisher.publish(identity: "carol@example.com", keyType: .ed25519, publicKey: next.publicKey,
                                                token: seed == nil ? log.token : nil, signingSeed: seed)
                seed = next.seed
                try await log.publish(server, identity: "crowd-\(UUID().uuidString.prefix(8))")
            }
            let state = TestLog.temporaryDirectory("lookup")
            // Seven entries, three a page: the lookup pages back to the first one.
            let whole = try await lookup(server.client, log, state: state).run(identity: "carol@example.com")
            XCTAssertEqual(whole.notices, [])
            // State under another key for the same log name is said out loud.
            let other = try NoteSigner.generate(name: log.verifierKey.name).verifierKey
            let otherDir = try XCTUnwrap(KeyLookup(client: server.client, options: .init(logKey: other, stateDirectory: state)).checkpointFile)
            try FileManager.default.createDirectory(atPath: (otherDir as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let warned = try await lookup(server.client, log, state: state).run(identity: "carol@example.com")
            XCTAssertTrue(warned.notices.first?.contains("under another key") ?? false, "\(warned.notices)")
            XCTAssertEqual(whole.entries.count, 7)
            XCTAssertNil(whole.entries.first?.entry.previousIndex)
            XCTAssertEqual(whole.authorisations, [.first] + Array(repeating: .chained, count: 6))
            // A client holds at most maxHistoryEntries before verifying: a log that pages without
            // end (full pages, always "truncated") cannot grow the history until memory runs out.
            var capped = KeyLookup.Options(logKey: log.verifierKey, stateDirectory: nil)
            capped.maxHistoryEntries = 5
            let tooLong = await refusal { _ = try await KeyLookup(client: server.client, options: capped).run(identity: "carol@example.com") }
            guard case .entry(let why) = tooLong, why.contains("more than 5 entries") else { return XCTFail("expected the history cap, got \(String(describing: tooLong))") }
            capped.maxHistoryEntries = 7
            let atTheCap = try await KeyLookup(client: server.client, options: capped).run(identity: "carol@example.com")
            XCTAssertEqual(atTheCap.entries.count, 7)

            // The operator keeps an old answer and replays it after the log has grown.
            let old = try await server.client.raw("GET", "/v1/keys/carol@example.com").1
            try await log.publish(server, identity: "dave@example.com")
            _ = try await lookup(server.client, log, state: state).run(identity: "dave@example.com")
            let replay = try await FrontEnd.start { _, target in
                target.hasPrefix("/v1/keys/carol") && !target.contains("before=") ? .body(old, contentType: "application/json") : .forward(server.client)
            }
            defer { Task { await replay.stop() } }
            let stale = await refusal { _ = try await self.lookup(replay.client(), log, state: state).run(identity: "carol@example.com") }
            guard case .checkpoint(let why) = stale, why.contains("tree of size") else { return XCTFail("expected an answer against an older tree to be refused, got \(String(describing: stale))") }
            // The operator serves an old /checkpoint too: older than what this client has seen.
            let staleHeadNote = try await replayNote(log, server, size: 8)
            let staleHead = try await FrontEnd.start { _, target in
                target == "/checkpoint" ? .body(Data(staleHeadNote.utf8), contentType: "text/plain") : .forward(server.client)
            }
            defer { Task { await staleHead.stop() } }
            let staleView = await refusal { _ = try await self.lookup(staleHead.client(), log, state: state).run(identity: "carol@example.com") }
            guard case .stale = staleView else { return XCTFail("expected a stale view, got \(String(describing: staleView))") }

            // The front end hides carol's first entries (drops every older page): a gap.
            let gap = try await FrontEnd.start { method, target in
                target.contains("before=") ? .fail(404) : .forward(server.client)
            }
            defer { Task { await gap.stop() } }
            let gapped = await refusal { _ = try await self.lookup(gap.client(), log, state: nil).run(identity: "carol@example.com") }
            guard case .entry(let why) = gapped, why.contains("leaves out") || why.contains("names an earlier entry") else {
                return XCTFail("expected a gap, got \(String(describing: gapped))")
            }
        }
    }

    /// The signed checkpoint of `size` the log once served (every one is kept), as an old view.
    func replayNote(_ log: TestLog, _ server: RunningServer, size: UInt64) async throws -> String {
        try XCTUnwrap(try server.store.checkpoint(size: size)).note
    }

    /// An operator running modified software logs a "chained" entry whose signature is 64 random
    /// bytes (past the rule that `PublishRequest.chained` applies: the test reaches the unchecked
    /// initialiser, as modified software would). The lookup refuses it; the auditor alerts for a
    /// watched identity and, when asked to check unwatched rotations, notes it for others.
    func testForgedRotationSignatureIsRefusedByEveryReader() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let erin = Ed25519.generate()
            let first = try await log.publish(server, identity: "erin@example.com", key: erin.publicKey)
            let other = try await log.publish(server, identity: "frank@example.com")
            let forgedKey = Ed25519.generate().publicKey
            let junk = (0..<64).map { _ in UInt8.random(in: 0...255) }
            for (identity, previous) in [("erin@example.com", first.index), ("frank@example.com", other.index)] {
                _ = try await server.sequencer.submit(PublishRequest(identity: identity, keyType: .ed25519, publicKey: forgedKey,
                                                                      authorization: .chained(previousIndex: previous, signature: junk)))
            }
            for i in 0..<300 { try await log.publish(server, identity: "pad\(i)") }

            let error = await refusal { _ = try await self.lookup(server.client, log, state: nil).run(identity: "erin@example.com") }
            guard case .entry(let why) = error, why.contains("signature") else { return XCTFail("expected a bad signature, got \(String(describing: error))") }

            // By default the auditor leaves unwatched rotations to the clients that look them up
            // (the lookup above refused erin's): frank's forgery is not reported...
            var o = Auditor.Options(stateDirectory: TestLog.temporaryDirectory("audit"), logKey: log.verifierKey)
            o.watch = try WatchList(text: "erin@example.com ed25519 \(Base64.encode(erin.publicKey))\n")
            let byDefault = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(Set(byDefault.alerts.map(\.kind)), [.brokenChain, .injectedKey], byDefault.text)
            XCTAssertFalse(byDefault.notices.contains { $0.contains("frank@example.com") }, byDefault.notices.joined(separator: "\n"))
            let frankLookup = await refusal { _ = try await self.lookup(server.client, log, state: nil).run(identity: "frank@example.com") }
            guard case .entry(let frankWhy) = frankLookup, frankWhy.contains("signature") else { return XCTFail("frank's lookup: \(String(describing: frankLookup))") }
            // ...and with --check-unwatched-rotations it is a notice.
            o = Auditor.Options(stateDirectory: TestLog.temporaryDirectory("audit"), logKey: log.verifierKey)
            o.watch = try WatchList(text: "erin@example.com ed25519 \(Base64.encode(erin.publicKey))\n")
            o.checkUnwatchedRotations = true
            let report = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(Set(report.alerts.map(\.kind)), [.brokenChain, .injectedKey], report.text)
            XCTAssertTrue(report.alerts.contains { $0.kind == .brokenChain && $0.message.contains("signature") }, report.text)
            XCTAssertTrue(report.notices.contains { $0.contains("frank@example.com") && $0.contains("signature") }, report.notices.joined(separator: "\n"))

            // The next run: a forgery naming an entry audited in an earlier run (read again and
            // proved by an inclusion proof, not by this run's tile hashes), and an honest rotation.
            let (gina, hank) = (Ed25519.generate(), Ed25519.generate())
            let ginaFirst = try await log.publish(server, identity: "gina@example.com", key: gina.publicKey)
            try await log.publish(server, identity: "hank@example.com", key: hank.publicKey)
            _ = await Auditor(client: server.client, options: o).run()
            _ = try await server.sequencer.submit(PublishRequest(identity: "gina@example.com", keyType: .ed25519, publicKey: forgedKey,
                                                                  authorization: .chained(previousIndex: ginaFirst.index, signature: junk)))
            // hank rotates with his own key: an honest chained entry whose previous entry is old too.
            _ = try await Publisher(client: server.client, logKey: log.verifierKey)
                .publish(identity: "hank@example.com", keyType: .ed25519, publicKey: Ed25519.generate().publicKey, token: nil, signingSeed: hank.seed)
            let later = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(later.alerts, [], later.text)
            XCTAssertEqual(later.notices.filter { $0.contains("signature") }.count, 1, later.notices.joined(separator: "\n"))
            XCTAssertTrue(later.notices.contains { $0.contains("gina@example.com") }, later.notices.joined(separator: "\n"))
        }
    }
}
