import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import Synchronization
import XCTest

/// The bounds the threat model promises, each checked where it bites.
final class LimitsTests: XCTestCase {
    /// /v1/entries answers at most 1000 entries a page (the server's default), however many are asked for.
    func testEntriesPagesHoldAtMost1000() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await withThrowingTaskGroup(of: Void.self) { g in
                for w in 0..<16 {
                    g.addTask { for i in 0..<64 { try await log.publish(server, identity: "p\(w)-\(i)", keyType: .x25519, key: Ed25519.randomBytes(32)) } }
                }
                try await g.waitForAll()
            }
            let first = try await server.client.entries(start: 0, end: 1024)
            XCTAssertEqual(first.entries.count, 1000)
            XCTAssertEqual(first.end, 1000)
            XCTAssertEqual(first.entries.map(\.index), Array(0..<1000))
            let rest = try await server.client.entries(start: first.end, end: 1024)
            XCTAssertEqual(rest.entries.map(\.index), Array(1000..<1024))
        }
    }

    /// Lookup-index rows wait in memory only until a merge's worth has gathered: under a steady
    /// stream of publishes the pending rows stay near that size instead of growing with the log,
    /// and a quiet moment merges them all.
    func testPendingIndexRowsStayBounded() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = Sequencer.Options()
        options.maxBatch = 64
        var merges = IndexMergeFollower.Options()
        merges.mergeAt = 256
        merges.chunk = 256
        merges.idle = .milliseconds(200)
        try await log.withServer(options: options, merges: merges) { server in
            var peak = 0
            for burst in 0..<24 {
                try await withThrowingTaskGroup(of: Void.self) { g in
                    for i in 0..<100 { g.addTask { try await log.publish(server, identity: "b\(burst)-\(i)", keyType: .x25519, key: Ed25519.randomBytes(32)) } }
                    try await g.waitForAll()
                }
                peak = max(peak, server.sqlite.pendingIndex.count)
            }
            // 2,400 entries went in; the follower merges as rows arrive, and an append that finds
            // two merges' worth waiting first lets it catch up: never more than that plus a burst.
            XCTAssertLessThanOrEqual(peak, 2 * 256 + 100, "pending rows grew with the log")
            var idle = server.sqlite.pendingIndex.count
            for _ in 0..<200 where idle > 0 {
                try await Task.sleep(for: .milliseconds(25))
                idle = server.sqlite.pendingIndex.count
            }
            XCTAssertEqual(idle, 0, "a quiet moment merges every pending row")
            XCTAssertEqual(server.sqlite.pendingIndex.indexedSize, 2400)
        }
    }

    /// When batches outrun the merge slices (20,000 publishes queued at once, batches of 4,096,
    /// slices as short as they can be), each append first merges until the follower has caught
    /// up: pending rows stay under two merges' worth plus a batch, not the whole burst, and the
    /// recent level under two compactions' worth. (The old
    /// bound, 2 × 256 + 4096, forgot that merges grow with the log, and failed once in `make test`
    /// at 5,384 rows with merges of ~640.)
    func testPendingIndexCatchesUpWhenBatchesOutrunSlices() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var options = Sequencer.Options()
        options.maxBatch = 4096
        var merges = IndexMergeFollower.Options()
        merges.mergeAt = 256
        merges.chunk = 256
        merges.slice = .nanoseconds(1)
        merges.idle = .seconds(60)  // no idle merge during the test
        // Merges stop growing at maxChunk (their rows are what memory holds); the recent level is
        // compacted once it holds compactAt rows (1/16 of the log here, at most maxCompactAt).
        merges.maxChunk = 512
        merges.compactAt = 1024
        merges.maxCompactAt = 2048
        try await log.withServer(options: options, merges: merges) { server in
            let n = 20_000
            let remaining = Mutex(n)
            let (done, finished) = AsyncStream.makeStream(of: Void.self)
            for i in 0..<n {
                server.sequencer.submit(PublishRequest(identity: "q\(i)", keyType: .x25519, publicKey: Ed25519.randomBytes(32))) { result in
                    if case .failure(let e) = result { XCTFail("\(e)") }
                    if remaining.withLock({ $0 -= 1; return $0 }) == 0 { finished.finish() }
                }
            }
            for await _ in done {}
            let pending = server.sqlite.pendingIndex.count
            // Two merges' worth (at most maxChunk each, however large the log) plus a batch.
            XCTAssertLessThanOrEqual(pending, 2 * 512 + 4096, "pending rows grew with the burst (\(pending) of \(n))")
            XCTAssertLessThan(pending, n / 3)
            // The recent level kept up as well: two compactions' worth plus the merge that followed.
            let recent = try log.scalar("SELECT count(*) FROM identity_index_recent")
            XCTAssertLessThanOrEqual(recent, 2 * 2048 + 512, "the recent level grew with the burst")
            XCTAssertGreaterThan(try log.scalar("SELECT count(*) FROM identity_index"), 0, "compactions ran")
            XCTAssertEqual(server.sequencer.latestCheckpoint.size, UInt64(n))
        }
    }
}
