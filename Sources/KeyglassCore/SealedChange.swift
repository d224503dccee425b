import CKeyglassSodium

/// What a change entry hides behind its commitment (Spec/directory.md, "Sealed changes"): the
/// change itself, who authorised it, the label's previous index and the set it leaves. The log
/// keeps it beside the entry and gives it only to those allowed to read the label; whoever holds it
/// can check it is what the entry committed to (`opens`) and judge the change by the rule.
public struct SealedChange: Equatable, Sendable {
    /// Random, fresh for every change: without it the commitment says nothing of the rest.
    public let opening: [UInt8]
    /// What the change does and who authorised it.
    public let change: DeviceChange
    /// The label's newest index before the change; nil for its first.
    public let previousIndex: UInt64?
    /// The digest of the devices and tombstones after the change (`DeviceSet.setDigest`).
    public let setDigest: Hash

    /// An opening's length.
    public static let openingLength = 16

    /// A sealed change from its parts.
    public init(opening: [UInt8], change: DeviceChange, previousIndex: UInt64?, setDigest: Hash) {
        precondition(opening.count == Self.openingLength)
        self.opening = opening
        self.change = change
        self.previousIndex = previousIndex
        self.setDigest = setDigest
    }

    /// A sealed change with a fresh random opening.
    public static func sealing(_ change: DeviceChange, previousIndex: UInt64?, setDigest: Hash) -> SealedChange {
        SealedChange(opening: Ed25519.randomBytes(openingLength), change: change, previousIndex: previousIndex, setDigest: setDigest)
    }

    /// The canonical encoding: the opening, then everything it hides.
    public var encoded: [UInt8] { opening + body }

    /// Everything after the opening: what the commitment binds with the label and version.
    private var body: [UInt8] {
        var b: [UInt8] = [change.kind.code]
        b.appendField16(change.kind.target)
        switch change.authority {
        case .operator:
            b.append(0x00)
        case .chained(let signer, let signature):
            b.append(0x01)
            b += signer + signature
        }
        b.appendBigEndian(previousIndex ?? UInt64.max)
        b += setDigest.bytes
        return b
    }

    /// The commitment a change entry of `label` at `version` carries for this sealed change:
    /// HMAC-SHA256 under the fixed key, over opening ‖ label ‖ version ‖ body.
    public func commitment(label: Hash, version: UInt64) -> Hash {
        var message = opening + label.bytes
        message.appendBigEndian(version)
        message += body
        return Self.hmac(message)
    }

    /// True if this is what the change entry (`label`, `version`, kind `kindCode`, `commitment`)
    /// committed to. The comparison is of public values, so it need not be constant-time.
    public func opens(commitment: Hash, label: Hash, version: UInt64, kindCode: UInt8) -> Bool {
        change.kind.code == kindCode && self.commitment(label: label, version: version) == commitment
    }

    /// K = SHA-256("keyglass-commitment-key-v1"): a fixed public key, so the HMAC binds (as in IETF
    /// KEYTRANS); hiding comes from the opening.
    static let commitmentKey = Hash.sha256(Array("keyglass-commitment-key-v1".utf8)).bytes

    private static func hmac(_ message: [UInt8]) -> Hash { HMACSHA256.mac(key: commitmentKey, message) }

    /// Why bytes are not a sealed change.
    public struct Malformed: Error, Equatable, CustomStringConvertible {
        /// The reason in words.
        public let description: String
    }

    /// Parses exactly one sealed change; refuses every other byte string.
    public static func parse(_ bytes: [UInt8]) throws(Malformed) -> SealedChange {
        let result: Result<SealedChange, Malformed> = bytes.withUnsafeBytes { b in
            do throws(Malformed) { return .success(try parse(b)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func parse(_ b: UnsafeRawBufferPointer) throws(Malformed) -> SealedChange {
        var r = ByteReader(b)
        guard let o = r.bytes(openingLength), let code = r.u8(), let target = r.field16() else {
            throw Malformed(description: "sealed change cut short")
        }
        let change: DeviceChange
        do { change = try DeviceChange.parse(code: code, target: Array(b[target]), authority: &r, in: b) } catch {
            throw Malformed(description: "sealed change: \(error.description)")
        }
        guard let previous = r.u64(), let digest = r.bytes(32) else { throw Malformed(description: "sealed change cut short") }
        guard r.atEnd else { throw Malformed(description: "bytes after the sealed change") }
        return SealedChange(
            opening: Array(b[o]), change: change, previousIndex: previous == .max ? nil : previous, setDigest: Hash(bytes: Array(b[digest]))!)
    }
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key, from libsodium.
public enum HMACSHA256 {
    /// The MAC of `message` under `key` (exactly 32 bytes).
    public static func mac(key: [UInt8], _ message: [UInt8]) -> Hash {
        precondition(Ed25519.ready, "libsodium failed to initialise")
        precondition(key.count == 32, "an HMAC-SHA256 key here is 32 bytes")
        var out = [UInt8](repeating: 0, count: 32)
        _ = message.withUnsafeBufferPointer { m in
            key.withUnsafeBufferPointer { k in
                crypto_auth_hmacsha256(&out, m.baseAddress, UInt64(m.count), k.baseAddress!)
            }
        }
        return Hash(bytes: out)!
    }
}

extension SealedChange {
    /// `change` sealed as a writer seals it after the label's state `before`: the previous index
    /// is the label's newest, the set digest that of the set the rule leaves (the set unchanged,
    /// for a change the rule calls invalid).
    public static func sealing(_ change: DeviceChange, after before: DeviceSet, origin: String, label: Hash) -> SealedChange {
        var after = before
        if case .invalid = DeviceRule.judge(change, to: before, origin: origin, label: label) {} else { after.apply(change.kind) }
        return sealing(change, previousIndex: before.newestIndex, setDigest: after.setDigest)
    }
}
