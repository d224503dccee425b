/// The body of a c2sp.org/tlog-witness `add-checkpoint` request:
///
///     old <size the witness last cosigned>
///     <consistency proof hashes, one per line>
///     <blank line>
///     <signed checkpoint note>
public struct AddCheckpointRequest: Sendable, Equatable {
    public var oldSize: UInt64
    public var proof: [Hash]
    public var note: String

    public init(oldSize: UInt64, proof: [Hash], note: String) {
        self.oldSize = oldSize
        self.proof = proof
        self.note = note
    }

    public var body: String {
        "old \(oldSize)\n" + proof.map { $0.base64 + "\n" }.joined() + "\n" + note
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self { case let .malformed(m): return "malformed add-checkpoint request: \(m)" }
        }
    }

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
