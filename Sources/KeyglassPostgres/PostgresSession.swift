import KeyglassLog
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Foundation
import Synchronization

/// One PostgreSQL connection for a caller that blocks: `LogStorage`'s calls block their thread
/// (the sequencer's, a reader's), so each query is sent through postgres-nio's event-loop API and
/// waited for here. Never call it from an event loop (`LogStorage.readsAreLocal` is false for this
/// driver, so the HTTP layer does not).
///
/// Outside a transaction, a lost connection is reopened by the next query; the query that met the
/// loss fails with `StoreError.storage` (the sequencer then re-reads the head: the loss may have
/// come after COMMIT). Inside `transaction` the connection is pinned: a statement never runs on
/// another one, since it would run outside the transaction (and outside the lease row's lock the
/// transaction took), so a lost connection fails the transaction.
///
/// Nothing waits for ever: every statement has a deadline (`deadline`), after which the connection
/// is closed and the statement fails; and the server is told (startup parameters) to end a
/// transaction left idle, to give up on a lock, and to probe the TCP connection, so a sequencer
/// host that vanishes without a reset (power loss, a partition) releases the lease row's lock in
/// seconds instead of when the kernel's keepalive notices, hours later.
/// One caller at a time: the writer has its own session, each reader takes one from the pool.
final class PostgresSession: Sendable {
    private let url: PostgresURL
    private let group: any EventLoopGroup
    private let logger: Logger
    private let connection = Mutex<PostgresConnection?>(nil)
    /// The connection a transaction runs on, while one is open.
    private let pinned = Mutex<PostgresConnection?>(nil)
    private let nextID = Atomic<Int>(1)
    /// Longest wait for one statement's answer.
    let deadline: Duration

    /// Parameters every connection starts with (milliseconds or seconds, as PostgreSQL reads them).
    static let startupParameters: [(String, String)] = [
        // A transaction idle this long is ended by the server (its locks released): longer than
        // anything an append does between its statements (signing a batch), shorter than a lease.
        ("idle_in_transaction_session_timeout", "2000"),
        // A statement waiting this long for a lock gives up (the lease thread retries; an append
        // fails and is answered 503).
        ("lock_timeout", "2000"),
        // Every statement here is short (a batch's insert, a page of a read): one that runs longer
        // is stuck. The client's own deadline (`deadline`, 5 s) covers a server that stops answering.
        ("statement_timeout", "4000"),
        // The server notices a client that vanished within ~10 s.
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
        ("tcp_user_timeout", "10000"),
    ]

    init(url: PostgresURL, group: any EventLoopGroup, logger: Logger, deadline: Duration = .seconds(5)) {
        self.url = url
        self.group = group
        self.logger = logger
        self.deadline = deadline
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ q: PostgresQuery) throws -> [PostgresRow] {
        let inTransaction = pinned.withLock { $0 }
        if let c = inTransaction {
            guard !c.isClosed else { throw StoreError.storage("the connection to PostgreSQL was lost in the middle of a transaction; nothing of it was committed") }
            return try run(q, on: c)
        }
        return try run(q, on: try open())
    }

    @discardableResult
    private func run(_ q: PostgresQuery, on c: PostgresConnection) throws -> [PostgresRow] {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<PostgresQueryResult, Error>?>(nil)
        c.query(q, logger: logger).whenComplete { r in
            result.withLock { $0 = r }
            done.signal()
        }
        let c2 = deadline.components
        if done.wait(timeout: .now() + .milliseconds(Int(c2.seconds * 1000 + c2.attoseconds / 1_000_000_000_000_000))) == .timedOut {
            // The server or the network stopped answering: this connection is done for.
            abandon(c)
            throw StoreError.storage("PostgreSQL at \(url) did not answer within \(deadline)")
        }
        switch result.withLock({ $0 })! {
        case .success(let r): return r.rows
        case .failure(let error):
            if c.isClosed { connection.withLock { if $0 === c { $0 = nil } } }
            throw Self.storeError(error, query: q.sql)
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT; ROLLBACK if it throws), every statement of
    /// it on one connection. Returns after COMMIT.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        let c = try open()
        try run("BEGIN", on: c)
        pinned.withLock { $0 = c }
        defer { pinned.withLock { $0 = nil } }
        let value: T
        do {
            value = try body()
        } catch {
            // A failed statement leaves the transaction aborted; ROLLBACK ends it. If that fails,
            // the connection is closed rather than reused in an unknown state (the server rolls
            // back a transaction whose connection goes).
            do { try run("ROLLBACK", on: c) } catch { abandon(c) }
            throw error
        }
        guard !c.isClosed else { throw StoreError.storage("the connection to PostgreSQL was lost before COMMIT; nothing of the transaction was committed") }
        try run("COMMIT", on: c)
        return value
    }

    /// Closes a connection in an unknown state (not waiting: it may be the one that hangs) and
    /// forgets it, so the next statement opens another.
    private func abandon(_ c: PostgresConnection) {
        let closing: EventLoopFuture<Void> = c.close()
        closing.whenComplete { _ in }
        connection.withLock { if $0 === c { $0 = nil } }
    }

    func close() {
        let c = connection.withLock { c -> PostgresConnection? in defer { c = nil }; return c }
        _ = try? c?.close().wait()
    }

    private func open() throws -> PostgresConnection {
        if let c = connection.withLock({ $0 }), !c.isClosed { return c }
        var config = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                      database: url.database, tls: try url.tls())
        config.options.connectTimeout = .seconds(5)
        config.options.additionalStartupParameters = Self.startupParameters
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
