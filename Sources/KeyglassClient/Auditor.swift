import Foundation
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP
import NIOCore

/// `keyglass audit`: trusts nothing the log says, only signatures and hashes.
///
/// Each run: verify the newest checkpoint's signature against the pinned key; prove it extends the
/// last audited checkpoint; download every new entry and re-derive the signed root from them and the
/// stored tree edge; check each entry (canonical form, timestamps, watched identities' keys and
/// chains); then commit the new state atomically. Misbehaviour is an alert with signed evidence.
public struct Auditor: Sendable {
    public struct Options: Sendable {
        public var stateDirectory: String
        public var logKey: NoteVerifierKey
        public var watch: WatchList?
        /// Checkpoints other parties saw (`--compare FILE`, `--gossip URL`), with where they came from.
        public var otherViews: [OtherView] = []
        /// Called as entries are checked: (done, total).
        public var progress: (@Sendable (UInt64, UInt64) -> Void)?
        /// Save the audit position every this many entries, so a killed run resumes.
        public var saveEvery: UInt64 = 65536
        /// Bundles fetched ahead of the one being checked (each ~40 KB). Measured on a 1M-entry log
        /// over loopback: 4 ahead took 0.53 s, 8 took 0.48 s, 16 took 0.40 s; 32 and 64 no better
        /// and noisier. Enough requests in flight keep both of the server's event loops busy.
        public var prefetch = 16
        /// Witnesses (cosignature/v1 keys) whose cosignatures count, and how many are required.
        public var witnesses: [NoteVerifierKey] = []
        public var quorum = 0
        /// A freeze alert when the newest valid cosignature is older than this many seconds.
        public var maxAge: UInt64?
        public var now: @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }
        /// The whole run's deadline: past it, the run saves its position and ends (exit 3), so a
        /// log that answers slowly cannot keep a cron auditor running until the next one starts.
        public var deadline: Duration = .seconds(30 * 60)
        /// Also apply the rotation rule, signature included, to chained entries of identities
        /// nobody watches (a notice when it refuses one): each costs a signature verification and
        /// a second read of the entry it names, together more than the rest of an audit. Off by
        /// default: every client that looks such an identity up checks its rotations itself, and
        /// watched identities' entries are always checked (Spec/decisions.md 25).
        public var checkUnwatchedRotations = false
        /// The log is static files (`keyglass-server export`): proofs are computed from its hash
        /// tiles (`TileProofs`) instead of asked for.
        public var staticTiles = false

        /// Called once for each alert as it is found, after it is written to alerts.jsonl (the
        /// first `Auditor.maxAlertsListed` of a run; the rest are counted in the report), never
        /// for an alert a resumed run carries over. `keyglass audit --on-alert` runs a command here.
        public var onAlert: (@Sendable (Alert) -> Void)?

        public init(stateDirectory: String, logKey: NoteVerifierKey) {
            self.stateDirectory = stateDirectory
            self.logKey = logKey
        }
    }

    public let client: LogClient
    public let options: Options

    public init(client: LogClient, options: Options) {
        self.client = client
        self.options = options
    }

    var dir: String { options.stateDirectory }

    public func run() async -> AuditReport {
        var report = AuditReport()
        report.origin = options.logKey.name
        let alertLog = AlertLog(directory: dir)
        let run = Run(alertLog: alertLog, deadline: ContinuousClock.now + options.deadline, onAlert: options.onAlert)
        do {
            try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            var state = try AuditState.load(dir) ?? AuditState(
                verifierKey: options.logKey.description, checkpoint: nil,
                audited: .init(size: 0, range: CompactRange(), lastTimestamp: 0, chains: [:]))
            guard state.verifierKey == options.logKey.description else {
                throw AuditError.pinnedKeyDiffers(pinned: state.verifierKey, given: options.logKey.description)
            }
            if let watch = options.watch, watch.isEmpty {
                report.notices.append("the watch file lists no identity: no key is checked against its owner's list")
            }
            report.previousSize = state.audited.size
            try await audit(&state, &report, run)
            // Compared whatever else the run found: a log that provokes one alert must not delay
            // the detection of a split view to the next run.
            if let note = state.checkpoint {
                let (alerts, notices) = try await ViewComparison.compare(ours: note, with: options.otherViews, logKey: options.logKey,
                                                                        client: client, keep: keepEvidence)
                run.raise(alerts, &report)
                report.notices += notices
            }
            if let note = state.checkpoint, let cp = try? Checkpoint.parse(SignedNote.parse(note).text) {
                report.size = cp.size
                report.root = cp.root.base64
            }
        } catch {
            report.error = "\(error)"
            report.logNotAnswering = (error as? ClientError)?.isLogNotAnswering ?? false
        }
        report.status = !report.alerts.isEmpty ? .alert : (report.error == nil ? .ok : .error)
        return report
    }

    /// One run's bookkeeping: alerts go to alerts.jsonl the moment they are found (a run that fails
    /// later, or is killed, has still written them), and the run's deadline.
    struct Run {
        let alertLog: AlertLog
        let deadline: ContinuousClock.Instant
        let onAlert: (@Sendable (Alert) -> Void)?

        func raise(_ alerts: [Alert], _ report: inout AuditReport) {
            guard !alerts.isEmpty else { return }
            alertLog.record(alerts)
            let listed = Auditor.listable(alerts, after: report.alerts.count)
            if let onAlert { for a in listed { onAlert(a) } }
            report.alerts += listed
            if listed.count < alerts.count { report.alertsNotListed = (report.alertsNotListed ?? 0) + UInt64(alerts.count - listed.count) }
        }

        func checkDeadline() throws {
            guard ContinuousClock.now < deadline else {
                throw ClientError.timeout("the audit did not finish within its deadline (--deadline); its position is saved and the next run goes on from there")
            }
        }
    }

    /// Alerts listed in a report (and kept in the state between runs) in full; the rest are
    /// counted (`AuditReport.alertsNotListed`) and, like all, written to alerts.jsonl. A hostile log
    /// can make an alert of every entry: report, state and the comparisons between them stay small.
    public static let maxAlertsListed = 1000

    /// The part of `alerts` that still fits in a list already holding `count`.
    static func listable(_ alerts: [Alert], after count: Int) -> ArraySlice<Alert> {
        alerts.prefix(max(0, maxAlertsListed - count))
    }

    private func open(_ note: String) throws -> Checkpoint {
        try AnswerVerifier.openCheckpoint(note, logKey: options.logKey).checkpoint
    }

    private func audit(_ state: inout AuditState, _ report: inout AuditReport, _ run: Run) async throws {
        // Identities added to the watch file since the last run are checked against everything
        // audited so far before anything else. A half-done audit is then started again from the
        // audited checkpoint, so the new identities are checked in its entries too.
        let newlyWatched = Set(options.watch?.identities ?? []).subtracting(state.watched ?? [])
        if !newlyWatched.isEmpty {
            if state.pendingCheckpoint != nil {
                report.alerts += state.pendingAlerts ?? []  // recorded when they were found
                state.pendingCheckpoint = nil
                state.pending = nil
                state.pendingAlerts = nil
            }
            if state.audited.size > 0 { try await rescan(&state, for: newlyWatched, &report, run) }
            state.watched = options.watch?.identities
            try state.save(dir)
            if !report.alerts.isEmpty { return }
        }

        // A run that was killed part-way finishes the checkpoint it had verified first.
        if let pendingNote = state.pendingCheckpoint, let cursor = state.pending {
            report.notices.append("resuming the audit of checkpoint \(try open(pendingNote).size) at entry \(cursor.size)")
            try await scan(&state, target: try open(pendingNote), note: pendingNote, from: cursor, &report, run)
            if !report.alerts.isEmpty { return }
        }

        try run.checkDeadline()
        let note = try await client.checkpoint()
        let new = try open(note)
        try keepEvidence(note, new)
        try checkWitnesses(note, &report, run)
        if let oldNote = state.checkpoint {
            let old = try open(oldNote)
            if new.size < old.size {
                run.raise([Alert(kind: .rollback, message: "the log now serves size \(new.size) after signing size \(old.size)", evidence: [oldNote, note])], &report)
                return
            }
            if new.size == old.size {
                if new.root != old.root {
                    run.raise([Alert(kind: .splitView, message: "two signed checkpoints of size \(new.size) with different roots", evidence: [oldNote, note])], &report)
                }
                return
            }
            if old.size > 0 {
                let proof: [Hash]
                do {
                    if options.staticTiles {
                        var tiles = TileProofs(client: client, size: new.size)
                        proof = try await tiles.consistency(from: old.size, to: new.size)
                    } else {
                        proof = try await client.consistencyProof(from: old.size, to: new.size)
                    }
                } catch let ClientError.http(status, message) where status < 500 && status != 429 {
                    run.raise([Alert(kind: .splitView, message: "the log will not prove size \(new.size) extends size \(old.size) (\(status): \(message))", evidence: [oldNote, note])], &report)
                    return
                }
                do {
                    try ProofVerifier.verifyConsistency(size1: old.size, size2: new.size, root1: old.root, root2: new.root, proof: proof)
                } catch {
                    run.raise([Alert(kind: .splitView, message: "checkpoint \(new.size) is not consistent with checkpoint \(old.size): \(error)", evidence: [oldNote, note])], &report)
                    return
                }
            }
        }
        state.pendingCheckpoint = note
        state.pending = state.audited
        try state.save(dir)
        try await scan(&state, target: new, note: note, from: state.audited, &report, run)
    }

    /// Checks entries [cursor.size, target.size) and, if they re-derive the target's root, commits
    /// the target as the audited checkpoint. If the log stops answering part-way, the position
    /// reached is saved and the alerts found so far stand.
    private func scan(_ state: inout AuditState, target: Checkpoint, note: String, from cursor: AuditState.Cursor,
                      _ report: inout AuditReport, _ run: Run) async throws {
        var range = try cursor.compactRange()
        var checker = EntryChecker(watch: options.watch, note: note, lastTimestamp: cursor.lastTimestamp, chains: cursor.chains,
                                   nowMillis: options.now() * 1000, unwatchedRotations: options.checkUnwatchedRotations)
        let start = cursor.size
        let end = target.size
        var lastSaved = start
        // Level-8 node hashes (one per full tile of 256 entries) computed on the way: a bundle read
        // again later to check a rotation signature is proved by them, without a proof per entry.
        var tileRoots: [UInt64: Hash] = [:]
        var chained: [(index: UInt64, entry: KeyEntry)] = []
        let http = PipelinedHTTPClient(base: client.base, limits: client.limits)
        defer { if let http { Task { await http.shutdown() } } }
        var bundles = BundleFetcher(client: client, http: http, start: start, end: end, window: options.prefetch, watch: options.watch,
                                    keepChained: options.checkUnwatchedRotations)
        do {
            while true {
                try run.checkDeadline()
                guard let bundle = try await bundles.next() else { break }
                // A cancelled run (SIGINT, a test) stops here; the saved position lets the next run resume.
                try Task.checkCancellation()
                let keepTileRoot = { (id: NodeID, hash: Hash) in
                    if id.level == UInt8(TileLayout.height) { tileRoots[id.index] = hash }
                }
                if let tileRoot = bundle.tileRoot, range.size == bundle.firstIndex {
                    // A whole tile the range ends at: its entries checked, its root appended.
                    for offset in bundle.entries.indices {
                        checker.check(bundle.entries[offset], index: bundle.firstIndex + UInt64(offset))
                    }
                    range.append(subtree: tileRoot, level: UInt8(TileLayout.height), newNode: keepTileRoot)
                } else {
                    // A partial tile, or a resumed run's first tile (part of it audited already).
                    for offset in bundle.entries.indices {
                        let index = bundle.firstIndex + UInt64(offset)
                        if index < range.size { continue }
                        checker.check(bundle.entries[offset], index: index)
                        range.append(bundle.leafHashes[offset], newNode: keepTileRoot)
                    }
                }
                let found = checker.takeAlerts()
                run.raise(found, &report)
                state.pendingAlerts = (state.pendingAlerts ?? []) + Self.listable(found, after: state.pendingAlerts?.count ?? 0)
                chained += checker.takeUnresolvedChained()
                options.progress?(range.size - start, end - start)
                let saveDue = range.size - lastSaved >= options.saveEvery && range.size < end
                // Chained entries are checked before a position is saved (a run resumed from it
                // never sees them again), and whenever many wait (memory stays bounded).
                if saveDue || chained.count >= 65_536 {
                    report.notices += try await checkChainedSignatures(chained, target: target, note: note, tileRoots: tileRoots, &report, run)
                    chained = []
                }
                if saveDue {
                    state.pending = .init(size: range.size, range: range, lastTimestamp: checker.lastTimestamp, chains: checker.chains)
                    try state.save(dir)
                    lastSaved = range.size
                }
            }
        } catch {
            // Keep what was checked: the next run resumes here, and the alerts found stand (exit 2).
            // Only once the chained entries met so far are checked, though (past the deadline if it
            // was the deadline that stopped the run); if the log will not serve what that needs,
            // the next run starts from the last saved position and meets them again.
            if let notices = try? await checkChainedSignatures(chained, target: target, note: note, tileRoots: tileRoots, &report, run,
                                                                enforceDeadline: false) {
                report.notices += notices
                state.pending = .init(size: range.size, range: range, lastTimestamp: checker.lastTimestamp, chains: checker.chains)
                try? state.save(dir)
            }
            throw error
        }
        let earlier = (state.pendingAlerts ?? []).filter { old in !report.alerts.contains(old) }
        guard range.size == end, range.root == target.root else {
            let culprit = try? await findAlteredEntry(start: start, end: end)
            run.raise([Alert(
                kind: .rootMismatch,
                message: "the log's entries \(start)..<\(end) do not hash to the root it signed" + (culprit.map { "; entry \($0) differs from the tree's leaf hash" } ?? ""),
                index: culprit, evidence: [note])], &report)
            state.pendingCheckpoint = nil
            state.pending = nil
            state.pendingAlerts = nil
            try state.save(dir)
            return
        }
        report.alerts += earlier
        report.notices += checker.notices
        report.notices += try await checkChainedSignatures(chained, target: target, note: note, tileRoots: tileRoots, &report, run)
        report.entriesChecked += end - start
        state.audited = .init(size: end, range: range, lastTimestamp: checker.lastTimestamp, chains: checker.chains)
        state.checkpoint = note
        state.pendingCheckpoint = nil
        state.pending = nil
        state.pendingAlerts = nil
        state.watched = options.watch?.identities ?? state.watched
        try state.save(dir)
        // The audited checkpoint as a plain signed note, for others' --compare (lookups, auditors).
        try Files.writeAtomically(note, to: dir + "/checkpoint")
    }

    /// Checks newly watched identities against the entries audited before they were watched: the
    /// same bundles again, proved by re-deriving the audited root.
    private func rescan(_ state: inout AuditState, for identities: Set<String>, _ report: inout AuditReport, _ run: Run) async throws {
        guard let note = state.checkpoint, let watch = options.watch?.only(identities) else { return }
        let target = try open(note)
        report.notices.append("checking \(identities.count) newly watched identit\(identities.count == 1 ? "y" : "ies") against the \(target.size) entries audited before")
        var checker = EntryChecker(watch: watch, note: note, lastTimestamp: 0, chains: [:], nowMillis: options.now() * 1000, watchedOnly: true)
        var range = CompactRange()
        let http = PipelinedHTTPClient(base: client.base, limits: client.limits)
        defer { if let http { Task { await http.shutdown() } } }
        var bundles = BundleFetcher(client: client, http: http, start: 0, end: target.size, window: options.prefetch, watch: watch, keepChained: false)
        while true {
            try run.checkDeadline()
            guard let bundle = try await bundles.next() else { break }
            for (offset, inspected) in bundle.entries.enumerated() {
                checker.check(inspected, index: bundle.firstIndex + UInt64(offset))
                range.append(bundle.leafHashes[offset])
            }
            run.raise(checker.takeAlerts(), &report)
        }
        guard range.size == target.size, range.root == target.root else {
            run.raise([Alert(kind: .rootMismatch, message: "the log's entries 0..<\(target.size), read again for newly watched identities, no longer hash to the root it signed", evidence: [note])], &report)
            return
        }
        report.notices += checker.notices
        for (identity, chain) in checker.chains { state.audited.chains[identity] = chain }
    }

    /// The rotation rule for chained entries of identities nobody watches: each signature must
    /// verify under the key of the entry it names, which must be the same identity's and able to
    /// sign. The named entries are read again, proved by the tile hashes of this scan or, for
    /// entries audited in earlier runs, by inclusion proofs. A refusal is a notice: nobody has said
    /// which keys these identities should have (watch one to be alerted).
    private func checkChainedSignatures(_ chained: [(index: UInt64, entry: KeyEntry)], target: Checkpoint, note: String,
                                        tileRoots: [UInt64: Hash], _ report: inout AuditReport, _ run: Run,
                                        enforceDeadline: Bool = true) async throws -> [String] {
        guard !chained.isEmpty else { return [] }
        let width = TileLayout.width
        let needed = Dictionary(grouping: Set(chained.compactMap { $0.entry.previousIndex }), by: { $0 / width })
        var previous: [UInt64: RotationRule.Previous] = [:]
        var unreadable: [UInt64: String] = [:]
        var tiles = TileProofs(client: client, size: target.size)
        for (tile, indices) in needed.sorted(by: { $0.key < $1.key }) {
            if enforceDeadline { try run.checkDeadline() }
            let partial = TileLayout.partialWidth(tileIndex: tile, count: target.size)
            let data = try await client.get("/" + TileLayout.entriesPath(index: tile, partial: partial))
            let entries = data.withUnsafeBytes { b in EntryBundle.ranges(b)?.map { Array(b[$0]) } } ?? []
            guard entries.count == Int(partial == 0 ? width : partial) else {
                throw ClientError.malformed("entry bundle \(tile) has \(entries.count) entries")
            }
            let provedByTile = partial == 0 && tileRoots[tile] != nil
            if provedByTile, Merkle.rootOf(leafHashes: entries.map { Merkle.leafHash($0) }) != tileRoots[tile] {
                run.raise([Alert(kind: .rootMismatch, message: "entry bundle \(tile), read again, differs from the one that re-derived the signed root", index: tile * width, evidence: [note])], &report)
                return []
            }
            for p in indices {
                let bytes = entries[Int(p % width)]
                if !provedByTile {
                    let proof = options.staticTiles
                        ? try await tiles.inclusion(index: p, size: target.size)
                        : try await client.inclusionProof(index: p, treeSize: target.size)
                    do {
                        try ProofVerifier.verifyInclusion(index: p, size: target.size, leafHash: Merkle.leafHash(bytes), proof: proof, root: target.root)
                    } catch {
                        run.raise([Alert(kind: .rootMismatch, message: "entry \(p), read again, is not the entry the signed tree holds: \(error)", index: p, evidence: [note])], &report)
                        return []
                    }
                }
                do { previous[p] = RotationRule.Previous(index: p, entry: try KeyEntry.parse(bytes, keys: .form)) } catch { unreadable[p] = error.description }
            }
        }
        // Signature checks cost as much as everything else per entry: spread them over the cores.
        let (known, broken) = (previous, unreadable)
        let chunks = stride(from: 0, to: chained.count, by: 4096).map { Array(chained[$0..<min($0 + 4096, chained.count)]) }
        return await withTaskGroup(of: (Int, [String]).self) { group in
            for (n, chunk) in chunks.enumerated() {
                group.addTask {
                    var notices: [String] = []
                    for (index, entry) in chunk {
                        guard let p = entry.previousIndex else { continue }
                        if let why = broken[p] {
                            notices.append("entry \(index) for \(entry.identity) names entry \(p), which is not a canonical entry (\(why))")
                            continue
                        }
                        do { _ = try RotationRule.authorise(entry, at: index, previous: known[p]) } catch {
                            notices.append("entry \(index) for \(entry.identity) (not watched) \(error): the log's own rule refuses it")
                        }
                    }
                    return (n, notices)
                }
            }
            var byChunk: [(Int, [String])] = []
            for await result in group { byChunk.append(result) }
            return byChunk.sorted { $0.0 < $1.0 }.flatMap(\.1)
        }
    }

    /// After a root mismatch: the first entry whose hash differs from the level-0 tile, if any.
    private func findAlteredEntry(start: UInt64, end: UInt64) async throws -> UInt64? {
        var fetcher = BundleFetcher(client: client, http: nil, start: start, end: end, window: 2, watch: nil, keepChained: false)
        while let bundle = try await fetcher.next() {
            let first = bundle.firstIndex
            let tile = TileLayout.partialWidth(tileIndex: first / TileLayout.width, count: end)
            let hashes = [UInt8](try await client.get("/" + TileLayout.tilePath(level: 0, index: first / TileLayout.width, partial: tile)))
            for (i, leaf) in bundle.leafHashes.enumerated() where first + UInt64(i) >= start {
                guard hashes.count >= i * 32 + 32 else { return first + UInt64(i) }
                if leaf.bytes != Array(hashes[(i * 32)..<(i * 32 + 32)]) { return first + UInt64(i) }
            }
        }
        return nil
    }

    /// The witness policy: too few cosignatures is an error (the run cannot vouch for the view);
    /// cosignatures older than allowed are a `freeze` alert (the view may be frozen).
    private func checkWitnesses(_ note: String, _ report: inout AuditReport, _ run: Run) throws {
        let policy = WitnessPolicy(witnesses: options.witnesses, quorum: options.quorum, maxAge: options.maxAge)
        switch try policy.evaluate(note, logKey: options.logKey, now: options.now()) {
        case .met: break
        case let .tooFew(have, need): throw WitnessPolicyError.quorum(have: have, need: need)
        case let .stale(age, allowed):
            run.raise([Alert(kind: .freeze, message: "the newest witness cosignature is \(age) s old (allowed: \(allowed) s): the log may be frozen for this view", evidence: [note])], &report)
        }
    }

    /// Every verified checkpoint is kept: a later contradiction needs the earlier signed note.
    private func keepEvidence(_ note: String, _ cp: Checkpoint) throws {
        let name = "\(dir)/checkpoints/\(cp.size)-\(cp.root.hex.prefix(16)).note"
        if !FileManager.default.fileExists(atPath: name) { try Files.writeAtomically(note, to: name) }
    }

}

/// alerts.jsonl in the state directory: one JSON alert a line, appended and synced as each alert
/// is found, so cron mail or a pager reading the file sees it even if the run dies afterwards.
final class AlertLog: Sendable {
    let path: String
    init(directory: String) { path = directory + "/alerts.jsonl" }

    func record(_ alerts: [Alert]) {
        guard !alerts.isEmpty, FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent) else { return }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = ""
        for a in alerts { lines += String(decoding: (try? e.encode(a)) ?? Data(), as: UTF8.self) + "\n" }
        if let h = FileHandle(forWritingAtPath: path) {
            h.seekToEndOfFile()
            h.write(Data(lines.utf8))
            try? h.synchronize()
            try? h.close()
        } else {
            try? Files.writeAtomically(lines, to: path, mode: 0o600)
        }
    }
}

/// Fetches the entry bundles covering [start, end) in order, a few ahead of the consumer, and
/// splits, hashes and inspects each in its own task, so that work runs beside the sequential checks.
struct BundleFetcher {
    let client: LogClient
    /// Pipelined keep-alive connections for plain-HTTP logs; nil: URLSession through `client`.
    let http: PipelinedHTTPClient?
    let end: UInt64
    let window: Int
    let watch: WatchList?
    /// Copy out unwatched chained entries for the rotation rule (`Options.checkUnwatchedRotations`).
    let keepChained: Bool
    private var nextTile: UInt64
    private let lastTile: UInt64
    private var inFlight: [Task<InspectedBundle, Error>] = []

    init(client: LogClient, http: PipelinedHTTPClient?, start: UInt64, end: UInt64, window: Int, watch: WatchList?, keepChained: Bool) {
        self.keepChained = keepChained
        self.client = client
        self.http = http
        self.end = end
        self.window = max(1, window)
        self.watch = watch
        nextTile = start / TileLayout.width
        lastTile = end == 0 ? 0 : (end - 1) / TileLayout.width
        if start >= end { nextTile = lastTile + 1 }
    }

    /// The next bundle, or nil when done.
    mutating func next() async throws -> InspectedBundle? {
        while inFlight.count < window && nextTile <= lastTile {
            let t = nextTile
            let partial = TileLayout.partialWidth(tileIndex: t, count: end)
            let (c, http, watch, keepChained) = (client, http, watch, keepChained)
            let path = "/" + TileLayout.entriesPath(index: t, partial: partial)
            let count = Int(partial == 0 ? TileLayout.width : partial)
            let limits = c.limits
            inFlight.append(Task {
                // A log that stalls or fails a bundle gets `limits.attempts` tries with back-off;
                // each try is bounded by the request deadline and the body cap. (`LogClient.get`
                // retries the same way on its own.)
                if let http {
                    return try await limits.retrying {
                        let (status, body) = try await http.get(path)
                        guard status == 200 else { throw ClientError.http(status: status, message: LogClient.message(Data(body.readableBytesView))) }
                        return try body.withUnsafeReadableBytes { b in
                            try InspectedBundle.inspect(b, firstIndex: t * TileLayout.width, count: count, watch: watch, keepChained: keepChained)
                        }
                    }
                }
                let data = try await c.get(path)
                return try data.withUnsafeBytes { b in
                    try InspectedBundle.inspect(b, firstIndex: t * TileLayout.width, count: count, watch: watch, keepChained: keepChained)
                }
            })
            nextTile += 1
        }
        guard !inFlight.isEmpty else { return nil }
        return try await inFlight.removeFirst().value
    }
}

enum WitnessPolicyError: Error, CustomStringConvertible {
    case quorum(have: Int, need: Int)
    var description: String {
        switch self {
        case let .quorum(have, need): return "the checkpoint has \(have) valid witness cosignature(s); \(need) required"
        }
    }
}
