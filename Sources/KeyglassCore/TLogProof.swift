/// c2sp.org/tlog-proof: a portable inclusion proof.
///
///     c2sp.org/tlog-proof@v1
///     extra <base64>          (optional; Keyglass puts the entry here, so a proof file is self-contained)
///     index <N>
///     <base64 proof hash>     (one per line)
///     <blank line>
///     <signed checkpoint note>
public struct TLogProof: Sendable, Equatable {
    public static let header = "c2sp.org/tlog-proof@v1"

    public var extra: [UInt8]?
    public var index: UInt64
    public var proof: [Hash]
    /// The signed checkpoint note the proof is against.
    public var checkpoint: String

    public init(extra: [UInt8]?, index: UInt64, proof: [Hash], checkpoint: String) {
        self.extra = extra
        self.index = index
        self.proof = proof
        self.checkpoint = checkpoint
    }

    public var serialized: String {
        var s = TLogProof.header + "\n"
        if let e = extra { s += "extra \(Base64.encode(e))\n" }
        s += "index \(index)\n"
        for h in proof { s += h.base64 + "\n" }
        return s + "\n" + checkpoint
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self { case let .malformed(m): return "malformed tlog-proof: \(m)" }
        }
    }

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
