import KeyglassCore
import Synchronization

/// A key directory's labels and VRF proofs (issue 14 point 7; Spec/directory.md "Labels"): one
/// place that knows where an identity's label comes from, for the log and the server alike.
///
/// - A change needs only the label: the VRF output, computed without a proof
///   (`ECVRF.output`, under half a proof's cost: new identities are bounded by it).
/// - A lookup needs the proof too. It is made the first time one is asked for, remembered, and
///   stored in the identity's `vrf_labels` row by the writer (`storeMadeProofs`), so each
///   identity's proof is computed once ("lazily at first lookup", as the issue allows).
/// - The row is written with the identity's first change, named by `storedIdentity` (a keyed hash,
///   so a copy of the database does not list who has keys). Its proof is empty until a lookup
///   made one.
public final class DirectoryLabels: Sendable {
    /// The VRF key, derived once from the seed.
    private let key: ECVRF.SecretKey
    private let storedIdentityKey: [UInt8]
    private let storage: any LogStorage
    private let remembered = Mutex<[String: Remembered]>([:])
    /// Proofs made since the writer last stored them, by stored identity: the label each proves,
    /// and the proof. At most `maxUnstoredProofs`; one dropped is made again by a later lookup.
    private let madeProofs = Mutex<[String: (label: Hash, proof: [UInt8])]>([:])
    static let maxUnstoredProofs = 4096

    private struct Remembered {
        let label: Hash
        var proof: [UInt8]?
    }

    /// Most identities remembered: anyone with a credential can ask for any identity, and each
    /// costs ~200 bytes; past this the memory starts again (a label is ~0.1 ms to recompute).
    public static let maxRemembered = 1 << 16

    public init(vrfSeed: [UInt8], storage: any LogStorage) throws {
        key = try ECVRF.SecretKey(seed: vrfSeed)
        storedIdentityKey = Self.storedIdentityKey(vrfSeed: vrfSeed)
        self.storage = storage
    }

    /// The label of `identity` (canonical) under `key`: the first 32 bytes of its VRF output.
    public static func computeLabel(of identity: String, key: ECVRF.SecretKey) throws -> Hash {
        label(ofOutput: try ECVRF.output(key: key, alpha: Array(identity.utf8)))
    }

    /// A label: the first 32 bytes of a VRF output β.
    private static func label(ofOutput beta: [UInt8]) -> Hash {
        Hash(bytes: beta.prefix(32))!
    }

    /// The label, always computed: for routes anyone may call, where reading a stored one for
    /// identities that have one would time who does.
    public func computeLabel(of identity: String) throws -> Hash {
        try Self.computeLabel(of: identity, key: key)
    }

    /// The label: remembered, or stored with the identity's first change, or computed.
    public func label(of identity: String) throws -> Hash {
        if let known = remembered.withLock({ $0[identity] }) { return known.label }
        let label = try storage.vrfLabel(of: storedIdentity(identity))?.label ?? computeLabel(of: identity)
        remember(identity, Remembered(label: label, proof: nil))
        return label
    }

    /// The label and its VRF proof, for a lookup. A proof not remembered or stored is made now and
    /// queued for `storeMadeProofs`, which fills it into the identity's row if it has one by then
    /// (one with no change yet has none). A stored proof is used only if it proves the stored
    /// label (its β's first 32 bytes, without the full verification); otherwise it is made again
    /// and replaced, so a damaged row costs a proof, not the identity's lookups.
    public func labelAndProof(of identity: String) throws -> (label: Hash, proof: [UInt8]) {
        if let known = remembered.withLock({ $0[identity] }), let proof = known.proof { return (known.label, proof) }
        let name = storedIdentity(identity)
        let stored = try storage.vrfLabel(of: name)
        if let stored, !stored.proof.isEmpty, (try? Self.label(ofProof: stored.proof)) == stored.label {
            remember(identity, Remembered(label: stored.label, proof: stored.proof))
            return (stored.label, stored.proof)
        }
        let proof = try ECVRF.prove(key: key, alpha: Array(identity.utf8))
        let label = try Self.label(ofProof: proof)
        if let stored, stored.label != label {
            throw StoreError.corrupt("the stored label of an identity is not its VRF output under this key")
        }
        remember(identity, Remembered(label: label, proof: proof))
        madeProofs.withLock { made in
            if made.count < Self.maxUnstoredProofs || made[name] != nil { made[name] = (label, proof) }
        }
        return (label, proof)
    }

    /// The first 32 bytes of a proof's β (for a proof this log made: not verified).
    private static func label(ofProof proof: [UInt8]) throws -> Hash {
        label(ofOutput: try ECVRF.proofToHash(proof))
    }

    /// The proof of `identity` if one is remembered for `label` (so a first change stores it with
    /// the label).
    public func rememberedProof(of identity: String, label: Hash) -> [UInt8]? {
        remembered.withLock { all in all[identity].flatMap { $0.label == label ? $0.proof : nil } }
    }

    /// Writes the proofs lookups made into their identities' rows. The writer calls it, so
    /// lookups never wait on the database's write lock; a proof that fails to store is made again
    /// after a restart.
    public func storeMadeProofs() throws {
        let proofs = madeProofs.withLock { made in
            defer { made.removeAll() }
            return made.map { (identity: $0.key, label: $0.value.label, proof: $0.value.proof) }
        }
        if !proofs.isEmpty { try storage.storeVRFProofs(proofs) }
    }

    /// How `vrf_labels` names an identity: HMAC-SHA256 under a key derived from the VRF seed, hex.
    /// A copy of the database (a backup) then does not list who has keys: linking a guessed
    /// identity to its row needs the VRF key, or an ECVRF verification per guess and row.
    public func storedIdentity(_ identity: String) -> String {
        HMACSHA256.mac(key: storedIdentityKey, Array(identity.utf8)).hex
    }

    /// `storedIdentity` for a caller holding only the seed (erasure).
    public static func storedIdentity(_ identity: String, vrfSeed: [UInt8]) -> String {
        HMACSHA256.mac(key: storedIdentityKey(vrfSeed: vrfSeed), Array(identity.utf8)).hex
    }

    private static func storedIdentityKey(vrfSeed: [UInt8]) -> [UInt8] {
        Hash.sha256(Array("keyglass-stored-identity-v1".utf8) + vrfSeed).bytes
    }

    private func remember(_ identity: String, _ value: Remembered) {
        remembered.withLock { all in
            if all.count >= Self.maxRemembered { all.removeAll(keepingCapacity: true) }
            all[identity] = value
        }
    }
}
