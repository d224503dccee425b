import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// An error the API reports to the client as JSON `{"error": code, "message": text}`.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }

    var answer: ReadAnswer {
        let body = (try? JSONEncoder.api.encode(ErrorBody(error: code, message: message))) ?? Data("{}".utf8)
        return ReadAnswer(contentType: "application/json", cache: "no-store", body: ByteBuffer(bytes: body), status: status, headers: headers)
    }

    func response() -> Response { answer.response }

    struct ErrorBody: Encodable {
        let error: String
        let message: String
    }
}

/// A 415 unless the request says its body is JSON (a v1 publish, a directory's change).
func requireJSON(contentType: String?) throws {
    guard let type = contentType, type.lowercased().hasPrefix("application/json") else {
        throw APIError(.unsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
    }
}

/// Turns every error into a JSON error response. Client mistakes arrive as `APIError` or as
/// Hummingbird's own HTTP errors (unknown route, body too large); anything else is a server fault,
/// logged here and reported without internals.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    /// The methods the API takes on a path (none: not the API's), for 405's Allow.
    var allowedMethods: @Sendable (Substring) -> [String] = { KeyglassAPI.allowedMethods($0) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return e.response()
        } catch is NIOTooManyBytesError {
            return APIError.bodyTooLarge.response()
        } catch let e as HTTPParserError {
            // The request stream broke while a handler read the body: most often the client closed
            // its side before sending the Content-Length it announced. The client's mistake, not a
            // server fault; nothing after it on the connection can be parsed, so close.
            var err = APIError.badRequest(e == .invalidEOFState
                ? "the request ended before the body its Content-Length announced"
                : "malformed HTTP request: \(e.debugDescription)")
            err.headers[.connection] = "close"
            return err.response()
        } catch let e as HTTPResponseError {
            let code: String
            let message: String
            switch e.status {
            case .notFound:
                // A path the API has, asked with another method: 405 and the methods it takes
                // (RFC 9110 §15.5.6), not a 404 that says the resource does not exist.
                let allowed = allowedMethods(request.uri.path[...])
                guard allowed.isEmpty else {
                    var err = APIError(.methodNotAllowed, "method_not_allowed",
                                       "\(request.method) is not allowed on \(request.uri.path); it takes \(allowed.joined(separator: ", "))")
                    err.headers[.allow] = allowed.joined(separator: ", ")
                    return err.response()
                }
                (code, message) = ("not_found", "no such resource: \(request.method) \(request.uri.path)")
            case .contentTooLarge: return APIError.bodyTooLarge.response()
            case .methodNotAllowed: (code, message) = ("method_not_allowed", "\(request.method) is not allowed here")
            default: (code, message) = ("http_error", (e as? HTTPError)?.body ?? e.status.reasonPhrase)
            }
            return APIError(e.status, code, message).response()
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return APIError(.internalServerError, "internal", "internal error").response()
        }
    }
}

extension JSONEncoder {
    static let api: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()
}
