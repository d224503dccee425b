import Foundation
import KeyglassCore
import KeyglassHTTP
import KeyglassLog
import KeyglassPostgres
import Synchronization

/// Which storage engine the tests' logs use. SQLite, the embedded default, unless
/// `KEYGLASS_TEST_STORAGE=postgres`: then every `TestLog` (and the binary-level crash test) keeps its
/// log in a database of its own on one throwaway PostgreSQL cluster per test process. `make test`
/// runs the crash, evil-log and interop suites both ways.
public enum TestStorage {
    public static var usesPostgres: Bool { ProcessInfo.processInfo.environment["KEYGLASS_TEST_STORAGE"] == "postgres" }

    /// The process's cluster, started on first use and stopped when the process exits.
    public static func cluster() async throws -> PostgresServer { try await SharedCluster.shared.server() }

    /// A new, empty database on the process's cluster; returns its URL and name.
    public static func newDatabase() async throws -> (url: String, name: String, server: PostgresServer) {
        let server = try await cluster()
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        return (try server.createDatabase(String(name)), String(name), server)
    }

    /// Turns the few SQLite spellings the tests' tampering uses into PostgreSQL's: blob literals
    /// x'…', zeroblob(n) and randomblob(n).
    public static func postgresSQL(_ sqlite: String) -> String {
        var out = sqlite
        while let r = out.range(of: #"[xX]'([0-9a-fA-F]*)'"#, options: .regularExpression) {
            let hex = out[r].dropFirst(2).dropLast()
            out.replaceSubrange(r, with: "'\\x\(hex)'::bytea")
        }
        while let r = out.range(of: #"zeroblob\(([0-9]+)\)"#, options: .regularExpression) {
            let n = Int(out[r].dropFirst(9).dropLast()) ?? 0
            out.replaceSubrange(r, with: "'\\x\(String(repeating: "00", count: n))'::bytea")
        }
        while let r = out.range(of: #"randomblob\(([0-9]+)\)"#, options: .regularExpression) {
            let n = Int(out[r].dropFirst(11).dropLast()) ?? 0
            out.replaceSubrange(r, with: "'\\x\(Hex.encode(Ed25519.randomBytes(n)))'::bytea")
        }
        return out
    }

    /// Replaces a PostgreSQL log's whole history with `entries` and a checkpoint for it signed by
    /// `signer` (`TestLog.forgeHistory`'s PostgreSQL form), through the driver's own writes.
    static func forgeHistory(url: String, database: String, server: PostgresServer, signer: NoteSigner,
                             entries: [(identity: String, data: [UInt8])]) throws {
        try server.sql("TRUNCATE entries, nodes, checkpoints", database: database)
        let storage = try PostgresStorage(url: try PostgresURL(url), readers: 1)
        defer { storage.close() }
        var range = CompactRange()
        let first = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: 0, root: range.root), with: signer).note.serialized
        // initialise refuses a database with a checkpoint; meta's rows are already there.
        try server.sql("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES (0, '\\x\(Hex.encode(range.root.bytes))'::bytea, "
            + "'\(first.replacingOccurrences(of: "'", with: "''"))', 0)", database: database)
        var batchEntries: [SequencedBatch.Entry] = []
        var nodes: [SequencedBatch.Node] = []
        for (identity, data) in entries {
            let leaf = Merkle.leafHash(data)
            batchEntries.append(SequencedBatch.Entry(index: range.size, identity: identity, data: data, leafHash: leaf))
            range.append(leaf) { id, hash in if id.level > 0 { nodes.append(SequencedBatch.Node(id: id, hash: hash)) } }
        }
        guard !batchEntries.isEmpty else { return }
        let note = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: range.size, root: range.root), with: signer).note.serialized
        try storage.append(SequencedBatch(previousSize: 0, entries: batchEntries, nodes: nodes,
                                          checkpoint: StoredCheckpoint(size: range.size, root: range.root, note: note), signedAtMillis: 0))
    }
}

/// The process's one PostgreSQL cluster (an actor: tests start logs concurrently).
actor SharedCluster {
    static let shared = SharedCluster()
    private var started: PostgresServer?
    /// The cluster's directory, for the exit handler (a C function pointer captures nothing).
    static let directory = Mutex<String?>(nil)

    func server() async throws -> PostgresServer {
        if let started { return started }
        let s = try await PostgresServer.start(in: TestLog.processRoot)
        started = s
        Self.directory.withLock { $0 = s.directory }
        atexit {
            // Before the process's scratch directory goes (that handler was registered earlier,
            // so it runs later): a fast shutdown of the cluster.
            if let dir = SharedCluster.directory.withLock({ $0 }) {
                _ = try? PostgresServer.run("pg_ctl", ["-D", dir, "-m", "immediate", "-w", "-t", "20", "stop"])
            }
        }
        return s
    }
}
