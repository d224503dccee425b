import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassLog
import KeyglassServer
import Logging
import ServiceLifecycle

/// A key directory (v2 log) served in-process on a loopback port, from a data directory made as
/// `keyglass-server init --directory` makes it.
public struct RunningDirectory: Sendable {
    public let data: DataDirectory
    public let token: String
    /// The directory's first lookup credential.
    public let lookupToken: String
    public let verifierKey: NoteVerifierKey
    public let client: LogClient
    let group: ServiceGroup
    let task: Task<Void, Error>

    public static func start(options: DirectoryService.Options = DirectoryService.Options(), signedChangesPerSecond: Double = 0,
                             lookupsPerSecond: Double = 0, data: DataDirectory? = nil, witnesses: [WitnessConfig] = []) async throws -> RunningDirectory {
        let dir = data ?? DataDirectory(path: TestLog.temporaryDirectory("directory"))
        if !FileManager.default.fileExists(atPath: dir.database) { _ = try await dir.initialiseDirectory(origin: "dir.keyglass.example/log") }
        let signer = try dir.loadSigner()
        let seed = try dir.loadVRFSeed()
        let sqlite = try SQLiteStorage(path: dir.database, sync: .normal, secureDelete: true)
        let log = try DirectoryLog(storage: sqlite, signer: signer, vrfSeed: seed, statePath: dir.directoryState)
        var logger = Logger(label: "keyglass-test-directory")
        logger.logLevel = .warning
        let service = try DirectoryService(log: log, signer: signer, vrfSeed: seed, options: options, logger: logger)
        let collector = witnesses.isEmpty ? nil : WitnessCollector(witnesses: witnesses, sequencer: service, store: service.store,
                                                                   heartbeat: .seconds(60), logger: logger)
        let api = DirectoryAPI(directory: service, publishTokenHashes: [try dir.loadTokenHash()], signedChangesPerSecond: signedChangesPerSecond,
                               lookupTokens: try dir.loadLookupTokens(), lookupsPerSecond: lookupsPerSecond, witnesses: collector, logger: logger)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = api.application(host: "127.0.0.1", port: 0) { continuation.yield($0) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw ClientError.network("directory did not start") }
        return RunningDirectory(data: dir, token: try dir.loadToken(),
                                lookupToken: try SecretFile.read(dir.lookupToken).trimmingCharacters(in: .whitespacesAndNewlines), verifierKey: signer.verifierKey,
                                client: LogClient(base: URL(string: "http://127.0.0.1:\(port)")!, timeout: 10), group: group, task: task)
    }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// Stops and removes the data directory.
    public func remove() async {
        await stop()
        try? FileManager.default.removeItem(atPath: data.path)
    }
}
