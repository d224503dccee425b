import KeyglassCore
import KeyglassLog
import Dispatch
import Synchronization

/// The real SQLite engine with faults a test switches on: how the sequencer's tests play an
/// engine across a network, whose calls can fail before they write or after they committed.
public final class FaultyStorage: LogStorage {
    public enum AppendFault: Sendable {
        /// The append fails and writes nothing.
        case beforeWrite
        /// The append commits, then reports a failure (the answer to a COMMIT lost on the way back).
        case afterCommit
    }

    public let inner: SQLiteStorage
    private let nextAppend = Mutex<AppendFault?>(nil)
    private let failNextNewestEntries = Mutex(false)
    private let appendCount = Mutex(0)
    /// How many appends were tried, failed ones included.
    public var appendCalls: Int { appendCount.withLock { $0 } }

    public init(_ inner: SQLiteStorage) { self.inner = inner }

    /// The next `append` fails as `fault` says (once).
    public func failNextAppend(_ fault: AppendFault) { nextAppend.withLock { $0 = fault } }
    /// The next `newestEntries` fails (once).
    public func failNextLookup() { failNextNewestEntries.withLock { $0 = true } }

    public struct InjectedFault: Error, CustomStringConvertible {
        public let description: String
    }

    public var readsAreLocal: Bool { inner.readsAreLocal }
    public var maxSize: UInt64 { inner.maxSize }

    public func initialise(first: StoredCheckpoint, origin: String, signedAtMillis: UInt64) throws {
        try inner.initialise(first: first, origin: origin, signedAtMillis: signedAtMillis)
    }

    public func newestEntries(of identities: Set<String>) throws -> [String: UInt64] {
        if failNextNewestEntries.withLock({ flag in defer { flag = false }; return flag }) { throw InjectedFault(description: "injected: lookup failed") }
        return try inner.newestEntries(of: identities)
    }

    /// While held, appends block (the writer sits in a commit, as behind a stalled disk), so
    /// publishes queue up: a test of the full queue needs no race with the writer.
    private let hold = DispatchSemaphore(value: 1)
    public func holdAppends() { hold.wait() }
    public func releaseAppends() { hold.signal() }

    public func append(_ batch: SequencedBatch) throws {
        appendCount.withLock { $0 += 1 }
        hold.wait()
        hold.signal()
        switch nextAppend.withLock({ fault in defer { fault = nil }; return fault }) {
        case .beforeWrite?: throw InjectedFault(description: "injected: append failed before writing")
        case .afterCommit?:
            try inner.append(batch)
            throw InjectedFault(description: "injected: append committed, answer lost")
        case nil: try inner.append(batch)
        }
    }

    public func replaceNote(size: UInt64, root: Hash, note: String) throws { try inner.replaceNote(size: size, root: root, note: note) }
    public func entryCount() throws -> UInt64 { try inner.entryCount() }
    public func latestCheckpoint() throws -> StoredCheckpoint? { try inner.latestCheckpoint() }
    public func checkpoint(size: UInt64) throws -> StoredCheckpoint? { try inner.checkpoint(size: size) }
    public func checkpointCount() throws -> UInt64 { try inner.checkpointCount() }
    public func nodeHashes(_ ids: [NodeID]) throws -> [Hash] { try inner.nodeHashes(ids) }
    public func levelHashes(level: UInt8, start: UInt64, count: UInt64) throws -> [UInt8] {
        try inner.levelHashes(level: level, start: start, count: count)
    }
    public func entries(start: UInt64, end: UInt64) throws -> [StoredEntry] { try inner.entries(start: start, end: end) }
    public func entryBundle(start: UInt64, end: UInt64) throws -> [UInt8] { try inner.entryBundle(start: start, end: end) }
    public func entries(identity: String, below size: UInt64, limit: Int) throws -> [StoredEntry] {
        try inner.entries(identity: identity, below: size, limit: limit)
    }
    public func index(ofLeafHash hash: Hash, below size: UInt64) throws -> UInt64? { try inner.index(ofLeafHash: hash, below: size) }
    public func close() { inner.close() }
}

/// A clock a test sets and steps (milliseconds since the Unix epoch), for `Sequencer.Options.clock`.
public final class SteppedClock: Sendable {
    private let millis: Mutex<UInt64>
    public init(_ start: UInt64) { millis = Mutex(start) }
    public var now: UInt64 { millis.withLock { $0 } }
    public func set(_ value: UInt64) { millis.withLock { $0 = value } }
    public func advance(by ms: UInt64) { millis.withLock { $0 += ms } }
    public var function: @Sendable () -> UInt64 { { [self] in now } }
}
