import KeyglassCore
import XCTest

/// The directory's map (Spec/map.md): its hashes by hand on small maps, membership and absence
/// proofs on larger ones, and every proof a verifier must refuse.
final class MapTreeTests: XCTestCase {
    private func label(_ s: String) -> Hash { Hash.sha256(Array(s.utf8)) }
    private func value(_ s: String) -> Hash { Hash.sha256(Array(("value of " + s).utf8)) }

    /// A label with the given bits set (bit 0 = most significant bit of byte 0).
    private func label(bits: [Int]) -> Hash {
        var b = [UInt8](repeating: 0, count: 32)
        for i in bits { b[i / 8] |= 0x80 >> UInt8(i % 8) }
        return Hash(bytes: b)!
    }

    private func sha256(_ prefix: UInt8, _ parts: Hash...) -> Hash { Hash.sha256([prefix] + parts.flatMap(\.bytes)) }

    func testHashesOfSmallMapsByHand() throws {
        XCTAssertEqual(MapTree.empty.bytes, [UInt8](repeating: 0, count: 32))
        XCTAssertEqual(MapTree.Builder([]).root, MapTree.empty)
        let a = label(bits: []), b = label(bits: [0]), c = label(bits: [1])
        let (va, vb, vc) = (value("a"), value("b"), value("c"))
        XCTAssertEqual(MapTree.leafHash(label: a, value: va), sha256(0x02, a, va))
        XCTAssertEqual(MapTree.interiorHash(va, vb), sha256(0x03, va, vb))
        // One label: the root is its leaf, at depth 0.
        XCTAssertEqual(MapTree.Builder([(a, va)]).root, sha256(0x02, a, va))
        // a (0…) and b (1…) split at bit 0.
        XCTAssertEqual(MapTree.Builder([(b, vb), (a, va)]).root, sha256(0x03, sha256(0x02, a, va), sha256(0x02, b, vb)))
        // a (00…) and c (01…) share bit 0: the root's right child is empty.
        XCTAssertEqual(MapTree.Builder([(a, va), (c, vc)]).root,
                       sha256(0x03, sha256(0x03, sha256(0x02, a, va), sha256(0x02, c, vc)), MapTree.empty))
        // Order of insertion does not matter; the last value given for a label wins.
        XCTAssertEqual(MapTree.Builder([(c, vb), (a, va), (c, vc)]).root, MapTree.Builder([(a, va), (c, vc)]).root)
    }

    /// Two labels sharing 255 bits hang 256 levels down; each proof carries 256 siblings, and a
    /// third label sharing 254 of those bits is proved absent by the empty subtree beside them.
    func testNeighboursSharingA255BitPrefix() throws {
        let x = label(bits: Array(0..<255))           // 111…10
        let y = label(bits: Array(0..<256))           // 111…11
        let z = label(bits: Array(0..<254) + [255])   // 111…101: leaves the path at bit 254
        XCTAssertEqual(MapTree.sharedPrefix(x, y), 255)
        let map = MapTree.Builder([(x, value("x")), (y, value("y"))])
        var expected = sha256(0x03, MapTree.leafHash(label: x, value: value("x")), MapTree.leafHash(label: y, value: value("y")))
        for _ in 0..<255 { expected = MapTree.interiorHash(MapTree.empty, expected) }
        XCTAssertEqual(map.root, expected)
        for (l, v) in [(x, value("x")), (y, value("y"))] {
            let p = map.proof(for: l)
            XCTAssertEqual(p.siblings.count, 256)
            XCTAssertEqual(try MapTree.verify(p, label: l, root: map.root), v)
        }
        let absent = map.proof(for: z)
        XCTAssertEqual(absent.terminal, .empty)
        XCTAssertEqual(absent.siblings.count, 255)
        XCTAssertNil(try MapTree.verify(absent, label: z, root: map.root))
    }

    /// 600 labels: every member's proof gives its value, every other label's proof proves it
    /// absent (an empty subtree or a neighbour on its path), and proofs are about log2(n) long.
    func testMembershipAndAbsenceOnALargerMap() throws {
        let members = (0..<600).map { (label("member \($0)"), value("\($0)")) }
        let map = MapTree.Builder(members)
        let root = map.root
        var longest = 0
        for (l, v) in members {
            let p = map.proof(for: l)
            longest = max(longest, p.siblings.count)
            XCTAssertEqual(try MapTree.verify(p, label: l, root: root), v)
            XCTAssertEqual(map.value(of: l), v)
        }
        XCTAssertLessThanOrEqual(longest, 36, "600 random labels: depth about 2·log2(n)")
        var kinds: Set<String> = []
        for i in 0..<600 {
            let l = label("absent \(i)")
            let p = map.proof(for: l)
            XCTAssertNil(try MapTree.verify(p, label: l, root: root))
            switch p.terminal {
            case .empty: kinds.insert("empty")
            case .otherLeaf: kinds.insert("neighbour")
            case .member: XCTFail("absent label proved a member")
            }
        }
        XCTAssertEqual(kinds, ["empty", "neighbour"], "both kinds of absence occur")
    }

    func testProofsThatMustFail() throws {
        let members = (0..<300).map { (label("m\($0)"), value("\($0)")) }
        let map = MapTree.Builder(members)
        let root = map.root
        let (l, v) = members[17]
        let good = map.proof(for: l)
        XCTAssertEqual(try MapTree.verify(good, label: l, root: root), v)
        func refused(_ p: MapTree.Proof, _ label: Hash, _ why: MapTree.ProofError, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try MapTree.verify(p, label: label, root: root), file: file, line: line) {
                XCTAssertEqual($0 as? MapTree.ProofError, why, file: file, line: line)
            }
        }
        // Another value for the label (a replaced key).
        refused(MapTree.Proof(terminal: .member(value: value("injected")), siblings: good.siblings), l, .rootMismatch)
        // Absence claimed for a present label, at its own depth.
        refused(MapTree.Proof(terminal: .empty, siblings: good.siblings), l, .rootMismatch)
        // Each sibling changed, one dropped, one added.
        for i in good.siblings.indices {
            var s = good.siblings
            s[i] = value("forged")
            refused(MapTree.Proof(terminal: good.terminal, siblings: s), l, .rootMismatch)
        }
        refused(MapTree.Proof(terminal: good.terminal, siblings: Array(good.siblings.dropLast())), l, .rootMismatch)
        refused(MapTree.Proof(terminal: good.terminal, siblings: good.siblings + [MapTree.empty]), l, .rootMismatch)
        // The proof of another member is no proof for this label.
        let other = map.proof(for: members[18].0)
        refused(other, l, .rootMismatch)
        // Its leaf passed off as the neighbour that proves this label absent: not on the path.
        if case .member(let ov) = other.terminal {
            let shared = MapTree.sharedPrefix(l, members[18].0)
            if shared < other.siblings.count {
                refused(MapTree.Proof(terminal: .otherLeaf(label: members[18].0, value: ov), siblings: other.siblings), l,
                        .neighbourOffPath(depth: other.siblings.count, shared: shared))
            }
        }
        // The label's own leaf as its "neighbour".
        refused(MapTree.Proof(terminal: .otherLeaf(label: l, value: v), siblings: good.siblings), l, .neighbourIsTheLabel)
        // Deeper than any map.
        refused(MapTree.Proof(terminal: .empty, siblings: [Hash](repeating: MapTree.empty, count: 257)), l, .tooDeep(257))
        // An absent label's proof shown for a label that is present (same path start, wrong end).
        let absent = label("not in the map")
        let absence = map.proof(for: absent)
        XCTAssertNil(try MapTree.verify(absence, label: absent, root: root))
        XCTAssertThrowsError(try MapTree.verify(absence, label: l, root: root))
        // And any proof against another map's root.
        let bigger = MapTree.Builder(members + [(absent, value("new"))])
        XCTAssertThrowsError(try MapTree.verify(good, label: l, root: bigger.root))
        XCTAssertEqual(try MapTree.verify(bigger.proof(for: absent), label: absent, root: bigger.root), value("new"))
    }
}

/// The incremental map against the one built from scratch: after every change the roots are
/// equal and every proof is the same.
final class MapTreeIncrementalTests: XCTestCase {
    private func label(_ s: String) -> Hash { Hash.sha256(Array(s.utf8)) }

    /// Labels that share long prefixes with each other (so splits go deep), from a seed.
    private func nearLabels(_ base: Hash, count: Int) -> [Hash] {
        (0..<count).map { i in
            var b = base.bytes
            let bit = 200 + (i * 7) % 56
            b[bit / 8] ^= 0x80 >> UInt8(bit % 8)
            return Hash(bytes: b)!
        }
    }

    func testIncrementalMatchesTheBuilderAfterEveryChange() throws {
        var map = MapTree.Incremental(store: MemoryMapNodeStore())
        var pairs: [Hash: Hash] = [:]
        XCTAssertEqual(try map.root(), MapTree.empty)
        var labels = (0..<150).map { label("user \($0)") }
        labels += nearLabels(labels[3], count: 8) + [label("user 3")]  // re-set an existing label
        var step = 0
        for l in labels {
            step += 1
            let v = Hash.sha256(Array("value \(step)".utf8))
            try map.set(l, value: v)
            pairs[l] = v
            let built = MapTree.Builder(pairs.map { ($0.key, $0.value) })
            XCTAssertEqual(try map.root(), built.root, "after step \(step)")
            if step % 10 == 0 || step > 150 {
                for probe in Array(pairs.keys.prefix(20)) + [label("absent \(step)"), nearLabels(labels[3], count: 9)[8]] {
                    let p = try map.proof(for: probe)
                    XCTAssertEqual(p, built.proof(for: probe), "proof for \(probe) at step \(step)")
                    XCTAssertEqual(try MapTree.verify(p, label: probe, root: built.root), pairs[probe])
                }
            }
        }
        // Updating values in place keeps the shape: no node is added.
        let nodes = map.store.count
        for l in labels.prefix(30) { try map.set(l, value: Hash.sha256(l.bytes)) }
        XCTAssertEqual(map.store.count, nodes)
        for l in labels.prefix(30) { pairs[l] = Hash.sha256(l.bytes) }
        XCTAssertEqual(try map.root(), MapTree.Builder(pairs.map { ($0.key, $0.value) }).root)
    }

    /// Epochs of changes set as batches (new labels, old ones again, labels that split each other,
    /// a label twice in one batch): the same roots and proofs as the builder's, and as setting them
    /// one at a time.
    func testBatchesMatchTheBuilderAndSingleSets() throws {
        var batched = MapTree.Incremental(store: MemoryMapNodeStore())
        var single = MapTree.Incremental(store: MemoryMapNodeStore())
        var pairs: [Hash: Hash] = [:]
        try batched.set([])
        XCTAssertEqual(try batched.root(), MapTree.empty)
        var all: [Hash] = []
        for epoch in 0..<8 {
            var batch: [(label: Hash, value: Hash)] = (0..<(epoch * 37 % 90 + 1)).map { (label("e\(epoch) n\($0)"), Hash.sha256(Array("e\(epoch) v\($0)".utf8))) }
            if let first = all.first { batch += nearLabels(first, count: 3).map { ($0, Hash.sha256($0.bytes + [UInt8(epoch)])) } }
            batch += all.prefix(10).map { ($0, Hash.sha256($0.bytes + [UInt8(epoch), 1])) }
            if let l = batch.first?.label { batch.append((l, Hash.sha256([UInt8(epoch), 2]))) }  // twice: the last wins
            try batched.set(batch)
            for (l, v) in batch {
                try single.set(l, value: v)
                pairs[l] = v
            }
            all += batch.map(\.label)
            let built = MapTree.Builder(pairs.map { ($0.key, $0.value) })
            XCTAssertEqual(try batched.root(), built.root, "epoch \(epoch)")
            XCTAssertEqual(try single.root(), built.root)
            for l in all.prefix(40) + [label("absent \(epoch)")] { XCTAssertEqual(try batched.proof(for: l), built.proof(for: l)) }
        }
        XCTAssertEqual(batched.store.count, single.store.count, "no node left over")
    }

    /// A store holding a leaf where its label's path does not pass (corruption, not log data):
    /// setting a label that meets it throws instead of trapping.
    func testLeafOffItsPathIsAnError() throws {
        var store = MemoryMapNodeStore()
        let x = label("x")
        var other = x.bytes
        other[0] ^= 0x80  // parts from x at bit 0
        store.set(.interior(.zero), at: MapPosition(label: x, depth: 0))
        store.set(.leaf(label: Hash(bytes: other)!, value: x), at: MapPosition(label: x, depth: 1))  // on x's side, but not its label
        var map = MapTree.Incremental(store: store)
        XCTAssertThrowsError(try map.set(x, value: x)) { XCTAssertEqual($0 as? MapTree.StoreError, .leafOffItsPath) }
        XCTAssertThrowsError(try map.set([(x, x)])) { XCTAssertEqual($0 as? MapTree.StoreError, .leafOffItsPath) }
    }

    /// Two labels that share 255 bits: the split goes to the bottom of the tree.
    func testSplitAtTheLastBit() throws {
        var a = [UInt8](repeating: 0x5a, count: 32)
        var b = a
        b[31] ^= 1
        a[0] = 0x5a
        let (la, lb) = (Hash(bytes: a)!, Hash(bytes: b)!)
        var map = MapTree.Incremental(store: MemoryMapNodeStore())
        try map.set(la, value: Hash.sha256([1]))
        try map.set(lb, value: Hash.sha256([2]))
        let built = MapTree.Builder([(la, Hash.sha256([1])), (lb, Hash.sha256([2]))])
        XCTAssertEqual(try map.root(), built.root)
        XCTAssertEqual(try map.proof(for: lb).siblings.count, 256)
        XCTAssertEqual(try map.proof(for: lb), built.proof(for: lb))
    }
}
