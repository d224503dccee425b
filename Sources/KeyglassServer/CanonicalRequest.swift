import HTTPTypes
import Hummingbird
import KeyglassCore

/// One spelling per resource. Hummingbird's router skips empty path segments, so `/v1/keys/`,
/// `//v1/keys` and `/v1//keys` all reached the publish route while a limit that compared the path
/// with "/v1/keys" let them through. Both the router (`CanonicalRequestMiddleware`, before any
/// route or limit) and the fast path (`KeyglassAPI.isFast`) apply this one rule, and refuse what
/// breaks it with a 404: whatever a route, a limit or a cache sees has the one spelling.
enum CanonicalPath {
    /// The routes whose last part is a value rather than a name (`/v1/keys/<identity>`, and a
    /// directory's `/v2/lookup/<identity>` and `/v2/history/<identity>`).
    static let identityPrefixes = ["/v1/keys/", "/v2/lookup/", "/v2/history/"]

    /// True for "/" and for paths of segments that are not empty, not "." or "..", without a
    /// trailing "/" and without percent-encoding, except in the identity after `/v1/keys/`: a
    /// value its handler percent-decodes once, never a routing segment (clients write a "/" that
    /// is part of an identity as %2F).
    static func isCanonical(_ path: Substring) -> Bool {
        // On the bytes (every request pays for this check): a request target is ASCII, and
        // comparing Characters cost a few % of a proof's CPU.
        let bytes = path.utf8
        guard bytes.first == slash else { return false }
        if bytes.count == 1 { return true }
        let valueStart = identityPrefixes.first { bytes.starts(with: $0.utf8) }?.utf8.count ?? Int.max
        var segmentLength = 0
        var segmentIsDots = true
        var offset = 1
        for b in bytes.dropFirst() {
            if b == slash {
                if isDotOrEmpty(segmentLength, segmentIsDots) { return false }
                segmentLength = 0
                segmentIsDots = true
            } else {
                if b == percent && offset < valueStart { return false }
                segmentLength += 1
                if b != dot { segmentIsDots = false }
            }
            offset += 1
        }
        return !isDotOrEmpty(segmentLength, segmentIsDots)
    }

    private static let slash = UInt8(ascii: "/"), percent = UInt8(ascii: "%"), dot = UInt8(ascii: ".")

    /// A segment that is empty, "." or "..".
    private static func isDotOrEmpty(_ length: Int, _ allDots: Bool) -> Bool { length == 0 || (allDots && length <= 2) }

    /// The identity after `prefix` (one of `identityPrefixes`) in `path`, percent-decoded once and
    /// made canonical (Identity.normalize); a 400 when missing or not an identity.
    static func identity(in path: String, after prefix: String) throws -> String {
        let raw = path.dropFirst(prefix.count)
        guard path.hasPrefix(prefix), !raw.isEmpty else { throw APIError.badRequest("missing identity") }
        guard let decoded = percentDecoded(raw) else { throw APIError.badRequest("identity is not valid percent-encoded UTF-8") }
        do { return try Identity.normalize(decoded) } catch { throw APIError.badRequest(error.description) }
    }

    /// `text` percent-decoded once (RFC 3986 §2.1), or nil when a "%" is not followed by two hex
    /// digits or the bytes are not UTF-8: Foundation's `removingPercentEncoding`, without its
    /// cost on every lookup (`CanonicalPathTests` compares the two).
    static func percentDecoded(_ text: Substring) -> String? {
        let bytes = text.utf8
        guard bytes.contains(percent) else { return String(text) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var rest = bytes.makeIterator()
        while let b = rest.next() {
            guard b == percent else {
                out.append(b)
                continue
            }
            guard let high = rest.next().flatMap(Hex.value), let low = rest.next().flatMap(Hex.value) else { return nil }
            out.append(high << 4 | low)
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// Refuses before any route or limit sees the request: a non-canonical path (404, see
/// `CanonicalPath`) and a body declared larger than the limit (413, before any of it is read; the
/// answer says `Connection: close` and `FastPathHandler` closes the connection once it is written,
/// so the rest of such a body is never read either).
struct CanonicalRequestMiddleware: RouterMiddleware {
    typealias Context = KeyglassRequestContext
    let maxBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard CanonicalPath.isCanonical(request.uri.path[...]) else {
            throw APIError.notFound("no such resource: \(request.method) \(request.uri.path) (a path has no empty, \".\" or \"..\" "
                + "segments, no trailing \"/\" and no percent-encoding outside an identity)")
        }
        if declaresOversizedBody(request.headers, maxBodyBytes: maxBodyBytes) { throw APIError.bodyTooLarge }
        return try await next(request, context)
    }
}

/// True when the request's Content-Length is above `maxBodyBytes`. (A length NIO's parser let
/// through but that does not fit 64 bits is over any limit too.)
func declaresOversizedBody(_ fields: HTTPFields, maxBodyBytes: Int) -> Bool {
    guard let value = fields[.contentLength] else { return false }
    guard let length = UInt64(value) else { return !value.isEmpty && value.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    return length > UInt64(maxBodyBytes)
}

extension APIError {
    /// 413 for a body over the limit. The connection is closed after it: the rest of the body is
    /// not read, so nothing after it on the connection could be parsed.
    static var bodyTooLarge: APIError {
        var e = APIError(.contentTooLarge, "too_large", "request body is too large")
        e.headers[.connection] = "close"
        return e
    }
}
