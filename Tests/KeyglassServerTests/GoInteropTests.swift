import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import XCTest

/// Go's golang.org/x/mod/sumdb/note and sumdb/tlog verify our checkpoints and proofs without
/// knowing Keyglass exists (DESIGN §2). Runs Tests/Interop/verify_with_go.go with Debian's Go and
/// golang-golang-x-mod-dev, both installed by `make test`.
final class GoInteropTests: XCTestCase {
    func testGoVerifiesCheckpointInclusionAndConsistency() async throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let program = repo.appendingPathComponent("Tests/Interop/verify_with_go.go").path
        let log = try await TestLog()
        defer { log.remove() }
        let fixture: [String: Any] = try await log.withServer { server in
            for i in 0..<5 { try await log.publish(server, identity: "go\(i)") }
            let old = try await server.client.checkpoint()
            for i in 5..<23 { try await log.publish(server, identity: "go\(i)", keyType: .x25519, key: Ed25519.randomBytes(32)) }
            let cp = try await server.client.checkpoint()
            let page = try await server.client.entries(start: 0, end: 23)
            var entries: [[String: Any]] = []
            for e in page.entries {
                let proof = try await server.client.inclusionProof(index: e.index, treeSize: 23)
                entries.append(["index": e.index, "entry": e.entry, "proof": proof.map(\.base64)])
            }
            let consistency = try await server.client.consistencyProof(from: 5, to: 23)
            return ["verifier_key": log.verifierKey.description, "checkpoint": cp, "old_checkpoint": old,
                    "consistency": consistency.map(\.base64), "entries": entries]
        }
        let path = log.directory.path + "/go-fixture.json"
        try JSONSerialization.data(withJSONObject: fixture).write(to: URL(fileURLWithPath: path))

        let (status, output) = try runGo(program, path)
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.hasPrefix("ok: 23 inclusion proofs and consistency 5 -> 23"), output)

        // And Go rejects a tampered checkpoint: the check is real.
        var tampered = fixture
        tampered["checkpoint"] = (fixture["checkpoint"] as! String).replacingOccurrences(of: "\n23\n", with: "\n24\n")
        try JSONSerialization.data(withJSONObject: tampered).write(to: URL(fileURLWithPath: path))
        let (badStatus, badOutput) = try runGo(program, path)
        XCTAssertEqual(badStatus, 1, badOutput)
        XCTAssertTrue(badOutput.contains("note.Open"), badOutput)
    }

    private func runGo(_ program: String, _ fixture: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["go", "run", program, fixture]
        var env = ProcessInfo.processInfo.environment
        // Debian packages Go libraries as GOPATH sources under /usr/share/gocode.
        env["GO111MODULE"] = "off"
        env["GOPATH"] = "/usr/share/gocode"
        env["GOCACHE"] = FileManager.default.temporaryDirectory.appendingPathComponent("keyglass-gocache").path
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
