/// The state of one label's device set after the changes applied so far (Spec/directory.md): what
/// the map commits to for the label, and what `DeviceRule` judges the next change against.
public struct DeviceSet: Equatable, Sendable {
    /// Changes applied so far.
    public private(set) var version: UInt64 = 0
    /// The log index of the newest applied change; nil before the first.
    public private(set) var newestIndex: UInt64?
    /// A hash chain over every applied change (index and leaf hash): a monitor that stored it can
    /// tell the history it saw was extended, not rewritten.
    public private(set) var chain = Hash.zero
    /// The active devices, by id.
    public private(set) var active: [DeviceRecord] = []
    /// Ids revoked (or replaced by a reset), sorted: never to be used again.
    public private(set) var tombstoned: [[UInt8]] = []

    /// The state of a label never changed.
    public init() {}

    /// The active device with this id.
    public func device(_ id: [UInt8]) -> DeviceRecord? {
        let i = Self.lowerBound(id, in: active) { $0.id }
        return i < active.count && active[i].id == id ? active[i] : nil
    }

    /// True if the id was revoked or replaced by a reset.
    public func isTombstoned(_ id: [UInt8]) -> Bool {
        let i = Self.lowerBound(id, in: tombstoned) { $0 }
        return i < tombstoned.count && tombstoned[i] == id
    }

    /// Where `id` is or would go in `sorted` (ascending bytewise): both lists are searched, not
    /// scanned, since a hostile log can pile tombstones onto one label.
    private static func lowerBound<T>(_ id: [UInt8], in sorted: [T], by key: (T) -> [UInt8]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if key(sorted[mid]).lexicographicallyPrecedes(id) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Applies a change the rule did not find invalid to the devices and tombstones (the private
    /// part). (An invalid change leaves them as they were: `DeviceRule.apply`.) The server applies
    /// a change it accepts before it can make the entry, which commits to the set after it.
    public mutating func apply(_ kind: DeviceChange.Kind) {
        switch kind {
        case .add(let r):
            active.removeAll { $0.id == r.id }  // only an attack re-adds an id that is active
            active.append(r)
        case .rotate(let r):
            active.removeAll { $0.id == r.id }
            active.append(r)
        case .revoke(let id):
            active.removeAll { $0.id == id }
            tombstone(id)
        case .reset(let r):
            for d in active { tombstone(d.id) }
            active = [r]
        }
        active.sort { $0.id.lexicographicallyPrecedes($1.id) }
    }

    /// Moves the public part on for the change entry at `index` whose leaf hash is `leafHash`:
    /// every change entry at the label's next version does, whatever the rule makes of it.
    public mutating func advance(index: UInt64, leafHash: Hash) {
        version += 1
        newestIndex = index
        chain = Self.extend(chain, index: index, leafHash: leafHash)
    }

    /// One link of the hash chain: SHA-256(0x04 ‖ chain ‖ index ‖ leaf hash).
    public static func extend(_ chain: Hash, index: UInt64, leafHash: Hash) -> Hash {
        var link: [UInt8] = [0x04] + chain.bytes
        link.appendBigEndian(index)
        link += leafHash.bytes
        return Hash.sha256(link)
    }

    private mutating func tombstone(_ id: [UInt8]) {
        let i = Self.lowerBound(id, in: tombstoned) { $0 }
        guard i == tombstoned.count || tombstoned[i] != id else { return }
        tombstoned.insert(id, at: i)
    }

    /// The label's value in the map; nil for a label never changed (absent from the map).
    public var mapValue: Hash? {
        guard let newestIndex else { return nil }
        return Self.mapValue(version: version, newestIndex: newestIndex, chain: chain)
    }

    /// The map value of a label's public part: SHA-256(0x05 ‖ version ‖ newest index ‖ chain). The
    /// devices are committed through the chain: its newest link is the newest change's entry, whose
    /// commitment binds the set digest after it.
    public static func mapValue(version: UInt64, newestIndex: UInt64, chain: Hash) -> Hash {
        var b: [UInt8] = [0x05]
        b.appendBigEndian(version)
        b.appendBigEndian(newestIndex)
        b += chain.bytes
        return Hash.sha256(b)
    }

    /// The digest of the devices and tombstones, which each change's sealed part commits to.
    public var setDigest: Hash { Self.setDigest(active: active, tombstoned: tombstoned) }

    /// The set digest of devices and tombstones given by their parts (a lookup answer's), in the
    /// order it commits to them: `active` by id, `tombstoned` ascending (callers check the order).
    public static func setDigest(active: [DeviceRecord], tombstoned: [[UInt8]]) -> Hash {
        var b: [UInt8] = [0x06]
        b.appendBigEndian32(active.count)
        for r in active { b.appendField16(r.encoded) }
        b.appendBigEndian32(tombstoned.count)
        for id in tombstoned { b += id }
        return Hash.sha256(b)
    }
}

extension DeviceSet {
    /// The whole state as bytes, for an auditor's state database: a flag for "never changed"
    /// (0x00) or the newest index present (0x01), the public part, then the devices and tombstones.
    public var stateBytes: [UInt8] {
        var b: [UInt8] = [newestIndex == nil ? 0x00 : 0x01]
        b.appendBigEndian(version)
        b.appendBigEndian(newestIndex ?? 0)
        b += chain.bytes
        b.appendBigEndian32(active.count)
        for r in active { b.appendField16(r.encoded) }
        b.appendBigEndian32(tombstoned.count)
        for id in tombstoned { b += id }
        return b
    }

    /// A state from `stateBytes`; nil if they are not such bytes. The records' keys are not
    /// checked again (they were when the entries that brought them were parsed).
    public init?(stateBytes b: [UInt8]) {
        func read(_ at: inout Int, _ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, at + n <= b.count else { return nil }
            defer { at += n }
            return b[at..<at + n]
        }
        func number(_ at: inout Int, _ n: Int) -> UInt64? { read(&at, n).map { $0.reduce(0) { $0 << 8 | UInt64($1) } } }
        var at = 0
        guard let flag = read(&at, 1)?.first, flag <= 1, let version = number(&at, 8), let newest = number(&at, 8),
            let chain = read(&at, 32).flatMap({ Hash(bytes: $0) }), let activeCount = number(&at, 4)
        else { return nil }
        var active: [DeviceRecord] = []
        for _ in 0..<activeCount {
            guard let length = number(&at, 2), let bytes = read(&at, Int(length)), let record = DeviceRecord.restore(bytes) else { return nil }
            active.append(record)
        }
        guard let tombCount = number(&at, 4) else { return nil }
        var tombstoned: [[UInt8]] = []
        for _ in 0..<tombCount {
            guard let id = read(&at, DeviceRecord.idLength) else { return nil }
            tombstoned.append(Array(id))
        }
        guard at == b.count else { return nil }
        self.init()
        self.version = version
        self.newestIndex = flag == 1 ? newest : nil
        self.chain = chain
        self.active = active
        self.tombstoned = tombstoned
    }
}

extension Array where Element == UInt8 {
    /// Counts in the map value: active devices are at most `DeviceRule.maxActiveDevices`, and
    /// tombstones at most the log's entries, far below 2^32 for any log this code writes.
    mutating func appendBigEndian32(_ v: Int) {
        let n = UInt32(clamping: v)
        for shift in [24, 16, 8, 0] { append(UInt8(truncatingIfNeeded: n >> UInt32(shift))) }
    }
}
