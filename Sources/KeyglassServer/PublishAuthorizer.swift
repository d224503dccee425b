import KeyglassCore

/// Checks operator bearer tokens. Only SHA-256 of each token is kept in memory, and a presented
/// token is hashed and compared in constant time, so neither timing nor a memory dump of this
/// object reveals a token.
struct PublishAuthorizer: Sendable {
    private let tokenHashes: [[UInt8]]

    init(tokens: [String], tokenHashes hashes: [Hash] = []) {
        tokenHashes = tokens.filter { !$0.isEmpty }.map { Hash.sha256(Array($0.utf8)).bytes } + hashes.map(\.bytes)
    }

    /// True when `token` is one of the configured tokens. Checks every configured token, so the time
    /// taken does not depend on which one matched.
    func accepts(_ token: String) -> Bool {
        let presented = Hash.sha256(Array(token.utf8)).bytes
        var matched = false
        for h in tokenHashes where constantTimeEquals(h, presented) { matched = true }
        return matched
    }
}
