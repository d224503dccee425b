import Foundation

/// One merge of the oldest pending lookup-index rows (`PendingIndex`) into the recent level of
/// SQLite's lookup indexes (`identity_index_recent`, `leaf_index_recent`; `IndexCompaction` moves
/// them on into the main level), written as several short transactions ("slices") rather than one
/// long one.
///
/// Why slices: a merge rewrites about every index page its keys land on, and publishes wait while
/// the writer merges: written as one transaction, a merge of 2^18 rows into a 10M-entry index held
/// every publish for about a second. Sorted
/// by key, the rows fall into consecutive key ranges that touch mostly different pages, so writing
/// them range by range costs about the same in all, and between two slices the writer commits
/// the publishes that queued meanwhile: a publish waits for one slice at most.
///
/// Crash safety: `indexed_size` moves only in the last slice's transaction. After a crash midway,
/// the merge's rows are rebuilt as pending from the entries table when the log opens and merged
/// again; the slices that did commit make those inserts no-ops (`INSERT OR IGNORE`). Until the
/// last slice commits the rows stay in `PendingIndex` too, and lookups, which read both, drop the
/// duplicates.
struct IndexMerge: Sendable {
    /// How many pending rows (the oldest) this merge covers.
    let rowCount: Int
    /// `indexed_size` once the merge is complete: every entry below it is in the SQLite index.
    let indexedSize: UInt64
    private let byIdentity: [(key: Int64, index: UInt64)]
    private let byLeaf: [(key: Int64, index: UInt64)]
    /// Rows of each list already committed.
    private var identityDone = 0
    private var leafDone = 0

    init?(rows: [PendingIndex.Row]) {
        guard let last = rows.last else { return nil }
        rowCount = rows.count
        indexedSize = last.index + 1
        byIdentity = rows.map { ($0.identityKey, $0.index) }.sorted { ($0.key, $0.index) < ($1.key, $1.index) }
        byLeaf = rows.map { ($0.leafKey, $0.index) }.sorted { ($0.key, $0.index) < ($1.key, $1.index) }
    }

    var isComplete: Bool { identityDone == byIdentity.count && leafDone == byLeaf.count }

    /// Writes the next slice in one transaction: rows in key order, the identity index first, until
    /// `budget` has passed (checked every 256 rows). The slice that writes the last rows also records
    /// `indexed_size`. Returns true once the whole merge has committed. On an error nothing of this
    /// slice is kept and the next call writes it again.
    mutating func writeSlice(_ db: SQLiteConnection, budget: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + budget
        var identity = identityDone
        var leaf = leafDone
        try db.transaction {
            var written = 0
            // Inserts rows[next...] in order until done or out of time; true when done. Time is
            // checked before a row, so a slice that stops early always leaves rows to the next.
            func insert(_ rows: [(key: Int64, index: UInt64)], from next: inout Int, _ sql: String) throws -> Bool {
                while next < rows.count {
                    if written > 0, written % 256 == 0, ContinuousClock.now >= deadline { return false }
                    let s = try db.statement(sql)
                    s.bind(1, rows[next].key)
                    s.bind(2, rows[next].index)
                    try s.step()
                    next += 1
                    written += 1
                }
                return true
            }
            guard try insert(byIdentity, from: &identity, "INSERT OR IGNORE INTO identity_index_recent(identity_key, idx) VALUES(?, ?)"),
                  try insert(byLeaf, from: &leaf, "INSERT OR IGNORE INTO leaf_index_recent(leaf_key, idx) VALUES(?, ?)")
            else { return }
            // Never backwards: another writer on the file may have merged further already.
            let m = try db.statement("""
                INSERT OR REPLACE INTO meta(key, value) VALUES('indexed_size',
                    CAST(max(?, coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_size'), 0)) AS TEXT))
                """)
            m.bind(1, Int64(indexedSize))
            try m.step()
        }
        // Committed: only now does the merge move on.
        identityDone = identity
        leafDone = leaf
        return isComplete
    }
}
