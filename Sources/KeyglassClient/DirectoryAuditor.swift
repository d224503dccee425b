import Foundation
import KeyglassCore
import KeyglassHTTP
import KeyglassLog
import KeyglassWire

/// Audits a key directory (issue 14, point 6): re-derives the whole log from its entries (read as
/// c2sp.org/tlog-tiles entry bundles), checks the tree it rebuilds is the one the checkpoint signs
/// and extends what this auditor saw before, and replays every entry (`DirectoryReplay`, the
/// computation the server runs): every map head must be the map the entries before it make. Changes
/// are sealed (Spec/directory.md, "Sealed changes"): only watched identities' are opened (their
/// sealed changes read from their histories, so the tree audited is the newest map head's), and
/// for them every change the owner's devices may not have made (an operator's add to a set already
/// changed, a key rotation, a reset, a revocation), a change left out of the history or not
/// opening, and a committed set the change did not make are alerts naming the identity.
///
/// Its map, the labels' states and where it stopped are in a state database
/// (`DirectoryStateStore`), so memory stays bounded whatever the directory's size, and each run
/// starts where the last one stopped, a killed one included. Entries are replayed a chunk of tiles
/// at a time, and a chunk commits only once a consistency proof shows the tree it ends is a prefix
/// of the signed one: nothing the log did not sign ever enters the state. Alerts are stored with
/// the chunk that found them and reported by the run that completes, once.
public struct DirectoryAuditor: Sendable {
    public struct Alert: Sendable, Equatable, Codable {
        /// map_mismatch, invalid_change, malformed_entry, backdated; for watched identities also
        /// ghost_device, injected_key, account_reset, operator_revoke, bad_opening, set_mismatch, erased.
        public let kind: String
        public let index: UInt64
        public let detail: String
    }

    public struct Report: Sendable {
        public var alerts: [Alert] = []
        /// The view to keep: the newest tree audited.
        public var view: DirectoryClient.LogView?
        public var treeSize: UInt64 = 0
        /// Entries this run replayed (from where the last run stopped).
        public var replayed: UInt64 = 0
        public var mapHeads = 0
        public var changes = 0
        public var labels = 0
        /// Alerts past `maxAlerts`, counted only.
        public var alertsNotListed = 0
        /// Where this run started (0: from leaf 0).
        public var resumedAt: UInt64 = 0
    }

    /// Most alerts one run lists.
    public static let maxAlerts = 1000
    /// Most alerts a state keeps unreported: a signed tree of malformed entries must not fill the
    /// disk either; beyond it they are counted.
    static let maxStoredAlerts = 100_000
    /// Tiles replayed per transaction: each ends with a consistency proof.
    static let tilesPerChunk: UInt64 = 64
    /// Most entry bytes per chunk (a chunk ends early past it).
    static let chunkBytes = 32 << 20

    let client: DirectoryClient

    public init(client: DirectoryClient) {
        self.client = client
    }

    /// Audits the log up to its newest checkpoint, from where `store` stopped. `watched`:
    /// identities (canonical) whose labels are looked up, verified, to name their changes; `view`:
    /// what the last complete run kept. `progress` is told the entries read so far. The caller
    /// prints the report's alerts, then calls `store.markAlertsReported()`.
    public func run(watched: [String], view: DirectoryClient.LogView?, store: DirectoryStateStore,
                    progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }) async throws -> Report {
        // Watched identities' labels first (verified lookups), then the tree to audit: the newest
        // map head's checkpoint (`/v2/head`, with the witnesses' cosignatures), which must extend
        // every lookup's tree (so leaf 0, and with it the VRF key the labels were proved under, is
        // the audited one). Their changes are opened with their sealed changes, read from their
        // histories against that same tree: a change the history leaves out is named, and a history
        // frozen on an older tree is refused.
        var watchedLabels: [Hash: String] = [:]
        var lookedUp: [Checkpoint] = []
        var erased: [String] = []
        for identity in watched {
            do {
                let verified = try await client.lookup(identity)
                watchedLabels[verified.result.label] = identity
                lookedUp.append(verified.result.checkpoint)
            } catch ClientError.http(status: 410, _) {
                // An alert below: a watcher must hear of it. The identity stays watched by the label
                // this state knows for it: an honest log never changes an erased label again, so
                // any change to it now is one whose sealed part the log does not give (an alert).
                erased.append(identity)
                if let known = try store.watched(identity) { watchedLabels[known.label] = identity }
            }
        }
        let note = String(decoding: try await client.log.get("/v2/head"), as: UTF8.self)
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(note, logKey: client.logKey).0.checkpoint } catch {
            throw DirectoryClient.Refused(failure: .checkpoint("\(error)"))
        }
        for tree in lookedUp {
            _ = try await client.extend(DirectoryClient.LogView(size: tree.size, root: tree.root.base64, epoch: 0), to: checkpoint, epoch: 0)
        }
        var sealed: [UInt64: [UInt8]] = [:]
        var histories: [Hash: [DirectoryClient.HistoryEntry]] = [:]
        for (label, identity) in watchedLabels where !erased.contains(identity) {
            let history = try await client.history(identity, treeSize: checkpoint.size)
            histories[label] = history.entries
            // A sealed change the log withholds (or erased) is one the alert names: not opened.
            for e in history.entries { sealed[e.index] = e.sealed ?? [] }
        }
        // The tree audited must be one the witnesses saw, as every lookup's must: else a log could
        // show its auditors a clean tree and its users another.
        switch try client.witnessPolicy.evaluate(note, logKey: client.logKey, now: UInt64(Date().timeIntervalSince1970)) {
        case .met: break
        case let .tooFew(have, need): throw DirectoryClient.Refused(failure: .checkpoint("\(have) valid witness cosignature(s), \(need) required"))
        case let .stale(age, allowed): throw DirectoryClient.Refused(failure: .stale("the newest witness cosignature is \(age) s old (at most \(allowed))"))
        }
        // The signed tree extends what the last complete run audited (no fork, no rollback).
        let extended = try await client.extend(view, to: checkpoint, epoch: view?.epoch ?? 0)
        var report = Report()
        let saved = try store.load()
        var replay = DirectoryReplayOf(map: store.map, states: store.labelStates, resuming: saved?.position)
        var range = saved?.range ?? CompactRange()
        report.resumedAt = range.size
        guard range.size <= checkpoint.size else {
            throw DirectoryClient.Refused(failure: .stale("the log's newest tree has \(checkpoint.size) entries; this auditor already re-derived \(range.size) of a tree it signed"))
        }
        // What the state holds must be a prefix of the tree audited now (also when nothing is
        // left to replay: a run killed after its last commit left a view older than its state).
        if range.size > 0 { try await verify(range, against: checkpoint) }
        // A watched label's devices as of where the state stopped, rebuilt from its opened history:
        // its changes before now may have been replayed sealed (watched since this run, or not
        // watched for a while), which left its public part right and its devices unknown. Changes
        // not opened before (past where this state opened the label) are judged now, once; the
        // rebuilt devices replace the stored ones only if every change opened and the public part
        // is the one audited, else the history is named (`bad_opening`) and the state kept.
        var rebuildAlerts: [Alert] = []
        try store.transaction {
            for (label, identity) in watchedLabels where !erased.contains(identity) {
                try store.watch(identity, label: label)
                let openedThrough = try store.watched(identity)?.openedThrough ?? 0
                guard let history = histories[label], let stored = try replay.states.state(of: label) else {
                    try store.setOpenedThrough(identity, range.size)
                    continue
                }
                var rebuilt = DeviceSet()
                var complete = true
                for e in history where e.index < range.size {
                    guard case .change(_, let l, let version, let kind, let commitment)? = try? DirectoryEntry.parse(e.entry), l == label,
                        version == rebuilt.version + 1
                    else { continue }
                    let outcome = SealedChange.open(
                        e.sealed ?? [], commitment: commitment, kind: kind, label: label, state: &rebuilt, origin: replay.origin ?? "",
                        index: e.index, leafHash: Merkle.leafHash(e.entry))
                    if case .judged = outcome {} else { complete = false }
                    if e.index >= openedThrough {
                        for alert in Self.alerts(.change(index: e.index, label: label, outcome: outcome), watched: watchedLabels, checkpointSize: checkpoint.size) {
                            try store.addAlert(index: alert.index, kind: alert.kind, detail: alert.detail)
                        }
                    }
                }
                if complete && rebuilt.version == stored.version && rebuilt.chain == stored.chain {
                    try replay.restoreState(rebuilt, of: label)
                    try store.setOpenedThrough(identity, range.size)
                } else {
                    rebuildAlerts.append(Alert(
                        kind: "bad_opening", index: range.size,
                        detail: "\(identity): its history does not open every one of the \(stored.version) change(s) audited so far: its devices are not rebuilt"))
                }
            }
        }
        var storedAlerts = try store.unreportedAlerts(limit: 0).total
        while range.size < checkpoint.size {
            let chunkEnd = min(checkpoint.size, (range.size / TileLayout.width + Self.tilesPerChunk) * TileLayout.width)
            // Fetched before the transaction, verified before it commits.
            var tiles: [(skip: Int, entries: [[UInt8]])] = []
            var at = range.size
            var bytes = 0
            // Also bounded by bytes: a log of maximal entries would make 64 tiles ~1 GB.
            while at < chunkEnd && (tiles.isEmpty || bytes < Self.chunkBytes) {
                let tile = at / TileLayout.width
                let partial = TileLayout.partialWidth(tileIndex: tile, count: checkpoint.size)
                let entries = try await client.log.entryBundle(index: tile, partial: partial)
                let skip = Int(at - tile * TileLayout.width)
                guard entries.count > skip else {
                    throw DirectoryClient.Refused(failure: .checkpoint("entry bundle \(tile) holds \(entries.count) entries; the tree needs more"))
                }
                tiles.append((skip, entries))
                bytes += entries.reduce(0) { $0 + $1.count }
                at = tile * TileLayout.width + UInt64(entries.count)
            }
            // The chunk's leaves first: the tree it ends must be a prefix of the signed one (a
            // consistency proof) before any of it is replayed into the state.
            var chunkRange = range
            var leaves: [Hash] = []
            for (skip, entries) in tiles {
                for bytes in entries.dropFirst(skip) {
                    let leaf = Merkle.leafHash(bytes)
                    leaves.append(leaf)
                    chunkRange.append(leaf)
                }
            }
            try await verify(chunkRange, against: checkpoint)
            var chunkReplay = replay
            var chunkReport = report
            var chunkStored = storedAlerts
            try store.transaction {
                var k = 0
                for (skip, entries) in tiles {
                    for bytes in entries.dropFirst(skip) {
                        let index = chunkReplay.size
                        let backdatedBefore = chunkReplay.backdatedCount
                        let event: DirectoryReplayEvent
                        do { event = try chunkReplay.replay(bytes, leafHash: leaves[k], sealed: sealed[index]) } catch let stalled as DirectoryReplayStalled {
                            // A log whose map stopped taking changes: refused, not followed into unbounded memory.
                            throw DirectoryClient.Refused(failure: .head(stalled.description))
                        }
                        k += 1
                        var found: [Alert] = []
                        found += Self.alerts(event, watched: watchedLabels, checkpointSize: checkpoint.size)
                        if case .config(let origin) = event, Array(origin.utf8) != Array(checkpoint.origin.utf8) {
                            found.append(Alert(kind: "malformed_entry", index: index, detail: "leaf 0 names origin \(origin), the checkpoint \(checkpoint.origin)"))
                        }
                        if chunkReplay.backdatedCount > backdatedBefore {
                            found.append(Alert(kind: "backdated", index: index, detail: "stamped earlier than an entry before it (timestamps never go back in an honest log)"))
                        }
                        for alert in found {
                            if chunkStored < Self.maxStoredAlerts {
                                try store.addAlert(index: alert.index, kind: alert.kind, detail: alert.detail)
                                chunkStored += 1
                            } else {
                                chunkReport.alertsNotListed += 1
                            }
                        }
                        switch event {
                        case .mapHead: chunkReport.mapHeads += 1
                        case .change: chunkReport.changes += 1
                        default: break
                        }
                        chunkReport.replayed += 1
                    }
                }
                try store.save(chunkReplay.position, range: chunkRange)
                // The watched labels' changes in this chunk were opened as they were replayed.
                for identity in Set(watchedLabels.values) where !erased.contains(identity) {
                    try store.advanceOpenedThrough(identity, from: range.size, to: chunkRange.size)
                }
            }
            storedAlerts = chunkStored
            range = chunkRange
            replay = chunkReplay
            report = chunkReport
            progress(range.size, checkpoint.size)
        }
        let (alerts, total) = try store.unreportedAlerts(limit: Self.maxAlerts)
        report.alerts = alerts.map { Alert(kind: $0.kind, index: $0.index, detail: $0.detail) }
        // Every run while they last (not stored): a watched identity the log calls erased, or whose
        // history cannot rebuild what was audited, cannot be watched.
        report.alerts += erased.map { Alert(kind: "erased", index: checkpoint.size, detail: "\($0): the log answers that the identity was erased; its changes can no longer be opened") }
        report.alerts += rebuildAlerts
        report.alertsNotListed += total - alerts.count
        // The epoch of the newest head that followed its predecessor (an out-of-sequence head's
        // own number, say UInt64.max, would make every later run refuse the log as stale).
        report.view = DirectoryClient.LogView(size: extended.size, root: extended.root, epoch: max(replay.epoch, view?.epoch ?? 0))
        report.treeSize = checkpoint.size
        report.labels = try store.labelCount()
        return report
    }

    /// Throws unless the tree `range` ends is the signed tree or a prefix of it.
    private func verify(_ range: CompactRange, against checkpoint: Checkpoint) async throws {
        if range.size == checkpoint.size {
            guard range.root == checkpoint.root else {
                throw DirectoryClient.Refused(failure: .checkpoint("the entries served do not make the tree the checkpoint of size \(checkpoint.size) signs"))
            }
            return
        }
        let data = try await client.log.get("/v2/proof/consistency?from=\(range.size)&to=\(checkpoint.size)")
        guard let answer = try? JSONDecoder().decode(ConsistencyAnswer.self, from: data) else {
            throw DirectoryClient.Refused(failure: .checkpoint("the consistency answer is malformed"))
        }
        let proof = answer.proof.compactMap { Hash(base64: $0) }
        guard proof.count == answer.proof.count,
              (try? ProofVerifier.verifyConsistency(size1: range.size, size2: checkpoint.size, root1: range.root, root2: checkpoint.root, proof: proof)) != nil
        else {
            throw DirectoryClient.Refused(failure: .checkpoint("the entries served up to \(range.size) are not a prefix of the tree the checkpoint of size \(checkpoint.size) signs"))
        }
    }

    static func alerts(_ event: DirectoryReplayEvent, watched: [Hash: String], checkpointSize: UInt64) -> [Alert] {
        switch event {
        case let .mapHead(index, epoch, .mismatch(derived)):
            return [Alert(kind: "map_mismatch", index: index,
                          detail: "the map head of epoch \(epoch) (leaf \(index), in the checkpoint of size \(checkpointSize)) is not the map its entries make (derived root \(derived.base64))")]
        case let .mapHead(index, epoch, .outOfSequence(why)):
            return [Alert(kind: "map_mismatch", index: index, detail: "the map head of epoch \(epoch) (leaf \(index)) is out of sequence: \(why)")]
        case let .malformed(index, why):
            return [Alert(kind: "malformed_entry", index: index, detail: why)]
        case let .change(index, _, .notApplied(why)):
            return [Alert(kind: "invalid_change", index: index, detail: "a change no honest server writes: \(why)")]
        case let .change(index, label, outcome):
            // Only a watched label's changes are opened: anyone else's are sealed, and what they
            // did is for those who hold their openings to judge.
            guard let identity = watched[label] else { return [] }
            var found: [Alert] = []
            switch outcome {
            case .sealed:
                found.append(Alert(kind: "bad_opening", index: index, detail: "\(identity): the log's history of the identity left this change out"))
            case .badOpening(let why):
                found.append(Alert(kind: "bad_opening", index: index, detail: "\(identity): the change's sealed part does not open it: \(why)"))
            case .setMismatch:
                found.append(Alert(kind: "set_mismatch", index: index, detail: "\(identity): the change commits to devices it did not make (what contacts are shown)"))
            case .judged, .notApplied:
                break
            }
            switch outcome.verdict {
            case .invalid(let why)?: found.append(Alert(kind: "invalid_change", index: index, detail: "\(identity): a change no honest server writes: \(why)"))
            case .ghostDevice?: found.append(Alert(kind: "ghost_device", index: index, detail: "\(identity): the operator added a device to a set already changed"))
            case .injectedKey?: found.append(Alert(kind: "injected_key", index: index, detail: "\(identity): a key its own device did not make"))
            case .accountReset?: found.append(Alert(kind: "account_reset", index: index, detail: "\(identity): the operator replaced every device"))
            case .operatorRevoke?: found.append(Alert(kind: "operator_revoke", index: index, detail: "\(identity): the operator revoked a device"))
            case .first?, .chained?, nil: break
            }
            return found
        case .config, .mapHead(_, _, .matches):
            return []
        }
    }
}
