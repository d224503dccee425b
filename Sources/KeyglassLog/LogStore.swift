import Foundation
import KeyglassCore

/// A stored entry with its position in the log.
public struct StoredEntry: Sendable, Equatable {
    public let index: UInt64
    public let data: [UInt8]
    public let leafHash: Hash
}

/// A checkpoint the log signed, as stored.
public struct StoredCheckpoint: Sendable, Equatable {
    public let size: UInt64
    public let root: Hash
    /// The signed note, exactly as served.
    public let note: String
}

public enum StoreError: Error, CustomStringConvertible, Equatable {
    case notInitialised(String)
    case corrupt(String)
    case storage(String)

    public var description: String {
        switch self {
        case let .notInitialised(m): return "log not initialised: \(m)"
        case let .corrupt(m): return "log database is inconsistent: \(m)"
        case let .storage(m): return "storage failure: \(m)"
        }
    }
}

/// Durability of each batch's commit. `full` fsyncs the WAL on every commit: an acknowledged
/// publish survives power loss. `normal` survives a process crash but not power loss.
public enum SyncMode: String, Sendable, CaseIterable {
    case full = "FULL"
    case normal = "NORMAL"
}

/// The log's SQLite database: one writer connection (used only by the sequencer) and a few reader
/// connections, so reads never wait behind writes (WAL). Proofs are assembled from stored node
/// hashes with O(log n) point reads.
public final class LogStore: Sendable {
    let writer: SQLiteWorker
    private let readers: ReaderPool
    public let path: String
    /// The tree's upper levels in memory (see `UpperTreeCache`); kept current by the sequencer.
    public let upperTree: UpperTreeCache
    /// Lookup-index rows of the newest entries, not yet merged into SQLite (see `PendingIndex`).
    public let pendingIndex = PendingIndex()

    /// `maxPages`: a quota on the database's size in pages (PRAGMA max_page_count); a write beyond
    /// it fails as a full disk does, which is also how the tests provoke one.
    /// `vfs` names a registered SQLite VFS (nil: the default); the power-cut tests use one that
    /// simulates losing every write no sync covered.
    public init(path: String, readers readerCount: Int = 3, sync: SyncMode = .full, maxPages: Int? = nil,
                upperTreeBudget: Int = 1 << 19, vfs: String? = nil) throws {
        self.path = path
        upperTree = UpperTreeCache(budget: upperTreeBudget)
        let w = try SQLiteConnection(path: path, vfs: vfs)
        for s in Schema.statements { try w.execute(s) }
        try Schema.migrate(w)
        if let maxPages { try w.execute("PRAGMA max_page_count=\(maxPages)") }
        try w.execute("PRAGMA synchronous=\(sync.rawValue)")
        // The writer touches index pages all over the file; 16 MiB of cache keeps them from being
        // re-read on every batch. Readers keep SQLite's default 2 MiB: memory stays flat.
        try w.execute("PRAGMA cache_size=-16384")
        writer = SQLiteWorker(connection: w, label: "keyglass.sqlite.writer")
        readers = try ReaderPool(path: path, warm: readerCount, vfs: vfs)
    }

    /// Runs a read on a reader connection, on the calling thread (see `ReaderPool`). Reads are
    /// synchronous: a few cached B-tree lookups, cheaper than any thread hop, so the HTTP layer may
    /// run them right on its event loop (see `FastPathHandler`).
    private func read<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try readers.read(body)
    }

    /// Maintenance mode: while on, the writer refuses every write (as a read-only database does)
    /// and publishes fail with a clear error; reads go on.
    public func setWritesRefused(_ refused: Bool) async throws {
        try await writer.run { db in try db.execute("PRAGMA query_only=\(refused ? "ON" : "OFF")") }
    }

    /// Pages the database file uses now (for quotas and tests).
    /// Closes every connection, the writer's after the work queued on it. When it returns the
    /// database is whole on disk (the WAL checkpointed into it), so it can be copied; the store is
    /// unusable afterwards. Call it once nothing reads or writes any more.
    public func close() {
        writer.close()
        readers.close()
    }

    public func pageCount() async throws -> Int {
        try await writer.run { db in
            let s = try db.statement("PRAGMA page_count")
            try s.step()
            return Int(s.int64(0))
        }
    }

    // MARK: Checkpoints

    public func latestCheckpoint() throws -> StoredCheckpoint? {
        try read { db in try Self.latestCheckpoint(db) }
    }

    static func latestCheckpoint(_ db: SQLiteConnection) throws -> StoredCheckpoint? {
        let s = try db.statement("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        guard try s.step() else { return nil }
        guard let root = s.hash(1) else { throw StoreError.corrupt("checkpoint root is not 32 bytes") }
        return StoredCheckpoint(size: s.uint64(0), root: root, note: s.text(2))
    }

    public func checkpoint(size: UInt64) throws -> StoredCheckpoint? {
        try read { db in
            let s = try db.statement("SELECT size, root, note FROM checkpoints WHERE size = ?")
            s.bind(1, size)
            guard try s.step() else { return nil }
            guard let root = s.hash(1) else { throw StoreError.corrupt("checkpoint root is not 32 bytes") }
            return StoredCheckpoint(size: s.uint64(0), root: root, note: s.text(2))
        }
    }

    public func checkpointCount() throws -> UInt64 {
        try read { db in
            let s = try db.statement("SELECT count(*) FROM checkpoints")
            try s.step()
            return s.uint64(0)
        }
    }

    // MARK: Node hashes and proofs

    /// Reads one stored perfect-subtree hash: level 0 from the entries, higher levels from `nodes`.
    static func nodeHash(_ db: SQLiteConnection, _ id: NodeID) throws -> Hash {
        let s: SQLiteConnection.Statement
        if id.level == 0 {
            s = try db.statement("SELECT leaf_hash FROM entries WHERE idx = ?")
            s.bind(1, id.index)
        } else {
            s = try db.statement("SELECT hash FROM nodes WHERE id = ?")
            s.bind(1, Schema.nodeKey(level: id.level, index: id.index))
        }
        guard try s.step(), let h = s.hash(0) else { throw StoreError.corrupt("missing node \(id)") }
        return h
    }

    static func nodeHashes(_ db: SQLiteConnection, _ ids: [NodeID]) throws -> [Hash] {
        try ids.map { try nodeHash(db, $0) }
    }

    /// The hashes of `ids`, in order: the upper levels from memory, the rest in one trip to a reader.
    func hashes(of ids: [NodeID]) throws -> [Hash] {
        var cached = [Hash?](repeating: nil, count: ids.count)
        upperTree.lookUp(ids, into: &cached)
        let missing = ids.indices.filter { cached[$0] == nil }
        if !missing.isEmpty {
            let read = try read { db in try missing.map { try Self.nodeHash(db, ids[$0]) } }
            for (k, i) in missing.enumerated() { cached[i] = read[k] }
        }
        return cached.map { $0! }
    }

    /// Reads the nodes a plan needs (and `extra` ones), then folds them. Returns the proof and the
    /// hashes of `extra`.
    func assemble(_ plan: [ProofPlan.Element], extra: [NodeID] = []) throws -> (proof: [Hash], extra: [Hash]) {
        let planNodes = ProofPlan.nodes(of: plan)
        let ids = planNodes + extra
        let hashes = try hashes(of: ids)
        let proof = try ProofPlan.assemble(plan) { id in
            // A plan has at most ~2·64 nodes: a linear search beats building a dictionary.
            guard let i = planNodes.firstIndex(of: id) else { throw StoreError.corrupt("missing node \(id)") }
            return hashes[i]
        }
        return (proof, Array(hashes[planNodes.count...]))
    }

    /// Inclusion proof of `index` in the tree of `size` (size must not exceed the stored tree).
    public func inclusionProof(index: UInt64, size: UInt64) throws -> [Hash] {
        try assemble(ProofPlan.inclusion(index: index, size: size)).proof
    }

    /// The leaf hash of `index` and its inclusion proof, read in one trip to a reader connection.
    public func inclusionProofWithLeaf(index: UInt64, size: UInt64) throws -> (Hash, [Hash]) {
        let (proof, extra) = try assemble(ProofPlan.inclusion(index: index, size: size), extra: [NodeID(level: 0, index: index)])
        return (extra[0], proof)
    }

    public func consistencyProof(from: UInt64, to: UInt64) throws -> [Hash] {
        try assemble(ProofPlan.consistency(from: from, to: to)).proof
    }

    /// The stored compact range for `size`: what the sequencer resumes from after a restart.
    static func compactRange(_ db: SQLiteConnection, size: UInt64) throws -> CompactRange {
        let ids = CompactRange.subtrees(forSize: size)
        guard let range = CompactRange(size: size, hashes: try nodeHashes(db, ids)) else {
            throw StoreError.corrupt("cannot rebuild the tree edge at size \(size)")
        }
        return range
    }

    /// Loads the upper tree levels of the tree of `size` into `upperTree` (when the log opens).
    func loadUpperTree(_ db: SQLiteConnection, size: UInt64) throws {
        let lowest = UpperTreeCache.lowestLevel(forSize: size, budget: upperTree.budget)
        var levels: [[Hash]] = []
        var level = lowest
        while level < 64 && size >> level > 0 {
            let count = size >> level
            let s = try db.statement("SELECT hash FROM nodes WHERE id >= ? AND id < ? ORDER BY id")
            s.bind(1, Schema.nodeKey(level: level, index: 0))
            s.bind(2, Schema.nodeKey(level: level, index: count))
            var hashes: [Hash] = []
            hashes.reserveCapacity(Int(count))
            while try s.step() {
                guard let h = s.hash(0) else { throw StoreError.corrupt("node hash at level \(level) is not 32 bytes") }
                hashes.append(h)
            }
            guard UInt64(hashes.count) == count else { throw StoreError.corrupt("level \(level) has \(hashes.count) of \(count) nodes") }
            levels.append(hashes)
            level += 1
        }
        upperTree.reset(lowestLevel: lowest, levels: levels)
    }

    /// `count` consecutive hashes of one tree level, starting at `start`, concatenated: a tile body.
    public func levelHashes(level: UInt8, start: UInt64, count: UInt64) throws -> [UInt8] {
        try read { db in
            var out: [UInt8] = []
            out.reserveCapacity(Int(count) * 32)
            let s: SQLiteConnection.Statement
            if level == 0 {
                s = try db.statement("SELECT leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx")
                s.bind(1, start)
                s.bind(2, start + count)
            } else {
                s = try db.statement("SELECT hash FROM nodes WHERE id >= ? AND id < ? ORDER BY id")
                s.bind(1, Schema.nodeKey(level: level, index: start))
                s.bind(2, Schema.nodeKey(level: level, index: start + count))
            }
            var n: UInt64 = 0
            while try s.step() {
                out += s.blob(0)
                n += 1
            }
            guard n == count else { throw StoreError.corrupt("level \(level) has \(n) of \(count) hashes from \(start)") }
            return out
        }
    }

    // MARK: Entries

    public func entries(start: UInt64, end: UInt64) throws -> [StoredEntry] {
        try read { db in
            let s = try db.statement("SELECT idx, data, leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx")
            s.bind(1, start)
            s.bind(2, end)
            var out: [StoredEntry] = []
            while try s.step() {
                guard let h = s.hash(2) else { throw StoreError.corrupt("leaf hash of entry \(s.uint64(0))") }
                out.append(StoredEntry(index: s.uint64(0), data: s.blob(1), leafHash: h))
            }
            return out
        }
    }

    /// Entries [start, end) as an entry bundle (c2sp.org/tlog-tiles: each entry prefixed by its
    /// uint16 length), written straight from SQLite's row buffers into the answer.
    public func entryBundle(start: UInt64, end: UInt64) throws -> [UInt8] {
        try read { db in
            let s = try db.statement("SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx")
            s.bind(1, start)
            s.bind(2, end)
            var out: [UInt8] = []
            out.reserveCapacity(Int(end - start) * 160)
            var n: UInt64 = 0
            while try s.step() {
                try s.withBlob(0) { b in
                    guard b.count <= Int(UInt16.max) else { throw StoreError.corrupt("entry \(start + n) is longer than 65535 bytes") }
                    out.append(UInt8(b.count >> 8))
                    out.append(UInt8(b.count & 0xff))
                    out.append(contentsOf: b)
                }
                n += 1
            }
            guard n == end - start else { throw StoreError.corrupt("entries \(start)..<\(end): \(n) stored") }
            return out
        }
    }

    public func entry(at index: UInt64) throws -> StoredEntry? {
        try entries(start: index, end: index + 1).first
    }

    /// The identity's entries below `size`, oldest first, at most `limit` (the newest ones).
    public func entries(identity: String, below size: UInt64, limit: Int) throws -> [StoredEntry] {
        // The tail first, then SQLite (see `PendingIndex` for why this order never misses one).
        let key = Schema.identityKey(identity)
        let pending = pendingIndex.identityCandidates(identityKey: key).filter { $0 < size }
        return try read { db in
            var found: [UInt64: StoredEntry] = [:]
            let s = try db.statement("""
                SELECT e.idx, e.data, e.leaf_hash FROM identity_index i JOIN entries e ON e.idx = i.idx
                WHERE i.identity_key = ? AND e.identity = ? AND i.idx < ? ORDER BY i.idx DESC LIMIT ?
                """)
            s.bind(1, key)
            s.bind(2, identity)
            s.bind(3, size)
            s.bind(4, Int64(limit))
            while try s.step() {
                guard let h = s.hash(2) else { throw StoreError.corrupt("leaf hash of entry \(s.uint64(0))") }
                found[s.uint64(0)] = StoredEntry(index: s.uint64(0), data: s.blob(1), leafHash: h)
            }
            // Pending candidates, newest first, checked against the entry's identity.
            var fromPending = 0
            for index in pending.reversed() where fromPending < limit {
                guard let (e, owner) = try Self.entryWithIdentity(db, at: index) else { throw StoreError.corrupt("indexed entry \(index) is missing") }
                guard owner == identity else { continue }
                found[index] = e
                fromPending += 1
            }
            return found.keys.sorted().suffix(limit).map { found[$0]! }
        }
    }

    static func entryWithIdentity(_ db: SQLiteConnection, at index: UInt64) throws -> (StoredEntry, String)? {
        let s = try db.statement("SELECT data, leaf_hash, identity FROM entries WHERE idx = ?")
        s.bind(1, index)
        guard try s.step() else { return nil }
        guard let h = s.hash(1) else { throw StoreError.corrupt("leaf hash of entry \(index)") }
        return (StoredEntry(index: index, data: s.blob(0), leafHash: h), s.text(2))
    }

    /// The first entry below `size` whose leaf hash is `hash`.
    public func index(ofLeafHash hash: Hash, below size: UInt64) throws -> UInt64? {
        let key = Schema.lookupKey(hash)
        let pending = pendingIndex.leafCandidates(leafKey: key).filter { $0 < size }
        return try read { db in
            let s = try db.statement("""
                SELECT i.idx FROM leaf_index i JOIN entries e ON e.idx = i.idx
                WHERE i.leaf_key = ? AND e.leaf_hash = ? AND i.idx < ? ORDER BY i.idx LIMIT 1
                """)
            s.bind(1, key)
            s.bind(2, hash)
            s.bind(3, size)
            // Indexed entries are older than pending ones: a match in SQLite is the first.
            if try s.step() { return s.uint64(0) }
            for index in pending {
                if try Self.leafHash(db, at: index) == hash { return index }
            }
            return nil
        }
    }

    static func leafHash(_ db: SQLiteConnection, at index: UInt64) throws -> Hash? {
        let s = try db.statement("SELECT leaf_hash FROM entries WHERE idx = ?")
        s.bind(1, index)
        return try s.step() ? s.hash(0) : nil
    }

    /// The newest entry of `identity`, whose lookup key the caller has computed already (for the
    /// sequencer, on the writer connection).
    func latestIndex(_ db: SQLiteConnection, identity: String, identityKey key: Int64) throws -> UInt64? {
        // Pending entries are newer than indexed ones: the newest candidate that is really this
        // identity's is the answer.
        for index in pendingIndex.identityCandidates(identityKey: key).reversed() {
            let s = try db.statement("SELECT identity FROM entries WHERE idx = ?")
            s.bind(1, index)
            if try s.step(), s.text(0) == identity { return index }
        }
        let s = try db.statement("""
            SELECT max(i.idx) FROM identity_index i JOIN entries e ON e.idx = i.idx
            WHERE i.identity_key = ? AND e.identity = ?
            """)
        s.bind(1, key)
        s.bind(2, identity)
        try s.step()
        return s.isNull(0) ? nil : s.uint64(0)
    }

    // MARK: Index merges

    /// Rebuilds the pending index from the entries the index tables do not cover (when the log opens).
    func loadPendingIndex(_ db: SQLiteConnection) throws {
        let m = try db.statement("SELECT value FROM meta WHERE key = 'indexed_size'")
        let indexedSize = try m.step() ? UInt64(m.text(0)) ?? 0 : 0
        // The entries store their lookup keys: nothing to hash again.
        let s = try db.statement("SELECT idx, identity_key, leaf_key FROM entries WHERE idx >= ? ORDER BY idx")
        s.bind(1, indexedSize)
        var rows: [PendingIndex.Row] = []
        while try s.step() {
            rows.append(PendingIndex.Row(index: s.uint64(0), identityKey: s.int64(1), leafKey: s.int64(2)))
        }
        pendingIndex.reset(indexedSize: indexedSize, rows: rows)
    }

    /// A merge of the oldest `limit` pending lookup-index rows, to be written slice by slice by the
    /// writer (see `IndexMerge`); nil when nothing is pending.
    func beginIndexMerge(limit: Int) -> IndexMerge? {
        IndexMerge(rows: pendingIndex.rowsToMerge(limit: limit))
    }

    /// After the last slice of `merge` committed: its rows are in SQLite and leave memory.
    func finishIndexMerge(_ merge: IndexMerge) {
        pendingIndex.dropMerged(merge.rowCount)
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
}
