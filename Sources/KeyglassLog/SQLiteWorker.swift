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

    func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async {
                defer { self.connection.releaseStatements() }
                do { cont.resume(returning: try body(self.connection)) } catch { cont.resume(throwing: error) }
            }
        }
    }
}
