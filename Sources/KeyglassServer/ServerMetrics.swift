import CoreMetrics
import Foundation
import Hummingbird
import KeyglassLog
import Prometheus
import Synchronization

/// One server's metrics: a Prometheus registry of its own (not swift-metrics' process-wide
/// bootstrap, so that tests running several servers in one process see each one's numbers), the
/// log's handles (`LogMetrics`, given to the sequencer and the index follower), HTTP request
/// counters, and gauges read from the running log at each scrape.
public final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    /// For `Sequencer.Options.metrics` and `IndexMergeFollower.Options.metrics`.
    public let log: LogMetrics
    private let factory: PrometheusMetricsFactory
    private let started = ContinuousClock.now
    private let gauges: Gauges
    /// HTTP request counters by (route, status), created on first use.
    private let requests = Mutex<[Int: CoreMetrics.Counter]>([:])

    private struct Gauges: Sendable {
        let queueDepth, treeSize, checkpointTimestamp, checkpointAge, pendingRows, recentRows, upSince, sequencing: CoreMetrics.Gauge

        init(factory: PrometheusMetricsFactory) {
            func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: name, dimensions: [], factory: factory) }
            queueDepth = gauge("keyglass_queue_depth")
            treeSize = gauge("keyglass_tree_size")
            checkpointTimestamp = gauge("keyglass_checkpoint_timestamp_seconds")
            checkpointAge = gauge("keyglass_checkpoint_age_seconds")
            pendingRows = gauge("keyglass_index_pending_rows")
            recentRows = gauge("keyglass_index_recent_rows")
            upSince = gauge("keyglass_up_since_seconds")
            sequencing = gauge("keyglass_sequencing")
        }
    }

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // A commit is an fsync: milliseconds on a good disk, and an alert past a second.
        factory.durationHistogramBuckets["keyglass_commit_duration_seconds"] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000].map { .milliseconds($0) }
        // Slices are bounded by --index-merge-slice-ms (20 by default); a whole merge or compaction may take minutes.
        factory.durationHistogramBuckets["keyglass_index_slice_duration_seconds"] = [1, 5, 10, 20, 50, 100, 250, 1000].map { .milliseconds($0) }
        factory.durationHistogramBuckets["keyglass_index_work_duration_seconds"] = [10, 100, 1000, 10_000, 60_000, 600_000].map { .milliseconds($0) }
        factory.valueHistogramBuckets["keyglass_batch_size_entries"] = (0...12).map { Double(1 << $0) }
        self.factory = factory
        log = LogMetrics(factory: factory)
        gauges = Gauges(factory: factory)
        gauges.upSince.record(Date().timeIntervalSince1970)
        // Every route's usual answers exist from the start: Prometheus's rate() does not count a
        // series' first value, so errors on a series created by its first error would go unseen.
        for route in KeyglassAPI.routes.indices {
            for status in Self.preRegisteredStatuses { _ = requestCounter(route: route, status: status) }
        }
        _ = requestCounter(route: -1, status: 404)
    }

    static let preRegisteredStatuses = [200, 400, 404, 429, 500, 503]

    /// The counter of `keyglass_http_requests_total` for route number `route` (an index into
    /// `KeyglassAPI.routes`; any other number: no route) answered with `status`.
    func requestCounter(route: Int, status: Int) -> CoreMetrics.Counter {
        let key = route * 1000 + status
        return requests.withLock { counters in
            if let counter = counters[key] { return counter }
            let (method, path) = KeyglassAPI.routes.indices.contains(route)
                ? (KeyglassAPI.routes[route].method.rawValue, KeyglassAPI.routes[route].match.label) : ("other", "other")
            let counter = CoreMetrics.Counter(label: "keyglass_http_requests_total",
                                  dimensions: [("method", method), ("route", path), ("code", String(status))], factory: factory)
            counters[key] = counter
            return counter
        }
    }

    /// Prometheus's text exposition format (0.0.4) of every metric, the gauges read from `api`'s
    /// log first, with a HELP line for each family.
    func exposition(_ api: KeyglassAPI) -> [UInt8] {
        refresh(api)
        return Self.withHelp(registry.emitToBuffer())
    }

    private func refresh(_ api: KeyglassAPI) {
        let sequencer = api.sequencer
        gauges.queueDepth.record(sequencer.queuedPublishes)
        gauges.sequencing.record(sequencer.sequences ? 1 : 0)
        gauges.treeSize.record(Int64(clamping: sequencer.latestCheckpoint.size))
        let newest = sequencer.newestEntryMillis
        gauges.checkpointTimestamp.record(Double(newest) / 1000)
        gauges.checkpointAge.record(newest == 0 ? 0 : max(0, Date().timeIntervalSince1970 - Double(newest) / 1000))
        if let follower = api.indexFollower {
            gauges.pendingRows.record(follower.pendingRows)
            gauges.recentRows.record(follower.recentRows)
        }
        if let witnesses = api.witnesses {
            let now = ContinuousClock.now
            for witness in witnesses.cosignatureTimes() {
                let age = now - (witness.at ?? started)
                CoreMetrics.Gauge(label: "keyglass_witness_cosignature_age_seconds", dimensions: [("witness", witness.name)], factory: factory)
                    .record(Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18)
            }
        }
    }

    /// Adds `# HELP` before every `# TYPE` line whose family the catalogue describes.
    static func withHelp(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 4096)
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if line.starts(with: Array("# TYPE ".utf8)) {
                let name = String(decoding: line.dropFirst(7).prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self)
                if let help = MetricsCatalogue.help[name] {
                    out += Array("# HELP \(name) \(escapedHelp(help))\n".utf8)
                }
            }
            out += line
            out.append(UInt8(ascii: "\n"))
        }
        // The split gave one empty line after the final newline: drop the extra newline it added.
        if out.last == UInt8(ascii: "\n"), text.last == UInt8(ascii: "\n") { out.removeLast() }
        return out
    }

    /// HELP text escapes backslash and newline (the text format's rule).
    private static func escapedHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}

extension KeyglassAPI {
    /// GET /metrics. Operators scrape it from inside; Deploy/nginx keeps it off the public front.
    func metricsAnswer() -> ReadAnswer {
        ReadAnswer(contentType: "text/plain; version=0.0.4; charset=utf-8", cache: "no-store",
                   body: ByteBuffer(bytes: metrics.exposition(self)))
    }
}
