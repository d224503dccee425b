import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
@testable import KeyglassLog
import KeyglassTestSupport
import Synchronization
import XCTest

/// A log that wants an auditor to stay silent need not lie: it can stall, trickle, fail or flood.
/// Each test puts a hostile front end before a real log; the auditor must end on time with the
/// right exit status, and keep any alert it found before the log turned on it.
final class StalledLogTests: XCTestCase {
    /// Short deadlines so the tests take seconds: 1 s a request, two tries.
    var limits: HTTPLimits {
        var l = HTTPLimits()
        l.requestTimeout = .seconds(1)
        l.attempts = 2
        l.backoff = .milliseconds(50)
        return l
    }

    func auditor(_ front: FrontEnd, _ log: TestLog, state: String, watch: WatchList? = nil, limits: HTTPLimits? = nil) -> Auditor {
        var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
        o.watch = watch
        return Auditor(client: front.client(limits: limits ?? self.limits), options: o)
    }

    func testDelayedBundleEndsTheRunOnTimeWithExit3() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<20 { try await log.publish(server, identity: "d\(i)") }
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/tile/entries/") ? .delay(.seconds(150), server.client) : .forward(server.client)
            }
            defer { Task { await front.stop() } }
            let started = ContinuousClock.now
            let report = await auditor(front, log, state: TestLog.temporaryDirectory("audit")).run()
            let took = ContinuousClock.now - started
            XCTAssertEqual(report.exitCode, 3, report.text)
            XCTAssertTrue(report.logNotAnswering)
            XCTAssertTrue(report.error?.contains("timed out") ?? false, report.error ?? "")
            XCTAssertLessThan(took, .seconds(20), "two tries of one second each, not 150 s")
        }
    }

    func testTrickledCheckpointIsATimeoutNotAHang() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            try await log.publish(server, identity: "t")
            let front = try await FrontEnd.start { _, target in
                target == "/checkpoint" ? .trickle(server.client, chunk: 6, every: .milliseconds(200)) : .forward(server.client)
            }
            defer { Task { await front.stop() } }
            let started = ContinuousClock.now
            let report = await auditor(front, log, state: TestLog.temporaryDirectory("audit")).run()
            XCTAssertEqual(report.exitCode, 3, report.text)
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(20))
            // The lookup's head check goes through the same deadline.
            var lookupOptions = KeyLookup.Options(logKey: log.verifierKey, stateDirectory: nil)
            lookupOptions.quorum = 0
            do {
                _ = try await KeyLookup(client: front.client(limits: limits), options: lookupOptions).run(identity: "t")
                XCTFail("a trickled /checkpoint must not be waited for")
            } catch let e as ClientError {
                XCTAssertTrue(e.isLogNotAnswering, "\(e)")
            }
        }
    }

    /// The log answers 503 for every bundle after the one holding the injected key: the alert
    /// already found ends the run with exit 2, and is on disk.
    func testFailureAfterAnAlertStillEndsInTheAlert() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            let owner = Ed25519.generate().publicKey
            try await log.publish(server, identity: "victim@example.com", key: owner)
            let injected = try await log.publish(server, identity: "victim@example.com")
            for i in 0..<600 { try await log.publish(server, identity: "after\(i)") }
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/tile/entries/") && !target.hasPrefix("/tile/entries/000") ? .fail(503) : .forward(server.client)
            }
            defer { Task { await front.stop() } }
            let watch = try WatchList(text: "victim@example.com ed25519 \(Base64.encode(owner))\n")
            let report = await auditor(front, log, state: state, watch: watch).run()
            XCTAssertEqual(report.exitCode, 2, report.text)
            XCTAssertEqual(report.alerts.map(\.kind), [.injectedKey])
            XCTAssertEqual(report.alerts.first?.index, injected.index)
            XCTAssertNotNil(report.error, "the failure is reported too")
            XCTAssertEqual(try alertLines(state).map(\.index), [injected.index])

            // The next run, against the log answering again, resumes and completes.
            var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
            o.watch = watch
            let resumed = await Auditor(client: server.client, options: o).run()
            XCTAssertTrue(resumed.notices.contains { $0.hasPrefix("resuming") }, resumed.text)
            XCTAssertEqual(resumed.size, 602)
            XCTAssertEqual(try alertLines(state).count, 1, "the alert is written once")
        }
    }

    /// A 512 MiB "bundle": refused at the cap, without the auditor holding it.
    func testOversizedBundleIsRefusedAtTheCap() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<3 { try await log.publish(server, identity: "o\(i)") }
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/tile/entries/") ? .junk(bytes: 512 << 20) : .forward(server.client)
            }
            defer { Task { await front.stop() } }
            var l = limits
            l.requestTimeout = .seconds(10)
            let report = await auditor(front, log, state: TestLog.temporaryDirectory("audit"), limits: l).run()
            XCTAssertEqual(report.exitCode, 1, report.text)
            XCTAssertTrue(report.error?.contains("over the limit") ?? false, report.error ?? "")
        }
    }

    /// Fails each path the first time it is asked for: what a flaky proxy or a restarting server does.
    final class FailOnce: Sendable {
        private let seen = Mutex<Set<String>>([])
        func isFirst(_ target: String) -> Bool { seen.withLock { $0.insert(target).inserted } }
    }

    /// One 503 per request is retried away (exit 0); with retries off, the same log is exit 3.
    func testFailedRequestsAreRetriedWithBackOff() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<300 { try await log.publish(server, identity: "r\(i)") }
            for attempts in [2, 1] {
                let once = FailOnce()
                let front = try await FrontEnd.start { _, target in
                    (target == "/checkpoint" || target.hasPrefix("/tile/entries/")) && once.isFirst(target) ? .fail(503) : .forward(server.client)
                }
                var l = limits
                l.attempts = attempts
                let report = await auditor(front, log, state: TestLog.temporaryDirectory("audit"), limits: l).run()
                await front.stop()
                if attempts == 2 {
                    XCTAssertEqual(report.status, .ok, report.text)
                    XCTAssertEqual(report.entriesChecked, 300)
                } else {
                    XCTAssertEqual(report.exitCode, 3, report.text)
                }
            }
        }
    }

    /// The whole run's deadline holds even when every single request is within its own: three
    /// bundles 200 ms each against a 300 ms run. The position is saved and the next run goes on.
    func testRunDeadlineEndsALongRunAndTheNextResumes() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let state = TestLog.temporaryDirectory("audit")
        try await log.withServer { server in
            // A forged rotation in the first bundle: the run that stops at its deadline must not
            // leave it unchecked behind the position it saves.
            let first = try await log.publish(server, identity: "frank@example.com")
            _ = try await server.sequencer.submit(PublishRequest(identity: "frank@example.com", keyType: .ed25519, publicKey: Ed25519.generate().publicKey,
                                                                  authorization: .chained(previousIndex: first.index, signature: Array(repeating: 7, count: 64))))
            for i in 0..<700 { try await log.publish(server, identity: "d\(i)") }
            let front = try await FrontEnd.start { _, target in
                target.hasPrefix("/tile/entries/") ? .delay(.milliseconds(200), server.client) : .forward(server.client)
            }
            defer { Task { await front.stop() } }
            var o = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
            o.deadline = .milliseconds(300)
            o.prefetch = 1
            o.checkUnwatchedRotations = true
            let started = ContinuousClock.now
            let report = await Auditor(client: front.client(limits: limits), options: o).run()
            XCTAssertEqual(report.exitCode, 3, report.text)
            XCTAssertTrue(report.error?.contains("deadline") ?? false, report.error ?? "")
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
            var resumed = Auditor.Options(stateDirectory: state, logKey: log.verifierKey)
            resumed.checkUnwatchedRotations = true
            let next = await Auditor(client: server.client, options: resumed).run()
            XCTAssertEqual(next.status, .ok, next.text)
            XCTAssertTrue(next.notices.contains { $0.hasPrefix("resuming") }, next.text)
            let forged = (report.notices + next.notices).filter { $0.contains("frank@example.com") && $0.contains("signature") }
            XCTAssertEqual(forged.count, 1, "the forged rotation is reported once, by one of the two runs: \(report.notices + next.notices)")
        }
    }

    /// The URLSession path (https logs, and every non-GET) counts an answer as it arrives: a 512 MiB
    /// body is refused at the cap, not read whole first.
    func testOversizedAnswerOverURLSessionIsRefusedAtTheCap() async throws {
        let front = try await FrontEnd.start { _, _ in .junk(bytes: 512 << 20) }
        defer { Task { await front.stop() } }
        var l = HTTPLimits()
        l.maxBodyBytes = 1 << 20
        l.requestTimeout = .seconds(20)
        let started = ContinuousClock.now
        do {
            _ = try await front.client(limits: l).raw("POST", "/v1/keys", body: Data("{}".utf8))
            XCTFail("a 512 MiB answer was accepted")
        } catch let e as ClientError {
            XCTAssertTrue(e.description.contains("over the limit"), "\(e)")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
    }
}
