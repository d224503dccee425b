import Foundation
import KeyglassCore
import Synchronization

/// Durability of each batch's commit. `full` fsyncs the WAL on every commit: an acknowledged
/// publish survives power loss. `normal` survives a process crash but not power loss.
public enum SyncMode: String, Sendable, CaseIterable {
    case full = "FULL"
    case normal = "NORMAL"
}

/// The embedded storage engine: one SQLite file in WAL mode, one writer connection (the
/// sequencer's appends and the index merges, serialised on one queue) and a pool of reader
/// connections, so reads never wait behind writes. All of Keyglass's SQL is in this folder.
///
/// Beyond the `LogStorage` contract it keeps the lookup index of the newest entries in memory
/// (`PendingIndex`): each append commits only its entries, nodes and checkpoint, and an
/// `IndexMergeFollower` merges the index rows into SQLite behind it.
public final class SQLiteStorage: LogStorage {
    let writer: SQLiteWorker
    private let readers: ReaderPool
    public let path: String
    /// Lookup-index rows of the newest entries, not yet merged into SQLite (see `PendingIndex`).
    public let pendingIndex = PendingIndex()
    /// The `IndexMergeFollower` following this engine: before every append it may catch up (when it
    /// lags too far it merges there, on the sequencer's thread: bulk loads wait instead of piling
    /// rows up in memory), and every committed append wakes it. A weak reference to the object, not
    /// closures: a closure kept in a `Mutex` is re-wrapped in a reabstraction thunk by every
    /// `withLock` that touches it, and measured, calling it then walked a chain that grew with every
    /// append (publishes/s fell from ~27k to ~11k within 30 s).
    private let follower = Mutex(FollowerReference())

    private struct FollowerReference {
        weak var value: IndexMergeFollower?
    }

    public var readsAreLocal: Bool { true }
    public var maxSize: UInt64 { Schema.maxIndex + 1 }

    /// `maxPages`: a quota on the database's size in pages (PRAGMA max_page_count); a write beyond
    /// it fails as a full disk does, which is also how the tests provoke one.
    /// `vfs` names a registered SQLite VFS (nil: the default); the power-cut tests use one that
    /// simulates losing every write no sync covered.
    /// `secureDelete`: every write zeroes the bytes it frees (SQLite's `secure_delete`), so rows a
    /// key directory erases, and the copies page splits leave behind, are not left in the file.
    /// `writerCacheKiB`: the writer's page cache (see below).
    public init(path: String, readers readerCount: Int = 3, sync: SyncMode = .full, maxPages: Int? = nil, vfs: String? = nil,
                secureDelete: Bool = false, writerCacheKiB: Int = 16384) throws {
        self.path = path
        let w = try SQLiteConnection(path: path, vfs: vfs)
        try w.execute(Schema.statements[0])  // WAL
        try w.execute(Schema.statements[1])  // meta, to read the schema before changing anything
        try Schema.refuseNewer(w)
        for s in Schema.statements { try w.execute(s) }
        try Schema.migrate(w)
        if let maxPages { try w.execute("PRAGMA max_page_count=\(maxPages)") }
        try w.execute("PRAGMA synchronous=\(sync.rawValue)")
        if secureDelete { try w.execute("PRAGMA secure_delete=ON") }
        // The writer touches index pages all over the file; 16 MiB of cache (the default) keeps
        // them from being re-read on every batch. Readers keep SQLite's default 2 MiB: memory
        // stays flat. A key directory's server passes 8 MiB: it keeps a state database and its
        // caches beside the log (measured: peak RSS 84-86 -> 76 MB at the same rate).
        try w.execute("PRAGMA cache_size=-\(max(1024, writerCacheKiB))")
        try Self.loadPendingIndex(w, into: pendingIndex)
        w.releaseStatements()
        writer = SQLiteWorker(connection: w, label: "keyglass.sqlite.writer")
        readers = try ReaderPool(path: path, warm: readerCount, vfs: vfs)
    }

    /// Runs a read on a reader connection, on the calling thread (see `ReaderPool`).
    func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try readers.read(body)
    }

    public func close() {
        writer.close()
        readers.close()
    }

    // MARK: Writes

    public func initialise(first: StoredCheckpoint, origin: String, signedAtMillis: UInt64) throws {
        try writer.runHere { db in
            try db.transaction {
                guard try Self.latestCheckpoint(db) == nil else { throw StoreError.corrupt("the log already has checkpoints") }
                try Self.insertCheckpoint(db, first, signedAtMillis: signedAtMillis)
                let m = try db.statement("INSERT INTO meta(key, value) VALUES('origin', ?), ('schema', ?)")
                m.bind(1, origin)
                m.bind(2, Schema.version)
                try m.step()
            }
        }
    }

    public func newestEntries(of identities: Set<String>) throws -> [String: UInt64] {
        // On the writer connection: it alone writes entries, so what it reads is the newest, and no
        // index merge (the follower's slices share its queue) moves rows while it reads.
        try Self.describingStorageFaults {
            try writer.runHere { db in
                // One snapshot for the whole batch: a WAL read lock per statement costs more than the reads.
                try db.transaction(readOnly: true) {
                    var found: [String: UInt64] = [:]
                    for identity in identities {
                        if let index = try latestIndex(db, identity: identity) { found[identity] = index }
                    }
                    return found
                }
            }
        }
    }

    public func append(_ batch: SequencedBatch) throws {
        let follower = follower.withLock { $0.value }
        follower?.catchUp()
        var rows: [PendingIndex.Row] = []
        rows.reserveCapacity(batch.entries.count)
        try Self.describingStorageFaults { try write(batch, rows: &rows) }
        // Committed: only now do the rows join the pending index (a reader that sees the new
        // checkpoint later finds them there or, once merged, in SQLite).
        pendingIndex.add(rows)
        follower?.appended()
    }

    /// A full disk, a read-only database or an I/O error is the operator's to fix: said so, in words
    /// a publisher's error answer can carry.
    private static func describingStorageFaults<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let f as SQLiteConnection.Failure where f.isStorageFault {
            throw StoreError.storage("storage is full or read-only (\(f.description)); nothing of this batch was written, reads continue")
        }
    }

    /// `append`'s transaction.
    private func write(_ batch: SequencedBatch, rows: inout [PendingIndex.Row]) throws {
        try writer.runHere { db in
            try db.transaction {
                let newest = try Self.latestCheckpoint(db)?.size
                guard newest == batch.previousSize else {
                    throw StoreError.conflict("the batch extends size \(batch.previousSize) but the newest checkpoint has size \(newest.map(String.init) ?? "none")")
                }
                // Another connection wrote entries this engine's pending index has never seen (a
                // second writer on the file, whose append won): rebuild it from the table first,
                // as when the log opens, so its rows follow on without a gap.
                if pendingIndex.nextIndex != batch.previousSize { try Self.loadPendingIndex(db, into: pendingIndex) }
                let insertEntry = "INSERT INTO entries(idx, identity, identity_key, leaf_hash, leaf_key, data) VALUES(?, ?, ?, ?, ?, ?)"
                for e in batch.entries {
                    let identityKey = Schema.identityKey(e.identity)
                    let leafKey = Schema.lookupKey(e.leafHash)
                    let s = try db.statement(insertEntry)
                    s.bind(1, e.index)
                    s.bind(2, e.identity)
                    s.bind(3, identityKey)
                    s.bind(4, e.leafHash)
                    s.bind(5, leafKey)
                    s.bind(6, e.data)
                    try s.step()
                    rows.append(PendingIndex.Row(index: e.index, identityKey: identityKey, leafKey: leafKey))
                    if let sealed = e.sealed {
                        let ss = try db.statement("INSERT INTO sealed_changes(idx, data) VALUES(?, ?)")
                        ss.bind(1, e.index)
                        ss.bind(2, sealed)
                        try ss.step()
                    }
                    if let vrf = e.vrf {
                        let vs = try db.statement("INSERT OR IGNORE INTO vrf_labels(identity, label, proof) VALUES(?, ?, ?)")
                        vs.bind(1, vrf.identity)
                        vs.bind(2, vrf.label)
                        vs.bind(3, vrf.proof)
                        try vs.step()
                    }
                }
                for node in batch.nodes {
                    let n = try db.statement("INSERT INTO nodes(id, hash) VALUES(?, ?)")
                    n.bind(1, Schema.nodeKey(level: node.id.level, index: node.id.index))
                    n.bind(2, node.hash)
                    try n.step()
                }
                try Self.insertCheckpoint(db, batch.checkpoint, signedAtMillis: batch.signedAtMillis)
            }
        }
    }

    public func replaceNote(size: UInt64, root: Hash, note: String) throws {
        try writer.runHere { db in
            try db.transaction {
                guard let cp = try Self.latestCheckpoint(db), cp.size == size, cp.root == root else {
                    throw StoreError.conflict("the newest checkpoint is no longer of size \(size)")
                }
                let s = try db.statement("UPDATE checkpoints SET note = ? WHERE size = ?")
                s.bind(1, note)
                s.bind(2, size)
                try s.step()
            }
        }
    }

    public func storeVRFProofs(_ proofs: [(identity: String, label: Hash, proof: [UInt8])]) throws {
        try writer.runHere { db in
            try db.transaction {
                for p in proofs {
                    // An UPDATE: a row erased meanwhile stays erased. A damaged proof is replaced.
                    let s = try db.statement("UPDATE vrf_labels SET proof = ? WHERE identity = ? AND label = ? AND proof != ?")
                    s.bind(1, p.proof)
                    s.bind(2, p.identity)
                    s.bind(3, p.label)
                    s.bind(4, p.proof)
                    try s.step()
                }
            }
        }
    }

    /// Deleted with `secure_delete` (the freed pages are zeroed) and the WAL checkpointed and
    /// truncated after, so the erased bytes do not linger in the file or its journal. Throws if
    /// the checkpoint could not copy and truncate the whole WAL (a reader held it: a backup).
    /// Open the storage with `secureDelete` so copies earlier writes left are zeroed too.
    public func eraseSealedChanges(at indices: [UInt64], identity: String) throws -> Int {
        try writer.runHere { db in
            try db.execute("PRAGMA secure_delete = ON")
            var erased = 0
            try db.transaction {
                for index in indices {
                    let s = try db.statement("DELETE FROM sealed_changes WHERE idx = ?")
                    s.bind(1, index)
                    try s.step()
                    erased += Int(db.changes)
                }
                let v = try db.statement("DELETE FROM vrf_labels WHERE identity = ?")
                v.bind(1, identity)
                try v.step()
            }
            let checkpoint = try db.statement("PRAGMA wal_checkpoint(TRUNCATE)")
            guard try checkpoint.step(), checkpoint.int64(0) == 0 else {
                db.releaseStatements()
                throw StoreError.storage("the erasure is committed, but a reader holds the database (a backup?) so its old pages are still in the WAL: run erase again once it is done")
            }
            db.releaseStatements()
            return erased
        }
    }

    private static func insertCheckpoint(_ db: SQLiteConnection, _ cp: StoredCheckpoint, signedAtMillis: UInt64) throws {
        let c = try db.statement("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(?, ?, ?, ?)")
        c.bind(1, cp.size)
        c.bind(2, cp.root)
        c.bind(3, cp.note)
        c.bind(4, signedAtMillis)
        try c.step()
    }

    /// The newest entry of `identity` (on the writer connection).
    private func latestIndex(_ db: SQLiteConnection, identity: String) throws -> UInt64? {
        let key = Schema.identityKey(identity)
        // Pending entries are newer than indexed ones: the newest candidate that is really this
        // identity's is the answer.
        for index in pendingIndex.identityCandidates(identityKey: key).reversed() {
            let s = try db.statement("SELECT identity FROM entries WHERE idx = ?")
            s.bind(1, index)
            if try s.step(), s.text(0) == identity { return index }
        }
        // Each level newest first, stopping at the first that is really this identity's.
        var newest: UInt64?
        for table in ["identity_index_recent", "identity_index"] {
            let s = try db.statement("""
                SELECT i.idx FROM \(table) i JOIN entries e ON e.idx = i.idx
                WHERE i.identity_key = ? AND e.identity = ? ORDER BY i.idx DESC LIMIT 1
                """)
            s.bind(1, key)
            s.bind(2, identity)
            if try s.step() { newest = max(newest ?? 0, s.uint64(0)) }
        }
        return newest
    }

    // MARK: Backup

    /// Copies the log's database at `database` to a new file `destination` while the server goes
    /// on (SQLite's online backup from one read snapshot) and returns the tree size of the copy's
    /// newest checkpoint: every entry acknowledged before the backup began is in it. The copy is
    /// written beside the destination and renamed into place, so a crash leaves no half file.
    public static func backup(database: String, to destination: String) throws -> UInt64 {
        guard !FileManager.default.fileExists(atPath: destination) else { throw StoreError.storage("\(destination) exists; refusing to overwrite it") }
        let temporary = destination + ".partial"
        try? FileManager.default.removeItem(atPath: temporary)
        let source = try SQLiteConnection(path: database, readOnly: true)
        defer { source.close() }
        let copy = try SQLiteConnection(path: temporary)
        do {
            try source.backup(into: copy)
            try copy.execute("PRAGMA journal_mode=DELETE")  // one self-contained file
            let s = try copy.statement("SELECT coalesce(max(size), 0) FROM checkpoints")
            try s.step()
            let size = s.uint64(0)
            copy.close()
            try FileManager.default.moveItem(atPath: temporary, toPath: destination)
            return size
        } catch {
            copy.close()
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    // MARK: Maintenance (SQLite's own)

    /// Maintenance mode: while on, the writer refuses every write (as a read-only database does)
    /// and publishes fail with a clear error; reads go on.
    public func setWritesRefused(_ refused: Bool) throws {
        try writer.runHere { db in try db.execute("PRAGMA query_only=\(refused ? "ON" : "OFF")") }
    }

    /// Pages the database file uses now (for quotas and tests).
    public func pageCount() throws -> Int {
        try writer.runHere { db in
            let s = try db.statement("PRAGMA page_count")
            try s.step()
            return Int(s.int64(0))
        }
    }

    /// Runs SQLite's own consistency check (used by tests and `keyglass-server check`).
    public func integrityCheck() throws -> String {
        try read { db in
            let s = try db.statement("PRAGMA integrity_check")
            var lines: [String] = []
            while try s.step() { lines.append(s.text(0)) }
            return lines.joined(separator: "\n")
        }
    }

    // MARK: The lookup index's follower

    /// Called by `IndexMergeFollower` when it starts following this log. One follower per engine:
    /// a second one attached replaces the first (the tests that step merges by hand do this).
    func attach(_ follower: IndexMergeFollower) {
        self.follower.withLock { $0.value = follower }
    }

    /// Rows in the recent level (of the index that has more: after a crash midway through a
    /// compaction, one index's pass may be done and the other's not): how far the next compaction
    /// is (`IndexMergeFollower`).
    func recentIndexRows() throws -> Int {
        try writer.runHere { db in
            let s = try db.statement("SELECT max((SELECT count(*) FROM identity_index_recent), (SELECT count(*) FROM leaf_index_recent))")
            try s.step()
            return Int(s.int64(0))
        }
    }

    /// The entry indices below ?3 whose leaf hash has lookup key ?1, from both levels.
    static let leafRows = """
        SELECT idx FROM leaf_index WHERE leaf_key = ?1 AND idx < ?3
        UNION SELECT idx FROM leaf_index_recent WHERE leaf_key = ?1 AND idx < ?3
        """

    /// Rebuilds the pending index from the entries the index tables do not cover (when the log opens).
    private static func loadPendingIndex(_ db: SQLiteConnection, into pending: PendingIndex) throws {
        let m = try db.statement("SELECT value FROM meta WHERE key = 'indexed_size'")
        let indexedSize = try m.step() ? UInt64(m.text(0)) ?? 0 : 0
        // The entries store their lookup keys: nothing to hash again.
        let s = try db.statement("SELECT idx, identity_key, leaf_key FROM entries WHERE idx >= ? ORDER BY idx")
        s.bind(1, indexedSize)
        var rows: [PendingIndex.Row] = []
        while try s.step() {
            rows.append(PendingIndex.Row(index: s.uint64(0), identityKey: s.int64(1), leafKey: s.int64(2)))
        }
        pending.reset(indexedSize: indexedSize, rows: rows)
    }
}
