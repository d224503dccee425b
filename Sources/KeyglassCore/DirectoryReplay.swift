/// Replays a v2 log's entries in index order (Spec/directory.md, "Replaying a log"): each change
/// judged by `DeviceRule` against its label's state, each map head checked against the map of the
/// changes it covers. What the sequencer's follower builds and what an auditor re-derives are the
/// same computation, so they are this one type. `Map` is the map (every node in memory for the
/// server's, `DirectoryReplay`; only leaves in an auditor's database) and `States` the labels'
/// states, in memory or in that database, from which a replay can also resume where an earlier one
/// stopped (`position`).
public typealias DirectoryReplay<Store: MapNodeStore> = DirectoryReplayOf<MapTree.Incremental<Store>, MemoryLabelStateStore>

/// What one entry of a v2 log was found to be (`DirectoryReplayOf.replay`).
public enum DirectoryReplayEvent: Equatable, Sendable {
    /// Leaf 0.
    case config(origin: String)
    /// A change entry and what it was found to be.
    case change(index: UInt64, label: Hash, outcome: DirectoryChangeOutcome)
    /// A map head and whether its root is the derived one.
    case mapHead(index: UInt64, epoch: UInt64, outcome: DirectoryHeadOutcome)
    /// Not a v2 entry, or one where it cannot be (a config after leaf 0, no config at 0).
    case malformed(index: UInt64, why: String)
}

/// What a change entry was found to be (Spec/directory.md, "Sealed changes").
public enum DirectoryChangeOutcome: Equatable, Sendable {
    /// Not at the label's next version: not applied at all (`invalid_change`).
    case notApplied(String)
    /// Replayed without its sealed change: its public part applied, what it did unknown.
    case sealed
    /// Opened and judged by the rule.
    case judged(DeviceRule.Verdict)
    /// Its sealed change does not parse, does not open its commitment, or names another
    /// previous index than the label's (`bad_opening`): the label's devices are unknown from here.
    case badOpening(String)
    /// Opened and judged, but it commits to another set than the one the rule leaves
    /// (`set_mismatch`: a ghost only in the committed set, which contacts would be shown).
    case setMismatch(DeviceRule.Verdict)

    /// The rule's verdict, when the change was opened and judged.
    public var verdict: DeviceRule.Verdict? {
        switch self {
        case .judged(let v), .setMismatch(let v): return v
        case .notApplied, .sealed, .badOpening: return nil
        }
    }
}

/// A map head checked.
public enum DirectoryHeadOutcome: Equatable, Sendable {
    /// Its root is the root of the map of the changes it covers.
    case matches
    /// It is not: `derived` is the root those changes make (`map_mismatch`).
    case mismatch(derived: Hash)
    /// Its epoch or covered size is out of sequence; its root was not checked.
    case outOfSequence(String)
}

/// The log sequenced more than `maxPendingChanges` changes no map head covers: the replay
/// stops there (what an auditor reports as refused).
public struct DirectoryReplayStalled: Error, Equatable, CustomStringConvertible {
    /// The bound a replay enforces unless told otherwise (`DirectoryReplayOf.maxPendingChanges`).
    public static let defaultBound = 1 << 18

    /// The change that went past the bound.
    public let index: UInt64
    /// The bound.
    public let pending: Int

    /// The change at `index` went past `pending` uncovered changes.
    public init(index: UInt64, pending: Int) {
        self.index = index
        self.pending = pending
    }

    /// The reason in words.
    public var description: String {
        "entry \(index): more than \(pending) changes with no map head covering them (an honest server covers its changes every epoch)"
    }
}

/// `DirectoryReplay` with the labels' states kept in `States`.
public struct DirectoryReplayOf<Map: UpdatableMap, States: LabelStateStore> {

    /// The origin and VRF key of leaf 0.
    public private(set) var origin: String?
    /// The VRF key labels are proved under.
    public private(set) var vrfPublicKey: [UInt8]?
    /// Entries replayed: the next one's index.
    public private(set) var size: UInt64 = 0
    /// Each label's state after the newest applied change.
    public private(set) var states: States
    /// The map as of the newest map head's covered size.
    public private(set) var map: Map
    /// The newest map head's epoch and covered size (0 before the first).
    public private(set) var epoch: UInt64 = 0
    /// Entries [0, coveredSize) are in `map`.
    public private(set) var coveredSize: UInt64 = 0
    /// The newest map head's index and time.
    private var headIndex: UInt64 = 0
    private var headTime: UInt64 = 0
    /// Entries stamped before the entry with a timestamp before them (timestamps never decrease
    /// along a v2 log): how many, and the indices of the first 1,000 (a hostile log can backdate
    /// every entry; the count says so without the list growing with it).
    public private(set) var backdatedCount = 0
    /// The first 1,000 backdated entries' indices.
    public private(set) var backdated: [UInt64] = []
    private var newestTime: UInt64 = 0
    /// Changes applied to `states` but not yet to `map`, in index order: (index, label, value).
    private var queued: [Position.Queued] = []
    private var queueStart = 0

    /// Most changes applied to the states but not yet covered by a map head (`pendingChanges`):
    /// they are kept in memory and in a saved position, so a log that never covers its changes
    /// must not make them grow without bound. An honest server covers them every epoch, and
    /// appends a head early long before this (`DirectoryLog.forcedHeadChanges`). The bound this
    /// replay enforces: `DirectoryReplayStalled.defaultBound` unless told otherwise.
    public let maxPendingChanges: Int

    /// Changes applied to the states but not yet in the map (none covered them yet).
    public var pendingChanges: Int { queued.count - queueStart }

    /// A replay keeping its map in `map` and the labels' states in `states`: from the empty log
    /// (both empty), or from `position`, where an earlier replay whose stores these are stopped
    /// (`position` was saved with them); at most `maxPendingChanges` changes uncovered.
    public init(
        map: Map, states: States, resuming position: Position? = nil,
        maxPendingChanges: Int = DirectoryReplayStalled.defaultBound
    ) {
        self.maxPendingChanges = maxPendingChanges
        self.map = map
        self.states = states
        if let p = position {
            origin = p.origin
            vrfPublicKey = p.vrfPublicKey
            size = p.size
            epoch = p.epoch
            coveredSize = p.coveredSize
            headIndex = p.headIndex
            headTime = p.headTime
            backdatedCount = p.backdatedCount
            backdated = p.backdated
            newestTime = p.newestTime
            queued = Array(p.queued)
        }
    }

    /// Everything of a replay that is not in its stores (see `DirectoryReplayPosition`).
    public typealias Position = DirectoryReplayPosition

    /// Where this replay is: save it with the stores to resume later.
    public var position: Position {
        Position(
            origin: origin, vrfPublicKey: vrfPublicKey, size: size, epoch: epoch, coveredSize: coveredSize, headIndex: headIndex,
            headTime: headTime, backdatedCount: backdatedCount, backdated: backdated, newestTime: newestTime,
            queued: queued[queueStart...])
    }

    /// The root of the map of every change in entries [0, covered): what the map follower puts in
    /// the next head. The changes below `covered` go into the map now; the head that follows must
    /// cover at least as much (a smaller one would be out of sequence anyway).
    public mutating func mapRoot(covering covered: UInt64) throws -> Hash {
        try applyQueued(below: covered)
        return try map.root()
    }

    /// The changes below `covered` not yet in the map, taken out of the queue without touching the
    /// map: for a server whose map a follower keeps (it applies them and computes the next head's
    /// root on its own thread). The head that covers them is then replayed with `trustedRoot:`.
    public mutating func takeQueued(below covered: UInt64) -> [(label: Hash, value: Hash)] {
        let batch = queued[queueStart...].prefix { $0.index < covered }
        queueStart += batch.count
        defer { compactQueue() }
        return batch.map { ($0.label, $0.value) }
    }

    private mutating func applyQueued(below covered: UInt64) throws {
        let batch = queued[queueStart...].prefix { $0.index < covered }
        if !batch.isEmpty { try map.set(batch.map { ($0.label, $0.value) }) }
        queueStart += batch.count
        compactQueue()
    }

    private mutating func compactQueue() {
        if queueStart > 1024, queueStart * 2 > queued.count {
            // A new array, not `removeFirst`, which keeps the capacity: after a burst of changes
            // no head covered (72 bytes each) it would stay allocated.
            queued = Array(queued[queueStart...])
            queueStart = 0
        }
    }

    /// Replaces a label's state: an auditor that starts watching a label rebuilds its devices from
    /// the label's opened history (the replay so far saw its changes sealed), with the same public
    /// part. The caller checks that part is the one this replay derived.
    public mutating func restoreState(_ state: DeviceSet, of label: Hash) throws {
        try states.setState(state, of: label)
    }

    /// Replays the entry at index `size` (its bytes and its leaf hash) and says what it was. A
    /// change entry's `sealed` change, when the caller holds it, is opened and judged. `parsed`:
    /// `sealed` already parsed by the caller, who vouches for it (the server replaying what it has
    /// just sealed itself: parsing again would check each device key in full a second time).
    ///
    /// `trustedRoot`: for a map head, the root its maker computed from the changes `takeQueued`
    /// gave it (a server replaying its own head, whose map a follower keeps): the head's sequence
    /// is checked as always, its root only against `trustedRoot`, and this replay's map is not
    /// touched. Auditors never pass it.
    public mutating func replay(
        _ bytes: [UInt8], leafHash: Hash, sealed: [UInt8]? = nil, parsed: SealedChange? = nil, trustedRoot: Hash? = nil
    ) throws -> DirectoryReplayEvent {
        let index = size
        size += 1
        let entry: DirectoryEntry
        do { entry = try DirectoryEntry.parse(bytes) } catch { return .malformed(index: index, why: error.description) }
        switch entry {
        case .change(let time, _, _, _, _), .mapHead(let time, _, _, _):
            if time < newestTime {
                backdatedCount += 1
                if backdated.count < 1000 { backdated.append(index) }
            }
            newestTime = max(newestTime, time)
        case .config:
            break
        }
        switch entry {
        case .config(let o, let key):
            guard index == 0 else { return .malformed(index: index, why: "a config entry after leaf 0") }
            origin = o
            vrfPublicKey = key
            return .config(origin: o)
        case _ where index == 0:
            return .malformed(index: 0, why: "leaf 0 is not the config entry")
        case .change(_, let label, let version, let kind, let commitment):
            guard pendingChanges < maxPendingChanges else {
                size = index  // not replayed: the replay stays where it was
                throw DirectoryReplayStalled(index: index, pending: maxPendingChanges)
            }
            var state = try states.state(of: label) ?? DeviceSet()
            guard version == state.version + 1 else {
                return .change(
                    index: index, label: label, outcome: .notApplied("the entry says version \(version); the label is at \(state.version)"))
            }
            let outcome = SealedChange.open(
                sealed, commitment: commitment, kind: kind, label: label, state: &state, origin: origin ?? "", index: index, leafHash: leafHash,
                parsed: parsed)
            try states.setState(state, of: label)
            // Grown by a quarter, not doubled: after a burst no head covered (up to 262,144 changes
            // of 72 bytes) a doubled queue would hold ~19 MB of room it never uses.
            if queued.count == queued.capacity { queued.reserveCapacity(queued.count + max(1024, queued.count / 4)) }
            queued.append(Position.Queued(index: index, label: label, value: state.mapValue!))  // applied: the label has a value now
            return .change(index: index, label: label, outcome: outcome)
        case .mapHead(let time, let e, let covered, let root):
            guard e == epoch + 1 else { return .mapHead(index: index, epoch: e, outcome: .outOfSequence("epoch \(e) follows epoch \(epoch)")) }
            // Every entry before the previous head must be in this one: a map that stopped taking
            // changes (a revocation left out for ever behind fresh heads) is out of sequence.
            let least = max(coveredSize, headIndex)
            guard covered >= least, covered <= index else {
                return .mapHead(index: index, epoch: e, outcome: .outOfSequence("covers \(covered) entries: not in \(least)…\(index)"))
            }
            guard time >= headTime else {
                return .mapHead(index: index, epoch: e, outcome: .outOfSequence("stamped before the map head of epoch \(epoch)"))
            }
            headIndex = index
            headTime = time
            if let trustedRoot {
                guard queued[queueStart...].first.map({ $0.index >= covered }) ?? true else {
                    return .mapHead(index: index, epoch: e, outcome: .outOfSequence("changes below \(covered) were not taken for the follower"))
                }
                epoch = e
                coveredSize = covered
                return .mapHead(index: index, epoch: e, outcome: trustedRoot == root ? .matches : .mismatch(derived: trustedRoot))
            }
            try applyQueued(below: covered)
            epoch = e
            coveredSize = covered
            let derived = try map.root()
            return .mapHead(index: index, epoch: e, outcome: derived == root ? .matches : .mismatch(derived: derived))
        }
    }
}

extension SealedChange {
    /// Applies the change entry at `index` to `state`: its public part always, and, given its
    /// sealed change, the rule's verdict on what the change did (Spec/directory.md, "Sealed
    /// changes"). Owners' monitors open their label's changes the same way.
    public static func open(
        _ sealed: [UInt8]?, commitment: Hash, kind: UInt8, label: Hash, state: inout DeviceSet, origin: String, index: UInt64,
        leafHash: Hash, parsed: SealedChange? = nil
    ) -> DirectoryChangeOutcome {
        guard let sealed else {
            state.advance(index: index, leafHash: leafHash)
            return .sealed
        }
        let why: String
        do {
            let opened: SealedChange
            if let parsed {
                assert(parsed.encoded == sealed, "the caller vouched for a sealed change that is not these bytes")
                opened = parsed
            } else {
                opened = try SealedChange.parse(sealed)
            }
            if !opened.opens(commitment: commitment, label: label, version: state.version + 1, kindCode: kind) {
                why = "it does not open the entry's commitment"
            } else if opened.previousIndex != state.newestIndex {
                why =
                    "it names previous index \(opened.previousIndex.map(String.init) ?? "none"), the label's is \(state.newestIndex.map(String.init) ?? "none")"
            } else {
                let verdict = DeviceRule.apply(opened.change, to: &state, origin: origin, label: label, index: index, leafHash: leafHash)
                return opened.setDigest == state.setDigest ? .judged(verdict) : .setMismatch(verdict)
            }
        } catch {
            why = error.description
        }
        state.advance(index: index, leafHash: leafHash)
        return .badOpening(why)
    }
}

extension DirectoryReplayOf {
    /// A replay keeping every node of its map in `store` (`MapTree.Incremental`).
    public init<Store: MapNodeStore>(
        store: Store, states: States, resuming position: Position? = nil,
        maxPendingChanges: Int = DirectoryReplayStalled.defaultBound
    ) where Map == MapTree.Incremental<Store> {
        self.init(map: MapTree.Incremental(store: store), states: states, resuming: position, maxPendingChanges: maxPendingChanges)
    }
}

extension DirectoryReplayOf where States == MemoryLabelStateStore {
    /// A replay from the empty log, keeping the map's nodes in `store` (empty) and the labels'
    /// states in memory.
    public init<Store: MapNodeStore>(store: Store) where Map == MapTree.Incremental<Store> {
        self.init(store: store, states: MemoryLabelStateStore())
    }
}

/// Everything of a replay that is not in its stores: saved beside them, it lets a later replay
/// go on from entry `size` (the stores must be as they were when it was read).
public struct DirectoryReplayPosition: Sendable, Equatable {
    /// A change applied to the states but not yet to the map (it came after the newest head's
    /// covered size).
    public struct Queued: Sendable, Equatable {
        /// The change's log index.
        public let index: UInt64
        /// Its label.
        public let label: Hash
        /// The label's map value after it.
        public let value: Hash

        /// One queued change.
        public init(index: UInt64, label: Hash, value: Hash) {
            self.index = index
            self.label = label
            self.value = value
        }
    }

    /// Leaf 0's origin and VRF key, once replayed.
    public var origin: String?
    /// Leaf 0's VRF key.
    public var vrfPublicKey: [UInt8]?
    /// Entries replayed.
    public var size: UInt64
    /// The newest head's epoch, covered size, index and time.
    public var epoch: UInt64
    /// Entries [0, coveredSize) are in the map.
    public var coveredSize: UInt64
    /// The newest head's index.
    public var headIndex: UInt64
    /// The newest head's timestamp.
    public var headTime: UInt64
    /// Backdated entries: how many, the first 1,000, and the newest timestamp so far.
    public var backdatedCount: Int
    /// The first 1,000 backdated entries' indices.
    public var backdated: [UInt64]
    /// The newest timestamp replayed.
    public var newestTime: UInt64
    /// Changes not yet in the map, in index order.
    /// (A slice of the replay's own queue: taking a position copies nothing.)
    public var queued: ArraySlice<Queued>

    /// A position from its parts (as an auditor's database stored them).
    public init(
        origin: String?, vrfPublicKey: [UInt8]?, size: UInt64, epoch: UInt64, coveredSize: UInt64, headIndex: UInt64,
        headTime: UInt64, backdatedCount: Int, backdated: [UInt64], newestTime: UInt64, queued: ArraySlice<Queued>
    ) {
        self.origin = origin
        self.vrfPublicKey = vrfPublicKey
        self.size = size
        self.epoch = epoch
        self.coveredSize = coveredSize
        self.headIndex = headIndex
        self.headTime = headTime
        self.backdatedCount = backdatedCount
        self.backdated = backdated
        self.newestTime = newestTime
        self.queued = queued
    }
}
