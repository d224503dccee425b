/// RFC 9162 §2.1.3 and §2.1.4: building and verifying inclusion and consistency proofs.
///
/// Building is split in two so storage does O(log n) reads and no hashing of leaves: a plan lists,
/// for each proof element, the perfect subtrees whose hashes it needs (`nodes`); the caller fetches
/// those hashes however it stores them; `assemble` folds them into the proof.
public struct ProofPlan: Sendable, Equatable {
    /// A proof asked for that no tree has: a leaf past the end, or sizes out of order.
    public enum PlanError: Error, Equatable, CustomStringConvertible {
        /// The leaf `index` is not below `size`.
        case indexOutOfRange(index: UInt64, size: UInt64)
        /// `from` is larger than `to`.
        case badSizes(from: UInt64, to: UInt64)

        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .indexOutOfRange(let i, let n): return "index \(i) is not below tree size \(n)"
            case .badSizes(let m, let n): return "cannot prove consistency from size \(m) to size \(n)"
            }
        }
    }

    /// The nodes to fetch, element after element, each element's leftmost first. The elements of
    /// one proof cover disjoint leaf ranges, so no node appears twice. (One array for the whole
    /// plan, not one per element: a server builds thousands of proofs a second.)
    public private(set) var nodes: [NodeID] = []
    /// Where each element's nodes end in `nodes`: element k is `nodes[ends[k - 1]..<ends[k]]`
    /// (from 0 for the first). Each element is MTH of a leaf range.
    public private(set) var ends: [Int] = []

    private init() {
        nodes.reserveCapacity(64)
        ends.reserveCapacity(64)
    }

    /// The plan of the inclusion proof of leaf `index` in the tree of `size` leaves (PATH).
    public static func inclusion(index: UInt64, size: UInt64) throws(PlanError) -> ProofPlan {
        guard index < size else { throw .indexOutOfRange(index: index, size: size) }
        var out = ProofPlan()
        path(index, 0, size, &out)
        return out
    }

    /// The plan of the consistency proof from `from` to `to` leaves (PROOF). Empty when from == to
    /// or from == 0 (c2sp.org/tlog-witness accepts an empty proof from the empty tree).
    public static func consistency(from: UInt64, to: UInt64) throws(PlanError) -> ProofPlan {
        guard from <= to else { throw .badSizes(from: from, to: to) }
        var out = ProofPlan()
        if from > 0 && from < to { subproof(from, 0, to, true, &out) }
        return out
    }

    /// Folds the hashes of `nodes` (in the same order) into the proof's hashes: each element is
    /// H(a, H(b, H(c, …))) of its nodes' hashes.
    public func assemble<Hashes: RandomAccessCollection>(_ hashes: Hashes) -> [Hash]
    where Hashes.Element == Hash, Hashes.Index == Int {
        precondition(hashes.count == nodes.count, "one hash per node")
        let base = hashes.startIndex
        var out: [Hash] = []
        out.reserveCapacity(ends.count)
        var start = 0
        for end in ends {
            var acc = hashes[base + end - 1]
            var j = end - 1
            while j > start {
                j -= 1
                acc = Merkle.nodeHash(hashes[base + j], acc)
            }
            out.append(acc)
            start = end
        }
        return out
    }

    /// MTH(D[start:end]) as perfect subtrees, appended as one element. Every range the RFC
    /// recursion asks for starts at a multiple of a power of two at least as large as its
    /// leftmost piece, so a greedy split is exact.
    private mutating func appendElement(_ start: UInt64, _ end: UInt64) {
        var s = start
        while s < end {
            let remaining = end - s
            var level = 63 - remaining.leadingZeroBitCount
            // Largest power of two that fits and keeps s aligned.
            while level > 0 && s & ((UInt64(1) << UInt64(level)) - 1) != 0 { level -= 1 }
            nodes.append(NodeID(level: UInt8(level), index: s >> UInt64(level)))
            s += UInt64(1) << UInt64(level)
        }
        ends.append(nodes.count)
    }

    private static func path(_ m: UInt64, _ start: UInt64, _ end: UInt64, _ out: inout ProofPlan) {
        let n = end - start
        if n == 1 { return }
        let k = Merkle.splitPoint(n)
        if m - start < k {
            path(m, start, start + k, &out)
            out.appendElement(start + k, end)
        } else {
            path(m, start + k, end, &out)
            out.appendElement(start, start + k)
        }
    }

    private static func subproof(_ m: UInt64, _ start: UInt64, _ end: UInt64, _ whole: Bool, _ out: inout ProofPlan) {
        let n = end - start
        if m == n {
            if !whole { out.appendElement(start, end) }
            return
        }
        let k = Merkle.splitPoint(n)
        if m <= k {
            subproof(m, start, start + k, whole, &out)
            out.appendElement(start + k, end)
        } else {
            subproof(m - k, start + k, end, false, &out)
            out.appendElement(start, start + k)
        }
    }
}

/// Why a proof did not verify. Any of these means the proof, or the log that served it, is wrong.
public enum ProofError: Error, Equatable, CustomStringConvertible {
    /// The leaf index is not below the tree size.
    case indexOutOfRange
    /// Too many or too few hashes for the sizes given.
    case wrongProofLength
    /// The hashes lead to another root: the leaf is not in this tree, or the trees differ.
    case rootMismatch
    /// The first tree is larger than the second.
    case badSizes
    /// A consistency proof from size 0: RFC 9162 defines none (any tree extends the empty one).
    case emptyTreeConsistency

    /// One line for logs and error answers.
    public var description: String {
        switch self {
        case .indexOutOfRange: return "leaf index is not below the tree size"
        case .wrongProofLength: return "proof has the wrong number of hashes"
        case .rootMismatch: return "proof does not lead to the expected root"
        case .badSizes: return "tree sizes are out of order"
        case .emptyTreeConsistency: return "a consistency proof from the empty tree proves nothing"
        }
    }
}

/// Verification, exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 state it.
public enum ProofVerifier {
    /// Throws unless `proof` shows `leafHash` at `index` in the tree of `size` leaves with root `root`.
    public static func verifyInclusion(index: UInt64, size: UInt64, leafHash: Hash, proof: [Hash], root: Hash) throws(ProofError) {
        let computed = try rootFromInclusion(index: index, size: size, leafHash: leafHash, proof: proof)
        guard computed == root else { throw .rootMismatch }
    }

    /// The root that `proof` leads to from `leafHash` at `index` in a tree of `size` leaves
    /// (RFC 9162 §2.1.3.2, step by step).
    ///
    /// Walk up from the leaf. `fn` is the index of the node reached so far at the current level,
    /// `sn` the index of the last node of the tree at that level; each proof hash is the sibling of
    /// the node reached, so it goes on the left when the node is a right child (`fn` odd) or the
    /// rightmost node of its level (`fn == sn`: its sibling subtree is to the left, and the right one
    /// does not exist), on the right otherwise.
    public static func rootFromInclusion(index: UInt64, size: UInt64, leafHash: Hash, proof: [Hash]) throws(ProofError) -> Hash {
        guard index < size else { throw .indexOutOfRange }
        var fn = index
        var sn = size - 1
        var r = leafHash
        for p in proof {
            // The walk reached the root (sn == 0) and there are hashes left: too long a proof.
            guard sn != 0 else { throw .wrongProofLength }
            if fn & 1 == 1 || fn == sn {
                r = Merkle.nodeHash(p, r)
                // A rightmost node that is a left child has no sibling on this level: the tree is
                // not full there. Climb (without hashing) until the node is a right child, which is
                // the level where `p`, its left sibling subtree, joined it.
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                r = Merkle.nodeHash(r, p)
            }
            // One level up.
            fn >>= 1
            sn >>= 1
        }
        // The walk must end exactly at the root: otherwise the proof was too short.
        guard sn == 0 else { throw .wrongProofLength }
        return r
    }

    /// Throws unless `proof` shows the tree of `size1` leaves with `root1` is a prefix of the tree of
    /// `size2` leaves with `root2`. Sizes equal: the proof must be empty and the roots equal.
    /// size1 == 0 is refused: callers that accept the empty tree (a first audit) handle it themselves.
    public static func verifyConsistency(size1: UInt64, size2: UInt64, root1: Hash, root2: Hash, proof: [Hash]) throws(ProofError) {
        guard size1 <= size2 else { throw .badSizes }
        guard size1 > 0 else { throw .emptyTreeConsistency }
        if size1 == size2 {
            guard proof.isEmpty else { throw .wrongProofLength }
            guard root1 == root2 else { throw .rootMismatch }
            return
        }
        guard !proof.isEmpty else { throw .wrongProofLength }
        // RFC 9162 §2.1.4.2. When size1 is a power of two the old tree is one perfect subtree of the
        // new one, and the proof leaves its root out (the verifier has it): put it back in front.
        var path = proof
        if size1 & (size1 - 1) == 0 { path.insert(root1, at: 0) }
        // `fn` walks the old tree's last leaf, `sn` the new tree's, up the levels. Skip the levels
        // where the old tree's last node is a right child: those nodes are inside the first proof
        // hash (the largest perfect subtree the two trees share on the right edge).
        var fn = size1 - 1
        var sn = size2 - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        // Two roots are rebuilt at once from the same path: `fr`, the old tree's, and `sr`, the new
        // tree's. Both start from the shared subtree.
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { throw .wrongProofLength }
            if fn & 1 == 1 || fn == sn {
                // `c` is a left sibling: part of both trees.
                fr = Merkle.nodeHash(c, fr)
                sr = Merkle.nodeHash(c, sr)
                // As in inclusion: a rightmost left child climbs until it is a right child.
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                // `c` is a right sibling: only in the new tree.
                sr = Merkle.nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        guard sn == 0 else { throw .wrongProofLength }
        guard fr == root1, sr == root2 else { throw .rootMismatch }
    }
}
