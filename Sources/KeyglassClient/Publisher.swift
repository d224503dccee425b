import Foundation
import KeyglassCore
import KeyglassWire

/// `keyglass publish`: publish a key, then verify the checkpoint and inclusion proof the log returns
/// before reporting success.
public struct Publisher: Sendable {
    public let client: LogClient
    public let logKey: NoteVerifierKey

    public init(client: LogClient, logKey: NoteVerifierKey) {
        self.client = client
        self.logKey = logKey
    }

    public enum PublishFailure: Error, CustomStringConvertible {
        case notCurrentKey(String)
        public var description: String {
            switch self { case let .notCurrentKey(m): return m }
        }
    }

    /// With `token`: the operator vouches. With `signingSeed`: the identity's current Ed25519 key
    /// signs the new entry (found by a verified lookup), making it chained.
    public func publish(identity rawIdentity: String, keyType: KeyType, publicKey: [UInt8], revocation: Bool = false,
                        token: String?, signingSeed: [UInt8]?) async throws -> (SignedCheckpoint, VerifiedEntry) {
        let identity = try Identity.normalize(rawIdentity)
        try keyType.validate(publicKey)
        var body = PublishBody(identity: identity, key_type: keyType.rawValue, public_key: Base64.encode(publicKey),
                                      revocation: revocation ? true : nil)
        if let seed = signingSeed {
            guard let signer = Ed25519.keyPair(seed: seed) else { throw PublishFailure.notCurrentKey("bad signing key") }
            let (_, history) = try AnswerVerifier.verifyLookup(try await client.keys(identity: identity), logKey: logKey, identity: identity)
            guard let current = history.last else { throw PublishFailure.notCurrentKey("\(identity) has no key yet; the first key needs the operator token") }
            guard current.entry.keyType == .ed25519, current.entry.publicKey == signer.publicKey, !current.entry.revocation else {
                throw PublishFailure.notCurrentKey("the signing key is not \(identity)'s current key (entry \(current.index))")
            }
            let message = KeyEntry.rotationMessage(identity: identity, keyType: keyType, publicKey: publicKey, revocation: revocation, previousIndex: current.index)
            body.signature = Base64.encode(Ed25519.sign(message: message, seed: seed))
            body.previous_index = current.index
        }
        let answer = try await client.publish(body, token: token)
        return try AnswerVerifier.verifyPublish(answer, logKey: logKey, identity: identity, keyType: keyType, publicKey: publicKey)
    }
}
