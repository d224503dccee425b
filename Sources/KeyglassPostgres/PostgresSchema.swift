import PostgresNIO

/// The PostgreSQL layout of one log (one database per log). Created idempotently under an advisory
/// lock, so servers started together on a new database do not race each other's CREATEs.
enum PostgresSchema {
    static let version = "1"

    /// pg_advisory_xact_lock key for schema changes: "keyglass" in ASCII.
    static let schemaLock: Int64 = 0x6B65_7967_6C61_7373

    static let statements: [PostgresQuery] = [
        "CREATE TABLE IF NOT EXISTS keyglass_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        // One row per entry. The index by identity answers lookups and the sequencer's "newest entry
        // of each identity"; the one by leaf hash answers inclusion proofs by hash.
        """
        CREATE TABLE IF NOT EXISTS entries(
            idx BIGINT PRIMARY KEY CHECK (idx >= 0),
            identity TEXT NOT NULL,
            leaf_hash BYTEA NOT NULL CHECK (length(leaf_hash) = 32),
            data BYTEA NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS entries_by_identity ON entries(identity, idx)",
        "CREATE INDEX IF NOT EXISTS entries_by_leaf_hash ON entries(leaf_hash, idx)",
        // Perfect subtrees of level ≥ 1, keyed as SQLite's driver keys them (level above bit 48).
        "CREATE TABLE IF NOT EXISTS nodes(id BIGINT PRIMARY KEY, hash BYTEA NOT NULL CHECK (length(hash) = 32))",
        // Every checkpoint signed. The primary key makes two checkpoints of one size impossible.
        """
        CREATE TABLE IF NOT EXISTS checkpoints(
            size BIGINT PRIMARY KEY CHECK (size >= 0),
            root BYTEA NOT NULL CHECK (length(root) = 32),
            note TEXT NOT NULL,
            signed_at_ms BIGINT NOT NULL)
        """,
        // Who may sequence (`SequencerLease`): one row. `term` grows with every change of holder; an
        // append commits only while its server holds the lease at the term it was granted, checked
        // in the append's own transaction against the database's clock.
        """
        CREATE TABLE IF NOT EXISTS sequencer_lease(
            id INT PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL,
            term BIGINT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL)
        """,
        "INSERT INTO sequencer_lease(id, holder, term, expires_at) VALUES (1, '', 0, '-infinity') ON CONFLICT (id) DO NOTHING",
    ]
}
