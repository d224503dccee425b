import Foundation
import KeyglassCore
import KeyglassLog
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
}
