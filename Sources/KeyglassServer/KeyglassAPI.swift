import Foundation
import Hummingbird
import HummingbirdCore
import KeyglassCore
import KeyglassLog
import KeyglassWire
import Logging
import ServiceLifecycle

/// Limits and secrets of one server.
public struct ServerOptions: Sendable {
    /// Operator bearer tokens that may publish for any identity, or just their SHA-256.
    public var publishTokens: [String] = []
    public var publishTokenHashes: [Hash] = []
    /// Largest POST body accepted.
    public var maxBodyBytes = 16 * 1024
    /// Most entries in one /v1/entries page.
    public var maxPageSize: UInt64 = 1000
    /// Most entries returned for one identity by /v1/keys.
    public var maxKeysPerIdentity = 1000
    /// Per-client limits, requests per second (0: unlimited) with bursts of `burst`× the rate.
    public var readsPerSecond: Double = 0
    public var signedPublishesPerSecond: Double = 0
    public var burst: Double = 20
    /// Connections idle this long are closed (slow or abandoned clients).
    public var idleTimeout: Duration = .seconds(30)
    public init() {}
}

/// The HTTP API of DESIGN §4 on a Hummingbird router.
public struct KeyglassAPI: Sendable {
    let store: LogStore
    let sequencer: Sequencer
    let options: ServerOptions
    let authorizer: PublishAuthorizer
    let logger: Logger
    let witnesses: WitnessCollector?
    /// Per-client limits, shared by the router and the event-loop fast path.
    let readLimiter: RateLimiter?
    let signedPublishLimiter: RateLimiter?
    let escapedNotes = EscapedNoteCache()
    /// GET /metrics; its log handles are the ones given to the sequencer and the follower.
    let metrics: ServerMetrics
    /// The SQLite engine's lookup-index follower, for its gauges (nil: not measured).
    let indexFollower: IndexMergeFollower?
    /// The status page's chart, cached per tree size.
    let growth = GrowthChart()

    public init(store: LogStore, sequencer: Sequencer, options: ServerOptions, logger: Logger, witnesses: WitnessCollector? = nil,
                metrics: ServerMetrics = ServerMetrics(), indexFollower: IndexMergeFollower? = nil) {
        self.store = store
        self.metrics = metrics
        self.indexFollower = indexFollower
        self.sequencer = sequencer
        self.options = options
        self.witnesses = witnesses
        self.authorizer = PublishAuthorizer(tokens: options.publishTokens, tokenHashes: options.publishTokenHashes)
        self.logger = logger
        readLimiter = options.readsPerSecond > 0 ? RateLimiter(rate: options.readsPerSecond, burst: options.readsPerSecond * options.burst) : nil
        signedPublishLimiter = options.signedPublishesPerSecond > 0
            ? RateLimiter(rate: options.signedPublishesPerSecond, burst: max(1, options.signedPublishesPerSecond * options.burst)) : nil
    }

    public func router() -> Router<KeyglassRequestContext> {
        let router = Router(context: KeyglassRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(logger: logger))
        // Every GET counts, the refused ones below included.
        if let readLimiter { router.add(middleware: ReadLimitMiddleware(reads: readLimiter)) }
        router.add(middleware: CanonicalRequestMiddleware(maxBodyBytes: options.maxBodyBytes))
        register(on: router)
        return router
    }

    /// Builds the application; `onRunning` receives the bound port (tests bind port 0).
    /// `background`: services that run beside the sequencer, stopped after it (e.g. the SQLite
    /// engine's `IndexMergeFollower`, which then merges what the sequencer's last batches left).
    public func application(host: String, port: Int, background: [any Service] = [],
                            onRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol {
        Application(
            router: router(),
            server: HTTPServerBuilder { responder in
                KeyglassHTTP1Channel(responder: responder, idleTimeout: .seconds(options.idleTimeout.components.seconds), api: self, metrics: metrics)
            },
            configuration: .init(address: .hostname(host, port: port), serverName: KeyglassAPI.serverName),
            // Shut down in reverse order: witnesses, then the sequencer (it drains its queue), then
            // the background services.
            services: background + [sequencer] + (witnesses.map { [$0] } ?? []),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    // MARK: Static reads

    func checkpoint() -> ReadAnswer {
        ReadAnswer(contentType: "text/plain; charset=utf-8", cache: "no-cache",
                   body: ByteBuffer(string: witnesses?.servedCheckpoint() ?? sequencer.latestCheckpoint.note))
    }

    func health() throws -> ReadAnswer {
        try .json(HealthAnswer(status: "ok", tree_size: sequencer.latestCheckpoint.size))
    }

    func logInfo() throws -> ReadAnswer {
        let cp = sequencer.latestCheckpoint
        return try .json(LogInfo(origin: sequencer.origin, verifier_key: sequencer.verifierKey.description,
                                         tree_size: cp.size, root_hash: cp.root.base64, checkpoint: cp.note))
    }

    /// A tree size some signed checkpoint committed to: proofs are only served for those.
    func requireCheckpointSize(_ size: UInt64, name: String) throws {
        let latest = sequencer.latestCheckpoint.size
        guard size <= latest else { throw APIError.badRequest("\(name) \(size) is beyond the log's size \(latest)") }
        if size == latest { return }
        guard try store.checkpoint(size: size) != nil else {
            throw APIError.badRequest("no signed checkpoint has tree size \(size); use the size of a checkpoint you hold")
        }
    }
}
