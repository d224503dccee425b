import KeyglassCore
import KeyglassTestSupport
import XCTest

/// v2 lookups: an honest answer proves the whole device set (or a verified "no keys"), and each
/// way a log can show a contact the wrong devices is refused. Evil-log tests first: every lie is
/// built from a real log, then altered the way an operator would.
final class DirectoryLookupTests: XCTestCase {
    /// A v2 log built in memory: entries, their replay (states and map), and answers to lookups.
    private struct Directory {
        let logKey: NoteSigner
        let vrf: Ed25519.KeyPair
        var entries: [[UInt8]] = []
        var leaves: [Hash] = []
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        var histories: [Hash: [(index: UInt64, leafHash: Hash)]] = [:]
        /// Each change entry's sealed change, by index.
        var sealed: [Int: [UInt8]] = [:]

        init(origin: String = "example.com/directory", logKey: NoteSigner? = nil, vrf: Ed25519.KeyPair = Ed25519.generate()) throws {
            self.logKey = try logKey ?? NoteSigner.generate(name: origin)
            self.vrf = vrf
            try append(.config(origin: origin, vrfPublicKey: vrf.publicKey))
        }

        var origin: String { logKey.verifierKey.name }

        func label(_ identity: String) throws -> Hash {
            Hash(bytes: Array(try ECVRF.proofToHash(try ECVRF.prove(seed: vrf.seed, alpha: Array(identity.utf8))).prefix(32)))!
        }

        mutating func append(_ e: DirectoryEntry, sealed s: SealedChange? = nil) throws {
            let bytes = e.encoded
            let leaf = Merkle.leafHash(bytes)
            if let s { sealed[entries.count] = s.encoded }
            let event = try replay.replay(bytes, leafHash: leaf, sealed: s?.encoded)
            if case .change(let index, let label, let outcome) = event {
                if case .notApplied = outcome {} else { histories[label, default: []].append((index, leaf)) }
            }
            entries.append(bytes)
            leaves.append(leaf)
        }

        /// A change as the honest server would write it.
        mutating func change(_ identity: String, _ kind: DeviceChange.Kind, by signer: (id: [UInt8], seed: [UInt8])? = nil) throws {
            let l = try label(identity)
            let state = replay.states[l] ?? DeviceSet()
            let c = signer.map {
                DeviceChange.signed(kind, origin: origin, label: l, signer: $0.id, signerSeed: $0.seed, previousIndex: state.newestIndex ?? 0)
            } ?? DeviceChange(kind: kind, authority: .operator)
            let s = SealedChange.sealing(c, after: state, origin: origin, label: l)
            try append(.sealedChange(s, timestampMillis: 1_700_000_000_000, label: l, version: state.version + 1), sealed: s)
        }

        /// The next map head, covering every entry so far.
        mutating func head() throws {
            let root = MapTree.Builder(replay.states.all.compactMap { l, s in s.mapValue.map { (l, $0) } }).root
            try append(.mapHead(timestampMillis: 1_700_000_005_000, epoch: replay.epoch + 1, coveredSize: UInt64(entries.count), root: root))
        }

        func nodeHash(_ id: NodeID) -> Hash {
            let start = Int(id.index << id.level)
            return Merkle.rootOf(leafHashes: Array(leaves[start..<min(start + (1 << Int(id.level)), leaves.count)]))
        }

        func inclusion(_ index: Int) throws -> [Hash] {
            let plan = try ProofPlan.inclusion(index: UInt64(index), size: UInt64(leaves.count))
            return plan.assemble(plan.nodes.map(nodeHash))
        }

        /// The honest answer for `identity` against the tree as it stands (its last leaf a head).
        func answer(_ identity: String) throws -> DirectoryLookup.Answer {
            let cp = Checkpoint(origin: origin, size: UInt64(leaves.count), root: Merkle.rootOf(leafHashes: leaves))
            let l = try label(identity)
            let state = replay.states[l].map { s in
                let newest = Int(s.newestIndex!)
                return DirectoryLookup.Answer.State(
                    devices: s.active, tombstoned: s.tombstoned, history: histories[l] ?? [], newestEntry: entries[newest],
                    newestSealed: sealed[newest]!)
            }
            return DirectoryLookup.Answer(
                checkpoint: try SignedCheckpoint.sign(cp, with: logKey).note.serialized,
                configEntry: entries[0], configProof: try inclusion(0),
                headEntry: entries[entries.count - 1], headProof: try inclusion(entries.count - 1),
                vrfProof: try ECVRF.prove(seed: vrf.seed, alpha: Array(identity.utf8)),
                mapProof: try replay.map.proof(for: l), state: state)
        }
    }

    private typealias Device = TestDevice

    private func device() throws -> Device {
        let pair = Ed25519.generate()
        return Device(record: try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: pair.publicKey,
                                               encryptionKeys: [.init(type: .x25519, key: Ed25519.randomBytes(32))]), seed: pair.seed)
    }

    private func refused(_ answer: DirectoryLookup.Answer, _ identity: String, _ d: Directory, vrfKey: [UInt8]? = nil,
                         previous: DirectoryLookup.Previous? = nil, file: StaticString = #filePath, line: UInt = #line) -> DirectoryLookup.Failure? {
        do {
            let r = try DirectoryLookup.verify(answer, identity: identity, logKey: d.logKey.verifierKey, vrfKey: vrfKey, previous: previous)
            XCTFail("accepted: \(r.devices.count) devices", file: file, line: line)
            return nil
        } catch { return error }
    }

    func testHonestAnswersProveTheWholeSetOrNoKeys() throws {
        var d = try Directory()
        let (a, b) = (try device(), try device())
        try d.change("alice@example.com", .add(a.record))
        try d.change("alice@example.com", .add(b.record), by: a.signer)
        try d.change("carol@example.com", .add(a.record))
        try d.change("carol@example.com", .revoke(deviceID: a.record.id), by: a.signer)
        try d.head()
        let key = d.logKey.verifierKey
        let alice = try DirectoryLookup.verify(try d.answer("alice@example.com"), identity: "alice@example.com", logKey: key, vrfKey: d.vrf.publicKey)
        XCTAssertEqual(Set(alice.devices.map(\.id)), [a.record.id, b.record.id])
        XCTAssertEqual(alice.version, 2)
        XCTAssertEqual(alice.coveredSize, 5)
        XCTAssertEqual(alice.epoch, 1)
        XCTAssertFalse(alice.neverPublished)
        let bob = try DirectoryLookup.verify(try d.answer("bob@example.com"), identity: "bob@example.com", logKey: key)
        XCTAssertTrue(bob.neverPublished, "a verified \"no keys\"")
        let carol = try DirectoryLookup.verify(try d.answer("carol@example.com"), identity: "carol@example.com", logKey: key)
        XCTAssertEqual(carol.devices, [])
        XCTAssertFalse(carol.neverPublished, "an empty set after revocations, said distinctly")
        // The next epoch extends what this client saw.
        try d.change("alice@example.com", .revoke(deviceID: b.record.id), by: a.signer)
        try d.head()
        let later = try DirectoryLookup.verify(try d.answer("alice@example.com"), identity: "alice@example.com", logKey: key,
                                               previous: .init(epoch: alice.epoch, version: alice.version, chain: alice.chain))
        XCTAssertEqual(later.devices.map(\.id), [a.record.id])
        XCTAssertEqual(later.epoch, 2)
        // An identity typed in another normal form is the same identity: the client normalises
        // before the VRF, so the decomposed spelling finds the keys instead of a false "no keys".
        try d.change("zoë@example.com", .add(a.record))
        try d.head()
        let decomposed = try Identity.normalize("zoe\u{308}@example.com")
        XCTAssertEqual(try DirectoryLookup.verify(try d.answer(decomposed), identity: decomposed, logKey: key).devices.count, 1)
        // The operator answers a variant spelling with "no keys": an absence proof for the label of
        // the decomposed bytes. The client normalises before the VRF, so the proof is for another
        // input than the one it checks: refused, not a false "never published".
        let variant = try d.answer("zoe\u{308}@example.com")
        XCTAssertNil(variant.state, "the decomposed spelling's own label is absent")
        guard case .vrf = refused(variant, decomposed, d) else { return XCTFail("absence for a decomposed variant of an identity with keys") }
        // An invisible character is not a variant: no client looks it up (the profile refuses it).
        XCTAssertThrowsError(try Identity.normalize("zo\u{200B}\u{EB}@example.com"))
    }

    /// The operator shows a contact more devices, or fewer, than the map commits to; or proves
    /// the label with another key, or another label's proof.
    func testDevicesOtherThanTheMapsAreRefused() throws {
        var d = try Directory()
        let (a, ghost) = (try device(), try device())
        try d.change("alice@example.com", .add(a.record))
        try d.change("bob@example.com", .add(ghost.record))
        try d.head()
        let honest = try d.answer("alice@example.com")
        var extra = honest
        extra.state?.devices = [a.record, ghost.record].sorted { $0.id.lexicographicallyPrecedes($1.id) }
        guard case .state = refused(extra, "alice@example.com", d) else { return XCTFail("a ghost device in the answer only") }
        var hidden = honest
        hidden.state?.devices = []
        guard case .state = refused(hidden, "alice@example.com", d) else { return XCTFail("a device hidden from the answer") }
        // Step B: the devices are those the newest change's sealed part commits to. A sealed change
        // committing to the ghost too (another opening: the entry's commitment does not open), the
        // devices shown with another change's sealed part, an entry that is not the newest.
        var withGhost = DeviceSet()
        withGhost.apply(.add(a.record))
        withGhost.apply(.add(ghost.record))
        let real = try SealedChange.parse(honest.state!.newestSealed)
        var resealed = extra
        resealed.state?.newestSealed = SealedChange(
            opening: Ed25519.randomBytes(16), change: real.change, previousIndex: real.previousIndex, setDigest: withGhost.setDigest).encoded
        guard case .state = refused(resealed, "alice@example.com", d) else { return XCTFail("a sealed change the entry did not commit to") }
        var bobsSealed = honest
        bobsSealed.state?.newestSealed = d.sealed[2]!
        guard case .state = refused(bobsSealed, "alice@example.com", d) else { return XCTFail("another change's sealed part") }
        var bobsEntry = honest
        bobsEntry.state?.newestEntry = d.entries[2]
        guard case .state = refused(bobsEntry, "alice@example.com", d) else { return XCTFail("another label's entry as the newest") }
        var noState = honest
        noState.state = nil
        guard case .state = refused(noState, "alice@example.com", d) else { return XCTFail("a member shown without its state") }
        var otherVRF = honest
        otherVRF.vrfProof = try ECVRF.prove(seed: Ed25519.generate().seed, alpha: Array("alice@example.com".utf8))
        guard case .vrf = refused(otherVRF, "alice@example.com", d) else { return XCTFail("a VRF proof under another key than leaf 0's") }
        let bob = try d.answer("bob@example.com")
        var swapped = honest
        swapped.mapProof = bob.mapProof
        swapped.state = bob.state
        guard case .map = refused(swapped, "alice@example.com", d) else { return XCTFail("bob's map proof shown for alice") }
        var absentClaim = honest
        absentClaim.mapProof = MapTree.Proof(terminal: .empty, siblings: honest.mapProof.siblings)
        absentClaim.state = nil
        guard case .map = refused(absentClaim, "alice@example.com", d) else { return XCTFail("alice shown absent") }
        // Tombstones re-split (16 + 16 bytes shown as 24 + 8): the same bytes hashed, refused.
        var carolLog = try Directory(logKey: d.logKey, vrf: d.vrf)
        let (c1, c2, c3) = (try device(), try device(), try device())
        try carolLog.change("carol@example.com", .add(c1.record))
        try carolLog.change("carol@example.com", .add(c2.record), by: c1.signer)
        try carolLog.change("carol@example.com", .add(c3.record), by: c1.signer)
        try carolLog.change("carol@example.com", .revoke(deviceID: c2.record.id), by: c1.signer)
        try carolLog.change("carol@example.com", .revoke(deviceID: c3.record.id), by: c1.signer)
        try carolLog.head()
        var resplit = try carolLog.answer("carol@example.com")
        let joined = (resplit.state?.tombstoned ?? []).flatMap { $0 }
        XCTAssertEqual(joined.count, 32)
        resplit.state?.tombstoned = [Array(joined.prefix(24)), Array(joined.suffix(8))]
        guard case .state = refused(resplit, "carol@example.com", carolLog) else { return XCTFail("re-split tombstones") }
        // Another VRF key in leaf 0 than the one this client pinned for the log.
        guard case .config = refused(honest, "alice@example.com", d, vrfKey: Ed25519.generate().publicKey) else { return XCTFail("pinned VRF key") }
    }

    /// The operator forks the log for one contact: alice's history is another one, or she is
    /// absent, in a tree signed with the log's key. A client that saw her before refuses; and
    /// it refuses a map head older than one it has verified.
    func testForksStaleHeadsAndMisplacedLeavesAreRefused() throws {
        let logKey = try NoteSigner.generate(name: "example.com/directory")
        let vrf = Ed25519.generate()
        var real = try Directory(logKey: logKey, vrf: vrf)
        var fork = try Directory(logKey: logKey, vrf: vrf)
        let (a, b, injected) = (try device(), try device(), try device())
        try real.change("alice@example.com", .add(a.record))
        try real.change("alice@example.com", .add(b.record), by: a.signer)
        try real.head()
        let seen = try DirectoryLookup.verify(try real.answer("alice@example.com"), identity: "alice@example.com", logKey: logKey.verifierKey)
        let previous = DirectoryLookup.Previous(epoch: seen.epoch, version: seen.version, chain: seen.chain)
        // The fork: alice onboarded with the operator's key, then her real devices, at a later epoch.
        try fork.change("alice@example.com", .add(injected.record))
        try fork.change("alice@example.com", .add(a.record), by: (injected.record.id, injected.seed))
        try fork.head()
        try fork.head()
        guard case .rewritten = refused(try fork.answer("alice@example.com"), "alice@example.com", fork, previous: previous) else {
            return XCTFail("a rewritten history")
        }
        var empty = try Directory(logKey: logKey, vrf: vrf)
        try empty.change("bob@example.com", .add(a.record))
        try empty.head()
        try empty.head()
        guard case .rewritten = refused(try empty.answer("alice@example.com"), "alice@example.com", empty, previous: previous) else {
            return XCTFail("absence for a label once present")
        }
        guard case .stale = refused(try real.answer("alice@example.com"), "alice@example.com", real, previous: .init(epoch: 7)) else {
            return XCTFail("a head older than one this client verified")
        }
        // The checkpoint's last leaf is a change, not the head the answer shows.
        try real.change("alice@example.com", .revoke(deviceID: b.record.id), by: a.signer)
        var misplaced = try real.answer("alice@example.com")
        misplaced.headEntry = real.entries[real.entries.count - 2]
        misplaced.headProof = try real.inclusion(real.entries.count - 2)
        guard case .head = refused(misplaced, "alice@example.com", real) else { return XCTFail("a head that is not the last leaf") }
        // An origin that only canonically equals the checkpoint's (KELVIN SIGN for K): bytes differ.
        var kelvin = try Directory(origin: "\u{212A}eyglass.example/directory", vrf: vrf)
        try kelvin.change("alice@example.com", .add(a.record))
        try kelvin.head()
        let kAnswer = try kelvin.answer("alice@example.com")
        XCTAssertNoThrow(try DirectoryLookup.verify(kAnswer, identity: "alice@example.com", logKey: kelvin.logKey.verifierKey))
        let plainK = try NoteSigner.generate(name: "Keyglass.example/directory")
        var relabelled = kAnswer
        let cp = try SignedCheckpoint.open(kAnswer.checkpoint, logKey: kelvin.logKey.verifierKey).0.checkpoint
        relabelled.checkpoint = try SignedCheckpoint.sign(Checkpoint(origin: plainK.verifierKey.name, size: cp.size, root: cp.root), with: plainK).note.serialized
        XCTAssertThrowsError(try DirectoryLookup.verify(relabelled, identity: "alice@example.com", logKey: plainK.verifierKey)) { error in
            guard case .config = error as? DirectoryLookup.Failure else { return XCTFail("\(error)") }
        }
        // Signed by someone else.
        var impostor = try real.answer("alice@example.com")
        impostor.checkpoint = try SignedCheckpoint.sign(Checkpoint(origin: real.origin, size: 3, root: .zero),
                                                        with: try NoteSigner.generate(name: real.origin)).note.serialized
        guard case .checkpoint = refused(impostor, "alice@example.com", real) else { return XCTFail("another key's checkpoint") }
    }
}
