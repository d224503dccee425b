import ArgumentParser
import Foundation
import Hummingbird
import KeyglassClient
import KeyglassCore
import KeyglassFiles
import KeyglassWitness
import Logging

struct WitnessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "witness",
        abstract: "Run a c2sp.org/tlog-witness that cosigns only consistent checkpoints.",
        subcommands: [WitnessKeygen.self, WitnessServe.self])
}

struct WitnessKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create a witness signing key (0600) and print its cosignature/v1 verifier key.")

    @Option(name: .long, help: "The witness's name, e.g. witness.example.org/w1.")
    var name: String

    @Option(name: .long, help: "Private key file to create.")
    var out: String

    func run() throws {
        do {
            let signer = try NoteSigner.generate(name: name)
            try Files.createPrivate(out, contents: signer.encodedPrivateKey + "\n")
            let vkey = try NoteVerifierKey(name: name, type: .cosignatureV1, publicKey: signer.verifierKey.publicKey)
            print(vkey.description)
        } catch { throw fail("witness keygen", error) }
    }
}

struct WitnessServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve POST /add-checkpoint for the given logs until SIGTERM.",
        discussion: """
        For each log (--log ORIGIN=VKEY, VKEY being the log's verifier key) the witness remembers the
        checkpoint it last cosigned, in --state, and cosigns a new one only if it is signed by the log
        and a consistency proof shows it extends the remembered one.
        """)

    @Option(name: .long, help: "State directory (created if absent).")
    var state: String

    @Option(name: .long, help: "The witness's private key file (from `keyglass witness keygen`).")
    var key: String

    @Option(name: .long, parsing: .upToNextOption, help: "Logs to witness, as ORIGIN=VKEY.")
    var log: [String]

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port to listen on.")
    var port = 8090

    func run() async throws {
        var logger = Logger(label: "keyglass-witness")
        logger.logLevel = .info
        do {
            let signer = try NoteSigner(encoded: try Files.readPrivate(key))
            let logs = try log.map { spec -> NoteVerifierKey in
                guard let eq = spec.firstIndex(of: "=") else { throw ValidationError("--log takes ORIGIN=VKEY") }
                let k = try readVerifierKey(String(spec[spec.index(after: eq)...]))
                guard k.name == spec[..<eq] else { throw ValidationError("the key for \(spec[..<eq]) is named \(k.name)") }
                return k
            }
            let witness = try Witness(signer: signer, logs: logs, stateDirectory: state)
            logger.info("witness serving", metadata: ["vkey": "\(witness.verifierKey)", "logs": "\(logs.map(\.name))"])
            try await WitnessServer.application(witness: witness, host: host, port: port, logger: logger)
                .runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch let e as ValidationError { throw e } catch { throw fail("witness serve", error) }
    }
}
