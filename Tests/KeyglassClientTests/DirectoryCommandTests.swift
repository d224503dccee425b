import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import KeyglassWire
import Synchronization
import XCTest

/// The key directory end to end, as its users run it: `keyglass-server init --directory` and
/// `serve`, and `keyglass directory` (device-new, change, lookup, monitor) against it, then an
/// operator running software of its own that slips a ghost device past the honest server's rule.
final class DirectoryCommandTests: XCTestCase {
    private var work = ""
    private var data: String { work + "/data" }
    private let alice = "alice@example.com"

    override func setUp() {
        work = TestLog.temporaryDirectory("directory-cli")
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: work) }

    private func keyglass(_ args: [String]) throws -> Binaries.Result { try Binaries.run("keyglass", ["directory"] + args, timeout: 60) }

    /// Polls `lookup` until it shows `count` devices (a change shows from the next map head).
    private func waitForDevices(_ count: Int, _ log: [String]) async throws -> Binaries.Result {
        var last: Binaries.Result?
        for _ in 0..<100 {
            let r = try keyglass(["lookup", alice] + log)
            if r.status == 0, r.stdout.contains(": \(count) device") { return r }
            last = r
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTFail("lookup never showed \(count) devices: \(last?.stdout ?? "") \(last?.stderr ?? "")")
        return last!
    }

    func testDirectoryLifecycleAndAGhostTheOwnersMonitorCatches() async throws {
        let initialised = try Binaries.run("keyglass-server", ["init", "--directory", "--data", data, "--origin", "dir.example/log"])
        XCTAssertEqual(initialised.status, 0, initialised.stderr)
        let vrfMode = try FileManager.default.attributesOfItem(atPath: data + "/vrf-key")[.posixPermissions] as? Int
        XCTAssertEqual(vrfMode, 0o600, "the VRF key is private")
        let vkey = try XCTUnwrap(initialised.stdout.split(separator: "\n").last.map(String.init))
        let vrfLine = try XCTUnwrap(initialised.stdout.split(separator: "\n").first { $0.hasPrefix("VRF public key") })
        let vrfKey = String(vrfLine.split(separator: " ").last!)

        var (server, port, client) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server.log")
        let log = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--vrf-key", vrfKey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        let token = ["--token", data + "/publish-token"]
        for name in ["phone", "laptop", "ghost"] {
            XCTAssertEqual(try keyglass(["device-new", "--out", "\(work)/\(name).json"]).status, 0)
        }
        let phone = work + "/phone.json", laptop = work + "/laptop.json", ghost = work + "/ghost.json"

        // Never published: a verified absence.
        var r = try keyglass(["lookup", alice] + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("never published (the map proves the identity absent)"), r.stdout)
        // Lookups carry what changes did and say whether an identity has keys: without a
        // credential, or with one the server does not know, there is no answer.
        let noCredential = Array(log.prefix(6) + log.suffix(2))
        r = try keyglass(["lookup", alice] + noCredential)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("lookup credential"), r.stderr)
        try "not-a-credential\n".write(toFile: work + "/wrong-token", atomically: true, encoding: .utf8)
        chmod(work + "/wrong-token", 0o600)
        r = try keyglass(["lookup", alice] + noCredential + ["--lookup-token", work + "/wrong-token"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("not accepted"), r.stderr)
        // A file with more than a token in it (a second line) is refused before anything is sent.
        try "first-line\nsecond-line\n".write(toFile: work + "/two-lines", atomically: true, encoding: .utf8)
        chmod(work + "/two-lines", 0o600)
        r = try keyglass(["lookup", alice] + noCredential + ["--lookup-token", work + "/two-lines"])
        XCTAssertEqual(r.status, 64, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("does not hold a bearer token"), r.stderr)

        // The operator onboards the phone; the phone signs the laptop in.
        r = try keyglass(["change", "add", alice, "--device", phone] + token + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(1, log)
        r = try keyglass(["change", "add", alice, "--device", laptop, "--signer", phone] + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        // `change` waits for the map head that covers it: the very next lookup shows the laptop.
        XCTAssertTrue(r.stdout.contains("in lookups from map head epoch"), r.stdout)
        r = try keyglass(["lookup", alice] + log)
        XCTAssertTrue(r.stdout.contains(": 2 devices"), r.stdout)
        r = try await waitForDevices(2, log)
        XCTAssertTrue(r.stdout.contains("complete as of map head epoch"), r.stdout)
        // A client that stopped here (its view: the head showing both devices), for the fork below.
        try FileManager.default.copyItem(atPath: work + "/state", toPath: work + "/state-then")

        let owner = ["monitor", alice, "--device", phone, "--device", laptop] + log
        r = try keyglass(owner)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("no alert"), r.stdout)

        // The honest server refuses an operator's add to a set already changed: a ghost.
        r = try keyglass(["change", "add", alice, "--device", ghost] + token + log)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("ghostDevice"), r.stderr)
        // A VRF key other than leaf 0's is refused by every lookup that pinned the right one.
        r = try keyglass(["lookup", alice] + log.prefix(4) + ["--lookup-token", data + "/lookup-token", "--vrf-key", Base64.encode(Ed25519.generate().publicKey),
                                                             "--state", work + "/state2"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("REFUSED"), r.stdout)

        // The operator runs its own software: the ghost goes into the log behind the rule's back.
        server.terminate()
        server.waitUntilExit()
        try appendGhost(ghost)
        (server, port, client) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server2.log")
        let log2 = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--vrf-key", vrfKey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        // Contacts see three devices, complete as the map says: the ghost is on the record...
        _ = try await waitForDevices(3, log2)
        // ...and the owner's monitor names it.
        r = try keyglass(["monitor", alice, "--device", phone, "--device", laptop] + log2)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ALERT: entry") && r.stdout.contains("ghost_device"), r.stdout)

        // A short-lived ghost: the operator revokes it again (an honest server takes an operator's
        // revocation). Contacts are back to two devices; the owner's history still holds the ghost.
        r = try keyglass(["change", "revoke", alice, "--device", ghost] + token + log2)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(2, log2)
        r = try keyglass(["monitor", alice, "--device", phone, "--device", laptop] + log2)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ghost_device") && r.stdout.contains("revoked by the operator"), r.stdout)

        // Frozen for this client: a map head older than --max-age is refused.
        try await Task.sleep(for: .milliseconds(2500))
        r = try keyglass(["lookup", alice, "--max-age", "1s"] + log2)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("--max-age"), r.stdout)

        // Bad input to the API is a 4xx with a reason, never a 5xx; a v2 log serves no /v1.
        let json = ["Content-Type": "application/json"]
        for (body, status) in [("{", 400), (#"{"identity":"alice@example.com","kind":"steal"}"#, 400),
                               (#"{"identity":"a b","kind":"revoke","device_id":"AAAAAAAAAAAAAAAAAAAAAA=="}"#, 401)] {
            let (got, answer) = try await client.raw("POST", "/v2/changes", body: Data(body.utf8), headers: json)
            XCTAssertEqual(got, status, String(decoding: answer, as: UTF8.self))
        }
        let lookupToken = try String(contentsOfFile: data + "/lookup-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let badIdentity = try await client.raw("GET", "/v2/lookup/a%20b", headers: ["Authorization": "Bearer \(lookupToken)"]).0
        XCTAssertEqual(badIdentity, 400)
        let v1 = try await client.raw("GET", "/v1/keys/alice@example.com").0
        XCTAssertEqual(v1, 404)
        server.terminate()
        server.waitUntilExit()

        // The operator forks: a longer history that does not extend the one this client verified
        // (alice's laptop never added, other identities added instead). Every answer verifies on its
        // own; the client's stored view refuses it, and so does a client that never saw alice.
        try forgeFork()
        (server, port, client) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server3.log")
        let log3 = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--vrf-key", vrfKey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        for identity in [alice, "bob@example.com"] {
            // This client saw later heads than the fork has: refused as stale, whoever is asked for.
            r = try keyglass(["lookup", identity] + log3)
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("REFUSED: stale"), r.stdout)
            // The client that stopped at the epoch the fork has too: alice's history was rewritten
            // (version 2 seen, 1 shown); for bob, whom it never looked up, the trees disagree.
            r = try keyglass(["lookup", identity] + log3.dropLast(2) + ["--state", work + "/state-then"])
            XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains(identity == alice ? "history rewritten" : "the log forked"), r.stdout)
        }
        // A client with no view of its own believes the fork: what witnesses are for (not yet in v2).
        r = try keyglass(["lookup", alice] + log3.dropLast(2) + ["--state", work + "/fresh"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        server.terminate()
        server.waitUntilExit()
    }

    /// The log's first four leaves (config, head, alice's phone, head), then 30 operator adds of new
    /// identities: longer than the history the client verified, and not an extension of it.
    private func forgeFork() throws {
        let dir = DataDirectory(path: data)
        let storage = try SQLiteStorage(path: dir.database, readers: 1)
        let stored = try storage.entries(start: 0, end: 4)
        var sealed = try storage.sealedChanges(start: 0, end: 4).reduce(into: [Int: [UInt8]]()) { $0[Int($1.key)] = $1.value }
        storage.close()
        var entries: [(identity: String, data: [UInt8])] = stored.map { e in
            if case .change(_, let l, _, _, _)? = try? DirectoryEntry.parse(e.data) { return (l.hex, e.data) }
            return ("", e.data)
        }
        let seed = try dir.loadVRFSeed()
        for i in 0..<30 {
            let proof = try ECVRF.prove(seed: seed, alpha: Array("user\(i)@example.com".utf8))
            let label = Hash(bytes: Array(try ECVRF.proofToHash(proof).prefix(32)))!
            let record = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)
            let (entry, opened) = Self.sealedEntry(DeviceChange(kind: .add(record), authority: .operator), after: DeviceSet(), label: label,
                                                   origin: try dir.loadSigner().name, time: Sequencer.nowMillis())
            sealed[entries.count] = opened
            entries.append((label.hex, entry))
        }
        try dir.forgeHistory(raw: entries, sealed: sealed)
    }

    /// `keyglass directory audit` re-derives the log: an operator's reset of a watched identity is
    /// an alert (once), a ghost slipped in by the operator's own software is one whoever watches,
    /// and a map head that is not the map its entries make is map_mismatch, naming the epoch.
    func testAuditReDerivesEveryHeadAndNamesWhatTheRuleCalls() async throws {
        let initialised = try Binaries.run("keyglass-server", ["init", "--directory", "--data", data, "--origin", "dir.example/log"])
        XCTAssertEqual(initialised.status, 0, initialised.stderr)
        let vkey = try XCTUnwrap(initialised.stdout.split(separator: "\n").last.map(String.init))
        var (server, port, _) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server.log")
        var log = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        let token = ["--token", data + "/publish-token"]
        for name in ["phone", "recovery", "ghost"] { XCTAssertEqual(try keyglass(["device-new", "--out", "\(work)/\(name).json"]).status, 0) }
        try "# watched\n\(alice)\n".write(toFile: work + "/watch", atomically: true, encoding: .utf8)
        let audit = ["audit", "--watch", work + "/watch"]

        var r = try keyglass(["change", "add", alice, "--device", work + "/phone.json"] + token + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(1, log)
        r = try keyglass(audit + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("no alert"), r.stdout)

        // Account recovery by the operator: honest, and an alert for whoever watches alice. Once.
        r = try keyglass(["change", "reset", alice, "--device", work + "/recovery.json"] + token + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(1, log)
        try await Task.sleep(for: .milliseconds(300))
        r = try keyglass(audit + log)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ALERT account_reset"), r.stdout)
        r = try keyglass(audit + log)
        XCTAssertEqual(r.status, 0, "reported once: \(r.stdout)")

        // The operator's own software adds a ghost: an alert for whoever watches alice (her changes
        // are opened from her history); an auditor watching no one sees a sealed change and a map
        // that is right for it.
        server.terminate()
        server.waitUntilExit()
        try appendGhost(work + "/ghost.json")
        (server, port, _) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server2.log")
        log = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        _ = try await waitForDevices(2, log)
        r = try keyglass(["audit"] + log.dropLast() + [work + "/anonymous"])
        XCTAssertEqual(r.status, 0, "nothing of the ghost shows without the openings: \(r.stdout) \(r.stderr)")
        r = try keyglass(audit + log)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ALERT ghost_device"), r.stdout)
        server.terminate()
        server.waitUntilExit()

        // A map head whose root is not the map of its entries, in a tree the log's key signs, served
        // by the operator's own front end: map_mismatch, naming its epoch and leaf.
        let dir = DataDirectory(path: data)
        let storage = try SQLiteStorage(path: dir.database, readers: 1)
        let size = try XCTUnwrap(try storage.latestCheckpoint()).size
        var entries = try storage.entries(start: 0, end: size).map(\.data)
        storage.close()
        // A change stamped in 1970, behind every entry before it: backdated.
        let lateLabel = Hash(bytes: Array(try ECVRF.proofToHash(try ECVRF.prove(seed: try dir.loadVRFSeed(), alpha: Array("late@example.com".utf8))).prefix(32)))!
        let late = Self.sealedEntry(
            DeviceChange(kind: .add(try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)), authority: .operator),
            after: DeviceSet(), label: lateLabel, origin: "dir.example/log", time: 1000).entry
        entries.append(late)
        let backdatedIndex = UInt64(entries.count - 1)
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        for e in entries { _ = try replay.replay(e, leafHash: Merkle.leafHash(e)) }
        let forgedHead = DirectoryEntry.mapHead(timestampMillis: Sequencer.nowMillis(), epoch: replay.epoch + 1, coveredSize: size + 1,
                                                root: Hash(bytes: Ed25519.randomBytes(32))!)
        entries.append(forgedHead.encoded)
        var range = CompactRange()
        for e in entries { range.append(Merkle.leafHash(e)) }
        let note = try SignedCheckpoint.sign(Checkpoint(origin: "dir.example/log", size: range.size, root: range.root), with: try dir.loadSigner())
            .note.serialized
        let bundle = Data(EntryBundle.encode(entries))
        let bundlePath = "/" + TileLayout.entriesPath(index: 0, partial: UInt64(entries.count))
        let front = try await FrontEnd.start { _, target in
            if target == "/checkpoint" || target == "/v2/head" { return .body(Data(note.utf8), contentType: "text/plain") }
            if target == bundlePath { return .body(bundle, contentType: "application/octet-stream") }
            return .fail(404)
        }
        r = try keyglass(["audit", "--log", front.url.absoluteString, "--vkey", vkey, "--state", work + "/state-fresh"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ALERT map_mismatch") && r.stdout.contains("epoch \(replay.epoch + 1)") && r.stdout.contains("leaf \(size + 1)"),
                      r.stdout)
        XCTAssertTrue(r.stdout.contains("ALERT backdated: entry \(backdatedIndex)"), r.stdout)
        await front.stop()
    }

    /// What an operator with the database, the signing key and the VRF key can do: append an
    /// operator add of `deviceFile` to alice's set, which the honest server would refuse.
    /// A directory of 20,000 entries, audited through a front end that stops answering part way:
    /// the first run keeps what it committed (a whole chunk, proved a prefix of the signed tree)
    /// and still reports the alert it found there, the next resumes at its end instead of at leaf 0
    /// and reports the alert after it, each exactly once. A fork of the same size as the audited
    /// tree is refused even with nothing left to replay. The map and states are in the state database.
    func testAnInterruptedAuditResumesWhereItStoppedAndReportsOnce() async throws {
        let initialised = try Binaries.run("keyglass-server", ["init", "--directory", "--data", data, "--origin", "big.example/log"])
        XCTAssertEqual(initialised.status, 0, initialised.stderr)
        let vkey = try XCTUnwrap(initialised.stdout.split(separator: "\n").last.map(String.init))
        let dir = DataDirectory(path: data)
        let storage = try SQLiteStorage(path: dir.database, readers: 1)
        let config = try XCTUnwrap(try storage.entries(start: 0, end: 1).first).data
        storage.close()

        // The history: operator adds of new labels (each a label's first change), a map head
        // every 500 entries with the root the entries make, and two changes stamped in the past
        // (backdated: what an auditor watching no one can name) at entries 9,001 and 17,001.
        let keys = (0..<32).map { _ in Ed25519.generate().publicKey }
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        _ = try replay.replay(config, leafHash: Merkle.leafHash(config))
        var entries: [(identity: String, data: [UInt8])] = [("", config)]
        var sealed: [Int: [UInt8]] = [:]
        var labels: [Hash] = []
        var time = Sequencer.nowMillis() - 60_000
        var epoch: UInt64 = 0
        func append(_ e: DirectoryEntry, identity: String) throws {
            let bytes = e.encoded
            _ = try replay.replay(bytes, leafHash: Merkle.leafHash(bytes))
            entries.append((identity, bytes))
        }
        func append(_ change: DeviceChange, label: Hash) throws {
            let (bytes, opened) = Self.sealedEntry(change, after: replay.states[label] ?? DeviceSet(), label: label, origin: "big.example/log", time: time)
            _ = try replay.replay(bytes, leafHash: Merkle.leafHash(bytes), sealed: opened)
            sealed[entries.count] = opened
            entries.append((label.hex, bytes))
        }
        let earlyGhost = 9_001, ghostIndex = 17_001  // backdated changes (named for the ghosts they were before step B)
        while entries.count < 20_000 {
            time += 1
            if entries.count % 500 == 499 {
                let covered = UInt64(entries.count)
                epoch += 1
                try append(.mapHead(timestampMillis: time, epoch: epoch, coveredSize: covered, root: try replay.mapRoot(covering: covered)), identity: "")
            } else if entries.count == ghostIndex || entries.count == earlyGhost {
                let victim = labels[entries.count == earlyGhost ? 50 : 100]
                let record = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: keys[0])
                time -= 1_000_000
                try append(DeviceChange(kind: .add(record), authority: .operator), label: victim)
                time += 1_000_000
            } else {
                let label = Hash(bytes: Ed25519.randomBytes(32))!
                labels.append(label)
                let record = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: keys[entries.count % keys.count])
                try append(DeviceChange(kind: .add(record), authority: .operator), label: label)
            }
        }
        try dir.forgeHistory(raw: entries, sealed: sealed)
        let (server, port, _) = try await Binaries.startServer(data: data, ["--epoch-ms", "3600000"], log: work + "/server.log")
        defer { server.terminate() }
        let upstream = LogClient(base: URL(string: "http://127.0.0.1:\(port)")!)
        // The front end stops serving entry bundles past tile 70 until `healthy` is set.
        let healthy = Mutex(false)
        let front = try await FrontEnd.start { _, target in
            if target.hasPrefix("/tile/entries/"), !healthy.withLock({ $0 }),
               let n = Int(target.dropFirst("/tile/entries/".count).prefix { $0.isNumber }), n > 70 {
                return .fail(503)
            }
            return .forward(upstream)
        }
        defer { Task { await front.stop() } }
        let log = ["--log", front.url.absoluteString, "--vkey", vkey, "--state", work + "/state"]
        var r = try keyglass(["audit"] + log)
        XCTAssertEqual(r.status, 2, "the log stopped answering, after a chunk with an alert: \(r.stdout) \(r.stderr)")
        XCTAssertTrue(r.stdout.contains("ALERT backdated: entry \(earlyGhost)") && r.stdout.contains("the audit stopped before the end"), r.stdout)
        let store = work + "/state/" + (try FileManager.default.contentsOfDirectory(atPath: work + "/state").first { $0.hasSuffix(".audit.sqlite") } ?? "")
        XCTAssertTrue(FileManager.default.fileExists(atPath: store), "the audit keeps its map in a database")

        healthy.withLock { $0 = true }
        r = try keyglass(["audit"] + log)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("resuming at entry 16384"), r.stdout)
        XCTAssertTrue(r.stdout.contains("ALERT backdated: entry \(ghostIndex)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("audited 20000 entries (3616 replayed now)"), r.stdout)
        XCTAssertEqual(r.stdout.components(separatedBy: "ALERT").count - 1, 1, "exactly one alert: \(r.stdout)")
        // Nothing new: nothing replayed, nothing reported again.
        r = try keyglass(["audit"] + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("(0 replayed now)") && r.stdout.contains("no alert"), r.stdout)

        // The operator signs another tree of the same size (the last entry changed) and shows it to
        // this auditor, whose state already ends at that size: refused, not "nothing to replay".
        var forked = entries
        let last = forked.count - 1
        forked[last] = (forked[last].identity, DirectoryEntry.mapHead(timestampMillis: time + 5, epoch: epoch + 1, coveredSize: UInt64(last),
                                                                      root: Hash(bytes: Ed25519.randomBytes(32))!).encoded)
        var forkRange = CompactRange()
        for e in forked { forkRange.append(Merkle.leafHash(e.data)) }
        let forkNote = try SignedCheckpoint.sign(Checkpoint(origin: "big.example/log", size: forkRange.size, root: forkRange.root), with: try dir.loadSigner())
            .note.serialized
        let forkFront = try await FrontEnd.start { _, target in
            target == "/checkpoint" || target == "/v2/head" ? .body(Data(forkNote.utf8), contentType: "text/plain") : .forward(upstream)
        }
        defer { Task { await forkFront.stop() } }
        // As after a run killed between its last commit and saving its view: the view is gone,
        // the state database stays. The state's own tree must be checked.
        for f in try FileManager.default.contentsOfDirectory(atPath: work + "/state") where f.hasSuffix(".json") {
            try FileManager.default.removeItem(atPath: work + "/state/" + f)
        }
        r = try keyglass(["audit", "--log", forkFront.url.absoluteString, "--vkey", vkey, "--state", work + "/state"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("REFUSED") && r.stdout.contains("do not make the tree"), r.stdout)
    }

    /// Erasure: `keyglass-server erase` deletes an identity's sealed changes (what its changes did:
    /// device records, signatures, openings), zeroed in the file, never its log entries. It
    /// refuses while the server runs. After it, the tree and every checkpoint are unchanged and an
    /// auditor watching no one finds nothing; the identity's lookups and changes are refused (410);
    /// everyone else is served as before.
    func testEraseDeletesWhatAnIdentitysChangesDidAndNeverAnEntry() async throws {
        let initialised = try Binaries.run("keyglass-server", ["init", "--directory", "--data", data, "--origin", "erase.example/log"])
        XCTAssertEqual(initialised.status, 0, initialised.stderr)
        XCTAssertTrue(initialised.stdout.contains("Lookup token: \(data)/lookup-token"), initialised.stdout)
        let vkey = try XCTUnwrap(initialised.stdout.split(separator: "\n").last.map(String.init))
        var (server, port, client) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server.log")
        var log = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        let token = ["--token", data + "/publish-token"]
        for name in ["phone", "laptop", "bobs"] { XCTAssertEqual(try keyglass(["device-new", "--out", "\(work)/\(name).json"]).status, 0) }
        var r = try keyglass(["change", "add", alice, "--device", work + "/phone.json"] + token + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(1, log)
        r = try keyglass(["change", "add", alice, "--device", work + "/laptop.json", "--signer", work + "/phone.json"] + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        r = try keyglass(["change", "add", "bob@example.com", "--device", work + "/bobs.json"] + token + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        _ = try await waitForDevices(2, log)
        let phoneKey = try XCTUnwrap(try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: work + "/phone.json")))["seed"])
            .flatMap { Base64.decode($0) }.flatMap { Ed25519.keyPair(seed: $0)?.publicKey }
        let key = try XCTUnwrap(phoneKey)
        XCTAssertTrue(try fileContains(data + "/log.sqlite", key) || fileContains(data + "/log.sqlite-wal", key), "the sealed change holds the key")

        r = try Binaries.run("keyglass-server", ["erase", "--data", data, alice])
        XCTAssertEqual(r.status, 1, "refused while the server runs: \(r.stdout) \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("stop it first"), r.stderr)
        let (_, treeBefore) = try await client.raw("GET", "/checkpoint")
        server.terminate()
        server.waitUntilExit()

        r = try Binaries.run("keyglass-server", ["erase", "--data", data, alice])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("erased 2 sealed change(s) of \(alice)") && r.stdout.contains("2 log entries stay"), r.stdout)
        let storage = try SQLiteStorage(path: data + "/log.sqlite", readers: 1)
        let seed = try DataDirectory(path: data).loadVRFSeed()
        XCTAssertNil(try storage.vrfLabel(of: DirectoryLabels.storedIdentity(alice, vrfSeed: seed)), "the identity-to-label row is gone")
        XCTAssertNotNil(try storage.vrfLabel(of: DirectoryLabels.storedIdentity("bob@example.com", vrfSeed: seed)), "bob's stays (stored once, with his first change)")
        storage.close()
        XCTAssertFalse(try fileContains(data + "/log.sqlite", Array("bob@example.com".utf8)), "the database does not list identities in the clear")
        XCTAssertFalse(try fileContains(data + "/log.sqlite", key), "the erased record is not left in the file's free pages")
        XCTAssertFalse(try fileContains(data + "/log.sqlite-wal", key), "nor in its journal")
        r = try Binaries.run("keyglass-server", ["check", "--data", data])
        XCTAssertEqual(r.status, 0, "the tree is untouched: \(r.stdout) \(r.stderr)")

        (server, port, client) = try await Binaries.startServer(data: data, ["--epoch-ms", "100"], log: work + "/server2.log")
        defer { server.terminate() }
        let (_, treeAfter) = try await client.raw("GET", "/checkpoint")
        XCTAssertEqual(String(decoding: treeAfter, as: UTF8.self).split(separator: "\n")[1...2], String(decoding: treeBefore, as: UTF8.self).split(separator: "\n")[1...2],
                       "the same tree: size and root")
        log = ["--log", "http://127.0.0.1:\(port)", "--vkey", vkey, "--lookup-token", data + "/lookup-token", "--state", work + "/state"]
        r = try keyglass(["lookup", alice] + log)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("erased"), r.stderr)
        r = try keyglass(["change", "add", alice, "--device", work + "/bobs.json"] + token + log)
        XCTAssertNotEqual(r.status, 0, "no change to an erased identity: \(r.stdout)")
        XCTAssertTrue(r.stderr.contains("erased"), r.stderr)
        r = try keyglass(["lookup", "bob@example.com"] + log)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains(": 1 device"), r.stdout)
        r = try keyglass(["audit"] + log.dropLast() + [work + "/auditor"])
        XCTAssertEqual(r.status, 0, "the entries still make every map head: \(r.stdout) \(r.stderr)")
        try "\(alice)\n".write(toFile: work + "/watch", atomically: true, encoding: .utf8)
        r = try keyglass(["audit", "--watch", work + "/watch"] + log.dropLast() + [work + "/watcher"])
        XCTAssertEqual(r.status, 2, "a watcher hears its identity was erased: \(r.stdout) \(r.stderr)")
        XCTAssertTrue(r.stdout.contains("ALERT erased"), r.stdout)
        r = try Binaries.run("keyglass-server", ["erase", "--data", data, "a b"])
        XCTAssertEqual(r.status, 1, "a malformed identity is refused")
    }

    private func fileContains(_ path: String, _ needle: [UInt8]) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count >= needle.count else { return false }
        return (0...(bytes.count - needle.count)).contains { i in bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle }
    }

    private func appendGhost(_ deviceFile: String) throws {
        let dir = DataDirectory(path: data)
        let storage = try SQLiteStorage(path: dir.database, readers: 1)
        let size = try XCTUnwrap(try storage.latestCheckpoint()).size
        let stored = try storage.entries(start: 0, end: size)
        var sealed = try storage.sealedChanges(start: 0, end: size).reduce(into: [Int: [UInt8]]()) { $0[Int($1.key)] = $1.value }
        storage.close()
        var entries: [(identity: String, data: [UInt8])] = []
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        let proof = try ECVRF.prove(seed: try dir.loadVRFSeed(), alpha: Array(alice.utf8))
        let label = Hash(bytes: Array(try ECVRF.proofToHash(proof).prefix(32)))!
        for e in stored {
            _ = try replay.replay(e.data, leafHash: e.leafHash, sealed: sealed[Int(e.index)])
            if case .change(_, let l, _, _, _)? = try? DirectoryEntry.parse(e.data) {
                entries.append((l.hex, e.data))
            } else {
                entries.append(("", e.data))
            }
        }
        let file = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: deviceFile)))
        let seed = try XCTUnwrap(Base64.decode(file["seed"]!))
        let record = try DeviceRecord(id: try XCTUnwrap(Base64.decode(file["id"]!)), signingKey: Ed25519.keyPair(seed: seed)!.publicKey)
        // Sealed as the honest server seals: the set digest is the set with the ghost.
        let (ghost, opened) = Self.sealedEntry(DeviceChange(kind: .add(record), authority: .operator), after: try XCTUnwrap(replay.states[label]),
                                               label: label, origin: replay.origin ?? "", time: Sequencer.nowMillis())
        sealed[entries.count] = opened
        entries.append((label.hex, ghost))
        try dir.forgeHistory(raw: entries, sealed: sealed)
    }

    /// A change entry and its sealed change, sealed after the label's state `before` as a writer
    /// (honest or not) seals it.
    static func sealedEntry(_ change: DeviceChange, after before: DeviceSet, label: Hash, origin: String, time: UInt64)
        -> (entry: [UInt8], sealed: [UInt8])
    {
        let s = SealedChange.sealing(change, after: before, origin: origin, label: label)
        return (DirectoryEntry.sealedChange(s, timestampMillis: time, label: label, version: before.version + 1).encoded, s.encoded)
    }
}
