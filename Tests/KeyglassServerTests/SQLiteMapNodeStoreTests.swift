import Foundation
import KeyglassCore
@testable import KeyglassLog
import KeyglassTestSupport
import XCTest

/// The directory map over a real SQLite file: the same roots and proofs as the map in memory,
/// after every epoch of changes, and the same again after the file is reopened.
final class SQLiteMapNodeStoreTests: XCTestCase {
    func testSameMapAsInMemoryAcrossEpochsAndReopening() throws {
        let dir = TestLog.temporaryDirectory("map")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/map.sqlite"
        let store = try SQLiteMapNodeStore(path: path, sync: .normal)
        var onDisk = MapTree.Incremental(store: store)
        var inMemory = MapTree.Incremental(store: MemoryMapNodeStore())
        var labels: [Hash] = []
        for epoch in 0..<6 {
            // Each epoch: new labels, and new values for some old ones, in one transaction.
            let new = (0..<200).map { Hash.sha256(Array("epoch \(epoch) label \($0)".utf8)) }
            labels += new
            let changes = new + labels.prefix(50)
            try store.transaction {
                for (i, l) in changes.enumerated() { try onDisk.set(l, value: Hash.sha256(Array("\(epoch) \(i)".utf8))) }
            }
            for (i, l) in changes.enumerated() { try inMemory.set(l, value: Hash.sha256(Array("\(epoch) \(i)".utf8))) }
            XCTAssertEqual(try onDisk.root(), try inMemory.root(), "epoch \(epoch)")
        }
        XCTAssertEqual(try store.count(), inMemory.store.count)
        let root = try inMemory.root()
        let reopened = MapTree.Incremental(store: try SQLiteMapNodeStore(path: path))
        XCTAssertEqual(try reopened.root(), root)
        for l in labels.prefix(100) + [Hash.sha256([9, 9, 9])] {
            let p = try reopened.proof(for: l)
            XCTAssertEqual(p, try inMemory.proof(for: l))
            _ = try MapTree.verify(p, label: l, root: root)
        }
    }

    /// The top levels are held in memory and only their leaves are rows: labels whose paths part
    /// just above, at and below that depth (leaves at depths 13 to 21), a leaf pushed down by a
    /// split, a transaction that rolls back, and a reopened file all give the in-memory map's root
    /// and proofs.
    func testTopLevelsRebuiltFromTheRowsBelowThem() throws {
        let dir = TestLog.temporaryDirectory("map-top")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/map.sqlite"
        let store = try SQLiteMapNodeStore(path: path, sync: .normal)
        var onDisk = MapTree.Incremental(store: store)
        var inMemory = MapTree.Incremental(store: MemoryMapNodeStore())
        let base = Hash.sha256(Array("base".utf8))
        func flipped(_ bit: Int) -> Hash {
            var b = base.bytes
            b[bit / 8] ^= 0x80 >> UInt8(bit % 8)
            return Hash(bytes: b)!
        }
        let d = SQLiteMapNodeStore.memoryDepth
        // One at a time, so a leaf first sits high and is pushed down by each later neighbour.
        var labels = [base]
        for bit in [d - 2, d - 1, d, d + 1, d + 3, d + 6] { labels.append(flipped(bit)) }
        labels += (0..<300).map { Hash.sha256(Array("other \($0)".utf8)) }
        for (i, l) in labels.enumerated() {
            let v = Hash.sha256(Array("v\(i)".utf8))
            try store.transaction { try onDisk.set(l, value: v) }
            try inMemory.set(l, value: v)
            XCTAssertEqual(try onDisk.root(), try inMemory.root(), "label \(i)")
        }
        XCTAssertEqual(try store.count(), inMemory.store.count)
        // A transaction that fails leaves the table as it was; the top levels are rebuilt from it.
        struct Abort: Error {}
        XCTAssertThrowsError(try store.transaction {
            try onDisk.set(flipped(d + 2), value: base)
            try onDisk.set(labels[0], value: base)
            throw Abort()
        })
        try store.reload()
        XCTAssertEqual(try onDisk.root(), try inMemory.root(), "after the rollback")
        // A lookup's scan of a bucket's row finds each node below the top levels as stored.
        let db = try SQLiteConnection(path: path)
        defer { db.close() }
        var below = 0
        for l in labels {
            for depth in (d + 1)...(d + 8) {
                let position = MapPosition(label: l, depth: depth)
                let row = try SQLiteMapNodeStore.readBucketRow(SQLiteMapNodeStore.bucket(of: position), from: db)
                let found = try SQLiteMapNodeStore.find(position, inRow: row)
                XCTAssertEqual(found, try onDisk.store.node(at: position), "depth \(depth)")
                if found != nil { below += 1 }
            }
        }
        XCTAssertGreaterThan(below, 6, "labels parting below the top levels have nodes there")
        let reopened = MapTree.Incremental(store: try SQLiteMapNodeStore(path: path))
        let root = try inMemory.root()
        XCTAssertEqual(try reopened.root(), root)
        for l in labels.prefix(10) + [flipped(d + 2), flipped(3)] {
            let p = try reopened.proof(for: l)
            XCTAssertEqual(p, try inMemory.proof(for: l))
            _ = try MapTree.verify(p, label: l, root: root)
        }
    }
}
