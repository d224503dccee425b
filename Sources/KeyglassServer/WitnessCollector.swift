import Foundation
import KeyglassCore
import KeyglassLog
import KeyglassWitness
import Logging
import ServiceLifecycle
import Synchronization

/// A witness the log asks to cosign its checkpoints.
public struct WitnessConfig: Sendable {
    public let url: URL
    /// The witness's cosignature/v1 verifier key.
    public let key: NoteVerifierKey

    public init(url: URL, key: NoteVerifierKey) {
        self.url = url
        self.key = key
    }

    /// Parses `URL=VKEY`.
    public init(_ text: String) throws {
        guard let eq = text.firstIndex(of: "="), let url = URL(string: String(text[..<eq])), url.scheme != nil else {
            throw NoteKeyError.malformed("witness must be URL=VKEY")
        }
        let key = try NoteVerifierKey(String(text[text.index(after: eq)...]))
        guard key.type == .cosignatureV1 else { throw NoteKeyError.malformed("witness key must be a cosignature/v1 key") }
        self.init(url: url, key: key)
    }
}

/// What a witness collector sends to witnesses: a v1 log's newest checkpoint, a key directory's
/// newest checkpoint that ends in a map head (the one its lookups are answered against).
public protocol WitnessedCheckpoints: Sendable {
    var checkpointToWitness: StoredCheckpoint? { get }
}

extension Sequencer: WitnessedCheckpoints {
    public var checkpointToWitness: StoredCheckpoint? { latestCheckpoint }
}

/// Sends every new checkpoint to the configured witnesses, and the current one again on a heartbeat
/// even when nothing was published, so auditors can tell a frozen log from a quiet one. Serves the
/// newest checkpoint with the cosignatures collected for it.
public actor WitnessCollector: Service {
    private let witnesses: [WitnessConfig]
    private let source: any WitnessedCheckpoints
    private let store: LogStore
    private let heartbeat: Duration
    private let logger: Logger
    private var witnessSize: [String: UInt64] = [:]
    /// The checkpoint text the cosignatures below are for, and each witness's newest line.
    private let collected = Mutex<(text: String, lines: [String: String])>(("", [:]))
    /// When each witness (by key name) last returned a valid cosignature.
    private let lastCosigned = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(witnesses: [WitnessConfig], sequencer: any WitnessedCheckpoints, store: LogStore, heartbeat: Duration, logger: Logger) {
        self.witnesses = witnesses
        self.source = sequencer
        self.store = store
        self.heartbeat = heartbeat
        self.logger = logger
    }

    /// The newest checkpoint note with every cosignature collected for exactly that checkpoint.
    public nonisolated func servedCheckpoint() -> String {
        source.checkpointToWitness.map { served($0) } ?? ""
    }

    /// Each configured witness's name and when it last cosigned (nil: not since the server started).
    public nonisolated func cosignatureTimes() -> [(name: String, at: ContinuousClock.Instant?)] {
        let times = lastCosigned.withLock { $0 }
        return witnesses.map { ($0.key.name, times[$0.key.name]) }
    }

    /// `checkpoint`'s note with the cosignatures collected for exactly it, if any.
    public nonisolated func served(_ checkpoint: StoredCheckpoint) -> String {
        served(note: checkpoint.note)
    }

    /// `note` with the cosignatures collected for exactly its checkpoint, if any.
    public nonisolated func served(note: String) -> String {
        guard let text = try? SignedNote.parse(note).text else { return note }
        return collected.withLock { c in
            c.text == text ? note + c.lines.keys.sorted().compactMap { c.lines[$0] }.joined() : note
        }
    }

    public func run() async throws {
        var lastText = ""
        var lastRound = ContinuousClock.now - heartbeat
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if let cp = source.checkpointToWitness, let note = try? SignedNote.parse(cp.note), note.text != lastText || ContinuousClock.now - lastRound >= heartbeat {
                lastText = note.text
                lastRound = .now
                await withTaskGroup(of: Void.self) { group in
                    for w in witnesses { group.addTask { await self.submit(cp, note: note, to: w) } }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    private func submit(_ cp: StoredCheckpoint, note: SignedNote, to witness: WitnessConfig) async {
        let client = WitnessClient(url: witness.url)
        for _ in 0..<3 {
            let old = witnessSize[witness.key.name] ?? 0
            guard old <= cp.size else {
                logger.error("witness has cosigned a larger tree than this log has", metadata: ["witness": "\(witness.key.name)", "witness_size": "\(old)"])
                return
            }
            do {
                let store = store
                let proof = old == 0 || old == cp.size ? [] : try await StorageThreads.reading(store) { try store.consistencyProof(from: old, to: cp.size) }
                switch try await client.addCheckpoint(AddCheckpointRequest(oldSize: old, proof: proof, note: cp.note)) {
                case .cosigned(let sigs):
                    guard let sig = sigs.first(where: { $0.name == witness.key.name && $0.keyID == witness.key.keyID }),
                          (try? SignedNote.open(note.text + "\n" + sig.line, verifiers: [witness.key])) != nil else {
                        logger.warning("witness returned no valid cosignature", metadata: ["witness": "\(witness.key.name)"])
                        return
                    }
                    witnessSize[witness.key.name] = cp.size
                    lastCosigned.withLock { $0[witness.key.name] = .now }
                    collected.withLock { c in
                        if c.text != note.text { c = (note.text, [:]) }
                        c.lines[witness.key.name] = sig.line
                    }
                    return
                case .conflict(let size):
                    witnessSize[witness.key.name] = size
                case let outcome:
                    logger.warning("witness refused the checkpoint", metadata: ["witness": "\(witness.key.name)", "outcome": "\(outcome)"])
                    return
                }
            } catch {
                logger.warning("witness unreachable", metadata: ["witness": "\(witness.key.name)", "error": "\(error)"])
                return
            }
        }
    }
}
