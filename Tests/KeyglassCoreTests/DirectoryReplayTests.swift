import KeyglassCore
import KeyglassTestSupport
import XCTest

/// v2 entries and the replay that both the map follower and auditors run: honest logs replay
/// clean, and each way a log can lie about its map or its changes is named.
final class DirectoryReplayTests: XCTestCase {
    private let origin = "example.com/directory"
    private let vrf = Ed25519.generate()

    private typealias Device = TestDevice

    private func device() throws -> Device {
        let pair = Ed25519.generate()
        return Device(record: try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: pair.publicKey), seed: pair.seed)
    }

    private func label(_ s: String) -> Hash { Hash.sha256(Array(s.utf8)) }

    /// A log being written by the test, with the model of what each map head must commit to
    /// (built independently of `DirectoryReplay`: the rule applied directly, roots by the builder).
    private struct Log {
        var entries: [[UInt8]] = []
        /// Each change entry's sealed change, by index.
        var sealed: [Int: [UInt8]] = [:]
        var states: [Hash: DeviceSet] = [:]
        /// (index, label, map value) of every applied change.
        var applied: [(UInt64, Hash, Hash)] = []
        var epoch: UInt64 = 0

        mutating func append(_ e: DirectoryEntry, sealed s: SealedChange? = nil) {
            if let s { sealed[entries.count] = s.encoded }
            entries.append(e.encoded)
        }

        /// Replays entries `range` into `r`, each change opened.
        func replay(_ range: Range<Int>, into r: inout DirectoryReplay<MemoryMapNodeStore>) throws -> [DirectoryReplayEvent] {
            try range.map { try r.replay(entries[$0], leafHash: Merkle.leafHash(entries[$0]), sealed: sealed[$0]) }
        }

        /// The map root of the changes in entries [0, covered).
        func root(covering covered: UInt64) -> Hash {
            var values: [Hash: Hash] = [:]
            for (i, l, v) in applied where i < covered { values[l] = v }
            return MapTree.Builder(values.map { ($0.key, $0.value) }).root
        }
    }

    private func newLog() -> Log {
        var log = Log()
        log.append(.config(origin: origin, vrfPublicKey: vrf.publicKey))
        return log
    }

    /// Appends a change the way the honest sequencer would (the label's next version), applying it
    /// to the model: its public part always, its devices unless the rule finds it invalid.
    private func change(_ log: inout Log, _ l: Hash, _ kind: DeviceChange.Kind, by signer: Device? = nil, version: UInt64? = nil) {
        let state = log.states[l] ?? DeviceSet()
        let c = signer.map { DeviceChange.signed(kind, origin: origin, label: l, signer: $0.id, signerSeed: $0.seed, previousIndex: state.newestIndex ?? 0) }
            ?? DeviceChange(kind: kind, authority: .operator)
        changeEntry(&log, l, c, version: version)
    }

    /// Appends `c` sealed at the label's next version (or `version`), stamped `time`.
    private func changeEntry(_ log: inout Log, _ l: Hash, _ c: DeviceChange, version: UInt64? = nil, time: UInt64? = nil) {
        var state = log.states[l] ?? DeviceSet()
        let index = UInt64(log.entries.count)
        let sealed = SealedChange.sealing(c, after: state, origin: origin, label: l)
        let entry = DirectoryEntry.sealedChange(sealed, timestampMillis: time ?? 1_700_000_000_000 + index, label: l, version: version ?? state.version + 1)
        log.append(entry, sealed: sealed)
        guard version == nil || version == state.version + 1 else { return }
        DeviceRule.apply(c, to: &state, origin: origin, label: l, index: index, leafHash: Merkle.leafHash(entry.encoded))
        log.states[l] = state
        log.applied.append((index, l, state.mapValue!))
    }

    /// Appends the next map head covering entries [0, covered) (all so far by default), with its
    /// true root unless `root` is given.
    private func head(_ log: inout Log, covering covered: UInt64? = nil, root: Hash? = nil, epoch: UInt64? = nil) {
        let c = covered ?? UInt64(log.entries.count)
        log.epoch += 1
        log.append(.mapHead(timestampMillis: 1_700_000_001_000, epoch: epoch ?? log.epoch, coveredSize: c, root: root ?? log.root(covering: c)))
    }

    private func replay(_ log: Log) throws -> [DirectoryReplayEvent] {
        var r = DirectoryReplay(store: MemoryMapNodeStore())
        return try log.replay(0..<log.entries.count, into: &r)
    }

    private func heads(_ events: [DirectoryReplayEvent]) -> [DirectoryHeadOutcome] {
        events.compactMap { if case .mapHead(_, _, let o) = $0 { return o } else { return nil } }
    }

    private func verdicts(_ events: [DirectoryReplayEvent]) -> [DeviceRule.Verdict] {
        events.compactMap {
            guard case .change(_, _, let outcome) = $0 else { return nil }
            if case .notApplied(let why) = outcome { return .invalid(why) }
            return outcome.verdict
        }
    }

    func testEntriesEncodeCanonicallyAndMalformedOnesAreRefused() throws {
        let d = try device()
        let add = SealedChange.sealing(DeviceChange(kind: .add(d.record), authority: .operator), after: DeviceSet(), origin: origin, label: label("a"))
        let revoke = SealedChange(
            opening: Ed25519.randomBytes(16),
            change: .signed(.revoke(deviceID: d.id), origin: origin, label: label("a"), signer: d.id, signerSeed: d.seed, previousIndex: 1),
            previousIndex: 1, setDigest: label("digest"))
        let entries: [DirectoryEntry] = [
            .config(origin: origin, vrfPublicKey: vrf.publicKey),
            .sealedChange(add, timestampMillis: 5, label: label("a"), version: 1),
            .sealedChange(revoke, timestampMillis: 6, label: label("a"), version: 2),
            .change(timestampMillis: 7, label: label("b"), version: 9, kind: 0x04, commitment: label("c")),
            .mapHead(timestampMillis: 8, epoch: 1, coveredSize: 3, root: label("root")),
        ]
        for e in entries { XCTAssertEqual(try DirectoryEntry.parse(e.encoded), e) }
        for s in [add, revoke] { XCTAssertEqual(try SealedChange.parse(s.encoded), s) }
        let entry = entries[1].encoded
        XCTAssertEqual(entry.count, 83, "a change entry shows label, version, kind and commitment, nothing of the device")
        XCTAssertFalse(entry.contains(subsequence: d.record.signingKey), "the device's key is not in the public entry")
        var bad: [(String, [UInt8])] = [
            ("version 1", [0x01] + entry.dropFirst()), ("unknown type", [0x02, 0x09] + entry.dropFirst(2)), ("a byte after", entry + [0]),
            ("cut short", Array(entry.dropLast())), ("empty", []),
        ]
        var unknownKind = entry
        unknownKind[2 + 8 + 32 + 8] = 0x07
        bad.append(("change kind 7", unknownKind))
        var versionZero = entry
        for i in 42..<50 { versionZero[i] = 0 }
        bad.append(("version 0", versionZero))
        let epochZero = DirectoryEntry.mapHead(timestampMillis: 1, epoch: 0, coveredSize: 0, root: .zero).encoded
        bad.append(("epoch 0", epochZero))
        let badVRFKey = DirectoryEntry.config(origin: origin, vrfPublicKey: [1] + [UInt8](repeating: 0, count: 31)).encoded
        bad.append(("a small-order VRF key", badVRFKey))
        for (why, bytes) in bad { XCTAssertThrowsError(try DirectoryEntry.parse(bytes), why) }

        // Sealed changes: canonical too, and each one opens only its own entry's commitment.
        let sealed = add.encoded
        var badSealed: [(String, [UInt8])] = [("a byte after", sealed + [0]), ("cut short", Array(sealed.dropLast())), ("empty", [])]
        var authority2 = sealed
        authority2[16 + 1 + 2 + d.record.encoded.count] = 0x02
        badSealed.append(("authority 2", authority2))
        var kind9 = sealed
        kind9[16] = 0x09
        badSealed.append(("kind 9", kind9))
        let shortRevoke = SealedChange(
            opening: Ed25519.randomBytes(16), change: DeviceChange(kind: .revoke(deviceID: [1, 2, 3]), authority: .operator), previousIndex: nil,
            setDigest: .zero).encoded
        badSealed.append(("a 3-byte device id", shortRevoke))
        for (why, bytes) in badSealed { XCTAssertThrowsError(try SealedChange.parse(bytes), why) }
        let c = add.commitment(label: label("a"), version: 1)
        XCTAssertTrue(add.opens(commitment: c, label: label("a"), version: 1, kindCode: 0x01))
        XCTAssertFalse(add.opens(commitment: c, label: label("b"), version: 1, kindCode: 0x01), "another label")
        XCTAssertFalse(add.opens(commitment: c, label: label("a"), version: 2, kindCode: 0x01), "another version")
        XCTAssertFalse(add.opens(commitment: c, label: label("a"), version: 1, kindCode: 0x04), "another kind")
        let otherOpening = SealedChange(opening: Ed25519.randomBytes(16), change: add.change, previousIndex: nil, setDigest: add.setDigest)
        XCTAssertFalse(otherOpening.opens(commitment: c, label: label("a"), version: 1, kindCode: 0x01), "another opening")
        XCTAssertNotEqual(otherOpening.commitment(label: label("a"), version: 1), c, "fresh openings hide equal changes from each other")
    }

    /// An honest history (but for one change signed with a key its device had rotated away, which
    /// is refused and not applied): operator onboarding, devices added and rotated by the owner, a
    /// second label, heads that lag the sequencer (changes between a head's covered size and the
    /// head), and a label changed again after a head covered its older value.
    func testAnHonestLogReplaysClean() throws {
        var log = newLog()
        let (a, b, c) = (try device(), try device(), try device())
        let alice = label("alice"), bob = label("bob")
        change(&log, alice, .add(a.record))
        change(&log, alice, .add(b.record), by: a)
        head(&log)
        change(&log, bob, .add(c.record))
        let covered = UInt64(log.entries.count)
        let newKey = Ed25519.generate()
        let b2 = Device(record: try DeviceRecord(id: b.id, signingKey: newKey.publicKey), seed: newKey.seed)
        change(&log, alice, .rotate(b2.record), by: b)  // after the covered size
        head(&log, covering: covered)
        change(&log, alice, .revoke(deviceID: a.id), by: b)  // signed with b's old key: refused
        change(&log, alice, .revoke(deviceID: a.id), by: b2)
        head(&log)
        head(&log)  // an epoch with no change
        let events = try replay(log)
        XCTAssertEqual(events.first, .config(origin: origin))
        XCTAssertEqual(verdicts(events), [.first, .chained, .first, .chained, .invalid("the signature does not verify under the signer's key for this change at this position"), .chained])
        XCTAssertEqual(heads(events), [.matches, .matches, .matches, .matches])
        var r = DirectoryReplay(store: MemoryMapNodeStore())
        _ = try log.replay(0..<log.entries.count, into: &r)
        XCTAssertEqual(r.states[alice]?.active.map(\.id), [b.id])
        XCTAssertEqual(try r.map.proof(for: alice).terminal, .member(value: r.states[alice]!.mapValue!))
        XCTAssertEqual(r.epoch, 4)
    }

    /// The log's map lies: a head that leaves out the newest change it covers; a head whose root
    /// is of another map; heads out of sequence. Each is named, the others still match.
    func testMapHeadsThatLieAreNamed() throws {
        var log = newLog()
        let a = try device(), ghost = try device()
        let alice = label("alice")
        change(&log, alice, .add(a.record))
        head(&log)
        change(&log, alice, .add(ghost.record))  // a ghost device…
        let withGhost = UInt64(log.entries.count)
        head(&log, covering: withGhost, root: log.root(covering: withGhost - 1))  // …that the map leaves out
        head(&log, epoch: 5)  // skips epochs
        head(&log, covering: 1)  // covers less than the head before it
        let events = try replay(log)
        XCTAssertEqual(verdicts(events), [.first, .ghostDevice], "the ghost is an attack whatever the map says")
        let outcomes = heads(events)
        XCTAssertEqual(outcomes.count, 4)
        XCTAssertEqual(outcomes[0], .matches)
        guard case .mismatch(let derived) = outcomes[1] else { return XCTFail("\(outcomes[1])") }
        XCTAssertEqual(derived, log.root(covering: withGhost), "the derived root includes the ghost")
        guard case .outOfSequence = outcomes[2], case .outOfSequence = outcomes[3] else { return XCTFail("\(outcomes)") }
        // A frozen map: fresh heads that never take the changes sequenced since (a revocation left
        // out for ever). Each head must cover every entry before the head before it.
        var frozen = newLog()
        change(&frozen, alice, .add(a.record))
        head(&frozen)
        let stuck = UInt64(frozen.entries.count - 1)
        change(&frozen, alice, .revoke(deviceID: a.id))
        head(&frozen, covering: stuck)  // lags one epoch: allowed
        head(&frozen, covering: stuck)  // still leaving the revocation out: not
        let frozenHeads = heads(try replay(frozen))
        XCTAssertEqual(frozenHeads.prefix(2), [.matches, .matches])
        guard case .outOfSequence = frozenHeads[2] else { return XCTFail("a frozen map: \(frozenHeads)") }
        // A head stamped before the one before it.
        var backwards = newLog()
        change(&backwards, alice, .add(a.record))
        head(&backwards)
        backwards.epoch += 1
        backwards.append(.mapHead(timestampMillis: 5, epoch: backwards.epoch, coveredSize: UInt64(backwards.entries.count), root: backwards.root(covering: 2)))
        guard case .outOfSequence = heads(try replay(backwards)).last else { return XCTFail("a head stamped in the past") }
        // A head that claims to cover entries at or after itself.
        var ahead = newLog()
        change(&ahead, alice, .add(a.record))
        head(&ahead, covering: 5)
        guard case .outOfSequence = heads(try replay(ahead)).first else { return XCTFail("a head covering its own future") }
    }

    /// Timestamps never decrease along a v2 log: an entry stamped before the one before it is
    /// counted and named (its change is still judged; time is not the rule's business).
    func testBackdatedEntriesAreNamed() throws {
        var log = newLog()
        let a = try device()
        let alice = label("alice")
        change(&log, alice, .add(a.record))
        changeEntry(&log, label("bob"), DeviceChange(kind: .add(try device().record), authority: .operator), time: 5)
        head(&log)
        var r = DirectoryReplay(store: MemoryMapNodeStore())
        XCTAssertEqual(verdicts(try log.replay(0..<log.entries.count, into: &r)), [.first, .first])
        XCTAssertEqual(r.backdatedCount, 1)
        XCTAssertEqual(r.backdated, [2])
    }

    /// Changes the log should not hold: a version that skips, a forged signature, a config after
    /// leaf 0, no config at 0. The skipping version is not applied at all; the forged signature
    /// moves the label's public part on (anyone sees the entry) but not its devices; the map heads
    /// after them still match the map of the public parts.
    func testInvalidChangesAreNotApplied() throws {
        var log = newLog()
        let a = try device(), b = try device()
        let alice = label("alice")
        change(&log, alice, .add(a.record))
        change(&log, alice, .add(b.record), version: 5)
        let forged = DeviceChange(kind: .add(b.record), authority: .chained(signer: a.id, signature: [UInt8](repeating: 7, count: 64)))
        changeEntry(&log, alice, forged)
        XCTAssertEqual(log.states[alice]?.active.map(\.id), [a.id], "the forged add changed no device")
        log.append(.config(origin: "another.example/log", vrfPublicKey: vrf.publicKey))
        head(&log)
        let events = try replay(log)
        let v = verdicts(events)
        XCTAssertEqual(v.count, 3)
        XCTAssertEqual(v[0], .first)
        guard case .invalid = v[1], case .invalid = v[2] else { return XCTFail("\(v)") }
        XCTAssertEqual(events[4], .malformed(index: 4, why: "a config entry after leaf 0"))
        XCTAssertEqual(heads(events), [.matches])
        var headless = Log()
        change(&headless, alice, .add(a.record))
        XCTAssertEqual(try replay(headless).first, .malformed(index: 0, why: "leaf 0 is not the config entry"))
    }

    /// A replay stopped anywhere and resumed from its saved position and stores (as an auditor's
    /// state database keeps them) says exactly what an uninterrupted one says: every event, and
    /// the same map. States survive their byte form unchanged, tombstones and encryption keys too.
    func testAReplayResumedFromItsPositionMatchesAnUninterruptedOne() throws {
        var log = newLog()
        let a = try device(), b = try device(), c = try device()
        change(&log, label("alice"), .add(a.record))
        change(&log, label("bob"), .add(b.record))
        head(&log)
        change(&log, label("alice"), .add(c.record), by: a)
        change(&log, label("alice"), .revoke(deviceID: a.record.id), by: c)
        let x = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey,
                                 encryptionKeys: [.init(type: .x25519, key: Ed25519.randomBytes(32))])
        change(&log, label("carol"), .add(x))
        change(&log, label("bob"), .add(try device().record))  // a ghost
        head(&log, covering: UInt64(log.entries.count - 1))
        change(&log, label("bob"), .reset(try device().record))
        head(&log)
        let whole = try replay(log)
        for cut in 1..<log.entries.count {
            var first = DirectoryReplay(store: MemoryMapNodeStore())
            var events: [DirectoryReplayEvent] = []
            events += try log.replay(0..<cut, into: &first)
            // The states as bytes and back, as the state database keeps them.
            var states = MemoryLabelStateStore()
            for (l, state) in first.states.all {
                let restored = try XCTUnwrap(DeviceSet(stateBytes: state.stateBytes))
                XCTAssertEqual(restored, state)
                states.setState(restored, of: l)
            }
            var resumed = DirectoryReplayOf(store: first.map.store, states: states, resuming: first.position)
            for i in cut..<log.entries.count {
                events.append(try resumed.replay(log.entries[i], leafHash: Merkle.leafHash(log.entries[i]), sealed: log.sealed[i]))
            }
            XCTAssertEqual(events, whole, "cut at \(cut)")
            var uninterrupted = DirectoryReplay(store: MemoryMapNodeStore())
            _ = try log.replay(0..<log.entries.count, into: &uninterrupted)
            XCTAssertEqual(resumed.position, uninterrupted.position)
        }
        XCTAssertTrue(verdicts(whole).contains(.ghostDevice))
        XCTAssertNil(DeviceSet(stateBytes: [0x01, 0x00]), "truncated state bytes are refused")
    }

    /// Step B: a change entry shows nothing of what it did. A replay without the sealed changes (an
    /// anonymous auditor) still checks every map head; one with them judges each change, and names
    /// a sealed change that does not open its entry, names another previous index, or commits to
    /// a set the change did not make (a ghost only in the committed set, which contacts are shown).
    func testSealedChangesAreJudgedOnlyByThoseWhoOpenThem() throws {
        var log = newLog()
        let a = try device(), ghost = try device()
        let alice = label("alice")
        change(&log, alice, .add(a.record))
        change(&log, alice, .add(ghost.record))  // an operator ghost
        head(&log)
        var anonymous = DirectoryReplay(store: MemoryMapNodeStore())
        let blind = try log.entries.map { try anonymous.replay($0, leafHash: Merkle.leafHash($0)) }
        XCTAssertEqual(heads(blind), [.matches], "the map's derivation is checked without any opening")
        let outcomes: [DirectoryChangeOutcome] = blind.compactMap {
            if case .change(_, _, let o) = $0 { return o } else { return nil }
        }
        XCTAssertEqual(outcomes, [.sealed, .sealed])
        XCTAssertEqual(verdicts(try replay(log)), [.first, .ghostDevice], "who holds the openings sees the ghost")

        // The honest add of a's device, but committing to a set with the ghost in it.
        var lying = newLog()
        let honest = DeviceChange(kind: .add(a.record), authority: .operator)
        var withGhost = DeviceSet()
        withGhost.apply(.add(a.record))
        withGhost.apply(.add(ghost.record))
        let sealed = SealedChange.sealing(honest, previousIndex: nil, setDigest: withGhost.setDigest)
        lying.append(.sealedChange(sealed, timestampMillis: 1_700_000_000_001, label: alice, version: 1), sealed: sealed)
        var r = DirectoryReplay(store: MemoryMapNodeStore())
        XCTAssertEqual(try lying.replay(0..<2, into: &r).last, .change(index: 1, label: alice, outcome: .setMismatch(.first)))

        // Sealed changes that do not open: another opening, another previous index, garbage.
        for (why, bad) in [
            ("another opening", SealedChange(opening: Ed25519.randomBytes(16), change: honest, previousIndex: nil, setDigest: sealed.setDigest).encoded),
            ("another previous index", SealedChange(opening: sealed.opening, change: honest, previousIndex: 0, setDigest: sealed.setDigest).encoded),
            ("not a sealed change", [1, 2, 3]),
        ] {
            var forged = lying
            forged.sealed[1] = bad
            var f = DirectoryReplay(store: MemoryMapNodeStore())
            guard case .change(_, _, .badOpening)? = try forged.replay(0..<2, into: &f).last else { return XCTFail(why) }
            XCTAssertEqual(f.states[alice]?.version, 1, "\(why): the public part still moves on")
        }
        // A previous index is checked even where the opening is the entry's own: one sealed with it.
        let misplaced = SealedChange(opening: sealed.opening, change: honest, previousIndex: 0, setDigest: sealed.setDigest)
        var m = newLog()
        m.append(.sealedChange(misplaced, timestampMillis: 1_700_000_000_001, label: alice, version: 1), sealed: misplaced)
        var mr = DirectoryReplay(store: MemoryMapNodeStore())
        guard case .change(_, _, .badOpening(let why))? = try m.replay(0..<2, into: &mr).last else { return XCTFail("a wrong previous index") }
        XCTAssertTrue(why.contains("previous index"), why)
    }

    /// A log whose map stops taking changes (no head ever covers them) would make every replay hold
    /// them all: past its bound the replay stops, where it was, and says why. Heads in between
    /// keep an honest log far from it.
    func testChangesNoHeadCoversAreBounded() throws {
        var log = newLog()
        let alice = label("alice")
        change(&log, alice, .add(try device().record))
        head(&log)
        for i in 0..<3 { change(&log, label("user\(i)"), .add(try device().record)) }
        var r = DirectoryReplay(store: MemoryMapNodeStore(), states: MemoryLabelStateStore(), maxPendingChanges: 3)
        _ = try log.replay(0..<log.entries.count, into: &r)
        XCTAssertEqual(r.pendingChanges, 3)
        change(&log, label("user3"), .add(try device().record))
        let last = log.entries.count - 1
        XCTAssertThrowsError(try r.replay(log.entries[last], leafHash: Merkle.leafHash(log.entries[last]), sealed: log.sealed[last])) { error in
            XCTAssertEqual(error as? DirectoryReplayStalled, .init(index: UInt64(last), pending: 3))
        }
        XCTAssertEqual(r.size, UInt64(last), "not replayed: the replay stays where it was")
        // A head covering them: the bound is on what is uncovered, not on the log.
        var withHead = newLog()
        change(&withHead, alice, .add(try device().record))
        head(&withHead)
        for i in 0..<3 { change(&withHead, label("user\(i)"), .add(try device().record)) }
        head(&withHead)
        change(&withHead, label("user3"), .add(try device().record))
        var covered = DirectoryReplay(store: MemoryMapNodeStore(), states: MemoryLabelStateStore(), maxPendingChanges: 3)
        XCTAssertNoThrow(try withHead.replay(0..<withHead.entries.count, into: &covered))
        XCTAssertEqual(covered.pendingChanges, 1)
    }

    /// A server whose map a follower keeps: the replay hands the follower each head's changes
    /// (`takeQueued`) and replays the head with the root the follower computed (`trustedRoot`).
    /// Its states, events and positions are the auditor's, and its own map is never touched.
    func testAFollowerKeepsTheMapWithTheSameRootsAndStates() throws {
        var log = newLog()
        let (a, b, c) = (label("a"), label("b"), label("c"))
        let (d1, d2, d3) = (try device(), try device(), try device())
        var follower = MapTree.Incremental(store: MemoryMapNodeStore())
        var server = DirectoryReplay(store: MemoryMapNodeStore())
        var auditor = DirectoryReplay(store: MemoryMapNodeStore())
        var serverEvents: [DirectoryReplayEvent] = []
        func serve(_ range: Range<Int>) throws {
            for i in range { serverEvents.append(try server.replay(log.entries[i], leafHash: Merkle.leafHash(log.entries[i]), sealed: log.sealed[i])) }
        }
        // The server's head: the follower applies what the replay gives it, the head carries its root.
        func followerHead(lagging: Int = 0) throws {
            let covered = UInt64(log.entries.count - lagging)
            try follower.set(server.takeQueued(below: covered))
            let root = try follower.root()
            log.epoch += 1
            log.append(.mapHead(timestampMillis: 1_700_000_001_000, epoch: log.epoch, coveredSize: covered, root: root))
            let i = log.entries.count - 1
            serverEvents.append(try server.replay(log.entries[i], leafHash: Merkle.leafHash(log.entries[i]), trustedRoot: root))
        }
        change(&log, a, .add(d1.record))
        change(&log, b, .add(d2.record))
        try serve(0..<log.entries.count)
        try followerHead()
        change(&log, a, .add(d3.record), by: d1)
        change(&log, c, .add(d2.record))
        try serve((log.entries.count - 2)..<log.entries.count)
        try followerHead(lagging: 1)  // the follower covers the first of the two; the head lags
        change(&log, b, .revoke(deviceID: d2.id), by: d2)
        try serve((log.entries.count - 1)..<log.entries.count)
        try followerHead()
        let auditorEvents = try log.replay(0..<log.entries.count, into: &auditor)
        XCTAssertEqual(serverEvents, auditorEvents, "the same events as an auditor's, roots included")
        XCTAssertEqual(heads(auditorEvents), [.matches, .matches, .matches])
        XCTAssertEqual(server.position, auditor.position)
        XCTAssertEqual(server.map.store.count, 0, "the server's own map was never touched")
        XCTAssertEqual(try follower.root(), try auditor.map.root())
        // A root the follower did not compute is named as the auditor would name it.
        change(&log, c, .add(d3.record))
        try serve((log.entries.count - 1)..<log.entries.count)
        let covered = UInt64(log.entries.count)
        _ = server.takeQueued(below: covered)
        log.epoch += 1
        log.append(.mapHead(timestampMillis: 1_700_000_002_000, epoch: log.epoch, coveredSize: covered, root: MapTree.empty))
        let i = log.entries.count - 1
        let wrong = try server.replay(log.entries[i], leafHash: Merkle.leafHash(log.entries[i]), trustedRoot: label("the follower's"))
        XCTAssertEqual(heads([wrong]), [.mismatch(derived: label("the follower's"))])
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(subsequence s: [UInt8]) -> Bool {
        guard !s.isEmpty, s.count <= count else { return s.isEmpty }
        return (0...(count - s.count)).contains { Array(self[$0..<($0 + s.count)]) == s }
    }
}
