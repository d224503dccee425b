@testable import KeyglassCore
import XCTest

/// Proofs built from stored node hashes (as the server builds them) verify for random sizes up to a
/// few thousand, and flipping any single bit of any proof hash makes them fail.
final class ProofPropertyTests: XCTestCase {
    struct Tree {
        var nodes: [NodeID: Hash] = [:]
        var roots: [Hash] = [Merkle.emptyRoot]  // roots[n] = root of the first n leaves
        init(size: Int) {
            var range = CompactRange()
            for i in 0..<size {
                range.append(Merkle.leafHash(Array("leaf \(i)".utf8))) { nodes[$0] = $1 }
                roots.append(range.root)
            }
        }
        func lookup(_ id: NodeID) throws -> Hash { try XCTUnwrap(nodes[id], "missing node \(id)") }
        /// A plan's proof from the stored nodes, as the server folds it.
        func proof(_ plan: ProofPlan) throws -> [Hash] { plan.assemble(try plan.nodes.map(lookup)) }
    }

    static let tree = Tree(size: 3000)
    var rng = SystemRandomNumberGenerator()

    func testRootsMatchRecursiveDefinition() {
        // RFC 9162's MTH written out directly, independent of CompactRange.
        func mth(_ leaves: ArraySlice<Hash>) -> Hash {
            if leaves.isEmpty { return Merkle.emptyRoot }
            if leaves.count == 1 { return leaves.first! }
            let k = Int(Merkle.splitPoint(UInt64(leaves.count)))
            return Merkle.nodeHash(mth(leaves.prefix(k)), mth(leaves.dropFirst(k)))
        }
        let leaves = (0..<300).map { Self.tree.nodes[NodeID(level: 0, index: UInt64($0))]! }
        for n in 0...300 { XCTAssertEqual(mth(leaves[0..<n]), Self.tree.roots[n], "size \(n)") }
    }

    func testInclusionProofsVerifyAndBitFlipsFail() throws {
        let t = Self.tree
        for _ in 0..<400 {
            let size = UInt64.random(in: 1...3000, using: &rng)
            let index = UInt64.random(in: 0..<size, using: &rng)
            let proof = try t.proof(ProofPlan.inclusion(index: index, size: size))
            let leaf = t.nodes[NodeID(level: 0, index: index)]!
            let root = t.roots[Int(size)]
            XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: index, size: size, leafHash: leaf, proof: proof, root: root), "\(index)/\(size)")
            if !proof.isEmpty {
                var bad = proof
                let i = Int.random(in: 0..<bad.count, using: &rng)
                bad[i] = flip(bad[i], bit: Int.random(in: 0..<256, using: &rng))
                XCTAssertThrowsError(try ProofVerifier.verifyInclusion(index: index, size: size, leafHash: leaf, proof: bad, root: root))
            }
            XCTAssertThrowsError(try ProofVerifier.verifyInclusion(index: index, size: size, leafHash: flip(leaf, bit: 7), proof: proof, root: root))
            XCTAssertThrowsError(try ProofVerifier.verifyInclusion(index: index, size: size, leafHash: leaf, proof: proof, root: flip(root, bit: 200)))
            if size > 1 {
                XCTAssertThrowsError(try ProofVerifier.verifyInclusion(index: (index + 1) % size, size: size, leafHash: leaf, proof: proof, root: root))
            }
        }
    }

    /// RFC 9162 §2.1.3.1 PATH and §2.1.4.1 SUBPROOF written out over the leaves, recomputing every
    /// MTH: the reference the plans are folded against.
    private func mth(_ d: ArraySlice<Hash>) -> Hash {
        if d.count == 1 { return d.first! }
        let k = Int(Merkle.splitPoint(UInt64(d.count)))
        return Merkle.nodeHash(mth(d.prefix(k)), mth(d.dropFirst(k)))
    }

    private func referencePath(_ m: Int, _ d: ArraySlice<Hash>) -> [Hash] {
        if d.count == 1 { return [] }
        let k = Int(Merkle.splitPoint(UInt64(d.count)))
        return m < k ? referencePath(m, d.prefix(k)) + [mth(d.dropFirst(k))] : referencePath(m - k, d.dropFirst(k)) + [mth(d.prefix(k))]
    }

    private func referenceSubproof(_ m: Int, _ d: ArraySlice<Hash>, _ whole: Bool) -> [Hash] {
        if m == d.count { return whole ? [] : [mth(d)] }
        let k = Int(Merkle.splitPoint(UInt64(d.count)))
        return m <= k
            ? referenceSubproof(m, d.prefix(k), whole) + [mth(d.dropFirst(k))]
            : referenceSubproof(m - k, d.dropFirst(k), false) + [mth(d.prefix(k))]
    }

    /// A plan holds each proof's nodes once, and folds to the proof RFC 9162's definition gives;
    /// both verify, for inclusion and consistency, at sizes around powers of two and at random.
    func testPlansFoldToTheRFCsProofs() throws {
        let t = Self.tree
        let leaves = (0..<3000).map { t.nodes[NodeID(level: 0, index: UInt64($0))]! }
        var cases: [(UInt64, UInt64)] = [(0, 1), (0, 2), (1, 2), (255, 256), (256, 257), (0, 2999), (2998, 2999), (1023, 1025)]
        for _ in 0..<150 {
            let size = UInt64.random(in: 1...700, using: &rng)
            cases.append((UInt64.random(in: 0..<size, using: &rng), size))
        }
        for (index, size) in cases {
            let plan = try ProofPlan.inclusion(index: index, size: size)
            XCTAssertEqual(Set(plan.nodes).count, plan.nodes.count, "no node twice: \(index)/\(size)")
            let proof = try t.proof(plan)
            XCTAssertEqual(proof, referencePath(Int(index), leaves[0..<Int(size)]), "\(index)/\(size)")
            XCTAssertNoThrow(try ProofVerifier.verifyInclusion(index: index, size: size, leafHash: leaves[Int(index)],
                                                               proof: proof, root: t.roots[Int(size)]))
            // Consistency from index + 1 (a size of at least 1) to size.
            let from = index + 1
            let cplan = try ProofPlan.consistency(from: from, to: size)
            XCTAssertEqual(Set(cplan.nodes).count, cplan.nodes.count, "no node twice: \(from)->\(size)")
            let cproof = try t.proof(cplan)
            XCTAssertEqual(cproof, from == size ? [] : referenceSubproof(Int(from), leaves[0..<Int(size)], true), "\(from)->\(size)")
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: from, size2: size, root1: t.roots[Int(from)], root2: t.roots[Int(size)], proof: cproof))
        }
    }

    func testConsistencyProofsVerifyAndBitFlipsFail() throws {
        let t = Self.tree
        for _ in 0..<400 {
            let to = UInt64.random(in: 1...3000, using: &rng)
            let from = UInt64.random(in: 1...to, using: &rng)
            let proof = try t.proof(ProofPlan.consistency(from: from, to: to))
            let r1 = t.roots[Int(from)], r2 = t.roots[Int(to)]
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: from, size2: to, root1: r1, root2: r2, proof: proof), "\(from)->\(to)")
            if !proof.isEmpty {
                var bad = proof
                let i = Int.random(in: 0..<bad.count, using: &rng)
                bad[i] = flip(bad[i], bit: Int.random(in: 0..<256, using: &rng))
                XCTAssertThrowsError(try ProofVerifier.verifyConsistency(size1: from, size2: to, root1: r1, root2: r2, proof: bad))
                XCTAssertThrowsError(try ProofVerifier.verifyConsistency(size1: from, size2: to, root1: r1, root2: r2, proof: Array(proof.dropLast())))
            }
            XCTAssertThrowsError(try ProofVerifier.verifyConsistency(size1: from, size2: to, root1: flip(r1, bit: 3), root2: r2, proof: proof))
            XCTAssertThrowsError(try ProofVerifier.verifyConsistency(size1: from, size2: to, root1: r1, root2: flip(r2, bit: 255), proof: proof))
        }
    }

    func testPlansReadLogarithmicallyManyNodes() throws {
        for size: UInt64 in [1000, 1 << 20, 1 << 40, (1 << 40) + 12345] {
            let inc = try ProofPlan.inclusion(index: size / 3, size: size)
            let con = try ProofPlan.consistency(from: size / 3, to: size)
            let bound = 2 * (64 - size.leadingZeroBitCount) + 2
            XCTAssertLessThanOrEqual(inc.nodes.count, bound)
            XCTAssertLessThanOrEqual(con.nodes.count, bound)
        }
    }

    func testCompactRangeRestoresFromStoredSubtrees() {
        let t = Self.tree
        for size in [UInt64(0), 1, 2, 255, 256, 257, 1000, 2999] {
            let ids = CompactRange.subtrees(forSize: size)
            let restored = CompactRange(size: size, hashes: ids.map { t.nodes[$0]! })
            XCTAssertEqual(restored?.root, t.roots[Int(size)])
        }
        XCTAssertNil(CompactRange(size: 3, hashes: [Merkle.emptyRoot]))
    }

    /// A whole aligned subtree appended by its root gives the range its leaves give one by one, and
    /// reports the same new nodes (the subtree's root and those it completes, bottom up).
    func testAppendingAnAlignedSubtreeEqualsAppendingItsLeaves() {
        let t = Self.tree
        for _ in 0..<300 {
            let level = UInt8.random(in: 0...8, using: &rng)
            let width = UInt64(1) << UInt64(level)
            let start = UInt64.random(in: 0...(2999 / width - 1), using: &rng) * width
            var range = CompactRange(size: start, hashes: CompactRange.subtrees(forSize: start).map { t.nodes[$0]! })!
            var reported: [NodeID] = []
            range.append(subtree: t.nodes[NodeID(level: level, index: start / width)]!, level: level) { id, hash in
                reported.append(id)
                XCTAssertEqual(t.nodes[id], hash, "\(id)")
            }
            XCTAssertEqual(range.size, start + width)
            XCTAssertEqual(range.root, t.roots[Int(start + width)], "level \(level) at \(start)")
            XCTAssertEqual(range.hashes, CompactRange.subtrees(forSize: start + width).map { t.nodes[$0]! })
            // Leaf by leaf: the nodes at or above the subtree's level, in the same order.
            var byLeaves = CompactRange(size: start, hashes: CompactRange.subtrees(forSize: start).map { t.nodes[$0]! })!
            var expected: [NodeID] = []
            for i in start..<start + width {
                byLeaves.append(t.nodes[NodeID(level: 0, index: i)]!) { id, _ in if id.level >= level { expected.append(id) } }
            }
            XCTAssertEqual(reported, expected)
        }
    }

    private func flip(_ h: Hash, bit: Int) -> Hash {
        var b = h.bytes
        b[bit / 8] ^= UInt8(1 << (bit % 8))
        return Hash(bytes: b)!
    }
}
