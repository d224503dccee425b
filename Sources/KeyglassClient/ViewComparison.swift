import Foundation
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP

/// Checkpoints of one log seen by someone else (another auditor, a lookup, a witness, a mirror),
/// and the check that ours and theirs can both be true. Two validly signed checkpoints that the
/// log cannot prove consistent are a split view: the log shows different histories to different
/// people. `keyglass audit` and `keyglass lookup` both run it, so what lookups see and what
/// auditors check can be held against each other.
public struct OtherView: Sendable, Equatable {
    public let source: String
    public let note: String

    public init(source: String, note: String) {
        self.source = source
        self.note = note
    }

    /// Reads a checkpoint someone handed over: a signed note (what `audit` and `lookup` keep in
    /// their state as `checkpoint`), a c2sp.org/tlog-proof file (`lookup --write-proofs`), or a
    /// state directory of either command holding a `checkpoint` file.
    public static func read(_ path: String) throws -> OtherView {
        var isDirectory: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = (path as NSString).appendingPathComponent("checkpoint")
        }
        let text = try Files.readText(file)
        if text.hasPrefix(TLogProof.header), let proof = try? TLogProof.parse(text) {
            return OtherView(source: path, note: proof.checkpoint)
        }
        return OtherView(source: path, note: text)
    }
}

public enum ViewComparison {
    /// Compares `ours` (a verified checkpoint note) with each other view through the log's
    /// consistency proofs. A view that is not a checkpoint of this log (bad signature) is an error:
    /// the comparison asked for cannot be made. Alerts carry both signed notes.
    public static func compare(ours note: String, with others: [OtherView], logKey: NoteVerifierKey, client: LogClient,
                               keep: (String, Checkpoint) throws -> Void = { _, _ in }) async throws -> (alerts: [Alert], notices: [String]) {
        let ours = try AnswerVerifier.openCheckpoint(note, logKey: logKey).checkpoint
        var alerts: [Alert] = []
        let notices: [String] = []
        for other in others {
            // A view that was asked for and cannot be checked is an error, never a skipped check:
            // junk or another log's note from a gossip peer would otherwise turn the check off.
            let theirs: Checkpoint
            do { theirs = try AnswerVerifier.openCheckpoint(other.note, logKey: logKey).checkpoint } catch {
                throw ClientError.malformed("\(other.source) is not a checkpoint of this log, so it cannot be compared: \(error)")
            }
            try keep(other.note, theirs)
            if theirs.size == ours.size {
                if theirs.root != ours.root {
                    alerts.append(Alert(kind: .splitView, message: "\(other.source) holds a signed checkpoint of size \(theirs.size) with a different root", evidence: [note, other.note]))
                }
                continue
            }
            let (small, big) = theirs.size < ours.size ? (theirs, ours) : (ours, theirs)
            if small.size == 0 { continue }
            do {
                let proof = try await client.consistencyProof(from: small.size, to: big.size)
                try ProofVerifier.verifyConsistency(size1: small.size, size2: big.size, root1: small.root, root2: big.root, proof: proof)
            } catch let e as ClientError {
                guard case .http(let status, _) = e, status < 500, status != 429 else { throw e }
                alerts.append(Alert(kind: .splitView, message: "the log will not prove \(other.source)'s checkpoint \(theirs.size) consistent with ours \(ours.size): \(e)", evidence: [note, other.note]))
            } catch {
                alerts.append(Alert(kind: .splitView, message: "\(other.source)'s checkpoint \(theirs.size) is not consistent with ours \(ours.size): \(error)", evidence: [note, other.note]))
            }
        }
        return (alerts, notices)
    }
}
