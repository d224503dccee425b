import Foundation
import KeyglassCore

/// The directory map's nodes (`MapTree.Incremental`) in SQLite, for the directory server and
/// auditors, whose maps outgrow memory: a million labels are ~2M nodes, ~150 MB in a dictionary.
/// Not thread-safe: one owner calls it, and wraps each epoch's updates in a transaction (this
/// type's, or `DirectoryStateStore`'s), at whose end the buckets written are stored (`flush`).
///
/// **The top levels live in memory only.** Every node at depth ≤ `memoryDepth` is kept in `top`
/// (at most 2^(memoryDepth+1) − 1 of them, ~3 MB at 14): an epoch of a few thousand random labels
/// rewrites nearly all of them (there are 8,191 down to depth 12). Only leaves at those depths
/// are rows (`map_nodes`, keyed by depth and prefix bits); opening the store, and `reload` after
/// a rolled-back transaction, rehashes the interior ones from the rows.
///
/// **Below, one row per subtree.** The nodes under each position at depth `memoryDepth` (a
/// "bucket": 2^14 of them) are one row of `map_buckets`, so an epoch writes a row per bucket it
/// touches, not one per node (a path below depth 14 is ~5 nodes at 200k labels), and a lookup
/// reads one row for every node below the top levels that its proof needs, sibling at depth 15
/// included. A bucket holds ~n/2^14 labels: fine to a few million labels; beyond, `memoryDepth`
/// should grow (the state is derived: a store of another layout is rebuilt, not read).
public final class SQLiteMapNodeStore: MapNodeStore {
    private let db: SQLiteConnection
    /// Every non-empty node at depth ≤ `memoryDepth`; a position not in it is empty.
    private var top = MapTopLevels(maxDepth: SQLiteMapNodeStore.memoryDepth)
    /// The deepest level held in `top` (and not stored as interior rows).
    public static let memoryDepth = 14
    /// Buckets read or written since the last `flush` (the written ones in `dirty`).
    private var buckets: [Int: [MapPosition: MapNode]] = [:]
    private var dirty: Set<Int> = []
    /// Most buckets held at once (~4 KB each at 200k labels): past it the written ones are stored
    /// (still inside the caller's transaction) and all are forgotten, so an epoch that touches
    /// every bucket does not hold the whole map.
    private static let maxHeldBuckets = 512

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

    private static let table = """
        CREATE TABLE IF NOT EXISTS map_nodes(position BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS map_buckets(bucket INTEGER PRIMARY KEY, nodes BLOB NOT NULL)
        """

    /// Runs `body` in one transaction: all of its node writes commit together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try Self.transaction(on: db, store: self, body)
    }

    /// A transaction on `db` (this store's connection) that stores the buckets written before it
    /// commits, and forgets what it held in memory if it rolls back.
    static func transaction<T>(on db: SQLiteConnection, store: SQLiteMapNodeStore, _ body: () throws -> T) throws -> T {
        do {
            return try db.transaction {
                let result = try body()
                try store.flush()
                return result
            }
        } catch {
            try? store.reload()
            throw error
        }
    }

    /// Writes the buckets changed since the last flush (inside the caller's transaction), and
    /// forgets the buckets held.
    public func flush() throws {
        for id in dirty {
            let nodes = buckets[id] ?? [:]
            if nodes.isEmpty {
                let d = try db.statement("DELETE FROM map_buckets WHERE bucket = ?")
                d.bind(1, Int64(id))
                try d.step()
            } else {
                let w = try db.statement("INSERT OR REPLACE INTO map_buckets(bucket, nodes) VALUES(?, ?)")
                w.bind(1, Int64(id))
                w.bind(2, Self.encode(nodes))
                try w.step()
            }
        }
        dirty.removeAll(keepingCapacity: true)
        buckets.removeAll(keepingCapacity: false)
    }

    /// The top levels as they are now: after a head's transaction commits, what lookups on reader
    /// connections use for those levels (`DirectoryStateReader`), where the table has no interior rows.
    public var topLevels: MapTopLevels { top }

    /// Rebuilds the top levels from the table (on opening, and after a transaction rolled back).
    public func reload() throws {
        buckets.removeAll()
        dirty.removeAll()
        var levels = [[MapPosition: MapNode]](repeating: [:], count: Self.memoryDepth + 2)
        // The nodes at depth memoryDepth + 1: in the buckets.
        let all = try db.statement("SELECT nodes FROM map_buckets")
        while try all.step() {
            for (position, node) in try Self.decode(all.blob(0)) where position.depth == Self.memoryDepth + 1 {
                levels[position.depth][position] = node
            }
        }
        db.releaseStatements()
        // Rows above depth memoryDepth + 2: keys start with the depth's two bytes.
        let s = try db.statement("SELECT position, node FROM map_nodes")
        while try s.step() {
            let key = s.blob(0)
            guard key.count >= 2 else { throw StoreError.corrupt("a map node's position is unreadable") }
            let depth = Int(key[0]) << 8 | Int(key[1])
            var prefix = [UInt8](repeating: 0, count: 32)
            guard key.count == 2 + (depth + 7) / 8 else { throw StoreError.corrupt("a map node's position is unreadable") }
            prefix.replaceSubrange(0..<(key.count - 2), with: key[2...])
            let position = MapPosition(label: Hash(bytes: prefix)!, depth: depth)
            let node = try Self.decode(s.blob(1), depth: depth)
            guard depth <= Self.memoryDepth, case .leaf = node else {
                throw StoreError.corrupt("the map's nodes are stored in an older layout (a node row at depth \(depth)); delete the state to rebuild it")
            }
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
        top = MapTopLevels(maxDepth: Self.memoryDepth)
        for depth in 0...Self.memoryDepth { for (position, node) in levels[depth] { top[position] = node } }
    }

    /// The node at `position`, or nil for an empty subtree.
    public func node(at position: MapPosition) throws -> MapNode? {
        if position.depth <= Self.memoryDepth { return top[position] }
        return try bucket(Self.bucket(of: position))[position]
    }

    private func bucket(_ id: Int) throws -> [MapPosition: MapNode] {
        if let known = buckets[id] { return known }
        if buckets.count >= Self.maxHeldBuckets { try flush() }
        let read = try Self.readBucket(id, from: db)
        buckets[id] = read
        return read
    }

    /// The bucket (subtree below depth `memoryDepth`) a position deeper than that is in.
    static func bucket(of position: MapPosition) -> Int {
        precondition(position.depth > memoryDepth)
        return position.prefix.withUnsafeBytes { Int($0[0]) << 6 | Int($0[1]) >> 2 }
    }

    /// The nodes of bucket `id` as `db` has them: a lookup's read transaction.
    static func readBucket(_ id: Int, from db: SQLiteConnection) throws -> [MapPosition: MapNode] {
        let s = try db.statement("SELECT nodes FROM map_buckets WHERE bucket = ?")
        s.bind(1, Int64(id))
        let b: [UInt8]? = try s.step() ? s.blob(0) : nil
        // A statement left on its row would hold a read transaction (and the WAL) open.
        db.releaseStatements()
        guard let b else { return [:] }
        return try Dictionary(decode(b), uniquingKeysWith: { a, _ in a })
    }

    /// The row of bucket `id` as `db` has it (empty if none): for a lookup, which finds the few
    /// nodes its proof needs in it (`find`) instead of decoding every node.
    static func readBucketRow(_ id: Int, from db: SQLiteConnection) throws -> [UInt8] {
        let s = try db.statement("SELECT nodes FROM map_buckets WHERE bucket = ?")
        s.bind(1, Int64(id))
        let b: [UInt8] = try s.step() ? s.blob(0) : []
        db.releaseStatements()
        return b
    }

    /// The node at `position` in a bucket's row, scanning the keys in place.
    static func find(_ position: MapPosition, inRow b: [UInt8]) throws -> MapNode? {
        let keyLength = (position.depth + 7) / 8
        return try position.prefix.withUnsafeBytes { prefix -> MapNode? in
            var i = 0
            while i < b.count {
                guard i + 2 <= b.count else { throw StoreError.corrupt("a map bucket is truncated") }
                let depth = Int(b[i]) << 8 | Int(b[i + 1])
                let keyEnd = i + 2 + (depth + 7) / 8
                guard depth > memoryDepth, depth <= 256, keyEnd < b.count else { throw StoreError.corrupt("a map bucket is unreadable") }
                let length = b[keyEnd] == 0x01 ? 65 : 33
                guard keyEnd + length <= b.count else { throw StoreError.corrupt("a map bucket is truncated") }
                if depth == position.depth, (0..<keyLength).allSatisfy({ b[i + 2 + $0] == prefix[$0] }) {
                    return try decode(b[keyEnd..<(keyEnd + length)], depth: depth)
                }
                i = keyEnd + length
            }
            return nil
        }
    }

    /// A bucket's row: each node as its position key (`key`) then its node bytes.
    private static func encode(_ nodes: [MapPosition: MapNode]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(nodes.count * 72)
        for (position, node) in nodes {
            out.append(UInt8(position.depth >> 8))
            out.append(UInt8(position.depth & 0xff))
            position.prefix.withUnsafeBytes { out.append(contentsOf: $0.prefix((position.depth + 7) / 8)) }
            switch node {
            case .leaf(let label, let value):
                out.append(0x01)
                label.withUnsafeBytes { out.append(contentsOf: $0) }
                value.withUnsafeBytes { out.append(contentsOf: $0) }
            case .interior(let hash):
                out.append(0x02)
                hash.withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    private static func decode(_ b: [UInt8]) throws -> [(MapPosition, MapNode)] {
        var out: [(MapPosition, MapNode)] = []
        var i = 0
        while i < b.count {
            guard i + 2 <= b.count else { throw StoreError.corrupt("a map bucket is truncated") }
            let depth = Int(b[i]) << 8 | Int(b[i + 1])
            let keyEnd = i + 2 + (depth + 7) / 8
            guard depth > memoryDepth, depth <= 256, keyEnd < b.count else { throw StoreError.corrupt("a map bucket is unreadable") }
            let prefix = Hash.zero.withBytesChanged { p in for k in 0..<(keyEnd - i - 2) { p[k] = b[i + 2 + k] } }
            let length = b[keyEnd] == 0x01 ? 65 : 33
            guard keyEnd + length <= b.count else { throw StoreError.corrupt("a map bucket is truncated") }
            out.append((MapPosition(label: prefix, depth: depth), try decode(b[keyEnd..<(keyEnd + length)], depth: depth)))
            i = keyEnd + length
        }
        return out
    }

    private static func decode(_ b: [UInt8], depth: Int) throws -> MapNode {
        try decode(b[...], depth: depth)
    }

    private static func decode(_ b: ArraySlice<UInt8>, depth: Int) throws -> MapNode {
        let s = b.startIndex
        switch (b.first, b.count) {
        case (0x01, 65): return .leaf(label: Hash(bytes: b[(s + 1)..<(s + 33)])!, value: Hash(bytes: b[(s + 33)..<(s + 65)])!)
        case (0x02, 33): return .interior(Hash(bytes: b[(s + 1)..<(s + 33)])!)
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
            case (.some(.leaf), _):
                try delete(position)
                return
            default: return
            }
        }
        guard position.depth <= Self.memoryDepth else {
            let id = Self.bucket(of: position)
            _ = try bucket(id)
            buckets[id]![position] = node
            dirty.insert(id)
            return
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

    /// Nodes held (after a flush): the buckets' and the top levels'.
    public func count() throws -> Int {
        let s = try db.statement("SELECT nodes FROM map_buckets")
        var n = top.count
        while try s.step() { n += try Self.decode(s.blob(0)).count }
        db.releaseStatements()
        return n
    }

    private static func key(_ p: MapPosition) -> [UInt8] {
        [UInt8(p.depth >> 8), UInt8(p.depth & 0xff)] + p.prefix.bytes.prefix((p.depth + 7) / 8)
    }
}
