import Foundation
import Hummingbird
import HummingbirdCore
import KeyglassCore
import KeyglassLog

/// GET /: a page people can read. The log's origin and key, its size, the newest checkpoint and
/// its age, the witnesses and their cosignatures' ages, a chart of its growth, and a lookup form.
///
/// Rendered on the server as plain HTML; the one script (`/assets/status.js`, `StatusAssets`)
/// re-fetches a lookup's answer and verifies it in the browser with WebCrypto (the checkpoint's
/// Ed25519 signature, every inclusion proof, the chain of previous indices). What the server
/// renders is labelled as the server's word; what the script checked says so, and what no
/// browser can check (that no newer entry is hidden) is said too.
enum StatusPage {
    /// Most entries a lookup shows on the page (the API pages through longer histories).
    static let maxShown = 100

    /// `<`, `>`, `&` and both quotes, for text and attribute values alike.
    static func html(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// "2026-11-30 14:48:49 UTC". With gmtime_r: a DateFormatter per call is slow, and one shared
    /// between the event loops' threads is not safe.
    static func utc(millis: UInt64) -> String {
        var seconds = time_t(clamping: millis / 1000)
        var t = tm()
        guard gmtime_r(&seconds, &t) != nil else { return "\(millis) ms" }
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday)) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) UTC"
    }

    /// "3 min ago" and the like, coarse on purpose.
    static func age(seconds: Double) -> String {
        let s = max(0, Int(seconds))
        if s < 90 { return "\(s) s" }
        if s < 90 * 60 { return "\(s / 60) min" }
        if s < 48 * 3600 { return "\(s / 3600) h" }
        return "\(s / 86400) days"
    }

    /// Security headers of every page and asset: the script only from this origin, no framing.
    static let headers: HTTPFields = [
        .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        .init("X-Content-Type-Options")!: "nosniff",
        .init("Referrer-Policy")!: "no-referrer",
    ]
}

extension KeyglassAPI {
    func statusPage(_ uri: URI) throws -> ReadAnswer {
        let cp = sequencer.latestCheckpoint
        let query = Query(uri)
        var body = "<section><h2>The log</h2>\n" + logSummary(cp) + "</section>\n"
        body += "<section><h2>Witnesses</h2>\n" + witnessTable() + "</section>\n"
        body += "<section><h2>Growth</h2>\n" + growth.svg(store: store, size: cp.size) + "</section>\n"
        var status: HTTPResponse.Status = .ok
        var lookup = ""
        // The key the browser checks against: the one the user trusts, given in the form, or this
        // server's own (which only shows that the server is consistent with itself).
        let trusted = query.string("vkey").flatMap { $0.isEmpty ? nil : $0 }
        if let trusted, (try? NoteVerifierKey(trusted)) == nil {
            lookup = "<section id=\"lookup\"><p class=\"error\" id=\"lookup-error\">The verifier key is not a note verifier key (name+id+key).</p></section>\n"
            status = .badRequest
        } else if let raw = query.string("identity"), !raw.isEmpty {
            (lookup, status) = lookupSection(raw, cp: cp, vkey: trusted ?? sequencer.verifierKey.description)
        }
        body += lookupForm(query.string("identity") ?? "", vkey: trusted ?? sequencer.verifierKey.description) + lookup
        var answer = ReadAnswer(contentType: "text/html; charset=utf-8", cache: "no-cache", body: ByteBuffer(string: page(body)), status: status)
        answer.headers = StatusPage.headers
        return answer
    }

    private func page(_ body: String) -> String {
        let origin = StatusPage.html(sequencer.origin)
        return """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(origin): key transparency log</title>
        <link rel="stylesheet" href="/assets/status.css">
        <script src="/assets/status.js" defer></script>
        </head>
        <body>
        <header><h1>\(origin)</h1><p>A Keyglass key transparency log: every public key this provider hands out is first \
        appended here, where anyone can check it.</p></header>
        <main>
        \(body)
        </main>
        <footer><p>Machine-readable: <a href="/checkpoint">/checkpoint</a>, <a href="/v1/log">/v1/log</a>. \
        Audit it yourself with <code>keyglass audit</code>.</p></footer>
        </body>
        </html>

        """
    }

    private func logSummary(_ cp: StoredCheckpoint) -> String {
        let newest = sequencer.newestEntryMillis
        let stamped = newest == 0 ? "no entries yet"
            : "\(StatusPage.utc(millis: newest)) (\(StatusPage.age(seconds: Date().timeIntervalSince1970 - Double(newest) / 1000)) ago)"
        let served = witnesses?.served(cp) ?? cp.note
        return """
        <dl class="facts">
        <dt>Origin</dt><dd id="origin">\(StatusPage.html(sequencer.origin))</dd>
        <dt>Verifier key</dt><dd><code id="verifier-key">\(StatusPage.html(sequencer.verifierKey.description))</code></dd>
        <dt>Entries</dt><dd id="tree-size">\(cp.size)</dd>
        <dt>Root hash</dt><dd><code>\(cp.root.base64)</code></dd>
        <dt>Newest entry stamped</dt><dd id="checkpoint-age">\(stamped)</dd>
        </dl>
        <details><summary>Newest checkpoint, as served</summary><pre id="checkpoint">\(StatusPage.html(served))</pre></details>

        """
    }

    private func witnessTable() -> String {
        guard let witnesses else {
            return "<p class=\"muted\">This log has no witnesses configured: its checkpoints carry only its own signature.</p>\n"
        }
        let now = ContinuousClock.now
        let rows = witnesses.cosignatureTimes().map { w -> String in
            let age = w.at.map { t -> String in
                let d = now - t
                return StatusPage.age(seconds: Double(d.components.seconds)) + " ago"
            } ?? "none since this server started"
            return "<tr><td>\(StatusPage.html(w.name))</td><td>\(age)</td></tr>"
        }
        return "<table class=\"witnesses\"><thead><tr><th>Witness</th><th>Newest cosignature</th></tr></thead><tbody>\n"
            + rows.joined(separator: "\n") + "\n</tbody></table>\n"
    }

    private func lookupForm(_ value: String, vkey: String) -> String {
        """
        <section><h2>Look up an identity</h2>
        <form method="get" action="/" class="lookup">
        <p><label for="identity">Identity</label>
        <input id="identity" name="identity" value="\(StatusPage.html(value))" placeholder="alice@example.com" required maxlength="255">
        <button type="submit">Look up</button></p>
        <p><label for="vkey">Check against the verifier key</label>
        <input id="vkey" name="vkey" value="\(StatusPage.html(vkey))" maxlength="512"><br>
        <span class="muted">Your browser checks the answer against this key. It is filled in with this server's own key, which \
        only shows that the server agrees with itself: paste the key your provider publishes elsewhere.</span></p>
        </form>
        </section>

        """
    }

    /// The identity's keys as this server says, and the box the script fills with its own check.
    private func lookupSection(_ raw: String, cp: StoredCheckpoint, vkey: String) -> (String, HTTPResponse.Status) {
        let identity: String
        do { identity = try Identity.normalize(raw) } catch {
            return ("<section id=\"lookup\"><p class=\"error\" id=\"lookup-error\">\(StatusPage.html(error.description))</p></section>\n", .badRequest)
        }
        let name = StatusPage.html(identity)
        let stored: [StoredEntry]
        do {
            stored = try store.entries(identity: identity, below: cp.size, limit: StatusPage.maxShown)
        } catch {
            return ("<section id=\"lookup\"><p class=\"error\" id=\"lookup-error\">The log could not be read; try again.</p></section>\n", .serviceUnavailable)
        }
        let check = """
        <div id="browser-check" data-identity="\(name)" data-vkey="\(StatusPage.html(vkey))" data-state="pending">
        <p class="state">Your browser has not checked this answer (it needs JavaScript and a secure context: HTTPS or localhost).</p>
        <div class="verified"></div>
        </div>

        """
        guard !stored.isEmpty else {
            return ("<section id=\"lookup\"><h2>Keys of \(name)</h2><p id=\"lookup-none\">No keys published for \(name).</p>\n\(check)</section>\n", .notFound)
        }
        let rows = stored.reversed().map { e -> String in
            guard let entry = try? KeyEntry.parse(e.data, keys: .form) else {
                return "<tr><td>\(e.index)</td><td colspan=\"4\" class=\"error\">malformed under this log's current rules</td></tr>"
            }
            let how = entry.revocation ? "revocation" : entry.isChained ? "signed by the previous key" : "set by the provider"
            return "<tr><td>\(e.index)</td><td>\(StatusPage.utc(millis: entry.timestampMillis))</td><td>\(entry.keyType.rawValue)</td>"
                + "<td><code>\(Base64.encode(entry.publicKey))</code></td><td>\(how)</td></tr>"
        }
        let more = stored.count == StatusPage.maxShown ? "<p class=\"muted\">Only the newest \(StatusPage.maxShown) are shown.</p>" : ""
        return ("""
        <section id="lookup"><h2>Keys of \(name)</h2>
        <p class="label-server">As this server says (newest first); not checked by your browser:</p>
        <table class="keys" id="server-keys"><thead><tr><th>Index</th><th>Sequenced</th><th>Type</th><th>Public key</th><th>How</th></tr></thead><tbody>
        \(rows.joined(separator: "\n"))
        </tbody></table>\(more)
        \(check)</section>

        """, .ok)
    }
}
