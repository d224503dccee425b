import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import KeyglassCore
import KeyglassLog
import KeyglassPostgres
import KeyglassServer
import Logging
import ServiceLifecycle

@main
struct KeyglassServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyglass-server",
        abstract: "The Keyglass key transparency log server.",
        discussion: """
        Stores published public keys in SQLite, integrates them into an RFC 9162 Merkle tree, signs
        C2SP checkpoints with Ed25519 and serves proofs, entries and tiles over HTTP.

        Start with `keyglass-server init --data DIR --origin ORIGIN`, then `keyglass-server serve --data DIR`.
        """,
        subcommands: [Init.self, Serve.self, Check.self, Backup.self, Restore.self, Export.self, RotateKey.self, BulkLoad.self, LookupToken.self,
                      Erase.self])
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a data directory: database, Ed25519 signing key and publish token.",
        discussion: """
        Writes DIR/log.sqlite, DIR/signing-key (0600), DIR/publish-token (0600) and DIR/verifier-key.
        Refuses to overwrite an existing signing key. Prints the verifier key as the last line:
        give it to everyone who checks the log.
        """)

    @Option(name: .long, help: "Data directory to create.")
    var data: String

    @Option(name: .long, help: "The log's origin, e.g. keys.example.com/log (also the signing key's name).")
    var origin: String

    @Option(name: .long, help: "Keep the log in PostgreSQL instead of DIR/log.sqlite: postgres://USER@HOST:PORT/DATABASE (the password, if any, from PGPASSWORD). DIR keeps the keys; every server of the log is given a copy of DIR and the same --storage.")
    var storage: String?

    @Flag(name: .long, help: "Create a v2 log, the key directory (device sets, a map, lookups that prove completeness; Spec/directory.md): also writes DIR/vrf-key (0600) and leaf 0, the config with the VRF public key. `serve` then serves /v2 instead of /v1.")
    var directory = false

    func run() async throws {
        let dir = DataDirectory(path: data)
        if directory {
            if storage != nil { throw ValidationError("--directory with --storage: key directories are kept in SQLite only, for now") }
            do {
                let (vkey, vrf) = try await dir.initialiseDirectory(origin: origin)
                print("Initialised the key directory \(dir.path): database, signing key (0600), VRF key (0600), publish token (0600).")
                print("Publish token: \(dir.publishToken) (give it to the provider's back end; the server needs only \(dir.publishTokenHash))")
                print("Lookup token: \(dir.lookupToken) (lookups and histories need one; add more with `keyglass-server lookup-token`)")
                print("VRF public key (leaf 0 names it; clients may pin it): \(Base64.encode(vrf))")
                print(vkey.description)
            } catch {
                throw commandFailed("init", error)
            }
            return
        }
        do {
            let vkey: NoteVerifierKey
            if let storage {
                let url = try PostgresURL(storage)
                let engine = try PostgresStorage(url: url, readers: 1)
                defer { engine.close() }
                vkey = try await dir.initialise(origin: origin, storage: engine, describedAs: url.description)
                print("Initialised \(dir.path): signing key (0600), publish token (0600); the log is in \(url).")
            } else {
                vkey = try await dir.initialise(origin: origin)
                print("Initialised \(dir.path): database, signing key (0600), publish token (0600).")
            }
            print("Publish token: \(dir.publishToken) (give it to the provider's back end; the server needs only \(dir.publishTokenHash))")
            print(vkey.description)
        } catch {
            throw commandFailed("init", error)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the log over HTTP until SIGTERM or SIGINT.",
        discussion: "On SIGTERM the server stops accepting connections, finishes in-flight publishes and exits 0.")

    @Option(name: .long, help: "Data directory made by `init`.")
    var data: String

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port to listen on (0: any free port; see --port-file).")
    var port = 8080

    @Option(name: .long, help: "Once listening, write the port to this file (atomically): with --port 0, how a supervisor or test learns it without racing for a free port.")
    var portFile: String?

    @Option(name: .long, help: "The log is in PostgreSQL (see `init --storage`): postgres://USER@HOST:PORT/DATABASE, password from PGPASSWORD. Any number of servers may serve one such log: one sequences (a lease in the database), the others serve reads and answer publishes with 503 + Retry-After until they take over.")
    var storage: String?

    @Option(name: .long, help: "With --storage: seconds the sequencer lease lasts; a dead sequencer is replaced within about this long plus a sixth of it.")
    var leaseSeconds: Double = 3

    @Flag(name: .long, help: "With --storage: never sequence; serve reads and answer publishes 503 not_sequencer. Implied when the database is a hot standby (and kept if it is promoted later: promoting is a decision to take with care, Deploy/postgres/README.md).")
    var readOnly = false

    @Option(name: .long, help: "Durability of each batch: FULL (fsync every commit; survives power loss) or NORMAL.")
    var sync: String = "FULL"

    @Option(name: .long, help: "Most entries in one batch.")
    var maxBatch = 4096

    @Option(name: .long, help: "Milliseconds to let a batch fill before committing while publishes arrive concurrently (0: commit as soon as the previous batch is done). A lone publish is never delayed.")
    var batchDelayMs = 1

    @Option(name: .long, help: "Fewest lookup-index rows merged from memory into SQLite at a time; merges grow to 1/16 of the indexed rows, at most 65,536 (larger merges cost less per row and more memory; compactions move them on into the main index).")
    var indexMergeRows = 8_192

    @Option(name: .long, help: "Longest transaction of a lookup-index merge or compaction, in milliseconds: each is written in slices between batches, and publishes wait for one slice at most (longer slices: fewer commits, longer waits).")
    var indexMergeSliceMs = 20

    @Option(name: .long, help: "Most publishes queued before the server answers 503 + Retry-After.")
    var maxQueue = 100_000

    @Option(name: .long, help: "Seconds the newest entry's timestamp may be ahead of this server's clock; beyond it publishes are refused with 503 (entries are never stamped in the future).")
    var maxClockSkew = 300
    static let maxClockSkewLimit = 30 * 86_400

    @Option(name: .long, help: "Per-client limit on reads, requests per second (0: unlimited).")
    var readRate: Double = 0

    @Option(name: .long, help: "Per-client limit on self-signed publishes (no operator token), per second (0: unlimited).")
    var signedPublishRate: Double = 5

    @Option(name: .long, help: "Seconds before an idle connection is closed.")
    var idleTimeout = 30

    @Option(name: .long, help: "A witness to collect cosignatures from, as URL=VKEY (repeatable).")
    var witness: [String] = []

    @Option(name: .long, help: "Seconds between re-submissions of an unchanged checkpoint to the witnesses.")
    var witnessHeartbeat = 60

    @Option(name: .long, help: "Keep DIR a static copy of the log in the c2sp.org/tlog-tiles layout (tiles, entry bundles, the checkpoint last), updated every second while the log grows: for nginx or a CDN to serve (see `export`).")
    var exportTiles: String?

    @Option(name: .long, help: "Key directories (init --directory) only: milliseconds between map heads while changes arrive; a change shows in lookups from the next head.")
    var epochMs = 1000

    @Option(name: .long, help: "Key directories only: most changes no map head covers before one is appended, whatever --epoch-ms (1024…131072). Their states wait in memory until a head stores them: this bounds the memory a burst or a long epoch takes.")
    var maxUncoveredChanges = 16_384

    @Option(name: .long, help: "Key directories only: lookups and histories per second per lookup credential, in bursts of 20× (0: unlimited). A lookup answers whether an identity has keys: the limit is what keeps a credential from enumerating who does.")
    var lookupRate: Double = 50

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func run() async throws {
        #if canImport(Glibc)
        // glibc gives each thread that contends for the heap an arena of its own, up to 8 per core,
        // and memory freed in one is not reused by another. Two are enough for this server's few
        // threads: measured under Ed25519 publishes into a 1M-entry log, RSS 95 -> 87 MB at the
        // same rate. Before any thread exists, so every arena the server makes obeys it.
        // mallopt(M_ARENA_MAX = -8, 2); Swift's Glibc module exports neither, so it is looked up.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        if let mallopt = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") { _ = unsafeBitCast(mallopt, to: Mallopt.self)(-8, 2) }
        #endif
        var logger = Logger(label: "keyglass")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        do {
            guard let syncMode = SyncMode(rawValue: sync.uppercased()) else { throw ValidationError("--sync must be FULL or NORMAL") }
            let dir = DataDirectory(path: data)
            if storage == nil {
                do { try requireSQLiteFile(dir, command: "serve") } catch { throw ValidationError("\(error)") }
            }
            let signer = try dir.loadSigner()
            let tokenHash = try dir.loadTokenHash()
            if dir.isDirectory {
                if storage != nil { throw ValidationError("\(data) is a key directory, which is kept in SQLite only: serve it without --storage") }
                try await serveDirectory(dir, signer: signer, tokenHash: tokenHash, sync: syncMode, logger: logger)
                return
            }
            let metrics = ServerMetrics()
            var seqOptions = Sequencer.Options()
            let engine: any LogStorage
            var lease: SequencerLease?
            var merges: IndexMergeFollower?
            if let storage {
                guard (0.6...600).contains(leaseSeconds) else { throw ValidationError("--lease-seconds takes 0.6 to 600") }
                let url: PostgresURL
                do { url = try PostgresURL(storage) } catch { throw ValidationError("\(error)") }
                let postgres = try PostgresStorage(url: url, leaseHolder: SequencerLease.defaultHolder(),
                                                   leaseDuration: .milliseconds(Int64(leaseSeconds * 1000)), logger: logger)
                engine = postgres
                if readOnly || postgres.isStandby {
                    logger.notice("serving reads only", metadata: ["reason": "\(readOnly ? "--read-only" : "the database is a standby")"])
                    seqOptions.lease = ReadOnlyLease()
                } else {
                    lease = postgres.lease
                    seqOptions.lease = lease
                    // A lone server (or the first of several) sequences from its first publish.
                    lease?.attempt()
                }
            } else {
                if readOnly { throw ValidationError("--read-only is for servers of a PostgreSQL log (--storage)") }
                let sqlite = try SQLiteStorage(path: dir.database, sync: syncMode)
                var mergeOptions = IndexMergeFollower.Options()
                mergeOptions.metrics = metrics.log
                mergeOptions.mergeAt = max(1, indexMergeRows)
                mergeOptions.chunk = max(1, indexMergeRows)
                mergeOptions.slice = .milliseconds(max(1, indexMergeSliceMs))
                merges = IndexMergeFollower(storage: sqlite, options: mergeOptions, logger: logger)
                engine = sqlite
            }
            // A key directory whose vrf-key went missing must not come up as a v1 log: it would take
            // v1 publishes into a v2 log.
            if let first = try engine.entries(start: 0, end: 1).first, case .config? = try? DirectoryEntry.parse(first.data) {
                throw ValidationError("\(dir.path) holds a key directory (leaf 0 is its config) but \(dir.vrfKey) is missing: restore it from your backup; refusing to serve it as a v1 log")
            }
            let store = LogStore(storage: engine)
            seqOptions.maxBatch = max(1, maxBatch)
            seqOptions.batchDelay = .milliseconds(max(0, batchDelayMs))
            seqOptions.maxQueue = max(1, maxQueue)
            seqOptions.metrics = metrics.log
            // Bounded so that the skew in milliseconds cannot overflow (a day is already generous).
            guard (0...Self.maxClockSkewLimit).contains(maxClockSkew) else {
                throw ValidationError("--max-clock-skew takes seconds from 0 to \(Self.maxClockSkewLimit) (30 days)")
            }
            seqOptions.maxClockSkew = .seconds(maxClockSkew)
            let sequencer = try Sequencer(store: store, signer: signer, options: seqOptions, logger: logger)
            var options = ServerOptions()
            options.publishTokenHashes = [tokenHash]
            options.readsPerSecond = readRate
            options.signedPublishesPerSecond = signedPublishRate
            options.idleTimeout = .seconds(max(1, idleTimeout))
            let witnessConfigs = try witness.map { try WitnessConfig($0) }
            let collector = witnessConfigs.isEmpty ? nil : WitnessCollector(
                witnesses: witnessConfigs, sequencer: sequencer, store: store, heartbeat: .seconds(max(1, witnessHeartbeat)), logger: logger)
            let api = KeyglassAPI(store: store, sequencer: sequencer, options: options, logger: logger, witnesses: collector,
                                  metrics: metrics, indexFollower: merges)
            let cp = sequencer.latestCheckpoint
            logger.info("serving", metadata: ["origin": "\(signer.name)", "tree_size": "\(cp.size)",
                                              "verifier_key": "\(signer.verifierKey)", "address": "\(host):\(port)"])
            let portFile = portFile
            let listening = logger
            let exporter: [any Service] = exportTiles.map { dir in
                [TileExporter(store: store, to: dir, servedNote: { collector?.servedCheckpoint() }, logger: logger)]
            } ?? []
            // The lease is stopped (and released) after the sequencer, the index merges too.
            var background: [any Service] = exporter
            if let merges { background.insert(merges, at: 0) }
            if let lease { background.insert(lease, at: 0) }
            try await api.application(host: host, port: port, background: background) { bound in
                listening.notice("listening", metadata: ["address": "\(host):\(bound)"])
                if let portFile { try? Data("\(bound)\n".utf8).write(to: URL(fileURLWithPath: portFile), options: .atomic) }
            }.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch let e as ValidationError {
            throw e
        } catch {
            logger.critical("cannot serve: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a data directory: SQLite integrity, and that the stored tree matches the newest checkpoint.")

    @Option(name: .long, help: "Data directory.")
    var data: String

    @Option(name: .long, help: "The log is in PostgreSQL (see `init --storage`): check that the stored tree there matches its newest checkpoint, signed by DIR's key.")
    var storage: String?

    func run() async throws {
        do {
            if let storage {
                let engine = try PostgresStorage(url: try PostgresURL(storage), readers: 1)
                defer { engine.close() }
                let head = try Sequencer(store: LogStore(storage: engine), signer: try DataDirectory(path: data).loadSigner()).latestCheckpoint
                print("ok: tree size \(head.size), root \(head.root.base64)")
                return
            }
            let head = try Self.verify(DataDirectory(path: data))
            print("ok: tree size \(head.size), root \(head.root.base64)")
        } catch {
            throw commandFailed("check", error)
        }
    }

    /// SQLite's integrity check, then the stored tree against the newest checkpoint, signed by the
    /// directory's key (what the sequencer checks when it opens the log). Returns that checkpoint.
    static func verify(_ dir: DataDirectory) throws -> StoredCheckpoint {
        let sqlite = try existingSQLite(dir, command: "check")
        defer { sqlite.close() }
        let integrity = try sqlite.integrityCheck()
        guard integrity == "ok" else { throw StoreError.corrupt("integrity_check: \(integrity)") }
        return try Sequencer(store: LogStore(storage: sqlite), signer: try dir.loadSigner()).latestCheckpoint
    }
}

struct BulkLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-load",
        abstract: "Append synthetic entries through the sequencer, without HTTP (for building big test logs).",
        discussion: "Entries are keys (x25519 by default) for identities bulk-<n>@example.test, sequenced, stored and signed exactly as publishes are. Ed25519 keys come from a pool of 1024 generated ones (a valid point is costly to make).")

    @Option(name: .long, help: "Data directory made by `init`.")
    var data: String

    @Option(name: .long, help: "How many entries to append.")
    var count: Int

    @Option(name: .long, help: "Entries per batch (transaction).")
    var batch = 20000

    @Option(name: .long, help: "FULL or NORMAL.")
    var sync = "NORMAL"

    @Option(name: .long, help: "Key type of the entries: x25519 or ed25519.")
    var keyType = "x25519"

    func run() async throws {
        guard let type = KeyType(rawValue: keyType), type != .p256 else { throw ValidationError("--key-type must be x25519 or ed25519") }
        let pool = type == .ed25519 ? (0..<1024).map { _ in Ed25519.generate().publicKey } : []
        let dir = DataDirectory(path: data)
        let sqlite = try existingSQLite(dir, command: "bulk-load", sync: SyncMode(rawValue: sync.uppercased()) ?? .normal)
        defer { sqlite.close() }
        let merges = IndexMergeFollower(storage: sqlite)
        var options = Sequencer.Options()
        options.maxBatch = batch
        options.maxQueue = max(batch * 2, 1)
        let sequencer = try Sequencer(store: LogStore(storage: sqlite), signer: try dir.loadSigner(), options: options)
        let runner = Task { try await sequencer.run() }
        let merger = Task { try await merges.run() }
        let start = ContinuousClock.now
        let base = sequencer.latestCheckpoint.size
        var done = 0
        while done < count {
            let n = min(batch, count - done)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<n {
                    let id = "bulk-\(base + UInt64(done + i))@example.test"
                    group.addTask {
                        let key = type == .ed25519 ? pool[Int.random(in: 0..<pool.count)] : Ed25519.randomBytes(32)
                        // Generated keys: checked by construction, not again for each entry.
                        _ = try await sequencer.submit(PublishRequest(identity: id, keyType: type, publicKey: key).keyCheckedInFull())
                    }
                }
                try await group.waitForAll()
            }
            done += n
            if done % (batch * 10) == 0 || done == count {
                let elapsed = (ContinuousClock.now - start).components
                let secs = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
                FileHandle.standardError.write(Data("bulk-load: \(done)/\(count) entries, \(Int(Double(done) / max(secs, 0.001)))/s\n".utf8))
            }
        }
        runner.cancel()
        _ = try? await runner.value
        merger.cancel()
        _ = try? await merger.value
        print("tree size \(sequencer.latestCheckpoint.size)")
    }
}

struct RotateKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Replace the log's signing key, keeping its origin; old checkpoints stay verifiable with the old key.",
        discussion: "Stop the server first (with --storage: every server of the log, then give each the new DIR/signing-key). Prints the new verifier key last; publish it, and keep verifier-keys.history.")

    @Option(name: .long, help: "Data directory.")
    var data: String

    @Option(name: .long, help: "The log is in PostgreSQL (see `init --storage`): postgres://USER@HOST:PORT/DATABASE.")
    var storage: String?

    func run() async throws {
        do {
            let dir = DataDirectory(path: data)
            let engine = try openLogStorage(dir, storage: storage, command: "rotate-key")
            defer { engine.close() }
            let (old, new) = try await dir.rotateSigningKey(storage: engine)
            print("retired \(old)")
            print(new.description)
        } catch {
            throw commandFailed("rotate-key", error)
        }
    }
}

/// Prints why a command failed, on standard error, and gives the exit code for "could not do it".
func commandFailed(_ command: String, _ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("keyglass-server \(command): \(error)\n".utf8))
    return ExitCode(1)
}

extension Serve {
    /// A v2 log: the directory's API (`DirectoryAPI`), its writer and epoch timer (`DirectoryService`).
    func serveDirectory(_ dir: DataDirectory, signer: NoteSigner, tokenHash: Hash, sync: SyncMode, logger: Logger) async throws {
        // Held while serving (released when the process ends, however it ends): `erase` changes
        // what this process keeps in memory, so it refuses to run beside it.
        let lock = try ServeLock.hold(dir)
        defer { lock.release() }
        // A smaller writer cache than a v1 log's: the state database's caches share the budget.
        let sqlite = try SQLiteStorage(path: dir.database, sync: sync, secureDelete: true, writerCacheKiB: 8192)
        let merges = IndexMergeFollower(storage: sqlite, logger: logger)
        let vrfSeed = try dir.loadVRFSeed()
        let log = try DirectoryLog(storage: sqlite, signer: signer, vrfSeed: vrfSeed, statePath: dir.directoryState)
        var options = DirectoryService.Options()
        options.epoch = .milliseconds(max(10, epochMs))
        options.maxUncovered = min(max(1024, maxUncoveredChanges), DirectoryLog.forcedHeadChanges)
        options.maxBatch = max(1, maxBatch)
        options.maxQueue = max(1, maxQueue)
        let service = try DirectoryService(log: log, signer: signer, vrfSeed: vrfSeed, options: options, logger: logger)
        let witnessConfigs = try witness.map { try WitnessConfig($0) }
        let collector = witnessConfigs.isEmpty ? nil : WitnessCollector(
            witnesses: witnessConfigs, sequencer: service, store: service.store, heartbeat: .seconds(max(1, witnessHeartbeat)), logger: logger)
        let api = DirectoryAPI(directory: service, publishTokenHashes: [tokenHash], signedChangesPerSecond: signedPublishRate,
                               lookupTokens: try dir.loadLookupTokens(), lookupsPerSecond: lookupRate, witnesses: collector, logger: logger)
        logger.info("serving the key directory", metadata: ["origin": "\(signer.name)", "tree_size": "\(service.latestCheckpoint.size)",
                                                           "verifier_key": "\(signer.verifierKey)", "address": "\(host):\(port)"])
        let portFile = portFile
        let listening = logger
        let app = api.application(host: host, port: port, idleTimeout: .seconds(max(1, idleTimeout))) { bound in
            listening.notice("listening", metadata: ["address": "\(host):\(bound)"])
            if let portFile { try? Data("\(bound)\n".utf8).write(to: URL(fileURLWithPath: portFile), options: .atomic) }
        }
        let exporter: [any Service] = exportTiles.map { [TileExporter(store: service.store, to: $0, logger: logger)] } ?? []
        let group = ServiceGroup(configuration: .init(services: [merges] + exporter + [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
