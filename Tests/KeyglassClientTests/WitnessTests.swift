import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassTestSupport
import KeyglassWitness
import XCTest

final class WitnessTests: XCTestCase {
    /// Waits until /checkpoint carries `count` cosignatures for its newest checkpoint.
    func cosignedCheckpoint(_ server: RunningServer, size: UInt64, count: Int) async throws -> String {
        for _ in 0..<100 {
            let note = try await server.client.checkpoint()
            let parsed = try SignedNote.parse(note)
            if try Checkpoint.parse(parsed.text).size == size, parsed.signatures.count == 1 + count { return note }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ClientError.network("checkpoint \(size) never got \(count) cosignatures")
    }

    func testLogCollectsCosignaturesAndAuditorEnforcesQuorumAndFreshness() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let w1 = try await RunningWitness.start(name: "w1.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("w1"))
        let w2 = try await RunningWitness.start(name: "w2.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("w2"))
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer(witnesses: [w1.config, w2.config]) { server in
            for i in 0..<3 { try await log.publish(server, identity: "w\(i)") }
            let note = try await cosignedCheckpoint(server, size: 3, count: 2)
            // The cosignatures verify as c2sp.org/tlog-cosignature (cosignature/v1) through the core...
            let opened = try SignedCheckpoint.open(note, logKey: log.verifierKey, witnesses: [w1.witness.verifierKey, w2.witness.verifierKey]).1
            XCTAssertEqual(opened.verified.count, 3)
            // ...and by hand, independently of the core's note code (Go's x/mod note knows only
            // Ed25519 note signatures, not cosignature/v1): each line's signature is Ed25519 over
            // "cosignature/v1\ntime T\n" + the checkpoint text, T the big-endian 8 bytes after the key ID.
            let parsed = try SignedNote.parse(note)
            for w in [w1, w2] {
                let line = try XCTUnwrap(parsed.signatures.first { $0.name == w.witness.verifierKey.name })
                XCTAssertEqual(line.signature.count, 8 + 64)
                let time = line.signature.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                let message = Array("cosignature/v1\ntime \(time)\n".utf8) + Array(parsed.text.utf8)
                XCTAssertTrue(Ed25519.verify(signature: Array(line.signature.suffix(64)), message: message, publicKey: w.witness.verifierKey.publicKey))
            }

            var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
            o.witnesses = [w1.witness.verifierKey, w2.witness.verifierKey]
            o.quorum = 2
            o.maxAge = 300
            let ok = await Auditor(client: server.client, options: o).run()
            XCTAssertEqual(ok.status, .ok, ok.text)

            // A witness the auditor does not know does not count towards the quorum.
            var strict = o
            strict.witnesses = [w1.witness.verifierKey, try NoteVerifierKey(name: "w3.example/witness", type: .cosignatureV1, publicKey: Ed25519.generate().publicKey)]
            let short = await Auditor(client: server.client, options: strict).run()
            XCTAssertEqual(short.exitCode, 1, short.text)
            XCTAssertTrue(short.error?.contains("1 valid witness cosignature") ?? false, short.text)

            // Freeze: an hour later the newest cosignature is an hour old.
            var later = o
            later.now = { UInt64(Date().timeIntervalSince1970) + 3600 }
            let frozen = await Auditor(client: server.client, options: later).run()
            XCTAssertEqual(frozen.alerts.map(\.kind), [.freeze], frozen.text)
        }
        await w1.stop()
        await w2.stop()
    }

    func testHeartbeatRefreshesCosignaturesWithoutNewEntries() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let w = try await RunningWitness.start(name: "hb.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("hb"))
        try await log.withServer(witnesses: [w.config], heartbeat: .seconds(1)) { server in
            try await log.publish(server, identity: "hb")
            let first = try await cosignedCheckpoint(server, size: 1, count: 1)
            let t1 = try SignedCheckpoint.open(first, logKey: log.verifierKey, witnesses: [w.witness.verifierKey]).1.cosignatureTime(of: w.witness.verifierKey)
            var t2 = t1
            for _ in 0..<60 where t2 == t1 {
                try await Task.sleep(for: .milliseconds(100))
                let note = try await server.client.checkpoint()
                t2 = try SignedCheckpoint.open(note, logKey: log.verifierKey, witnesses: [w.witness.verifierKey]).1.cosignatureTime(of: w.witness.verifierKey)
            }
            XCTAssertGreaterThan(try XCTUnwrap(t2), try XCTUnwrap(t1), "a heartbeat re-cosigned the unchanged checkpoint")
        }
        await w.stop()
    }

    // (f) The witness refuses to cosign a checkpoint that does not extend the one it cosigned.
    func testWitnessRefusesInconsistentCheckpoint() async throws {
        let a = try await TestLog()
        defer { a.remove() }
        try await a.withServer { server in for i in 0..<4 { try await a.publish(server, identity: "f\(i)") } }
        let b = try await TestLog(copying: a)
        defer { b.remove() }
        let w = try await RunningWitness.start(name: "fork.example/witness", logs: [a.verifierKey], state: TestLog.temporaryDirectory("fw"))
        let client = WitnessClient(url: w.url)
        let sa = try await a.start()
        let sb = try await b.start()
        do {
            try await a.publish(sa, identity: "honest")
            try await b.publish(sb, identity: "fork-1")
            try await b.publish(sb, identity: "fork-2")
            // The witness first sees A's size-5 checkpoint.
            let noteA = try await sa.client.checkpoint()
            guard case .cosigned = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 0, proof: [], note: noteA)) else { return XCTFail("A not cosigned") }
            // B's size-6 checkpoint comes with B's proof from 5: it does not extend A's size 5.
            let noteB = try await sb.client.checkpoint()
            let proofB = try await sb.client.consistencyProof(from: 5, to: 6)
            let refused = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 5, proof: proofB, note: noteB))
            XCTAssertEqual(refused, .proofRejected)
            // Stale old size: 409 with the witness's size. Unknown log: 404. Forged signature: 403.
            let stale = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 0, proof: [], note: noteB))
            XCTAssertEqual(stale, .conflict(witnessSize: 5))
            let stranger = try await TestLog()
            defer { stranger.remove() }
            let other = try await stranger.start()
            let strangerNote = try await other.client.checkpoint()
            await other.stop()
            let unknown = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 0, proof: [], note: strangerNote.replacingOccurrences(of: "test.keyglass.example/log", with: "elsewhere.example/log")))
            XCTAssertEqual(unknown, .unknownOrigin)
            let forged = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 5, proof: [], note: strangerNote))
            XCTAssertEqual(forged, .notSigned)
            // A's honest growth is still cosigned, with a proof from 5.
            try await a.publish(sa, identity: "honest-2")
            let noteA2 = try await sa.client.checkpoint()
            let proofA = try await sa.client.consistencyProof(from: 5, to: 6)
            guard case .cosigned(let sigs) = try await client.addCheckpoint(AddCheckpointRequest(oldSize: 5, proof: proofA, note: noteA2)) else { return XCTFail("A's growth refused") }
            XCTAssertEqual(sigs.first?.keyID, w.witness.verifierKey.keyID)
        } catch {
            XCTFail("\(error)")
        }
        await sa.stop()
        await sb.stop()
        await w.stop()
    }
}
