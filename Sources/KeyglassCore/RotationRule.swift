/// The one rule for who may append an entry to an identity's chain. The server applies it before
/// it queues a publish; `keyglass lookup` applies it to every entry it shows, and the auditor to
/// every entry of a watched identity (to every entry with `--check-unwatched-rotations`), so a log
/// that accepts what its own rule refuses is caught by the first reader that looks.
///
/// An entry is exactly one of:
/// - **first**: no previous index, and the identity has no entry yet;
/// - **operator**: names the identity's newest entry as previous, carries no signature (the
///   provider authorised it: its token, not the owner's key);
/// - **chained**: names the identity's newest entry as previous and carries a signature by that
///   entry's key over `KeyEntry.rotationMessage` (the owner authorised it). The signing key must be
///   Ed25519 and not revoked.
public enum RotationRule {
    /// The entry a new one names as its previous: the identity's newest entry, as far as the caller
    /// knows. A caller that holds only the entry a chained one names (not the whole history) passes
    /// that entry; whether it is really the newest is then beyond what the caller can check.
    public struct Previous: Sendable, Equatable {
        /// 0-based position of the previous entry in the log.
        public let index: UInt64
        /// The identity the previous entry belongs to.
        public let identity: String
        /// Its key's type; only Ed25519 can sign a rotation.
        public let keyType: KeyType
        /// Its key, which must have made a chained entry's signature.
        public let publicKey: [UInt8]
        /// True if that entry revoked its key, which then signs nothing.
        public let revoked: Bool

        /// From the fields a caller keeps (an index row, say) without the whole entry.
        public init(index: UInt64, identity: String, keyType: KeyType, publicKey: [UInt8], revoked: Bool) {
            self.index = index
            self.identity = identity
            self.keyType = keyType
            self.publicKey = publicKey
            self.revoked = revoked
        }

        /// From the entry at `index`.
        public init(index: UInt64, entry: KeyEntry) {
            self.init(index: index, identity: entry.identity, keyType: entry.keyType, publicKey: entry.publicKey, revoked: entry.revocation)
        }
    }

    /// Who allowed an entry the rule accepts.
    public enum Authorisation: String, Sendable, Equatable {
        /// The identity's first entry.
        case first
        /// The provider, with its operator token; the owner's key did not sign.
        case `operator`
        /// The owner, with the key of the identity's previous entry.
        case chained
    }

    /// Why the rule refuses an entry. Indexes are 0-based log positions.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// The entry claims to be the identity's first, but the identity has entry `existing`.
        case notFirst(existing: UInt64)
        /// The entry names a previous entry, but the identity has none.
        case noPreviousEntry(named: UInt64)
        /// The entry names `named`, but the identity's newest entry is `newest`.
        case previousNotNewest(named: UInt64, newest: UInt64)
        /// The named previous entry belongs to another identity.
        case previousOfAnotherIdentity(named: UInt64, owner: String)
        /// The named previous entry is not before the entry itself.
        case previousNotBefore(named: UInt64)
        /// The previous key cannot sign (x25519, p256).
        case signerCannotSign(index: UInt64, KeyType)
        /// The previous entry revoked its key; a revoked key signs nothing.
        case signerRevoked(index: UInt64)
        /// The signature does not verify under the previous entry's key.
        case badSignature(previous: UInt64)

        /// Completes a sentence about the entry: "entry 7 for alice@example.com names previous entry 3, …".
        public var description: String {
            switch self {
            case .notFirst(let e): return "claims to be the identity's first entry, but entry \(e) came before"
            case .noPreviousEntry(let p): return "names previous entry \(p), but the identity has no earlier entry"
            case .previousNotNewest(let p, let n): return "names previous entry \(p), but the identity's newest entry is \(n)"
            case .previousOfAnotherIdentity(let p, let owner): return "names previous entry \(p), which belongs to \(owner)"
            case .previousNotBefore(let p): return "names previous entry \(p), which is not before it"
            case .signerCannotSign(let i, let t): return "is signed by the key of entry \(i), a \(t.rawValue) key, which cannot sign"
            case .signerRevoked(let i): return "is signed by the key of entry \(i), which was revoked"
            case .badSignature(let p): return "carries a signature that does not verify under the key of entry \(p)"
            }
        }
    }

    /// Judges `entry` (at `index`, if it is in a log already) against the identity's newest entry.
    public static func authorise(_ entry: KeyEntry, at index: UInt64? = nil, previous: Previous?) throws(Refusal) -> Authorisation {
        guard let named = entry.previousIndex else {
            if let previous { throw .notFirst(existing: previous.index) }
            return .first
        }
        if let index, named >= index { throw .previousNotBefore(named: named) }
        guard let previous else { throw .noPreviousEntry(named: named) }
        guard previous.identity == entry.identity else { throw .previousOfAnotherIdentity(named: named, owner: previous.identity) }
        guard previous.index == named else { throw .previousNotNewest(named: named, newest: previous.index) }
        guard let signature = entry.signature else { return .operator }
        guard previous.keyType.canSignRotation else { throw .signerCannotSign(index: named, previous.keyType) }
        guard !previous.revoked else { throw .signerRevoked(index: named) }
        guard let message = entry.rotationMessage,
            Ed25519.verify(signature: signature, message: message, publicKey: previous.publicKey)
        else {
            throw .badSignature(previous: named)
        }
        return .chained
    }
}
