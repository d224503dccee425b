import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// Proofs must not depend on which tree levels happen to be in memory (`UpperTreeCache`).
final class UpperTreeCacheTests: XCTestCase {
    func testProofsAreTheSameWhateverTheCacheHolds() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        // A budget of 64 hashes: as the tree grows the cache sheds its lowest levels.
        let small = LogStore(storage: try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal), upperTreeBudget: 64)
        let sequencer = try Sequencer(store: small, signer: try log.directory.loadSigner())
        let runner = Task { try await sequencer.run() }
        var checkpoints: [StoredCheckpoint] = []
        for round in 0..<9 {
            try await withThrowingTaskGroup(of: Void.self) { g in
                for i in 0..<(37 * (round + 1)) {
                    g.addTask {
                        _ = try await sequencer.submit(PublishRequest(identity: "c\(round)-\(i)", keyType: .x25519,
                                                                      publicKey: Ed25519.randomBytes(32)))
                    }
                }
                try await g.waitForAll()
            }
            checkpoints.append(sequencer.latestCheckpoint)
        }
        runner.cancel()
        _ = try? await runner.value
        let size = sequencer.latestCheckpoint.size
        XCTAssertEqual(size, 37 * 45)
        XCTAssertGreaterThan(small.upperTree.lowestLevel, 1, "the small cache shed levels")
        XCTAssertLessThanOrEqual(small.upperTree.count, 64)

        // Another store on the same file, opened with a cache holding every level ≥ 1, and one
        // freshly opened small: all three give the same proofs, and they verify.
        let large = LogStore(storage: try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal))
        _ = try Sequencer(store: large, signer: try log.directory.loadSigner())
        let reopened = LogStore(storage: try SQLiteStorage(path: log.directory.database, readers: 1, sync: .normal), upperTreeBudget: 64)
        _ = try Sequencer(store: reopened, signer: try log.directory.loadSigner())
        XCTAssertEqual(large.upperTree.lowestLevel, 1)
        var rng = SplitMix64(state: 7)
        for cp in checkpoints {
            for _ in 0..<40 {
                let index = rng.next() % cp.size
                let proofs = try [small, large, reopened].map { try $0.inclusionProofWithLeaf(index: index, size: cp.size) }
                XCTAssertEqual(proofs[0].1, proofs[1].1)
                XCTAssertEqual(proofs[0].1, proofs[2].1)
                XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: index, size: cp.size, leafHash: proofs[0].0, proof: proofs[0].1, root: cp.root))
            }
            for old in checkpoints where old.size <= cp.size && old.size > 0 {
                let proofs = try [small, large, reopened].map { try $0.consistencyProof(from: old.size, to: cp.size) }
                XCTAssertEqual(proofs[0], proofs[1])
                XCTAssertEqual(proofs[0], proofs[2])
                XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: old.size, size2: cp.size, root1: old.root, root2: cp.root, proof: proofs[0]))
            }
        }
    }
}
