import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// GETs many paths from one plain-HTTP server over a few keep-alive connections, pipelining the
/// requests: the audit's bulk download of entry bundles, and every GET a client makes of an
/// http:// log.
///
/// A log is not trusted to answer at all, so every request has a deadline counted from when it
/// was sent (a server that trickles a byte at a time cannot stretch it) and every answer a size
/// cap (a server cannot make the client buffer gigabytes). Either ends the connection: the
/// requests pipelined behind fail too, and the caller retries them on a new one.
///
/// URLSession on Linux (libcurl under dispatch) spent more CPU per 256-entry bundle — thread
/// switches, mostly — than parsing and hashing the bundle's entries; with it the audit ran at
/// ~650k entries/s, and perf showed the HTTP client as its largest cost. This client answers each
/// request on NIO's event loop with one write and no thread hop. Only for `http://`; other schemes
/// go through `HTTPRequester` (URLSession, bounded the same way).
public final class PipelinedHTTPClient: Sendable {
    private let host: String
    private let port: Int
    private let connections: [Connection]
    private let next = ManagedCounter()

    /// nil unless `base` is an http:// URL with a host.
    public init?(base: URL, connections: Int = 2, limits: HTTPLimits = HTTPLimits()) {
        guard base.scheme?.lowercased() == "http", let host = base.host else { return nil }
        self.host = host
        self.port = base.port ?? 80
        let prefix = base.path.hasSuffix("/") ? String(base.path.dropLast()) : base.path
        self.connections = (0..<max(1, connections)).map { _ in Connection(host: host, port: base.port ?? 80, pathPrefix: prefix, limits: limits) }
    }

    /// GET `path` with `headers` (a credential) besides Host; the status and body as they came.
    public func get(_ path: String, headers: [String: String] = [:]) async throws -> (status: Int, body: ByteBuffer) {
        let c = connections[next.increment() % connections.count]
        return try await c.get(path, headers: headers)
    }

    public func shutdown() async {
        for c in connections { await c.close() }
    }
}

/// A counter shared by tasks (round-robin choice of connection).
private final class ManagedCounter: Sendable {
    private let value = Mutex(0)
    func increment() -> Int { value.withLock { v in v &+= 1; return v & Int.max } }
}

/// One keep-alive connection; connects on first use and again after the server closed it.
private final class Connection: Sendable {
    let host: String
    let port: Int
    let pathPrefix: String
    let limits: HTTPLimits
    private let channel = Mutex<EventLoopFuture<any Channel>?>(nil)

    init(host: String, port: Int, pathPrefix: String, limits: HTTPLimits) {
        self.host = host
        self.port = port
        self.pathPrefix = pathPrefix
        self.limits = limits
    }

    private func connected() -> EventLoopFuture<any Channel> {
        channel.withLock { current in
            if let c = current { return c }
            let limits = limits
            let future = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.nanoseconds(Int64(limits.requestTimeout.components.seconds) * 1_000_000_000
                                             + limits.requestTimeout.components.attoseconds / 1_000_000_000))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHTTPClientHandlers()
                        try ch.pipeline.syncOperations.addHandler(PipelinedResponses(limits: limits))
                    }
                }
                .connect(host: host, port: port)
            current = future
            // A closed connection is forgotten, so the next request opens a new one.
            future.whenSuccess { ch in
                ch.closeFuture.whenComplete { _ in self.channel.withLock { if $0 === future { $0 = nil } } }
            }
            future.whenFailure { _ in self.channel.withLock { if $0 === future { $0 = nil } } }
            return future
        }
    }

    func get(_ path: String, headers: [String: String]) async throws -> (status: Int, body: ByteBuffer) {
        do {
            let ch = try await connected().get()
            let promise = ch.eventLoop.makePromise(of: (Int, ByteBuffer).self)
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: pathPrefix + path)
            head.headers.add(name: "Host", value: port == 80 ? host : "\(host):\(port)")
            // The caller's fields may not touch framing or the connection this client pipelines on.
            for (name, value) in headers where !["host", "content-length", "transfer-encoding", "connection"].contains(name.lowercased()) {
                head.headers.replaceOrAdd(name: name, value: value)
            }
            // A write that fails before the handler sees it (the connection closed in between) must
            // fail the request too: otherwise nothing would ever complete it, deadline included.
            let written = ch.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenFailure { promise.fail($0) }
            ch.writeAndFlush(PipelinedResponses.Request(head: head, promise: promise), promise: written)
            let (status, body) = try await promise.futureResult.get()
            return (status, body)
        } catch let e as ClientError {
            throw e
        } catch {
            throw ClientError.network("GET \(path) from \(host):\(port): \(error)")
        }
    }

    func close() async {
        guard let f = channel.withLock({ $0 }), let ch = try? await f.get() else { return }
        try? await ch.close()
    }
}

/// Sends requests and hands each response to its request's promise, in order (HTTP/1.1 answers
/// pipelined requests in the order they were sent).
private final class PipelinedResponses: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Request
    typealias OutboundOut = HTTPClientRequestPart

    struct Request: Sendable {
        let head: HTTPRequestHead
        let promise: EventLoopPromise<(Int, ByteBuffer)>
    }

    private struct Waiting {
        let path: String
        let promise: EventLoopPromise<(Int, ByteBuffer)>
        let deadline: Scheduled<Void>
    }

    private let limits: HTTPLimits
    private var waiting = CircularBuffer<Waiting>()
    private var status = 0
    private var body = ByteBuffer()

    init(limits: HTTPLimits) {
        self.limits = limits
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        // The deadline fails this request and everything pipelined behind it, and closes the
        // connection: answers come in order, so nothing behind a stuck answer can arrive either.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let path = request.head.uri
        let timeout = limits.requestTimeout
        let deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
            let (handler, context) = bound.value
            handler.fail(ClientError.timeout("GET \(path): no complete answer within \(timeout)"), context: context)
        }
        waiting.append(Waiting(path: path, promise: request.promise, deadline: deadline))
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let declared, declared > limits.maxBodyBytes {
                fail(tooLarge(declared), context: context)
                return
            }
            body = context.channel.allocator.buffer(capacity: declared.map { min($0, 1 << 20) } ?? 0)
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= limits.maxBodyBytes else {
                fail(tooLarge(body.readableBytes + part.readableBytes), context: context)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let first = waiting.popFirst() else { return }
            first.deadline.cancel()
            first.promise.succeed((status, body))
            body = ByteBuffer()
        }
    }

    private func tooLarge(_ bytes: Int) -> ClientError {
        .malformed("GET \(waiting.first?.path ?? "?"): answer of \(bytes) bytes or more is over the limit of \(limits.maxBodyBytes)")
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ClientError.network("the log closed the connection"))
        context.fireChannelInactive()
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        while let w = waiting.popFirst() {
            w.deadline.cancel()
            w.promise.fail(error)
        }
    }
}
