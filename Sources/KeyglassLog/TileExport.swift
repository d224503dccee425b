import Foundation
import KeyglassCore
import Logging
import ServiceLifecycle

/// Writes a log as static files in the c2sp.org/tlog-tiles layout (issue 15, point 4): every full
/// hash tile and entry bundle once (they are immutable), the partial ones of the newest tree, and
/// the checkpoint last, so nginx or a CDN can serve what an auditor reads. Each file is written to
/// a temporary name and renamed into place: a reader sees a whole file or none, and a checkpoint
/// only once every tile it needs is there.
public struct TileExport: Sendable {
    public struct Result: Sendable, Equatable {
        public var treeSize: UInt64
        /// Files written this time (full tiles already present are not written again).
        public var written = 0
    }

    let store: LogStore
    let root: String

    public init(store: LogStore, to root: String) {
        self.store = store
        self.root = root
    }

    /// Exports the tree of the newest checkpoint.
    @discardableResult
    public func run() throws -> Result {
        guard let checkpoint = try store.latestCheckpoint() else { throw StoreError.notInitialised("the log has no checkpoint") }
        var result = Result(treeSize: checkpoint.size)
        let size = checkpoint.size
        // Entry bundles.
        let bundles = (size + TileLayout.width - 1) / TileLayout.width
        for t in 0..<bundles {
            let partial = TileLayout.partialWidth(tileIndex: t, count: size)
            let path = TileLayout.entriesPath(index: t, partial: partial)
            if partial == 0, exists(path) { continue }
            let start = t * TileLayout.width
            try write(try store.entryBundle(start: start, end: start + (partial == 0 ? TileLayout.width : partial)), to: path)
            result.written += 1
        }
        // Hash tiles, level by level while the level has hashes.
        var level: UInt8 = 0
        while true {
            let levelBits = UInt64(level) * UInt64(TileLayout.height)
            let available = levelBits >= 64 ? 0 : size >> levelBits
            guard available > 0 else { break }
            let tiles = (available + TileLayout.width - 1) / TileLayout.width
            for t in 0..<tiles {
                let width = min(TileLayout.width, available - t * TileLayout.width)
                let partial = width == TileLayout.width ? 0 : width
                let path = TileLayout.tilePath(level: level, index: t, partial: partial)
                if partial == 0, exists(path) { continue }
                try write(try store.levelHashes(level: UInt8(levelBits), start: t * TileLayout.width, count: width), to: path)
                result.written += 1
            }
            level += 1
        }
        try write(Array(checkpoint.note.utf8), to: "checkpoint")
        result.written += 1
        return result
    }

    private func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: root + "/" + path) }

    private func write(_ bytes: [UInt8], to path: String) throws {
        let full = root + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tmp = full + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { throw StoreError.storage("cannot write \(tmp)") }
        guard rename(tmp, full) == 0 else {
            unlink(tmp)
            throw StoreError.storage("cannot rename \(tmp) into place (errno \(errno))")
        }
    }
}

/// `serve --export-tiles DIR`: exports the newest tree every `interval` while it grows, beside the
/// server, and once more when the server stops.
public struct TileExporter: Service {
    let export: TileExport
    let interval: Duration
    let logger: Logger

    public init(store: LogStore, to root: String, interval: Duration = .seconds(1), logger: Logger) {
        export = TileExport(store: store, to: root)
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var exported: UInt64?
        func step() {
            do {
                guard let size = try export.store.latestCheckpoint()?.size, size != exported else { return }
                exported = try export.run().treeSize
            } catch {
                // The server goes on: readers of the export see an older tree until it works again.
                logger.error("tile export failed", metadata: ["error": "\(error)", "to": "\(export.root)"])
            }
        }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            step()
            try? await Task.sleep(for: interval)
        }
        step()
    }
}
