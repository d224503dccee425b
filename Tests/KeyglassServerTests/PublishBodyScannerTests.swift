import Foundation
@testable import KeyglassServer
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The publish-body scanner may only ever accept what JSONDecoder accepts, with the same values.
final class PublishBodyScannerTests: XCTestCase {
    private func check(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let bytes = Array(text.utf8)
        let fast = bytes.withUnsafeBytes { PublishBodyScanner.scan($0) }
        guard let fast else { return false }
        let slow = try? JSONDecoder().decode(PublishBody.self, from: Data(bytes))
        XCTAssertEqual(fast, slow, "scanner and JSONDecoder disagree on \(text)", file: file, line: line)
        return true
    }

    func testCommonBodiesAreScanned() {
        XCTAssertTrue(check(#"{"identity":"a@b.c","key_type":"x25519","public_key":"AQID"}"#))
        XCTAssertTrue(check(" {\n\t\"public_key\" : \"AQID\" ,\"key_type\":\"ed25519\",\"identity\":\"x\",\"revocation\":false,\"previous_index\":0,\"signature\":\"c2ln\"}\r\n"))
        XCTAssertTrue(check(#"{"identity":"a","key_type":"x","public_key":"k","previous_index":18446744073709551615,"revocation":true}"#))
    }

    func testUnusualBodiesAreLeftToJSONDecoder() {
        for text in [
            #"{"identity":"a\u0041","key_type":"x","public_key":"k"}"#,      // escape
            #"{"identity":"é","key_type":"x","public_key":"k"}"#,             // non-ASCII
            #"{"identity":"a","identity":"b","key_type":"x","public_key":"k"}"#,  // duplicate
            #"{"identity":"a","key_type":"x","public_key":"k","extra":1}"#,   // unknown key
            #"{"identity":"a","key_type":"x","public_key":"k","previous_index":01}"#,
            #"{"identity":"a","key_type":"x","public_key":"k","previous_index":1.0}"#,
            #"{"identity":"a","key_type":"x","public_key":"k","previous_index":1e3}"#,
            #"{"identity":"a","key_type":"x","public_key":"k","previous_index":-1}"#,
            #"{"identity":"a","key_type":"x","public_key":"k","previous_index":18446744073709551616}"#,
            #"{"identity":"a","key_type":"x","public_key":"k","signature":null}"#,
            #"{"identity":"a","key_type":"x","public_key":"k"} x"#,
            #"{"identity":"a","key_type":"x"}"#, "{}", "[]", "",
        ] {
            XCTAssertFalse(check(text), text)
        }
    }

    func testMemberNamesAreReadWithEscapesDecoded() {
        func names(_ text: String) -> [String]? { Array(text.utf8).withUnsafeBytes { PublishBodyScanner.memberNames($0) } }
        XCTAssertEqual(names(#" {"a":1, "b" : {"c":["}", "\"", {"d":null}]}, "a\u0062":"x", "é":true} "#), ["a", "b", "ab", "é"])
        XCTAssertEqual(names("{}"), [])
        for bad in ["", "[]", #"{"a":1"#, #"{"a":1} x"#, #"{"a" 1}"#, #"{"a":}"#, #"{"a":[1}"#, #"{"a":"x}"#] {
            XCTAssertNil(names(bad), bad)
        }
    }

    /// Random bodies, valid and mutated: whenever JSONDecoder reads one as an object,
    /// `memberNames` reads it too and finds the same names (so the duplicate check never falls
    /// back to refusing a good body as malformed).
    func testMemberNamesReadEveryObjectJSONDecoderReads() {
        var rng = SplitMix64(state: 4711)
        var objects = 0
        for _ in 0..<20_000 {
            let text = Self.randomBody(&rng)
            guard let decoded = try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)) else { continue }
            objects += 1
            let names = Array(text.utf8).withUnsafeBytes { PublishBodyScanner.memberNames($0) }
            XCTAssertNotNil(names, text)
            XCTAssertEqual(Set(names ?? []), Set(decoded.keys), text)
        }
        XCTAssertGreaterThan(objects, 1000)
    }

    /// Any JSON value, for decoding objects of unknown shape.
    private enum JSONValue: Decodable {
        case value
        init(from decoder: Decoder) throws {
            if let c = try? decoder.container(keyedBy: PublishBody.AnyKey.self) {
                for k in c.allKeys { _ = try c.decode(JSONValue.self, forKey: k) }
            } else if var c = try? decoder.unkeyedContainer() {
                while !c.isAtEnd { _ = try c.decode(JSONValue.self) }
            } else {
                let c = try decoder.singleValueContainer()
                if !c.decodeNil() {
                    if (try? c.decode(Bool.self)) == nil, (try? c.decode(Double.self)) == nil { _ = try c.decode(String.self) }
                }
            }
            self = .value
        }
    }

    /// A publish-like body: known and unknown names with strings, numbers, booleans, sometimes
    /// mutated (a piece inserted, deleted or replaced).
    static func randomBody(_ rng: inout SplitMix64) -> String {
        let keys = ["identity", "key_type", "public_key", "signature", "previous_index", "revocation", "other"]
        let pieces: [String] = ["\"", "\\", " ", "\n", ",", ":", "{", "}", "0", "1", "-", ".", "e", "true", "false", "null", "é", "\u{01}", "[", "]"]
        var fields: [String] = []
        let required: Set = ["identity", "key_type", "public_key"]
        for key in keys.shuffled(using: &rng) where required.contains(key) ? rng.next() % 20 != 0 : rng.next() % 3 == 0 {
            let value: String
            switch required.contains(key) ? 2 + rng.next() % 8 : rng.next() % 5 {
            case 0: value = String(rng.next() % 100_000)
            case 1: value = rng.next() % 2 == 0 ? "true" : "false"
            default: value = "\"" + String((0..<(rng.next() % 12)).map { _ in Character(UnicodeScalar(UInt8(0x21 + rng.next() % 90))) }).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            }
            fields.append("\"\(key)\"\(rng.next() % 3 == 0 ? " : " : ":")\(value)")
        }
        var text = "{" + fields.joined(separator: ",") + "}"
        for _ in 0..<(rng.next() % 4 == 0 ? 1 + rng.next() % 3 : 0) where !text.isEmpty {
            var chars = Array(text)
            let at = Int(rng.next() % UInt64(chars.count))
            switch rng.next() % 3 {
            case 0: chars.insert(contentsOf: pieces[Int(rng.next() % UInt64(pieces.count))], at: at)
            case 1: chars.remove(at: at)
            default: chars[at] = pieces[Int(rng.next() % UInt64(pieces.count))].first!
            }
            text = String(chars)
        }
        return text
    }

    /// Random bodies, valid and mutated: whenever the scanner accepts, JSONDecoder agrees.
    func testScannerNeverDisagreesWithJSONDecoder() {
        var rng = SplitMix64(state: 2026)
        var scanned = 0
        for _ in 0..<20_000 {
            let text = Self.randomBody(&rng)
            if check(text) { scanned += 1 }
        }
        XCTAssertGreaterThan(scanned, 1000, "the scanner handled the common shapes")
    }
}
