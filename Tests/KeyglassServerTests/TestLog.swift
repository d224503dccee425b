import Foundation
import Hummingbird
import KeyglassClient
import KeyglassCore
import KeyglassLog
import KeyglassServer
import Logging
import ServiceLifecycle
import XCTest

/// A real log for tests: a fresh data directory (real SQLite file, real signing key) and a real
/// HTTP server on a loopback port chosen by the kernel.
final class TestLog: Sendable {
    let directory: DataDirectory
    let verifierKey: NoteVerifierKey
    let token: String

    init() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keyglass-test-\(UUID().uuidString)").path
        directory = DataDirectory(path: path)
        verifierKey = try await directory.initialise(origin: "test.keyglass.example/log")
        token = try directory.loadToken()
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory.path) }

    func start(options: Sequencer.Options = Sequencer.Options()) async throws -> RunningServer {
        let store = try LogStore(path: directory.database, sync: .normal)
        let sequencer = try await Sequencer(store: store, signer: try directory.loadSigner(), options: options)
        var serverOptions = ServerOptions()
        serverOptions.publishTokens = [token]
        var logger = Logger(label: "keyglass-test")
        logger.logLevel = .warning
        let api = KeyglassAPI(store: store, sequencer: sequencer, options: serverOptions, logger: logger)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = api.application(host: "127.0.0.1", port: 0) { port in portContinuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ClientError.network("server did not start") }
        return RunningServer(client: LogClient(base: URL(string: "http://127.0.0.1:\(port)")!), group: group, task: task, store: store)
    }
}

struct RunningServer: Sendable {
    let client: LogClient
    let group: ServiceGroup
    let task: Task<Void, Error>
    let store: LogStore

    /// Stops like SIGTERM does: graceful shutdown, in-flight work finished.
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

extension TestLog {
    /// Runs `body` against a started server and stops it afterwards, also when `body` throws.
    func withServer<T>(options: Sequencer.Options = Sequencer.Options(), _ body: (RunningServer) async throws -> T) async throws -> T {
        let server = try await start(options: options)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Publishes `key` for `identity` with the operator token.
    @discardableResult
    func publish(_ server: RunningServer, identity: String, keyType: KeyType = .ed25519, key: [UInt8]? = nil) async throws -> PublishAnswer {
        let k = key ?? Ed25519.generate().publicKey
        return try await server.client.publish(PublishRequestBody(identity: identity, key_type: keyType.rawValue, public_key: Base64.encode(k)), token: token)
    }
}
