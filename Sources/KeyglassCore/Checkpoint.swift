/// c2sp.org/tlog-checkpoint: the note text `origin\nsize\nbase64(root)\n` plus optional extension lines.
public struct Checkpoint: Sendable, Equatable {
    public let origin: String
    public let size: UInt64
    public let root: Hash
    /// Extension lines after the root, each ending in "\n" (empty for Keyglass's own checkpoints).
    public let extensions: String

    public init(origin: String, size: UInt64, root: Hash, extensions: String = "") {
        self.origin = origin
        self.size = size
        self.root = root
        self.extensions = extensions
    }

    public var text: String { "\(origin)\n\(size)\n\(root.base64)\n\(extensions)" }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self { case let .malformed(why): return "malformed checkpoint: \(why)" }
        }
    }

    /// The three fixed lines, with the root as raw bytes of any length. This is what general
    /// checkpoint libraries accept; `parse` then also requires a 32-byte SHA-256 root.
    public static func parseBody(_ text: String) throws(ParseError) -> (origin: String, size: UInt64, root: [UInt8], rest: String) {
        let lines = text.split(separator: "\n", maxSplits: 3, omittingEmptySubsequences: false)
        guard lines.count == 4 else { throw .malformed("expected origin, size and root lines") }
        guard !lines[0].isEmpty else { throw .malformed("empty origin") }
        guard let size = parseCanonicalDecimal(lines[1]) else { throw .malformed("size is not a canonical decimal") }
        guard let root = Base64.decode(String(lines[2])) else { throw .malformed("root is not base64") }
        return (String(lines[0]), size, root, String(lines[3]))
    }

    public static func parse(_ text: String) throws(ParseError) -> Checkpoint {
        let body = try parseBody(text)
        guard let root = Hash(bytes: body.root) else { throw .malformed("root must be 32 bytes") }
        guard body.rest.isEmpty || body.rest.hasSuffix("\n") else { throw .malformed("extension lines must end in a newline") }
        return Checkpoint(origin: body.origin, size: body.size, root: root, extensions: body.rest)
    }
}

/// A checkpoint together with the signed note it came in.
public struct SignedCheckpoint: Sendable, Equatable {
    public let checkpoint: Checkpoint
    public let note: SignedNote

    public init(checkpoint: Checkpoint, note: SignedNote) {
        self.checkpoint = checkpoint
        self.note = note
    }

    public static func sign(_ checkpoint: Checkpoint, with signer: NoteSigner) throws(NoteError) -> SignedCheckpoint {
        SignedCheckpoint(checkpoint: checkpoint, note: try SignedNote.sign(text: checkpoint.text, with: signer))
    }

    public enum OpenError: Error, Equatable, CustomStringConvertible {
        case note(NoteError)
        case checkpoint(Checkpoint.ParseError)
        case wrongOrigin(expected: String, got: String)
        case notSignedByLog

        public var description: String {
            switch self {
            case let .note(e): return e.description
            case let .checkpoint(e): return e.description
            case let .wrongOrigin(e, g): return "checkpoint origin is \"\(g)\", expected \"\(e)\""
            case .notSignedByLog: return "checkpoint is not signed by the log's key"
            }
        }
    }

    /// Verifies the log's signature (and any known witnesses' cosignatures) and parses the body.
    /// The origin must equal the log key's name, as c2sp.org/tlog-checkpoint requires.
    public static func open(_ message: String, logKey: NoteVerifierKey, witnesses: [NoteVerifierKey] = []) throws(OpenError) -> (SignedCheckpoint, SignedNote.Opened) {
        let opened: SignedNote.Opened
        do { opened = try SignedNote.open(message, verifiers: [logKey] + witnesses) } catch { throw .note(error) }
        guard opened.verified.contains(where: { $0.key == logKey }) else { throw .notSignedByLog }
        let cp: Checkpoint
        do { cp = try Checkpoint.parse(opened.note.text) } catch { throw .checkpoint(error) }
        guard cp.origin == logKey.name else { throw .wrongOrigin(expected: logKey.name, got: cp.origin) }
        return (SignedCheckpoint(checkpoint: cp, note: opened.note), opened)
    }
}
