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

    private func bytes(_ hex: String?) throws -> [UInt8] {
        let s = try XCTUnwrap(hex)
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let h = it.next() {
            let l = try XCTUnwrap(it.next())
            out.append(try XCTUnwrap(UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16)))
        }
        return out
    }

    private func hash(_ hex: Any?) throws -> Hash { try XCTUnwrap(Hash(bytes: try bytes(hex as? String)), "not 32 bytes: \(String(describing: hex))") }

    func testVRFVectors() throws {
        let v = try load().dict("vrf")
        let seed = try bytes(v.string("seed_hex"))
        let pk = try bytes(v.string("public_key_hex"))
        XCTAssertEqual(try ECVRF.publicKey(seed: seed), pk)
        let cases = try v.list("cases")
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for c in cases {
            let alpha = try bytes(c.string("alpha_hex"))
            let pi = try bytes(c.string("pi_hex"))
            XCTAssertEqual(try ECVRF.prove(seed: seed, alpha: alpha), pi, "π for \(c["alpha_hex"] ?? "")")
            let beta = try bytes(c.string("beta_hex"))
            XCTAssertEqual(ECVRF.verify(publicKey: pk, alpha: alpha, proof: pi), beta)
            XCTAssertEqual(Array(beta.prefix(32)), try bytes(c.string("label_hex")))
        }
        let invalid = try load().list("vrf_invalid")
        XCTAssertGreaterThanOrEqual(invalid.count, 10)
        for c in invalid {
            XCTAssertNil(ECVRF.verify(publicKey: try bytes(c.string("public_key_hex")), alpha: try bytes(c.string("alpha_hex")), proof: try bytes(c.string("pi_hex"))),
                         c["why"] as? String ?? "")
        }
    }

    private func proof(_ p: [String: Any]) throws -> MapTree.Proof {
        let siblings = try (try XCTUnwrap(p["siblings_hex"] as? [String])).map { try hash($0) }
        let terminal: MapTree.Terminal
        switch try p.string("terminal") {
        case "member": terminal = .member(value: try hash(p["value_hex"]))
        case "empty": terminal = .empty
        case "other_leaf": terminal = .otherLeaf(label: try hash(p["other_label_hex"]), value: try hash(p["value_hex"]))
        case let t: throw BadVector(why: "unknown terminal \(t)")
        }
        return MapTree.Proof(terminal: terminal, siblings: siblings)
    }

    func testMapRootsAndProofs() throws {
        let file = try load()
        let roots = try file.list("map_roots")
        XCTAssertGreaterThanOrEqual(roots.count, 8)
        for r in roots {
            let pairs = try (try XCTUnwrap(r["pairs"] as? [[String]])).map { (try hash($0[0]), try hash($0[1])) }
            XCTAssertEqual(MapTree.Builder(pairs).root, try hash(r["root_hex"]), r["case"] as? String ?? "")
        }
        var checked = 0
        for (name, mapAny) in try file.dict("map_proofs") {
            let map = try XCTUnwrap(mapAny as? [String: Any])
            let root = try hash(map["root_hex"])
            for p in try map.list("proofs") {
                let label = try hash(p["label_hex"])
                let expected: Hash? = try p.string("result") == "member" ? try hash(p["value_hex"]) : nil
                XCTAssertEqual(try MapTree.verify(try proof(p), label: label, root: root), expected, "\(name) \(p["label_hex"] ?? "")")
                checked += 1
            }
            // Where the vectors give the pairs, our builder makes the same proofs.
            if let pairsHex = map["pairs"] as? [[String]] {
                let builder = MapTree.Builder(try pairsHex.map { (try hash($0[0]), try hash($0[1])) })
                XCTAssertEqual(builder.root, root)
                for p in try map.list("proofs") { XCTAssertEqual(builder.proof(for: try hash(p["label_hex"])), try proof(p)) }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 23)
        let invalid = try file.list("map_invalid_proofs")
        XCTAssertGreaterThanOrEqual(invalid.count, 9)
        for p in invalid {
            XCTAssertThrowsError(try MapTree.verify(try proof(p), label: try hash(p["label_hex"]), root: try hash(p["root_hex"])), p["why"] as? String ?? "")
        }
    }
}
