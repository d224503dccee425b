import Foundation
import KeyglassCore
import KeyglassTestSupport
import Synchronization
import XCTest

/// `keyglass-server backup` while publishes go on, `restore` into a new directory, then `check`, a
/// server on the restored log and a full audit from empty: every entry acknowledged before the
/// backup began is there, and the restored log is one an auditor accepts.
final class BackupRestoreTests: XCTestCase {
    func testBackupUnderPublishLoadRestoresEverythingAcknowledged() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let work = TestLog.temporaryDirectory("backup")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let backupFile = work + "/log-backup.sqlite"
        let acknowledged = Acknowledged()
        let backedUp: UInt64 = try await log.withServer { server in
            let publisher = Task {
                var n = 0
                while !Task.isCancelled {
                    let r = try await log.publish(server, identity: "load\(n)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32))
                    acknowledged.indices.withLock { $0.append(r.index) }
                    n += 1
                }
            }
            while acknowledged.indices.withLock({ $0.count }) < 200 { try await Task.sleep(for: .milliseconds(10)) }
            let before = acknowledged.indices.withLock { $0 }
            let r = try Binaries.run("keyglass-server", ["backup", "--data", log.directory.path, "--to", backupFile])
            publisher.cancel()
            _ = try? await publisher.value
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let size = try XCTUnwrap(UInt64(r.stdout.components(separatedBy: "tree size ").last?.components(separatedBy: " ").first ?? ""))
            XCTAssertGreaterThan(size, try XCTUnwrap(before.max()), "every entry acknowledged before the backup began is in it")
            // Refuses to overwrite a backup.
            XCTAssertNotEqual(try Binaries.run("keyglass-server", ["backup", "--data", log.directory.path, "--to", backupFile]).status, 0)
            return size
        }
        let restored = work + "/restored"
        var r = try Binaries.run("keyglass-server", ["restore", "--from", backupFile, "--data", restored, "--keys-from", log.directory.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("restored tree size \(backedUp)"), r.stdout)
        r = try Binaries.run("keyglass-server", ["check", "--data", restored])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        // Not over an existing directory, not without the signing key.
        XCTAssertNotEqual(try Binaries.run("keyglass-server", ["restore", "--from", backupFile, "--data", restored, "--keys-from", log.directory.path]).status, 0)
        let r2 = try Binaries.run("keyglass-server", ["restore", "--from", backupFile, "--data", work + "/no-keys", "--keys-from", work])
        XCTAssertNotEqual(r2.status, 0)
        XCTAssertTrue(r2.stderr.contains("signing key"), r2.stderr)
        // A server on the restored log, and a full audit from empty.
        let (server, _, client) = try await Binaries.startServer(data: restored, ["--log-level", "error"], log: work + "/server.log")
        defer { server.terminate() }
        let audit = try Binaries.run("keyglass", ["audit", "--log", client.base.absoluteString, "--vkey", restored + "/verifier-key",
                                                  "--state", work + "/audit", "--json"])
        XCTAssertEqual(audit.status, 0, audit.stdout + audit.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((report["size"] as? NSNumber)?.uint64Value, backedUp)
    }
}

/// Indices the load's publishes got, shared with the test.
private final class Acknowledged: Sendable {
    let indices = Mutex<[UInt64]>([])
}
