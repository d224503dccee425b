import CKeyglassOpenSSL

/// The public-key types a v1 entry may carry. A closed set: a new type is a new entry version, so an
/// old auditor never silently accepts a key it cannot check.
public enum KeyType: String, Sendable, CaseIterable {
    /// 32 bytes (RFC 8032); the only type that can sign a rotation.
    case ed25519
    /// 32 bytes (RFC 7748), for key agreement.
    case x25519
    /// A SEC1 point on NIST P-256, compressed (33 bytes) or not (65).
    case p256

    /// Why a key type or a key was refused.
    public enum KeyError: Error, Equatable, CustomStringConvertible {
        /// A type name outside the closed set; carries the name.
        case unknownType(String)
        /// A key of a known type that fails its check; carries the reason.
        case invalidKey(KeyType, String)

        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .unknownType(let t): return "unknown key type \"\(t)\" (known: \(KeyType.allCases.map(\.rawValue).joined(separator: ", ")))"
            case .invalidKey(let t, let why): return "invalid \(t.rawValue) key: \(why)"
            }
        }
    }

    /// The type with this exact name (lower case, as entries spell it).
    public static func parse(_ name: String) throws(KeyError) -> KeyType {
        guard let t = KeyType(rawValue: name) else { throw .unknownType(name) }
        return t
    }

    /// The type whose name is exactly these bytes, or nil. Byte comparisons only: the entry parser
    /// meets a type name per entry, and an auditor parses millions (`allCases` and `String.utf8`
    /// comparisons were ~2% of an audit's CPU).
    public static func named(_ name: UnsafeRawBufferPointer) -> KeyType? {
        func spells(_ literal: StaticString) -> Bool {
            literal.utf8CodeUnitCount == name.count
                && UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount).elementsEqual(name)
        }
        guard !name.isEmpty else { return nil }
        if spells("ed25519") { return .ed25519 }
        if spells("x25519") { return .x25519 }
        if spells("p256") { return .p256 }
        return nil
    }

    /// How much of a key to check. The server checks `full` once per publish and clients `full` for
    /// every key they use; an auditor checks `form` for the millions of keys nobody watches, where
    /// `full` would cost a scalar multiplication each (Spec/decisions.md 25).
    public enum Check: Sendable {
        /// Every check: for Ed25519 a point of the main subgroup, not of small order; for P-256 a
        /// point on the curve.
        case full
        /// Length and encoding only: for Ed25519 canonical and not of small order (byte
        /// comparisons); for P-256 a SEC1 prefix of the right length; X25519 as `full`.
        case form
    }

    /// Checks length and form: a canonical Ed25519 point not of small order; 32 bytes for X25519 (not
    /// all zero, the one value every implementation refuses); an on-curve SEC1 point for P-256.
    public func validate(_ key: [UInt8], check: Check = .full) throws(KeyError) {
        let result: Result<Void, KeyError> = key.withUnsafeBytes { b in
            do throws(KeyError) {
                try validate(b, check: check)
                return .success(())
            } catch { return .failure(error) }
        }
        try result.get()
    }

    /// The same checks on bytes in place, so the entry parser need not copy the key.
    public func validate(_ key: UnsafeRawBufferPointer, check: Check = .full) throws(KeyError) {
        switch self {
        case .ed25519:
            guard key.count == 32 else { throw .invalidKey(self, "must be 32 bytes, got \(key.count)") }
            guard Ed25519.isCanonicalAndNotSmallOrder(key) else { throw .invalidKey(self, "not a canonical point, or of small order") }
            guard check == .form || Ed25519.isValidPublicKey(key) else { throw .invalidKey(self, "not a valid curve point") }
        case .x25519:
            guard key.count == 32 else { throw .invalidKey(self, "must be 32 bytes, got \(key.count)") }
            guard key.contains(where: { $0 != 0 }) else { throw .invalidKey(self, "all-zero key") }
        case .p256:
            switch (key.count, key.first) {
            case (33, 0x02), (33, 0x03), (65, 0x04): break
            default: throw .invalidKey(self, "must be a SEC1 point: 33 bytes starting 02/03 or 65 bytes starting 04")
            }
            guard check == .form || keyglass_p256_point_is_valid(key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count) == 1 else {
                throw .invalidKey(self, "point is not on the curve")
            }
        }
    }

    /// Only Ed25519 keys can sign the next entry of their identity's chain.
    public var canSignRotation: Bool { self == .ed25519 }
}
