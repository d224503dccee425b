import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// The write-ahead log must be checkpointed back into the database while the sequencer runs:
/// a WAL that only grows fills the disk (it did once: a statement left open across COMMIT kept a
/// read transaction alive and blocked every checkpoint).
final class WALBoundTests: XCTestCase {
    func testWALStaysBoundedUnderManyBatches() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let sqlite = try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal)
        defer { sqlite.close() }
        let merges = IndexMergeFollower(storage: sqlite)
        var options = Sequencer.Options()
        options.maxBatch = 500
        let sequencer = try Sequencer(store: LogStore(storage: sqlite), signer: try log.directory.loadSigner(), options: options)
        let runner = Task { try await sequencer.run() }
        let merger = Task { try await merges.run() }
        for batch in 0..<24 {
            try await withThrowingTaskGroup(of: Void.self) { g in
                for i in 0..<500 {
                    g.addTask {
                        _ = try await sequencer.submit(PublishRequest(identity: "wal-\(batch)-\(i)", keyType: .x25519,
                                                                      publicKey: Ed25519.randomBytes(32)))
                    }
                }
                try await g.waitForAll()
            }
        }
        let attrs = try FileManager.default.attributesOfItem(atPath: log.directory.database + "-wal")
        let wal = try XCTUnwrap(attrs[.size] as? Int)
        let db = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: log.directory.database)[.size] as? Int)
        XCTAssertEqual(sequencer.latestCheckpoint.size, 12_000)
        XCTAssertLessThan(wal, 16 << 20, "WAL is \(wal) bytes: checkpoints are not running")
        XCTAssertGreaterThan(db, 1 << 20, "the database file holds the checkpointed pages")
        runner.cancel()
        _ = try? await runner.value
        merger.cancel()
        _ = try? await merger.value
    }
}
