import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// A v2 log written and answered by `DirectoryLog` over a real SQLite file: lookups that verify,
/// the server's refusals, an auditor's replay of what is stored, the owner's monitor, a restart.
final class DirectoryLogTests: XCTestCase {
    private typealias Device = TestDevice

    private func device() throws -> Device {
        let pair = Ed25519.generate()
        return Device(record: try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: pair.publicKey,
                                               encryptionKeys: [.init(type: .x25519, key: Ed25519.randomBytes(32))]), seed: pair.seed)
    }

    private func signed(_ log: DirectoryLog, _ identity: String, _ kind: DeviceChange.Kind, by d: Device) throws -> DirectoryLog.ChangeRequest {
        let label = try log.label(of: identity)
        let newest = try XCTUnwrap(log.history(of: identity).last?.index)
        let c = DeviceChange.signed(kind, origin: log.origin, label: label, signer: d.id, signerSeed: d.seed, previousIndex: newest)
        return .init(identity: identity, kind: kind, authority: c.authority)
    }

    func testDirectoryLogEndToEnd() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("v2")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        var log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed)
        XCTAssertEqual(log.size, 1, "leaf 0, the config")
        let (phone, laptop, ghost) = (try device(), try device(), try device())
        XCTAssertEqual(try log.publish([.init(identity: "alice@example.com", kind: .add(phone.record), authority: .operator)]).map(\.isSuccess), [true])
        XCTAssertEqual(try log.publish([try signed(log, "alice@example.com", .add(laptop.record), by: phone),
                                        .init(identity: "bob@example.com", kind: .add(ghost.record), authority: .operator),
                                        // The server refuses an operator add to a set in use: the ghost.
                                        .init(identity: "alice@example.com", kind: .add(ghost.record), authority: .operator),
                                        .init(identity: "bad\u{200B}@example.com", kind: .add(ghost.record), authority: .operator)])
                        .map(\.isSuccess), [true, true, false, false])
        let refused = try log.publish([.init(identity: "alice@example.com", kind: .add(ghost.record), authority: .operator)])
        XCTAssertEqual(refused.first?.refusal, .rule(.ghostDevice))
        XCTAssertThrowsError(try log.lookup("alice@example.com"), "no map head yet")
        let headCP = try log.appendMapHead()
        XCTAssertEqual(headCP.size, log.size)

        let key = signer.verifierKey
        let alice = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key, vrfKey: log.vrfPublicKey)
        XCTAssertEqual(Set(alice.devices.map(\.id)), [phone.id, laptop.id])
        XCTAssertTrue(try DirectoryLookup.verify(try log.lookup("carol@example.com"), identity: "carol@example.com", logKey: key).neverPublished)
        // A change after the head: lookups stay on the head until the next one.
        XCTAssertEqual(try log.publish([try signed(log, "alice@example.com", .revoke(deviceID: laptop.id), by: phone)]).map(\.isSuccess), [true])
        let before = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key)
        XCTAssertEqual(before.devices.count, 2)
        try log.appendMapHead()
        let after = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key,
                                               previous: .init(epoch: alice.epoch, version: alice.version, chain: alice.chain))
        XCTAssertEqual(after.devices.map(\.id), [phone.id])
        XCTAssertEqual(after.epoch, 2)

        // An auditor replaying what is stored: every head matches, every change is one the server accepts.
        var audit = DirectoryReplay(store: MemoryMapNodeStore())
        let sealed = try storage.sealedChanges(start: 0, end: log.size)
        for e in try storage.entries(start: 0, end: log.size) {
            switch try audit.replay(e.data, leafHash: e.leafHash, sealed: sealed[e.index]) {
            case .change(_, _, let v): XCTAssertEqual(v.verdict?.isAcceptedByServer, true, "\(v)")
            case .mapHead(_, _, let o): XCTAssertEqual(o, .matches)
            case .malformed(let i, let why): XCTFail("\(i): \(why)")
            case .config: break
            }
        }
        XCTAssertEqual(audit.epoch, 2)
        // The owner's monitor: every change is theirs (the operator's onboarding of the phone, then the phone's).
        let monitor = DirectoryMonitor.check(history: try log.history(of: "alice@example.com"), label: after.label, origin: log.origin,
                                             known: [phone.record, laptop.record], asOf: after)
        XCTAssertEqual(monitor.alerts, [])
        XCTAssertEqual(monitor.ownChanges.count, 3)

        // A restart replays the stored log and answers the same.
        storage.close()
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed)
        let reopened = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key)
        XCTAssertEqual(reopened, after)
        XCTAssertThrowsError(try DirectoryLog(storage: storage, signer: signer, vrfSeed: Ed25519.generate().seed), "another VRF key than leaf 0's")
        storage.close()
    }

    /// Labels and VRF proofs (`DirectoryLabels`): a change stores the label with an empty proof;
    /// the first lookup makes the proof and stores it; a proof made by a lookup before the
    /// identity's first change is stored with it; a damaged stored proof is made again and
    /// replaced; a proof queued before an erasure does not bring the erased row back.
    func testVRFProofsAreMadeOnceStoredAndNeverResurrectErasedRows() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("v2-labels")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        defer { storage.close() }
        let log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed)
        func row(_ identity: String) throws -> SequencedBatch.VRFLabel? {
            try storage.vrfLabel(of: DirectoryLabels.storedIdentity(identity, vrfSeed: vrfSeed))
        }
        func proves(_ row: SequencedBatch.VRFLabel?, _ identity: String) -> Bool {
            guard let row, let beta = ECVRF.verify(publicKey: log.vrfPublicKey, alpha: Array(identity.utf8), proof: row.proof) else { return false }
            return Hash(bytes: Array(beta.prefix(32))) == row.label
        }
        let (alice, carol, dave) = ("alice@example.com", "carol@example.com", "dave@example.com")
        XCTAssertEqual(try log.publish([.init(identity: alice, kind: .add(try device().record), authority: .operator)]).map(\.isSuccess), [true])
        try log.appendMapHead()
        XCTAssertEqual(try row(alice)?.proof, [], "a change stores the label only")
        XCTAssertEqual(try row(alice)?.label, try DirectoryLabels.computeLabel(of: alice, key: ECVRF.SecretKey(seed: vrfSeed)))
        _ = try DirectoryLookup.verify(try log.lookup(alice), identity: alice, logKey: signer.verifierKey)
        XCTAssertTrue(proves(try row(alice), alice), "the first lookup's proof is stored")

        // Looked up before it has keys (a contact checking first), then given its first device.
        XCTAssertTrue(try DirectoryLookup.verify(try log.lookup(carol), identity: carol, logKey: signer.verifierKey).neverPublished)
        XCTAssertNil(try row(carol))
        XCTAssertEqual(try log.publish([.init(identity: carol, kind: .add(try device().record), authority: .operator)]).map(\.isSuccess), [true])
        XCTAssertTrue(proves(try row(carol), carol), "the remembered proof is stored with the first change")

        // A damaged row (another identity's valid proof under alice's name): a fresh log (nothing
        // remembered) makes the proof again, answers with it, and replaces the stored one.
        let bobProof = try ECVRF.prove(seed: vrfSeed, alpha: Array("bob@example.com".utf8))
        let damaged = try TestLog.tamper(
            database: dir + "/log.sqlite", "UPDATE vrf_labels SET proof = X'\(Hex.encode(bobProof))' WHERE identity = '\(DirectoryLabels.storedIdentity(alice, vrfSeed: vrfSeed))'")
        XCTAssertEqual(damaged, 1)
        XCTAssertFalse(proves(try row(alice), alice))
        let reopened = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed)
        _ = try DirectoryLookup.verify(try reopened.lookup(alice), identity: alice, logKey: signer.verifierKey)
        XCTAssertTrue(proves(try row(alice), alice), "the damaged proof is replaced")

        // A proof queued by a lookup, then the identity erased, then the queue stored: no row.
        XCTAssertEqual(try reopened.publish([.init(identity: dave, kind: .add(try device().record), authority: .operator)]).map(\.isSuccess), [true])
        let fresh = try DirectoryLabels(vrfSeed: vrfSeed, storage: storage)
        _ = try fresh.labelAndProof(of: dave)
        let daveLabel = try reopened.label(of: dave)
        let entries = try storage.entries(identity: daveLabel.hex, below: reopened.size, limit: 10)
        XCTAssertEqual(try storage.eraseSealedChanges(at: entries.map(\.index), identity: DirectoryLabels.storedIdentity(dave, vrfSeed: vrfSeed)), 1)
        try fresh.storeMadeProofs()
        XCTAssertNil(try row(dave), "an erased row stays erased")
    }

    /// Erasure at scale: 1,500 identities written in batches (pages split as label rows arrive in
    /// random order), 100 erased. Nothing of what they did (their devices' keys) and none of their
    /// stored label rows is left anywhere in the database file or its WAL: with `secure_delete` on
    /// every write, the copies page splits leave behind are zeroed too. (Debian builds SQLite with
    /// secure_delete on by default, so here this also holds without the pragma; builds without
    /// that default, such as upstream's, need it.)
    func testErasedSealedChangesLeaveNoBytesInTheFile() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("v2-erase")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/log.sqlite"
        var storage = try SQLiteStorage(path: path, readers: 1, secureDelete: true)
        let log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed)
        var keys: [String: [UInt8]] = [:]
        for batch in 0..<15 {
            var requests: [DirectoryLog.ChangeRequest] = []
            for i in 0..<100 {
                let identity = "user\(batch * 100 + i)@example.com"
                let d = try device()
                keys[identity] = d.record.signingKey
                requests.append(.init(identity: identity, kind: .add(d.record), authority: .operator))
            }
            XCTAssertTrue(try log.publish(requests).allSatisfy { if case .success = $0 { return true } else { return false } })
        }
        try log.appendMapHead()
        let erased = (0..<100).map { "user\($0 * 15)@example.com" }
        for identity in erased {
            let label = try log.label(of: identity)
            let entries = try storage.entries(identity: label.hex, below: log.size, limit: 10)
            XCTAssertEqual(try storage.eraseSealedChanges(at: entries.map(\.index), identity: DirectoryLabels.storedIdentity(identity, vrfSeed: vrfSeed)), 1)
        }
        storage.close()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        if let wal = try? Data(contentsOf: URL(fileURLWithPath: path + "-wal")) { bytes += wal }
        func contains(_ needle: [UInt8]) -> Bool {
            guard let first = needle.first, bytes.count >= needle.count else { return false }
            var i = 0
            while let j = bytes[i...].firstIndex(of: first), j + needle.count <= bytes.count {
                if Array(bytes[j..<(j + needle.count)]) == needle { return true }
                i = j + 1
            }
            return false
        }
        let left = erased.filter { contains(keys[$0]!) || contains(Array(DirectoryLabels.storedIdentity($0, vrfSeed: vrfSeed).utf8)) }
        XCTAssertEqual(left, [], "erased identities whose bytes are still in the file")
        let kept = "user1@example.com"
        XCTAssertTrue(contains(keys[kept]!) && contains(Array(DirectoryLabels.storedIdentity(kept, vrfSeed: vrfSeed).utf8)), "the others are there")
        // And the log still opens and answers the others, and refuses the erased (its changes
        // cannot be opened).
        storage = try SQLiteStorage(path: path, readers: 1, secureDelete: true)
        defer { storage.close() }
        let reopened = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed)
        XCTAssertNoThrow(try DirectoryLookup.verify(try reopened.lookup(kept), identity: kept, logKey: signer.verifierKey))
        XCTAssertThrowsError(try reopened.lookup(erased[0])) { XCTAssertEqual($0 as? DirectoryLog.Refusal, .erased) }
    }

    /// The server's derived state (the map's nodes, label states as of the newest head) is kept in
    /// a state database: a restart goes on from it instead of replaying the log, one deleted or
    /// from another history is rebuilt from the log, and each way answers lookups the same.
    func testTheDerivedStateResumesAndIsRebuiltWhenMissingOrForeign() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("v2-state")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let statePath = dir + "/directory-state.sqlite"
        var storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        var log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        let phone = try device()
        for i in 0..<50 {
            XCTAssertEqual(try log.publish([.init(identity: "user\(i)@example.com", kind: .add(try device().record), authority: .operator)]).map(\.isSuccess), [true])
        }
        XCTAssertEqual(try log.publish([.init(identity: "alice@example.com", kind: .add(phone.record), authority: .operator)]).map(\.isSuccess), [true])
        try log.appendMapHead()
        // A change after the head: in memory only until the next head.
        XCTAssertEqual(try log.publish([try signed(log, "alice@example.com", .add(try device().record), by: phone)]).map(\.isSuccess), [true])
        let key = signer.verifierKey
        func answers(_ log: DirectoryLog) throws -> [String] {
            try ["alice@example.com", "user7@example.com", "nobody@example.com"].map {
                let r = try DirectoryLookup.verify(try log.lookup($0), identity: $0, logKey: key)
                return "\(r.version) \(r.devices.map { Hex.encode($0.id) }) \(r.checkpoint.size) \(r.chain)"
            }
        }
        let before = try answers(log)
        storage.close()

        // Restarted: the state database is as of what the head covers; the head and the change
        // after it are replayed (the change stays pending until the next head).
        let saved = try DirectoryStateStore(path: statePath, logKey: key)
        let position = try XCTUnwrap(try saved.load()).position
        saved.close()
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        XCTAssertEqual(position.size, log.size - 2, "saved as of what the head covers: the head and the change after it are replayed")
        XCTAssertEqual(try answers(log), before)
        try log.appendMapHead()
        let withLaptop = try answers(log)
        XCTAssertNotEqual(withLaptop, before)
        storage.close()

        // Deleted: rebuilt from the log, the same answers.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: statePath + suffix) }
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        XCTAssertEqual(try answers(log), withLaptop)
        storage.close()

        // Another directory's state database under this one's name (a restore gone wrong): its
        // saved tree is not one this log signed, so it is thrown away and rebuilt.
        let other = dir + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        let otherStorage = try SQLiteStorage(path: other + "/log.sqlite", sync: .normal)
        let otherLog = try DirectoryLog.create(storage: otherStorage, signer: signer, vrfSeed: vrfSeed, statePath: other + "/state.sqlite")
        _ = try otherLog.publish([.init(identity: "mallory@example.com", kind: .add(try device().record), authority: .operator)])
        try otherLog.appendMapHead()
        otherStorage.close()
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(atPath: statePath + suffix)
            try? FileManager.default.copyItem(atPath: other + "/state.sqlite" + suffix, toPath: statePath + suffix)
        }
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        defer { storage.close() }
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        XCTAssertEqual(try answers(log), withLaptop)
        XCTAssertTrue(try DirectoryLookup.verify(try log.lookup("mallory@example.com"), identity: "mallory@example.com", logKey: key).neverPublished)
    }

    /// A map head that cannot be stored (a full disk): the map and states roll back with the state
    /// database and the log starts again from it, so lookups stay on the head before, verified;
    /// once storage is back (a restart without the quota) the next head shows the change.
    func testAHeadThatFailsToStoreLeavesLookupsOnTheHeadBefore() throws {
        let (dir, signer, vrfSeed) = try directoryScratch("v2-full")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let statePath = dir + "/directory-state.sqlite"
        var storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        var log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        let phone = try device()
        XCTAssertEqual(try log.publish([.init(identity: "alice@example.com", kind: .add(phone.record), authority: .operator)]).map(\.isSuccess), [true])
        try log.appendMapHead()
        let pages = try storage.pageCount()
        storage.close()
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal, maxPages: pages + 1)
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        let key = signer.verifierKey
        let first = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key)
        // Changes until the quota bites, then a head: it cannot be stored.
        var accepted = 0
        for i in 0..<400 {
            do {
                _ = try log.publish([.init(identity: "user\(i)-" + String(repeating: "x", count: 200) + "@example.com", kind: .add(try device().record), authority: .operator)])
                accepted += 1
            } catch { break }
        }
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertThrowsError(try log.appendMapHead(), "the disk is full")
        let still = try DirectoryLookup.verify(try log.lookup("alice@example.com"), identity: "alice@example.com", logKey: key,
                                               previous: .init(epoch: first.epoch, version: first.version, chain: first.chain))
        XCTAssertEqual(still.epoch, first.epoch, "lookups stay on the head before, and verify")
        storage.close()
        storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        defer { storage.close() }
        log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        try log.appendMapHead()
        let user = "user0-" + String(repeating: "x", count: 200) + "@example.com"
        XCTAssertEqual(try DirectoryLookup.verify(try log.lookup(user), identity: user, logKey: key).version, 1, "the change before the failed head")
    }
}

private extension Result where Success == UInt64, Failure == DirectoryLog.Refusal {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
    var refusal: DirectoryLog.Refusal? { if case .failure(let r) = self { return r } else { return nil } }
}
