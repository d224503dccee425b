import ArgumentParser
import Foundation
import KeyglassClient
import KeyglassCore
#if canImport(Glibc)
import Glibc
#endif

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit the log (made for cron): consistency, re-derived root, injected keys, split views.",
        discussion: """
        Each run verifies the newest checkpoint against the pinned verifier key, proves it extends the
        last audited one, downloads every new entry and re-derives the signed root, checks watched
        identities for keys their owners did not publish, and saves its state atomically in --state
        (every verified checkpoint is kept there as evidence; alerts are appended to alerts.jsonl).

        Watch file lines:  identity key_type base64key   (# starts a comment)

        Exit codes: 0 all consistent; 2 ALERT (evidence printed); 1 could not check.
        Example crontab line:  */10 * * * * keyglass audit --log URL --vkey KEY --state ~/.keyglass-audit --watch ~/watch.txt
        """)

    @OptionGroup var logOptions: LogOptions

    @Option(name: .long, help: "State directory (created on the first run).")
    var state: String

    @Option(name: .long, help: "Watch file: the keys each watched identity's owner published.")
    var watch: String?

    @Option(name: .long, parsing: .upToNextOption, help: "Files holding signed checkpoints other auditors or witnesses saw.")
    var compare: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "URLs that serve a checkpoint of the same log (mirrors, other auditors).")
    var gossip: [String] = []

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func run() async throws {
        let client: LogClient
        var options: Auditor.Options
        do {
            client = try logOptions.client()
            options = Auditor.Options(stateDirectory: state, logKey: try logOptions.verifierKey())
            if let watch { options.watch = try WatchList(text: try Files.readText(watch)) }
            for path in compare { options.otherViews.append((source: path, note: try Files.readText(path))) }
            for url in gossip {
                guard let u = URL(string: url) else { throw ValidationError("bad --gossip URL \(url)") }
                let other = LogClient(base: u)
                do { options.otherViews.append((source: url, note: try await other.checkpoint())) } catch {
                    FileHandle.standardError.write(Data("keyglass audit: gossip \(url): \(error)\n".utf8))
                }
            }
        } catch let e as ValidationError { throw e } catch { throw fail("audit", error) }
        if isatty(STDERR_FILENO) == 1 && !json {
            options.progress = { done, total in
                let pct = total == 0 ? 100 : Int(done * 100 / total)
                FileHandle.standardError.write(Data("\raudit: \(done)/\(total) entries (\(pct)%)\(done == total ? "\n" : "")".utf8))
            }
        }
        let report = await Auditor(client: client, options: options).run()
        print(json ? report.json : report.text)
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
