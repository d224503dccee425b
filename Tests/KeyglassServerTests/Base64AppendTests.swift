import Foundation
import KeyglassCore
@testable import KeyglassServer
import KeyglassTestSupport
import XCTest

/// The server's base64 writers (`Base64.append`, `Hash.appendBase64`, in Base64Append.swift) agree
/// with Foundation's encoder.
final class Base64AppendTests: XCTestCase {
    /// The hash-to-base64 writer used for proofs agrees with Foundation's encoder.
    func testHashBase64MatchesFoundation() throws {
        var rng = SplitMix64(state: 42)
        var samples = [Hash(bytes: [UInt8](repeating: 0, count: 32))!, Hash(bytes: [UInt8](repeating: 0xff, count: 32))!]
        for _ in 0..<2000 {
            samples.append(Hash(bytes: (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) })!)
        }
        for h in samples {
            var out: [UInt8] = Array("prefix".utf8)
            h.appendBase64(to: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), "prefix" + Data(h.bytes).base64EncodedString())
            XCTAssertEqual(Hash(base64: String(decoding: out.dropFirst(6), as: UTF8.self)), h)
        }
    }

    func testBase64OfEveryLengthMatchesFoundation() {
        var rng = SplitMix64(state: 9)
        for n in 0..<200 {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var out: [UInt8] = []
            bytes.withUnsafeBytes { Base64.append($0, to: &out) }
            XCTAssertEqual(String(decoding: out, as: UTF8.self), Data(bytes).base64EncodedString(), "\(n) bytes")
        }
    }
}
