import Foundation
import KeyglassCore
import KeyglassLog

/// JSON shapes of the /v1 API (Spec/openapi.yaml). Binary values are standard base64. The publish
/// and inclusion-proof answers, the hot paths, are written by `JSONObjectWriter` instead.
struct EntryJSON: Encodable {
    let index: UInt64
    let entry: String
    let leaf_hash: String
    /// The fields below are read from `entry`; an entry stored before a rule it breaks was added
    /// (e.g. the identity profile) is served as it is stored, with `malformed` saying why instead:
    /// the tree holds its bytes, and an auditor must be able to fetch them.
    let identity: String?
    let key_type: String?
    let public_key: String?
    let timestamp_ms: UInt64?
    let previous_index: UInt64?
    let chained: Bool?
    let revocation: Bool?
    let malformed: String?
    var inclusion_proof: [String]?

    init(_ stored: StoredEntry, proof: [Hash]? = nil) {
        index = stored.index
        entry = Base64.encode(stored.data)
        leaf_hash = stored.leafHash.base64
        inclusion_proof = proof?.map(\.base64)
        do {
            let e = try KeyEntry.parse(stored.data)
            identity = e.identity
            key_type = e.keyType.rawValue
            public_key = Base64.encode(e.publicKey)
            timestamp_ms = e.timestampMillis
            previous_index = e.previousIndex
            chained = e.isChained
            revocation = e.revocation
            malformed = nil
        } catch {
            (identity, key_type, public_key, timestamp_ms, previous_index, chained, revocation) = (nil, nil, nil, nil, nil, nil, nil)
            malformed = error.description
        }
    }
}

struct KeysResponse: Encodable {
    let identity: String
    let tree_size: UInt64
    let checkpoint: String
    let entries: [EntryJSON]
    /// Older entries of the identity exist: page with ?before=<oldest index>&tree_size=<tree_size>.
    let truncated: Bool
}

struct ConsistencyResponse: Encodable {
    let from: UInt64
    let to: UInt64
    let proof: [String]
}

struct EntriesResponse: Encodable {
    let start: UInt64
    let end: UInt64
    let entries: [EntryJSON]
}

struct LogInfoResponse: Encodable {
    let origin: String
    let verifier_key: String
    let tree_size: UInt64
    let root_hash: String
    let checkpoint: String
}

struct HealthResponse: Encodable {
    let status: String
    let tree_size: UInt64
}
