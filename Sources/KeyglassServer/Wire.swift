import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassWire

/// The wire types are `KeyglassWire`'s, shared with clients. The server writes the entry answers
/// (lookups and entry pages) with `JSONObjectWriter`, not Codable: one way to build them.
extension JSONObjectWriter {
    /// The JSON of an `EntryAnswer` for `stored`, byte for byte what its Codable encoding with
    /// `JSONEncoder.api` gives (sorted keys, absent optionals left out), written without Codable:
    /// lookups answer many entries each, and Codable cost more than the reads behind them
    /// (measured: half of a lookup's time). `WireEncodingTests` compares the two.
    /// The decoded fields are read from the stored bytes, the key checked for its form only (it
    /// was checked in full when published; clients check in full the keys they use); an entry
    /// stored before a rule it breaks was added is served as stored, with `malformed` saying why:
    /// the tree holds its bytes, and an auditor must be able to fetch them.
    static func entryAnswer(_ stored: StoredEntry, proof: [Hash]?) -> JSONObjectWriter {
        // The entry's base64, its proof's hashes and ~300 bytes of the rest.
        var json = JSONObjectWriter(capacity: 384 + stored.data.count * 4 / 3 + 47 * (proof?.count ?? 0))
        // The entry read in place (`KeyEntry.View`), not copied into a `KeyEntry` per answer.
        stored.data.withUnsafeBytes { b in
            let parsed: Result<KeyEntry.View, KeyEntry.EntryError>
            do throws(KeyEntry.EntryError) { parsed = .success(try KeyEntry.View.parse(b, keys: .form)) } catch { parsed = .failure(error) }
            let e = try? parsed.get()
            if let e { json.field("chained", bool: e.signature != nil) }
            json.field("entry", base64: stored.data)
            if let e { json.field("identity", string: e.identity(in: b)) }
            if let proof { json.field("inclusion_proof", base64: proof) }
            json.field("index", number: stored.index)
            if let e { json.field("key_type", string: e.keyType.rawValue) }
            json.field("leaf_hash", base64: stored.leafHash)
            if case .failure(let why) = parsed { json.field("malformed", string: why.description) }
            if let p = e?.previousIndex { json.field("previous_index", number: p) }
            if let e {
                json.field("public_key", base64: UnsafeRawBufferPointer(rebasing: b[e.publicKey]))
                json.field("revocation", bool: e.revocation)
                json.field("timestamp_ms", number: e.timestampMillis)
            }
        }
        return json
    }
}
