import Foundation
import KeyglassCore
import KeyglassHTTP

/// Inclusion and consistency proofs computed from a log's hash tiles (c2sp.org/tlog-tiles), for a
/// log served as static files (`keyglass-server export`), which answers no proof request.
///
/// A node of height h = 8·L + r is the Merkle root of 2^r consecutive hashes of height 8·L, all in
/// one tile of level L (tiles are 256 = 2^8 hashes wide and aligned). Every node a proof in the
/// tree of `size` entries needs is complete in that tree, so the tile is read at the width that
/// tree gives it. Nothing read is trusted: the proof is checked against the signed roots as any
/// other, and a tile that lies only makes it fail.
struct TileProofs {
    let client: LogClient
    /// The tree the tiles are read at (the newer checkpoint's size).
    let size: UInt64
    private var tiles: [String: [UInt8]] = [:]

    init(client: LogClient, size: UInt64) {
        self.client = client
        self.size = size
    }

    mutating func consistency(from: UInt64, to: UInt64) async throws -> [Hash] {
        try await assemble(try ProofPlan.consistency(from: from, to: to))
    }

    mutating func inclusion(index: UInt64, size: UInt64) async throws -> [Hash] {
        try await assemble(try ProofPlan.inclusion(index: index, size: size))
    }

    private mutating func assemble(_ plan: ProofPlan) async throws -> [Hash] {
        var hashes: [Hash] = []
        for node in plan.nodes { hashes.append(try await hash(node)) }
        return plan.assemble(hashes)
    }

    /// The hash of `node`, from the tile holding its descendants at the tile level below it.
    private mutating func hash(_ node: NodeID) async throws -> Hash {
        let height = TileLayout.height
        let tileLevel = Int(node.level) / height
        let r = UInt64(Int(node.level) % height)
        let first = node.index << r                      // first hash of height 8·L it covers
        let count = UInt64(1) << r
        let tileIndex = first / TileLayout.width
        let available = TileLayout.hashCount(level: UInt8(tileLevel), treeSize: size)
        guard first + count <= available else { throw ClientError.malformed("node \(node) is not complete in the tree of \(size)") }
        let partial = TileLayout.partialWidth(tileIndex: tileIndex, count: available)
        let width = partial == 0 ? TileLayout.width : partial
        let path = TileLayout.tilePath(level: UInt8(tileLevel), index: tileIndex, partial: partial)
        if tiles[path] == nil {
            let data = [UInt8](try await client.get("/" + path))
            guard data.count == Int(width) * 32 else { throw ClientError.malformed("tile \(path) holds \(data.count) bytes, not \(width * 32)") }
            tiles[path] = data
        }
        let tile = tiles[path]!
        let offset = Int(first - tileIndex * TileLayout.width)
        var level = (0..<Int(count)).map { i in Hash(bytes: Array(tile[(offset + i) * 32..<(offset + i + 1) * 32]))! }
        while level.count > 1 {
            level = stride(from: 0, to: level.count, by: 2).map { Merkle.nodeHash(level[$0], level[$0 + 1]) }
        }
        return level[0]
    }
}
