import Foundation
import KeyglassCore
@testable import KeyglassLog
import KeyglassTestSupport
import XCTest

/// The bucketed map over a real SQLite file: the same roots and proofs as the map in memory after
/// every epoch of changes and after reopening; and an auditor's state written when every node was
/// stored (`map_nodes`) opens as the same map.
final class SQLiteMapBucketsTests: XCTestCase {
    func testSameMapAsInMemoryAcrossEpochsAndReopening() throws {
        let dir = TestLog.temporaryDirectory("map")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/map.sqlite"
        let store = try SQLiteMapBuckets(path: path, sync: .normal)
        var onDisk = try MapTree.Bucketed(store: store)
        var inMemory = MapTree.Incremental(store: MemoryMapNodeStore())
        var labels: [Hash] = []
        for epoch in 0..<6 {
            // Each epoch: new labels, and new values for some old ones, in one transaction.
            let new = (0..<2000).map { Hash.sha256(Array("epoch \(epoch) label \($0)".utf8)) }
            labels += new
            let changes = (new + labels.prefix(50)).enumerated().map { ($1, Hash.sha256(Array("\(epoch) \($0)".utf8))) }
            try store.transaction { try onDisk.set(changes) }
            try inMemory.set(changes)
            XCTAssertEqual(onDisk.root(), try inMemory.root(), "epoch \(epoch)")
        }
        XCTAssertEqual(try store.count(), labels.count)
        let root = try inMemory.root()
        let reopened = try MapTree.Bucketed(store: try SQLiteMapBuckets(path: path))
        XCTAssertEqual(reopened.root(), root)
        for l in labels.prefix(100) + [Hash.sha256([9, 9, 9])] {
            let p = try reopened.proof(for: l)
            XCTAssertEqual(p, try inMemory.proof(for: l))
            _ = try MapTree.verify(p, label: l, root: root)
        }
    }

    /// A map whose levels cannot be read again after a rollback refuses every use: a head over
    /// levels that may hold rolled-back changes would sign a root no replay gives. A later reload
    /// that succeeds makes it usable again.
    func testAMapThatCannotReloadRefusesToBeUsed() throws {
        let dir = TestLog.temporaryDirectory("map")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/map.sqlite"
        let map = try StoredMap(store: try SQLiteMapBuckets(path: path, sync: .normal))
        let label = Hash.sha256([1]), value = Hash.sha256([2])
        try map.set([(label, value)])
        XCTAssertNoThrow(try map.root())
        // The bucket summaries vanish under it (another connection): the reload cannot read them.
        let other = try SQLiteConnection(path: path)
        try other.execute("ALTER TABLE map_buckets RENAME TO moved")
        XCTAssertThrowsError(try map.reload())
        XCTAssertThrowsError(try map.root())
        XCTAssertThrowsError(try map.set([(label, value)]))
        XCTAssertThrowsError(try map.proof(for: label))
        try other.execute("ALTER TABLE moved RENAME TO map_buckets")
        other.close()
        try map.reload()
        let again = try map.root()
        XCTAssertEqual(try MapTree.verify(try map.proof(for: label), label: label, root: again), value)
    }

    /// Writes nodes as states before the bucketed map did: one row per node, keyed by depth and
    /// prefix; a leaf 0x01 ‖ label ‖ value, an interior node 0x02 ‖ hash.
    private final class StoredNodes: MapNodeStore {
        let db: SQLiteConnection
        init(_ db: SQLiteConnection) throws {
            self.db = db
            try db.execute("CREATE TABLE IF NOT EXISTS map_nodes(position BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
        }
        var nodes: [MapPosition: MapNode] = [:]
        func node(at position: MapPosition) -> MapNode? { nodes[position] }
        func set(_ node: MapNode?, at position: MapPosition) throws {
            nodes[position] = node
            let key = [UInt8(position.depth >> 8), UInt8(position.depth & 0xff)] + position.prefix.bytes.prefix((position.depth + 7) / 8)
            let s = try db.statement(node == nil ? "DELETE FROM map_nodes WHERE position = ?" : "INSERT OR REPLACE INTO map_nodes(position, node) VALUES(?, ?)")
            s.bind(1, key)
            switch node {
            case .leaf(let label, let value)?: s.bind(2, [0x01] + label.bytes + value.bytes)
            case .interior(let hash)?: s.bind(2, [0x02] + hash.bytes)
            case nil: break
            }
            try s.step()
        }
    }

    func testAStateWithStoredNodesOpensAsTheSameMap() throws {
        let dir = TestLog.temporaryDirectory("map-migrate")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let old = try SQLiteConnection(path: path)
        var map = MapTree.Incremental(store: try StoredNodes(old))
        let pairs = (0..<3000).map { (Hash.sha256(Array("label \($0)".utf8)), Hash.sha256(Array("value \($0)".utf8))) }
        try old.transaction { try map.set(pairs) }
        let root = try map.root()
        old.close()

        let key = try NoteSigner.generate(name: "example.com/directory").verifierKey
        let state = try DirectoryStateStore(path: path, logKey: key)
        XCTAssertEqual(try state.map.root(), root)
        for (l, v) in pairs.prefix(50) { XCTAssertEqual(try MapTree.verify(try state.map.proof(for: l), label: l, root: root), v) }
        state.close()
        // Migrated once: the nodes are gone, and reopening reads the same map.
        let check = try SQLiteConnection(path: path)
        let s = try check.statement("SELECT count(*) FROM sqlite_master WHERE name = 'map_nodes'")
        try s.step()
        XCTAssertEqual(s.int64(0), 0)
        check.releaseStatements()
        XCTAssertEqual(try SQLiteMapBuckets(connection: check).count(), pairs.count)
        check.close()
        XCTAssertEqual(try DirectoryStateStore(path: path, logKey: key).map.root(), root)
    }
}

/// A replay's saved position in the state database: the queue of changes no head covers is
/// written a piece at a time (`SQLiteConnection.writeBlob`) and read back whole and in order.
final class DirectoryStatePositionTests: XCTestCase {
    func testAQueueOfManyPiecesIsSavedAndLoadedAsItWas() throws {
        let dir = TestLog.temporaryDirectory("state-position")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try NoteSigner.generate(name: "example.com/directory").verifierKey
        var range = CompactRange()
        for i in 0..<30_000 { range.append(Hash.sha256(Array("leaf \(i)".utf8))) }
        for count in [0, 1, 4096, 10_001] {
            let queued = (0..<count).map { i in
                DirectoryReplayPosition.Queued(index: UInt64(20_000 + i), label: Hash.sha256(Array("l\(i)".utf8)), value: Hash.sha256(Array("v\(i)".utf8)))
            }
            let position = DirectoryReplayPosition(
                origin: "example.com/directory", vrfPublicKey: Array(repeating: 7, count: 32), size: 30_000, epoch: 3, coveredSize: 20_000,
                headIndex: 19_999, headTime: 1_700_000_000_000, backdatedCount: 0, backdated: [], newestTime: 1_700_000_000_001,
                queued: queued[...])
            let state = try DirectoryStateStore(path: dir + "/state.sqlite", logKey: key)
            try state.transaction { try state.save(position, range: range) }
            state.close()
            let loaded = try XCTUnwrap(try DirectoryStateStore(path: dir + "/state.sqlite", logKey: key).load())
            XCTAssertEqual(loaded.position, position, "\(count) queued")
            XCTAssertEqual(loaded.range.size, range.size)
            XCTAssertEqual(loaded.range.root, range.root)
        }
    }
}
