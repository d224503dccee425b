import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// A map head that fails to store, in the orders a server's threads can meet it (from a review):
/// a batch stored while the log starts again from its state database must not be replayed twice
/// (the next head would be signed over a map that leaves changes out), and lookups move to the
/// head the log has after a head that failed once appended.
final class DirectoryHeadFailureTests: XCTestCase {
    struct Injected: Error {}

    private func device() throws -> DeviceRecord { try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey) }
    private func add(_ identity: String) throws -> DirectoryLog.ChangeRequest {
        .init(identity: identity, kind: .add(try device()), authority: .operator)
    }

    func testABatchStoredWhileTheLogStartsAgainIsRefusedNotReplayedTwice() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("head-failure")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let statePath = dir + "/directory-state.sqlite"
        var storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        var log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        _ = try log.publish([try add("a@example.com")])
        try log.appendMapHead()
        _ = try log.publish([try add("b@example.com")])
        let work = try XCTUnwrap(log.beginHead())
        XCTAssertThrowsError(try log.follower.commit(work) { _ in throw Injected() })
        // A batch judged and stored, then the log starts again (it reads the stored batch), then
        // the batch's commit: refused, where it used to replay the batch a second time.
        let prepared = try log.prepare([try add("c@example.com"), try add("d@example.com")])
        try log.storage.append(try XCTUnwrap(prepared.batch))
        try log.headFailed()
        XCTAssertThrowsError(try log.commit(prepared)) { XCTAssertTrue("\($0)".contains("does not follow the replay"), "\($0)") }
        // What is stored is whole: more changes and a head, replayed by an auditor, match.
        _ = try log.publish([try add("e@example.com")])
        try log.appendMapHead()
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        let sealed = try log.storage.sealedChanges(start: 0, end: log.size)
        var heads = 0
        for e in try log.storage.entries(start: 0, end: log.size) {
            switch try replay.replay(e.data, leafHash: e.leafHash, sealed: sealed[e.index]) {
            case .mapHead(_, _, .matches): heads += 1
            case .mapHead(let index, _, let outcome): XCTFail("map head at \(index): \(outcome)")
            default: break
            }
        }
        XCTAssertEqual(heads, 2)
        XCTAssertEqual(replay.states.count, 5)
        storage.close()
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        XCTAssertEqual(log.size, replay.size)
        storage.close()
    }

    func testAfterAHeadFailedOnceAppendedLookupsUseTheHeadTheLogHas() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("head-failure-snapshot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let statePath = dir + "/directory-state.sqlite"
        let storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        defer { storage.close() }
        let log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        _ = try log.publish([try add("a@example.com")])
        try log.appendMapHead()
        let old = try XCTUnwrap(try log.lookupSnapshot())
        let reader = try DirectoryStateReader(path: statePath)
        defer { reader.close() }
        let a = try log.label(of: "a@example.com")
        XCTAssertNotNil(try DirectoryLog.lookupParts(old, label: a, vrfProof: [], reader: reader))
        _ = try log.publish([try add("b@example.com")])
        let work = try XCTUnwrap(log.beginHead())
        // The head is appended, then the state database's transaction fails.
        XCTAssertThrowsError(try log.follower.commit(work) { root in _ = try log.appendOwnHead(work, root: root); throw Injected() })
        try log.headFailed()
        // The old snapshot no longer matches the state database; the log's new one does, and it
        // is of the head that was appended.
        XCTAssertNil(try DirectoryLog.lookupParts(old, label: a, vrfProof: [], reader: reader))
        let new = try XCTUnwrap(try log.lookupSnapshot())
        XCTAssertEqual(new.checkpoint.size, log.size)
        let b = try log.label(of: "b@example.com")
        let parts = try XCTUnwrap(try DirectoryLog.lookupParts(new, label: b, vrfProof: [], reader: reader))
        let answer = try DirectoryLog.complete(parts, storage: storage)
        XCTAssertEqual(answer.state?.history.count, 1, "b's change, which the appended head covers")
    }
}
