import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP
import KeyglassPostgres
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// Logs on a real PostgreSQL (issue 15): the user's flow end to end, several servers on one
/// database with exactly one sequencing, failover, SIGKILL rounds, and a server on a hot standby.
/// Every PostgreSQL here is a throwaway cluster in a temporary directory (`PostgresServer`).
final class PostgresLogTests: XCTestCase {
    /// A scratch directory and a throwaway PostgreSQL cluster in it, both gone after the test.
    func cluster(_ name: String) async throws -> (work: String, pg: PostgresServer) {
        let scratch = try await PostgresServer.scratch(name)
        addTeardownBlock { scratch.pg.discard() }
        return scratch
    }

    struct Log {
        let data: String
        let url: String
        let vkey: NoteVerifierKey
        let token: String
    }

    /// `keyglass-server init --storage` on a new database of `pg`.
    func initialise(_ pg: PostgresServer, work: String, database: String) throws -> Log {
        let url = try pg.createDatabase(database)
        let data = work + "/data-" + database
        let r = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "pg.example/\(database)", "--storage", url])
        XCTAssertEqual(r.status, 0, r.stderr)
        let vkey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        return Log(data: data, url: url, vkey: vkey, token: token)
    }

    func serve(_ log: Log, work: String, name: String, _ extra: [String] = []) async throws -> (Process, LogClient) {
        let (p, _, client) = try await Binaries.startServer(data: log.data, ["--storage", log.url, "--log-level", "notice"] + extra,
                                                            log: work + "/\(name).log")
        return (p, client)
    }

    func body(_ identity: String, _ type: KeyType = .ed25519) -> PublishBody {
        let key = type == .ed25519 ? Ed25519.generate().publicKey : Ed25519.randomBytes(32)
        return PublishBody(identity: identity, key_type: type.rawValue, public_key: Base64.encode(key))
    }

    // MARK: One server: the user's flow

    func testInitServePublishLookUpAndAuditOnPostgres() async throws {
        let (work, pg) = try await cluster("pg-flow")
        let log = try initialise(pg, work: work, database: "flow")
        XCTAssertFalse(FileManager.default.fileExists(atPath: log.data + "/log.sqlite"), "the log is in PostgreSQL, not beside the keys")

        // A second init on the same database is refused: a second server copies DIR instead.
        let again = try Binaries.run("keyglass-server", ["init", "--data", work + "/other", "--origin", "pg.example/flow", "--storage", log.url])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already holds a log"), again.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/other/signing-key"), "nothing written for a refused init")
        // Serving without --storage says where the log is.
        let bare = try Binaries.run("keyglass-server", ["serve", "--data", log.data, "--port", "0"], timeout: 30)
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.stderr.contains("pass --storage"), bare.stderr)
        // A bad URL and an unreachable database are clear errors, not crashes.
        let badURL = try Binaries.run("keyglass-server", ["serve", "--data", log.data, "--storage", "mysql://x@y/z", "--port", "0"], timeout: 30)
        XCTAssertNotEqual(badURL.status, 0)
        XCTAssertTrue(badURL.stderr.contains("postgres://USER@HOST:PORT/DATABASE"), badURL.stderr)
        let closedPort = try Nginx.freePort()
        let down = try Binaries.run("keyglass-server", ["serve", "--data", log.data, "--storage", "postgres://keyglass@127.0.0.1:\(closedPort)/flow", "--port", "0"], timeout: 30)
        XCTAssertEqual(down.status, 1)
        XCTAssertTrue(down.stderr.contains("cannot connect to PostgreSQL"), down.stderr)

        var (server, client) = try await serve(log, work: work, name: "server-1")
        // Publishes of a mix of keys, several per identity; each answer's proof verifies.
        var published: [String: [UInt64]] = [:]
        for i in 0..<40 {
            let identity = "user\(i % 12)@pg.example"
            let answer = try await client.publish(body(identity, i % 4 == 3 ? .x25519 : .ed25519), token: log.token)
            let cp = try AnswerVerifier.openCheckpoint(answer.checkpoint, logKey: log.vkey).checkpoint
            try ProofVerifier.verifyInclusion(index: answer.index, size: cp.size, leafHash: try XCTUnwrap(Hash(base64: answer.leaf_hash)),
                                              proof: answer.inclusion_proof.map { try XCTUnwrap(Hash(base64: $0)) }, root: cp.root)
            published[identity, default: []].append(answer.index)
        }
        for (identity, indices) in published {
            let found = try await KeyLookup(client: client, options: .init(logKey: log.vkey, stateDirectory: nil)).run(identity: identity)
            XCTAssertEqual(found.entries.map(\.index), indices, "lookup of \(identity)")
        }
        let audit = await Auditor(client: client, options: Auditor.Options(stateDirectory: work + "/audit", logKey: log.vkey)).run()
        XCTAssertEqual(audit.status, .ok, audit.text)

        // A graceful stop releases the lease: the restarted server sequences at once.
        server.terminate()
        server.waitUntilExit()
        (server, client) = try await serve(log, work: work, name: "server-2")
        let after = try await client.publish(body("after-restart@pg.example"), token: log.token)
        XCTAssertEqual(after.index, 40)
        let resumed = await Auditor(client: client, options: Auditor.Options(stateDirectory: work + "/audit", logKey: log.vkey)).run()
        XCTAssertEqual(resumed.status, .ok, resumed.text)
        // The tables hold exactly what was acknowledged, one checkpoint per size.
        XCTAssertEqual(try pg.sql("SELECT count(*) FROM entries", database: "flow"), "41")
        XCTAssertEqual(try pg.sql("SELECT count(DISTINCT size) = count(*) FROM checkpoints", database: "flow"), "t")
        await Binaries.kill9(server)

        // The maintenance commands: with --storage they work on the database; without it they say
        // where the log is, and never create an empty log.sqlite in DIR.
        for command in [["check"], ["export", "--to", work + "/tiles-x"], ["backup", "--to", work + "/backup.sqlite"], ["rotate-key"]] {
            let r = try Binaries.run("keyglass-server", [command[0], "--data", log.data] + command.dropFirst())
            XCTAssertEqual(r.status, 1, "\(command): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("pass --storage"), "\(command): \(r.stderr)")
        }
        XCTAssertTrue(try Binaries.run("keyglass-server", ["backup", "--data", log.data, "--to", work + "/b.sqlite"]).stderr.contains("pg_dump"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: log.data + "/log.sqlite"))
        let check = try Binaries.run("keyglass-server", ["check", "--data", log.data, "--storage", log.url])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.hasPrefix("ok: tree size 41"), check.stdout)
        let export = try Binaries.run("keyglass-server", ["export", "--data", log.data, "--storage", log.url, "--to", work + "/tiles"])
        XCTAssertEqual(export.status, 0, export.stderr)
        let exported = try AnswerVerifier.openCheckpoint(try String(contentsOfFile: work + "/tiles/checkpoint", encoding: .utf8), logKey: log.vkey).checkpoint
        XCTAssertEqual(exported.size, 41)
        XCTAssertTrue(FileManager.default.fileExists(atPath: work + "/tiles/tile/entries/000.p/41"))
        // A new signing key: the newest checkpoint is re-signed in the database, and served.
        let rotate = try Binaries.run("keyglass-server", ["rotate-key", "--data", log.data, "--storage", log.url])
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
        let newKey = try NoteVerifierKey(try XCTUnwrap(rotate.stdout.split(separator: "\n").last.map(String.init)))
        XCTAssertNotEqual(newKey, log.vkey)
        let (rotated, rotatedClient) = try await serve(log, work: work, name: "server-3")
        let resigned = try AnswerVerifier.openCheckpoint(try await rotatedClient.checkpoint(), logKey: newKey).checkpoint
        XCTAssertEqual(resigned.size, 41)
        XCTAssertEqual(resigned.root, exported.root)
        await Binaries.kill9(rotated)
    }

    // MARK: Several servers

    func testOneSequencerAmongSeveralServersAndFailoverWithinFiveSeconds() async throws {
        let (work, pg) = try await cluster("pg-failover")
        let log = try initialise(pg, work: work, database: "failover")
        let (first, a) = try await serve(log, work: work, name: "a", ["--lease-seconds", "2"])
        let (second, b) = try await serve(log, work: work, name: "b", ["--lease-seconds", "2"])
        defer { second.terminate() }

        let answer = try await a.publish(body("alice@pg.example"), token: log.token)
        // The server that does not sequence says so, with Retry-After, and writes nothing.
        let request = try JSONEncoder().encode(body("bob@pg.example"))
        let (status, headers, refusal) = try await b.rawResponse("POST", "/v1/keys", body: request,
                                                                 headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
        XCTAssertEqual(status, 503)
        XCTAssertEqual(headers.first { $0.key.lowercased() == "retry-after" }?.value, "1")
        XCTAssertTrue(String(decoding: refusal, as: UTF8.self).contains("not_sequencer"))
        // It follows the log: its checkpoint reaches the sequencer's, and its proofs verify.
        let target = answer.tree_size
        var followed: Checkpoint?
        for _ in 0..<50 {
            let cp = try AnswerVerifier.openCheckpoint(try await b.checkpoint(), logKey: log.vkey).checkpoint
            if cp.size >= target { followed = cp; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let seen = try XCTUnwrap(followed, "the second server follows the first's appends")
        let proof = try await b.inclusionProof(index: answer.index, treeSize: seen.size)
        try ProofVerifier.verifyInclusion(index: answer.index, size: seen.size, leafHash: try XCTUnwrap(Hash(base64: answer.leaf_hash)),
                                          proof: proof, root: seen.root)

        // A publisher that reached the follower retries its 503 not_sequencer (LogClient's default)
        // and gets through once the follower has taken over.
        let patient = body("dave@pg.example"), token = log.token
        let retrying = Task { try await b.publish(patient, token: token) }
        try await Task.sleep(for: .milliseconds(300))
        // The sequencer dies: the other takes over within 5 s, from where it left off.
        await Binaries.kill9(first)
        let killed = ContinuousClock.now
        var taken: PublishAnswer?
        while ContinuousClock.now - killed < .seconds(8) {
            if let ok = try? await b.publish(body("carol@pg.example"), token: log.token, notSequencerRetries: 0) { taken = ok; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let took = ContinuousClock.now - killed
        let next = try XCTUnwrap(taken, "no server took over")
        XCTAssertLessThan(took, .seconds(5), "failover took \(took)")
        XCTAssertGreaterThan(next.index, answer.index)
        let dave = try await retrying.value
        XCTAssertGreaterThan(dave.index, answer.index, "the retried publish was sequenced by the new sequencer")
        let final = try AnswerVerifier.openCheckpoint(next.checkpoint, logKey: log.vkey).checkpoint
        let consistency = try await b.consistencyProof(from: seen.size, to: final.size)
        try ProofVerifier.verifyConsistency(size1: seen.size, size2: final.size, root1: seen.root, root2: final.root, proof: consistency)
        print("postgres failover: the standby server sequenced \(took) after the sequencer was killed")
    }

    /// The sequencer is paused (SIGSTOP) with a publish in flight, past its lease; another server
    /// takes over and extends the log; then the paused one resumes. It must not append what it
    /// held: its publish is refused or, if acknowledged, in the log; and no size was ever served
    /// with two different roots.
    func testAPausedSequencerResumesAsAFollowerWithoutForking() async throws {
        let (work, pg) = try await cluster("pg-pause")
        let log = try initialise(pg, work: work, database: "pause")
        let (first, a) = try await serve(log, work: work, name: "a", ["--lease-seconds", "1.2"])
        defer { first.terminate() }
        let (second, b) = try await serve(log, work: work, name: "b", ["--lease-seconds", "1.2"])
        defer { second.terminate() }
        var answers: [PublishAnswer] = []
        for i in 0..<5 { answers.append(try await a.publish(body("early\(i)@pg.example"), token: log.token)) }

        kill(first.processIdentifier, SIGSTOP)
        let pending = body("in-flight@pg.example"), token = log.token
        let inFlight = Task { try? await a.publish(pending, token: token, notSequencerRetries: 0) }
        var taken = false
        for _ in 0..<60 where !taken {
            if let ok = try? await b.publish(body("late0@pg.example"), token: log.token, notSequencerRetries: 0) { answers.append(ok); taken = true }
            else { try await Task.sleep(for: .milliseconds(100)) }
        }
        XCTAssertTrue(taken, "the other server took over from the paused one")
        for i in 1..<5 { answers.append(try await b.publish(body("late\(i)@pg.example"), token: log.token)) }
        kill(first.processIdentifier, SIGCONT)
        let resumed = await inFlight.value
        if let resumed { answers.append(resumed) }

        // The resumed server follows: it serves B's tree, and refuses publishes while B sequences.
        let final = try AnswerVerifier.openCheckpoint(answers.last!.checkpoint, logKey: log.vkey).checkpoint
        var followed = false
        for _ in 0..<50 where !followed {
            followed = try AnswerVerifier.openCheckpoint(try await a.checkpoint(), logKey: log.vkey).checkpoint.size >= final.size
            if !followed { try await Task.sleep(for: .milliseconds(100)) }
        }
        XCTAssertTrue(followed, "the resumed server serves the tree the new sequencer extended")
        let newest = try AnswerVerifier.openCheckpoint(try await b.checkpoint(), logKey: log.vkey).checkpoint
        var roots: [UInt64: Hash] = [:]
        for answer in answers {
            let cp = try AnswerVerifier.openCheckpoint(answer.checkpoint, logKey: log.vkey).checkpoint
            if let other = roots[cp.size] { XCTAssertEqual(other, cp.root, "two trees of size \(cp.size)") }
            roots[cp.size] = cp.root
            let stored = try await b.entries(start: answer.index, end: answer.index + 1).entries.first
            XCTAssertEqual(stored?.leaf_hash, answer.leaf_hash, "acknowledged entry \(answer.index) is in the log")
            let proof = try await b.consistencyProof(from: cp.size, to: newest.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: cp.size, size2: newest.size, root1: cp.root, root2: newest.root, proof: proof))
        }
        XCTAssertEqual(try pg.sql("SELECT count(DISTINCT size) = count(*) FROM checkpoints", database: "pause"), "t")
        print("postgres pause: the in-flight publish to the paused sequencer was \(resumed == nil ? "refused" : "acknowledged at \(resumed!.index)")")
    }

    actor Observed {
        var acknowledged: [UInt64: String] = [:]
        /// Every checkpoint note any server served or answered with.
        var notes: Set<String> = []
        func ack(_ a: PublishAnswer) {
            acknowledged[a.index] = a.leaf_hash
            notes.insert(a.checkpoint)
        }
        func saw(_ note: String) { notes.insert(note) }
    }

    /// Three servers on one database under publish load; one of them SIGKILLed at random, round
    /// after round, and restarted. Nothing acknowledged is lost, no two servers ever served two
    /// different trees of one size, and every checkpoint served is consistent with the final tree.
    /// `KEYGLASS_PG_CRASH_ROUNDS` sets the rounds (`make soak` runs more).
    func testSIGKILLRoundsAcrossThreeServersNeverForkNorLoseAnything() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["KEYGLASS_PG_CRASH_ROUNDS"] ?? "") ?? 6
        let (work, pg) = try await cluster("pg-crash")
        let log = try initialise(pg, work: work, database: "crash")
        var servers: [(Process, LogClient)] = []
        for i in 0..<3 { servers.append(try await serve(log, work: work, name: "s\(i)-0", ["--lease-seconds", "1.5", "--log-level", "error"])) }
        let observed = Observed()
        var rng = SystemRandomNumberGenerator()
        var sequencersKilled = 0

        for round in 0..<rounds {
            let clients = servers.map(\.1)
            let stop = StopFlag()
            // Publishers try the servers in turn (a 503 from one that does not sequence, or a
            // refused connection from one being killed, moves on); watchers record every checkpoint.
            let publishers = stop.load(workers: 12) { worker, n in
                let client = clients[(worker + n) % clients.count]
                let b = PublishBody(identity: "w\(worker)-r\(round)-\(n)@pg.example", key_type: "x25519", public_key: Base64.encode(Ed25519.randomBytes(32)))
                if let answer = try? await client.publish(b, token: log.token, notSequencerRetries: 0) { await observed.ack(answer) }
                else { try? await Task.sleep(for: .milliseconds(20)) }
            }
            let watchers = clients.map { client in
                Task {
                    while !stop.isSet {
                        if let note = try? await client.checkpoint() { await observed.saw(note) }
                        try? await Task.sleep(for: .milliseconds(30))
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 400...1500, using: &rng)))
            // Every other round the sequencer itself (found by the pid in the lease's holder), the
            // others any of the three: a follower killed must not disturb anything either.
            var victim = Int.random(in: 0..<servers.count, using: &rng)
            if round % 2 == 0 {
                // Right after a restart the lease may be between holders: wait for one.
                for _ in 0..<50 {
                    if let holder = try? pg.sql("SELECT holder FROM sequencer_lease WHERE expires_at > now()", database: "crash"),
                       let pid = holder.split(separator: ":").dropFirst().first.flatMap({ Int32($0) }),
                       let sequencing = servers.firstIndex(where: { $0.0.processIdentifier == pid }) {
                        victim = sequencing
                        sequencersKilled += 1
                        break
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            await Binaries.kill9(servers[victim].0)
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...800, using: &rng)))
            // Restarted while the others take publishes: it must open a log that grows as it reads.
            servers[victim] = try await serve(log, work: work, name: "s\(victim)-\(round + 1)", ["--lease-seconds", "1.5", "--log-level", "error"])
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...400, using: &rng)))
            stop.set()
            for t in publishers + watchers { await t.value }
        }

        // One more publish through whichever server sequences now, then the checks, against the
        // final tree as each server serves it.
        var last: PublishAnswer?
        for _ in 0..<100 where last == nil {
            for (_, client) in servers {
                if let a = try? await client.publish(body("final@pg.example"), token: log.token, notSequencerRetries: 0) { last = a; await observed.ack(a); break }
            }
            if last == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let final = try AnswerVerifier.openCheckpoint(try XCTUnwrap(last, "no server sequences after the rounds").checkpoint, logKey: log.vkey).checkpoint
        let client = servers[0].1
        for _ in 0..<50 {
            if try AnswerVerifier.openCheckpoint(try await client.checkpoint(), logKey: log.vkey).checkpoint.size >= final.size { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        var stored: [UInt64: String] = [:]
        var start: UInt64 = 0
        while start < final.size {
            let page = try await client.entries(start: start, end: final.size)
            for e in page.entries { stored[e.index] = e.leaf_hash }
            start = page.end
        }
        let acknowledged = await observed.acknowledged
        for (index, leaf) in acknowledged { XCTAssertEqual(stored[index], leaf, "acknowledged entry \(index) is in the final tree unchanged") }
        var rootOfSize: [UInt64: Hash] = [:]
        for note in await observed.notes {
            let cp = try AnswerVerifier.openCheckpoint(note, logKey: log.vkey).checkpoint
            if let other = rootOfSize[cp.size] { XCTAssertEqual(other, cp.root, "two different trees of size \(cp.size) were served") }
            rootOfSize[cp.size] = cp.root
            guard cp.size > 0, cp.size < final.size else { continue }
            let proof = try await client.consistencyProof(from: cp.size, to: final.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: cp.size, size2: final.size, root1: cp.root, root2: final.root, proof: proof),
                             "checkpoint \(cp.size) is consistent with the final tree")
        }
        XCTAssertGreaterThan(acknowledged.count, rounds * 10, "the rounds published under load")
        let audit = await Auditor(client: client, options: Auditor.Options(stateDirectory: work + "/audit", logKey: log.vkey)).run()
        XCTAssertEqual(audit.status, .ok, audit.text)
        for (p, _) in servers { await Binaries.kill9(p) }
        XCTAssertGreaterThanOrEqual(sequencersKilled, rounds / 2, "the sequencer was among the victims")
        print("postgres crash rounds: \(rounds) SIGKILLs across 3 servers (\(sequencersKilled) of the sequencer), \(acknowledged.count) acknowledged publishes all present, \(rootOfSize.count) checkpoints served, none forked")
    }

    // MARK: A standby

    /// A server on a hot standby serves the trees the replica holds and no other: with replay
    /// paused it keeps serving the older tree and refuses proofs for the newer one; resumed, it
    /// catches up. It never sequences.
    func testServerOnHotStandbyServesOnlyTreesTheReplicaHolds() async throws {
        let (work, primary) = try await cluster("pg-standby")
        let log = try initialise(primary, work: work, database: "standby")
        let (writerProcess, writer) = try await serve(log, work: work, name: "primary")
        defer { writerProcess.terminate() }
        var answers: [PublishAnswer] = []
        for i in 0..<20 { answers.append(try await writer.publish(body("u\(i)@pg.example"), token: log.token)) }

        let standby = try await PostgresServer.startStandby(of: primary, in: work)
        defer { standby.stop() }
        XCTAssertEqual(try standby.sql("SELECT pg_is_in_recovery()", database: "postgres"), "t")
        let standbyLog = Log(data: log.data, url: standby.url("standby"), vkey: log.vkey, token: log.token)
        let (readerProcess, reader) = try await serve(standbyLog, work: work, name: "standby")
        defer { readerProcess.terminate() }

        func size(_ c: LogClient) async throws -> Checkpoint {
            try AnswerVerifier.openCheckpoint(try await c.checkpoint(), logKey: log.vkey).checkpoint
        }
        func waitFor(_ n: UInt64) async throws -> Checkpoint {
            for _ in 0..<100 {
                let cp = try await size(reader)
                if cp.size >= n { return cp }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw ClientError.network("the standby's server did not reach size \(n) in 10 s")
        }
        let held = try await waitFor(20)
        XCTAssertEqual(held.size, 20)
        let status = try await reader.raw("POST", "/v1/keys", body: try JSONEncoder().encode(body("x@pg.example")),
                                          headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"]).0
        XCTAssertEqual(status, 503, "a server on a standby never sequences")

        // Replay paused: the primary moves on, the standby's server stays at the tree it holds.
        try standby.sql("SELECT pg_wal_replay_pause()", database: "postgres")
        for _ in 0..<100 {
            if try standby.sql("SELECT pg_get_wal_replay_pause_state()", database: "postgres") == "paused" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        for i in 20..<30 { answers.append(try await writer.publish(body("u\(i)@pg.example"), token: log.token)) }
        let newer = try await size(writer)
        XCTAssertEqual(newer.size, 30)
        try await Task.sleep(for: .milliseconds(800))
        let stillHeld = try await size(reader)
        XCTAssertEqual(stillHeld.size, 20, "the standby's server serves only the tree its replica holds")
        let (proofStatus, _) = try await reader.raw("GET", "/v1/proof/inclusion?index=25&tree_size=30")
        XCTAssertEqual(proofStatus / 100, 4, "no proof against a checkpoint the replica lacks")
        let (consistencyStatus, _) = try await reader.raw("GET", "/v1/proof/consistency?from=20&to=30")
        XCTAssertEqual(consistencyStatus / 100, 4)
        let (entryStatus, _) = try await reader.raw("GET", "/v1/entries?start=25&end=26")
        XCTAssertEqual(entryStatus / 100, 4)
        // What it does serve verifies against what it holds.
        let old = answers[5]
        let proof = try await reader.inclusionProof(index: old.index, treeSize: held.size)
        try ProofVerifier.verifyInclusion(index: old.index, size: held.size, leafHash: try XCTUnwrap(Hash(base64: old.leaf_hash)), proof: proof, root: held.root)

        // Resumed: it catches up, and the newer proofs verify.
        try standby.sql("SELECT pg_wal_replay_resume()", database: "postgres")
        var caught: Checkpoint?
        for _ in 0..<100 {
            let cp = try await size(reader)
            if cp.size == 30 { caught = cp; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let now = try XCTUnwrap(caught, "the standby's server caught up after replay resumed")
        XCTAssertEqual(now.root, newer.root)
        let late = answers[25]
        let lateProof = try await reader.inclusionProof(index: late.index, treeSize: 30)
        try ProofVerifier.verifyInclusion(index: late.index, size: 30, leafHash: try XCTUnwrap(Hash(base64: late.leaf_hash)), proof: lateProof, root: now.root)
        let found = try await KeyLookup(client: reader, options: .init(logKey: log.vkey, stateDirectory: nil)).run(identity: "u25@pg.example")
        XCTAssertEqual(found.entries.map(\.index), [late.index])

        // The standby is promoted (here while the primary runs on: the split brain the README
        // warns of). The server started on it as a standby still never sequences.
        try standby.sql("SELECT pg_promote()", database: "postgres")
        for _ in 0..<50 {
            if try standby.sql("SELECT pg_is_in_recovery()", database: "postgres") == "f" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(1500))
        let afterPromotion = try await reader.raw("POST", "/v1/keys", body: try JSONEncoder().encode(body("y@pg.example")),
                                                  headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"]).0
        XCTAssertEqual(afterPromotion, 503, "a server started on a standby stays read-only after a promotion")
        XCTAssertEqual(try standby.sql("SELECT max(size) FROM checkpoints", database: "standby"), "30")
    }

    /// The database goes back (a restore, an asynchronous standby promoted, a hostile edit) while
    /// a follower has served a newer tree. When the follower gets the lease it must not build on the
    /// older head: that would sign a second tree of sizes it already served. It stands down.
    func testAFollowerNeverSequencesOnADatabaseThatWentBack() async throws {
        let (work, pg) = try await cluster("pg-back")
        let log = try initialise(pg, work: work, database: "back")
        let (first, a) = try await serve(log, work: work, name: "a", ["--lease-seconds", "1"])
        let (second, b) = try await serve(log, work: work, name: "b", ["--lease-seconds", "1"])
        defer { second.terminate() }
        var last: PublishAnswer?
        for i in 0..<10 { last = try await a.publish(body("v\(i)@pg.example"), token: log.token) }
        let served = try AnswerVerifier.openCheckpoint(try XCTUnwrap(last).checkpoint, logKey: log.vkey).checkpoint
        for _ in 0..<50 {
            if try AnswerVerifier.openCheckpoint(try await b.checkpoint(), logKey: log.vkey).checkpoint.size == served.size { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // The sequencer is stopped in its tracks, and the database taken back to size 5.
        kill(first.processIdentifier, SIGSTOP)
        try pg.sql("DELETE FROM entries WHERE idx >= 5; DELETE FROM checkpoints WHERE size > 5", database: "back")
        try await Task.sleep(for: .milliseconds(3000))  // A's lease expires; B takes it and must stand down
        let refused = try await b.raw("POST", "/v1/keys", body: try JSONEncoder().encode(body("w@pg.example")),
                                      headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"]).0
        XCTAssertEqual(refused, 503)
        XCTAssertEqual(try pg.sql("SELECT max(size) FROM checkpoints", database: "back"), "5", "nothing built on the older head")
        let still = try AnswerVerifier.openCheckpoint(try await b.checkpoint(), logKey: log.vkey).checkpoint
        XCTAssertEqual(still.size, served.size, "the follower keeps serving the tree it served, not the older one")
        XCTAssertEqual(still.root, served.root)
        let logText = try String(contentsOfFile: work + "/b.log", encoding: .utf8)
        XCTAssertTrue(logText.contains("does not extend the one this server served"), logText.suffix(2000).description)
        await Binaries.kill9(first)
    }
}

/// TLS to the database (`?sslmode=verify-full&sslrootcert=CA`): a log reads what it serves from its
/// database, so on a network between them an attacker could hide a key's newest entries; the
/// server must check the database's certificate, and refuses one from another CA.
final class PostgresTLSTests: XCTestCase {
    func testVerifyFullConnectsOverTLSAndRefusesAnUnknownCA() async throws {
        let work = TestLog.temporaryDirectory("pg-tls")
        defer { try? FileManager.default.removeItem(atPath: work) }
        // The cluster's certificates first: it starts with them (not `PostgresServer.scratch`).
        let tls = try PostgresServer.makeDirectory(in: work, name: "tls")
        func openssl(_ args: [String]) throws {
            let r = try SystemTool.run("openssl", args)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // A CA, a server certificate for localhost signed by it, and a second, unrelated CA.
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                         "-subj", "/CN=Keyglass test \(ca)", "-keyout", "\(tls)/\(ca).key", "-out", "\(tls)/\(ca).pem"])
        }
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                     "-keyout", "\(tls)/server.key", "-out", "\(tls)/server.csr"])
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(toFile: "\(tls)/san.ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", "\(tls)/server.csr", "-CA", "\(tls)/ca.pem", "-CAkey", "\(tls)/ca.key", "-CAcreateserial",
                     "-days", "2", "-extfile", "\(tls)/san.ext", "-out", "\(tls)/server.pem"])
        for f in ["server.key", "server.pem"] { PostgresServer.giveToServerUser("\(tls)/\(f)") }
        let pg = try await PostgresServer.start(in: work, settings: ["ssl=on", "ssl_cert_file=\(tls)/server.pem", "ssl_key_file=\(tls)/server.key"])
        defer { pg.stop() }
        _ = try pg.createDatabase("tls")
        let url = "postgres://keyglass@localhost:\(pg.port)/tls?sslmode=verify-full&sslrootcert=\(tls)/ca.pem"
        let data = work + "/data"

        // Another CA's root: refused, nothing written.
        let wrong = "postgres://keyglass@localhost:\(pg.port)/tls?sslmode=verify-full&sslrootcert=\(tls)/other-ca.pem"
        let refused = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "tls.example/log", "--storage", wrong])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("cannot connect to PostgreSQL"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: data + "/signing-key"))

        let initRun = try Binaries.run("keyglass-server", ["init", "--data", data, "--origin", "tls.example/log", "--storage", url])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let vkey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let (server, _, client) = try await Binaries.startServer(data: data, ["--storage", url], log: work + "/server.log")
        defer { server.terminate() }
        let answer = try await client.publish(PublishBody(identity: "tls@pg.example", key_type: "ed25519", public_key: Base64.encode(Ed25519.generate().publicKey)), token: token)
        XCTAssertEqual(answer.index, 0)
        _ = try AnswerVerifier.openCheckpoint(answer.checkpoint, logKey: vkey)
        // Every connection the server holds to the log's database is encrypted.
        let connections = try pg.sql("SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'tls'",
                                     database: "postgres")
        let parts = connections.split(separator: "|")
        XCTAssertEqual(parts.count, 2)
        XCTAssertGreaterThan(Int(parts[0]) ?? 0, 0, connections)
        XCTAssertEqual(parts[0], parts[1], "every connection uses TLS: \(connections)")
    }

    /// What the URL accepts: a remote database must say how its connection is protected.
    func testURLsRequireATLSChoiceForRemoteDatabases() throws {
        XCTAssertThrowsError(try PostgresURL("postgres://keyglass@db.example.com/log", environment: [:])) { error in
            XCTAssertTrue("\(error)".contains("sslmode=verify-full"), "\(error)")
        }
        XCTAssertTrue(try PostgresURL("postgres://keyglass@db.example.com/log?sslmode=verify-full", environment: [:]).verifyTLS)
        XCTAssertFalse(try PostgresURL("postgres://keyglass@db.example.com/log?sslmode=disable", environment: [:]).verifyTLS)
        XCTAssertFalse(try PostgresURL("postgres://keyglass@127.0.0.1:5433/log", environment: [:]).verifyTLS)
        XCTAssertThrowsError(try PostgresURL("postgres://keyglass@db.example.com/log?sslmode=require", environment: [:]))
        XCTAssertThrowsError(try PostgresURL("postgres://keyglass@localhost/log?password=x", environment: [:])) { error in
            XCTAssertFalse("\(error)".contains("=x"), "the error does not echo a parameter's value: \(error)")
        }
        let withPassword = try PostgresURL("postgres://keyglass:s3cret@localhost/log", environment: [:])
        XCTAssertEqual(withPassword.password, "s3cret")
        XCTAssertFalse(withPassword.description.contains("s3cret"))
        XCTAssertEqual(try PostgresURL("postgres://keyglass@localhost/log", environment: ["PGPASSWORD": "env"]).password, "env")
        XCTAssertThrowsError(try PostgresURL("mysql://keyglass:pw@localhost/log", environment: [:])) { error in
            XCTAssertFalse("\(error)".contains("pw"), "\(error)")
        }
    }
}
