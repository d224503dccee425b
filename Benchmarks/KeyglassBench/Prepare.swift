import CKeyglassOpenSSL
import CKeyglassSodium
import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassWire

/// `keyglass-bench prepare`: fills a data directory made by `keyglass-server init` with the log a
/// directory's users make (multi-entry histories, owner-signed rotations, a key mix), through the
/// same sequencer as `keyglass-server bulk-load` (no HTTP), and writes the request files `make bench`
/// replays with wrk. Every key comes from a deterministic seed (SHA-256 of "keyglass-bench", a name
/// and a counter), so nothing secret is stored and two runs with the same options make the same
/// entries (timestamps aside).
///
///   keyglass-bench prepare --data DIR [--entries N] [--mix mix|ed25519] [--history H] [--depth D]
///                          [--rotatable R|auto] [--requests PREFIX] [--runs K] [--lines M]
///                          [--threads T] [--batch B]
///
/// Appends, in this order:
///   (a) H identities h<i>@bench.test with D entries each: an operator first entry, then alternately an
///       owner-signed rotation and an operator republish (Ed25519 keys throughout);
///   (b) R identities r<i>@bench.test, one operator Ed25519 entry each (their indexes kept in memory
///       for the request files);
///   (c) filler up to N entries in all. `--mix mix`: 20% owner-signed rotations of filler identities
///       made earlier in the fill, the rest new identities f<i>@bench.test with keys 5/8 Ed25519,
///       2/8 X25519, 1/8 P-256 (so 70% of the filler's keys are Ed25519); `--mix ed25519`: new
///       identities with operator Ed25519 keys only.
/// Then, given `--requests PREFIX`, for each run k in 1…K:
///   PREFIX-mix-k.txt.<t>  (t < T, one per wrk thread; M lines in all) every fifth line "S <json>", an
///       owner-signed rotation of a rotatable identity no other line uses, signed against its recorded
///       index (sent without the operator token); the others "T <json>", a new identity
///       n<k>-<i>@bench.test with the key mix above (sent with the token);
///   PREFIX-rot-k.txt.<t>  M rotations only;
///   PREFIX-lookups.txt    the H history identities.
/// `--rotatable auto` (the default) is K × (⌈M/5⌉ + M): exactly what the request files use.
struct Prepare {
    enum Mix: String { case mix, ed25519 }

    var data = ""
    var entries = 0
    var mix = Mix.mix
    var history = 10_000
    var depth = 5
    var rotatable: Int?
    var requests: String?
    var runs = 3
    var lines = 600_000
    var threads = 2
    var batch = 20_000

    static let domain = "@bench.test"

    init(arguments: ArraySlice<String>) {
        var it = arguments.makeIterator()
        while let flag = it.next() {
            guard let value = it.next() else { KeyglassBench.fail("prepare: \(flag) needs a value") }
            func int() -> Int {
                guard let v = Int(value), v >= 0 else { KeyglassBench.fail("prepare: \(flag) must be a whole number, got \(value)") }
                return v
            }
            switch flag {
            case "--data": data = value
            case "--entries": entries = int()
            case "--mix": guard let m = Mix(rawValue: value) else { KeyglassBench.fail("prepare: --mix is mix or ed25519") }; mix = m
            case "--history": history = int()
            case "--depth": depth = max(1, int())
            case "--rotatable": rotatable = value == "auto" ? nil : int()
            case "--requests": requests = value
            case "--runs": runs = int()
            case "--lines": lines = int()
            case "--threads": threads = max(1, int())
            case "--batch": batch = max(1, int())
            default: KeyglassBench.fail("prepare: unknown option \(flag)")
            }
        }
        if data.isEmpty { KeyglassBench.fail("prepare: --data DIR is required") }
    }

    /// Rotation lines in one mix file (every fifth line, the first included) and in all files.
    var rotationsPerMixFile: Int { (lines + 4) / 5 }
    var rotationsNeeded: Int { requests == nil ? 0 : runs * (rotationsPerMixFile + lines) }

    func progress(_ s: String) { FileHandle.standardError.write(Data("prepare: \(s)\n".utf8)) }

    // MARK: Keys

    /// SHA-256 of "keyglass-bench" + name + counter: every seed and derived key of the benchmark.
    static func seed(_ name: String, _ n: Int) -> [UInt8] {
        Hash.sha256(Array("keyglass-bench/\(name)/\(n)".utf8)).bytes
    }

    func run() async throws {
        let t0 = ContinuousClock.now
        let keys = KeyPool()
        progress("key pools ready: \(keys.ed.count) Ed25519, \(keys.p256.count) P-256 (\(secs(t0)) s)")

        let dir = DataDirectory(path: data)
        let sqlite = try SQLiteStorage(path: dir.database, readers: 1, sync: .normal)
        defer { sqlite.close() }
        let merges = IndexMergeFollower(storage: sqlite)
        var options = Sequencer.Options()
        options.maxBatch = batch
        options.maxQueue = max(batch * 2, 1)
        let sequencer = try Sequencer(store: LogStore(storage: sqlite), signer: try dir.loadSigner(), options: options)
        let runner = Task { try await sequencer.run() }
        let merger = Task { try await merges.run() }
        let start = sequencer.latestCheckpoint.size
        guard start == 0 else { KeyglassBench.fail("prepare: \(data) already holds \(start) entries; give it a fresh `keyglass-server init` directory") }
        let r = rotatable ?? rotationsNeeded
        guard r >= rotationsNeeded else {
            KeyglassBench.fail("prepare: the request files need \(rotationsNeeded) rotatable identities, --rotatable is \(r)")
        }

        // (a) histories: step j of every identity, then step j + 1 (a rotation needs the index of the
        // entry it names).
        var current = [UInt64](repeating: 0, count: history)
        for step in 0..<depth where history > 0 {
            var lo = 0
            while lo < history {
                let hi = min(history, lo + batch)
                let base = lo, chain = current
                let indexes = try await submitAll(sequencer, count: hi - lo) { k in
                    let i = base + k
                    let id = "h\(i)" + Self.domain
                    let key = keys.historyKey(i, step)
                    if step % 2 == 1 {
                        let previous = keys.historyKey(i, step - 1)
                        return try keys.rotation(identity: id, previousIndex: chain[i], previousKey: previous, newKey: key)
                    }
                    return PublishRequest(identity: id, keyType: .ed25519, publicKey: keys.ed[key].pk).keyCheckedInFull()
                }
                for (k, idx) in indexes.enumerated() { current[lo + k] = idx }
                lo = hi
            }
            progress("history step \(step + 1)/\(depth): \(history) identities (\(secs(t0)) s, tree \(sequencer.latestCheckpoint.size))")
        }

        // (b) rotatable identities, one operator entry each.
        var rotatableIndex = [UInt64](repeating: 0, count: r)
        var lo = 0
        while lo < r {
            let hi = min(r, lo + batch)
            let base = lo
            let indexes = try await submitAll(sequencer, count: hi - lo) { k in
                PublishRequest(identity: "r\(base + k)" + Self.domain, keyType: .ed25519, publicKey: keys.ed[keys.rotatableKey(base + k)].pk)
                    .keyCheckedInFull()
            }
            for (k, idx) in indexes.enumerated() { rotatableIndex[lo + k] = idx }
            lo = hi
            if lo % (batch * 10) == 0 || lo == r { progress("rotatable: \(lo)/\(r) (\(secs(t0)) s)") }
        }

        // (c) filler.
        let filled = Int(sequencer.latestCheckpoint.size - start)
        let fill = max(0, entries - filled)
        var ring = CandidateRing(capacity: 1 << 20)
        var newIdentities = 0, rotations = 0, done = 0
        var typeCount = [KeyType: Int]()
        // Groups of a few thousand: a rotation names an entry of an earlier group, already sequenced.
        let group = min(batch, 5_000)
        while done < fill {
            let n = min(group, fill - done)
            // Decide each slot of the group: a rotation of a candidate made in an earlier group (at
            // least 20% of the filler once there are candidates), or a new identity.
            var slots: [FillSlot] = []
            slots.reserveCapacity(n)
            for _ in 0..<n {
                let made = done + slots.count
                if mix == .mix, rotations * 5 < made + 1, let c = ring.pop() {
                    slots.append(.rotate(c, newKey: keys.fillerKey(made)))
                    rotations += 1
                } else {
                    let type: KeyType = mix == .ed25519 ? .ed25519 : KeyPool.mixType(newIdentities)
                    slots.append(.new(number: newIdentities, type: type, key: keys.fillerKey(made)))
                    newIdentities += 1
                }
            }
            let frozen = slots
            let indexes = try await submitAll(sequencer, count: n) { k in
                switch frozen[k] {
                case let .new(number, type, key):
                    return PublishRequest(identity: "f\(number)" + Self.domain, keyType: type, publicKey: keys.key(type, key)).keyCheckedInFull()
                case let .rotate(c, newKey):
                    return try keys.rotation(identity: "f\(c.number)" + Self.domain, previousIndex: c.index, previousKey: Int(c.key), newKey: newKey)
                }
            }
            for (k, slot) in frozen.enumerated() {
                switch slot {
                case let .new(number, type, key):
                    typeCount[type, default: 0] += 1
                    if mix == .mix, type == .ed25519 { ring.push(Candidate(number: number, index: indexes[k], key: Int32(key % keys.ed.count))) }
                case let .rotate(c, newKey):
                    typeCount[.ed25519, default: 0] += 1
                    ring.push(Candidate(number: c.number, index: indexes[k], key: Int32(newKey % keys.ed.count)))
                }
            }
            done += n
            if done % (group * 40) == 0 || done == fill {
                progress("filler: \(done)/\(fill), \(rotations) owner-signed rotations (\(secs(t0)) s, \(Int(Double(done) / max(secs(t0), 0.001)))/s overall)")
            }
        }
        if fill > 0 {
            let mixText = KeyType.allCases.map { "\($0.rawValue) \(typeCount[$0, default: 0])" }.joined(separator: ", ")
            progress("filler keys: \(mixText); \(rotations) of \(fill) entries owner-signed rotations")
        }

        runner.cancel()
        _ = try? await runner.value
        merger.cancel()
        _ = try? await merger.value
        let cp = sequencer.latestCheckpoint
        progress("log ready: tree size \(cp.size), root \(cp.root.base64) (\(secs(t0)) s)")

        if let prefix = requests {
            try writeRequests(prefix: prefix, keys: keys, rotatableIndex: rotatableIndex)
            progress("request files written (\(secs(t0)) s)")
        }
        print("tree size \(cp.size)")
    }

    /// Submits `count` requests concurrently and returns their indexes, in the order of `make`.
    func submitAll(_ sequencer: Sequencer, count: Int, make: @escaping @Sendable (Int) throws -> PublishRequest) async throws -> [UInt64] {
        try await withThrowingTaskGroup(of: (Int, UInt64).self) { group in
            for k in 0..<count {
                group.addTask { (k, try await sequencer.submit(try make(k)).index) }
            }
            var out = [UInt64](repeating: 0, count: count)
            for try await (k, idx) in group { out[k] = idx }
            return out
        }
    }

    // MARK: Request files

    func writeRequests(prefix: String, keys: KeyPool, rotatableIndex: [UInt64]) throws {
        var nextRotatable = 0
        @Sendable func rotationLine(_ j: Int) -> String {
            let id = "r\(j)" + Self.domain
            let newKey = keys.rotatableKey(j) + 1
            let pk = keys.ed[newKey % keys.ed.count].pk
            let msg = KeyEntry.rotationMessage(identity: id, keyType: .ed25519, publicKey: pk, revocation: false, previousIndex: rotatableIndex[j])
            let sig = keys.sign(msg, key: keys.rotatableKey(j))
            return #"S {"identity":"\#(id)","key_type":"ed25519","public_key":"\#(Base64.encode(pk))","signature":"\#(Base64.encode(sig))","previous_index":\#(rotatableIndex[j])}"#
        }
        @Sendable func publishLine(run: Int, line: Int, t: Int) -> String {
            let type = KeyPool.mixType(t)
            let key = keys.key(type, 1_000_000 * run + t)
            return #"T {"identity":"n\#(run)-\#(line)\#(Self.domain)","key_type":"\#(type.rawValue)","public_key":"\#(Base64.encode(key))"}"#
        }
        for run in 1...max(1, runs) where runs > 0 {
            for kind in ["mix", "rot"] {
                let base = "\(prefix)-\(kind)-\(run).txt"
                let first = nextRotatable
                try writeSplit(base: base, lines: lines) { i in
                    if kind == "rot" { return rotationLine(first + i) }
                    if i % 5 == 0 { return rotationLine(first + i / 5) }
                    return publishLine(run: run, line: i, t: i - i / 5 - 1)
                }
                nextRotatable += kind == "rot" ? lines : rotationsPerMixFile
                progress("wrote \(base).0…\(threads - 1): \(lines) lines")
            }
        }
        precondition(nextRotatable <= rotatableIndex.count)
        let ids = (0..<history).map { "h\($0)" + Self.domain }.joined(separator: "\n")
        try Data((ids + (history > 0 ? "\n" : "")).utf8).write(to: URL(fileURLWithPath: "\(prefix)-lookups.txt"))
        if runs > 0 { try selfCheck(base: "\(prefix)-mix-1.txt") }
    }

    /// Writes `lines` lines, line i to part i mod T; chunks are made on every core.
    func writeSplit(base: String, lines: Int, line: @escaping @Sendable (Int) -> String) throws {
        var handles: [FileHandle] = []
        for t in 0..<threads {
            let path = "\(base).\(t)"
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            handles.append(try FileHandle(forWritingTo: URL(fileURLWithPath: path)))
        }
        let chunk = 16_384
        let workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        var lo = 0
        while lo < lines {
            let start = lo, hi = min(lines, lo + chunk * workers)
            let parts = Locked([[String]](repeating: [], count: workers))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let a = start + w * chunk, b = min(hi, a + chunk)
                let made = a < b ? (a..<b).map(line) : []
                parts.set(w, made)
            }
            var out = [[UInt8]](repeating: [], count: threads)
            var i = lo
            for part in parts.value {
                for l in part {
                    out[i % threads] += Array(l.utf8)
                    out[i % threads].append(10)
                    i += 1
                }
            }
            for t in 0..<threads { handles[t].write(Data(out[t])) }
            lo = hi
        }
        for h in handles { try h.close() }
    }

    /// The first lines of a file decode as the API's publish bodies (KeyglassWire), and the
    /// rotation's signature verifies: a typo here would make every request an error.
    func selfCheck(base: String) throws {
        let text = try String(contentsOfFile: "\(base).0", encoding: .utf8)
        for line in text.split(separator: "\n").prefix(10) {
            let body = try JSONDecoder().decode(PublishBody.self, from: Data(line.dropFirst(2).utf8))
            let key = Base64.decode(body.public_key)!
            try KeyType.parse(body.key_type).validate(key)
            if line.hasPrefix("S ") {
                guard body.signature != nil, body.previous_index != nil else { KeyglassBench.fail("prepare: rotation line without signature: \(line)") }
            } else if !line.hasPrefix("T ") || body.signature != nil {
                KeyglassBench.fail("prepare: malformed request line: \(line)")
            }
        }
    }

    func secs(_ t0: ContinuousClock.Instant) -> Double {
        (KeyglassBench.seconds(ContinuousClock.now - t0) * 10).rounded() / 10
    }
}

/// One filler entry: a new identity, or a rotation of an earlier one.
enum FillSlot: Sendable { case new(number: Int, type: KeyType, key: Int), rotate(Candidate, newKey: Int) }

/// A filler identity that can be rotated: its number, current entry and the pool key of that entry.
struct Candidate: Sendable {
    var number: Int
    var index: UInt64
    var key: Int32
}

/// FIFO of rotation candidates, bounded (the newest are dropped when full): memory stays flat
/// whatever the log's size.
struct CandidateRing {
    private var items: [Candidate] = []
    private var head = 0
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }
    mutating func push(_ c: Candidate) {
        if items.count - head >= capacity { return }
        if head > 65_536, head * 2 > items.count { items.removeFirst(head); head = 0 }
        items.append(c)
    }
    mutating func pop() -> Candidate? {
        guard head < items.count else { return nil }
        defer { head += 1 }
        return items[head]
    }
}

/// A value several threads each set one slot of.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ v: T) { stored = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func set<E>(_ i: Int, _ e: E) where T == [E] { lock.lock(); stored[i] = e; lock.unlock() }
}

/// The benchmark's keys: a pool of Ed25519 key pairs (public key and libsodium secret key, from
/// deterministic seeds, each checked in full with `KeyType.validate`), P-256 points (scalar × G with
/// OpenSSL, from deterministic scalars, checked in full), and X25519 keys (32 hash bytes).
final class KeyPool: Sendable {
    let ed: [(pk: [UInt8], sk: [UInt8])]
    let p256: [[UInt8]]

    init(edCount: Int = 16_384, p256Count: Int = 64) {
        _ = Ed25519.keyPair(seed: Prepare.seed("init", 0))  // initialises libsodium
        let slots = Locked([(pk: [UInt8], sk: [UInt8])](repeating: ([], []), count: edCount))
        DispatchQueue.concurrentPerform(iterations: 16) { w in
            for j in stride(from: w, to: edCount, by: 16) {
                var pk = [UInt8](repeating: 0, count: 32), sk = [UInt8](repeating: 0, count: 64)
                guard crypto_sign_seed_keypair(&pk, &sk, Prepare.seed("ed25519", j)) == 0 else { KeyglassBench.fail("keypair") }
                do { try KeyType.ed25519.validate(pk) } catch { KeyglassBench.fail("pool key \(j): \(error)") }
                slots.set(j, (pk: pk, sk: sk))
            }
        }
        ed = slots.value
        p256 = (0..<p256Count).map { KeyPool.p256Point(scalar: Prepare.seed("p256", $0)) }
    }

    /// Uncompressed SEC1 point of scalar × G on P-256.
    static func p256Point(scalar: [UInt8]) -> [UInt8] {
        guard let group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1) else { KeyglassBench.fail("P-256 group") }
        defer { EC_GROUP_free(group) }
        let bn = BN_bin2bn(scalar, Int32(scalar.count), nil)
        defer { BN_free(bn) }
        let point = EC_POINT_new(group)
        defer { EC_POINT_free(point) }
        guard EC_POINT_mul(group, point, bn, nil, nil, nil) == 1 else { KeyglassBench.fail("P-256 multiplication") }
        var out = [UInt8](repeating: 0, count: 65)
        guard EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, &out, 65, nil) == 65 else { KeyglassBench.fail("P-256 encoding") }
        do { try KeyType.p256.validate(out) } catch { KeyglassBench.fail("P-256 key: \(error)") }
        return out
    }

    /// The mix of new identities' keys: of every 8, 5 Ed25519, 2 X25519, 1 P-256.
    static func mixType(_ n: Int) -> KeyType {
        switch n % 8 {
        case 0, 2, 4, 5, 7: return .ed25519
        case 1, 6: return .x25519
        default: return .p256
        }
    }

    /// A key of `type` for counter `n`.
    func key(_ type: KeyType, _ n: Int) -> [UInt8] {
        switch type {
        case .ed25519: return ed[n % ed.count].pk
        case .x25519: return Prepare.seed("x25519", n)  // 32 bytes, never all zero in practice
        case .p256: return p256[n % p256.count]
        }
    }

    /// Pool positions, spread so neighbours do not share keys.
    func historyKey(_ i: Int, _ step: Int) -> Int { (i &* 7919 &+ step &* 104_729) % ed.count }
    func rotatableKey(_ j: Int) -> Int { (j &* 6151 &+ 17) % ed.count }
    func fillerKey(_ n: Int) -> Int { (n &* 3571 &+ 5) % ed.count }

    func sign(_ message: [UInt8], key: Int) -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: 64)
        crypto_sign_detached(&sig, nil, message, UInt64(message.count), ed[key % ed.count].sk)
        return sig
    }

    /// An owner-signed rotation of `identity` from pool key `previousKey` (its entry at
    /// `previousIndex`) to pool key `newKey`, through `PublishRequest.chained` (the rotation rule).
    func rotation(identity: String, previousIndex: UInt64, previousKey: Int, newKey: Int) throws -> PublishRequest {
        let pk = ed[newKey % ed.count].pk
        let msg = KeyEntry.rotationMessage(identity: identity, keyType: .ed25519, publicKey: pk, revocation: false, previousIndex: previousIndex)
        let previous = RotationRule.Previous(index: previousIndex, identity: identity, keyType: .ed25519,
                                             publicKey: ed[previousKey % ed.count].pk, revoked: false)
        return try PublishRequest.chained(identity: identity, keyType: .ed25519, publicKey: pk, previous: previous,
                                          signature: sign(msg, key: previousKey)).keyCheckedInFull()
    }
}
