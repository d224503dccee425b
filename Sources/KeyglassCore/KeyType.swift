import CKeyglassOpenSSL

/// The public-key types a v1 entry may carry. A closed set: a new type is a new entry version, so an
/// old auditor never silently accepts a key it cannot check.
public enum KeyType: String, Sendable, CaseIterable {
    case ed25519
    case x25519
    case p256

    public enum KeyError: Error, Equatable, CustomStringConvertible {
        case unknownType(String)
        case invalidKey(KeyType, String)

        public var description: String {
            switch self {
            case let .unknownType(t): return "unknown key type \"\(t)\" (known: \(KeyType.allCases.map(\.rawValue).joined(separator: ", ")))"
            case let .invalidKey(t, why): return "invalid \(t.rawValue) key: \(why)"
            }
        }
    }

    public static func parse(_ name: String) throws(KeyError) -> KeyType {
        guard let t = KeyType(rawValue: name) else { throw .unknownType(name) }
        return t
    }

    /// Checks length and form: a canonical Ed25519 point not of small order; 32 bytes for X25519 (not
    /// all zero, the one value every implementation refuses); an on-curve SEC1 point for P-256.
    public func validate(_ key: [UInt8]) throws(KeyError) {
        let result: Result<Void, KeyError> = key.withUnsafeBytes { b in
            do throws(KeyError) { try validate(b); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    public func validate(_ key: UnsafeRawBufferPointer) throws(KeyError) {
        switch self {
        case .ed25519:
            guard key.count == 32 else { throw .invalidKey(self, "must be 32 bytes, got \(key.count)") }
            guard Ed25519.isValidPublicKey(key) else { throw .invalidKey(self, "not a valid curve point") }
        case .x25519:
            guard key.count == 32 else { throw .invalidKey(self, "must be 32 bytes, got \(key.count)") }
            guard key.contains(where: { $0 != 0 }) else { throw .invalidKey(self, "all-zero key") }
        case .p256:
            switch (key.count, key.first) {
            case (33, 0x02), (33, 0x03), (65, 0x04): break
            default: throw .invalidKey(self, "must be a SEC1 point: 33 bytes starting 02/03 or 65 bytes starting 04")
            }
            guard keyglass_p256_point_is_valid(key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count) == 1 else { throw .invalidKey(self, "point is not on the curve") }
        }
    }

    /// Only Ed25519 keys can sign the next entry of their identity's chain.
    public var canSignRotation: Bool { self == .ed25519 }
}
