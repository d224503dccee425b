@testable import KeyglassCore
import KeyglassTestSupport
import XCTest

/// The owner's monitor against the ghosts issue 14 names: added and kept, added and revoked before
/// anyone looked again, and disguised (an operator rotation of a real device, a tombstoned id
/// re-used, a "recovery" device without a reset), and a history rewritten under it.
final class DirectoryMonitorTests: XCTestCase {
    private let origin = "example.com/directory"
    private let label = Hash.sha256(Array("alice label".utf8))

    private typealias Device = TestDevice

    private func device(id: [UInt8]? = nil) throws -> Device {
        let pair = Ed25519.generate()
        return Device(record: try DeviceRecord(id: id ?? Ed25519.randomBytes(16), signingKey: pair.publicKey), seed: pair.seed)
    }

    /// The label's history as the log holds it: entries at increasing indices (other labels'
    /// entries in between are not the monitor's), each with the version the log would give it.
    private struct History {
        var entries: [(index: UInt64, entry: [UInt8], sealed: [UInt8]?)] = []
        var state = DeviceSet()
        var next: UInt64 = 1
        let origin: String
        let label: Hash

        mutating func append(_ kind: DeviceChange.Kind, by signer: Device? = nil) {
            let c = signer.map {
                DeviceChange.signed(kind, origin: origin, label: label, signer: $0.id, signerSeed: $0.seed, previousIndex: state.newestIndex ?? 0)
            } ?? DeviceChange(kind: kind, authority: .operator)
            append(c, sealed: SealedChange.sealing(c, after: state, origin: origin, label: label))
        }

        /// Appends `c` sealed as `sealed` says (a log may seal a change with any set digest).
        mutating func append(_ c: DeviceChange, sealed: SealedChange) {
            let e = DirectoryEntry.sealedChange(sealed, timestampMillis: 1, label: label, version: state.version + 1).encoded
            DeviceRule.apply(c, to: &state, origin: origin, label: label, index: next, leafHash: Merkle.leafHash(e))
            entries.append((next, e, sealed.encoded))
            next += 3
        }
    }

    private func history() -> History { History(origin: origin, label: label) }

    private func check(_ h: History, known: [Device], since: DirectoryMonitor.Stored? = nil) -> DirectoryMonitor.Report {
        DirectoryMonitor.check(history: h.entries, label: label, origin: origin, known: known.map(\.record), since: since)
    }

    func testOwnersOwnChangesAreNoticesNotAlerts() throws {
        let (phone, laptop) = (try device(), try device())
        var h = history()
        h.append(.add(phone.record))  // onboarding by the operator
        h.append(.add(laptop.record), by: phone)
        h.append(.revoke(deviceID: phone.id), by: laptop)
        let report = check(h, known: [phone, laptop])
        XCTAssertEqual(report.alerts, [])
        XCTAssertEqual(report.ownChanges, [1, 4, 7])
        XCTAssertEqual(report.devices, [laptop.record])
        // The next run sees only what is new.
        let stored = try XCTUnwrap(report.stored)
        let tablet = try device()
        h.append(.add(tablet.record), by: laptop)
        let next = check(h, known: [phone, laptop, tablet], since: stored)
        XCTAssertEqual(next.alerts, [])
        XCTAssertEqual(next.ownChanges, [10])
    }

    /// A ghost added by the operator and revoked again before the next lookup: the set looks as it
    /// did, but both changes are the operator's, and the monitor reads the history.
    func testShortLivedGhostStillAlarms() throws {
        let phone = try device()
        var h = history()
        h.append(.add(phone.record))
        let stored = try XCTUnwrap(check(h, known: [phone]).stored)
        let ghost = try device()
        h.append(.add(ghost.record))
        h.append(.revoke(deviceID: ghost.id))
        let report = check(h, known: [phone], since: stored)
        XCTAssertEqual(report.devices, [phone.record], "the set looks untouched")
        XCTAssertEqual(report.alerts, [.notTheOwners(index: 4, verdict: .ghostDevice), .notTheOwners(index: 7, verdict: .operatorRevoke)])
    }

    /// Ghosts in disguise: the operator rotates the owner's device to its own key; re-adds a
    /// tombstoned id; adds a "recovery" device without a reset; resets the account; and a device
    /// the owner does not know (installed by one of those) signs a change.
    func testDisguisedGhostsAlarm() throws {
        let (phone, old) = (try device(), try device())
        var h = history()
        h.append(.add(phone.record))
        h.append(.add(old.record), by: phone)
        h.append(.revoke(deviceID: old.id), by: phone)
        let stored = try XCTUnwrap(check(h, known: [phone, old]).stored)
        let operatorsPhone = try device(id: phone.id)
        h.append(.rotate(operatorsPhone.record))  // the phone's id, the operator's key
        h.append(.add(try device(id: old.id).record))  // a tombstoned id again
        let recovery = try device()
        h.append(.add(recovery.record))  // a "recovery" device, no reset
        let planted = try device()
        h.append(.add(planted.record), by: operatorsPhone)  // signed with the key the operator now holds
        h.append(.reset(try device().record))
        let report = check(h, known: [phone, old], since: stored)
        XCTAssertEqual(report.alerts.map(\.verdictName), ["injectedKey", "injectedKey", "ghostDevice", "chained", "accountReset"])
        XCTAssertEqual(report.ownChanges, [])
    }

    /// The log serves the monitor a history cut short of a change (an operator reset to a device
    /// the operator holds, and the ghost that device then signs): every entry it shows is real, but
    /// with the owner's own verified lookup (the map head's state) the gap is named.
    func testHistoryCutShortOfTheMapHeadsStateIsNamed() throws {
        let phone = try device()
        var h = history()
        h.append(.add(phone.record))
        h.append(.reset(try device().record))
        let full = h.state
        let shown = History(entries: Array(h.entries.prefix(1)), state: DeviceSet(), next: 0, origin: origin, label: label)
        let asOf = DirectoryLookup.Result(checkpoint: Checkpoint(origin: origin, size: 10, root: .zero), label: label, epoch: 3, coveredSize: 9,
                                          timestampMillis: 0, devices: full.active, version: full.version, chain: full.chain)
        XCTAssertEqual(check(shown, known: [phone]).alerts, [], "without the lookup the cut cannot be seen")
        let report = DirectoryMonitor.check(history: shown.entries, label: label, origin: origin, known: [phone.record], asOf: asOf)
        XCTAssertEqual(report.alerts.map(\.verdictName), ["incomplete"])
        XCTAssertEqual(DirectoryMonitor.check(history: h.entries, label: label, origin: origin, known: [phone.record], asOf: asOf).alerts.map(\.verdictName),
                       ["accountReset"], "the whole history: the reset itself alerts")
    }

    /// Step B: a change that commits to a set with a device the change did not add (the honest
    /// chain, a ghost only in the committed set): contacts' lookups, which open the newest change
    /// only, verify and show it; the owner's monitor, opening every change, names it. A change whose
    /// sealed part the log withholds or garbles cannot be checked, and says so.
    func testAGhostOnlyInTheCommittedSetIsNamed() throws {
        let phone = try device()
        var h = history()
        let add = DeviceChange(kind: .add(phone.record), authority: .operator)
        var withGhost = DeviceSet()
        withGhost.apply(.add(phone.record))
        withGhost.apply(.add(try device().record))
        h.append(add, sealed: SealedChange.sealing(add, previousIndex: nil, setDigest: withGhost.setDigest))
        XCTAssertEqual(check(h, known: [phone]).alerts, [.setMismatch(index: 1)])
        var honest = history()
        honest.append(.add(phone.record))
        XCTAssertEqual(check(honest, known: [phone]).alerts, [])
        var withheld = honest
        withheld.entries[0].sealed = nil
        XCTAssertEqual(check(withheld, known: [phone]).alerts.map(\.verdictName), ["badOpening"])
        var garbled = honest
        garbled.entries[0].sealed?[0] ^= 1
        XCTAssertEqual(check(garbled, known: [phone]).alerts.map(\.verdictName), ["badOpening"])
    }

    /// The log rewrites the history the monitor checked (another first device, or fewer changes):
    /// named as rewritten, whatever the new history says.
    func testRewrittenHistoryIsNamed() throws {
        let phone = try device()
        var h = history()
        h.append(.add(phone.record))
        h.append(.add(try device().record), by: phone)
        let stored = try XCTUnwrap(check(h, known: [phone]).stored)
        var forged = history()
        forged.append(.add(phone.record))
        forged.next += 1  // the same device, at another index
        forged.append(.add(try device().record), by: phone)
        XCTAssertTrue(check(forged, known: [phone], since: stored).alerts.contains { if case .rewritten = $0 { return true } else { return false } })
        var shorter = history()
        shorter.append(.add(phone.record))
        XCTAssertTrue(check(shorter, known: [phone], since: stored).alerts.contains { if case .rewritten = $0 { return true } else { return false } })
        // Entries of another label, or out of order, are not this history.
        var mixed = h
        mixed.entries.append((mixed.next, DirectoryEntry.mapHead(timestampMillis: 1, epoch: 1, coveredSize: 1, root: .zero).encoded, nil))
        XCTAssertEqual(check(mixed, known: [phone], since: stored).alerts, [.malformed(index: mixed.next, why: "not a change entry of this label")])
    }
}

extension DirectoryMonitor.Alert {
    /// The rule's verdict for an alert about a change, by name (tests compare lists of them).
    var verdictName: String {
        switch self {
        case .notTheOwners(_, let v): return "\(v)".components(separatedBy: "(").first ?? "\(v)"
        case .invalid: return "invalid"
        case .rewritten: return "rewritten"
        case .malformed: return "malformed"
        case .incomplete: return "incomplete"
        case .badOpening: return "badOpening"
        case .setMismatch: return "setMismatch"
        }
    }
}
