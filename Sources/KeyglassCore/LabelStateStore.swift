/// Where a replay keeps each label's state (`DeviceSet`): memory for the server and tests, an
/// auditor's state database for logs whose labels outgrow memory.
public protocol LabelStateStore {
    /// The label's state after its newest applied change; nil for a label never changed.
    func state(of label: Hash) throws -> DeviceSet?
    /// Stores the label's state after a change was applied.
    mutating func setState(_ state: DeviceSet, of label: Hash) throws
}

/// Label states in a dictionary.
public struct MemoryLabelStateStore: LabelStateStore, Sendable {
    private var states: [Hash: DeviceSet] = [:]

    /// No label changed yet.
    public init() {}

    /// Labels changed at least once.
    public var count: Int { states.count }

    /// Every label's state.
    public var all: [Hash: DeviceSet] { states }

    /// The label's state, nil for a label never changed.
    public subscript(label: Hash) -> DeviceSet? { states[label] }

    /// The label's state after its newest applied change; nil for a label never changed.
    public func state(of label: Hash) -> DeviceSet? { states[label] }

    /// Stores the label's state after a change was applied.
    public mutating func setState(_ state: DeviceSet, of label: Hash) { states[label] = state }
}
