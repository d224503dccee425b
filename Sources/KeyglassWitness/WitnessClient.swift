import Foundation
import KeyglassCore
import KeyglassHTTP

/// Talks to a c2sp.org/tlog-witness and classifies its answer by status, as the spec defines them.
public struct WitnessClient: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// 200: the witness's cosignature line(s).
        case cosigned([NoteSignature])
        /// 409: the witness last cosigned this size; retry with a proof from there.
        case conflict(witnessSize: UInt64)
        /// 404: the witness does not know this log's origin.
        case unknownOrigin
        /// 403: not signed by the log key the witness trusts.
        case notSigned
        /// 422: the consistency proof did not verify: the witness refuses the fork.
        case proofRejected
        /// 400 or anything else.
        case failed(Int, String)
    }

    let requester: HTTPRequester

    /// A witness at `url`; each request must be answered completely within 10 s.
    public init(url: URL) {
        var limits = HTTPLimits()
        limits.requestTimeout = .seconds(10)
        requester = HTTPRequester(base: url, limits: limits)
    }

    public func addCheckpoint(_ request: AddCheckpointRequest) async throws -> Outcome {
        let (status, _, data) = try await requester.send("POST", "/add-checkpoint", body: Data(request.body.utf8))
        let text = String(decoding: data, as: UTF8.self)
        switch status {
        case 200:
            // The answer is signature lines only; parse them as the signature block of a note.
            let note = try SignedNote.parse("x\n\n" + text)
            return .cosigned(note.signatures)
        case 409:
            guard let size = parseCanonicalDecimal(Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))) else {
                return .failed(409, text)
            }
            return .conflict(witnessSize: size)
        case 404: return .unknownOrigin
        case 403: return .notSigned
        case 422: return .proofRejected
        default: return .failed(status, text)
        }
    }
}
