/// One change to a label's device set (Spec/directory.md): what it does, and who authorised it.
public struct DeviceChange: Equatable, Sendable {
    /// What the change does.
    public enum Kind: Equatable, Sendable {
        /// A new device.
        case add(DeviceRecord)
        /// New keys for an active device: same id, another record.
        case rotate(DeviceRecord)
        /// The device leaves the set; its id is tombstoned.
        case revoke(deviceID: [UInt8])
        /// Every active device is revoked and the record is the only device (account recovery).
        case reset(DeviceRecord)

        /// The kind's byte in the change message.
        public var code: UInt8 {
            switch self {
            case .add: return 0x01
            case .rotate: return 0x02
            case .revoke: return 0x03
            case .reset: return 0x04
            }
        }

        /// The record's encoding, or the revoked id.
        public var target: [UInt8] {
            switch self {
            case .add(let r), .rotate(let r), .reset(let r): return r.encoded
            case .revoke(let id): return id
            }
        }
    }

    /// Who authorised the change.
    public enum Authority: Equatable, Sendable {
        /// The provider's back end (the publish token).
        case `operator`
        /// An active device of the label, by its current signing key over `message`.
        case chained(signer: [UInt8], signature: [UInt8])
    }

    /// What the change does.
    public let kind: Kind
    /// Who authorised it.
    public let authority: Authority

    /// A change as made or as read from an entry; `DeviceRule.judge` decides what it is.
    public init(kind: Kind, authority: Authority) {
        self.kind = kind
        self.authority = authority
    }

    /// Why a change's bytes do not parse.
    public struct Malformed: Error, Equatable, CustomStringConvertible {
        /// The reason in words.
        public let description: String
    }

    /// The change of kind `code` with encoded `target`, its authority read from `r` (over `b`):
    /// the framing a sealed change uses. A target that breaks its rules makes the whole change
    /// malformed.
    static func parse(code: UInt8, target: [UInt8], authority r: inout ByteReader, in b: UnsafeRawBufferPointer) throws(Malformed) -> DeviceChange {
        let kind: Kind
        switch code {
        case 0x03:
            guard target.count == DeviceRecord.idLength else { throw Malformed(description: "a revoke names a 16-byte device id") }
            kind = .revoke(deviceID: target)
        case 0x01, 0x02, 0x04:
            let record: DeviceRecord
            do { record = try DeviceRecord.parse(target) } catch { throw Malformed(description: "\(error)") }
            kind = code == 0x01 ? .add(record) : code == 0x02 ? .rotate(record) : .reset(record)
        default:
            throw Malformed(description: "unknown change kind \(code)")
        }
        switch r.u8() {
        case 0x00:
            return DeviceChange(kind: kind, authority: .operator)
        case 0x01:
            guard let signer = r.bytes(16), let signature = r.bytes(64) else { throw Malformed(description: "chained change cut short") }
            return DeviceChange(kind: kind, authority: .chained(signer: Array(b[signer]), signature: Array(b[signature])))
        case let a:
            throw Malformed(description: "unknown authority \(a.map(String.init) ?? "(none)")")
        }
    }

    /// The domain separator that starts every change message.
    static let messagePrefix = Array("keyglass-device-change-v1".utf8) + [0x00]

    /// The bytes a chained change's signer signs: they bind the log, the label, the signer, the
    /// label's newest applied entry (so a signature is good for one position only) and the change.
    public static func message(origin: String, label: Hash, signer: [UInt8], previousIndex: UInt64, kind: Kind) -> [UInt8] {
        var m = messagePrefix
        m.appendField8(Array(origin.utf8))
        m += label.bytes
        m += signer
        m.appendBigEndian(previousIndex)
        m.append(kind.code)
        m += kind.target
        return m
    }

    /// A chained change: `kind`, signed by the device `signer` with the seed of its signing key.
    public static func signed(_ kind: Kind, origin: String, label: Hash, signer: [UInt8], signerSeed: [UInt8], previousIndex: UInt64) -> DeviceChange
    {
        let m = message(origin: origin, label: label, signer: signer, previousIndex: previousIndex, kind: kind)
        return DeviceChange(kind: kind, authority: .chained(signer: signer, signature: Ed25519.sign(message: m, seed: signerSeed)))
    }
}
