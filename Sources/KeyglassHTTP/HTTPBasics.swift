import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

/// What a client learns when a request does not give it a usable answer.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    /// Could not reach the log or read its answer.
    case network(String)
    /// The log answered with an error status.
    case http(status: Int, message: String)
    /// The log's answer is not in the promised format (or over the size limit).
    case malformed(String)
    /// The log did not answer completely within the request's deadline.
    case timeout(String)

    /// The log did not answer usefully: unreachable, too slow, or failing on its side (5xx, 429).
    /// Commands exit 3 for these, so a cron job can tell "the log stopped answering" from bad input.
    public var isLogNotAnswering: Bool {
        switch self {
        case .network, .timeout: return true
        case let .http(status, _): return status >= 500 || status == 429
        case .malformed: return false
        }
    }

    public var description: String {
        switch self {
        case let .timeout(m): return "timed out: \(m)"
        case let .network(m): return "network error: \(m)"
        case let .http(s, m): return "log answered \(s): \(m)"
        case let .malformed(m): return "malformed answer from the log: \(m)"
        }
    }
}

/// How long a client waits for one answer, how large an answer may be, and how often a GET is
/// tried. A log is not trusted to answer at all: these bound what it can make a client (above all
/// a cron auditor) wait for or hold in memory.
public struct HTTPLimits: Sendable {
    /// Whole-request deadline, from sending to the last byte of the answer.
    public var requestTimeout: Duration = .seconds(30)
    /// The largest answer accepted. The largest honest one is a full entry bundle: 256 entries of at
    /// most 65,535 bytes, each behind a 2-byte length.
    public var maxBodyBytes = 256 * (2 + 65535)
    /// Tries of a GET (network errors, timeouts, 5xx, 429), with back-off doubling from `backoff`.
    public var attempts = 3
    public var backoff: Duration = .milliseconds(250)

    public init() {}

    /// Runs `attempt` up to `attempts` times while it fails because the log is not answering
    /// (network, timeout, 5xx, 429), waiting `backoff`, then twice as long, between tries.
    public func retrying<T>(_ attempt: () async throws -> T) async throws -> T {
        var wait = backoff
        var tries = 1
        while true {
            do {
                return try await attempt()
            } catch let e as ClientError where e.isLogNotAnswering && tries < attempts {
                tries += 1
                try await Task.sleep(for: wait)
                wait *= 2
            }
        }
    }
}

/// Runs `operation`, or throws `ClientError.timeout` once `limit` has passed, whichever is first.
/// Returns at the deadline even if the operation ignores cancellation (URLSession on Linux may):
/// the operation is cancelled and left to end on its own.
public func withDeadline<T: Sendable>(_ limit: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let state = Mutex<(done: Bool, work: Task<Void, Never>?, timer: Task<Void, Never>?)>((false, nil, nil))
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        // Exactly one of the two tasks resumes the continuation; the other is cancelled.
        let finish: @Sendable (Result<T, Error>) -> Void = { result in
            let (first, other) = state.withLock { s -> (Bool, [Task<Void, Never>?]) in
                if s.done { return (false, []) }
                s.done = true
                return (true, [s.work, s.timer])
            }
            guard first else { return }
            other.forEach { $0?.cancel() }
            continuation.resume(with: result)
        }
        let work = Task { do { finish(.success(try await operation())) } catch { finish(.failure(error)) } }
        let timer = Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled { finish(.failure(ClientError.timeout("\(what): no complete answer within \(limit)"))) }
        }
        state.withLock { s in
            if s.done { work.cancel(); timer.cancel() } else { s.work = work; s.timer = timer }
        }
    }
}

