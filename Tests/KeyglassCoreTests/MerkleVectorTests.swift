import XCTest
@testable import KeyglassCore

/// transparency-dev/merkle: hasher vectors, the reference tree, and every inclusion and consistency
/// probe, including each one that must fail.
final class MerkleVectorTests: XCTestCase {
    func testHasherVectors() throws {
        let v = try Vectors.load("transparency-dev-merkle.json")
        let cases = try v.dict("rfc6962_hasher").list("cases")
        var want: [String: String] = [:]
        for c in cases { want[try c.string("desc")] = try c.string("want_hex") }
        XCTAssertEqual(want.count, 4)
        XCTAssertEqual(Merkle.emptyRoot.hex, want["RFC6962 Empty"])
        XCTAssertEqual(Merkle.leafHash([UInt8]()).hex, want["RFC6962 Empty Leaf"])
        XCTAssertEqual(Merkle.leafHash(Array("L123456".utf8)).hex, want["RFC6962 Leaf"])
        XCTAssertEqual(Merkle.nodeHash(Array("N123".utf8), Array("N456".utf8)).hex, want["RFC6962 Node"])
    }

    func testReferenceTreeNodesAndRoots() throws {
        let tree = try Vectors.load("transparency-dev-merkle.json").dict("reference_tree")
        let leaves = try XCTUnwrap(tree["leaf_inputs_hex"] as? [String]).map { try XCTUnwrap(Hex.decode($0)) }
        let levels = try XCTUnwrap(tree["node_hashes_hex_by_level"] as? [[String]])
        let roots = try XCTUnwrap(tree["root_hashes_hex_by_size"] as? [String: String])
        // Every node the compact range completes must equal the reference node at that coordinate.
        var range = CompactRange()
        var seen = 0
        for leaf in leaves {
            range.append(Merkle.leafHash(leaf)) { id, hash in
                if Int(id.level) < levels.count, Int(id.index) < levels[Int(id.level)].count {
                    XCTAssertEqual(hash.hex, levels[Int(id.level)][Int(id.index)], "node \(id)")
                    seen += 1
                }
            }
            XCTAssertEqual(range.root.hex, roots[String(range.size)], "root at size \(range.size)")
        }
        XCTAssertEqual(seen, levels.reduce(0) { $0 + $1.count })
        XCTAssertEqual(Merkle.rootOf(leafHashes: []).hex, roots["0"])
    }

    /// Probe values that are placeholders ("don't care 1") rather than 32-byte hashes are mapped to
    /// SHA-256 of their bytes: equal placeholders stay equal and different ones stay different, which
    /// is all a verifier may look at.
    private func hash(_ b64: String) -> Hash? {
        guard let raw = Base64.decode(b64) else { return nil }
        return Hash(bytes: raw) ?? Hash.sha256(raw)
    }

    private func hashes(_ any: Any?) -> [Hash]? {
        guard let list = any as? [String] else { return any is NSNull || any == nil ? [] : nil }
        let decoded = list.map { hash($0) }
        return decoded.contains(where: { $0 == nil }) ? nil : decoded.map { $0! }
    }

    func testInclusionProbes() throws {
        let probes = try Vectors.load("transparency-dev-merkle.json").list("inclusion_probes")
        XCTAssertEqual(probes.count, 98)
        var failing = 0
        for p in probes {
            let name = try p.string("file")
            let wantErr = try p.bool("wantErr")
            var ok = false
                        if let root = hash(try p.string("root")), let leaf = Hash(base64: try p.string("leafHash")),  // a leaf hash must be 32 bytes, as in Go
               
               let proof = hashes(p["proof"]) {
                ok = (try? ProofVerifier.verifyInclusion(index: try p.u64("leafIdx"), size: try p.u64("treeSize"),
                                                          leafHash: leaf, proof: proof, root: root)) != nil
            }
            XCTAssertEqual(ok, !wantErr, name)
            if wantErr { failing += 1 }
        }
        XCTAssertGreaterThan(failing, 50)
    }

    func testConsistencyProbes() throws {
        let probes = try Vectors.load("transparency-dev-merkle.json").list("consistency_probes")
        XCTAssertEqual(probes.count, 98)
        for p in probes {
            let name = try p.string("file")
            let wantErr = try p.bool("wantErr")
            var ok = false
            if let r1 = hash(try p.string("root1")), let r2 = hash(try p.string("root2")),
               let proof = hashes(p["proof"]) {
                ok = (try? ProofVerifier.verifyConsistency(size1: try p.u64("size1"), size2: try p.u64("size2"),
                                                            root1: r1, root2: r2, proof: proof)) != nil
            }
            XCTAssertEqual(ok, !wantErr, name)
        }
    }
}
