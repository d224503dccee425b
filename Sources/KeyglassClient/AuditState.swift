import Foundation
import KeyglassCore
import KeyglassFiles

/// What the auditor remembers between runs, in DIR/state.json (replaced atomically). Memory and
/// state stay bounded whatever the log's size: the tree is kept as its compact range (≤ 64 hashes).
struct AuditState: Codable, Equatable {
    /// The chain of one watched identity, as far as the auditor has seen it.
    struct Chain: Codable, Equatable {
        var index: UInt64
        var keyType: String
        var publicKey: String
        var revoked: Bool

        /// The identity's newest entry as the rotation rule takes it.
        func previous(identity: String) -> RotationRule.Previous? {
            guard let type = KeyType(rawValue: keyType), let key = Base64.decode(publicKey) else { return nil }
            return RotationRule.Previous(index: index, identity: identity, keyType: type, publicKey: key, revoked: revoked)
        }
    }

    /// A position inside the entries of one checkpoint, saved while a long audit runs so that a
    /// killed audit resumes there instead of from the start.
    struct Cursor: Codable, Equatable {
        var size: UInt64
        var range: [String]
        var lastTimestamp: UInt64
        var chains: [String: Chain]

        init(size: UInt64, range: CompactRange, lastTimestamp: UInt64, chains: [String: Chain]) {
            self.size = size
            self.range = range.hashes.map(\.base64)
            self.lastTimestamp = lastTimestamp
            self.chains = chains
        }

        func compactRange() throws -> CompactRange {
            let hashes = range.compactMap { Hash(base64: $0) }
            guard hashes.count == range.count, let r = CompactRange(size: size, hashes: hashes) else {
                throw AuditError.badState("stored tree edge does not fit size \(size)")
            }
            return r
        }
    }

    var version = 1
    /// The pinned verifier key: a later different key is an error, never a silent switch.
    var verifierKey: String
    /// The newest checkpoint verified and fully audited (signed note), nil before the first run.
    var checkpoint: String?
    var audited: Cursor
    /// A verified, consistency-checked checkpoint whose entries are being audited, and how far.
    var pendingCheckpoint: String?
    var pending: Cursor?
    /// Alerts found in the part of a pending audit already done (reported when it completes).
    var pendingAlerts: [Alert]?
    /// Watched identities whose whole audited history has been checked. An identity added to the
    /// watch file later is missing here, and the next run re-scans the audited entries for it.
    var watched: [String]?

    static func load(_ dir: String) throws -> AuditState? {
        let path = dir + "/state.json"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(AuditState.self, from: Data(try Files.readText(path).utf8))
        } catch {
            throw AuditError.badState("\(path): \(error)")
        }
    }

    func save(_ dir: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        try Files.writeAtomically([UInt8](try e.encode(self)), to: dir + "/state.json")
    }
}

enum AuditError: Error, CustomStringConvertible {
    case badState(String)
    case pinnedKeyDiffers(pinned: String, given: String)
    var description: String {
        switch self {
        case let .badState(m): return "audit state is unusable: \(m)"
        case let .pinnedKeyDiffers(p, g): return "the state pins verifier key \(p), but \(g) was given; refusing to switch keys silently (use a new --state directory if the log really rotated its key)"
        }
    }
}
