import CKeyglassSodium

/// ECVRF-EDWARDS25519-SHA512-TAI, RFC 9381 suite 0x03: the verifiable random function that hides
/// identities behind labels in a key directory (issue 14). No vetted library ships it, so it is
/// built here from libsodium's public group and scalar operations (RFC 9381 §5 step by step); the
/// only arithmetic done in Swift is byte comparison. It matches RFC 9381's vectors byte for byte
/// (`ECVRFTests`).
///
/// What a verifier refuses, beyond a proof whose challenge does not match (each is tested):
/// - a public key or Γ that is not the canonical encoding of a point of the prime-order subgroup
///   (libsodium's decoder alone accepts y ≥ p and x = 0 with the sign bit set; its
///   `is_valid_point` does not), or that is of small order (the RFC's `validate_key`; a small-order
///   Γ too, which no honest prover makes: Γ = x·H with H in the subgroup);
/// - s ≥ L: libsodium would multiply s + L to the same point, so a second encoding of one proof
///   would verify (malleability);
/// - c = 0 or s = 0 (libsodium refuses a zero scalar; an honest prover makes one with
///   probability ~2^-128).
public enum ECVRF {
    /// π: Γ (32 bytes) ‖ c (16) ‖ s (32).
    public static let proofLength = 80
    /// β: the VRF output.
    public static let outputLength = 64
    static let suite: UInt8 = 0x03
    private static let challengeLength = 16

    /// Why a proof could not be made.
    public enum Failure: Error, Equatable {
        /// The seed is not 32 bytes.
        case badSeed
        /// A group operation failed where the RFC's failure probability is ~2^-128 or less (a zero
        /// scalar, a hash that decodes to a small-order point): nothing to do but report it.
        case groupOperation
    }

    /// The public key of `seed`: the Ed25519 public key, Y = x·B.
    public static func publicKey(seed: [UInt8]) throws -> [UInt8] {
        guard let pair = Ed25519.keyPair(seed: seed) else { throw Failure.badSeed }
        return pair.publicKey
    }

    /// A VRF secret key, derived once from its 32-byte seed as RFC 8032 derives an Ed25519 key:
    /// the scalar x, the nonce key, the public key Y = x·B, and 8x mod L for outputs without a
    /// proof. Deriving costs a base-point multiplication and two SHA-512s, so a server keeps one.
    /// The secret parts live in memory of their own, zeroed when the last copy of the key goes, and
    /// are never printed (`description`, `dump` and reflection show only the public key).
    public struct SecretKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        fileprivate let secret: SecretBytes
        /// Y, the Ed25519 public key of the seed.
        public let publicKey: [UInt8]

        /// The key of a 32-byte seed (`Failure.badSeed` for another length).
        public init(seed: [UInt8]) throws {
            precondition(Ed25519.ready, "libsodium failed to initialise")
            guard seed.count == Ed25519.seedLength else { throw Failure.badSeed }
            publicKey = try ECVRF.publicKey(seed: seed)
            var hashed = ECVRF.sha512([seed])
            defer { sodium_memzero(&hashed, hashed.count) }
            var wide = Array(hashed[0..<32]) + [UInt8](repeating: 0, count: 32)
            defer { sodium_memzero(&wide, wide.count) }
            wide[0] &= 248
            wide[31] &= 127
            wide[31] |= 64
            let secret = SecretBytes()
            crypto_core_ed25519_scalar_reduce(secret.x, wide)
            var eight = [UInt8](repeating: 0, count: 32)
            eight[0] = 8
            crypto_core_ed25519_scalar_mul(secret.eightX, eight, secret.x)
            hashed.withUnsafeBufferPointer { secret.nonceKey.update(from: $0.baseAddress! + 32, count: 32) }
            self.secret = secret
        }

        /// The public key only.
        public var description: String { "ECVRF.SecretKey(public key \(Hex.encode(publicKey)))" }
        /// The public key only.
        public var debugDescription: String { description }
        /// The public key only, for `dump` and reflection.
        public var customMirror: Mirror { Mirror(self, children: ["publicKey": Hex.encode(publicKey)]) }
    }

    /// π for `alpha` under the key of `seed` (RFC 9381 §5.1).
    public static func prove(seed: [UInt8], alpha: [UInt8]) throws -> [UInt8] {
        try prove(key: SecretKey(seed: seed), alpha: alpha)
    }

    /// π for `alpha` under `key` (RFC 9381 §5.1).
    public static func prove(key: SecretKey, alpha: [UInt8]) throws -> [UInt8] {
        let h = try encodeToCurve(publicKey: key.publicKey, alpha: alpha)
        let gamma = try multiply(key.secret.x, h)
        var state = crypto_hash_sha512_state()
        crypto_hash_sha512_init(&state)
        crypto_hash_sha512_update(&state, key.secret.nonceKey, 32)
        crypto_hash_sha512_update(&state, h, UInt64(h.count))
        var kWide = [UInt8](repeating: 0, count: 64)
        crypto_hash_sha512_final(&state, &kWide)
        sodium_memzero(&state, MemoryLayout<crypto_hash_sha512_state>.size)
        defer { sodium_memzero(&kWide, kWide.count) }
        var k = reduce(kWide)
        defer { sodium_memzero(&k, k.count) }
        let u = try multiplyBase(k)
        let v = try multiply(k, h)
        let c = challenge(key.publicKey, h, gamma, u, v)
        var cx = [UInt8](repeating: 0, count: 32)
        defer { sodium_memzero(&cx, cx.count) }
        crypto_core_ed25519_scalar_mul(&cx, scalar(c), key.secret.x)
        var s = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_add(&s, k, cx)
        return gamma + c + s
    }

    /// β for `alpha` under `key`, without making the proof: what `proofToHash(prove(key:alpha:))`
    /// returns (`ECVRFTests` checks it on RFC 9381's vectors) at under half the cost. β hashes
    /// 8·Γ = 8·(x·H), and H is in the prime-order subgroup (it is 8 times a point), so 8·Γ is
    /// (8x mod L)·H: one multiplication where a proof takes two and a base-point one. A server
    /// computes labels this way when changes arrive and makes proofs when lookups need them.
    public static func output(key: SecretKey, alpha: [UInt8]) throws -> [UInt8] {
        let h = try encodeToCurve(publicKey: key.publicKey, alpha: alpha)
        return hashOfCofactorMultiple(try multiply(key.secret.eightX, h))
    }

    /// β if `proof` is a valid proof for `alpha` under `publicKey`, else nil (RFC 9381 §5.3 with
    /// `validate_key`, plus the refusals listed on the type). Wrong lengths are nil, not a trap.
    public static func verify(publicKey y: [UInt8], alpha: [UInt8], proof: [UInt8]) -> [UInt8]? {
        precondition(Ed25519.ready, "libsodium failed to initialise")
        guard y.count == 32, proof.count == proofLength else { return nil }
        let gamma = Array(proof[0..<32])
        let c = Array(proof[32..<48])
        let s = Array(proof[48..<80])
        guard isPrimeOrderPoint(y), isPrimeOrderPoint(gamma), isBelowGroupOrder(s) else { return nil }
        guard let h = try? encodeToCurve(publicKey: y, alpha: alpha),
            let sB = try? multiplyBase(s), let cY = try? multiply(scalar(c), y),
            let sH = try? multiply(s, h), let cGamma = try? multiply(scalar(c), gamma),
            let u = try? subtract(sB, cY), let v = try? subtract(sH, cGamma)
        else { return nil }
        guard challenge(y, h, gamma, u, v) == c else { return nil }
        return try? output(gamma: gamma)
    }

    /// β of a proof, without verifying it (RFC 9381 §5.2): for the prover, who made the proof.
    public static func proofToHash(_ proof: [UInt8]) throws -> [UInt8] {
        guard proof.count == proofLength else { throw Failure.groupOperation }
        return try output(gamma: Array(proof[0..<32]))
    }

    // MARK: RFC 9381 §5.4 helpers

    /// ECVRF_encode_to_curve_try_and_increment (§5.4.1.1): the first counter whose hash decodes to
    /// a point (RFC 8032's decoding, strictly), times the cofactor.
    static func encodeToCurve(publicKey y: [UInt8], alpha: [UInt8]) throws -> [UInt8] {
        for counter in 0...255 {
            let candidate = Array(sha512([[suite, 0x01], y, alpha, [UInt8(counter), 0x00]])[0..<32])
            guard isStrictEncoding(candidate), let p2 = add(candidate, candidate) else { continue }
            // 2P above decoded P (it fails for a y with no point); two more doublings make 8P.
            guard let p4 = add(p2, p2), let p8 = add(p4, p4) else { throw Failure.groupOperation }
            return p8
        }
        throw Failure.groupOperation  // 256 failures in a row: probability 2^-256
    }

    /// ECVRF_challenge_generation (§5.4.3): the first 16 bytes of the hash of the five points.
    static func challenge(_ points: [UInt8]...) -> [UInt8] {
        Array(sha512([[suite, 0x02]] + points + [[0x00]])[0..<challengeLength])
    }

    /// ECVRF_proof_to_hash's hash of 8·Γ (§5.2).
    private static func output(gamma: [UInt8]) throws -> [UInt8] {
        guard let g2 = add(gamma, gamma), let g4 = add(g2, g2), let g8 = add(g4, g4) else { throw Failure.groupOperation }
        return hashOfCofactorMultiple(g8)
    }

    /// β from 8·Γ.
    private static func hashOfCofactorMultiple(_ g8: [UInt8]) -> [UInt8] {
        sha512([[suite, 0x03], g8, [0x00]])
    }

    // MARK: Checks on encodings (byte comparisons only)

    /// RFC 8032 §5.1.3's decoding refuses y ≥ p and x = 0 with the sign bit set (x = 0 only for
    /// y = 1 and y = p − 1); libsodium's decoder does not, so those are refused here first.
    static func isStrictEncoding(_ p: [UInt8]) -> Bool {
        guard p.count == 32 else { return false }
        let top = p[31] & 0x7f
        // y ≥ p = 2^255 − 19: the top 7 bits and bytes 30…1 all ones, byte 0 ≥ 0xed.
        if top == 0x7f, p[1...30].allSatisfy({ $0 == 0xff }), p[0] >= 0xed { return false }
        if p[31] & 0x80 != 0 {
            let one = p[0] == 1 && p[1...30].allSatisfy { $0 == 0 } && top == 0
            let minusOne = p[0] == 0xec && p[1...30].allSatisfy { $0 == 0xff } && top == 0x7f
            if one || minusOne { return false }
        }
        return true
    }

    /// A strict encoding of a point of the prime-order subgroup, not of small order (libsodium's
    /// `is_valid_point`: on the curve, not small order, L·P = 0).
    static func isPrimeOrderPoint(_ p: [UInt8]) -> Bool {
        isStrictEncoding(p) && crypto_core_ed25519_is_valid_point(p) == 1
    }

    /// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    static let groupOrder: [UInt8] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ]

    /// s < L, compared from the most significant byte (s is public: no need for constant time).
    static func isBelowGroupOrder(_ s: [UInt8]) -> Bool {
        for i in stride(from: 31, through: 0, by: -1) where s[i] != groupOrder[i] {
            return s[i] < groupOrder[i]
        }
        return false
    }

    // MARK: libsodium, sized and checked

    private static func sha512(_ parts: [[UInt8]]) -> [UInt8] {
        var state = crypto_hash_sha512_state()
        crypto_hash_sha512_init(&state)
        for part in parts { crypto_hash_sha512_update(&state, part, UInt64(part.count)) }
        var out = [UInt8](repeating: 0, count: 64)
        crypto_hash_sha512_final(&state, &out)
        return out
    }

    /// A 64-byte little-endian integer mod L.
    private static func reduce(_ wide: [UInt8]) -> [UInt8] {
        precondition(wide.count == 64)
        var out = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_reduce(&out, wide)
        return out
    }

    /// A 16-byte challenge as a 32-byte scalar.
    private static func scalar(_ c: [UInt8]) -> [UInt8] { c + [UInt8](repeating: 0, count: 32 - c.count) }

    /// n·P for P in the prime-order subgroup (libsodium refuses others, a zero n and the identity
    /// as result). `n` in place: a secret scalar lives in memory of its own (`SecretBytes`).
    private static func multiply(_ n: UnsafePointer<UInt8>, _ p: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        guard crypto_scalarmult_ed25519_noclamp(&out, n, p) == 0 else { throw Failure.groupOperation }
        return out
    }

    private static func multiply(_ n: [UInt8], _ p: [UInt8]) throws -> [UInt8] {
        try n.withUnsafeBufferPointer { try multiply($0.baseAddress!, p) }
    }

    private static func multiplyBase(_ n: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        guard crypto_scalarmult_ed25519_base_noclamp(&out, n) == 0 else { throw Failure.groupOperation }
        return out
    }

    /// P + Q for any points on the curve (nil if either does not decode to one).
    private static func add(_ p: [UInt8], _ q: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 32)
        return crypto_core_ed25519_add(&out, p, q) == 0 ? out : nil
    }

    private static func subtract(_ p: [UInt8], _ q: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        guard crypto_core_ed25519_sub(&out, p, q) == 0 else { throw Failure.groupOperation }
        return out
    }
}

/// The secret scalars of an `ECVRF.SecretKey` (x, 8x mod L, the nonce key), 32 bytes each, in
/// memory allocated for them and zeroed before it is freed: Swift arrays would leave copies.
///
/// `@unchecked Sendable` is safe because the bytes are written only in `ECVRF.SecretKey.init`,
/// before the object is shared, and only read (by libsodium) afterwards.
private final class SecretBytes: @unchecked Sendable {
    private let base = UnsafeMutablePointer<UInt8>.allocate(capacity: 96)
    var x: UnsafeMutablePointer<UInt8> { base }
    var eightX: UnsafeMutablePointer<UInt8> { base + 32 }
    var nonceKey: UnsafeMutablePointer<UInt8> { base + 64 }

    init() { base.initialize(repeating: 0, count: 96) }

    deinit {
        sodium_memzero(base, 96)
        base.deallocate()
    }
}
