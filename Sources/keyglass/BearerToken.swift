import Foundation
import ArgumentParser

/// A credential as the CLI reads it (a file or an environment variable) before it is sent as
/// `Authorization: Bearer …`: trimmed, then refused unless it is RFC 6750's token68 (letters,
/// digits, `-._~+/`, then `=` padding). A value with a line break or a space inside would otherwise
/// fail far from its cause (as a refused header, or a "network error" after retries).
enum BearerToken {
    /// The trimmed token; a usage error naming `source` if it is not one.
    static func checked(_ raw: String, from source: String) throws -> String {
        let token = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        let body = token.prefix { $0 != "=" }
        let allowed = body.unicodeScalars.allSatisfy { s in
            ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || "-._~+/".unicodeScalars.contains(s)
        }
        guard !body.isEmpty, allowed, token.dropFirst(body.count).allSatisfy({ $0 == "=" }) else {
            throw ValidationError("\(source) does not hold a bearer token (letters, digits and -._~+/ only, nothing else on the line)")
        }
        return token
    }
}
