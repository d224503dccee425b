import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

/// One HTTP request at a time through URLSession, bounded by `HTTPLimits`: the whole request by
/// the deadline (`withDeadline`, which returns even if URLSession ignores cancellation) and the
/// answer by the size cap, counted as the bytes arrive (`CappedBodies`): a server cannot make the
/// client hold more than the cap, however fast it sends. For requests the NIO client
/// (`PipelinedHTTPClient`) does not make: other methods than GET, and https.
public struct HTTPRequester: Sendable {
    public let base: URL
    public let limits: HTTPLimits
    private let session: URLSession
    private let bodies: CappedBodies

    public init(base: URL, limits: HTTPLimits) {
        self.base = base
        self.limits = limits
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = Double(limits.requestTimeout.components.seconds) + 1
        config.timeoutIntervalForResource = Double(limits.requestTimeout.components.seconds) + 1
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.httpMaximumConnectionsPerHost = 16
        bodies = CappedBodies(cap: limits.maxBodyBytes)
        session = URLSession(configuration: config, delegate: bodies, delegateQueue: nil)
    }

    /// Sends `method path` with `body` and `headers`; the status, header fields (names lower-cased)
    /// and body as they came.
    public func send(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: String], Data) {
        guard let url = URL(string: base.absoluteString + path) else { throw ClientError.malformed("bad URL path \(path)") }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.httpBody = body
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        let (session, request, bodies) = (session, req, bodies)
        let (status, fields, data): (Int, [String: String], Data) = try await withDeadline(limits.requestTimeout, "\(method) \(url.absoluteString)") {
            let task = session.dataTask(with: request)
            let (data, response): (Data, URLResponse) = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    bodies.expect(task) { continuation.resume(with: $0) }
                    task.resume()
                }
            } onCancel: {
                task.cancel()
            }
            guard let http = response as? HTTPURLResponse else { throw ClientError.network("not an HTTP response") }
            var fields: [String: String] = [:]
            for (k, v) in http.allHeaderFields { fields["\(k)".lowercased()] = "\(v)" }
            return (http.statusCode, fields, data)
        }
        return (status, fields, data)
    }
}

/// Collects each URLSession task's answer and stops it the moment it passes the size cap (a
/// declared Content-Length over it stops it before any body is read). One per session; tasks are
/// told apart by identifier. Sendable: the only mutable state is behind the mutex.
final class CappedBodies: NSObject, URLSessionDataDelegate, Sendable {
    private struct Pending {
        var data = Data()
        var response: URLResponse?
        var failure: Error?
        let done: @Sendable (Result<(Data, URLResponse), Error>) -> Void
    }

    private let cap: Int
    private let pending = Mutex<[Int: Pending]>([:])

    init(cap: Int) { self.cap = cap }

    /// `done` is called once, when the task ends.
    func expect(_ task: URLSessionDataTask, done: @escaping @Sendable (Result<(Data, URLResponse), Error>) -> Void) {
        pending.withLock { $0[task.taskIdentifier] = Pending(done: done) }
    }

    private func overCap(_ task: URLSessionTask, _ bytes: Int64) {
        let url = task.originalRequest?.url?.absoluteString ?? "?"
        pending.withLock { $0[task.taskIdentifier]?.failure = ClientError.malformed("\(url): answer of \(bytes) bytes or more is over the limit of \(cap)") }
        task.cancel()
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        if response.expectedContentLength > Int64(cap) {
            overCap(dataTask, response.expectedContentLength)
            completionHandler(.cancel)
            return
        }
        pending.withLock { $0[dataTask.taskIdentifier]?.response = response }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let total = pending.withLock { p -> Int in
            guard var entry = p[dataTask.taskIdentifier], entry.failure == nil else { return 0 }
            entry.data.append(data)
            p[dataTask.taskIdentifier] = entry
            return entry.data.count
        }
        if total > cap { overCap(dataTask, Int64(total)) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let entry = pending.withLock({ $0.removeValue(forKey: task.taskIdentifier) }) else { return }
        if let failure = entry.failure { return entry.done(.failure(failure)) }
        if let error {
            let url = task.originalRequest?.url?.absoluteString ?? "?"
            return entry.done(.failure(ClientError.network("\(task.originalRequest?.httpMethod ?? "GET") \(url): \(error.localizedDescription)")))
        }
        guard let response = entry.response ?? task.response else { return entry.done(.failure(ClientError.network("no answer"))) }
        entry.done(.success((entry.data, response)))
    }
}
