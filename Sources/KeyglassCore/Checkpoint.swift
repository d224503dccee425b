/// c2sp.org/tlog-checkpoint: the note text `origin\nsize\nbase64(root)\n` plus optional extension lines.
public struct Checkpoint: Sendable, Equatable {
    /// The log's name, the first line: unique per log, and equal to the log key's name (c2sp.org/tlog-checkpoint).
    public let origin: String
    /// Number of entries in the tree the checkpoint commits to.
    public let size: UInt64
    /// RFC 9162 §2.1.1 Merkle tree hash of the first `size` entries (base64 in the text).
    public let root: Hash
    /// Extension lines after the root, each ending in "\n" (empty for Keyglass's own checkpoints).
    public let extensions: String

    /// A checkpoint; nothing is checked (`SignedNote.sign` refuses a text that is not a valid note).
    public init(origin: String, size: UInt64, root: Hash, extensions: String = "") {
        self.origin = origin
        self.size = size
        self.root = root
        self.extensions = extensions
    }

    /// The note text that is signed: origin, decimal size and base64 root, one per line, then the extensions.
    public var text: String { "\(origin)\n\(size)\n\(root.base64)\n\(extensions)" }

    /// Why a checkpoint body was refused.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .malformed(let why): return "malformed checkpoint: \(why)"
            }
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

    /// Parses a checkpoint text (`parseBody`) and also requires a 32-byte root and extension lines that
    /// each end in a newline. Signatures are not checked here: see `SignedCheckpoint.open`.
    public static func parse(_ text: String) throws(ParseError) -> Checkpoint {
        let body = try parseBody(text)
        guard let root = Hash(bytes: body.root) else { throw .malformed("root must be 32 bytes") }
        guard body.rest.isEmpty || body.rest.hasSuffix("\n") else { throw .malformed("extension lines must end in a newline") }
        return Checkpoint(origin: body.origin, size: body.size, root: root, extensions: body.rest)
    }
}

/// A checkpoint together with the signed note it came in.
public struct SignedCheckpoint: Sendable, Equatable {
    /// The parsed text.
    public let checkpoint: Checkpoint
    /// The note it came in, with all its signature lines (the log's and any cosignatures).
    public let note: SignedNote

    /// Pairs a checkpoint with its note; does not check that the note's text is the checkpoint's.
    public init(checkpoint: Checkpoint, note: SignedNote) {
        self.checkpoint = checkpoint
        self.note = note
    }

    /// Signs the checkpoint's text with the log's key. Throws if the text is not a valid note text (a
    /// control character or a blank line in the origin or extensions).
    public static func sign(_ checkpoint: Checkpoint, with signer: NoteSigner) throws(NoteError) -> SignedCheckpoint {
        SignedCheckpoint(checkpoint: checkpoint, note: try SignedNote.sign(text: checkpoint.text, with: signer))
    }

    /// Why `open` refused a checkpoint note: bad note or signature, bad text, or not this log's.
    public enum OpenError: Error, Equatable, CustomStringConvertible {
        case note(NoteError)
        case checkpoint(Checkpoint.ParseError)
        case wrongOrigin(expected: String, got: String)
        case notSignedByLog

        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .note(let e): return e.description
            case .checkpoint(let e): return e.description
            case .wrongOrigin(let e, let g): return "checkpoint origin is \"\(g)\", expected \"\(e)\""
            case .notSignedByLog: return "checkpoint is not signed by the log's key"
            }
        }
    }

    /// Verifies the log's signature (and any known witnesses' cosignatures) and parses the body.
    /// The origin must equal the log key's name, as c2sp.org/tlog-checkpoint requires.
    public static func open(
        _ message: String, logKey: NoteVerifierKey, witnesses: [NoteVerifierKey] = []
    ) throws(OpenError) -> (SignedCheckpoint, SignedNote.Opened) {
        let opened: SignedNote.Opened
        do { opened = try SignedNote.open(message, verifiers: [logKey] + witnesses) } catch { throw .note(error) }
        guard opened.verified.contains(where: { $0.key == logKey }) else { throw .notSignedByLog }
        let cp: Checkpoint
        do { cp = try Checkpoint.parse(opened.note.text) } catch { throw .checkpoint(error) }
        // Bytes, not Swift's string equality (which equates canonically equivalent spellings).
        guard Array(cp.origin.utf8) == Array(logKey.name.utf8) else { throw .wrongOrigin(expected: logKey.name, got: cp.origin) }
        return (SignedCheckpoint(checkpoint: cp, note: opened.note), opened)
    }
}
