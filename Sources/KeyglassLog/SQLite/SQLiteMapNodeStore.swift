import Foundation
import KeyglassCore

/// The directory map's nodes (`MapTree.Incremental`) in a SQLite table, for the directory server
/// and auditors, whose maps outgrow memory: a million labels are ~2M nodes, ~150 MB in a dictionary.
///
/// One row per non-empty node, keyed by its position: the depth (2 bytes) and the label bits above
/// it (⌈depth/8⌉ bytes, the rest known to be zero), so a key is at most 34 bytes. A leaf's row holds
/// 0x01 ‖ label ‖ value, an interior node's 0x02 ‖ hash. Not thread-safe: one owner calls it, and
/// wraps each epoch's updates in `transaction` (a commit per node would cost a sync each).
///
/// **The top levels live in memory only.** Every node at depth ≤ `memoryDepth` is kept in `top`
/// (at most 2^(memoryDepth+1) − 1 of them, ~3 MB at 14), and the interior ones are not written to
/// the table: an epoch of a few thousand random labels rewrites nearly every one of them (there
/// are 8,191 down to depth 12), which as rows was most of an epoch's writes. Leaves at those
/// depths are written too, so the table with them determines the map: opening the store (and
/// `reload`, after a rolled-back transaction) rehashes the interior nodes at depth ≤ `memoryDepth`
/// from the rows at depth `memoryDepth` + 1 and the leaves above.
public final class SQLiteMapNodeStore: MapNodeStore {
    private let db: SQLiteConnection
    /// Every non-empty node at depth ≤ `memoryDepth`; a position not in it is empty.
    private var top: [MapPosition: MapNode] = [:]
    /// The deepest level held in `top` (and not stored as interior rows).
    public static let memoryDepth = 14

    /// Opens (or creates) the table in the database at `path`.
    public init(path: String, sync: SyncMode = .full) throws {
        db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=\(sync.rawValue)")
        try db.execute(Self.table)
        try reload()
    }

    /// The table in a database another owner keeps (an auditor's state: its nodes commit with the
    /// rest of what it stores).
    init(connection: SQLiteConnection) throws {
        db = connection
        try db.execute(Self.table)
        try reload()
    }

    private static let table = "CREATE TABLE IF NOT EXISTS map_nodes(position BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID"

    /// Runs `body` in one transaction: all of its node writes commit together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try db.transaction(body)
    }

    /// The top levels as they are now: after a head's transaction commits, what lookups on reader
    /// connections use for those levels (`DirectoryStateReader`), where the table has no interior rows.
    public var topLevels: [MapPosition: MapNode] { top }

    /// Rebuilds the top levels from the table (on opening, and after a transaction rolled back).
    public func reload() throws {
        var levels = [[MapPosition: MapNode]](repeating: [:], count: Self.memoryDepth + 2)
        // Rows above depth memoryDepth + 2: keys start with the depth's two bytes.
        let s = try db.statement("SELECT position, node FROM map_nodes WHERE position < ?")
        s.bind(1, [UInt8(0), UInt8(Self.memoryDepth + 2)])
        while try s.step() {
            let key = s.blob(0)
            guard key.count >= 2 else { throw StoreError.corrupt("a map node's position is unreadable") }
            let depth = Int(key[0]) << 8 | Int(key[1])
            var prefix = [UInt8](repeating: 0, count: 32)
            guard key.count == 2 + (depth + 7) / 8 else { throw StoreError.corrupt("a map node's position is unreadable") }
            prefix.replaceSubrange(0..<(key.count - 2), with: key[2...])
            let position = MapPosition(label: Hash(bytes: prefix)!, depth: depth)
            let node = try Self.decode(s.blob(1), depth: depth)
            if depth <= Self.memoryDepth, case .interior = node { continue }  // a row from before: rehashed below
            levels[depth][position] = node
        }
        db.releaseStatements()
        for depth in stride(from: Self.memoryDepth, through: 0, by: -1) {
            var parents: Set<MapPosition> = []
            for child in levels[depth + 1].keys { parents.insert(MapPosition(label: child.prefix, depth: depth)) }
            for parent in parents {
                guard levels[depth][parent] == nil else { throw StoreError.corrupt("a map leaf at depth \(depth) has nodes below it") }
                let left = levels[depth + 1][MapPosition(child: parent, right: false)]?.hash ?? MapTree.empty
                let right = levels[depth + 1][MapPosition(child: parent, right: true)]?.hash ?? MapTree.empty
                levels[depth][parent] = .interior(MapTree.interiorHash(left, right))
            }
        }
        top = [:]
        for depth in 0...Self.memoryDepth { top.merge(levels[depth]) { a, _ in a } }
    }

    /// The node at `position`, or nil for an empty subtree.
    public func node(at position: MapPosition) throws -> MapNode? {
        if position.depth <= Self.memoryDepth { return top[position] }
        return try Self.read(position, from: db)
    }

    /// The node at `position` (below the top levels) as `db` has it: a lookup's read transaction.
    static func read(_ position: MapPosition, from db: SQLiteConnection) throws -> MapNode? {
        let s = try db.statement("SELECT node FROM map_nodes WHERE position = ?")
        s.bind(1, Self.key(position))
        let b: [UInt8]? = try s.step() ? s.blob(0) : nil
        // A statement left on its row would hold a read transaction (and the WAL) open.
        db.releaseStatements()
        guard let b else { return nil }
        return try decode(b, depth: position.depth)
    }

    private static func decode(_ b: [UInt8], depth: Int) throws -> MapNode {
        switch (b.first, b.count) {
        case (0x01, 65): return .leaf(label: Hash(bytes: b[1..<33])!, value: Hash(bytes: b[33..<65])!)
        case (0x02, 33): return .interior(Hash(bytes: b[1..<33])!)
        default: throw StoreError.corrupt("map node at depth \(depth) is not a leaf or an interior node")
        }
    }

    /// Stores `node` at `position` (nil deletes it). In the top levels only leaves are rows: an
    /// interior node there replaces a leaf's row only when a leaf was there (a split).
    public func set(_ node: MapNode?, at position: MapPosition) throws {
        if position.depth <= Self.memoryDepth {
            let before = top[position]
            top[position] = node
            switch (before, node) {
            case (_, .some(.leaf)): break  // written below
            case (.some(.leaf), _): try delete(position)
            default: return
            }
        }
        guard let node else { return try delete(position) }
        let s = try db.statement("INSERT OR REPLACE INTO map_nodes(position, node) VALUES(?, ?)")
        s.bind(1, Self.key(position))
        switch node {
        case .leaf(let label, let value): s.bind(2, [0x01] + label.bytes + value.bytes)
        case .interior(let hash): s.bind(2, [0x02] + hash.bytes)
        }
        try s.step()
    }

    private func delete(_ position: MapPosition) throws {
        let d = try db.statement("DELETE FROM map_nodes WHERE position = ?")
        d.bind(1, Self.key(position))
        try d.step()
    }

    /// Nodes held: the table's below the top levels, and the top levels'.
    public func count() throws -> Int {
        let s = try db.statement("SELECT count(*) FROM map_nodes WHERE position >= ?")
        s.bind(1, [UInt8(0), UInt8(Self.memoryDepth + 1)])
        try s.step()
        defer { db.releaseStatements() }
        return Int(s.int64(0)) + top.count
    }

    private static func key(_ p: MapPosition) -> [UInt8] {
        [UInt8(p.depth >> 8), UInt8(p.depth & 0xff)] + p.prefix.bytes.prefix((p.depth + 7) / 8)
    }
}
