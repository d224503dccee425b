import Foundation
import KeyglassLog
import KeyglassPostgres

/// How the maintenance commands (check, export, rotate-key, backup, bulk-load) open a log: in
/// PostgreSQL when `--storage` is given, else DIR/log.sqlite, which must already exist. Opening a
/// SQLite path creates the file, so without this a command run on the data directory of a
/// PostgreSQL log (or on a mistyped path) would leave an empty database behind.
func openLogStorage(_ dir: DataDirectory, storage: String?, command: String, sync: SyncMode = .full) throws -> any LogStorage {
    if let storage { return try PostgresStorage(url: try PostgresURL(storage), readers: 1) }
    return try existingSQLite(dir, command: command, sync: sync)
}

/// DIR/log.sqlite, refusing to create it (see `openLogStorage`).
func existingSQLite(_ dir: DataDirectory, command: String, sync: SyncMode = .full) throws -> SQLiteStorage {
    try requireSQLiteFile(dir, command: command)
    return try SQLiteStorage(path: dir.database, readers: 1, sync: sync)
}

/// Throws, saying where the log is, unless DIR/log.sqlite exists.
func requireSQLiteFile(_ dir: DataDirectory, command: String) throws {
    guard FileManager.default.fileExists(atPath: dir.database) else {
        if let elsewhere = try? String(contentsOfFile: dir.storageMarker, encoding: .utf8) {
            throw StoreError.notInitialised("the log of \(dir.path) is in \(elsewhere.trimmingCharacters(in: .whitespacesAndNewlines)): pass --storage"
                + (command == "backup" ? " (or back it up with pg_dump or your database's own backups: `backup` copies SQLite files)" : ""))
        }
        throw StoreError.notInitialised("\(dir.database) does not exist; run `keyglass-server init --data \(dir.path) --origin ORIGIN` first")
    }
}
