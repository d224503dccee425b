import Foundation
import KeyglassCore
import XCTest

/// The map and the VRF against `Spec/vectors/map-and-vrf-vectors.json`, which an independent
/// implementation (`Spec/reference/keyglass_v2_reference.py`: pure Python, written from
/// Spec/map.md and RFC 9381 alone, no libsodium) generated. Every valid vector must be reproduced
/// byte for byte and every invalid one refused.
final class DirectoryVectorTests: XCTestCase {
    private struct BadVector: Error { let why: String }

    private func load() throws -> [String: Any] { try Vectors.loadSpec("map-and-vrf-vectors.json") }

    func testVRFVectors() throws {
        let v = try load().dict("vrf")
        let seed = try Vectors.bytes(v.string("seed_hex"))
        let pk = try Vectors.bytes(v.string("public_key_hex"))
        XCTAssertEqual(try ECVRF.publicKey(seed: seed), pk)
        let cases = try v.list("cases")
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for c in cases {
            let alpha = try Vectors.bytes(c.string("alpha_hex"))
            let pi = try Vectors.bytes(c.string("pi_hex"))
            XCTAssertEqual(try ECVRF.prove(seed: seed, alpha: alpha), pi, "π for \(c["alpha_hex"] ?? "")")
            let beta = try Vectors.bytes(c.string("beta_hex"))
            XCTAssertEqual(ECVRF.verify(publicKey: pk, alpha: alpha, proof: pi), beta)
            XCTAssertEqual(Array(beta.prefix(32)), try Vectors.bytes(c.string("label_hex")))
        }
        let invalid = try load().list("vrf_invalid")
        XCTAssertGreaterThanOrEqual(invalid.count, 10)
        for c in invalid {
            XCTAssertNil(ECVRF.verify(publicKey: try Vectors.bytes(c.string("public_key_hex")), alpha: try Vectors.bytes(c.string("alpha_hex")), proof: try Vectors.bytes(c.string("pi_hex"))),
                         c["why"] as? String ?? "")
        }
    }

    private func proof(_ p: [String: Any]) throws -> MapTree.Proof {
        let siblings = try (try XCTUnwrap(p["siblings_hex"] as? [String])).map { try Vectors.hash($0) }
        let terminal: MapTree.Terminal
        switch try p.string("terminal") {
        case "member": terminal = .member(value: try Vectors.hash(p["value_hex"]))
        case "empty": terminal = .empty
        case "other_leaf": terminal = .otherLeaf(label: try Vectors.hash(p["other_label_hex"]), value: try Vectors.hash(p["value_hex"]))
        case let t: throw BadVector(why: "unknown terminal \(t)")
        }
        return MapTree.Proof(terminal: terminal, siblings: siblings)
    }

    func testMapRootsAndProofs() throws {
        let file = try load()
        let roots = try file.list("map_roots")
        XCTAssertGreaterThanOrEqual(roots.count, 8)
        for r in roots {
            let pairs = try (try XCTUnwrap(r["pairs"] as? [[String]])).map { (try Vectors.hash($0[0]), try Vectors.hash($0[1])) }
            XCTAssertEqual(MapTree.Builder(pairs).root, try Vectors.hash(r["root_hex"]), r["case"] as? String ?? "")
        }
        var checked = 0
        for (name, mapAny) in try file.dict("map_proofs") {
            let map = try XCTUnwrap(mapAny as? [String: Any])
            let root = try Vectors.hash(map["root_hex"])
            for p in try map.list("proofs") {
                let label = try Vectors.hash(p["label_hex"])
                let expected: Hash? = try p.string("result") == "member" ? try Vectors.hash(p["value_hex"]) : nil
                XCTAssertEqual(try MapTree.verify(try proof(p), label: label, root: root), expected, "\(name) \(p["label_hex"] ?? "")")
                checked += 1
            }
            // Where the vectors give the pairs, our builder makes the same proofs.
            if let pairsHex = map["pairs"] as? [[String]] {
                let builder = MapTree.Builder(try pairsHex.map { (try Vectors.hash($0[0]), try Vectors.hash($0[1])) })
                XCTAssertEqual(builder.root, root)
                for p in try map.list("proofs") { XCTAssertEqual(builder.proof(for: try Vectors.hash(p["label_hex"])), try proof(p)) }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 23)
        let invalid = try file.list("map_invalid_proofs")
        XCTAssertGreaterThanOrEqual(invalid.count, 9)
        for p in invalid {
            XCTAssertThrowsError(try MapTree.verify(try proof(p), label: try Vectors.hash(p["label_hex"]), root: try Vectors.hash(p["root_hex"])), p["why"] as? String ?? "")
        }
    }
}
