/// Signed-note keys (c2sp.org/signed-note): verifier keys `name+hash+base64(type ‖ key)` and Go's
/// private key encoding `PRIVATE+KEY+name+hash+base64(type ‖ seed)`.
public enum SignatureType: UInt8, Sendable {
    /// A log's Ed25519 key signing the note text.
    case ed25519 = 0x01
    /// A witness's Ed25519 key signing a cosignature/v1 message (c2sp.org/tlog-cosignature).
    case cosignatureV1 = 0x04
}

/// Why a verifier key, private key or key name was refused.
public enum NoteKeyError: Error, Equatable, CustomStringConvertible {
    case malformed(String)

    /// One line for logs and error answers.
    public var description: String {
        switch self {
        case .malformed(let why): return "malformed key: \(why)"
        }
    }
}

/// Key names: non-empty, no Unicode spaces and no '+', as the spec requires.
func isValidKeyName(_ name: String) -> Bool {
    guard !name.isEmpty else { return false }
    for s in name.unicodeScalars {
        if s == "+" || s.properties.isWhitespace || s.value < 0x20 || s.value == 0x7f { return false }
    }
    return true
}

/// key ID = SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4], as a big-endian number.
public func noteKeyID(name: String, type: SignatureType, publicKey: [UInt8]) -> UInt32 {
    let input = Array(name.utf8) + [0x0A, type.rawValue] + publicKey
    let b = Hash.sha256(input).bytes
    return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
}

/// One spelling per key hash: the lower-case hex every implementation writes.
func isLowerHex(_ s: Substring) -> Bool {
    s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}

func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

/// A verifier key: who signed, and the public key to check it with.
public struct NoteVerifierKey: Sendable, Equatable, CustomStringConvertible {
    /// The key's name; notes signed with it use the same name (for a log key, the log's origin).
    public let name: String
    /// What the key signs: note text (Ed25519) or cosignature/v1 messages.
    public let type: SignatureType
    /// The 32-byte Ed25519 public key.
    public let publicKey: [UInt8]
    /// The 4-byte key ID that signature lines carry (`noteKeyID`).
    public var keyID: UInt32 { noteKeyID(name: name, type: type, publicKey: publicKey) }

    /// A key from its parts. Refuses an invalid name (empty, or with whitespace, a control character or
    /// '+') and a key that is not 32 bytes.
    public init(name: String, type: SignatureType = .ed25519, publicKey: [UInt8]) throws(NoteKeyError) {
        guard isValidKeyName(name) else { throw .malformed("invalid key name") }
        guard publicKey.count == Ed25519.publicKeyLength else { throw .malformed("public key must be 32 bytes") }
        self.name = name
        self.type = type
        self.publicKey = publicKey
    }

    /// Parses `name+hex8+base64(type ‖ key)`, checking the hash against the key.
    public init(_ text: String) throws(NoteKeyError) {
        let parts = text.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("expected name+hash+key") }
        let name = String(parts[0])
        guard parts[1].count == 8, isLowerHex(parts[1]), let hash = UInt32(parts[1], radix: 16) else {
            throw .malformed("key hash must be 8 lower-case hex digits")
        }
        guard let raw = Base64.decode(String(parts[2])), raw.count == 1 + Ed25519.publicKeyLength else {
            throw .malformed("key must be base64 of a type byte and 32 bytes")
        }
        guard let type = SignatureType(rawValue: raw[0]) else { throw .malformed("unknown key type \(raw[0])") }
        try self.init(name: name, type: type, publicKey: Array(raw[1...]))
        guard keyID == hash else { throw .malformed("key hash does not match the key") }
    }

    /// The verifier key text, `name+hex8+base64(type ‖ key)`, which `init(_:)` reads back.
    public var description: String {
        "\(name)+\(hex8(keyID))+\(Base64.encode([type.rawValue] + publicKey))"
    }
}

/// A note signer holding an Ed25519 seed. `description` never shows the seed.
public struct NoteSigner: Sendable, CustomStringConvertible {
    /// The key's name, used in the signature lines it writes.
    public let name: String
    private let seed: [UInt8]
    /// The matching Ed25519 verifier key, to publish.
    public let verifierKey: NoteVerifierKey

    /// A signer from a 32-byte seed. Refuses another length and an invalid name.
    public init(name: String, seed: [UInt8]) throws(NoteKeyError) {
        guard let pair = Ed25519.keyPair(seed: seed) else { throw .malformed("seed must be 32 bytes") }
        self.name = name
        self.seed = seed
        self.verifierKey = try NoteVerifierKey(name: name, publicKey: pair.publicKey)
    }

    /// Parses Go's `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`.
    public init(encoded text: String) throws(NoteKeyError) {
        let parts = text.trimmingTrailingNewlines.split(separator: "+", maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "PRIVATE", parts[1] == "KEY" else { throw .malformed("expected PRIVATE+KEY+name+hash+key") }
        guard parts[3].count == 8, isLowerHex(parts[3]), let hash = UInt32(parts[3], radix: 16) else {
            throw .malformed("key hash must be 8 lower-case hex digits")
        }
        guard let raw = Base64.decode(String(parts[4])), raw.count == 1 + Ed25519.seedLength, raw[0] == SignatureType.ed25519.rawValue else {
            throw .malformed("key must be base64 of 0x01 and a 32-byte seed")
        }
        try self.init(name: String(parts[2]), seed: Array(raw[1...]))
        guard verifierKey.keyID == hash else { throw .malformed("key hash does not match the key") }
    }

    /// A signer with a fresh random seed. Refuses an invalid name.
    public static func generate(name: String) throws(NoteKeyError) -> NoteSigner {
        try NoteSigner(name: name, seed: Ed25519.generate().seed)
    }

    /// The private key in Go's encoding, for writing to a 0600 file.
    public var encodedPrivateKey: String {
        "PRIVATE+KEY+\(name)+\(hex8(verifierKey.keyID))+\(Base64.encode([SignatureType.ed25519.rawValue] + seed))"
    }

    /// The 64-byte Ed25519 signature of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] { Ed25519.sign(message: message, seed: seed) }

    /// Names the verifier key only, so a signer can be logged.
    public var description: String { "NoteSigner(\(verifierKey))" }
}

extension String {
    var trimmingTrailingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" || s.last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
