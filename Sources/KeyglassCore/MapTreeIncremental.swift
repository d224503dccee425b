/// Where a node of the map sits: its depth and the first `depth` bits of every label under it.
public struct MapPosition: Hashable, Sendable {
    /// 0 (the root) … 256.
    public let depth: Int
    /// The label bits above `depth`; the rest are zero.
    public let prefix: Hash

    /// The position at `depth` on `label`'s path.
    public init(label: Hash, depth: Int) {
        precondition((0...256).contains(depth))
        let whole = depth / 8
        self.depth = depth
        prefix = label.withBytesChanged { b in
            guard whole < 32 else { return }
            b[whole] &= UInt8(truncatingIfNeeded: 0xff00 >> (depth % 8))
            for i in (whole + 1)..<32 { b[i] = 0 }
        }
    }

    /// A position whose prefix is already masked to `depth` bits.
    fileprivate init(masked prefix: Hash, depth: Int) {
        self.depth = depth
        self.prefix = prefix
        assert(MapPosition(label: prefix, depth: depth).prefix == prefix, "a position's bits beyond its depth must be zero")
    }

    /// Hashes the depth and the prefix's first 8 bytes only (equality still compares all of it):
    /// labels are VRF outputs, so positions rarely share 64 bits at any depth, and hashing the
    /// whole prefix was a sixth of a map head's time (maps are dictionaries of positions).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(depth)
        prefix.withUnsafeBytes { hasher.combine($0.loadUnaligned(as: UInt64.self)) }
    }

    /// The other child of this position's parent.
    var sibling: MapPosition {
        let bit = depth - 1
        return MapPosition(masked: prefix.withBytesChanged { $0[bit / 8] ^= 0x80 >> UInt8(bit % 8) }, depth: depth)
    }
}

extension MapPosition {
    /// A child of `parent`: the left (bit 0) or right (bit 1) one.
    public init(child parent: MapPosition, right: Bool) {
        let bit = parent.depth
        precondition(bit < 256, "a leaf's position has no children")
        // The parent's bits beyond its depth are zero, so the child's beyond its own are too.
        let prefix = right ? parent.prefix.withBytesChanged { $0[bit / 8] |= 0x80 >> UInt8(bit % 8) } : parent.prefix
        self.init(masked: prefix, depth: bit + 1)
    }
}

/// A batch's view of a store: each node is read from it at most once, and writes wait in memory
/// until `flush`. A class, so that reads can remember what they read.
private final class BatchCache<Base: MapNodeStore>: MapNodeStore {
    /// The store read through; nil once the writes are taken (`takeWrites`).
    private var base: Base?
    /// Nodes read or written in this batch (`.some(nil)`: known to be empty).
    private var nodes: [MapPosition: MapNode?] = [:]
    private var written: Set<MapPosition> = []

    init(store: Base) { base = store }

    func node(at position: MapPosition) throws -> MapNode? {
        if let known = nodes[position] { return known }
        let read = try base!.node(at: position)
        nodes[position] = .some(read)
        return read
    }

    func set(_ node: MapNode?, at position: MapPosition) {
        nodes[position] = .some(node)
        written.insert(position)
    }

    /// The nodes written in this batch, and the end of this cache's reads: it lets go of its copy
    /// of the store, so a store with value semantics (`MemoryMapNodeStore`'s dictionary) is then
    /// written in place, not copied whole per batch.
    func takeWrites() -> [(position: MapPosition, node: MapNode?)] {
        base = nil
        return written.map { ($0, nodes[$0] ?? nil) }
    }
}

/// A node of the map as stored: a leaf (with its label and value) or an interior node's hash.
/// An empty subtree is stored as nothing.
public enum MapNode: Equatable, Sendable {
    /// A label's leaf.
    case leaf(label: Hash, value: Hash)
    /// An interior node (two or more labels below).
    case interior(Hash)

    /// The node's hash (`MapTree`).
    public var hash: Hash {
        switch self {
        case .leaf(let label, let value): return MapTree.leafHash(label: label, value: value)
        case .interior(let h): return h
        }
    }
}

/// Where the nodes of a map are kept: memory for tests and small maps, a database for the
/// directory's follower and auditors.
public protocol MapNodeStore {
    /// The node at `position`; nil for an empty subtree.
    func node(at position: MapPosition) throws -> MapNode?
    /// Stores `node` at `position` (nil: the subtree is now empty).
    mutating func set(_ node: MapNode?, at position: MapPosition) throws
}

/// A `MapNodeStore` in a dictionary.
public struct MemoryMapNodeStore: MapNodeStore, Sendable {
    private var nodes: [MapPosition: MapNode] = [:]

    /// An empty map.
    public init() {}

    /// Nodes stored (leaves and interior nodes).
    public var count: Int { nodes.count }

    /// The node at `position`; nil for an empty subtree.
    public func node(at position: MapPosition) -> MapNode? { nodes[position] }

    /// Stores `node` at `position`.
    public mutating func set(_ node: MapNode?, at position: MapPosition) { nodes[position] = node }
}

extension MapTree {
    /// A store whose nodes cannot be a map's.
    public enum StoreError: Error, Equatable {
        /// An interior node at depth 256, where only leaves can be.
        case interiorAtTheBottom
        /// A leaf stored at a position its label's path does not pass through.
        case leafOffItsPath
        /// A bucket's summary that is out of range or disagrees with its labels (`Bucketed`).
        case bucketMismatch
    }

    /// The map kept up to date one label at a time: each change reads and writes the nodes on one
    /// path (about log2(n) of them), so a map of millions of labels is updated in an epoch for the
    /// cost of its changes, not of its size. Its roots and proofs are those of `Builder` for the same
    /// pairs (`MapTreeTests` checks them against each other).
    public struct Incremental<Store: MapNodeStore> {
        /// The nodes.
        public private(set) var store: Store

        /// The map whose nodes are in `store`.
        public init(store: Store) {
            self.store = store
        }

        /// The root: the hash of the node at depth 0.
        public func root() throws -> Hash {
            try store.node(at: MapPosition(label: .zero, depth: 0))?.hash ?? MapTree.empty
        }

        /// Sets `label`'s value (adding the label if it is new) and rehashes its path.
        public mutating func set(_ label: Hash, value: Hash) throws {
            let depth = try Self.place(label, value, in: &store)
            // Rehash the interior nodes above the leaf, deepest first.
            for d in stride(from: depth - 1, through: 0, by: -1) {
                let left = try childHash(label, depth: d, bit: false)
                let right = try childHash(label, depth: d, bit: true)
                try store.set(.interior(MapTree.interiorHash(left, right)), at: MapPosition(label: label, depth: d))
            }
        }

        /// Sets many labels at once (an epoch's changes; the last value given for a label wins):
        /// each leaf is placed, then every interior node on their paths is hashed once, deepest
        /// first, instead of once per label. Nodes are read and written through a cache for the
        /// batch, so the upper levels every path shares are read once.
        ///
        /// Taken `slice` labels at a time: the cache holds every node on its labels' paths and
        /// their siblings (~40 each), so one head covering a million changes would otherwise hold
        /// ~40M nodes at once; a slice costs only the upper levels' rehashing. Measured on an
        /// auditor replaying 160,000 changes under heads of 70,000 each: peak RSS 139 MB with
        /// slices of 4,096, 90 MB with 1,024 (11.6 s against 10.7 s), 86 MB with 512.
        public mutating func set(_ batch: [(label: Hash, value: Hash)]) throws {
            let slice = 1024
            var from = batch.startIndex
            while from < batch.endIndex {
                let to = min(from + slice, batch.endIndex)
                try setSlice(batch[from..<to])
                from = to
            }
        }

        private mutating func setSlice(_ batch: ArraySlice<(label: Hash, value: Hash)>) throws {
            var cached = BatchCache(store: store)  // a class: `place` writes through the reference
            var dirty: Set<MapPosition> = []
            for (label, value) in batch {
                let depth = try Self.place(label, value, in: &cached)
                for d in 0..<depth { dirty.insert(MapPosition(label: label, depth: d)) }
            }
            // Deepest first, by depth buckets rather than a sort (an epoch dirties ~20 per label).
            var byDepth = [[MapPosition]](repeating: [], count: 257)
            for position in dirty { byDepth[position.depth].append(position) }
            for position in byDepth.reversed().joined() {
                let left = MapPosition(child: position, right: false)
                let right = MapPosition(child: position, right: true)
                let hash = MapTree.interiorHash(try cached.node(at: left)?.hash ?? MapTree.empty, try cached.node(at: right)?.hash ?? MapTree.empty)
                try cached.set(.interior(hash), at: position)
            }
            for w in cached.takeWrites() { try store.set(w.node, at: w.position) }
        }

        /// Puts `label`'s leaf in place (splitting a leaf it meets), without rehashing; returns
        /// the leaf's depth.
        private static func place<S: MapNodeStore>(_ label: Hash, _ value: Hash, in store: inout S) throws -> Int {
            var depth = 0
            while true {
                let position = MapPosition(label: label, depth: depth)
                switch try store.node(at: position) {
                case nil, .leaf(label, _):
                    try store.set(.leaf(label: label, value: value), at: position)
                    return depth
                case .leaf(let other, let otherValue):
                    let parting = MapTree.sharedPrefix(label, other)
                    guard parting >= depth else { throw MapTree.StoreError.leafOffItsPath }
                    for d in depth...parting { try store.set(.interior(.zero), at: MapPosition(label: label, depth: d)) }
                    try store.set(.leaf(label: other, value: otherValue), at: MapPosition(label: other, depth: parting + 1))
                    try store.set(.leaf(label: label, value: value), at: MapPosition(label: label, depth: parting + 1))
                    return parting + 1
                case .interior:
                    depth += 1
                    guard depth <= 256 else { throw MapTree.StoreError.interiorAtTheBottom }
                }
            }
        }

        /// The proof about `label` (membership or absence), read from the stored nodes.
        public func proof(for label: Hash) throws -> Proof {
            var siblings: [Hash] = []
            var depth = 0
            while true {
                switch try store.node(at: MapPosition(label: label, depth: depth)) {
                case nil:
                    return Proof(terminal: .empty, siblings: siblings)
                case .leaf(let other, let value):
                    return Proof(terminal: other == label ? .member(value: value) : .otherLeaf(label: other, value: value), siblings: siblings)
                case .interior:
                    depth += 1
                    guard depth <= 256 else { throw MapTree.StoreError.interiorAtTheBottom }
                    siblings.append(try store.node(at: MapPosition(label: label, depth: depth).sibling)?.hash ?? MapTree.empty)
                }
            }
        }

        /// The hash of the child of `label`'s node at `depth` on the side `bit` (1: right).
        private func childHash(_ label: Hash, depth: Int, bit: Bool) throws -> Hash {
            let onPath = MapPosition(label: label, depth: depth + 1)
            let child = MapTree.bit(label, depth) == bit ? onPath : onPath.sibling
            return try store.node(at: child)?.hash ?? MapTree.empty
        }
    }
}
