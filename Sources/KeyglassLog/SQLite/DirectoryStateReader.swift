import KeyglassCore

/// Lookups' reads of a directory server's state database (`DirectoryStateStore`), on reader
/// connections and outside the writer's lock: a label's map proof and its state as of the newest
/// map head, both in one read transaction, so the two are of one head even while the writer
/// commits the next (WAL readers see the database as of their transaction's start).
///
/// The top levels of the map, which every proof reads and which the table does not hold, come
/// from the writer's store as of the head (`DirectoryLog.LookupSnapshot.topLevels`); the transaction first checks that the database
/// is still at that head's size, and a caller whose snapshot is older gets nil and takes the new one.
public final class DirectoryStateReader: Sendable {
    private let pool: ReaderPool

    /// Readers of the state database at `path` (which the writer has created).
    public init(path: String) throws {
        pool = try ReaderPool(path: path, warm: 2)
    }

    /// The proof about `label` in the map and the label's state, as of the head whose tree has
    /// `size` entries; nil if the database holds another head by now.
    public func read(label: Hash, size: UInt64, topLevels: MapTopLevels) throws -> (proof: MapTree.Proof, state: DeviceSet?)? {
        try pool.read { db in
            try db.transaction(readOnly: true) {
                let s = try db.statement("SELECT value FROM meta WHERE key = 'size'")
                let stored: String? = try s.step() ? s.text(0) : nil
                db.releaseStatements()
                guard stored == String(size) else { return nil }
                let proof = try MapTree.Incremental(store: HeadNodes(db: db, topLevels: topLevels)).proof(for: label)
                return (proof, try DirectoryStateStore.LabelStates(db: db).state(of: label))
            }
        }
    }

    /// Closes the idle connections (when the log closes).
    public func close() { pool.close() }

    /// The map's nodes as one read transaction sees them, the top levels from the head's cache.
    private final class HeadNodes: MapNodeStore {
        let db: SQLiteConnection
        let topLevels: MapTopLevels
        /// The one bucket a label's proof reads below the top levels.
        private var bucket: (id: Int, row: [UInt8])?

        init(db: SQLiteConnection, topLevels: MapTopLevels) {
            self.db = db
            self.topLevels = topLevels
        }

        func node(at position: MapPosition) throws -> MapNode? {
            // The table has no interior rows there: the head's top levels are the whole of them.
            if position.depth <= SQLiteMapNodeStore.memoryDepth { return topLevels[position] }
            let id = SQLiteMapNodeStore.bucket(of: position)
            if let bucket, bucket.id == id { return try SQLiteMapNodeStore.find(position, inRow: bucket.row) }
            let row = try SQLiteMapNodeStore.readBucketRow(id, from: db)
            bucket = (id, row)
            return try SQLiteMapNodeStore.find(position, inRow: row)
        }

        func set(_ node: MapNode?, at position: MapPosition) throws {
            throw StoreError.corrupt("a lookup's view of the map is read-only")
        }
    }
}
