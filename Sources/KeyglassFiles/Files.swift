import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KeyglassCore

/// Small file helpers for the CLI and the auditor's state: durable atomic replace, private files.
public enum Files {
    public enum FileError: Error, CustomStringConvertible {
        case io(String)
        case tooOpen(String)
        public var description: String {
            switch self {
            case let .io(m): return m
            case let .tooOpen(p): return "\(p) is readable by group or others; a private key must be chmod 600"
            }
        }
    }

    /// Writes `data` to `path` so that a crash leaves either the old file or the new one, never a
    /// mix: write a temporary file, fsync it, rename it over `path`, fsync the directory.
    public static func writeAtomically(_ data: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError.io("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        var ok = true
        var written = 0
        while written < data.count {
            let n = data[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { ok = false; break }
            written += n
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw FileError.io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func writeAtomically(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try writeAtomically(Array(text.utf8), to: path, mode: mode)
    }

    /// Creates a new private file (0600); fails if it exists.
    public static func createPrivate(_ path: String, contents: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count, fsync(fd) == 0 else {
            throw FileError.io("cannot write \(path)")
        }
    }

    public static func readText(_ path: String) throws -> String {
        guard let d = FileManager.default.contents(atPath: path) else { throw FileError.io("cannot read \(path)") }
        return String(decoding: d, as: UTF8.self)
    }

    /// Reads a private file, refusing it when group or others may read it.
    public static func readPrivate(_ path: String) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FileError.io("cannot read \(path)") }
        guard st.st_mode & 0o077 == 0 else { throw FileError.tooOpen(path) }
        return try readText(path)
    }
}

/// Key files the CLI reads and `keyglass keygen` writes: the public key as one line of base64, the
/// private Ed25519 seed as one line of base64 in a 0600 file.
public enum KeyFiles {
    public static func readPublicKey(_ path: String) throws -> [UInt8] {
        let text = try Files.readText(path).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let key = Base64.decode(text) else { throw Files.FileError.io("\(path) must hold the public key as one line of base64") }
        return key
    }

    public static func readSeed(_ path: String) throws -> [UInt8] {
        let text = try Files.readPrivate(path).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let seed = Base64.decode(text), seed.count == Ed25519.seedLength else {
            throw Files.FileError.io("\(path) must hold a 32-byte Ed25519 seed as base64 (made by keyglass keygen)")
        }
        return seed
    }

    /// Writes PATH (seed, 0600) and PATH.pub (public key); refuses to overwrite either.
    public static func generate(at path: String) throws -> [UInt8] {
        let pair = Ed25519.generate()
        guard !FileManager.default.fileExists(atPath: path + ".pub") else { throw Files.FileError.io("\(path).pub already exists") }
        try Files.createPrivate(path, contents: Base64.encode(pair.seed) + "\n")
        try (Base64.encode(pair.publicKey) + "\n").write(toFile: path + ".pub", atomically: true, encoding: .utf8)
        return pair.publicKey
    }
}
