import CKeyglassSQLite
import Foundation
import KeyglassCore
import KeyglassLog

/// Reference measurements for `make bench`: the machine's limits that Keyglass is compared with.
///
///   keyglass-bench sqlite-reference ROWS SYNC [merged|inline]
///                                               raw batched SQLite inserts of the rows a publish writes;
///                                               lookup-index rows merged sorted in chunks of 8192 once 16384
///                                               wait (the sequencer's smallest merges; it merges more at once
///                                               as the log grows) or, `inline`, written with each batch (schema 1)
///   keyglass-bench sha256 COUNT                 SHA-256 of 65-byte inputs (a Merkle node) per second
///   keyglass-bench export DB OUT                the log's entries as uint16-length-prefixed records (for Go)
///   keyglass-bench crypto COUNT                 KeyglassCore's Ed25519.isValidPublicKey
///                                               (crypto_core_ed25519_is_valid_point) and Ed25519.verify
///                                               (crypto_sign_verify_detached) per second on one core:
///                                               prints two numbers
///   keyglass-bench prepare --data DIR …         a log users would make, and wrk request files (Prepare.swift)
///   keyglass-bench proof-reads DIR COUNT        inclusion proofs with their leaves per second from the log in
///                                               DIR as the server reads them (upper levels in memory, the rest
///                                               from SQLite), one core, no HTTP: what a proof costs the server
///                                               apart from the network (for profiling with perf)
///   keyglass-bench directory-forge DIR COUNT [HEAD_EVERY]
///                                               a key directory (init --directory) of COUNT identities, each
///                                               onboarded by the operator, batches of 1,000, a map head every
///                                               HEAD_EVERY (4,000; a multiple of 1,000): what an auditor's
///                                               memory is measured against
///
/// Each prints one number (per second) or nothing, so Benchmarks/run.sh can tabulate it (crypto: two;
/// prepare: progress on standard error, the tree size last).
@main
enum KeyglassBench {
    static func main() async throws {
        let args = CommandLine.arguments
        guard args.count >= 3 else {
            fail("usage: keyglass-bench sqlite-reference ROWS SYNC | sha256 COUNT | export DB OUT | crypto COUNT | vrf COUNT | map LABELS | map-sqlite LABELS [DIR] | device-keys COUNT | prepare --data DIR …")
        }
        switch args[1] {
        case "sqlite-reference":
            print(try sqliteReference(rows: Int(args[2]) ?? 100_000, sync: args.count > 3 ? args[3] : "FULL",
                                      inlineIndexes: args.count > 4 && args[4] == "inline"))
        case "sha256": print(sha256Rate(count: Int(args[2]) ?? 5_000_000))
        case "export": try export(db: args[2], out: args[3])
        case "crypto":
            let (points, verifies) = cryptoRates(count: Int(args[2]) ?? 40_000)
            print("\(points) \(verifies)")
        case "vrf":
            let (proves, verifies, outputs) = try vrfRates(count: Int(args[2]) ?? 2_000)
            print("\(proves) \(verifies) \(outputs)")
        case "map":
            let (updates, proofs) = try mapRates(labels: Int(args[2]) ?? 100_000)
            print("\(updates) \(proofs)")
        case "map-sqlite":
            let (updates, proofs) = try mapSQLiteRate(labels: Int(args[2]) ?? 100_000, dir: args.count > 3 ? args[3] : "/tmp/keyglass-bench-map")
            print(updates, proofs)
        case "prepare": try await Prepare(arguments: args.dropFirst(2)).run()
        case "proof-reads": print(try proofReadRate(dir: args[2], count: Int(args.count > 3 ? args[3] : "") ?? 200_000))
        case "directory-forge":
            try await forgeDirectory(dir: args[2], count: args.count > 3 ? Int(args[3]) ?? 100_000 : 100_000,
                                     headEvery: args.count > 4 ? Int(args[4]) ?? 4000 : 4000)
        case "device-keys":
            // Valid Ed25519 public keys, base64, one per line: the directory's wrk script gives each
            // new device one (Lua cannot make a valid curve point).
            for _ in 0..<(Int(args[2]) ?? 4096) { print(Base64.encode(Ed25519.generate().publicKey)) }
        default: fail("unknown benchmark \(args[1])")
        }
    }

    static func proofReadRate(dir path: String, count: Int) throws -> Int {
        let dir = DataDirectory(path: path)
        let storage = try SQLiteStorage(path: dir.database)
        defer { storage.close() }
        let store = LogStore(storage: storage)
        // Opening a sequencer loads the upper tree as the server's does.
        _ = try Sequencer(store: store, signer: try dir.loadSigner())
        guard let size = try store.latestCheckpoint()?.size, size > 0 else { fail("proof-reads: \(path) has no entries") }
        var rng = SystemRandomNumberGenerator()
        let indices = (0..<count).map { _ in UInt64.random(in: 0..<size, using: &rng) }
        var nodes = 0
        let start = DispatchTime.now().uptimeNanoseconds
        for i in indices { nodes += try store.inclusionProofWithLeaf(index: i, size: size).1.count }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if nodes == 0 { fail("proof-reads: empty proofs") }
        return Int(Double(count) / seconds)
    }

    static func forgeDirectory(dir path: String, count: Int, headEvery: Int) async throws {
        let dir = DataDirectory(path: path)
        _ = try await dir.initialiseDirectory(origin: "forge.bench/directory")
        let storage = try SQLiteStorage(path: dir.database, sync: .normal, secureDelete: true)
        defer { storage.close() }
        let log = try DirectoryLog(storage: storage, signer: try dir.loadSigner(), vrfSeed: try dir.loadVRFSeed())
        let key = Ed25519.generate().publicKey
        var done = 0
        while done < count {
            let n = min(1000, count - done)
            let requests = try (done..<(done + n)).map { i in
                DirectoryLog.ChangeRequest(identity: "user\(i)@forge.bench", kind: .add(try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: key)),
                                           authority: .operator)
            }
            _ = try log.publish(requests)
            done += n
            if done % headEvery == 0 || done == count { try log.appendMapHead() }
            if done % 20000 == 0 { FileHandle.standardError.write(Data("forged \(done)\n".utf8)) }
        }
        print(log.size)
    }

    static func fail(_ m: String) -> Never {
        FileHandle.standardError.write(Data((m + "\n").utf8))
        exit(1)
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func exec(_ db: OpaquePointer?, _ sql: String) {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { fail("sqlite: \(String(cString: sqlite3_errmsg(db)))") }
    }

    /// Inserts `rows` entries with the same tables, indexes and row sizes a publish writes (an entry
    /// row, about one node row, one checkpoint per batch), 1000 rows per transaction, plus the
    /// lookup-index rows (by identity, by leaf hash) — merged in sorted transactions of 8192 once
    /// 16384 wait, the sequencer's smallest merges (so a conservative reference), or with each batch into indexes on the entries table as schema 1 did — and
    /// returns rows per second. No hashing, no signing, no HTTP: the storage limit alone.
    static func sqliteReference(rows: Int, sync: String, inlineIndexes: Bool) throws -> Int {
        let path = NSTemporaryDirectory() + "/keyglass-sqlite-ref-\(getpid()).sqlite"
        defer { for s in ["", "-wal", "-shm"] { unlink(path + s) } }
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK else { fail("cannot open \(path)") }
        defer { sqlite3_close(db) }
        exec(db, "PRAGMA journal_mode=WAL")
        exec(db, "PRAGMA synchronous=\(sync)")
        exec(db, "PRAGMA cache_size=-16384")
        exec(db, "CREATE TABLE entries(idx INTEGER PRIMARY KEY, identity TEXT NOT NULL, identity_key INTEGER NOT NULL, leaf_hash BLOB NOT NULL, leaf_key INTEGER NOT NULL, data BLOB NOT NULL)")
        if inlineIndexes {
            exec(db, "CREATE INDEX entries_by_identity ON entries(identity_key, idx)")
            exec(db, "CREATE INDEX entries_by_leaf_hash ON entries(leaf_key)")
        }
        exec(db, "CREATE TABLE identity_index(identity_key INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY(identity_key, idx)) WITHOUT ROWID")
        exec(db, "CREATE TABLE leaf_index(leaf_key INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY(leaf_key, idx)) WITHOUT ROWID")
        exec(db, "CREATE TABLE nodes(id INTEGER PRIMARY KEY, hash BLOB NOT NULL) WITHOUT ROWID")
        exec(db, "CREATE TABLE checkpoints(size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, signed_at_ms INTEGER NOT NULL)")
        var insEntry: OpaquePointer?, insNode: OpaquePointer?, insCp: OpaquePointer?, insId: OpaquePointer?, insLeaf: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO identity_index VALUES(?,?)", -1, &insId, nil)
        sqlite3_prepare_v2(db, "INSERT INTO leaf_index VALUES(?,?)", -1, &insLeaf, nil)
        var pending: [(Int64, Int64, Int64)] = []  // identity key, leaf key, index
        func merge(_ limit: Int) {
            let chunk = pending.prefix(limit)
            exec(db, "BEGIN IMMEDIATE")
            for (key, idx) in chunk.map({ ($0.0, $0.2) }).sorted(by: <) {
                sqlite3_reset(insId); sqlite3_bind_int64(insId, 1, key); sqlite3_bind_int64(insId, 2, idx)
                guard sqlite3_step(insId) == SQLITE_DONE else { fail("insert identity index") }
            }
            for (key, idx) in chunk.map({ ($0.1, $0.2) }).sorted(by: <) {
                sqlite3_reset(insLeaf); sqlite3_bind_int64(insLeaf, 1, key); sqlite3_bind_int64(insLeaf, 2, idx)
                guard sqlite3_step(insLeaf) == SQLITE_DONE else { fail("insert leaf index") }
            }
            exec(db, "COMMIT")
            pending.removeFirst(chunk.count)
        }
        sqlite3_prepare_v2(db, "INSERT INTO entries VALUES(?,?,?,?,?,?)", -1, &insEntry, nil)
        sqlite3_prepare_v2(db, "INSERT INTO nodes VALUES(?,?)", -1, &insNode, nil)
        sqlite3_prepare_v2(db, "INSERT INTO checkpoints VALUES(?,?,?,?)", -1, &insCp, nil)
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        let data = [UInt8](repeating: 7, count: 75)  // a typical x25519 entry is 75 bytes
        let note = String(repeating: "n", count: 180)
        var hash = [UInt8](repeating: 0, count: 32)
        let start = ContinuousClock.now
        var i = 0
        while i < rows {
            exec(db, "BEGIN IMMEDIATE")
            let end = min(rows, i + 1000)
            while i < end {
                hash[0] = UInt8(truncatingIfNeeded: i); hash[1] = UInt8(truncatingIfNeeded: i >> 8); hash[2] = UInt8(truncatingIfNeeded: i >> 16)
                sqlite3_reset(insEntry)
                sqlite3_bind_int64(insEntry, 1, Int64(i))
                // Keys spread over the whole range, as the hash-derived keys of real rows are.
                let key = Int64(bitPattern: UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15)
                sqlite3_bind_text(insEntry, 2, "bulk-\(i)@example.test", -1, transient)
                sqlite3_bind_int64(insEntry, 3, key)
                sqlite3_bind_blob(insEntry, 4, hash, 32, transient)
                sqlite3_bind_int64(insEntry, 5, key &* 31)
                sqlite3_bind_blob(insEntry, 6, data, Int32(data.count), transient)
                guard sqlite3_step(insEntry) == SQLITE_DONE else { fail("insert entry") }
                if !inlineIndexes { pending.append((key, key &* 31, Int64(i))) }
                sqlite3_reset(insNode)
                sqlite3_bind_int64(insNode, 1, Int64(1) << 48 | Int64(i))
                sqlite3_bind_blob(insNode, 2, hash, 32, transient)
                guard sqlite3_step(insNode) == SQLITE_DONE else { fail("insert node") }
                i += 1
            }
            sqlite3_reset(insCp)
            sqlite3_bind_int64(insCp, 1, Int64(i))
            sqlite3_bind_blob(insCp, 2, hash, 32, transient)
            sqlite3_bind_text(insCp, 3, note, -1, transient)
            sqlite3_bind_int64(insCp, 4, 0)
            guard sqlite3_step(insCp) == SQLITE_DONE else { fail("insert checkpoint") }
            exec(db, "COMMIT")
            if pending.count >= 16384 { merge(8192) }
        }
        while !pending.isEmpty { merge(8192) }
        let secs = seconds(ContinuousClock.now - start)
        sqlite3_finalize(insEntry); sqlite3_finalize(insNode); sqlite3_finalize(insCp); sqlite3_finalize(insId); sqlite3_finalize(insLeaf)
        return Int(Double(rows) / secs)
    }

    /// Merkle node hashes per second with the library Keyglass uses.
    static func sha256Rate(count: Int) -> Int {
        var left = Merkle.leafHash(Array("a".utf8))
        let right = Merkle.leafHash(Array("b".utf8))
        let start = ContinuousClock.now
        for _ in 0..<count { left = Merkle.nodeHash(left, right) }
        let secs = seconds(ContinuousClock.now - start)
        if left == Hash.zero { print("impossible") }  // keeps the loop from being optimised away
        return Int(Double(count) / secs)
    }

    /// Ed25519 point checks and signature verifications per second, one thread, over 256 distinct
    /// keys and rotation-sized messages (what the server does per Ed25519 publish, and the server
    /// and auditor per owner-signed rotation).
    static func cryptoRates(count: Int) -> (Int, Int) {
        let pairs = (0..<256).map { Ed25519.keyPair(seed: Prepare.seed("crypto", $0))! }
        let messages = pairs.enumerated().map { i, p in
            KeyEntry.rotationMessage(identity: "c\(i)@bench.test", keyType: .ed25519, publicKey: p.publicKey, revocation: false, previousIndex: UInt64(i))
        }
        let signatures = zip(pairs, messages).map { Ed25519.sign(message: $1, seed: $0.seed) }
        var ok = 0
        var start = ContinuousClock.now
        for i in 0..<count where Ed25519.isValidPublicKey(pairs[i & 255].publicKey) { ok += 1 }
        let points = Double(count) / seconds(ContinuousClock.now - start)
        start = ContinuousClock.now
        for i in 0..<count where Ed25519.verify(signature: signatures[i & 255], message: messages[i & 255], publicKey: pairs[i & 255].publicKey) {
            ok += 1
        }
        let verifies = Double(count) / seconds(ContinuousClock.now - start)
        if ok != 2 * count { fail("crypto: \(2 * count - ok) checks failed") }
        return (Int(points), Int(verifies))
    }

    /// ECVRF proofs made and verified per second, one thread (issue 14's ceiling for new
    /// identities is in proofs; a server makes one per identity, at its first lookup, and a
    /// client verifies one per lookup).
    /// Third: outputs without proofs per second (what a server computes per new identity).
    static func vrfRates(count: Int) throws -> (Int, Int, Int) {
        let key = Ed25519.keyPair(seed: Prepare.seed("vrf", 0))!
        // The key derived once, as the server keeps it: the fastest proof this code makes.
        let secret = try ECVRF.SecretKey(seed: key.seed)
        let alphas = (0..<count).map { Array("user\($0)@bench.test".utf8) }
        var start = ContinuousClock.now
        let proofs = try alphas.map { try ECVRF.prove(key: secret, alpha: $0) }
        let proves = Double(count) / seconds(ContinuousClock.now - start)
        start = ContinuousClock.now
        let ok = zip(alphas, proofs).filter { ECVRF.verify(publicKey: key.publicKey, alpha: $0, proof: $1) != nil }.count
        let verifies = Double(count) / seconds(ContinuousClock.now - start)
        if ok != count { fail("vrf: \(count - ok) proofs did not verify") }
        start = ContinuousClock.now
        let betas = try alphas.map { try ECVRF.output(key: secret, alpha: $0) }
        let outputs = Double(count) / seconds(ContinuousClock.now - start)
        if betas != (try proofs.map { try ECVRF.proofToHash($0) }) { fail("vrf: an output differs from its proof's") }
        return (Int(proves), Int(verifies), Int(outputs))
    }

    /// The directory's map kept in memory (`MapTree.Incremental`): after `labels` labels are in,
    /// updates of existing labels per second and proofs per second (each proof checked).
    static func mapRates(labels: Int) throws -> (Int, Int) {
        var map = MapTree.Incremental(store: MemoryMapNodeStore())
        let all = (0..<labels).map { Hash.sha256(Array("label \($0)".utf8)) }
        for l in all { try map.set(l, value: l) }
        let sample = (0..<20_000).map { all[($0 &* 7919) % labels] }
        var start = ContinuousClock.now
        for (i, l) in sample.enumerated() { try map.set(l, value: Hash.sha256(Array("v\(i)".utf8))) }
        let updates = Double(sample.count) / seconds(ContinuousClock.now - start)
        let root = try map.root()
        start = ContinuousClock.now
        var ok = 0
        for l in sample where (try? MapTree.verify(try map.proof(for: l), label: l, root: root)) != nil { ok += 1 }
        let proofs = Double(sample.count) / seconds(ContinuousClock.now - start)
        if ok != sample.count { fail("map: \(sample.count - ok) proofs failed") }
        return (Int(updates), Int(proofs))
    }

    /// The same map in SQLite as an auditor keeps it (`MapTree.Bucketed` over `SQLiteMapBuckets`,
    /// sync FULL: a row per label and per bucket), updated in batches of 10,000 in one transaction
    /// each, as an epoch would be: updates of existing labels per second once `labels` are in, and
    /// proofs per second read back from the file (each proof checked).
    static func mapSQLiteRate(labels: Int, dir: String) throws -> (Int, Int) {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try SQLiteMapBuckets(path: dir + "/map.sqlite")
        var map = try MapTree.Bucketed(store: store)
        let all = (0..<labels).map { Hash.sha256(Array("label \($0)".utf8)) }
        for chunk in stride(from: 0, to: labels, by: 10_000) {
            try store.transaction { try map.set(all[chunk..<min(chunk + 10_000, labels)].map { ($0, $0) }) }
        }
        let sample = (0..<20_000).map { all[($0 &* 7919) % labels] }
        var start = ContinuousClock.now
        for chunk in stride(from: 0, to: sample.count, by: 10_000) {
            try store.transaction {
                try map.set(sample[chunk..<chunk + 10_000].enumerated().map { i, l in (l, Hash.sha256(Array("v\(chunk + i)".utf8))) })
            }
        }
        let updates = Double(sample.count) / seconds(ContinuousClock.now - start)
        let root = map.root()
        start = ContinuousClock.now
        var ok = 0
        for l in sample where (try? MapTree.verify(try map.proof(for: l), label: l, root: root)) != nil { ok += 1 }
        let proofs = Double(sample.count) / seconds(ContinuousClock.now - start)
        if ok != sample.count { fail("map-sqlite: \(sample.count - ok) proofs failed") }
        return (Int(updates), Int(proofs))
    }

    static func export(db path: String, out: String) throws {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { fail("cannot open \(path)") }
        defer { sqlite3_close(db) }
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT data FROM entries ORDER BY idx", -1, &stmt, nil)
        FileManager.default.createFile(atPath: out, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        var buf: [UInt8] = []
        buf.reserveCapacity(1 << 20)
        while sqlite3_step(stmt) == SQLITE_ROW {
            let n = Int(sqlite3_column_bytes(stmt, 0))
            buf.append(UInt8(n >> 8)); buf.append(UInt8(n & 0xff))
            buf += UnsafeRawBufferPointer(start: sqlite3_column_blob(stmt, 0), count: n)
            if buf.count > 1 << 20 { h.write(Data(buf)); buf.removeAll(keepingCapacity: true) }
        }
        h.write(Data(buf))
        try h.close()
        sqlite3_finalize(stmt)
    }
}
