import CKeyglassSQLite
import Foundation
import KeyglassCore

/// A thin layer over SQLite's C API: open, prepare (cached), bind, step. Not thread-safe: every
/// connection is owned by one `SQLiteWorker`, which runs all its calls on one serial queue.
final class SQLiteConnection {
    private var db: OpaquePointer?
    private var cache: [String: OpaquePointer] = [:]
    /// Statements stepped since the last `releaseStatements()`. A stepped statement that is not
    /// reset keeps its read transaction, and with it an old WAL snapshot, open.
    private var inUse: [OpaquePointer] = []
    let path: String

    struct Failure: Error, CustomStringConvertible {
        let code: Int32
        let message: String
        var description: String { "SQLite error \(code): \(message)" }
        /// Disk full, read-only database or I/O error: the operator has to act; not the client's fault.
        var isStorageFault: Bool {
            let primary = code & 0xff
            return primary == SQLITE_FULL || primary == SQLITE_READONLY || primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN
                || (primary == SQLITE_ERROR && message.contains("query_only"))
        }
    }

    /// `vfs`: a registered SQLite VFS by name, nil for the default (the tests' power-cut VFS).
    init(path: String, readOnly: Bool = false, vfs: String? = nil) throws {
        self.path = path
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, vfs)
        guard rc == SQLITE_OK else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(db)
            db = nil
            throw Failure(code: rc, message: "\(msg) (\(path))")
        }
        sqlite3_extended_result_codes(db, 1)
        // Readers may wait briefly on a checkpointing writer rather than fail.
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { close() }

    /// Finalises every statement and closes the connection (the last one to close a WAL database
    /// checkpoints it and removes the WAL). Idempotent; the connection is unusable afterwards.
    func close() {
        inUse.removeAll()
        for (_, s) in cache { sqlite3_finalize(s) }
        cache.removeAll()
        if db != nil { sqlite3_close_v2(db) }
        db = nil
    }

    /// Resets every statement used since the last call, ending their implicit read transactions.
    func releaseStatements() {
        for s in inUse { sqlite3_reset(s) }
        inUse.removeAll(keepingCapacity: true)
    }

    /// Copies this connection's whole database into `destination`'s, with SQLite's online backup
    /// in one step: one read transaction, so the copy is one consistent snapshot while writers go on
    /// (a WAL reader never blocks them).
    func backup(into destination: SQLiteConnection) throws {
        guard let b = sqlite3_backup_init(destination.db, "main", db, "main") else { throw destination.failure(SQLITE_ERROR) }
        let rc = sqlite3_backup_step(b, -1)
        let finish = sqlite3_backup_finish(b)
        guard rc == SQLITE_DONE, finish == SQLITE_OK else { throw destination.failure(rc == SQLITE_DONE ? finish : rc) }
    }

    /// Writes `count` bytes into the blob column `column` of row `rowid` of `table` (a blob of
    /// that size already, e.g. `zeroblob(count)`), `fill` producing them a piece at a time: a
    /// large blob is written without ever being whole in memory.
    func writeBlob(table: String, column: String, rowid: Int64, count: Int, fill: (_ offset: Int, _ piece: inout [UInt8]) -> Void) throws {
        var blob: OpaquePointer?
        var rc = sqlite3_blob_open(db, "main", table, column, rowid, 1, &blob)
        guard rc == SQLITE_OK, let blob else { throw failure(rc) }
        defer { sqlite3_blob_close(blob) }
        var piece: [UInt8] = []
        var offset = 0
        while offset < count {
            piece.removeAll(keepingCapacity: true)
            fill(offset, &piece)
            guard !piece.isEmpty, offset + piece.count <= count else { throw Failure(code: SQLITE_MISUSE, message: "a blob piece of \(piece.count) bytes at \(offset) of \(count)") }
            rc = piece.withUnsafeBytes { sqlite3_blob_write(blob, $0.baseAddress, Int32($0.count), Int32(offset)) }
            guard rc == SQLITE_OK else { throw failure(rc) }
            offset += piece.count
        }
    }

    /// Rows changed by the latest INSERT, UPDATE or DELETE on this connection.
    var changes: Int { Int(sqlite3_changes(db)) }

    func execute(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(err)
            throw Failure(code: rc, message: msg)
        }
    }

    private func failure(_ rc: Int32) -> Failure {
        Failure(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)))
    }

    /// A prepared statement, reset and with bindings cleared, ready to bind.
    func statement(_ sql: String) throws -> Statement {
        if let s = cache[sql] {
            sqlite3_reset(s)
            sqlite3_clear_bindings(s)
            inUse.append(s)
            return Statement(handle: s, connection: self)
        }
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil)
        guard rc == SQLITE_OK, let stmt = s else { throw failure(rc) }
        cache[sql] = stmt
        inUse.append(stmt)
        return Statement(handle: stmt, connection: self)
    }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws.
    /// `readOnly`: a deferred transaction, which takes no write lock (allowed on a query-only
    /// connection): many reads share one snapshot instead of taking one each.
    func transaction<T>(readOnly: Bool = false, _ body: () throws -> T) throws -> T {
        try execute(readOnly ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE")
        do {
            let result = try body()
            // A statement left mid-result (e.g. a SELECT that returned its row) keeps a read
            // transaction open past COMMIT, and then no checkpoint can move the WAL back into the
            // database: the WAL grows without bound. Reset them all before committing.
            releaseStatements()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    struct Statement {
        let handle: OpaquePointer
        unowned let connection: SQLiteConnection

        private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

        func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
        func bind(_ index: Int32, _ value: UInt64) { sqlite3_bind_int64(handle, index, Int64(bitPattern: value)) }
        func bind(_ index: Int32, _ value: String) { sqlite3_bind_text(handle, index, value, -1, Self.transient) }
        func bind(_ index: Int32, _ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count), Self.transient) }
        }
        func bind(_ index: Int32, _ hash: Hash) {
            _ = hash.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, 32, Self.transient) }
        }

        /// Steps once: true when a row is available, false when done.
        @discardableResult
        func step() throws -> Bool {
            let rc = sqlite3_step(handle)
            if rc == SQLITE_ROW { return true }
            if rc == SQLITE_DONE { return false }
            throw connection.failureForStatement(rc)
        }

        func int64(_ col: Int32) -> Int64 { sqlite3_column_int64(handle, col) }
        func uint64(_ col: Int32) -> UInt64 { UInt64(bitPattern: sqlite3_column_int64(handle, col)) }
        func isNull(_ col: Int32) -> Bool { sqlite3_column_type(handle, col) == SQLITE_NULL }
        func text(_ col: Int32) -> String {
            guard let p = sqlite3_column_text(handle, col) else { return "" }
            return String(cString: p)
        }
        func blob(_ col: Int32) -> [UInt8] {
            let n = Int(sqlite3_column_bytes(handle, col))
            guard n > 0, let p = sqlite3_column_blob(handle, col) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: n))
        }
        /// The blob's bytes, without a copy of their own: valid only inside `body`.
        func withBlob<R>(_ col: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let n = Int(sqlite3_column_bytes(handle, col))
            return try body(UnsafeRawBufferPointer(start: n > 0 ? sqlite3_column_blob(handle, col) : nil, count: n))
        }
        func hash(_ col: Int32) -> Hash? {
            let n = Int(sqlite3_column_bytes(handle, col))
            guard n == 32, let p = sqlite3_column_blob(handle, col) else { return nil }
            return Hash(bytes: UnsafeRawBufferPointer(start: p, count: n))
        }
    }

    fileprivate func failureForStatement(_ rc: Int32) -> Failure { failure(rc) }
}
