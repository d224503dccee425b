import KeyglassCore

/// Lookups' reads of a directory server's state database (`DirectoryStateStore`), on reader
/// connections and outside the writer's lock: a label's map proof and its state as of the newest
/// map head, both in one read transaction, so the two are of one head even while the writer
/// commits the next (WAL readers see the database as of their transaction's start).
///
/// The map's levels above its buckets, which every proof reads and which the database does not
/// hold, come from the follower as of the head (`DirectoryLog.LookupSnapshot.topLevels`); the
/// transaction first checks that the database is still at that head's size, and a caller whose
/// snapshot is older gets nil and takes the new one.
public final class DirectoryStateReader: Sendable {
    private let pool: ReaderPool

    /// Readers of the state database at `path` (which the writer has created).
    public init(path: String) throws {
        // A lookup reads a few pages (the size, one bucket's labels, one state); a small cache per
        // connection keeps the upper B-tree pages, and up to 16 idle connections stay cheap.
        pool = try ReaderPool(path: path, warm: 2, cacheKiB: 256)
    }

    /// The proof about `label` in the map and the label's state, as of the head whose tree has
    /// `size` entries; nil if the database holds another head by now.
    public func read(label: Hash, size: UInt64, topLevels: MapTree.TopLevels) throws -> (proof: MapTree.Proof, state: DeviceSet?)? {
        try pool.read { db in
            try db.transaction(readOnly: true) {
                let s = try db.statement("SELECT value FROM meta WHERE key = 'size'")
                let stored: String? = try s.step() ? s.text(0) : nil
                db.releaseStatements()
                guard stored == String(size) else { return nil }
                let proof = try MapTree.Bucketed(store: SQLiteMapBuckets(reading: db), top: topLevels).proof(for: label)
                return (proof, try DirectoryStateStore.LabelStates(db: db).state(of: label))
            }
        }
    }

    /// Closes the idle connections (when the log closes).
    public func close() { pool.close() }
}
