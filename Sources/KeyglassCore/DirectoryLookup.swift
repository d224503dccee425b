/// Verifying a v2 lookup answer (Spec/directory.md, "Lookups"): which devices an identity has, and
/// that they are all of them, as of a map head the log signed.
///
/// What it proves, step by step: the checkpoint is the log's; leaf 0 is its config (origin, VRF
/// key) and the last leaf a map head, both in the checkpoint's tree; the identity's label is the
/// VRF output under leaf 0's key; the map head's root holds that label with the value of the
/// history's version, newest index and chain (or proves it absent); the newest change's sealed part
/// opens its entry's commitment and commits to the devices shown; the history extends the one this
/// client saw before. What it cannot prove is that the map is the right one for the
/// log's changes: auditors re-derive every head (`DirectoryReplay`), and an owner's monitor checks
/// every change was theirs.
public enum DirectoryLookup {
    /// An answer as received (decoded from the wire).
    public struct Answer: Sendable {
        /// The log's signed checkpoint; its last leaf is the map head.
        public var checkpoint: String
        /// Leaf 0 and its inclusion proof in the checkpoint's tree.
        public var configEntry: [UInt8]
        /// The inclusion proof of leaf 0.
        public var configProof: [Hash]
        /// The last leaf (the map head) and its inclusion proof.
        public var headEntry: [UInt8]
        /// The inclusion proof of the last leaf.
        public var headProof: [Hash]
        /// The identity's ECVRF proof under the log's VRF key.
        public var vrfProof: [UInt8]
        /// The map proof for the identity's label.
        public var mapProof: MapTree.Proof
        /// The label's state, when the map holds the label.
        public var state: State?

        /// A label's state as an answer shows it: what its map value is computed from, and the
        /// newest change opened, whose commitment binds the devices shown.
        public struct State: Sendable {
            /// The active devices, by id.
            public var devices: [DeviceRecord]
            /// The tombstoned ids, ascending.
            public var tombstoned: [[UInt8]]
            /// Every change entry of the label: its log index and leaf hash, oldest first.
            public var history: [(index: UInt64, leafHash: Hash)]
            /// The newest change's entry (the history's last).
            public var newestEntry: [UInt8]
            /// Its sealed change (`SealedChange`), which opens the entry's commitment.
            public var newestSealed: [UInt8]

            /// A state as received.
            public init(
                devices: [DeviceRecord], tombstoned: [[UInt8]], history: [(index: UInt64, leafHash: Hash)], newestEntry: [UInt8],
                newestSealed: [UInt8]
            ) {
                self.devices = devices
                self.tombstoned = tombstoned
                self.history = history
                self.newestEntry = newestEntry
                self.newestSealed = newestSealed
            }
        }

        /// An answer as received.
        public init(
            checkpoint: String, configEntry: [UInt8], configProof: [Hash], headEntry: [UInt8], headProof: [Hash],
            vrfProof: [UInt8], mapProof: MapTree.Proof, state: State?
        ) {
            self.checkpoint = checkpoint
            self.configEntry = configEntry
            self.configProof = configProof
            self.headEntry = headEntry
            self.headProof = headProof
            self.vrfProof = vrfProof
            self.mapProof = mapProof
            self.state = state
        }
    }

    /// What this client saw of the log and the identity before (kept in its state).
    public struct Previous: Sendable, Equatable {
        /// The newest map head's epoch it verified, for this log.
        public var epoch: UInt64
        /// The identity's version and chain it verified, if it saw the identity present.
        public var version: UInt64?
        /// The chain after `version` changes.
        public var chain: Hash?

        /// A previous view.
        public init(epoch: UInt64, version: UInt64? = nil, chain: Hash? = nil) {
            self.epoch = epoch
            self.version = version
            self.chain = chain
        }
    }

    /// What the answer proves.
    public struct Result: Sendable, Equatable {
        /// The checkpoint the proofs are against.
        public let checkpoint: Checkpoint
        /// The identity's label.
        public let label: Hash
        /// The map head: its epoch, the entries it covers and its time.
        public let epoch: UInt64
        /// The map holds every change of entries [0, coveredSize).
        public let coveredSize: UInt64
        /// When the log made the map head, ms since the Unix epoch.
        public let timestampMillis: UInt64
        /// The devices, all of them, as of the map head.
        public let devices: [DeviceRecord]
        /// The label's version (0: never published) and chain.
        public let version: UInt64
        /// The chain over the label's changes.
        public let chain: Hash
        /// The value the map proved for the label (nil: absent).
        public var mapValue: Hash? = nil

        /// Never published: the map proves the label absent.
        public var neverPublished: Bool { version == 0 }
    }

    /// Why an answer proves nothing (a lookup that fails any check exits 2).
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case checkpoint(String)
        case config(String)
        case head(String)
        case vrf
        case map(String)
        case state(String)
        case rewritten(String)
        case stale(String)

        /// The reason in words.
        public var description: String {
            switch self {
            case .checkpoint(let w): return "checkpoint: \(w)"
            case .config(let w): return "leaf 0: \(w)"
            case .head(let w): return "map head: \(w)"
            case .vrf: return "the VRF proof does not verify for this identity under the log's VRF key"
            case .map(let w): return "map proof: \(w)"
            case .state(let w): return "state: \(w)"
            case .rewritten(let w): return "history rewritten: \(w)"
            case .stale(let w): return "stale answer: \(w)"
            }
        }
    }

    /// Verifies `answer` for `identity` (canonical: `Identity.normalize` it first) against the log's
    /// key; `vrfKey`, if this client pinned one, must be leaf 0's; `previous` is what it saw before.
    public static func verify(
        _ answer: Answer, identity: String, logKey: NoteVerifierKey, vrfKey pinned: [UInt8]? = nil,
        previous: Previous? = nil
    ) throws(Failure) -> Result {
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(answer.checkpoint, logKey: logKey).0.checkpoint } catch { throw .checkpoint(error.description) }
        let size = checkpoint.size
        guard size >= 2 else { throw .checkpoint("a tree of \(size) entries holds no map head") }

        // Leaf 0: the config.
        do {
            try ProofVerifier.verifyInclusion(
                index: 0, size: size, leafHash: Merkle.leafHash(answer.configEntry), proof: answer.configProof, root: checkpoint.root)
        } catch { throw .config("not in the checkpoint's tree: \(error)") }
        guard case .config(let origin, let vrfKey) = try? DirectoryEntry.parse(answer.configEntry) else { throw .config("not a config entry") }
        // Bytes, not Swift's string equality (which equates canonically equivalent spellings).
        guard Array(origin.utf8) == Array(checkpoint.origin.utf8) else {
            throw .config("names origin \"\(origin)\", the checkpoint \"\(checkpoint.origin)\"")
        }
        if let pinned, pinned != vrfKey { throw .config("its VRF key is not the one this client pinned for the log") }

        // The last leaf: the map head.
        do {
            try ProofVerifier.verifyInclusion(
                index: size - 1, size: size, leafHash: Merkle.leafHash(answer.headEntry), proof: answer.headProof, root: checkpoint.root)
        } catch { throw .head("not the last leaf of the checkpoint's tree: \(error)") }
        guard case .mapHead(let time, let epoch, let covered, let root) = try? DirectoryEntry.parse(answer.headEntry) else {
            throw .head("the last leaf is not a map head")
        }
        guard covered < size else { throw .head("covers \(covered) entries of a tree of \(size)") }
        if let previous, epoch < previous.epoch { throw .stale("map head of epoch \(epoch); this client has verified epoch \(previous.epoch)") }

        // The label, and what the map says of it.
        guard let beta = ECVRF.verify(publicKey: vrfKey, alpha: Array(identity.utf8), proof: answer.vrfProof) else { throw .vrf }
        let label = Hash(bytes: Array(beta.prefix(32)))!
        let value: Hash?
        do { value = try MapTree.verify(answer.mapProof, label: label, root: root) } catch { throw .map("\(error)") }

        guard let value else {
            guard answer.state == nil else { throw .state("a state is shown for a label the map proves absent") }
            if let v = previous?.version, v > 0 { throw .rewritten("this client saw the identity at version \(v); the map now proves it absent") }
            return Result(
                checkpoint: checkpoint, label: label, epoch: epoch, coveredSize: covered, timestampMillis: time, devices: [],
                version: 0, chain: .zero)
        }
        guard let state = answer.state else { throw .state("the map holds the label but the answer shows no state") }

        // The state must be the one the map commits to, in the map's order.
        guard let newest = state.history.last else { throw .state("a label in the map has at least one change") }
        guard zip(state.history, state.history.dropFirst()).allSatisfy({ $0.index < $1.index }), newest.index < covered else {
            throw .state("the history's indices must increase and lie before the covered size")
        }
        guard zip(state.devices, state.devices.dropFirst()).allSatisfy({ $0.id.lexicographicallyPrecedes($1.id) }),
            zip(state.tombstoned, state.tombstoned.dropFirst()).allSatisfy({ $0.lexicographicallyPrecedes($1) }),
            state.tombstoned.allSatisfy({ $0.count == 16 }),
            state.devices.count <= DeviceRule.maxActiveDevices
        else { throw .state("devices and tombstones must be 16-byte ids in ascending order, at most \(DeviceRule.maxActiveDevices) devices") }
        var chain = Hash.zero
        var chainAtPrevious: Hash?
        for (n, link) in state.history.enumerated() {
            if let v = previous?.version, UInt64(n) == v { chainAtPrevious = chain }
            chain = DeviceSet.extend(chain, index: link.index, leafHash: link.leafHash)
        }
        let version = UInt64(state.history.count)
        if let v = previous?.version, v == version { chainAtPrevious = chain }

        // The newest change, opened: it commits to the devices and tombstones shown.
        guard Merkle.leafHash(state.newestEntry) == newest.leafHash,
            case .change(_, let entryLabel, let entryVersion, let kind, let commitment)? = try? DirectoryEntry.parse(state.newestEntry),
            entryLabel == label, entryVersion == version
        else { throw .state("the newest change shown is not the history's last change entry of this label at its version") }
        guard let sealed = try? SealedChange.parse(state.newestSealed),
            sealed.opens(commitment: commitment, label: label, version: version, kindCode: kind)
        else { throw .state("the sealed change shown does not open the newest entry's commitment") }
        let before = state.history.count >= 2 ? state.history[state.history.count - 2].index : nil
        guard sealed.previousIndex == before else { throw .state("the newest change names another previous index than the history's") }
        guard sealed.setDigest == DeviceSet.setDigest(active: state.devices, tombstoned: state.tombstoned) else {
            throw .state("the devices and tombstones shown are not the set the newest change committed to")
        }
        guard DeviceSet.mapValue(version: version, newestIndex: newest.index, chain: chain) == value else {
            throw .state("the history shown is not what the map commits to")
        }

        if let v = previous?.version, v > 0 {
            guard version >= v else { throw .rewritten("this client saw version \(v); the answer is at version \(version)") }
            guard let seen = previous?.chain, chainAtPrevious == seen else {
                throw .rewritten("the first \(v) changes are not the ones this client saw (their hash chain differs)")
            }
        }
        return Result(
            checkpoint: checkpoint, label: label, epoch: epoch, coveredSize: covered, timestampMillis: time, devices: state.devices,
            version: version, chain: chain, mapValue: value)
    }
}
