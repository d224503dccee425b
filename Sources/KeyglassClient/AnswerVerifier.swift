import Foundation
import KeyglassCore
import KeyglassWire

/// Checks the log's answers against its key. Nothing the log says is believed until its
/// checkpoint signature and every inclusion proof verify; a failure here is evidence, not noise.
public enum VerificationError: Error, CustomStringConvertible, Equatable {
    case checkpoint(String)
    case proof(String)
    case entry(String)
    /// The answer's tree cannot be consistent with one the client holds: a fork.
    case splitView(String)
    /// The answer is older than what the client already verified.
    case stale(String)
    /// The answer lacks the witness cosignatures the client requires.
    case witnesses(String)

    public var description: String {
        switch self {
        case let .splitView(m): return "split view: \(m)"
        case let .stale(m): return "stale answer: \(m)"
        case let .witnesses(m): return "witness policy not met: \(m)"
        case let .checkpoint(m): return "checkpoint does not verify: \(m)"
        case let .proof(m): return "proof does not verify: \(m)"
        case let .entry(m): return "entry is not valid: \(m)"
        }
    }
}

/// An entry proved to be in the tree of a verified checkpoint.
public struct VerifiedEntry: Sendable, Equatable {
    public let index: UInt64
    public let bytes: [UInt8]
    public let entry: KeyEntry
    public let leafHash: Hash
}

public enum AnswerVerifier {
    public static func openCheckpoint(_ note: String, logKey: NoteVerifierKey, witnesses: [NoteVerifierKey] = []) throws(VerificationError) -> SignedCheckpoint {
        do { return try SignedCheckpoint.open(note, logKey: logKey, witnesses: witnesses).0 } catch { throw .checkpoint(error.description) }
    }

    /// Verifies one entry's bytes and inclusion proof against a verified checkpoint.
    public static func verifyEntry(index: UInt64, entryBase64: String, proofBase64: [String], checkpoint: Checkpoint) throws(VerificationError) -> VerifiedEntry {
        guard let bytes = Base64.decode(entryBase64) else { throw .entry("entry \(index) is not base64") }
        let entry: KeyEntry
        do { entry = try KeyEntry.parse(bytes) } catch { throw .entry("entry \(index): \(error.description)") }
        let leaf = Merkle.leafHash(bytes)
        let proof = proofBase64.compactMap { Hash(base64: $0) }
        guard proof.count == proofBase64.count else { throw .proof("entry \(index): proof hash is not base64 of 32 bytes") }
        do {
            try ProofVerifier.verifyInclusion(index: index, size: checkpoint.size, leafHash: leaf, proof: proof, root: checkpoint.root)
        } catch {
            throw .proof("entry \(index) is not in the tree of size \(checkpoint.size): \(error.description)")
        }
        return VerifiedEntry(index: index, bytes: bytes, entry: entry, leafHash: leaf)
    }

    /// A publish answer: signed checkpoint, the entry as stored (must be what we asked for), its proof.
    public static func verifyPublish(_ answer: PublishAnswer, logKey: NoteVerifierKey, identity: String, keyType: KeyType, publicKey: [UInt8]) throws(VerificationError) -> (SignedCheckpoint, VerifiedEntry) {
        let cp = try openCheckpoint(answer.checkpoint, logKey: logKey)
        guard cp.checkpoint.size == answer.tree_size else { throw .checkpoint("tree_size \(answer.tree_size) differs from the checkpoint's \(cp.checkpoint.size)") }
        let v = try verifyEntry(index: answer.index, entryBase64: answer.entry, proofBase64: answer.inclusion_proof, checkpoint: cp.checkpoint)
        guard v.entry.identity == identity, v.entry.keyType == keyType, v.entry.publicKey == publicKey else {
            throw .entry("the log stored a different entry than the one published")
        }
        return (cp, v)
    }

    /// A lookup answer: the checkpoint verifies, every entry is the asked identity's and is proved in
    /// it, and the entries form one chain (each names the one before it).
    public static func verifyLookup(_ answer: KeysAnswer, logKey: NoteVerifierKey, identity: String) throws(VerificationError) -> (SignedCheckpoint, [VerifiedEntry]) {
        let cp = try openCheckpoint(answer.checkpoint, logKey: logKey)
        guard cp.checkpoint.size == answer.tree_size else { throw .checkpoint("tree_size differs from the checkpoint's") }
        var out: [VerifiedEntry] = []
        for e in answer.entries {
            guard let proof = e.inclusion_proof else { throw .proof("entry \(e.index) has no inclusion proof") }
            let v = try verifyEntry(index: e.index, entryBase64: e.entry, proofBase64: proof, checkpoint: cp.checkpoint)
            guard v.entry.identity == identity else { throw .entry("entry \(e.index) is for \(v.entry.identity), not \(identity)") }
            if let last = out.last {
                guard v.index > last.index, v.entry.previousIndex == last.index else {
                    throw .entry("entry \(v.index) does not follow entry \(last.index) in the identity's chain")
                }
            }
            out.append(v)
        }
        return (cp, out)
    }
}
