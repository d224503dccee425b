import Foundation
import Hummingbird
import KeyglassClient
import KeyglassHTTP
import Logging
import NIOCore
import ServiceLifecycle

/// A real HTTP front end on a loopback port, placed before one or more real logs, that does what a
/// hostile operator's load balancer could: route some paths to a fork, delay, trickle, fail, or
/// answer with junk. The logs behind it are real servers; only the routing is the attacker's.
public struct FrontEnd: Sendable {
    public enum Action: Sendable {
        /// Forward the request to this log and pass its answer on.
        case forward(LogClient)
        /// Wait, then forward.
        case delay(Duration, LogClient)
        /// Forward, but send the answer `chunk` bytes at a time, `every` apart.
        case trickle(LogClient, chunk: Int, every: Duration)
        /// Answer with this status and a JSON error body.
        case fail(Int)
        /// Answer 200 with `bytes` bytes of zeros (streamed, never held whole).
        case junk(bytes: Int)
        /// Answer 200 with exactly this body.
        case body(Data, contentType: String)
    }

    /// Decides each request: (method, path with query) → what to do.
    public typealias Rule = @Sendable (_ method: String, _ target: String) async -> Action

    public let url: URL
    let group: ServiceGroup
    let task: Task<Void, Error>

    public static func start(_ rule: @escaping Rule) async throws -> FrontEnd {
        var logger = Logger(label: "keyglass-test-frontend")
        logger.logLevel = .warning
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            var target = request.uri.path
            if let q = request.uri.query { target += "?" + q }
            let body = try await request.body.collect(upTo: 1 << 20)
            let method = request.method.rawValue
            switch await rule(method, target) {
            case .forward(let upstream):
                return try await forward(method, target, body, request, to: upstream)
            case let .delay(wait, upstream):
                try await Task.sleep(for: wait)
                return try await forward(method, target, body, request, to: upstream)
            case let .trickle(upstream, chunk, every):
                let (status, data) = try await fetch(method, target, body, request, from: upstream)
                let whole = ByteBuffer(bytes: data)
                return Response(status: .init(code: status), headers: [.contentLength: String(data.count)], body: ResponseBody { writer in
                    var collected = whole
                    while collected.readableBytes > 0 {
                        let part = collected.readSlice(length: min(chunk, collected.readableBytes))!
                        try await writer.write(part)
                        try await Task.sleep(for: every)
                    }
                    try await writer.finish(nil)
                })
            case .fail(let status):
                return Response(status: .init(code: status), headers: [.contentType: "application/json", .retryAfter: "1"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"error":"unavailable","message":"front end says no"}"#)))
            case .junk(let bytes):
                return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentLength: String(bytes)], body: ResponseBody { writer in
                    let block = ByteBuffer(repeating: 0, count: 1 << 16)
                    var left = bytes
                    while left > 0 {
                        try await writer.write(block.getSlice(at: 0, length: min(left, block.readableBytes))!)
                        left -= min(left, block.readableBytes)
                    }
                    try await writer.finish(nil)
                })
            case let .body(data, contentType):
                return Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw ClientError.network("front end did not start") }
        return FrontEnd(url: URL(string: "http://127.0.0.1:\(port)")!, group: group, task: task)
    }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// A client of the front end (what users and auditors are pointed at).
    public func client(limits: HTTPLimits? = nil) -> LogClient { LogClient(base: url, limits: limits) }

    private static func fetch(_ method: String, _ target: String, _ body: ByteBuffer, _ request: Request, from upstream: LogClient) async throws -> (Int, Data) {
        var headers: [String: String] = [:]
        for field in request.headers where field.name == .contentType || field.name == .authorization {
            headers[field.name.rawName] = field.value
        }
        return try await upstream.raw(method, target, body: body.readableBytes > 0 ? Data(body.readableBytesView) : nil, headers: headers)
    }

    private static func forward(_ method: String, _ target: String, _ body: ByteBuffer, _ request: Request, to upstream: LogClient) async throws -> Response {
        let (status, data) = try await fetch(method, target, body, request, from: upstream)
        let type = target.hasPrefix("/tile/") ? "application/octet-stream" : (target == "/checkpoint" ? "text/plain; charset=utf-8" : "application/json")
        return Response(status: .init(code: status), headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
