import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KeyglassCore

public enum ClientError: Error, CustomStringConvertible, Equatable {
    /// Could not reach the log or read its answer.
    case network(String)
    /// The log answered with an error status.
    case http(status: Int, message: String)
    /// The log's answer is not in the promised format.
    case malformed(String)

    public var description: String {
        switch self {
        case let .network(m): return "network error: \(m)"
        case let .http(s, m): return "log answered \(s): \(m)"
        case let .malformed(m): return "malformed answer from the log: \(m)"
        }
    }
}

/// Talks to a Keyglass log over HTTP. Returns what the log said, parsed but NOT verified: callers
/// (lookup, publish, audit) verify every answer before trusting it.
public struct LogClient: Sendable {
    public let base: URL
    private let session: URLSession

    public init(base: URL, timeout: TimeInterval = 30) {
        var b = base.absoluteString
        while b.hasSuffix("/") { b.removeLast() }
        self.base = URL(string: b)!
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.httpMaximumConnectionsPerHost = 16
        self.session = URLSession(configuration: config)
    }

    public func raw(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, Data) {
        guard let url = URL(string: base.absoluteString + path) else { throw ClientError.malformed("bad URL path \(path)") }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.httpBody = body
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        do {
            let (data, response) = try await session.data(for: req)
            guard let http = response as? HTTPURLResponse else { throw ClientError.network("not an HTTP response") }
            return (http.statusCode, data)
        } catch let e as ClientError {
            throw e
        } catch {
            throw ClientError.network("\(method) \(url.absoluteString): \(error.localizedDescription)")
        }
    }

    /// GET expecting 200; any other status is `ClientError.http` with the log's message.
    public func get(_ path: String) async throws -> Data {
        let (status, data) = try await raw("GET", path)
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

    public func keys(identity: String) async throws -> KeysAnswer {
        let escaped = identity.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#%"))) ?? identity
        return try await getJSON("/v1/keys/\(escaped)", as: KeysAnswer.self)
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
