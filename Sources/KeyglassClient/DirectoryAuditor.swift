import Foundation
import KeyglassCore
import KeyglassHTTP

/// Audits a key directory (issue 14, point 6): re-derives the whole log from its entries (read as
/// c2sp.org/tlog-tiles entry bundles), checks the tree it rebuilds is the one the checkpoint signs
/// and extends what this auditor saw before, and replays every entry (`DirectoryReplay`, the
/// computation the server runs): every map head must be the map the entries before it make, every
/// change one the rule accepts; for watched identities, every change the owner's devices may not
/// have made (an operator's add to a set already changed, a key rotation, a reset, a revocation) is
/// an alert naming the identity.
///
/// It replays from leaf 0 on every run, in memory (the map and the labels' states: about 1 KB per
/// label), and reports alerts at entries it had not audited before. Keeping the map in a state
/// database, so a run starts where the last ended in bounded memory, is the next step.
public struct DirectoryAuditor: Sendable {
    public struct Alert: Sendable, Equatable, Codable {
        /// map_mismatch, invalid_change, malformed_entry, ghost_device, injected_key, account_reset, operator_revoke.
        public let kind: String
        public let index: UInt64
        public let detail: String
    }

    public struct Report: Sendable {
        public var alerts: [Alert] = []
        /// The view to keep: the newest tree audited.
        public var view: DirectoryClient.LogView?
        public var treeSize: UInt64 = 0
        public var mapHeads = 0
        public var changes = 0
        public var labels = 0
        /// Alerts past `maxAlerts`, counted only.
        public var alertsNotListed = 0
    }

    /// Most alerts one run lists.
    public static let maxAlerts = 1000

    let client: DirectoryClient

    public init(client: DirectoryClient) {
        self.client = client
    }

    /// Audits the log up to its newest checkpoint. `watched`: identities (canonical) whose labels
    /// are looked up, verified, to name their changes; `view`: what the last run kept; alerts at
    /// entries below `view.size` were reported then and are not repeated. `progress` is told the
    /// entries read so far.
    public func run(watched: [String], view: DirectoryClient.LogView?, progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in })
        async throws -> Report
    {
        let note = try await client.log.checkpoint()
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(note, logKey: client.logKey).0.checkpoint } catch {
            throw DirectoryClient.Refused(failure: .checkpoint("\(error)"))
        }
        // The tree audited must be one the witnesses saw, as every lookup's must: else a log could
        // show its auditors a clean tree and its users another.
        switch try client.witnessPolicy.evaluate(note, logKey: client.logKey, now: UInt64(Date().timeIntervalSince1970)) {
        case .met: break
        case let .tooFew(have, need): throw DirectoryClient.Refused(failure: .checkpoint("\(have) valid witness cosignature(s), \(need) required"))
        case let .stale(age, allowed): throw DirectoryClient.Refused(failure: .stale("the newest witness cosignature is \(age) s old (at most \(allowed))"))
        }
        var watchedLabels: [Hash: String] = [:]
        for identity in watched {
            watchedLabels[try await client.lookup(identity).result.label] = identity
        }
        var report = Report()
        var replay = DirectoryReplay(store: MemoryMapNodeStore())
        var range = CompactRange()
        var epoch: UInt64 = 0
        let reportedBelow = view?.size ?? 0
        var start: UInt64 = 0
        while start < checkpoint.size {
            let tile = start / TileLayout.width
            let partial = TileLayout.partialWidth(tileIndex: tile, count: checkpoint.size)
            let entries = try await client.log.entryBundle(index: tile, partial: partial)
            for bytes in entries {
                let index = range.size
                let leaf = Merkle.leafHash(bytes)
                range.append(leaf)
                let event = try replay.replay(bytes, leafHash: leaf)
                guard index >= reportedBelow else { continue }
                if let alert = Self.alert(event, watched: watchedLabels, checkpointSize: checkpoint.size) {
                    // Bounded: a signed tree of malformed entries must not fill memory.
                    if report.alerts.count < Self.maxAlerts { report.alerts.append(alert) } else { report.alertsNotListed += 1 }
                }
                switch event {
                case .mapHead: report.mapHeads += 1
                case .change: report.changes += 1
                default: break
                }
            }
            start = range.size
            progress(range.size, checkpoint.size)
        }
        // The epoch of the newest head that followed its predecessor (an out-of-sequence head's
        // own number, say UInt64.max, would make every later run refuse the log as stale).
        epoch = replay.epoch
        for index in replay.backdated where index >= reportedBelow {
            report.alerts.append(Alert(kind: "backdated", index: index, detail: "stamped earlier than an entry before it (timestamps never go back in an honest log)"))
        }
        guard range.size == checkpoint.size, range.root == checkpoint.root else {
            throw DirectoryClient.Refused(failure: .checkpoint("the entries served do not make the tree the checkpoint of size \(checkpoint.size) signs"))
        }
        if let origin = replay.origin, Array(origin.utf8) != Array(checkpoint.origin.utf8) {
            report.alerts.append(Alert(kind: "malformed_entry", index: 0, detail: "leaf 0 names origin \(origin), the checkpoint \(checkpoint.origin)"))
        }
        report.view = try await client.extend(view, to: checkpoint, epoch: epoch)
        report.treeSize = checkpoint.size
        report.labels = replay.states.count
        return report
    }

    static func alert(_ event: DirectoryReplay<MemoryMapNodeStore>.Event, watched: [Hash: String], checkpointSize: UInt64) -> Alert? {
        switch event {
        case let .mapHead(index, epoch, .mismatch(derived)):
            return Alert(kind: "map_mismatch", index: index,
                         detail: "the map head of epoch \(epoch) (leaf \(index), in the checkpoint of size \(checkpointSize)) is not the map its entries make (derived root \(derived.base64))")
        case let .mapHead(index, epoch, .outOfSequence(why)):
            return Alert(kind: "map_mismatch", index: index, detail: "the map head of epoch \(epoch) (leaf \(index)) is out of sequence: \(why)")
        case let .malformed(index, why):
            return Alert(kind: "malformed_entry", index: index, detail: why)
        case let .change(index, _, .invalid(why)):
            return Alert(kind: "invalid_change", index: index, detail: "a change no honest server writes: \(why)")
        case let .change(index, label, verdict):
            // The honest server refuses these outright: in the log at all, they are the writer
            // bypassing its own rule, whoever the label is.
            guard let identity = watched[label] else {
                switch verdict {
                case .ghostDevice: return Alert(kind: "ghost_device", index: index, detail: "label \(label.hex): an operator add to a set already changed, which an honest server refuses")
                case .injectedKey: return Alert(kind: "injected_key", index: index, detail: "label \(label.hex): an operator key change, which an honest server refuses")
                default: return nil
                }
            }
            switch verdict {
            case .ghostDevice: return Alert(kind: "ghost_device", index: index, detail: "\(identity): the operator added a device to a set already changed")
            case .injectedKey: return Alert(kind: "injected_key", index: index, detail: "\(identity): a key its own device did not make")
            case .accountReset: return Alert(kind: "account_reset", index: index, detail: "\(identity): the operator replaced every device")
            case .operatorRevoke: return Alert(kind: "operator_revoke", index: index, detail: "\(identity): the operator revoked a device")
            default: return nil
            }
        case .config, .mapHead(_, _, .matches):
            return nil
        }
    }
}
