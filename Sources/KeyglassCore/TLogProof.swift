/// c2sp.org/tlog-proof: a portable inclusion proof.
///
///     c2sp.org/tlog-proof@v1
///     extra <base64>          (optional; Keyglass puts the entry here, so a proof file is self-contained)
///     index <N>
///     <base64 proof hash>     (one per line)
///     <blank line>
///     <signed checkpoint note>
public struct TLogProof: Sendable, Equatable {
    /// The first line: the format's name and version.
    public static let header = "c2sp.org/tlog-proof@v1"

    /// Opaque bytes for the application; Keyglass puts the encoded entry here.
    public var extra: [UInt8]?
    /// 0-based position of the entry in the log.
    public var index: UInt64
    /// The inclusion proof of the entry at `index` in the checkpoint's tree (RFC 9162 §2.1.3).
    public var proof: [Hash]
    /// The signed checkpoint note the proof is against.
    public var checkpoint: String

    /// A proof from its parts; nothing is verified.
    public init(extra: [UInt8]?, index: UInt64, proof: [Hash], checkpoint: String) {
        self.extra = extra
        self.index = index
        self.proof = proof
        self.checkpoint = checkpoint
    }

    /// The file's text: header, optional `extra`, `index`, proof hashes, blank line, checkpoint.
    public var serialized: String {
        var s = TLogProof.header + "\n"
        if let e = extra { s += "extra \(Base64.encode(e))\n" }
        s += "index \(index)\n"
        for h in proof { s += h.base64 + "\n" }
        return s + "\n" + checkpoint
    }

    /// Why a proof file was refused.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .malformed(let m): return "malformed tlog-proof: \(m)"
            }
        }
    }

    /// Parses a proof file. Refuses a missing header or blank line, a non-canonical index, an `extra`
    /// that is not strict base64, a proof line that is not base64 of 32 bytes, and more than 64 proof
    /// hashes (no 64-bit tree needs more).
    /// The checkpoint and the proof are returned unverified.
    public static func parse(_ text: String) throws(ParseError) -> TLogProof {
        guard let blank = text.range(of: "\n\n") else { throw .malformed("no blank line before the checkpoint") }
        let head = text[..<blank.lowerBound]
        let checkpoint = String(text[blank.upperBound...])
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false)[...]
        guard lines.first == Substring(header) else { throw .malformed("first line must be \(header)") }
        lines = lines.dropFirst()
        var extra: [UInt8]?
        if let l = lines.first, l.hasPrefix("extra ") {
            guard let e = Base64.decode(String(l.dropFirst(6))) else { throw .malformed("extra is not base64") }
            extra = e
            lines = lines.dropFirst()
        }
        guard let l = lines.first, l.hasPrefix("index "), let index = parseCanonicalDecimal(l.dropFirst(6)) else {
            throw .malformed("missing index line")
        }
        var proof: [Hash] = []
        for l in lines.dropFirst() {
            guard let h = Hash(base64: String(l)) else { throw .malformed("proof line is not base64 of 32 bytes") }
            proof.append(h)
        }
        guard proof.count <= 64 else { throw .malformed("too many proof hashes") }
        return TLogProof(extra: extra, index: index, proof: proof, checkpoint: checkpoint)
    }
}
