import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Merges the pending lookup-index rows (`PendingIndex`) into SQLite's index tables, behind the
/// sequencer, on a thread of its own, and compacts the recent level of those tables into the main
/// level (`IndexCompaction`).
///
/// It follows the log: woken by every append, it starts a merge once `Options.mergeAt` rows wait
/// and writes it in slices of at most `Options.slice` (`IndexMerge`). Slices and appends share the
/// writer connection's serial queue, first come first served, so a publish waits for one slice at
/// most. After `Options.idle` without an append it merges every pending row. When no merge is due
/// and the recent level holds `compactAt` rows, it compacts, in slices too. If appends outrun it
/// (a bulk load), the storage calls `catchUp` before each append and the merge (or compaction)
/// runs on the appending thread until the follower is back within two of them: pending rows stay
/// bounded in memory, and the appends wait instead.
///
/// Merges are prepared (rows copied and sorted) on this thread, never the sequencer's: at 10M
/// entries preparing 2^19 rows took ~200 ms, and when the sequencer's thread did it, every publish
/// waited for it (p99 204 ms in a window with a merge, measured).
///
/// Tests step it by hand: `mergeDue` writes one slice if a merge or compaction is due, `mergeAll`
/// merges every pending row, `compactAll` compacts, with no thread running and nothing to wait for.
public final class IndexMergeFollower: Service, Sendable {
    public struct Options: Sendable {
        /// Pending rows that start a merge.
        public var mergeAt: Int = 8_192
        /// Rows per merge: this, or 1/16 of the rows already indexed if that is more, never more
        /// than `maxChunk` (which bounds the memory pending rows take, whatever is configured).
        ///
        /// Why it grows: a sorted merge rewrites about every page of the recent level its keys
        /// land on, so merges much smaller than that level rewrite the same pages again and again.
        /// Why it stops growing: its rows wait in memory (about 100 bytes each with their share of
        /// the pending index's maps, twice over while a merge runs). Before the recent level
        /// existed merges went straight into the main level and grew to 2^19 rows at 10M entries:
        /// the server peaked at 165 MB while publishing.
        public var chunk: Int = 8_192
        public var maxChunk: Int = 1 << 16
        /// Rows in the recent level that start a compaction: this, or 1/8 of the rows already
        /// indexed if that is more, at most `maxCompactAt`. A compaction rewrites about every page
        /// of the main level (~n/200 per index at n entries), so it must move many rows at once to
        /// be cheap per row; a larger recent level makes each merge from memory rewrite more pages.
        public var compactAt: Int = 1 << 16
        public var maxCompactAt: Int = 1 << 21
        /// Quiet time after which every pending row is merged.
        public var idle: Duration = .seconds(1)
        /// Longest one slice's transaction runs before the appends get the writer again.
        public var slice: Duration = .milliseconds(20)
        /// Where merge, compaction and slice times are recorded.
        public var metrics: LogMetrics = .none
        public init() {}
    }

    private struct MergeState {
        /// The merge under way, between its slices.
        var merge: IndexMerge?
        /// The compaction under way, between its slices.
        var compaction: IndexCompaction?
        /// Rows in the recent level (rows merged twice after a crash count twice until compacted).
        var recentRows: Int
        var compactionStarted = ContinuousClock.now
        var longestCompactionSlice: Duration = .zero
        var started = ContinuousClock.now
        /// Copying and sorting the merge's rows, before its first slice.
        var preparation: Duration = .zero
        var longestSlice: Duration = .zero
    }

    private let storage: SQLiteStorage
    private let options: Options
    private let logger: Logger
    /// Held while a slice is prepared or written: by this thread, or by the sequencer's in `catchUp`.
    private let state: Mutex<MergeState>
    private let wake = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    /// `MergeState.recentRows`, readable without the lock: every append asks whether the recent
    /// level needs a catch-up, and must not wait while this thread prepares a merge under the lock.
    private let recentRowsHint = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)

    /// Slices that failed since the follower started (tests, and the log's error lines).
    public var failedSlices: Int { failures.load(ordering: .relaxed) }
    /// Lookup-index rows still in memory, waiting for a merge (metrics).
    public var pendingRows: Int { pending }
    /// Rows in the recent level, waiting for a compaction (metrics; approximate during one).
    public var recentRows: Int { recentRowsHint.load(ordering: .relaxed) }

    /// Attaches to `storage`: from now on its appends wake this follower and wait for it when it lags.
    public init(storage: SQLiteStorage, options: Options = Options(), logger: Logger = Logger(label: "keyglass.index-merge")) {
        self.storage = storage
        self.options = options
        self.logger = logger
        var recentRows = 0
        do {
            recentRows = try storage.recentIndexRows()
        } catch {
            // Counted as empty: compactions start later than they should, nothing is lost.
            logger.error("could not count the recent lookup-index rows", metadata: ["error": "\(error)"])
        }
        state = Mutex(MergeState(recentRows: recentRows))
        recentRowsHint.store(recentRows, ordering: .relaxed)
        storage.attach(self)
    }

    private var pending: Int { storage.pendingIndex.count }

    /// After each committed append (on the sequencer's thread).
    func appended() { wake.signal() }

    /// Rows per merge (see `Options.chunk`).
    private var chunk: Int {
        max(1, min(options.maxChunk, max(options.chunk, Int(clamping: storage.pendingIndex.indexedSize / 16))))
    }

    /// Pending rows from which a merge starts.
    private var due: Int { max(options.mergeAt, chunk) }

    /// Recent-level rows from which a compaction starts (see `Options.compactAt`).
    private var compactAt: Int {
        max(1, options.compactAt, min(options.maxCompactAt, Int(clamping: storage.pendingIndex.indexedSize / 8)))
    }

    private func compactionIsDue(_ s: MergeState) -> Bool { s.compaction != nil || s.recentRows >= compactAt }

    /// A merge or a compaction is under way or due.
    private var workIsDue: Bool { state.withLock { s in s.merge != nil || pending >= due || compactionIsDue(s) } }

    /// Writes one slice if a merge or a compaction is under way or due (merges first: their rows
    /// are the ones held in memory); true if it wrote one.
    @discardableResult
    public func mergeDue() -> Bool {
        state.withLock { s in
            if s.merge != nil || pending >= due { return writeSlice(&s) }
            if compactionIsDue(s) { return compactionSlice(&s) }
            return false
        }
    }

    /// Merges every pending row; false if a slice failed (the rows stay pending: lookups still
    /// find them, and the next merge retries).
    @discardableResult
    public func mergeAll() -> Bool {
        while pending > 0 {
            guard state.withLock({ writeSlice(&$0) }) else { return false }
        }
        return true
    }

    /// Moves every row of the recent level into the main level (one whole compaction, or the rest
    /// of the one under way); false if a slice failed.
    @discardableResult
    public func compactAll() -> Bool {
        state.withLock { s in
            if s.compaction == nil { s.compaction = IndexCompaction() }
            while s.compaction != nil {
                guard compactionSlice(&s) else { return false }
            }
            return true
        }
    }

    /// Before an append (on the sequencer's thread): while more than two merges' worth waits,
    /// merge here, so bulk loads cannot pile rows up in memory. Merges started here are also
    /// prepared here: the appends wait for the catch-up anyway.
    func catchUp() {
        while pending >= 2 * due, state.withLock({ writeSlice(&$0) }) {}
        while recentRowsHint.load(ordering: .relaxed) >= 2 * compactAt, state.withLock({ $0.recentRows >= 2 * compactAt && compactionSlice(&$0) }) {}
    }

    /// Writes the next slice of the merge under way, starting a merge of the oldest pending rows
    /// if none is; false if nothing was pending or the slice failed.
    private func writeSlice(_ s: inout MergeState) -> Bool {
        if s.merge == nil {
            s.started = .now
            guard let merge = IndexMerge(rows: storage.pendingIndex.rowsToMerge(limit: chunk)) else { return false }
            s.merge = merge
            s.preparation = .now - s.started
            s.longestSlice = .zero
        }
        guard var merge = s.merge else { return false }
        let start = ContinuousClock.now
        do {
            let complete = try storage.writer.runHere { db in try merge.writeSlice(db, budget: options.slice) }
            let took = ContinuousClock.now - start
            options.metrics.indexSlice(.merge, took: took)
            s.longestSlice = max(s.longestSlice, took)
            s.merge = merge
            guard complete else { return true }
            storage.pendingIndex.dropMerged(below: merge.indexedSize)
            s.recentRows += merge.rowCount
            recentRowsHint.store(s.recentRows, ordering: .relaxed)
            s.merge = nil
            options.metrics.indexWork(.merge, took: .now - s.started)
            // Publishes wait for a slice: a slow one is worth an operator's attention.
            logger.log(level: s.longestSlice > .milliseconds(250) ? .notice : .debug, "merged lookup index rows",
                       metadata: ["rows": "\(merge.rowCount)", "ms": "\(Self.milliseconds(.now - s.started))",
                                  "preparation_ms": "\(Self.milliseconds(s.preparation))",
                                  "longest_slice_ms": "\(Self.milliseconds(s.longestSlice))"])
            return true
        } catch {
            failures.add(1, ordering: .relaxed)
            options.metrics.indexSliceFailures.increment()
            logger.error("lookup index merge failed", metadata: ["error": "\(error)", "pending": "\(pending)"])
            return false
        }
    }

    /// Writes the next slice of the compaction under way, starting one if none is; false if the
    /// slice failed.
    private func compactionSlice(_ s: inout MergeState) -> Bool {
        var compaction = s.compaction ?? IndexCompaction()
        if s.compaction == nil {
            s.compactionStarted = .now
            s.longestCompactionSlice = .zero
        }
        let start = ContinuousClock.now
        let before = compaction.identityRowsMoved + compaction.leafRowsMoved
        do {
            let complete = try storage.writer.runHere { db in try compaction.writeSlice(db, budget: options.slice) }
            let took = ContinuousClock.now - start
            options.metrics.indexSlice(.compaction, took: took)
            s.longestCompactionSlice = max(s.longestCompactionSlice, took)
            // Half of each pass's rows: a catch-up on the appending thread eases off as the
            // identity pass goes, not only once the leaf pass (which comes last) is under way. The
            // count is recounted exactly when the compaction completes.
            s.recentRows = max(0, s.recentRows - (compaction.identityRowsMoved + compaction.leafRowsMoved - before) / 2)
            recentRowsHint.store(s.recentRows, ordering: .relaxed)
            guard complete else {
                s.compaction = compaction
                return true
            }
            s.compaction = nil
            options.metrics.indexWork(.compaction, took: .now - s.compactionStarted)
            // Rows merged behind the cursor meanwhile are still there: count what is left.
            s.recentRows = (try? storage.recentIndexRows()) ?? s.recentRows
            recentRowsHint.store(s.recentRows, ordering: .relaxed)
            logger.log(level: s.longestCompactionSlice > .milliseconds(250) ? .notice : .debug, "compacted lookup index rows",
                       metadata: ["rows": "\(compaction.identityRowsMoved)", "leaf_rows": "\(compaction.leafRowsMoved)", "ms": "\(Self.milliseconds(.now - s.compactionStarted))",
                                  "longest_slice_ms": "\(Self.milliseconds(s.longestCompactionSlice))", "left": "\(s.recentRows)"])
            return true
        } catch {
            failures.add(1, ordering: .relaxed)
            options.metrics.indexSliceFailures.increment()
            logger.error("lookup index compaction failed", metadata: ["error": "\(error)", "recent_rows": "\(s.recentRows)"])
            return false
        }
    }

    /// Follows the log on its own thread until graceful shutdown (or cancellation), then merges what
    /// is pending and returns.
    public func run() async throws {
        await DedicatedThread.run(name: "keyglass-index-merge", loop: { [self] in follow() }, stop: { [self] in stop() })
    }

    private func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
    }

    private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    private func follow() {
        let idle = options.idle.components
        let idleNanos = Int(idle.seconds) * 1_000_000_000 + Int(idle.attoseconds / 1_000_000_000)
        while !isStopping {
            let compactionDue = state.withLock { compactionIsDue($0) }
            if pending == 0 && !compactionDue {
                wake.wait()
            } else if !compactionDue, wake.wait(timeout: .now() + .nanoseconds(idleNanos)) == .timedOut {
                // Quiet: merge everything (a failed slice waits for the next wake or quiet spell).
                mergeAll()
                continue
            }
            guard mergeDue() else {
                // Work is due but the slice failed (a full disk, maintenance mode, a lock held too
                // long): wait before trying again, rather than spinning and logging a flood.
                if workIsDue { _ = wake.wait(timeout: .now() + .nanoseconds(idleNanos)) }
                continue
            }
            awaitTurn()
            while !isStopping, mergeDue() { awaitTurn() }
        }
        mergeAll()
    }

    /// Between two slices: while appends are flowing, the next slice waits for the next append, so
    /// merges take one slice per batch, as when the sequencer wrote them itself. Without this the
    /// follower could slip a slice between a batch's identity lookups and its append (two calls on
    /// the writer's queue), and a batch would wait for two slices. A quiet log (no append for
    /// `quietGapMillis`) gets its slices back to back.
    private func awaitTurn() {
        while wake.wait(timeout: .now()) == .success {}  // forget the appends already seen
        _ = wake.wait(timeout: .now() + .milliseconds(Self.quietGapMillis))
    }

    /// An append this recent means publishes are flowing (a batch commits every few milliseconds
    /// under load).
    private static let quietGapMillis = 5

    private static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
