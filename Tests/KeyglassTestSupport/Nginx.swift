import Foundation
import KeyglassClient
import KeyglassHTTP

/// A real nginx (Debian's, installed by `make test`) on a loopback port, with its files in `dir`.
public enum Nginx {
    /// A free loopback port (bound, read, released: nginx takes it right after).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The path of a file under Deploy/ in this repository (the configuration the tests run).
    public static func deployFile(_ path: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Deploy/" + path).path
    }

    /// Starts nginx with `http` (directives of the http block, e.g. an upstream) and `server` (the
    /// server block's, after its `listen`); ready once `GET readyPath` answers `readyStatuses`.
    public static func start(dir: String, http: String = "", server: String, readyPath: String,
                             readyStatuses: Set<Int> = [200]) async throws -> (Process, URL) {
        let port = try freePort()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let conf = """
            worker_processes 1;
            daemon off;
            pid \(dir)/nginx.pid;
            error_log \(dir)/error.log warn;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path \(dir)/body;
                proxy_temp_path \(dir)/proxy;
                fastcgi_temp_path \(dir)/fastcgi;
                uwsgi_temp_path \(dir)/uwsgi;
                scgi_temp_path \(dir)/scgi;
                \(http)
                server {
                    listen 127.0.0.1:\(port);
                    \(server)
                }
            }
            """
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try SystemTool.path("nginx"))
        p.arguments = ["-p", dir, "-c", dir + "/nginx.conf"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let url = URL(string: "http://127.0.0.1:\(port)")!
        let client = LogClient(base: url, timeout: 2)
        for _ in 0..<200 {
            if let (status, _) = try? await client.raw("GET", readyPath), readyStatuses.contains(status) { return (p, url) }
            guard p.isRunning else { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        p.terminate()
        throw ClientError.network("nginx did not start: \((try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "")")
    }
}
