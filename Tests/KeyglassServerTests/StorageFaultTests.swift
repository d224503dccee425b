import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassTestSupport
import XCTest

/// A full disk or a read-only database: publishes fail with a clear 503, no batch is half-written,
/// reads go on, and the log continues without a gap once storage is back.
final class StorageFaultTests: XCTestCase {
    static func publishStatus(_ log: TestLog, _ server: RunningServer, _ identity: String) async throws -> (Int, String) {
        let body = #"{"identity":"\#(identity)","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#
        let (status, data) = try await server.client.raw("POST", "/v1/keys", body: Data(body.utf8),
                                                         headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
        return (status, String(decoding: data, as: UTF8.self))
    }

    func testDiskFullRefusesPublishesKeepsReadsAndLosesNothing() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        // First learn how big the database is, then allow only a little more.
        let pages = try await log.withServer { server in
            for i in 0..<20 { try await log.publish(server, identity: "before\(i)") }
            return try server.sqlite.pageCount()
        }
        try await log.withServer(maxPages: pages + 2) { server in
            let before = try await server.client.checkpoint()
            var refused = 0
            var accepted: [Int] = []
            // Publish until the quota bites; each answer is all-or-nothing.
            for i in 0..<400 {
                let (status, text) = try await Self.publishStatus(log, server, "fill\(i)-" + String(repeating: "x", count: 200))
                if status == 503 {
                    refused += 1
                    XCTAssertTrue(text.contains("full or read-only"), text)
                    if refused >= 3 { break }
                } else {
                    XCTAssertEqual(status, 200, text)
                    accepted.append(i)
                }
            }
            XCTAssertEqual(refused, 3, "the quota was reached")
            // Reads still work and the served tree is exactly the acknowledged entries.
            let cp = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint
            XCTAssertEqual(cp.size, UInt64(20 + accepted.count))
            let page = try await server.client.entries(start: 0, end: cp.size)
            var range = CompactRange()
            for e in page.entries { range.append(Merkle.leafHash(Base64.decode(e.entry)!)) }
            XCTAssertEqual(range.root, cp.root)
            let old = try AnswerVerifier.openCheckpoint(before, logKey: log.verifierKey).checkpoint
            let proof = try await server.client.consistencyProof(from: old.size, to: cp.size)
            XCTAssertNoThrow(try ProofVerifier.verifyConsistency(size1: old.size, size2: cp.size, root1: old.root, root2: cp.root, proof: proof))
            let integrity = try server.sqlite.integrityCheck()
            XCTAssertEqual(integrity, "ok")
        }
        // Storage back (no quota): the log continues with the next index.
        try await log.withServer { server in
            let cp = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint
            let next = try await log.publish(server, identity: "after")
            XCTAssertEqual(next.index, cp.size)
        }
    }

    func testReadOnlyDatabaseRefusesPublishesAndServesReads() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for i in 0..<5 { try await log.publish(server, identity: "ro\(i)") }
            let before = try await server.client.checkpoint()
            try server.sqlite.setWritesRefused(true)
            let (status, text) = try await Self.publishStatus(log, server, "refused")
            XCTAssertEqual(status, 503, text)
            XCTAssertTrue(text.contains("full or read-only"), text)
            let during = try await server.client.checkpoint()
            XCTAssertEqual(during, before)
            let proof = try await server.client.inclusionProof(index: 2, treeSize: 5)
            XCTAssertFalse(proof.isEmpty)
            let keys = try await server.client.keys(identity: "ro3")
            XCTAssertEqual(keys.entries.count, 1)
            try server.sqlite.setWritesRefused(false)
            let next = try await log.publish(server, identity: "back")
            XCTAssertEqual(next.index, 5, "no index was used up by the refused publish")
        }
    }

    func testFullQueueAnswers503WithRetryAfter() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        // The first publish's commit is held (a stalled disk), so the writer sits in it while the
        // others arrive: two fill the queue (cap 2), the rest find it full. No race with the writer:
        // an earlier version relied on a batch delay, and on a fast machine the writer took the
        // publishes one by one and the queue never filled.
        var options = Sequencer.Options()
        options.maxQueue = 2
        options.maxBatch = 64
        var faulty: FaultyStorage!
        try await log.withServer(options: options, wrapStorage: { faulty = FaultyStorage($0); return faulty }) { server in
            let token = log.token
            let publish: @Sendable (Int) async throws -> (Int, String?) = { i in
                let body = #"{"identity":"q\#(i)","key_type":"x25519","public_key":"\#(Base64.encode(Ed25519.randomBytes(32)))"}"#
                let (status, fields, _) = try await server.client.rawResponse("POST", "/v1/keys", body: Data(body.utf8),
                                                                              headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"])
                return (status, fields["retry-after"])
            }
            let storage: FaultyStorage = faulty
            storage.holdAppends()
            let first = Task { try await publish(0) }
            for _ in 0..<400 where storage.appendCalls == 0 { try await Task.sleep(for: .milliseconds(5)) }
            XCTAssertEqual(storage.appendCalls, 1, "the writer is in the first commit")
            // The 29 others: two are queued behind the held commit, and every other one is refused
            // at once. The commit is released when those 27 refusals are in (or after 10 s, so a
            // wrong count fails the assertions below rather than hanging).
            let safety = Task {
                try? await Task.sleep(for: .seconds(10))
                if !Task.isCancelled { storage.releaseAppends() }
            }
            var answers = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for i in 1..<30 { group.addTask { try await publish(i) } }
                var out: [(Int, String?)] = []
                for try await a in group {
                    out.append(a)
                    if out.count == 27 { safety.cancel(); storage.releaseAppends() }
                }
                return out
            }
            answers.append(try await first.value)
            XCTAssertEqual(answers.filter { $0.0 == 503 }.count, 27, "every publish past the two queued is refused")
            let statuses = answers.map(\.0)
            // Every 503 tells the client when to come back.
            for (status, retryAfter) in answers where status == 503 { XCTAssertEqual(retryAfter, "1") }
            XCTAssertTrue(statuses.allSatisfy { $0 == 200 || $0 == 503 }, "\(statuses)")
            XCTAssertGreaterThan(statuses.filter { $0 == 503 }.count, 0, "the queue cap was hit")
            let accepted = statuses.filter { $0 == 200 }.count
            let cp = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint
            XCTAssertEqual(cp.size, UInt64(accepted), "exactly the accepted publishes are in the log")
            let (_, data) = try await server.client.raw("GET", "/healthz")
            XCTAssertFalse(data.isEmpty)
        }
    }
}
