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

    public init(log: LogClient, logKey: NoteVerifierKey, vrfKey: [UInt8]? = nil) {
        self.log = log
        self.logKey = logKey
        self.vrfKey = vrfKey
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

    /// Looks `identity` (canonical) up and verifies the answer; `previous` is what this client saw.
    public func lookup(_ identity: String, previous: DirectoryLookup.Previous? = nil) async throws -> Verified {
        let data = try await log.get(Self.path("/v2/lookup/", identity))
        let wire: DirectoryLookupJSON
        do { wire = try JSONDecoder().decode(DirectoryLookupJSON.self, from: data) } catch {
            throw Refused(failure: .state("the answer is not a lookup answer"))
        }
        let answer: DirectoryLookup.Answer
        do { answer = try wire.answer() } catch { throw Refused(failure: .state("\(error)")) }
        do {
            let result = try DirectoryLookup.verify(answer, identity: identity, logKey: logKey, vrfKey: vrfKey, previous: previous)
            return Verified(result: result, newestIndex: answer.state?.history.last?.index)
        } catch {
            throw Refused(failure: error)
        }
    }

    /// Sends a change; with `token` as the operator.
    public func submit(_ body: ChangeBody, token: String? = nil) async throws -> ChangeAnswer {
        var headers = ["Content-Type": "application/json"]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        let (status, data) = try await log.raw("POST", "/v2/changes", body: try JSONEncoder().encode(body), headers: headers)
        guard status == 200 else { throw ClientError.http(status: status, message: LogClient.message(data)) }
        return try JSONDecoder().decode(ChangeAnswer.self, from: data)
    }

    /// The label's change entries, each checked to be in the tree of the answer's checkpoint
    /// (signed by the log's key), oldest first; and that checkpoint.
    public func history(_ identity: String) async throws -> (checkpoint: Checkpoint, entries: [(index: UInt64, entry: [UInt8])]) {
        let data = try await log.get(Self.path("/v2/history/", identity))
        let wire = try JSONDecoder().decode(DirectoryHistoryJSON.self, from: data)
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(wire.checkpoint, logKey: logKey).0.checkpoint } catch {
            throw Refused(failure: .checkpoint("history: \(error)"))
        }
        guard checkpoint.size == wire.tree_size else { throw Refused(failure: .checkpoint("history: tree_size is not the checkpoint's")) }
        var out: [(UInt64, [UInt8])] = []
        for e in wire.entries {
            guard let bytes = Base64.decode(e.entry), let proof = Optional(e.inclusion_proof.compactMap { Hash(base64: $0) }),
                  proof.count == e.inclusion_proof.count else { throw Refused(failure: .state("history: entry \(e.index) is malformed")) }
            do {
                try ProofVerifier.verifyInclusion(index: e.index, size: checkpoint.size, leafHash: Merkle.leafHash(bytes), proof: proof,
                                                  root: checkpoint.root)
            } catch { throw Refused(failure: .state("history: entry \(e.index) is not in the checkpoint's tree")) }
            out.append((e.index, bytes))
        }
        return (checkpoint, out)
    }

    /// An owner's monitor run (issue 14, point 5): a verified lookup, then the label's history
    /// checked against the owner's `known` devices and what the last run stored. The history must
    /// be served against the lookup's checkpoint or a later one.
    public func monitor(_ identity: String, known: [DeviceRecord], since: DirectoryMonitor.Stored?, previous: DirectoryLookup.Previous?)
        async throws -> (lookup: Verified, report: DirectoryMonitor.Report)
    {
        let verified = try await lookup(identity, previous: previous)
        let (checkpoint, entries) = try await history(identity)
        guard checkpoint.size >= verified.result.checkpoint.size else {
            throw Refused(failure: .stale("the history's checkpoint (size \(checkpoint.size)) is older than the lookup's"))
        }
        let covered = entries.filter { $0.index < verified.result.coveredSize }
        let report = DirectoryMonitor.check(history: covered, label: verified.result.label, origin: verified.result.checkpoint.origin, known: known,
                                            since: since, asOf: verified.result)
        return (verified, report)
    }
}
