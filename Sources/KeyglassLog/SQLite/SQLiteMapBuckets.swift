import KeyglassCore

/// A bucketed map's labels (`MapTree.Bucketed`) in SQLite, for auditors, whose maps outgrow
/// memory: one row per label (its value) and one per non-empty bucket (its subtree's hash and
/// whether it holds one label or more). A change writes its label's row and its bucket's; a bucket
/// is read back as one range of the label index, so no interior node is ever stored.
///
/// Not thread-safe: one owner calls it, and wraps each epoch's updates in a transaction of the
/// database it lives in (a commit per row would cost a sync each).
public final class SQLiteMapBuckets: MapBucketStore {
    private let db: SQLiteConnection

    /// Opens (or creates) the tables in the database at `path`, alone (the bench's map).
    public convenience init(path: String, sync: SyncMode = .full) throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=\(sync.rawValue)")
        try self.init(connection: db)
    }

    /// Runs `body` in one transaction: all of its writes commit together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try db.transaction(body)
    }

    /// The tables in a database another owner keeps (an auditor's state: its map commits with
    /// the rest of what it stores).
    init(connection: SQLiteConnection) throws {
        db = connection
        try db.execute("CREATE TABLE IF NOT EXISTS map_leaves(label BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        try db.execute("CREATE TABLE IF NOT EXISTS map_buckets(bucket INTEGER PRIMARY KEY, count INTEGER NOT NULL, hash BLOB NOT NULL)")
    }

    /// The tables as a reader connection sees them (a lookup's read transaction): nothing is
    /// created, and writes fail.
    init(reading connection: SQLiteConnection) {
        db = connection
    }

    private static var bucketBits: Int { MapTree.Bucketed<SQLiteMapBuckets>.bucketBits }

    public func leaves(inBucket bucket: Int) throws -> [(label: Hash, value: Hash)] {
        let s = try db.statement("SELECT label, value FROM map_leaves WHERE label >= ? AND label < ? ORDER BY label")
        // A bucket's labels are those from its first bits (a shorter blob sorts first) to the
        // next bucket's; the last bucket's end is a blob longer than any label, all 0xff.
        s.bind(1, Self.bound(bucket))
        s.bind(2, bucket + 1 < 1 << Self.bucketBits ? Self.bound(bucket + 1) : [UInt8](repeating: 0xff, count: 33))
        defer { db.releaseStatements() }
        var pairs: [(label: Hash, value: Hash)] = []
        while try s.step() {
            guard let label = s.hash(0), let value = s.hash(1) else {
                throw StoreError.corrupt("a map label or value in the audit state is not 32 bytes")
            }
            pairs.append((label, value))
        }
        return pairs
    }

    public func setLeaves(_ pairs: [(label: Hash, value: Hash)]) throws {
        for (label, value) in pairs {
            let s = try db.statement("INSERT OR REPLACE INTO map_leaves(label, value) VALUES(?, ?)")
            s.bind(1, label)
            s.bind(2, value)
            try s.step()
        }
    }

    public func summaries() throws -> [(bucket: Int, count: UInt8, hash: Hash)] {
        let s = try db.statement("SELECT bucket, count, hash FROM map_buckets ORDER BY bucket")
        defer { db.releaseStatements() }
        var all: [(bucket: Int, count: UInt8, hash: Hash)] = []
        while try s.step() {
            let count = s.int64(1)
            guard let hash = s.hash(2), (1...2).contains(count) else {
                throw StoreError.corrupt("a map bucket's summary in the audit state is unreadable")
            }
            all.append((Int(s.int64(0)), UInt8(count), hash))
        }
        return all
    }

    public func setSummary(bucket: Int, count: UInt8, hash: Hash) throws {
        if count == 0 {
            let d = try db.statement("DELETE FROM map_buckets WHERE bucket = ?")
            d.bind(1, Int64(bucket))
            try d.step()
            return
        }
        let s = try db.statement("INSERT OR REPLACE INTO map_buckets(bucket, count, hash) VALUES(?, ?, ?)")
        s.bind(1, Int64(bucket))
        s.bind(2, Int64(count))
        s.bind(3, hash)
        try s.step()
    }

    /// Labels stored (for tests and sizing).
    public func count() throws -> Int {
        let s = try db.statement("SELECT count(*) FROM map_leaves")
        defer { db.releaseStatements() }
        try s.step()
        return Int(s.int64(0))
    }

    /// The first bytes of a bucket's labels: its number, big-endian, in `bucketBits` bits.
    private static func bound(_ bucket: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: bucket >> 8), UInt8(truncatingIfNeeded: bucket)]
    }
}
