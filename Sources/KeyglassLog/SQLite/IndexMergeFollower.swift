import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Merges the pending lookup-index rows (`PendingIndex`) into SQLite's index tables, behind the
/// sequencer, on a thread of its own.
///
/// It follows the log: woken by every append, it starts a merge once `Options.mergeAt` rows wait
/// and writes it in slices of at most `Options.slice` (`IndexMerge`). Slices and appends share the
/// writer connection's serial queue, first come first served, so a publish waits for one slice at
/// most. After `Options.idle` without an append it merges every pending row. If appends outrun it
/// (a bulk load), the storage calls `catchUp` before each append and the merge runs on the
/// appending thread until the follower is back within two merges: pending rows stay bounded in
/// memory, and the appends wait instead.
///
/// Merges are prepared (rows copied and sorted) on this thread, never the sequencer's: at 10M
/// entries preparing 2^19 rows took ~200 ms, and when the sequencer's thread did it, every publish
/// waited for it (p99 204 ms in a window with a merge, measured).
///
/// Tests step it by hand: `mergeDue` writes one slice if a merge is due, `mergeAll` merges
/// everything, with no thread running and nothing to wait for.
public final class IndexMergeFollower: Service, Sendable {
    public struct Options: Sendable {
        /// Pending rows that start a merge.
        public var mergeAt: Int = 8_192
        /// Rows per merge: this, or 1/16 of the rows already indexed if that is more, at most 2^19.
        ///
        /// Why it grows: a sorted merge rewrites about every index page its keys land on, and a log
        /// of n entries has ~n/200 pages per index, so merges much smaller than that rewrite the
        /// same pages again and again (measured at 2.4M entries: 8192 rows took 3.9 s, while
        /// 65,536 rows took 1.2 s at 9M; at 10M entries 2^18 rows took 1.4–1.8 s and 2^19 rows
        /// 2.4 s, and publishes/s went from ~22k to ~24.6k). Memory: at 10M entries under full
        /// publish load the server's RSS peaks at ~155 MB against ~70 MB idle, mostly these rows
        /// and the ones that arrive while a merge runs.
        public var chunk: Int = 8_192
        /// Quiet time after which every pending row is merged.
        public var idle: Duration = .seconds(1)
        /// Longest one slice's transaction runs before the appends get the writer again.
        public var slice: Duration = .milliseconds(20)
        public init() {}
    }

    private struct MergeState {
        /// The merge under way, between its slices.
        var merge: IndexMerge?
        var started = ContinuousClock.now
        /// Copying and sorting the merge's rows, before its first slice.
        var preparation: Duration = .zero
        var longestSlice: Duration = .zero
    }

    private let storage: SQLiteStorage
    private let options: Options
    private let logger: Logger
    /// Held while a slice is prepared or written: by this thread, or by the sequencer's in `catchUp`.
    private let state = Mutex(MergeState())
    private let wake = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)

    /// Attaches to `storage`: from now on its appends wake this follower and wait for it when it lags.
    public init(storage: SQLiteStorage, options: Options = Options(), logger: Logger = Logger(label: "keyglass.index-merge")) {
        self.storage = storage
        self.options = options
        self.logger = logger
        storage.attach(self)
    }

    private var pending: Int { storage.pendingIndex.count }

    /// After each committed append (on the sequencer's thread).
    func appended() { wake.signal() }

    /// Rows per merge (see `Options.chunk`).
    private var chunk: Int {
        max(1, options.chunk, min(1 << 19, Int(clamping: storage.pendingIndex.indexedSize / 16)))
    }

    /// Pending rows from which a merge starts.
    private var due: Int { max(options.mergeAt, chunk) }

    /// Writes one slice if a merge is under way or due; true if it wrote one.
    @discardableResult
    public func mergeDue() -> Bool {
        state.withLock { s in
            guard s.merge != nil || pending >= due else { return false }
            return writeSlice(&s)
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

    /// Before an append (on the sequencer's thread): while more than two merges' worth waits,
    /// merge here, so bulk loads cannot pile rows up in memory. Merges started here are also
    /// prepared here: the appends wait for the catch-up anyway.
    func catchUp() {
        while pending >= 2 * due, state.withLock({ writeSlice(&$0) }) {}
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
            s.longestSlice = max(s.longestSlice, .now - start)
            s.merge = merge
            guard complete else { return true }
            storage.pendingIndex.dropMerged(below: merge.indexedSize)
            s.merge = nil
            // Publishes wait for a slice: a slow one is worth an operator's attention.
            logger.log(level: s.longestSlice > .milliseconds(250) ? .notice : .debug, "merged lookup index rows",
                       metadata: ["rows": "\(merge.rowCount)", "ms": "\(Self.milliseconds(.now - s.started))",
                                  "preparation_ms": "\(Self.milliseconds(s.preparation))",
                                  "longest_slice_ms": "\(Self.milliseconds(s.longestSlice))"])
            return true
        } catch {
            logger.error("lookup index merge failed", metadata: ["error": "\(error)", "pending": "\(pending)"])
            return false
        }
    }

    /// Follows the log on its own thread until graceful shutdown (or cancellation), then merges what
    /// is pending and returns.
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                    let thread = Thread { [self] in
                        follow()
                        finished.resume()
                    }
                    thread.name = "keyglass-index-merge"
                    thread.start()
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
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
            if pending == 0 {
                wake.wait()
            } else if wake.wait(timeout: .now() + .nanoseconds(idleNanos)) == .timedOut {
                // Quiet: merge everything (a failed slice waits for the next wake or quiet spell).
                mergeAll()
                continue
            }
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
