import Foundation
import KeyglassClient
import KeyglassCore
@testable import KeyglassLog
import KeyglassTestSupport
import XCTest

/// The sequencer against a storage engine that fails (`FaultyStorage`), a second writer on the same
/// database, and a clock the test steps: what a networked engine will do to it, played on SQLite.
final class SequencerTests: XCTestCase {
    private func publish(_ server: RunningServer, _ identity: String) async -> Result<PublishReceipt, PublishError> {
        await withCheckedContinuation { c in
            server.sequencer.submit(PublishRequest(identity: identity, keyType: .x25519, publicKey: Ed25519.randomBytes(32))) { c.resume(returning: $0) }
        }
    }

    /// Every checkpoint the log stores is consistent with its newest one, and there is one per size.
    private func assertOneTree(_ server: RunningServer, _ log: TestLog, file: StaticString = #filePath, line: UInt = #line) throws {
        let newest = try XCTUnwrap(try server.store.latestCheckpoint(), file: file, line: line)
        let opened = try AnswerVerifier.openCheckpoint(newest.note, logKey: log.verifierKey).checkpoint
        XCTAssertEqual(opened.root, newest.root, file: file, line: line)
        for size in 1..<newest.size {
            guard let cp = try server.store.checkpoint(size: size) else { continue }
            let proof = try server.store.consistencyProof(from: size, to: newest.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: size, size2: newest.size, root1: cp.root, root2: newest.root, proof: proof),
                             "checkpoint \(size)", file: file, line: line)
        }
        XCTAssertEqual(try log.scalar("SELECT count(*) FROM entries"), Int64(newest.size), file: file, line: line)
    }

    func testAppendThatFailsBeforeWritingLeavesNoGapAndNoCheckpoint() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var faulty: FaultyStorage!
        try await log.withServer(wrapStorage: { faulty = FaultyStorage($0); return faulty }) { server in
            guard case .success(let first) = await publish(server, "a@example.com") else { return XCTFail("first publish") }
            faulty.failNextAppend(.beforeWrite)
            guard case .failure(.storage(let message)) = await publish(server, "b@example.com") else { return XCTFail("the failed append is reported") }
            XCTAssertTrue(message.contains("append failed before writing"), message)
            XCTAssertEqual(server.sequencer.latestCheckpoint.size, 1, "the edge did not move")
            XCTAssertEqual(try server.store.checkpointCount(), 2)
            // A lookup failing before the batch is built: nothing tried, nothing written.
            faulty.failNextLookup()
            let appendsBefore = faulty.appendCalls
            guard case .failure(.storage) = await publish(server, "c@example.com") else { return XCTFail("the failed lookup is reported") }
            XCTAssertEqual(faulty.appendCalls, appendsBefore, "no append without the identities' newest entries")
            // The log goes on with the next index: no gap.
            guard case .success(let next) = await publish(server, "b@example.com") else { return XCTFail("publish after the fault") }
            XCTAssertEqual(first.index, 0)
            XCTAssertEqual(next.index, 1)
            try assertOneTree(server, log)
        }
    }

    /// An engine across a network can lose the answer to a COMMIT: the append reports failure but
    /// the batch is stored. The sequencer reads the head again, finds its own batch, answers it and
    /// continues from what is stored, instead of signing a second, different tree of the same size.
    func testAppendThatCommitsButReportsFailureIsAdoptedNotForked() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var faulty: FaultyStorage!
        try await log.withServer(wrapStorage: { faulty = FaultyStorage($0); return faulty }) { server in
            for id in ["a@example.com", "b@example.com"] { guard case .success = await publish(server, id) else { return XCTFail(id) } }
            faulty.failNextAppend(.afterCommit)
            // The sequencer finds its own batch stored: the publish is answered, not failed (a
            // failure would make the client publish the same key twice).
            guard case .success(let lost) = await publish(server, "lost-answer@example.com") else { return XCTFail("the committed batch is answered") }
            XCTAssertEqual(lost.index, 2)
            XCTAssertEqual(server.sequencer.latestCheckpoint.size, 3, "the committed batch was adopted")
            XCTAssertEqual(server.sequencer.latestCheckpoint, lost.checkpoint)
            guard case .success(let next) = await publish(server, "c@example.com") else { return XCTFail("publish after the fault") }
            XCTAssertEqual(next.index, 3)
            XCTAssertEqual(next.checkpoint.size, 4)
            // The entry whose answer was lost is in the log, found by lookups, and the tree is one.
            let keys = try await server.client.keys(identity: "lost-answer@example.com")
            XCTAssertEqual(keys.entries.map(\.index), [2])
            XCTAssertNoThrow(try AnswerVerifier.verifyLookup(keys, logKey: log.verifierKey, identity: "lost-answer@example.com"))
            try assertOneTree(server, log)
        }
    }

    /// Two writers on one database (two servers on one SQLite file, or two sequencers on one
    /// PostgreSQL log): `append` is a compare-and-swap on the newest checkpoint, so the one that
    /// extends a stale head writes nothing, and then continues from what the other wrote.
    func testSecondWriterMakesTheStaleOneLoseTheCompareAndSwap() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for id in ["a@example.com", "b@example.com"] { guard case .success = await publish(server, id) else { return XCTFail(id) } }
            // Another writer: its own engine and sequencer on the same file, same key.
            let otherEngine = try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal)
            defer { otherEngine.close() }
            let other = try Sequencer(store: LogStore(storage: otherEngine), signer: try log.directory.loadSigner())
            let runner = Task { try await other.run() }
            let theirs = try await other.submit(PublishRequest(identity: "other@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32)))
            runner.cancel()
            _ = try? await runner.value
            XCTAssertEqual(theirs.index, 2)
            // The server's sequencer still thinks the log has 2 entries: its append must lose.
            guard case .failure(.storage(let message)) = await publish(server, "c@example.com") else { return XCTFail("the stale append is refused") }
            XCTAssertTrue(message.contains("another writer"), message)
            XCTAssertEqual(server.sequencer.latestCheckpoint, theirs.checkpoint, "continues from what the other wrote")
            guard case .success(let next) = await publish(server, "c@example.com") else { return XCTFail("publish after the conflict") }
            XCTAssertEqual(next.index, 3)
            let keys = try await server.client.keys(identity: "other@example.com")
            XCTAssertEqual(keys.entries.map(\.index), [2], "the other writer's entry is found (the pending index was rebuilt)")
            try assertOneTree(server, log)
        }
    }

    /// A head that does not extend what this sequencer signed (storage rewritten behind its back
    /// while another writer appended) is not adopted: publishes fail from then on, and the log
    /// never signs a tree on top of a history it did not sign.
    func testHeadThatDoesNotExtendTheSignedOneIsNotAdopted() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for id in ["a@example.com", "b@example.com"] { guard case .success = await publish(server, id) else { return XCTFail(id) } }
            let signed = server.sequencer.latestCheckpoint
            let otherEngine = try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal)
            defer { otherEngine.close() }
            let other = try Sequencer(store: LogStore(storage: otherEngine), signer: try log.directory.loadSigner())
            let runner = Task { try await other.run() }
            _ = try await other.submit(PublishRequest(identity: "other@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32)))
            runner.cancel()
            _ = try? await runner.value
            // The stored checkpoint of the size this sequencer signed now says another root.
            try log.tamper("UPDATE checkpoints SET root = zeroblob(32) WHERE size = 2")
            for id in ["c@example.com", "d@example.com"] {
                guard case .failure(.storage) = await publish(server, id) else { return XCTFail("\(id) is refused") }
            }
            XCTAssertEqual(server.sequencer.latestCheckpoint, signed, "nothing adopted")
            XCTAssertEqual(try server.store.latestCheckpoint()?.size, 3, "and nothing written on top")
        }
    }

    /// An index merge under way when a second writer appends and merges further: the engine
    /// rebuilds its pending rows from the table, the merge completes by index (dropping nothing it
    /// did not merge, never moving indexed_size back), and every entry is still found.
    func testMergeUnderWayWhenAnotherWriterAppends() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var mergeOptions = IndexMergeFollower.Options()
        mergeOptions.mergeAt = 300
        mergeOptions.chunk = 300
        mergeOptions.slice = .zero  // 256 rows per slice
        try await log.withServer(merges: nil) { server in
            let merges = IndexMergeFollower(storage: server.sqlite, options: mergeOptions)
            var got: [String: [UInt64]] = [:]
            for n in 0..<300 {
                let id = "m\(n % 30)@example.com"
                guard case .success(let r) = await publish(server, id) else { return XCTFail(id) }
                got[id, default: []].append(r.index)
            }
            XCTAssertTrue(merges.mergeDue(), "first slice of the merge of rows 0..<300")
            let otherEngine = try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal)
            defer { otherEngine.close() }
            let other = try Sequencer(store: LogStore(storage: otherEngine), signer: try log.directory.loadSigner())
            let runner = Task { try await other.run() }
            let theirs = try await other.submit(PublishRequest(identity: "m7@example.com", keyType: .x25519, publicKey: Ed25519.randomBytes(32)))
            runner.cancel()
            _ = try? await runner.value
            // And the other writer merges the whole index (indexed_size moves to 301 under our merge).
            XCTAssertTrue(IndexMergeFollower(storage: otherEngine).mergeAll())
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 301)
            got["m7@example.com"]!.append(theirs.index)
            guard case .failure = await publish(server, "m8@example.com") else { return XCTFail("the stale append loses") }
            guard case .success(let after) = await publish(server, "m8@example.com") else { return XCTFail("then continues") }
            got["m8@example.com"]!.append(after.index)
            // Our merge of rows 0..<300 completes: it drops nothing newer than what it merged, and
            // does not move indexed_size back.
            while merges.mergeDue() {}
            XCTAssertEqual(server.sqlite.pendingIndex.indexedSize, 301)
            XCTAssertEqual(server.sqlite.pendingIndex.count, 1)
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 301)
            for (id, indices) in got {
                let keys = try await server.client.keys(identity: id)
                XCTAssertEqual(keys.entries.map(\.index), indices, id)
            }
            XCTAssertTrue(merges.mergeAll())
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 302)
            XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 302)
        }
    }

    /// Time is stepped, not slept: entry timestamps follow the clock, never go back when it does,
    /// and a clock that falls more than `maxClockSkew` behind the newest entry stops publishes
    /// until it catches up.
    func testTimestampsFollowASteppedClock() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let t0: UInt64 = 1_900_000_000_000
        let clock = SteppedClock(t0)
        var options = Sequencer.Options()
        options.clock = clock.function
        options.maxClockSkew = .seconds(300)
        func stamp(_ server: RunningServer, _ identity: String) async throws -> UInt64 {
            try KeyEntry.parse(try await publish(server, identity).get().entry).timestampMillis
        }
        try await log.withServer(options: options) { server in
            let s1 = try await stamp(server, "a@example.com")
            XCTAssertEqual(s1, t0)
            clock.advance(by: 1_500)
            let s2 = try await stamp(server, "b@example.com")
            XCTAssertEqual(s2, t0 + 1_500)
            clock.set(t0 - 60_000)  // stepped back a minute (NTP): carried, never earlier
            let s3 = try await stamp(server, "c@example.com")
            XCTAssertEqual(s3, t0 + 1_500)
            clock.set(t0 - 600_000)  // ten minutes behind the newest entry: refused
            guard case .failure(.futureTimestamp(let newest, let now, let skew)) = await publish(server, "d@example.com") else {
                return XCTFail("a clock far behind the newest entry refuses publishes")
            }
            XCTAssertEqual(newest, t0 + 1_500)
            XCTAssertEqual(now, t0 - 600_000)
            XCTAssertEqual(skew, 300_000)
            clock.set(t0 + 2_000)  // caught up
            let s4 = try await stamp(server, "d@example.com")
            XCTAssertEqual(s4, t0 + 2_000)
            XCTAssertEqual(server.sequencer.latestCheckpoint.size, 4)
        }
    }
}
