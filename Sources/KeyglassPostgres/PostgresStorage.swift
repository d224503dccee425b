import Foundation
import KeyglassCore
import KeyglassLog
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// The PostgreSQL storage engine: one database per log, shared by any number of servers
/// (`SequencerLease` decides which one sequences). Same promise as SQLite's: a batch, the nodes it
/// completes and its signed checkpoint in one transaction, answered only after COMMIT.
///
/// `append` is a compare-and-swap twice over, in its own transaction: the lease row is locked
/// (`FOR UPDATE`) and must name this server at the term it was granted, unexpired by the database's
/// clock; and the newest checkpoint must be the one the batch extends. So a server whose lease
/// lapsed (paused, partitioned, its clock wrong) writes nothing, and two trees of one size can never
/// both be stored: every checkpoint any server serves is read from this one table.
///
/// Every call blocks its thread on the network (`readsAreLocal` is false: the HTTP layer keeps
/// reads off its event loops).
public final class PostgresStorage: LogStorage {
    public let url: PostgresURL
    private let group: MultiThreadedEventLoopGroup
    private let writer: PostgresSession
    private let readers: PostgresReaderPool
    /// Set when this storage sequences under a lease (`serve`); nil: the append checks only the
    /// newest checkpoint (init, admin commands, tests of the engine alone).
    public let lease: SequencerLease?

    /// The database is a hot standby (a streaming replica): read-only. A server on it serves the
    /// trees the replica holds and never sequences (its lease attempts fail until a promotion).
    public let isStandby: Bool

    public var readsAreLocal: Bool { false }
    public var maxSize: UInt64 { (1 << 48) }

    /// Connects (lazily, per session) and creates the schema if the database has none.
    /// `readers`: idle reader connections kept; one per thread that reads (the HTTP layer's 16
    /// `StorageThreads` and the follower), so none is closed and reopened between reads.
    /// `leaseHolder`: this server's name in the lease table; nil: no lease (see `lease`).
    public init(url: PostgresURL, readers: Int = 17, leaseHolder: String? = nil, leaseDuration: Duration = .seconds(3),
                logger: Logger = Logger(label: "keyglass.postgres")) throws {
        self.url = url
        // Two threads are plenty for a few connections' I/O; their work is tiny next to the database's.
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let group = group
        writer = PostgresSession(url: url, group: group, logger: logger)
        self.readers = PostgresReaderPool(limit: max(1, readers)) { PostgresSession(url: url, group: group, logger: logger) }
        lease = leaseHolder.map { SequencerLease(holder: $0, duration: leaseDuration, session: PostgresSession(url: url, group: group, logger: logger), logger: logger) }
        do {
            isStandby = try Self.open(writer, url: url)
        } catch {
            lease?.close()
            writer.close()
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// Whether the database is a standby; on a primary, creates the schema if it has none.
    private static func open(_ writer: PostgresSession, url: PostgresURL) throws -> Bool {
        let standby = try writer.query("SELECT pg_is_in_recovery()").first?.decode(Bool.self) ?? false
        if standby {
            // Nothing can be created on a replica: the primary's schema must have arrived.
            guard try writer.query("SELECT to_regclass('checkpoints') IS NOT NULL").first?.decode(Bool.self) == true else {
                throw StoreError.notInitialised("\(url) is a standby whose primary holds no Keyglass log")
            }
        } else {
            try createSchema(writer)
        }
        return standby
    }

    private static func createSchema(_ writer: PostgresSession) throws {
        try writer.transaction {
            try writer.query("SELECT pg_advisory_xact_lock(\(PostgresSchema.schemaLock))")
            for s in PostgresSchema.statements { try writer.query(s) }
            let rows = try writer.query("SELECT value FROM keyglass_meta WHERE key = 'schema'")
            if let stored = try rows.first?.decode(String.self), let n = Int(stored), let known = Int(PostgresSchema.version), n > known {
                throw StoreError.corrupt("this database was written by a newer Keyglass (schema \(n)); this binary knows schema \(known) at most")
            }
        }
    }

    public func close() {
        lease?.close()
        writer.close()
        readers.close()
        try? group.syncShutdownGracefully()
    }

    // MARK: Writes

    public func initialise(first: StoredCheckpoint, origin: String, signedAtMillis: UInt64) throws {
        try writer.transaction {
            try writer.query("LOCK TABLE checkpoints IN EXCLUSIVE MODE")
            guard try Self.latestCheckpoint(writer) == nil else { throw StoreError.corrupt("the log already has checkpoints") }
            try insertCheckpoint(first, signedAtMillis: signedAtMillis)
            try writer.query("INSERT INTO keyglass_meta(key, value) VALUES ('origin', \(origin)), ('schema', \(PostgresSchema.version))")
        }
    }

    public func newestEntries(of identities: Set<String>) throws -> [String: UInt64] {
        let names = Array(identities)
        let rows = try writer.query("""
            SELECT i.name, (SELECT max(e.idx) FROM entries e WHERE e.identity = i.name)
            FROM unnest(\(names)::text[]) AS i(name)
            """)
        var found: [String: UInt64] = [:]
        for row in rows {
            let (name, index) = try row.decode((String, Int64?).self)
            if let index { found[name] = UInt64(index) }
        }
        return found
    }

    public func append(_ batch: SequencedBatch) throws {
        try append(previousSize: batch.previousSize) { batch }
    }

    /// The fence first, then `build` (which signs), then the writes, all in one transaction: while
    /// it is open this server holds the lease row's lock, so no other server can pass its own fence
    /// and sign a tree of the same size until this one commits or rolls back.
    public func append(previousSize: UInt64, build: () throws -> SequencedBatch?) throws {
        try writer.transaction {
            // The lease row's lock serialises appends (with a lease or without). The head is read by
            // the next statement, not a subquery of this one: in READ COMMITTED a statement that
            // waited for the lock still reads with the snapshot it started with, and would miss the
            // checkpoint the previous holder just committed; a new statement sees it.
            let term = lease?.grantedTerm
            if lease != nil, term == nil { throw StoreError.conflict("this server does not hold the sequencer lease") }
            let rows = try writer.query("""
                SELECT holder = \(lease?.holder ?? "") AND term = \(term ?? -1) AND expires_at > clock_timestamp()
                FROM sequencer_lease WHERE id = 1 FOR UPDATE
                """)
            if let lease, try rows.first?.decode(Bool.self) != true {
                lease.lost()
                throw StoreError.conflict("the sequencer lease lapsed or passed to another server")
            }
            let newest = try Self.latestCheckpoint(writer)?.size
            guard newest == previousSize else {
                throw StoreError.conflict("the batch extends size \(previousSize) but the newest checkpoint has size \(newest.map(String.init) ?? "none")")
            }
            guard let batch = try build() else { return }
            guard batch.previousSize == previousSize else { throw StoreError.conflict("the batch built does not extend size \(previousSize)") }
            // Entries, nodes and the checkpoint in one statement: one round trip.
            let e = batch.entries, n = batch.nodes, cp = batch.checkpoint
            try writer.query("""
                WITH new_entries AS (
                    INSERT INTO entries(idx, identity, leaf_hash, data)
                    SELECT * FROM unnest(\(e.map { Int64($0.index) })::bigint[], \(e.map(\.identity))::text[],
                                         \(e.map { ByteBuffer(bytes: $0.leafHash.bytes) })::bytea[], \(e.map { ByteBuffer(bytes: $0.data) })::bytea[])),
                new_nodes AS (
                    INSERT INTO nodes(id, hash)
                    SELECT * FROM unnest(\(n.map { Self.nodeKey($0.id) })::bigint[], \(n.map { ByteBuffer(bytes: $0.hash.bytes) })::bytea[]))
                INSERT INTO checkpoints(size, root, note, signed_at_ms)
                VALUES (\(Int64(cp.size)), \(ByteBuffer(bytes: cp.root.bytes)), \(cp.note), \(Int64(clamping: batch.signedAtMillis)))
                """)
        }
    }

    public func replaceNote(size: UInt64, root: Hash, note: String) throws {
        try writer.transaction {
            guard let cp = try Self.latestCheckpoint(writer, forUpdate: true), cp.size == size, cp.root == root else {
                throw StoreError.conflict("the newest checkpoint is no longer of size \(size)")
            }
            try writer.query("UPDATE checkpoints SET note = \(note) WHERE size = \(Int64(size))")
        }
    }

    private func insertCheckpoint(_ cp: StoredCheckpoint, signedAtMillis: UInt64) throws {
        try writer.query("""
            INSERT INTO checkpoints(size, root, note, signed_at_ms)
            VALUES (\(Int64(cp.size)), \(ByteBuffer(bytes: cp.root.bytes)), \(cp.note), \(Int64(clamping: signedAtMillis)))
            """)
    }

    // MARK: Reads

    public func entryCount() throws -> UInt64 {
        // The entries are written only by `append`, contiguous from the newest checkpoint's size (its
        // compare-and-swap), so their count is the highest index + 1 (the lowest must be 0);
        // counting millions of rows to look for a gap would cost a scan of the table.
        try latestCheckpointAndEntryCount().1
    }

    /// One statement, so one snapshot: the newest checkpoint and the entries beside it.
    public func latestCheckpointAndEntryCount() throws -> (StoredCheckpoint?, UInt64) {
        try readers.read { s in
            let rows = try s.query("""
                SELECT c.size, c.root, c.note, e.n, e.first FROM
                    (SELECT coalesce(max(idx) + 1, 0) AS n, coalesce(min(idx), 0) AS first FROM entries) e
                    LEFT JOIN (SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1) c ON true
                """)
            guard let row = rows.first else { return (nil, 0) }
            let (size, root, note, count, first) = try row.decode((Int64?, ByteBuffer?, String?, Int64, Int64).self)
            guard first == 0 else { throw StoreError.corrupt("the first stored entry has index \(first), not 0") }
            guard let size, let root, let note else { return (nil, UInt64(count)) }
            guard let hash = Hash(bytes: Array(root.readableBytesView)) else { throw StoreError.corrupt("checkpoint root is not 32 bytes") }
            return (StoredCheckpoint(size: UInt64(size), root: hash, note: note), UInt64(count))
        }
    }

    public func latestCheckpoint() throws -> StoredCheckpoint? {
        try readers.read { try Self.latestCheckpoint($0) }
    }

    static func latestCheckpoint(_ s: PostgresSession, forUpdate: Bool = false) throws -> StoredCheckpoint? {
        let rows = try forUpdate
            ? s.query("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1 FOR UPDATE")
            : s.query("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return try rows.first.map(checkpoint(from:))
    }

    private static func checkpoint(from row: PostgresRow) throws -> StoredCheckpoint {
        let (size, root, note) = try row.decode((Int64, ByteBuffer, String).self)
        guard let hash = Hash(bytes: Array(root.readableBytesView)) else { throw StoreError.corrupt("checkpoint root is not 32 bytes") }
        return StoredCheckpoint(size: UInt64(size), root: hash, note: note)
    }

    public func checkpoint(size: UInt64) throws -> StoredCheckpoint? {
        guard size <= UInt64(Int64.max) else { return nil }
        return try readers.read { s in
            try s.query("SELECT size, root, note FROM checkpoints WHERE size = \(Int64(size))").first.map(Self.checkpoint(from:))
        }
    }

    public func checkpointCount() throws -> UInt64 {
        try readers.read { s in UInt64(try s.query("SELECT count(*) FROM checkpoints").first?.decode(Int64.self) ?? 0) }
    }

    public func nodeHashes(_ ids: [NodeID]) throws -> [Hash] {
        if ids.isEmpty { return [] }
        let leaves = ids.filter { $0.level == 0 }.map { Int64($0.index) }
        let upper = ids.filter { $0.level > 0 }.map(Self.nodeKey)
        var found: [NodeID: Hash] = [:]
        try readers.read { s in
            if !leaves.isEmpty {
                for row in try s.query("SELECT idx, leaf_hash FROM entries WHERE idx = ANY(\(leaves)::bigint[])") {
                    let (idx, h) = try row.decode((Int64, ByteBuffer).self)
                    found[NodeID(level: 0, index: UInt64(idx))] = try Self.hash(h)
                }
            }
            if !upper.isEmpty {
                for row in try s.query("SELECT id, hash FROM nodes WHERE id = ANY(\(upper)::bigint[])") {
                    let (key, h) = try row.decode((Int64, ByteBuffer).self)
                    found[NodeID(level: UInt8(key >> 48), index: UInt64(key & 0xFFFF_FFFF_FFFF))] = try Self.hash(h)
                }
            }
        }
        return try ids.map { id in
            guard let h = found[id] else { throw StoreError.corrupt("missing node \(id)") }
            return h
        }
    }

    public func levelHashes(level: UInt8, start: UInt64, count: UInt64) throws -> [UInt8] {
        let rows = try readers.read { s in
            level == 0
                ? try s.query("SELECT leaf_hash FROM entries WHERE idx >= \(Int64(start)) AND idx < \(Int64(start + count)) ORDER BY idx")
                : try s.query("""
                    SELECT hash FROM nodes WHERE id >= \(Self.nodeKey(NodeID(level: level, index: start)))
                    AND id < \(Self.nodeKey(NodeID(level: level, index: start + count))) ORDER BY id
                    """)
        }
        guard UInt64(rows.count) == count else { throw StoreError.corrupt("level \(level) has \(rows.count) of \(count) hashes from \(start)") }
        var out: [UInt8] = []
        out.reserveCapacity(Int(count) * 32)
        for row in rows { out.append(contentsOf: try Self.hash(row.decode(ByteBuffer.self)).bytes) }
        return out
    }

    public func entries(start: UInt64, end: UInt64) throws -> [StoredEntry] {
        guard start < end else { return [] }
        return try readers.read { s in
            try s.query("SELECT idx, data, leaf_hash FROM entries WHERE idx >= \(Int64(start)) AND idx < \(Int64(clamping: end)) ORDER BY idx")
                .map(Self.entry(from:))
        }
    }

    public func entryBundle(start: UInt64, end: UInt64) throws -> [UInt8] {
        let stored = try entries(start: start, end: end)
        guard UInt64(stored.count) == end - start else { throw StoreError.corrupt("entries \(start)..<\(end): \(stored.count) stored") }
        var out: [UInt8] = []
        out.reserveCapacity(stored.count * 160)
        for e in stored {
            guard e.data.count <= Int(UInt16.max) else { throw StoreError.corrupt("entry \(e.index) is longer than 65535 bytes") }
            out.append(UInt8(e.data.count >> 8))
            out.append(UInt8(e.data.count & 0xff))
            out.append(contentsOf: e.data)
        }
        return out
    }

    public func entries(identity: String, below size: UInt64, limit: Int) throws -> [StoredEntry] {
        try readers.read { s in
            try s.query("""
                SELECT idx, data, leaf_hash FROM entries
                WHERE identity = \(identity) AND idx < \(Int64(clamping: size)) ORDER BY idx DESC LIMIT \(Int64(limit))
                """).map(Self.entry(from:)).reversed()
        }
    }

    public func index(ofLeafHash hash: Hash, below size: UInt64) throws -> UInt64? {
        try readers.read { s in
            try s.query("""
                SELECT idx FROM entries WHERE leaf_hash = \(ByteBuffer(bytes: hash.bytes)) AND idx < \(Int64(clamping: size))
                ORDER BY idx LIMIT 1
                """).first.map { UInt64(try $0.decode(Int64.self)) }
        }
    }

    // MARK: Encoding

    static func nodeKey(_ id: NodeID) -> Int64 { Int64(id.level) << 48 | Int64(id.index) }

    private static func hash(_ b: ByteBuffer) throws -> Hash {
        guard let h = Hash(bytes: Array(b.readableBytesView)) else { throw StoreError.corrupt("a stored hash is not 32 bytes") }
        return h
    }

    private static func entry(from row: PostgresRow) throws -> StoredEntry {
        let (idx, data, leaf) = try row.decode((Int64, ByteBuffer, ByteBuffer).self)
        return StoredEntry(index: UInt64(idx), data: Array(data.readableBytesView), leafHash: try hash(leaf))
    }
}
