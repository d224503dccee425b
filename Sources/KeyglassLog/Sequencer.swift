import Foundation
import KeyglassCore
import Logging
import ServiceLifecycle
import Synchronization

/// The one writer: it sequences. Publishes queue up; each batch is given indices, its entries
/// encoded and hashed into the tree, its checkpoint signed, and the whole handed to the storage
/// engine in one `append` (one transaction); only after that returns are its callers answered.
/// Batches form naturally: while one commits (an fsync, or a network round trip), the next queues.
/// What storage does with it (SQL, index merges) is the engine's business (`LogStorage`).
///
/// The batches are built by one dedicated thread (group commit). An actor did this before, and
/// between two commits it waited its turn on Swift's task pool behind the HTTP handlers' jobs:
/// measured, the writer sat idle ~40% of the time under load. The thread picks up the next batch
/// the moment a commit ends.
///
/// Guarantees: indices are assigned in one place, so no two publishes share one; `append` is a
/// compare-and-swap on the newest checkpoint, so two different trees of one size cannot be stored;
/// a batch whose append fails is answered with an error, and the tree edge is re-read from storage
/// (an append over the network can fail after it committed) before the next batch is built.
///
/// `@unchecked Sendable`: every stored property is a `let` of a Sendable type or a `Mutex`, except
/// `writerState`, which only the writer thread reads or writes (`writeLoop` and what it calls) once
/// `run` has started it; `init` sets it before any thread exists.
public final class Sequencer: Service, @unchecked Sendable {
    public struct Options: Sendable {
        /// Most entries in one transaction.
        public var maxBatch: Int = 4096
        /// Extra time to let a batch fill before it is written, when publishes are arriving
        /// concurrently (more than one is queued, or the previous batch held more than one); 0: only
        /// natural batching. Every commit writes the tree's right-edge pages and a checkpoint
        /// whatever its size, so under load fewer, larger batches cost less: measured, 1 ms raised
        /// publishes/s by ~15% at 128 clients. A lone publish is never delayed.
        public var batchDelay: Duration = .milliseconds(1)
        /// Most publishes waiting; beyond it publishes fail fast with `overloaded` (HTTP 503).
        public var maxQueue: Int = 100_000
        /// Entry timestamps never decrease: a batch is stamped max(now, newest entry). A newest entry
        /// further ahead of this clock than this (forged in storage, or written while the clock ran
        /// fast) would drag every later entry into its future, so publishes are refused instead
        /// (`PublishError.futureTimestamp`, HTTP 503) until the clock catches up or the operator
        /// acts. A smaller lead, e.g. the clock stepped back by NTP, is carried as before.
        public var maxClockSkew: Duration = .seconds(300)
        /// The clock entries are stamped by, in milliseconds since the Unix epoch. Tests set it to
        /// step time (a clock stepped back, a log whose newest entry is in the future).
        public var clock: @Sendable () -> UInt64 = { Sequencer.nowMillis() }
        /// Where publishes by outcome, batch sizes and commit times are recorded.
        public var metrics: LogMetrics = .none
        /// Several servers on one database: sequence only while this is held; otherwise refuse
        /// publishes (`notSequencer`) and follow the stored log every `followInterval`. nil: this
        /// server is the log's only writer.
        public var lease: (any SequencingLease)?
        public var followInterval: Duration = .milliseconds(200)
        public init() {}
    }

    private struct Waiter {
        let request: PublishRequest
        let done: @Sendable (Result<PublishReceipt, PublishError>) -> Void
    }

    private struct Inbox {
        var queue: [Waiter] = []
        var accepting = true
        var stopping = false
    }

    /// The tree edge and the newest timestamp: the writer thread's alone.
    private struct WriterState {
        var head: LogHead
        /// The last batch was refused for a future-stamped newest entry (already logged).
        var refusingFutureTimestamp = false
        /// With a lease: whether this server sequenced at the last look. A server that starts to
        /// sequence re-reads the head first (others appended while it followed).
        var sequencing = false
        /// Batches in a row that storage did not take (with a lease, a few make it stand down).
        var failedBatches = 0
    }

    private let store: LogStore
    private var storage: any LogStorage { store.storage }
    private let signer: NoteSigner
    private let options: Options
    private let logger: Logger
    private let inbox = Mutex(Inbox())
    /// Signalled for every queued publish and for shutdown; the writer thread waits on it when idle.
    private let wake = DispatchSemaphore(value: 0)
    private var writerState: WriterState
    /// The newest checkpoint, readable without waiting for the writer (served by GET /checkpoint).
    private let published: Mutex<StoredCheckpoint>
    /// The newest entry's timestamp, ms since the Unix epoch: when the newest checkpoint's last
    /// batch was stamped (0: the log is empty). For metrics and the status page.
    private let newestTimestamp: Atomic<UInt64>

    public var latestCheckpoint: StoredCheckpoint { published.withLock { $0 } }
    /// The newest entry's timestamp in ms since the Unix epoch, 0 for an empty log.
    public var newestEntryMillis: UInt64 { newestTimestamp.load(ordering: .relaxed) }
    /// Whether this server sequences now: always for a log's only writer; with a lease, while it
    /// believes it holds it.
    public var sequences: Bool { options.lease?.isHeld ?? true }
    /// Publishes waiting for the writer.
    public var queuedPublishes: Int { inbox.withLock { $0.queue.count } }
    public var origin: String { signer.name }
    public var verifierKey: NoteVerifierKey { signer.verifierKey }

    /// Opens the log: loads the newest checkpoint and the tree edge, checks they agree and that the
    /// checkpoint is this key's, and fills the upper-tree cache.
    public init(store: LogStore, signer: NoteSigner, options: Options = Options(), logger: Logger = Logger(label: "keyglass.sequencer")) throws {
        let head = try LogHead.load(from: store.storage, signer: signer)
        try store.loadUpperTree(size: head.checkpoint.size)
        self.store = store
        self.signer = signer
        self.options = options
        self.logger = logger
        self.writerState = WriterState(head: head)
        self.published = Mutex(head.checkpoint)
        self.newestTimestamp = Atomic(head.newestTimestamp)
        if let refusal = futureTimestampRefusal(lastTimestamp: head.newestTimestamp, now: options.clock()) {
            logger.error("publishes will be refused: \(refusal)")
        }
    }

    /// The refusal for every publish while the newest entry is more than `maxClockSkew` ahead of `now`.
    private func futureTimestampRefusal(lastTimestamp: UInt64, now: UInt64) -> PublishError? {
        let c = options.maxClockSkew.components
        let skew = UInt64(max(0, c.seconds)) * 1000 + UInt64(max(0, c.attoseconds / 1_000_000_000_000_000))
        guard lastTimestamp > now &+ skew else { return nil }
        return .futureTimestamp(newestMillis: lastTimestamp, nowMillis: now, maxSkewMillis: skew)
    }

    /// Queues a publish and returns once it is durable, integrated and covered by a signed checkpoint.
    public func submit(_ request: PublishRequest) async throws -> PublishReceipt {
        try await withCheckedThrowingContinuation { c in
            submit(request) { c.resume(with: $0) }
        }
    }

    /// Queues a publish; `done` is called (on the writer thread) once it is durable, integrated and
    /// covered by a signed checkpoint, or has failed. For callers that are not async (the HTTP
    /// event loop's fast path); `done` must return quickly.
    public func submit(_ request: PublishRequest, done: @escaping @Sendable (Result<PublishReceipt, PublishError>) -> Void) {
        let refused: PublishError? = inbox.withLock { box in
            guard box.accepting else { return .shuttingDown }
            if let lease = options.lease, !lease.isHeld { return .notSequencer }
            guard box.queue.count < options.maxQueue else { return .overloaded }
            box.queue.append(Waiter(request: request, done: done))
            return nil
        }
        if let refused {
            options.metrics.publish(LogMetrics.Outcome(refused))
            done(.failure(refused))
        } else {
            wake.signal()
        }
    }

    /// Integrates batches on the writer thread until graceful shutdown (or cancellation), then
    /// drains everything already queued and returns.
    public func run() async throws {
        await DedicatedThread.run(name: "keyglass-sequencer", loop: { [self] in writeLoop() }, stop: { [self] in stop() })
        logger.info("sequencer stopped", metadata: ["tree_size": "\(latestCheckpoint.size)"])
    }

    /// Refuses new publishes; the writer finishes the queued ones and exits.
    private func stop() {
        inbox.withLock { $0.accepting = false; $0.stopping = true }
        wake.signal()
    }

    /// The writer thread: takes whatever has queued, writes it as one batch, repeats.
    private func writeLoop() {
        var lastBatchSize = 0
        while true {
            if options.lease != nil {
                _ = wake.wait(timeout: .now() + .nanoseconds(Int(max(1_000_000, options.followInterval.components.attoseconds / 1_000_000_000
                    + options.followInterval.components.seconds * 1_000_000_000))))
            } else {
                wake.wait()
            }
            while true {
                if !mayIntegrate() {
                    let refused = inbox.withLock { box -> [Waiter] in defer { box.queue = [] }; return box.queue }
                    options.metrics.publish(.notSequencer, count: refused.count)
                    for waiter in refused { waiter.done(.failure(.notSequencer)) }
                    break
                }
                // Concurrent publishers (a queue, or a full last batch) make waiting worth it.
                if options.batchDelay > .zero,
                   inbox.withLock({ ($0.queue.count > 1 || lastBatchSize > 1) && $0.queue.count < options.maxBatch && !$0.stopping }) {
                    let c = options.batchDelay.components
                    Thread.sleep(forTimeInterval: Double(c.seconds) + Double(c.attoseconds) / 1e18)
                }
                let batch: [Waiter] = inbox.withLock { box in
                    let n = min(box.queue.count, options.maxBatch)
                    defer { box.queue.removeFirst(n) }
                    return Array(box.queue.prefix(n))
                }
                if batch.isEmpty { break }
                lastBatchSize = batch.count
                integrate(batch)
            }
            if inbox.withLock({ $0.stopping && $0.queue.isEmpty }) { return }
        }
    }

    /// With a lease: whether this server sequences now. One that does not follows the stored log
    /// (`follow`); one that starts to takes over the stored head first (`takeOver`).
    private func mayIntegrate() -> Bool {
        guard let lease = options.lease else { return true }
        guard lease.isHeld else {
            writerState.sequencing = false
            follow()
            return false
        }
        if !writerState.sequencing {
            guard takeOver(lease) else { return false }
            writerState.sequencing = true
            writerState.failedBatches = 0
        }
        return true
    }

    /// The head this server is to build on once it holds the lease: storage's, checked as when the
    /// log opens (this key's signature, the stored tree folds to its root) and proved to extend the
    /// checkpoint this server served last (a consistency proof from storage's nodes), so that a
    /// database that went back (a restore, an asynchronous standby promoted, a hostile edit) is
    /// never built on: that would sign a second tree of a size already served. Anything else makes
    /// it stand down (the lease goes to another server, and publishes here keep answering 503).
    private func takeOver(_ lease: any SequencingLease) -> Bool {
        let served = published.withLock { $0 }
        do {
            let head = try LogHead.load(from: storage, signer: signer)
            try requireExtends(head.checkpoint, served)
            try adopt(head)
            logger.notice("sequencing from the stored head", metadata: ["tree_size": "\(head.checkpoint.size)"])
            return true
        } catch {
            logger.critical("cannot sequence from storage's head; standing down", metadata: ["error": "\(error)"])
            lease.standDown(because: "\(error)")
            return false
        }
    }

    /// A server that does not sequence serves what the sequencer stored: adopts the newest stored
    /// checkpoint if it is signed by this log's key and provably extends the one served so far
    /// (a consistency proof from storage's nodes), and brings the upper-tree cache up to it.
    /// Anything else is refused and logged; reads go on from the last adopted checkpoint.
    private func follow() {
        let old = published.withLock { $0 }
        do {
            guard let stored = try storage.latestCheckpoint(), stored != old else { return }
            let (signed, _) = try SignedCheckpoint.open(stored.note, logKey: signer.verifierKey)
            guard signed.checkpoint.size == stored.size, signed.checkpoint.root == stored.root else {
                throw StoreError.corrupt("the stored checkpoint of size \(stored.size) does not match its signed note")
            }
            try requireExtends(stored, old)
            try store.catchUpUpperTree(size: stored.size)
            var newest: UInt64 = 0
            if stored.size > 0, let last = try storage.entries(start: stored.size - 1, end: stored.size).first {
                newest = LogHead.timestamp(of: last.data) ?? 0
            }
            published.withLock { $0 = stored }
            newestTimestamp.store(newest, ordering: .relaxed)
        } catch {
            logger.error("cannot follow the stored log; serving the last checkpoint adopted", metadata: ["error": "\(error)", "tree_size": "\(old.size)"])
        }
    }

    /// Throws unless `stored` is the tree `served` or a later one that provably extends it (a
    /// consistency proof from storage's nodes): a server never moves to a tree that contradicts one
    /// it signed or served (`follow`, `takeOver`).
    private func requireExtends(_ stored: StoredCheckpoint, _ served: StoredCheckpoint) throws {
        if stored.size < served.size || (stored.size == served.size && stored.root != served.root) {
            throw StoreError.corrupt("storage's newest checkpoint (size \(stored.size)) does not extend the one this server served (size \(served.size))")
        }
        if served.size > 0, stored.size > served.size {
            let proof = try store.consistencyProof(from: served.size, to: stored.size)
            try ProofVerifier.verifyConsistency(size1: served.size, size2: stored.size, root1: served.root, root2: stored.root, proof: proof)
        }
    }

    /// Builds on `head` from now on: the upper-tree cache reloaded if it moved, and served.
    private func adopt(_ head: LogHead) throws {
        if head.checkpoint.size != writerState.head.checkpoint.size || store.upperTree.count == 0 { try store.loadUpperTree(size: head.checkpoint.size) }
        writerState.head = head
        published.withLock { $0 = head.checkpoint }
        newestTimestamp.store(head.newestTimestamp, ordering: .relaxed)
    }

    private static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    private func integrate(_ batch: [Waiter]) {
        let head = writerState.head
        let now = options.clock()
        if let refusal = futureTimestampRefusal(lastTimestamp: head.newestTimestamp, now: now) {
            // Logged once per run of refusals, not per batch: under load that would be thousands.
            if !writerState.refusingFutureTimestamp { logger.error("publish refused: \(refusal)") }
            writerState.refusingFutureTimestamp = true
            // Another server's clock may be the one the newest entry was stamped by.
            options.lease?.standDown(because: "the newest entry is stamped in this server's future")
            options.metrics.publish(.futureTimestamp, count: batch.count)
            for waiter in batch { waiter.done(.failure(refusal)) }
            return
        }
        writerState.refusingFutureTimestamp = false
        let t0 = ContinuousClock.now
        var built: BatchBuilder.Built?
        var buildError: Error?
        do {
            let previous = try storage.newestEntries(of: Set(batch.map(\.request.identity)))
            // The batch is built, and its checkpoint signed, inside the engine's critical section
            // (`LogStorage.append(previousSize:build:)`): a server that may not extend the log
            // refuses before it signs anything.
            try storage.append(previousSize: head.checkpoint.size) {
                do {
                    let b = try BatchBuilder.build(batch.map(\.request), after: head, newestOfIdentity: previous,
                                                   timestamp: max(now, head.newestTimestamp), maxSize: storage.maxSize,
                                                   signer: signer, cachedFrom: store.upperTree.lowestLevel)
                    built = b
                    return b.batch
                } catch {
                    buildError = error
                    throw error
                }
            }
        } catch {
            logger.error("batch of \(batch.count) not stored", metadata: ["error": "\(error)"])
            if buildError == nil {
                // Before anyone hears of it: the append may have committed, or lost to another writer.
                let adopted = resynchronise()
                // Storage holds this very checkpoint (as its head, or under others' appends since).
                let committed = adopted != nil && built.map { b in (try? storage.checkpoint(size: b.head.checkpoint.size)) == b.head.checkpoint } == true
                if let built, committed {
                    // Storage holds exactly this batch: it committed and only its answer was lost.
                    // Its callers get their receipts, so none of them retries into a duplicate.
                    logger.notice("the failed append had committed; its publishes are answered", metadata: ["tree_size": "\(built.head.checkpoint.size)"])
                    options.metrics.publishes(built.results)
                    for (waiter, result) in zip(batch, built.results) { waiter.done(result) }
                    return
                }
            }
            fail(batch, error)
            return
        }
        guard let built else { fail(batch, StoreError.storage("the storage engine appended without building the batch")); return }
        guard built.batch != nil else {
            // Nothing was written: every publish of the batch was refused.
            options.metrics.publishes(built.results)
            for (waiter, result) in zip(batch, built.results) { waiter.done(result) }
            return
        }
        let took = ContinuousClock.now - t0
        writerState.failedBatches = 0
        // Only now, after the commit, does the tree edge move and do callers hear back.
        // The cache first: a reader that sees the new checkpoint finds its nodes there.
        store.upperTree.append(built.upperNodes)
        writerState.head = built.head
        published.withLock { $0 = built.head.checkpoint }
        newestTimestamp.store(built.head.newestTimestamp, ordering: .relaxed)
        for (waiter, result) in zip(batch, built.results) { waiter.done(result) }
        options.metrics.publishes(built.results)
        options.metrics.batchSize.record(batch.count)
        options.metrics.commitDuration.recordNanoseconds(took.nanoseconds)
        // Every publish of the batch waited for this commit: a slow one (an fsync stalled by
        // the disk, a checkpoint of the WAL) is worth an operator's attention.
        if took > .milliseconds(250) {
            logger.notice("slow batch commit", metadata: ["ms": "\(Self.milliseconds(took))", "entries": "\(batch.count)"])
        }
    }

    /// Answers every publish of a batch that was not stored.
    private func fail(_ batch: [Waiter], _ error: Error) {
        if let lease = options.lease {
            // Refused by the fence: the lease passed on; these publishes belong to the new sequencer.
            if case .conflict? = error as? StoreError, !lease.isHeld {
                options.metrics.publish(.notSequencer, count: batch.count)
                for waiter in batch { waiter.done(.failure(.notSequencer)) }
                return
            }
            writerState.failedBatches += 1
            if writerState.failedBatches >= 3 {
                writerState.failedBatches = 0
                lease.standDown(because: "three batches in a row were not stored")
            }
        }
        let message: String
        if case let .storage(m) = error as? StoreError { message = m } else { message = "\(error)" }
        options.metrics.publish(.storageError, count: batch.count)
        for waiter in batch { waiter.done(.failure(.storage(message))) }
    }

    /// After a failed append: re-reads the head, and continues from it if storage is ahead (another
    /// writer, or an append that committed though it reported failure). The head is checked as when
    /// the log opens (`LogHead.load`: this key's signature, the stored tree folds to its root) and
    /// must extend the tree this sequencer signed: the checkpoint of its old size must be the one
    /// it holds. A head that went back, or forked, is refused and nothing is adopted; every later
    /// append then fails its compare-and-swap, and the log stops taking publishes (fail closed).
    /// Returns the adopted head, or nil if nothing changed or nothing could be adopted.
    private func resynchronise() -> LogHead? {
        let old = writerState.head.checkpoint
        do {
            let head: LogHead
            do {
                head = try LogHead.load(from: storage, signer: signer)
            } catch {
                // Storage cannot be read either (a disk error, a lost connection): the next batch
                // tries again, and its compare-and-swap refuses it if storage moved meanwhile.
                logger.error("cannot re-read the log's head after a failed append", metadata: ["error": "\(error)"])
                return nil
            }
            guard head.checkpoint != old else { return nil }
            // The stored checkpoint of the size this sequencer signed must still be the one it
            // signed (a row rewritten behind its back is refused even if the nodes still agree).
            guard head.checkpoint.size > old.size, try storage.checkpoint(size: old.size)?.root == old.root else {
                throw StoreError.corrupt("storage's newest checkpoint (size \(head.checkpoint.size)) does not extend the one this sequencer signed (size \(old.size))")
            }
            try adopt(head)
            logger.notice("storage is ahead of the sequencer (another writer, or an append that reported failure but committed); continuing from it",
                          metadata: ["tree_size": "\(head.checkpoint.size)"])
            return head
        } catch {
            logger.critical("cannot continue from storage's head after a failed append; publishes will fail", metadata: ["error": "\(error)"])
            options.lease?.standDown(because: "\(error)")
            return nil
        }
    }

    public static func nowMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}
