import Foundation
@testable import KeyglassServer
import XCTest

/// `CanonicalPath` works on bytes for speed: it must give the answers of the rule as written with
/// Swift's String operations (the reference below, the code it replaced), and decode identities
/// as Foundation's `removingPercentEncoding` does, except that bytes which are not UTF-8 are
/// refused: Foundation on Linux refuses some ("%C3", "%FF") but repairs others (a lone "%A9"
/// became U+FFFD, an identity nobody published).
final class CanonicalPathTests: XCTestCase {
    /// The rule on Characters: segments not empty, "." or ".."; "%" only after an identity prefix.
    private func referenceIsCanonical(_ path: Substring) -> Bool {
        if path == "/" { return true }
        guard path.first == "/" else { return false }
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." { return false }
        }
        let routed = CanonicalPath.identityPrefixes.first { path.hasPrefix($0) }.map { path.prefix($0.count) } ?? path
        return !routed.contains("%")
    }

    func testPathsAreJudgedAsTheRuleSays() {
        let cases: [(String, Bool)] = [
            ("/", true), ("", false), ("v1/keys", false), ("/v1/keys", true), ("/v1/keys/", false), ("//v1/keys", false),
            ("/v1//keys", false), ("/v1/./keys", false), ("/v1/../keys", false), ("/v1/.../keys", true), ("/v1/.x", true),
            ("/v1/keys/alice%40example.com", true), ("/v1/keys/a%2Fb", true), ("/v1/ke%79s", false), ("/%761/keys", false),
            ("/v2/lookup/bob%40x", true), ("/v2/history/..", false), ("/v2/lookup/.", false), ("/v2/lookup/a/", false),
            ("/checkpoint", true), ("/tile/8/0/x001/234", true), ("/tile/8/0/x001/234/", false), ("/v1/keys/%", true),
        ]
        for (path, canonical) in cases {
            XCTAssertEqual(CanonicalPath.isCanonical(path[...]), canonical, path)
            XCTAssertEqual(referenceIsCanonical(path[...]), canonical, "reference: \(path)")
        }
        // Random paths from pieces that meet every branch of the rule.
        let pieces = ["/", "/", "/", ".", "..", "%", "%40", "a", "v1", "keys", "v2", "lookup", "history", "/v1/keys/", "/v2/lookup/"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let path = (0..<Int.random(in: 0...7, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            XCTAssertEqual(CanonicalPath.isCanonical(path[...]), referenceIsCanonical(path[...]), path)
        }
    }

    /// Foundation's decoding, with a repaired sequence (U+FFFD that the input did not encode) as nil.
    private func expectedDecoding(_ text: String) -> String? {
        guard let decoded = text.removingPercentEncoding else { return nil }
        return decoded.contains("\u{FFFD}") && !text.contains("%EF%BF%BD") ? nil : decoded
    }

    func testIdentitiesArePercentDecodedAsFoundationDoes() {
        let cases = ["alice@example.com", "alice%40example.com", "a%2Fb", "%C3%A9", "%c3%a9", "%C3", "%FF", "%", "%4", "%G0",
                     "%%40", "100%25", "%E2%80%8B", "plain", "%40%40", "x%2", "%EF%BF%BD"]
        for text in cases {
            XCTAssertEqual(CanonicalPath.percentDecoded(text[...]), expectedDecoding(text), text)
        }
        XCTAssertNil(CanonicalPath.percentDecoded("%A9"[...]), "a lone continuation byte is refused, not repaired")
        let pieces = ["%", "4", "0", "C3", "A9", "a", "F", "G", "%C3%A9", "%E2%82", "%AC", "@", "é"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let text = (0..<Int.random(in: 0...8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            XCTAssertEqual(CanonicalPath.percentDecoded(text[...]), expectedDecoding(text), text)
        }
    }
}
