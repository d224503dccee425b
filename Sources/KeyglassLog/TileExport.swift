import Foundation
import KeyglassCore
import KeyglassFiles
import Logging
import ServiceLifecycle
import Synchronization

/// Writes a log as static files in the c2sp.org/tlog-tiles layout (issue 15, point 4): every full
/// hash tile and entry bundle once (they are immutable), the partial ones of the newest tree, and
/// the checkpoint last, so nginx or a CDN can serve what an auditor reads. Each file is written
/// to a temporary name, fsynced and renamed into place (`Files.writeAtomically`): a reader sees a
/// whole file or none, a power cut leaves no torn tile, and a checkpoint appears only once every
/// tile it needs is there. Partial tiles of older trees are deleted once a newer one (or the full
/// tile) is written: the spec allows it, and a slowly growing log would otherwise keep up to 255
/// of them per tile.
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

    /// Exports the tree of the newest checkpoint. `servedNote`, when it is a note of that same
    /// checkpoint (the server's, with the witnesses' cosignatures), is written instead of the
    /// stored one, so clients that require cosignatures can use the mirror.
    @discardableResult
    public func run(servedNote: String? = nil) throws -> Result {
        guard let checkpoint = try store.latestCheckpoint() else { throw StoreError.notInitialised("the log has no checkpoint") }
        var result = Result(treeSize: checkpoint.size)
        let size = checkpoint.size
        // Entry bundles.
        let bundles = (size + TileLayout.width - 1) / TileLayout.width
        for t in 0..<bundles {
            let partial = TileLayout.partialWidth(tileIndex: t, count: size)
            let path = TileLayout.entriesPath(index: t, partial: partial)
            if partial == 0, present(path, atLeast: 2 * Int(TileLayout.width)) { continue }
            let start = t * TileLayout.width
            try write(try store.entryBundle(start: start, end: start + (partial == 0 ? TileLayout.width : partial)), to: path)
            prunePartials(of: TileLayout.entriesPath(index: t), keeping: partial == 0 ? nil : path)
            result.written += 1
        }
        // Hash tiles, level by level while the level has hashes.
        var level: UInt8 = 0
        while true {
            let available = TileLayout.hashCount(level: level, treeSize: size)
            guard available > 0 else { break }
            let tiles = (available + TileLayout.width - 1) / TileLayout.width
            for t in 0..<tiles {
                let partial = TileLayout.partialWidth(tileIndex: t, count: available)
                let path = TileLayout.tilePath(level: level, index: t, partial: partial)
                if partial == 0, present(path, atLeast: 32 * Int(TileLayout.width)) { continue }
                try write(try store.levelHashes(level: level * UInt8(TileLayout.height), start: t * TileLayout.width,
                                                count: partial == 0 ? TileLayout.width : partial), to: path)
                prunePartials(of: TileLayout.tilePath(level: level, index: t), keeping: partial == 0 ? nil : path)
                result.written += 1
            }
            level += 1
        }
        try writeCheckpoint(servedNote.flatMap { Self.isNote($0, of: checkpoint) ? $0 : nil } ?? checkpoint.note)
        result.written += 1
        return result
    }

    /// Rewrites only the checkpoint (new cosignatures of the same tree).
    public func writeCheckpoint(_ note: String) throws {
        try write(Array(note.utf8), to: "checkpoint")
    }

    /// The same checkpoint text (origin, size, root) with possibly more signature lines.
    static func isNote(_ served: String, of checkpoint: StoredCheckpoint) -> Bool {
        guard let a = try? SignedNote.parse(served), let b = try? SignedNote.parse(checkpoint.note) else { return false }
        return a.text == b.text
    }

    /// A full tile already written whole (a torn or empty file from before fsyncs is rewritten).
    private func present(_ path: String, atLeast bytes: Int) -> Bool {
        let size = (try? FileManager.default.attributesOfItem(atPath: root + "/" + path)[.size] as? Int) ?? nil
        return (size ?? 0) >= bytes
    }

    /// Deletes `<full>.p/*` except `keeping`: older partial tiles of a tile that grew.
    private func prunePartials(of full: String, keeping: String?) {
        let dir = root + "/" + full + ".p"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for name in names where full + ".p/" + name != keeping {
            try? FileManager.default.removeItem(atPath: dir + "/" + name)
        }
        if keeping == nil { try? FileManager.default.removeItem(atPath: dir) }
    }

    private func write(_ bytes: [UInt8], to path: String) throws {
        let full = root + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Files.writeAtomically(bytes, to: full)
    }
}

/// `serve --export-tiles DIR`: exports the newest tree every `interval` while it grows (and the
/// checkpoint again when new cosignatures arrive), on a thread of its own (an export of a large
/// log reads and writes for minutes), and once more when the server stops gracefully.
public final class TileExporter: Service, Sendable {
    let export: TileExport
    let interval: Duration
    let logger: Logger
    let servedNote: @Sendable () -> String?
    private let stopping = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    public init(store: LogStore, to root: String, interval: Duration = .seconds(1), servedNote: @escaping @Sendable () -> String? = { nil },
                logger: Logger) {
        export = TileExport(store: store, to: root)
        self.interval = interval
        self.servedNote = servedNote
        self.logger = logger
    }

    public func run() async throws {
        await DedicatedThread.run(name: "keyglass-tile-export", loop: { [self] in loop() }, stop: { [self] in
            stopping.store(true, ordering: .relaxed)
            wake.signal()
        })
    }

    private func loop() {
        let c = interval.components
        let seconds = Double(c.seconds) + Double(c.attoseconds) / 1e18
        var exported: (size: UInt64, note: String)?
        func step() {
            do {
                guard let cp = try export.store.latestCheckpoint() else { return }
                let note = servedNote().flatMap { TileExport.isNote($0, of: cp) ? $0 : nil } ?? cp.note
                if exported?.size == cp.size {
                    if exported?.note != note { try export.writeCheckpoint(note); exported = (cp.size, note) }
                    return
                }
                let size = try export.run(servedNote: note).treeSize
                exported = (size, note)
            } catch {
                // The server goes on: readers of the export see an older tree until it works again.
                logger.error("tile export failed", metadata: ["error": "\(error)", "to": "\(export.root)"])
            }
        }
        while !stopping.load(ordering: .relaxed) {
            step()
            _ = wake.wait(timeout: .now() + seconds)
        }
        step()
    }
}
