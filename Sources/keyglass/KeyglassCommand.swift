import ArgumentParser
import Foundation
import KeyglassClient
import KeyglassCore

@main
struct KeyglassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyglass",
        abstract: "Publish keys to a Keyglass log, look them up with proofs, and audit the log.",
        discussion: """
        Nothing the log says is trusted: every answer is checked against the log's verifier key
        (printed by `keyglass-server init`, also in DATA/verifier-key) and the Merkle proofs.

        Exit codes: 0 ok; 1 could not check (network, bad input); 2 ALERT: the log misbehaved, and
        the evidence is printed.
        """,
        subcommands: [Publish.self, Lookup.self, Verify.self, Keygen.self, Audit.self, WitnessCommand.self])
}

/// Options every command that talks to a log shares.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "The log's base URL, e.g. http://127.0.0.1:8080")
    var log: String

    @Option(name: .long, help: "The log's verifier key (name+hash+base64), or a file holding it.")
    var vkey: String

    func client() throws -> LogClient {
        guard let url = URL(string: log), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--log must be an http(s) URL")
        }
        return LogClient(base: url)
    }

    func verifierKey() throws -> NoteVerifierKey { try readVerifierKey(vkey) }
}

func readVerifierKey(_ value: String) throws -> NoteVerifierKey {
    var text = value
    if FileManager.default.fileExists(atPath: value) { text = try Files.readText(value) }
    do { return try NoteVerifierKey(text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
        throw ValidationError("--vkey: \(error)")
    }
}

/// Maps a failure to the CLI's exit codes: verification failures are evidence (2), the rest 1.
func fail(_ command: String, _ error: Error) -> ExitCode {
    let message = "\(error)"
    if error is VerificationError {
        FileHandle.standardError.write(Data("ALERT: \(command): the log's answer does not verify: \(message)\n".utf8))
        return ExitCode(2)
    }
    FileHandle.standardError.write(Data("keyglass \(command): \(message)\n".utf8))
    return ExitCode(1)
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a public key for an identity, then verify the log's checkpoint and inclusion proof.",
        discussion: """
        Authorise with the provider's operator token (--token-file), or with the identity's current
        Ed25519 private key (--sign-with, made by `keyglass keygen`) for a self-signed, chained rotation.
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
            let token = try tokenFile.map { try Files.readPrivate($0).trimmingCharacters(in: .whitespacesAndNewlines) }
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
        abstract: "Print an identity's key history after verifying the checkpoint and every inclusion proof.",
        discussion: "Refuses (exit 2) an answer whose signature or proofs do not verify.")

    @OptionGroup var logOptions: LogOptions

    @Argument(help: "The identity.")
    var identity: String

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    @Option(name: .long, help: "Also write each entry's proof as a c2sp.org/tlog-proof file into this directory.")
    var writeProofs: String?

    func run() async throws {
        do {
            let client = try logOptions.client()
            let key = try logOptions.verifierKey()
            let normalized = try Identity.normalize(identity)
            let answer = try await client.keys(identity: normalized)
            let (cp, entries) = try AnswerVerifier.verifyLookup(answer, logKey: key, identity: normalized)
            if let dir = writeProofs {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for (e, raw) in zip(entries, answer.entries) {
                    let proof = TLogProof(extra: e.bytes, index: e.index, proof: (raw.inclusion_proof ?? []).compactMap { Hash(base64: $0) }, checkpoint: answer.checkpoint)
                    try Files.writeAtomically(proof.serialized, to: "\(dir)/\(e.index).tlog-proof")
                }
            }
            if json {
                let items = entries.map { e -> [String: Any] in
                    var d: [String: Any] = ["index": e.index, "key_type": e.entry.keyType.rawValue, "public_key": Base64.encode(e.entry.publicKey),
                                            "timestamp_ms": e.entry.timestampMillis, "chained": e.entry.isChained, "revocation": e.entry.revocation]
                    if let p = e.entry.previousIndex { d["previous_index"] = p }
                    return d
                }
                let out: [String: Any] = ["identity": normalized, "tree_size": cp.checkpoint.size, "root": cp.checkpoint.root.base64, "verified": true, "entries": items]
                print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print("\(normalized): \(entries.count) entr\(entries.count == 1 ? "y" : "ies"), verified in checkpoint of size \(cp.checkpoint.size)")
                for e in entries {
                    let date = Date(timeIntervalSince1970: Double(e.entry.timestampMillis) / 1000)
                    let how = e.entry.isChained ? "chained" : (e.entry.previousIndex == nil ? "first" : "operator")
                    print("  #\(e.index)  \(date)  \(e.entry.keyType.rawValue)  \(Base64.encode(e.entry.publicKey))  \(how)\(e.entry.revocation ? "  REVOKED" : "")")
                }
            }
        } catch let e as ValidationError { throw e } catch { throw fail("lookup", error) }
    }
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
