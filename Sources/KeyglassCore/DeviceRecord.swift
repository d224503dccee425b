/// One device of an identity's set (Spec/directory.md): a 16-byte id the client chose, a mandatory
/// Ed25519 signing key and up to two encryption keys. The encoding is canonical; `parse` refuses
/// every other byte string, and every key is checked in full.
public struct DeviceRecord: Equatable, Hashable, Sendable {
    /// 16 bytes, unique for ever within the identity.
    public let id: [UInt8]
    /// The Ed25519 key that signs this device's chained changes.
    public let signingKey: [UInt8]
    /// At most one key of each type, in type order.
    public let encryptionKeys: [EncryptionKey]

    /// An encryption key of a device.
    public struct EncryptionKey: Equatable, Hashable, Sendable {
        /// X25519 or P-256.
        public let type: KeyType
        /// The key's bytes, checked for its type.
        public let key: [UInt8]

        /// An encryption key; `DeviceRecord.init` checks it.
        public init(type: KeyType, key: [UInt8]) {
            self.type = type
            self.key = key
        }
    }

    /// Why bytes or fields are not a device record.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)

        /// The reason in words.
        public var description: String {
            switch self {
            case .malformed(let why): return "device record: \(why)"
            }
        }
    }

    static let idLength = 16

    /// A record from its fields, each checked.
    public init(id: [UInt8], signingKey: [UInt8], encryptionKeys: [EncryptionKey] = []) throws(Failure) {
        guard id.count == Self.idLength else { throw .malformed("the device id must be 16 bytes, got \(id.count)") }
        do { try KeyType.ed25519.validate(signingKey, check: .full) } catch { throw .malformed("signing key: \(error)") }
        guard encryptionKeys.count <= 2 else { throw .malformed("at most 2 encryption keys, got \(encryptionKeys.count)") }
        var lastCode: UInt8 = 0
        for k in encryptionKeys {
            guard let code = Self.code(of: k.type) else { throw .malformed("\(k.type.rawValue) is not an encryption key type") }
            guard code > lastCode else { throw .malformed("encryption keys must be in type order, one of each type") }
            lastCode = code
            do { try k.type.validate(k.key, check: .full) } catch { throw .malformed("encryption key: \(error)") }
        }
        self.id = id
        self.signingKey = signingKey
        self.encryptionKeys = encryptionKeys
    }

    /// The canonical encoding: id ‖ signing key ‖ count ‖ (type ‖ length ‖ key)…
    public var encoded: [UInt8] {
        var out = id + signingKey
        out.append(UInt8(encryptionKeys.count))
        for k in encryptionKeys {
            out.append(Self.code(of: k.type)!)  // init accepted only types with a code
            out.appendField8(k.key)
        }
        return out
    }

    /// Parses exactly one record; anything before or after it, or any field out of rule, is refused.
    public static func parse(_ bytes: [UInt8]) throws(Failure) -> DeviceRecord {
        let result: Result<DeviceRecord, Failure> = bytes.withUnsafeBytes { b in
            var r = ByteReader(b)
            guard let id = r.bytes(idLength), let key = r.bytes(32), let n = r.u8() else { return .failure(.malformed("cut short")) }
            var keys: [EncryptionKey] = []
            for _ in 0..<n {
                guard let code = r.u8(), let k = r.field8() else { return .failure(.malformed("cut short")) }
                guard let type = type(of: code) else { return .failure(.malformed("unknown encryption key type \(code)")) }
                keys.append(EncryptionKey(type: type, key: Array(b[k])))
            }
            guard r.atEnd else { return .failure(.malformed("bytes after the record")) }
            do throws(Failure) {
                return .success(try DeviceRecord(id: Array(b[id]), signingKey: Array(b[key]), encryptionKeys: keys))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// A record whose keys were checked when it was first parsed from the log, restored from an
    /// auditor's own state (`DeviceSet(state:)`): the layout is checked, the keys are not checked
    /// again (a full Ed25519 check is a scalar multiplication, and a label may have 1,000 devices).
    static func restore(_ bytes: ArraySlice<UInt8>) -> DeviceRecord? {
        let b = Array(bytes)
        guard b.count >= idLength + 33 else { return nil }
        var keys: [EncryptionKey] = []
        var at = idLength + 33
        for _ in 0..<Int(b[idLength + 32]) {
            guard at + 2 <= b.count, let type = type(of: b[at]) else { return nil }
            let length = Int(b[at + 1])
            guard at + 2 + length <= b.count else { return nil }
            keys.append(EncryptionKey(type: type, key: Array(b[at + 2..<at + 2 + length])))
            at += 2 + length
        }
        guard at == b.count else { return nil }
        return DeviceRecord(unchecked: Array(b[0..<idLength]), signingKey: Array(b[idLength..<idLength + 32]), encryptionKeys: keys)
    }

    private init(unchecked id: [UInt8], signingKey: [UInt8], encryptionKeys: [EncryptionKey]) {
        self.id = id
        self.signingKey = signingKey
        self.encryptionKeys = encryptionKeys
    }

    private static func code(of type: KeyType) -> UInt8? {
        switch type {
        case .x25519: return 0x01
        case .p256: return 0x02
        case .ed25519: return nil
        }
    }

    private static func type(of code: UInt8) -> KeyType? {
        switch code {
        case 0x01: return .x25519
        case 0x02: return .p256
        default: return nil
        }
    }
}
