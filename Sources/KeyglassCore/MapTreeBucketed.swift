/// A map kept up to date by whoever derives it (the server's map, an auditor's): what
/// `DirectoryReplay` needs of it. Two ways of keeping one: `MapTree.Incremental` (every node
/// stored: cheap in memory) and `MapTree.Bucketed` (only leaves stored: cheap in a database).
/// Both give `Builder`'s roots and proofs for the same pairs.
public protocol UpdatableMap {
    /// The root of the map.
    func root() throws -> Hash
    /// Sets many labels' values (adding the labels that are new); the last value given for a
    /// label wins.
    mutating func set(_ batch: [(label: Hash, value: Hash)]) throws
    /// The proof about `label`: membership if the map holds it, absence otherwise.
    func proof(for label: Hash) throws -> MapTree.Proof
}

extension MapTree.Incremental: UpdatableMap {}

/// Where a bucketed map keeps its labels: every (label, value) pair, readable a bucket at a time
/// (the labels sharing their first `MapTree.Bucketed.bucketBits` bits, in label order), and a
/// summary per bucket (its subtree's hash and whether it holds 0, 1 or more labels), so a map
/// reopens without reading every label.
public protocol MapBucketStore {
    /// The labels of bucket `bucket` (its first `bucketBits` bits as a number) with their values,
    /// sorted by label.
    func leaves(inBucket bucket: Int) throws -> [(label: Hash, value: Hash)]
    /// Sets each pair's value, in order (a label given twice keeps the last).
    mutating func setLeaves(_ pairs: [(label: Hash, value: Hash)]) throws
    /// Every non-empty bucket's summary, as last set.
    func summaries() throws -> [(bucket: Int, count: UInt8, hash: Hash)]
    /// Sets a bucket's summary: `count` is 0, 1 or 2 (two or more labels).
    mutating func setSummary(bucket: Int, count: UInt8, hash: Hash) throws
}

extension MapTree {
    /// A map whose store holds only its leaves: the subtrees at depth `bucketBits` (buckets) are
    /// hashed from their labels when they change or a proof passes through them, and the levels
    /// above are kept in memory (~4 MB at 16 bits). Each change writes one leaf row and one
    /// bucket summary instead of a whole path of ~log2(n) nodes, which is what made a map in
    /// SQLite several times slower than in memory; reading a bucket costs one range scan of its
    /// labels (n / 65,536 of them: ~4 at 239k labels, ~150 at 10M).
    ///
    /// The levels in memory are those of the store's summaries: if a transaction around `set` is
    /// rolled back, open the map again (the store's summaries are then the truth).
    public struct Bucketed<Store: MapBucketStore>: UpdatableMap {
        /// The depth of the buckets: the levels above it are in memory.
        public static var bucketBits: Int { MapTree.bucketedDepth }

        /// The labels and bucket summaries.
        public private(set) var store: Store
        /// The levels above the buckets, as of the store's summaries.
        public private(set) var top: TopLevels

        /// The map whose labels are in `store` (empty or not): its levels above the buckets are
        /// rebuilt from the store's summaries.
        public init(store: Store) throws {
            self.store = store
            top = TopLevels()
            var dirty: [Int] = []
            for s in try store.summaries() {
                guard (0..<(1 << Self.bucketBits)).contains(s.bucket), (1...2).contains(s.count) else {
                    throw StoreError.bucketMismatch
                }
                top.hashes[Self.bucketBits][s.bucket] = s.hash
                top.counts[Self.bucketBits][s.bucket] = s.count
                dirty.append(s.bucket)
            }
            top.rehashAbove(dirty.sorted())
        }

        /// The map of `top` (taken from a map over the same labels) reading its buckets from
        /// `store`: a lookup's view of a map another thread keeps, on a connection of its own.
        public init(store: Store, top: TopLevels) {
            self.store = store
            self.top = top
        }

        /// Sets every bucket's summary from its labels: for a store whose labels were written by
        /// other means (a state migrated from stored nodes).
        public static func summarizeAll(_ store: inout Store) throws {
            for bucket in 0..<(1 << bucketBits) {
                let leaves = try store.leaves(inBucket: bucket)
                try store.setSummary(bucket: bucket, count: UInt8(min(leaves.count, 2)), hash: MapTree.subtreeHash(leaves[...], depth: bucketBits))
            }
        }

        /// The root: the hash of the subtree at depth 0.
        public func root() -> Hash { top.hashes[0][0] }

        /// Sets many labels' values: their leaves are stored, each bucket they fall in is hashed
        /// once from its labels, and the levels above once per node on their paths.
        public mutating func set(_ batch: [(label: Hash, value: Hash)]) throws {
            guard !batch.isEmpty else { return }
            try store.setLeaves(batch)
            var buckets = Set<Int>()
            for (label, _) in batch { buckets.insert(Self.index(label, depth: Self.bucketBits)) }
            let dirty = buckets.sorted()
            for bucket in dirty {
                let leaves = try store.leaves(inBucket: bucket)
                let count = UInt8(min(leaves.count, 2))
                let hash = MapTree.subtreeHash(leaves[...], depth: Self.bucketBits)
                top.hashes[Self.bucketBits][bucket] = hash
                top.counts[Self.bucketBits][bucket] = count
                try store.setSummary(bucket: bucket, count: count, hash: hash)
            }
            top.rehashAbove(dirty)
        }

        /// The proof about `label`, from the levels in memory down to its bucket, then from the
        /// bucket's labels.
        public func proof(for label: Hash) throws -> Proof {
            var siblings: [Hash] = []
            var depth = 0
            while depth < Self.bucketBits {
                let i = Self.index(label, depth: depth)
                switch top.counts[depth][i] {
                case 0:
                    return Proof(terminal: .empty, siblings: siblings)
                case 1:
                    // One label under this node, maybe off `label`'s path below: its leaf is the
                    // terminal, found by following the non-empty child down to its bucket.
                    var (d, j) = (depth, i)
                    while d < Self.bucketBits {
                        j = top.counts[d + 1][2 * j] == 1 ? 2 * j : 2 * j + 1
                        d += 1
                    }
                    let bucket = try store.leaves(inBucket: j)
                    guard bucket.count == 1, let only = bucket.first else { throw StoreError.bucketMismatch }
                    let terminal: Terminal = only.label == label ? .member(value: only.value) : .otherLeaf(label: only.label, value: only.value)
                    return Proof(terminal: terminal, siblings: siblings)
                default:
                    siblings.append(top.hashes[depth + 1][Self.index(label, depth: depth + 1) ^ 1])
                    depth += 1
                }
            }
            let leaves = try store.leaves(inBucket: Self.index(label, depth: Self.bucketBits))
            return MapTree.proof(for: label, below: leaves[...], depth: Self.bucketBits, siblings: &siblings)
        }

        /// The first `depth` (≤ 16) bits of `label`, as a number.
        static func index(_ label: Hash, depth: Int) -> Int {
            let top = label.withUnsafeBytes { Int($0[0]) << 8 | Int($0[1]) }
            return top >> (16 - depth)
        }
    }
}

extension MapTree {
    /// The depth of a bucketed map's buckets (`Bucketed.bucketBits`).
    static let bucketedDepth = 16

    /// A bucketed map's levels above its buckets: `hashes[d][i]` is the hash of the subtree at
    /// depth d whose first d bits are i, `counts[d][i]` how many labels it holds, 2 meaning two or
    /// more (what its hash depends on: E, the one leaf's hash, or an interior node's). A value:
    /// a lookup keeps the levels of the head it answers against while the map moves on.
    public struct TopLevels: Sendable {
        var hashes: [[Hash]]
        var counts: [[UInt8]]

        /// The levels of the empty map.
        init() {
            hashes = (0...MapTree.bucketedDepth).map { [Hash](repeating: MapTree.empty, count: 1 << $0) }
            counts = (0...MapTree.bucketedDepth).map { [UInt8](repeating: 0, count: 1 << $0) }
        }

        /// Rehashes every node above the given buckets (sorted), deepest level first.
        mutating func rehashAbove(_ buckets: [Int]) {
            var level = buckets
            for depth in stride(from: MapTree.bucketedDepth - 1, through: 0, by: -1) {
                var parents: [Int] = []
                parents.reserveCapacity(level.count)
                for child in level where parents.last != child >> 1 { parents.append(child >> 1) }
                for i in parents {
                    let (lc, rc) = (counts[depth + 1][2 * i], counts[depth + 1][2 * i + 1])
                    let (lh, rh) = (hashes[depth + 1][2 * i], hashes[depth + 1][2 * i + 1])
                    let count = min(lc + rc, 2)
                    counts[depth][i] = count
                    switch count {
                    case 0: hashes[depth][i] = MapTree.empty
                    // A subtree of one label hashes as that label's leaf, wherever it sits.
                    case 1: hashes[depth][i] = lc == 1 ? lh : rh
                    default: hashes[depth][i] = MapTree.interiorHash(lh, rh)
                    }
                }
                level = parents
            }
        }
    }
}

/// A `MapBucketStore` in memory, for tests and the bench's reference.
public struct MemoryMapBucketStore: MapBucketStore, Sendable {
    private var buckets: [Int: [Hash: Hash]] = [:]
    private var summary: [Int: (count: UInt8, hash: Hash)] = [:]

    /// An empty store.
    public init() {}

    /// The bucket's labels with their values, sorted by label.
    public func leaves(inBucket bucket: Int) -> [(label: Hash, value: Hash)] {
        (buckets[bucket] ?? [:]).map { ($0.key, $0.value) }.sorted { MapTree.Builder.precedes($0.label, $1.label) }
    }

    /// Sets each pair's value, in order.
    public mutating func setLeaves(_ pairs: [(label: Hash, value: Hash)]) {
        let bits = MapTree.Bucketed<Self>.bucketBits
        for (label, value) in pairs { buckets[MapTree.Bucketed<Self>.index(label, depth: bits), default: [:]][label] = value }
    }

    /// Every non-empty bucket's summary.
    public func summaries() -> [(bucket: Int, count: UInt8, hash: Hash)] {
        summary.map { ($0.key, $0.value.count, $0.value.hash) }
    }

    /// Sets a bucket's summary (count 0: the bucket is empty).
    public mutating func setSummary(bucket: Int, count: UInt8, hash: Hash) {
        summary[bucket] = count == 0 ? nil : (count, hash)
    }
}
