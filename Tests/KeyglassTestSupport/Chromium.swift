import Foundation

/// Debian's Chromium, headless, as the status page's tests drive it: load a page, let its script
/// run to completion (virtual time stops only while nothing is pending, fetches included), and
/// return the DOM or a screenshot. Each run has a profile of its own, so runs never share state.
public enum Chromium {
    private static func run(_ url: URL, _ extra: [String]) throws -> Binaries.Result {
        let profile = TestLog.temporaryDirectory("chromium")
        defer { try? FileManager.default.removeItem(atPath: profile) }
        // --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        let args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--user-data-dir=\(profile)", "--virtual-time-budget=10000"] + extra + [url.absoluteString]
        let result = try SystemTool.run("chromium", args, timeout: 90)
        guard result.status == 0 else { throw ChromiumError(message: "chromium exited \(result.status): \(result.stderr.suffix(2000))") }
        return result
    }

    /// The DOM after the page's scripts ran.
    public static func dom(_ url: URL) throws -> String {
        try run(url, ["--dump-dom"]).stdout
    }

    /// A PNG of the page, `width`×`height` CSS pixels, written to `path`.
    public static func screenshot(_ url: URL, to path: String, width: Int = 1100, height: Int = 1500) throws {
        _ = try run(url, ["--hide-scrollbars", "--window-size=\(width),\(height)", "--screenshot=\(path)"])
    }

    public struct ChromiumError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}
