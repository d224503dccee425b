import Foundation
import KeyglassCore

/// The auditor's watch file: for each watched identity, every key its owner published, oldest
/// first, so the last one listed is the key the owner has now.
///
///     # identity            key_type  base64 public key                              [revoked]
///     alice@example.com     ed25519   iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=
///     alice@example.com     ed25519   Zm9vYmFyYmF6cXV4cXV1eHh4eXl5enp6MDEyMzQ1Njc=
///     carol@example.com     ed25519   c2l4c2l4c2l4c2l4c2l4c2l4c2l4c2l4c2l4c2l4c2k=  revoked
///
/// The auditor holds every entry of a watched identity to this list (`WatchPolicy`): a key not
/// listed is injected; a key listed before the current one, or one the owner revoked, coming back
/// is a retired key; a revocation the list does not mark is an alert. `revoked` marks a key its
/// owner withdrew.
///
/// The file is read strictly, because a file that silently watches nothing is the worst outcome:
/// LF, CRLF or CR line ends, a UTF-8 byte-order mark, tabs and trailing blanks are all fine, but a
/// line that does not parse, or a key listed twice, is an error naming the line.
public struct WatchList: Sendable, Equatable {
    public struct Key: Hashable, Sendable {
        public let type: KeyType
        public let publicKey: [UInt8]
        public init(type: KeyType, publicKey: [UInt8]) {
            self.type = type
            self.publicKey = publicKey
        }
    }

    /// One line of the file.
    public struct Listed: Sendable, Equatable {
        public let key: Key
        /// The owner revoked this key.
        public let revoked: Bool
    }

    /// Each watched identity's keys, in the file's order (oldest first).
    public private(set) var keys: [String: [Listed]] = [:]

    public init() {}

    public enum ParseError: Error, CustomStringConvertible {
        case line(Int, String)
        public var description: String {
            switch self { case let .line(n, m): return "watch file line \(n): \(m)" }
        }
    }

    public init(text: String) throws {
        var body = Substring(text)
        if body.unicodeScalars.first == "\u{FEFF}" { body = body.dropFirst() }
        // Split on scalars, not Characters: Swift reads "\r\n" as ONE Character, so splitting a
        // CRLF file on "\n" finds no line ends at all (the whole file would be one line).
        var lines: [Substring] = []
        var start = body.unicodeScalars.startIndex
        var i = start
        let scalars = body.unicodeScalars
        while i < scalars.endIndex {
            let c = scalars[i]
            if c == "\n" || c == "\r" {
                lines.append(Substring(scalars[start..<i]))
                var next = scalars.index(after: i)
                if c == "\r", next < scalars.endIndex, scalars[next] == "\n" { next = scalars.index(after: next) }
                start = next
                i = next
            } else {
                i = scalars.index(after: i)
            }
        }
        lines.append(Substring(scalars[start..<scalars.endIndex]))

        for (n, raw) in lines.enumerated() {
            let lineNumber = n + 1
            let content = raw.unicodeScalars.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map { Substring($0) } ?? ""
            let fields = content.unicodeScalars.split(whereSeparator: { $0.properties.isWhitespace }).map { String(String.UnicodeScalarView($0)) }
            if fields.isEmpty { continue }
            guard fields.count == 3 || (fields.count == 4 && fields[3] == "revoked") else {
                throw ParseError.line(lineNumber, fields.count == 4
                    ? "the fourth field may only be \"revoked\", not \"\(fields[3])\""
                    : "expected: identity key_type base64key [revoked], found \(fields.count) field(s)")
            }
            let identity: String
            do { identity = try Identity.normalize(fields[0]) } catch { throw ParseError.line(lineNumber, error.description) }
            let type: KeyType
            do { type = try KeyType.parse(fields[1]) } catch { throw ParseError.line(lineNumber, error.description) }
            guard let key = Base64.decode(fields[2]) else { throw ParseError.line(lineNumber, "key is not base64") }
            do { try type.validate(key) } catch { throw ParseError.line(lineNumber, error.description) }
            let listed = Listed(key: Key(type: type, publicKey: key), revoked: fields.count == 4)
            if keys[identity, default: []].contains(where: { $0.key == listed.key }) {
                throw ParseError.line(lineNumber, "\(identity)'s key \(fields[2]) is listed twice; list each key once, oldest first")
            }
            keys[identity, default: []].append(listed)
        }
    }

    public var isEmpty: Bool { keys.isEmpty }

    /// The watched identities, sorted.
    public var identities: [String] { keys.keys.sorted() }

    public func isWatched(_ identity: String) -> Bool { keys[identity] != nil }

    /// Where `key` stands in `identity`'s list (0 is the oldest), or nil when it is not listed.
    public func position(_ identity: String, _ type: KeyType, _ key: [UInt8]) -> Int? {
        keys[identity]?.firstIndex { $0.key == Key(type: type, publicKey: key) }
    }

    public func isListed(_ identity: String, _ type: KeyType, _ key: [UInt8]) -> Bool {
        position(identity, type, key) != nil
    }

    /// The list restricted to `identities`.
    public func only(_ identities: Set<String>) -> WatchList {
        var w = WatchList()
        w.keys = keys.filter { identities.contains($0.key) }
        return w
    }
}
