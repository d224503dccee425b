/// The body of a c2sp.org/tlog-witness `add-checkpoint` request:
///
///     old <size the witness last cosigned>
///     <consistency proof hashes, one per line>
///     <blank line>
///     <signed checkpoint note>
public struct AddCheckpointRequest: Sendable, Equatable {
    /// The size of the checkpoint the witness last cosigned for this log (0 for none): where `proof` starts.
    public var oldSize: UInt64
    /// Consistency proof from `oldSize` to the note's size (RFC 9162 §2.1.4); empty when `oldSize` is 0
    /// or equal to the new size.
    public var proof: [Hash]
    /// The signed checkpoint note to cosign, exactly as sent (c2sp.org/signed-note); checked by the witness, not here.
    public var note: String

    /// A request as the log sends it; nothing is checked until a witness parses and verifies it.
    public init(oldSize: UInt64, proof: [Hash], note: String) {
        self.oldSize = oldSize
        self.proof = proof
        self.note = note
    }

    /// The HTTP body: `old N`, one base64 hash per line, a blank line, the note.
    public var body: String {
        "old \(oldSize)\n" + proof.map { $0.base64 + "\n" }.joined() + "\n" + note
    }

    /// Why `parse` refused a body; the witness answers it with 400.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .malformed(let m): return "malformed add-checkpoint request: \(m)"
            }
        }
    }

    /// Parses a request body. Refuses a missing blank line, an `old` size that is not a canonical decimal,
    /// more than 63 proof lines (the c2sp.org/tlog-witness limit) and any line that is not base64 of 32
    /// bytes. The note is returned as text, unverified.
    public static func parse(_ text: String) throws(ParseError) -> AddCheckpointRequest {
        guard let blank = text.range(of: "\n\n") else { throw .malformed("no blank line before the checkpoint") }
        let lines = text[..<blank.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, first.hasPrefix("old "), let old = parseCanonicalDecimal(first.dropFirst(4)) else {
            throw .malformed("first line must be \"old <size>\"")
        }
        guard lines.count - 1 <= 63 else { throw .malformed("too many proof hashes") }
        var proof: [Hash] = []
        for l in lines.dropFirst() {
            guard let h = Hash(base64: String(l)) else { throw .malformed("proof line is not base64 of 32 bytes") }
            proof.append(h)
        }
        return AddCheckpointRequest(oldSize: old, proof: proof, note: String(text[blank.upperBound...]))
    }
}
