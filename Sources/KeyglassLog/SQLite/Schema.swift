import KeyglassCore

/// The database layout. Every statement is idempotent so opening an existing log is the same code.
/// Public only for its key functions, which tools that write a log's database directly (the tests'
/// forged histories) must compute the same way.
public enum Schema {
    /// 2: the lookup indexes are tables of their own, merged behind the sequencer (`PendingIndex`).
    /// 3: each lookup index has two levels, a small recent one and the main one (`IndexCompaction`).
    static let version = "3"

    /// Node ids pack (level, index) into one integer key: level in the bits above 48, so the nodes of
    /// one level are contiguous and a tile is one range scan. 2^48 leaves is far beyond any log.
    public static func nodeKey(level: UInt8, index: UInt64) -> Int64 { Int64(level) << 48 | Int64(index) }
    static let maxIndex: UInt64 = (1 << 48) - 1

    /// The first 8 bytes of a hash as a signed integer: an index key. Collisions only cost a
    /// second comparison, since every query also compares the full identity or leaf hash.
    public static func lookupKey(_ h: Hash) -> Int64 {
        h.withUnsafeBytes { Int64(bitPattern: $0.loadUnaligned(as: UInt64.self)) }
    }

    /// The identity's lookup key: `lookupKey` of the SHA-256 of its UTF-8.
    public static func identityKey(_ identity: String) -> Int64 { lookupKey(Hash.sha256(Array(identity.utf8))) }

    static let statements = [
        "PRAGMA journal_mode=WAL",
        """
        CREATE TABLE IF NOT EXISTS meta(
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL)
        """,
        // One row per log entry. leaf_hash is the level-0 node of the tree. identity_key and
        // leaf_key are the 64-bit lookup keys (see `lookupKey`) of the index tables below.
        """
        CREATE TABLE IF NOT EXISTS entries(
            idx INTEGER PRIMARY KEY,
            identity TEXT NOT NULL,
            identity_key INTEGER NOT NULL,
            leaf_hash BLOB NOT NULL,
            leaf_key INTEGER NOT NULL,
            data BLOB NOT NULL)
        """,
        // The lookups by identity and by leaf hash, through 64-bit keys: a third of the size of
        // indexes on the text and blob. Rows arrive in sorted merges behind the sequencer, not with
        // each batch (see `PendingIndex`); meta 'indexed_size' says how many entries they cover.
        """
        CREATE TABLE IF NOT EXISTS identity_index(
            identity_key INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            PRIMARY KEY(identity_key, idx)) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS leaf_index(
            leaf_key INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            PRIMARY KEY(leaf_key, idx)) WITHOUT ROWID
        """,
        // The recent level of each lookup index: merges from memory land here, in a table small
        // enough that a merge rewrites few pages; compactions move its rows into the main level
        // above, a key range at a time (`IndexCompaction`). A row is in one level or both, never
        // in neither, so lookups read both.
        """
        CREATE TABLE IF NOT EXISTS identity_index_recent(
            identity_key INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            PRIMARY KEY(identity_key, idx)) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS leaf_index_recent(
            leaf_key INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            PRIMARY KEY(leaf_key, idx)) WITHOUT ROWID
        """,
        // Every perfect subtree of level ≥ 1, written once when the leaf completing it is sequenced.
        """
        CREATE TABLE IF NOT EXISTS nodes(
            id INTEGER PRIMARY KEY,
            hash BLOB NOT NULL) WITHOUT ROWID
        """,
        // A key directory's sealed changes (Spec/directory.md, "Sealed changes"), one per change
        // entry, written in the entry's transaction; erasure deletes rows, never entries.
        """
        CREATE TABLE IF NOT EXISTS sealed_changes(
            idx INTEGER PRIMARY KEY,
            data BLOB NOT NULL)
        """,
        // A key directory's identities that have a change: each one's label, stored with its
        // first change, and ECVRF proof, empty until a first lookup made it (then stored once);
        // erasure deletes the row.
        """
        CREATE TABLE IF NOT EXISTS vrf_labels(
            identity TEXT PRIMARY KEY,
            label BLOB NOT NULL,
            proof BLOB NOT NULL) WITHOUT ROWID
        """,
        // Every checkpoint ever signed. The primary key makes two checkpoints of one size impossible.
        """
        CREATE TABLE IF NOT EXISTS checkpoints(
            size INTEGER PRIMARY KEY,
            root BLOB NOT NULL,
            note TEXT NOT NULL,
            signed_at_ms INTEGER NOT NULL)
        """,
    ]

    /// Logs of schema 1 kept the lookup indexes on the entries table, written with every batch.
    /// Moves them into the index tables, in one transaction. Logs of schema 2 only need the recent
    /// level's tables, which `statements` created (empty); their version is recorded.
    /// Refuses a database a newer Keyglass wrote: its layout may keep rows where this binary does
    /// not look (a schema-2 binary reading a schema-3 file misses the recent level's rows, and would
    /// sequence a publish as an identity's first entry while it has one). Binaries older than this
    /// check do not have it: before going back to one, stop the server after a quiet spell and run
    /// it no more (decision 27).
    static func refuseNewer(_ db: SQLiteConnection) throws {
        let s = try db.statement("SELECT value FROM meta WHERE key = 'schema'")
        let stored = try s.step() ? Int(s.text(0)) : nil
        db.releaseStatements()
        if let stored, let known = Int(version), stored > known {
            throw StoreError.corrupt("this database was written by a newer Keyglass (schema \(stored)); this binary knows schema \(known) at most")
        }
    }

    static func migrate(_ db: SQLiteConnection) throws {
        try db.execute("UPDATE meta SET value = '\(version)' WHERE key = 'schema' AND value = '2'")
        let old = try db.statement("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'entries_by_identity'")
        try old.step()
        let hasOldIndexes = old.int64(0) > 0
        db.releaseStatements()
        guard hasOldIndexes else { return }
        try db.transaction {
            try db.execute("INSERT OR IGNORE INTO identity_index(identity_key, idx) SELECT identity_key, idx FROM entries ORDER BY identity_key, idx")
            try db.execute("INSERT OR IGNORE INTO leaf_index(leaf_key, idx) SELECT leaf_key, idx FROM entries ORDER BY leaf_key, idx")
            try db.execute("DROP INDEX entries_by_identity")
            try db.execute("DROP INDEX IF EXISTS entries_by_leaf_hash")
            try db.execute("INSERT OR REPLACE INTO meta(key, value) SELECT 'indexed_size', count(*) FROM entries")
            try db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema', '\(version)')")
        }
    }
}
