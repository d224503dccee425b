import KeyglassCore

/// The JSON bodies of a v2 log's API (the key directory, Spec/directory.md "HTTP"), defined once
/// for the server and its clients. Binary values are standard base64; device ids are base64 of
/// their 16 bytes. Conversions to the core's types check everything the core checks, so a client
/// never verifies a value it could not have parsed.

/// One device as the wire carries it.
public struct DeviceJSON: Codable, Sendable, Equatable {
    public var id: String
    public var signing_key: String
    public var encryption_keys: [EncryptionKeyJSON]?

    public struct EncryptionKeyJSON: Codable, Sendable, Equatable {
        public var type: String
        public var key: String
        public init(type: String, key: String) {
            self.type = type
            self.key = key
        }
    }

    public init(_ record: DeviceRecord) {
        id = Base64.encode(record.id)
        signing_key = Base64.encode(record.signingKey)
        encryption_keys = record.encryptionKeys.isEmpty ? nil
            : record.encryptionKeys.map { EncryptionKeyJSON(type: $0.type.rawValue, key: Base64.encode($0.key)) }
    }

    /// The record, every key checked in full.
    public func record() throws -> DeviceRecord {
        guard let id = Base64.decode(id) else { throw WireError.field("device.id is not base64") }
        guard let signing = Base64.decode(signing_key) else { throw WireError.field("device.signing_key is not base64") }
        let keys = try (encryption_keys ?? []).map { k -> DeviceRecord.EncryptionKey in
            guard let type = try? KeyType.parse(k.type) else { throw WireError.field("unknown encryption key type \(k.type)") }
            guard let bytes = Base64.decode(k.key) else { throw WireError.field("an encryption key is not base64") }
            return DeviceRecord.EncryptionKey(type: type, key: bytes)
        }
        do { return try DeviceRecord(id: id, signingKey: signing, encryptionKeys: keys) } catch { throw WireError.field(error.description) }
    }
}

/// Why a wire body is not a value of the core.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case field(String)
    public var description: String {
        switch self {
        case .field(let why): return why
        }
    }
}

/// POST /v2/changes: one change to an identity's device set. Without `signer`/`signature` it is the
/// operator's (the publish token is required); with them, it is chained: signed by the active
/// device `signer` over `DeviceChange.message` with the label's newest applied index.
public struct ChangeBody: Codable, Sendable, Equatable {
    public var identity: String
    /// add, rotate, revoke or reset.
    public var kind: String
    /// The record (add, rotate, reset).
    public var device: DeviceJSON?
    /// The revoked device's id (revoke).
    public var device_id: String?
    /// The signing device's id (chained changes).
    public var signer: String?
    /// Ed25519 signature by the signer's key (chained changes).
    public var signature: String?

    public init(identity: String, kind: String, device: DeviceJSON? = nil, device_id: String? = nil, signer: String? = nil,
                signature: String? = nil) {
        self.identity = identity
        self.kind = kind
        self.device = device
        self.device_id = device_id
        self.signer = signer
        self.signature = signature
    }

    public init(identity: String, change: DeviceChange) {
        self.identity = identity
        switch change.kind {
        case .add(let r): (kind, device) = ("add", DeviceJSON(r))
        case .rotate(let r): (kind, device) = ("rotate", DeviceJSON(r))
        case .reset(let r): (kind, device) = ("reset", DeviceJSON(r))
        case .revoke(let id): (kind, device_id) = ("revoke", Base64.encode(id))
        }
        if case .chained(let s, let sig) = change.authority {
            signer = Base64.encode(s)
            signature = Base64.encode(sig)
        }
    }

    /// The change this body asks for.
    public func change() throws -> DeviceChange {
        let kind: DeviceChange.Kind
        switch self.kind {
        case "add", "rotate", "reset":
            guard let device, device_id == nil else { throw WireError.field("\(self.kind) takes device (and no device_id)") }
            let record = try device.record()
            kind = self.kind == "add" ? .add(record) : self.kind == "rotate" ? .rotate(record) : .reset(record)
        case "revoke":
            guard device == nil, let text = device_id, let id = Base64.decode(text), id.count == 16 else {
                throw WireError.field("revoke takes device_id, base64 of 16 bytes (and no device)")
            }
            kind = .revoke(deviceID: id)
        default:
            throw WireError.field("kind must be add, rotate, revoke or reset")
        }
        switch (signer, signature) {
        case (nil, nil):
            return DeviceChange(kind: kind, authority: .operator)
        case let (s?, sig?):
            guard let id = Base64.decode(s), id.count == 16 else { throw WireError.field("signer must be base64 of a 16-byte device id") }
            guard let bytes = Base64.decode(sig), bytes.count == Ed25519.signatureLength else {
                throw WireError.field("signature must be base64 of a 64-byte Ed25519 signature")
            }
            return DeviceChange(kind: kind, authority: .chained(signer: id, signature: bytes))
        default:
            throw WireError.field("a chained change gives both signer and signature")
        }
    }
}

/// The answer to an accepted change: its log index. A lookup shows it from the next map head on
/// (within one epoch).
public struct ChangeAnswer: Codable, Sendable, Equatable {
    public let index: UInt64
    public let tree_size: UInt64
    public init(index: UInt64, tree_size: UInt64) {
        self.index = index
        self.tree_size = tree_size
    }
}

/// GET /v2/lookup/<identity>: everything `DirectoryLookup.verify` needs.
public struct DirectoryLookupJSON: Codable, Sendable {
    public var checkpoint: String
    public var config_entry: String
    public var config_proof: [String]
    public var head_entry: String
    public var head_proof: [String]
    public var vrf_proof: String
    public var map_proof: MapProofJSON
    public var state: StateJSON?

    public struct MapProofJSON: Codable, Sendable {
        /// member, empty or other_leaf.
        public var terminal: String
        public var value: String?
        public var label: String?
        public var siblings: [String]
    }

    public struct StateJSON: Codable, Sendable {
        public var devices: [DeviceJSON]
        public var tombstoned: [String]
        public var history: [HistoryLink]
        /// The newest change's entry and its sealed change (`SealedChange`), base64.
        public var newest_entry: String
        public var newest_sealed: String
    }

    public struct HistoryLink: Codable, Sendable {
        public var index: UInt64
        public var leaf_hash: String
    }

    public init(_ a: DirectoryLookup.Answer) {
        checkpoint = a.checkpoint
        config_entry = Base64.encode(a.configEntry)
        config_proof = a.configProof.map(\.base64)
        head_entry = Base64.encode(a.headEntry)
        head_proof = a.headProof.map(\.base64)
        vrf_proof = Base64.encode(a.vrfProof)
        switch a.mapProof.terminal {
        case .member(let v): map_proof = MapProofJSON(terminal: "member", value: v.base64, label: nil, siblings: [])
        case .empty: map_proof = MapProofJSON(terminal: "empty", value: nil, label: nil, siblings: [])
        case .otherLeaf(let l, let v): map_proof = MapProofJSON(terminal: "other_leaf", value: v.base64, label: l.base64, siblings: [])
        }
        map_proof.siblings = a.mapProof.siblings.map(\.base64)
        state = a.state.map { s in
            StateJSON(devices: s.devices.map(DeviceJSON.init), tombstoned: s.tombstoned.map { Base64.encode($0) },
                      history: s.history.map { HistoryLink(index: $0.index, leaf_hash: $0.leafHash.base64) },
                      newest_entry: Base64.encode(s.newestEntry), newest_sealed: Base64.encode(s.newestSealed))
        }
    }

    /// The answer as the core verifies it; malformed values are refused here.
    public func answer() throws -> DirectoryLookup.Answer {
        func bytes(_ s: String, _ name: String) throws -> [UInt8] {
            guard let b = Base64.decode(s) else { throw WireError.field("\(name) is not base64") }
            return b
        }
        func hash(_ s: String, _ name: String) throws -> Hash {
            guard let h = Hash(base64: s) else { throw WireError.field("\(name) is not base64 of 32 bytes") }
            return h
        }
        let terminal: MapTree.Terminal
        switch map_proof.terminal {
        case "member": terminal = .member(value: try hash(map_proof.value ?? "", "map_proof.value"))
        case "empty": terminal = .empty
        case "other_leaf":
            terminal = .otherLeaf(label: try hash(map_proof.label ?? "", "map_proof.label"), value: try hash(map_proof.value ?? "", "map_proof.value"))
        default: throw WireError.field("map_proof.terminal must be member, empty or other_leaf")
        }
        guard map_proof.siblings.count <= 256 else { throw WireError.field("a map proof has at most 256 siblings") }
        let state = try self.state.map { s -> DirectoryLookup.Answer.State in
            guard s.devices.count <= DeviceRule.maxActiveDevices, s.tombstoned.count <= DeviceRule.maxDeviceIDs,
                  UInt64(s.history.count) <= DeviceRule.maxVersion else { throw WireError.field("the state is larger than any label's") }
            return DirectoryLookup.Answer.State(
                devices: try s.devices.map { try $0.record() }, tombstoned: try s.tombstoned.map { try bytes($0, "tombstoned") },
                history: try s.history.map { ($0.index, try hash($0.leaf_hash, "history.leaf_hash")) },
                newestEntry: try bytes(s.newest_entry, "newest_entry"), newestSealed: try bytes(s.newest_sealed, "newest_sealed"))
        }
        return DirectoryLookup.Answer(
            checkpoint: checkpoint, configEntry: try bytes(config_entry, "config_entry"),
            configProof: try config_proof.map { try hash($0, "config_proof") }, headEntry: try bytes(head_entry, "head_entry"),
            headProof: try head_proof.map { try hash($0, "head_proof") }, vrfProof: try bytes(vrf_proof, "vrf_proof"),
            mapProof: MapTree.Proof(terminal: terminal, siblings: try map_proof.siblings.map { try hash($0, "map_proof.siblings") }),
            state: state)
    }
}

/// GET /v2/history/<identity>[?before=I&tree_size=N]: a page of the label's change entries (the
/// newest up to 1,000 below `before`), oldest first, each with an inclusion proof against the
/// answer's checkpoint (what an owner's monitor checks). `more`: older entries exist; ask again
/// with `before` = the first index here and `tree_size` = this answer's.
public struct DirectoryHistoryJSON: Codable, Sendable {
    public var checkpoint: String
    public var tree_size: UInt64
    public var entries: [Entry]
    public var more: Bool

    public struct Entry: Codable, Sendable {
        public var index: UInt64
        public var entry: String
        /// The change's sealed change, base64 (absent once erased).
        public var sealed: String?
        public var inclusion_proof: [String]
        public init(index: UInt64, entry: String, sealed: String?, inclusion_proof: [String]) {
            self.index = index
            self.entry = entry
            self.sealed = sealed
            self.inclusion_proof = inclusion_proof
        }
    }

    public init(checkpoint: String, tree_size: UInt64, entries: [Entry], more: Bool) {
        self.checkpoint = checkpoint
        self.tree_size = tree_size
        self.entries = entries
        self.more = more
    }
}

/// GET /v2/log: what a client pins for a directory.
public struct DirectoryLogInfo: Codable, Sendable {
    public let origin: String
    public let verifier_key: String
    public let vrf_public_key: String
    public let tree_size: UInt64
    public init(origin: String, verifier_key: String, vrf_public_key: String, tree_size: UInt64) {
        self.origin = origin
        self.verifier_key = verifier_key
        self.vrf_public_key = vrf_public_key
        self.tree_size = tree_size
    }
}
