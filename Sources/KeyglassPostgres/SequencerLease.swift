import Foundation
import KeyglassLog
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Which of the servers sharing one PostgreSQL log may sequence: a lease in one row of the database
/// (holder, term, expiry by the database's clock).
///
/// - A server that holds it renews it every `duration / 6`; one that does not tries to take it at the
///   same pace, and can only once it has expired (or was released by a graceful stop). A sequencer
///   that dies is therefore replaced within `duration` plus one attempt: 3.5 s with the default 3 s.
/// - `isHeld` is this server's belief, by its own monotonic clock: true until `duration` minus a
///   margin after the start of its last successful renewal. It decides whether publishes are
///   sequenced here or refused with 503.
/// - Beliefs can be wrong (a process paused past its lease, a clock running slow), so nothing relies
///   on them for safety: `PostgresStorage.append` re-checks holder, term and expiry against the
///   database's clock under a row lock in the append's own transaction, and a new holder always gets
///   a new term. An append of a lapsed sequencer therefore writes nothing.
public final class SequencerLease: SequencingLease, Service {
    public let holder: String
    let duration: Duration
    private let session: PostgresSession
    private let logger: Logger
    private struct Grant {
        var term: Int64
        var until: ContinuousClock.Instant
    }
    private let grant = Mutex<Grant?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// After a stand-down: no attempt to take the lease before this.
    private let restingUntil = Mutex<ContinuousClock.Instant?>(nil)
    /// Most this server's clock may differ from the database's for it to take the lease: entries are
    /// stamped by the sequencer's clock, and timestamps never go back, so a sequencer whose clock
    /// runs ahead drags every later entry (and every later sequencer) into its future.
    let maxClockDifference: Duration
    private let saidClock = Atomic<Bool>(false)
    /// Attempts, stand-downs and releases one at a time (the lease thread and the sequencer's): a
    /// renewal racing a release would otherwise grant back the lease just given up.
    private let serial = NSLock()
    private let saidStandby = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    init(holder: String, duration: Duration, session: PostgresSession, logger: Logger, maxClockDifference: Duration = .seconds(1)) {
        self.holder = holder
        self.maxClockDifference = maxClockDifference
        self.duration = max(duration, .milliseconds(600))
        self.session = session
        self.logger = logger
    }

    /// A name for this process in the lease table: host, pid and a random part (a restarted process
    /// is a new holder, so it never mistakes its predecessor's lease for its own).
    public static func defaultHolder() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host):\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
    }

    public var isHeld: Bool {
        grant.withLock { g in
            guard let g else { return false }
            return ContinuousClock.now < g.until
        }
    }

    /// The term this server believes it holds, for the append's fence.
    var grantedTerm: Int64? {
        grant.withLock { g in
            guard let g, ContinuousClock.now < g.until else { return nil }
            return g.term
        }
    }

    /// The append found the lease gone: stop believing in it at once.
    func lost() {
        grant.withLock { $0 = nil }
    }

    /// Gives the lease up and does not try to take it again for two lease lengths, so a healthy
    /// server gets it (the sequencer calls this when it holds the lease but cannot sequence).
    public func standDown(because reason: String) {
        serial.lock()
        defer { serial.unlock() }
        guard isHeld else { return }
        logger.error("standing down as sequencer", metadata: ["reason": "\(reason)"])
        restingUntil.withLock { $0 = ContinuousClock.now + duration * 2 }
        releaseHeld()
    }

    /// This server's clock minus the database's, in milliseconds (one round trip, halved).
    private func clockDifference() throws -> Int64 {
        let before = Date().timeIntervalSince1970
        let rows = try session.query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
        let after = Date().timeIntervalSince1970
        guard let database = try rows.first?.decode(Int64.self) else { throw StoreError.storage("the database did not tell its time") }
        return Int64((before + after) / 2 * 1000) - database
    }

    /// One attempt: renews the lease if held, takes it if free or expired. Returns whether held.
    @discardableResult
    public func attempt() -> Bool {
        serial.lock()
        defer { serial.unlock() }
        let started = ContinuousClock.now
        let millis = Self.milliseconds(duration)
        let current = grant.withLock { $0?.term }
        do {
            let rows: [PostgresRow]
            if current == nil {
                if let until = restingUntil.withLock({ $0 }), ContinuousClock.now < until { return false }
                let difference = try clockDifference()
                let allowed = maxClockDifference.components.seconds * 1000 + maxClockDifference.components.attoseconds / 1_000_000_000_000_000
                guard abs(difference) <= allowed else {
                    if !saidClock.exchange(true, ordering: .relaxed) {
                        logger.error("not taking the sequencer lease: this server's clock is \(difference) ms off the database's (at most \(allowed) ms): fix its time sync")
                    }
                    return false
                }
                saidClock.store(false, ordering: .relaxed)
            }
            if let term = current {
                rows = try session.query("""
                    UPDATE sequencer_lease SET expires_at = clock_timestamp() + \(millis) * interval '1 millisecond'
                    WHERE id = 1 AND holder = \(holder) AND term = \(term) RETURNING term
                    """)
            } else {
                rows = try session.query("""
                    UPDATE sequencer_lease SET holder = \(holder), term = term + 1,
                        expires_at = clock_timestamp() + \(millis) * interval '1 millisecond'
                    WHERE id = 1 AND expires_at < clock_timestamp() RETURNING term
                    """)
            }
            if let term = try rows.first?.decode(Int64.self) {
                // Believed for less than the database grants, measured from before the request left:
                // the margin covers the round trip and clock-rate differences.
                let until = started + duration - max(duration / 3, .milliseconds(300))
                grant.withLock { $0 = Grant(term: term, until: until) }
                if current == nil { logger.notice("this server now sequences (lease taken)", metadata: ["term": "\(term)", "holder": "\(holder)"]) }
                return true
            }
            if current != nil { logger.error("the sequencer lease passed to another server; publishes here now answer 503") }
            grant.withLock { $0 = nil }
            return false
        } catch {
            if case .storage(let m)? = error as? StoreError, m.contains("25006") || m.contains("read-only") {
                // A standby: expected, said once (it may be promoted, and then takes the lease).
                if !saidStandby.exchange(true, ordering: .relaxed) {
                    logger.notice("the database is a read-only standby: this server serves reads only")
                }
                return false
            }
            // Unreachable database: keep the belief until it runs out by itself (`isHeld`'s clock);
            // the append's fence refuses anything written after the database's expiry anyway.
            logger.warning("cannot renew or take the sequencer lease", metadata: ["error": "\(error)"])
            return isHeld
        }
    }

    /// Renews or tries to take the lease until graceful shutdown, then releases it if held, so a
    /// standby takes over at once instead of after the expiry. Run it after the sequencer stops (a
    /// background service of the application), so a release never precedes the last append.
    public func run() async throws {
        let period = duration / 6
        await DedicatedThread.run(name: "keyglass-lease", loop: { [self] in
            while !stopping.load(ordering: .acquiring) {
                attempt()
                _ = wake.wait(timeout: .now() + .milliseconds(Int(Self.milliseconds(period))))
            }
            release()
        }, stop: { [self] in
            stopping.store(true, ordering: .releasing)
            wake.signal()
        })
    }

    /// Gives the lease up (graceful stop): expires it now if this server still holds it.
    public func release() {
        serial.lock()
        defer { serial.unlock() }
        releaseHeld()
    }

    private func releaseHeld() {
        guard let term = grant.withLock({ g -> Int64? in defer { g = nil }; return g?.term }) else { return }
        _ = try? session.query("""
            UPDATE sequencer_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = \(holder) AND term = \(term)
            """)
        logger.notice("sequencer lease released")
    }

    func close() { session.close() }

    private static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
