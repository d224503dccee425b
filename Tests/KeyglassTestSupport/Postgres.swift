import Foundation
import Synchronization
import KeyglassClient
import KeyglassHTTP

/// A real, throwaway PostgreSQL server (Debian's, installed by `make test`) on a loopback port, its
/// cluster in a temporary directory. PostgreSQL refuses to run as root, and CI runs as root: then
/// every PostgreSQL program runs as the `postgres` user the Debian package creates (`runuser`).
/// Missing programs or a server that does not start fail the test with PostgreSQL's own words.
public final class PostgresServer: Sendable {
    public let directory: String
    public let port: Int
    /// The superuser the cluster was made with; trusted on loopback (tests only).
    public let user = "keyglass"
    private let process: Process

    private init(directory: String, port: Int, process: Process) {
        self.directory = directory
        self.port = port
        self.process = process
    }

    /// A cluster in a new scratch directory under the test process's root (`TestLog.temporaryDirectory`);
    /// `discard` stops it and removes the directory.
    public static func scratch(_ name: String) async throws -> (work: String, pg: PostgresServer) {
        let work = TestLog.temporaryDirectory(name)
        return (work, try await start(in: work))
    }

    /// Stops the cluster and removes the scratch directory it was started in.
    public func discard() {
        stop()
        try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent)
    }

    /// `postgres://keyglass@127.0.0.1:PORT/DATABASE`.
    public func url(_ database: String) -> String { "postgres://\(user)@127.0.0.1:\(port)/\(database)" }

    /// Starts a new cluster in a fresh directory under `parent`; `settings` are further `-c`
    /// settings (e.g. TLS's).
    public static func start(in parent: String, settings: [String] = []) async throws -> PostgresServer {
        reapOrphans()
        let dir = try makeDirectory(in: parent, name: "pg-primary")
        let initdb = try run("initdb", ["-D", dir, "-U", "keyglass", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])
        guard initdb.status == 0 else { throw ClientError.network("initdb failed: \(initdb.stderr)") }
        // Replication from loopback is in initdb's pg_hba.conf already (trust), for standbys.
        return try await launch(dir: dir, settings: settings)
    }

    /// Starts a hot standby of `primary`, streaming from it (pg_basebackup -R writes its settings).
    public static func startStandby(of primary: PostgresServer, in parent: String) async throws -> PostgresServer {
        let dir = try makeDirectory(in: parent, name: "pg-standby")
        // pg_basebackup fills the empty directory (the postgres user could not create one here).
        let backup = try run("pg_basebackup", ["-h", "127.0.0.1", "-p", "\(primary.port)", "-U", primary.user, "-D", dir, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])
        guard backup.status == 0 else { throw ClientError.network("pg_basebackup failed: \(backup.stderr)") }
        return try await launch(dir: dir)
    }

    private static func launch(dir: String, settings: [String] = []) async throws -> PostgresServer {
        // A port the kernel had free a moment ago; PostgreSQL cannot be told "any port", so a lost
        // race (another process took it) is retried with another.
        for _ in 0..<5 {
            let port = try Nginx.freePort()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try asPostgresUser ? SystemTool.path("runuser") : binary("postgres"))
            // TCP on loopback only: a socket path under a test's directory would exceed 107 bytes.
            let args = ["-D", dir, "-p", "\(port)", "-c", "unix_socket_directories=", "-c", "listen_addresses=127.0.0.1",
                        // Throwaway data: durability against power loss is not what these tests test,
                        // commit visibility and locking are (and they do not depend on fsync).
                        "-c", "fsync=off", "-c", "max_connections=300", "-c", "hot_standby_feedback=on"]
                + settings.flatMap { ["-c", $0] }
            p.arguments = try asPostgresUser ? ["-u", "postgres", "--", binary("postgres")] + args : args
            _ = FileManager.default.createFile(atPath: dir + ".log", contents: nil)
            if asPostgresUser { _ = chown(dir + ".log", postgresUID, postgresGID) }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + ".log"))
            p.standardOutput = log
            p.standardError = log
            try p.run()
            let server = PostgresServer(directory: dir, port: port, process: p)
            for _ in 0..<200 {
                if try run("pg_isready", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "keyglass", "-d", "postgres"]).status == 0 { return server }
                guard p.isRunning else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            server.stop()
            let text = (try? String(contentsOfFile: dir + ".log", encoding: .utf8)) ?? ""
            if !text.contains("could not bind") && !text.contains("in use") {
                throw ClientError.network("PostgreSQL did not start: \(text.suffix(2000))")
            }
        }
        throw ClientError.network("PostgreSQL found no free port in 5 tries")
    }

    /// Creates a database and returns its URL.
    public func createDatabase(_ name: String) throws -> String {
        try sql("CREATE DATABASE \(name)", database: "postgres")
        return url(name)
    }

    /// Runs SQL with psql (on its standard input, so a statement may be long); returns its output
    /// (unaligned, tuples only, and a command's tag such as "UPDATE 1"). Throws on any error.
    @discardableResult
    public func sql(_ statement: String, database: String) throws -> String {
        let r = try Binaries.runProcess(URL(fileURLWithPath: try Self.binary("psql")),
                                        ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"],
                                        input: Data(statement.utf8), timeout: 120)
        guard r.status == 0 else { throw ClientError.network("psql \(statement.prefix(300)): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Fast shutdown (SIGINT to the postmaster: active transactions are rolled back).
    public func stop() {
        _ = try? Self.run("pg_ctl", ["-D", directory, "-m", "fast", "-w", "-t", "30", "stop"])
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// A test process that crashed left its clusters running (its exit handlers never ran): stops
    /// every cluster under a `keyglass-tests-PID` directory whose process is gone, and removes it.
    private static let reaped = Mutex(false)
    static func reapOrphans() {
        guard !reaped.withLock({ r in defer { r = true }; return r }) else { return }
        let tmp = FileManager.default.temporaryDirectory.path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix("keyglass-tests-") {
            guard let pid = Int32(name.dropFirst("keyglass-tests-".count)), pid != getpid(), kill(pid, 0) != 0 else { continue }
            let root = tmp + "/" + name
            let found = FileManager.default.enumerator(atPath: root)
            while let path = found?.nextObject() as? String {
                if path.hasSuffix("postmaster.pid") {
                    _ = try? run("pg_ctl", ["-D", root + "/" + String(path.dropLast("/postmaster.pid".count)), "-m", "immediate", "-w", "-t", "20", "stop"])
                }
            }
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    // MARK: Running PostgreSQL's programs

    static var asPostgresUser: Bool { getuid() == 0 }
    static let postgresUID: uid_t = getpwnam("postgres").map { $0.pointee.pw_uid } ?? 0
    static let postgresGID: gid_t = getpwnam("postgres").map { $0.pointee.pw_gid } ?? 0

    /// The newest installed PostgreSQL's program `name` (Debian keeps them out of PATH).
    static func binary(_ name: String) throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        for v in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/\(name)") {
            return "\(root)/\(v)/bin/\(name)"
        }
        throw ClientError.network("PostgreSQL's \(name) is not installed under \(root) (`make test` installs Debian's postgresql)")
    }

    static func run(_ name: String, _ args: [String]) throws -> Binaries.Result {
        let path = try binary(name)
        if asPostgresUser {
            return try Binaries.runProcess(URL(fileURLWithPath: try SystemTool.path("runuser")), ["-u", "postgres", "--", path] + args, input: nil, timeout: 120)
        }
        return try Binaries.runProcess(URL(fileURLWithPath: path), args, input: nil, timeout: 120)
    }

    /// Gives a file to the server's user (a TLS key PostgreSQL reads must be its own, 0600).
    public static func giveToServerUser(_ path: String) {
        chmod(path, 0o600)
        if asPostgresUser { _ = chown(path, postgresUID, postgresGID) }
    }

    /// A directory the server's user owns (0700, as PostgreSQL requires).
    public static func makeDirectory(in parent: String, name: String) throws -> String {
        let dir = parent + "/" + name + "-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if asPostgresUser {
            // The postgres user must reach it: every directory above it is at least searchable.
            var p = URL(fileURLWithPath: parent)
            while p.path != "/" {
                chmod(p.path, (try? FileManager.default.attributesOfItem(atPath: p.path)[.posixPermissions] as? Int).map { mode_t($0) | 0o011 } ?? 0o755)
                p.deleteLastPathComponent()
            }
            guard chown(dir, postgresUID, postgresGID) == 0 else { throw ClientError.network("cannot give \(dir) to the postgres user") }
        }
        return dir
    }
}
