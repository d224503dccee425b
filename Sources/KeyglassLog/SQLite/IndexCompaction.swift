/// One compaction of the lookup indexes: moves every row of the recent level
/// (`identity_index_recent`, `leaf_index_recent`) into the main level (`identity_index`,
/// `leaf_index`), in key order, as short transactions ("slices") between the appends.
///
/// Why two levels: merges from memory (`IndexMerge`) must be sorted to be cheap, since a merge
/// rewrites about every index page its keys land on. Merged straight into the main level, whose
/// size grows with the log (~n/200 pages per index at n entries), a merge had to grow with the log
/// too, and its rows waited in memory: at 10M entries merges of 2^19 rows, and a server that
/// peaked at 165 MB while publishing. With a recent level, memory merges stay small (they rewrite
/// pages of a small table), and the main level is rewritten once per compaction, whose rows are
/// read back from SQLite in key order: memory stays flat however large the log grows.
///
/// Crash safety: each slice inserts a key range into the main level and deletes the same range
/// from the recent level in one transaction, so at every commit each row is in at least one level.
/// After a crash the cursor is lost; the rows it had passed are already gone from the recent
/// level, and the next compaction starts over with what remains. Rows merged from memory behind
/// the cursor while a compaction runs wait for the next one.
struct IndexCompaction: Sendable {
    /// Where one table's pass has got to: the last (key, index) moved.
    private struct Cursor: Sendable {
        var key = Int64.min
        var index = Int64.min
        var done = false
    }

    private struct Table: Sendable {
        /// The last row of the next step: the `rowsPerStep`-th after the cursor.
        let stepEnd: String
        let insertRange: String
        let insertRest: String
        let deleteRange: String
        let deleteRest: String

        init(_ name: String, key: String) {
            let after = "(\(key), idx) > (?1, ?2)"
            stepEnd = "SELECT \(key), idx FROM \(name)_recent WHERE \(after) ORDER BY \(key), idx LIMIT 1 OFFSET \(IndexCompaction.rowsPerStep - 1)"
            // Copied and deleted by SQLite itself, in key order: no row goes through Swift.
            insertRange = "INSERT OR IGNORE INTO \(name)(\(key), idx) SELECT \(key), idx FROM \(name)_recent WHERE \(after) AND (\(key), idx) <= (?3, ?4) ORDER BY \(key), idx"
            insertRest = "INSERT OR IGNORE INTO \(name)(\(key), idx) SELECT \(key), idx FROM \(name)_recent WHERE \(after) ORDER BY \(key), idx"
            deleteRange = "DELETE FROM \(name)_recent WHERE \(after) AND (\(key), idx) <= (?3, ?4)"
            deleteRest = "DELETE FROM \(name)_recent WHERE \(after)"
        }
    }

    private static let identityTable = Table("identity_index", key: "identity_key")
    private static let leafTable = Table("leaf_index", key: "leaf_key")
    /// Rows read, moved and deleted together; time is checked between two such steps.
    static let rowsPerStep = 256

    private var identity = Cursor()
    private var leaf = Cursor()
    /// Rows moved so far, by every committed slice, of each index. The leaf index's pass comes
    /// last: until it is done, the recent level still holds its rows.
    private(set) var identityRowsMoved = 0
    private(set) var leafRowsMoved = 0

    var isComplete: Bool { identity.done && leaf.done }

    /// Writes the next slice in one transaction: steps of `rowsPerStep` rows, the identity index
    /// first, until `budget` has passed. Returns true once both tables' passes are done. On an error
    /// nothing of this slice is kept and the next call writes it again.
    mutating func writeSlice(_ db: SQLiteConnection, budget: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + budget
        var identity = identity
        var leaf = leaf
        var identityMoved = 0
        var leafMoved = 0
        try db.transaction {
            var steps = 0
            func pass(_ table: Table, _ cursor: inout Cursor, _ moved: inout Int) throws {
                while !cursor.done {
                    if steps > 0, ContinuousClock.now >= deadline { return }
                    moved += try Self.step(db, table, &cursor)
                    steps += 1
                }
            }
            try pass(Self.identityTable, &identity, &identityMoved)
            try pass(Self.leafTable, &leaf, &leafMoved)
        }
        // Committed: only now do the cursors move on.
        self.identity = identity
        self.leaf = leaf
        identityRowsMoved += identityMoved
        leafRowsMoved += leafMoved
        return isComplete
    }

    /// Moves the next `rowsPerStep` rows after `cursor` (or all that are left): find the last of
    /// them, insert that range into the main level, delete the same range from the recent level
    /// (the writer is alone in its transaction, so the range holds the same rows throughout).
    private static func step(_ db: SQLiteConnection, _ table: Table, _ cursor: inout Cursor) throws -> Int {
        let end = try db.statement(table.stepEnd)
        end.bind(1, cursor.key)
        end.bind(2, cursor.index)
        let last: (key: Int64, index: Int64)? = try end.step() ? (end.int64(0), end.int64(1)) : nil
        let insert = try db.statement(last == nil ? table.insertRest : table.insertRange)
        let delete = try db.statement(last == nil ? table.deleteRest : table.deleteRange)
        for s in [insert, delete] {
            s.bind(1, cursor.key)
            s.bind(2, cursor.index)
            if let last {
                s.bind(3, last.key)
                s.bind(4, last.index)
            }
        }
        try insert.step()
        try delete.step()
        let moved = db.changes
        if let last {
            cursor.key = last.key
            cursor.index = last.index
        } else {
            cursor.done = true
        }
        return moved
    }
}
