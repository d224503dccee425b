/// Whether this server may sequence now, when several servers share one log's database
/// (`KeyglassPostgres.SequencerLease`). The sequencer asks before taking a publish and before each
/// batch: without the lease it refuses publishes (`PublishError.notSequencer`, HTTP 503) and follows
/// the stored log instead, so its reads stay current.
///
/// This is only a server's belief and is never relied on for safety: the storage engine fences each
/// append in its own transaction (see `LogStorage.append(previousSize:build:)`).
public protocol SequencingLease: Sendable {
    var isHeld: Bool { get }
    /// The sequencer holds the lease but cannot sequence (its head does not extend what it served,
    /// its batches keep failing, the newest entry is stamped in its future): give the lease up and
    /// leave it to another server for a while, rather than renew it and refuse every publish.
    func standDown(because reason: String)
}

/// A server that never sequences: one started with `--read-only`, or on a standby database (which
/// may be promoted later, by a decision that is not this server's).
public struct ReadOnlyLease: SequencingLease {
    public init() {}
    public var isHeld: Bool { false }
    public func standDown(because reason: String) {}
}
