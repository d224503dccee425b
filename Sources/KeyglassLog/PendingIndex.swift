import KeyglassCore
import Synchronization

/// The lookup index (by identity, by leaf hash) of the newest entries, in memory, until the
/// sequencer merges it into SQLite.
///
/// Every entry needs a row in two lookup indexes whose keys are random. Written with each batch,
/// those rows dirtied about two random index pages per entry, and the WAL wrote every one at each
/// commit: measured, ~35 µs of each publish's ~56 µs in the writer, and the raw SQLite rate with
/// them was ~23k rows/s. Instead each batch commits only its entries, nodes and checkpoint
/// (appends), the new index rows wait here, and the writer merges them into the SQLite index
/// tables in sorted transactions of `Sequencer.Options.indexMergeChunk` rows once
/// `indexMergeEntries` wait (and all of them after a quiet second). A sorted merge touches each
/// index page once, however many of its rows land on it.
///
/// Nothing is lost in a crash: the entries are committed, and on open the rows of every entry from
/// `indexed_size` (stored with each merge) onward are rebuilt from the entries table.
///
/// Lookups consult both the SQLite index and this tail. A reader takes its view of the tail before
/// it queries SQLite; a merge commits before it empties the tail; so an entry is always in at least
/// one of the two (results are de-duplicated by index).
public final class PendingIndex: Sendable {
    private struct State {
        /// Entries below this index are in the SQLite index tables.
        var indexedSize: UInt64 = 0
        var byIdentity: [String: [UInt64]] = [:]
        var byLeaf: [Hash: [UInt64]] = [:]
        var rows: [Row] = []
    }

    struct Row: Sendable {
        let index: UInt64
        let identity: String
        let leaf: Hash
    }

    private let state = Mutex(State())

    public init() {}

    /// Entries not yet in the SQLite index tables.
    public var count: Int { state.withLock { $0.rows.count } }
    public var indexedSize: UInt64 { state.withLock { $0.indexedSize } }

    func reset(indexedSize: UInt64, rows: [Row]) {
        state.withLock { s in
            s = State(indexedSize: indexedSize)
            Self.add(rows, to: &s)
        }
    }

    /// Adds the rows of a committed batch (in index order).
    func add(_ rows: [Row]) {
        guard !rows.isEmpty else { return }
        state.withLock { Self.add(rows, to: &$0) }
    }

    private static func add(_ rows: [Row], to s: inout State) {
        for r in rows {
            s.byIdentity[r.identity, default: []].append(r.index)
            s.byLeaf[r.leaf, default: []].append(r.index)
        }
        s.rows += rows
    }

    func identityIndices(_ identity: String) -> [UInt64] { state.withLock { $0.byIdentity[identity] ?? [] } }
    func leafIndices(_ leaf: Hash) -> [UInt64] { state.withLock { $0.byLeaf[leaf] ?? [] } }

    /// The oldest pending rows (at most `limit`), for a merge.
    func rowsToMerge(limit: Int) -> [Row] { state.withLock { Array($0.rows.prefix(limit)) } }

    /// After a merge of the first `merged` rows committed: they are in SQLite now. Costs what was
    /// merged, not what is still pending (the rows are the oldest of their identity and leaf).
    func dropMerged(_ merged: Int, indexedSize: UInt64) {
        state.withLock { s in
            let n = min(merged, s.rows.count)
            for r in s.rows.prefix(n) {
                Self.removeOldest(r.index, of: r.identity, in: &s.byIdentity)
                Self.removeOldest(r.index, of: r.leaf, in: &s.byLeaf)
            }
            s.rows.removeFirst(n)
            s.indexedSize = indexedSize
        }
    }

    private static func removeOldest<K: Hashable>(_ index: UInt64, of key: K, in map: inout [K: [UInt64]]) {
        guard var list = map[key] else { return }
        if list.first == index { list.removeFirst() } else { list.removeAll { $0 == index } }
        map[key] = list.isEmpty ? nil : list
    }
}
