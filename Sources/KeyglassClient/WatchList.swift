import Foundation
import KeyglassCore

/// The auditor's watch file: for each watched identity, the keys its owner actually published.
///
///     # identity            key_type  base64 public key
///     alice@example.com     ed25519   iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=
///
/// Any key the log holds for a watched identity that is not listed here is an injected key.
public struct WatchList: Sendable, Equatable {
    public struct Key: Hashable, Sendable {
        public let type: KeyType
        public let publicKey: [UInt8]
    }
    public private(set) var keys: [String: Set<Key>] = [:]

    public init() {}

    public enum ParseError: Error, CustomStringConvertible {
        case line(Int, String)
        public var description: String {
            switch self { case let .line(n, m): return "watch file line \(n): \(m)" }
        }
    }

    public init(text: String) throws {
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count == 3 else { throw ParseError.line(i + 1, "expected: identity key_type base64key") }
            let identity: String
            do { identity = try Identity.normalize(String(fields[0])) } catch { throw ParseError.line(i + 1, error.description) }
            let type: KeyType
            do { type = try KeyType.parse(String(fields[1])) } catch { throw ParseError.line(i + 1, error.description) }
            guard let key = Base64.decode(String(fields[2])) else { throw ParseError.line(i + 1, "key is not base64") }
            do { try type.validate(key) } catch { throw ParseError.line(i + 1, error.description) }
            keys[identity, default: []].insert(Key(type: type, publicKey: key))
        }
    }

    public func isWatched(_ identity: String) -> Bool { keys[identity] != nil }

    public func isListed(_ identity: String, _ type: KeyType, _ key: [UInt8]) -> Bool {
        keys[identity]?.contains(Key(type: type, publicKey: key)) ?? false
    }
}
