import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import KeyglassWire
import XCTest

final class PublishAndProofTests: XCTestCase {
    func testPublishCheckpointAndProofsVerify() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in

        // A publish answer carries a signed checkpoint and an inclusion proof that verify.
        let key = Ed25519.generate().publicKey
        let answer = try await log.publish(server, identity: "alice@example.com", key: key)
        let (cp, entry) = try AnswerVerifier.verifyPublish(answer, logKey: log.verifierKey, identity: "alice@example.com", keyType: .ed25519, publicKey: key)
        XCTAssertEqual(entry.index, 0)
        XCTAssertEqual(cp.checkpoint.size, 1)
        XCTAssertFalse(entry.entry.isChained)

        for i in 0..<20 { try await log.publish(server, identity: "user\(i)@example.com", keyType: .x25519, key: Ed25519.randomBytes(32)) }

        // GET /checkpoint verifies under the verifier key printed by init.
        let note = try await server.client.checkpoint()
        let latest = try AnswerVerifier.openCheckpoint(note, logKey: log.verifierKey).checkpoint
        XCTAssertEqual(latest.size, 21)

        // Every entry's inclusion proof at the latest size, and the consistency proof from size 1.
        let page = try await server.client.entries(start: 0, end: 21)
        XCTAssertEqual(page.entries.count, 21)
        var range = CompactRange()
        for e in page.entries {
            let bytes = try XCTUnwrap(Base64.decode(e.entry))
            XCTAssertEqual(Merkle.leafHash(bytes).base64, e.leaf_hash)
            range.append(Merkle.leafHash(bytes))
            let proof = try await server.client.inclusionProof(index: e.index, treeSize: 21)
            XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: e.index, size: 21, leafHash: Merkle.leafHash(bytes), proof: proof, root: latest.root))
        }
        XCTAssertEqual(range.root, latest.root, "entries re-derive the signed root")
        let consistency = try await server.client.consistencyProof(from: 1, to: 21)
        XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: 1, size2: 21, root1: cp.checkpoint.root, root2: latest.root, proof: consistency))

        // Inclusion by leaf hash.
        let (status, data) = try await server.client.raw("GET", "/v1/proof/inclusion?tree_size=21&leaf_hash=\(answer.leaf_hash.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(try JSONDecoder().decode(InclusionAnswer.self, from: data).index, 0)

        // Lookup: the identity's history, verified against the returned checkpoint.
        let lookup = try await server.client.keys(identity: "alice@example.com")
        let (_, entries) = try AnswerVerifier.verifyLookup(lookup, logKey: log.verifierKey, identity: "alice@example.com")
        XCTAssertEqual(entries.map(\.entry.publicKey), [key])
        }
    }

    func testTilesMatchTheTree() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
        // 300 publishes in batches: one full tile of 256 and a partial one of 44.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 { group.addTask { try await log.publish(server, identity: "tile\(i)") } }
            try await group.waitForAll()
        }
        let cp = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint
        XCTAssertEqual(cp.size, 300)
        let full = try await server.client.entryBundle(index: 0, partial: 0)
        let partial = try await server.client.entryBundle(index: 1, partial: 44)
        var range = CompactRange()
        for e in full + partial { range.append(Merkle.leafHash(e)) }
        XCTAssertEqual(range.root, cp.root)
        // Hash tile level 0 holds the leaf hashes; level 1 holds the one level-8 node (leaves 0–255).
        let tile0 = [UInt8](try await server.client.get("/tile/0/000"))
        XCTAssertEqual(tile0.count, 256 * 32)
        XCTAssertEqual(Array(tile0[32..<64]), Merkle.leafHash(full[1]).bytes)
        let tile1 = [UInt8](try await server.client.get("/tile/1/000.p/1"))
        XCTAssertEqual(tile1, Merkle.rootOf(leafHashes: full.map { Merkle.leafHash($0) }).bytes)
        // Not yet available: 404, not an error page with data.
        let (status, _) = try await server.client.raw("GET", "/tile/entries/001")
        XCTAssertEqual(status, 404)
        }
    }

    func testRestartKeepsTreeCheckpointAndProofs() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let first = try await log.start()
        let server = first
        for i in 0..<37 { try await log.publish(server, identity: "r\(i)") }
        let before = try await server.client.checkpoint()
        let proofBefore = try await server.client.inclusionProof(index: 5, treeSize: 37)
        let consistencyBefore = try await server.client.consistencyProof(from: 10, to: 37)
        await first.stop()

        try await log.withServer { server in
        let after = try await server.client.checkpoint()
        XCTAssertEqual(after, before, "same signed checkpoint after restart")
        let proofAfter = try await server.client.inclusionProof(index: 5, treeSize: 37)
        XCTAssertEqual(proofAfter, proofBefore)
        let consistencyAfter = try await server.client.consistencyProof(from: 10, to: 37)
        XCTAssertEqual(consistencyAfter, consistencyBefore)
        // And the log keeps growing from where it was.
        let next = try await log.publish(server, identity: "after-restart")
        XCTAssertEqual(next.index, 37)
        let cp = try AnswerVerifier.openCheckpoint(next.checkpoint, logKey: log.verifierKey).checkpoint
        let old = try AnswerVerifier.openCheckpoint(before, logKey: log.verifierKey).checkpoint
        let proof = try await server.client.consistencyProof(from: 37, to: cp.size)
        XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: 37, size2: cp.size, root1: old.root, root2: cp.root, proof: proof))
        let integrity = try server.sqlite.integrityCheck()
        XCTAssertEqual(integrity, "ok")
        }
    }

    /// Entry timestamps never decrease, so the sequencer stamps max(now, newest). A newest entry
    /// stamped far ahead (forged in storage, or written under a clock that ran fast) used to drag
    /// every later entry to its date; now publishes are refused with a 503 that says so while the
    /// newest entry is more than `maxClockSkew` (5 minutes) ahead, and a small lead is still carried
    /// (a clock stepped back a little keeps timestamps monotonic).
    func testNewestEntryStampedInTheFutureStopsPublishesWith503() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let newest = try await log.withServer { server in
            try await log.publish(server, identity: "a@example.com")
            try await log.publish(server, identity: "b@example.com")
            return try KeyEntry.parse(try XCTUnwrap(try server.store.entry(at: 1)).data)
        }
        // Behind the stopped server, restamp entry 1. Only `data` changes: its stored leaf hash and
        // the tree nodes stay, so the server opens the log as before.
        func restamp(_ ms: UInt64) throws {
            var e = newest
            e.timestampMillis = ms
            try log.tamper("UPDATE entries SET data = x'\(Hex.encode(try e.encode()))' WHERE idx = 1")
        }
        let year2100: UInt64 = 4_102_444_800_000
        try restamp(year2100)
        try await log.withServer { server in
            for identity in ["c@example.com", "d@example.com"] {
                let (status, data) = try await StorageFaultTests.publishStatus(log, server, identity)
                XCTAssertEqual(status, 503, data)
                XCTAssertTrue(data.contains("future"), data)
                XCTAssertTrue(data.contains("\"error\":\"future_timestamp\""), data)
            }
            let size = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint.size
            XCTAssertEqual(size, 2, "nothing stamped in 2100")
        }
        // A minute ahead is within the skew: carried, so timestamps never go backwards.
        let aheadBy1Minute = UInt64(Date().timeIntervalSince1970 * 1000) + 60_000
        try restamp(aheadBy1Minute)
        try await log.withServer { server in
            let answer = try await log.publish(server, identity: "c@example.com")
            let entry = try KeyEntry.parse(try XCTUnwrap(Base64.decode(answer.entry)))
            XCTAssertEqual(answer.index, 2)
            XCTAssertEqual(entry.timestampMillis, aheadBy1Minute)
        }
    }

    /// A restart rebuilds the tree's edge from the stored nodes and checks it against the newest
    /// signed checkpoint: storage altered behind the server's back stops it from serving a tree that
    /// is not the one it signed (so no later checkpoint can contradict an earlier one).
    func testRestartRefusesAStoredTreeThatIsNotTheSignedOne() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in for i in 0..<6 { try await log.publish(server, identity: "e\(i)") } }
        // Size 6 = subtrees (2,0) over leaves 0–3 and (1,2) over leaves 4–5: alter the right edge.
        try log.tamper("UPDATE nodes SET hash = zeroblob(32) WHERE id = \((1 << 48) | 2)")
        do {
            _ = try await log.start()
            XCTFail("the server started on a tree that is not the signed one")
        } catch let e as StoreError {
            guard case .corrupt(let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("root"), why)
        }
    }

    /// No batch is half-written: when its transaction fails part-way (here the checkpoint row it
    /// must write already exists, as a second signer's would), none of it is stored, the publish is
    /// refused, and the next one takes the same index. The same row shows two checkpoints of one
    /// size cannot be stored.
    func testAFailedBatchLeavesNothingAndOneSizeHasOneCheckpoint() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<3 { try await log.publish(server, identity: "c\(i)") }
            // Behind the running server's back, the row the next batch must write.
            try log.tamper("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(4, zeroblob(32), 'not the log''s', 0)")
            XCTAssertThrowsError(try log.tamper("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(4, randomblob(32), 'another', 0)"),
                                 "a second checkpoint of size 4")
            let body = #"{"identity":"x@example.com","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#
            let (status, _) = try await server.client.raw("POST", "/v1/keys", body: Data(body.utf8),
                                                         headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
            XCTAssertEqual(status, 503)
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM entries"), 3, "the failed batch's entry is not stored")
            XCTAssertEqual(try log.scalar("SELECT count(*) FROM nodes WHERE id = \((1 << 48) | 1)"), 0, "nor its tree nodes")
            XCTAssertEqual(server.sequencer.latestCheckpoint.size, 3)
            try log.tamper("DELETE FROM checkpoints WHERE size = 4")
            let next = try await log.publish(server, identity: "x@example.com")
            XCTAssertEqual(next.index, 3, "the next publish takes the index the failed one did not")
        }
    }

    func testConcurrentPublishesGetDistinctIndicesAndOneTree() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
        let answers = try await withThrowingTaskGroup(of: PublishAnswer.self) { group in
            for i in 0..<200 { group.addTask { try await log.publish(server, identity: "c\(i)@example.com") } }
            var out: [PublishAnswer] = []
            for try await a in group { out.append(a) }
            return out
        }
        XCTAssertEqual(Set(answers.map(\.index)), Set(0..<200))
        // Every answer's checkpoint is consistent with the final tree, and two checkpoints of one
        // size are the same note.
        let final = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint
        XCTAssertEqual(final.size, 200)
        var bySize: [UInt64: String] = [:]
        for a in answers {
            let cp = try AnswerVerifier.openCheckpoint(a.checkpoint, logKey: log.verifierKey).checkpoint
            if let seen = bySize[cp.size] { XCTAssertEqual(seen, a.checkpoint) }
            bySize[cp.size] = a.checkpoint
            let leaf = try XCTUnwrap(Hash(base64: a.leaf_hash))
            XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: a.index, size: cp.size, leafHash: leaf, proof: try LogClient.hashesForTest(a.inclusion_proof), root: cp.root))
            if cp.size < final.size {
                let proof = try await server.client.consistencyProof(from: cp.size, to: final.size)
                XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: cp.size, size2: final.size, root1: cp.root, root2: final.root, proof: proof))
            }
        }
        XCTAssertLessThan(bySize.count, 200, "publishes were batched")
        }
    }
}

extension LogClient {
    static func hashesForTest(_ list: [String]) throws -> [Hash] { try list.map { try XCTUnwrap(Hash(base64: $0)) } }
}
