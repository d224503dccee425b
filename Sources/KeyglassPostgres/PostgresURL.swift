import Foundation

/// Where a PostgreSQL log is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, as given to
/// `--storage`. A password in the URL shows in `ps`: prefer the PGPASSWORD environment variable,
/// which is read when the URL has none.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public let user: String
    public let password: String?
    public let host: String
    public let port: Int
    public let database: String

    public init(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let c = URLComponents(string: text), c.scheme == "postgres" || c.scheme == "postgresql" else {
            throw PostgresURLError("--storage takes postgres://USER@HOST:PORT/DATABASE, not \(Self.redacted(text))")
        }
        guard let user = c.user, !user.isEmpty else { throw PostgresURLError("the PostgreSQL URL names no user (postgres://USER@HOST:PORT/DATABASE)") }
        guard let host = c.host, !host.isEmpty else { throw PostgresURLError("the PostgreSQL URL names no host") }
        let database = String(c.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw PostgresURLError("the PostgreSQL URL names no database (…/DATABASE)") }
        if let port = c.port, !(1...65535).contains(port) { throw PostgresURLError("the PostgreSQL URL's port is out of range") }
        if let q = c.query, !q.isEmpty { throw PostgresURLError("the PostgreSQL URL takes no parameters (?\(q))") }
        self.user = user
        self.password = c.password ?? environment["PGPASSWORD"]
        self.host = host
        self.port = c.port ?? 5432
        self.database = database
    }

    /// The URL without its password: for logs and error messages.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    static func redacted(_ text: String) -> String {
        guard var c = URLComponents(string: text) else { return "(an unparsable URL)" }
        if c.password != nil { c.password = "***" }
        return c.string ?? "(an unparsable URL)"
    }
}

public struct PostgresURLError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
