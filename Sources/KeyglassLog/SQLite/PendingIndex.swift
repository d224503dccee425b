import DequeModule
import KeyglassCore
import Synchronization

/// The lookup index (by identity, by leaf hash) of the newest entries, in memory, until the
/// sequencer merges it into SQLite.
///
/// Every entry needs a row in two lookup indexes whose keys are random. Written with each batch,
/// those rows dirtied about two random index pages per entry, and the WAL wrote every one at each
/// commit: measured, ~35 µs of each publish's ~56 µs in the writer, and the raw SQLite rate with
/// them was ~23k rows/s. Instead each batch commits only its entries, nodes and checkpoint
/// (appends), the new index rows wait here, and `IndexMergeFollower` merges them into the recent
/// level of the SQLite index tables in key order, `IndexMergeFollower.Options.chunk` rows or more
/// at a time (and all of them after a quiet second), each merge written in short slices between
/// batches (`IndexMerge`); compactions move them on into the main level (`IndexCompaction`). A
/// sorted merge touches each index page once, however many of its rows land on it. Rows leave
/// this tail only after their merge's last slice commits.
///
/// Nothing is lost in a crash: the entries are committed, and on open the rows of every entry from
/// `indexed_size` (stored with each merge) onward are rebuilt from the entries table.
///
/// Lookups consult both the SQLite index and this tail. A reader takes its view of the tail before
/// it queries SQLite; a merge commits before it empties the tail; so an entry is always in at least
/// one of the two (results are de-duplicated by index).
///
/// Layout, for memory and for steady latency: the pending rows are exactly the entries from
/// `indexedSize` on, so row i is entry `indexedSize + i` and a row is found by index without a
/// search. A row holds only the two 64-bit lookup keys (those of SQLite's index tables) and, for
/// each, the previous pending entry with the same key; each key maps to its newest pending entry.
/// An earlier version kept a `[String: [UInt64]]` and a `[Hash: [UInt64]]`; measured at 10M
/// entries under publishes, the server's RSS grew ~400 bytes per pending row, and growing those
/// dictionaries past 2^17, 2^18, 2^19 rows rehashed every string under the lock, stalling the
/// writer and every lookup for 75–280 ms. Small rows also let merges be larger for the same
/// memory, and a larger merge rewrites the same index pages for more rows (see `Sequencer.Options`).
///
/// Keys are 64-bit prefixes of SHA-256, so a pair of identities (or leaves) sharing one can be
/// made on purpose: what this index gives are candidates, and every caller checks the entry's
/// full identity or leaf hash in SQLite, as the SQL lookups do.
public final class PendingIndex: Sendable {
    private struct Slot {
        let identityKey: Int64
        let leafKey: Int64
        /// The previous pending entry with the same identity key, or with the same leaf key
        /// (`none` if there is none; one below `indexedSize` is merged and ends the chain too).
        let previousOfIdentity: UInt64
        let previousOfLeaf: UInt64
    }

    private static let none = UInt64.max

    private struct State {
        /// Entries below this index are in the SQLite index tables; `slots[i]` is entry `indexedSize + i`.
        var indexedSize: UInt64 = 0
        var slots: Deque<Slot> = []
        var newestOfIdentity: [Int64: UInt64] = [:]
        var newestOfLeaf: [Int64: UInt64] = [:]
    }

    /// One entry's rows of both index tables: its index and the two lookup keys, as the entries
    /// table stores them (computed once, when the entry is written).
    struct Row: Sendable {
        let index: UInt64
        let identityKey: Int64
        let leafKey: Int64
    }

    private let state = Mutex(State())

    public init() {}

    /// Entries not yet in the SQLite index tables.
    public var count: Int { state.withLock { $0.slots.count } }
    public var indexedSize: UInt64 { state.withLock { $0.indexedSize } }
    /// The index of the entry whose rows come next.
    var nextIndex: UInt64 { state.withLock { $0.indexedSize + UInt64($0.slots.count) } }

    /// Replaces the contents: `rows` must be the entries from `indexedSize` on, in order.
    func reset(indexedSize: UInt64, rows: [Row]) {
        state.withLock { s in
            s = State(indexedSize: indexedSize)
            Self.add(rows, to: &s)
        }
    }

    /// Adds the rows of a committed batch: the entries that follow the pending ones, in order.
    func add(_ rows: [Row]) {
        guard !rows.isEmpty else { return }
        state.withLock { Self.add(rows, to: &$0) }
    }

    private static func add(_ rows: [Row], to s: inout State) {
        for r in rows {
            // The sequencer gives out indices one after another; a gap would misplace every row.
            precondition(r.index == s.indexedSize + UInt64(s.slots.count), "pending index rows out of order")
            s.slots.append(Slot(identityKey: r.identityKey, leafKey: r.leafKey,
                                previousOfIdentity: s.newestOfIdentity.updateValue(r.index, forKey: r.identityKey) ?? none,
                                previousOfLeaf: s.newestOfLeaf.updateValue(r.index, forKey: r.leafKey) ?? none))
        }
    }

    /// The pending entries whose identity has lookup key `identityKey`, oldest first: candidates,
    /// to be checked against each entry's identity.
    func identityCandidates(identityKey key: Int64) -> [UInt64] {
        state.withLock { s in Self.chain(from: s.newestOfIdentity[key], in: s, next: \.previousOfIdentity) }
    }

    /// The pending entries whose leaf hash has lookup key `leafKey`, oldest first: candidates, to
    /// be checked against each entry's leaf hash.
    func leafCandidates(leafKey key: Int64) -> [UInt64] {
        state.withLock { s in Self.chain(from: s.newestOfLeaf[key], in: s, next: \.previousOfLeaf) }
    }

    /// Walks a key's chain from its newest pending entry.
    private static func chain(from newest: UInt64?, in s: State, next: KeyPath<Slot, UInt64>) -> [UInt64] {
        var found: [UInt64] = []
        var index = newest ?? none
        while index != none, index >= s.indexedSize {
            found.append(index)
            index = s.slots[Int(index - s.indexedSize)][keyPath: next]
        }
        return found.reversed()
    }

    /// The oldest pending rows (at most `limit`), for a merge.
    func rowsToMerge(limit: Int) -> [Row] {
        state.withLock { s in
            s.slots.prefix(limit).enumerated().map { i, slot in
                Row(index: s.indexedSize + UInt64(i), identityKey: slot.identityKey, leafKey: slot.leafKey)
            }
        }
    }

    /// After a merge of every row below entry `end` committed: they are in SQLite now. Costs what
    /// was merged, not what is still pending. By index, not by count: if the rows were rebuilt
    /// meanwhile (`reset`) from a later `indexed_size`, only what is still pending below `end` goes.
    func dropMerged(below end: UInt64) {
        state.withLock { s in
            let n = Int(clamping: min(UInt64(s.slots.count), end > s.indexedSize ? end - s.indexedSize : 0))
            for (i, slot) in s.slots.prefix(n).enumerated() {
                let index = s.indexedSize + UInt64(i)
                // A key whose newest entry is merged has no pending entries left; a newer one's
                // chain simply ends where the merged entries begin.
                if s.newestOfIdentity[slot.identityKey] == index { s.newestOfIdentity[slot.identityKey] = nil }
                if s.newestOfLeaf[slot.leafKey] == index { s.newestOfLeaf[slot.leafKey] = nil }
            }
            s.slots.removeFirst(n)
            s.indexedSize += UInt64(n)
        }
    }
}
