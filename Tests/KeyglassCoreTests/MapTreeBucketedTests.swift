import KeyglassCore
import XCTest

/// The bucketed map (only leaves stored, the levels above the buckets in memory) against the
/// definition (`Builder`): the same roots and proofs for the same pairs, through updates, labels
/// crowded into one bucket, lone labels high in the tree, and reopening from the store.
final class MapTreeBucketedTests: XCTestCase {
    /// A label whose first two bytes (its bucket) and some later bits are chosen.
    private func label(bucket: Int, _ seed: String, sharing other: Hash? = nil, bits: Int = 0) -> Hash {
        var b = Hash.sha256(Array(seed.utf8)).bytes
        b[0] = UInt8(bucket >> 8)
        b[1] = UInt8(bucket & 0xff)
        if let other {
            // Share `bits` leading bits with `other`, then differ at the next one.
            let o = other.bytes
            for i in 0..<bits { setBit(&b, i, bit(o, i)) }
            if bits < 256 { setBit(&b, bits, !bit(o, bits)) }
        }
        return Hash(bytes: b)!
    }

    private func bit(_ b: [UInt8], _ i: Int) -> Bool { (b[i / 8] >> (7 - UInt8(i % 8))) & 1 == 1 }
    private func setBit(_ b: inout [UInt8], _ i: Int, _ on: Bool) {
        if on { b[i / 8] |= 0x80 >> UInt8(i % 8) } else { b[i / 8] &= ~(0x80 >> UInt8(i % 8)) }
    }

    private func assertSame(_ map: MapTree.Bucketed<MemoryMapBucketStore>, _ pairs: [(label: Hash, value: Hash)], probes: [Hash], _ why: String) throws {
        let builder = MapTree.Builder(pairs)
        XCTAssertEqual(map.root(), builder.root, why)
        for l in probes {
            let proof = try map.proof(for: l)
            XCTAssertEqual(proof, builder.proof(for: l), "\(why): proof for \(l)")
            XCTAssertEqual(try MapTree.verify(proof, label: l, root: builder.root), builder.value(of: l), "\(why): \(l)")
        }
    }

    func testSameRootsAndProofsAsTheDefinition() throws {
        var map = try MapTree.Bucketed(store: MemoryMapBucketStore())
        var pairs: [(label: Hash, value: Hash)] = []
        let absent = (0..<40).map { label(bucket: ($0 * 1637) % 65536, "absent \($0)") }
        try assertSame(map, pairs, probes: absent, "the empty map")

        // One label: every other label's proof ends on it at depth 0.
        let first = label(bucket: 0x1234, "first")
        pairs.append((first, Hash.sha256([1])))
        try map.set([pairs[0]])
        try assertSame(map, pairs, probes: [first] + absent, "one label")

        // Lone labels high in the tree (a subtree of one label far above its bucket), labels
        // crowded into one bucket sharing up to 255 bits, and the first and last buckets.
        var batch: [(label: Hash, value: Hash)] = []
        batch.append((label(bucket: 0x8000, "lone right"), Hash.sha256([2])))
        let crowd = label(bucket: 0x4242, "crowd")
        for bits in [16, 17, 30, 128, 254, 255] {
            batch.append((label(bucket: 0x4242, "crowd \(bits)", sharing: crowd, bits: bits), Hash.sha256([3, UInt8(bits)])))
        }
        batch.append((crowd, Hash.sha256([4])))
        batch.append((label(bucket: 0, "first bucket"), Hash.sha256([5])))
        batch.append((label(bucket: 0xffff, "last bucket"), Hash.sha256([6])))
        batch.append((label(bucket: 0xffff, "last bucket too"), Hash.sha256([7])))
        pairs += batch
        try map.set(batch)
        let near = [label(bucket: 0x4242, "near", sharing: crowd, bits: 200), label(bucket: 0x4243, "next bucket")]
        try assertSame(map, pairs, probes: pairs.map(\.label) + absent + near, "crowded and lone labels")

        // Many random labels over a few batches, with new values for old ones (the last wins,
        // also within one batch).
        for round in 0..<3 {
            var b = (0..<1000).map { i in (label: Hash.sha256(Array("round \(round) label \(i)".utf8)), value: Hash.sha256(Array("v \(round) \(i)".utf8))) }
            b += pairs.prefix(200).map { ($0.label, Hash.sha256(Array("update \(round) \($0.label)".utf8))) }
            b.append((first, Hash.sha256(Array("twice \(round)".utf8))))
            pairs += b
            try map.set(b)
            try assertSame(map, pairs, probes: pairs.suffix(40).map(\.label) + pairs.prefix(20).map(\.label) + absent.prefix(10) + near, "round \(round)")
        }

        // Reopened from the store's summaries: the same map.
        let reopened = try MapTree.Bucketed(store: map.store)
        try assertSame(reopened, pairs, probes: pairs.prefix(30).map(\.label) + absent.prefix(10), "reopened")
    }

    func testAStoreWithASummaryOutOfRangeIsRefused() throws {
        var store = MemoryMapBucketStore()
        try store.setSummary(bucket: 1 << 16, count: 1, hash: Hash.sha256([1]))
        XCTAssertThrowsError(try MapTree.Bucketed(store: store)) { XCTAssertEqual($0 as? MapTree.StoreError, .bucketMismatch) }
    }
}
