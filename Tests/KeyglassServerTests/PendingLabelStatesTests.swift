import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// Label states pending over a real state database: tagged with the entry that made them, so a
/// head that covers fewer entries than were replayed commits the states as of what it covers.
final class PendingLabelStatesTests: XCTestCase {
    func testStatesAsOfACoveredSizeAreTakenAndDropped() throws {
        let dir = TestLog.temporaryDirectory("pending-states")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try DirectoryStateStore(path: dir + "/state.sqlite", logKey: try NoteSigner.generate(name: "example.com/d").verifierKey)
        defer { store.close() }
        let pending = PendingLabelStates(base: store.labelStates)
        let (a, b) = (Hash.sha256([1]), Hash.sha256([2]))
        func state(_ n: UInt64) -> DeviceSet {
            var s = DeviceSet()
            for i in 0..<n { s.advance(index: i, leafHash: Hash.sha256([UInt8(i)])) }
            return s
        }
        for (index, label, n) in [(UInt64(3), a, UInt64(1)), (5, b, 1), (7, a, 2), (9, b, 2)] {
            pending.currentIndex = index
            try pending.setState(state(n), of: label)
        }
        XCTAssertEqual(try pending.state(of: a)?.version, 2, "the newest pending state")
        let asOf8 = Dictionary(uniqueKeysWithValues: pending.states(below: 8).map { ($0.label, $0.state.version) })
        XCTAssertEqual(asOf8, [a: 2, b: 1], "as of entry 8: a's change at 7 and b's at 5")
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: pending.states(below: 4).map { ($0.label, $0.state.version) }), [a: 1])
        try store.transaction { for (label, s) in pending.states(below: 8) { try store.labelStates.setState(s, of: label) } }
        pending.drop(below: 8)
        XCTAssertEqual(try pending.committedState(of: b)?.version, 1)
        XCTAssertEqual(try pending.state(of: b)?.version, 2, "b's change at 9 is still pending")
        XCTAssertEqual(try pending.state(of: a)?.version, 2, "a's comes from the store now")
        XCTAssertEqual(pending.pendingCount, 1)
        try store.transaction { try pending.flush() }
        XCTAssertEqual(pending.pendingCount, 0)
        XCTAssertEqual(try pending.committedState(of: b)?.version, 2)
    }
}
