import Foundation
import KeyglassClient
import KeyglassHTTP

/// Runs the built executables (`keyglass`, `keyglass-server`) as a user would.
public enum Binaries {
    /// The directory `swift build` put the products in: the test bundle sits beside them.
    public static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["KEYGLASS_BIN"] { return URL(fileURLWithPath: env) }
        var url = Bundle.main.bundleURL
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("keyglass").path) { return url }
            url = url.deletingLastPathComponent()
        }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return repo.appendingPathComponent(".build/debug")
    }

    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs `name args…` to completion, or until `timeout` (then SIGKILLs it: status 9 by signal,
    /// so a command that should have refused to start fails its test instead of hanging it).
    public static func run(_ name: String, _ args: [String], timeout: Double = 300) throws -> Result {
        try runProcess(directory.appendingPathComponent(name), args, input: nil, timeout: timeout)
    }

    /// Runs `executable args…` with `input` on standard input (none: closed at once), to
    /// completion or `timeout` (then SIGKILL).
    static func runProcess(_ executable: URL, _ args: [String], input: Data?, timeout: Double) throws -> Result {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        defer { watchdog.cancel() }
        // Written from another thread: a large input must not block while the program's output fills its pipe.
        let writer = inp.fileHandleForWriting
        DispatchQueue.global().async {
            if let input { try? writer.write(contentsOf: input) }
            try? writer.close()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// Starts `name args…` in the background; the caller stops it.
    public static func start(_ name: String, _ args: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = directory.appendingPathComponent(name)
        p.arguments = args
        // A failure shows up on the next line: FileHandle(forWritingTo:) throws for a missing file.
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = h
        p.standardError = h
        try p.run()
        return p
    }

    /// SIGKILLs a started process and waits until it is gone. Foundation's `waitUntilExit` can miss
    /// a child killed this way, so this reaps (or sees reaped) the child itself.
    public static func kill9(_ p: Process) async {
        let pid = p.processIdentifier
        kill(pid, SIGKILL)
        for _ in 0..<400 {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r == -1 && errno == ECHILD) { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until a started server answers /healthz; fails if it exits first.
    public static func waitUntilServing(_ client: LogClient, _ process: Process) async throws {
        for _ in 0..<200 {
            if (try? await client.get("/healthz")) != nil { return }
            guard process.isRunning else { throw ClientError.network("server exited") }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ClientError.network("server did not start")
    }

    /// Starts `keyglass-server serve` on a port the kernel picks (`--port 0`) and waits, bounded,
    /// until the server has written the port it bound to `--port-file` and answers /healthz.
    /// Nothing else can take the port in between, as it could when a test picked a "free" port,
    /// released it and handed it on.
    public static func startServer(data: String, _ args: [String] = [], log: String) async throws -> (Process, Int, LogClient) {
        let portFile = log + ".port"
        try? FileManager.default.removeItem(atPath: portFile)
        let p = try start("keyglass-server", ["serve", "--data", data, "--port", "0", "--port-file", portFile] + args, log: log)
        for _ in 0..<400 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                let client = LogClient(base: URL(string: "http://127.0.0.1:\(port)")!, timeout: 5)
                try await waitUntilServing(client, p)
                return (p, port, client)
            }
            guard p.isRunning else { throw ClientError.network("keyglass-server exited before listening; see \(log)") }
            try await Task.sleep(for: .milliseconds(25))
        }
        p.terminate()
        throw ClientError.network("keyglass-server did not report its port within 10 s; see \(log)")
    }
}

/// A small seeded generator, so randomised tests reproduce.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs a system program a test needs (promtool, chromium…), installed by the Makefile. A missing
/// one is a failure, never a skip: the test would otherwise pass without checking anything.
public enum SystemTool {
    /// The absolute path of `name` on PATH, or an error naming the Makefile.
    public static func path(_ name: String) throws -> String {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") + ["/usr/sbin", "/usr/bin"]
        for dir in dirs where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") { return "\(dir)/\(name)" }
        throw ClientError.network("\(name) is not installed (`make test` installs it)")
    }

    /// Runs `name args…` with `input` on standard input, to completion or `timeout` (then SIGKILL).
    public static func run(_ name: String, _ args: [String], input: Data? = nil, timeout: Double = 120) throws -> Binaries.Result {
        try Binaries.runProcess(URL(fileURLWithPath: try path(name)), args, input: input, timeout: timeout)
    }
}
