import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KeyglassCore
import KeyglassHTTP
import KeyglassWire

/// Talks to a Keyglass log over HTTP. Returns what the log said, parsed but NOT verified: callers
/// (lookup, publish, audit) verify every answer before trusting it.
///
/// GETs of an http:// log go through `PipelinedHTTPClient` (NIO), whose deadlines and size caps
/// hold whatever the server does; other requests, and https:// logs, through URLSession, bounded by
/// the same deadline (`withDeadline`) and checked for size once read.
public struct LogClient: Sendable {
    public let base: URL
    public let limits: HTTPLimits
    private let requester: HTTPRequester
    private let http: PipelinedHTTPClient?

    public init(base: URL, timeout: TimeInterval = 30, limits: HTTPLimits? = nil) {
        var b = base.absoluteString
        while b.hasSuffix("/") { b.removeLast() }
        self.base = URL(string: b)!
        var l = limits ?? HTTPLimits()
        if limits == nil { l.requestTimeout = .milliseconds(Int64(timeout * 1000)) }
        self.limits = l
        self.requester = HTTPRequester(base: self.base, limits: l)
        self.http = PipelinedHTTPClient(base: self.base, connections: 1, limits: l)
    }

    /// One request through URLSession, as it was sent (tests use it to send odd requests).
    public func raw(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, Data) {
        let (status, _, data) = try await rawResponse(method, path, body: body, headers: headers)
        return (status, data)
    }

    /// As `raw`, with the answer's header fields (names lower-cased).
    public func rawResponse(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: String], Data) {
        try await requester.send(method, path, body: body, headers: headers)
    }

    /// GET expecting 200; any other status is `ClientError.http` with the log's message. Network
    /// errors, timeouts, 5xx and 429 are tried again (`limits.attempts`, with back-off).
    public func get(_ path: String) async throws -> Data {
        try await limits.retrying { try await getOnce(path, headers: [:]) }
    }

    /// As `get`, with header fields (a credential).
    public func get(_ path: String, headers: [String: String]) async throws -> Data {
        try await limits.retrying { try await getOnce(path, headers: headers) }
    }

    private func getOnce(_ path: String, headers: [String: String]) async throws -> Data {
        let (status, data): (Int, Data)
        if let http {
            let answer = try await http.get(path, headers: headers)
            (status, data) = (answer.status, Data(answer.body.readableBytesView))
        } else {
            (status, data) = try await raw("GET", path, headers: headers)
        }
        guard status == 200 else { throw ClientError.http(status: status, message: Self.message(data)) }
        return data
    }

    /// The `error` code of an error answer's JSON body.
    static func errorCode(_ data: Data) -> String? {
        (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? String
    }

    public static func message(_ data: Data) -> String {
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

    /// Publishes; a `503 not_sequencer` (a server of a shared PostgreSQL log that does not sequence
    /// now, which wrote nothing) is retried after its Retry-After, up to `notSequencerRetries` times:
    /// behind a proxy the retry reaches another server, and a failover takes a few seconds. Other
    /// errors are not retried (a 503 storage_unavailable may follow an append that committed).
    public func publish(_ request: PublishBody, token: String?, notSequencerRetries: Int = 8) async throws -> PublishAnswer {
        var headers = ["Content-Type": "application/json"]
        if let t = token { headers["Authorization"] = "Bearer \(t)" }
        let body = try JSONEncoder().encode(request)
        var (status, answerHeaders, data) = try await rawResponse("POST", "/v1/keys", body: body, headers: headers)
        var retries = 0
        while status == 503, retries < notSequencerRetries, Self.errorCode(data) == "not_sequencer" {
            retries += 1
            let wait = answerHeaders.first { $0.key.lowercased() == "retry-after" }.flatMap { Double($0.value) } ?? 1
            try await Task.sleep(for: .milliseconds(Int(min(max(wait, 0.1), 5) * 1000)))
            (status, answerHeaders, data) = try await rawResponse("POST", "/v1/keys", body: body, headers: headers)
        }
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

