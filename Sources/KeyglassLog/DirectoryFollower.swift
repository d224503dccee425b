import KeyglassCore

/// The key directory's map follower (issue 14 point 3, "a follower behind the sequencer"): it
/// commits each map head to the state database — the map's labels, the labels' states as of what
/// the head covers, the replay's position there and the size lookups check — in one transaction
/// around the head's append, while the writer goes on sequencing. Readers
/// (`DirectoryStateReader`) see either the head before or this one, never a mix.
///
/// `@unchecked Sendable` is safe because one thread at a time uses it: the follower thread in a
/// server (`DirectoryService`), the log's owner otherwise (`DirectoryLog.appendMapHead`); and once
/// a log is open, `DirectoryLog` no longer touches the state database's write connection except
/// in `resume` after this follower's transaction failed, which a server runs on its writer's
/// thread while the follower waits for it (idle).
public final class DirectoryFollower: @unchecked Sendable {
    private let state: DirectoryStateStore

    init(state: DirectoryStateStore) {
        self.state = state
    }

    /// Commits the head of `work`: applies its changes to the map, takes the root, writes the
    /// states and the position, has `append` store the head entry with that root (the writer's
    /// thread: only it appends), and commits with the head's size for lookups. Rolls back if
    /// anything throws; the caller then has `DirectoryLog.headFailed` run (a server: on its writer's
    /// thread, between batches).
    public func commit(_ work: DirectoryLog.HeadWork, append: (Hash) throws -> StoredCheckpoint) throws
        -> (checkpoint: StoredCheckpoint, topLevels: MapTree.TopLevels)
    {
        try state.transaction {
            let map = state.map
            try map.set(work.changes)
            let root = try map.root()
            for (label, s) in work.states { try state.labelStates.setState(s, of: label) }
            try state.save(work.position, range: work.range)
            let checkpoint = try append(root)
            try state.setLookupSize(checkpoint.size)
            return (checkpoint, map.top)
        }
    }
}
