import Foundation
import KeyglassLog
import NIOSSL
import PostgresNIO

/// Where a PostgreSQL log is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]`, as
/// given to `--storage`. A password in the URL shows in `ps`: prefer the PGPASSWORD environment
/// variable, which is read when the URL has none.
///
/// TLS: `sslmode=verify-full` (the server's certificate checked against `sslrootcert=FILE`, or the
/// system's roots, and its name against HOST) or `sslmode=disable`. A database on another host
/// must say which: what the log reads from it decides what it serves, so a network attacker
/// between them could hide a key's newest entries. Loopback hosts default to `disable`.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public let user: String
    public let password: String?
    public let host: String
    public let port: Int
    public let database: String
    /// True for `sslmode=verify-full`.
    public let verifyTLS: Bool
    /// A CA certificate file (PEM) for `verify-full`; nil: the system's roots.
    public let rootCertificate: String?

    public init(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let c = URLComponents(string: text), c.scheme == "postgres" || c.scheme == "postgresql" else {
            throw PostgresURLError("--storage takes postgres://USER@HOST:PORT/DATABASE, not \(Self.redacted(text))")
        }
        guard let user = c.user, !user.isEmpty else { throw PostgresURLError("the PostgreSQL URL names no user (postgres://USER@HOST:PORT/DATABASE)") }
        guard let host = c.host, !host.isEmpty else { throw PostgresURLError("the PostgreSQL URL names no host") }
        let database = String(c.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw PostgresURLError("the PostgreSQL URL names no database (…/DATABASE)") }
        if let port = c.port, !(1...65535).contains(port) { throw PostgresURLError("the PostgreSQL URL's port is out of range") }
        var mode: String?
        var root: String?
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode": mode = item.value
            case "sslrootcert": root = item.value
            default: throw PostgresURLError("the PostgreSQL URL takes sslmode and sslrootcert only, not \(item.name)")
            }
        }
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host)
        switch mode {
        case "verify-full": verifyTLS = true
        case "disable": verifyTLS = false
        case nil where loopback: verifyTLS = false
        case nil:
            throw PostgresURLError("the database \(host) is not on this machine: add ?sslmode=verify-full (and &sslrootcert=CA.pem for a private CA), or ?sslmode=disable on a network you trust")
        default: throw PostgresURLError("sslmode must be verify-full or disable")
        }
        if root != nil && !verifyTLS { throw PostgresURLError("sslrootcert needs sslmode=verify-full") }
        rootCertificate = root
        self.user = user
        self.password = c.password ?? environment["PGPASSWORD"]
        self.host = host
        self.port = c.port ?? 5432
        self.database = database
    }

    /// The URL without its password: for logs and error messages.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" + (verifyTLS ? "?sslmode=verify-full" : "") }

    /// postgres-nio's TLS setting for this URL.
    func tls() throws -> PostgresConnection.Configuration.TLS {
        guard verifyTLS else { return .disable }
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .fullVerification
        if let rootCertificate {
            do { config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificate)) } catch {
                throw StoreError.storage("cannot read the CA certificate \(rootCertificate): \(error)")
            }
        }
        do { return .require(try NIOSSLContext(configuration: config)) } catch {
            throw StoreError.storage("cannot set up TLS for \(host): \(error)")
        }
    }

    static func redacted(_ text: String) -> String {
        guard var c = URLComponents(string: text) else { return "(an unparsable URL)" }
        if c.password != nil { c.password = "***" }
        c.query = nil
        return c.string ?? "(an unparsable URL)"
    }
}

public struct PostgresURLError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
