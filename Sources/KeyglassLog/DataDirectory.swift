import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KeyglassCore

/// The server's data directory: the database, the signing key and the publish token.
public struct DataDirectory: Sendable {
    public let path: String
    public var database: String { path + "/log.sqlite" }
    public var signingKey: String { path + "/signing-key" }
    public var publishToken: String { path + "/publish-token" }
    /// SHA-256 of the token, hex: all the server needs. The token itself can then live only in the
    /// provider's back end.
    public var publishTokenHash: String { path + "/publish-token.sha256" }
    public var verifierKey: String { path + "/verifier-key" }
    /// A v2 log's (key directory's) VRF key: a 32-byte seed, base64 (0600). Its presence is what
    /// makes `serve` serve the directory's API.
    public var vrfKey: String { path + "/vrf-key" }
    public var isDirectory: Bool { FileManager.default.fileExists(atPath: vrfKey) }
    /// A key directory's first lookup credential (0600), made by `init --directory`: lookups and
    /// histories carry sealed changes, so they need one (`keyglass-server lookup-token` adds more).
    public var lookupToken: String { path + "/lookup-token" }
    /// SHA-256 of every lookup credential, hex, with its name: one per line, all the server reads.
    public var lookupTokenHashes: String { path + "/lookup-tokens.sha256" }
    /// A key directory's derived state (the map's nodes, label states as of the newest head):
    /// rebuilt from the log when missing, so it is not backed up, and `erase` deletes it.
    public var directoryState: String { path + "/directory-state.sqlite" }
    /// Held (flock) by a key directory's server while it serves: commands that change what it
    /// keeps in memory (`erase`) refuse to run beside it.
    public var serveLock: String { path + "/serve.lock" }

    public init(path: String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
    }

    public enum InitError: Error, CustomStringConvertible {
        case alreadyInitialised(String)
        case badOrigin(String)
        case badTokenName(String)
        public var description: String {
            switch self {
            case let .badTokenName(n): return "token name \"\(n)\": 1 to 64 of letters, digits, '.', '-', '_', not used before"
            case let .alreadyInitialised(p): return "\(p) is already initialised; refusing to overwrite it"
            case let .badOrigin(o): return "origin \"\(o)\" is not a valid key name (no spaces or '+'; e.g. keys.example.com/log)"
            }
        }
    }

    /// Creates the directory (0700), a new Ed25519 signing key and publish token (0600), and the
    /// database with the log's first, empty checkpoint. Returns the verifier key.
    public func initialise(origin: String) async throws -> NoteVerifierKey {
        let signer = try createKeys(origin: origin)
        let storage = try SQLiteStorage(path: database, readers: 1)
        // Closed here, not whenever the last reference goes: a server (or a copy of the directory)
        // that comes next must find the database whole, with no connection of ours still open.
        defer { storage.close() }
        _ = try LogAdmin.initialise(storage, signer: signer)
        return signer.verifierKey
    }

    /// Names the storage of a log whose database is not DIR/log.sqlite (PostgreSQL), without any
    /// password: `serve` without `--storage` then says where the log is instead of "no database".
    public var storageMarker: String { path + "/storage" }

    /// Like `initialise`, with the log in `storage` (PostgreSQL) rather than DIR/log.sqlite; DIR keeps
    /// the keys and the token's hash. Refuses a database that already holds a log: a second server of
    /// one log copies the first one's DIR instead of running `init` again.
    public func initialise(origin: String, storage: any LogStorage, describedAs description: String) async throws -> NoteVerifierKey {
        guard try storage.latestCheckpoint() == nil else {
            throw InitError.alreadyInitialised("\(description) (it already holds a log: copy the data directory of a server of that log instead)")
        }
        let signer = try createKeys(origin: origin)
        try (description + "\n").write(toFile: storageMarker, atomically: true, encoding: .utf8)
        _ = try LogAdmin.initialise(storage, signer: signer)
        return signer.verifierKey
    }

    /// Like `initialise`, for a v2 log (the key directory): also a VRF key (0600), and leaf 0, the
    /// config naming the origin and the VRF public key. Returns the verifier key and the VRF key.
    public func initialiseDirectory(origin: String) async throws -> (verifierKey: NoteVerifierKey, vrfPublicKey: [UInt8]) {
        if FileManager.default.fileExists(atPath: vrfKey) { throw InitError.alreadyInitialised(vrfKey) }
        let vrfSeed = Ed25519.randomBytes(32)
        let signer = try createKeys(origin: origin) {
            try SecretFile.create(vrfKey, contents: Base64.encode(vrfSeed) + "\n")
            let token = Self.newToken()
            try SecretFile.create(lookupToken, contents: token + "\n")
            try SecretFile.create(lookupTokenHashes, contents: Hash.sha256(Array(token.utf8)).hex + " default\n")
        }
        let storage = try SQLiteStorage(path: database, readers: 1, secureDelete: true)
        defer { storage.close() }
        let log = try DirectoryLog.create(storage: storage, signer: signer, vrfSeed: vrfSeed)
        return (signer.verifierKey, log.vrfPublicKey)
    }

    /// Creates the directory (0700), the signing key and publish token (0600, never overwritten),
    /// the token's hash and the verifier key; `more` writes further secrets first (a directory's
    /// VRF key). Returns the signer. The database is the caller's.
    private func createKeys(origin: String, more: () throws -> Void = {}) throws -> NoteSigner {
        let fm = FileManager.default
        if fm.fileExists(atPath: signingKey) { throw InitError.alreadyInitialised(signingKey) }
        let signer: NoteSigner
        do { signer = try NoteSigner.generate(name: origin) } catch { throw InitError.badOrigin(origin) }
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if fm.fileExists(atPath: database) { throw InitError.alreadyInitialised(database) }
        try more()
        try SecretFile.create(signingKey, contents: signer.encodedPrivateKey + "\n")
        let token = Self.newToken()
        try SecretFile.create(publishToken, contents: token + "\n")
        try SecretFile.create(publishTokenHash, contents: Hash.sha256(Array(token.utf8)).hex + "\n")
        try (signer.verifierKey.description + "\n").write(toFile: verifierKey, atomically: true, encoding: .utf8)
        return signer
    }

    /// 32 random bytes as URL-safe base64 without padding: a bearer token.
    static func newToken() -> String {
        Base64.encode(Ed25519.randomBytes(32))
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// A key directory's lookup credentials: each one's name and SHA-256 (the tokens themselves
    /// are not kept here, but for the first, in `lookupToken`).
    public func loadLookupTokens() throws -> [(name: String, hash: Hash)] {
        try SecretFile.read(lookupTokenHashes).split(whereSeparator: \.isNewline).compactMap { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { return nil }
            let parts = trimmed.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let h = Hash(hex: String(parts[0])) else { throw SecretFile.SecretFileError.cannotRead(lookupTokenHashes) }
            return (String(parts[1]), h)
        }
    }

    /// Adds a lookup credential named `name` (letters, digits, `.`, `-`, `_`; new): returns the
    /// token, which is not stored, only its hash. A running server reads the list when it starts.
    public func addLookupToken(name: String) throws -> String {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw InitError.badTokenName(name)
        }
        guard try !loadLookupTokens().contains(where: { $0.name == name }) else { throw InitError.badTokenName("\(name) (already used)") }
        let token = Self.newToken()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: lookupTokenHashes))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((Hash.sha256(Array(token.utf8)).hex + " " + name + "\n").utf8))
        try handle.synchronize()
        return token
    }

    /// The VRF key's seed (v2 logs).
    public func loadVRFSeed() throws -> [UInt8] {
        guard let seed = Base64.decode(try SecretFile.read(vrfKey).trimmingCharacters(in: .whitespacesAndNewlines)), seed.count == 32 else {
            throw SecretFile.SecretFileError.cannotRead(vrfKey)
        }
        return seed
    }

    public func loadSigner() throws -> NoteSigner {
        try NoteSigner(encoded: try SecretFile.read(signingKey))
    }

    public func loadToken() throws -> String {
        try SecretFile.read(publishToken).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The token's hash: from publish-token.sha256, or hashed from publish-token if only that exists.
    public func loadTokenHash() throws -> Hash {
        if FileManager.default.fileExists(atPath: publishTokenHash) {
            guard let h = Hash(hex: try SecretFile.read(publishTokenHash).trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw SecretFile.SecretFileError.cannotRead(publishTokenHash)
            }
            return h
        }
        return Hash.sha256(Array(try loadToken().utf8))
    }

    /// Replaces the signing key, keeping the log's origin (the key's name). The old key is kept as
    /// signing-key.<keyid>.retired (0600) and its verifier key appended to verifier-keys.history,
    /// so every checkpoint it signed stays verifiable. The newest checkpoint is re-signed with the new
    /// key (same size, same root) so the server never serves a note the new key did not sign.
    /// `storage`: the log's engine (nil: DIR/log.sqlite).
    public func rotateSigningKey(storage given: (any LogStorage)? = nil) async throws -> (old: NoteVerifierKey, new: NoteVerifierKey) {
        let old = try loadSigner()
        let new = try NoteSigner.generate(name: old.name)
        let retired = "\(path)/signing-key.\(String(old.verifierKey.keyID, radix: 16)).retired"
        try SecretFile.create(retired, contents: old.encodedPrivateKey + "\n")
        let storage = try given ?? SQLiteStorage(path: database, readers: 1)
        defer { if given == nil { storage.close() } }
        try LogAdmin.resign(storage, with: new)
        let history = (try? String(contentsOfFile: path + "/verifier-keys.history", encoding: .utf8)) ?? ""
        try (history + old.verifierKey.description + "\n").write(toFile: path + "/verifier-keys.history", atomically: true, encoding: .utf8)
        let tmp = signingKey + ".new"
        try? FileManager.default.removeItem(atPath: tmp)
        try SecretFile.create(tmp, contents: new.encodedPrivateKey + "\n")
        guard rename(tmp, signingKey) == 0 else { throw SecretFile.SecretFileError.cannotWrite(signingKey, errno) }
        try (new.verifierKey.description + "\n").write(toFile: verifierKey, atomically: true, encoding: .utf8)
        return (old.verifierKey, new.verifierKey)
    }
}
