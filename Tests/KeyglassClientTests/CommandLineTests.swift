import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassTestSupport
import XCTest

/// The two executables, run as processes, as an operator and a cron job run them.
final class CommandLineTests: XCTestCase {
    var work = ""

    override func setUp() {
        work = TestLog.temporaryDirectory("cli")
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: work) }


    func testServerInitServeAndCLIJobsEndToEnd() async throws {
        let data = work + "/data"
        // init: creates the key 0600 and the token 0600, prints the verifier key last, refuses a second time.
        let initRun = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "cli.example/log"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let vkeyLine = try XCTUnwrap(initRun.stdout.split(separator: "\n").last.map(String.init))
        let vkey = try NoteVerifierKey(vkeyLine)
        XCTAssertEqual(vkey.name, "cli.example/log")
        for f in ["signing-key", "publish-token"] {
            let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: "\(data)/\(f)")[.posixPermissions] as? Int)
            XCTAssertEqual(mode, 0o600, f)
        }
        let again = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "cli.example/log"])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("refusing to overwrite"), again.stderr)

        let (server, port, _) = try await Binaries.startServer(data: data, log: work + "/server.log")
        defer { if server.isRunning { server.terminate() } }
        let url = "http://127.0.0.1:\(port)"

        // Job 1: publish a key (operator token), then a self-signed rotation.
        let keygen = try Binaries.run("keyglass", ["keygen", "--out", work + "/k1"])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        _ = try Binaries.run("keyglass", ["keygen", "--out", work + "/k2"])
        var r = try Binaries.run("keyglass", ["publish", "--log", url, "--vkey", vkeyLine, "--identity", "ann@example.com",
                                              "--key-file", work + "/k1.pub", "--token-file", data + "/publish-token"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("ok:"), r.stdout)
        r = try Binaries.run("keyglass", ["publish", "--log", url, "--vkey", data + "/verifier-key", "--identity", "ann@example.com",
                                          "--key-file", work + "/k2.pub", "--sign-with", work + "/k1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"chained\":true"), r.stdout)

        // Job 3: query inclusion proofs.
        let lookupState = work + "/lookup-state"
        r = try Binaries.run("keyglass", ["lookup", "--log", url, "--vkey", vkeyLine, "ann@example.com", "--json", "--write-proofs", work + "/proofs",
                                          "--state", lookupState])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lookup = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((lookup["entries"] as? [[String: Any]])?.map { $0["authorised_by"] as? String }, ["first", "previous_key"])
        // The lookup keeps the checkpoint it verified, as a plain signed note an auditor can compare with.
        let lookupCheckpoint = try XCTUnwrap(try FileManager.default.subpathsOfDirectory(atPath: lookupState).first { $0.hasSuffix("/checkpoint") })
        XCTAssertEqual(try AnswerVerifier.openCheckpoint(try Files.readText(lookupState + "/" + lookupCheckpoint), logKey: vkey).checkpoint.size, 2)
        r = try Binaries.run("keyglass", ["verify", "--vkey", vkeyLine, "--proof", work + "/proofs/1.tlog-proof"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try Binaries.run("keyglass", ["verify", "--vkey", vkeyLine, "--log", url, "--index", "0", "--out", work + "/0.tlog-proof"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // A proof file with one altered byte is refused with exit 2.
        var text = try Files.readText(work + "/proofs/1.tlog-proof")
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasSuffix("=") && !$0.hasPrefix("extra") })
        text = text.replacingOccurrences(of: String(line), with: Hash.sha256(Array(line.utf8)).base64)
        try Files.writeAtomically(text, to: work + "/bad.tlog-proof")
        r = try Binaries.run("keyglass", ["verify", "--vkey", vkeyLine, "--proof", work + "/bad.tlog-proof"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)

        // Job 2: audit from cron. Quiet, then an injected key is exit 2 with evidence, then quiet again.
        let watch = work + "/watch.txt"
        try "# ann's own keys\nann@example.com ed25519 \(try Files.readText(work + "/k1.pub").trimmingCharacters(in: .whitespacesAndNewlines))\nann@example.com ed25519 \(try Files.readText(work + "/k2.pub").trimmingCharacters(in: .whitespacesAndNewlines))\n".write(toFile: watch, atomically: true, encoding: .utf8)
        let audit = ["audit", "--log", url, "--vkey", vkeyLine, "--state", work + "/audit", "--watch", watch]
        r = try Binaries.run("keyglass", audit)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try Binaries.run("keyglass", ["keygen", "--out", work + "/evil"])
        r = try Binaries.run("keyglass", ["publish", "--log", url, "--vkey", vkeyLine, "--identity", "ann@example.com",
                                          "--key-file", work + "/evil.pub", "--token-file", data + "/publish-token"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try Binaries.run("keyglass", audit + ["--json"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["status"] as? String, "alert")
        let alert = try XCTUnwrap((report["alerts"] as? [[String: Any]])?.first)
        XCTAssertEqual(alert["kind"] as? String, "injected_key")
        XCTAssertEqual(alert["index"] as? Int, 2)
        r = try Binaries.run("keyglass", audit)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        // Lookups and auditors check each other's checkpoints (both consistent here).
        r = try Binaries.run("keyglass", audit + ["--compare", lookupState + "/" + lookupCheckpoint, work + "/proofs/1.tlog-proof"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        r = try Binaries.run("keyglass", ["lookup", "--log", url, "--vkey", vkeyLine, "ann@example.com", "--state", lookupState, "--compare", work + "/audit"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("operator"), "the injected key is shown as the operator's: \(r.stdout)")

        // Bad input is exit 1 and an unreachable log exit 3, never an alert.
        r = try Binaries.run("keyglass", ["lookup", "--log", url, "--vkey", "not-a-key", "ann"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertNotEqual(r.status, 2)
        r = try Binaries.run("keyglass", ["audit", "--log", "http://127.0.0.1:1", "--vkey", vkeyLine, "--state", work + "/audit"])
        XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
        r = try Binaries.run("keyglass", ["lookup", "--log", "http://127.0.0.1:1", "--vkey", vkeyLine, "--state", lookupState, "ann@example.com"])
        XCTAssertEqual(r.status, 3, r.stdout + r.stderr)

        // SIGTERM: the server drains and exits 0; restarted, it serves the same checkpoint.
        let before = try await LogClient(base: URL(string: url)!).checkpoint()
        server.terminate()
        server.waitUntilExit()
        XCTAssertEqual(server.terminationStatus, 0)
        let check = try Binaries.run("keyglass-server", ["check", "--data", data])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.hasPrefix("ok: tree size 3"), check.stdout)
        let root = try Checkpoint.parse(try SignedNote.parse(before).text).root.base64
        XCTAssertTrue(check.stdout.contains(root), "the stored tree still has the served root")
    }

    /// The signing key and either token file (the hash the server keeps, or the token itself when
    /// the hash is absent) are refused when group or others may read them.
    func testServeRefusesSecretsReadableByOthers() throws {
        for (n, secret) in ["signing-key", "publish-token.sha256", "publish-token"].enumerated() {
            let data = work + "/data\(n)"
            XCTAssertEqual(try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "perm.example/log"]).status, 0)
            if secret == "publish-token" { try? FileManager.default.removeItem(atPath: data + "/publish-token.sha256") }
            // The server starts with the secrets private (so the refusal below is about the mode).
            if n == 0 {
                let ok = try Binaries.run("keyglass-server", ["check", "--data", data])
                XCTAssertEqual(ok.status, 0, ok.stderr)
            }
            chmod(data + "/" + secret, 0o644)
            // Bounded: a server that does not refuse would serve for ever.
            let r = try Binaries.run("keyglass-server", ["serve", "--data", data, "--port", "0"], timeout: 20)
            XCTAssertEqual(r.status, 1, "\(secret): \(r.stdout + r.stderr)")
            XCTAssertTrue(r.stderr.contains("chmod 600") || r.stdout.contains("chmod 600"), "\(secret): " + r.stderr + r.stdout)
        }
    }
}
