/// The right edge of a Merkle tree: the roots of the perfect subtrees that make up its first `size`
/// leaves, largest (leftmost) first, one per set bit of `size`. At most 64 hashes, whatever the size:
/// this is how the sequencer appends and how the auditor re-derives a tree in bounded memory.
public struct CompactRange: Sendable, Equatable {
    /// Number of leaves the range covers.
    public private(set) var size: UInt64
    /// Subtree roots, leftmost first; `hashes[i]` covers 2^(level of the i-th set bit, from the top) leaves.
    public private(set) var hashes: [Hash]

    /// The empty tree's range: size 0, no hashes, root `Merkle.emptyRoot`.
    public init() {
        size = 0
        hashes = []
    }

    /// Rebuilds a range from stored subtree roots. The count must match the set bits of `size`.
    public init?(size: UInt64, hashes: [Hash]) {
        guard hashes.count == size.nonzeroBitCount else { return nil }
        self.size = size
        self.hashes = hashes
    }

    /// The perfect subtrees a range of this size consists of, as (level, index) coordinates,
    /// leftmost first. Lets storage load a range with one read per subtree.
    public static func subtrees(forSize size: UInt64) -> [NodeID] {
        var result: [NodeID] = []
        var start: UInt64 = 0
        var level = 63
        while level >= 0 {
            let width = UInt64(1) << UInt64(level)
            if size & width != 0 {
                result.append(NodeID(level: UInt8(level), index: start >> UInt64(level)))
                start += width
            }
            level -= 1
        }
        return result
    }

    /// Appends one leaf. `newNode` is called for the leaf and for every perfect subtree it completes,
    /// bottom up, so storage can keep every node hash without recomputing any.
    public mutating func append(_ leaf: Hash, newNode: (NodeID, Hash) -> Void = { _, _ in }) {
        append(subtree: leaf, level: 0, newNode: newNode)
    }

    /// Appends a whole perfect subtree of 2^`level` leaves at once, given its root: what appending
    /// its leaves one by one would give, for the cost of the levels above it. The range's size must
    /// be a multiple of 2^`level` (the subtree is aligned, as an entry bundle's tile is). `newNode`
    /// is called for the subtree and for every perfect subtree it completes, bottom up. Lets an
    /// auditor hash each tile's leaves on the core that read the tile.
    public mutating func append(subtree root: Hash, level: UInt8, newNode: (NodeID, Hash) -> Void = { _, _ in }) {
        let width = UInt64(1) << UInt64(level)
        precondition(level < 64 && size & (width - 1) == 0, "a subtree must start at a multiple of its width")
        var hash = root
        var level = level
        var index = size >> UInt64(level)
        newNode(NodeID(level: level, index: index), hash)
        // Each trailing 1 bit of the old size (above `level`) is a finished subtree the new one
        // completes a pair with.
        var bits = index
        while bits & 1 == 1 {
            let left = hashes.removeLast()
            hash = Merkle.nodeHash(left, hash)
            level += 1
            index >>= 1
            newNode(NodeID(level: level, index: index), hash)
            bits >>= 1
        }
        hashes.append(hash)
        size += width
    }

    /// MTH of the first `size` leaves: fold the subtree roots right to left.
    public var root: Hash {
        guard var acc = hashes.last else { return Merkle.emptyRoot }
        for h in hashes.dropLast().reversed() { acc = Merkle.nodeHash(h, acc) }
        return acc
    }
}

/// A perfect subtree: 2^level leaves starting at leaf index × 2^level.
public struct NodeID: Hashable, Sendable, CustomStringConvertible {
    /// Height above the leaves: 0 is one leaf; a node at level L covers 2^L leaves.
    public var level: UInt8
    /// 0-based position among the nodes of its level, from the left.
    public var index: UInt64

    /// The node covering leaves index × 2^level up to (index + 1) × 2^level, exclusive.
    public init(level: UInt8, index: UInt64) {
        self.level = level
        self.index = index
    }

    /// `(level,index)`, for logs and test failures.
    public var description: String { "(\(level),\(index))" }
}
