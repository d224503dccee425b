import Foundation
import Hummingbird
import HummingbirdCore
import KeyglassCore

/// A request's query parameters, parsed once (Hummingbird parses `uri.queryParameters` anew on
/// every access).
struct Query {
    let parameters: Parameters

    init(_ request: Request) { parameters = request.uri.queryParameters }
    init(_ uri: URI) { parameters = uri.queryParameters }

    func string(_ name: String) -> String? { parameters.get(name) }

    /// A non-negative decimal query parameter; absent is nil, anything malformed is a 400.
    func uint64(_ name: String) throws -> UInt64? {
        let values = parameters[values: name[...]]
        guard let raw = values.first else { return nil }
        guard values.count == 1 else { throw APIError.badRequest("\(name) is given more than once") }
        guard let v = parseCanonicalDecimal(raw) else {
            throw APIError.badRequest("\(name) must be a non-negative integer without sign or leading zeros, got \"\(raw.prefix(40))\"")
        }
        return v
    }

    func requiredUInt64(_ name: String) throws -> UInt64 {
        guard let v = try uint64(name) else { throw APIError.badRequest("missing query parameter \(name)") }
        return v
    }
}

extension Request {
    /// The path with `prefix` removed, not percent-decoded.
    func pathRemainder(after prefix: String) -> Substring? {
        let path = uri.path
        guard path.hasPrefix(prefix) else { return nil }
        return path.dropFirst(prefix.count)
    }
}

extension Response {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, cache: String = "no-cache") throws -> Response {
        let data = try JSONEncoder.api.encode(value)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: cache],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
