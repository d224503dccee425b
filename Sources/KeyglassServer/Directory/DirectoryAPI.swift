import Foundation
import Hummingbird
import HummingbirdCore
import KeyglassCore
import KeyglassLog
import KeyglassWire
import Logging
import NIOCore
import ServiceLifecycle

/// The HTTP API of a v2 log, the key directory (Spec/directory.md "HTTP"):
///
/// - `POST /v2/changes`: one device change (`ChangeBody`); the operator's with the publish token,
///   or chained (signed by an active device), which needs no token.
/// - `GET /v2/lookup/<identity>`: the identity's devices with every proof (`DirectoryLookupJSON`).
/// - `GET /v2/history/<identity>`: its change entries with inclusion proofs, for owners' monitors.
///   Both carry sealed changes and answer whether an identity has keys (a membership oracle), so
///   both need a lookup credential (or the publish token) and are limited per credential.
/// - `GET /v2/head`: the newest map head's checkpoint, with cosignatures (what auditors audit).
/// - `GET /v2/log`, `GET /checkpoint`, `GET /tile/…` (c2sp.org/tlog-tiles), `GET /healthz`.
///
/// A v2 log serves no `/v1` route: its entries are not v1 key entries.
public struct DirectoryAPI: Sendable {
    let directory: DirectoryService
    let authorizer: PublishAuthorizer
    let logger: Logger
    /// Per-client limit on changes without the operator's token (anyone can send one; each costs
    /// the writer a signature check).
    let signedChangeLimiter: RateLimiter?
    /// Lookup credentials: each one's name (what its limit is kept by) and SHA-256.
    let lookupAuthorizer: PublishAuthorizer
    /// Per-credential limit on lookups and histories (nil: unlimited).
    let lookupLimiter: RateLimiter?
    /// Collects cosignatures of the head checkpoints; lookups and histories carry them.
    let witnesses: WitnessCollector?
    /// Largest body: a device record with its keys is a few hundred bytes.
    static let maxBodyBytes = 16 * 1024

    /// `signedChangesPerSecond`: per client, bursts of 20× (0: unlimited). `lookupTokens`: the
    /// lookup credentials; `lookupsPerSecond`: per credential, bursts of 20× (0: unlimited).
    public init(directory: DirectoryService, publishTokenHashes: [Hash], publishTokens: [String] = [], signedChangesPerSecond: Double = 5,
                lookupTokens: [(name: String, hash: Hash)], lookupsPerSecond: Double = 50,
                witnesses: WitnessCollector? = nil, logger: Logger) {
        self.directory = directory
        lookupAuthorizer = PublishAuthorizer(named: lookupTokens)
        lookupLimiter = lookupsPerSecond > 0 ? RateLimiter(rate: lookupsPerSecond, burst: max(1, lookupsPerSecond * 20)) : nil
        self.witnesses = witnesses
        self.authorizer = PublishAuthorizer(tokens: publishTokens, tokenHashes: publishTokenHashes)
        self.logger = logger
        signedChangeLimiter = signedChangesPerSecond > 0
            ? RateLimiter(rate: signedChangesPerSecond, burst: max(1, signedChangesPerSecond * 20)) : nil
    }

    public func router() -> Router<KeyglassRequestContext> {
        let router = Router(context: KeyglassRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(logger: logger, allowedMethods: { Self.allowedMethods($0) }))
        router.add(middleware: CanonicalRequestMiddleware(maxBodyBytes: Self.maxBodyBytes))
        for route in Self.routes {
            let api = self
            router.on(route.match.routerPath, method: route.method) { request, context in try await route.handle(api, request, context) }
        }
        return router
    }

    /// One route of the directory's API.
    struct DirectoryRoute: Sendable {
        let method: HTTPRequest.Method
        let match: Route.Match
        let handle: @Sendable (DirectoryAPI, Request, KeyglassRequestContext) async throws -> Response
    }

    /// Every route, declared once: `router()` registers each, and 405's Allow reads them.
    static let routes: [DirectoryRoute] = [
        DirectoryRoute(method: .get, match: .exact("/checkpoint")) { api, _, _ in
            ReadAnswer(contentType: "text/plain; charset=utf-8", cache: "no-cache", body: ByteBuffer(string: api.directory.latestCheckpoint.note)).response
        },
        DirectoryRoute(method: .get, match: .under("/tile/")) { api, request, _ in
            try KeyglassAPI.tile(path: request.uri.path[...], store: api.directory.store, size: api.directory.latestCheckpoint.size).response
        },
        DirectoryRoute(method: .get, match: .exact("/healthz")) { api, _, _ in
            try ReadAnswer.json(HealthAnswer(status: "ok", tree_size: api.directory.latestCheckpoint.size)).response
        },
        DirectoryRoute(method: .get, match: .exact("/v2/log")) { api, _, _ in
            try ReadAnswer.json(DirectoryLogInfo(origin: api.directory.origin, verifier_key: api.directory.verifierKey.description,
                                                 vrf_public_key: Base64.encode(api.directory.vrfPublicKey),
                                                 tree_size: api.directory.latestCheckpoint.size)).response
        },
        // The newest checkpoint whose last leaf is a map head, with the witnesses' cosignatures:
        // what auditors audit (the newest checkpoint may end after it, and witnesses cosign heads).
        DirectoryRoute(method: .get, match: .exact("/v2/head")) { api, _, _ in
            guard let cp = api.directory.checkpointToWitness else {
                throw APIError(.serviceUnavailable, "no_map_head", "the directory has no map head yet; retry in a second")
            }
            return ReadAnswer(contentType: "text/plain; charset=utf-8", cache: "no-cache",
                              body: ByteBuffer(string: api.witnesses?.served(cp) ?? cp.note)).response
        },
        DirectoryRoute(method: .post, match: .exact("/v2/changes")) { api, request, context in try await api.change(request, context: context) },
        DirectoryRoute(method: .get, match: .under("/v2/lookup/")) { api, request, _ in
            try api.authoriseLookup(request)
            return try await api.lookup(request.uri)
        },
        DirectoryRoute(method: .get, match: .under("/v2/history/")) { api, request, _ in
            try api.authoriseLookup(request)
            return try api.history(request.uri)
        },
        DirectoryRoute(method: .get, match: .exact("/v2/proof/consistency")) { api, request, _ in try api.consistency(Query(request)) },
    ]

    static func allowedMethods(_ path: Substring) -> [String] {
        routes.filter { $0.match.matches(path) }.map(\.method.rawValue)
    }

    /// `idleTimeout`: a connection with no request for that long is closed (nil: never).
    public func application(host: String, port: Int, idleTimeout: Duration? = .seconds(30),
                            onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: router(),
            // Lookups are answered on the event loop (`fastRead`); everything else by the router.
            server: HTTPServerBuilder { responder in
                KeyglassHTTP1Channel(responder: responder, idleTimeout: idleTimeout, api: self, metrics: nil)
            },
            configuration: .init(address: .hostname(host, port: port), serverName: KeyglassAPI.serverName),
            services: [directory] + (witnesses.map { [$0] } ?? []), onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// A lookup or history needs a lookup credential (limited per credential) or the publish token
    /// (the provider's back end, unlimited). Every credential's hash is compared, in constant time.
    func authoriseLookup(_ request: Request) throws { try authoriseLookup(request.headers) }

    /// As above; returns the credential whose allowance was charged (nil: the publish token, or no
    /// limit), so a request handed on to the router can be given its token back.
    @discardableResult
    func authoriseLookup(_ fields: HTTPFields) throws -> String? {
        guard let header = fields[.authorization], header.hasPrefix("Bearer ") else {
            var e = APIError(.unauthorized, "unauthorized", "lookups and histories need a lookup credential: Authorization: Bearer <token>")
            e.headers[.wwwAuthenticate] = "Bearer"
            throw e
        }
        let token = String(header.dropFirst(7))
        if authorizer.accepts(token) { return nil }
        guard let name = lookupAuthorizer.name(of: token) else { throw APIError(.forbidden, "forbidden", "lookup credential not accepted") }
        guard let lookupLimiter else { return nil }
        if !lookupLimiter.allow(name) { throw APIError.rateLimited("lookup credential \(name)") }
        return name
    }

    private func identity(_ uri: URI, after prefix: String) throws -> String {
        try CanonicalPath.identity(in: uri.path, after: prefix)
    }

    func change(_ request: Request, context: KeyglassRequestContext) async throws -> Response {
        let hasToken = hasPublishToken(request.headers)
        if !hasToken, let limiter = signedChangeLimiter {
            let client = context.remoteAddress?.ipAddress ?? "unknown"
            guard limiter.allow(client) else { throw APIError.rateLimited(client) }
        }
        try requireJSON(contentType: request.headers[.contentType])
        let body = try await request.body.collect(upTo: Self.maxBodyBytes)
        let change = try prepareChange(body, authorization: request.headers[.authorization], hasToken: hasToken)
        return try changeAnswer(await directory.submit(change), hasToken: hasToken).response
    }

    /// Whether the request carries the operator's publish token.
    func hasPublishToken(_ fields: HTTPFields) -> Bool {
        fields[.authorization].map { $0.hasPrefix("Bearer ") && authorizer.accepts(String($0.dropFirst(7))) } ?? false
    }

    /// A change body, checked and with its label: the request to queue, or the error to answer.
    /// `hasToken`: the caller's `hasPublishToken` (the token is hashed and compared once a request).
    func prepareChange(_ bytes: ByteBuffer, authorization: String?, hasToken: Bool) throws -> DirectoryLog.ChangeRequest {
        let body: ChangeBody
        do { body = try JSONDecoder().decode(ChangeBody.self, from: Data(bytes.readableBytesView)) } catch {
            throw APIError.badRequest("the body is not a change: identity, kind, and device or device_id (signer and signature for a chained change)")
        }
        let change: DeviceChange
        do { change = try body.change() } catch { throw APIError.badRequest("\(error)") }
        if case .operator = change.authority {
            guard let header = authorization, header.hasPrefix("Bearer ") else {
                var e = APIError(.unauthorized, "unauthorized", "an operator change needs the publish token; a device's change needs signer and signature")
                e.headers[.wwwAuthenticate] = "Bearer"
                throw e
            }
            guard hasToken else { throw APIError(.forbidden, "forbidden", "publish token not accepted") }
        }
        let identity: String
        do { identity = try Identity.normalize(body.identity) } catch { throw APIError.badRequest(error.description) }
        var request = DirectoryLog.ChangeRequest(identity: identity, kind: change.kind, authority: change.authority)
        // The label here, on this request's thread: the writer then spends no ECVRF time on it.
        request.label = try directory.labels.computeLabel(of: identity)
        return request
    }

    /// The answer to a change's outcome (an error is thrown as the `APIError` to answer).
    func changeAnswer(_ outcome: DirectoryService.Outcome, hasToken: Bool) throws -> ReadAnswer {
        // Without the token, a refusal must not tell a caller who holds no active device's key
        // anything of the identity (whether it was erased, which devices are active, …): every
        // change that does not verify gets one answer. A change that verifies proves the key.
        // A change whose signature verifies proves the caller holds an active device's key: it is
        // told the rule's reason (an honest retry of a change already applied learns why).
        if !hasToken {
            switch outcome {
            case .refused(.erased), .refused(.doesNotVerify):
                throw APIError(.forbidden, "refused", DirectoryLog.Refusal.doesNotVerify.description)
            default: break
            }
        }
        switch outcome {
        case let .sequenced(index, size):
            return try ReadAnswer.json(ChangeAnswer(index: index, tree_size: size))
        case .refused(.identity(let why)):
            throw APIError.badRequest(why)
        case .refused(.doesNotVerify):
            throw APIError(.forbidden, "refused", DirectoryLog.Refusal.doesNotVerify.description)
        case .refused(.rule(let verdict)):
            // What the rule calls an attack is refused by an honest server: 403, with the verdict.
            throw APIError(.forbidden, "refused", "the device rule refuses this change: \(verdict)")
        case .refused(.stalePosition):
            var e = APIError(.conflict, "stale_position", DirectoryLog.Refusal.stalePosition.description)
            e.headers[.retryAfter] = "1"
            throw e
        case .refused(.erased):
            throw APIError(.gone, "erased", DirectoryLog.Refusal.erased.description)
        case .refused(.mapBehind):
            var e = APIError(.serviceUnavailable, "map_behind", DirectoryLog.Refusal.mapBehind.description)
            e.headers[.retryAfter] = "1"
            throw e
        case .refused(.logFull):
            throw APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), "log_full", "the log is full")
        case .unavailable(let why):
            var e = APIError(.serviceUnavailable, "unavailable", why)
            e.headers[.retryAfter] = "1"
            throw e
        }
    }

    func lookup(_ uri: URI) async throws -> Response {
        let identity = try identity(uri, after: "/v2/lookup/")
        do {
            var answer = try await directory.lookup(identity)
            if let witnesses { answer.checkpoint = witnesses.served(note: answer.checkpoint) }
            return ReadAnswer.json(DirectoryLookupWriter.json(answer)).response
        } catch StoreError.notInitialised {
            throw APIError(.serviceUnavailable, "no_map_head", "the directory has no map head yet; retry in a second")
        } catch DirectoryLog.Refusal.erased {
            throw APIError(.gone, "erased", DirectoryLog.Refusal.erased.description)
        }
    }

    /// A consistency proof between two checkpoints the log signed: how a client that verified one
    /// head checks that a later one extends it (no fork, no rollback).
    func consistency(_ query: Query) throws -> Response {
        let from = try query.requiredUInt64("from"), to = try query.requiredUInt64("to")
        guard from <= to else { throw APIError.badRequest("from (\(from)) must not be greater than to (\(to))") }
        // `to` must be a tree the log signed; `from` any smaller tree (a client asks from one it verified).
        let newest = directory.latestCheckpoint.size
        if to != newest {
            guard to < newest, try directory.store.checkpoint(size: to) != nil else {
                throw APIError.badRequest("no signed checkpoint has tree size \(to)")
            }
        }
        let proof = try directory.store.consistencyProof(from: from, to: to)
        return try ReadAnswer.json(ConsistencyAnswer(from: from, to: to, proof: proof.map(\.base64))).response
    }

    func history(_ uri: URI) throws -> Response {
        let identity = try identity(uri, after: "/v2/history/")
        let query = Query(uri)
        do {
            let h = try directory.history(of: identity, before: try query.uint64("before"), treeSize: try query.uint64("tree_size"))
            return try ReadAnswer.json(DirectoryHistoryJSON(
                checkpoint: witnesses?.served(h.checkpoint) ?? h.checkpoint.note, tree_size: h.checkpoint.size,
                entries: h.entries.map {
                    .init(index: $0.index, entry: Base64.encode($0.entry), sealed: $0.sealed.map { Base64.encode($0) }, inclusion_proof: $0.proof.map(\.base64))
                },
                more: h.more)).response
        } catch StoreError.notInitialised {
            throw APIError(.serviceUnavailable, "no_map_head", "the directory has no map head yet; retry in a second")
        } catch DirectoryService.HistoryError.noSuchTree(let size) {
            throw APIError.badRequest("no signed checkpoint has tree size \(size)")
        }
    }
}

/// Lookups and the operator's changes on the event loop (`FastPathHandler`).
///
/// The most frequent request a directory gets, a lookup, is a few reads from SQLite and memory:
/// cheaper to answer where it arrived than to hop to the router's tasks and a Dispatch thread and
/// back (Spec/directory.md "HTTP and the CLI"). The same functions make the answer as on the
/// router, so both give the same bytes. Any lookup that would fail or wait goes to the router,
/// which answers it as before (its credential is given back the allowance the fast path took, so
/// it pays once). The ECVRF work of a change's label, and of an identity's first lookup, is CPU on
/// the loop: other connections of that loop wait for it as they would for any answer.
extension DirectoryAPI: FastPathAPI {
    var fastPathMaxBodyBytes: Int { Self.maxBodyBytes }

    func isFast(_ head: HTTPRequest) -> Bool {
        // Storage across a network must never be waited for on an event loop (a directory is kept
        // in SQLite today; this keeps it so if that changes).
        guard directory.store.storage.readsAreLocal, let target = head.path, head.headerFields[.authorization] != nil,
            !declaresOversizedBody(head.headerFields, maxBodyBytes: Self.maxBodyBytes)
        else { return false }
        let path = target.prefix { $0 != "?" }
        switch head.method {
        case .get: return path.hasPrefix("/v2/lookup/") && CanonicalPath.isCanonical(path)
        case .post: return path == "/v2/changes"
        default: return false
        }
    }

    func fastRead(_ head: HTTPRequest, client: SocketAddress?) -> ReadAnswer? {
        guard let target = head.path else { return nil }
        let charged: String?
        do { charged = try authoriseLookup(head.headerFields) } catch { return nil }
        guard let identity = try? identity(URI(target), after: "/v2/lookup/"),
            var answer = try? directory.lookupWithoutWaiting(identity)
        else {
            // The router judges it anew and charges it then: the credential pays once.
            if let charged { lookupLimiter?.refund(charged) }
            return nil
        }
        if let witnesses { answer.checkpoint = witnesses.served(note: answer.checkpoint) }
        return .json(DirectoryLookupWriter.json(answer))
    }

    /// A change with the operator's token, checked and queued with the writer (the provider's back
    /// end adding its users' devices: the traffic a directory takes most of). Without the token
    /// (a device's own change, limited per client) or on any error, the router answers.
    func startFastPost(_ head: HTTPRequest, body: ByteBuffer, done: @escaping @Sendable (DirectoryService.Outcome) -> Void) -> Bool {
        guard hasPublishToken(head.headerFields), (try? requireJSON(contentType: head.headerFields[.contentType])) != nil,
            let change = try? prepareChange(body, authorization: head.headerFields[.authorization], hasToken: true)
        else { return false }
        directory.submit(change, done: done)
        return true
    }

    func answer(_ posted: DirectoryService.Outcome) -> ReadAnswer {
        do { return try changeAnswer(posted, hasToken: true) } catch let e as APIError { return e.answer } catch {
            // `changeAnswer` throws only API errors; anything else is a fault, reported without internals.
            logger.error("a change's answer failed", metadata: ["error": "\(error)"])
            return APIError(.internalServerError, "internal", "internal error").answer
        }
    }
}
