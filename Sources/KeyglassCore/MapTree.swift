/// The key directory's map (issue 14, Spec/map.md): a binary prefix tree over 256-bit labels whose
/// root commits to every (label, value) pair. Each leaf sits at the shallowest depth where no
/// other label shares its path, so a map of n labels is ~log2(n) deep and its proofs are as long.
///
/// Hashes are domain-separated from RFC 9162's (0x00 leaf, 0x01 node), so no log node can pass for
/// a map node or the reverse:
///   empty subtree   E = 32 zero bytes
///   leaf            SHA-256(0x02 ‖ label ‖ value)
///   interior node   SHA-256(0x03 ‖ left ‖ right)
/// A subtree holding no label is E, one label is that label's leaf hash (wherever it sits), two or
/// more an interior node whose children split them on the next bit (bit 0 is the most significant
/// bit of the label's first byte; 0 goes left). The root of the empty map is E.
///
/// This file is what a verifier needs: the hashes and the checks of membership and absence
/// proofs. `MapTree.Builder` computes roots and proofs from a whole set (tests, auditors).
public enum MapTree {
    /// The hash of an empty subtree, and the root of the empty map: 32 zero bytes.
    public static let empty = Hash.zero

    /// SHA-256(0x02 ‖ label ‖ value).
    public static func leafHash(label: Hash, value: Hash) -> Hash {
        label.withUnsafeBytes { l in value.withUnsafeBytes { v in Hash.sha256(prefix: 0x02, l, v) } }
    }

    /// SHA-256(0x03 ‖ left ‖ right).
    public static func interiorHash(_ left: Hash, _ right: Hash) -> Hash {
        left.withUnsafeBytes { l in right.withUnsafeBytes { r in Hash.sha256(prefix: 0x03, l, r) } }
    }

    /// Bit `i` (0…255) of a label, most significant bit of byte 0 first.
    public static func bit(_ label: Hash, _ i: Int) -> Bool {
        label.withUnsafeBytes { ($0[i >> 3] >> (7 - UInt8(i & 7))) & 1 == 1 }
    }

    /// The number of leading bits two labels share (256 if they are equal).
    public static func sharedPrefix(_ a: Hash, _ b: Hash) -> Int {
        a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                for i in 0..<32 where x[i] != y[i] { return i * 8 + (x[i] ^ y[i]).leadingZeroBitCount }
                return 256
            }
        }
    }

    /// What a proof ends on, on the path of the label it is about: `siblings.count` is its depth.
    public enum Terminal: Equatable, Sendable {
        /// The label's own leaf, with its value: membership.
        case member(value: Hash)
        /// Nothing under this point of the path: absence.
        case empty
        /// Another label's leaf, sharing the path so far: absence.
        case otherLeaf(label: Hash, value: Hash)
    }

    /// A proof about one label: where its path ends, and the siblings from the root down to there
    /// (`siblings[i]` is the sibling at depth i + 1, i.e. the other child of the node at depth i).
    public struct Proof: Equatable, Sendable {
        /// Where the label's path ends.
        public let terminal: Terminal
        /// The siblings along the path, from depth 0 down to the terminal.
        public let siblings: [Hash]

        /// A proof as received, to be checked with `MapTree.verify`.
        public init(terminal: Terminal, siblings: [Hash]) {
            self.terminal = terminal
            self.siblings = siblings
        }
    }

    /// Why a proof proves nothing.
    public enum ProofError: Error, Equatable, CustomStringConvertible {
        case tooDeep(Int)
        case neighbourOffPath(depth: Int, shared: Int)
        case neighbourIsTheLabel
        case rootMismatch

        /// The reason in words, for an error message.
        public var description: String {
            switch self {
            case .tooDeep(let d): return "the proof is \(d) levels deep; a map is at most 256"
            case .neighbourOffPath(let d, let s):
                return "the leaf shown at depth \(d) shares only \(s) bits with the label: it is not on the label's path"
            case .neighbourIsTheLabel: return "an absence proof shows the label's own leaf"
            case .rootMismatch: return "the proof does not lead to the map's root"
            }
        }
    }

    /// Checks `proof` about `label` against `root`. Returns the label's value if the proof shows
    /// membership, nil if it proves absence; throws if it proves neither.
    ///
    /// Why a valid proof is the truth: a label's path from the root ends at the first leaf or empty
    /// subtree, so for one root there is exactly one terminal per label; a proof leading elsewhere
    /// would need a SHA-256 collision (or a leaf hash equal to an interior one, which the prefixes
    /// rule out). A neighbour leaf must share the label's first `depth` bits, else it is some
    /// other part of the tree and proves nothing about this label.
    @discardableResult
    public static func verify(_ proof: Proof, label: Hash, root: Hash) throws -> Hash? {
        let depth = proof.siblings.count
        guard depth <= 256 else { throw ProofError.tooDeep(depth) }
        var node: Hash
        var value: Hash?
        switch proof.terminal {
        case .member(let v):
            node = leafHash(label: label, value: v)
            value = v
        case .empty:
            node = empty
        case .otherLeaf(let other, let v):
            let shared = sharedPrefix(label, other)
            guard shared < 256 else { throw ProofError.neighbourIsTheLabel }
            guard shared >= depth else { throw ProofError.neighbourOffPath(depth: depth, shared: shared) }
            node = leafHash(label: other, value: v)
        }
        for i in stride(from: depth - 1, through: 0, by: -1) {
            node = bit(label, i) ? interiorHash(proof.siblings[i], node) : interiorHash(node, proof.siblings[i])
        }
        guard node == root else { throw ProofError.rootMismatch }
        return value
    }
}
