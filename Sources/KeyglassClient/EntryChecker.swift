import Foundation
import KeyglassCore

/// What can be checked of one entry without the entries before it. Computed for a whole bundle at
/// a time, in parallel with the sequential checks (`EntryChecker.check`).
struct InspectedEntry: Sendable {
    var timestampMillis: UInt64 = 0
    var previousIndex: UInt64?
    /// Why the entry is not a canonical key entry, if it is not.
    var malformed: String?
    /// The whole entry, only when its identity is on the watch list.
    var watched: KeyEntry?

    static func inspect(_ bytes: UnsafeRawBufferPointer, watch: WatchList?) -> InspectedEntry {
        let view: KeyEntry.View
        do { view = try KeyEntry.View.parse(bytes) } catch { return InspectedEntry(malformed: error.description) }
        var out = InspectedEntry(timestampMillis: view.timestampMillis, previousIndex: view.previousIndex)
        if let watch, watch.isWatched(view.identity(in: bytes)) { out.watched = view.entry(in: bytes) }
        return out
    }
}

/// An entry bundle as the auditor consumes it: every entry's leaf hash and inspection.
struct InspectedBundle: Sendable {
    let firstIndex: UInt64
    let leafHashes: [Hash]
    let entries: [InspectedEntry]

    /// Splits, hashes and inspects a bundle that must hold exactly `count` entries.
    static func inspect(_ bundle: UnsafeRawBufferPointer, firstIndex: UInt64, count: Int, watch: WatchList?) throws -> InspectedBundle {
        guard let ranges = EntryBundle.ranges(bundle) else { throw ClientError.malformed("entry bundle at \(firstIndex)") }
        guard ranges.count == count else {
            throw ClientError.malformed("entry bundle at \(firstIndex) has \(ranges.count) entries, expected \(count)")
        }
        var hashes: [Hash] = []
        var entries: [InspectedEntry] = []
        hashes.reserveCapacity(count)
        entries.reserveCapacity(count)
        for r in ranges {
            let bytes = UnsafeRawBufferPointer(rebasing: bundle[r])
            hashes.append(Merkle.leafHash(bytes))
            entries.append(InspectedEntry.inspect(bytes, watch: watch))
        }
        return InspectedBundle(firstIndex: firstIndex, leafHashes: hashes, entries: entries)
    }
}

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

    mutating func check(_ inspected: InspectedEntry, index: UInt64) {
        if let why = inspected.malformed {
            alert(.malformedEntry, "entry \(index) is not a canonical key entry: \(why)", index)
            return
        }
        if inspected.timestampMillis < lastTimestamp {
            alert(.backdated, "entry \(index) is timestamped \(inspected.timestampMillis), before the previous entry's \(lastTimestamp)", index)
        }
        lastTimestamp = max(lastTimestamp, inspected.timestampMillis)
        if let p = inspected.previousIndex, p >= index {
            alert(.brokenChain, "entry \(index) names a previous entry \(p) that is not before it", index)
        }
        guard let watch, let entry = inspected.watched else { return }

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
