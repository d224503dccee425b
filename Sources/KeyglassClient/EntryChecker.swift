import Foundation
import KeyglassCore

/// Checks entries one by one, in log order, as the auditor downloads them.
struct EntryChecker {
    let watch: WatchList?
    /// The checkpoint that commits to the entries being checked: the evidence for any alert.
    let note: String
    var lastTimestamp: UInt64
    var chains: [String: AuditState.Chain]
    private(set) var notices: [String] = []
    private var alerts: [Alert] = []

    init(watch: WatchList?, note: String, lastTimestamp: UInt64, chains: [String: AuditState.Chain]) {
        self.watch = watch
        self.note = note
        self.lastTimestamp = lastTimestamp
        self.chains = chains
    }

    mutating func takeAlerts() -> [Alert] {
        defer { alerts = [] }
        return alerts
    }

    private mutating func alert(_ kind: Alert.Kind, _ message: String, _ index: UInt64) {
        alerts.append(Alert(kind: kind, message: message, index: index, evidence: [note]))
    }

    mutating func check(_ bytes: [UInt8], index: UInt64) {
        let entry: KeyEntry
        do { entry = try KeyEntry.parse(bytes) } catch {
            alert(.malformedEntry, "entry \(index) is not a canonical key entry: \(error)", index)
            return
        }
        if entry.timestampMillis < lastTimestamp {
            alert(.backdated, "entry \(index) is timestamped \(entry.timestampMillis), before the previous entry's \(lastTimestamp)", index)
        }
        lastTimestamp = max(lastTimestamp, entry.timestampMillis)
        if let p = entry.previousIndex, p >= index {
            alert(.brokenChain, "entry \(index) names a previous entry \(p) that is not before it", index)
        }
        guard let watch, watch.isWatched(entry.identity) else { return }

        let id = entry.identity
        let key = Base64.encode(entry.publicKey)
        if !watch.isListed(id, entry.keyType, entry.publicKey) {
            alert(.injectedKey, "\(id) got \(entry.keyType.rawValue) key \(key) that its owner did not publish" +
                  (entry.isChained ? " (signed by the previous key: that key may be stolen)" : " (authorised by the operator, not the owner)"), index)
        }
        let chain = chains[id]
        if let p = entry.previousIndex {
            if let chain, chain.index != p {
                alert(.brokenChain, "entry \(index) for \(id) names previous entry \(p), but the identity's previous entry is \(chain.index)", index)
            }
            if entry.isChained {
                if let chain, chain.keyType == KeyType.ed25519.rawValue, let prevKey = Base64.decode(chain.publicKey) {
                    if !entry.isSigned(by: prevKey) {
                        alert(.brokenChain, "entry \(index) for \(id) claims a signature by the previous key that does not verify", index)
                    }
                }
            } else {
                notices.append("entry \(index): unchained rotation for \(id) (the operator, not \(id)'s previous key, authorised key \(key))")
            }
        } else if let chain {
            alert(.brokenChain, "entry \(index) for \(id) claims to be its first entry, but entry \(chain.index) came before", index)
        }
        chains[id] = AuditState.Chain(index: index, keyType: entry.keyType.rawValue, publicKey: key, revoked: entry.revocation)
    }
}
