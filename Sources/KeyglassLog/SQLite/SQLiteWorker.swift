import Dispatch
import Foundation

/// One SQLite connection and the serial queue that alone touches it.
///
/// `@unchecked Sendable` is safe because the only stored mutable state, `connection`, is read and
/// used exclusively inside `queue.async` blocks; `queue` is serial, so no two calls ever touch the
/// connection at once, and SQLite (opened NOMUTEX) is safe to use from different threads one at a
/// time. The blocking SQLite calls run on this queue's thread, never on Swift's cooperative pool.
final class SQLiteWorker: @unchecked Sendable {
    private let connection: SQLiteConnection
    private let queue: DispatchQueue

    init(connection: SQLiteConnection, label: String) {
        self.connection = connection
        self.queue = DispatchQueue(label: label)
    }

    /// Runs `body` on the calling thread, serialised with the queue's other work (DispatchQueue.sync
    /// executes on the caller's thread): for the sequencer's own writer thread.
    func runHere<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try queue.sync {
            defer { connection.releaseStatements() }
            return try body(connection)
        }
    }

    /// Closes the connection once the work queued before has run; returns when it is closed.
    func close() {
        queue.sync { connection.close() }
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async {
                defer { self.connection.releaseStatements() }
                do { cont.resume(returning: try body(self.connection)) } catch { cont.resume(throwing: error) }
            }
        }
    }
}
