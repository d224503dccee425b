/// A log entry: one public key published for one identity. The canonical binary encoding is in
/// Spec/entry.md; `encode` and `parse` are its only implementation, and `parse` accepts exactly the
/// bytes `encode` would produce.
public struct KeyEntry: Sendable, Equatable {
    /// The first byte of every entry. Any change to the format, a new key type included, is a new version.
    public static let version: UInt8 = 1
    /// Entry bundles prefix each entry with a uint16 length (c2sp.org/tlog-tiles).
    public static let maxEncodedSize = 65535
    /// Largest public key accepted, in bytes (Spec/entry.md). The largest v1 key, an uncompressed
    /// P-256 point, is 65.
    public static let maxKeyBytes = 1024
    /// Longest key type name accepted, in bytes (Spec/entry.md).
    public static let maxKeyTypeBytes = 16

    /// The flags byte (Spec/entry.md). Any other bit set is refused by `parse`, so a flag added later is
    /// never silently ignored.
    public struct Flags: OptionSet, Sendable, Hashable {
        /// The byte as encoded.
        public let rawValue: UInt8
        /// Any byte; `parse`, not this initialiser, refuses unknown bits.
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The entry withdraws this key for the identity.
        public static let revocation = Flags(rawValue: 1 << 0)
        /// `previousIndex` is present: the identity had an entry before this one.
        public static let hasPrevious = Flags(rawValue: 1 << 1)
        /// `signature` is present: the previous entry's key signed this one (self-authorised).
        public static let chained = Flags(rawValue: 1 << 2)
        static let known: Flags = [.revocation, .hasPrevious, .chained]
    }

    /// Milliseconds since the Unix epoch, set by the log when it sequenced the entry.
    public var timestampMillis: UInt64
    /// NFC-normalised identity.
    public var identity: String
    /// How `publicKey` is encoded and checked.
    public var keyType: KeyType
    /// The key in its type's encoding: 32 raw bytes for Ed25519 and X25519, a SEC1 point for P-256.
    public var publicKey: [UInt8]
    /// True if the entry withdraws `publicKey` for the identity from this index on, instead of publishing it.
    public var revocation: Bool
    /// Index of this identity's previous entry in the log, if any.
    public var previousIndex: UInt64?
    /// Ed25519 signature by the previous entry's key over `rotationMessage`, if self-authorised.
    public var signature: [UInt8]?

    /// True when the owner's previous key authorised the entry (it carries `signature`), false when the
    /// provider's operator did or when it is the identity's first.
    public var isChained: Bool { signature != nil }

    /// An entry from its fields. Nothing is checked here: `validate` and `encode` do it.
    public init(
        timestampMillis: UInt64, identity: String, keyType: KeyType, publicKey: [UInt8],
        revocation: Bool = false, previousIndex: UInt64? = nil, signature: [UInt8]? = nil
    ) {
        self.timestampMillis = timestampMillis
        self.identity = identity
        self.keyType = keyType
        self.publicKey = publicKey
        self.revocation = revocation
        self.previousIndex = previousIndex
        self.signature = signature
    }

    /// Why an entry is not canonical: its layout, its identity or its key.
    public enum EntryError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case identity(Identity.IdentityError)
        case key(KeyType.KeyError)

        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .malformed(let why): return "malformed entry: \(why)"
            case .identity(let e): return e.description
            case .key(let e): return e.description
            }
        }
    }

    var flags: Flags {
        var f: Flags = []
        if revocation { f.insert(.revocation) }
        if previousIndex != nil { f.insert(.hasPrevious) }
        if signature != nil { f.insert(.chained) }
        return f
    }

    /// Checks every field against the format's rules (the same checks `parse` makes).
    /// `keys`: how much of the key to check (`KeyType.Check`).
    public func validate(keys: KeyType.Check = .full) throws(EntryError) {
        do { try Identity.validate(identity) } catch { throw .identity(error) }
        do { try keyType.validate(publicKey, check: keys) } catch { throw .key(error) }
        guard publicKey.count <= KeyEntry.maxKeyBytes else { throw .malformed("key too long") }
        if let s = signature {
            guard s.count == Ed25519.signatureLength else { throw .malformed("signature must be 64 bytes") }
            guard previousIndex != nil else { throw .malformed("a chained entry must name its previous entry") }
        }
    }

    /// The canonical bytes (Spec/entry.md). Throws what `validate` throws, so no entry is encoded that
    /// `parse` would refuse.
    /// `keys: .form` is for a caller that has already checked the key in full (the server checks
    /// each published key once, when the request is made).
    public func encode(keys: KeyType.Check = .full) throws(EntryError) -> [UInt8] {
        try validate(keys: keys)
        var out: [UInt8] = [KeyEntry.version]
        out.appendBigEndian(timestampMillis)
        out.appendField8(Array(identity.utf8))
        out.appendField8(Array(keyType.rawValue.utf8))
        out.appendField16(publicKey)
        out.append(flags.rawValue)
        if let p = previousIndex { out.appendBigEndian(p) }
        if let s = signature { out += s }
        return out
    }

    /// Parses canonical bytes only: unknown versions, flags, types, lengths or trailing bytes fail.
    /// `keys`: how much of the key to check (`KeyType.Check`).
    public static func parse<Bytes: Collection>(_ bytes: Bytes, keys: KeyType.Check = .full) throws(EntryError) -> KeyEntry
    where Bytes.Element == UInt8 {
        let result: Result<KeyEntry, EntryError> = Array(bytes).withUnsafeBytes { b in
            do throws(EntryError) {
                return .success(try View.parse(b, keys: keys).entry(in: b))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Where each field of a canonical entry lies in its bytes. `View.parse` makes every check
    /// `KeyEntry.parse` makes (it is the one implementation of them) without copying a field, so
    /// an auditor can check millions of entries without allocating for each.
    public struct View {
        /// Milliseconds since the Unix epoch, set by the log.
        public let timestampMillis: UInt64
        /// Byte ranges of the buffer that was parsed.
        public let identity: Range<Int>
        /// The key's type, from the closed set.
        public let keyType: KeyType
        /// The key's bytes, already checked for its type.
        public let publicKey: Range<Int>
        /// True if the entry withdraws its key.
        public let revocation: Bool
        /// The log index of the identity's previous entry, if the entry names one.
        public let previousIndex: UInt64?
        /// The 64-byte rotation signature, if the entry is chained.
        public let signature: Range<Int>?

        /// Checks `b` is a canonical entry and says where its fields are. Refuses what `KeyEntry.parse`
        /// refuses; the result is valid only with the same buffer. `keys`: how much of the key to
        /// check (`KeyType.Check`).
        public static func parse(_ b: UnsafeRawBufferPointer, keys: KeyType.Check = .full) throws(EntryError) -> View {
            guard b.count <= maxEncodedSize else { throw .malformed("entry longer than 65535 bytes") }
            var r = ByteReader(b)
            guard let version = r.u8() else { throw .malformed("empty") }
            guard version == KeyEntry.version else { throw .malformed("unknown version \(version)") }
            guard let ts = r.u64() else { throw .malformed("truncated timestamp") }
            guard let identity = r.field8(), !identity.isEmpty else { throw .malformed("truncated or empty identity") }
            let idBytes = UnsafeRawBufferPointer(rebasing: b[identity])
            // Printable ASCII without space is valid NFC as it stands; anything else goes through
            // strict UTF-8 decoding (String(validating:) refuses invalid sequences instead of
            // repairing them) and the full identity rules.
            if Identity.isDotSegment(idBytes) { throw .identity(.dotSegment) }
            if !idBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) {
                guard let text = String(validating: idBytes, as: UTF8.self) else { throw .malformed("identity is not UTF-8") }
                do { try Identity.validate(text) } catch { throw .identity(error) }
            }
            guard let typeRange = r.field8(), typeRange.count <= maxKeyTypeBytes else { throw .malformed("truncated key type") }
            let typeBytes = UnsafeRawBufferPointer(rebasing: b[typeRange])
            guard let keyType = KeyType.named(typeBytes) else {
                throw .key(.unknownType(String(decoding: typeBytes, as: UTF8.self)))
            }
            guard let key = r.field16(), !key.isEmpty, key.count <= maxKeyBytes else { throw .malformed("truncated, empty or oversized key") }
            guard let rawFlags = r.u8() else { throw .malformed("truncated flags") }
            let flags = Flags(rawValue: rawFlags)
            guard Flags.known.isSuperset(of: flags) else { throw .malformed("unknown flag bits") }
            var previous: UInt64?
            if flags.contains(.hasPrevious) {
                guard let p = r.u64() else { throw .malformed("truncated previous index") }
                previous = p
            }
            var signature: Range<Int>?
            if flags.contains(.chained) {
                guard flags.contains(.hasPrevious) else { throw .malformed("chained entry without a previous entry") }
                guard let s = r.bytes(Ed25519.signatureLength) else { throw .malformed("truncated signature") }
                signature = s
            }
            guard r.atEnd else { throw .malformed("trailing bytes") }
            do { try keyType.validate(UnsafeRawBufferPointer(rebasing: b[key]), check: keys) } catch { throw .key(error) }
            return View(
                timestampMillis: ts, identity: identity, keyType: keyType, publicKey: key,
                revocation: flags.contains(.revocation), previousIndex: previous, signature: signature)
        }

        /// The identity as text (the bytes are valid UTF-8: `parse` checked them).
        public func identity(in b: UnsafeRawBufferPointer) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: b[identity]), as: UTF8.self)
        }

        /// The entry itself, copied out of the buffer `parse` read.
        public func entry(in b: UnsafeRawBufferPointer) -> KeyEntry {
            KeyEntry(
                timestampMillis: timestampMillis, identity: identity(in: b), keyType: keyType,
                publicKey: Array(UnsafeRawBufferPointer(rebasing: b[publicKey])), revocation: revocation,
                previousIndex: previousIndex, signature: signature.map { Array(UnsafeRawBufferPointer(rebasing: b[$0])) })
        }
    }

    /// What the previous key signs to authorise this entry: everything but the log-assigned
    /// timestamp and the signature itself. Naming the previous index binds the signature to one place
    /// in the chain, so it cannot be replayed after a later rotation.
    public static func rotationMessage(identity: String, keyType: KeyType, publicKey: [UInt8], revocation: Bool, previousIndex: UInt64) -> [UInt8] {
        var m = Array("keyglass/rotation/v1\n".utf8)
        m.appendField8(Array(identity.utf8))
        m.appendField8(Array(keyType.rawValue.utf8))
        m.appendField16(publicKey)
        m.append(revocation ? Flags.revocation.rawValue : 0)
        m.appendBigEndian(previousIndex)
        return m
    }

    /// The message the previous key signs for this entry; nil for a first entry (nothing to sign for).
    public var rotationMessage: [UInt8]? {
        guard let p = previousIndex else { return nil }
        return KeyEntry.rotationMessage(identity: identity, keyType: keyType, publicKey: publicKey, revocation: revocation, previousIndex: p)
    }

    /// True when this entry carries a signature that `previousKey` (an Ed25519 key) made over it.
    public func isSigned(by previousKey: [UInt8]) -> Bool {
        guard let s = signature, let m = rotationMessage else { return false }
        return Ed25519.verify(signature: s, message: m, publicKey: previousKey)
    }
}

/// Reads big-endian fields from bytes, returning nil past the end. Fields come back as ranges of
/// the buffer, not copies.
struct ByteReader {
    private let bytes: UnsafeRawBufferPointer
    private var at = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
    var atEnd: Bool { at == bytes.count }

    mutating func bytes(_ n: Int) -> Range<Int>? {
        guard n >= 0, bytes.count - at >= n else { return nil }
        defer { at += n }
        return at..<(at + n)
    }
    mutating func u8() -> UInt8? { bytes(1).map { bytes[$0.lowerBound] } }
    mutating func u16() -> UInt16? { bytes(2).map { UInt16(bytes[$0.lowerBound]) << 8 | UInt16(bytes[$0.lowerBound + 1]) } }
    mutating func u64() -> UInt64? { bytes(8).map { r in r.reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) } } }
    mutating func field8() -> Range<Int>? { u8().flatMap { bytes(Int($0)) } }
    mutating func field16() -> Range<Int>? { u16().flatMap { bytes(Int($0)) } }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
    mutating func appendField8(_ b: [UInt8]) {
        precondition(b.count <= 255)
        append(UInt8(b.count))
        self += b
    }
    mutating func appendField16(_ b: [UInt8]) {
        precondition(b.count <= 65535)
        append(UInt8(b.count >> 8))
        append(UInt8(b.count & 0xff))
        self += b
    }
}

/// Entry bundles (c2sp.org/tlog-tiles): each entry prefixed by its uint16 big-endian length.
public enum EntryBundle {
    /// Concatenates length-prefixed entries. Traps on an entry over 65,535 bytes, which `KeyEntry.encode`
    /// never produces.
    public static func encode(_ entries: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for e in entries { out.appendField16(e) }
        return out
    }

    /// The entries of a bundle, copied out; nil if it is truncated (a length or an entry runs past the end).
    public static func decode(_ bundle: [UInt8]) -> [[UInt8]]? {
        bundle.withUnsafeBytes { b in ranges(b).map { $0.map { Array(b[$0]) } } }
    }

    /// Where each entry of a bundle lies in it, or nil if the bundle is malformed.
    public static func ranges(_ bundle: UnsafeRawBufferPointer) -> [Range<Int>]? {
        var r = ByteReader(bundle)
        var out: [Range<Int>] = []
        while !r.atEnd {
            guard let e = r.field16() else { return nil }
            out.append(e)
        }
        return out
    }
}
