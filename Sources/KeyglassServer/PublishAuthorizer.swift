import KeyglassCore

/// Checks operator bearer tokens. Only SHA-256 of each token is kept in memory, and a presented
/// token is hashed and compared in constant time, so neither timing nor a memory dump of this
/// object reveals a token.
struct PublishAuthorizer: Sendable {
    /// Each token's SHA-256 and the name it is known by (limits and logs use the name).
    private let tokenHashes: [(hash: [UInt8], name: String)]

    init(tokens: [String], tokenHashes hashes: [Hash] = []) {
        tokenHashes = (tokens.filter { !$0.isEmpty }.map { Hash.sha256(Array($0.utf8)) } + hashes).map { ($0.bytes, "operator") }
    }

    /// Named tokens given by their hashes (a key directory's lookup credentials).
    init(named: [(name: String, hash: Hash)]) {
        tokenHashes = named.map { ($0.hash.bytes, $0.name) }
    }

    /// True when `token` is one of the configured tokens.
    func accepts(_ token: String) -> Bool { name(of: token) != nil }

    /// The name of the configured token `token` is, if any. Checks every configured token, so the
    /// time taken does not depend on which one matched.
    func name(of token: String) -> String? {
        let presented = Hash.sha256(Array(token.utf8)).bytes
        var matched: String?
        for t in tokenHashes where constantTimeEquals(t.hash, presented) { matched = t.name }
        return matched
    }
}
