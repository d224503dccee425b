import KeyglassCore
import KeyglassWire

/// GET /v2/lookup's answer written straight into bytes, in the shape (and key order) of
/// `DirectoryLookupJSON` encoded with sorted keys: the most frequent request of a directory, and
/// Codable's per-field machinery cost about as much as the proofs behind it. `WireEncodingTests`
/// checks the bytes equal the Codable encoding.
enum DirectoryLookupWriter {
    static func json(_ a: DirectoryLookup.Answer) -> JSONObjectWriter {
        var json = JSONObjectWriter(capacity: 4096)  // a lookup answer is ~3.5 KB
        json.field("checkpoint", string: a.checkpoint)
        json.field("config_entry", base64: a.configEntry)
        json.field("config_proof", base64: a.configProof)
        json.field("head_entry", base64: a.headEntry)
        json.field("head_proof", base64: a.headProof)
        var proof = JSONObjectWriter()
        switch a.mapProof.terminal {
        case .member(let value):
            proof.field("siblings", base64: a.mapProof.siblings)
            proof.field("terminal", string: "member")
            proof.field("value", base64: value)
        case .empty:
            proof.field("siblings", base64: a.mapProof.siblings)
            proof.field("terminal", string: "empty")
        case .otherLeaf(let label, let value):
            proof.field("label", base64: label)
            proof.field("siblings", base64: a.mapProof.siblings)
            proof.field("terminal", string: "other_leaf")
            proof.field("value", base64: value)
        }
        json.field("map_proof", object: proof)
        if let s = a.state {
            var state = JSONObjectWriter()
            state.field("devices", objects: s.devices.map { d in
                var o = JSONObjectWriter()
                if !d.encryptionKeys.isEmpty {
                    o.field("encryption_keys", objects: d.encryptionKeys.map { k in
                        var e = JSONObjectWriter()
                        e.field("key", base64: k.key)
                        e.field("type", string: k.type.rawValue)
                        return e
                    })
                }
                o.field("id", base64: d.id)
                o.field("signing_key", base64: d.signingKey)
                return o
            })
            state.field("history", objects: s.history.map { h in
                var o = JSONObjectWriter()
                o.field("index", number: h.index)
                o.field("leaf_hash", base64: h.leafHash)
                return o
            })
            state.field("newest_entry", base64: s.newestEntry)
            state.field("newest_sealed", base64: s.newestSealed)
            state.field("tombstoned", strings: s.tombstoned.map { Base64.encode($0) })
            json.field("state", object: state)
        }
        json.field("vrf_proof", base64: a.vrfProof)
        return json
    }
}
