/// Signed notes (c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line, then one
/// or more lines `— name base64(keyID ‖ signature)`.
public struct NoteSignature: Sendable, Equatable {
    /// The signing key's name, as in its verifier key; no spaces or '+'.
    public let name: String
    /// The key's 4-byte ID (`noteKeyID`); with `name`, it picks which known key checks the signature.
    public let keyID: UInt32
    /// The signature bytes after the 4-byte key ID.
    public let signature: [UInt8]

    /// A signature line's parts; nothing is checked (`SignedNote.parse` checks lines it reads).
    public init(name: String, keyID: UInt32, signature: [UInt8]) {
        self.name = name
        self.keyID = keyID
        self.signature = signature
    }

    /// The signature line as sent: `— name base64(keyID ‖ signature)` and a newline.
    public var line: String {
        let id: [UInt8] = [UInt8(keyID >> 24), UInt8(keyID >> 16 & 0xff), UInt8(keyID >> 8 & 0xff), UInt8(keyID & 0xff)]
        return "— \(name) \(Base64.encode(id + signature))\n"
    }
}

/// Why a note was refused: its form, a bad signature by a known key, or no known key at all.
public enum NoteError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case invalidSignature(name: String, keyID: UInt32)
    case noVerifiableSignature

    /// One line for logs and error answers.
    public var description: String {
        switch self {
        case .malformed(let why): return "malformed note: \(why)"
        case .invalidSignature(let name, let id): return "invalid signature for key \(name)+\(hex8(id))"
        case .noVerifiableSignature: return "note has no verifiable signatures"
        }
    }
}

/// A c2sp.org/signed-note: the text and its signature lines, verified or not.
public struct SignedNote: Sendable, Equatable {
    /// The signed text, ending in "\n".
    public let text: String
    /// Signature lines in the order they appear, known keys and unknown ones alike.
    public let signatures: [NoteSignature]

    /// Go's sumdb/note refuses more than this many signature lines; so do we.
    public static let maxSignatures = 100

    /// A note from its parts; nothing is checked (`open` does that).
    public init(text: String, signatures: [NoteSignature]) {
        self.text = text
        self.signatures = signatures
    }

    /// The note as it is sent: text, blank line, signature lines.
    public var serialized: String { text + "\n" + signatures.map(\.line).joined() }

    /// Signs `text` (which must end in a newline) with an Ed25519 note key.
    public static func sign(text: String, with signer: NoteSigner) throws(NoteError) -> SignedNote {
        try checkText(text)
        let sig = signer.sign(Array(text.utf8))
        return SignedNote(text: text, signatures: [NoteSignature(name: signer.name, keyID: signer.verifierKey.keyID, signature: sig)])
    }

    /// Splits a note into text and signatures without checking any signature.
    public static func parse(_ message: String) throws(NoteError) -> SignedNote {
        let bytes = Array(message.utf8)
        // Valid UTF-8 is guaranteed by String; refuse ASCII controls other than newline.
        for b in bytes where b < 0x20 && b != 0x0A { throw .malformed("control character") }
        guard let split = lastBlankLine(bytes) else { throw .malformed("no blank line before signatures") }
        let text = String(decoding: bytes[..<(split + 1)], as: UTF8.self)
        let sigBlock = bytes[(split + 2)...]
        guard !sigBlock.isEmpty, sigBlock.last == 0x0A else { throw .malformed("signature block must end in a newline") }
        var signatures: [NoteSignature] = []
        for lineBytes in sigBlock.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false) {
            let line = String(decoding: lineBytes, as: UTF8.self)
            guard line.hasPrefix("— ") else { throw .malformed("signature line must start with an em dash") }
            let body = line.dropFirst(2)
            guard let space = body.lastIndex(of: " ") else { throw .malformed("signature line has no key name") }
            let name = String(body[..<space])
            guard isValidKeyName(name) else { throw .malformed("invalid key name in signature") }
            guard let raw = Base64.decode(String(body[body.index(after: space)...])), raw.count >= 5 else {
                throw .malformed("signature is not base64 of a key ID and a signature")
            }
            let id = UInt32(raw[0]) << 24 | UInt32(raw[1]) << 16 | UInt32(raw[2]) << 8 | UInt32(raw[3])
            signatures.append(NoteSignature(name: name, keyID: id, signature: Array(raw[4...])))
            guard signatures.count <= maxSignatures else { throw .malformed("too many signatures") }
        }
        return SignedNote(text: text, signatures: signatures)
    }

    /// The result of opening a note against a set of known keys.
    public struct Opened: Sendable {
        /// The whole note, every signature line included.
        public let note: SignedNote
        /// Signatures by known keys that verified, one per key.
        public let verified: [(key: NoteVerifierKey, signature: NoteSignature)]
        /// Signatures by keys we do not know (kept, not trusted).
        public let unverified: [NoteSignature]

        /// For cosignature/v1 signatures: the timestamp each verified witness attested to.
        public func cosignatureTime(of key: NoteVerifierKey) -> UInt64? {
            guard key.type == .cosignatureV1,
                let s = verified.first(where: { $0.key == key })?.signature.signature
            else { return nil }
            return Cosignature.timestamp(of: s)
        }
    }

    /// Parses and checks: every signature by a known key must verify (one that does not is an
    /// error, never skipped), and at least one must. As Go's `note.Open`.
    public static func open(_ message: String, verifiers: [NoteVerifierKey]) throws(NoteError) -> Opened {
        let note = try parse(message)
        var verified: [(key: NoteVerifierKey, signature: NoteSignature)] = []
        var unverified: [NoteSignature] = []
        for sig in note.signatures {
            guard let key = verifiers.first(where: { $0.name == sig.name && $0.keyID == sig.keyID }) else {
                if !unverified.contains(sig) { unverified.append(sig) }
                continue
            }
            if verified.contains(where: { $0.key == key }) { continue }
            guard verify(text: note.text, signature: sig.signature, key: key) else {
                throw .invalidSignature(name: sig.name, keyID: sig.keyID)
            }
            verified.append((key, sig))
        }
        guard !verified.isEmpty else { throw .noVerifiableSignature }
        return Opened(note: note, verified: verified, unverified: unverified)
    }

    static func verify(text: String, signature: [UInt8], key: NoteVerifierKey) -> Bool {
        switch key.type {
        case .ed25519:
            return Ed25519.verify(signature: signature, message: Array(text.utf8), publicKey: key.publicKey)
        case .cosignatureV1:
            guard signature.count == 8 + Ed25519.signatureLength, let time = Cosignature.timestamp(of: signature) else { return false }
            return Ed25519.verify(
                signature: Array(signature[8...]), message: Cosignature.message(time: time, checkpointText: text),
                publicKey: key.publicKey)
        }
    }

    static func checkText(_ text: String) throws(NoteError) {
        guard text.hasSuffix("\n") else { throw .malformed("text must end in a newline") }
        for b in text.utf8 where b < 0x20 && b != 0x0A { throw .malformed("control character") }
        if text.utf8.count >= 2, lastBlankLine(Array(text.utf8)) != nil { throw .malformed("text must not contain a blank line") }
    }

    private static func lastBlankLine(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        var i = bytes.count - 2
        while i >= 0 {
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0A { return i }
            i -= 1
        }
        return nil
    }
}

/// c2sp.org/tlog-cosignature: a witness signs "cosignature/v1\ntime T\n" followed by the checkpoint
/// text; the signature blob after the key ID is an 8-byte big-endian T and the 64-byte signature.
public enum Cosignature {
    /// What a witness signs: `cosignature/v1`, `time T` (seconds since the Unix epoch), then the checkpoint text.
    public static func message(time: UInt64, checkpointText: String) -> [UInt8] {
        Array("cosignature/v1\ntime \(time)\n".utf8) + Array(checkpointText.utf8)
    }

    /// T from a signature blob (without its key ID); nil unless it is exactly 72 bytes.
    public static func timestamp(of blob: [UInt8]) -> UInt64? {
        guard blob.count == 8 + Ed25519.signatureLength else { return nil }
        return blob[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// A witness's cosignature line over a checkpoint text.
    public static func sign(checkpointText: String, time: UInt64, witness: NoteSigner) throws(NoteKeyError) -> NoteSignature {
        let key = try NoteVerifierKey(name: witness.name, type: .cosignatureV1, publicKey: witness.verifierKey.publicKey)
        let sig = witness.sign(message(time: time, checkpointText: checkpointText))
        let t: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: time >> (56 - 8 * UInt64($0))) }
        return NoteSignature(name: witness.name, keyID: key.keyID, signature: t + sig)
    }
}
