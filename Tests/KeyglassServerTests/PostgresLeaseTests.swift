import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassPostgres
import KeyglassTestSupport
import Synchronization
import XCTest

/// The sequencer lease's fence, attacked directly on a real PostgreSQL: a server whose lease lapsed
/// (it was paused, partitioned, or its clock ran slow) and that still believes it sequences must not
/// get a batch into the log, and must not even sign one.
final class PostgresLeaseTests: XCTestCase {
    /// A scratch directory and a throwaway PostgreSQL cluster in it, both gone after the test.
    func cluster(_ name: String) async throws -> (work: String, pg: PostgresServer) {
        let scratch = try await PostgresServer.scratch(name)
        addTeardownBlock { scratch.pg.discard() }
        return scratch
    }

    func testALapsedSequencerIsFencedBeforeItSigns() async throws {
        let (work, pg) = try await cluster("pg-lease")
        let url = try PostgresURL(try pg.createDatabase("lease"))
        let a = try PostgresStorage(url: url, readers: 1, leaseHolder: "server-a", leaseDuration: .milliseconds(900))
        defer { a.close() }
        let b = try PostgresStorage(url: url, readers: 1, leaseHolder: "server-b", leaseDuration: .milliseconds(900))
        defer { b.close() }
        let signer = try NoteSigner.generate(name: "lease.example/log")
        _ = try LogAdmin.initialise(a, signer: signer)
        let leaseA = try XCTUnwrap(a.lease), leaseB = try XCTUnwrap(b.lease)

        XCTAssertTrue(leaseA.attempt(), "a free lease is taken")
        XCTAssertFalse(leaseB.attempt(), "a held lease is not")
        var built = false
        try a.append(previousSize: 0) { built = true; return nil }
        XCTAssertTrue(built, "the holder passes its fence")

        // A's belief outlives the lease: here the lease ends early by the database's clock (as it
        // does for a server paused between its check and its append, or whose clock runs slow)
        // and B takes it while A still believes. The fence in the database refuses A before
        // `build`, so nothing is signed.
        try pg.sql("UPDATE sequencer_lease SET expires_at = clock_timestamp() - interval '1 second'", database: "lease")
        XCTAssertTrue(leaseB.attempt(), "B takes the expired lease")
        XCTAssertTrue(leaseA.isHeld, "A still believes it holds the lease (the case the fence exists for)")
        built = false
        XCTAssertThrowsError(try a.append(previousSize: 0) { built = true; return nil }) { error in
            XCTAssertEqual((error as? StoreError).map { if case .conflict = $0 { return true } else { return false } }, true, "\(error)")
        }
        XCTAssertFalse(built, "a lapsed sequencer never reaches the point where it signs")
        XCTAssertFalse(leaseA.isHeld, "a fenced server stops believing it sequences")
        XCTAssertFalse(leaseA.attempt(), "and cannot take the lease back while B renews it")
        try b.append(previousSize: 0) { built = true; return nil }
        XCTAssertTrue(built)

        // A compare-and-swap on the head too: even the holder cannot build on a stale size.
        built = false
        XCTAssertThrowsError(try b.append(previousSize: 7) { built = true; return nil })
        XCTAssertFalse(built)

        // A graceful release hands over at once, at a new term.
        leaseB.release()
        XCTAssertFalse(leaseB.isHeld)
        XCTAssertTrue(leaseA.attempt(), "a released lease is free at once")
        let terms = try pg.sql("SELECT holder || ':' || term FROM sequencer_lease", database: "lease")
        XCTAssertEqual(terms, "server-a:3", "every change of holder is a new term")

        // A holder that stops renewing stops believing before the database lets anyone else in
        // (its belief ends a third early), and then refuses by itself.
        try await Task.sleep(for: .milliseconds(650))
        XCTAssertFalse(leaseA.isHeld)
        built = false
        XCTAssertThrowsError(try a.append(previousSize: 0) { built = true; return nil })
        XCTAssertFalse(built)
    }

    /// Two servers append at once (no lease: the row lock alone). The second waits for the first's
    /// lock, and must then see the first's commit: it is refused before it builds, so it never signs
    /// a second tree of the size the first just stored. (A check of the head inside the locking
    /// statement would read the snapshot from before the wait, and pass.)
    func testConcurrentAppendsSeeEachOthersCommitBeforeSigning() async throws {
        let (work, pg) = try await cluster("pg-race")
        let url = try PostgresURL(try pg.createDatabase("race"))
        let a = try PostgresStorage(url: url, readers: 1)
        defer { a.close() }
        let b = try PostgresStorage(url: url, readers: 1)
        defer { b.close() }
        let signer = try NoteSigner.generate(name: "race.example/log")
        _ = try LogAdmin.initialise(a, signer: signer)

        func oneEntryBatch(_ text: String) throws -> SequencedBatch {
            let data = Array(text.utf8)
            var range = CompactRange()
            let leaf = Merkle.leafHash(data)
            range.append(leaf) { _, _ in }
            let note = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: 1, root: range.root), with: signer).note.serialized
            return SequencedBatch(previousSize: 0, entries: [.init(index: 0, identity: text, data: data, leafHash: leaf)], nodes: [],
                                  checkpoint: StoredCheckpoint(size: 1, root: range.root, note: note), signedAtMillis: 0)
        }
        let first = try oneEntryBatch("first")
        let insideA = DispatchSemaphore(value: 0)
        let aDone = DispatchSemaphore(value: 0)
        let outcome = Mutex<(aError: String?, bBuilt: Bool, bError: String?)>((nil, false, nil))
        Thread {
            do {
                try a.append(previousSize: 0) {
                    insideA.signal()
                    Thread.sleep(forTimeInterval: 0.5)  // holding the lock while B waits for it
                    return first
                }
            } catch { outcome.withLock { $0.aError = "\(error)" } }
            aDone.signal()
        }.start()
        insideA.wait()
        do {
            try b.append(previousSize: 0) {
                outcome.withLock { $0.bBuilt = true }
                return try oneEntryBatch("second")
            }
        } catch { outcome.withLock { $0.bError = "\(error)" } }
        aDone.wait()
        let result = outcome.withLock { $0 }
        XCTAssertNil(result.aError)
        XCTAssertFalse(result.bBuilt, "the second appender must not reach build (and sign) after the first committed size 1")
        XCTAssertTrue(result.bError?.contains("newest checkpoint has size 1") == true, result.bError ?? "no error")
        XCTAssertEqual(try a.latestCheckpoint()?.root, first.checkpoint.root)
    }

    /// The connection dies in the middle of an append (the server ended it: a timeout, an
    /// administrator, a restart). The rest of the append must not run on a new connection, outside
    /// the transaction and the lease row's lock: nothing is written, and the append fails.
    func testAConnectionLostMidAppendWritesNothingOutsideTheFence() async throws {
        let (work, pg) = try await cluster("pg-cut")
        let url = try PostgresURL(try pg.createDatabase("cut"))
        let a = try PostgresStorage(url: url, readers: 1, leaseHolder: "server-a", leaseDuration: .seconds(3))
        defer { a.close() }
        let signer = try NoteSigner.generate(name: "cut.example/log")
        _ = try LogAdmin.initialise(a, signer: signer)
        XCTAssertTrue(try XCTUnwrap(a.lease).attempt())
        let data = Array("cut".utf8)
        var range = CompactRange()
        let leaf = Merkle.leafHash(data)
        range.append(leaf) { _, _ in }
        let note = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: 1, root: range.root), with: signer).note.serialized
        let batch = SequencedBatch(previousSize: 0, entries: [.init(index: 0, identity: "cut", data: data, leafHash: leaf)], nodes: [],
                                   checkpoint: StoredCheckpoint(size: 1, root: range.root, note: note), signedAtMillis: 0)
        XCTAssertThrowsError(try a.append(previousSize: 0) {
            // The append's own backend, idle in its transaction while the batch is built, is ended.
            let ended = try pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'cut' AND state = 'idle in transaction'",
                                   database: "postgres")
            XCTAssertEqual(ended, "1")
            return batch
        })
        XCTAssertEqual(try pg.sql("SELECT count(*) FROM entries", database: "cut"), "0", "nothing written outside the transaction")
        XCTAssertEqual(try pg.sql("SELECT max(size) FROM checkpoints", database: "cut"), "0")
        // The session recovers: the next append (a new connection, a new transaction) goes through.
        XCTAssertTrue(try XCTUnwrap(a.lease).attempt(), "the lease renews on a new connection")
        try a.append(batch)
        XCTAssertEqual(try pg.sql("SELECT count(*) FROM entries", database: "cut"), "1")
    }
}
