import KeyglassCore

/// The operator's commands on a stopped log: create its first checkpoint, re-sign its newest one
/// with a new key. Not the sequencer's job: they run before a sequencer exists, or instead of one.
public enum LogAdmin {
    /// Creates the first, empty checkpoint of a new log. Refuses if the log has any checkpoint.
    public static func initialise(_ storage: any LogStorage, signer: NoteSigner) throws -> StoredCheckpoint {
        let signed = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: 0, root: Merkle.emptyRoot), with: signer)
        let first = StoredCheckpoint(size: 0, root: Merkle.emptyRoot, note: signed.note.serialized)
        try storage.initialise(first: first, origin: signer.name, signedAtMillis: Sequencer.nowMillis())
        return first
    }

    /// Re-signs the newest checkpoint (same origin, size and root) with a new key, for key rotation.
    public static func resign(_ storage: any LogStorage, with signer: NoteSigner) throws {
        guard let cp = try storage.latestCheckpoint() else { throw StoreError.notInitialised("no checkpoint") }
        let text = try SignedNote.parse(cp.note).text
        guard try Checkpoint.parse(text).origin == signer.name else { throw StoreError.corrupt("new key's name differs from the origin") }
        try storage.replaceNote(size: cp.size, root: cp.root, note: try SignedNote.sign(text: text, with: signer).serialized)
    }
}
