import Foundation

/// Read-only SQLite connections, used synchronously by whichever thread needs one.
///
/// A read is a handful of index lookups (tens of microseconds). Running it right on the calling
/// task's thread, instead of hopping to a dispatch queue and back, saves two thread switches per
/// request, which on two cores cost more than the reads. WAL lets these readers run beside the
/// writer without waiting for it.
///
/// `@unchecked Sendable` is safe because a connection is only ever used by the one thread that
/// took it out of `idle` under the lock, until it puts it back; `idle` and `closed` are only
/// touched under the lock.
final class ReaderPool: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var idle: [SQLiteConnection] = []
    private let maxIdle: Int
    private var closed = false

    private let vfs: String?

    /// Each connection's page cache, in KiB (SQLite's default: 2,000).
    private let cacheKiB: Int

    init(path: String, warm: Int, maxIdle: Int = 16, vfs: String? = nil, cacheKiB: Int = 2000) throws {
        self.path = path
        self.maxIdle = maxIdle
        self.vfs = vfs
        self.cacheKiB = cacheKiB
        let conns = try (0..<max(1, warm)).map { _ in try Self.open(path, vfs: vfs, cacheKiB: cacheKiB) }
        idle = conns
    }

    private static func open(_ path: String, vfs: String?, cacheKiB: Int) throws -> SQLiteConnection {
        let c = try SQLiteConnection(path: path, vfs: vfs)
        try c.execute("PRAGMA query_only=ON")
        if cacheKiB != 2000 { try c.execute("PRAGMA cache_size=-\(cacheKiB)") }
        return c
    }

    /// Closes the idle reader connections and every one handed back afterwards: for when the
    /// log is closed, so no connection outlives it (and the database is whole on disk, WAL
    /// checkpointed, the moment `LogStore.close` returns).
    func close() {
        let conns = lock.withLock { () -> [SQLiteConnection] in
            closed = true
            defer { idle.removeAll() }
            return idle
        }
        for c in conns { c.close() }
    }

    func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        let conn = try lock.withLock { idle.popLast() } ?? Self.open(path, vfs: vfs, cacheKiB: cacheKiB)
        defer {
            conn.releaseStatements()
            let keep = lock.withLock { () -> Bool in
                guard !closed, idle.count < maxIdle else { return false }
                idle.append(conn)
                return true
            }
            if !keep { conn.close() }
        }
        return try body(conn)
    }
}
