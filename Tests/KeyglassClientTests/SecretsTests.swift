import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassTestSupport
import XCTest

final class SecretsTests: XCTestCase {
    /// The server runs with only the token's hash on disk, logs no secret even at trace level, and
    /// a rotated signing key keeps the origin while old checkpoints stay verifiable.
    func testTokenHashOnlyNoSecretsInLogsAndKeyRotation() async throws {
        let work = TestLog.temporaryDirectory("secrets")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        XCTAssertEqual(try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "secrets.example/log"]).status, 0)
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let seedLine = try Files.readPrivate(data + "/signing-key").trimmingCharacters(in: .whitespacesAndNewlines)
        // The provider takes the token away: the server keeps only its hash.
        try FileManager.default.removeItem(atPath: data + "/publish-token")
        let oldKey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))

        var (server, _, client) = try await Binaries.startServer(data: data, ["--log-level", "trace"], log: work + "/trace-1.log")
        let owner = Ed25519.generate()
        let publisher = Publisher(client: client, logKey: oldKey)
        _ = try await publisher.publish(identity: "sam", keyType: .ed25519, publicKey: owner.publicKey, token: token, signingSeed: nil)
        _ = try await publisher.publish(identity: "sam", keyType: .ed25519, publicKey: Ed25519.generate().publicKey, token: nil, signingSeed: owner.seed)
        let (badStatus, _) = try await client.raw("POST", "/v1/keys", body: Data(#"{"identity":"x","key_type":"x25519","public_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}"#.utf8), headers: ["Authorization": "Bearer \(token)x", "Content-Type": "application/json"])
        XCTAssertEqual(badStatus, 403)
        let oldNote = try await client.checkpoint()
        server.terminate()
        server.waitUntilExit()

        // Rotate: new key, same origin.
        let rotated = try Binaries.run("keyglass-server", ["rotate-key", "--data", data])
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let newKey = try NoteVerifierKey(try XCTUnwrap(rotated.stdout.split(separator: "\n").last.map(String.init)))
        XCTAssertEqual(newKey.name, oldKey.name)
        XCTAssertNotEqual(newKey, oldKey)
        XCTAssertTrue(try Files.readText(data + "/verifier-keys.history").contains(oldKey.description))

        (server, _, client) = try await Binaries.startServer(data: data, ["--log-level", "trace"], log: work + "/trace-2.log")
        // The served checkpoint is the new key's from the start; old notes still verify with the old key.
        let resigned = try AnswerVerifier.openCheckpoint(try await client.checkpoint(), logKey: newKey).checkpoint
        let old = try AnswerVerifier.openCheckpoint(oldNote, logKey: oldKey).checkpoint
        XCTAssertEqual(resigned, old)
        XCTAssertThrowsError(try AnswerVerifier.openCheckpoint(oldNote, logKey: newKey))
        let answer = try await Publisher(client: client, logKey: newKey).publish(identity: "tess", keyType: .x25519, publicKey: Ed25519.randomBytes(32), token: token, signingSeed: nil)
        let proof = try await client.consistencyProof(from: old.size, to: answer.0.checkpoint.size)
        XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: old.size, size2: answer.0.checkpoint.size, root1: old.root, root2: answer.0.checkpoint.root, proof: proof))
        server.terminate()
        server.waitUntilExit()

        // Nothing secret in any log line, at trace level.
        let newSeedLine = try Files.readPrivate(data + "/signing-key").trimmingCharacters(in: .whitespacesAndNewlines)
        let logs = try Files.readText(work + "/trace-1.log") + Files.readText(work + "/trace-2.log")
        XCTAssertFalse(logs.isEmpty)
        // The key's base64 is what follows the fourth "+" of PRIVATE+KEY+name+id+key: base64 has
        // "+" of its own, and the piece after the last one (a few characters, some runs) turned up in
        // the logs by chance, a flaky failure about nothing secret.
        let keyBase64 = String(seedLine.split(separator: "+", maxSplits: 4).last!)
        XCTAssertGreaterThanOrEqual(keyBase64.count, 44)
        for secret in [token, seedLine, newSeedLine, keyBase64, Base64.encode(owner.seed)] {
            XCTAssertFalse(logs.contains(secret), "a secret appears in the logs: \(secret.prefix(6))…")
        }
    }

}
