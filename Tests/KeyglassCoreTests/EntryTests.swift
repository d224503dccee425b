import Foundation
@testable import KeyglassCore
import XCTest

/// The entry codec against Spec/entry-vectors.json (made by an independent Python encoder).
final class EntryTests: XCTestCase {
    func loadSpecVectors() throws -> [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Spec/entry-vectors.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func testValidVectorsEncodeAndParseByteForByte() throws {
        let valid = try loadSpecVectors().list("valid")
        XCTAssertEqual(valid.count, 5)
        for v in valid {
            let name = try v.string("name")
            let f = try v.dict("fields")
            let entry = KeyEntry(
                timestampMillis: try f.u64("timestamp_ms"), identity: try f.string("identity"),
                keyType: try KeyType.parse(try f.string("key_type")), publicKey: try XCTUnwrap(Hex.decode(try f.string("public_key"))),
                revocation: (f["revocation"] as? Bool) ?? false,
                previousIndex: (f["previous_index"] as? NSNumber)?.uint64Value,
                signature: (f["signature"] as? String).flatMap(Hex.decode))
            let bytes = try XCTUnwrap(Hex.decode(try v.string("hex")))
            XCTAssertEqual(Hex.encode(try entry.encode()), try v.string("hex"), name)
            XCTAssertEqual(try KeyEntry.parse(bytes), entry, name)
            if let signer = f["signer_public_key"] as? String {
                XCTAssertEqual(entry.rotationMessage.map { Hex.encode($0) }, f["rotation_message"] as? String)
                XCTAssertTrue(entry.isSigned(by: try XCTUnwrap(Hex.decode(signer))), name)
                XCTAssertFalse(entry.isSigned(by: entry.publicKey), name)
            }
        }
    }

    func testInvalidVectorsAreRejected() throws {
        let invalid = try loadSpecVectors().list("invalid")
        XCTAssertGreaterThanOrEqual(invalid.count, 15)
        for v in invalid {
            let bytes = try XCTUnwrap(Hex.decode(try v.string("hex")))
            let name = try v.string("name")
            XCTAssertThrowsError(try KeyEntry.parse(bytes), name)
        }
    }

    func testEveryTruncationAndEveryExtraByteIsRejected() throws {
        let v = try loadSpecVectors().list("valid")
        for vector in v {
            let bytes = try XCTUnwrap(Hex.decode(try vector.string("hex")))
            for n in 0..<bytes.count { XCTAssertThrowsError(try KeyEntry.parse(bytes[0..<n])) }
            for extra in [UInt8(0), 0xff] { XCTAssertThrowsError(try KeyEntry.parse(bytes + [extra])) }
        }
    }

    func testIdentityNormalisation() throws {
        XCTAssertEqual(try Identity.normalize("zoe\u{0308}@example.com").unicodeScalars.count, "zoë@example.com".unicodeScalars.count)
        XCTAssertThrowsError(try Identity.validate("zoe\u{0308}@example.com"))
        XCTAssertThrowsError(try Identity.normalize("alice\u{202E}@example.com"))  // right-to-left override
        XCTAssertThrowsError(try Identity.normalize("alice bob"))
        XCTAssertThrowsError(try Identity.normalize(""))
        XCTAssertThrowsError(try Identity.normalize(String(repeating: "a", count: 256)))
        XCTAssertNoThrow(try Identity.normalize(String(repeating: "a", count: 255)))
    }

    /// Default-ignorable code points (invisible by definition) and characters that render blank
    /// without being one are refused: `alice@example.com` + U+034F would be an identity no watch
    /// file names. Entries already holding one are malformed to the parser.
    func testIdentityRefusesInvisibleAndBlankCharacters() throws {
        let refused: [UInt32] = [0x034F, 0xFE0F, 0xFE00, 0x3164, 0xFFA0, 0x2800, 0x16FE4, 0x1D159, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180E,
                                 0x200B, 0x200D, 0x2060, 0x2064, 0xFEFF, 0x00AD, 0x061C, 0x1D173, 0xE0001, 0xE0041, 0xE0100, 0xE01EF, 0x3000, 0x00A0]
        let key = Ed25519.generate().publicKey
        for value in refused {
            let c = String(Character(Unicode.Scalar(value)!))
            for identity in ["alice" + c + "@example.com", c + "alice", "alice" + c, "zoë" + c] {
                XCTAssertThrowsError(try Identity.normalize(identity), "U+\(String(value, radix: 16))") { error in
                    XCTAssertEqual(error as? Identity.IdentityError, .forbiddenCharacter(value))
                }
            }
            // Built by hand: the encoder refuses it too.
            let id = Array(("alice" + c).utf8)
            let bytes: [UInt8] = [1] + [UInt8](repeating: 0, count: 8) + [UInt8(id.count)] + id + [7] + Array("ed25519".utf8) + [0, 32] + key + [0]
            XCTAssertThrowsError(try KeyEntry.parse(bytes), "an entry whose identity has U+\(String(value, radix: 16)) is malformed")
        }
        // What stays: letters, marks that compose, scripts other than Latin (confusables are not
        // refused: Spec/entry.md says what a watcher does about them).
        for ok in ["zoë@example.com", "josé", "ñandú@example.es", "δοκιμή@example.gr", "пример@example.ru", "用户@example.cn",
                   "사용자@example.kr", "a-b_c.d+e@example.com", "a/b"] {
            XCTAssertNoThrow(try Identity.normalize(ok), ok)
        }
    }

    func testKeyTypeValidation() {
        let ed = Ed25519.generate().publicKey
        XCTAssertNoThrow(try KeyType.ed25519.validate(ed))
        XCTAssertThrowsError(try KeyType.ed25519.validate(ed + [0]))
        XCTAssertThrowsError(try KeyType.parse("rsa"))
        let g = Hex.decode("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")!
        XCTAssertNoThrow(try KeyType.p256.validate(g))
        var off = g
        off[64] ^= 1
        XCTAssertThrowsError(try KeyType.p256.validate(off))
    }

    /// The parser's byte lookup of a type name agrees with the names themselves, and refuses every
    /// near miss (a prefix, an extension, another case, the empty name).
    func testKeyTypeNamesAreLookedUpByExactBytes() {
        func named(_ s: String) -> KeyType? { Array(s.utf8).withUnsafeBytes { KeyType.named($0) } }
        for t in KeyType.allCases {
            XCTAssertEqual(named(t.rawValue), t)
            XCTAssertNil(named(String(t.rawValue.dropLast())), t.rawValue)
            XCTAssertNil(named(t.rawValue + "\0"), t.rawValue)
            XCTAssertNil(named(t.rawValue.uppercased()), t.rawValue)
        }
        for other in ["", "ed2551", "ed25519x", "x448", "P256", "rsa"] { XCTAssertNil(named(other), other) }
    }
}
