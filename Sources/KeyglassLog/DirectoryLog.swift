import Foundation
import KeyglassCore

/// A v2 log, the key directory (issue 14, step A; Spec/directory.md), written and answered as a
/// library over a `LogStorage`: changes judged by `DeviceRule` and sequenced, map heads appended by
/// the map follower's step, lookups answered against the newest checkpoint whose last leaf is a map
/// head. `KeyglassServer/Directory/DirectoryService.swift` runs it behind HTTP: a writer thread,
/// batches and the epoch timer.
///
/// Everything is derived from the stored entries by replaying them (`DirectoryReplay`, the
/// computation auditors run), so what this serves and what an auditor derives cannot drift apart.
/// What the replay derives (the map's nodes, every label's state) is kept in a state database
/// (`DirectoryStateStore`) as of the newest map head, which is what lookups are answered from; the
/// changes since that head are in memory (one epoch's). Memory is then bounded by an epoch's
/// changes and SQLite's caches, not by the directory. The state database can be deleted at any
/// time: opening the log replays what it lacks (everything, if it is gone).
///
/// Not thread-safe: one owner calls it (the server will keep it behind one serial queue).
public final class DirectoryLog {
    /// A change a client asks for.
    public struct ChangeRequest: Sendable {
        /// As typed; normalised (`Identity.normalize`) before its label is computed.
        public var identity: String
        /// What the change does.
        public var kind: DeviceChange.Kind
        /// The operator (the caller holds the publish token) or the signing device.
        public var authority: DeviceChange.Authority
        /// The canonical identity's label, if the caller computed it (with this log's VRF key:
        /// `DirectoryLabels.computeLabel`), so the writer does not: a VRF output is ~0.1 ms of one
        /// core, and callers on several cores compute them in parallel.
        public var label: Hash?

        /// A change request.
        public init(identity: String, kind: DeviceChange.Kind, authority: DeviceChange.Authority) {
            self.identity = identity
            self.kind = kind
            self.authority = authority
        }
    }

    /// Why a change was not sequenced.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// The identity is not canonical (Spec/entry.md's profile).
        case identity(String)
        /// The rule's verdict is one the server refuses (an attack or an invalid change).
        case rule(DeviceRule.Verdict)
        /// The log holds as many entries as its storage can.
        case logFull
        /// A chained change that does not verify while the label has changes no map head shows yet:
        /// most likely signed against the head's newest index, which has moved on. Sign again
        /// after the next head.
        case stalePosition
        /// The identity's sealed changes were erased (`keyglass-server erase`): this log no longer
        /// knows its devices.
        case erased
        /// A chained change not signed by an active device over the label's position (or the
        /// rule found it invalid before any signature could be checked).
        case doesNotVerify
        /// So many changes since the newest stored map head that a replay would refuse the log:
        /// retry once a head is stored.
        case mapBehind

        /// The reason in words.
        public var description: String {
            switch self {
            case .identity(let why): return "identity: \(why)"
            case .rule(let v): return "refused by the device rule: \(v)"
            case .logFull: return "the log is full"
            case .erased: return "the identity was erased from this directory"
            case .doesNotVerify: return "the change does not verify: it must be signed by an active device of the identity over its newest position"
            case .mapBehind: return "no map head has covered the newest changes for too long; retry once one is stored"
            case .stalePosition:
                return "the identity changed after the newest map head and the signature does not verify at its current position: sign again after the next head"
            }
        }
    }

    public let storage: any LogStorage
    private let store: LogStore
    private let signer: NoteSigner
    /// Identities' labels and VRF proofs, under the VRF key of leaf 0 (shared with the server).
    public let labels: DirectoryLabels
    /// The VRF key of leaf 0.
    public let vrfPublicKey: [UInt8]
    private var head: LogHead
    /// Where the state database is (":memory:" for a log kept only while this object lives).
    public let statePath: String
    private var state: DirectoryStateStore
    /// The states the replay derives: the state database's as of the newest head, and the changes
    /// since in memory until the next head writes them through.
    private var states: PendingLabelStates
    private var replay: DirectoryReplayOf<StoredMap, PendingLabelStates>
    /// The tree's compact range where the replay is (saved with its position).
    private var range = CompactRange()
    /// Labels with a change this log cannot open (its sealed change erased): what their devices are
    /// is unknown here, so they are neither looked up nor changed. Kept in the state database.
    private var unopened: Set<Hash> = []
    /// The newest checkpoint whose last leaf is a map head: lookups are answered against it.
    public private(set) var headCheckpoint: StoredCheckpoint?
    /// The entries that head's map and states cover (its head may lag: it covers fewer than its index).
    public private(set) var headCovered: UInt64 = 0
    /// A head handed to the follower (`beginHead`) and not yet committed or failed.
    private var headInFlight = false
    /// The follower: the one writer of the state database once the log is open.
    public private(set) var follower: DirectoryFollower!

    /// Creates a v2 log in `storage` (empty): its first checkpoint, then leaf 0, the config with
    /// the log's origin (the signer's name) and the VRF key of `vrfSeed`.
    public static func create(storage: any LogStorage, signer: NoteSigner, vrfSeed: [UInt8], statePath: String? = nil) throws -> DirectoryLog {
        _ = try LogAdmin.initialise(storage, signer: signer)
        let log = try DirectoryLog(storage: storage, signer: signer, vrfSeed: vrfSeed, statePath: statePath)
        guard let vrfKey = Ed25519.keyPair(seed: vrfSeed)?.publicKey else { throw StoreError.corrupt("the VRF key is not a 32-byte seed") }
        try log.state.transaction { try log.append([(label: nil, entry: DirectoryEntry.config(origin: signer.name, vrfPublicKey: vrfKey).encoded, sealed: nil)]) }
        return log
    }

    /// Opens a v2 log: takes the state database at `statePath` (nil: in memory) where it agrees
    /// with the log, replays the stored entries after it, and refuses a log whose leaf 0 is not
    /// this key's config.
    public init(storage: any LogStorage, signer: NoteSigner, vrfSeed: [UInt8], statePath: String? = nil) throws {
        guard let pair = Ed25519.keyPair(seed: vrfSeed) else { throw StoreError.corrupt("the VRF key is not a 32-byte seed") }
        self.storage = storage
        self.signer = signer
        labels = try DirectoryLabels(vrfSeed: vrfSeed, storage: storage)
        vrfPublicKey = pair.publicKey
        store = LogStore(storage: storage)
        head = try LogHead.load(from: storage, signer: signer)
        self.statePath = statePath ?? ":memory:"
        state = try Self.openState(self.statePath, logKey: signer.verifierKey)
        states = PendingLabelStates(base: state.labelStates)
        replay = DirectoryReplayOf(map: state.map, states: states)
        try resume()
        follower = DirectoryFollower(state: state)
        if size > 0 {
            guard replay.origin == signer.name, replay.vrfPublicKey == vrfPublicKey else {
                throw StoreError.corrupt("leaf 0 is not the config of \(signer.name) with this VRF key")
            }
        }
    }

    /// The state database at `path`; one kept for another key (the log's key was rotated) or
    /// unreadable is deleted and started again: everything in it is derived from the log.
    private static func openState(_ path: String, logKey: NoteVerifierKey) throws -> DirectoryStateStore {
        do {
            let s = try DirectoryStateStore(path: path, logKey: logKey)
            _ = try s.load()
            return s
        } catch {
            guard path != ":memory:" else { throw error }
            try removeState(at: path)
            return try DirectoryStateStore(path: path, logKey: logKey)
        }
    }

    /// Removes a state database to rebuild it; one that cannot be removed stops the opening (a
    /// new one opened over it would keep another history's rows).
    private static func removeState(at path: String) throws {
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
    }

    /// Goes on from where the state database stopped (if it agrees with the log: the tree it
    /// saved is one the log signed) and replays every stored entry after it, the changes since
    /// the newest head into memory only.
    private func resume(atRuntime: Bool = false) throws {
        // The newest map head in the log: the state database is brought to what it covers, and
        // the entries after that stay pending in memory, as they were when the server stopped.
        let newestHead = try Self.newestHead(in: storage, below: size)
        var saved = try state.load()
        if let s = saved,
            try s.range.size > size || s.range.size > (newestHead?.covered ?? 0) || storage.checkpoint(size: s.range.size)?.root != s.range.root
        {
            // Not this log's history (restored from another backup, a log started again), or
            // ahead of the newest head (written by an older build): rebuilt. Not while serving: the
            // follower's, the lookups' and the writer's connections would keep the old file.
            if atRuntime { throw StoreError.corrupt("the state database no longer agrees with the log; restart the server to rebuild it") }
            state.close()
            try Self.removeState(at: statePath)
            state = try DirectoryStateStore(path: statePath, logKey: signer.verifierKey)
            saved = nil
        }
        try state.map.reload()
        states = PendingLabelStates(base: state.labelStates)
        defer { if let statesReader { states.readCommitted(from: statesReader) } }
        replay = DirectoryReplayOf(map: state.map, states: states, resuming: saved?.position)
        range = saved?.range ?? CompactRange()
        unopened = try state.erasedLabels()
        headCheckpoint = nil
        headCovered = 0
        headInFlight = false
        // Up to what the newest head covers: written through a chunk at a time, states and the
        // position as of each chunk's end.
        let covered = newestHead?.covered ?? 0
        var start = range.size
        while start < covered {
            let end = min(covered, start + 1000)
            let sealed = try storage.sealedChanges(start: start, end: end)
            try state.transaction {
                for e in try storage.entries(start: start, end: end) {
                    try replayStored(e.data, leafHash: e.leafHash, sealed: sealed[e.index])
                }
                try states.flush()
                try state.save(replay.position, range: range)
                // No head's size while the states pass through others' (a restart after a failed
                // head, with lookups holding the old snapshot): readers wait for the new one.
                try state.setLookupSize(0)
            }
            start = end
        }
        // The rest: the head (its map changes stored with the size lookups check) and the changes
        // after what it covers, whose states stay pending until the next head.
        try state.transaction {
            while start < size {
                let end = min(size, start + 1000)
                let sealed = try storage.sealedChanges(start: start, end: end)
                for e in try storage.entries(start: start, end: end) {
                    try replayStored(e.data, leafHash: e.leafHash, sealed: sealed[e.index])
                }
                start = end
            }
            if let newestHead {
                try state.setLookupSize(newestHead.index + 1)
                headCheckpoint = try storage.checkpoint(size: newestHead.index + 1)
                headCovered = newestHead.covered
            }
        }
    }

    /// The newest map head among entries [0, size): its index and covered size.
    private static func newestHead(in storage: any LogStorage, below size: UInt64) throws -> (index: UInt64, covered: UInt64)? {
        var end = size
        while end > 0 {
            let start = end > 1000 ? end - 1000 : 0
            for e in try storage.entries(start: start, end: end).reversed() {
                if case .mapHead(_, _, let covered, _)? = try? DirectoryEntry.parse(e.data) { return (e.index, covered) }
            }
            end = start
        }
        return nil
    }

    /// Replays one stored entry (inside a state transaction); a map head also becomes what lookups
    /// are answered against, and writes the states and position it covers to the state database.
    /// `parsed`: the sealed change as this log made it (its device key checked when the change
    /// was asked for), so it is not parsed and checked a second time.
    private func replayStored(_ bytes: [UInt8], leafHash: Hash, sealed: [UInt8]?, parsed: SealedChange? = nil) throws {
        states.currentIndex = replay.size
        let event = try replay.replay(bytes, leafHash: leafHash, sealed: sealed, parsed: parsed)
        range.append(leafHash)
        switch event {
        case .change(let index, let label, let outcome):
            switch outcome {
            case .notApplied, .judged: break
            case .sealed:
                unopened.insert(label)
                try state.markErased(label)
            case .badOpening(let why): throw StoreError.corrupt("the sealed change of entry \(index) does not open it: \(why)")
            case .setMismatch: throw StoreError.corrupt("entry \(index) commits to another set than its change makes")
            }
        case .mapHead(_, _, .matches):
            break  // resume writes the states through per chunk (`resume`)
        case .mapHead(let index, let epoch, let outcome):
            throw StoreError.corrupt("map head of epoch \(epoch) at \(index) does not replay: \(outcome)")
        case .config, .malformed:
            break
        }
    }

    /// The entries so far.
    public var size: UInt64 { head.checkpoint.size }

    /// Entries sequenced since the newest stored map head.
    public var changesSinceHead: Int { Int(size - (headCheckpoint?.size ?? 0)) }

    /// Entries no stored map head covers (what a replay holds pending).
    public var uncoveredChanges: Int { Int(size - headCovered) }

    /// Past this many entries since the newest stored head the server appends one at once, whatever
    /// its epoch: a replay refuses a log with twice as many uncovered (`DirectoryReplayStalled`),
    /// and `prepare` refuses changes (`mapBehind`) before it gets there.
    public static var forcedHeadChanges: Int { DirectoryReplayStalled.defaultBound / 2 }

    /// The log's origin (its signing key's name), which chained changes sign.
    public var origin: String { signer.name }

    /// The identity's label (canonical): remembered, stored with its first change, or computed.
    public func label(of identity: String) throws -> Hash {
        try labels.label(of: identity)
    }

    /// Sequences `requests` as one batch (in order: a later change to a label is judged against the
    /// state the earlier ones left): each either gets its log index or is refused.
    public func publish(_ requests: [ChangeRequest]) throws -> [Result<UInt64, Refusal>] {
        let prepared = try prepare(requests)
        if let batch = prepared.batch { try storage.append(batch) }
        try commit(prepared)
        return prepared.results
    }

    /// A batch judged and sealed (indices, tree nodes, a signed checkpoint) but not yet stored.
    /// `publish` in three steps, so a server can write it to storage (an fsync) without holding the
    /// lock lookups take: `prepare` and `commit` under it, `storage.append(batch)` outside. Only one
    /// batch may be between the two at a time (one writer), and nothing else may append meanwhile.
    public struct PreparedBatch: Sendable {
        public let results: [Result<UInt64, Refusal>]
        /// What to append to storage (nil: every change was refused).
        public let batch: SequencedBatch?
        let head: LogHead?
        /// The batch's sealed changes as made, by index (for `commit`'s replay).
        var opened: [UInt64: SealedChange] = [:]
    }

    /// Judges and seals `requests`; changes nothing the log answers from until `commit`.
    public func prepare(_ requests: [ChangeRequest]) throws -> PreparedBatch {
        var results: [Result<UInt64, Refusal>] = []
        var batchStates: [Hash: DeviceSet] = [:]
        var batch: [(label: Hash?, entry: [UInt8], sealed: [UInt8]?)] = []
        var vrf: [SequencedBatch.VRFLabel?] = []
        var opened: [UInt64: SealedChange] = [:]
        var next = size
        let time = max(Sequencer.nowMillis(), head.newestTimestamp)
        for request in requests {
            let identity: String
            do { identity = try Identity.normalize(request.identity) } catch {
                results.append(.failure(.identity(error.description)))
                continue
            }
            guard next < storage.maxSize else {
                results.append(.failure(.logFull))
                continue
            }
            // The entries after the newest stored head must stay below what a replay accepts
            // uncovered (heads that keep failing to store would otherwise let them grow).
            // Counted from what the newest head covers, as a replay counts them: a follower's head
            // covers less than its own index.
            guard Int(next - headCovered) < DirectoryReplayStalled.defaultBound - 1 else {
                results.append(.failure(.mapBehind))
                continue
            }
            let label = try request.label.flatMap { identity == request.identity ? $0 : nil } ?? self.label(of: identity)
            guard !unopened.contains(label) else {
                results.append(.failure(.erased))
                continue
            }
            let before = try batchStates[label] ?? states.state(of: label) ?? DeviceSet()
            let change = DeviceChange(kind: request.kind, authority: request.authority)
            let verdict = DeviceRule.judge(change, to: before, origin: signer.name, label: label)
            guard verdict.isAcceptedByServer else {
                // Stale only if the change verifies against the newest head's state (what the
                // signer saw): a caller without an active device's key learns nothing from it.
                if case .invalid = verdict, case .chained = request.authority, let seen = try states.committedState(of: label),
                    before.newestIndex != seen.newestIndex,
                    DeviceRule.judge(change, to: seen, origin: signer.name, label: label).isAcceptedByServer
                {
                    results.append(.failure(.stalePosition))
                } else if case .invalid = verdict, case .chained = request.authority,
                    !DeviceRule.isSignedByActiveDevice(change, in: before, origin: signer.name, label: label)
                {
                    // Not signed by an active device over this position: the caller may hold no
                    // key of the identity, so the answer says nothing more.
                    results.append(.failure(.doesNotVerify))
                } else {
                    results.append(.failure(.rule(verdict)))
                }
                continue
            }
            // The entry commits to the set after the change, so the set moves first, then the
            // public part with the entry's leaf hash.
            var after = before
            after.apply(change.kind)
            let sealed = SealedChange.sealing(change, previousIndex: before.newestIndex, setDigest: after.setDigest)
            let entry = DirectoryEntry.sealedChange(sealed, timestampMillis: time, label: label, version: before.version + 1).encoded
            after.advance(index: next, leafHash: Merkle.leafHash(entry))
            batchStates[label] = after
            batch.append((label, entry, sealed.encoded))
            opened[next] = sealed
            // The label's row is written with its first change; later ones find it there. Its
            // proof is made by the first lookup (unless one was made already).
            vrf.append(before.version == 0
                ? SequencedBatch.VRFLabel(identity: labels.storedIdentity(identity), label: label, proof: labels.rememberedProof(of: identity, label: label) ?? [])
                : nil)
            results.append(.success(next))
            next += 1
        }
        guard let sealed = try seal(batch, vrf: vrf) else { return PreparedBatch(results: results, batch: nil, head: nil) }
        return PreparedBatch(results: results, batch: sealed.batch, head: sealed.head, opened: opened)
    }

    /// After `prepared.batch` is stored: the log moves on to it (its entries replayed). Replaying
    /// what this log itself judged and sealed fails only on a bug; the caller must then stop
    /// writing (storage holds the batch, this object's view does not).
    public func commit(_ prepared: PreparedBatch) throws {
        guard let batch = prepared.batch, let newHead = prepared.head else { return }
        // The replay must be where the batch starts: replaying it anywhere else would move the
        // replay past the log, and the next head would leave changes out.
        guard batch.entries.first.map({ $0.index == replay.size }) ?? true else {
            throw StoreError.corrupt("a batch at \(batch.entries.first!.index) does not follow the replay at \(replay.size)")
        }
        head = newHead
        for e in batch.entries { try replayStored(e.data, leafHash: e.leafHash, sealed: e.sealed, parsed: prepared.opened[e.index]) }
    }

    /// What the follower needs to commit a map head covering the first `covered` entries: the
    /// map changes below it, the labels' states as of it, and the replay's position there.
    public struct HeadWork: Sendable {
        public let covered: UInt64
        let epoch: UInt64
        let changes: [(label: Hash, value: Hash)]
        let states: [(label: Hash, state: DeviceSet)]
        let position: DirectoryReplayPosition
        let range: CompactRange
        /// The labels the log cannot open, as of the hand-over (for the lookup snapshot).
        public let unopened: Set<Hash>
    }

    /// Hands the follower a head covering every entry so far (nil if there is nothing new, or a
    /// head is in flight). The writer goes on sequencing while the follower works.
    public func beginHead() -> HeadWork? {
        guard !headInFlight, size > (headCheckpoint?.size ?? 0) else { return nil }
        headInFlight = true
        let covered = size
        return HeadWork(
            covered: covered, epoch: replay.epoch + 1, changes: replay.takeQueued(below: covered), states: states.states(below: covered),
            position: replay.position, range: range, unopened: unopened)
    }

    /// Appends the head of `work` with the root its follower computed (on the writer's thread,
    /// between batches), and replays it. Lookups move to it once the follower commits it.
    public func appendOwnHead(_ work: HeadWork, root: Hash) throws -> StoredCheckpoint {
        let time = max(Sequencer.nowMillis(), head.newestTimestamp)
        let entry = DirectoryEntry.mapHead(timestampMillis: time, epoch: work.epoch, coveredSize: work.covered, root: root).encoded
        guard let sealed = try seal([(label: nil, entry: entry, sealed: nil)]), let e = sealed.batch.entries.first else {
            throw StoreError.corrupt("the map head did not seal")
        }
        try storage.append(sealed.batch)
        head = sealed.head
        states.currentIndex = replay.size
        let event = try replay.replay(e.data, leafHash: e.leafHash, trustedRoot: root)
        range.append(e.leafHash)
        guard case .mapHead(_, _, .matches) = event, let cp = try storage.checkpoint(size: size) else {
            throw StoreError.corrupt("the map head did not replay as a match: \(event)")
        }
        return cp
    }

    /// Committed states are read on a connection of their own from now on (and after a resume):
    /// for a server whose follower writes the state database on another thread.
    public func readStatesOnOwnConnection() throws {
        guard statePath != ":memory:" else { return }
        let connection = try SQLiteConnection(path: statePath)
        try connection.execute("PRAGMA query_only=ON")
        statesReader = DirectoryStateStore.LabelStates(db: connection)
        states.readCommitted(from: statesReader!)
    }

    private var statesReader: DirectoryStateStore.LabelStates?

    /// The follower committed `work`'s head: lookups answer against it, and the states it covers
    /// are the state database's now.
    public func headCommitted(_ work: HeadWork, checkpoint: StoredCheckpoint) {
        states.drop(below: work.covered)
        headCheckpoint = checkpoint
        headCovered = work.covered
        headInFlight = false
    }

    /// The follower's transaction rolled back (a head not stored): start again from the state
    /// database and the log (the changes the head would have covered are replayed again).
    public func headFailed() throws {
        head = try LogHead.load(from: storage, signer: signer)
        try resume(atRuntime: true)
    }

    /// A map head covering every entry so far, made and committed here (a library's owner, and
    /// tests): `beginHead`, the follower's step and `appendOwnHead` on the caller's thread.
    @discardableResult
    public func appendMapHead() throws -> StoredCheckpoint {
        guard let work = beginHead() else {
            guard let cp = headCheckpoint, cp.size == size else { throw StoreError.notInitialised("a map head is being made") }
            return cp
        }
        do {
            let committed = try follower.commit(work) { root in try self.appendOwnHead(work, root: root) }
            headCommitted(work, checkpoint: committed.checkpoint)
            return committed.checkpoint
        } catch {
            try headFailed()
            throw error
        }
    }

    /// Appends encoded entries as one batch (a checkpoint over them), then replays them (inside a
    /// state transaction: leaf 0's creation and a head's).
    private func append(_ batch: [(label: Hash?, entry: [UInt8], sealed: [UInt8]?)]) throws {
        guard let sealed = try seal(batch) else { return }
        try storage.append(sealed.batch)
        head = sealed.head
        for e in sealed.batch.entries { try replayStored(e.data, leafHash: e.leafHash, sealed: e.sealed) }
    }

    private func seal(_ batch: [(label: Hash?, entry: [UInt8], sealed: [UInt8]?)], vrf: [SequencedBatch.VRFLabel?] = []) throws -> BatchBuilder.Sealed? {
        // The storage's identity column holds the label, so a label's entries are one lookup.
        let items = batch.map { (identity: $0.label?.hex ?? "", data: $0.entry) }
        let time = items.compactMap { LogHead.timestamp(of: $0.data) }.max() ?? 0
        return try BatchBuilder.seal(items, after: head, timestamp: time, signer: signer, sealed: batch.map(\.sealed), vrf: vrf)
    }

    /// The answer to a lookup of `identity`, against the newest checkpoint ending in a map head.
    public func lookup(_ identity: String) throws -> DirectoryLookup.Answer {
        let canonical: String
        do { canonical = try Identity.normalize(identity) } catch { throw Refusal.identity(error.description) }
        let (label, vrfProof) = try labels.labelAndProof(of: canonical)
        // Stored as the server's writer would; a failure only means it is made again later.
        try? labels.storeMadeProofs()
        return try lookup(label: label, vrfProof: vrfProof)
    }

    /// As `lookup(_:)`, with the label and VRF proof computed by the caller (outside its lock).
    public func lookup(label: Hash, vrfProof: [UInt8]) throws -> DirectoryLookup.Answer {
        try Self.complete(try lookupParts(label: label, vrfProof: vrfProof), storage: storage)
    }

    /// What a lookup reads from this log's state (the caller's lock held): the answer's proofs,
    /// and the label's state as of the head. The rest (`complete`) is read from the log's storage,
    /// which is append-only, so a server reads it outside its lock, on several cores.
    public struct LookupParts: Sendable {
        var answer: DirectoryLookup.Answer
        let label: Hash
        let state: DeviceSet?
        /// Histories are read below this: the entries the head's map covers.
        let headSize: UInt64
    }

    /// The parts of a lookup that need this log's state: its head, the map proof, the state.
    public func lookupParts(label: Hash, vrfProof: [UInt8]) throws -> LookupParts {
        guard let cp = headCheckpoint else { throw StoreError.notInitialised("no map head yet") }
        guard !unopened.contains(label) else { throw Refusal.erased }
        let parts = try headParts(cp)
        let answer = DirectoryLookup.Answer(
            checkpoint: cp.note, configEntry: parts.configEntry, configProof: parts.configProof,
            headEntry: parts.headEntry, headProof: parts.headProof,
            vrfProof: vrfProof, mapProof: try replay.map.proof(for: label), state: nil)
        // The state database is as of the newest head: the label's state there.
        return LookupParts(answer: answer, label: label, state: try states.committedState(of: label), headSize: headCovered)
    }

    /// What lookups against the newest head need from this log besides the state database, taken
    /// once per head, so a server answers them without its lock: the head and leaf 0 with their
    /// proofs, the map's top levels as of the head, and the labels that cannot be opened.
    public struct LookupSnapshot: Sendable {
        public let checkpoint: StoredCheckpoint
        let configEntry: [UInt8]
        let configProof: [Hash]
        let headEntry: [UInt8]
        let headProof: [Hash]
        let topLevels: MapTree.TopLevels
        let unopened: Set<Hash>
        /// The entries the head's map and states cover (histories are read below it).
        let covered: UInt64

        /// The snapshot of the head `checkpoint` ends in, covering `covered` entries, with the
        /// map's top levels as its follower committed them; leaf 0 and the head with their proofs
        /// read from `store` (append-only, so from any thread).
        public init(checkpoint: StoredCheckpoint, covered: UInt64, topLevels: MapTree.TopLevels, unopened: Set<Hash>, store: LogStore) throws {
            let entries = try store.storage.entries(start: 0, end: 1) + store.storage.entries(start: checkpoint.size - 1, end: checkpoint.size)
            self.checkpoint = checkpoint
            configEntry = entries[0].data
            configProof = try store.inclusionProof(index: 0, size: checkpoint.size)
            headEntry = entries[1].data
            headProof = try store.inclusionProof(index: checkpoint.size - 1, size: checkpoint.size)
            self.topLevels = topLevels
            self.unopened = unopened
            self.covered = covered
        }
    }

    /// The snapshot for the newest head; nil before the first one. For an owner that makes its heads
    /// here (`appendMapHead`): a server's follower makes its own (`LookupSnapshot.init`).
    public func lookupSnapshot() throws -> LookupSnapshot? {
        guard let cp = headCheckpoint else { return nil }
        return try LookupSnapshot(checkpoint: cp, covered: headCovered, topLevels: state.map.top, unopened: unopened, store: store)
    }

    /// The labels this log cannot open (their changes erased).
    public var unopenedLabels: Set<Hash> { unopened }

    /// The parts of a lookup against `snapshot`'s head, with the map proof and state read by
    /// `reader` in one read transaction; nil if the state database holds a newer head by now
    /// (take the newer snapshot).
    public static func lookupParts(_ snapshot: LookupSnapshot, label: Hash, vrfProof: [UInt8], reader: DirectoryStateReader) throws -> LookupParts? {
        guard !snapshot.unopened.contains(label) else { throw Refusal.erased }
        let cp = snapshot.checkpoint
        guard let read = try reader.read(label: label, size: cp.size, topLevels: snapshot.topLevels) else { return nil }
        let answer = DirectoryLookup.Answer(
            checkpoint: cp.note, configEntry: snapshot.configEntry, configProof: snapshot.configProof,
            headEntry: snapshot.headEntry, headProof: snapshot.headProof, vrfProof: vrfProof, mapProof: read.proof, state: nil)
        return LookupParts(answer: answer, label: label, state: read.state, headSize: snapshot.covered)
    }

    /// The lookup answer from its parts: the label's change entries below the head (from the log's
    /// identity index) and the newest one's sealed change.
    public static func complete(_ parts: LookupParts, storage: any LogStorage) throws -> DirectoryLookup.Answer {
        var answer = parts.answer
        guard let s = parts.state, s.version > 0 else { return answer }
        let label = parts.label
        let entries = try storage.entries(identity: label.hex, below: parts.headSize, limit: Int(DeviceRule.maxVersion))
        guard UInt64(entries.count) == s.version, let newest = entries.last, newest.index == s.newestIndex,
            let sealed = try storage.sealedChanges(at: [newest.index])[newest.index]
        else { throw StoreError.corrupt("label \(label.hex): its entries, or its newest sealed change, are not what its state says") }
        answer.state = DirectoryLookup.Answer.State(
            devices: s.active, tombstoned: s.tombstoned, history: entries.map { ($0.index, $0.leafHash) }, newestEntry: newest.data,
            newestSealed: sealed)
        return answer
    }

    /// What every lookup against one head carries alike: leaf 0, the head, and their proofs.
    private var cachedHeadParts: (size: UInt64, configEntry: [UInt8], configProof: [Hash], headEntry: [UInt8], headProof: [Hash])?

    private func headParts(_ cp: StoredCheckpoint) throws
        -> (size: UInt64, configEntry: [UInt8], configProof: [Hash], headEntry: [UInt8], headProof: [Hash])
    {
        if let hit = cachedHeadParts, hit.size == cp.size { return hit }
        let entries = try storage.entries(start: 0, end: 1) + storage.entries(start: cp.size - 1, end: cp.size)
        let parts = (cp.size, entries[0].data, try store.inclusionProof(index: 0, size: cp.size),
                     entries[1].data, try store.inclusionProof(index: cp.size - 1, size: cp.size))
        cachedHeadParts = parts
        return parts
    }

    /// Every change entry of `identity`'s label, oldest first, with its index and sealed change:
    /// what an owner's monitor reads (`DirectoryMonitor.check`).
    public func history(of identity: String) throws -> [(index: UInt64, entry: [UInt8], sealed: [UInt8]?)] {
        let canonical: String
        do { canonical = try Identity.normalize(identity) } catch { throw Refusal.identity(error.description) }
        let label = try label(of: canonical)
        let entries = try storage.entries(identity: label.hex, below: size, limit: Int(DeviceRule.maxVersion))
        let sealed = try storage.sealedChanges(at: entries.map(\.index))
        return entries.map { ($0.index, $0.data, sealed[$0.index]) }
    }
}
