@testable import KeyglassCore
import XCTest

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

    /// Every probe's fields decode (a decoding failure fails the test, it is never counted as a
    /// rejection). A leaf hash that is not 32 bytes is refused by its type, `Hash` — the size check
    /// Go's verifier makes first; every other failing probe must be rejected by the verifier itself.
    func testInclusionProbes() throws {
        let probes = try Vectors.load("transparency-dev-merkle.json").list("inclusion_probes")
        XCTAssertEqual(probes.count, 98)
        var rejectedByVerifier = 0, rejectedBySize = 0
        for p in probes {
            let name = try p.string("file")
            let wantErr = try p.bool("wantErr")
            let root = try XCTUnwrap(hash(try p.string("root")), "\(name): root is not base64")
            let proof = try XCTUnwrap(hashes(p["proof"]), "\(name): proof is not base64")
            let rawLeaf = try XCTUnwrap(Base64.decode(try p.string("leafHash")), "\(name): leaf hash is not base64")
            guard let leaf = Hash(bytes: rawLeaf) else {
                XCTAssertTrue(wantErr, "\(name): a \(rawLeaf.count)-byte leaf hash in a probe that should verify")
                rejectedBySize += 1
                continue
            }
            let ok = (try? ProofVerifier.verifyInclusion(index: try p.u64("leafIdx"), size: try p.u64("treeSize"),
                                                          leafHash: leaf, proof: proof, root: root)) != nil
            XCTAssertEqual(ok, !wantErr, name)
            if wantErr && !ok { rejectedByVerifier += 1 }
        }
        XCTAssertEqual(rejectedByVerifier + rejectedBySize, probes.filter { ($0["wantErr"] as? Bool) == true }.count)
        XCTAssertGreaterThan(rejectedByVerifier, 75, "the verifier itself rejects the failing probes, not the decoding")
    }

    func testConsistencyProbes() throws {
        let probes = try Vectors.load("transparency-dev-merkle.json").list("consistency_probes")
        XCTAssertEqual(probes.count, 98)
        var rejectedByVerifier = 0
        for p in probes {
            let name = try p.string("file")
            let wantErr = try p.bool("wantErr")
            let r1 = try XCTUnwrap(hash(try p.string("root1")), "\(name): root1 is not base64")
            let r2 = try XCTUnwrap(hash(try p.string("root2")), "\(name): root2 is not base64")
            let proof = try XCTUnwrap(hashes(p["proof"]), "\(name): proof is not base64")
            let ok = (try? ProofVerifier.verifyConsistency(size1: try p.u64("size1"), size2: try p.u64("size2"),
                                                            root1: r1, root2: r2, proof: proof)) != nil
            XCTAssertEqual(ok, !wantErr, name)
            if wantErr && !ok { rejectedByVerifier += 1 }
        }
        XCTAssertEqual(rejectedByVerifier, probes.filter { ($0["wantErr"] as? Bool) == true }.count, "the verifier itself rejects every failing probe")
    }
}
