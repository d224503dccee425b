import Foundation
import KeyglassCore
import KeyglassFiles

/// A c2sp.org/tlog-witness: cosigns a log's checkpoint only if it is signed by the log's key and
/// provably extends the last checkpoint it cosigned for that log. It therefore never cosigns two
/// views of one log that cannot both be true, so a split view needs the witnesses' help, and an
/// auditor that requires their cosignatures catches it.
///
/// The state (per origin: the size and root last cosigned) is saved atomically before any answer.
public actor Witness {
    public struct Answer: Sendable {
        public let status: Int
        public let contentType: String
        public let body: String
    }

    struct LogState: Codable, Equatable {
        var size: UInt64
        var root: String
        var note: String?
    }

    private let signer: NoteSigner
    public nonisolated let verifierKey: NoteVerifierKey
    private let logs: [String: NoteVerifierKey]
    private let statePath: String
    private var state: [String: LogState]
    private let clock: @Sendable () -> UInt64

    /// `logs`: the log verifier keys this witness trusts, by origin.
    public init(signer: NoteSigner, logs: [NoteVerifierKey], stateDirectory: String,
                clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }) throws {
        self.signer = signer
        self.verifierKey = try NoteVerifierKey(name: signer.name, type: .cosignatureV1, publicKey: signer.verifierKey.publicKey)
        self.logs = Dictionary(logs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        statePath = stateDirectory + "/witness-state.json"
        if FileManager.default.fileExists(atPath: statePath) {
            state = try JSONDecoder().decode([String: LogState].self, from: Data(try Files.readText(statePath).utf8))
        } else {
            state = [:]
        }
        self.clock = clock
    }

    private func answer(_ status: Int, _ body: String, type: String = "text/plain; charset=utf-8") -> Answer {
        Answer(status: status, contentType: type, body: body)
    }

    public func addCheckpoint(_ body: String) -> Answer {
        let request: AddCheckpointRequest
        do { request = try AddCheckpointRequest.parse(body) } catch { return answer(400, error.description + "\n") }
        guard let origin = request.note.split(separator: "\n", maxSplits: 1).first.map(String.init), let logKey = logs[origin] else {
            return answer(404, "unknown log origin\n")
        }
        let checkpoint: Checkpoint
        do { checkpoint = try SignedCheckpoint.open(request.note, logKey: logKey).0.checkpoint } catch {
            return answer(403, "\(error)\n")
        }
        guard request.oldSize <= checkpoint.size else { return answer(400, "old size is larger than the checkpoint\n") }
        let known = state[origin] ?? LogState(size: 0, root: Merkle.emptyRoot.base64, note: nil)
        guard request.oldSize == known.size else { return answer(409, "\(known.size)\n", type: "text/x.tlog.size") }
        let knownRoot = Hash(base64: known.root) ?? Merkle.emptyRoot
        if request.oldSize == 0 {
            guard request.proof.isEmpty, checkpoint.size > 0 || checkpoint.root == Merkle.emptyRoot else {
                return answer(422, "a checkpoint from size 0 takes an empty proof and an empty tree's root\n")
            }
        } else {
            do {
                try ProofVerifier.verifyConsistency(size1: request.oldSize, size2: checkpoint.size, root1: knownRoot, root2: checkpoint.root, proof: request.proof)
            } catch {
                return answer(422, "consistency proof does not verify: \(error)\n")
            }
        }
        let updated = LogState(size: checkpoint.size, root: checkpoint.root.base64, note: request.note)
        if updated != known {
            var next = state
            next[origin] = updated
            do {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys, .prettyPrinted]
                try Files.writeAtomically([UInt8](try e.encode(next)), to: statePath)
            } catch {
                return answer(500, "cannot save witness state\n")
            }
            state = next
        }
        do {
            let line = try Cosignature.sign(checkpointText: try SignedNote.parse(request.note).text, time: clock(), witness: signer).line
            return answer(200, line)
        } catch {
            return answer(500, "cannot sign\n")
        }
    }
}
