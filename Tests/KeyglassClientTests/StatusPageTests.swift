import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassTestSupport
import Synchronization
import XCTest

/// The status page (GET /) in a real headless Chromium against a real server: it loads, shows the
/// log and its witness, the lookup's result is in the DOM, and the page's script verifies the
/// lookup in the browser, and refuses answers a hostile operator's front end forged.
final class StatusPageTests: XCTestCase {
    private let alice = "alice@example.com"

    private func url(_ base: URL, identity: String, vkey: String? = nil) -> URL {
        var c = URLComponents(url: base, resolvingAgainstBaseURL: false)!
        c.path = "/"
        c.queryItems = [URLQueryItem(name: "identity", value: identity)] + (vkey.map { [URLQueryItem(name: "vkey", value: $0)] } ?? [])
        return c.url!
    }

    /// The attribute `data-state` of the browser check and its sentence.
    private func browserCheck(_ dom: String) -> (state: String, text: String) {
        let state = dom.range(of: #"id="browser-check"[^>]*data-state="([a-z]+)""#, options: .regularExpression)
            .map { String(dom[$0]).components(separatedBy: "data-state=\"").last!.dropLast() }.map(String.init) ?? "missing"
        let text = dom.range(of: #"<p class="state">[^<]*"#, options: .regularExpression).map { String(dom[$0].dropFirst(17)) } ?? ""
        return (state, text)
    }

    private var artifacts: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts").path
    }

    func testStatusPageLoadsAndVerifiesALookupInChromium() async throws {
        // A log whose verifier key has a "+" in its base64 (about half do): the script once split
        // the key at every "+" and refused such keys, which a random key caught only half the time.
        var log = try await TestLog()
        for _ in 0..<40 where !log.verifierKey.description.split(separator: "+", maxSplits: 2).last!.contains("+") {
            log.remove()
            log = try await TestLog()
        }
        XCTAssertTrue(log.verifierKey.description.split(separator: "+", maxSplits: 2).last!.contains("+"))
        defer { log.remove() }
        let witness = try await RunningWitness.start(name: "w1.example/witness", logs: [log.verifierKey], state: TestLog.temporaryDirectory("sw"))
        try await log.withServer(witnesses: [witness.config]) { server in
            var keys: [[UInt8]] = []
            for i in 0..<3 {
                let key = Ed25519.generate().publicKey
                keys.append(key)
                try await log.publish(server, identity: alice, key: key)
                try await log.publish(server, identity: "other\(i)@example.com")
            }
            let base = server.client.base

            // Served as HTML with a policy that allows only this origin's script.
            let (status, headers, body) = try await server.client.rawResponse("GET", "/")
            XCTAssertEqual(status, 200)
            XCTAssertEqual(headers["content-type"], "text/html; charset=utf-8")
            XCTAssertTrue(headers["content-security-policy"]?.contains("script-src 'self'") ?? false, "\(headers)")
            let html = String(decoding: body, as: UTF8.self)
            XCTAssertTrue(html.contains(#"<dd id="tree-size">6</dd>"#), html)
            XCTAssertTrue(html.contains(log.verifierKey.description))
            XCTAssertTrue(html.contains("w1.example/witness"))
            XCTAssertTrue(html.contains("<polyline"), "the growth chart is drawn")

            // The lookup in the browser: the server's table, and the script's own check.
            let page = url(base, identity: alice)
            let dom = try Chromium.dom(page)
            let check = browserCheck(dom)
            XCTAssertEqual(check.state, "verified", check.text)
            XCTAssertTrue(check.text.contains("Checked in your browser for \(alice): 3 entries are in the log of size 6"), check.text)
            XCTAssertTrue(check.text.contains("this server's own key"), check.text)
            XCTAssertTrue(check.text.contains("keyglass lookup"), "the result names its limit: \(check.text)")
            // Checked against the same key given by the user: said so.
            let given = browserCheck(try Chromium.dom(url(base, identity: alice, vkey: log.verifierKey.description)))
            XCTAssertEqual(given.state, "verified", given.text)
            XCTAssertTrue(given.text.contains("signed by the key you gave"), given.text)
            let verified = try XCTUnwrap(dom.range(of: #"<table class="keys" id="verified-keys">.*?</table>"#, options: .regularExpression).map { String(dom[$0]) })
            // Newest first, each key read by the script from the entry bytes the proof covers.
            var previous = verified.startIndex
            for key in keys.reversed() {
                let at = try XCTUnwrap(verified.range(of: Base64.encode(key)), "key missing from the verified table")
                XCTAssertGreaterThanOrEqual(at.lowerBound, previous)
                previous = at.lowerBound
            }
            for key in keys { XCTAssertTrue(dom.contains(Base64.encode(key))) }

            // Nobody by that name: the server says so, and the browser says it cannot check an absence.
            let none = try Chromium.dom(url(base, identity: "nobody@example.com"))
            XCTAssertTrue(none.contains(#"id="lookup-none""#))
            XCTAssertEqual(browserCheck(none).state, "none")
            // Not an identity: refused with the reason, nothing looked up.
            let (badStatus, badBody) = try await server.client.raw("GET", "/?identity=a%20b")
            XCTAssertEqual(badStatus, 400)
            XCTAssertTrue(String(decoding: badBody, as: UTF8.self).contains(#"id="lookup-error""#))

            // Checked against a key the user trusts that is not this log's: the browser refuses.
            let stranger = try NoteSigner.generate(name: log.verifierKey.name).verifierKey
            let refused = browserCheck(try Chromium.dom(url(base, identity: alice, vkey: stranger.description)))
            XCTAssertEqual(refused.state, "failed", refused.text)
            XCTAssertTrue(refused.text.contains("not signed by the verifier key"), refused.text)

            // The screenshot, kept for whoever reads the test's output.
            try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
            let shot = artifacts + "/status-page.png"
            try? FileManager.default.removeItem(atPath: shot)
            try Chromium.screenshot(page, to: shot)
            let png = try Data(contentsOf: URL(fileURLWithPath: shot))
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            XCTAssertGreaterThan(png.count, 10_000)
            print("status page screenshot: \(shot) (\(png.count) bytes)")
        }
        await witness.stop()
    }

    /// A front end between the log and the browser (compromised, or a cache gone wrong) serves the
    /// real page and script but forges the lookup the script fetches: a key swapped inside an entry, an entry left out, an answer from a fork signed
    /// by another key. The browser must say FAILED each time.
    func testBrowserRefusesForgedLookups() async throws {
        let log = try await TestLog()
        let fork = try await TestLog()  // same origin, its own key
        defer { log.remove(); fork.remove() }
        try await log.withServer { server in
            try await fork.withServer { forked in
                for _ in 0..<3 { try await log.publish(server, identity: alice) }
                try await fork.publish(forked, identity: alice)
                let mode = ForgeryMode()
                let real = server.client, forkClient = forked.client
                let front = try await FrontEnd.start { _, target in
                    let (status, data) = (try? await real.raw("GET", target)) ?? (502, Data())
                    if target == "/" || target.hasPrefix("/?") { return .body(data, contentType: "text/html; charset=utf-8") }
                    if target == "/assets/status.js" { return .body(data, contentType: "text/javascript") }
                    if target == "/assets/status.css" { return .body(data, contentType: "text/css") }
                    guard target.hasPrefix("/v1/keys/"), status == 200 else { return .fail(404) }
                    var answer = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
                    var entries = answer["entries"] as? [[String: Any]] ?? []
                    switch mode.value.withLock({ $0 }) {
                    case "swap":
                        // One byte of the middle entry's public key (after version, time, identity, type, length).
                        var bytes = Base64.decode(entries[1]["entry"] as! String)!
                        bytes[1 + 8 + 1 + 17 + 1 + 7 + 2 + 5] ^= 0x01
                        entries[1]["entry"] = Base64.encode(bytes)
                    case "omit":
                        entries.remove(at: 1)
                    default:
                        return .forward(forkClient)
                    }
                    answer["entries"] = entries
                    return .body(try! JSONSerialization.data(withJSONObject: answer), contentType: "application/json")
                }
                let expectations = [("swap", "is not in the tree the checkpoint signs"), ("omit", "does not follow entry"),
                                    ("fork", "not signed by the verifier key")]
                for (name, reason) in expectations {
                    mode.value.withLock { $0 = name }
                    let check = browserCheck(try Chromium.dom(url(front.url, identity: alice)))
                    XCTAssertEqual(check.state, "failed", "\(name): \(check.text)")
                    XCTAssertTrue(check.text.contains(reason), "\(name): \(check.text)")
                }
                // The same front end passing the answer on untouched is believed: the refusals above are the forgeries'.
                mode.value.withLock { $0 = "none" }
                await front.stop()
                let honest = browserCheck(try Chromium.dom(url(server.client.base, identity: alice)))
                XCTAssertEqual(honest.state, "verified", honest.text)
            }
        }
    }
}

/// Which forgery the front end makes, switched by the test between page loads.
private final class ForgeryMode: Sendable {
    let value = Mutex("swap")
}
