import Foundation
import KeyglassCore
import KeyglassHTTP
import KeyglassWire

/// A client of a v2 log (the key directory) that trusts nothing it is told: every lookup is
/// verified (`DirectoryLookup.verify`) against the log's verifier key and, if pinned, its VRF key;
/// every history entry's inclusion in a signed checkpoint is checked before a monitor reads it.
public struct DirectoryClient: Sendable {
    public let log: LogClient
    public let logKey: NoteVerifierKey
    /// The VRF key this client pinned for the log (nil: leaf 0's, whatever it is).
    public let vrfKey: [UInt8]?
    /// Witness cosignatures every lookup's checkpoint must carry (a split view needs the
    /// witnesses to sign both sides).
    public let witnessPolicy: WitnessPolicy
    /// The lookup credential lookups and histories are sent with (they carry sealed changes).
    public let lookupToken: String?

    public init(log: LogClient, logKey: NoteVerifierKey, vrfKey: [UInt8]? = nil, witnessPolicy: WitnessPolicy = WitnessPolicy(),
                lookupToken: String? = nil) {
        self.log = log
        self.logKey = logKey
        self.vrfKey = vrfKey
        self.witnessPolicy = witnessPolicy
        self.lookupToken = lookupToken
    }

    /// A GET of a route that needs the lookup credential.
    func authorisedGet(_ path: String) async throws -> Data {
        try await log.get(path, headers: lookupToken.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    /// A lookup that did not verify: the evidence is the reason (exit 2 in the CLI).
    public struct Refused: Error, CustomStringConvertible {
        public let failure: DirectoryLookup.Failure
        public var description: String { failure.description }
    }

    /// A verified lookup, and the index of the label's newest applied change (what a device signs
    /// its next chained change against), nil for a label never published.
    public struct Verified: Sendable {
        public let result: DirectoryLookup.Result
        public let newestIndex: UInt64?
    }

    static func path(_ prefix: String, _ identity: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/%?#")
        return prefix + (identity.addingPercentEncoding(withAllowedCharacters: allowed) ?? identity)
    }

    /// What a client keeps of a directory between runs: the newest checkpoint it verified a map
    /// head in, and that head's epoch. Every later answer must be in a tree that extends it.
    public struct LogView: Codable, Sendable, Equatable {
        public var size: UInt64
        public var root: String
        public var epoch: UInt64
        public init(size: UInt64, root: String, epoch: UInt64) {
            self.size = size
            self.root = root
            self.epoch = epoch
        }
    }

    /// Checks that `checkpoint` (verified, holding a head of `epoch`) extends `prior`: the same tree
    /// at the same size, or a consistency proof from it; the epoch never goes back. Returns the view
    /// to keep. A log that forked, or rolled back, is refused.
    public func extend(_ prior: LogView?, to checkpoint: Checkpoint, epoch: UInt64) async throws -> LogView {
        let view = LogView(size: checkpoint.size, root: checkpoint.root.base64, epoch: epoch)
        guard let prior else { return view }
        guard epoch >= prior.epoch else { throw Refused(failure: .stale("map head of epoch \(epoch); this client verified epoch \(prior.epoch) of this log")) }
        guard checkpoint.size >= prior.size else {
            throw Refused(failure: .stale("a tree of \(checkpoint.size) entries; this client verified one of \(prior.size)"))
        }
        guard let priorRoot = Hash(base64: prior.root) else { throw Refused(failure: .checkpoint("the stored view is unreadable")) }
        if checkpoint.size == prior.size {
            guard checkpoint.root == priorRoot else { throw Refused(failure: .rewritten("two trees of \(prior.size) entries: the log forked")) }
            return view.epoch >= prior.epoch ? view : prior
        }
        let data = try await log.get("/v2/proof/consistency?from=\(prior.size)&to=\(checkpoint.size)")
        guard let answer = try? JSONDecoder().decode(ConsistencyAnswer.self, from: data) else {
            throw Refused(failure: .checkpoint("the consistency answer is malformed"))
        }
        let proof = answer.proof.compactMap { Hash(base64: $0) }
        guard proof.count == answer.proof.count,
              (try? ProofVerifier.verifyConsistency(size1: prior.size, size2: checkpoint.size, root1: priorRoot, root2: checkpoint.root, proof: proof)) != nil
        else { throw Refused(failure: .rewritten("the tree of \(checkpoint.size) entries does not extend the one of \(prior.size) this client verified: the log forked")) }
        return view
    }

    /// Looks `identity` up, verifies the answer, checks its tree extends `view` and that its map
    /// head is at most `maxAge` seconds old (by `now`, Unix seconds). Returns the answer and the
    /// view to keep.
    public func lookup(_ identity: String, previous: DirectoryLookup.Previous?, view: LogView?, maxAge: UInt64? = nil,
                       now: UInt64 = UInt64(Date().timeIntervalSince1970)) async throws -> (Verified, LogView) {
        var previous = previous
        if let view { previous = previous.map { p in var q = p; q.epoch = max(p.epoch, view.epoch); return q } ?? DirectoryLookup.Previous(epoch: view.epoch) }
        let verified = try await lookup(identity, previous: previous)
        if let maxAge {
            let made = verified.result.timestampMillis / 1000
            guard made + maxAge >= now else {
                throw Refused(failure: .stale("the newest map head was made \(now > made ? now - made : 0) s ago, more than --max-age \(maxAge) s: the log may be frozen for you"))
            }
        }
        return (verified, try await extend(view, to: verified.result.checkpoint, epoch: verified.result.epoch))
    }

    /// Looks `identity` (canonical) up and verifies the answer; `previous` is what this client saw.
    public func lookup(_ identity: String, previous: DirectoryLookup.Previous? = nil) async throws -> Verified {
        let data = try await authorisedGet(Self.path("/v2/lookup/", identity))
        let wire: DirectoryLookupJSON
        do { wire = try JSONDecoder().decode(DirectoryLookupJSON.self, from: data) } catch {
            throw Refused(failure: .state("the answer is not a lookup answer"))
        }
        let answer: DirectoryLookup.Answer
        do { answer = try wire.answer() } catch { throw Refused(failure: .state("\(error)")) }
        let result: DirectoryLookup.Result
        do { result = try DirectoryLookup.verify(answer, identity: identity, logKey: logKey, vrfKey: vrfKey, previous: previous) } catch {
            throw Refused(failure: error)
        }
        let finding: WitnessPolicy.Finding
        do { finding = try witnessPolicy.evaluate(answer.checkpoint, logKey: logKey, now: UInt64(Date().timeIntervalSince1970)) } catch {
            throw Refused(failure: .checkpoint("a witness cosignature does not verify: \(error)"))
        }
        switch finding {
        case .met: break
        case let .tooFew(have, need):
            throw Refused(failure: .checkpoint("\(have) valid witness cosignature(s), \(need) required: no proof that others see this map head"))
        case let .stale(age, allowed):
            throw Refused(failure: .stale("the newest witness cosignature is \(age) s old, more than \(allowed) s: the log may be frozen for you"))
        }
        return Verified(result: result, newestIndex: answer.state?.history.last?.index)
    }

    /// Sends a change; with `token` as the operator.
    public func submit(_ body: ChangeBody, token: String? = nil) async throws -> ChangeAnswer {
        var headers = ["Content-Type": "application/json"]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        let (status, data) = try await log.raw("POST", "/v2/changes", body: try JSONEncoder().encode(body), headers: headers)
        guard status == 200 else { throw ClientError.http(status: status, message: LogClient.message(data)) }
        return try JSONDecoder().decode(ChangeAnswer.self, from: data)
    }

    /// A label's change entries as a history answer carries them: index, entry, sealed change.
    public typealias HistoryEntry = (index: UInt64, entry: [UInt8], sealed: [UInt8]?)

    /// The label's change entries with their sealed changes, each checked to be in the tree of the
    /// answer's checkpoint (signed by the log's key), oldest first; that checkpoint and its note.
    /// `treeSize`: against that signed tree (a head's) rather than the newest head.
    public func history(_ identity: String, treeSize: UInt64? = nil) async throws
        -> (checkpoint: Checkpoint, note: String, entries: [HistoryEntry])
    {
        var pages: [[HistoryEntry]] = []
        var first: (checkpoint: Checkpoint, note: String)?
        var before: UInt64?
        // Paged back from the newest, every page against the first page's tree; a label has at most
        // DeviceRule.maxVersion changes, so at most that many entries are read.
        while true {
            var path = Self.path("/v2/history/", identity)
            if let before, let first {
                path += "?before=\(before)&tree_size=\(first.checkpoint.size)"
            } else if let treeSize {
                path += "?tree_size=\(treeSize)"
            }
            let (checkpoint, note, page, more) = try await historyPage(path)
            if let first, checkpoint != first.checkpoint { throw Refused(failure: .state("history: a page answered against another tree")) }
            if let treeSize, checkpoint.size != treeSize { throw Refused(failure: .state("history: answered against another tree than asked")) }
            first = first ?? (checkpoint, note)
            pages.append(page)
            let read = pages.reduce(0) { $0 + $1.count }
            guard more, let oldest = page.first?.index, UInt64(read) < DeviceRule.maxVersion else { break }
            if let before, oldest >= before { throw Refused(failure: .state("history: a page did not go back")) }
            before = oldest
        }
        return (first!.checkpoint, first!.note, pages.reversed().flatMap { $0 })
    }

    private func historyPage(_ path: String) async throws -> (Checkpoint, String, [HistoryEntry], Bool) {
        let data = try await authorisedGet(path)
        let wire: DirectoryHistoryJSON
        do { wire = try JSONDecoder().decode(DirectoryHistoryJSON.self, from: data) } catch {
            throw Refused(failure: .state("the answer is not a history answer"))
        }
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(wire.checkpoint, logKey: logKey).0.checkpoint } catch {
            throw Refused(failure: .checkpoint("history: \(error)"))
        }
        guard checkpoint.size == wire.tree_size else { throw Refused(failure: .checkpoint("history: tree_size is not the checkpoint's")) }
        var out: [HistoryEntry] = []
        for e in wire.entries {
            guard let bytes = Base64.decode(e.entry), let proof = Optional(e.inclusion_proof.compactMap { Hash(base64: $0) }),
                  proof.count == e.inclusion_proof.count else { throw Refused(failure: .state("history: entry \(e.index) is malformed")) }
            do {
                try ProofVerifier.verifyInclusion(index: e.index, size: checkpoint.size, leafHash: Merkle.leafHash(bytes), proof: proof,
                                                  root: checkpoint.root)
            } catch { throw Refused(failure: .state("history: entry \(e.index) is not in the checkpoint's tree")) }
            // A sealed change that is not base64 is one the monitor cannot open: it says so.
            out.append((e.index, bytes, e.sealed.map { Base64.decode($0) ?? [] }))
        }
        return (checkpoint, wire.checkpoint, out, wire.more)
    }

    /// An owner's monitor run (issue 14, point 5): a verified lookup, then the label's history
    /// checked against the owner's `known` devices and what the last run stored. The history must
    /// be served against the lookup's checkpoint or a later one.
    public func monitor(_ identity: String, known: [DeviceRecord], since: DirectoryMonitor.Stored?, previous: DirectoryLookup.Previous?,
                        view: LogView?, maxAge: UInt64? = nil) async throws -> (lookup: Verified, view: LogView, report: DirectoryMonitor.Report)
    {
        let (verified, newView) = try await lookup(identity, previous: previous, view: view, maxAge: maxAge)
        let (checkpoint, _, entries) = try await history(identity)
        // The history's tree must be the lookup's, or extend it: a history from a fork is refused.
        _ = try await extend(newView, to: checkpoint, epoch: newView.epoch)
        let covered = entries.filter { $0.index < verified.result.coveredSize }
        let report = DirectoryMonitor.check(history: covered, label: verified.result.label, origin: verified.result.checkpoint.origin, known: known,
                                            since: since, asOf: verified.result)
        return (verified, newView, report)
    }
}
