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
        let now = DispatchTime.now().uptimeNanoseconds
        return buckets.withLock { b in
            if b.count > maxClients {
                b = b.filter { min(burst, $0.value.tokens + Double(now - $0.value.last) / 1e9 * rate) < burst }
            }
            var bucket = b[client] ?? Bucket(tokens: burst, last: now)
            bucket.tokens = min(burst, bucket.tokens + Double(now - bucket.last) / 1e9 * rate)
            bucket.last = now
            let ok = bucket.tokens >= 1
            if ok { bucket.tokens -= 1 }
            b[client] = bucket
            return ok
        }
    }
}

/// Applies the read limit to GETs and the signed-publish limit to publishes that carry no operator
/// token. The operator's own back end (a valid token) is never throttled here: the sequencer's
/// queue cap bounds it.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = KeyglassRequestContext
    let reads: RateLimiter?
    let signedPublishes: RateLimiter?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let client = context.remoteAddress?.ipAddress ?? "unknown"
        let limiter: RateLimiter?
        if request.method == .get {
            limiter = reads
        } else if request.method == .post && request.uri.path == "/v1/keys" && request.headers[.authorization] == nil {
            limiter = signedPublishes
        } else {
            limiter = nil
        }
        if let limiter, !limiter.allow(client) {
            var e = APIError(.tooManyRequests, "rate_limited", "too many requests from \(client); slow down")
            e.headers[.retryAfter] = "1"
            throw e
        }
        return try await next(request, context)
    }
}
