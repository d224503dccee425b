import ArgumentParser
import Foundation
import KeyglassLog

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the log's database to FILE while the server goes on serving and publishing.",
        discussion: """
        The copy is one consistent snapshot (SQLite's online backup inside one read transaction): \
        every entry acknowledged before the backup began is in it, with the checkpoints that commit \
        to it. It holds no secret: back up DIR/signing-key and DIR/publish-token.sha256 once, \
        separately (they change only with rotate-key). Prints the copy's tree size.
        """)

    @Option(name: .long, help: "Data directory of the log.")
    var data: String

    @Option(name: .long, help: "The backup file to write (must not exist).")
    var to: String

    func run() async throws {
        do {
            let dir = DataDirectory(path: data)
            try requireSQLiteFile(dir, command: "backup")
            let size = try SQLiteStorage.backup(database: dir.database, to: to)
            print("ok: backed up tree size \(size) to \(to)")
        } catch {
            throw commandFailed("backup", error)
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a new data directory from a backup file and the log's keys, and check it.",
        discussion: """
        Copies FILE to NEWDIR/log.sqlite and the key files (signing-key, verifier-key, \
        publish-token.sha256 and, if present, publish-token) from --keys-from, then checks the \
        result as `check` does: SQLite integrity, and the stored tree against the newest checkpoint \
        signed by that key. NEWDIR must not exist. Then `serve --data NEWDIR`.
        """)

    @Option(name: .long, help: "The backup file (from `backup`).")
    var from: String

    @Option(name: .long, help: "The new data directory to create.")
    var data: String

    @Option(name: .long, help: "A directory holding the log's key files (the old data directory, or your key backup).")
    var keysFrom: String

    func run() async throws {
        let dir = DataDirectory(path: data)
        let fm = FileManager.default
        do {
            guard !fm.fileExists(atPath: dir.path) else { throw ValidationError("\(dir.path) exists; restore makes a new data directory") }
            guard fm.fileExists(atPath: from) else { throw ValidationError("\(from) does not exist") }
            let keys = DataDirectory(path: keysFrom)
            guard fm.fileExists(atPath: keys.signingKey) else { throw ValidationError("\(keys.signingKey) not found: restore needs the log's signing key") }
            try fm.createDirectory(atPath: dir.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.copyItem(atPath: from, toPath: dir.database)
            for (source, target) in [(keys.signingKey, dir.signingKey), (keys.verifierKey, dir.verifierKey),
                                     (keys.publishTokenHash, dir.publishTokenHash), (keys.publishToken, dir.publishToken)]
            where fm.fileExists(atPath: source) {
                try fm.copyItem(atPath: source, toPath: target)
                if target != dir.verifierKey { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target) }
            }
            let head = try Check.verify(dir)
            print("ok: restored tree size \(head.size), root \(head.root.base64), into \(dir.path)")
        } catch let e as ValidationError {
            throw e
        } catch {
            throw commandFailed("restore", error)
        }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the log as static files (c2sp.org/tlog-tiles) for nginx or a CDN to serve.",
        discussion: """
        Writes OUT/tile/<L>/<N>[.p/<W>] (hash tiles), OUT/tile/entries/<N>[.p/<W>] (entry bundles) and \
        OUT/checkpoint, the checkpoint last and every file renamed into place whole, so a reader never \
        sees a checkpoint whose tiles are missing. Full tiles are immutable and written once: running \
        it again writes only what the log added (`serve --export-tiles OUT` does so every second). \
        Safe while the server runs. `keyglass audit --log URL` of a server serving OUT re-derives the \
        log from the tiles.
        """)

    @Option(name: .long, help: "Data directory.")
    var data: String

    @Option(name: .long, help: "The directory to write (created if missing).")
    var to: String

    @Option(name: .long, help: "The log is in PostgreSQL (see `init --storage`): postgres://USER@HOST:PORT/DATABASE.")
    var storage: String?

    func run() async throws {
        do {
            let engine = try openLogStorage(DataDirectory(path: data), storage: storage, command: "export")
            defer { engine.close() }
            let result = try TileExport(store: LogStore(storage: engine), to: to).run()
            print("exported the tree of \(result.treeSize) entries to \(to) (\(result.written) files written)")
        } catch {
            throw commandFailed("export", error)
        }
    }
}
