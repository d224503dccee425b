import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// The request context: Hummingbird's core context plus the client's address, which per-client
/// rate limits are keyed on.
public struct KeyglassRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// Token buckets per client address: `rate` requests a second on average, bursts up to `burst`.
/// Memory is bounded: when more than `maxClients` buckets exist, the full ones (clients that have
/// been quiet) are dropped.
final class RateLimiter: Sendable {
    private struct Bucket { var tokens: Double; var last: UInt64 }
    private let rate: Double
    private let burst: Double
    private let maxClients = 100_000
    private let buckets = Mutex<[String: Bucket]>([:])

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(1, burst)
    }

    /// True if `client` may make a request now; takes one token.
    func allow(_ client: String) -> Bool {
        // The clock is read under the lock, so a bucket's `last` never moves back: read before it,
        // a thread that waited for the lock would hold an instant older than the one another thread
        // had just stored (once computed as an unsigned difference, that crashed the server: two
        // concurrent unsigned publishes from one address were enough).
        buckets.withLock { b in allow(client, at: DispatchTime.now().uptimeNanoseconds, in: &b) }
    }

    /// Gives back the token `allow` took from `client`, for a request that was then handed on to be
    /// judged again (the event loop declined it after charging it; the router charges it anew).
    func refund(_ client: String) {
        buckets.withLock { b in
            if var bucket = b[client] {
                bucket.tokens = min(burst, bucket.tokens + 1)
                b[client] = bucket
            }
        }
    }

    /// `allow` at the instant `now` (tests pass instants out of order, as threads may see them).
    func allow(_ client: String, at now: UInt64) -> Bool {
        buckets.withLock { b in allow(client, at: now, in: &b) }
    }

    private func allow(_ client: String, at now: UInt64, in b: inout [String: Bucket]) -> Bool {
        if b.count > maxClients {
            b = b.filter { refilled($0.value, at: now) < burst }
        }
        var bucket = b[client] ?? Bucket(tokens: burst, last: now)
        bucket.tokens = refilled(bucket, at: now)
        bucket.last = max(bucket.last, now)
        let ok = bucket.tokens >= 1
        if ok { bucket.tokens -= 1 }
        b[client] = bucket
        return ok
    }

    /// The bucket's tokens at `now`; an instant before its last one adds nothing.
    private func refilled(_ bucket: Bucket, at now: UInt64) -> Double {
        let elapsed = now > bucket.last ? now - bucket.last : 0
        return min(burst, bucket.tokens + Double(elapsed) / 1e9 * rate)
    }
}

/// Applies the read limit to every GET. (The signed-publish limit is applied by the publish route
/// itself: `KeyglassAPI.limitSignedPublish`.)
struct ReadLimitMiddleware: RouterMiddleware {
    typealias Context = KeyglassRequestContext
    let reads: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .get {
            let client = context.remoteAddress?.ipAddress ?? "unknown"
            guard reads.allow(client) else { throw APIError.rateLimited(client) }
        }
        return try await next(request, context)
    }
}

extension APIError {
    static func rateLimited(_ client: String) -> APIError {
        var e = APIError(.tooManyRequests, "rate_limited", "too many requests from \(client); slow down")
        e.headers[.retryAfter] = "1"
        return e
    }
}

extension KeyglassAPI {
    /// Counts a publish against the client's signed-publish limit unless it carries a valid
    /// operator token: a good signature, a bad one (an Ed25519 check), a wrong token or garbage
    /// all use up the allowance. Called by the publish route, so the limit covers exactly what
    /// that route answers, however the path was spelled on the way (only the canonical spelling
    /// gets there: `CanonicalPath`). The operator's back end is not throttled here; the
    /// sequencer's queue cap bounds it.
    func limitSignedPublish(_ request: Request, context: KeyglassRequestContext) throws {
        guard let limiter = signedPublishLimiter else { return }
        if let header = request.headers[.authorization], header.hasPrefix("Bearer "), authorizer.accepts(String(header.dropFirst(7))) {
            return
        }
        let client = context.remoteAddress?.ipAddress ?? "unknown"
        guard limiter.allow(client) else { throw APIError.rateLimited(client) }
    }
}
