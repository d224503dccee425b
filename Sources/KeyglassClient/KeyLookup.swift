import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP
import KeyglassWire

/// `keyglass lookup`: an identity's keys, shown only once the answer is proved to come from the
/// same history auditors check.
///
/// A signed checkpoint and inclusion proofs prove an entry is in *a* tree the log signed, not in
/// the tree everyone else is shown: a log (or a front end routing requests) can answer lookups
/// from a fork. So a lookup also keeps state like an auditor: the newest checkpoint it verified,
/// per log. Every answer's checkpoint must be consistent with that one (a proof from the log) and
/// with the log's advertised head, must not be older than what was already seen (stale answers
/// hide revocations), may be required to carry witness cosignatures, and may be held against
/// checkpoints auditors saw (`--compare`, `--gossip`). The history must be whole (its first entry
/// names no previous one) and every entry must pass the rotation rule, signatures included.
public struct KeyLookup: Sendable {
    public struct Options: Sendable {
        public var logKey: NoteVerifierKey
        /// Where the newest verified checkpoint of each log is kept; nil keeps no state (tests of
        /// the verification alone).
        public var stateDirectory: String?
        public var witnesses: [NoteVerifierKey] = []
        public var quorum = 0
        /// Refuse when the newest valid cosignature is older than this many seconds.
        public var maxAge: UInt64?
        public var otherViews: [OtherView] = []
        public var now: @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }
        /// The most entries of one history this client holds before verifying them. A log that
        /// keeps answering "truncated" with full pages would otherwise grow the history until the
        /// process runs out of memory (each page may be up to the body cap, ~16 MB). Ten thousand
        /// key changes is far beyond any person's; past it the lookup is refused.
        public var maxHistoryEntries = 10_000

        public init(logKey: NoteVerifierKey, stateDirectory: String?) {
            self.logKey = logKey
            self.stateDirectory = stateDirectory
        }
    }

    public struct Result: Sendable {
        public let identity: String
        /// The signed note the entries are proved against (with any cosignatures).
        public let note: String
        public let checkpoint: Checkpoint
        public let entries: [VerifiedEntry]
        /// Each entry's authorisation under the rotation rule, in order.
        public let authorisations: [RotationRule.Authorisation]
        /// The raw answers' proofs, entry by entry (for --write-proofs).
        public let proofs: [[Hash]]
        public let notices: [String]
    }

    public let client: LogClient
    public let options: Options

    public init(client: LogClient, options: Options) {
        self.client = client
        self.options = options
    }

    /// The default state directory: $XDG_STATE_HOME/keyglass, else ~/.local/state/keyglass.
    public static var defaultStateDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_STATE_HOME"], xdg.hasPrefix("/") { return xdg + "/keyglass" }
        return (env["HOME"] ?? NSHomeDirectory()) + "/.local/state/keyglass"
    }

    /// The file holding the newest verified checkpoint of this log (a plain signed note, which
    /// `keyglass audit --compare` reads as it is).
    public var checkpointFile: String? {
        guard let dir = options.stateDirectory else { return nil }
        let name = options.logKey.name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        return "\(dir)/\(String(name))-\(String(format: "%08x", options.logKey.keyID))/checkpoint"
    }

    public func run(identity raw: String) async throws -> Result {
        let identity: String
        do { identity = try Identity.normalize(raw) } catch { throw ValidationFailure(description: "identity: \(error)") }

        // The log's head first, then the history against exactly that tree. An answer against any
        // other tree is refused: a bigger one could be a fork stacked on the head (its proof of
        // extending the head would come from the same hostile host), a smaller one a stale answer
        // hiding a newer entry (a revocation). The head itself is checked against what this client
        // saw before, the witnesses and others' views below.
        let headNote = try await client.checkpoint()
        let head = try AnswerVerifier.openCheckpoint(headNote, logKey: options.logKey).checkpoint
        var answer = try await client.keys(identity: identity, treeSize: head.size)
        guard answer.tree_size == head.size else {
            throw VerificationError.checkpoint("asked for the history in the tree of size \(head.size) (the log's /checkpoint), got one in the tree of size \(answer.tree_size)")
        }
        var entries = answer.entries
        guard entries.count <= options.maxHistoryEntries else {
            throw VerificationError.entry("the history of \(identity) has more than \(options.maxHistoryEntries) entries; refusing to hold more")
        }
        var pages = 1
        while answer.truncated == true, let oldest = entries.first {
            pages += 1
            guard pages <= 10_000 else { throw VerificationError.entry("the history of \(identity) does not end") }
            let page: KeysAnswer
            do { page = try await client.keys(identity: identity, before: oldest.index, treeSize: head.size) } catch ClientError.http(404, _) {
                break  // the log says there is nothing older: the history's start is missing, refused below
            }
            guard page.tree_size == head.size else {
                throw VerificationError.checkpoint("a page of the history was answered against tree \(page.tree_size), not \(head.size)")
            }
            // Each page must move back: ascending, all before the oldest entry so far. (Checked here so
            // a log cannot keep a client paging through repeats; the proofs are checked below.)
            guard zip(page.entries, page.entries.dropFirst()).allSatisfy({ $0.index < $1.index }),
                  page.entries.allSatisfy({ $0.index < oldest.index }) else {
                throw VerificationError.entry("a page of \(identity)'s history does not lead back before entry \(oldest.index)")
            }
            // An empty page leaves the history without its start: refused below.
            guard !page.entries.isEmpty else { break }
            guard entries.count + page.entries.count <= options.maxHistoryEntries else {
                throw VerificationError.entry("the history of \(identity) has more than \(options.maxHistoryEntries) entries; refusing to hold more (a log can page without end)")
            }
            entries = page.entries + entries
            answer = KeysAnswer(identity: answer.identity, tree_size: answer.tree_size, checkpoint: answer.checkpoint, entries: entries, truncated: page.truncated)
        }
        let whole = KeysAnswer(identity: answer.identity, tree_size: answer.tree_size, checkpoint: answer.checkpoint, entries: entries, truncated: nil)
        let (signed, verified) = try AnswerVerifier.verifyLookup(whole, logKey: options.logKey, identity: identity)
        guard signed.checkpoint.root == head.root else {
            throw VerificationError.splitView("the history was proved against a tree of size \(head.size) whose root differs from the log's /checkpoint\n\(answer.checkpoint)\n\(headNote)")
        }

        // Whole and authorised: the first entry starts the chain, each later one passes the rule.
        guard let first = verified.first else { throw VerificationError.entry("the answer holds no entry for \(identity)") }
        if let p = first.entry.previousIndex {
            throw VerificationError.entry("the history of \(identity) starts at entry \(first.index), which names an earlier entry \(p) the answer leaves out")
        }
        var authorisations: [RotationRule.Authorisation] = []
        var previous: RotationRule.Previous?
        for v in verified {
            do { authorisations.append(try RotationRule.authorise(v.entry, at: v.index, previous: previous)) } catch {
                throw VerificationError.entry("entry \(v.index) for \(identity) \(error)")
            }
            previous = RotationRule.Previous(index: v.index, entry: v.entry)
        }

        try checkWitnesses(headNote)
        try await checkAgainstSeen(headNote, head)
        if !options.otherViews.isEmpty {
            let (alerts, _) = try await ViewComparison.compare(ours: headNote, with: options.otherViews, logKey: options.logKey, client: client)
            if let alert = alerts.first { throw VerificationError.splitView(alert.message + "\n" + alert.evidence.joined(separator: "\n")) }
        }
        if let file = checkpointFile { try keep(headNote, head, in: file) }
        return Result(identity: identity, note: headNote, checkpoint: head, entries: verified,
                      authorisations: authorisations, proofs: entries.map { ($0.inclusion_proof ?? []).compactMap { Hash(base64: $0) } },
                      notices: otherKeysNotice())
    }

    /// The witness policy, as a refusal: an answer its witnesses do not vouch for is not shown.
    private func checkWitnesses(_ note: String) throws {
        let policy = WitnessPolicy(witnesses: options.witnesses, quorum: options.quorum, maxAge: options.maxAge)
        switch try policy.evaluate(note, logKey: options.logKey, now: options.now()) {
        case .met: break
        case let .tooFew(have, need):
            throw VerificationError.witnesses("the answer's checkpoint has \(have) valid witness cosignature(s); \(need) required")
        case let .stale(age, allowed):
            throw VerificationError.witnesses("the answer's newest witness cosignature is \(age) s old (allowed: \(allowed) s): the log may be showing a frozen view")
        }
    }

    /// State kept for a log of the same name under another key: the log's key changed (a
    /// rotation, or someone else's log). Said out loud, so trust is not silently started anew.
    private func otherKeysNotice() -> [String] {
        guard let file = checkpointFile else { return [] }
        let dir = (file as NSString).deletingLastPathComponent
        let mine = (dir as NSString).lastPathComponent
        let prefix = String(mine.dropLast(8))  // "<name>-" without this key's 8 hex digits
        let others = ((try? FileManager.default.contentsOfDirectory(atPath: (dir as NSString).deletingLastPathComponent)) ?? [])
            .filter { $0 != mine && $0.hasPrefix(prefix) && $0.count == mine.count }
        guard !others.isEmpty else { return [] }
        return ["this client verified \(options.logKey.name) before under another key (\(others.sorted().joined(separator: ", "))): "
                + "if the log did not announce a key rotation, this key is not the log you used before"]
    }

    /// Saves `note` as the newest verified checkpoint unless a newer one is already there (another
    /// lookup may have run meanwhile: the state never goes back). Lookups of one log serialise on a
    /// lock file beside it.
    private func keep(_ note: String, _ checkpoint: Checkpoint, in file: String) throws {
        let dir = (file as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let lock = open(dir + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw Files.FileError.io("cannot open \(dir)/lock") }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        if let text = try? Files.readText(file), let saved = try? AnswerVerifier.openCheckpoint(text, logKey: options.logKey).checkpoint,
           saved.size > checkpoint.size {
            return
        }
        try Files.writeAtomically(note, to: file)
    }

    /// The head the answer is proved against, against the newest checkpoint this client verified
    /// before: never older (a stale view can hide a newer entry), and consistent.
    private func checkAgainstSeen(_ note: String, _ head: Checkpoint) async throws {
        guard let file = checkpointFile, FileManager.default.fileExists(atPath: file) else { return }
        let seenNote = try Files.readText(file)
        let seen = try AnswerVerifier.openCheckpoint(seenNote, logKey: options.logKey).checkpoint
        if head.size < seen.size {
            throw VerificationError.stale("the log answers with tree \(head.size), older than tree \(seen.size) this client already verified (\(file)): a stale or replayed view can hide a newer key or a revocation")
        }
        try await requireConsistent(seenNote, seen, note, head, what: "the checkpoint this client verified before")
    }

    private func requireConsistent(_ noteA: String, _ a: Checkpoint, _ noteB: String, _ b: Checkpoint, what: String) async throws {
        let (small, big) = a.size <= b.size ? (a, b) : (b, a)
        if small.size == big.size {
            guard small.root == big.root else {
                throw VerificationError.splitView("the answer's tree \(a.size) and \(what) have the same size and different roots\n\(noteA)\n\(noteB)")
            }
            return
        }
        if small.size == 0 { return }
        do {
            let proof = try await client.consistencyProof(from: small.size, to: big.size)
            try ProofVerifier.verifyConsistency(size1: small.size, size2: big.size, root1: small.root, root2: big.root, proof: proof)
        } catch let e as ClientError where !e.isLogNotAnswering {
            throw VerificationError.splitView("the log will not prove the answer's tree \(a.size) consistent with \(what) (tree \(b.size)): \(e)\n\(noteA)\n\(noteB)")
        } catch let e as VerificationError {
            throw e
        } catch let e as ClientError {
            throw e
        } catch {
            throw VerificationError.splitView("the answer's tree \(a.size) is not consistent with \(what) (tree \(b.size)): \(error)\n\(noteA)\n\(noteB)")
        }
    }
}

/// Bad input to a command (exit 1), as opposed to an answer that does not verify (exit 2).
public struct ValidationFailure: Error, CustomStringConvertible {
    public let description: String
}
