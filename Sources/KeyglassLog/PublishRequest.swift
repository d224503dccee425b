import Foundation
import KeyglassCore

/// A validated request to append one key, and who authorised it.
///
/// A chained request can only be made by `chained(…)`, which applies the rotation rule
/// (`RotationRule`) to it against the entry it names: signature, signer's key type and revocation,
/// same identity. What the rule asks last — that the named entry is still the identity's newest —
/// the sequencer checks when it writes the batch, in log order. So the sequencer never writes a
/// chained entry the rule refuses, whoever submits it.
public struct PublishRequest: Sendable {
    public enum Authorization: Sendable, Equatable {
        /// The provider's operator token: the provider vouches for the account. Unchained.
        case operatorToken
        /// The identity's current key signed the entry; `previousIndex` must still be the identity's
        /// latest entry when the batch is sequenced, or the publish conflicts.
        case chained(previousIndex: UInt64, signature: [UInt8])
    }

    public let identity: String
    public let keyType: KeyType
    public let publicKey: [UInt8]
    public let revocation: Bool
    public let authorization: Authorization
    /// How much of the key the sequencer checks when it encodes the entry: `full` unless whoever
    /// made the request checked it in full already (`keyCheckedInFull`), so a publish pays for the
    /// costly point check (~35–70 µs for Ed25519) once, not twice.
    private(set) var keyCheckWhenEncoding: KeyType.Check = .full

    /// A publish the operator authorised (its token).
    public init(identity: String, keyType: KeyType, publicKey: [UInt8], revocation: Bool = false) {
        self.init(identity: identity, keyType: keyType, publicKey: publicKey, revocation: revocation, authorization: .operatorToken)
    }

    /// Any authorisation, unchecked: internal, so only this module (and tests that play an operator
    /// running modified software) can make a chained request without the rule.
    init(identity: String, keyType: KeyType, publicKey: [UInt8], revocation: Bool = false, authorization: Authorization) {
        self.identity = identity
        self.keyType = keyType
        self.publicKey = publicKey
        self.revocation = revocation
        self.authorization = authorization
    }

    /// The same request, marked as carrying a key its maker checked in full (`KeyType.validate`).
    /// Package-internal: only this package's HTTP layer, which has just made that check, may say so.
    package func keyCheckedInFull() -> PublishRequest {
        var copy = self
        copy.keyCheckWhenEncoding = .form
        return copy
    }

    /// A rotation signed by the identity's key, checked with the rotation rule against `previous`,
    /// the entry it names.
    public static func chained(identity: String, keyType: KeyType, publicKey: [UInt8], revocation: Bool = false,
                               previous: RotationRule.Previous, signature: [UInt8]) throws(RotationRule.Refusal) -> PublishRequest {
        let candidate = KeyEntry(timestampMillis: 0, identity: identity, keyType: keyType, publicKey: publicKey, revocation: revocation,
                                 previousIndex: previous.index, signature: signature)
        _ = try RotationRule.authorise(candidate, previous: previous)
        return PublishRequest(identity: identity, keyType: keyType, publicKey: publicKey, revocation: revocation,
                              authorization: .chained(previousIndex: previous.index, signature: signature))
    }
}

/// What a publisher gets back once its entry is durable and integrated.
public struct PublishReceipt: Sendable {
    public let index: UInt64
    public let entry: [UInt8]
    public let leafHash: Hash
    /// The checkpoint of the batch that integrated the entry (it commits to it).
    public let checkpoint: StoredCheckpoint
}

public enum PublishError: Error, Equatable, CustomStringConvertible {
    /// The identity's chain moved on since the signature was made.
    case conflict(String)
    /// The sequencer's queue is full: retry later.
    case overloaded
    /// The server is shutting down and takes no new publishes.
    case shuttingDown
    /// The batch could not be written; nothing of it was stored.
    case storage(String)
    case logFull
    /// The entry cannot be encoded (the HTTP layer checks first, so only a caller that skipped
    /// those checks meets this); the batch's other publishes go on.
    case invalid(String)
    /// The newest entry is stamped more than the allowed skew ahead of this server's clock.
    /// Timestamps never decrease, so every new entry would be stamped that far in the future too.
    case futureTimestamp(newestMillis: UInt64, nowMillis: UInt64, maxSkewMillis: UInt64)
    /// Several servers share the log and another one sequences now (`SequencingLease`): retry, or
    /// publish to the sequencer.
    case notSequencer

    public var description: String {
        switch self {
        case let .conflict(m): return m
        case .overloaded: return "the sequencer queue is full; retry later"
        case .shuttingDown: return "the log is shutting down"
        case let .storage(m): return "the entry could not be stored: \(m)"
        case .logFull: return "the log has reached its maximum size"
        case .notSequencer: return "another server of this log sequences publishes now (this one serves reads); retry shortly"
        case let .invalid(m): return "the entry is not valid: \(m)"
        case let .futureTimestamp(newest, now, skew):
            func date(_ ms: UInt64) -> String { Date(timeIntervalSince1970: Double(ms) / 1000).ISO8601Format() }
            return "the newest entry is stamped \(date(newest)), in the future: more than \(skew / 1000) s ahead of this server's clock "
                + "(\(date(now))); entries are not stamped in the future, so publishes are refused until the operator investigates "
                + "(a forged or altered entry, or a clock that ran fast)"
        }
    }
}
