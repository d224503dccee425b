import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Answers the hot reads (proofs, tiles, the checkpoint) right on the connection's event loop.
///
/// Through Hummingbird's router every request crosses from the event loop to Swift's task pool and
/// back; on two cores those hops, not the reads, were the largest cost of a proof (measured with
/// perf: ~22k proofs/s against ~46k trivial requests/s). These reads are synchronous and short — a
/// few B-tree lookups, most tree levels from memory (`UpperTreeCache`) — so running them on the
/// event loop is cheaper than hopping. The answer is computed by the same functions the router
/// uses (`KeyglassAPI.inclusionProof` etc.), so both paths give identical bytes.
///
/// Anything else, and any read that fails (bad input, not found, rate limited), goes on to the
/// router unchanged, which answers it (and its error) as before. To keep HTTP/1 responses in
/// order, a request is answered here only when no earlier request on the connection is still with
/// the router. Sits after Hummingbird's connection-state handler, so idle timeouts and
/// `Connection: close` see these requests too.
final class FastReadHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let api: KeyglassAPI
    /// A GET this handler may answer, held until its end arrives.
    private var held: HTTPRequest?
    /// Requests passed to the router whose responses have not been written completely.
    private var withRouter = 0

    init(api: KeyglassAPI) {
        self.api = api
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if withRouter == 0, head.method == .get, let path = head.path, KeyglassAPI.isFastRead(path) {
                held = head
                return
            }
            withRouter += 1
            context.fireChannelRead(data)
        case .body:
            // A GET with a body is unusual; let the router deal with it.
            passHeldToRouter(context)
            context.fireChannelRead(data)
        case .end:
            if let head = held {
                held = nil
                if let answer = api.fastRead(head, client: context.channel.remoteAddress) {
                    write(answer, context: context)
                    return
                }
                withRouter += 1
                context.fireChannelRead(wrapInboundOut(.head(head)))
            }
            context.fireChannelRead(data)
        }
    }

    private func passHeldToRouter(_ context: ChannelHandlerContext) {
        guard let head = held else { return }
        held = nil
        withRouter += 1
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    private func write(_ answer: ReadAnswer, context: ChannelHandlerContext) {
        var fields = HTTPFields()
        fields[.contentType] = answer.contentType
        fields[.cacheControl] = answer.cache
        fields[.contentLength] = String(answer.body.readableBytes)
        fields[.date] = HTTPDate.now()
        fields[.server] = KeyglassAPI.serverName
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), withRouter > 0 { withRouter -= 1 }
        context.write(data, promise: promise)
    }
}

extension KeyglassAPI {
    static let serverName = "keyglass"

    /// Paths `fastRead` may answer; checked on the request head, before the read.
    static func isFastRead(_ path: String) -> Bool {
        path.hasPrefix("/v1/proof/") || path.hasPrefix("/tile/") || path == "/checkpoint" || path == "/healthz" || path == "/v1/log"
    }

    /// The answer to a hot read, or nil to let the router answer (including every error).
    func fastRead(_ head: HTTPRequest, client: SocketAddress?) -> ReadAnswer? {
        guard let target = head.path else { return nil }
        if let reads = readLimiter, !reads.allow(client?.ipAddress ?? "unknown") { return nil }
        let uri = URI(target)
        do {
            switch uri.path {
            case "/v1/proof/inclusion": return try inclusionProof(Query(uri))
            case "/v1/proof/consistency": return try consistencyProof(Query(uri))
            case "/checkpoint": return checkpoint()
            case "/healthz": return try health()
            case "/v1/log": return try logInfo()
            case let p where p.hasPrefix("/tile/"): return try tile(path: p[...])
            default: return nil
            }
        } catch {
            return nil
        }
    }
}

/// The `Date` header value (RFC 9110 IMF-fixdate), formatted at most once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static func now() -> String {
        let second = Int(Date().timeIntervalSince1970)
        return cache.withLock { c in
            if c.second != second { c = (second, format(second)) }
            return c.text
        }
    }

    static func format(_ second: Int) -> String {
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
