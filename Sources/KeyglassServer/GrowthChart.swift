import Foundation
import KeyglassCore
import KeyglassLog
import Synchronization

/// The status page's chart of the log's growth: entries over time, as an inline SVG drawn on the
/// server (no script, no build step). Each entry carries the time the log sequenced it, so the
/// curve is read from the log itself: up to `samples` entries spread evenly over the tree, their
/// timestamps against their positions. Point reads only, redrawn at most every `maxAge` while the
/// log grows (a busy log changes size between any two page views).
final class GrowthChart: Sendable {
    static let samples = 48
    static let width = 640.0, height = 180.0, margin = 40.0
    static let maxAge: Duration = .seconds(60)

    private let cached = Mutex<(size: UInt64, drawn: ContinuousClock.Instant, svg: String)?>(nil)

    /// The SVG for the tree of `size` entries (empty tree: a sentence instead).
    func svg(store: LogStore, size: UInt64) -> String {
        if let hit = cached.withLock({ $0 }), hit.size == size || (hit.size > 0 && ContinuousClock.now - hit.drawn < Self.maxAge) {
            return hit.svg
        }
        let svg = Self.draw(points: Self.points(store: store, size: size), size: size)
        cached.withLock { $0 = (size, .now, svg) }
        return svg
    }

    /// (timestamp in ms, entries up to and including it) for the sampled entries, in log order.
    static func points(store: LogStore, size: UInt64) -> [(millis: UInt64, count: UInt64)] {
        guard size > 0 else { return [] }
        let n = UInt64(samples)
        let indices = size <= n ? Array(0..<size) : (0..<n).map { $0 * (size - 1) / (n - 1) }
        return indices.compactMap { i in
            // An entry the current rules find malformed still has a readable timestamp field, but
            // the chart is not worth an exception to the parser: it is left out.
            guard let stored = try? store.entry(at: i), let entry = try? KeyEntry.parse(stored.data, keys: .form) else { return nil }
            return (entry.timestampMillis, i + 1)
        }
    }

    static func draw(points: [(millis: UInt64, count: UInt64)], size: UInt64) -> String {
        guard let first = points.first, let last = points.last else {
            return "<p class=\"muted\">The log is empty: nothing to chart yet.</p>"
        }
        let t0 = Double(first.millis), t1 = max(Double(last.millis), t0 + 1)
        let plotW = width - 2 * margin, plotH = height - 2 * margin
        // Starts from zero entries just before the first one, so a single batch still draws a line.
        var coordinates = [(margin, height - margin)]
        for p in points {
            let x = margin + (Double(p.millis) - t0) / (t1 - t0) * plotW
            let y = height - margin - Double(p.count) / Double(max(size, 1)) * plotH
            coordinates.append((x, y))
        }
        let polyline = coordinates.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
        let start = StatusPage.utc(millis: first.millis), end = StatusPage.utc(millis: last.millis)
        return """
        <svg class="chart" role="img" viewBox="0 0 \(Int(width)) \(Int(height))" width="\(Int(width))" height="\(Int(height))" \
        aria-label="Entries in the log over time: \(size) entries, from \(start) to \(end)">
        <line x1="\(margin)" y1="\(height - margin)" x2="\(width - margin)" y2="\(height - margin)" class="axis"/>
        <line x1="\(margin)" y1="\(margin)" x2="\(margin)" y2="\(height - margin)" class="axis"/>
        <polyline points="\(polyline)" class="growth"/>
        <text x="\(margin)" y="\(height - margin + 16)" class="label">\(start)</text>
        <text x="\(width - margin)" y="\(height - margin + 16)" class="label" text-anchor="end">\(end)</text>
        <text x="\(margin - 6)" y="\(margin + 4)" class="label" text-anchor="end">\(size)</text>
        <text x="\(margin - 6)" y="\(height - margin)" class="label" text-anchor="end">0</text>
        </svg>
        """
    }
}
