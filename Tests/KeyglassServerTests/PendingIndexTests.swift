import KeyglassCore
@testable import KeyglassLog
import XCTest

/// `PendingIndex` on its own: its per-key chains, what a merge drops, and what it answers for
/// keys that collide.
final class PendingIndexTests: XCTestCase {
    private func leaf(_ first: UInt8, _ last: UInt8) -> Hash {
        var b = [UInt8](repeating: 7, count: 32)
        b[0] = first
        b[31] = last
        return Hash(bytes: b)!
    }

    private func rows(from start: UInt64, _ spec: [(String, Hash)]) -> [PendingIndex.Row] {
        spec.enumerated().map {
            PendingIndex.Row(index: start + UInt64($0.offset), identityKey: Schema.identityKey($0.element.0), leafKey: Schema.lookupKey($0.element.1))
        }
    }

    func testChainsFindEveryPendingEntryOfAKeyOldestFirst() {
        let p = PendingIndex()
        p.reset(indexedSize: 10, rows: rows(from: 10, [("a", leaf(1, 1)), ("b", leaf(2, 2))]))
        p.add(rows(from: 12, [("a", leaf(3, 3)), ("c", leaf(4, 4)), ("a", leaf(1, 1))]))
        XCTAssertEqual(p.count, 5)
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("a")), [10, 12, 14])
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("b")), [11])
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("nobody")), [])
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(leaf(1, 1))), [10, 14])
        XCTAssertEqual(p.rowsToMerge(limit: 2).map(\.index), [10, 11])
        XCTAssertEqual(p.rowsToMerge(limit: 2).map(\.identityKey), [Schema.identityKey("a"), Schema.identityKey("b")])

        // A merge of the first three: their entries leave, newer ones of the same keys stay.
        p.dropMerged(below: 13)
        XCTAssertEqual(p.count, 2)
        XCTAssertEqual(p.indexedSize, 13)
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("a")), [14])
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("b")), [])
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(leaf(1, 1))), [14])
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(leaf(3, 3))), [])
        XCTAssertEqual(p.rowsToMerge(limit: 10).map(\.index), [13, 14])

        // New entries after a merge chain on from the right place.
        p.add(rows(from: 15, [("b", leaf(5, 5)), ("a", leaf(6, 6))]))
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("a")), [14, 16])
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("b")), [15])
        p.dropMerged(below: 17)
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("a")), [])
        XCTAssertEqual(p.count, 0)
        XCTAssertEqual(p.indexedSize, 17)
        // A merge that ends below what is already indexed (the rows were rebuilt from a later
        // indexed_size meanwhile) drops nothing newer.
        p.add(rows(from: 17, [("c", leaf(7, 7))]))
        p.dropMerged(below: 15)
        XCTAssertEqual(p.count, 1)
        XCTAssertEqual(p.identityCandidates(identityKey: Schema.identityKey("c")), [17])
    }

    func testCandidatesAreEveryEntryOfTheKey() {
        // Same first 8 bytes (the lookup key), different hashes: both are candidates, and telling
        // them apart is the caller's job (LogStore checks the entry; see IndexMergeTests).
        let one = leaf(9, 1), other = leaf(9, 2)
        XCTAssertEqual(Schema.lookupKey(one), Schema.lookupKey(other))
        let p = PendingIndex()
        p.reset(indexedSize: 0, rows: rows(from: 0, [("x", one), ("y", other), ("z", leaf(8, 1))]))
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(one)), [0, 1])
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(leaf(9, 3))), [0, 1])
        XCTAssertEqual(p.leafCandidates(leafKey: Schema.lookupKey(leaf(8, 1))), [2])
    }
}
