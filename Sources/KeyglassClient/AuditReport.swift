import Foundation

/// Evidence of log misbehaviour. Every alert carries what a third party needs to check it: signed
/// checkpoints (and entry indices) that cannot all be honest.
public struct Alert: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// A watched identity got a key its owner did not publish.
        case injectedKey = "injected_key"
        /// The entries served do not hash to the signed root.
        case rootMismatch = "root_mismatch"
        /// Two validly signed checkpoints that cannot both be true.
        case splitView = "split_view"
        /// A newer checkpoint is smaller than one already verified.
        case rollback
        /// A signed entry that is not a canonical key entry.
        case malformedEntry = "malformed_entry"
        /// A watched identity's chain is broken: a chained entry whose signature does not verify, or
        /// a previous index that is not the identity's previous entry.
        case brokenChain = "broken_chain"
        /// A watched identity got back a key its owner had replaced or revoked.
        case retiredKey = "retired_key"
        /// The operator (not the owner's key) revoked a key the watch file lists as in use.
        case revokedByOperator = "revoked_by_operator"
        /// A key was revoked with its own signature, but the watch file does not mark it revoked.
        case unlistedRevocation = "unlisted_revocation"
        /// Entry timestamps go backwards.
        case backdated
        /// An entry is stamped further ahead of the auditor's clock than clocks drift.
        case futureTimestamp = "future_timestamp"
        /// The newest valid witness cosignature is older than allowed.
        case freeze
    }

    public let kind: Kind
    public let message: String
    public var index: UInt64?
    /// Signed notes that prove the alert, verbatim.
    public var evidence: [String]

    public init(kind: Kind, message: String, index: UInt64? = nil, evidence: [String] = []) {
        self.kind = kind
        self.message = message
        self.index = index
        self.evidence = evidence
    }
}

/// What one audit run found; printed as text or JSON.
public struct AuditReport: Codable, Sendable {
    public enum Status: String, Codable, Sendable { case ok, alert, error }

    public var status: Status = .ok
    public var origin: String = ""
    public var previousSize: UInt64 = 0
    public var size: UInt64 = 0
    public var root: String = ""
    public var entriesChecked: UInt64 = 0
    public var alerts: [Alert] = []
    /// Alerts found beyond the first `Auditor.maxAlertsListed`: written to alerts.jsonl like every
    /// alert, counted here, not listed (nil when none). A log with a million malformed entries
    /// would otherwise grow this report, and the state saved with it, without bound.
    public var alertsNotListed: UInt64?
    public var notices: [String] = []
    public var error: String?
    /// The error was the log not answering (unreachable, timeouts, 5xx), not bad input or state.
    public var logNotAnswering = false

    enum CodingKeys: String, CodingKey {
        case status, origin, previousSize = "previous_size", size, root, entriesChecked = "entries_checked", alerts, notices, error
        case alertsNotListed = "alerts_not_listed"
        case logNotAnswering = "log_not_answering"
    }

    public init() {}

    /// 2 alert (evidence of misbehaviour; wins over any error that came after it); 3 the log
    /// stopped answering; 1 could not check for another reason; 0 consistent.
    public var exitCode: Int32 {
        if !alerts.isEmpty { return 2 }
        guard error != nil else { return 0 }
        return logNotAnswering ? 3 : 1
    }

    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }

    public var text: String {
        var out: [String] = []
        for a in alerts {
            out.append("ALERT \(a.kind.rawValue): \(a.message)" + (a.index.map { " (entry \($0))" } ?? ""))
            for (i, ev) in a.evidence.enumerated() {
                out.append("  evidence \(i + 1):")
                out += ev.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }
            }
        }
        if let more = alertsNotListed { out.append("ALERT and \(more) more alerts, not listed here: every alert is in alerts.jsonl in the state directory") }
        if let e = error { out.append("ERROR: \(e)") }
        for n in notices { out.append("notice: \(n)") }
        if alerts.isEmpty && error == nil {
            out.append("ok: \(origin) size \(size) (was \(previousSize)); \(entriesChecked) new entries re-derive the signed root \(root)")
        }
        return out.joined(separator: "\n")
    }
}
