import KeyglassCore
import KeyglassTestSupport
import XCTest

/// Device records, the change message and the rule (Spec/directory.md): every cell of the rule's
/// table, every part of the message a signature binds, and what applying does to a label's state.
final class DeviceRuleTests: XCTestCase {
    private let origin = "example.com/directory"
    private let label = Hash.sha256(Array("alice@example.com".utf8))

    private typealias Device = TestDevice

    private func device(id: [UInt8]? = nil, x25519: Bool = true) throws -> Device {
        let pair = Ed25519.generate()
        let keys = x25519 ? [DeviceRecord.EncryptionKey(type: .x25519, key: Ed25519.randomBytes(32))] : []
        return Device(record: try DeviceRecord(id: id ?? Ed25519.randomBytes(16), signingKey: pair.publicKey, encryptionKeys: keys), seed: pair.seed)
    }

    /// `device` with new keys, same id.
    private func rotated(_ d: Device) throws -> Device { try device(id: d.id) }

    private var nextIndex: UInt64 = 100

    /// Applies an operator change (or one signed by `by`) as the next entry; returns the verdict.
    @discardableResult
    private func apply(_ kind: DeviceChange.Kind, by signer: Device? = nil, to set: inout DeviceSet) -> DeviceRule.Verdict {
        let change = signer.map {
            DeviceChange.signed(kind, origin: origin, label: label, signer: $0.id, signerSeed: $0.seed, previousIndex: set.newestIndex ?? 0)
        } ?? DeviceChange(kind: kind, authority: .operator)
        nextIndex += 1
        return DeviceRule.apply(change, to: &set, origin: origin, label: label, index: nextIndex, leafHash: Hash.sha256(Array("entry \(nextIndex)".utf8)))
    }

    func testRecordEncodingIsCanonicalAndChecked() throws {
        let pair = Ed25519.generate()
        let x = DeviceRecord.EncryptionKey(type: .x25519, key: Ed25519.randomBytes(32))
        let p = DeviceRecord.EncryptionKey(type: .p256, key: try XCTUnwrap(Hex.decode("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")))
        let r = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: pair.publicKey, encryptionKeys: [x, p])
        XCTAssertEqual(r.encoded.count, 16 + 32 + 1 + (2 + 32) + (2 + 65))
        XCTAssertEqual(try DeviceRecord.parse(r.encoded), r)
        XCTAssertEqual(try DeviceRecord.parse(try DeviceRecord(id: r.id, signingKey: pair.publicKey).encoded).encryptionKeys, [])
        // Every other byte string is refused.
        var bad: [(String, [UInt8])] = [("cut short", Array(r.encoded.dropLast())), ("a byte after", r.encoded + [0])]
        var swapped = try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [x]).encoded
        swapped[48] = 2  // two keys announced, one given
        bad.append(("count beyond the keys", swapped))
        var unknownType = r.encoded
        unknownType[49] = 3
        bad.append(("type 3", unknownType))
        var smallOrderKey = r.encoded
        smallOrderKey.replaceSubrange(16..<48, with: [1] + [UInt8](repeating: 0, count: 31))
        bad.append(("small-order signing key", smallOrderKey))
        for (why, bytes) in bad { XCTAssertThrowsError(try DeviceRecord.parse(bytes), why) }
        // And the fields themselves.
        XCTAssertThrowsError(try DeviceRecord(id: Ed25519.randomBytes(15), signingKey: pair.publicKey), "15-byte id")
        XCTAssertThrowsError(try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [p, x]), "out of type order")
        XCTAssertThrowsError(try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [x, x]), "one key per type")
        XCTAssertThrowsError(try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [.init(type: .ed25519, key: pair.publicKey)]), "not an encryption type")
        XCTAssertThrowsError(try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [.init(type: .x25519, key: [UInt8](repeating: 0, count: 32))]), "all-zero X25519")
        XCTAssertThrowsError(try DeviceRecord(id: r.id, signingKey: pair.publicKey, encryptionKeys: [.init(type: .p256, key: [4] + [UInt8](repeating: 1, count: 64))]), "P-256 off the curve")
    }

    /// The rule's table, cell by cell, operator and chained.
    func testEveryCellOfTheTable() throws {
        let a = try device(), b = try device(), c = try device()
        var set = DeviceSet()
        XCTAssertNil(set.mapValue, "never changed: absent from the map")
        var fresh = DeviceSet()
        XCTAssertEqual(apply(.add(b.record), by: a, to: &fresh), .invalid("the signer is not an active device of this identity"), "no signer exists yet")
        XCTAssertEqual(fresh.active, [], "an invalid change adds no device")
        XCTAssertEqual(apply(.add(a.record), to: &fresh), .ghostDevice, "a label with a change entry, even an invalid one, is not new")
        XCTAssertEqual(apply(.add(a.record), to: &set), .first)
        XCTAssertEqual(apply(.add(a.record), to: &set), .invalid("device \(Hex.encode(a.id)) is already active"))
        XCTAssertEqual(apply(.add(b.record), by: a, to: &set), .chained)
        XCTAssertEqual(apply(.add(c.record), to: &set), .ghostDevice, "an operator add to a set that was changed")
        XCTAssertEqual(apply(.revoke(deviceID: c.id), to: &set), .operatorRevoke)
        XCTAssertEqual(apply(.add(c.record), by: a, to: &set), .injectedKey, "a tombstoned id again, even signed")
        XCTAssertNotNil(set.device(c.id), "an attack is applied: it is what the log now serves")
        XCTAssertEqual(apply(.revoke(deviceID: c.id), to: &set), .operatorRevoke)
        XCTAssertEqual(apply(.add(try rotated(c).record), to: &set), .injectedKey)
        XCTAssertEqual(apply(.add(try rotated(c).record), to: &set), .injectedKey, "active again by an attack, still tombstoned")
        XCTAssertEqual(apply(.rotate(try rotated(c).record), by: a, to: &set), .injectedKey, "rotating it: judged as tombstoned")
        XCTAssertEqual(apply(.revoke(deviceID: c.id), by: a, to: &set), .chained)
        XCTAssertEqual(apply(.revoke(deviceID: c.id), to: &set), .invalid("device \(Hex.encode(c.id)) is not active"))
        let b2 = try rotated(b)
        XCTAssertEqual(apply(.rotate(b2.record), to: &set), .injectedKey, "the operator changing an existing device's key")
        XCTAssertEqual(apply(.rotate(b.record), by: a, to: &set), .chained, "and the owner putting it back")
        XCTAssertEqual(apply(.rotate(b.record), by: a, to: &set), .invalid("the rotation changes nothing"))
        XCTAssertEqual(apply(.rotate(try rotated(c).record), by: a, to: &set), .injectedKey, "rotating a tombstoned id")
        let stranger = try device()
        XCTAssertEqual(apply(.rotate(stranger.record), to: &set), .invalid("device \(Hex.encode(stranger.id)) is not in the set"))
        XCTAssertEqual(apply(.revoke(deviceID: b.id), by: a, to: &set), .chained)
        XCTAssertEqual(apply(.reset(a.record), to: &set), .injectedKey, "a reset keeping an active id")
        XCTAssertEqual(apply(.reset(b.record), to: &set), .injectedKey, "a reset to a tombstoned id")
        let d = try device()
        XCTAssertEqual(apply(.reset(d.record), to: &set), .accountReset)
        XCTAssertEqual(set.active, [d.record])
        XCTAssertTrue(set.isTombstoned(a.id), "a reset tombstones every device it replaces")
        XCTAssertEqual(apply(.add(a.record), by: d, to: &set), .injectedKey)
        let e = try device()
        XCTAssertEqual(apply(.reset(e.record), by: d, to: &set), .chained, "the owner's own reset")
        XCTAssertEqual(apply(.add(try device().record), by: d, to: &set), .invalid("the signer is not an active device of this identity"), "d was reset away")
        for verdict: DeviceRule.Verdict in [.first, .chained, .accountReset, .operatorRevoke] { XCTAssertTrue(verdict.isAcceptedByServer) }
        for verdict: DeviceRule.Verdict in [.ghostDevice, .injectedKey, .invalid("x")] { XCTAssertFalse(verdict.isAcceptedByServer) }
    }

    /// A set holds at most `maxActiveDevices`: one more is invalid, a reset always fits.
    func testActiveDevicesAreBounded() throws {
        let owner = try device()
        var set = DeviceSet()
        apply(.add(owner.record), to: &set)
        for _ in 1..<DeviceRule.maxActiveDevices { XCTAssertEqual(apply(.add(try device(x25519: false).record), by: owner, to: &set), .chained) }
        XCTAssertEqual(set.active.count, DeviceRule.maxActiveDevices)
        XCTAssertEqual(apply(.add(try device().record), by: owner, to: &set), .invalid("a set holds at most 1000 active devices"))
        // A rotation of a tombstoned id would add a device too: refused at the bound.
        let gone = set.active[1]
        XCTAssertEqual(apply(.revoke(deviceID: gone.id), by: owner, to: &set), .chained)
        XCTAssertEqual(apply(.add(try device(x25519: false).record), by: owner, to: &set), .chained)
        XCTAssertEqual(apply(.rotate(try device(id: gone.id).record), to: &set), .invalid("a set holds at most 1000 active devices"))
        XCTAssertEqual(apply(.reset(try device().record), to: &set), .accountReset)
        XCTAssertEqual(set.active.count, 1)
        XCTAssertEqual(set.tombstoned.count, DeviceRule.maxActiveDevices + 1)
    }

    /// Ids ever used and changes are bounded per label, so a state, its map value and a lookup
    /// are, and replaying a label costs at most so much: a ghost added and revoked again and again
    /// (each id tombstoned) stops at 10,000 ids; rotations stop at 100,000 changes.
    func testIdsAndChangesPerLabelAreBounded() throws {
        var set = DeviceSet()
        let first = try device()
        apply(.add(first.record), to: &set)
        let records = try (0..<2).map { _ in try device(x25519: false).record }
        for i in 1..<DeviceRule.maxDeviceIDs {
            // A fresh id each time; records' keys are reused (only ids count).
            let r = try DeviceRecord(id: Array(Hash.sha256(Array("id \(i)".utf8)).bytes.prefix(16)), signingKey: records[i % 2].signingKey)
            XCTAssertEqual(apply(.add(r), to: &set), .ghostDevice)
            XCTAssertEqual(apply(.revoke(deviceID: r.id), to: &set), .operatorRevoke)
        }
        XCTAssertEqual(set.active.count + set.tombstoned.count, DeviceRule.maxDeviceIDs)
        XCTAssertEqual(apply(.add(try device().record), to: &set), .invalid("a label uses at most 10000 device ids"))
        XCTAssertEqual(apply(.reset(try device().record), to: &set), .invalid("a label uses at most 10000 device ids"))
        // Rotations add no id; they stop at the change bound.
        let a = try DeviceRecord(id: first.id, signingKey: records[0].signingKey), b = try DeviceRecord(id: first.id, signingKey: records[1].signingKey)
        while set.version < DeviceRule.maxVersion {
            XCTAssertEqual(apply(.rotate(set.device(first.id) == a ? b : a), to: &set), .injectedKey)
        }
        XCTAssertEqual(apply(.revoke(deviceID: first.id), to: &set), .invalid("a label has at most 100000 changes"))
        // And a log whose origin the change message cannot carry judges nothing valid.
        var fresh = DeviceSet()
        let long = String(repeating: "o", count: 256)
        XCTAssertEqual(DeviceRule.apply(DeviceChange(kind: .add(first.record), authority: .operator), to: &fresh, origin: long, label: label, index: 1,
                                        leafHash: .zero), .invalid("the log's origin is not 1 to 255 bytes"))
    }

    /// A chained change is good for one log, one label, one signer, one change and one position.
    func testTheSignatureBindsEveryPartOfTheMessage() throws {
        let a = try device(), b = try device(), n = try device()
        var set = DeviceSet()
        apply(.add(a.record), to: &set)
        apply(.add(b.record), by: a, to: &set)
        let newest = try XCTUnwrap(set.newestIndex)
        let kind = DeviceChange.Kind.add(n.record)
        let good = DeviceChange.signed(kind, origin: origin, label: label, signer: a.id, signerSeed: a.seed, previousIndex: newest)
        XCTAssertEqual(DeviceRule.judge(good, to: set, origin: origin, label: label), .chained)
        guard case .chained(_, let aSignature) = good.authority else { return XCTFail("not chained") }
        let forged: [(String, DeviceChange)] = [
            ("another log", .signed(kind, origin: "other.example/log", label: label, signer: a.id, signerSeed: a.seed, previousIndex: newest)),
            ("another label", .signed(kind, origin: origin, label: Hash.sha256([1]), signer: a.id, signerSeed: a.seed, previousIndex: newest)),
            ("a stale position (replayed)", .signed(kind, origin: origin, label: label, signer: a.id, signerSeed: a.seed, previousIndex: newest - 1)),
            ("signed by a, claimed by b", DeviceChange(kind: kind, authority: .chained(signer: b.id, signature: aSignature))),
            ("another change under a's signature", DeviceChange(kind: .add(try device().record), authority: good.authority)),
            ("a revoke under an add's signature", DeviceChange(kind: .revoke(deviceID: b.id), authority: good.authority)),
            ("a key that is not the signer's", .signed(kind, origin: origin, label: label, signer: a.id, signerSeed: b.seed, previousIndex: newest)),
        ]
        for (why, change) in forged {
            guard case .invalid = DeviceRule.judge(change, to: set, origin: origin, label: label) else { return XCTFail("\(why) was accepted") }
        }
        // Once applied, the same signature cannot be used again: the position moved.
        XCTAssertEqual(DeviceRule.apply(good, to: &set, origin: origin, label: label, index: 500, leafHash: Hash.sha256([5])), .chained)
        var copy = set
        apply(.revoke(deviceID: n.id), by: a, to: &copy)
        guard case .invalid = DeviceRule.judge(good, to: copy, origin: origin, label: label) else { return XCTFail("replayed after the label moved on") }
        // A revoked device signs nothing more.
        apply(.revoke(deviceID: a.id), by: b, to: &set)
        let late = DeviceChange.signed(.add(try device().record), origin: origin, label: label, signer: a.id, signerSeed: a.seed, previousIndex: try XCTUnwrap(set.newestIndex))
        XCTAssertEqual(DeviceRule.judge(late, to: set, origin: origin, label: label), .invalid("the signer is not an active device of this identity"))
    }

    /// Applying: invalid changes change no device but move the public part on (anyone sees the
    /// entry), attacks are applied (the log serves them), the state's chain and version follow
    /// every change, and the set digest depends on the set, not on the order its devices arrived in.
    func testApplyingAndTheMapValue() throws {
        let a = try device(id: [UInt8](repeating: 0xaa, count: 16)), b = try device(id: [UInt8](repeating: 0x11, count: 16))
        var set = DeviceSet()
        apply(.add(a.record), to: &set)
        let afterFirst = set
        XCTAssertEqual(set.version, 1)
        XCTAssertNotEqual(set.chain, Hash.zero)
        XCTAssertNotNil(set.mapValue)
        XCTAssertEqual(apply(.revoke(deviceID: b.id), to: &set), .invalid("device \(Hex.encode(b.id)) is not active"))
        XCTAssertEqual(set.setDigest, afterFirst.setDigest, "an invalid change changes no device")
        XCTAssertEqual(set.version, 2, "but its entry is in the label's public part")
        XCTAssertEqual(apply(.add(b.record), to: &set), .ghostDevice)
        XCTAssertEqual(set.active.map(\.id), [b.id, a.id], "applied, and kept sorted by id")
        XCTAssertEqual(set.version, 3)
        XCTAssertNotEqual(set.mapValue, afterFirst.mapValue)
        XCTAssertNotEqual(set.setDigest, afterFirst.setDigest)
        // The short-lived ghost: added, then revoked. The set looks as before, but the version,
        // the chain and the tombstone say what happened, so the map value differs.
        XCTAssertEqual(apply(.revoke(deviceID: b.id), to: &set), .operatorRevoke)
        XCTAssertEqual(set.active, afterFirst.active)
        XCTAssertEqual(set.tombstoned, [b.id])
        XCTAssertNotEqual(set.mapValue, afterFirst.mapValue)
        XCTAssertNotEqual(set.setDigest, afterFirst.setDigest, "the tombstone is in the set digest")
        // The chain is SHA-256(0x04 ‖ chain ‖ index ‖ leaf hash), link by link.
        var replay = DeviceSet()
        DeviceRule.apply(DeviceChange(kind: .add(a.record), authority: .operator), to: &replay, origin: origin, label: label, index: 7, leafHash: Hash.sha256([7]))
        var link: [UInt8] = [0x04] + Hash.zero.bytes + [0, 0, 0, 0, 0, 0, 0, 7] + Hash.sha256([7]).bytes
        XCTAssertEqual(replay.chain, Hash.sha256(link))
        link = [0x05, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7] + replay.chain.bytes
        XCTAssertEqual(replay.mapValue, Hash.sha256(link), "the map value's layout, by hand: the public part only")
        let digest = [0x06, 0, 0, 0, 1, UInt8(a.record.encoded.count >> 8), UInt8(a.record.encoded.count & 0xff)] + a.record.encoded + [0, 0, 0, 0]
        XCTAssertEqual(replay.setDigest, Hash.sha256(digest), "the set digest's layout, by hand")
    }
}
