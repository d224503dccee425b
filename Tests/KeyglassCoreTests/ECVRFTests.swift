import CKeyglassSodium
import Foundation
@testable import KeyglassCore
import XCTest

/// ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381 suite 0x03): the RFC's vectors byte for byte, and every
/// malformed input a verifier must refuse.
final class ECVRFTests: XCTestCase {
    private struct Vector {
        let seed, publicKey, alpha, proof, output: [UInt8]
    }

    private func vectors() throws -> [Vector] {
        let file = try Vectors.load("rfc9381-ecvrf-edwards25519-sha512-tai.json")
        XCTAssertEqual(try file.string("suite_string_hex"), "03")
        return try file.list("vectors").map {
            Vector(seed: try Vectors.bytes($0.string("sk")), publicKey: try Vectors.bytes($0.string("pk")), alpha: try Vectors.bytes($0.string("alpha_hex")),
                   proof: try Vectors.bytes($0.string("pi")), output: try Vectors.bytes($0.string("beta")))
        }
    }

    private static let identity: [UInt8] = [1] + [UInt8](repeating: 0, count: 31)

    func testRFC9381VectorsByteForByte() throws {
        let all = try vectors()
        XCTAssertEqual(all.count, 3)
        for v in all {
            XCTAssertEqual(try ECVRF.publicKey(seed: v.seed), v.publicKey)
            let proof = try ECVRF.prove(seed: v.seed, alpha: v.alpha)
            XCTAssertEqual(Hex.encode(proof), Hex.encode(v.proof), "π for alpha \(Hex.encode(v.alpha))")
            XCTAssertEqual(try ECVRF.proofToHash(proof), v.output)
            XCTAssertEqual(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: v.proof), v.output)
            // The output alone (labels at publish time) and a proof from a kept key are the same bytes.
            let key = try ECVRF.SecretKey(seed: v.seed)
            XCTAssertEqual(key.publicKey, v.publicKey)
            XCTAssertEqual(try ECVRF.output(key: key, alpha: v.alpha), v.output, "β without the proof")
            XCTAssertEqual(try ECVRF.prove(key: key, alpha: v.alpha), v.proof)
            // The key prints and reflects as its public key only.
            var dumped = ""
            dump(key, to: &dumped)
            for shown in ["\(key)", String(reflecting: key), dumped] {
                XCTAssertTrue(shown.contains(Hex.encode(v.publicKey)), shown)
                XCTAssertFalse(shown.contains("secret") || shown.contains(Hex.encode(v.seed)), shown)
            }
        }
    }

    /// Every single-bit change of a vector's proof, its input or its key is refused.
    func testTamperedProofsInputsAndKeysAreRefused() throws {
        for v in try vectors() {
            for byte in 0..<ECVRF.proofLength {
                for bit in [0, 3, 7] {
                    var p = v.proof
                    p[byte] ^= UInt8(1 << bit)
                    XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: p), "bit \(bit) of byte \(byte)")
                }
            }
            XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha + [0], proof: v.proof))
            if !v.alpha.isEmpty {
                var alpha = v.alpha
                alpha[0] ^= 1
                XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: alpha, proof: v.proof))
            }
            let other = Ed25519.generate().publicKey
            XCTAssertNil(ECVRF.verify(publicKey: other, alpha: v.alpha, proof: v.proof), "another key")
            XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: Array(v.proof.dropLast())), "79 bytes")
            XCTAssertNil(ECVRF.verify(publicKey: Array(v.publicKey.dropLast()), alpha: v.alpha, proof: v.proof), "31-byte key")
        }
    }

    /// s + L multiplies to the same points as s: without the s < L check, a second encoding of the
    /// same proof would verify.
    func testScalarNotBelowTheGroupOrderIsRefused() throws {
        for v in try vectors() {
            var s = Array(v.proof[48..<80])
            XCTAssertTrue(ECVRF.isBelowGroupOrder(s))
            // s + L, little-endian with carry (fits: s < L < 2^253).
            var carry = 0
            for i in 0..<32 {
                let sum = Int(s[i]) + Int(ECVRF.groupOrder[i]) + carry
                s[i] = UInt8(sum & 0xff)
                carry = sum >> 8
            }
            XCTAssertEqual(carry, 0)
            XCTAssertFalse(ECVRF.isBelowGroupOrder(s))
            XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: Array(v.proof[0..<48]) + s))
        }
        XCTAssertFalse(ECVRF.isBelowGroupOrder(ECVRF.groupOrder), "L itself")
        var below = ECVRF.groupOrder
        below[0] -= 1
        XCTAssertTrue(ECVRF.isBelowGroupOrder(below), "L − 1")
    }

    /// The eight small-order points (each sign, each y), y ≥ p encodings and x = 0 with the sign bit
    /// set are refused as the public key and as Γ.
    func testSmallOrderAndNonCanonicalPointsAreRefused() throws {
        let v = try XCTUnwrap(try vectors().last)
        var bad: [[UInt8]] = []
        for y in Ed25519.smallOrderY {
            for sign: UInt8 in [0, 0x80] {
                var p = y
                p[31] |= sign
                bad.append(p)
            }
        }
        // y = p + k for k < 19: non-canonical spellings of y = k.
        for k in 0..<19 {
            var p = [UInt8(0xed + k)] + [UInt8](repeating: 0xff, count: 30) + [0x7f]
            bad.append(p)
            p[31] |= 0x80
            bad.append(p)
        }
        for p in bad {
            XCTAssertFalse(ECVRF.isPrimeOrderPoint(p), Hex.encode(p))
            XCTAssertNil(ECVRF.verify(publicKey: p, alpha: v.alpha, proof: v.proof), "key \(Hex.encode(p))")
            XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: p + Array(v.proof[32...])), "Γ \(Hex.encode(p))")
        }
        XCTAssertFalse(ECVRF.isStrictEncoding([1] + [UInt8](repeating: 0, count: 30) + [0x80]), "x = 0, sign bit set")
        XCTAssertTrue(ECVRF.isStrictEncoding(Self.identity), "the identity itself is a strict encoding (and of small order)")
    }

    /// A key or Γ with a small-order component (P + T, T of order 8) is on the curve, canonical and
    /// not of small order, but outside the prime-order subgroup: refused.
    func testPointsOutsideThePrimeOrderSubgroupAreRefused() throws {
        let v = try XCTUnwrap(try vectors().first)
        let torsion = try XCTUnwrap(Ed25519.smallOrderY.last)  // a point of order 8
        func plusTorsion(_ p: [UInt8]) -> [UInt8] {
            var r = [UInt8](repeating: 0, count: 32)
            XCTAssertEqual(crypto_core_ed25519_add(&r, p, torsion), 0)
            return r
        }
        let mixedKey = plusTorsion(v.publicKey)
        XCTAssertTrue(ECVRF.isStrictEncoding(mixedKey))
        XCTAssertFalse(ECVRF.isPrimeOrderPoint(mixedKey))
        XCTAssertNil(ECVRF.verify(publicKey: mixedKey, alpha: v.alpha, proof: v.proof))
        let mixedGamma = plusTorsion(Array(v.proof[0..<32]))
        XCTAssertNil(ECVRF.verify(publicKey: v.publicKey, alpha: v.alpha, proof: mixedGamma + Array(v.proof[32...])))
    }

    /// Fresh keys and inputs: every proof verifies to its own output, outputs differ between inputs
    /// and keys, and a proof is refused for any other input or key.
    func testRandomKeysProveVerifyAndBind() throws {
        var outputs: Set<[UInt8]> = []
        for n in 0..<20 {
            let pair = Ed25519.generate()
            let alpha = Array("user\(n)@example.com".utf8)
            let proof = try ECVRF.prove(seed: pair.seed, alpha: alpha)
            XCTAssertEqual(proof.count, ECVRF.proofLength)
            let beta = try XCTUnwrap(ECVRF.verify(publicKey: pair.publicKey, alpha: alpha, proof: proof))
            XCTAssertEqual(beta.count, ECVRF.outputLength)
            XCTAssertEqual(try ECVRF.proofToHash(proof), beta)
            XCTAssertEqual(try ECVRF.output(key: ECVRF.SecretKey(seed: pair.seed), alpha: alpha), beta, "β without the proof")
            XCTAssertEqual(try ECVRF.prove(seed: pair.seed, alpha: alpha), proof, "deterministic")
            XCTAssertNil(ECVRF.verify(publicKey: pair.publicKey, alpha: alpha + [0x20], proof: proof))
            XCTAssertNil(ECVRF.verify(publicKey: Ed25519.generate().publicKey, alpha: alpha, proof: proof))
            outputs.insert(beta)
        }
        XCTAssertEqual(outputs.count, 20)
        XCTAssertThrowsError(try ECVRF.prove(seed: [1, 2, 3], alpha: [])) { XCTAssertEqual($0 as? ECVRF.Failure, .badSeed) }
    }
}
