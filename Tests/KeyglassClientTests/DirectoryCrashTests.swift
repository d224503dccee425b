import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassLog
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The key directory's server SIGKILLed at random moments while changes arrive and heads are made
/// every 100 ms (so kills land in the follower's transactions too), round after round. After
/// every restart: each acknowledged change shows in a verified lookup, and an auditor re-derives
/// every map head with no alert. `KEYGLASS_CRASH_ROUNDS` sets the rounds (make soak runs more).
final class DirectoryCrashTests: XCTestCase {
    actor Acknowledged {
        var identities: [String: [UInt8]] = [:]
        func add(_ identity: String, device: [UInt8]) { identities[identity] = device }
    }

    func testSIGKILLUnderChangesLosesNothingAcknowledgedAndEveryHeadReplays() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["KEYGLASS_CRASH_ROUNDS"] ?? "") ?? 5
        let work = TestLog.temporaryDirectory("dir-crash")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = work + "/data"
        let initRun = try Binaries.run("keyglass-server", ["init", "--directory", "--data", data, "--origin", "crash.example/dir"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let vkey = try NoteVerifierKey(try Files.readText(data + "/verifier-key").trimmingCharacters(in: .whitespacesAndNewlines))
        let token = try Files.readPrivate(data + "/publish-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let lookupToken = try Files.readPrivate(data + "/lookup-token").trimmingCharacters(in: .whitespacesAndNewlines)
        let serveArgs = ["--log-level", "error", "--epoch-ms", "100", "--max-uncovered-changes", "1024", "--lookup-rate", "0"]
        let acknowledged = Acknowledged()
        var rng = SystemRandomNumberGenerator()

        /// Every acknowledged identity (or a sample of `most`) has its device, verified.
        func checkAcknowledged(_ client: DirectoryClient, most: Int) async throws -> Int {
            let all = await acknowledged.identities
            for (identity, device) in all.shuffled().prefix(most) {
                let looked = try await client.lookup(identity)
                XCTAssertEqual(looked.result.devices.map(\.id), [device], "\(identity): acknowledged, then lost")
            }
            return all.count
        }

        for round in 0..<rounds {
            let (server, _, log) = try await Binaries.startServer(data: data, serveArgs, log: work + "/server-\(round).log")
            let client = DirectoryClient(log: log, logKey: vkey, lookupToken: lookupToken)
            // Before new load: what was acknowledged is there (the server covers it before serving).
            _ = try await checkAcknowledged(client, most: 40)
            let stop = StopFlag()
            let writers = stop.load(workers: 16) { worker, n in
                let identity = "c\(round)-\(worker)-\(n)@crash.example"
                guard let record = try? DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey) else { return }
                let body = ChangeBody(identity: identity, change: DeviceChange(kind: .add(record), authority: .operator))
                guard (try? await client.submit(body, token: token)) != nil else { return }
                await acknowledged.add(identity, device: record.id)
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 150...600, using: &rng)))
            await Binaries.kill9(server)
            stop.set()
            for w in writers { await w.value }
        }

        // A last restart: every acknowledged change, and an auditor from empty state.
        let (server, _, log) = try await Binaries.startServer(data: data, serveArgs, log: work + "/server-final.log")
        let client = DirectoryClient(log: log, logKey: vkey, lookupToken: lookupToken)
        let count = try await checkAcknowledged(client, most: .max)
        XCTAssertGreaterThan(count, rounds * 10, "the rounds changed under load")
        let store = try DirectoryStateStore(path: work + "/audit.sqlite", logKey: vkey)
        let report = try await DirectoryAuditor(client: client).run(watched: [], view: nil, store: store)
        XCTAssertEqual(report.alerts.map(\.kind), [], "\(report.alerts.prefix(3))")
        XCTAssertGreaterThanOrEqual(report.labels, count)
        XCTAssertGreaterThan(report.mapHeads, rounds)
        store.close()
        await Binaries.kill9(server)
        print("directory crash safety: \(rounds) SIGKILL rounds, \(count) acknowledged changes all present, \(report.mapHeads) heads re-derived")
    }
}
