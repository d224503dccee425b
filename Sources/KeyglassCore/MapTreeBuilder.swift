extension MapTree {
    /// The map of a whole set of (label, value) pairs, built from scratch: its root and its proofs.
    /// Straight from the definition in `MapTree` (Spec/map.md), for tests, vectors and maps small
    /// enough to rebuild; the directory's map follower keeps its nodes instead.
    public struct Builder: Sendable {
        /// Sorted by label; labels sort by their bytes, which is the order of their bit paths.
        private let pairs: [(label: Hash, value: Hash)]

        /// The last value given for a label wins.
        public init(_ pairs: [(label: Hash, value: Hash)]) {
            var latest: [Hash: Hash] = [:]
            for p in pairs { latest[p.label] = p.value }
            self.pairs = latest.map { ($0.key, $0.value) }.sorted { Self.precedes($0.label, $1.label) }
        }

        /// Labels in the map.
        public var count: Int { pairs.count }

        /// The map's root (`MapTree.empty` when it holds nothing).
        public var root: Hash { MapTree.subtreeHash(pairs[...], depth: 0) }

        /// The label's value, if the map holds it.
        public func value(of label: Hash) -> Hash? {
            let i = lowerBound(label, in: pairs[...])
            return i < pairs.endIndex && pairs[i].label == label ? pairs[i].value : nil
        }

        /// The proof about `label`: membership if the map holds it, absence otherwise.
        public func proof(for label: Hash) -> Proof {
            var siblings: [Hash] = []
            return MapTree.proof(for: label, below: pairs[...], depth: 0, siblings: &siblings)
        }

        private func lowerBound(_ label: Hash, in range: ArraySlice<(label: Hash, value: Hash)>) -> Int {
            var low = range.startIndex
            var high = range.endIndex
            while low < high {
                let mid = (low + high) / 2
                if Self.precedes(range[mid].label, label) { low = mid + 1 } else { high = mid }
            }
            return low
        }

        static func precedes(_ a: Hash, _ b: Hash) -> Bool {
            a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.lexicographicallyPrecedes(y) } }
        }
    }
}

extension MapTree {
    /// Labels with their values, sorted by label (bytes, which is the order of their bit paths).
    typealias SortedPairs = ArraySlice<(label: Hash, value: Hash)>

    /// The hash of the subtree at `depth` holding `range` (sorted labels sharing their first
    /// `depth` bits): the definition in Spec/map.md, used by `Builder` and by `Bucketed` below its
    /// top levels.
    static func subtreeHash(_ range: SortedPairs, depth: Int) -> Hash {
        if range.isEmpty { return MapTree.empty }
        if range.count == 1, let only = range.first { return MapTree.leafHash(label: only.label, value: only.value) }
        let (left, right) = split(range, depth: depth)
        return MapTree.interiorHash(subtreeHash(left, depth: depth + 1), subtreeHash(right, depth: depth + 1))
    }

    /// The proof about `label` from the subtree at `depth` holding `range` (sorted labels sharing
    /// their first `depth` bits, as `label` does) down, after `siblings` (those above `depth`).
    static func proof(for label: Hash, below range: SortedPairs, depth: Int, siblings: inout [Hash]) -> Proof {
        var range = range
        var depth = depth
        while true {
            if range.isEmpty { return Proof(terminal: .empty, siblings: siblings) }
            if range.count == 1, let only = range.first {
                let terminal: Terminal = only.label == label ? .member(value: only.value) : .otherLeaf(label: only.label, value: only.value)
                return Proof(terminal: terminal, siblings: siblings)
            }
            let (left, right) = split(range, depth: depth)
            if MapTree.bit(label, depth) {
                siblings.append(subtreeHash(left, depth: depth + 1))
                range = right
            } else {
                siblings.append(subtreeHash(right, depth: depth + 1))
                range = left
            }
            depth += 1
        }
    }

    /// Splits a sorted range on bit `depth`: the labels with 0 there come first.
    private static func split(_ range: SortedPairs, depth: Int) -> (SortedPairs, SortedPairs) {
        var low = range.startIndex
        var high = range.endIndex
        while low < high {
            let mid = (low + high) / 2
            if MapTree.bit(range[mid].label, depth) { high = mid } else { low = mid + 1 }
        }
        return (range[range.startIndex..<low], range[low..<range.endIndex])
    }
}
