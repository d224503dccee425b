import CKeyglassSQLite
import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassLog

extension TestLog {
    /// Replaces the log's whole history with `entries`, exactly as given, and signs a checkpoint for
    /// it with the log's own key: what an operator holding the database and the signing key can do
    /// with software of its own (entries the honest sequencer would never write — backdated, stamped
    /// in the future, chained without a valid signature). Run it while no server is open on the
    /// log; the next server started on it serves the forged history as its own.
    public func forgeHistory(_ entries: [KeyEntry]) throws {
        try forgeHistory(raw: try entries.map { ($0.identity, try $0.encode()) })
    }

    /// As `forgeHistory(_:)`, from entry bytes as stored (with the identity column's text), so a
    /// test can store bytes no encoder of today would write.
    public func forgeHistory(raw entries: [(identity: String, data: [UInt8])]) throws {
        if let postgres {
            try TestStorage.forgeHistory(url: postgres.url, database: postgres.name, server: postgres.server,
                                         signer: try directory.loadSigner(), entries: entries)
            return
        }
        try directory.forgeHistory(raw: entries)
    }
}

extension DataDirectory {
    /// `TestLog.forgeHistory(raw:)` for any data directory (a key directory made by the binary, say);
    /// `sealed`: a key directory's sealed changes, by entry index.
    public func forgeHistory(raw entries: [(identity: String, data: [UInt8])], sealed: [Int: [UInt8]] = [:]) throws {
        let directory = self
        let signer = try directory.loadSigner()
        var db: OpaquePointer?
        guard sqlite3_open(directory.database, &db) == SQLITE_OK else { throw ClientError.network("cannot open database") }
        defer { sqlite3_close(db) }
        sqlite3_busy_timeout(db, 5000)
        func exec(_ sql: String) throws {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw ClientError.network("forge: \(String(cString: sqlite3_errmsg(db)))") }
        }
        func insert(_ sql: String, _ bind: (OpaquePointer?) -> Void) throws {
            var s: OpaquePointer?
            guard sqlite3_prepare_v2(db, sql, -1, &s, nil) == SQLITE_OK else { throw ClientError.network("forge: \(String(cString: sqlite3_errmsg(db)))") }
            defer { sqlite3_finalize(s) }
            bind(s)
            guard sqlite3_step(s) == SQLITE_DONE else { throw ClientError.network("forge: \(String(cString: sqlite3_errmsg(db)))") }
        }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        func blob(_ s: OpaquePointer?, _ i: Int32, _ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { sqlite3_bind_blob(s, i, $0.baseAddress, Int32($0.count), transient) } }
        func checkpoint(_ range: CompactRange) throws {
            let cp = Checkpoint(origin: signer.name, size: range.size, root: range.root)
            let note = try SignedCheckpoint.sign(cp, with: signer).note.serialized
            try insert("INSERT INTO checkpoints(size, root, note, signed_at_ms) VALUES(?, ?, ?, 0)") { s in
                sqlite3_bind_int64(s, 1, Int64(range.size))
                blob(s, 2, range.root.bytes)
                sqlite3_bind_text(s, 3, note, -1, transient)
            }
        }
        try exec("BEGIN")
        for table in ["entries", "nodes", "checkpoints", "identity_index", "leaf_index", "identity_index_recent", "leaf_index_recent", "sealed_changes"] { try exec("DELETE FROM \(table)") }
        try exec("INSERT OR REPLACE INTO meta(key, value) VALUES('indexed_size', '0')")
        var range = CompactRange()
        try checkpoint(range)
        for (identity, data) in entries {
            let leaf = Merkle.leafHash(data)
            try insert("INSERT INTO entries(idx, identity, identity_key, leaf_hash, leaf_key, data) VALUES(?, ?, ?, ?, ?, ?)") { s in
                sqlite3_bind_int64(s, 1, Int64(range.size))
                sqlite3_bind_text(s, 2, identity, -1, transient)
                sqlite3_bind_int64(s, 3, Schema.identityKey(identity))
                blob(s, 4, leaf.bytes)
                sqlite3_bind_int64(s, 5, Schema.lookupKey(leaf))
                blob(s, 6, data)
            }
            if let opened = sealed[Int(range.size)] {
                try insert("INSERT INTO sealed_changes(idx, data) VALUES(?, ?)") { s in
                    sqlite3_bind_int64(s, 1, Int64(range.size))
                    blob(s, 2, opened)
                }
            }
            var nodes: [(NodeID, Hash)] = []
            range.append(leaf) { id, hash in if id.level > 0 { nodes.append((id, hash)) } }
            for (id, hash) in nodes {
                try insert("INSERT INTO nodes(id, hash) VALUES(?, ?)") { s in
                    sqlite3_bind_int64(s, 1, Schema.nodeKey(level: id.level, index: id.index))
                    blob(s, 2, hash.bytes)
                }
            }
        }
        try checkpoint(range)
        try exec("COMMIT")
    }
}
