import Foundation
import KeyglassCore
import KeyglassHTTP

/// What can be checked of one entry without the entries before it. Computed for a whole bundle at
/// a time, in parallel with the sequential checks (`EntryChecker.check`).
struct InspectedEntry: Sendable {
    var timestampMillis: UInt64 = 0
    var previousIndex: UInt64?
    /// What only a few entries have, boxed: the auditor moves a million of these through its fold,
    /// and three optionals inline made each copy a call that retains them (~2% of an audit's CPU).
    private var rare: Rare?

    /// Immutable once made, so sharing it between copies (and tasks) is safe.
    private final class Rare: Sendable {
        let malformed: String?
        let watched: KeyEntry?
        let chained: KeyEntry?
        init(malformed: String? = nil, watched: KeyEntry? = nil, chained: KeyEntry? = nil) {
            (self.malformed, self.watched, self.chained) = (malformed, watched, chained)
        }
    }

    /// Why the entry is not a canonical key entry, if it is not.
    var malformed: String? { rare?.malformed }
    /// The whole entry, only when its identity is on the watch list.
    var watched: KeyEntry? { rare?.watched }
    /// The whole entry, when it is chained and not watched: its signature is checked once the
    /// entry it names has been read (`ChainedSignatureCheck`).
    var chained: KeyEntry? { rare?.chained }

    /// `keepChained`: copy out chained entries of unwatched identities (only when they are to be
    /// checked: `Auditor.Options.checkUnwatchedRotations`; a copy per rotation costs otherwise).
    static func inspect(_ bytes: UnsafeRawBufferPointer, watch: WatchList?, keepChained: Bool) -> InspectedEntry {
        let view: KeyEntry.View
        // The key's form only (canonical, not of small order): the full point check costs a scalar
        // multiplication, ~35–70 µs, as much as the rest of an audit per entry many times over.
        // Watched identities' keys get the full check in `EntryChecker.checkWatched`, and every
        // client checks in full the keys it uses (Spec/decisions.md 25).
        do { view = try KeyEntry.View.parse(bytes, keys: .form) } catch { return InspectedEntry(rare: Rare(malformed: error.description)) }
        var out = InspectedEntry(timestampMillis: view.timestampMillis, previousIndex: view.previousIndex)
        if let watch, watch.isWatched(view.identity(in: bytes)) {
            out.rare = Rare(watched: view.entry(in: bytes))
        } else if keepChained, view.signature != nil {
            out.rare = Rare(chained: view.entry(in: bytes))
        }
        return out
    }
}

/// An entry bundle as the auditor consumes it: every entry's leaf hash and inspection.
struct InspectedBundle: Sendable {
    let firstIndex: UInt64
    let leafHashes: [Hash]
    let entries: [InspectedEntry]
    /// The root of a full tile's 256 leaves (level 8), hashed here on the worker that read the
    /// bundle: the auditor's fold then appends one node per tile instead of 256 leaves, and the
    /// tree's hashing is spread over the cores (nil for a partial bundle).
    let tileRoot: Hash?

    /// Splits, hashes and inspects a bundle that must hold exactly `count` entries.
    static func inspect(_ bundle: UnsafeRawBufferPointer, firstIndex: UInt64, count: Int, watch: WatchList?,
                        keepChained: Bool) throws -> InspectedBundle {
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
            entries.append(InspectedEntry.inspect(bytes, watch: watch, keepChained: keepChained))
        }
        let tileRoot = UInt64(count) == TileLayout.width ? Merkle.rootOf(leafHashes: hashes) : nil
        return InspectedBundle(firstIndex: firstIndex, leafHashes: hashes, entries: entries, tileRoot: tileRoot)
    }
}

/// Checks entries one by one, in log order, as the auditor downloads them: what every entry must
/// be (canonical, timestamps, previous indices pointing back) and, for watched identities, the
/// rotation rule and the watch file's policy (`WatchPolicy`).
struct EntryChecker {
    let watch: WatchList?
    /// The checkpoint that commits to the entries being checked: the evidence for any alert.
    let note: String
    var lastTimestamp: UInt64
    var chains: [String: AuditState.Chain]
    /// Entries stamped later than this (the auditor's clock plus the allowed skew) are in the future.
    let latestPlausibleMillis: UInt64
    /// Only watched identities' entries are checked: a re-scan of entries audited before, whose
    /// other checks were made then.
    let watchedOnly: Bool
    private(set) var notices: [String] = []
    private var alerts: [Alert] = []
    private var futureReported = false
    /// Chained entries of identities nobody watches, to check once the entries they name are read.
    private(set) var unresolvedChained: [(index: UInt64, entry: KeyEntry)] = []

    /// How far ahead of the auditor's clock an entry may be stamped (clocks drift; logs stamp on receipt).
    static let allowedSkewMillis: UInt64 = 5 * 60 * 1000

    /// Chained entries of identities nobody watches are collected for the rotation rule
    /// (`Auditor.Options.checkUnwatchedRotations`).
    let unwatchedRotations: Bool

    init(watch: WatchList?, note: String, lastTimestamp: UInt64, chains: [String: AuditState.Chain],
         nowMillis: UInt64 = UInt64(max(0, Date().timeIntervalSince1970 * 1000)), watchedOnly: Bool = false,
         unwatchedRotations: Bool = false) {
        self.watchedOnly = watchedOnly
        self.unwatchedRotations = unwatchedRotations
        self.watch = watch
        self.note = note
        self.lastTimestamp = lastTimestamp
        self.chains = chains
        self.latestPlausibleMillis = nowMillis + Self.allowedSkewMillis
    }

    mutating func takeAlerts() -> [Alert] {
        defer { alerts = [] }
        return alerts
    }

    mutating func takeUnresolvedChained() -> [(index: UInt64, entry: KeyEntry)] {
        defer { unresolvedChained = [] }
        return unresolvedChained
    }

    private mutating func alert(_ kind: Alert.Kind, _ message: String, _ index: UInt64) {
        alerts.append(Alert(kind: kind, message: message, index: index, evidence: [note]))
    }

    mutating func check(_ inspected: InspectedEntry, index: UInt64) {
        if watchedOnly {
            if let watch, let entry = inspected.watched { checkWatched(entry, index: index, watch: watch) }
            return
        }
        if let why = inspected.malformed {
            alert(.malformedEntry, "entry \(index) is not a canonical key entry: \(why)", index)
            return
        }
        if inspected.timestampMillis < lastTimestamp {
            alert(.backdated, "entry \(index) is timestamped \(inspected.timestampMillis), before the previous entry's \(lastTimestamp)", index)
        }
        if inspected.timestampMillis > latestPlausibleMillis && !futureReported {
            // Reported once a run: every later entry of such a log is stamped in the future too.
            futureReported = true
            alert(.futureTimestamp, "entry \(index) is timestamped \(inspected.timestampMillis) ms, more than \(Self.allowedSkewMillis / 60000) minutes ahead of this auditor's clock", index)
        }
        lastTimestamp = max(lastTimestamp, inspected.timestampMillis)
        if let watch, let entry = inspected.watched {
            checkWatched(entry, index: index, watch: watch)
            return
        }
        if let p = inspected.previousIndex, p >= index {
            alert(.brokenChain, "entry \(index) names a previous entry \(p) that is not before it", index)
        } else if unwatchedRotations, let entry = inspected.chained {
            unresolvedChained.append((index, entry))
        }
    }

    /// A watched identity's entry: the rotation rule against its newest entry, then the watch file.
    private mutating func checkWatched(_ entry: KeyEntry, index: UInt64, watch: WatchList) {
        let id = entry.identity
        let chain = chains[id]
        // A key a client would refuse must never pass silently for a watched identity.
        do { try entry.keyType.validate(entry.publicKey, check: .full) } catch {
            alert(.malformedEntry, "entry \(index) for \(id) carries a key clients refuse: \(error.description)", index)
        }
        var authorisation: RotationRule.Authorisation?
        do {
            authorisation = try RotationRule.authorise(entry, at: index, previous: chain?.previous(identity: id))
        } catch {
            alert(.brokenChain, "entry \(index) for \(id) \(error) (the log's own rule refuses this entry)", index)
        }
        let outcome = WatchPolicy.judge(entry, authorisation: authorisation, current: chain, watch: watch)
        switch outcome {
        case .fine: break
        case .notice(let text): notices.append("entry \(index): \(text)")
        case .alert(let kind, let text): alert(kind, "entry \(index): \(text)", index)
        }
        chains[id] = AuditState.Chain(index: index, keyType: entry.keyType.rawValue, publicKey: Base64.encode(entry.publicKey), revoked: entry.revocation)
    }
}

/// What the watch file says of one new entry of a watched identity. The file lists every key the
/// owner published, oldest first; see `WatchList`.
enum WatchPolicy {
    enum Outcome: Equatable {
        case fine
        case notice(String)
        case alert(Alert.Kind, String)
    }

    /// `authorisation` is the rotation rule's verdict (nil: refused, alerted already); `current` is the
    /// identity's newest entry before this one.
    static func judge(_ entry: KeyEntry, authorisation: RotationRule.Authorisation?, current: AuditState.Chain?, watch: WatchList) -> Outcome {
        let id = entry.identity
        let key = Base64.encode(entry.publicKey)
        let who = authorisation == .chained ? "signed by the previous key: that key may be stolen" : "authorised by the operator, not the owner"
        guard let position = watch.position(id, entry.keyType, entry.publicKey), let listed = watch.keys[id]?[position] else {
            let what = entry.revocation ? "a revocation of \(entry.keyType.rawValue) key \(key), a key its owner never listed" : "\(entry.keyType.rawValue) key \(key) that its owner did not publish"
            return .alert(.injectedKey, "\(id) got \(what) (\(who))")
        }
        if entry.revocation {
            if listed.revoked { return .fine }
            if authorisation == .chained {
                return .alert(.unlistedRevocation, "\(id)'s key \(key) was revoked with its own signature, but the watch file lists it as in use (the key may be stolen; if its owner revoked it, mark its line `revoked`)")
            }
            return .alert(.revokedByOperator, "the operator revoked \(id)'s key \(key), which the watch file lists as in use")
        }
        guard let current, let currentType = KeyType(rawValue: current.keyType), let currentKey = Base64.decode(current.publicKey),
              let currentPosition = watch.position(id, currentType, currentKey) else {
            return .fine
        }
        if position < currentPosition {
            return .alert(.retiredKey, "\(id)'s key \(key) was published again after its owner replaced it with \(current.publicKey) (\(who))")
        }
        if position == currentPosition {
            if current.revoked {
                return .alert(.retiredKey, "\(id)'s key \(key) was published again after it was revoked in entry \(current.index) (\(who))")
            }
            return .notice("\(id)'s current key \(key) published again, unchanged")
        }
        return .fine
    }
}
