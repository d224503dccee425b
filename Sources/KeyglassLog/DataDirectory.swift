import Foundation
import KeyglassCore

/// The server's data directory: the database, the signing key and the publish token.
public struct DataDirectory: Sendable {
    public let path: String
    public var database: String { path + "/log.sqlite" }
    public var signingKey: String { path + "/signing-key" }
    public var publishToken: String { path + "/publish-token" }
    public var verifierKey: String { path + "/verifier-key" }

    public init(path: String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
    }

    public enum InitError: Error, CustomStringConvertible {
        case alreadyInitialised(String)
        case badOrigin(String)
        public var description: String {
            switch self {
            case let .alreadyInitialised(p): return "\(p) already holds a signing key; refusing to overwrite it"
            case let .badOrigin(o): return "origin \"\(o)\" is not a valid key name (no spaces or '+'; e.g. keys.example.com/log)"
            }
        }
    }

    /// Creates the directory (0700), a new Ed25519 signing key and publish token (0600), and the
    /// database with the log's first, empty checkpoint. Returns the verifier key.
    public func initialise(origin: String) async throws -> NoteVerifierKey {
        let fm = FileManager.default
        if fm.fileExists(atPath: signingKey) { throw InitError.alreadyInitialised(signingKey) }
        let signer: NoteSigner
        do { signer = try NoteSigner.generate(name: origin) } catch { throw InitError.badOrigin(origin) }
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if fm.fileExists(atPath: database) { throw InitError.alreadyInitialised(database) }
        try SecretFile.create(signingKey, contents: signer.encodedPrivateKey + "\n")
        let token = Base64.encode(Ed25519.randomBytes(32))
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        try SecretFile.create(publishToken, contents: token + "\n")
        try (signer.verifierKey.description + "\n").write(toFile: verifierKey, atomically: true, encoding: .utf8)
        let store = try LogStore(path: database, readers: 1)
        _ = try await Sequencer.initialise(store: store, signer: signer)
        return signer.verifierKey
    }

    public func loadSigner() throws -> NoteSigner {
        try NoteSigner(encoded: try SecretFile.read(signingKey))
    }

    public func loadToken() throws -> String {
        try SecretFile.read(publishToken).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
