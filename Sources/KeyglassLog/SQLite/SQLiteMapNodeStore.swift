import Foundation
import KeyglassCore

/// The directory map's nodes (`MapTree.Incremental`) in a SQLite table, for the map follower and
/// auditors, whose maps outgrow memory: a million labels are ~2M nodes, ~150 MB in a dictionary.
///
/// One row per non-empty node, keyed by its position: the depth (2 bytes) and the label bits above
/// it (⌈depth/8⌉ bytes, the rest known to be zero), so a key is at most 34 bytes. A leaf's row holds
/// 0x01 ‖ label ‖ value, an interior node's 0x02 ‖ hash. Not thread-safe: one owner calls it, and
/// wraps each epoch's updates in `transaction` (a commit per node would cost a sync each).
public final class SQLiteMapNodeStore: MapNodeStore {
    private let db: SQLiteConnection
    /// The nodes of the top levels (depth ≤ `cachedDepth`), empty ones too: every proof and every
    /// update reads them (two reads a level), and there are at most 2^(cachedDepth+1) of them,
    /// ~5 MB at 14. Written through on `set`; `clearCache` after a rolled-back transaction.
    private var cache: [MapPosition: MapNode?] = [:]
    static let cachedDepth = 14

    /// Opens (or creates) the table in the database at `path`.
    public init(path: String, sync: SyncMode = .full) throws {
        db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=\(sync.rawValue)")
        try db.execute(Self.table)
    }

    /// The table in a database another owner keeps (an auditor's state: its nodes commit with the
    /// rest of what it stores).
    init(connection: SQLiteConnection) throws {
        db = connection
        try db.execute(Self.table)
    }

    private static let table = "CREATE TABLE IF NOT EXISTS map_nodes(position BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID"

    /// Runs `body` in one transaction: all of its node writes commit together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try db.transaction(body)
    }

    /// The cached top levels as they are now: after a head's transaction commits, what lookups on
    /// reader connections use for those levels instead of reading them (`DirectoryStateReader`).
    public var topLevels: [MapPosition: MapNode?] { cache }

    /// Forgets the cached top levels (their rows may have rolled back).
    public func clearCache() { cache.removeAll() }

    /// The node at `position`, or nil for an empty subtree.
    public func node(at position: MapPosition) throws -> MapNode? {
        if position.depth <= Self.cachedDepth, let hit = cache[position] { return hit }
        let node = try read(position)
        if position.depth <= Self.cachedDepth { cache[position] = .some(node) }
        return node
    }

    private func read(_ position: MapPosition) throws -> MapNode? {
        try Self.read(position, from: db)
    }

    /// The node at `position` as `db` has it (the table's reader: a lookup's read transaction).
    static func read(_ position: MapPosition, from db: SQLiteConnection) throws -> MapNode? {
        let s = try db.statement("SELECT node FROM map_nodes WHERE position = ?")
        s.bind(1, Self.key(position))
        let b: [UInt8]? = try s.step() ? s.blob(0) : nil
        // A statement left on its row would hold a read transaction (and the WAL) open.
        db.releaseStatements()
        guard let b else { return nil }
        switch (b.first, b.count) {
        case (0x01, 65): return .leaf(label: Hash(bytes: b[1..<33])!, value: Hash(bytes: b[33..<65])!)
        case (0x02, 33): return .interior(Hash(bytes: b[1..<33])!)
        default: throw StoreError.corrupt("map node at depth \(position.depth) is not a leaf or an interior node")
        }
    }

    /// Stores `node` at `position` (nil deletes it).
    public func set(_ node: MapNode?, at position: MapPosition) throws {
        if position.depth <= Self.cachedDepth { cache[position] = .some(node) }
        guard let node else {
            let d = try db.statement("DELETE FROM map_nodes WHERE position = ?")
            d.bind(1, Self.key(position))
            try d.step()
            return
        }
        let s = try db.statement("INSERT OR REPLACE INTO map_nodes(position, node) VALUES(?, ?)")
        s.bind(1, Self.key(position))
        switch node {
        case .leaf(let label, let value): s.bind(2, [0x01] + label.bytes + value.bytes)
        case .interior(let hash): s.bind(2, [0x02] + hash.bytes)
        }
        try s.step()
    }

    /// Nodes stored (for tests and sizing).
    public func count() throws -> Int {
        let s = try db.statement("SELECT count(*) FROM map_nodes")
        try s.step()
        return Int(s.int64(0))
    }

    private static func key(_ p: MapPosition) -> [UInt8] {
        [UInt8(p.depth >> 8), UInt8(p.depth & 0xff)] + p.prefix.bytes.prefix((p.depth + 7) / 8)
    }
}
