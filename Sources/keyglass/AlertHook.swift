import Foundation
import KeyglassClient
#if canImport(Glibc)
import Glibc
#endif

/// `keyglass audit --on-alert COMMAND`: runs COMMAND with `/bin/sh -c`, one alert as a line of JSON on
/// its standard input, so a cron job can page or mail someone. It waits at most `timeout` for the
/// command (a hook that hangs must not hold the audit past its deadline) and reports a failure on
/// standard error; the audit's exit code stays what the alerts make it.
enum AlertHook {
    static let timeout: TimeInterval = 60

    static func run(_ command: String, alert: Alert) {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        run(command, json: String(decoding: (try? e.encode(alert)) ?? Data(), as: UTF8.self))
    }

    static func run(_ command: String, json: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let input = Pipe()
        p.standardInput = input
        do { try p.run() } catch {
            FileHandle.standardError.write(Data("keyglass: --on-alert command could not start: \(error)\n".utf8))
            return
        }
        // A command that exits without reading its input closes the pipe: that must be an error to
        // ignore (EPIPE), not a SIGPIPE that kills the audit mid-run.
        signal(SIGPIPE, SIG_IGN)
        try? input.fileHandleForWriting.write(contentsOf: Data((json + "\n").utf8))
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            FileHandle.standardError.write(Data("keyglass: --on-alert command did not finish within \(Int(timeout)) s; stopped\n".utf8))
        } else if p.terminationStatus != 0 {
            FileHandle.standardError.write(Data("keyglass: --on-alert command exited with \(p.terminationStatus)\n".utf8))
        }
    }
}
