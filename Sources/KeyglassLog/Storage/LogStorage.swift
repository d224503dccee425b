import KeyglassCore

/// What the log needs from a storage engine. Everything above it (the sequencer, proofs, the HTTP
/// API) is written against this protocol; all of one engine's code (SQL, files, connections) lives
/// in its driver (`SQLiteStorage`, the embedded default).
///
/// The contract is shaped for an engine whose writes go over the network (PostgreSQL next):
/// - A batch is written by **one call**, `append`, that stores its entries, the tree nodes they
///   complete and the checkpoint signed over them in one transaction. Nothing is read inside that
///   transaction: what the sequencer needs to know first (each identity's newest entry) it asks
///   for in one call per batch, `newestEntries`, before it builds the batch.
/// - `append` is a compare-and-swap on the newest checkpoint: it names the size it extends and
///   the engine refuses (`StoreError.conflict`) if that is no longer the newest. Two writers on one
///   database can then never both extend one tree: the loser finds out and writes nothing.
/// - A failed `append` may still have committed (a connection lost after COMMIT was sent). The
///   sequencer therefore re-reads the head after every failure instead of assuming nothing moved.
///
/// Calls block the calling thread. The sequencer calls the write methods from its own thread, one
/// at a time. Reads come from any thread, concurrently; the SQLite driver answers them from local
/// pages in microseconds, which is why the HTTP layer may run them on its event loop
/// (`readsAreLocal`). A driver whose reads cross the network says `false`, and must not be read
/// from an event loop.
public protocol LogStorage: AnyObject, Sendable {
    /// True when reads are answered from this machine's memory and disk (no network round trip).
    var readsAreLocal: Bool { get }
    /// The largest tree the engine can hold (its key layout's limit).
    var maxSize: UInt64 { get }

    // MARK: Writes: the sequencer's and the admin commands', one caller at a time

    /// Stores the first checkpoint of a new log (size 0) and its origin; refuses if the log has any
    /// checkpoint.
    func initialise(first: StoredCheckpoint, origin: String, signedAtMillis: UInt64) throws

    /// The newest entry index of each of `identities` that has one (one round trip for a batch).
    func newestEntries(of identities: Set<String>) throws -> [String: UInt64]

    /// Appends a batch and its checkpoint atomically (see `SequencedBatch`); returns once durable.
    /// Throws `StoreError.conflict` if the newest stored checkpoint is not of `batch.previousSize`.
    func append(_ batch: SequencedBatch) throws

    /// Builds a batch with `build` (which signs its checkpoint) and appends it, as one critical
    /// section where the engine can offer one: an engine shared by several servers opens the
    /// append's transaction and passes its fence (this server's lease, the newest checkpoint of
    /// `previousSize`) *before* `build` runs, so a server that may not extend the log never even
    /// signs a tree (see `PostgresStorage`). `build` returns nil when there is nothing to write.
    /// The default builds, then calls `append(_:)`: an engine with one writer needs no more.
    func append(previousSize: UInt64, build: () throws -> SequencedBatch?) throws

    /// Replaces the signed note of the newest checkpoint (same size, same root), for a new signing
    /// key. Throws if the newest checkpoint is not of `size` and `root`.
    func replaceNote(size: UInt64, root: Hash, note: String) throws

    // MARK: Reads

    /// How many entries are stored; throws `StoreError.corrupt` if they are not 0..<count.
    func entryCount() throws -> UInt64
    /// The newest checkpoint and the entry count read from one snapshot, so that a head read while
    /// another server appends is never taken for a corrupt one (default: one after the other,
    /// right for an engine with one writer).
    func latestCheckpointAndEntryCount() throws -> (StoredCheckpoint?, UInt64)
    func latestCheckpoint() throws -> StoredCheckpoint?
    func checkpoint(size: UInt64) throws -> StoredCheckpoint?
    func checkpointCount() throws -> UInt64
    /// Perfect-subtree hashes: level 0 are the entries' leaf hashes. Throws if one is missing.
    func nodeHashes(_ ids: [NodeID]) throws -> [Hash]
    /// `count` consecutive hashes of one level from `start`, concatenated (a tile's body).
    func levelHashes(level: UInt8, start: UInt64, count: UInt64) throws -> [UInt8]
    func entries(start: UInt64, end: UInt64) throws -> [StoredEntry]
    /// Entries [start, end) as a c2sp.org/tlog-tiles entry bundle (each prefixed by its uint16 length).
    func entryBundle(start: UInt64, end: UInt64) throws -> [UInt8]
    /// The identity's entries below `size`, oldest first, at most `limit` (the newest ones).
    func entries(identity: String, below size: UInt64, limit: Int) throws -> [StoredEntry]
    /// The first entry below `size` whose leaf hash is `hash`.
    func index(ofLeafHash hash: Hash, below size: UInt64) throws -> UInt64?

    /// The sealed changes stored beside entries [start, end), by index (erased ones are absent).
    func sealedChanges(start: UInt64, end: UInt64) throws -> [UInt64: [UInt8]]
    /// The sealed changes of the entries at `indices` that have one.
    func sealedChanges(at indices: [UInt64]) throws -> [UInt64: [UInt8]]
    /// Deletes the sealed changes of the entries at `indices` (erasure: the entries stay), and the
    /// stored label of `identity`; returns how many sealed changes there were.
    func eraseSealedChanges(at indices: [UInt64], identity: String) throws -> Int
    /// The stored label and ECVRF proof of a key directory's identity (canonical), if stored.
    func vrfLabel(of identity: String) throws -> SequencedBatch.VRFLabel?
    /// Fills in the ECVRF proofs of stored labels (made at a first lookup): each where the row's
    /// label is the one the proof proves and its proof is not that proof already.
    func storeVRFProofs(_ proofs: [(identity: String, label: Hash, proof: [UInt8])]) throws

    /// Closes the engine's connections once queued work has run. Call once nothing reads or writes.
    func close()
}

extension LogStorage {
    /// Engines without key directories (PostgreSQL: `--directory --storage` is refused) hold none.
    public func sealedChanges(start: UInt64, end: UInt64) throws -> [UInt64: [UInt8]] { [:] }
    public func sealedChanges(at indices: [UInt64]) throws -> [UInt64: [UInt8]] { [:] }
    public func eraseSealedChanges(at indices: [UInt64], identity: String) throws -> Int { 0 }
    public func vrfLabel(of identity: String) throws -> SequencedBatch.VRFLabel? { nil }
    public func storeVRFProofs(_ proofs: [(identity: String, label: Hash, proof: [UInt8])]) throws {}

    public func latestCheckpointAndEntryCount() throws -> (StoredCheckpoint?, UInt64) {
        (try latestCheckpoint(), try entryCount())
    }

    public func append(previousSize: UInt64, build: () throws -> SequencedBatch?) throws {
        if let batch = try build() { try append(batch) }
    }
}

/// One batch as the sequencer built it: everything `LogStorage.append` writes in one transaction.
public struct SequencedBatch: Sendable {
    public struct Entry: Sendable {
        public let index: UInt64
        public let identity: String
        /// The encoded entry (Spec/entry.md), exactly as served.
        public let data: [UInt8]
        public let leafHash: Hash
        /// A v2 change entry's sealed change (`SealedChange`): kept beside the entry, in the same
        /// transaction, and served only to those allowed to read the label.
        public let sealed: [UInt8]?
        /// A v2 change entry's canonical identity (as `DirectoryLabels.storedIdentity` names it)
        /// and label, with its first change: stored once per identity, so lookups need not compute
        /// the label, and deleted by erasure.
        public let vrf: VRFLabel?

        public init(index: UInt64, identity: String, data: [UInt8], leafHash: Hash, sealed: [UInt8]? = nil, vrf: VRFLabel? = nil) {
            self.index = index
            self.identity = identity
            self.data = data
            self.leafHash = leafHash
            self.sealed = sealed
            self.vrf = vrf
        }
    }

    /// An identity of a key directory (as `DirectoryLabels.storedIdentity` names it: a keyed hash,
    /// not the identity), its label and the label's ECVRF proof (empty until a lookup made one:
    /// changes compute only the label, `DirectoryLabels`).
    public struct VRFLabel: Sendable {
        public let identity: String
        public let label: Hash
        public let proof: [UInt8]

        public init(identity: String, label: Hash, proof: [UInt8]) {
            self.identity = identity
            self.label = label
            self.proof = proof
        }
    }

    /// A perfect subtree (level ≥ 1) that one of the batch's leaves completed.
    public struct Node: Sendable {
        public let id: NodeID
        public let hash: Hash

        public init(id: NodeID, hash: Hash) {
            self.id = id
            self.hash = hash
        }
    }

    /// The size of the checkpoint this batch extends: the compare-and-swap's expected value.
    public let previousSize: UInt64
    public let entries: [Entry]
    public let nodes: [Node]
    /// Signed over the tree that ends with the batch's last entry.
    public let checkpoint: StoredCheckpoint
    public let signedAtMillis: UInt64

    public init(previousSize: UInt64, entries: [Entry], nodes: [Node], checkpoint: StoredCheckpoint, signedAtMillis: UInt64) {
        self.previousSize = previousSize
        self.entries = entries
        self.nodes = nodes
        self.checkpoint = checkpoint
        self.signedAtMillis = signedAtMillis
    }
}

/// A stored entry with its position in the log.
public struct StoredEntry: Sendable, Equatable {
    public let index: UInt64
    public let data: [UInt8]
    public let leafHash: Hash

    public init(index: UInt64, data: [UInt8], leafHash: Hash) {
        self.index = index
        self.data = data
        self.leafHash = leafHash
    }
}

/// A checkpoint the log signed, as stored.
public struct StoredCheckpoint: Sendable, Equatable {
    public let size: UInt64
    public let root: Hash
    /// The signed note, exactly as served.
    public let note: String

    public init(size: UInt64, root: Hash, note: String) {
        self.size = size
        self.root = root
        self.note = note
    }
}

public enum StoreError: Error, CustomStringConvertible, Equatable {
    case notInitialised(String)
    case corrupt(String)
    case storage(String)
    /// Another writer extended the log first (`append`'s compare-and-swap lost).
    case conflict(String)

    public var description: String {
        switch self {
        case let .notInitialised(m): return "log not initialised: \(m)"
        case let .corrupt(m): return "log database is inconsistent: \(m)"
        case let .storage(m): return "storage failure: \(m)"
        case let .conflict(m): return "another writer extended the log: \(m)"
        }
    }
}
