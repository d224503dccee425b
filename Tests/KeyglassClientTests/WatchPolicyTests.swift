import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassTestSupport
import XCTest

/// The watch file names every key each watched owner published, oldest first. Any change the owner
/// did not make — a new key, a retired key back, a revocation — is an alert, however it is
/// authorised; each test is an attack that used to pass with at most a notice.
final class WatchPolicyTests: XCTestCase {
    func audit(_ server: RunningServer, _ log: TestLog, state: String, watch: String, now: (@Sendable () -> UInt64)? = nil) async throws -> AuditReport {
        var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
        o.watch = try WatchList(text: watch)
        if let now { o.now = now }
        return await Auditor(client: server.client, options: o).run()
    }

    func line(_ identity: String, _ key: [UInt8], revoked: Bool = false) -> String {
        "\(identity) ed25519 \(Base64.encode(key))" + (revoked ? " revoked" : "") + "\n"
    }

    /// alice rotates alice1 → alice2 with her own key; the operator then publishes alice1 again.
    /// carol revokes carol1 with her own key; the operator publishes carol1 again. The operator
    /// revokes dave's key in use. Each is an alert.
    func testRetiredKeysBackAndOperatorRevocationsAreAlerts() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let publisher = Publisher(client: server.client, logKey: log.verifierKey)
            let (alice1, alice2, carol1, dave1) = (Ed25519.generate(), Ed25519.generate(), Ed25519.generate(), Ed25519.generate())
            _ = try await publisher.publish(identity: "alice@example.com", keyType: .ed25519, publicKey: alice1.publicKey, token: log.token, signingSeed: nil)
            _ = try await publisher.publish(identity: "alice@example.com", keyType: .ed25519, publicKey: alice2.publicKey, token: nil, signingSeed: alice1.seed)
            _ = try await publisher.publish(identity: "carol@example.com", keyType: .ed25519, publicKey: carol1.publicKey, token: log.token, signingSeed: nil)
            _ = try await publisher.publish(identity: "carol@example.com", keyType: .ed25519, publicKey: carol1.publicKey, revocation: true, token: nil, signingSeed: carol1.seed)
            _ = try await publisher.publish(identity: "dave@example.com", keyType: .ed25519, publicKey: dave1.publicKey, token: log.token, signingSeed: nil)
            let watch = line("alice@example.com", alice1.publicKey) + line("alice@example.com", alice2.publicKey)
                + line("carol@example.com", carol1.publicKey, revoked: true) + line("dave@example.com", dave1.publicKey)
            let clean = try await audit(server, log, state: state, watch: watch)
            XCTAssertEqual(clean.status, .ok, clean.text)

            let back = try await log.publish(server, identity: "alice@example.com", key: alice1.publicKey)
            let revived = try await log.publish(server, identity: "carol@example.com", key: carol1.publicKey)
            let revoked = try await publisher.publish(identity: "dave@example.com", keyType: .ed25519, publicKey: dave1.publicKey, revocation: true, token: log.token, signingSeed: nil)
            let report = try await audit(server, log, state: state, watch: watch)
            XCTAssertEqual(report.exitCode, 2)
            XCTAssertEqual(report.alerts.map(\.kind), [.retiredKey, .retiredKey, .revokedByOperator], report.text)
            XCTAssertEqual(report.alerts.map(\.index), [back.index, revived.index, revoked.1.index])

            // The lookup shows the revived key for what it is.
            let shown = try await KeyLookup(client: server.client, options: .init(logKey: log.verifierKey, stateDirectory: nil)).run(identity: "alice@example.com")
            XCTAssertEqual(shown.authorisations, [.first, .chained, .operator])
        }
    }

    /// bob's key revoked with bob's own key, but the watch file does not mark it revoked: either a
    /// thief holds the key, or bob forgot to update the file. Both deserve a person's look.
    func testRevocationTheWatchFileDoesNotMarkIsAnAlert() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let publisher = Publisher(client: server.client, logKey: log.verifierKey)
            let bob = Ed25519.generate()
            _ = try await publisher.publish(identity: "bob@example.com", keyType: .ed25519, publicKey: bob.publicKey, token: log.token, signingSeed: nil)
            let revoked = try await publisher.publish(identity: "bob@example.com", keyType: .ed25519, publicKey: bob.publicKey, revocation: true,
                                                      token: nil, signingSeed: bob.seed)
            let state = TestLog.temporaryDirectory("audit")
            let report = try await audit(server, log, state: state, watch: line("bob@example.com", bob.publicKey))
            XCTAssertEqual(report.alerts.map(\.kind), [.unlistedRevocation], report.text)
            XCTAssertEqual(report.alerts.first?.index, revoked.1.index)
            // Marked `revoked`, the same history is quiet.
            let marked = try await audit(server, log, state: TestLog.temporaryDirectory("audit"), watch: line("bob@example.com", bob.publicKey, revoked: true))
            XCTAssertEqual(marked.status, .ok, marked.text)
        }
    }

    /// A watch file written on Windows (CRLF), starting with a comment, with a byte-order mark, tabs
    /// and trailing blanks, still watches every identity it names.
    func testWatchFileLineEndingsAndBlanksStillWatch() async throws {
        let key = Ed25519.generate().publicKey
        let other = Ed25519.generate().publicKey
        let text = "\u{FEFF}# keys we published\r\nalice@example.com\ted25519\t\(Base64.encode(key))  \r\n\r\n# bob\r\nbob@example.com ed25519 \(Base64.encode(other))\t \r\n"
        let watch = try WatchList(text: text)
        XCTAssertEqual(watch.identities, ["alice@example.com", "bob@example.com"])
        XCTAssertTrue(watch.isListed("alice@example.com", .ed25519, key))
        // Old Mac line ends too.
        XCTAssertEqual(try WatchList(text: text.replacingOccurrences(of: "\r\n", with: "\r")).identities, ["alice@example.com", "bob@example.com"])

        // And on a log: an injected key for alice is an alert, whatever the line ends.
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "alice@example.com", key: key)
            let injected = try await log.publish(server, identity: "alice@example.com")
            let report = try await audit(server, log, state: TestLog.temporaryDirectory("audit"), watch: text)
            XCTAssertEqual(report.alerts.map(\.kind), [.injectedKey], report.text)
            XCTAssertEqual(report.alerts.first?.index, injected.index)
        }
    }

    /// Malformed lines are refused loudly, naming the line; an empty list is said out loud.
    func testMalformedWatchFilesAreRefusedAndEmptyOnesWarned() async throws {
        let key = Base64.encode(Ed25519.generate().publicKey)
        for (text, lineNumber) in [("alice@example.com ed25519\n", 1),
                                   ("# ok\nalice@example.com ed25519 \(key) maybe\n", 2),
                                   ("alice@example.com rsa \(key)\n", 1),
                                   ("alice@example.com ed25519 not-base64!\n", 1),
                                   ("alice@example.com ed25519 \(key)\nalice@example.com ed25519 \(key)\n", 2),
                                   ("alice\u{034F}@example.com ed25519 \(key)\n", 1)] {
            XCTAssertThrowsError(try WatchList(text: text), text) { error in
                XCTAssertTrue("\(error)".hasPrefix("watch file line \(lineNumber):"), "\(error)")
            }
        }
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "x@example.com")
            let report = try await audit(server, log, state: TestLog.temporaryDirectory("audit"), watch: "# nothing yet\r\n")
            XCTAssertEqual(report.status, .ok)
            XCTAssertTrue(report.notices.contains { $0.contains("lists no identity") }, report.notices.joined(separator: "; "))
        }
        // The command refuses a malformed file with exit 1 and the line number.
        let dir = TestLog.temporaryDirectory("watch")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Files.writeAtomically("bob@example.com ed25519\n", to: dir + "/watch.txt")
        let r = try Binaries.run("keyglass", ["audit", "--log", "http://127.0.0.1:1", "--vkey", log.verifierKey.description, "--state", dir + "/state", "--watch", dir + "/watch.txt"])
        XCTAssertEqual(r.status, 64, r.stdout + r.stderr)  // ArgumentParser's validation error
        XCTAssertTrue(r.stderr.contains("line 1"), r.stderr)
    }

    /// bob is added to the watch file after the entries that gave him an injected key were audited:
    /// the next run checks the whole audited history for him.
    func testIdentityWatchedLaterIsCheckedAgainstEarlierEntries() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let bob = Ed25519.generate().publicKey
            let alice = Ed25519.generate().publicKey
            try await log.publish(server, identity: "alice@example.com", key: alice)
            try await log.publish(server, identity: "bob@example.com", key: bob)
            for i in 0..<300 { try await log.publish(server, identity: "pad\(i)") }
            let injected = try await log.publish(server, identity: "bob@example.com")
            for i in 0..<20 { try await log.publish(server, identity: "late\(i)") }
            let first = try await audit(server, log, state: state, watch: line("alice@example.com", alice))
            XCTAssertEqual(first.status, .ok, first.text)

            let watch = line("alice@example.com", alice) + line("bob@example.com", bob)
            let report = try await audit(server, log, state: state, watch: watch)
            XCTAssertEqual(report.alerts.map(\.kind), [.injectedKey], report.text)
            XCTAssertEqual(report.alerts.first?.index, injected.index)
            XCTAssertTrue(report.notices.contains { $0.contains("newly watched") }, report.notices.joined(separator: "; "))
            // Checked once: bob is now part of the audited state, and the next run is quiet.
            let again = try await audit(server, log, state: state, watch: watch)
            XCTAssertEqual(again.status, .ok, again.text)
        }
    }
}
