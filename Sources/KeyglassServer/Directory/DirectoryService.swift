#if canImport(Glibc)
    import CKeyglassLibc
#endif
import Dispatch
import Foundation
import KeyglassCore
import KeyglassLog
import Logging
import ServiceLifecycle
import Synchronization

/// Runs a v2 log (the key directory): sequences device changes in batches and appends a map head
/// every epoch in which something changed, on one writer thread, as `Sequencer` does for v1.
/// Lookups and histories are answered from the same `DirectoryLog` under its lock.
///
/// Why one lock around the whole log: `DirectoryLog` keeps label states, histories and the map in
/// memory and is not thread-safe; every call is short except a batch's commit, during which a
/// lookup waits (measured and improved under issue 14's point 11, not yet).
public final class DirectoryService: Service, WitnessedCheckpoints, Sendable {
    public struct Options: Sendable {
        /// How often a map head is appended while changes arrive (issue 14: "~1 s").
        public var epoch: Duration = .seconds(1)
        /// Most changes in one batch.
        public var maxBatch = 1024
        /// Most changes waiting; beyond it changes fail fast (503).
        public var maxQueue = 10_000
        /// Most entries in one page of a history.
        public var historyPage = 1000
        /// Most changes no head covers before one is appended, whatever the epoch: their states
        /// wait in memory until a head writes them to the state database, so this bounds the
        /// memory a long epoch or a burst takes. At most `DirectoryLog.forcedHeadChanges`.
        public var maxUncovered = 16_384
        public init() {}
    }

    /// How a change ended: its index and the tree's size after its batch, or why it was not sequenced.
    public enum Outcome: Sendable {
        case sequenced(index: UInt64, treeSize: UInt64)
        case refused(DirectoryLog.Refusal)
        case unavailable(String)
    }

    private struct Pending {
        let request: DirectoryLog.ChangeRequest
        let done: @Sendable (Outcome) -> Void
    }

    private struct Inbox {
        var queue: [Pending] = []
        var accepting = true
        var stopping = false
    }

    /// The log; every access is under this lock (see the type's comment).
    private let log: Mutex<DirectoryLog>
    private let inbox = Mutex(Inbox())
    private let wake = DispatchSemaphore(value: 0)
    private let newest: Mutex<StoredCheckpoint>
    private let options: Options
    private let logger: Logger
    public let origin: String
    public let verifierKey: NoteVerifierKey
    public let vrfPublicKey: [UInt8]
    /// The store the log writes, for reads that need no lock (tiles, histories, proofs of stored
    /// entries: storage is append-only and safe to read from any thread).
    public let store: LogStore
    /// The log's labels and VRF proofs, computed outside its lock: any client can ask for any
    /// identity, and an ECVRF computation (~0.1–0.2 ms) must not hold up the writer.
    let labels: DirectoryLabels
    /// The newest checkpoint whose last leaf is a map head (what lookups and histories answer against).
    private let head: Mutex<StoredCheckpoint?>
    /// At start, the newest head covered every entry: the epoch timer starts now. Otherwise (a
    /// new log, or changes stored after the last head before a stop) a head is appended at once.
    private let headCoversAll: Bool
    /// Lookups read the state database on these connections, outside the log's lock.
    private let reader: DirectoryStateReader
    /// What lookups need of the newest head besides the state database (`DirectoryLog.LookupSnapshot`).
    private let snapshot: Mutex<DirectoryLog.LookupSnapshot?>
    /// A stored batch failed to replay (a bug): nothing more is written.
    private let broken = Atomic<Bool>(false)
    /// The map follower (its own thread): commits each head to the state database while the
    /// writer goes on; it asks the writer to append the head entry (only the writer appends).
    private let follower: DirectoryFollower
    private let followerWake = DispatchSemaphore(value: 0)
    /// What the follower asks of the writer (at most one at a time), and whether it has stopped.
    private let headRequest = Mutex<(request: WriterRequest?, writerGone: Bool)>((nil, false))

    /// What the follower asks of the writer, which runs it between batches: only the writer
    /// appends, and only it may replay the log into the state while no batch is half stored.
    private enum WriterRequest {
        /// Append `work`'s head with `root`.
        case appendHead(work: DirectoryLog.HeadWork, root: Hash, done: @Sendable (Result<StoredCheckpoint, any Error>) -> Void)
        /// A head failed to store: start again from the state database (`DirectoryLog.headFailed`).
        /// On another thread it could replay a batch the writer is storing, which the writer's
        /// commit then replays again.
        case recover(done: @Sendable (Result<Void, any Error>) -> Void)
    }


    public init(log: sending DirectoryLog, signer: NoteSigner, vrfSeed: [UInt8], options: Options = Options(),
                logger: Logger = Logger(label: "keyglass.directory")) throws {
        origin = log.origin
        verifierKey = signer.verifierKey
        vrfPublicKey = log.vrfPublicKey
        guard Ed25519.keyPair(seed: vrfSeed)?.publicKey == log.vrfPublicKey else { throw StoreError.corrupt("the VRF seed is not the log's") }
        labels = log.labels
        store = LogStore(storage: log.storage)
        // Changes stored after the newest head (a stop, or a burst no head covered) are covered
        // before the server serves: the follower's first head would otherwise have to take them
        // all while new ones arrive, and fall behind for as long.
        if log.headCheckpoint?.size != log.size, log.size > 1 {
            try log.appendMapHead()
            // Resuming held those changes' states in memory (up to `forcedHeadChanges` of them)
            // and the head wrote them out: give the freed pages back now, or glibc keeps them and
            // the server serves at this start's peak.
            #if canImport(Glibc)
                malloc_trim(0)
            #endif
        }
        head = Mutex(log.headCheckpoint)
        headCoversAll = log.headCheckpoint?.size == log.size
        guard let cp = try log.storage.latestCheckpoint() else { throw StoreError.notInitialised("the directory has no checkpoint") }
        newest = Mutex(cp)
        // Lookups read the state database on connections of their own while the follower writes
        // it: an in-memory one has a single connection, which they would share with the writer.
        guard log.statePath != ":memory:" else { throw StoreError.corrupt("a directory server needs its state database in a file") }
        reader = try DirectoryStateReader(path: log.statePath)
        snapshot = Mutex(try log.lookupSnapshot())
        // From here the follower thread writes the state database; the writer reads it on its own.
        try log.readStatesOnOwnConnection()
        follower = log.follower
        self.log = Mutex(log)
        self.options = options
        self.logger = logger
    }

    /// Witnesses cosign the checkpoints lookups are answered against: those ending in a map head.
    public var checkpointToWitness: StoredCheckpoint? { head.withLock { $0 } }

    /// The newest checkpoint (served by GET /checkpoint and used for tiles).
    public var latestCheckpoint: StoredCheckpoint { newest.withLock { $0 } }

    /// Queues a change; returns once it is durable (or refused).
    public func submit(_ request: DirectoryLog.ChangeRequest) async -> Outcome {
        await withCheckedContinuation { c in submit(request) { c.resume(returning: $0) } }
    }

    /// Queues a change; `done` is called once, on the writer's thread (or this one when refused at
    /// once), when it is durable or refused.
    public func submit(_ request: DirectoryLog.ChangeRequest, done: @escaping @Sendable (Outcome) -> Void) {
        let refused: Outcome? = inbox.withLock { box in
            guard box.accepting else { return .unavailable("the server is shutting down") }
            guard box.queue.count < options.maxQueue else { return .unavailable("too many changes are queued; retry later") }
            box.queue.append(Pending(request: request, done: done))
            return nil
        }
        if let refused { done(refused) } else { wake.signal() }
    }

    /// The lookup answer for `identity` (canonical) against the newest map head.
    public func lookup(_ identity: String) throws -> DirectoryLookup.Answer {
        let (label, proof) = try labels.labelAndProof(of: identity)
        // A lookup that meets a head committed after its snapshot takes the new one. Waits of 1,
        // 2, 4 … 64 ms, ~1 s in all: on two busy cores the follower can be off the CPU for tens of
        // milliseconds between its commit and publishing the snapshot.
        for attempt in 0..<20 {
            if let answer = try lookup(label: label, vrfProof: proof) { return answer }
            // The follower committed a head and is publishing it: a moment.
            if attempt > 0 { Thread.sleep(forTimeInterval: Double(1 << min(attempt - 1, 6)) / 1000) }
        }
        throw StoreError.notInitialised("a map head is being stored; retry")
    }

    /// One try, never waiting (for the event loop: `DirectoryAPI.fastRead`): nil when the follower
    /// has committed a head it has not yet published, where `lookup(_:)` would wait a moment.
    public func lookupWithoutWaiting(_ identity: String) throws -> DirectoryLookup.Answer? {
        let (label, proof) = try labels.labelAndProof(of: identity)
        return try lookup(label: label, vrfProof: proof)
    }

    /// The map proof and the state from the state database as of the newest head, on a reader
    /// connection; the history and sealed change from append-only storage. Nil when the state
    /// database has moved past the snapshot's head (a head just committed).
    private func lookup(label: Hash, vrfProof: [UInt8]) throws -> DirectoryLookup.Answer? {
        guard let snap = snapshot.withLock({ $0 }) else { throw StoreError.notInitialised("no map head yet") }
        guard let parts = try DirectoryLog.lookupParts(snap, label: label, vrfProof: vrfProof, reader: reader) else { return nil }
        return try DirectoryLog.complete(parts, storage: store.storage)
    }

    /// As `lookup(_:)`, for async callers (the router): a lookup that meets a head being published
    /// sleeps, and a thread of Swift's cooperative pool must not (two such lookups on two cores
    /// would stall every task), so it runs on a Dispatch thread. Most lookups never get here: the
    /// event loop answers them (`DirectoryAPI.fastRead`) and hands only those that would wait to
    /// the router.
    public func lookup(_ identity: String) async throws -> DirectoryLookup.Answer {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async { c.resume(with: Result { try self.lookup(identity) }) }
        }
    }

    /// One page of the label's change entries, newest first up to `historyPage` below `before`,
    /// returned oldest first with inclusion proofs, against the signed checkpoint of `treeSize`
    /// (the newest head's if nil: a client paging back names the size of its first page). Read outside
    /// the log's lock: storage is append-only.
    public func history(of identity: String, before: UInt64?, treeSize: UInt64?) throws
        -> (checkpoint: StoredCheckpoint, entries: [(index: UInt64, entry: [UInt8], sealed: [UInt8]?, proof: [Hash])], more: Bool)
    {
        guard let newestHead = head.withLock({ $0 }) else { throw StoreError.notInitialised("no map head yet") }
        var cp = newestHead
        if let treeSize, treeSize != newestHead.size {
            // Any tree the log signed: an auditor reads watched identities' histories against the
            // tree it audits, which may end after the newest head.
            guard treeSize <= latestCheckpoint.size, let stored = try store.checkpoint(size: treeSize) else {
                throw HistoryError.noSuchTree(treeSize)
            }
            cp = stored
        }
        let label = try labels.label(of: identity)
        let page = max(1, options.historyPage)
        let entries = try store.storage.entries(identity: label.hex, below: min(cp.size, before ?? .max), limit: page)
        let proofs = try store.inclusionProofs(indices: entries.map(\.index), size: cp.size)
        let sealed = try store.storage.sealedChanges(at: entries.map(\.index))
        return (cp, zip(entries, proofs).map { ($0.index, $0.data, sealed[$0.index], $1) }, entries.count == page)
    }

    public enum HistoryError: Error {
        case noSuchTree(UInt64)
    }

    public func run() async throws {
        async let writer: Void = DedicatedThread.run(name: "keyglass-directory", loop: { [self] in writeLoop() }, stop: { [self] in stop() })
        async let follower: Void = DedicatedThread.run(name: "keyglass-map-follower", loop: { [self] in followLoop() }, stop: { [self] in stop() })
        _ = await (writer, follower)
    }

    private func stop() {
        inbox.withLock { $0.accepting = false; $0.stopping = true }
        wake.signal()
        followerWake.signal()
    }

    /// Takes queued changes as batches, and appends the heads the follower asks for between them.
    /// On shutdown: the queue. (The changes after the last head get one when the server starts.)
    private func writeLoop() {
        let c = options.epoch.components
        let epochSeconds = max(0.001, Double(c.seconds) + Double(c.attoseconds) / 1e18)
        while true {
            _ = wake.wait(timeout: .now() + epochSeconds / 4)
            while true {
                let batch: [Pending] = inbox.withLock { box in
                    let n = min(box.queue.count, options.maxBatch)
                    defer { box.queue.removeFirst(n) }
                    return Array(box.queue.prefix(n))
                }
                if batch.isEmpty { break }
                write(batch)
                storeMadeProofs()
                appendRequestedHead()
            }
            storeMadeProofs()
            appendRequestedHead()
            let stopping = inbox.withLock { $0.stopping && $0.queue.isEmpty }
            if stopping {
                // A head asked for from now on is refused: the follower rolls it back.
                let left = headRequest.withLock { h in
                    defer { h = (nil, true) }
                    return h.request
                }
                // A restart after a failed head is not needed either: the state database rolled
                // back whole, and the next start resumes from it.
                switch left {
                case .appendHead(_, _, let done)?: done(.failure(StoreError.notInitialised("the server is stopping")))
                case .recover(let done)?: done(.failure(StoreError.notInitialised("the server is stopping")))
                case nil: break
                }
                followerWake.signal()
                return
            }
        }
    }

    /// Runs what the follower asked for, if it did (between batches).
    private func appendRequestedHead() {
        guard let request = headRequest.withLock({ h in defer { h.request = nil }; return h.request }) else { return }
        run(request)
    }

    private func run(_ request: WriterRequest) {
        switch request {
        case .appendHead(let work, let root, let done): done(Result { try log.withLock { try $0.appendOwnHead(work, root: root) } })
        case .recover(let done):
            let result = Result { try log.withLock { try $0.headFailed() } }
            // A log that could not start again is half reset (its replay behind its size): no
            // batch may be judged against it, and this thread writes the next one.
            if case .failure = result { broken.store(true, ordering: .relaxed) }
            done(result)
        }
    }

    /// The follower's thread: every epoch in which something was sequenced (at once for a log
    /// whose newest head does not cover it all, and early when the uncovered changes near what a
    /// replay accepts), a head: handed over by the writer, committed here around its append.
    private func followLoop() {
        let c = options.epoch.components
        let epochSeconds = max(0.001, Double(c.seconds) + Double(c.attoseconds) / 1e18)
        var lastHead = headCoversAll ? Date() : Date.distantPast
        while true {
            // A log whose newest head does not cover it all gets one at once.
            // At least ten times a second, whatever the epoch: a burst must get its head once it
            // passes `maxUncovered`, not when a long epoch ends.
            if lastHead != .distantPast { _ = followerWake.wait(timeout: .now() + min(epochSeconds / 4, 0.1)) }
            if inbox.withLock({ $0.stopping }) { return }
            let bound = min(max(1, options.maxUncovered), DirectoryLog.forcedHeadChanges)
            let crowded = log.withLock { $0.uncoveredChanges >= bound }
            guard Date().timeIntervalSince(lastHead) >= epochSeconds || crowded, !broken.load(ordering: .relaxed) else { continue }
            guard let work = log.withLock({ $0.beginHead() }) else { continue }
            do {
                let committed = try follower.commit(work) { root in try self.appendThroughWriter(work, root: root) }
                let next = try DirectoryLog.LookupSnapshot(
                    checkpoint: committed.checkpoint, covered: work.covered, topLevels: committed.topLevels, unopened: work.unopened, store: store)
                // Lookups first: from the commit on, the state database is at the new head, and
                // a lookup holding the old snapshot waits for this one (the log's lock, next, can
                // be held by a batch being judged).
                snapshot.withLock { $0 = next }
                log.withLock { $0.headCommitted(work, checkpoint: committed.checkpoint) }
                head.withLock { $0 = committed.checkpoint }
                publishNewest()
                // The head's work (its changes and states, ~0.7 KB a change) is freed now: give
                // the pages back, or glibc keeps each burst's peak (perf: under 0.1% of the
                // server's CPU under full load).
                #if canImport(Glibc)
                    malloc_trim(0)
                #endif
                lastHead = Date()
            } catch {
                if inbox.withLock({ $0.stopping }) { return }
                logger.error("map head not stored", metadata: ["error": "\(error)"])
                // The next try waits an epoch: each restart replays the uncovered entries on the
                // writer's thread, and a disk that is full stays full for a while.
                lastHead = Date()
                let recovered: Result<Void, any Error> = throughWriter { done in .recover(done: done) }
                if case .failure(let error) = recovered {
                    if inbox.withLock({ $0.stopping }) { return }
                    logger.critical("the directory could not start again from its state after a failed head; it takes no more changes", metadata: ["error": "\(error)"])
                    continue
                }
                // Lookups move to the head the log has now (its append may have been stored
                // before the state database failed): the old snapshot no longer matches it.
                do {
                    let (snap, newestHead) = try log.withLock { (try $0.lookupSnapshot(), $0.headCheckpoint) }
                    snapshot.withLock { $0 = snap }
                    head.withLock { $0 = newestHead }
                    publishNewest()
                } catch {
                    // The log is whole; lookups wait (the old snapshot no longer matches) until
                    // the next head publishes one.
                    snapshot.withLock { $0 = nil }
                    logger.error("no lookup snapshot after a failed head", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Has the writer append `work`'s head with `root`, and waits for it.
    private func appendThroughWriter(_ work: DirectoryLog.HeadWork, root: Hash) throws -> StoredCheckpoint {
        try throughWriter { done in .appendHead(work: work, root: root, done: done) }.get()
    }

    /// Posts a request to the writer and waits for its result. Once the writer has stopped, every
    /// request is refused: no head is appended, and no restart is needed (the state database
    /// rolled back whole; the next start resumes from it).
    private func throughWriter<T: Sendable>(_ make: (@escaping @Sendable (Result<T, any Error>) -> Void) -> WriterRequest) -> Result<T, any Error> {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        let request = make { r in result.withLock { $0 = r }; done.signal() }
        let posted = headRequest.withLock { h -> Bool in
            guard !h.writerGone else { return false }
            h.request = request
            return true
        }
        guard posted else { return .failure(StoreError.notInitialised("the server is stopping")) }
        wake.signal()
        done.wait()
        return result.withLock { $0! }
    }

    private func write(_ batch: [Pending]) {
        guard !broken.load(ordering: .relaxed) else {
            for p in batch { p.done(.unavailable("the directory stopped taking changes after an internal error; see the server's log")) }
            return
        }
        do {
            // Judged and sealed under the lock, written without it (lookups go on during the
            // fsync), and taken into the log's state under it again.
            let prepared = try log.withLock { try $0.prepare(batch.map(\.request)) }
            if let sealed = prepared.batch { try store.storage.append(sealed) }
            var size = prepared.batch.map { $0.entries.count > 0 ? $0.entries[$0.entries.count - 1].index + 1 : 0 } ?? 0
            do {
                size = try log.withLock { log in
                    try log.commit(prepared)
                    return log.size
                }
            } catch {
                // Stored, so sequenced: its changes are answered as such (a retry would be a
                // second change), and nothing more is written.
                broken.store(true, ordering: .relaxed)
                logger.critical("a stored batch did not replay; the directory takes no more changes", metadata: ["error": "\(error)"])
            }
            let results = prepared.results
            publishNewest()
            for (p, r) in zip(batch, results) {
                switch r {
                case .success(let index): p.done(.sequenced(index: index, treeSize: size))
                case .failure(let refusal): p.done(.refused(refusal))
                }
            }
        } catch {
            logger.error("directory batch not stored", metadata: ["error": "\(error)", "changes": "\(batch.count)"])
            for p in batch { p.done(.unavailable("the change could not be stored; retry")) }
        }
    }

    /// The VRF proofs lookups made, into their identities' rows (here, so lookups never wait for
    /// the database's writer). One that fails is made again by a lookup after a restart.
    private func storeMadeProofs() {
        do { try labels.storeMadeProofs() } catch {
            logger.warning("VRF proofs made by lookups not stored", metadata: ["error": "\(error)"])
        }
    }

    private func publishNewest() {
        if let cp = try? store.latestCheckpoint() { newest.withLock { $0 = cp } }
    }
}
