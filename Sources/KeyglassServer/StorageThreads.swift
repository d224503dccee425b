import KeyglassLog
import NIOPosix

/// Threads on which the HTTP layer waits for a storage engine across the network (PostgreSQL):
/// such a read must block neither an event loop nor Swift's cooperative pool (two threads on two
/// cores, shared by every handler). Sixteen threads: a read waits mostly on a round trip, so a few
/// per core keep the database busy. Started on first use, kept for the process's life; a log whose
/// engine reads locally (SQLite) never starts it.
enum StorageThreads {
    static let pool: NIOThreadPool = {
        let p = NIOThreadPool(numberOfThreads: 16)
        p.start()
        return p
    }()

    /// Runs a read of `store`: inline for an engine that reads locally, else on `pool`.
    static func reading<T: Sendable>(_ store: LogStore, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard !store.storage.readsAreLocal else { return try body() }
        return try await pool.runIfActive(body)
    }
}

extension KeyglassAPI {
    /// Runs a read of the store: inline for an engine that reads locally, else on `StorageThreads`.
    func readingStorage<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await StorageThreads.reading(store, body)
    }
}
