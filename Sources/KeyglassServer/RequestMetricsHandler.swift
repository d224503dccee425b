import CoreMetrics
import NIOCore
import NIOHTTPTypes

/// Counts every answer of a connection in `keyglass_http_requests_total`, by the route of its
/// request and its status, whoever answered it (`FastPathHandler` or the router). HTTP/1 answers
/// come in the order of their requests, so the routes of requests not yet answered wait in order;
/// an answer with no request (Hummingbird refusing bytes that do not parse) counts as route
/// "other". Sits in front of `FastPathHandler`, so both paths' answers pass through it.
final class RequestMetricsHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let metrics: ServerMetrics
    /// Route numbers (`KeyglassAPI.routeNumber`, -1: none) of requests not yet answered.
    private var unanswered = CircularBuffer<Int>(initialCapacity: 4)
    /// This connection's counters: most connections send a few kinds of request many times, and
    /// the shared table takes a lock.
    private var counters: [Int: CoreMetrics.Counter] = [:]

    init(metrics: ServerMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let path = head.path.map { $0.prefix { $0 != "?" } } ?? ""
            unanswered.append(KeyglassAPI.routeNumber(head.method, path) ?? -1)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Interim answers (100 Continue) are not the request's answer.
        if case .head(let head) = unwrapOutboundIn(data), head.status.code >= 200 {
            let route = unanswered.popFirst() ?? -1
            let key = route * 1000 + head.status.code
            if let counter = counters[key] {
                counter.increment()
            } else {
                let counter = metrics.requestCounter(route: route, status: head.status.code)
                counters[key] = counter
                counter.increment()
            }
        }
        context.write(data, promise: promise)
    }
}
