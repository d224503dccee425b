import Hummingbird

/// The status page's stylesheet and script, served from the binary (no build step, no files to
/// install). The script verifies a lookup in the browser; Spec/status-page.md describes what it
/// checks, and StatusPageTests runs it in headless Chromium against a real server.
enum StatusAssets {
    static func answer(_ text: String, type: String) -> ReadAnswer {
        var answer = ReadAnswer(contentType: type, cache: "public, max-age=300", body: ByteBuffer(string: text))
        answer.headers = StatusPage.headers
        return answer
    }

    static let css = """
    body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #1b1b1b; }
    h1 { font-size: 1.5rem; margin-bottom: .25rem; word-break: break-all; }
    h2 { font-size: 1.15rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 1.6rem; }
    code, pre { font: 13px/1.4 ui-monospace, monospace; word-break: break-all; white-space: pre-wrap; }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
    dl.facts dt { font-weight: 600; }
    dl.facts dd { margin: 0; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
    .muted, .label-server { color: #666; }
    .error { color: #a40000; font-weight: 600; }
    .chart .axis { stroke: #999; stroke-width: 1; }
    .chart .growth { fill: none; stroke: #1f5fbf; stroke-width: 2; }
    .chart .label { font-size: 11px; fill: #555; }
    form.lookup input { width: 22rem; max-width: 100%; padding: .3rem; }
    #browser-check { margin-top: 1rem; padding: .6rem .8rem; border-left: 4px solid #999; background: #f6f6f6; }
    #browser-check[data-state="verified"] { border-color: #1a7f37; background: #eef8f0; }
    #browser-check[data-state="failed"] { border-color: #a40000; background: #fdeeee; }
    #browser-check .state { margin: 0 0 .4rem; font-weight: 600; }
    #verified-keys td:nth-child(4) { font: 13px/1.4 ui-monospace, monospace; word-break: break-all; }
    form.lookup #vkey { width: 40rem; font: 13px ui-monospace, monospace; }
    """

    /// Verifies GET /v1/keys/<identity> in the browser. Plain ES2020 and WebCrypto (Ed25519 and
    /// SHA-256); every check is the one the CLI makes (RFC 9162 §2.1.3.2, Spec/entry.md), written
    /// again here so that the answer is checked where it is shown. The script itself comes from
    /// the server it checks: it catches a forged or broken answer, not an operator who also
    /// rewrites this page, and it says so (Spec/status-page.md).
    static let js = #"""
    "use strict";
    // Keyglass status page: checks a lookup answer in this browser against a verifier key.
    (() => {
      const box = document.getElementById("browser-check");
      if (!box) return;
      const state = box.querySelector(".state");
      const out = box.querySelector(".verified");
      const say = (s, text) => { box.dataset.state = s; state.textContent = text; };
      const enc = new TextEncoder();
      const b64 = (s) => { const bin = atob(s); const a = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i); return a; };
      const toB64 = (a) => btoa(String.fromCharCode(...a));
      const cat = (...parts) => { const n = parts.reduce((s, p) => s + p.length, 0); const a = new Uint8Array(n); let o = 0; for (const p of parts) { a.set(p, o); o += p.length; } return a; };
      const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
      const sha256 = async (a) => new Uint8Array(await crypto.subtle.digest("SHA-256", a));
      class Unavailable extends Error {}
      const caveat = " This check ran code this server sent: it catches an answer forged or broken on its way to you, not an operator who also changes this page. For that, run keyglass lookup with the verifier key your provider publishes.";
      const hex = (a) => Array.from(a, (x) => x.toString(16).padStart(2, "0")).join("");

      // c2sp.org/signed-note verifier key: name+hex(key ID)+base64(0x01 || Ed25519 public key).
      async function parseVerifierKey(text) {
        // The name has no "+"; the base64 key may have several.
        const first = text.indexOf("+"), second = text.indexOf("+", first + 1);
        if (first <= 0 || second < 0) throw new Error("the verifier key is not name+id+key");
        const name = text.slice(0, first), id = text.slice(first + 1, second), keyB64 = text.slice(second + 1);
        const raw = b64(keyB64);
        if (raw.length !== 33 || raw[0] !== 1) throw new Error("the verifier key is not an Ed25519 note key");
        const keyID = (await sha256(cat(enc.encode(name), Uint8Array.of(0x0a), raw))).slice(0, 4);
        if (hex(keyID) !== id) throw new Error("the verifier key's ID does not match its key");
        let key;
        try {
          key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
        } catch (e) {
          throw new Unavailable("this browser's WebCrypto has no Ed25519");
        }
        return { name, keyID, key };
      }

      // The checkpoint note: its text signed by the verifier key; origin, size and root hash.
      async function openCheckpoint(note, vkey) {
        const split = note.indexOf("\n\n");
        if (split < 0) throw new Error("the checkpoint is not a signed note");
        const text = note.slice(0, split + 1);
        let signed = false;
        for (const line of note.slice(split + 2).split("\n")) {
          if (!line.startsWith("\u2014 " + vkey.name + " ")) continue;
          const sig = b64(line.slice(vkey.name.length + 3));
          if (sig.length !== 68 || !same(sig.slice(0, 4), vkey.keyID)) continue;
          if (await crypto.subtle.verify({ name: "Ed25519" }, vkey.key, sig.slice(4), enc.encode(text))) signed = true;
        }
        if (!signed) throw new Error("the checkpoint is not signed by the verifier key");
        const lines = text.split("\n");
        if (lines[0] !== vkey.name) throw new Error("the checkpoint's origin is not the key's name");
        if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1]) || !Number.isSafeInteger(Number(lines[1]))) throw new Error("the checkpoint's size is malformed or too large for this page");
        const root = b64(lines[2]);
        if (root.length !== 32) throw new Error("the checkpoint's root hash is malformed");
        return { size: Number(lines[1]), root };
      }

      // RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
      async function rootFromProof(index, size, leaf, proof) {
        if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new Error("index " + index + " is not an index of the tree");
        let fn = index, sn = size - 1, r = leaf;
        for (const p of proof) {
          if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
          if (sn === 0) throw new Error("the proof for " + index + " is too long");
          if (fn % 2 === 1 || fn === sn) {
            r = await sha256(cat(Uint8Array.of(1), p, r));
            if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
          } else {
            r = await sha256(cat(Uint8Array.of(1), r, p));
          }
          fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
        }
        if (sn !== 0) throw new Error("the proof for " + index + " is too short");
        return r;
      }

      // Spec/entry.md, version 1: the fields shown are read from the bytes the proof covers.
      function parseEntry(a) {
        let o = 0;
        const need = (n) => { if (o + n > a.length) throw new Error("an entry is truncated"); };
        const u64 = () => {
          need(8); let v = 0n; for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(a[o++]);
          if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("an entry's number is too large for this page");
          return v;
        };
        need(1); if (a[o++] !== 1) throw new Error("an entry has an unknown version");
        const timestamp = Number(u64());
        need(1); const l = a[o++]; need(l);
        const identity = new TextDecoder("utf-8", { fatal: true }).decode(a.slice(o, o + l)); o += l;
        need(1); const t = a[o++]; need(t);
        const keyType = String.fromCharCode(...a.slice(o, o + t)); o += t;
        need(2); const k = (a[o] << 8) | a[o + 1]; o += 2; need(k);
        const publicKey = a.slice(o, o + k); o += k;
        need(1); const flags = a[o++];
        if (flags & ~7 || (flags & 4 && !(flags & 2))) throw new Error("an entry has invalid flags");
        const previous = flags & 2 ? Number(u64()) : null;
        if (flags & 4) { need(64); o += 64; }
        if (o !== a.length) throw new Error("an entry has trailing bytes");
        return { timestamp, identity, keyType, publicKey, revocation: !!(flags & 1), previous, chained: !!(flags & 4) };
      }

      function render(rows) {
        const table = document.createElement("table");
        table.className = "keys";
        table.id = "verified-keys";
        table.innerHTML = "<thead><tr><th>Index</th><th>Sequenced</th><th>Type</th><th>Public key</th><th>How</th></tr></thead>";
        const body = table.createTBody();
        for (const { index, entry } of rows.slice().reverse()) {
          const tr = body.insertRow();
          const how = entry.revocation ? "revocation" : entry.chained ? "signed by the previous key" : "set by the provider";
          for (const v of [String(index), new Date(entry.timestamp).toISOString().replace("T", " ").slice(0, 19) + " UTC", entry.keyType, toB64(entry.publicKey), how]) {
            const td = tr.insertCell();
            td.textContent = v;
          }
          tr.dataset.index = String(index);
        }
        out.replaceChildren(table);
      }

      async function check() {
        if (!window.isSecureContext || !crypto.subtle) {
          say("unavailable", "Your browser cannot check this answer here: WebCrypto needs a secure context (HTTPS or localhost). The list above is the server's word only.");
          return;
        }
        const identity = box.dataset.identity;
        // The identity asked for in the address bar, not only the one the page was rendered with.
        const params = new URLSearchParams(location.search);
        const typed = params.get("identity");
        if (typed === null || typed.normalize("NFC") !== identity) throw new Error("the page shows " + identity + ", not the identity you asked for");
        const ownKey = !params.get("vkey");
        const vkey = await parseVerifierKey(box.dataset.vkey);
        const res = await fetch("/v1/keys/" + encodeURIComponent(identity), { cache: "no-store" });
        if (res.status === 404) { say("none", "The log says it has no keys for " + identity + ". A browser cannot check an absence; auditors watching this log can."); return; }
        if (!res.ok) throw new Error("the log answered HTTP " + res.status);
        const answer = await res.json();
        const cp = await openCheckpoint(answer.checkpoint, vkey);
        if (cp.size !== answer.tree_size) throw new Error("the answer's tree size is not its checkpoint's");
        const rows = [];
        for (const e of answer.entries) {
          const bytes = b64(e.entry);
          const entry = parseEntry(bytes);
          if (entry.identity !== identity) throw new Error("entry " + e.index + " is for " + entry.identity + ", not " + identity);
          const root = await rootFromProof(e.index, cp.size, await sha256(cat(Uint8Array.of(0), bytes)), (e.inclusion_proof || []).map(b64));
          if (!same(root, cp.root)) throw new Error("entry " + e.index + " is not in the tree the checkpoint signs");
          rows.push({ index: e.index, entry });
        }
        if (rows.length === 0) throw new Error("the answer has no entries");
        // Each entry names the identity's entry before it: the history shown has no gap.
        for (let i = 1; i < rows.length; i++) {
          if (rows[i].entry.previous !== rows[i - 1].index) throw new Error("entry " + rows[i].index + " does not follow entry " + rows[i - 1].index);
        }
        const older = rows[0].entry.previous;
        if (older !== null && !answer.truncated) throw new Error("the answer hides the history before entry " + rows[0].index);
        render(rows);
        say("verified", "Checked in your browser for " + identity + ": " + rows.length + (rows.length === 1 ? " entry is" : " entries are") +
          " in the log of size " + cp.size + ", whose checkpoint is signed by " +
          (ownKey ? "this server's own key (it agrees with itself; paste your provider's key to check against it)" : "the key you gave") +
          ", and each names the one before it." +
          (older !== null ? " Older history, before entry " + rows[0].index + ", was not shown or checked." : "") +
          " Not checkable here: whether a newer entry exists that this server hides (auditors watching the log catch that)." + caveat);
      }

      check().catch((err) => err instanceof Unavailable
        ? say("unavailable", "Your browser cannot check this answer: " + err.message + ". The list above is the server's word only.")
        : say("failed", "Verification FAILED: " + err.message + "." + caveat));
    })();
    """#
}
