/// The one rule that judges every change to a device set (Spec/directory.md), for the server (which
/// accepts only `first`, `chained`, `accountReset` and `operatorRevoke`), the sequencer, lookups,
/// owner monitors and auditors (which alert on everything else, and on `accountReset` and
/// `operatorRevoke` for watched identities).
public enum DeviceRule {
    /// What a change is.
    public enum Verdict: Equatable, Sendable {
        /// The first device of a label never changed, added by the operator.
        case first
        /// Signed by an active device of the label: a notice to its owner.
        case chained
        /// The operator replaced every device (account recovery): visible to contacts, an alert for watchers.
        case accountReset
        /// The operator revoked a device: an alert for watchers.
        case operatorRevoke
        /// A device the owner did not add: an operator add to a set that was ever changed.
        case ghostDevice
        /// A key the owner did not make: an operator rotation, or any re-use of a tombstoned id.
        case injectedKey
        /// Impossible in any honest history (an unknown device, a bad signature, …): the devices and
        /// tombstones stay as they were.
        case invalid(String)

        /// Whether the honest server accepts a change with this verdict.
        public var isAcceptedByServer: Bool {
            switch self {
            case .first, .chained, .accountReset, .operatorRevoke: return true
            case .ghostDevice, .injectedKey, .invalid: return false
            }
        }
    }

    /// The most active devices a set holds: what every lookup of the label carries is bounded.
    public static let maxActiveDevices = 1000
    /// The most device ids a label ever uses (active and tombstoned): what a state, its map value
    /// and a lookup carry is bounded, and so is the cost of replaying a label's changes.
    public static let maxDeviceIDs = 10_000
    /// The most changes a label has (its version): a daily rotation for a century stays below it.
    public static let maxVersion: UInt64 = 100_000

    /// Judges `change` to the label `label` of the log `origin`, whose state before it is `set`.
    public static func judge(_ change: DeviceChange, to set: DeviceSet, origin: String, label: Hash) -> Verdict {
        // The change message carries the origin behind a one-byte length.
        guard (1...255).contains(origin.utf8.count) else { return .invalid("the log's origin is not 1 to 255 bytes") }
        guard set.version < maxVersion else { return .invalid("a label has at most \(maxVersion) changes") }
        if case .chained(let signer, _) = change.authority {
            guard set.newestIndex != nil, set.device(signer) != nil else {
                return .invalid("the signer is not an active device of this identity")
            }
            guard isSignedByActiveDevice(change, in: set, origin: origin, label: label) else {
                return .invalid("the signature does not verify under the signer's key for this change at this position")
            }
        }
        let chained: Bool
        if case .chained = change.authority { chained = true } else { chained = false }
        switch change.kind {
        case .add(let r), .rotate(let r), .reset(let r):
            // A rotation of an id that is not active (an attack on a tombstoned id) adds a device too.
            let isActive = set.device(r.id) != nil
            let after = change.kind.code == 0x04 ? 1 : set.active.count + (isActive ? 0 : 1)
            guard after <= maxActiveDevices else { return .invalid("a set holds at most \(maxActiveDevices) active devices") }
            let fresh = !isActive && !set.isTombstoned(r.id)
            // Distinct ids: one an attack made both active and tombstoned counts once.
            let used = set.tombstoned.count + set.active.filter { !set.isTombstoned($0.id) }.count
            guard !fresh || used < maxDeviceIDs else {
                return .invalid("a label uses at most \(maxDeviceIDs) device ids")
            }
        case .revoke:
            break
        }
        switch change.kind {
        case .add(let r):
            // Tombstoned first: an id an attack made active again is still a tombstoned one.
            if set.isTombstoned(r.id) { return .injectedKey }
            if set.device(r.id) != nil { return .invalid("device \(Hex.encode(r.id)) is already active") }
            if chained { return .chained }
            return set.newestIndex == nil ? .first : .ghostDevice
        case .rotate(let r):
            if set.isTombstoned(r.id) { return .injectedKey }
            guard let current = set.device(r.id) else { return .invalid("device \(Hex.encode(r.id)) is not in the set") }
            if current == r { return .invalid("the rotation changes nothing") }
            return chained ? .chained : .injectedKey
        case .revoke(let id):
            guard set.device(id) != nil else { return .invalid("device \(Hex.encode(id)) is not active") }
            return chained ? .chained : .operatorRevoke
        case .reset(let r):
            if set.device(r.id) != nil || set.isTombstoned(r.id) { return .injectedKey }
            return chained ? .chained : .accountReset
        }
    }

    /// Check 1 alone: `change` is chained and signed by a device active in `set`, with its current
    /// key, over the change message at `set`'s position. A server tells whoever sent a change that
    /// passes it why the rule refused it (the sender holds an active device's key); otherwise not.
    public static func isSignedByActiveDevice(_ change: DeviceChange, in set: DeviceSet, origin: String, label: Hash) -> Bool {
        guard case .chained(let signer, let signature) = change.authority, (1...255).contains(origin.utf8.count),
            let newest = set.newestIndex, let device = set.device(signer)
        else { return false }
        let m = DeviceChange.message(origin: origin, label: label, signer: signer, previousIndex: newest, kind: change.kind)
        return Ed25519.verify(signature: signature, message: m, publicKey: device.signingKey)
    }

    /// Judges the change made by the entry at `index` (leaf hash `leafHash`, at the label's next
    /// version) and applies it: the public part moves on whatever the verdict (the entry is in the
    /// log for anyone to see); the devices and tombstones change unless it is invalid. Attacks are
    /// applied too, since that is what the log now serves and what a derivation must follow.
    @discardableResult
    public static func apply(_ change: DeviceChange, to set: inout DeviceSet, origin: String, label: Hash, index: UInt64, leafHash: Hash) -> Verdict {
        let verdict = judge(change, to: set, origin: origin, label: label)
        if case .invalid = verdict {} else { set.apply(change.kind) }
        set.advance(index: index, leafHash: leafHash)
        return verdict
    }
}
