import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassWire

/// The wire types are `KeyglassWire`'s, shared with clients; this builds the entry answer from
/// what the store holds.
extension EntryAnswer {
    /// The decoded fields are read from the stored bytes; an entry stored before a rule it breaks
    /// was added (e.g. the identity profile) is served as it is stored, with `malformed` saying why
    /// instead: the tree holds its bytes, and an auditor must be able to fetch them.
    init(_ stored: StoredEntry, proof: [Hash]? = nil) {
        let entry = Base64.encode(stored.data)
        let proofText = proof?.map(\.base64)
        do {
            // `.form`: each key was checked in full when it was published; the full point check
            // here would cost a scalar multiplication per entry of every lookup. Clients check
            // the keys they use in full (`AnswerVerifier`).
            let e = try KeyEntry.parse(stored.data, keys: .form)
            self.init(index: stored.index, entry: entry, leaf_hash: stored.leafHash.base64, identity: e.identity,
                      key_type: e.keyType.rawValue, public_key: Base64.encode(e.publicKey), timestamp_ms: e.timestampMillis,
                      previous_index: e.previousIndex, chained: e.isChained, revocation: e.revocation, malformed: nil,
                      inclusion_proof: proofText)
        } catch {
            self.init(index: stored.index, entry: entry, leaf_hash: stored.leafHash.base64, identity: nil, key_type: nil,
                      public_key: nil, timestamp_ms: nil, previous_index: nil, chained: nil, revocation: nil,
                      malformed: error.description, inclusion_proof: proofText)
        }
    }
}

extension JSONObjectWriter {
    /// The JSON of `EntryAnswer(stored, proof:)`, byte for byte what its Codable encoding with
    /// `JSONEncoder.api` gives (sorted keys, absent optionals left out), written without Codable:
    /// lookups answer many entries each, and Codable cost more than the reads behind them
    /// (measured: half of a lookup's time). `WireEncodingTests` compares the two.
    static func entryAnswer(_ stored: StoredEntry, proof: [Hash]?) -> JSONObjectWriter {
        var json = JSONObjectWriter()
        let parsed: Result<KeyEntry, KeyEntry.EntryError>
        do { parsed = .success(try KeyEntry.parse(stored.data, keys: .form)) } catch { parsed = .failure(error) }
        let e = try? parsed.get()
        if let e { json.field("chained", bool: e.isChained) }
        json.field("entry", base64: stored.data)
        if let e { json.field("identity", string: e.identity) }
        if let proof { json.field("inclusion_proof", base64: proof) }
        json.field("index", number: stored.index)
        if let e { json.field("key_type", string: e.keyType.rawValue) }
        json.field("leaf_hash", base64: stored.leafHash)
        if case .failure(let why) = parsed { json.field("malformed", string: why.description) }
        if let p = e?.previousIndex { json.field("previous_index", number: p) }
        if let e {
            json.field("public_key", base64: e.publicKey)
            json.field("revocation", bool: e.revocation)
            json.field("timestamp_ms", number: e.timestampMillis)
        }
        return json
    }
}
