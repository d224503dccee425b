import KeyglassCore

/// Where the log ends: its newest checkpoint, the tree's right edge that extends it, and the
/// newest entry's timestamp (entries are never stamped earlier).
struct LogHead: Sendable, Equatable {
    var checkpoint: StoredCheckpoint
    var range: CompactRange
    var newestTimestamp: UInt64

    /// Reads the head from storage and checks it: the entries are exactly those the newest
    /// checkpoint covers, the stored nodes fold to its root, and it is a checkpoint of `signer`'s log
    /// signed by `signer`'s key. A log altered behind the server's back stops it here, before it
    /// could sign a tree that contradicts one it signed before.
    static func load(from storage: any LogStorage, signer: NoteSigner) throws -> LogHead {
        let (stored, count) = try storage.latestCheckpointAndEntryCount()
        guard let cp = stored else { throw StoreError.notInitialised("no checkpoint; run keyglass-server init") }
        guard count == cp.size else { throw StoreError.corrupt("\(count) entries stored but the newest checkpoint has size \(cp.size)") }
        guard let range = CompactRange(size: cp.size, hashes: try storage.nodeHashes(CompactRange.subtrees(forSize: cp.size))) else {
            throw StoreError.corrupt("cannot rebuild the tree edge at size \(cp.size)")
        }
        guard range.root == cp.root else { throw StoreError.corrupt("stored tree root differs from the newest checkpoint's root") }
        let origin = try Checkpoint.parse(try SignedNote.parse(cp.note).text).origin
        guard origin == signer.name else {
            throw StoreError.corrupt("the signing key is for \"\(signer.name)\" but the log's origin is \"\(origin)\"")
        }
        guard (try? SignedNote.open(cp.note, verifiers: [signer.verifierKey])) != nil else {
            throw StoreError.corrupt("the newest checkpoint is not signed by this signing key; after replacing the key by hand, run `keyglass-server rotate-key`")
        }
        var newest: UInt64 = 0
        if cp.size > 0 {
            guard let last = try storage.entries(start: cp.size - 1, end: cp.size).first else { throw StoreError.corrupt("entry \(cp.size - 1) is missing") }
            // Only the timestamp is needed (bytes 1–8, Spec/entry.md), not a full parse: an entry
            // that a later identity rule made malformed (an auditor flags it) must not stop the log
            // from opening.
            guard let t = timestamp(of: last.data) else { throw StoreError.corrupt("entry \(cp.size - 1) is neither a version-1 key entry nor a version-2 entry") }
            newest = t
        }
        return LogHead(checkpoint: cp, range: range, newestTimestamp: newest)
    }

    /// An entry's timestamp from its first bytes: a v1 key entry's bytes 1–8 (Spec/entry.md), a v2
    /// change's or map head's bytes 2–9 (Spec/directory.md); a v2 config has none (0).
    static func timestamp(of data: [UInt8]) -> UInt64? {
        func field(_ from: Int) -> UInt64 { data[from..<from + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        switch (data.first, data.count) {
        case (KeyEntry.version, 9...): return field(1)
        case (0x02, 2...) where data[1] == 0x01: return 0
        case (0x02, 10...) where data[1] == 0x02 || data[1] == 0x03: return field(2)
        default: return nil
        }
    }
}

/// Turns a batch of publishes into what storage appends: indices, encoded entries, the tree nodes
/// they complete and the checkpoint signed over them. Pure apart from the signature: it reads
/// nothing, so the sequencer asks storage for what it needs (each identity's newest entry) first.
enum BatchBuilder {
    struct Built {
        /// One per request, in order.
        var results: [Result<PublishReceipt, PublishError>]
        /// Nil when every request was refused: nothing to write.
        var batch: SequencedBatch?
        /// The head once the batch is stored.
        var head: LogHead
        /// Nodes the batch completed at the levels the upper-tree cache keeps.
        var upperNodes: [(NodeID, Hash)]
    }

    /// `newestOfIdentity`: each requested identity's newest stored entry, if it has one.
    /// `cachedFrom`: the lowest level the upper-tree cache keeps.
    static func build(_ requests: [PublishRequest], after head: LogHead, newestOfIdentity stored: [String: UInt64],
                      timestamp: UInt64, maxSize: UInt64, signer: NoteSigner, cachedFrom: UInt8) throws -> Built {
        var newestOfIdentity = stored
        var results: [Result<PublishReceipt, PublishError>] = []
        var accepted: [(identity: String, data: [UInt8])] = []
        var slots: [Int] = []  // result slot of each accepted entry
        for request in requests {
            let previous = newestOfIdentity[request.identity]
            var signature: [UInt8]?
            if case let .chained(expected, sig) = request.authorization {
                // The rotation rule's last question, answered in log order: the entry the signature
                // names must still be the identity's newest (`PublishRequest.chained` asked the rest).
                guard previous == expected else {
                    results.append(.failure(.conflict("identity's latest entry is \(previous.map(String.init) ?? "none"), not \(expected): look it up and sign again")))
                    continue
                }
                signature = sig
            }
            let index = head.range.size + UInt64(accepted.count)
            guard index < maxSize else {
                results.append(.failure(.logFull))
                continue
            }
            let entry = KeyEntry(timestampMillis: timestamp, identity: request.identity, keyType: request.keyType,
                                 publicKey: request.publicKey, revocation: request.revocation,
                                 previousIndex: previous, signature: signature)
            let bytes: [UInt8]
            do { bytes = try entry.encode(keys: request.keyCheckWhenEncoding) } catch {
                results.append(.failure(.invalid(error.description)))
                continue
            }
            newestOfIdentity[request.identity] = index
            accepted.append((request.identity, bytes))
            slots.append(results.count)
            results.append(.failure(.storage("not integrated")))  // replaced below once signed
        }
        guard let sealed = try seal(accepted, after: head, timestamp: timestamp, signer: signer, cachedFrom: cachedFrom) else {
            return Built(results: results, batch: nil, head: head, upperNodes: [])
        }
        for (entry, slot) in zip(sealed.batch.entries, slots) {
            results[slot] = .success(PublishReceipt(index: entry.index, entry: entry.data, leafHash: entry.leafHash, checkpoint: sealed.batch.checkpoint))
        }
        return Built(results: results, batch: sealed.batch, head: sealed.head, upperNodes: sealed.upperNodes)
    }

    /// What `seal` makes of encoded entries.
    struct Sealed {
        var batch: SequencedBatch
        /// The head once the batch is stored.
        var head: LogHead
        /// Nodes the batch completed at the levels the upper-tree cache keeps.
        var upperNodes: [(NodeID, Hash)]
    }

    /// Seals encoded entries (each with the identity the storage indexes it under) into what storage
    /// appends: their indices after `head`, the tree nodes they complete and the checkpoint signed
    /// over the tree they end. Shared by v1 batches and v2 logs (`DirectoryLog`); nil for none.
    static func seal(_ items: [(identity: String, data: [UInt8])], after head: LogHead, timestamp: UInt64, signer: NoteSigner,
                     cachedFrom: UInt8 = 64, sealed: [[UInt8]?] = [], vrf: [SequencedBatch.VRFLabel?] = []) throws -> Sealed? {
        guard !items.isEmpty else { return nil }
        var range = head.range
        var entries: [SequencedBatch.Entry] = []
        var nodes: [SequencedBatch.Node] = []
        var upperNodes: [(NodeID, Hash)] = []
        for (n, (identity, bytes)) in items.enumerated() {
            let leaf = Merkle.leafHash(bytes)
            let index = range.size
            if cachedFrom == 0 { upperNodes.append((NodeID(level: 0, index: index), leaf)) }
            range.append(leaf) { id, hash in
                guard id.level > 0 else { return }
                nodes.append(SequencedBatch.Node(id: id, hash: hash))
                if id.level >= cachedFrom { upperNodes.append((id, hash)) }
            }
            entries.append(SequencedBatch.Entry(index: index, identity: identity, data: bytes, leafHash: leaf, sealed: n < sealed.count ? sealed[n] : nil,
                                                vrf: n < vrf.count ? vrf[n] : nil))
        }
        let root = range.root
        let note = try SignedCheckpoint.sign(Checkpoint(origin: signer.name, size: range.size, root: root), with: signer).note.serialized
        let checkpoint = StoredCheckpoint(size: range.size, root: root, note: note)
        let batch = SequencedBatch(previousSize: head.checkpoint.size, entries: entries, nodes: nodes,
                                   checkpoint: checkpoint, signedAtMillis: Sequencer.nowMillis())
        return Sealed(batch: batch, head: LogHead(checkpoint: checkpoint, range: range, newestTimestamp: max(head.newestTimestamp, timestamp)),
                      upperNodes: upperNodes)
    }
}
