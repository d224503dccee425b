import Foundation
import KeyglassCore
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
        public var otherViews: [(source: String, note: String)] = []
        /// Called as entries are checked: (done, total).
        public var progress: (@Sendable (UInt64, UInt64) -> Void)?
        /// Save the audit position every this many entries, so a killed run resumes.
        public var saveEvery: UInt64 = 65536
        /// Bundles fetched ahead of the one being checked.
        public var prefetch = 4
        /// Witnesses (cosignature/v1 keys) whose cosignatures count, and how many are required.
        public var witnesses: [NoteVerifierKey] = []
        public var quorum = 0
        /// A freeze alert when the newest valid cosignature is older than this many seconds.
        public var maxAge: UInt64?
        public var now: @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }

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
        do {
            try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            var state = try AuditState.load(dir) ?? AuditState(
                verifierKey: options.logKey.description, checkpoint: nil,
                audited: .init(size: 0, range: CompactRange(), lastTimestamp: 0, chains: [:]))
            guard state.verifierKey == options.logKey.description else {
                throw AuditError.pinnedKeyDiffers(pinned: state.verifierKey, given: options.logKey.description)
            }
            report.previousSize = state.audited.size
            try await audit(&state, &report)
            if report.alerts.isEmpty, let note = state.checkpoint {
                try await compareViews(current: note, &report)
            }
            if let note = state.checkpoint, let cp = try? Checkpoint.parse(SignedNote.parse(note).text) {
                report.size = cp.size
                report.root = cp.root.base64
            }
        } catch {
            report.error = "\(error)"
        }
        report.status = !report.alerts.isEmpty ? .alert : (report.error == nil ? .ok : .error)
        recordAlerts(report.alerts)
        return report
    }

    private func open(_ note: String) throws -> Checkpoint {
        try AnswerVerifier.openCheckpoint(note, logKey: options.logKey).checkpoint
    }

    private func audit(_ state: inout AuditState, _ report: inout AuditReport) async throws {
        // A run that was killed part-way finishes the checkpoint it had verified first.
        if let pendingNote = state.pendingCheckpoint, let cursor = state.pending {
            report.notices.append("resuming the audit of checkpoint \(try open(pendingNote).size) at entry \(cursor.size)")
            try await scan(&state, target: try open(pendingNote), note: pendingNote, from: cursor, &report)
            if !report.alerts.isEmpty { return }
        }

        let note = try await client.checkpoint()
        let new = try open(note)
        try keepEvidence(note, new)
        try checkWitnesses(note, &report)
        if let oldNote = state.checkpoint {
            let old = try open(oldNote)
            if new.size < old.size {
                report.alerts.append(Alert(kind: .rollback, message: "the log now serves size \(new.size) after signing size \(old.size)", evidence: [oldNote, note]))
                return
            }
            if new.size == old.size {
                if new.root != old.root {
                    report.alerts.append(Alert(kind: .splitView, message: "two signed checkpoints of size \(new.size) with different roots", evidence: [oldNote, note]))
                }
                return
            }
            if old.size > 0 {
                let proof: [Hash]
                do { proof = try await client.consistencyProof(from: old.size, to: new.size) } catch ClientError.http(let status, let message) {
                    report.alerts.append(Alert(kind: .splitView, message: "the log will not prove size \(new.size) extends size \(old.size) (\(status): \(message))", evidence: [oldNote, note]))
                    return
                }
                do {
                    try ProofVerifier.verifyConsistency(size1: old.size, size2: new.size, root1: old.root, root2: new.root, proof: proof)
                } catch {
                    report.alerts.append(Alert(kind: .splitView, message: "checkpoint \(new.size) is not consistent with checkpoint \(old.size): \(error)", evidence: [oldNote, note]))
                    return
                }
            }
        }
        state.pendingCheckpoint = note
        state.pending = state.audited
        try state.save(dir)
        try await scan(&state, target: new, note: note, from: state.audited, &report)
    }

    /// Checks entries [cursor.size, target.size) and, if they re-derive the target's root, commits
    /// the target as the audited checkpoint.
    private func scan(_ state: inout AuditState, target: Checkpoint, note: String, from cursor: AuditState.Cursor,
                      _ report: inout AuditReport) async throws {
        var range = try cursor.compactRange()
        var checker = EntryChecker(watch: options.watch, note: note, lastTimestamp: cursor.lastTimestamp, chains: cursor.chains)
        let start = cursor.size
        let end = target.size
        var lastSaved = start
        let http = PipelinedHTTPClient(base: client.base)
        defer { if let http { Task { await http.shutdown() } } }
        var bundles = BundleFetcher(client: client, http: http, start: start, end: end, window: options.prefetch, watch: options.watch)
        while let bundle = try await bundles.next() {
            // A cancelled run (SIGINT, a test) stops here; the saved position lets the next run resume.
            try Task.checkCancellation()
            for (offset, inspected) in bundle.entries.enumerated() {
                let index = bundle.firstIndex + UInt64(offset)
                if index < range.size { continue }
                checker.check(inspected, index: index)
                range.append(bundle.leafHashes[offset])
            }
            options.progress?(range.size - start, end - start)
            if range.size - lastSaved >= options.saveEvery && range.size < end {
                state.pending = .init(size: range.size, range: range, lastTimestamp: checker.lastTimestamp, chains: checker.chains)
                state.pendingAlerts = (state.pendingAlerts ?? []) + checker.takeAlerts()
                try state.save(dir)
                lastSaved = range.size
            }
        }
        guard range.size == end, range.root == target.root else {
            let culprit = try? await findAlteredEntry(start: start, end: end)
            report.alerts.append(Alert(
                kind: .rootMismatch,
                message: "the log's entries \(start)..<\(end) do not hash to the root it signed" + (culprit.map { "; entry \($0) differs from the tree's leaf hash" } ?? ""),
                index: culprit, evidence: [note]))
            state.pendingCheckpoint = nil
            state.pending = nil
            state.pendingAlerts = nil
            try state.save(dir)
            return
        }
        report.alerts += (state.pendingAlerts ?? []) + checker.takeAlerts()
        report.notices += checker.notices
        report.entriesChecked += end - start
        state.audited = .init(size: end, range: range, lastTimestamp: checker.lastTimestamp, chains: checker.chains)
        state.checkpoint = note
        state.pendingCheckpoint = nil
        state.pending = nil
        state.pendingAlerts = nil
        try state.save(dir)
    }

    /// After a root mismatch: the first entry whose hash differs from the level-0 tile, if any.
    private func findAlteredEntry(start: UInt64, end: UInt64) async throws -> UInt64? {
        var fetcher = BundleFetcher(client: client, http: nil, start: start, end: end, window: 2, watch: nil)
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

    /// Compares the audited checkpoint with checkpoints others saw: two valid signatures on views
    /// that cannot both be true is a split view.
    private func compareViews(current: String, _ report: inout AuditReport) async throws {
        let ours = try open(current)
        for (source, note) in options.otherViews {
            let theirs: Checkpoint
            do { theirs = try open(note) } catch {
                report.notices.append("ignored \(source): \(error)")
                continue
            }
            try keepEvidence(note, theirs)
            if theirs.size == ours.size {
                if theirs.root != ours.root {
                    report.alerts.append(Alert(kind: .splitView, message: "\(source) holds a signed checkpoint of size \(theirs.size) with a different root", evidence: [current, note]))
                }
                continue
            }
            let (small, big) = theirs.size < ours.size ? (theirs, ours) : (ours, theirs)
            if small.size == 0 { continue }
            do {
                let proof = try await client.consistencyProof(from: small.size, to: big.size)
                try ProofVerifier.verifyConsistency(size1: small.size, size2: big.size, root1: small.root, root2: big.root, proof: proof)
            } catch let e as ClientError {
                if case .http = e {
                    report.alerts.append(Alert(kind: .splitView, message: "the log will not prove \(source)'s checkpoint \(theirs.size) consistent with ours \(ours.size): \(e)", evidence: [current, note]))
                } else { throw e }
            } catch {
                report.alerts.append(Alert(kind: .splitView, message: "\(source)'s checkpoint \(theirs.size) is not consistent with ours \(ours.size): \(error)", evidence: [current, note]))
            }
        }
    }

    /// The witness policy: at least `quorum` valid cosignatures, the newest no older than `maxAge`.
    private func checkWitnesses(_ note: String, _ report: inout AuditReport) throws {
        guard options.quorum > 0 || options.maxAge != nil else { return }
        let opened: SignedNote.Opened
        do { opened = try SignedCheckpoint.open(note, logKey: options.logKey, witnesses: options.witnesses).1 } catch {
            throw VerificationError.checkpoint(error.description)
        }
        let times = opened.verified.compactMap { opened.cosignatureTime(of: $0.key) }
        guard times.count >= options.quorum else {
            throw WitnessPolicyError.quorum(have: times.count, need: options.quorum)
        }
        if let maxAge = options.maxAge {
            guard let newest = times.max() else { throw WitnessPolicyError.quorum(have: 0, need: 1) }
            let now = options.now()
            if now > newest && now - newest > maxAge {
                report.alerts.append(Alert(kind: .freeze, message: "the newest witness cosignature is \(now - newest) s old (allowed: \(maxAge) s): the log may be frozen for this view", evidence: [note]))
            }
        }
    }

    /// Every verified checkpoint is kept: a later contradiction needs the earlier signed note.
    private func keepEvidence(_ note: String, _ cp: Checkpoint) throws {
        let name = "\(dir)/checkpoints/\(cp.size)-\(cp.root.hex.prefix(16)).note"
        if !FileManager.default.fileExists(atPath: name) { try Files.writeAtomically(note, to: name) }
    }

    private func recordAlerts(_ alerts: [Alert]) {
        guard !alerts.isEmpty, FileManager.default.fileExists(atPath: dir) else { return }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = ""
        for a in alerts { lines += String(decoding: (try? e.encode(a)) ?? Data(), as: UTF8.self) + "\n" }
        let path = dir + "/alerts.jsonl"
        if let h = FileHandle(forWritingAtPath: path) {
            h.seekToEndOfFile()
            h.write(Data(lines.utf8))
            try? h.synchronize()
            try? h.close()
        } else {
            try? Files.writeAtomically(lines, to: path)
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
    private var nextTile: UInt64
    private let lastTile: UInt64
    private var inFlight: [Task<InspectedBundle, Error>] = []

    init(client: LogClient, http: PipelinedHTTPClient?, start: UInt64, end: UInt64, window: Int, watch: WatchList?) {
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
            let (c, http, watch) = (client, http, watch)
            let path = "/" + TileLayout.entriesPath(index: t, partial: partial)
            let count = Int(partial == 0 ? TileLayout.width : partial)
            inFlight.append(Task {
                if let http {
                    let (status, body) = try await http.get(path)
                    guard status == 200 else { throw ClientError.http(status: status, message: LogClient.message(Data(body.readableBytesView))) }
                    return try body.withUnsafeReadableBytes { b in
                        try InspectedBundle.inspect(b, firstIndex: t * TileLayout.width, count: count, watch: watch)
                    }
                }
                let data = try await c.get(path)
                return try data.withUnsafeBytes { b in
                    try InspectedBundle.inspect(b, firstIndex: t * TileLayout.width, count: count, watch: watch)
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
