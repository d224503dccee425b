import CKeyglassSodium

/// Ed25519 from libsodium. Nothing here implements a primitive; it only sizes buffers and checks
/// return codes.
public enum Ed25519 {
    /// Bytes in a public key (RFC 8032 §5.1.5).
    public static let publicKeyLength = 32
    /// Bytes in a seed: the RFC 8032 private key, from which libsodium derives its 64-byte secret key.
    public static let seedLength = 32
    /// Bytes in a signature, R ‖ S (RFC 8032 §5.1.6).
    public static let signatureLength = 64

    /// sodium_init must run before any other libsodium call; it is idempotent and thread-safe,
    /// and a global `let` runs it exactly once.
    static let ready: Bool = sodium_init() >= 0

    /// A seed and the public key derived from it.
    public struct KeyPair: Sendable {
        /// The 32-byte seed: the private key. Never printed or logged.
        public let seed: [UInt8]
        /// The 32-byte public key derived from `seed`.
        public let publicKey: [UInt8]
    }

    /// A new key pair from the operating system's CSPRNG.
    public static func generate() -> KeyPair {
        precondition(ready, "libsodium failed to initialise")
        var seed = [UInt8](repeating: 0, count: seedLength)
        randombytes_buf(&seed, seedLength)
        return keyPair(seed: seed)!
    }

    /// Derives the key pair of a seed; nil unless the seed is exactly 32 bytes.
    public static func keyPair(seed: [UInt8]) -> KeyPair? {
        precondition(ready, "libsodium failed to initialise")
        guard seed.count == seedLength else { return nil }
        var pk = [UInt8](repeating: 0, count: publicKeyLength)
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        defer { sodium_memzero(&sk, sk.count) }
        guard crypto_sign_seed_keypair(&pk, &sk, seed) == 0 else { return nil }
        return KeyPair(seed: seed, publicKey: pk)
    }

    /// The 64-byte RFC 8032 signature of `message` by the key of `seed`. The secret key is derived for
    /// the call and wiped after it. A seed of the wrong length is a programming error and traps.
    public static func sign(message: [UInt8], seed: [UInt8]) -> [UInt8] {
        precondition(ready, "libsodium failed to initialise")
        precondition(seed.count == seedLength)
        var pk = [UInt8](repeating: 0, count: publicKeyLength)
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        defer { sodium_memzero(&sk, sk.count) }
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        var sig = [UInt8](repeating: 0, count: signatureLength)
        crypto_sign_detached(&sig, nil, message, UInt64(message.count), sk)
        return sig
    }

    /// True if `signature` is valid for `message` under `publicKey`. Wrong lengths are false, not a trap:
    /// these come from the network. libsodium refuses non-canonical signatures and small-order keys.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        precondition(ready, "libsodium failed to initialise")
        guard signature.count == signatureLength, publicKey.count == publicKeyLength else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// True for a canonical encoding of a point in the main subgroup that is not of small order.
    public static func isValidPublicKey(_ key: [UInt8]) -> Bool {
        key.withUnsafeBytes { isValidPublicKey($0) }
    }

    /// The same check on bytes in place, so the entry parser need not copy the key.
    public static func isValidPublicKey(_ key: UnsafeRawBufferPointer) -> Bool {
        precondition(ready, "libsodium failed to initialise")
        guard key.count == publicKeyLength else { return false }
        return crypto_core_ed25519_is_valid_point(key.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
    }

    /// True for a canonical encoding (y below 2^255 − 19) of a y-coordinate that is not one of a
    /// small-order point's (sign bit ignored). Byte comparisons only, ~100× cheaper than
    /// `isValidPublicKey`, which also decodes the point and multiplies it by the group order to
    /// prove it is in the main subgroup. What it lets through (a y with no point on the curve, a
    /// point with a torsion component) every client refuses when it uses the key, because clients
    /// check with `isValidPublicKey`; see Spec/decisions.md 25 for who checks what.
    public static func isCanonicalAndNotSmallOrder(_ key: UnsafeRawBufferPointer) -> Bool {
        guard key.count == publicKeyLength else { return false }
        // y ≥ p: the last byte's low 7 bits all set, bytes 30…1 all 0xff, byte 0 ≥ 0xed.
        let top = key[31] & 0x7f
        if top == 0x7f, (1...30).allSatisfy({ key[$0] == 0xff }), key[0] >= 0xed { return false }
        return !smallOrderY.contains { y in
            (0..<31).allSatisfy { key[$0] == y[$0] } && top == y[31]
        }
    }

    /// The y-coordinates (little-endian, sign bit clear) of the eight points whose order divides 8:
    /// y = 1 (the identity), y = −1 (order 2), y = 0 (the two points of order 4), and the two y
    /// of the four points of order 8, the roots of d·y⁴ + 2·y² − 1 = 0 (a point of order 8 doubles
    /// to one with y = 0). `Ed25519Tests` re-derives them: 8·P is the identity for each.
    static let smallOrderY: [[UInt8]] = [
        [1] + [UInt8](repeating: 0, count: 31),
        [0xec] + [UInt8](repeating: 0xff, count: 30) + [0x7f],
        [UInt8](repeating: 0, count: 32),
        hexBytes("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hexBytes("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    ]

    private static func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.utf8.makeIterator()
        while let h = it.next(), let l = it.next() {
            out.append(UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16)!)
        }
        return out
    }

    /// Random bytes from libsodium's CSPRNG (tokens, seeds).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(ready, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }
}

/// Secret comparison that takes the same time wherever the inputs differ.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    precondition(Ed25519.ready, "libsodium failed to initialise")
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return sodium_memcmp(a, b, a.count) == 0
}
