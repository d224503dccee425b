import HTTPTypes
import Hummingbird
import HummingbirdCore

/// One route of the API.
struct Route: Sendable {
    enum Match: Sendable {
        /// Exactly this path.
        case exact(String)
        /// This prefix (ending in "/") and anything after it: tiles, an identity's keys.
        case under(String)

        func matches(_ path: Substring) -> Bool {
            switch self {
            case .exact(let p): return path == p
            case .under(let p): return path.hasPrefix(p) && path.count > p.count
            }
        }

        /// The route's name in metrics: the path, with `*` for what follows a prefix.
        var label: String {
            switch self {
            case .exact(let p): return p
            case .under(let p): return p + "*"
            }
        }

        /// Hummingbird's spelling of the same match.
        var routerPath: RouterPath {
            switch self {
            case .exact(let p): return RouterPath(p)
            case .under(let p): return RouterPath(p + "**")
            }
        }
    }

    enum Handler: Sendable {
        /// A synchronous read computed from the request's URI: a few store lookups, short enough to
        /// run on the connection's event loop.
        case read(@Sendable (KeyglassAPI, URI) throws -> ReadAnswer)
        /// Anything that awaits or needs the whole request (the router only; the publish, whose
        /// event-loop form is `FastPathHandler`'s, answered by the sequencer's callback).
        case request(@Sendable (KeyglassAPI, Request, KeyglassRequestContext) async throws -> Response)
    }

    let method: HTTPRequest.Method
    let match: Match
    let handler: Handler
    /// The event-loop fast path may answer it (reads marked here; publishes only with an operator
    /// token, as signed ones are rate limited by the router).
    let onEventLoop: Bool
}

extension KeyglassAPI {
    /// Every route, declared once: `router()` registers each, and the event-loop fast path
    /// (`FastPathHandler`) answers those marked `onEventLoop` with the same handlers, handing every
    /// other request, and every error, to the router. Limits are per method, not per route, so both
    /// paths apply them alike: every GET counts against the read limit (`ReadLimitMiddleware`,
    /// `fastRead`), every publish without a valid operator token against the signed-publish limit
    /// (in the publish handler). Paths are canonical before any of this (`CanonicalPath`).
    static let routes: [Route] = [
        Route(method: .get, match: .exact("/checkpoint"), handler: .read { api, _ in api.checkpoint() }, onEventLoop: true),
        Route(method: .get, match: .under("/tile/"), handler: .read { api, uri in try api.tile(path: uri.path[...]) }, onEventLoop: true),
        Route(method: .post, match: .exact("/v1/keys"), handler: .request { api, request, context in
            try api.limitSignedPublish(request, context: context)
            return try await api.publish(request)
        }, onEventLoop: true),
        Route(method: .get, match: .under("/v1/keys/"), handler: .read { api, uri in try api.keys(uri) }, onEventLoop: true),
        Route(method: .get, match: .exact("/v1/proof/inclusion"), handler: .read { api, uri in try api.inclusionProof(Query(uri)) }, onEventLoop: true),
        Route(method: .get, match: .exact("/v1/proof/consistency"), handler: .read { api, uri in try api.consistencyProof(Query(uri)) }, onEventLoop: true),
        Route(method: .get, match: .exact("/v1/entries"), handler: .request { api, request, _ in try await api.entries(request) }, onEventLoop: false),
        Route(method: .get, match: .exact("/v1/log"), handler: .read { api, _ in try api.logInfo() }, onEventLoop: true),
        Route(method: .get, match: .exact("/healthz"), handler: .read { api, _ in try api.health() }, onEventLoop: true),
        Route(method: .get, match: .exact("/metrics"), handler: .read { api, _ in api.metricsAnswer() }, onEventLoop: true),
        // The status page reads up to ~150 entries (its chart is cached): off the event loop.
        Route(method: .get, match: .exact("/"), handler: .read { api, uri in try api.statusPage(uri) }, onEventLoop: false),
        Route(method: .get, match: .exact("/assets/status.js"), handler: .read { _, _ in StatusAssets.answer(StatusAssets.js, type: "text/javascript; charset=utf-8") }, onEventLoop: false),
        Route(method: .get, match: .exact("/assets/status.css"), handler: .read { _, _ in StatusAssets.answer(StatusAssets.css, type: "text/css; charset=utf-8") }, onEventLoop: false),
    ]

    /// The route for `method path`, if any.
    static func route(_ method: HTTPRequest.Method, _ path: Substring) -> Route? {
        routeNumber(method, path).map { routes[$0] }
    }

    /// The index in `routes` of the route for `method path`, if any.
    static func routeNumber(_ method: HTTPRequest.Method, _ path: Substring) -> Int? {
        routes.firstIndex { $0.method == method && $0.match.matches(path) }
    }

    /// The methods the routes take on `path` (none: the path is not the API's).
    static func allowedMethods(_ path: Substring) -> [String] {
        routes.filter { $0.match.matches(path) }.map(\.method.rawValue)
    }

    /// Registers every route of `routes` on `router`.
    func register(on router: Router<KeyglassRequestContext>) {
        for route in Self.routes {
            let api = self
            router.on(route.match.routerPath, method: route.method) { request, context -> Response in
                switch route.handler {
                case .read(let answer):
                    let uri = request.uri
                    return try await api.readingStorage { try answer(api, uri) }.response
                case .request(let handle): return try await handle(api, request, context)
                }
            }
        }
    }
}
