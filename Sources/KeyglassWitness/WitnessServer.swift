import Foundation
import Hummingbird
import Logging

/// `POST /add-checkpoint` over HTTP (c2sp.org/tlog-witness).
public enum WitnessServer {
    public static func application(witness: Witness, host: String, port: Int, logger: Logger,
                                   onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        router.post("/add-checkpoint") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 64 * 1024)
            let a = await witness.addCheckpoint(String(decoding: buffer.readableBytesView, as: UTF8.self))
            return Response(status: .init(code: a.status), headers: [.contentType: a.contentType],
                            body: .init(byteBuffer: ByteBuffer(string: a.body)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "keyglass-witness"),
                           onServerRunning: { await onRunning($0.localAddress?.port ?? port) }, logger: logger)
    }
}
