/// The HTTP API's JSON bodies (Spec/openapi.yaml), defined once for both sides: the server encodes
/// them and clients decode them. The two hottest answers (publish, inclusion proof) are written by
/// the server's `JSONObjectWriter` in the same shapes, for speed; every client decodes those with
/// the types here, so a shape that drifted would fail every publish and proof test. Field names
/// are the wire's.

/// POST /v1/keys. Decoding refuses unknown fields, so a typo such as "signatur" is an error
/// instead of an unsigned publish; encoding leaves out what is nil.
public struct PublishBody: Codable, Sendable, Equatable {
    public var identity: String
    public var key_type: String
    public var public_key: String
    /// base64 Ed25519 signature over `KeyEntry.rotationMessage`, for a self-signed rotation.
    public var signature: String?
    /// The identity's current entry, which the signature names.
    public var previous_index: UInt64?
    public var revocation: Bool?

    public init(identity: String, key_type: String, public_key: String, signature: String? = nil, previous_index: UInt64? = nil,
                revocation: Bool? = nil) {
        self.identity = identity
        self.key_type = key_type
        self.public_key = public_key
        self.signature = signature
        self.previous_index = previous_index
        self.revocation = revocation
    }

    /// The fields a publish body may have.
    public static let fields: Set<String> = ["identity", "key_type", "public_key", "signature", "previous_index", "revocation"]

    /// Thrown by decoding when the body has fields not in `fields`.
    public struct UnknownFields: Error {
        public let names: [String]
    }

    /// Any member name, so decoding can see the names it does not know.
    public struct AnyKey: CodingKey {
        public let stringValue: String
        public init?(stringValue: String) { self.stringValue = stringValue }
        public var intValue: Int? { nil }
        public init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        let unknown = c.allKeys.map(\.stringValue).filter { !Self.fields.contains($0) }
        guard unknown.isEmpty else { throw UnknownFields(names: unknown.sorted()) }
        func key(_ s: String) -> AnyKey { AnyKey(stringValue: s)! }
        identity = try c.decode(String.self, forKey: key("identity"))
        key_type = try c.decode(String.self, forKey: key("key_type"))
        public_key = try c.decode(String.self, forKey: key("public_key"))
        signature = try c.decodeIfPresent(String.self, forKey: key("signature"))
        previous_index = try c.decodeIfPresent(UInt64.self, forKey: key("previous_index"))
        revocation = try c.decodeIfPresent(Bool.self, forKey: key("revocation"))
    }
}

/// The answer to a publish, once the entry is durable and integrated.
public struct PublishAnswer: Codable, Sendable {
    public let index: UInt64
    public let leaf_hash: String
    /// base64 of the entry as stored.
    public let entry: String
    public let tree_size: UInt64
    /// The signed checkpoint of `tree_size` that commits to the entry.
    public let checkpoint: String
    public let inclusion_proof: [String]
}

/// One entry as served by /v1/entries and /v1/keys. The decoded fields are present when `entry`
/// parses under the log's current rules; an entry stored before a rule it breaks was added is
/// served as stored, with `malformed` saying why (the tree holds its bytes; auditors need them).
public struct EntryAnswer: Codable, Sendable {
    public let index: UInt64
    /// base64 of the entry's bytes: the leaf, as hashed into the tree.
    public let entry: String
    public let leaf_hash: String
    public let identity: String?
    public let key_type: String?
    public let public_key: String?
    public let timestamp_ms: UInt64?
    public let previous_index: UInt64?
    public let chained: Bool?
    public let revocation: Bool?
    public let malformed: String?
    /// Against the checkpoint of the answer it is in (lookups only).
    public var inclusion_proof: [String]?

    public init(index: UInt64, entry: String, leaf_hash: String, identity: String?, key_type: String?, public_key: String?,
                timestamp_ms: UInt64?, previous_index: UInt64?, chained: Bool?, revocation: Bool?, malformed: String?,
                inclusion_proof: [String]?) {
        self.index = index
        self.entry = entry
        self.leaf_hash = leaf_hash
        self.identity = identity
        self.key_type = key_type
        self.public_key = public_key
        self.timestamp_ms = timestamp_ms
        self.previous_index = previous_index
        self.chained = chained
        self.revocation = revocation
        self.malformed = malformed
        self.inclusion_proof = inclusion_proof
    }
}

/// GET /v1/keys/<identity>: the identity's history against one checkpoint.
public struct KeysAnswer: Codable, Sendable {
    public let identity: String
    public let tree_size: UInt64
    /// The signed note, with the witnesses' cosignatures when they are for this checkpoint.
    public let checkpoint: String
    public let entries: [EntryAnswer]
    /// Older entries exist: page with ?before=<oldest index>&tree_size=<tree_size>. (Servers from
    /// before paging leave it out.)
    public let truncated: Bool?

    public init(identity: String, tree_size: UInt64, checkpoint: String, entries: [EntryAnswer], truncated: Bool?) {
        self.identity = identity
        self.tree_size = tree_size
        self.checkpoint = checkpoint
        self.entries = entries
        self.truncated = truncated
    }
}

/// GET /v1/proof/inclusion.
public struct InclusionAnswer: Codable, Sendable {
    public let index: UInt64
    public let tree_size: UInt64
    public let leaf_hash: String
    public let proof: [String]
}

/// GET /v1/proof/consistency.
public struct ConsistencyAnswer: Codable, Sendable {
    public let from: UInt64
    public let to: UInt64
    public let proof: [String]

    public init(from: UInt64, to: UInt64, proof: [String]) {
        self.from = from
        self.to = to
        self.proof = proof
    }
}

/// GET /v1/entries: a page, which may end before the `end` asked for.
public struct EntriesAnswer: Codable, Sendable {
    public let start: UInt64
    public let end: UInt64
    public let entries: [EntryAnswer]

    public init(start: UInt64, end: UInt64, entries: [EntryAnswer]) {
        self.start = start
        self.end = end
        self.entries = entries
    }
}

/// GET /v1/log.
public struct LogInfo: Codable, Sendable {
    public let origin: String
    public let verifier_key: String
    public let tree_size: UInt64
    public let root_hash: String
    public let checkpoint: String

    public init(origin: String, verifier_key: String, tree_size: UInt64, root_hash: String, checkpoint: String) {
        self.origin = origin
        self.verifier_key = verifier_key
        self.tree_size = tree_size
        self.root_hash = root_hash
        self.checkpoint = checkpoint
    }
}

/// GET /healthz.
public struct HealthAnswer: Codable, Sendable {
    public let status: String
    public let tree_size: UInt64

    public init(status: String, tree_size: UInt64) {
        self.status = status
        self.tree_size = tree_size
    }
}
