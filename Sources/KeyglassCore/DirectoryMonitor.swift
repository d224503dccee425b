/// The owner's monitor of a v2 log (issue 14, point 5; Spec/directory.md, "Owner monitors"): given
/// every change the log holds for the owner's label, oldest first, the devices the owner knows, and
/// what the monitor stored at its last run, it says which changes the owner did not make.
///
/// A lookup shows the set as it is now; a monitor reads the history, so a ghost added and revoked
/// between two lookups (the short-lived ghost) is still caught. It is a library call an app makes on
/// a schedule and what `keyglass monitor` runs. An identity nobody monitors or watches gets no ghost
/// detection: contacts' lookups cannot tell a ghost from a device the owner added.
public enum DirectoryMonitor {
    /// What a monitor keeps between runs.
    public struct Stored: Sendable, Equatable {
        /// Changes checked so far, and the chain over them.
        public var version: UInt64
        /// The label's hash chain after `version` changes.
        public var chain: Hash
        /// The log index of the newest change checked.
        public var newestIndex: UInt64

        /// What a monitor stored.
        public init(version: UInt64, chain: Hash, newestIndex: UInt64) {
            self.version = version
            self.chain = chain
            self.newestIndex = newestIndex
        }
    }

    /// Something the owner did not do, or cannot check.
    public enum Alert: Sendable, Equatable {
        /// A change the owner's devices did not sign: an operator add, rotation, revocation or reset,
        /// or one signed by a device the owner does not know (`verdict` says what the rule made of it).
        case notTheOwners(index: UInt64, verdict: DeviceRule.Verdict)
        /// An entry the rule refuses (the log holds what no honest server writes).
        case invalid(index: UInt64, why: String)
        /// The history no longer starts with the changes checked before.
        case rewritten(String)
        /// An entry that is not a change of this label, or out of order.
        case malformed(index: UInt64, why: String)
        /// The history shown does not lead to the state a verified lookup proved: changes withheld.
        case incomplete(String)
        /// A change whose sealed part is missing, does not open its commitment or names another
        /// previous index: what it did cannot be checked (`bad_opening`).
        case badOpening(index: UInt64, why: String)
        /// A change that commits to another set than the rule leaves (a ghost only in the committed
        /// set, which contacts' lookups would show): `set_mismatch`.
        case setMismatch(index: UInt64)
    }

    /// A run's findings and what to store for the next run.
    public struct Report: Sendable, Equatable {
        /// Changes the owner did not make, oldest first.
        public var alerts: [Alert] = []
        /// Changes by the owner's own devices since the last run (a notice each).
        public var ownChanges: [UInt64] = []
        /// What to store: the whole history checked.
        public var stored: Stored?
        /// The set the history leads to.
        public var devices: [DeviceRecord] = []
    }

    /// Checks `history` (the label's change entries as the log serves them, with their indices and
    /// sealed changes, oldest first; inclusion in a checkpoint is the caller's to verify) against the owner's
    /// `known` devices (their records as the owner made them) and `since`, the last run's store.
    /// `asOf`, the owner's own verified lookup, ties the history to a signed map head: a log that
    /// stops the history short of a change (an operator reset the monitor must not see) cannot
    /// also make the head's state.
    ///
    /// The first change may be the operator's onboarding add of a device the owner knows; every
    /// other change must be chained, signed by a known device with the key the owner knows for it.
    public static func check(
        history: [(index: UInt64, entry: [UInt8], sealed: [UInt8]?)], label: Hash, origin: String, known: [DeviceRecord],
        since: Stored? = nil, asOf: DirectoryLookup.Result? = nil
    ) -> Report {
        var report = Report()
        var state = DeviceSet()
        var previous: UInt64?
        var comparedWithStored = since == nil || since?.version == 0
        // The state after the changes the verified map head covers, to compare with what it proved.
        var atCovered = DeviceSet()
        for (index, bytes, sealed) in history {
            if let p = previous, index <= p {
                report.alerts.append(.malformed(index: index, why: "indices must increase (after \(p))"))
                return report
            }
            previous = index
            let isNew = since.map { index > $0.newestIndex } ?? true
            guard case .change(_, let l, let version, let kind, let commitment)? = try? DirectoryEntry.parse(bytes), l == label else {
                if isNew { report.alerts.append(.malformed(index: index, why: "not a change entry of this label")) }
                continue
            }
            guard version == state.version + 1 else {
                if isNew { report.alerts.append(.invalid(index: index, why: "version \(version) after \(state.version)")) }
                continue
            }
            let before = state
            // Parsed once (a parse checks the device key in full); `open` reports one that does not parse.
            let parsed = sealed.flatMap { try? SealedChange.parse($0) }
            let outcome = SealedChange.open(
                sealed ?? [], commitment: commitment, kind: kind, label: label, state: &state, origin: origin, index: index,
                leafHash: Merkle.leafHash(bytes), parsed: parsed)
            if let asOf, index < asOf.coveredSize { atCovered = state }
            // Once the history reaches the version checked last time, it must be the same history.
            if let s = since, !comparedWithStored, state.version == s.version {
                comparedWithStored = true
                if state.chain != s.chain || state.newestIndex != s.newestIndex {
                    report.alerts.append(.rewritten("the first \(s.version) changes are not the ones checked before"))
                }
            }
            guard isNew else { continue }
            switch outcome {
            case .badOpening(let why):
                report.alerts.append(.badOpening(index: index, why: sealed == nil ? "the log gave no sealed change" : why))
                continue
            case .setMismatch:
                report.alerts.append(.setMismatch(index: index))
            case .notApplied, .sealed, .judged:
                break
            }
            guard let verdict = outcome.verdict, let change = parsed?.change else { continue }
            if case .invalid(let why) = verdict {
                report.alerts.append(.invalid(index: index, why: why))
            } else if isOwners(change, verdict: verdict, state: before, known: known) {
                if case .judged = outcome { report.ownChanges.append(index) }
            } else {
                report.alerts.append(.notTheOwners(index: index, verdict: verdict))
            }
        }
        if !comparedWithStored, let s = since {
            report.alerts.append(.rewritten("the log shows \(state.version) changes; \(s.version) were checked before"))
        }
        if let asOf, atCovered.version != asOf.version || atCovered.chain != asOf.chain {
            report.alerts.append(
                .incomplete(
                    "the map head of epoch \(asOf.epoch) proves version \(asOf.version); the history shown leads to version \(atCovered.version) there"
                ))
        }
        if let newest = state.newestIndex { report.stored = Stored(version: state.version, chain: state.chain, newestIndex: newest) }
        report.devices = state.active
        return report
    }

    /// A change the owner made: signed by one of their devices with the key they know for it (the
    /// signer's record in the set before the change must be the owner's own), or the operator's
    /// first add of a device the owner knows.
    private static func isOwners(_ change: DeviceChange, verdict: DeviceRule.Verdict, state: DeviceSet, known: [DeviceRecord]) -> Bool {
        switch (change.authority, verdict) {
        case (.operator, .first):
            if case .add(let r) = change.kind { return known.contains(r) }
            return false
        case (.chained(let signer, _), .chained):
            guard let record = state.device(signer) else { return false }
            return known.contains(record)
        default:
            return false
        }
    }
}
