import ArgumentParser
import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassHTTP

@main
struct KeyglassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyglass",
        abstract: "Publish keys to a Keyglass log, look them up with proofs, and audit the log.",
        discussion: """
        Nothing the log says is trusted: every answer is checked against the log's verifier key \
        (printed by `keyglass-server init`, also in DATA/verifier-key) and the Merkle proofs.

        Exit codes: 0 ok; 1 could not check (bad input, unusable state); 2 ALERT or refusal: the log's \
        answer does not verify or contradicts what was seen before, and the evidence is printed; \
        3 the log did not answer (unreachable, timed out, or failing on its side after retries).
        """,
        subcommands: [Publish.self, Lookup.self, Verify.self, Keygen.self, Audit.self, WitnessCommand.self, DirectoryCommand.self])
}

/// Options every command that talks to a log shares.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "The log's base URL, e.g. http://127.0.0.1:8080")
    var log: String

    @Option(name: .long, help: "The log's verifier key (name+hash+base64), or a file holding it.")
    var vkey: String

    @Option(name: .long, help: "Deadline for each request to the log, from sending to the answer's last byte (e.g. 30s, 2m).")
    var timeout = "30s"

    func client() throws -> LogClient {
        guard let url = URL(string: log), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--log must be an http(s) URL")
        }
        return LogClient(base: url, limits: try limits())
    }

    func limits() throws -> HTTPLimits {
        guard let seconds = parseDuration(timeout), seconds > 0 else { throw ValidationError("--timeout takes a duration like 30s or 2m (at most 10 years)") }
        var l = HTTPLimits()
        l.requestTimeout = .seconds(Int64(seconds))
        return l
    }

    func verifierKey() throws -> NoteVerifierKey { try readVerifierKey(vkey) }
}

/// The witness policy options `audit` and `lookup` share.
struct WitnessOptions: ParsableArguments {
    @Option(name: .long, help: "A witness cosignature verifier key whose cosignatures count (repeat the option for more).")
    var witness: [String] = []

    @Option(name: .long, help: "How many valid witness cosignatures the checkpoint must carry.")
    var quorum = 0

    @Option(name: .long, help: "Most age of the newest witness cosignature (e.g. 90s, 15m, 2h, 1d): older is a freeze (audit: alert; lookup: refused).")
    var maxAge: String?

    func policy() throws -> WitnessPolicy {
        let keys = try witness.map { try readVerifierKey($0) }
        guard quorum <= keys.count else { throw ValidationError("--quorum \(quorum) is more than the \(keys.count) --witness keys given") }
        var seconds: UInt64?
        if let maxAge {
            guard let s = parseDuration(maxAge) else { throw ValidationError("--max-age takes a duration like 90s, 15m, 2h or 1d") }
            guard !keys.isEmpty else { throw ValidationError("--max-age needs --witness keys") }
            seconds = s
        }
        return WitnessPolicy(witnesses: keys, quorum: quorum, maxAge: seconds)
    }
}

func readVerifierKey(_ value: String) throws -> NoteVerifierKey {
    var text = value
    if FileManager.default.fileExists(atPath: value) { text = try Files.readText(value) }
    do { return try NoteVerifierKey(text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
        throw ValidationError("--vkey: \(error)")
    }
}

/// Maps a failure to the CLI's exit codes: verification failures are evidence (2), a log that does
/// not answer 3, the rest 1.
func fail(_ command: String, _ error: Error) -> ExitCode {
    let message = "\(error)"
    if error is VerificationError {
        FileHandle.standardError.write(Data("ALERT: \(command): the log's answer is refused: \(message)\n".utf8))
        return ExitCode(2)
    }
    FileHandle.standardError.write(Data("keyglass \(command): \(message)\n".utf8))
    if let e = error as? ClientError, e.isLogNotAnswering { return ExitCode(3) }
    return ExitCode(1)
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a public key for an identity, then verify the log's checkpoint and inclusion proof.",
        discussion: """
        Authorise with the provider's operator token (--token-file), or with the identity's current \
        Ed25519 private key (--sign-with, made by `keyglass keygen`) for a self-signed, chained rotation. \
        Says "ok" only after the returned checkpoint signature and inclusion proof verify.
        """)

    @OptionGroup var logOptions: LogOptions

    @Option(name: .long, help: "The identity, e.g. alice@example.com (NFC-normalised).")
    var identity: String

    @Option(name: .long, help: "File with the public key to publish, as base64.")
    var keyFile: String

    @Option(name: .long, help: "Key type: ed25519, x25519 or p256.")
    var keyType = "ed25519"

    @Option(name: .long, help: "File with the operator's publish token.")
    var tokenFile: String?

    @Option(name: .long, help: "Private key file of the identity's current key (self-signed rotation).")
    var signWith: String?

    @Flag(name: .long, help: "Publish a revocation of this key.")
    var revoke = false

    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        do {
            guard (tokenFile == nil) != (signWith == nil) else { throw ValidationError("give exactly one of --token-file and --sign-with") }
            let type = try KeyType.parse(keyType)
            let key = try KeyFiles.readPublicKey(keyFile)
            let token = try tokenFile.map { try BearerToken.checked(Files.readPrivate($0), from: $0) }
            let seed = try signWith.map { try KeyFiles.readSeed($0) }
            let publisher = Publisher(client: try logOptions.client(), logKey: try logOptions.verifierKey())
            let (cp, entry) = try await publisher.publish(identity: identity, keyType: type, publicKey: key, revocation: revoke, token: token, signingSeed: seed)
            if json {
                print(#"{"status":"ok","index":\#(entry.index),"tree_size":\#(cp.checkpoint.size),"chained":\#(entry.entry.isChained),"leaf_hash":"\#(entry.leafHash.base64)"}"#)
            } else {
                print("ok: \(entry.entry.identity) \(type.rawValue) key published at index \(entry.index)" +
                      (entry.entry.isChained ? " (chained: signed by the previous key)" : "") +
                      "; inclusion verified in checkpoint of size \(cp.checkpoint.size)")
            }
        } catch let e as ValidationError { throw e } catch { throw fail("publish", error) }
    }
}

struct Lookup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an identity's key history, only once it is proved to be the history auditors check.",
        discussion: """
        Verifies the checkpoint signature, every inclusion proof, that the history is whole (its first \
        entry names no earlier one; long histories are paged) and that every entry passes the rotation \
        rule (chained entries' signatures verify under the previous key, which must be Ed25519 and not \
        revoked). The history is asked for in exactly the tree of the log's /checkpoint (an answer in \
        any other tree is refused), and that checkpoint must be consistent with, and not older than, \
        the newest one this command verified before for the log (kept in --state); it may be required \
        to carry witness cosignatures (--witness, --quorum, --max-age), and may be compared with \
        checkpoints auditors saw (--compare, --gossip).

        The newest verified checkpoint is kept as a plain signed note in \
        STATE/<log name>-<key id>/checkpoint; `keyglass audit --compare` reads it (and this command's \
        --compare reads an auditor's STATE/checkpoint), so lookups and auditors check each other.

        Exit codes: 0 verified; 2 refused (does not verify, stale, split view, witness policy unmet); \
        1 bad input; 3 the log did not answer.
        """)

    @OptionGroup var logOptions: LogOptions

    @Argument(help: "The identity.")
    var identity: String

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    @Option(name: .long, help: "Also write each entry's proof as a c2sp.org/tlog-proof file into this directory.")
    var writeProofs: String?

    @Option(name: .long, help: "State directory (default: $XDG_STATE_HOME/keyglass or ~/.local/state/keyglass).")
    var state: String?

    @OptionGroup var witnessOptions: WitnessOptions

    @Option(name: .long, help: "A checkpoint others saw: a signed note file, a tlog-proof file or a state directory, e.g. an auditor's (repeatable).")
    var compare: [String] = []

    @Option(name: .long, help: "A URL serving a checkpoint of the same log, a mirror or an auditor (repeatable).")
    var gossip: [String] = []

    func run() async throws {
        do {
            let client = try logOptions.client()
            var options = KeyLookup.Options(logKey: try logOptions.verifierKey(), stateDirectory: state ?? KeyLookup.defaultStateDirectory)
            let policy = try witnessOptions.policy()
            (options.witnesses, options.quorum, options.maxAge) = (policy.witnesses, policy.quorum, policy.maxAge)
            options.otherViews = try compare.map { try OtherView.read($0) }
            for url in gossip { options.otherViews.append(try await gossipView(url, limits: try logOptions.limits())) }
            let result = try await KeyLookup(client: client, options: options).run(identity: identity)
            if let dir = writeProofs {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for (e, proof) in zip(result.entries, result.proofs) {
                    let file = TLogProof(extra: e.bytes, index: e.index, proof: proof, checkpoint: result.note)
                    try Files.writeAtomically(file.serialized, to: "\(dir)/\(e.index).tlog-proof")
                }
            }
            for n in result.notices { FileHandle.standardError.write(Data("notice: \(n)\n".utf8)) }
            let revived = revivedKeys(result.entries)
            if json {
                let items = zip(result.entries, result.authorisations).map { e, how -> [String: Any] in
                    var d: [String: Any] = ["index": e.index, "key_type": e.entry.keyType.rawValue, "public_key": Base64.encode(e.entry.publicKey),
                                            "timestamp_ms": e.entry.timestampMillis, "chained": e.entry.isChained, "revocation": e.entry.revocation,
                                            "authorised_by": how == .chained ? "previous_key" : (how == .first ? "first" : "operator"),
                                            "revived": revived.contains(e.index)]
                    if let p = e.entry.previousIndex { d["previous_index"] = p }
                    return d
                }
                let out: [String: Any] = ["identity": result.identity, "tree_size": result.checkpoint.size, "root": result.checkpoint.root.base64,
                                          "verified": true, "entries": items]
                print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            } else {
                let n = result.entries.count
                print("\(result.identity): \(n) entr\(n == 1 ? "y" : "ies"), verified in the log's checkpoint of size \(result.checkpoint.size)")
                for (e, how) in zip(result.entries, result.authorisations) {
                    let date = Date(timeIntervalSince1970: Double(e.entry.timestampMillis) / 1000)
                    print("  #\(e.index)  \(date)  \(e.entry.keyType.rawValue)  \(Base64.encode(e.entry.publicKey))  \(how.rawValue)"
                          + (e.entry.revocation ? "  REVOKED" : "")
                          + (revived.contains(e.index) ? "  (a key this identity had replaced or revoked, back again)" : ""))
                }
            }
        } catch let e as ValidationError { throw e } catch let e as ValidationFailure { throw ValidationError(e.description) } catch { throw fail("lookup", error) }
    }

    /// Entries that bring back a key the identity had before, after it was replaced or revoked.
    func revivedKeys(_ entries: [VerifiedEntry]) -> Set<UInt64> {
        var retired: Set<[UInt8]> = []
        var current: [UInt8]?
        var out: Set<UInt64> = []
        for e in entries {
            let key = Array(e.entry.keyType.rawValue.utf8) + e.entry.publicKey
            if e.entry.revocation {
                retired.insert(key)
                if current == key { current = nil }
                continue
            }
            if retired.contains(key) { out.insert(e.index) }
            if let c = current, c != key { retired.insert(c) }
            current = key
        }
        return out
    }
}

/// A checkpoint fetched from a gossip peer. A peer that cannot be reached is an error (exit 3): a
/// check that was asked for and silently skipped would read as a pass.
func gossipView(_ url: String, limits: HTTPLimits) async throws -> OtherView {
    guard let u = URL(string: url), u.scheme == "http" || u.scheme == "https" else { throw ValidationError("bad --gossip URL \(url)") }
    return OtherView(source: url, note: try await LogClient(base: u, limits: limits).checkpoint())
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check one inclusion proof: from a c2sp.org/tlog-proof file, or fetched from the log.",
        discussion: """
        Offline:  keyglass verify --vkey KEY --proof FILE        (the entry travels in the file's extra line)
        Online:   keyglass verify --vkey KEY --log URL --index N [--out FILE]
        """)

    @Option(name: .long, help: "The log's verifier key, or a file holding it.")
    var vkey: String

    @Option(name: .long, help: "A c2sp.org/tlog-proof file to check.")
    var proof: String?

    @Option(name: .long, help: "The log's base URL (online mode).")
    var log: String?

    @Option(name: .long, help: "Entry index to fetch and check (online mode).")
    var index: UInt64?

    @Option(name: .long, help: "Write the checked proof as a c2sp.org/tlog-proof file.")
    var out: String?

    func run() async throws {
        do {
            let key = try readVerifierKey(vkey)
            let tlogProof: TLogProof
            if let path = proof {
                tlogProof = try TLogProof.parse(try Files.readText(path))
            } else {
                guard let log, let index, let url = URL(string: log) else { throw ValidationError("give --proof FILE, or --log URL and --index N") }
                let client = LogClient(base: url)
                let note = try await client.checkpoint()
                let cp = try AnswerVerifier.openCheckpoint(note, logKey: key).checkpoint
                guard index < cp.size else { throw ValidationError("index \(index) is not below the log's size \(cp.size)") }
                let entry = try await client.entries(start: index, end: index + 1)
                guard let e = entry.entries.first, let bytes = Base64.decode(e.entry) else { throw ClientError.malformed("entry \(index)") }
                tlogProof = TLogProof(extra: bytes, index: index, proof: try await client.inclusionProof(index: index, treeSize: cp.size), checkpoint: note)
            }
            guard let bytes = tlogProof.extra else { throw ValidationError("the proof file carries no entry (no extra line)") }
            let cp = try AnswerVerifier.openCheckpoint(tlogProof.checkpoint, logKey: key).checkpoint
            let v = try AnswerVerifier.verifyEntry(index: tlogProof.index, entryBase64: Base64.encode(bytes),
                                                   proofBase64: tlogProof.proof.map(\.base64), checkpoint: cp)
            if let out { try Files.writeAtomically(tlogProof.serialized, to: out) }
            print("ok: entry \(v.index) (\(v.entry.identity) \(v.entry.keyType.rawValue) \(Base64.encode(v.entry.publicKey))) is in the tree of size \(cp.size) signed by \(key.name)")
        } catch let e as ValidationError { throw e } catch { throw fail("verify", error) }
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an Ed25519 key pair: FILE (private, 0600) and FILE.pub (public, base64).",
        discussion: "Publish FILE.pub, then sign later rotations with `keyglass publish --sign-with FILE`.")

    @Option(name: .long, help: "Path of the private key file to create.")
    var out: String

    func run() throws {
        do {
            let pub = try KeyFiles.generate(at: out)
            print("wrote \(out) (private, 0600) and \(out).pub")
            print(Base64.encode(pub))
        } catch { throw fail("keygen", error) }
    }
}
