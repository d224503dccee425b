import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The lookup indexes are merged into SQLite behind the sequencer (`PendingIndex`): lookups must
/// find every entry whether its index row is merged or still pending, across restarts, and logs
/// of schema 1 must be migrated.
final class IndexMergeTests: XCTestCase {
    /// Publishes `rounds` × `identities` entries, identity by identity in turn, and returns the
    /// indices each identity got.
    private func publishRounds(_ log: TestLog, _ server: RunningServer, identities: [String], rounds: Int) async throws -> [String: [UInt64]] {
        var got: [String: [UInt64]] = [:]
        for _ in 0..<rounds {
            for id in identities {
                got[id, default: []].append(try await log.publish(server, identity: id).index)
            }
        }
        return got
    }

    private func assertLookups(_ server: RunningServer, _ log: TestLog, _ expected: [String: [UInt64]], file: StaticString = #filePath, line: UInt = #line) async throws {
        for (id, indices) in expected {
            let answer = try await server.client.keys(identity: id)
            XCTAssertEqual(answer.entries.map(\.index), indices, "lookup of \(id)", file: file, line: line)
            XCTAssertNoThrow(try AnswerVerifier.verifyLookup(answer, logKey: log.verifierKey, identity: id), file: file, line: line)
            for e in answer.entries {
                let (status, data) = try await server.client.raw("GET", "/v1/proof/inclusion?leaf_hash=\(e.leaf_hash.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&tree_size=\(answer.tree_size)")
                XCTAssertEqual(status, 200, String(decoding: data, as: UTF8.self), file: file, line: line)
                let proof = try JSONDecoder().decode(InclusionAnswer.self, from: data)
                XCTAssertEqual(proof.index, e.index, "proof by leaf hash of entry \(e.index)", file: file, line: line)
            }
        }
    }

    /// Follower options with merges of `rows` rows once as many wait (the defaults if nil), and
    /// the idle merge after `idle` of quiet (in effect never, by default).
    private func mergeOptions(every rows: Int? = nil, idle: Duration = .seconds(3600)) -> IndexMergeFollower.Options {
        var options = IndexMergeFollower.Options()
        if let rows {
            options.mergeAt = rows
            options.chunk = rows
        }
        options.idle = idle
        return options
    }

    /// A server whose follower does not run: the test steps it (`mergeDue`), with its `options`.
    private func steppedServer<T>(_ log: TestLog, _ options: IndexMergeFollower.Options, _ body: (RunningServer, IndexMergeFollower) async throws -> T) async throws -> T {
        try await log.withServer(merges: nil) { server in
            try await body(server, IndexMergeFollower(storage: server.sqlite, options: options))
        }
    }

    /// Waits (up to 5 s) for the idle merge to empty the pending rows.
    private func waitUntilQuietMergeDone(_ server: RunningServer, file: StaticString = #filePath, line: UInt = #line) async throws {
        var waited = 0
        while server.sqlite.pendingIndex.count > 0 && waited < 200 {
            try await Task.sleep(for: .milliseconds(25))
            waited += 1
        }
        XCTAssertEqual(server.sqlite.pendingIndex.count, 0, "merged once the log was quiet", file: file, line: line)
    }

    func testLookupsFindMergedAndPendingEntriesAcrossRestarts() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let options = mergeOptions(every: 5)  // merges only by count here
        let ids = ["alice@example.com", "bob@example.com", "carol@example.com"]
        let expected = try await steppedServer(log, options) { server, merges in
            var got: [String: [UInt64]] = [:]
            for _ in 0..<6 {
                for id in ids {
                    got[id, default: []].append(try await log.publish(server, identity: id).index)
                    while merges.mergeDue() {}
                }
            }
            // 18 entries: merges ran at 5, 10 and 15; 3 are pending.
            XCTAssertEqual(server.sqlite.pendingIndex.count, 3)
            XCTAssertEqual(server.sqlite.pendingIndex.indexedSize, 15)
            try await assertLookups(server, log, got)
            // Each publish named its identity's previous entry, whether merged or pending.
            for (id, indices) in got {
                let answer = try await server.client.keys(identity: id)
                for (n, e) in answer.entries.enumerated() {
                    let entry = try KeyEntry.parse(Base64.decode(e.entry)!)
                    XCTAssertEqual(entry.previousIndex, n == 0 ? nil : indices[n - 1], "\(id) entry \(e.index)")
                }
            }
            merges.mergeAll()
            return got
        }
        XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 18)
        XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 18)
        XCTAssertEqual(try log.scalar(TestLog.indexRows("leaf_index")), 18)

        // A crash leaves rows unmerged: play it by forgetting the last 7 merged rows.
        try log.tamper("UPDATE meta SET value = '11' WHERE key = 'indexed_size'")
        try log.forgetIndexRows("identity_index", from: 11)
        try log.forgetIndexRows("leaf_index", from: 11)
        try await log.withServer(merges: options) { server in
            XCTAssertEqual(server.sqlite.pendingIndex.count, 7, "rebuilt from the entries the index does not cover")
            try await assertLookups(server, log, expected)
            // And the log goes on from there.
            let more = try await log.publish(server, identity: "alice@example.com")
            var grown = expected
            grown["alice@example.com"]!.append(more.index)
            try await assertLookups(server, log, grown)
        }
    }

    /// A merge is written in slices: between slices part of its rows are in SQLite and all of them
    /// still pending, and lookups find each entry exactly once. Stepped by hand, slice by slice.
    func testMergeIsWrittenInSlices() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = mergeOptions(every: 300)
        options.slice = .zero  // a slice stops after its first 256 rows
        let indexedSize = "SELECT coalesce((SELECT value FROM meta WHERE key = 'indexed_size'), 0)"
        try await steppedServer(log, options) { server, merges in
            var got: [String: [UInt64]] = [:]
            func publish(_ n: Int) async throws {
                let id = "user\(n % 40)@example.com"
                got[id, default: []].append(try await log.publish(server, identity: id).index)
            }
            let identityRows = TestLog.indexRows("identity_index"), leafRows = TestLog.indexRows("leaf_index")
            for n in 0..<299 { try await publish(n) }
            XCTAssertFalse(merges.mergeDue(), "299 rows wait: no merge is due")
            try await publish(299)
            // 300 pending: the merge begins with 256 of its 600 index rows.
            XCTAssertTrue(merges.mergeDue())
            XCTAssertEqual(try log.scalar(identityRows), 256)
            XCTAssertEqual(try log.scalar(leafRows), 0)
            XCTAssertEqual(try log.scalar(indexedSize), 0, "indexed_size moves with the last slice only")
            XCTAssertEqual(server.sqlite.pendingIndex.count, 300, "rows stay pending until the merge completes")
            try await assertLookups(server, log, got.filter { ["user0@example.com", "user7@example.com", "user39@example.com"].contains($0.key) })
            // A publish between two slices, then the next slice: the other 44 identity rows, 212 leaf rows.
            try await publish(300)
            XCTAssertTrue(merges.mergeDue())
            XCTAssertEqual(try log.scalar(identityRows), 300)
            XCTAssertEqual(try log.scalar(leafRows), 212)
            XCTAssertEqual(try log.scalar(indexedSize), 0)
            XCTAssertEqual(server.sqlite.pendingIndex.count, 301)
            try await assertLookups(server, log, got.filter { ["user1@example.com", "user20@example.com"].contains($0.key) })
            // And the last slice completes it; the entry published meanwhile waits for the next merge.
            try await publish(301)
            XCTAssertTrue(merges.mergeDue())
            XCTAssertEqual(try log.scalar(leafRows), 300)
            XCTAssertEqual(try log.scalar(indexedSize), 300)
            XCTAssertEqual(server.sqlite.pendingIndex.count, 2)
            XCTAssertEqual(server.sqlite.pendingIndex.indexedSize, 300)
            XCTAssertFalse(merges.mergeDue(), "2 rows wait: no merge is due")
            try await assertLookups(server, log, got.filter { ["user0@example.com", "user21@example.com", "user22@example.com"].contains($0.key) })
        }
    }

    /// The follower runs on its own thread beside the sequencer: it merges while publishes go on,
    /// every row lands in SQLite exactly once, and a graceful stop merges what is left.
    func testFollowerMergesWhilePublishesGoOn() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let ids = (0..<10).map { "p\($0)@example.com" }
        let got = try await log.withServer(merges: mergeOptions(every: 40)) { server in
            let got = try await publishRounds(log, server, identities: ids, rounds: 15)  // 150 entries
            try await assertLookups(server, log, got)
            return got
        }
        XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 150)
        XCTAssertEqual(try log.scalar(TestLog.indexRows("leaf_index")), 150)
        XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 150, "merged on the way out")
        try await log.withServer(merges: mergeOptions(every: 40)) { server in
            XCTAssertEqual(server.sqlite.pendingIndex.count, 0)
            try await assertLookups(server, log, got)
        }
    }

    /// A crash between two slices: some rows of the merge are in SQLite beyond `indexed_size`.
    /// They are rebuilt as pending, lookups do not show them twice, and merging them again is
    /// harmless.
    func testCrashBetweenSlicesIsHarmless() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let ids = ["frank@example.com", "grace@example.com", "heidi@example.com"]
        let expected = try await log.withServer { server in try await publishRounds(log, server, identities: ids, rounds: 4) }
        XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 12)
        // The first slice of a merge of entries 5..11 committed (identity rows), the rest did not.
        try log.tamper("UPDATE meta SET value = '5' WHERE key = 'indexed_size'")
        try log.forgetIndexRows("leaf_index", from: 5)
        let options = mergeOptions(every: 2)
        try await log.withServer(merges: options) { server in
            XCTAssertEqual(server.sqlite.pendingIndex.count, 7)
            try await assertLookups(server, log, expected)
            let more = try await log.publish(server, identity: "grace@example.com")
            var grown = expected
            grown["grace@example.com"]!.append(more.index)
            try await assertLookups(server, log, grown)
        }
        XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 13)
        XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 13)
        XCTAssertEqual(try log.scalar(TestLog.indexRows("leaf_index")), 13)
    }

    /// Pending rows give candidates by 64-bit key; the store checks each against the entry. Keys
    /// that collide are played here by editing the entries behind the server's back.
    func testPendingCandidatesAreCheckedAgainstTheEntry() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let options = mergeOptions()
        try await log.withServer(merges: options) { server in
            for id in ["alice@example.com", "bob@example.com", "carol@example.com"] { try await log.publish(server, identity: id) }
        }
        // Entry 1's leaf hash now shares entry 0's lookup key (its first 8 bytes) but not the rest;
        // and nothing is merged, so all three are pending after the restart.
        // (The entries table stores each entry's lookup key; a real collision has equal ones.)
        try log.tamper("UPDATE entries SET leaf_hash = substr((SELECT leaf_hash FROM entries WHERE idx = 0), 1, 8) || substr(leaf_hash, 9), leaf_key = (SELECT leaf_key FROM entries WHERE idx = 0) WHERE idx = 1")
        try log.tamper("UPDATE meta SET value = '0' WHERE key = 'indexed_size'")
        try log.forgetIndexRows("identity_index", from: 0)
        try log.forgetIndexRows("leaf_index", from: 0)
        try await log.withServer(merges: options) { server in
            XCTAssertEqual(server.sqlite.pendingIndex.count, 3)
            for index in [UInt64(0), 1] {
                let entry = try XCTUnwrap(try server.store.entry(at: index))
                let hash = entry.leafHash.base64.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let (status, data) = try await server.client.raw("GET", "/v1/proof/inclusion?leaf_hash=\(hash)&tree_size=3")
                XCTAssertEqual(status, 200, String(decoding: data, as: UTF8.self))
                XCTAssertEqual(try JSONDecoder().decode(InclusionAnswer.self, from: data).index, index, "the entry whose whole leaf hash matches")
            }
            // Bob's pending row still carries his identity's key, but the entry now names someone
            // else: the lookup must not hand it out as Bob's.
            try log.tamper("UPDATE entries SET identity = 'mallory@example.com' WHERE idx = 1")
            let (status, body) = try await server.client.raw("GET", "/v1/keys/bob@example.com")
            XCTAssertEqual(status, 404, String(decoding: body, as: UTF8.self))
            let carol = try await server.client.keys(identity: "carol@example.com")
            XCTAssertEqual(carol.entries.map(\.index), [2])
        }
    }

    func testQuietLogMergesAfterIdleTime() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer(merges: mergeOptions(idle: .milliseconds(100))) { server in
            for i in 0..<4 { try await log.publish(server, identity: "quiet\(i)@example.com") }
            try await waitUntilQuietMergeDone(server)
            XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 4)
            try await assertLookups(server, log, ["quiet2@example.com": [2]])
        }
    }

    func testSchemaOneLogIsMigrated() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let ids = ["dave@example.com", "erin@example.com"]
        let expected = try await log.withServer { server in try await publishRounds(log, server, identities: ids, rounds: 3) }
        // Turn the database back into schema 1: the indexes on the entries table, no index tables' rows.
        try log.tamper("CREATE INDEX entries_by_identity ON entries(identity_key, idx)", requireChanges: false)
        try log.tamper("CREATE INDEX entries_by_leaf_hash ON entries(leaf_key)", requireChanges: false)
        try log.forgetIndexRows("identity_index", from: 0)
        try log.forgetIndexRows("leaf_index", from: 0)
        try log.tamper("DELETE FROM meta WHERE key = 'indexed_size'")
        try log.tamper("UPDATE meta SET value = '1' WHERE key = 'schema'")
        try await log.withServer { server in
            XCTAssertEqual(server.sqlite.pendingIndex.count, 0)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'entries_by_%'"), 0)
            XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 6)
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'schema'"), 3)
            try await assertLookups(server, log, expected)
        }
    }

    /// Merges land in the recent level; a compaction moves that level into the main one in key
    /// order, slice by slice. Between slices each row is in exactly one level, lookups find every
    /// entry once, and rows merged behind the compaction's cursor wait for the next compaction.
    func testCompactionMovesTheRecentLevelInSlices() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = mergeOptions(every: 100)
        options.compactAt = 300
        options.slice = .zero  // one step (256 rows) per slice
        let main = "SELECT count(*) FROM identity_index", recent = "SELECT count(*) FROM identity_index_recent"
        let mainLeaf = "SELECT count(*) FROM leaf_index", recentLeaf = "SELECT count(*) FROM leaf_index_recent"
        try await steppedServer(log, options) { server, merges in
            var got: [String: [UInt64]] = [:]
            func publish(_ n: Int) async throws {
                let id = "c\(n % 50)@example.com"
                got[id, default: []].append(try await log.publish(server, identity: id).index)
            }
            for n in 0..<300 {
                try await publish(n)
                if server.sqlite.pendingIndex.count >= 100 { XCTAssertTrue(merges.mergeAll()) }
            }
            XCTAssertEqual(try log.scalar(recent), 300, "merges write the recent level")
            XCTAssertEqual(try log.scalar(main), 0)
            // 300 recent rows: a compaction is due. Its first slice moves the 256 smallest keys.
            XCTAssertTrue(merges.mergeDue())
            XCTAssertEqual(try log.scalar(main), 256)
            XCTAssertEqual(try log.scalar(recent), 44)
            XCTAssertEqual(try log.scalar(mainLeaf), 0)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index m JOIN identity_index_recent r USING (identity_key, idx)"), 0,
                           "a row is in one level")
            // The cursor: the last row moved, in (key, index) order.
            let cursor = "(SELECT identity_key, idx FROM identity_index ORDER BY identity_key DESC, idx DESC LIMIT 1)"
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index_recent WHERE (identity_key, idx) <= \(cursor)"), 0, "moved in key order")
            try await assertLookups(server, log, got.filter { ["c0@example.com", "c13@example.com", "c49@example.com"].contains($0.key) })
            // Rows merged now land behind the cursor or ahead of it; those ahead go with this compaction.
            for n in 300..<400 { try await publish(n) }
            XCTAssertTrue(merges.mergeDue(), "a merge from memory comes before the compaction's next slice")
            XCTAssertEqual(server.sqlite.pendingIndex.count, 0)
            let behindCursor = try log.scalar("SELECT count(*) FROM identity_index_recent WHERE (identity_key, idx) <= \(cursor)")
            XCTAssertGreaterThan(behindCursor, 0, "100 rows of 50 identities: some fall behind the cursor")
            // The leaf pass starts after the merge, from the smallest key: it takes every leaf row.
            while try log.scalar(recentLeaf) > 0 { XCTAssertTrue(merges.mergeDue()) }
            XCTAssertEqual(try log.scalar(recent), behindCursor, "the compaction left exactly the rows merged behind its cursor")
            XCTAssertEqual(try log.scalar(main) + behindCursor, 400)
            XCTAssertEqual(try log.scalar(mainLeaf), 400)
            try await assertLookups(server, log, got)
            // And the next compaction takes them.
            XCTAssertTrue(merges.compactAll())
            XCTAssertEqual(try log.scalar(recent), 0)
            XCTAssertEqual(try log.scalar(recentLeaf), 0)
            XCTAssertEqual(try log.scalar(main), 400)
            XCTAssertEqual(try log.scalar(mainLeaf), 400)
            XCTAssertFalse(merges.mergeDue(), "nothing pending, nothing recent")
            try await assertLookups(server, log, got)
        }
    }

    /// A crash in the middle of a compaction (its slices so far committed, the rest not), and a
    /// crash that leaves rows in both levels (merged again from memory after a compaction moved
    /// them): lookups show every entry once, and compacting again ends with each row once.
    func testCrashDuringCompactionIsHarmless() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = mergeOptions(every: 50)
        options.compactAt = 200
        options.slice = .zero
        let ids = (0..<20).map { "k\($0)@example.com" }
        let expected = try await steppedServer(log, options) { server, merges in
            var got: [String: [UInt64]] = [:]
            for round in 0..<12 {
                for id in ids { got[id, default: []].append(try await log.publish(server, identity: id).index) }
                if round % 3 == 2 { XCTAssertTrue(merges.mergeAll()) }
            }
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index_recent"), 240)
            XCTAssertTrue(merges.mergeDue(), "the compaction's first slice")
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index"), 240, "240 rows: one step moves them all")
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index_recent"), 0)
            return got
        }  // the server stops here: the compaction under way is abandoned
        XCTAssertEqual(try log.scalar("SELECT count(*) FROM leaf_index"), 0, "its leaf pass never ran")
        // Rows in both levels: what a merge from memory leaves when it is redone after a crash.
        try log.tamper("INSERT INTO identity_index_recent SELECT identity_key, idx FROM identity_index WHERE idx < 100")
        try await log.withServer(merges: nil) { server in
            let merges = IndexMergeFollower(storage: server.sqlite, options: options)
            try await assertLookups(server, log, expected)
            XCTAssertTrue(merges.mergeDue(), "240 recent leaf rows counted when the log opened: a compaction is due")
            XCTAssertTrue(merges.compactAll())
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index"), 240)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM leaf_index"), 240)
            XCTAssertEqual(try log.scalar(TestLog.indexRows("identity_index")), 240)
            try await assertLookups(server, log, expected)
            XCTAssertEqual(try server.sqlite.integrityCheck(), "ok")
        }
    }

    /// A log of schema 2 (no recent level) is migrated when opened; one written by a newer
    /// Keyglass is refused, since its rows may be where this binary does not look.
    func testSchemaTwoIsMigratedAndANewerSchemaRefused() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let ids = ["ivan@example.com", "judy@example.com"]
        let expected = try await steppedServer(log, mergeOptions(every: 2)) { server, merges in
            let got = try await publishRounds(log, server, identities: ids, rounds: 3)
            XCTAssertTrue(merges.mergeAll())
            XCTAssertTrue(merges.compactAll())
            return got
        }
        try log.tamper("DROP TABLE identity_index_recent", requireChanges: false)
        try log.tamper("DROP TABLE leaf_index_recent", requireChanges: false)
        try log.tamper("UPDATE meta SET value = '2' WHERE key = 'schema'")
        try await log.withServer { server in
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'schema'"), 3)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index_recent"), 0)
            try await assertLookups(server, log, expected)
        }
        try log.tamper("UPDATE meta SET value = '4' WHERE key = 'schema'")
        XCTAssertThrowsError(try SQLiteStorage(path: log.directory.database)) { error in
            XCTAssertTrue("\(error)".contains("newer Keyglass"), "\(error)")
        }
    }

    /// A compaction that cannot write (maintenance mode here; a full disk alike) is retried after
    /// the idle time, not in a tight loop: a handful of failed slices in half a second, not thousands.
    func testFailingCompactionIsRetriedCalmly() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = mergeOptions(every: 5, idle: .milliseconds(200))
        options.compactAt = 10
        try await log.withServer(merges: nil) { server in
            for i in 0..<12 { try await log.publish(server, identity: "spin\(i)@example.com") }
            let merges = IndexMergeFollower(storage: server.sqlite, options: options)
            XCTAssertTrue(merges.mergeAll(), "12 rows in the recent level: a compaction is due")
            try server.sqlite.setWritesRefused(true)
            let runner = Task { try await merges.run() }
            try await Task.sleep(for: .milliseconds(500))
            runner.cancel()
            _ = try? await runner.value
            try server.sqlite.setWritesRefused(false)
            XCTAssertGreaterThan(merges.failedSlices, 0, "the compaction was tried")
            XCTAssertLessThanOrEqual(merges.failedSlices, 10, "and retried after the idle time, not in a loop")
        }
    }
}
