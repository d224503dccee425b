import CKeyglassOpenSSL

/// A SHA-256 digest: a Merkle tree node, a leaf hash or a root.
///
/// Stored inline as four words, so hashing a million entries allocates nothing per hash.
/// The words hold the digest's bytes in memory order; they are never interpreted as numbers.
public struct Hash: Hashable, Sendable, CustomStringConvertible {
    private var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    /// A SHA-256 digest's length: 32 bytes.
    public static let byteCount = 32

    /// The all-zero value, used only as a placeholder before assignment.
    public static let zero = Hash()

    private init() {}

    /// Takes exactly 32 bytes; anything else is nil.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Hash.byteCount else { return nil }
        var h = Hash()
        Swift.withUnsafeMutableBytes(of: &h) { $0.copyMemory(from: bytes) }
        self = h
    }

    /// Takes exactly 32 bytes; anything else is nil.
    public init?(bytes: [UInt8]) {
        guard let h = bytes.withUnsafeBytes({ Hash(bytes: $0) }) else { return nil }
        self = h
    }

    /// Takes exactly 32 bytes; anything else is nil.
    public init?(bytes: ArraySlice<UInt8>) {
        guard let h = bytes.withUnsafeBytes({ Hash(bytes: $0) }) else { return nil }
        self = h
    }

    /// The 32 digest bytes, copied into an array.
    public var bytes: [UInt8] { Swift.withUnsafeBytes(of: self) { Array($0) } }

    /// A copy with its bytes changed by `body` in place (no array: map positions are made by the
    /// million while a map head is computed).
    public func withBytesChanged(_ body: (UnsafeMutableRawBufferPointer) -> Void) -> Hash {
        var copy = self
        Swift.withUnsafeMutableBytes(of: &copy, body)
        return copy
    }

    /// Calls `body` with the 32 digest bytes in place, without copying them.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: self, body)
    }

    /// 64 lower-case hex digits, as test vectors and logs print hashes.
    public var hex: String { Hex.encode(bytes) }
    /// 44 characters of padded base64, as checkpoints, proofs and the JSON API write hashes.
    public var base64: String { Base64.encode(bytes) }

    /// The hex form.
    public var description: String { hex }

    /// Parses 64 hex digits of either case; nil for any other length or character.
    public init?(hex: String) {
        guard let b = Hex.decode(hex) else { return nil }
        self.init(bytes: b)
    }

    /// Parses the strict base64 (`Base64.decode`) of exactly 32 bytes; nil otherwise.
    public init?(base64: String) {
        guard let b = Base64.decode(base64) else { return nil }
        self.init(bytes: b)
    }

    // MARK: SHA-256

    /// SHA-256 of arbitrary bytes.
    public static func sha256(_ data: UnsafeRawBufferPointer) -> Hash {
        var out = Hash()
        Swift.withUnsafeMutableBytes(of: &out) { o in
            keyglass_sha256(data.baseAddress, data.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return out
    }

    /// SHA-256 of arbitrary bytes.
    public static func sha256(_ data: [UInt8]) -> Hash {
        data.withUnsafeBytes { sha256($0) }
    }

    /// SHA-256(prefix ‖ a ‖ b): the one shape every Merkle hash takes.
    static func sha256(prefix: UInt8, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Hash {
        var out = Hash()
        Swift.withUnsafeMutableBytes(of: &out) { o in
            keyglass_sha256_prefixed(
                prefix, a.baseAddress, a.count, b.baseAddress, b.count,
                o.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return out
    }
}
