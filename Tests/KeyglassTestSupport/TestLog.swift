import CKeyglassSQLite
import Foundation
import Hummingbird
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassLog
import KeyglassPostgres
import KeyglassServer
import KeyglassWire
import KeyglassWitness
import Logging
import ServiceLifecycle

/// A real log for tests: a fresh data directory (real SQLite file, real signing key) and a real
/// HTTP server on a loopback port chosen by the kernel.
public final class TestLog: Sendable {
    public let directory: DataDirectory
    public let verifierKey: NoteVerifierKey
    public let token: String
    /// With `KEYGLASS_TEST_STORAGE=postgres` (`TestStorage`): the log's database on the process's
    /// PostgreSQL cluster; nil: the log is DIR/log.sqlite.
    public let postgres: (url: String, name: String, server: PostgresServer)?

    /// A new data directory; `copying` starts from a copy of another log's (same signing key: a fork).
    public init(copying other: TestLog? = nil) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keyglass-test-\(UUID().uuidString)").path
        directory = DataDirectory(path: path)
        if let other {
            try FileManager.default.copyItem(atPath: other.directory.path, toPath: path)
            verifierKey = other.verifierKey
            if let source = other.postgres {
                // A copy of the database too: the same history, diverging from here.
                let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
                try source.server.sql("CREATE DATABASE \(name) TEMPLATE \(source.name)", database: "postgres")
                postgres = (source.server.url(String(name)), String(name), source.server)
            } else {
                postgres = nil
            }
        } else if TestStorage.usesPostgres {
            let database = try await TestStorage.newDatabase()
            let engine = try PostgresStorage(url: try PostgresURL(database.url), readers: 1)
            defer { engine.close() }
            verifierKey = try await directory.initialise(origin: "test.keyglass.example/log", storage: engine, describedAs: database.url)
            postgres = database
        } else {
            verifierKey = try await directory.initialise(origin: "test.keyglass.example/log")
            postgres = nil
        }
        token = try directory.loadToken()
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory.path) }

    /// `sync` and `vfs` are the store's (tests run with NORMAL unless durability is what they test).
    /// `merges`: the lookup-index follower's options; nil leaves it stopped, for tests that step it
    /// by hand (`RunningServer.merges`).
    public func start(options: Sequencer.Options = Sequencer.Options(), merges: IndexMergeFollower.Options? = IndexMergeFollower.Options(),
                      witnesses: [WitnessConfig] = [],
                      heartbeat: Duration = .seconds(60), maxPages: Int? = nil, sync: SyncMode = .normal, vfs: String? = nil,
                      logLevel: Logger.Level = .warning, wrapStorage: (SQLiteStorage) -> any LogStorage = { $0 },
                      configure: (inout ServerOptions) -> Void = { _ in }) async throws -> RunningServer {
        let sqlite: SQLiteStorage? = postgres == nil ? try SQLiteStorage(path: directory.database, sync: sync, maxPages: maxPages, vfs: vfs) : nil
        // PostgreSQL: the log's only server, so no lease (the lease's own tests run several).
        // `wrapStorage` and the SQLite-only options apply to SQLite logs.
        let engine: any LogStorage = try sqlite.map(wrapStorage) ?? PostgresStorage(url: try PostgresURL(postgres!.url), readers: 4)
        let store = LogStore(storage: engine)
        var logger = Logger(label: "keyglass-test")
        logger.logLevel = logLevel
        var sequencerLogger = Logger(label: "keyglass.sequencer")
        sequencerLogger.logLevel = logLevel > .warning ? logLevel : .info  // as before, unless asked to be quieter
        let metrics = ServerMetrics()
        var followerOptions = merges ?? IndexMergeFollower.Options()
        followerOptions.metrics = metrics.log
        let follower = sqlite.map { IndexMergeFollower(storage: $0, options: followerOptions, logger: sequencerLogger) }
        var options = options
        options.metrics = metrics.log
        let sequencer = try Sequencer(store: store, signer: try directory.loadSigner(), options: options, logger: sequencerLogger)
        var serverOptions = ServerOptions()
        serverOptions.publishTokens = [token]
        configure(&serverOptions)
        let collector = witnesses.isEmpty ? nil : WitnessCollector(witnesses: witnesses, sequencer: sequencer, store: store, heartbeat: heartbeat, logger: logger)
        let api = KeyglassAPI(store: store, sequencer: sequencer, options: serverOptions, logger: logger, witnesses: collector,
                              metrics: metrics, indexFollower: follower)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = api.application(host: "127.0.0.1", port: 0, background: merges == nil ? [] : follower.map { [$0] } ?? []) { port in portContinuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ClientError.network("server did not start") }
        return RunningServer(client: LogClient(base: URL(string: "http://127.0.0.1:\(port)")!), group: group, task: task, store: store,
                             sqlite: sqlite, merges: follower, sequencer: sequencer)
    }
}

public struct RunningServer: Sendable {
    public let client: LogClient
    let group: ServiceGroup
    let task: Task<Void, Error>
    public let store: LogStore
    /// The SQLite engine under `store` (under the test's wrapper, if it gave one); nil for a log on
    /// PostgreSQL, which the suites that need it are not run against.
    public let sqlite: SQLiteStorage!
    /// The lookup-index follower: running unless the test started the server with `merges: nil`
    /// (SQLite only).
    public let merges: IndexMergeFollower!
    /// The sequencer itself: a test that plays an operator running modified software submits
    /// entries here, past every check the HTTP layer makes.
    public let sequencer: Sequencer

    /// Stops like SIGTERM does: graceful shutdown, in-flight work finished.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        // Every service has stopped: close the database now rather than whenever the last
        // reference goes, so a test that copies or reopens the directory next finds it whole.
        store.close()
    }
}

extension TestLog {
    /// Runs `body` against a started server and stops it afterwards, also when `body` throws.
    public func withServer<T>(options: Sequencer.Options = Sequencer.Options(),
                              merges: IndexMergeFollower.Options? = IndexMergeFollower.Options(), witnesses: [WitnessConfig] = [],
                              heartbeat: Duration = .seconds(60), maxPages: Int? = nil, sync: SyncMode = .normal,
                              wrapStorage: (SQLiteStorage) -> any LogStorage = { $0 },
                              configure: (inout ServerOptions) -> Void = { _ in },
                              _ body: (RunningServer) async throws -> T) async throws -> T {
        let server = try await start(options: options, merges: merges, witnesses: witnesses, heartbeat: heartbeat, maxPages: maxPages,
                                     sync: sync, wrapStorage: wrapStorage, configure: configure)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Publishes `key` for `identity` with the operator token.
    @discardableResult
    public func publish(_ server: RunningServer, identity: String, keyType: KeyType = .ed25519, key: [UInt8]? = nil) async throws -> PublishAnswer {
        let k = key ?? Ed25519.generate().publicKey
        return try await server.client.publish(PublishBody(identity: identity, key_type: keyType.rawValue, public_key: Base64.encode(k)), token: token)
    }
}

extension TestLog {
    /// Runs SQL on the log's database directly, behind the server's back: how the tests play a
    /// compromised operator who edits storage.
    public func tamper(_ sql: String, requireChanges: Bool = true) throws {
        if let postgres {
            let output = try postgres.server.sql(TestStorage.postgresSQL(sql), database: postgres.name)
            // psql prints each command's tag ("UPDATE 1", "INSERT 0 1"): the last number is the rows.
            let changed = output.split(separator: "\n").last.flatMap { $0.split(separator: " ").last.flatMap { Int($0) } } ?? 0
            guard !requireChanges || changed > 0 else { throw ClientError.network("tamper changed nothing: \(sql)") }
            return
        }
        let changed = try Self.tamper(database: directory.database, sql)
        guard !requireChanges || changed > 0 else { throw ClientError.network("tamper changed nothing: \(sql)") }
    }

    /// Runs SQL on the SQLite database at `path` on a connection of its own; returns the rows it changed.
    @discardableResult
    public static func tamper(database path: String, _ sql: String) throws -> Int {
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw ClientError.network("cannot open database") }
        defer { sqlite3_close(db) }
        sqlite3_busy_timeout(db, 5000)
        var err: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &err) == SQLITE_OK else {
            let m = err.map { String(cString: $0) } ?? "?"
            sqlite3_free(err)
            throw ClientError.network("tamper failed: \(m)")
        }
        return Int(sqlite3_changes(db))
    }

    /// Counts the rows of a lookup index, `identity_index` or `leaf_index`, in both of its levels.
    public static func indexRows(_ table: String) -> String {
        "SELECT (SELECT count(*) FROM \(table)) + (SELECT count(*) FROM \(table)_recent)"
    }

    /// Deletes the rows of `table` (a lookup index) from entry `index` on, in both levels: what a
    /// crash leaves when the slices that wrote them had not committed.
    public func forgetIndexRows(_ table: String, from index: UInt64) throws {
        try tamper("DELETE FROM \(table) WHERE idx >= \(index)", requireChanges: false)
        try tamper("DELETE FROM \(table)_recent WHERE idx >= \(index)", requireChanges: false)
    }

    /// The first column of the first row of a query on the log's database (0 if there is no row).
    public func scalar(_ sql: String) throws -> Int64 {
        if let postgres {
            let output = try postgres.server.sql(TestStorage.postgresSQL(sql), database: postgres.name)
            return Int64(output.split(separator: "\n").first.map(String.init) ?? "0") ?? 0
        }
        var db: OpaquePointer?
        guard sqlite3_open_v2(directory.database, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { throw ClientError.network("cannot open database") }
        defer { sqlite3_close(db) }
        // Tests poll this while the server writes: wait out a momentary lock rather than fail.
        sqlite3_busy_timeout(db, 5000)
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { throw ClientError.network("scalar \(sql): \(String(cString: sqlite3_errmsg(db)))") }
        defer { sqlite3_finalize(stmt) }
        switch sqlite3_step(stmt) {
        case SQLITE_ROW: return sqlite3_column_int64(stmt, 0)
        case SQLITE_DONE: return 0
        default: throw ClientError.network("scalar \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    /// A fresh state directory for an auditor.
    public static func temporaryDirectory(_ name: String) -> String {
        processRoot + "/\(name)-\(UUID().uuidString)"
    }

    /// Every test's scratch directory lives under one per test process, removed when the process
    /// exits: a test that fails before its cleanup, or keeps a witness's or an auditor's state
    /// without removing it, leaves nothing behind (runs used to leave ~45 directories in /tmp).
    static let processRoot: String = {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("keyglass-tests-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TestLog.processRoot) }
        return root
    }()
}

/// A real witness on a loopback port.
public struct RunningWitness: Sendable {
    public let witness: Witness
    public let url: URL
    let group: ServiceGroup
    let task: Task<Void, Error>

    public static func start(name: String, logs: [NoteVerifierKey], state: String,
                             clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }) async throws -> RunningWitness {
        let witness = try Witness(signer: try NoteSigner.generate(name: name), logs: logs, stateDirectory: state, clock: clock)
        var logger = Logger(label: "keyglass-test-witness")
        logger.logLevel = .warning
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        let app = WitnessServer.application(witness: witness, host: "127.0.0.1", port: 0, logger: logger) { cont.yield($0) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw ClientError.network("witness did not start") }
        return RunningWitness(witness: witness, url: URL(string: "http://127.0.0.1:\(port)")!, group: group, task: task)
    }

    public var config: WitnessConfig { WitnessConfig(url: url, key: witness.verifierKey) }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
