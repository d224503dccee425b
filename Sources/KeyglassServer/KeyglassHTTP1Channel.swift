import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1 child channel (`HTTP1Channel`), set up the same way, with `FastPathHandler`
/// added after the connection-state handler. Hummingbird's own configuration can only add
/// handlers before that state handler, where requests answered early would be invisible to its
/// idle timeout and keep-alive bookkeeping.
struct KeyglassHTTP1Channel<API: FastPathAPI>: ServerChildChannel, HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let responder: HTTPChannelHandler.Responder
    let idleTimeout: Duration?
    let api: API
    /// Counts requests by route and status (a v1 log's `/metrics`); nil: not counted.
    let metrics: ServerMetrics?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,  // responses are kept in order by the async channel and FastPathHandler
                withErrorHandling: false,  // Hummingbird answers parse errors itself
                withOutboundHeaderValidation: false)  // swift-http-types validates header fields
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: idleTimeout, logger: logger))
            if let metrics { try pipeline.addHandler(RequestMetricsHandler(metrics: metrics)) }
            try pipeline.addHandler(FastPathHandler(api: api))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}
