import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files that hold secrets: created 0600 from the first byte (never widened afterwards), and refused
/// when group or others can read them.
public enum SecretFile {
    public enum SecretFileError: Error, CustomStringConvertible {
        case exists(String)
        case cannotWrite(String, Int32)
        case cannotRead(String)
        case tooOpen(String, UInt16)

        public var description: String {
            switch self {
            case let .exists(p): return "\(p) already exists; refusing to overwrite it"
            case let .cannotWrite(p, e): return "cannot write \(p): \(String(cString: strerror(e)))"
            case let .cannotRead(p): return "cannot read \(p)"
            case let .tooOpen(p, m): return "\(p) has mode \(String(m, radix: 8)); a secret must not be readable by group or others (chmod 600)"
            }
        }
    }

    /// Writes `contents` to a new file with mode 0600. Fails if the file exists.
    public static func create(_ path: String, contents: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw SecretFileError.exists(path) }
            throw SecretFileError.cannotWrite(path, errno)
        }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw SecretFileError.cannotWrite(path, errno) }
            written += n
        }
        guard fsync(fd) == 0 else { throw SecretFileError.cannotWrite(path, errno) }
    }

    /// Reads a secret, refusing one whose permissions let group or others read or write it.
    public static func read(_ path: String) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SecretFileError.cannotRead(path) }
        let mode = UInt16(st.st_mode & 0o777)
        guard mode & 0o077 == 0 else { throw SecretFileError.tooOpen(path, mode) }
        guard let data = FileManager.default.contents(atPath: path) else { throw SecretFileError.cannotRead(path) }
        return String(decoding: data, as: UTF8.self)
    }
}
