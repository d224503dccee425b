import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassLog
import KeyglassServer
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The directory's API against a real server on loopback and a real SQLite file: paged histories
/// a monitor reads whole, chained changes that race a map head, the limit on unsigned changes,
/// and refusals of bad input.
final class DirectoryServerTests: XCTestCase {
    private let alice = "alice@example.com"

    private struct Device {
        let record: DeviceRecord
        let seed: [UInt8]
        init() throws {
            let pair = Ed25519.generate()
            record = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: pair.publicKey)
            seed = pair.seed
        }
    }

    private func client(_ d: RunningDirectory) -> DirectoryClient { DirectoryClient(log: d.client, logKey: d.verifierKey, lookupToken: d.lookupToken) }

    /// Waits until a verified lookup shows `count` devices.
    @discardableResult
    private func waitForDevices(_ count: Int, _ d: RunningDirectory) async throws -> DirectoryClient.Verified {
        for _ in 0..<200 {
            if let v = try? await client(d).lookup(alice), v.result.devices.count == count { return v }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ClientError.network("never saw \(count) devices")
    }

    /// A chained change signed by `signer` at the position the newest head shows, sent once.
    private func sendChained(_ kind: DeviceChange.Kind, by signer: Device, _ d: RunningDirectory) async throws -> (Int, Data) {
        let v = try await client(d).lookup(alice)
        let change = DeviceChange.signed(kind, origin: v.result.checkpoint.origin, label: v.result.label, signer: signer.record.id,
                                         signerSeed: signer.seed, previousIndex: try XCTUnwrap(v.newestIndex))
        return try await d.client.raw("POST", "/v2/changes", body: try JSONEncoder().encode(ChangeBody(identity: alice, change: change)),
                                      headers: ["Content-Type": "application/json"])
    }

    /// A directory with 30-ms epochs where alice's phone, onboarded by the operator, is in a head.
    private func startWithAlicesPhone() async throws -> (RunningDirectory, Device) {
        var options = DirectoryService.Options()
        options.epoch = .milliseconds(30)
        let d = try await RunningDirectory.start(options: options)
        let phone = try Device()
        try await onboard(phone, d)
        try await waitForDevices(1, d)
        return (d, phone)
    }

    private func onboard(_ device: Device, _ d: RunningDirectory) async throws {
        let answer = try await client(d).submit(ChangeBody(identity: alice, change: DeviceChange(kind: .add(device.record), authority: .operator)),
                                                token: d.token)
        XCTAssertGreaterThan(answer.index, 0)
    }

    func testHistoriesArePagedAndTheMonitorReadsThemWhole() async throws {
        var options = DirectoryService.Options()
        options.epoch = .milliseconds(30)
        options.historyPage = 2
        let d = try await RunningDirectory.start(options: options)
        let phone = try Device()
        try await onboard(phone, d)
        try await waitForDevices(1, d)
        var devices = [phone]
        for n in 2...6 {
            let next = try Device()
            var status = 0
            for _ in 0..<100 where status != 200 {
                (status, _) = try await sendChained(.add(next.record), by: phone, d)
                if status != 200 { XCTAssertEqual(status, 409, "only a stale position is retried") }
            }
            XCTAssertEqual(status, 200)
            devices.append(next)
            try await waitForDevices(n, d)
        }
        // The first page: the newest two, and more before them.
        let page = try JSONDecoder().decode(DirectoryHistoryJSON.self, from: try await d.client.get("/v2/history/\(alice)", headers: ["Authorization": "Bearer \(d.lookupToken)"]))
        XCTAssertEqual(page.entries.count, 2)
        XCTAssertTrue(page.more)
        let (_, _, history) = try await client(d).history(alice)
        XCTAssertTrue(history.allSatisfy { $0.sealed != nil }, "every change comes with its sealed part")
        XCTAssertEqual(history.count, 6, "every page read, oldest first")
        XCTAssertEqual(history.map(\.index), history.map(\.index).sorted())
        let run = try await client(d).monitor(alice, known: devices.map(\.record), since: nil, previous: nil, view: nil)
        XCTAssertEqual(run.report.alerts, [])
        XCTAssertEqual(run.report.ownChanges.count, 6)
        // A page of a tree the log has not signed is refused.
        let (bad, _) = try await d.client.raw("GET", "/v2/history/\(alice)?before=5&tree_size=100000", headers: ["Authorization": "Bearer \(d.lookupToken)"])
        XCTAssertEqual(bad, 400)
        await d.remove()
    }

    /// Two changes signed against the same head: the second finds the position moved and is told
    /// to sign again (409, retryable), not that its signature is bad.
    func testAChangeSignedAgainstAMovedPositionIsRetryable() async throws {
        var options = DirectoryService.Options()
        let (d, phone) = try await startWithAlicesPhone()
        await d.stop()
        // The same directory with no head for an hour after the first change.
        options.epoch = .seconds(3600)
        let d3 = try await RunningDirectory.start(options: options, data: d.data)
        let (first, firstBody) = try await sendChained(.add(try Device().record), by: phone, d3)
        XCTAssertEqual(first, 200, String(decoding: firstBody, as: UTF8.self))
        let (second, body) = try await sendChained(.add(try Device().record), by: phone, d3)
        XCTAssertEqual(second, 409, String(decoding: firstBody, as: UTF8.self) + " then " + String(decoding: body, as: UTF8.self))
        XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("stale_position"))
        // Without the phone's key, a caller learns nothing from the answer: not that a change is
        // pending (no stale_position), not whether the signer is a device of the identity.
        let stranger = try Device()
        let (forged, forgedBody) = try await sendChained(.add(try Device().record), by: stranger, d3)
        XCTAssertEqual(forged, 403, String(decoding: forgedBody, as: UTF8.self))
        let (unknownIdentity, unknownBody) = try await d3.client.raw(
            "POST", "/v2/changes",
            body: try JSONEncoder().encode(ChangeBody(identity: "nobody@example.com", change: DeviceChange(
                kind: .add(try Device().record), authority: .chained(signer: stranger.record.id, signature: [UInt8](repeating: 1, count: 64))))),
            headers: ["Content-Type": "application/json"])
        XCTAssertEqual(unknownIdentity, 403)
        XCTAssertEqual(LogClient.message(forgedBody), LogClient.message(unknownBody), "one answer for every change that does not verify")
        await d3.stop()
        // A change the phone signed, which the rule refuses for another reason (its own device
        // again, as a retry of an applied add would be): the signer proved its key, so it is told why.
        options.epoch = .milliseconds(30)
        let d4 = try await RunningDirectory.start(options: options, data: d.data)
        try await waitForDevices(2, d4)
        let (again, againBody) = try await sendChained(.add(phone.record), by: phone, d4)
        XCTAssertEqual(again, 403)
        XCTAssertTrue(LogClient.message(againBody).contains("already active"), LogClient.message(againBody))
        await d4.remove()
    }

    /// Witnesses cosign the checkpoints lookups are answered against; a client requiring a quorum
    /// accepts a lookup once it carries one, and refuses one that lacks it.
    func testLookupsCarryTheWitnessesCosignatures() async throws {
        let data = DataDirectory(path: TestLog.temporaryDirectory("witnessed-directory"))
        let vkey = try await data.initialiseDirectory(origin: "dir.keyglass.example/log").verifierKey
        let witness = try await RunningWitness.start(name: "w1.example/witness", logs: [vkey], state: TestLog.temporaryDirectory("dw"))
        var options = DirectoryService.Options()
        options.epoch = .milliseconds(30)
        let d = try await RunningDirectory.start(options: options, data: data, witnesses: [witness.config])
        let phone = try Device()
        try await onboard(phone, d)
        try await waitForDevices(1, d)
        let required = DirectoryClient(log: d.client, logKey: d.verifierKey, witnessPolicy: WitnessPolicy(witnesses: [witness.witness.verifierKey], quorum: 1, maxAge: 60),
                                       lookupToken: d.lookupToken)
        var verified: DirectoryClient.Verified?
        for _ in 0..<100 where verified == nil {
            verified = try? await required.lookup(alice)
            if verified == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        XCTAssertEqual(verified?.result.devices, [phone.record], "a lookup with the witness's cosignature")
        let stranger = try NoteVerifierKey(name: "w2.example/witness", type: .cosignatureV1, publicKey: Ed25519.generate().publicKey)
        let strict = DirectoryClient(log: d.client, logKey: d.verifierKey, witnessPolicy: WitnessPolicy(witnesses: [stranger], quorum: 1), lookupToken: d.lookupToken)
        do {
            _ = try await strict.lookup(alice)
            XCTFail("a lookup without the required cosignature was accepted")
        } catch let e as DirectoryClient.Refused {
            XCTAssertTrue(e.description.contains("witness cosignature"), e.description)
        }
        // An audit requiring the witness audits the head it cosigned (`/v2/head`), watching or not.
        let stateDir = TestLog.temporaryDirectory("audit-witnessed")
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        for watched in [[], [alice]] {
            let store = try DirectoryStateStore(path: stateDir + "/audit-\(watched.count).sqlite", logKey: d.verifierKey)
            let report = try await DirectoryAuditor(client: required).run(watched: watched, view: nil, store: store)
            XCTAssertEqual(report.alerts, [], "watching \(watched)")
            XCTAssertGreaterThan(report.treeSize, 2)
        }
        await d.remove()
        await witness.stop()
    }

    func testUnsignedChangesAreLimitedPerClientAndBadInputIsRefused() async throws {
        let d = try await RunningDirectory.start(signedChangesPerSecond: 1)
        let bogus = ChangeBody(identity: alice, kind: "revoke", device_id: Base64.encode(Ed25519.randomBytes(16)),
                               signer: Base64.encode(Ed25519.randomBytes(16)), signature: Base64.encode(Ed25519.randomBytes(64)))
        var statuses: [Int] = []
        for _ in 0..<40 {
            statuses.append(try await d.client.raw("POST", "/v2/changes", body: try JSONEncoder().encode(bogus),
                                                   headers: ["Content-Type": "application/json"]).0)
        }
        XCTAssertTrue(statuses.contains(429), "\(statuses)")
        XCTAssertFalse(statuses.contains { $0 >= 500 }, "\(statuses)")
        // The operator's token is not limited.
        let phone = try Device()
        try await onboard(phone, d)
        for (path, status) in [("/v2/proof/consistency?from=5&to=2", 400), ("/v2/lookup/" + String(repeating: "a", count: 300), 400),
                               ("/v2/history/a%20b", 400), ("/v2/lookup/", 404)] {
            let got = try await d.client.raw("GET", path, headers: ["Authorization": "Bearer \(d.lookupToken)"]).0
            XCTAssertEqual(got, status, path)
        }
        await d.remove()
    }

    /// Lookups and histories carry sealed changes and say whether an identity has keys (a
    /// membership oracle): they need a lookup credential, each limited on its own, or the publish
    /// token. What every auditor needs (the checkpoint, tiles, consistency proofs) stays public.
    func testLookupsNeedACredentialAndAreLimitedPerCredential() async throws {
        let dir = DataDirectory(path: TestLog.temporaryDirectory("directory"))
        _ = try await dir.initialiseDirectory(origin: "dir.keyglass.example/log")
        let second = try dir.addLookupToken(name: "second-app")
        XCTAssertThrowsError(try dir.addLookupToken(name: "second-app"), "a name is used once")
        XCTAssertThrowsError(try dir.addLookupToken(name: "bad name"), "no spaces")
        let hashes = try String(contentsOfFile: dir.lookupTokenHashes, encoding: .utf8)
        let firstToken = try d0(dir)
        XCTAssertFalse(hashes.contains(second) || hashes.contains(firstToken), "only hashes are kept")
        let d = try await RunningDirectory.start(lookupsPerSecond: 1, data: dir)
        try await onboard(try Device(), d)
        func get(_ path: String, _ token: String?) async throws -> Int {
            try await d.client.raw("GET", path, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:]).0
        }
        for path in ["/v2/lookup/\(alice)", "/v2/history/\(alice)"] {
            let anonymous = try await get(path, nil)
            XCTAssertEqual(anonymous, 401, path)
            let wrong = try await get(path, "not-a-credential")
            XCTAssertEqual(wrong, 403, path)
        }
        var first: [Int] = []
        for _ in 0..<30 { first.append(try await get("/v2/lookup/\(alice)", d.lookupToken)) }
        XCTAssertEqual(first.first, 200)
        XCTAssertTrue(first.contains(429), "one credential is limited: \(first)")
        let other = try await get("/v2/lookup/\(alice)", second)
        XCTAssertEqual(other, 200, "another credential has its own allowance")
        var operatorStatuses: [Int] = []
        for _ in 0..<30 { operatorStatuses.append(try await get("/v2/lookup/\(alice)", d.token)) }
        XCTAssertEqual(Set(operatorStatuses), [200], "the publish token (the provider's back end) is not limited")
        for path in ["/checkpoint", "/v2/log", "/tile/entries/000.p/3", "/healthz"] {
            let status = try await get(path, nil)
            XCTAssertEqual(status, 200, "public: \(path)")
        }
        await d.remove()
    }

    /// A lookup the event loop takes, charges and then hands to the router (here an identity that
    /// is not valid percent-encoded UTF-8: a 400) costs its credential one request, not two: the
    /// allowance of 2 still answers the next lookup.
    func testALookupHandedOnToTheRouterIsChargedOnce() async throws {
        let d = try await RunningDirectory.start(lookupsPerSecond: 0.1)  // bursts of 2, refilled every 10 s
        try await onboard(try Device(), d)
        func get(_ path: String, _ token: String) async throws -> Int {
            try await d.client.raw("GET", path, headers: ["Authorization": "Bearer \(token)"]).0
        }
        // The publish token is not limited: wait with it for a head that shows alice.
        var status = 0
        for _ in 0..<200 where status != 200 {
            status = try await get("/v2/lookup/\(alice)", d.token)
            if status != 200 { try await Task.sleep(for: .milliseconds(25)) }
        }
        XCTAssertEqual(status, 200)
        let bad = try await get("/v2/lookup/%A9", d.lookupToken)
        XCTAssertEqual(bad, 400)
        let next = try await get("/v2/lookup/\(alice)", d.lookupToken)
        XCTAssertEqual(next, 200, "the refused lookup was charged once")
        let over = try await get("/v2/lookup/\(alice)", d.lookupToken)
        XCTAssertEqual(over, 429, "and the allowance is spent")
        await d.remove()
    }

    /// A change computes only its identity's label; the VRF proof is made by the first lookup and
    /// stored by the writer in the identity's row, where lookups after a restart read it.
    func testAnIdentitysVRFProofIsMadeAtItsFirstLookupAndStored() async throws {
        let (d, _) = try await startWithAlicesPhone()
        let reader = try SQLiteStorage(path: d.data.database, sync: .normal)
        defer { reader.close() }
        let seed = try d.data.loadVRFSeed()
        let name = DirectoryLabels.storedIdentity(alice, vrfSeed: seed)
        let vrfKey = try ECVRF.publicKey(seed: seed)
        // Waiting for the phone made lookups already: the proof they made reaches the row.
        var stored: [UInt8] = []
        for _ in 0..<200 {
            stored = try XCTUnwrap(try reader.vrfLabel(of: name)).proof
            if !stored.isEmpty { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        let beta = try XCTUnwrap(ECVRF.verify(publicKey: vrfKey, alpha: Array(alice.utf8), proof: stored), "the stored proof verifies")
        XCTAssertEqual(Hash(bytes: Array(beta.prefix(32))), try XCTUnwrap(try reader.vrfLabel(of: name)).label)
        let looked = try await client(d).lookup(alice)
        XCTAssertEqual(looked.result.label, Hash(bytes: Array(beta.prefix(32))))
        // A second identity, changed but never looked up: its row has the label and no proof yet.
        let bob = "bob@example.com"
        _ = try await client(d).submit(ChangeBody(identity: bob, change: DeviceChange(kind: .add(try Device().record), authority: .operator)),
                                       token: d.token)
        let bobRow = try XCTUnwrap(try reader.vrfLabel(of: DirectoryLabels.storedIdentity(bob, vrfSeed: seed)))
        XCTAssertEqual(bobRow.proof, [], "no lookup yet")
        XCTAssertEqual(bobRow.label, try DirectoryLabels.computeLabel(of: bob, key: ECVRF.SecretKey(seed: seed)))
        await d.stop()
        // After a restart the stored proof is what lookups carry.
        let again = try await RunningDirectory.start(data: d.data)
        let reopened = try await client(again).lookup(alice)
        XCTAssertEqual(reopened.result.label, looked.result.label)
        await again.remove()
    }

    private func d0(_ dir: DataDirectory) throws -> String {
        try SecretFile.read(dir.lookupToken).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// An auditor that starts watching an identity after its changes were audited sealed rebuilds
    /// its devices from its opened history: its next changes, the owner's own, raise nothing, and
    /// a ghost after them is named. An identity the log calls erased is an alert for its watcher.
    func testAWatchAddedLaterJudgesTheNextChangesRightly() async throws {
        let (d, phone) = try await startWithAlicesPhone()
        let laptop = try await sendChained(.add(try Device().record), by: phone, d).0
        XCTAssertEqual(laptop, 200)
        try await waitForDevices(2, d)
        let stateDir = TestLog.temporaryDirectory("audit-state")
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        let path = stateDir + "/audit.sqlite"
        let auditor = DirectoryAuditor(client: client(d))
        let store = try DirectoryStateStore(path: path, logKey: d.verifierKey)
        var report = try await auditor.run(watched: [], view: nil, store: store)
        XCTAssertEqual(report.alerts, [], "anonymous: the changes are sealed")
        try store.markAlertsReported()
        // The owner's own change, then the operator's own software would be needed for a ghost;
        // here the owner adds a tablet, which a watcher must not mistake for one.
        let tablet = try await sendChained(.add(try Device().record), by: phone, d).0
        XCTAssertEqual(tablet, 200)
        try await waitForDevices(3, d)
        report = try await auditor.run(watched: [alice], view: report.view, store: store)
        XCTAssertEqual(report.alerts, [], "a watch added later judges against the rebuilt devices: \(report.alerts)")
        try store.markAlertsReported()
        // The operator revokes a device (honest, and an alert for whoever watches alice).
        let v = try await client(d).lookup(alice)
        _ = try await client(d).submit(ChangeBody(identity: alice, change: DeviceChange(kind: .revoke(deviceID: v.result.devices.last!.id), authority: .operator)),
                                       token: d.token)
        try await waitForDevices(2, d)
        report = try await auditor.run(watched: [alice], view: report.view, store: store)
        XCTAssertEqual(report.alerts.map(\.kind), ["operator_revoke"])
        await d.remove()
    }

    /// A history that withholds one change's sealed part (a revocation, say) on a later run must
    /// not make the watcher rebuild the label's devices without it: the stolen device would count
    /// as active again for the changes that follow. The rebuild names the history and keeps the
    /// devices it has.
    func testAWithheldSealedChangeIsNamedAndTheDevicesKept() async throws {
        let (d, phone) = try await startWithAlicesPhone()
        let laptop = try Device()
        let added = try await sendChained(.add(laptop.record), by: phone, d).0
        XCTAssertEqual(added, 200)
        try await waitForDevices(2, d)
        let stateDir = TestLog.temporaryDirectory("audit-withheld")
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        let store = try DirectoryStateStore(path: stateDir + "/audit.sqlite", logKey: d.verifierKey)
        var report = try await DirectoryAuditor(client: client(d)).run(watched: [alice], view: nil, store: store)
        XCTAssertEqual(report.alerts, [])
        try store.markAlertsReported()
        let (revoked, revokeBody) = try await sendChained(.revoke(deviceID: laptop.record.id), by: phone, d)
        XCTAssertEqual(revoked, 200)
        let revokeIndex = try JSONDecoder().decode(ChangeAnswer.self, from: revokeBody).index
        try await waitForDevices(1, d)
        report = try await DirectoryAuditor(client: client(d)).run(watched: [alice], view: report.view, store: store)
        XCTAssertEqual(report.alerts, [], "the owner's own revocation")
        try store.markAlertsReported()
        // The operator's front end leaves the revocation's sealed part out of alice's history.
        let upstream = d.client, token = d.lookupToken
        let front = try await FrontEnd.start { _, target in
            guard target.hasPrefix("/v2/history/") else { return .forward(upstream) }
            guard let (status, data) = try? await upstream.raw("GET", target, headers: ["Authorization": "Bearer \(token)"]), status == 200,
                var page = try? JSONDecoder().decode(DirectoryHistoryJSON.self, from: data)
            else { return .fail(502) }
            page.entries = page.entries.map { e in
                var e = e
                if e.index == revokeIndex { e.sealed = nil }
                return e
            }
            return .body((try? JSONEncoder().encode(page)) ?? Data(), contentType: "application/json")
        }
        let frontClient = DirectoryClient(log: LogClient(base: front.url, timeout: 10), logKey: d.verifierKey, lookupToken: d.lookupToken)
        let withheld = try await DirectoryAuditor(client: frontClient).run(watched: [alice], view: report.view, store: store)
        XCTAssertEqual(withheld.alerts.map(\.kind), ["bad_opening"], "\(withheld.alerts)")
        try store.markAlertsReported()
        // The devices kept are the true ones: the honest history after it raises nothing.
        report = try await DirectoryAuditor(client: client(d)).run(watched: [alice], view: withheld.view, store: store)
        XCTAssertEqual(report.alerts, [])
        let aliceLabel = try await client(d).lookup(alice).result.label
        let kept = try XCTUnwrap(try store.labelStates.state(of: aliceLabel))
        XCTAssertEqual(kept.active.map(\.id), [phone.record.id], "the revoked laptop is not active again")
        await front.stop()
        await d.remove()
    }
}
