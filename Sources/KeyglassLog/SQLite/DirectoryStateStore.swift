import Foundation
import KeyglassCore

/// What a replay of a key directory derives, in one SQLite file: the map's labels, every label's
/// state, where the replay stopped (its position and the tree's compact range), labels whose
/// changes cannot be opened (erased), and, for an auditor, the alerts found but not yet reported.
///
/// An auditor (issue 14, point 6) keeps it in its state directory: an audit then needs memory for
/// one tile of entries and the pages SQLite caches, whatever the directory's size, and a run killed
/// anywhere resumes from the last tile it committed (each tile's nodes, states, position and alerts
/// commit together, so they always agree). The directory's server keeps one as of its newest map
/// head (`DirectoryLog`): everything it holds is derived from the log, so it can be deleted and is
/// rebuilt by replaying the log.
///
/// Not thread-safe: one owner at a time (the CLI holds a lock on its state directory; the server
/// calls it under its log's lock).
public final class DirectoryStateStore {
    private let db: SQLiteConnection
    /// The map (its labels and bucket summaries in this file, the levels above in memory).
    public let map: StoredMap
    /// The labels' states, in this file.
    public let labelStates: LabelStates

    /// Opens (or creates) the state at `path`, for the log of `logKey`; refuses a state kept for
    /// another log.
    public init(path: String, logKey: NoteVerifierKey) throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        // A commit per tile: NORMAL keeps each one atomic (a crash loses at most the last tiles,
        // and the run resumes before them), without an fsync per 256 entries.
        try db.execute("PRAGMA synchronous=NORMAL")
        try db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        try db.execute("CREATE TABLE IF NOT EXISTS label_states(label BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID")
        // The changes after the newest head, as one blob of 72-byte records (index, label, value):
        // after a head that covered few of a burst's changes it can hold tens of thousands, too
        // many to write as JSON per chunk.
        try db.execute("CREATE TABLE IF NOT EXISTS queued(id INTEGER PRIMARY KEY CHECK (id = 1), changes BLOB NOT NULL)")
        // Watched identities: each one's label, and how far into the log its changes were opened
        // (judged by the rule): a label watched since a later run has its earlier ones judged once.
        try db.execute("CREATE TABLE IF NOT EXISTS watched(identity TEXT PRIMARY KEY, label BLOB NOT NULL, opened_through INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
        try db.execute("CREATE TABLE IF NOT EXISTS erased_labels(label BLOB PRIMARY KEY) WITHOUT ROWID")
        try db.execute("CREATE TABLE IF NOT EXISTS alerts(idx INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, reported INTEGER NOT NULL DEFAULT 0)")
        let s = try db.statement("SELECT value FROM meta WHERE key = 'log'")
        let stored: String? = try s.step() ? s.text(0) : nil
        db.releaseStatements()
        if let stored, stored != logKey.description {
            throw StoreError.corrupt("\(path) is the audit state of another log (\(stored))")
        }
        if stored == nil {
            let m = try db.statement("INSERT INTO meta(key, value) VALUES('log', ?)")
            m.bind(1, logKey.description)
            try m.step()
            db.releaseStatements()
        }
        self.db = db
        let buckets = try SQLiteMapBuckets(connection: db)
        labelStates = LabelStates(db: db)
        try Self.migrateStoredNodes(db, buckets)
        map = try StoredMap(store: buckets)
    }

    /// A state written before the map kept only its leaves held every node (`map_nodes`: a leaf's
    /// row is 0x01 ‖ label ‖ value): its leaves become labels, its buckets are summarised from
    /// them, and the nodes go, in one transaction, so a run resumes on the same map.
    private static func migrateStoredNodes(_ db: SQLiteConnection, _ buckets: SQLiteMapBuckets) throws {
        let t = try db.statement("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'map_nodes'")
        let old = try t.step()
        db.releaseStatements()
        guard old else { return }
        try db.transaction {
            try db.execute(
                "INSERT OR REPLACE INTO map_leaves(label, value) SELECT substr(node, 2, 32), substr(node, 34, 32) FROM map_nodes WHERE length(node) = 65 AND substr(node, 1, 1) = x'01'"
            )
            var buckets = buckets
            try MapTree.Bucketed.summarizeAll(&buckets)
            try db.execute("DROP TABLE map_nodes")
        }
    }

    /// Runs `body` in one transaction: everything it stores commits together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        do {
            return try db.transaction(body)
        } catch {
            // The map's levels in memory took the rolled-back changes: the database is the truth.
            // A reload that fails leaves the map refusing every use (`StoredMap`); the
            // transaction's own error is the one to report.
            try? map.reload()
            throw error
        }
    }

    public func close() { db.close() }

    // MARK: Where the replay stopped

    /// The position and compact range saved last, or nil for a state that has audited nothing.
    public func load() throws -> (position: DirectoryReplayPosition, range: CompactRange)? {
        let s = try db.statement("SELECT value FROM meta WHERE key = 'position'")
        let text: String? = try s.step() ? s.text(0) : nil
        db.releaseStatements()
        guard let text else { return nil }
        let q = try db.statement("SELECT changes FROM queued WHERE id = 1")
        let blob: [UInt8] = try q.step() ? q.blob(0) : []
        db.releaseStatements()
        do {
            let saved = try JSONDecoder().decode(SavedPosition.self, from: Data(text.utf8))
            return try saved.restored(queued: Self.decodeQueued(blob)[...])
        } catch {
            throw StoreError.corrupt("the audit state's saved position is unreadable: \(error)")
        }
    }

    /// Saves where the replay is (inside the transaction that stored the tile's nodes and states).
    public func save(_ position: DirectoryReplayPosition, range: CompactRange) throws {
        let data = try JSONEncoder().encode(SavedPosition(position, range: range))
        let s = try db.statement("INSERT OR REPLACE INTO meta(key, value) VALUES('position', ?)")
        s.bind(1, String(decoding: data, as: UTF8.self))
        try s.step()
        // Written 4,096 records at a time into a blob of its size: a queue of 262,144 changes
        // would otherwise be a 19 MB array beside the replay's own.
        let queued = position.queued
        let b = try db.statement("INSERT OR REPLACE INTO queued(id, changes) VALUES(1, zeroblob(?))")
        b.bind(1, Int64(queued.count * 72))
        try b.step()
        guard !queued.isEmpty else { return }
        try db.writeBlob(table: "queued", column: "changes", rowid: 1, count: queued.count * 72) { offset, piece in
            let first = queued.startIndex + offset / 72
            for q in queued[first..<min(first + 4096, queued.endIndex)] {
                for shift in stride(from: 56, through: 0, by: -8) { piece.append(UInt8(truncatingIfNeeded: q.index >> UInt64(shift))) }
                q.label.withUnsafeBytes { piece.append(contentsOf: $0) }
                q.value.withUnsafeBytes { piece.append(contentsOf: $0) }
            }
        }
    }

    /// The size of the tree whose head the state is now as of, for readers checking which head
    /// they read (`DirectoryStateReader`): a follower's head covers fewer entries than its own
    /// index, so this is the head's checkpoint's size, not the position's.
    public func setLookupSize(_ size: UInt64) throws {
        let z = try db.statement("INSERT OR REPLACE INTO meta(key, value) VALUES('size', ?)")
        z.bind(1, String(size))
        try z.step()
    }

    private static func decodeQueued(_ blob: [UInt8]) throws -> [DirectoryReplayPosition.Queued] {
        guard blob.count % 72 == 0 else { throw StoreError.corrupt("the saved queue is not whole records") }
        return stride(from: 0, to: blob.count, by: 72).map { at in
            let index = blob[at..<at + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return DirectoryReplayPosition.Queued(index: index, label: Hash(bytes: blob[at + 8..<at + 40])!, value: Hash(bytes: blob[at + 40..<at + 72])!)
        }
    }

    // MARK: Watched identities

    /// The label this state knows for a watched identity, and the log size up to which its
    /// changes were opened (nil: never watched here).
    public func watched(_ identity: String) throws -> (label: Hash, openedThrough: UInt64)? {
        let s = try db.statement("SELECT label, opened_through FROM watched WHERE identity = ?")
        s.bind(1, identity)
        defer { db.releaseStatements() }
        guard try s.step(), let label = s.hash(0) else { return nil }
        return (label, s.uint64(1))
    }

    /// Records a watched identity's label (its changes opened through 0 until told otherwise).
    public func watch(_ identity: String, label: Hash) throws {
        let s = try db.statement("INSERT OR IGNORE INTO watched(identity, label, opened_through) VALUES(?, ?, 0)")
        s.bind(1, identity)
        s.bind(2, label)
        try s.step()
    }

    /// Every change of `identity` below `size` has been opened and judged.
    public func setOpenedThrough(_ identity: String, _ size: UInt64) throws {
        let s = try db.statement("UPDATE watched SET opened_through = ? WHERE identity = ?")
        s.bind(1, size)
        s.bind(2, identity)
        try s.step()
    }

    /// A watched identity opened through `from` is now opened through `to` (a chunk replayed with
    /// its sealed changes); one whose rebuild failed stays behind.
    public func advanceOpenedThrough(_ identity: String, from: UInt64, to: UInt64) throws {
        let s = try db.statement("UPDATE watched SET opened_through = ? WHERE identity = ? AND opened_through >= ?")
        s.bind(1, to)
        s.bind(2, identity)
        s.bind(3, from)
        try s.step()
    }

    // MARK: Labels whose changes cannot be opened

    /// Records that a label has a change whose sealed part is gone (erased).
    public func markErased(_ label: Hash) throws {
        let s = try db.statement("INSERT OR IGNORE INTO erased_labels(label) VALUES(?)")
        s.bind(1, label)
        try s.step()
    }

    /// Every label recorded by `markErased`.
    public func erasedLabels() throws -> Set<Hash> {
        let s = try db.statement("SELECT label FROM erased_labels")
        var out: Set<Hash> = []
        while try s.step() { if let h = s.hash(0) { out.insert(h) } }
        db.releaseStatements()
        return out
    }

    // MARK: Alerts

    /// Records an alert (inside the tile's transaction), to be reported by the run that finishes.
    public func addAlert(index: UInt64, kind: String, detail: String) throws {
        let s = try db.statement("INSERT INTO alerts(idx, kind, detail) VALUES(?, ?, ?)")
        s.bind(1, index)
        s.bind(2, kind)
        s.bind(3, detail)
        try s.step()
    }

    /// Alerts not yet reported, oldest first: at most `limit`, and how many there are in all.
    public func unreportedAlerts(limit: Int) throws -> (alerts: [(index: UInt64, kind: String, detail: String)], total: Int) {
        let c = try db.statement("SELECT count(*) FROM alerts WHERE reported = 0")
        try c.step()
        let total = Int(c.int64(0))
        let s = try db.statement("SELECT idx, kind, detail FROM alerts WHERE reported = 0 ORDER BY rowid LIMIT ?")
        s.bind(1, Int64(limit))
        var out: [(UInt64, String, String)] = []
        while try s.step() { out.append((s.uint64(0), s.text(1), s.text(2))) }
        db.releaseStatements()
        return (out, total)
    }

    /// The run reported every alert it listed (and counted the rest): none is reported again.
    public func markAlertsReported() throws {
        try db.execute("UPDATE alerts SET reported = 1 WHERE reported = 0")
    }

    /// Labels changed at least once.
    public func labelCount() throws -> Int {
        let s = try db.statement("SELECT count(*) FROM label_states")
        try s.step()
        defer { db.releaseStatements() }
        return Int(s.int64(0))
    }

    /// The labels' states in the audit's file (`LabelStateStore`).
    public final class LabelStates: LabelStateStore {
        private let db: SQLiteConnection

        init(db: SQLiteConnection) { self.db = db }

        public func state(of label: Hash) throws -> DeviceSet? {
            let s = try db.statement("SELECT state FROM label_states WHERE label = ?")
            s.bind(1, label)
            let bytes: [UInt8]? = try s.step() ? s.blob(0) : nil
            db.releaseStatements()
            guard let bytes else { return nil }
            guard let state = DeviceSet(stateBytes: bytes) else { throw StoreError.corrupt("the stored state of label \(label.hex) is unreadable") }
            return state
        }

        public func setState(_ state: DeviceSet, of label: Hash) throws {
            let s = try db.statement("INSERT OR REPLACE INTO label_states(label, state) VALUES(?, ?)")
            s.bind(1, label)
            s.bind(2, state.stateBytes)
            try s.step()
        }
    }
}

/// Label states written through to a `DirectoryStateStore` only when told (`flush`): until then
/// the changes since the store's last commit are in memory, so the store stays exactly as of the
/// newest map head (what lookups are answered from) while the replay goes on past it.
///
/// Each pending state is tagged with the index of the entry that made it (`currentIndex`, set by
/// the owner before it replays an entry), so a map head that covers fewer entries than the log
/// holds (a follower's head, which lags) can take the states as of what it covers
/// (`states(below:)`) and the owner can forget them once committed (`drop(below:)`).
public final class PendingLabelStates: LabelStateStore {
    private var base: DirectoryStateStore.LabelStates
    /// Per label, its pending states in index order.
    private var pending: [Hash: [(index: UInt64, state: DeviceSet)]] = [:]
    /// The index of the entry being replayed: what the states set now are tagged with.
    public var currentIndex: UInt64 = 0

    /// States in `base`, with nothing pending.
    public init(base: DirectoryStateStore.LabelStates) { self.base = base }

    /// Labels changed since the last flush.
    public var pendingCount: Int { pending.count }

    /// Reads committed states through `base` from now on (a connection of the owner's own, while
    /// another thread writes the store).
    func readCommitted(from base: DirectoryStateStore.LabelStates) { self.base = base }

    public func state(of label: Hash) throws -> DeviceSet? {
        if let s = pending[label]?.last?.state { return s }
        return try base.state(of: label)
    }

    public func setState(_ state: DeviceSet, of label: Hash) throws { pending[label, default: []].append((currentIndex, state)) }

    /// The state as the store has it (as of its last commit), ignoring what is pending.
    public func committedState(of label: Hash) throws -> DeviceSet? { try base.state(of: label) }

    /// The newest pending state below index `covered` of each label changed before it: what a map
    /// head covering `covered` commits.
    public func states(below covered: UInt64) -> [(label: Hash, state: DeviceSet)] {
        pending.compactMap { label, states in states.last { $0.index < covered }.map { (label, $0.state) } }
    }

    /// Forgets the pending states below `covered` (the store holds them now).
    public func drop(below covered: UInt64) {
        // A new dictionary sized to what is left: writing into `pending` while iterating it
        // copied it whole, and after a burst its capacity (the burst's labels) stayed allocated.
        pending = pending.compactMapValues { states in
            let rest = states.filter { $0.index >= covered }
            return rest.isEmpty ? nil : rest
        }
    }

    /// Writes every pending state to the store (inside its transaction) and forgets them.
    public func flush() throws {
        for (label, states) in pending { if let s = states.last?.state { try base.setState(s, of: label) } }
        pending.removeAll(keepingCapacity: true)
    }

    /// Forgets what is pending (the store's transaction that would have held it rolled back).
    public func discard() { pending.removeAll() }
}

private struct SavedPosition: Codable {
    var origin: String?
    var vrfPublicKey: String?
    var size: UInt64
    var epoch: UInt64
    var coveredSize: UInt64
    var headIndex: UInt64
    var headTime: UInt64
    var backdatedCount: Int
    var backdated: [UInt64]
    var newestTime: UInt64
    var rangeSize: UInt64
    var rangeHashes: [String]

    init(_ p: DirectoryReplayPosition, range: CompactRange) {
        origin = p.origin
        vrfPublicKey = p.vrfPublicKey.map(Base64.encode)
        size = p.size
        epoch = p.epoch
        coveredSize = p.coveredSize
        headIndex = p.headIndex
        headTime = p.headTime
        backdatedCount = p.backdatedCount
        backdated = p.backdated
        newestTime = p.newestTime
        rangeSize = range.size
        rangeHashes = range.hashes.map(\.base64)
    }

    func restored(queued: ArraySlice<DirectoryReplayPosition.Queued>) throws -> (position: DirectoryReplayPosition, range: CompactRange) {
        struct Bad: Error {}
        let hashes = try rangeHashes.map { h -> Hash in
            guard let hash = Hash(base64: h) else { throw Bad() }
            return hash
        }
        guard let range = CompactRange(size: rangeSize, hashes: hashes), rangeSize == size else { throw Bad() }
        let key = try vrfPublicKey.map { k -> [UInt8] in
            guard let bytes = Base64.decode(k) else { throw Bad() }
            return bytes
        }
        let position = DirectoryReplayPosition(origin: origin, vrfPublicKey: key, size: size, epoch: epoch, coveredSize: coveredSize,
                                               headIndex: headIndex, headTime: headTime, backdatedCount: backdatedCount,
                                               backdated: backdated, newestTime: newestTime, queued: queued)
        return (position, range)
    }
}
