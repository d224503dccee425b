import Foundation
import XCTest
@testable import KeyglassCore

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
}
