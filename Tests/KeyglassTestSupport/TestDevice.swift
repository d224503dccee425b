import KeyglassCore

/// A device in the directory's tests: its record and the seed of its signing key (which signs its
/// chained changes).
public struct TestDevice: Sendable {
    public let record: DeviceRecord
    public let seed: [UInt8]

    public init(record: DeviceRecord, seed: [UInt8]) {
        self.record = record
        self.seed = seed
    }

    public var id: [UInt8] { record.id }
    /// What `DeviceChange.signed` needs of it.
    public var signer: (id: [UInt8], seed: [UInt8]) { (record.id, seed) }
}
