import KeyglassLog
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// One PostgreSQL connection for a caller that blocks: `LogStorage`'s calls block their thread
/// (the sequencer's, a reader's), so each query is sent through postgres-nio's event-loop API and
/// waited for here. Never call it from an event loop (`LogStorage.readsAreLocal` is false for this
/// driver, so the HTTP layer does not).
///
/// A lost connection is reopened by the next query; the query that met the loss fails with
/// `StoreError.storage` (the sequencer then re-reads the head: the loss may have come after COMMIT).
/// One caller at a time: the writer has its own session, each reader takes one from the pool.
final class PostgresSession: Sendable {
    private let url: PostgresURL
    private let group: any EventLoopGroup
    private let logger: Logger
    private let connection = Mutex<PostgresConnection?>(nil)
    private let nextID = Atomic<Int>(1)

    init(url: PostgresURL, group: any EventLoopGroup, logger: Logger) {
        self.url = url
        self.group = group
        self.logger = logger
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ q: PostgresQuery) throws -> [PostgresRow] {
        let c = try open()
        do {
            return try c.query(q, logger: logger).wait().rows
        } catch {
            if c.isClosed { connection.withLock { if $0 === c { $0 = nil } } }
            throw Self.storeError(error, query: q.sql)
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT; ROLLBACK if it throws). Returns after COMMIT.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try query("BEGIN")
        let value: T
        do {
            value = try body()
        } catch {
            // A failed statement leaves the transaction aborted; ROLLBACK ends it. If the connection
            // itself is gone, the server rolls back on its own.
            _ = try? query("ROLLBACK")
            throw error
        }
        try query("COMMIT")
        return value
    }

    func close() {
        let c = connection.withLock { c -> PostgresConnection? in defer { c = nil }; return c }
        _ = try? c?.close().wait()
    }

    private func open() throws -> PostgresConnection {
        if let c = connection.withLock({ $0 }), !c.isClosed { return c }
        var config = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                      database: url.database, tls: .disable)
        config.options.connectTimeout = .seconds(5)
        do {
            let c = try PostgresConnection.connect(on: group.next(), configuration: config,
                                                   id: nextID.wrappingAdd(1, ordering: .relaxed).oldValue, logger: logger).wait()
            connection.withLock { $0 = c }
            return c
        } catch {
            throw StoreError.storage("cannot connect to PostgreSQL at \(url): \(Self.describe(error))")
        }
    }

    /// PostgreSQL's SQLSTATE of an error, if it came from the server.
    static func sqlState(_ error: Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    private static func storeError(_ error: Error, query: String) -> Error {
        if error is StoreError { return error }
        if let state = sqlState(error) {
            // Disk full, out of memory, too many connections, read-only (a standby): the operator's to fix.
            if state.hasPrefix("53") || state == "25006" || state.hasPrefix("57") || state.hasPrefix("08") {
                return StoreError.storage("PostgreSQL refused (\(state)): \(describe(error))")
            }
            return StoreError.storage("PostgreSQL error \(state): \(describe(error))")
        }
        return StoreError.storage("PostgreSQL connection failed: \(describe(error))")
    }

    /// postgres-nio's errors print their query and binds in full; the server's message is enough.
    static func describe(_ error: Error) -> String {
        if let p = error as? PSQLError {
            if let message = p.serverInfo?[.message] { return message }
            return "\(p.code)"
        }
        return "\(error)"
    }
}

/// A small pool of reader sessions: a read takes an idle one or opens another, up to `limit` idle
/// ones kept. Reads run on whatever thread calls (never an event loop).
final class PostgresReaderPool: Sendable {
    private let idle = Mutex<[PostgresSession]>([])
    private let make: @Sendable () -> PostgresSession
    private let limit: Int

    init(limit: Int, make: @escaping @Sendable () -> PostgresSession) {
        self.limit = limit
        self.make = make
    }

    func read<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        let session = idle.withLock { $0.popLast() } ?? make()
        defer {
            let extra = idle.withLock { pool -> PostgresSession? in
                guard pool.count < limit else { return session }
                pool.append(session)
                return nil
            }
            extra?.close()
        }
        return try body(session)
    }

    func close() {
        for s in idle.withLock({ p -> [PostgresSession] in defer { p = [] }; return p }) { s.close() }
    }
}
