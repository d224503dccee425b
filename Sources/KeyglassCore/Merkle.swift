/// RFC 9162 §2.1 Merkle tree hashing.
public enum Merkle {
    /// MTH({}) = SHA-256().
    public static let emptyRoot: Hash = Hash.sha256([UInt8]())

    /// MTH({d}) = SHA-256(0x00 ‖ d).
    public static func leafHash(_ entry: UnsafeRawBufferPointer) -> Hash {
        Hash.sha256(prefix: 0x00, entry, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// MTH({d}) = SHA-256(0x00 ‖ d), for an entry held in an array.
    public static func leafHash(_ entry: [UInt8]) -> Hash {
        entry.withUnsafeBytes { leafHash($0) }
    }

    /// SHA-256(0x01 ‖ left ‖ right).
    public static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        left.withUnsafeBytes { l in right.withUnsafeBytes { r in Hash.sha256(prefix: 0x01, l, r) } }
    }

    /// Raw-bytes form, for the hasher vectors whose "hashes" are not 32 bytes long.
    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> Hash {
        left.withUnsafeBytes { l in right.withUnsafeBytes { r in Hash.sha256(prefix: 0x01, l, r) } }
    }

    /// The largest power of two strictly less than n (n ≥ 2): the RFC's split point k.
    @inlinable
    public static func splitPoint(_ n: UInt64) -> UInt64 {
        precondition(n >= 2)
        return UInt64(1) << (63 - (n - 1).leadingZeroBitCount)
    }

    /// The root of a whole list of leaf hashes, by the RFC's recursive definition.
    /// Used by tests and small trees; the log and the auditor use `CompactRange`.
    public static func rootOf(leafHashes: [Hash]) -> Hash {
        var range = CompactRange()
        for h in leafHashes { range.append(h) }
        return range.root
    }
}
