/// An entry of a v2 log, the key directory (Spec/directory.md, "Entries of a v2 log"): its config,
/// a change to one label's device set, or a map head. The encoding is canonical; `parse` refuses
/// every other byte string.
public enum DirectoryEntry: Equatable, Sendable {
    /// Leaf 0: the log's origin and the VRF key labels are proved under.
    case config(origin: String, vrfPublicKey: [UInt8])
    /// One change to one label's set, sealed: `version` is the label's version after it, `kind` the
    /// change's kind byte (`DeviceChange.Kind.code`), and everything else is behind `commitment`
    /// (`SealedChange`).
    case change(timestampMillis: UInt64, label: Hash, version: UInt64, kind: UInt8, commitment: Hash)
    /// The map of every change in entries [0, coveredSize), as of `epoch`.
    case mapHead(timestampMillis: UInt64, epoch: UInt64, coveredSize: UInt64, root: Hash)

    /// Why bytes are not a v2 entry.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)

        /// The reason in words.
        public var description: String {
            switch self {
            case .malformed(let why): return "v2 entry: \(why)"
            }
        }
    }

    static let version: UInt8 = 0x02
    static let vrfSuite: UInt8 = ECVRF.suite

    /// The change entry of `sealed` for `label` at `version`.
    public static func sealedChange(_ sealed: SealedChange, timestampMillis: UInt64, label: Hash, version: UInt64) -> DirectoryEntry {
        .change(
            timestampMillis: timestampMillis, label: label, version: version, kind: sealed.change.kind.code,
            commitment: sealed.commitment(label: label, version: version))
    }

    /// The canonical encoding.
    public var encoded: [UInt8] {
        var out: [UInt8] = [Self.version]
        switch self {
        case .config(let origin, let key):
            out.append(0x01)
            out.appendField8(Array(origin.utf8))
            out.append(Self.vrfSuite)
            out += key
        case .change(let t, let label, let version, let kind, let commitment):
            out.append(0x02)
            out.appendBigEndian(t)
            out += label.bytes
            out.appendBigEndian(version)
            out.append(kind)
            out += commitment.bytes
        case .mapHead(let t, let epoch, let covered, let root):
            out.append(0x03)
            out.appendBigEndian(t)
            out.appendBigEndian(epoch)
            out.appendBigEndian(covered)
            out += root.bytes
        }
        return out
    }

    /// Parses exactly one entry.
    public static func parse(_ bytes: [UInt8]) throws(Failure) -> DirectoryEntry {
        let result: Result<DirectoryEntry, Failure> = bytes.withUnsafeBytes { b in
            do throws(Failure) { return .success(try parse(b)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func parse(_ b: UnsafeRawBufferPointer) throws(Failure) -> DirectoryEntry {
        var r = ByteReader(b)
        guard r.u8() == version else { throw .malformed("not version 2") }
        let entry: DirectoryEntry
        switch r.u8() {
        case 0x01:
            guard let o = r.field8(), let suite = r.u8(), let key = r.bytes(32) else { throw .malformed("config cut short") }
            guard let origin = String(validating: Array(b[o]), as: UTF8.self), !origin.isEmpty else { throw .malformed("origin is not UTF-8") }
            guard suite == vrfSuite else { throw .malformed("unknown VRF suite \(suite)") }
            guard ECVRF.isPrimeOrderPoint(Array(b[key])) else { throw .malformed("the VRF public key is not a valid Ed25519 point") }
            entry = .config(origin: origin, vrfPublicKey: Array(b[key]))
        case 0x02:
            guard let t = r.u64(), let l = r.bytes(32), let v = r.u64(), let kind = r.u8(), let c = r.bytes(32) else {
                throw .malformed("change cut short")
            }
            guard (0x01...0x04).contains(kind) else { throw .malformed("unknown change kind \(kind)") }
            guard v >= 1 else { throw .malformed("a change makes version 1 or later") }
            entry = .change(timestampMillis: t, label: Hash(bytes: Array(b[l]))!, version: v, kind: kind, commitment: Hash(bytes: Array(b[c]))!)
        case 0x03:
            guard let t = r.u64(), let epoch = r.u64(), let covered = r.u64(), let root = r.bytes(32) else { throw .malformed("map head cut short") }
            guard epoch >= 1 else { throw .malformed("epochs count from 1") }
            entry = .mapHead(timestampMillis: t, epoch: epoch, coveredSize: covered, root: Hash(bytes: Array(b[root]))!)
        case let t:
            throw .malformed("unknown entry type \(t.map(String.init) ?? "(none)")")
        }
        guard r.atEnd else { throw .malformed("bytes after the entry") }
        return entry
    }
}
