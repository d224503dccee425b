import CoreMetrics

/// What the writer side of the log records for operators: publishes by outcome, batch sizes,
/// commit latency, and the lookup index's merges. Through swift-metrics' API, so the log does not
/// know how it is exported; the server gives a Prometheus factory (`ServerMetrics`), everything
/// else the no-op one. The names are Prometheus's conventions (`_total`, `_seconds`), and every
/// one is described in `KeyglassServer/MetricsCatalogue.swift` and Deploy/prometheus/README.md.
///
/// Handles are created once, here: creating one looks the metric up under the factory's lock,
/// too slow for every publish.
public struct LogMetrics: Sendable {
    /// How a publish that reached the sequencer ended (refusals before it, such as a bad body or a
    /// rate limit, are counted by HTTP status in `keyglass_http_requests_total`).
    public enum Outcome: String, CaseIterable, Sendable {
        case integrated, conflict, invalid, overloaded
        case shuttingDown = "shutting_down"
        case storageError = "storage_error"
        case logFull = "log_full"
        case futureTimestamp = "future_timestamp"
        case notSequencer = "not_sequencer"

        init(_ error: PublishError) {
            switch error {
            case .conflict: self = .conflict
            case .invalid: self = .invalid
            case .overloaded: self = .overloaded
            case .shuttingDown: self = .shuttingDown
            case .storage: self = .storageError
            case .logFull: self = .logFull
            case .futureTimestamp: self = .futureTimestamp
            case .notSequencer: self = .notSequencer
            }
        }
    }

    /// The two kinds of lookup-index work (decision 27): merges from memory into the recent level,
    /// compactions from the recent level into the main one.
    public enum IndexWork: String, CaseIterable, Sendable {
        case merge, compaction
    }

    private let publishes: [Outcome: Counter]
    let batchSize: Recorder
    let commitDuration: Timer
    private let indexWork: [IndexWork: Timer]
    private let indexSlice: [IndexWork: Timer]
    let indexSliceFailures: Counter

    public init(factory: any MetricsFactory) {
        publishes = Dictionary(uniqueKeysWithValues: Outcome.allCases.map {
            ($0, Counter(label: "keyglass_publishes_total", dimensions: [("outcome", $0.rawValue)], factory: factory))
        })
        batchSize = Recorder(label: "keyglass_batch_size_entries", dimensions: [], aggregate: true, factory: factory)
        commitDuration = Timer(label: "keyglass_commit_duration_seconds", dimensions: [], factory: factory)
        indexWork = Dictionary(uniqueKeysWithValues: IndexWork.allCases.map {
            ($0, Timer(label: "keyglass_index_work_duration_seconds", dimensions: [("kind", $0.rawValue)], factory: factory))
        })
        indexSlice = Dictionary(uniqueKeysWithValues: IndexWork.allCases.map {
            ($0, Timer(label: "keyglass_index_slice_duration_seconds", dimensions: [("kind", $0.rawValue)], factory: factory))
        })
        indexSliceFailures = Counter(label: "keyglass_index_slice_failures_total", dimensions: [], factory: factory)
    }

    /// Records nothing: for tools and tests that run a log without exporting anything.
    public static let none = LogMetrics(factory: NOOPMetricsHandler.instance)

    func publish(_ outcome: Outcome, count: Int = 1) {
        if count > 0 { publishes[outcome]!.increment(by: Int64(count)) }
    }

    /// Tallies a batch's results and adds them, one increment per outcome rather than per publish.
    func publishes<S: Sequence>(_ results: S) where S.Element == Result<PublishReceipt, PublishError> {
        var counts: [Outcome: Int] = [:]
        for result in results {
            switch result {
            case .success: counts[.integrated, default: 0] += 1
            case .failure(let e): counts[Outcome(e), default: 0] += 1
            }
        }
        for (outcome, n) in counts { publish(outcome, count: n) }
    }

    func indexWork(_ kind: IndexWork, took: Duration) { indexWork[kind]!.recordNanoseconds(took.nanoseconds) }
    func indexSlice(_ kind: IndexWork, took: Duration) { indexSlice[kind]!.recordNanoseconds(took.nanoseconds) }
}

extension Duration {
    /// Whole nanoseconds, saturating (a Duration can be longer than Int64 nanoseconds).
    var nanoseconds: Int64 {
        let c = components
        let (whole, o1) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, o2) = whole.addingReportingOverflow(c.attoseconds / 1_000_000_000)
        return o1 || o2 ? (c.seconds < 0 ? .min : .max) : sum
    }
}
