import KeyglassCore
import Synchronization

/// The upper levels of the tree, in memory.
///
/// An inclusion proof at size n reads one node per level, ~log2(n) of them. Read from SQLite, each is
/// a B-tree descent that often misses the page cache (a pread and a 4 KiB copy); profiles of the proof
/// endpoint showed those reads as its largest cost. Perfect subtree hashes never change once written,
/// and a level holds half as many nodes as the level below it, so keeping every level from
/// `lowestLevel` up costs about 2·n/2^lowestLevel hashes: the lowest level is chosen so that stays
/// under `budget` hashes (16 MiB by default), whatever the log's size. Proofs then read only the few
/// levels below from SQLite.
///
/// Filled from the database when the log opens and appended by the sequencer after each commit. A
/// node that is not (yet) here is simply read from SQLite, so the cache can never make a proof wrong,
/// only faster.
public final class UpperTreeCache: Sendable {
    private struct State {
        var lowestLevel: UInt8
        /// levels[l - lowestLevel][i] is the hash of node (l, i); each level is complete from index 0.
        var levels: [[Hash]]
        var count: Int
    }

    public let budget: Int
    /// The lowest level ever kept: 1 (the leaves are one B-tree lookup away in a local engine), or 0
    /// for an engine across the network, where a leaf read is a round trip (every publish's answer
    /// and most proofs need one).
    public let minimumLevel: UInt8
    private let state: Mutex<State>

    /// `budget`: most hashes kept (32 bytes each). `keepLeaves`: start from level 0.
    public init(budget: Int = 1 << 19, keepLeaves: Bool = false) {
        self.budget = max(64, budget)
        minimumLevel = keepLeaves ? 0 : 1
        state = Mutex(State(lowestLevel: minimumLevel, levels: [], count: 0))
    }

    /// The lowest level whose nodes, with all levels above, fit the budget at tree size `size`.
    func lowestLevel(forSize size: UInt64) -> UInt8 { Self.lowestLevel(forSize: size, budget: budget, from: minimumLevel) }

    static func lowestLevel(forSize size: UInt64, budget: Int, from minimum: UInt8 = 1) -> UInt8 {
        var level: UInt8 = minimum
        // Nodes at levels ≥ l number fewer than 2·size/2^l.
        while level < 63 && (size >> level) * 2 > UInt64(budget) { level += 1 }
        return level
    }

    public var lowestLevel: UInt8 { state.withLock { $0.lowestLevel } }
    public var count: Int { state.withLock { $0.count } }

    public func hash(_ id: NodeID) -> Hash? {
        state.withLock { s in
            guard id.level >= s.lowestLevel else { return nil }
            let l = Int(id.level - s.lowestLevel)
            guard l < s.levels.count, id.index < UInt64(s.levels[l].count) else { return nil }
            return s.levels[l][Int(id.index)]
        }
    }

    /// How many nodes of `level` the cache holds (0 below its lowest level).
    func levelCount(_ level: UInt8) -> UInt64 {
        state.withLock { s in
            guard level >= s.lowestLevel else { return 0 }
            let l = Int(level - s.lowestLevel)
            return l < s.levels.count ? UInt64(s.levels[l].count) : 0
        }
    }

    /// Sets `found[i]` for every `ids[i]` the cache holds, under one lock, and returns the
    /// positions of those it does not hold (their `found` left as they were).
    func lookUp(_ ids: [NodeID], into found: inout [Hash]) -> [Int] {
        state.withLock { s in
            var missing: [Int] = []
            for (i, id) in ids.enumerated() {
                if id.level >= s.lowestLevel {
                    let l = Int(id.level - s.lowestLevel)
                    if l < s.levels.count, id.index < UInt64(s.levels[l].count) {
                        found[i] = s.levels[l][Int(id.index)]
                        continue
                    }
                }
                missing.append(i)
            }
            return missing
        }
    }

    /// Replaces the contents with the given levels (used when the log opens).
    func reset(lowestLevel: UInt8, levels: [[Hash]]) {
        state.withLock { s in
            s.lowestLevel = lowestLevel
            s.levels = levels
            s.count = levels.reduce(0) { $0 + $1.count }
        }
    }

    /// Adds nodes completed by a committed batch, in the order they were completed. A node is kept
    /// only if it extends its level contiguously; the cache then sheds its lowest level while over budget.
    func append(_ nodes: [(NodeID, Hash)]) {
        state.withLock { s in
            for (id, hash) in nodes where id.level >= s.lowestLevel {
                let l = Int(id.level - s.lowestLevel)
                while s.levels.count <= l { s.levels.append([]) }
                guard UInt64(s.levels[l].count) == id.index else { continue }
                s.levels[l].append(hash)
                s.count += 1
            }
            while s.count > budget, !s.levels.isEmpty {
                s.count -= s.levels.removeFirst().count
                s.lowestLevel += 1
            }
        }
    }
}
