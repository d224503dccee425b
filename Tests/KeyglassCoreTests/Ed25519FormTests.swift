import CKeyglassSodium
import KeyglassCore
@testable import KeyglassCore
import XCTest

/// The cheap form check for Ed25519 keys (`KeyType.Check.form`: canonical, not of small order)
/// that auditors apply to keys nobody watches, against libsodium's full check.
final class Ed25519FormTests: XCTestCase {
    private func form(_ key: [UInt8]) -> Bool { key.withUnsafeBytes { Ed25519.isCanonicalAndNotSmallOrder($0) } }
    private static let identity: [UInt8] = [1] + [UInt8](repeating: 0, count: 31)

    /// 2·P with libsodium's group law (which does not refuse small-order points).
    private func double(_ p: [UInt8]) -> [UInt8]? {
        var r = [UInt8](repeating: 0, count: 32)
        return crypto_core_ed25519_add(&r, p, p) == 0 ? r : nil
    }

    /// Each listed y, with either sign of x, is a point whose order divides 8 (three doublings give
    /// the identity), libsodium refuses it, and so does the form check.
    func testSmallOrderListIsExactlyPointsOfOrderDividingEight() throws {
        XCTAssertEqual(Ed25519.smallOrderY.count, 5)
        for y in Ed25519.smallOrderY {
            for sign: UInt8 in [0, 0x80] {
                var p = y
                p[31] |= sign
                XCTAssertFalse(form(p), Hex.encode(p))
                XCTAssertFalse(Ed25519.isValidPublicKey(p), Hex.encode(p))
                // x = 0 has no negative: for y = ±1 the sign bit makes a non-canonical encoding.
                let isXZero = y == Self.identity || y == Ed25519.smallOrderY[1]
                if sign == 0x80 && isXZero { continue }
                guard let p2 = double(p), let p4 = double(p2), let p8 = double(p4) else { return XCTFail("\(Hex.encode(p)) is not a point") }
                XCTAssertEqual(p8, Self.identity, "8·P of \(Hex.encode(p))")
            }
        }
    }

    /// Encodings of y ≥ p (p, p + 1, … with the top bits set) are not canonical.
    func testNonCanonicalEncodingsAreRefused() {
        for low in UInt8(0xed)...UInt8(0xff) {
            for sign: UInt8 in [0, 0x80] {
                let key = [low] + [UInt8](repeating: 0xff, count: 30) + [0x7f | sign]
                XCTAssertFalse(form(key), Hex.encode(key))
                XCTAssertFalse(Ed25519.isValidPublicKey(key), Hex.encode(key))
            }
        }
        // The largest canonical y (p − 2) is not refused for its encoding.
        XCTAssertTrue(form([0xeb] + [UInt8](repeating: 0xff, count: 30) + [0x7f]))
    }

    /// No false refusals: every key libsodium accepts passes the form check (real keys and random
    /// bytes), and a point with a small-order component, which the form check lets through, is
    /// refused by the full check: that is the gap Spec/decisions.md 25 assigns to clients.
    func testFormCheckNeverRefusesAValidKey() throws {
        for _ in 0..<2000 { XCTAssertTrue(form(Ed25519.generate().publicKey)) }
        var accepted = 0
        for _ in 0..<4000 {
            let bytes = Ed25519.randomBytes(32)
            if Ed25519.isValidPublicKey(bytes) {
                accepted += 1
                XCTAssertTrue(form(bytes), Hex.encode(bytes))
            }
        }
        XCTAssertGreaterThan(accepted, 0)
        let torsioned = try Self.withTorsion(Ed25519.generate().publicKey)
        XCTAssertTrue(form(torsioned))
        XCTAssertFalse(Ed25519.isValidPublicKey(torsioned))
        XCTAssertNoThrow(try KeyType.ed25519.validate(torsioned, check: .form))
        XCTAssertThrowsError(try KeyType.ed25519.validate(torsioned, check: .full))
    }

    /// `key` plus a point of order 8: on the curve, canonical, not of small order, and outside the
    /// main subgroup.
    static func withTorsion(_ key: [UInt8]) throws -> [UInt8] {
        var r = [UInt8](repeating: 0, count: 32)
        guard crypto_core_ed25519_add(&r, key, Ed25519.smallOrderY[3]) == 0 else { throw KeyEntry.EntryError.malformed("add failed") }
        return r
    }
}
