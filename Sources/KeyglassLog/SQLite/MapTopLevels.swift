import KeyglassCore

/// The map's nodes at depths 0…`maxDepth`, one array per depth indexed by the position's prefix
/// bits: no hashing on lookups, ~66 bytes a slot (2^(maxDepth+1) slots, ~2 MB at 14), and a copy
/// of one depth's array, not of a dictionary of all of them, when a snapshot shares it and the
/// follower writes the next head.
public struct MapTopLevels: Sendable {
    private var levels: [[MapNode?]]

    /// Empty levels 0…`maxDepth`.
    public init(maxDepth: Int) {
        levels = (0...maxDepth).map { [MapNode?](repeating: nil, count: 1 << $0) }
    }

    /// The node at `position` (its depth at most `maxDepth`), nil for an empty subtree.
    public subscript(position: MapPosition) -> MapNode? {
        get { levels[position.depth][Self.index(position)] }
        set { levels[position.depth][Self.index(position)] = newValue }
    }

    /// Non-empty nodes held.
    public var count: Int { levels.reduce(0) { $0 + $1.reduce(0) { $0 + ($1 == nil ? 0 : 1) } } }

    /// The first `depth` bits of the prefix (depth ≤ 16), as an index.
    private static func index(_ p: MapPosition) -> Int {
        guard p.depth > 0 else { return 0 }
        let top16 = p.prefix.withUnsafeBytes { Int($0[0]) << 8 | Int($0[1]) }
        return top16 >> (16 - p.depth)
    }
}
