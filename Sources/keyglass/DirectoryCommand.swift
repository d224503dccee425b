import ArgumentParser
import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP
import KeyglassLog
import KeyglassWire

/// `keyglass directory …`: the client of a v2 log, the key directory (Spec/directory.md).
struct DirectoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "directory",
        abstract: "Use a key directory (a v2 log, `keyglass-server init --directory`): devices, complete lookups, owner monitors.",
        discussion: """
        An identity has a set of devices, each with an Ed25519 signing key. A lookup proves the set \
        shown is the whole set as of a map head the log signed; a monitor, run by the owner, alarms on \
        any change none of the owner's devices signed (a ghost device, an injected key, a reset). An \
        identity nobody monitors gets no ghost detection: contacts see only the current set.

        Exit codes: 0 verified / no alert; 1 bad input; 2 refused or ALERT (the evidence is printed); \
        3 the log did not answer.
        """,
        subcommands: [DeviceNew.self, DirectoryChange.self, DirectoryLookupCommand.self, DirectoryMonitorCommand.self, DirectoryAuditCommand.self])
}

/// A device's secret file: its id and the seed of its signing key (0600).
struct DeviceFile: Codable {
    var id: String
    var seed: String

    static func read(_ path: String) throws -> (record: DeviceRecord, seed: [UInt8]) {
        let file = try JSONDecoder().decode(DeviceFile.self, from: Data(try Files.readPrivate(path).utf8))
        guard let id = Base64.decode(file.id), let seed = Base64.decode(file.seed), seed.count == 32, let pair = Ed25519.keyPair(seed: seed) else {
            throw ValidationError("\(path) is not a device file")
        }
        do { return (try DeviceRecord(id: id, signingKey: pair.publicKey), seed) } catch { throw ValidationError("\(path): \(error)") }
    }
}

/// What `lookup` and `monitor` keep between runs, per log and identity.
struct DirectoryState: Codable {
    struct Seen: Codable {
        var epoch: UInt64
        var version: UInt64
        var chain: String
        var newestIndex: UInt64?
        /// The monitor's store (versions it checked), if it ran.
        var monitoredVersion: UInt64?
        var monitoredChain: String?
        var monitoredNewestIndex: UInt64?
    }

    var identities: [String: Seen] = [:]
    /// The newest checkpoint with a map head this client verified for the log: every later answer
    /// must extend it (per log, so an identity looked up for the first time is held to it too).
    var view: DirectoryClient.LogView?
    /// The newest tree `audit` re-derived (its alerts below it were reported).
    var auditedView: DirectoryClient.LogView?

    /// The audit's database (`DirectoryStateStore`) beside the state file at `path`.
    static func auditStorePath(_ path: String) -> String {
        (path.hasSuffix(".json") ? String(path.dropLast(5)) : path) + ".audit.sqlite"
    }

    static func path(_ dir: String, key: NoteVerifierKey) -> String {
        let name = key.name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        return "\(dir)/directory-\(String(name))-\(String(key.keyID, radix: 16)).json"
    }

    /// Runs `body` holding an exclusive lock on the state (two runs at once would each write back
    /// what they read, and one run's view would be lost).
    static func locked<T>(_ path: String, _ body: () async throws -> T) async throws -> T {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot open \(path).lock") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw ValidationError("cannot lock \(path).lock") }
        defer { flock(fd, LOCK_UN) }
        return try await body()
    }

    /// A verified lookup held to what this client saw before (the state at `statePath`), which
    /// then remembers it: `lookup`, and `change --signer` before it signs.
    static func lookUp(_ identity: String, client: DirectoryClient, statePath: String, maxAge: UInt64?) async throws -> DirectoryClient.Verified {
        try await locked(statePath) {
            var state = try load(statePath)
            let (verified, view) = try await client.lookup(identity, previous: state.previous(identity), view: state.view, maxAge: maxAge)
            state.saw(identity, verified)
            state.view = view
            try state.save(statePath)
            return verified
        }
    }

    static func load(_ path: String) throws -> DirectoryState {
        guard FileManager.default.fileExists(atPath: path) else { return DirectoryState() }
        do { return try JSONDecoder().decode(DirectoryState.self, from: Data(try Files.readText(path).utf8)) } catch {
            throw ValidationError("\(path) is not a directory state file: \(error)")
        }
    }

    func save(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let data = try JSONEncoder().encode(self)
        try Files.writeAtomically(Array(data), to: path, mode: 0o600)
    }

    func previous(_ identity: String) -> DirectoryLookup.Previous? {
        identities[identity].map { DirectoryLookup.Previous(epoch: $0.epoch, version: $0.version, chain: Hash(base64: $0.chain)) }
    }

    mutating func saw(_ identity: String, _ v: DirectoryClient.Verified) {
        var seen = identities[identity] ?? Seen(epoch: 0, version: 0, chain: Hash.zero.base64)
        seen.epoch = v.result.epoch
        seen.version = v.result.version
        seen.chain = v.result.chain.base64
        seen.newestIndex = v.newestIndex
        identities[identity] = seen
    }
}

/// Options of the directory commands that talk to a log.
struct DirectoryOptions: ParsableArguments {
    @OptionGroup var logOptions: LogOptions

    @Option(name: .long, help: "The directory's VRF public key (base64), to pin it: an answer whose leaf 0 names another is refused.")
    var vrfKey: String?

    @Option(name: .long, help: "State directory (default: $XDG_STATE_HOME/keyglass or ~/.local/state/keyglass).")
    var state: String?

    @Option(name: .long, help: "Most age of the newest map head (e.g. 90s, 15m, 2h), and of the newest witness cosignature when --witness is given: older is refused (exit 2): the log may be frozen for you while others see newer heads.")
    var maxAge: String?

    @Option(name: .long, help: "A witness cosignature verifier key whose cosignatures count (repeatable).")
    var witness: [String] = []

    @Option(name: .long, help: "How many valid witness cosignatures each map head's checkpoint must carry.")
    var quorum = 0

    @Option(name: .long, help: "A file holding the lookup credential (the server's DIR/lookup-token, or one from `keyglass-server lookup-token`): lookups and histories need one, and so do audits with --watch. Or set KEYGLASS_LOOKUP_TOKEN.")
    var lookupToken: String?

    func lookupCredential() throws -> String? {
        if let lookupToken { return try BearerToken.checked(Files.readPrivate(lookupToken), from: lookupToken) }
        return try ProcessInfo.processInfo.environment["KEYGLASS_LOOKUP_TOKEN"].map { try BearerToken.checked($0, from: "KEYGLASS_LOOKUP_TOKEN") }
    }

    func maxAgeSeconds() throws -> UInt64? {
        guard let maxAge else { return nil }
        guard let s = parseDuration(maxAge) else { throw ValidationError("--max-age takes a duration like 90s, 15m or 2h") }
        return s
    }

    func client() throws -> DirectoryClient {
        var pinned: [UInt8]?
        if let vrfKey {
            guard let k = Base64.decode(vrfKey), k.count == 32 else { throw ValidationError("--vrf-key must be base64 of 32 bytes") }
            pinned = k
        }
        let keys = try witness.map { try readVerifierKey($0) }
        guard quorum <= keys.count else { throw ValidationError("--quorum \(quorum) is more than the \(keys.count) --witness keys given") }
        let policy = WitnessPolicy(witnesses: keys, quorum: quorum, maxAge: keys.isEmpty ? nil : try maxAgeSeconds())
        return DirectoryClient(log: try logOptions.client(), logKey: try logOptions.verifierKey(), vrfKey: pinned, witnessPolicy: policy,
                               lookupToken: try lookupCredential())
    }

    func statePath() throws -> String {
        DirectoryState.path(state ?? KeyLookup.defaultStateDirectory, key: try logOptions.verifierKey())
    }
}

func canonicalIdentity(_ raw: String) throws -> String {
    do { return try Identity.normalize(raw) } catch { throw ValidationError("not an identity: \(error)") }
}

struct DeviceNew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device-new",
        abstract: "Make a device: a random 16-byte id and an Ed25519 signing key, written to FILE (0600).")

    @Option(name: .long, help: "Where to write the device file (refuses to overwrite).")
    var out: String

    func run() async throws {
        let pair = Ed25519.generate()
        let id = Ed25519.randomBytes(16)
        let file = DeviceFile(id: Base64.encode(id), seed: Base64.encode(pair.seed))
        do {
            try Files.createPrivate(out, contents: String(decoding: try JSONEncoder().encode(file), as: UTF8.self) + "\n")
        } catch { throw fail("device-new", error) }
        print("device \(file.id)  signing key \(Base64.encode(pair.publicKey))  (secret in \(out))")
    }
}

struct DirectoryChange: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change",
        abstract: "Add, rotate, revoke or reset an identity's devices.",
        discussion: """
        With --token (the provider's publish token) the change is the operator's: the first device of \
        an identity, a revocation or a reset (account recovery, shown to contacts). With --signer (a \
        device file of an active device) it is chained: signed by that device over the log's origin, \
        the identity's label, its newest change and this change, so it is good for one position only. \
        The server refuses what the device rule calls an attack (an operator adding to a set already \
        changed: a ghost device; an operator rotating a key: an injected key).
        rotate: --device is the device's file with its new key (same id).
        """)

    @OptionGroup var options: DirectoryOptions

    @Argument(help: "add, rotate, revoke or reset.")
    var kind: String

    @Argument(help: "The identity.")
    var identity: String

    @Option(name: .long, help: "The device file the change is about (add, rotate, reset; revoke takes it or --device-id).")
    var device: String?

    @Option(name: .long, help: "The revoked device's id (base64), for revoke without its file.")
    var deviceId: String?

    @Option(name: .long, help: "The publish token, or a file holding it: the change is the operator's.")
    var token: String?

    @Option(name: .long, help: "The device file of the active device that signs the change.")
    var signer: String?

    @Flag(name: .long, inversion: .prefixedNo, help: "Wait until a map head covers the change, so lookups show it (default), or return once it is durable.")
    var wait = true

    func run() async throws {
        do {
            let identity = try canonicalIdentity(identity)
            let client = try options.client()
            let change: DeviceChange.Kind
            switch kind {
            case "add", "rotate", "reset":
                guard let device else { throw ValidationError("\(kind) needs --device") }
                let record = try DeviceFile.read(device).record
                change = kind == "add" ? .add(record) : kind == "rotate" ? .rotate(record) : .reset(record)
            case "revoke":
                if let device {
                    change = .revoke(deviceID: try DeviceFile.read(device).record.id)
                } else if let deviceId, let id = Base64.decode(deviceId), id.count == 16 {
                    change = .revoke(deviceID: id)
                } else {
                    throw ValidationError("revoke needs --device or --device-id (base64 of 16 bytes)")
                }
            default:
                throw ValidationError("the kind of change is add, rotate, revoke or reset")
            }
            guard (token == nil) != (signer == nil) else { throw ValidationError("give exactly one of --token (operator) and --signer (a device)") }
            // A chained change signs the label's newest change as the newest map head shows it; if
            // the identity changed since (409 stale_position), or its first device is not in a head
            // yet, sign again once the next head shows it (a head comes every epoch, 1 s by default).
            for attempt in 1...20 {
                do {
                    try await send(change, identity: identity, client: client)
                    return
                } catch ClientError.http(status: 409, let message) where signer != nil && attempt < 20 && message.contains("sign again") {
                    try await Task.sleep(for: .milliseconds(250))
                } catch is NotInAHeadYet {
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
            throw ValidationError("\(identity) has no devices in the directory's newest map head: its first device is added with --token")
        } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch let e as DirectoryClient.Refused {
            print("REFUSED: \(e.description)")
            throw ExitCode(2)
        } catch { throw fail("change", error) }
    }

    private struct NotInAHeadYet: Error {}

    private func send(_ change: DeviceChange.Kind, identity: String, client: DirectoryClient) async throws {
        let body: ChangeBody
        var bearer: String?
        if let signer {
            let (record, seed) = try DeviceFile.read(signer)
            // The signature binds the label's newest change: taken from a verified lookup.
            let statePath = try options.statePath()
            let verified = try await DirectoryState.lookUp(identity, client: client, statePath: statePath, maxAge: try options.maxAgeSeconds())
            guard let previous = verified.newestIndex else { throw NotInAHeadYet() }
            let signed = DeviceChange.signed(change, origin: verified.result.checkpoint.origin, label: verified.result.label, signer: record.id,
                                             signerSeed: seed, previousIndex: previous)
            body = ChangeBody(identity: identity, change: signed)
        } else {
            let t = token!
            bearer = FileManager.default.fileExists(atPath: t) ? try BearerToken.checked(Files.readPrivate(t), from: t) : try BearerToken.checked(t, from: "--token")
            body = ChangeBody(identity: identity, change: DeviceChange(kind: change, authority: .operator))
        }
        let answer = try await client.submit(body, token: bearer)
        guard wait else {
            print("\(kind) for \(identity): entry \(answer.index) (tree size \(answer.tree_size)); lookups show it from the next map head")
            return
        }
        // Until a map head covers it, lookups (this one's next command, a contact's) show the set
        // without it: wait for that head, as a v1 publish waits for its checkpoint.
        // Each look is a verified lookup held to this client's state: a refusal is reported (exit 2).
        let statePath = try options.statePath()
        for _ in 0..<120 {
            let v = try await DirectoryState.lookUp(identity, client: client, statePath: statePath, maxAge: nil)
            if v.result.coveredSize > answer.index {
                print("\(kind) for \(identity): entry \(answer.index), in lookups from map head epoch \(v.result.epoch)")
                return
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        print("\(kind) for \(identity): entry \(answer.index) is durable, but no map head covered it within 30 s (is the directory's writer stuck?)")
        throw ExitCode(3)
    }
}

struct DirectoryLookupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Print an identity's devices, proved to be all of them as of a signed map head.",
        discussion: """
        Verifies the checkpoint's signature, leaf 0 (the directory's config and VRF key) and the map \
        head (the last leaf) by their inclusion proofs, the identity's label by its VRF proof, the map \
        proof of the label (membership, or absence for an identity never published), and that the \
        devices, tombstones and history shown are what the map commits to. The label's history must \
        extend what this command verified before (kept in --state), and the map head must not be older \
        than the newest one it saw for the identity.
        """)

    @OptionGroup var options: DirectoryOptions

    @Argument(help: "The identity.")
    var identity: String

    func run() async throws {
        do {
            let identity = try canonicalIdentity(identity)
            let client = try options.client()
            let statePath = try options.statePath()
            let maxAge = try options.maxAgeSeconds()
            let verified = try await DirectoryState.lookUp(identity, client: client, statePath: statePath, maxAge: maxAge)
            let r = verified.result
            let when = Date(timeIntervalSince1970: Double(r.timestampMillis) / 1000)
            let asOf = "as of map head epoch \(r.epoch) (covering \(r.coveredSize) entries, made \(when)), checkpoint size \(r.checkpoint.size)"
            if r.neverPublished {
                print("\(identity): no keys: never published (the map proves the identity absent) \(asOf)")
            } else if r.devices.isEmpty {
                print("\(identity): no active devices: every device was revoked (version \(r.version)) \(asOf)")
            } else {
                print("\(identity): \(r.devices.count) device\(r.devices.count == 1 ? "" : "s"), complete \(asOf)")
                for d in r.devices {
                    let extra = d.encryptionKeys.map { " \($0.type.rawValue) \(Base64.encode($0.key))" }.joined()
                    print("  device \(Base64.encode(d.id))  ed25519 \(Base64.encode(d.signingKey))\(extra)")
                }
            }
        } catch let e as ValidationError { throw e } catch let e as DirectoryClient.Refused {
            print("REFUSED: \(e.description)")
            throw ExitCode(2)
        } catch { throw fail("lookup", error) }
    }
}

struct DirectoryMonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "As the identity's owner: alarm on every change none of your devices signed.",
        discussion: """
        Run it on a schedule with the files of your devices. It verifies a lookup, then reads the \
        identity's whole history (each entry's inclusion checked) up to that lookup's map head and \
        judges every change with the device rule: the first may be the operator's onboarding of one of \
        your devices; every other must be signed by one of your devices with the key you know. Anything \
        else is an ALERT (exit 2): a ghost device, an injected key, a reset, a revocation you did not \
        make, a history that does not lead to the state the map proves, or one that changed since the \
        last run. Changes your devices made are printed as notices.
        """)

    @OptionGroup var options: DirectoryOptions

    @Argument(help: "Your identity.")
    var identity: String

    @Option(name: .long, help: "A device file of yours (repeatable; public records are read from them).")
    var device: [String] = []

    func run() async throws {
        do {
            let identity = try canonicalIdentity(identity)
            guard !device.isEmpty else { throw ValidationError("give your devices with --device FILE (repeatable)") }
            let known = try device.map { try DeviceFile.read($0).record }
            let client = try options.client()
            let statePath = try options.statePath()
            let maxAge = try options.maxAgeSeconds()
            let (verified, report) = try await DirectoryState.locked(statePath) {
                var state = try DirectoryState.load(statePath)
                let seen = state.identities[identity]
                let since = seen.flatMap { s -> DirectoryMonitor.Stored? in
                    guard let v = s.monitoredVersion, let c = s.monitoredChain.flatMap({ Hash(base64: $0) }), let n = s.monitoredNewestIndex else { return nil }
                    return DirectoryMonitor.Stored(version: v, chain: c, newestIndex: n)
                }
                let (verified, view, report) = try await client.monitor(identity, known: known, since: since, previous: state.previous(identity),
                                                                         view: state.view, maxAge: maxAge)
                state.saw(identity, verified)
                state.view = view
                if report.alerts.isEmpty, let stored = report.stored {
                    state.identities[identity]?.monitoredVersion = stored.version
                    state.identities[identity]?.monitoredChain = stored.chain.base64
                    state.identities[identity]?.monitoredNewestIndex = stored.newestIndex
                }
                try state.save(statePath)
                return (verified, report)
            }
            for index in report.ownChanges { print("notice: entry \(index) is a change by one of your devices") }
            if !report.alerts.isEmpty {
                for alert in report.alerts { print("ALERT: \(describe(alert))") }
                throw ExitCode(2)
            }
            print("\(identity): no alert; \(verified.result.devices.count) device(s) as of map head epoch \(verified.result.epoch)")
        } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch let e as DirectoryClient.Refused {
            print("REFUSED: \(e.description)")
            throw ExitCode(2)
        } catch { throw fail("monitor", error) }
    }

    func describe(_ alert: DirectoryMonitor.Alert) -> String {
        switch alert {
        case let .notTheOwners(index, verdict):
            let what: String
            switch verdict {
            case .ghostDevice: what = "ghost_device: a device none of yours added"
            case .injectedKey: what = "injected_key: a key none of your devices made"
            case .accountReset: what = "account_reset: the operator replaced every device"
            case .operatorRevoke: what = "a device revoked by the operator"
            default: what = "a change none of your devices signed (\(verdict))"
            }
            return "entry \(index): \(what)"
        case let .invalid(index, why): return "entry \(index): invalid: \(why)"
        case let .rewritten(why): return "history rewritten: \(why)"
        case let .malformed(index, why): return "entry \(index): malformed: \(why)"
        case let .incomplete(why): return "history incomplete: \(why)"
        case let .badOpening(index, why): return "entry \(index): bad_opening: what the change did cannot be checked: \(why)"
        case let .setMismatch(index): return "entry \(index): set_mismatch: it commits to devices the change did not make (what your contacts are shown)"
        }
    }
}

struct DirectoryAuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Re-derive a key directory from its entries: every map head, every change, and alerts for watched identities.",
        discussion: """
        Reads every entry (entry bundles, c2sp.org/tlog-tiles), checks they make the tree the newest \
        checkpoint signs and that it extends the one the last run audited, and replays them as the \
        server does: a map head that is not the map its entries make is map_mismatch (naming its \
        epoch, its leaf and the checkpoint); an entry out of order, malformed or backdated is an \
        alert. Changes are sealed: without --watch the audit checks every map head, not what \
        changes did. For identities in --watch (which needs --lookup-token), their changes are \
        opened from their histories, read against the same tree: a ghost device, an injected key, \
        an operator's reset or revocation, a change the history leaves out or that does not open \
        (bad_opening), or that commits to devices it did not make (set_mismatch), is an alert. The \
        map and every label's state are kept in STATE/directory-….audit.sqlite (memory stays \
        bounded), and each run goes on from where the last stopped, a killed run included; alerts \
        are reported once.

        Exit codes: 0 no alert; 2 ALERT or refused; 1 bad input; 3 the log did not answer.
        """)

    @OptionGroup var options: DirectoryOptions

    @Option(name: .long, help: "A file of identities to watch, one per line (# comments). Alerts are decided as entries are replayed: the changes of an identity added to the file later are not judged again (its devices are rebuilt from its history, so its next changes are).")
    var watch: String?

    /// Marks the alerts printed as reported only once they have left this process: a run killed
    /// with them still in stdout's buffer (a pipe to cron's mail) reports them again next time.
    static func flushThenMark(_ store: DirectoryStateStore) throws {
        // fflush(nil): every output stream (naming `stdout` is not concurrency-safe in Swift 6).
        guard fflush(nil) == 0 else { throw ValidationError("cannot write the alerts to standard output; they stay unreported") }
        try store.markAlertsReported()
    }

    func run() async throws {
        do {
            var watched: [String] = []
            if let watch {
                for line in try Files.readText(watch).components(separatedBy: .newlines) {
                    let t = line.trimmingCharacters(in: .whitespaces)
                    if t.isEmpty || t.hasPrefix("#") { continue }
                    watched.append(try canonicalIdentity(t))
                }
            }
            let client = try options.client()
            let statePath = try options.statePath()
            let report = try await DirectoryState.locked(statePath) {
                var state = try DirectoryState.load(statePath)
                // The map, the labels' states and the position: in a database beside the state file.
                let store = try DirectoryStateStore(path: DirectoryState.auditStorePath(statePath), logKey: client.logKey)
                defer { store.close() }
                let auditor = DirectoryAuditor(client: client)
                let report: DirectoryAuditor.Report
                do {
                    report = try await auditor.run(watched: watched, view: state.auditedView, store: store) { done, total in
                        if total > 10_000 { FileHandle.standardError.write(Data("audited \(done) of \(total) entries\n".utf8)) }
                    }
                } catch {
                    // The run stopped (the log stopped answering, or was refused) after earlier
                    // chunks, verified against the signed tree, found alerts: they are reported now,
                    // not held hostage to the rest of the log.
                    let (pending, total) = try store.unreportedAlerts(limit: DirectoryAuditor.maxAlerts)
                    guard total > 0 else { throw error }
                    for alert in pending { print("ALERT \(alert.kind): entry \(alert.index): \(alert.detail)") }
                    if total > pending.count { print("ALERT: \(total - pending.count) more alerts not listed") }
                    print("the audit stopped before the end: \(error)")
                    try Self.flushThenMark(store)
                    throw ExitCode(2)
                }
                if report.resumedAt > 0 { print("resuming at entry \(report.resumedAt) (where the last run stopped)") }
                for alert in report.alerts { print("ALERT \(alert.kind): entry \(alert.index): \(alert.detail)") }
                if report.alertsNotListed > 0 { print("ALERT: \(report.alertsNotListed) more alerts not listed") }
                try Self.flushThenMark(store)
                state.auditedView = report.view
                try state.save(statePath)
                return report
            }
            print("audited \(report.treeSize) entries (\(report.replayed) replayed now): \(report.changes) new changes, \(report.mapHeads) new map heads, \(report.labels) labels; "
                  + (report.alerts.isEmpty && report.alertsNotListed == 0 ? "no alert" : "\(report.alerts.count + report.alertsNotListed) alert(s)"))
            if !report.alerts.isEmpty || report.alertsNotListed > 0 { throw ExitCode(2) }
        } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch let e as DirectoryClient.Refused {
            print("REFUSED: \(e.description)")
            throw ExitCode(2)
        } catch { throw fail("audit", error) }
    }
}
