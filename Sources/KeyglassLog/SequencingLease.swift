/// Whether this server may sequence now, when several servers share one log's database
/// (`KeyglassPostgres.SequencerLease`). The sequencer asks before taking a publish and before each
/// batch: without the lease it refuses publishes (`PublishError.notSequencer`, HTTP 503) and follows
/// the stored log instead, so its reads stay current.
///
/// This is only a server's belief and is never relied on for safety: the storage engine fences each
/// append in its own transaction (see `LogStorage.append`'s compare-and-swap).
public protocol SequencingLease: Sendable {
    var isHeld: Bool { get }
}
