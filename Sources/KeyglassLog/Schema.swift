import KeyglassCore

/// The database layout. Every statement is idempotent so opening an existing log is the same code.
enum Schema {
    static let version = "1"

    /// Node ids pack (level, index) into one integer key: level in the bits above 48, so the nodes of
    /// one level are contiguous and a tile is one range scan. 2^48 leaves is far beyond any log.
    static func nodeKey(level: UInt8, index: UInt64) -> Int64 { Int64(level) << 48 | Int64(index) }
    static let maxIndex: UInt64 = (1 << 48) - 1

    /// The first 8 bytes of a hash as a signed integer: an index key. Collisions only cost a
    /// second comparison, since every query also compares the full identity or leaf hash.
    static func lookupKey(_ h: Hash) -> Int64 {
        h.withUnsafeBytes { Int64(bitPattern: $0.loadUnaligned(as: UInt64.self)) }
    }

    static func identityKey(_ identity: String) -> Int64 { lookupKey(Hash.sha256(Array(identity.utf8))) }

    static let statements = [
        "PRAGMA journal_mode=WAL",
        """
        CREATE TABLE IF NOT EXISTS meta(
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL)
        """,
        // One row per log entry. leaf_hash is the level-0 node of the tree. The lookups by identity
        // and by leaf hash go through 64-bit keys (see `lookupKey`): their indexes are a third of
        // the size of indexes on the text and blob, and every publish writes into both.
        """
        CREATE TABLE IF NOT EXISTS entries(
            idx INTEGER PRIMARY KEY,
            identity TEXT NOT NULL,
            identity_key INTEGER NOT NULL,
            leaf_hash BLOB NOT NULL,
            leaf_key INTEGER NOT NULL,
            data BLOB NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS entries_by_identity ON entries(identity_key, idx)",
        "CREATE INDEX IF NOT EXISTS entries_by_leaf_hash ON entries(leaf_key)",
        // Every perfect subtree of level ≥ 1, written once when the leaf completing it is sequenced.
        """
        CREATE TABLE IF NOT EXISTS nodes(
            id INTEGER PRIMARY KEY,
            hash BLOB NOT NULL) WITHOUT ROWID
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
}
