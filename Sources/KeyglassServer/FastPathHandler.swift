import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import KeyglassLog
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What an API gives `FastPathHandler`: which requests it may answer on the event loop, and how.
/// Every method must be quick and never wait (no lock held across a commit, no network): it runs on
/// the connection's event loop. Any request it declines goes to the router, which answers it and
/// its errors as before.
protocol FastPathAPI: Sendable {
    /// What a started POST hands back (from any thread) to be answered on the event loop.
    associatedtype Posted: Sendable
    /// Largest body a request answered here may carry (larger ones go to the router: 413).
    var fastPathMaxBodyBytes: Int { get }
    /// Whether to hold this request for the fast path, judged on its head alone.
    func isFast(_ head: HTTPRequest) -> Bool
    /// The answer to a held GET, or nil to let the router answer (including every error).
    func fastRead(_ head: HTTPRequest, client: SocketAddress?) -> ReadAnswer?
    /// Starts a held POST; false lets the router answer. Once started, `done` is called exactly
    /// once, on any thread, and `answer(_:)` then runs on the event loop.
    func startFastPost(_ head: HTTPRequest, body: ByteBuffer, done: @escaping @Sendable (Posted) -> Void) -> Bool
    /// The answer to a finished POST.
    func answer(_ posted: Posted) -> ReadAnswer
}

/// Answers the hot requests — for a v1 log proofs, tiles, the checkpoint, and publishes with the
/// operator token; for a directory its lookups and the operator's changes — right on the
/// connection's event loop.
///
/// Through Hummingbird's router every request crosses from the event loop to Swift's task pool and
/// back; on two cores those hops, not the work, were the largest cost of a proof (measured with
/// perf: ~22k proofs/s against ~46k trivial requests/s). Reads are synchronous and short — a few
/// B-tree lookups, most tree levels from memory (`UpperTreeCache`) — so running them on the event
/// loop is cheaper than hopping. A publish is checked on the event loop and queued with the
/// sequencer, whose writer thread calls back once the batch is committed; the answer is written
/// from the event loop. Every answer is computed by the same functions the router uses
/// (`KeyglassAPI.inclusionProof`, `preparePublish`, …), so both paths give identical bytes.
///
/// Anything else, and any request that fails before it is queued (bad input, not found, rate
/// limited, body too large), goes on to the router unchanged, which answers it and its error as
/// before. HTTP/1 answers must keep their order: a request is handled here only when no earlier
/// one on the connection is still with the router, and while a publish waits for its commit,
/// later requests on that connection wait too (reading from the socket pauses). Sits after
/// Hummingbird's connection-state handler, so idle timeouts and `Connection: close` see every
/// request.
final class FastPathHandler<API: FastPathAPI>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let api: API
    /// A request this handler may answer, held until its end arrives, with its body so far.
    private var held: HTTPRequest?
    private var heldBody: ByteBuffer?
    /// Requests passed to the router whose responses have not been written completely.
    private var withRouter = 0
    /// A POST (a publish) waiting for its commit; parts that arrive meanwhile wait in `waiting`.
    private var posting = false
    /// The request being answered asked for `Connection: close` (Hummingbird closes after such a
    /// request's response; so does this path).
    private var closeAfterAnswer = false
    private var waiting: [HTTPRequestPart] = []
    /// An error from the decoder (e.g. the stream ended mid-request) and the end of the client's
    /// input that arrived behind `waiting`: passed on after them, so that neither the router's
    /// answer to the error nor its closing of the connection comes before the publish's answer.
    private var waitingError: Error?
    private var waitingInputClosed = false
    /// Reading from the socket is paused because a pipelined request arrived behind a publish.
    private var readingPaused = false
    /// The router's answer being written says `Connection: close`: close once it is written.
    private var closeAfterRouterAnswer = false

    init(api: API) {
        self.api = api
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if posting {
            waiting.append(part)
            // Only a client that pipelines sends more before its answer; stop reading from it until
            // the publish is answered (most clients never get here, so most publishes cost no
            // change of the socket's read interest).
            if !readingPaused {
                readingPaused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            }
        } else {
            handle(part, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if posting {
            waitingError = waitingError ?? error
            return
        }
        // A request held here when the stream breaks (the client closed mid-body) goes to the
        // router with what arrived, ahead of the error, so it answers it as any broken body (400).
        passHeldToRouter(context)
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if posting, case ChannelEvent.inputClosed = event {
            waitingInputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            if withRouter == 0, api.isFast(head) {
                held = head
                heldBody = head.method == .post ? context.channel.allocator.buffer(capacity: 256) : nil
                return
            }
            withRouter += 1
            context.fireChannelRead(wrapInboundOut(part))
        case .body(var chunk):
            if held != nil, heldBody != nil, heldBody!.readableBytes + chunk.readableBytes <= api.fastPathMaxBodyBytes {
                heldBody!.writeBuffer(&chunk)
                return
            }
            // A GET with a body, or a body over the limit: the router answers (413 for the latter).
            passHeldToRouter(context)
            context.fireChannelRead(wrapInboundOut(part))
        case .end:
            guard let head = held else {
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            let body = heldBody
            held = nil
            heldBody = nil
            closeAfterAnswer = head.headerFields[.connection]?.lowercased().contains("close") ?? false
            if head.method == .get, let answer = api.fastRead(head, client: context.channel.remoteAddress) {
                write(answer, context: context)
                return
            }
            if head.method == .post, let body, startPost(head, body: body, context: context) {
                return
            }
            withRouter += 1
            context.fireChannelRead(wrapInboundOut(.head(head)))
            if let body, body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    private func passHeldToRouter(_ context: ChannelHandlerContext) {
        guard let head = held else { return }
        let body = heldBody
        held = nil
        heldBody = nil
        withRouter += 1
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if let body, body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
    }

    /// Starts a POST the API takes; while it waits, later parts on this connection wait too.
    private func startPost(_ head: HTTPRequest, body: ByteBuffer, context: ChannelHandlerContext) -> Bool {
        let loop = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // The answer always comes back through `execute`, so after this function has returned.
        let started = api.startFastPost(head, body: body) { posted in
            loop.eventLoop.execute {
                let (handler, context) = loop.value
                handler.finishPost(posted, context: context)
            }
        }
        if started { posting = true }
        return started
    }

    private func finishPost(_ posted: API.Posted, context: ChannelHandlerContext) {
        posting = false
        let answer = api.answer(posted)
        write(answer, context: context)
        guard context.channel.isActive else { return }
        let replaying = !waiting.isEmpty
        while !posting, !waiting.isEmpty {
            handle(waiting.removeFirst(), context: context)
        }
        // The async channel behind us buffers what it is handed until a read completes, and the
        // socket read that brought these parts completed long ago: without this, requests
        // replayed to the router waited for the client's next bytes (observed: 70 s).
        if replaying { context.fireChannelReadComplete() }
        if !posting, let error = waitingError {
            waitingError = nil
            errorCaught(context: context, error: error)
        }
        if !posting, waitingInputClosed {
            waitingInputClosed = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        if readingPaused, !posting {
            readingPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
    }

    private func write(_ answer: ReadAnswer, context: ChannelHandlerContext) {
        var fields = answer.headers
        fields[.contentType] = answer.contentType
        fields[.cacheControl] = answer.cache
        fields[.contentLength] = String(answer.body.readableBytes)
        fields[.date] = HTTPDate.now()
        fields[.server] = KeyglassAPI.serverName
        context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if closeAfterAnswer {
            waiting.removeAll()
            context.close(promise: nil)
        }
    }

    /// The router's answers pass here on their way out.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            // HTTP/1.1: a server that says `Connection: close` closes after that answer (a 413 or a
            // broken request: the rest of the request stream is not read). Hummingbird itself
            // closes only when the request asked.
            if head.headerFields[.connection]?.lowercased() == "close" { closeAfterRouterAnswer = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            if withRouter > 0 { withRouter -= 1 }
            guard closeAfterRouterAnswer else {
                context.write(data, promise: promise)
                return
            }
            context.writeAndFlush(data, promise: promise)
            waiting.removeAll()
            context.close(promise: nil)
        }
    }
}

extension KeyglassAPI: FastPathAPI {
    static let serverName = "keyglass"

    /// Requests the fast path may answer, judged on the head: GETs of the hot read paths, and
    /// publishes carrying the operator token (signed publishes are rate limited by the router).
    func isFast(_ head: HTTPRequest) -> Bool {
        guard let target = head.path else { return false }
        let path = target.prefix { $0 != "?" }
        // The router refuses these before routing (`CanonicalRequestMiddleware`): a path that is
        // not canonical (404), a body declared over the limit (413, before reading it).
        guard CanonicalPath.isCanonical(path), !declaresOversizedBody(head.headerFields, maxBodyBytes: options.maxBodyBytes) else {
            return false
        }
        guard let route = Self.route(head.method, path), route.onEventLoop else { return false }
        // A storage engine across the network must never be waited for on an event loop (a
        // publish's answer reads its inclusion proof too).
        if !store.storage.readsAreLocal { return false }
        // Publishes without the operator token are rate limited by the router (`limitSignedPublish`).
        return head.method != .post || head.headerFields[.authorization] != nil
    }

    var fastPathMaxBodyBytes: Int { options.maxBodyBytes }

    /// A publish checked and queued with the sequencer; false (nothing queued) lets the router
    /// answer, including every error.
    func startFastPost(_ head: HTTPRequest, body: ByteBuffer, done: @escaping @Sendable (Result<PublishReceipt, PublishError>) -> Void) -> Bool {
        let publish: PublishRequest
        do {
            try requireJSON(contentType: head.headerFields[.contentType])
            publish = try preparePublish(body: body, authorization: head.headerFields[.authorization])
        } catch {
            return false
        }
        sequencer.submit(publish, done: done)
        return true
    }

    /// A committed publish's answer (its inclusion proof), or its error's.
    func answer(_ posted: Result<PublishReceipt, PublishError>) -> ReadAnswer {
        switch posted {
        case .success(let receipt):
            do { return try publishAnswer(receipt) } catch {
                logger.error("publish integrated but its answer failed", metadata: ["error": "\(error)"])
                return APIError(.internalServerError, "internal", "the entry was integrated but its proof could not be read; look it up").answer
            }
        case .failure(let e):
            return Self.apiError(e).answer
        }
    }

    /// The answer to a hot read, or nil to let the router answer (including every error).
    func fastRead(_ head: HTTPRequest, client: SocketAddress?) -> ReadAnswer? {
        guard let target = head.path else { return nil }
        if let reads = readLimiter, !reads.allow(client?.ipAddress ?? "unknown") { return nil }
        let uri = URI(target)
        guard let route = Self.route(.get, uri.path[...]), route.onEventLoop, case .read(let answer) = route.handler else { return nil }
        return try? answer(self, uri)
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
