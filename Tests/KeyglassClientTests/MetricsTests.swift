import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassServer
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// GET /metrics from a real server with a real witness, read as Prometheus would: the exposition
/// passes Debian's `promtool check metrics`, and its numbers are what the test did to the server.
final class MetricsTests: XCTestCase {
    /// The samples of an exposition, by series (`name{labels}` as written) to value.
    private func samples(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }

    private func scrape(_ server: RunningServer) async throws -> String {
        let (status, headers, body) = try await server.client.rawResponse("GET", "/metrics")
        XCTAssertEqual(status, 200)
        XCTAssertTrue(headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") ?? false, "\(headers)")
        return String(decoding: body, as: UTF8.self)
    }

    func testMetricsCountWhatHappenedAndPassPromtool() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        let witness = try await RunningWitness.start(name: "w1.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("mw"))
        try await log.withServer(witnesses: [witness.config]) { server in
            for i in 0..<5 { try await log.publish(server, identity: "metrics\(i)") }
            let json = ["Content-Type": "application/json", "Authorization": "Bearer \(log.token)"]
            let (bad, _) = try await server.client.raw("POST", "/v1/keys", body: Data("{}".utf8), headers: json)
            XCTAssertEqual(bad, 400)
            let (missing, _) = try await server.client.raw("GET", "/no-such-page")
            XCTAssertEqual(missing, 404)
            for _ in 0..<3 { _ = try await server.client.get("/checkpoint") }
            // The witness cosigns the newest checkpoint shortly after it is signed.
            var cosigned = false
            for _ in 0..<200 where !cosigned {
                let note = String(decoding: try await server.client.get("/checkpoint"), as: UTF8.self)
                cosigned = try SignedNote.parse(note).signatures.count == 2 && note.hasPrefix("\(log.verifierKey.name)\n5\n")
                if !cosigned { try await Task.sleep(for: .milliseconds(50)) }
            }
            XCTAssertTrue(cosigned, "the witness never cosigned")

            let text = try await scrape(server)
            let promtool = try SystemTool.run("promtool", ["check", "metrics"], input: Data(text.utf8))
            XCTAssertEqual(promtool.status, 0, "promtool: \(promtool.stdout)\(promtool.stderr)\n\(text)")
            XCTAssertEqual(promtool.stdout + promtool.stderr, "", "promtool found problems")

            let s = samples(text)
            XCTAssertEqual(s["keyglass_tree_size"], 5)
            XCTAssertEqual(s["keyglass_queue_depth"], 0)
            XCTAssertEqual(s[#"keyglass_publishes_total{outcome="integrated"}"#], 5)
            // Every outcome is exported from the start, so rates and alerts see a zero, not nothing.
            for outcome in LogMetrics.Outcome.allCases where outcome != .integrated {
                XCTAssertEqual(s[#"keyglass_publishes_total{outcome="\#(outcome.rawValue)"}"#], 0, outcome.rawValue)
            }
            XCTAssertEqual(s[#"keyglass_http_requests_total{method="POST",route="/v1/keys",code="200"}"#], 5)
            XCTAssertEqual(s[#"keyglass_http_requests_total{method="POST",route="/v1/keys",code="400"}"#], 1)
            XCTAssertEqual(s[#"keyglass_http_requests_total{method="other",route="other",code="404"}"#], 1)
            XCTAssertGreaterThanOrEqual(s[#"keyglass_http_requests_total{method="GET",route="/checkpoint",code="200"}"#] ?? 0, 4)
            // Five publishes one after another: five batches of one, each commit timed.
            XCTAssertEqual(s["keyglass_batch_size_entries_sum"], 5)
            XCTAssertEqual(s["keyglass_batch_size_entries_count"], s["keyglass_commit_duration_seconds_count"])
            XCTAssertGreaterThan(s["keyglass_commit_duration_seconds_sum"] ?? 0, 0)
            XCTAssertEqual(s[#"keyglass_commit_duration_seconds_bucket{le="+Inf"}"#], s["keyglass_commit_duration_seconds_count"])
            // The newest entry was stamped moments ago by this machine's clock.
            let now = Date().timeIntervalSince1970
            XCTAssertEqual(s["keyglass_checkpoint_timestamp_seconds"] ?? 0, now, accuracy: 60)
            XCTAssertLessThan(s["keyglass_checkpoint_age_seconds"] ?? .infinity, 60)
            XCTAssertLessThan(s[#"keyglass_witness_cosignature_age_seconds{witness="w1.example/witness"}"#] ?? .infinity, 30)
            XCTAssertLessThanOrEqual(s["keyglass_up_since_seconds"] ?? .infinity, now)

            // Every family has its HELP line from the catalogue, before its TYPE line.
            let lines = text.split(separator: "\n")
            for (i, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
                let name = line.split(separator: " ")[2]
                XCTAssertTrue(i > 0 && lines[i - 1].hasPrefix("# HELP \(name) "), "no HELP for \(name)")
            }

            // The scrape itself is counted once it is answered.
            let again = samples(try await scrape(server))
            XCTAssertEqual(again[#"keyglass_http_requests_total{method="GET",route="/metrics",code="200"}"#], 1)
        }
        await witness.stop()
    }

    /// The alert "publish errors" rests on this: a batch the database refuses is counted as
    /// storage_error, and a witness that never answers shows its age growing since the start.
    func testStorageFailuresAndSilentWitnessesShowInMetrics() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        var faulty: FaultyStorage!
        // A witness address nothing listens on (port 9 of loopback: discard, closed here).
        let silent = WitnessConfig(url: URL(string: "http://127.0.0.1:9")!,
                                   key: try NoteVerifierKey(name: "silent.example/witness", type: .cosignatureV1, publicKey: Ed25519.generate().publicKey))
        try await log.withServer(witnesses: [silent], wrapStorage: { faulty = FaultyStorage($0); return faulty }) { server in
            try await log.publish(server, identity: "before")
            faulty.failNextAppend(.beforeWrite)
            do {
                try await log.publish(server, identity: "refused")
                XCTFail("the publish should have failed")
            } catch {}
            try await log.publish(server, identity: "after")
            try await Task.sleep(for: .milliseconds(1100))
            let text = try await scrape(server)
            let s = samples(text)
            XCTAssertEqual(s[#"keyglass_publishes_total{outcome="integrated"}"#], 2)
            XCTAssertEqual(s[#"keyglass_publishes_total{outcome="storage_error"}"#], 1)
            XCTAssertEqual(s[#"keyglass_http_requests_total{method="POST",route="/v1/keys",code="503"}"#], 1)
            XCTAssertEqual(s["keyglass_tree_size"], 2)
            XCTAssertGreaterThanOrEqual(s[#"keyglass_witness_cosignature_age_seconds{witness="silent.example/witness"}"#] ?? 0, 1)
            let promtool = try SystemTool.run("promtool", ["check", "metrics"], input: Data(text.utf8))
            XCTAssertEqual(promtool.status, 0, promtool.stdout + promtool.stderr)
        }
    }
}
