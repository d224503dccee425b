import KeyglassCore

/// A directory's map in its state database (`MapTree.Bucketed` over `SQLiteMapBuckets`), as one
/// object its owners share: a server's replay (while it resumes) and its follower (every head
/// after), or an auditor's replay. The levels above the buckets are in memory here, and follow the
/// database: `DirectoryStateStore.transaction` reloads them from the bucket summaries when a
/// transaction rolls back.
///
/// Not thread-safe: used by one thread at a time, as the state database's write connection is
/// (see `DirectoryFollower`).
public final class StoredMap: UpdatableMap {
    private var map: MapTree.Bucketed<SQLiteMapBuckets>
    /// The levels in memory could not be read again after a rollback, so they may hold changes the
    /// database does not: every use throws until a reload succeeds (a head over them would sign a
    /// root no replay of the entries gives).
    private var stale = false

    init(store: SQLiteMapBuckets) throws {
        map = try MapTree.Bucketed(store: store)
    }

    /// The levels above the buckets as of now: what lookups of the head just committed use.
    public var top: MapTree.TopLevels { map.top }

    public func root() throws -> Hash {
        try usable()
        return map.root()
    }

    public func set(_ batch: [(label: Hash, value: Hash)]) throws {
        try usable()
        try map.set(batch)
    }

    public func proof(for label: Hash) throws -> MapTree.Proof {
        try usable()
        return try map.proof(for: label)
    }

    /// Reads the levels above the buckets again from the database (after a rollback). If that
    /// fails the map stays unusable until a later reload succeeds.
    func reload() throws {
        do {
            map = try MapTree.Bucketed(store: map.store)
            stale = false
        } catch {
            stale = true
            throw error
        }
    }

    private func usable() throws {
        if stale { throw StoreError.corrupt("the map's levels in memory could not be reloaded after a rollback") }
    }
}
