import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request at a time through URLSession, bounded by `HTTPLimits`: the whole request by
/// the deadline (`withDeadline`, which returns even if URLSession ignores cancellation) and the
/// answer by the size cap, checked once read. For requests the NIO client (`PipelinedHTTPClient`)
/// does not make: other methods than GET, and https.
public struct HTTPRequester: Sendable {
    public let base: URL
    public let limits: HTTPLimits
    private let session: URLSession

    public init(base: URL, limits: HTTPLimits) {
        self.base = base
        self.limits = limits
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = Double(limits.requestTimeout.components.seconds) + 1
        config.timeoutIntervalForResource = Double(limits.requestTimeout.components.seconds) + 1
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: config)
    }

    /// Sends `method path` with `body` and `headers`; the status, header fields (names lower-cased)
    /// and body as they came.
    public func send(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: String], Data) {
        guard let url = URL(string: base.absoluteString + path) else { throw ClientError.malformed("bad URL path \(path)") }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.httpBody = body
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        let (session, request) = (session, req)
        let (status, fields, data): (Int, [String: String], Data) = try await withDeadline(limits.requestTimeout, "\(method) \(url.absoluteString)") {
            do {
                let (data, response) = try await session.data(for: request)
                guard let http = response as? HTTPURLResponse else { throw ClientError.network("not an HTTP response") }
                var fields: [String: String] = [:]
                for (k, v) in http.allHeaderFields { fields["\(k)".lowercased()] = "\(v)" }
                return (http.statusCode, fields, data)
            } catch let e as ClientError {
                throw e
            } catch {
                throw ClientError.network("\(method) \(url.absoluteString): \(error.localizedDescription)")
            }
        }
        guard data.count <= limits.maxBodyBytes else {
            throw ClientError.malformed("\(method) \(path): answer of \(data.count) bytes is over the limit of \(limits.maxBodyBytes)")
        }
        return (status, fields, data)
    }
}
