import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KeyglassCore
import Synchronization

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
}

/// Talks to a Keyglass log over HTTP. Returns what the log said, parsed but NOT verified: callers
/// (lookup, publish, audit) verify every answer before trusting it.
///
/// GETs of an http:// log go through `PipelinedHTTPClient` (NIO), whose deadlines and size caps
/// hold whatever the server does; other requests, and https:// logs, through URLSession, bounded by
/// the same deadline (`withDeadline`) and checked for size once read.
public struct LogClient: Sendable {
    public let base: URL
    public let limits: HTTPLimits
    private let session: URLSession
    private let http: PipelinedHTTPClient?

    public init(base: URL, timeout: TimeInterval = 30, limits: HTTPLimits? = nil) {
        var b = base.absoluteString
        while b.hasSuffix("/") { b.removeLast() }
        self.base = URL(string: b)!
        var l = limits ?? HTTPLimits()
        if limits == nil { l.requestTimeout = .milliseconds(Int64(timeout * 1000)) }
        self.limits = l
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = Double(l.requestTimeout.components.seconds) + 1
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.httpMaximumConnectionsPerHost = 16
        self.session = URLSession(configuration: config)
        self.http = PipelinedHTTPClient(base: self.base, connections: 1, limits: l)
    }

    /// One request through URLSession, as it was sent (tests use it to send odd requests).
    public func raw(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, Data) {
        let (status, _, data) = try await rawResponse(method, path, body: body, headers: headers)
        return (status, data)
    }

    /// As `raw`, with the answer's header fields (names lower-cased).
    public func rawResponse(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: String], Data) {
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

    /// GET expecting 200; any other status is `ClientError.http` with the log's message. Network
    /// errors, timeouts, 5xx and 429 are tried again (`limits.attempts`, with back-off).
    public func get(_ path: String) async throws -> Data {
        var wait = limits.backoff
        var attempt = 1
        while true {
            do {
                return try await getOnce(path)
            } catch let e as ClientError where e.isLogNotAnswering && attempt < limits.attempts {
                attempt += 1
                try await Task.sleep(for: wait)
                wait *= 2
            }
        }
    }

    private func getOnce(_ path: String) async throws -> Data {
        let (status, data): (Int, Data)
        if let http {
            let answer = try await http.get(path)
            (status, data) = (answer.status, Data(answer.body.readableBytesView))
        } else {
            (status, data) = try await raw("GET", path)
        }
        guard status == 200 else { throw ClientError.http(status: status, message: Self.message(data)) }
        return data
    }

    static func message(_ data: Data) -> String {
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let m = obj["message"] as? String { return m }
        return String(decoding: data.prefix(200), as: UTF8.self)
    }

    func getJSON<T: Decodable>(_ path: String, as: T.Type) async throws -> T {
        let data = try await get(path)
        do { return try JSONDecoder().decode(T.self, from: data) } catch { throw ClientError.malformed("\(path): \(error)") }
    }

    // MARK: Endpoints

    public func checkpoint() async throws -> String { String(decoding: try await get("/checkpoint"), as: UTF8.self) }

    public func logInfo() async throws -> LogInfo { try await getJSON("/v1/log", as: LogInfo.self) }

    public func publish(_ request: PublishRequestBody, token: String?) async throws -> PublishAnswer {
        var headers = ["Content-Type": "application/json"]
        if let t = token { headers["Authorization"] = "Bearer \(t)" }
        let body = try JSONEncoder().encode(request)
        let (status, data) = try await raw("POST", "/v1/keys", body: body, headers: headers)
        guard status == 200 else { throw ClientError.http(status: status, message: Self.message(data)) }
        do { return try JSONDecoder().decode(PublishAnswer.self, from: data) } catch { throw ClientError.malformed("publish answer: \(error)") }
    }

    /// An identity's history, newest entries first cut at the server's limit; `before` and
    /// `treeSize` page back through older entries against the same checkpoint.
    public func keys(identity: String, before: UInt64? = nil, treeSize: UInt64? = nil) async throws -> KeysAnswer {
        let escaped = identity.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#%;"))) ?? identity
        var query: [String] = []
        if let before { query.append("before=\(before)") }
        if let treeSize { query.append("tree_size=\(treeSize)") }
        return try await getJSON("/v1/keys/\(escaped)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: KeysAnswer.self)
    }

    public func inclusionProof(index: UInt64, treeSize: UInt64) async throws -> [Hash] {
        try Self.hashes(try await getJSON("/v1/proof/inclusion?index=\(index)&tree_size=\(treeSize)", as: InclusionAnswer.self).proof)
    }

    public func consistencyProof(from: UInt64, to: UInt64) async throws -> [Hash] {
        try Self.hashes(try await getJSON("/v1/proof/consistency?from=\(from)&to=\(to)", as: ConsistencyAnswer.self).proof)
    }

    public func entries(start: UInt64, end: UInt64) async throws -> EntriesAnswer {
        try await getJSON("/v1/entries?start=\(start)&end=\(end)", as: EntriesAnswer.self)
    }

    /// An entry bundle (c2sp.org/tlog-tiles), split into entries.
    public func entryBundle(index: UInt64, partial: UInt64) async throws -> [[UInt8]] {
        let data = try await get("/" + TileLayout.entriesPath(index: index, partial: partial))
        guard let entries = EntryBundle.decode([UInt8](data)) else { throw ClientError.malformed("entry bundle \(index)") }
        let want = partial == 0 ? TileLayout.width : partial
        guard entries.count == want else { throw ClientError.malformed("entry bundle \(index) has \(entries.count) entries, expected \(want)") }
        return entries
    }

    static func hashes(_ list: [String]) throws -> [Hash] {
        try list.map { s in
            guard let h = Hash(base64: s) else { throw ClientError.malformed("proof hash is not base64 of 32 bytes") }
            return h
        }
    }
}

/// Runs `operation`, or throws `ClientError.timeout` once `limit` has passed, whichever is first.
/// Returns at the deadline even if the operation ignores cancellation (URLSession on Linux may):
/// the operation is cancelled and left to end on its own.
func withDeadline<T: Sendable>(_ limit: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
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

// MARK: Wire types (Spec/openapi.yaml)

public struct PublishRequestBody: Codable, Sendable {
    public var identity: String
    public var key_type: String
    public var public_key: String
    public var signature: String?
    public var previous_index: UInt64?
    public var revocation: Bool?

    public init(identity: String, key_type: String, public_key: String, signature: String? = nil, previous_index: UInt64? = nil, revocation: Bool? = nil) {
        self.identity = identity
        self.key_type = key_type
        self.public_key = public_key
        self.signature = signature
        self.previous_index = previous_index
        self.revocation = revocation
    }
}

public struct PublishAnswer: Codable, Sendable {
    public let index: UInt64
    public let leaf_hash: String
    public let entry: String
    public let tree_size: UInt64
    public let checkpoint: String
    public let inclusion_proof: [String]
}

public struct EntryAnswer: Codable, Sendable {
    public let index: UInt64
    public let entry: String
    public let leaf_hash: String
    public let inclusion_proof: [String]?
}

public struct KeysAnswer: Codable, Sendable {
    public let identity: String
    public let tree_size: UInt64
    public let checkpoint: String
    public let entries: [EntryAnswer]
    /// Older entries exist (servers before paging leave it out).
    public let truncated: Bool?
}

public struct InclusionAnswer: Codable, Sendable {
    public let index: UInt64
    public let tree_size: UInt64
    public let leaf_hash: String
    public let proof: [String]
}

public struct ConsistencyAnswer: Codable, Sendable {
    public let from: UInt64
    public let to: UInt64
    public let proof: [String]
}

public struct EntriesAnswer: Codable, Sendable {
    public let start: UInt64
    public let end: UInt64
    public let entries: [EntryAnswer]
}

public struct LogInfo: Codable, Sendable {
    public let origin: String
    public let verifier_key: String
    public let tree_size: UInt64
    public let root_hash: String
    public let checkpoint: String
}
