/// Every metric GET /metrics exports, with the HELP text Prometheus shows for it.
///
/// swift-metrics has no place for a description, so the exposition adds these lines itself
/// (`ServerMetrics.exposition`); a test checks that every family exported has one, and promtool
/// checks the whole. Deploy/prometheus/keyglass-alerts.yml alerts on several of them.
enum MetricsCatalogue {
    static let help: [String: String] = [
        // The sequencer (KeyglassLog.LogMetrics).
        "keyglass_publishes_total": "Publishes that reached the sequencer, by outcome (integrated, conflict, invalid, overloaded, shutting_down, storage_error, log_full, future_timestamp, not_sequencer). Requests refused before it are in keyglass_http_requests_total.",
        "keyglass_batch_size_entries": "Publishes written per committed batch.",
        "keyglass_commit_duration_seconds": "Time to build, sign and durably commit one batch; every publish of the batch waits for it.",
        "keyglass_index_work_duration_seconds": "Wall time of one lookup-index merge (memory to recent level) or compaction (recent to main level), by kind.",
        "keyglass_index_slice_duration_seconds": "One transaction of a lookup-index merge or compaction, by kind; publishes wait for at most one.",
        "keyglass_index_slice_failures_total": "Lookup-index merge or compaction slices that failed (retried; the rows stay pending).",
        // Read at each scrape (ServerMetrics.refresh).
        "keyglass_sequencing": "1 while this server sequences publishes; 0 while another server of a shared PostgreSQL log does (this one serves reads). A log's only server is always 1.",
        "keyglass_queue_depth": "Publishes queued for the sequencer.",
        "keyglass_tree_size": "Entries in the newest signed checkpoint.",
        "keyglass_checkpoint_timestamp_seconds": "When the newest checkpoint's last batch was stamped, seconds since the Unix epoch (0: empty log).",
        "keyglass_checkpoint_age_seconds": "Seconds since the newest checkpoint's last batch was stamped: grows while nothing is published.",
        "keyglass_witness_cosignature_age_seconds": "Seconds since each configured witness last cosigned a checkpoint of this log (since the server started, if never).",
        "keyglass_index_pending_rows": "Lookup-index rows in memory waiting for a merge.",
        "keyglass_index_recent_rows": "Lookup-index rows in the recent level waiting for a compaction.",
        // The HTTP front (RequestMetricsHandler).
        "keyglass_http_requests_total": "HTTP requests answered, by method, route and status code (route \"other\": no route of the API).",
        "keyglass_up_since_seconds": "When this server process started, seconds since the Unix epoch.",
    ]
}
