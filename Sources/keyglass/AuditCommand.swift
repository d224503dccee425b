import ArgumentParser
import Foundation
import KeyglassClient
import KeyglassCore
#if canImport(Glibc)
import Glibc
import KeyglassFiles
#endif

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit the log (made for cron): consistency, re-derived root, injected keys, split views.",
        discussion: """
        Each run verifies the newest checkpoint against the pinned verifier key, proves it extends the \
        last audited one, downloads every new entry and re-derives the signed root, checks watched \
        identities for keys their owners did not publish, and saves its state atomically in --state \
        (every verified checkpoint is kept there as evidence; alerts are appended to alerts.jsonl the \
        moment they are found; the audited checkpoint is STATE/checkpoint, for others' --compare).

        Watch file: every key each watched identity's owner published, oldest first, one a line:
            identity key_type base64key [revoked]        (# starts a comment)
        The last key listed is the one in use. A key not listed is injected; an earlier or revoked key \
        published again is a retired key; a revocation the file does not mark `revoked` is an alert. \
        Identities added to the file later are checked against everything audited before.

        Every request has a deadline (--timeout) and a size cap, failed requests are tried again with \
        back-off, and the whole run has a deadline (--deadline): a log that stalls cannot keep a cron \
        job running. Alerts found before a failure still count.

        Exit codes: 0 all consistent; 2 ALERT (evidence printed; wins over later errors); 3 the log \
        stopped answering (position saved); 1 could not check for another reason (bad input, state).
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

    @OptionGroup var witnessOptions: WitnessOptions

    @Option(name: .long, help: "Save the audit position every N entries, so a killed run resumes there.")
    var saveEvery: UInt64 = 65536

    @Option(name: .long, help: "Deadline for the whole run (e.g. 30m); past it the position is saved and the run exits 3.")
    var deadline = "30m"

    @Flag(name: .long, help: "Also check the rotations of identities nobody watches (signature included; a notice when the rule refuses one). Costs a signature check and a second read per rotation; lookups check the rotations they show anyway.")
    var checkUnwatchedRotations = false

    @Flag(name: .long, help: "The log is served as static files (keyglass-server export behind nginx or a CDN): inclusion and consistency proofs are computed from its hash tiles instead of asked for.")
    var `static` = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Run COMMAND (with /bin/sh -c) once for each alert as it is found, the alert as one line of JSON on its standard input; never for a clean run. For paging or mail from cron. Each run of it may take 60 s; a failure is reported on standard error and does not change the exit code.", valueName: "COMMAND"))
    var onAlert: String?

    func run() async throws {
        let client: LogClient
        var options: Auditor.Options
        do {
            client = try logOptions.client()
            options = Auditor.Options(stateDirectory: state, logKey: try logOptions.verifierKey())
            options.saveEvery = max(1, saveEvery)
            options.checkUnwatchedRotations = checkUnwatchedRotations
            options.staticTiles = `static`
            // Comparing views needs a consistency proof between the two checkpoints, which a static
            // mirror cannot give for a tree it does not hold: not combined yet (a false split view).
            guard !`static` || (compare.isEmpty && gossip.isEmpty) else {
                throw ValidationError("--static cannot be combined with --compare or --gossip yet: the mirror answers no consistency proof for the other checkpoint")
            }
            let policy = try witnessOptions.policy()
            (options.witnesses, options.quorum, options.maxAge) = (policy.witnesses, policy.quorum, policy.maxAge)
            guard let runSeconds = parseDuration(deadline), runSeconds > 0 else { throw ValidationError("--deadline takes a duration like 30m or 2h (at most 10 years)") }
            options.deadline = .seconds(Int64(runSeconds))
            if let watch {
                do { options.watch = try WatchList(text: try Files.readText(watch)) } catch let e as WatchList.ParseError {
                    throw ValidationError("\(watch): \(e)")
                }
            }
            options.otherViews = try compare.map { try OtherView.read($0) }
            if let onAlert { options.onAlert = { alert in AlertHook.run(onAlert, alert: alert) } }
            for url in gossip { options.otherViews.append(try await gossipView(url, limits: try logOptions.limits())) }
        } catch let e as ValidationError { throw e } catch { throw fail("audit", error) }
        if isatty(STDERR_FILENO) == 1 && !json {
            options.progress = { done, total in
                let pct = total == 0 ? 100 : Int(done * 100 / total)
                FileHandle.standardError.write(Data("\raudit: \(done)/\(total) entries (\(pct)%)\(done == total ? "\n" : "")".utf8))
            }
        }
        let report = await Auditor(client: client, options: options).run()
        if let onAlert, let more = report.alertsNotListed {
            // The alerts past the listing cap were not run one by one: one summary stands for them.
            AlertHook.run(onAlert, json: #"{"count":\#(more),"kind":"alerts_not_listed","message":"\#(more) more alerts; every alert is in alerts.jsonl in the state directory"}"#)
        }
        print(json ? report.json : report.text)
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

/// "90", "90s", "15m", "2h", "1d" → seconds; nil for anything else or beyond `maxDurationSeconds`
/// (so a flag can never overflow the arithmetic that turns it into nanoseconds).
func parseDuration(_ text: String) -> UInt64? {
    let units: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var seconds: UInt64
    if let unit = text.last, let mult = units[unit], let n = UInt64(text.dropLast()) {
        let (product, overflow) = n.multipliedReportingOverflow(by: mult)
        guard !overflow else { return nil }
        seconds = product
    } else {
        guard let n = UInt64(text) else { return nil }
        seconds = n
    }
    return seconds <= maxDurationSeconds ? seconds : nil
}

/// Ten years: longer than any deadline, timeout or age a flag needs.
let maxDurationSeconds: UInt64 = 10 * 365 * 86_400
