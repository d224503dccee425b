import Foundation
import Hummingbird
import HummingbirdCore
import KeyglassCore
import KeyglassLog
import KeyglassWire
import NIOPosix

/// The body of a successful read answer. Read answers are computed synchronously, so the same code
/// serves both the router and the event-loop fast path (`FastPathHandler`).
struct ReadAnswer: Sendable {
    var contentType: String
    var cache: String
    var body: ByteBuffer
    var status: HTTPResponse.Status = .ok
    /// Further header fields (e.g. Retry-After).
    var headers: HTTPFields = [:]

    static func json(_ writer: JSONObjectWriter) -> ReadAnswer {
        ReadAnswer(contentType: "application/json", cache: "no-cache", body: writer.finish())
    }

    static func json<T: Encodable>(_ value: T) throws -> ReadAnswer {
        ReadAnswer(contentType: "application/json", cache: "no-cache", body: ByteBuffer(bytes: try JSONEncoder.api.encode(value)))
    }

    var response: Response {
        var fields = headers
        fields[.contentType] = contentType
        fields[.cacheControl] = cache
        return Response(status: status, headers: fields, body: .init(byteBuffer: body))
    }
}

extension KeyglassAPI {
    func inclusionProof(_ query: Query) throws -> ReadAnswer {
        let size = try query.requiredUInt64("tree_size")
        let indexParam = try query.uint64("index")
        let leafParam = query.string("leaf_hash")
        guard (indexParam == nil) != (leafParam == nil) else { throw APIError.badRequest("give exactly one of index and leaf_hash") }
        try requireCheckpointSize(size, name: "tree_size")
        let index: UInt64
        if let i = indexParam {
            guard i < size else { throw APIError.badRequest("index \(i) is not below tree_size \(size)") }
            index = i
        } else {
            guard let h = Hash(base64: leafParam!) else { throw APIError.badRequest("leaf_hash must be base64 of 32 bytes") }
            guard let i = try store.index(ofLeafHash: h, below: size) else { throw APIError.notFound("no entry with that leaf hash in the tree of size \(size)") }
            index = i
        }
        let (leaf, proof) = try store.inclusionProofWithLeaf(index: index, size: size)
        var json = JSONObjectWriter()
        json.field("index", number: index)
        json.field("leaf_hash", base64: leaf)
        json.field("proof", base64: proof)
        json.field("tree_size", number: size)
        return .json(json)
    }

    func consistencyProof(_ query: Query) throws -> ReadAnswer {
        let from = try query.requiredUInt64("from")
        let to = try query.requiredUInt64("to")
        guard from <= to else { throw APIError.badRequest("from (\(from)) must not be greater than to (\(to))") }
        try requireCheckpointSize(to, name: "to")
        try requireCheckpointSize(from, name: "from")
        let proof = try store.consistencyProof(from: from, to: to)
        return try .json(ConsistencyAnswer(from: from, to: to, proof: proof.map(\.base64)))
    }

    func entries(_ request: Request) async throws -> Response {
        let query = Query(request)
        let start = try query.requiredUInt64("start")
        let size = sequencer.latestCheckpoint.size
        let end = try query.uint64("end") ?? min(size, start &+ options.maxPageSize)
        guard start < end else { throw APIError.badRequest("start (\(start)) must be below end (\(end))") }
        guard end <= size else { throw APIError.badRequest("end \(end) is beyond the log's size \(size)") }
        let pageEnd = min(end, start + options.maxPageSize)
        let store = store
        let stored = try await readingStorage { try store.entries(start: start, end: pageEnd) }
        // `EntriesAnswer`'s JSON, written directly as lookups are (`JSONObjectWriter.entryAnswer`).
        var json = JSONObjectWriter()
        json.field("end", number: pageEnd)
        json.field("entries", objects: stored.map { JSONObjectWriter.entryAnswer($0, proof: nil) })
        json.field("start", number: start)
        return json.response()
    }

    /// GET /v1/keys/<identity>: the identity's history, each entry with an inclusion proof against
    /// one checkpoint, returned with it, so a client verifies everything against one signed head.
    /// At most `maxKeysPerIdentity` entries, the newest; `truncated` says older ones exist, and
    /// `?before=I&tree_size=N` pages back through them against the same checkpoint.
    /// Synchronous and read in two trips to the engine (the entries, then every proof's nodes at
    /// once), so the event loop answers it: lookups of people who exist are the most frequent
    /// request a directory gets.
    func keys(_ uri: URI) throws -> ReadAnswer {
        let identity = try CanonicalPath.identity(in: uri.path, after: "/v1/keys/")
        let query = Query(uri)
        let before = try query.uint64("before")
        let cp = try answeringCheckpoint(treeSize: try query.uint64("tree_size"))
        // On an event loop only short histories: a long one (up to `maxKeysPerIdentity` entries and
        // their proofs, ~1 MB) would hold every other request of that loop, so it goes to the router.
        let onEventLoop = MultiThreadedEventLoopGroup.currentEventLoop != nil
        let limit = onEventLoop ? min(options.maxKeysPerIdentity, Self.eventLoopHistoryLimit + 1) : options.maxKeysPerIdentity
        let stored = try store.entries(identity: identity, below: min(cp.size, before ?? .max), limit: limit)
        if onEventLoop, stored.count > Self.eventLoopHistoryLimit, options.maxKeysPerIdentity > Self.eventLoopHistoryLimit {
            throw LongHistory()
        }
        guard !stored.isEmpty else { throw APIError.notFound("no keys published for \(identity)" + (before.map { " before entry \($0)" } ?? "")) }
        let proofs = try store.inclusionProofs(indices: stored.map(\.index), size: cp.size)
        // The oldest entry returned names an earlier one: the history goes on before this page.
        let truncated = (try? KeyEntry.parse(stored[0].data, keys: .form).previousIndex) != nil
        // `KeysAnswer`'s JSON, written directly (see `JSONObjectWriter.entryAnswer`).
        var json = JSONObjectWriter()
        json.field("checkpoint", string: cp.note)
        json.field("entries", objects: zip(stored, proofs).map { JSONObjectWriter.entryAnswer($0, proof: $1) })
        json.field("identity", string: identity)
        json.field("tree_size", number: cp.size)
        json.field("truncated", bool: truncated)
        return .json(json)
    }

    /// Most entries a lookup answered on the event loop may hold; longer histories are answered by
    /// the router, off the loop (the fast path hands over any request whose handler throws).
    static let eventLoopHistoryLimit = 32

    /// Thrown on the event loop for a history longer than `eventLoopHistoryLimit`: not an error
    /// anyone sees, the router answers instead.
    struct LongHistory: Error {}

    /// The checkpoint a lookup is answered against: the newest (with the witnesses' cosignatures when
    /// they are for it), or the signed checkpoint of the size asked for (paging).
    func answeringCheckpoint(treeSize: UInt64?) throws -> (size: UInt64, note: String) {
        let latest = sequencer.latestCheckpoint
        guard let size = treeSize, size != latest.size else {
            return (latest.size, witnesses?.served(latest) ?? latest.note)
        }
        try requireCheckpointSize(size, name: "tree_size")
        guard let cp = try store.checkpoint(size: size) else { throw APIError.badRequest("no signed checkpoint has tree size \(size)") }
        return (cp.size, cp.note)
    }

    /// c2sp.org/tlog-tiles: hash tiles and entry bundles, immutable once written.
    func tile(path: Substring) throws -> ReadAnswer {
        try Self.tile(path: path, store: store, size: sequencer.latestCheckpoint.size)
    }

    /// A tile of the tree of `size` entries in `store` (v1 logs and v2 directories alike).
    static func tile(path: Substring, store: LogStore, size: UInt64) throws -> ReadAnswer {
        guard path.hasPrefix("/tile/") else { throw APIError.badRequest("malformed tile path") }
        let rest = path.dropFirst("/tile/".count)
        guard let slash = rest.firstIndex(of: "/") else {
            throw APIError.badRequest("malformed tile path")
        }
        let coordinate: TileLayout.Coordinate
        do { coordinate = try TileLayout.parse(level: rest[..<slash], index: rest[rest.index(after: slash)...]) } catch {
            throw APIError.badRequest(error.description)
        }
        let width = coordinate.partial == 0 ? TileLayout.width : coordinate.partial
        let (start, o1) = coordinate.index.multipliedReportingOverflow(by: TileLayout.width)
        let (end, o2) = start.addingReportingOverflow(width)
        let levelBits = UInt64(coordinate.level ?? 0) * UInt64(TileLayout.height)
        let available = TileLayout.hashCount(level: coordinate.level ?? 0, treeSize: size)
        guard !o1, !o2, end <= available else { throw APIError.notFound("tile not available in the tree of size \(size)") }
        let body: [UInt8]
        if coordinate.level == nil {
            body = try store.entryBundle(start: start, end: end)
        } else {
            body = try store.levelHashes(level: UInt8(levelBits), start: start, count: width)
        }
        let cache = coordinate.partial == 0 ? "public, max-age=31536000, immutable" : "public, max-age=3600"
        return ReadAnswer(contentType: "application/octet-stream", cache: cache, body: ByteBuffer(bytes: body))
    }
}
