import KeyglassCore

/// The log as readers see it: a storage engine (`LogStorage`) plus the tree's upper levels in
/// memory (`UpperTreeCache`), which the sequencer keeps current. Proofs are planned by the core
/// (`ProofPlan`), their nodes read from the cache or in one call to the engine, and folded.
///
/// Engine-independent on purpose: whatever stores the log, proofs are assembled here the same way.
public final class LogStore: Sendable {
    /// The engine. Its reads are the log's reads; its writes are the sequencer's alone.
    public let storage: any LogStorage
    /// The tree's upper levels in memory (see `UpperTreeCache`); kept current by the sequencer.
    public let upperTree: UpperTreeCache

    public init(storage: any LogStorage, upperTreeBudget: Int = 1 << 19) {
        self.storage = storage
        upperTree = UpperTreeCache(budget: upperTreeBudget, keepLeaves: !storage.readsAreLocal)
    }

    /// Closes the engine. Call once nothing reads or writes any more.
    public func close() { storage.close() }

    // MARK: Checkpoints and entries (the engine's, as they are)

    public func latestCheckpoint() throws -> StoredCheckpoint? { try storage.latestCheckpoint() }
    public func checkpoint(size: UInt64) throws -> StoredCheckpoint? { try storage.checkpoint(size: size) }
    public func checkpointCount() throws -> UInt64 { try storage.checkpointCount() }
    public func entries(start: UInt64, end: UInt64) throws -> [StoredEntry] { try storage.entries(start: start, end: end) }
    public func entry(at index: UInt64) throws -> StoredEntry? { try storage.entries(start: index, end: index + 1).first }
    public func entryBundle(start: UInt64, end: UInt64) throws -> [UInt8] { try storage.entryBundle(start: start, end: end) }
    public func levelHashes(level: UInt8, start: UInt64, count: UInt64) throws -> [UInt8] {
        try storage.levelHashes(level: level, start: start, count: count)
    }
    public func entries(identity: String, below size: UInt64, limit: Int) throws -> [StoredEntry] {
        try storage.entries(identity: identity, below: size, limit: limit)
    }
    public func index(ofLeafHash hash: Hash, below size: UInt64) throws -> UInt64? {
        try storage.index(ofLeafHash: hash, below: size)
    }

    // MARK: Node hashes and proofs

    /// The hashes of `ids`, in order: the upper levels from memory, the rest in one call to the engine.
    func hashes(of ids: [NodeID]) throws -> [Hash] {
        var found = [Hash](repeating: .zero, count: ids.count)
        let missing = upperTree.lookUp(ids, into: &found)
        if !missing.isEmpty {
            let read = try storage.nodeHashes(missing.map { ids[$0] })
            guard read.count == missing.count else { throw StoreError.corrupt("\(read.count) node hashes read for \(missing.count) nodes") }
            for (k, i) in missing.enumerated() { found[i] = read[k] }
        }
        return found
    }

    /// Inclusion proof of `index` in the tree of `size` (size must not exceed the stored tree).
    public func inclusionProof(index: UInt64, size: UInt64) throws -> [Hash] {
        let plan = try ProofPlan.inclusion(index: index, size: size)
        return plan.assemble(try hashes(of: plan.nodes))
    }

    /// The leaf hash of `index` and its inclusion proof, read in one call to the engine.
    public func inclusionProofWithLeaf(index: UInt64, size: UInt64) throws -> (Hash, [Hash]) {
        let plan = try ProofPlan.inclusion(index: index, size: size)
        let hashes = try hashes(of: plan.nodes + [NodeID(level: 0, index: index)])
        return (hashes[plan.nodes.count], plan.assemble(hashes[..<plan.nodes.count]))
    }

    /// Inclusion proofs of several entries in the tree of `size`, their nodes read in one call to
    /// the engine (a lookup proves every entry of an identity's history at once). Each plan's
    /// nodes in turn, not merged: the nodes proofs share are the upper levels, read from memory,
    /// while a table of positions to merge them cost ~6% of a lookup (hashing).
    public func inclusionProofs(indices: [UInt64], size: UInt64) throws -> [[Hash]] {
        let plans = try indices.map { try ProofPlan.inclusion(index: $0, size: size) }
        let hashes = try hashes(of: Array(plans.map(\.nodes).joined()))
        var start = 0
        return plans.map { plan in
            defer { start += plan.nodes.count }
            return plan.assemble(hashes[start..<start + plan.nodes.count])
        }
    }

    public func consistencyProof(from: UInt64, to: UInt64) throws -> [Hash] {
        let plan = try ProofPlan.consistency(from: from, to: to)
        return plan.assemble(try hashes(of: plan.nodes))
    }

    // MARK: Opening the log

    /// The stored compact range for `size`: what the sequencer resumes from after a restart.
    func compactRange(size: UInt64) throws -> CompactRange {
        let ids = CompactRange.subtrees(forSize: size)
        guard let range = CompactRange(size: size, hashes: try storage.nodeHashes(ids)) else {
            throw StoreError.corrupt("cannot rebuild the tree edge at size \(size)")
        }
        return range
    }

    /// Extends `upperTree` with the nodes another server's appends completed up to `size` (a server
    /// that follows a shared log): a few reads per level, not the whole upper tree again.
    func catchUpUpperTree(size: UInt64) throws {
        var nodes: [(NodeID, Hash)] = []
        var level = upperTree.lowestLevel
        while level < 64 && size >> level > 0 {
            let have = upperTree.levelCount(level)
            let want = size >> level
            if want > have {
                let bytes = try storage.levelHashes(level: level, start: have, count: want - have)
                for (k, start) in stride(from: 0, to: bytes.count, by: 32).enumerated() {
                    nodes.append((NodeID(level: level, index: have + UInt64(k)), Hash(bytes: bytes[start..<start + 32])!))
                }
            }
            level += 1
        }
        upperTree.append(nodes)
    }

    /// Loads the upper tree levels of the tree of `size` into `upperTree` (when the log opens).
    func loadUpperTree(size: UInt64) throws {
        let lowest = upperTree.lowestLevel(forSize: size)
        var levels: [[Hash]] = []
        var level = lowest
        while level < 64 && size >> level > 0 {
            let bytes = try storage.levelHashes(level: level, start: 0, count: size >> level)
            levels.append(stride(from: 0, to: bytes.count, by: 32).map { Hash(bytes: bytes[$0..<$0 + 32])! })
            level += 1
        }
        upperTree.reset(lowestLevel: lowest, levels: levels)
    }
}
