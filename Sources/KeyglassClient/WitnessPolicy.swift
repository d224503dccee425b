import KeyglassCore

/// Which witnesses' cosignatures count, how many a checkpoint must carry, and how old the newest
/// may be. A witness cosigns only checkpoints consistent with all it cosigned before, so a
/// checkpoint carrying enough fresh cosignatures is one the witnesses' other clients see too.
/// `keyglass audit` and `keyglass lookup` apply it; what each does with a finding differs (an
/// auditor alerts `freeze`; a lookup refuses the answer).
public struct WitnessPolicy: Sendable {
    public var witnesses: [NoteVerifierKey]
    public var quorum: Int
    /// Seconds; nil: any age.
    public var maxAge: UInt64?

    public init(witnesses: [NoteVerifierKey] = [], quorum: Int = 0, maxAge: UInt64? = nil) {
        self.witnesses = witnesses
        self.quorum = quorum
        self.maxAge = maxAge
    }

    /// No requirement at all.
    public var isEmpty: Bool { quorum == 0 && maxAge == nil }

    public enum Finding: Sendable, Equatable {
        case met
        /// Fewer valid cosignatures than the quorum.
        case tooFew(have: Int, need: Int)
        /// The newest valid cosignature is `age` seconds old, more than allowed.
        case stale(age: UInt64, allowed: UInt64)
    }

    /// Judges a signed checkpoint note (already known to carry the log's signature) at time `now`
    /// (seconds since the epoch). A cosignature line by a listed witness that does not verify is an
    /// error, never skipped.
    public func evaluate(_ note: String, logKey: NoteVerifierKey, now: UInt64) throws(VerificationError) -> Finding {
        guard !isEmpty else { return .met }
        let opened: SignedNote.Opened
        do { opened = try SignedCheckpoint.open(note, logKey: logKey, witnesses: witnesses).1 } catch {
            throw .checkpoint(error.description)
        }
        let times = opened.verified.compactMap { opened.cosignatureTime(of: $0.key) }
        guard times.count >= max(quorum, maxAge == nil ? 0 : 1) else { return .tooFew(have: times.count, need: max(quorum, 1)) }
        if let maxAge, let newest = times.max(), now > newest, now - newest > maxAge {
            return .stale(age: now - newest, allowed: maxAge)
        }
        return .met
    }
}
