import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
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

    func testLookupsFindMergedAndPendingEntriesAcrossRestarts() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = Sequencer.Options()
        options.indexMergeEntries = 5
        options.indexMergeChunk = 5
        options.indexMergeIdle = .seconds(3600)  // merges only by count here
        let ids = ["alice@example.com", "bob@example.com", "carol@example.com"]
        let expected = try await log.withServer(options: options) { server in
            let got = try await publishRounds(log, server, identities: ids, rounds: 6)  // 18 entries
            // Merges ran at 5, 10 and 15 entries; 3 are pending.
            XCTAssertEqual(server.store.pendingIndex.count, 3)
            XCTAssertEqual(server.store.pendingIndex.indexedSize, 15)
            try await assertLookups(server, log, got)
            // Each publish named its identity's previous entry, whether merged or pending.
            for (id, indices) in got {
                let answer = try await server.client.keys(identity: id)
                for (n, e) in answer.entries.enumerated() {
                    let entry = try KeyEntry.parse(Base64.decode(e.entry)!)
                    XCTAssertEqual(entry.previousIndex, n == 0 ? nil : indices[n - 1], "\(id) entry \(e.index)")
                }
            }
            return got
        }
        // Shut down gracefully: the last rows were merged on the way out.
        XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'indexed_size'"), 18)
        XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index"), 18)
        XCTAssertEqual(try log.scalar("SELECT count(*) FROM leaf_index"), 18)

        // A crash leaves rows unmerged: play it by forgetting the last 7 merged rows.
        try log.tamper("UPDATE meta SET value = '11' WHERE key = 'indexed_size'")
        try log.tamper("DELETE FROM identity_index WHERE idx >= 11")
        try log.tamper("DELETE FROM leaf_index WHERE idx >= 11")
        try await log.withServer(options: options) { server in
            XCTAssertEqual(server.store.pendingIndex.count, 7, "rebuilt from the entries the index does not cover")
            try await assertLookups(server, log, expected)
            // And the log goes on from there.
            let more = try await log.publish(server, identity: "alice@example.com")
            var grown = expected
            grown["alice@example.com"]!.append(more.index)
            try await assertLookups(server, log, grown)
        }
    }

    func testQuietLogMergesAfterIdleTime() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = Sequencer.Options()
        options.indexMergeIdle = .milliseconds(100)
        try await log.withServer(options: options) { server in
            for i in 0..<4 { try await log.publish(server, identity: "quiet\(i)@example.com") }
            var waited = 0
            while server.store.pendingIndex.count > 0 && waited < 100 {
                try await Task.sleep(for: .milliseconds(50))
                waited += 1
            }
            XCTAssertEqual(server.store.pendingIndex.count, 0, "merged once the log was quiet")
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index"), 4)
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
        try log.tamper("DELETE FROM identity_index")
        try log.tamper("DELETE FROM leaf_index")
        try log.tamper("DELETE FROM meta WHERE key = 'indexed_size'")
        try log.tamper("UPDATE meta SET value = '1' WHERE key = 'schema'")
        try await log.withServer { server in
            XCTAssertEqual(server.store.pendingIndex.count, 0)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'entries_by_%'"), 0)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM identity_index"), 6)
            XCTAssertEqual(try log.scalar("SELECT value FROM meta WHERE key = 'schema'"), 2)
            try await assertLookups(server, log, expected)
        }
    }
}
