import Foundation
import KeyglassCore
import Logging
import ServiceLifecycle
import Synchronization

/// The one writer. Publishes queue up; each batch is given indices, written with its new tree nodes
/// and its signed checkpoint in one SQLite transaction, and only after the commit are its callers
/// answered. Batches form naturally: while one commits (an fsync), the next one queues.
///
/// The batches are written by one dedicated thread (group commit). An actor did this before, and
/// between two commits it waited its turn on Swift's task pool behind the HTTP handlers' jobs:
/// measured, the writer sat idle ~40% of the time under load. The thread picks up the next batch
/// the moment a commit ends.
///
/// Guarantees: indices are assigned in one place, so no two publishes share one; the checkpoints
/// table's primary key is the tree size, so two different roots for one size cannot be stored; a
/// batch whose commit fails is rolled back whole and its callers told so, and the tree edge moves
/// only after a commit succeeds.
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
        /// natural batching. Every
        /// commit writes the tree's right-edge pages and a checkpoint whatever its size, so under
        /// load fewer, larger batches cost less: measured, 1 ms raised publishes/s by ~15% at
        /// 128 clients. A lone publish is never delayed.
        public var batchDelay: Duration = .milliseconds(1)
        /// Most publishes waiting; beyond it publishes fail fast with `overloaded` (HTTP 503).
        public var maxQueue: Int = 100_000
        /// Lookup-index rows held in memory (see `PendingIndex`). Once a merge's worth waits, the
        /// writer merges the oldest rows into SQLite; after a quiet `indexMergeIdle`, all of them.
        /// A merge's worth is `indexMergeChunk`, or 1/16 of the rows already indexed if that is
        /// more, at most 2^19. Memory: at 10M entries under full publish load the server's RSS
        /// peaks at ~155 MB against ~70 MB idle, mostly these rows and the ones that arrive while a
        /// merge runs; the same as 2^18-row merges cost with the earlier, fatter rows.
        ///
        /// Why it grows: a sorted merge rewrites about every index page its keys land on, and a
        /// log of n entries has ~n/200 pages per index, so chunks much smaller than that rewrite
        /// the same pages again and again (measured at 2.4M entries: 8192 rows took 3.9 s, while
        /// 65,536 rows took 1.2 s at 9M; at 10M entries 2^18 rows took 1.4–1.8 s and 2^19 rows
        /// 2.4 s, and publishes/s went from ~22k to ~24.6k). Publishes do not wait for a whole
        /// merge: it is written in slices of at most `indexMergeSlice`, one after each batch
        /// (`IndexMerge`). Before slices, a merge of 2^18 rows at 10M entries held every publish
        /// for ~3 s.
        public var indexMergeEntries: Int = 8_192
        public var indexMergeChunk: Int = 8_192
        public var indexMergeIdle: Duration = .seconds(1)
        /// Longest a merge's transaction runs before the writer turns to the publishes again.
        public var indexMergeSlice: Duration = .milliseconds(20)
        /// Merges up to this many rows are prepared (copied and sorted) on the writer thread;
        /// larger ones on another thread while the writer goes on with batches: at 10M entries,
        /// preparing 2^19 rows took ~200 ms, and every publish waited for it (p99 204 ms in a
        /// window with a merge, measured).
        public var indexMergeInlinePreparation: Int = 65_536
        /// Entry timestamps never decrease: a batch is stamped max(now, newest entry). A newest entry
        /// further ahead of this clock than this (forged in storage, or written while the clock ran
        /// fast) would drag every later entry into its future, so publishes are refused instead
        /// (`PublishError.futureTimestamp`, HTTP 503) until the clock catches up or the operator
        /// acts. A smaller lead, e.g. the clock stepped back by NTP, is carried as before.
        public var maxClockSkew: Duration = .seconds(300)
        /// The clock entries are stamped by, in milliseconds since the Unix epoch. Tests set it to
        /// play a log whose clock misbehaves (a backdated or future-stamped entry).
        public var clock: @Sendable () -> UInt64 = { Sequencer.nowMillis() }
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
        var range: CompactRange
        var lastTimestamp: UInt64
        /// The lookup-index merge under way, between its slices.
        var merge: IndexMerge?
        var mergeStarted = ContinuousClock.now
        /// Copying and sorting the merge's rows, before its first slice.
        var mergePreparation: Duration = .zero
        var longestSlice: Duration = .zero
        /// A large merge being prepared on `mergePreparationQueue`; done when the group is.
        var preparing: DispatchGroup?
        /// The last batch was refused for a future-stamped newest entry (already logged).
        var refusingFutureTimestamp = false
    }

    private let mergePreparationQueue = DispatchQueue(label: "keyglass.index-merge-preparation")
    private let preparedMerge = Mutex<IndexMerge?>(nil)

    private let store: LogStore
    private let signer: NoteSigner
    private let options: Options
    private let logger: Logger
    private let inbox = Mutex(Inbox())
    /// Signalled for every queued publish and for shutdown; the writer thread waits on it when idle.
    private let wake = DispatchSemaphore(value: 0)
    private var writerState: WriterState
    /// The newest checkpoint, readable without waiting for the writer (served by GET /checkpoint).
    private let published: Mutex<StoredCheckpoint>

    public var latestCheckpoint: StoredCheckpoint { published.withLock { $0 } }
    public var origin: String { signer.name }
    public var verifierKey: NoteVerifierKey { signer.verifierKey }

    /// Opens the log: loads the newest checkpoint and the tree edge, and checks they agree.
    public init(store: LogStore, signer: NoteSigner, options: Options = Options(), logger: Logger = Logger(label: "keyglass.sequencer")) async throws {
        let state = try await store.writer.run { db -> (StoredCheckpoint, CompactRange, UInt64) in
            guard let cp = try LogStore.latestCheckpoint(db) else { throw StoreError.notInitialised("no checkpoint; run keyglass-server init") }
            let count = try db.statement("SELECT count(*), coalesce(max(idx) + 1, 0) FROM entries")
            try count.step()
            guard count.uint64(0) == cp.size, count.uint64(1) == cp.size else {
                throw StoreError.corrupt("\(count.uint64(0)) entries stored but the newest checkpoint has size \(cp.size)")
            }
            let range = try LogStore.compactRange(db, size: cp.size)
            guard range.root == cp.root else { throw StoreError.corrupt("stored tree root differs from the newest checkpoint's root") }
            try store.loadUpperTree(db, size: cp.size)
            try store.loadPendingIndex(db)
            var last: UInt64 = 0
            if cp.size > 0 {
                let s = try db.statement("SELECT data FROM entries WHERE idx = ?")
                s.bind(1, cp.size - 1)
                try s.step()
                // Only the timestamp is needed (bytes 1–8, Spec/entry.md), not a full parse: an
                // entry that a later identity rule made malformed (an auditor flags it) must not
                // stop the log from opening.
                let data = s.blob(0)
                guard data.count >= 9, data[0] == KeyEntry.version else { throw StoreError.corrupt("entry \(cp.size - 1) is not a version-1 key entry") }
                last = data[1..<9].reduce(0) { $0 << 8 | UInt64($1) }
            }
            return (cp, range, last)
        }
        let checkpointOrigin = try Checkpoint.parse(try SignedNote.parse(state.0.note).text).origin
        guard checkpointOrigin == signer.name else {
            throw StoreError.corrupt("the signing key is for \"\(signer.name)\" but the log's origin is \"\(checkpointOrigin)\"")
        }
        guard (try? SignedNote.open(state.0.note, verifiers: [signer.verifierKey])) != nil else {
            throw StoreError.corrupt("the newest checkpoint is not signed by this signing key; after replacing the key by hand, run `keyglass-server rotate-key`")
        }
        self.store = store
        self.signer = signer
        self.options = options
        self.logger = logger
        self.writerState = WriterState(range: state.1, lastTimestamp: state.2)
        self.published = Mutex(state.0)
        if let refusal = futureTimestampRefusal(lastTimestamp: state.2, now: options.clock()) {
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

    /// Creates the first, empty checkpoint of a new log. Refuses if the log has any checkpoint.
    public static func initialise(store: LogStore, signer: NoteSigner) async throws -> StoredCheckpoint {
        let signed = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: 0, root: Merkle.emptyRoot), with: signer)
        let note = signed.note.serialized
        return try await store.writer.run { db in
            try db.transaction {
                guard try LogStore.latestCheckpoint(db) == nil else { throw StoreError.corrupt("the log already has checkpoints") }
                let s = try db.statement("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(0, ?, ?, ?)")
                s.bind(1, Merkle.emptyRoot)
                s.bind(2, note)
                s.bind(3, Self.nowMillis())
                try s.step()
                let m = try db.statement("INSERT INTO meta(key, value) VALUES('origin', ?), ('schema', ?)")
                m.bind(1, signer.name)
                m.bind(2, Schema.version)
                try m.step()
            }
            return StoredCheckpoint(size: 0, root: Merkle.emptyRoot, note: note)
        }
    }

    /// Re-signs the newest checkpoint (same origin, size and root) with a new key, for key rotation.
    public static func resign(store: LogStore, with signer: NoteSigner) async throws {
        try await store.writer.run { db in
            try db.transaction {
                guard let cp = try LogStore.latestCheckpoint(db) else { throw StoreError.notInitialised("no checkpoint") }
                let text = try SignedNote.parse(cp.note).text
                guard try Checkpoint.parse(text).origin == signer.name else { throw StoreError.corrupt("new key's name differs from the origin") }
                let note = try SignedNote.sign(text: text, with: signer).serialized
                let s = try db.statement("UPDATE checkpoints SET note = ? WHERE size = ?")
                s.bind(1, note)
                s.bind(2, cp.size)
                try s.step()
            }
        }
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
            guard box.queue.count < options.maxQueue else { return .overloaded }
            box.queue.append(Waiter(request: request, done: done))
            return nil
        }
        if let refused { done(.failure(refused)) } else { wake.signal() }
    }

    /// Integrates batches on the writer thread until graceful shutdown (or cancellation), then
    /// drains everything already queued and returns.
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                    let thread = Thread { [self] in
                        writeLoop()
                        finished.resume()
                    }
                    thread.name = "keyglass-sequencer"
                    thread.start()
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
        logger.info("sequencer stopped", metadata: ["tree_size": "\(latestCheckpoint.size)"])
    }

    /// Refuses new publishes; the writer finishes the queued ones and exits.
    private func stop() {
        inbox.withLock { $0.accepting = false; $0.stopping = true }
        wake.signal()
    }

    /// The writer thread: takes whatever has queued, writes it as one batch, repeats; merges the
    /// pending lookup index when it is large or the log is quiet.
    private func writeLoop() {
        var lastBatchSize = 0
        while true {
            if store.pendingIndex.count == 0 {
                wake.wait()
            } else {
                let idle = options.indexMergeIdle.components
                let nanos = Int(idle.seconds) * 1_000_000_000 + Int(idle.attoseconds / 1_000_000_000)
                if wake.wait(timeout: .now() + .nanoseconds(nanos)) == .timedOut { mergeAllIndexRows() }
            }
            while true {
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
                // One slice of a merge after each batch, once a merge's worth waits.
                let due = max(options.indexMergeEntries, mergeChunk)
                if writerState.merge != nil || writerState.preparing != nil || store.pendingIndex.count >= due {
                    _ = mergeSlice(waitForPreparation: false)
                }
                // When batches outrun the slices (bulk loads), the writer merges until it catches
                // up: memory for pending rows stays bounded, and publishes wait instead.
                while store.pendingIndex.count >= 2 * due, mergeSlice(waitForPreparation: true) {}
            }
            if inbox.withLock({ $0.stopping && $0.queue.isEmpty }) {
                mergeAllIndexRows()
                return
            }
        }
    }

    /// Merges until nothing is pending, or a merge fails, or publishes are waiting.
    private func mergeAllIndexRows() {
        while store.pendingIndex.count > 0, mergeSlice(waitForPreparation: true), inbox.withLock({ $0.queue.isEmpty }) {}
    }

    /// Rows per merge: `indexMergeChunk`, or 1/16 of the indexed rows if more (see `Options`).
    private var mergeChunk: Int {
        max(1, options.indexMergeChunk, min(1 << 19, Int(clamping: store.pendingIndex.indexedSize / 16)))
    }

    /// Writes one slice of the merge under way, starting a merge of the oldest pending rows if none
    /// is; false if the slice failed (its rows stay pending, lookups still find them, and the next
    /// slice retries). A large merge is first prepared off the writer thread: without
    /// `waitForPreparation` this returns at once until it is ready.
    private func mergeSlice(waitForPreparation: Bool) -> Bool {
        if writerState.merge == nil {
            if writerState.preparing == nil {
                let limit = mergeChunk
                writerState.mergeStarted = .now
                if min(limit, store.pendingIndex.count) <= options.indexMergeInlinePreparation {
                    writerState.merge = store.beginIndexMerge(limit: limit)
                } else {
                    // Only the writer removes pending rows (when a merge completes), and none is
                    // under way: the oldest `limit` rows stay put while they are sorted.
                    let group = DispatchGroup()
                    group.enter()
                    // Touches only `store` and `preparedMerge` (a Mutex), never `writerState`.
                    mergePreparationQueue.async { [self] in
                        let merge = store.beginIndexMerge(limit: limit)
                        preparedMerge.withLock { $0 = merge }
                        group.leave()
                    }
                    writerState.preparing = group
                }
            }
            if let group = writerState.preparing {
                if waitForPreparation {
                    group.wait()
                } else if group.wait(timeout: .now()) == .timedOut {
                    return true
                }
                writerState.preparing = nil
                writerState.merge = preparedMerge.withLock { prepared in
                    defer { prepared = nil }
                    return prepared
                }
            }
            writerState.mergePreparation = .now - writerState.mergeStarted
            writerState.longestSlice = .zero
        }
        guard var merge = writerState.merge else { return true }
        let start = ContinuousClock.now
        do {
            let complete = try store.writer.runHere { db in try merge.writeSlice(db, budget: options.indexMergeSlice) }
            writerState.longestSlice = max(writerState.longestSlice, .now - start)
            guard complete else {
                writerState.merge = merge
                return true
            }
            store.finishIndexMerge(merge)
            writerState.merge = nil
            // Publishes wait for a slice: a slow one is worth an operator's attention.
            let longest = writerState.longestSlice
            logger.log(level: longest > .milliseconds(250) ? .notice : .debug, "merged lookup index rows",
                       metadata: ["rows": "\(merge.rowCount)", "ms": "\(Self.milliseconds(.now - writerState.mergeStarted))",
                                  "preparation_ms": "\(Self.milliseconds(writerState.mergePreparation))",
                                  "longest_slice_ms": "\(Self.milliseconds(writerState.longestSlice))"])
            return true
        } catch {
            logger.error("lookup index merge failed", metadata: ["error": "\(error)", "pending": "\(store.pendingIndex.count)"])
            return false
        }
    }

    private static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    private struct BatchOutcome: Sendable {
        var results: [Result<PublishReceipt, PublishError>]
        var range: CompactRange
        var lastTimestamp: UInt64
        var checkpoint: StoredCheckpoint?
        /// Nodes the batch completed at the levels the upper-tree cache keeps.
        var upperNodes: [(NodeID, Hash)] = []
        /// The batch's lookup-index rows, for `PendingIndex`.
        var indexRows: [PendingIndex.Row] = []
    }

    private func integrate(_ batch: [Waiter]) {
        let requests = batch.map(\.request)
        let start = writerState
        let now = options.clock()
        if let refusal = futureTimestampRefusal(lastTimestamp: start.lastTimestamp, now: now) {
            // Logged once per run of refusals, not per batch: under load that would be thousands.
            if !writerState.refusingFutureTimestamp { logger.error("publish refused: \(refusal)") }
            writerState.refusingFutureTimestamp = true
            for waiter in batch { waiter.done(.failure(refusal)) }
            return
        }
        writerState.refusingFutureTimestamp = false
        let signer = self.signer
        let cachedFrom = store.upperTree.lowestLevel
        let t0 = ContinuousClock.now
        do {
            let outcome = try store.writer.runHere { db in
                try db.transaction {
                    try Self.write(requests, db: db, store: store, range: start.range, lastTimestamp: start.lastTimestamp, now: now,
                                   signer: signer, cachedFrom: cachedFrom)
                }
            }
            let took = ContinuousClock.now - t0
            // Only now, after the commit, does the tree edge move and do callers hear back.
            // The cache first: a reader that sees the new checkpoint finds its nodes there.
            store.upperTree.append(outcome.upperNodes)
            store.pendingIndex.add(outcome.indexRows)
            writerState.range = outcome.range
            writerState.lastTimestamp = outcome.lastTimestamp
            if let cp = outcome.checkpoint { published.withLock { $0 = cp } }
            for (waiter, result) in zip(batch, outcome.results) { waiter.done(result) }
            // Every publish of the batch waited for this commit: a slow one (an fsync stalled by
            // the disk, a checkpoint of the WAL) is worth an operator's attention.
            if took > .milliseconds(250) {
                logger.notice("slow batch commit", metadata: ["ms": "\(Self.milliseconds(took))", "entries": "\(batch.count)"])
            }
        } catch {
            logger.error("batch of \(batch.count) not stored", metadata: ["error": "\(error)"])
            let message: String
            if let f = error as? SQLiteConnection.Failure, f.isStorageFault {
                message = "storage is full or read-only (\(f.description)); nothing of this batch was written, reads continue"
            } else {
                message = "\(error)"
            }
            for waiter in batch { waiter.done(.failure(.storage(message))) }
        }
    }

    /// The body of one batch's transaction. Runs on the writer's queue.
    private static func write(_ requests: [PublishRequest], db: SQLiteConnection, store: LogStore, range start: CompactRange,
                              lastTimestamp: UInt64, now: UInt64, signer: NoteSigner, cachedFrom: UInt8) throws -> BatchOutcome {
        var range = start
        var latestForIdentity: [String: UInt64?] = [:]
        var results: [Result<PublishReceipt, PublishError>] = []
        // Never before the newest entry; `integrate` refused the batch if that is too far ahead.
        let timestamp = max(now, lastTimestamp)
        let insertEntry = "INSERT INTO entries(idx, identity, identity_key, leaf_hash, leaf_key, data) VALUES(?, ?, ?, ?, ?, ?)"
        let insertNode = "INSERT INTO nodes(id, hash) VALUES(?, ?)"
        var appended: [(UInt64, [UInt8], Hash, Int)] = []  // index, entry, leaf hash, result slot
        var upperNodes: [(NodeID, Hash)] = []
        var indexRows: [PendingIndex.Row] = []

        for request in requests {
            let identityKey = Schema.identityKey(request.identity)
            let previous: UInt64?
            if let cached = latestForIdentity[request.identity] {
                previous = cached
            } else {
                previous = try store.latestIndex(db, identity: request.identity, identityKey: identityKey)
            }
            var signature: [UInt8]?
            if case let .chained(expected, sig) = request.authorization {
                guard previous == expected else {
                    results.append(.failure(.conflict("identity's latest entry is \(previous.map(String.init) ?? "none"), not \(expected): look it up and sign again")))
                    continue
                }
                signature = sig
            }
            guard range.size <= Schema.maxIndex else {
                results.append(.failure(.logFull))
                continue
            }
            let entry = KeyEntry(timestampMillis: timestamp, identity: request.identity, keyType: request.keyType,
                                 publicKey: request.publicKey, revocation: request.revocation,
                                 previousIndex: previous, signature: signature)
            let bytes = try entry.encode()
            let leaf = Merkle.leafHash(bytes)
            let leafKey = Schema.lookupKey(leaf)
            let index = range.size
            let s = try db.statement(insertEntry)
            s.bind(1, index)
            s.bind(2, request.identity)
            s.bind(3, identityKey)
            s.bind(4, leaf)
            s.bind(5, leafKey)
            s.bind(6, bytes)
            try s.step()
            var nodeError: Error?
            range.append(leaf) { id, hash in
                guard id.level > 0, nodeError == nil else { return }
                if id.level >= cachedFrom { upperNodes.append((id, hash)) }
                do {
                    let n = try db.statement(insertNode)
                    n.bind(1, Schema.nodeKey(level: id.level, index: id.index))
                    n.bind(2, hash)
                    try n.step()
                } catch { nodeError = error }
            }
            if let e = nodeError { throw e }
            latestForIdentity[request.identity] = .some(index)
            indexRows.append(PendingIndex.Row(index: index, identityKey: identityKey, leafKey: leafKey))
            appended.append((index, bytes, leaf, results.count))
            results.append(.failure(.storage("not integrated")))  // replaced below once signed
        }

        guard !appended.isEmpty else {
            return BatchOutcome(results: results, range: start, lastTimestamp: lastTimestamp, checkpoint: nil)
        }
        let root = range.root
        let note = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: range.size, root: root), with: signer).note.serialized
        let c = try db.statement("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(?, ?, ?, ?)")
        c.bind(1, range.size)
        c.bind(2, root)
        c.bind(3, note)
        c.bind(4, nowMillis())
        try c.step()
        let checkpoint = StoredCheckpoint(size: range.size, root: root, note: note)
        for (index, bytes, leaf, slot) in appended {
            results[slot] = .success(PublishReceipt(index: index, entry: bytes, leafHash: leaf, checkpoint: checkpoint))
        }
        return BatchOutcome(results: results, range: range, lastTimestamp: timestamp, checkpoint: checkpoint, upperNodes: upperNodes, indexRows: indexRows)
    }

    public static func nowMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}
