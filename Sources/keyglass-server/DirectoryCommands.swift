import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KeyglassCore
import KeyglassLog

/// A key directory's server holds `DIR/serve.lock` (flock) while it serves; `erase` takes it too,
/// so the two never run at once. The kernel drops a flock when its process ends, a SIGKILL too.
struct ServeLock {
    let fd: Int32

    /// Why the lock was not taken.
    struct Busy: Error, CustomStringConvertible {
        let description: String
    }

    /// Takes the lock, or says the server is running.
    static func hold(_ dir: DataDirectory) throws -> ServeLock {
        let fd = open(dir.serveLock, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Busy(description: "cannot open \(dir.serveLock)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Busy(description: "a server is serving \(dir.path) (it holds \(dir.serveLock)): stop it first")
        }
        return ServeLock(fd: fd)
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}

struct LookupToken: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup-token",
        abstract: "Add a lookup credential to a key directory: prints the token, keeps only its hash.",
        discussion: """
        Lookups and histories carry sealed changes (what each change did) and answer whether an
        identity has keys, so each needs a credential, limited per credential (serve --lookup-rate).
        Give each client application its own. The server reads DIR/lookup-tokens.sha256 when it
        starts: restart it to use a new credential. To revoke one, delete its line and restart.
        """)

    @Option(name: .long, help: "Data directory made by `init --directory`.")
    var data: String

    @Option(name: .long, help: "The credential's name: its limit is kept by it, and logs name it (letters, digits, '.', '-', '_').")
    var name: String

    func run() async throws {
        let dir = DataDirectory(path: data)
        guard dir.isDirectory else { throw ValidationError("\(data) is not a key directory (no \(dir.vrfKey))") }
        do {
            print(try dir.addLookupToken(name: name))
        } catch {
            throw commandFailed("lookup-token", error)
        }
    }
}

struct Erase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erase",
        abstract: "Erase an identity from a key directory: delete its sealed changes, never log entries.",
        discussion: """
        Deletes what each of the identity's changes did (its sealed changes: device records,
        signatures, openings), zeroing the freed pages, so nobody can open them again, and the
        server's derived state (DIR/directory-state.sqlite, rebuilt at its next start). The log's
        entries stay: the tree, its checkpoints and every proof are unchanged, and the entries show
        only the identity's label (a VRF output), versions, kinds and times. The stored
        identity-to-label row (with its VRF proof) is deleted too. From then on lookups of the
        identity and changes to it are refused (410).
        Stop the server first (this refuses while it runs). Exit 0: erased; 1: could not.
        """)

    @Option(name: .long, help: "Data directory made by `init --directory`.")
    var data: String

    @Argument(help: "The identity, as published (normalised as lookups are).")
    var identity: String

    func run() async throws {
        let dir = DataDirectory(path: data)
        guard dir.isDirectory else { throw ValidationError("\(data) is not a key directory (no \(dir.vrfKey))") }
        do {
            let lock = try ServeLock.hold(dir)
            defer { lock.release() }
            let canonical = try Identity.normalize(identity)
            let seed = try dir.loadVRFSeed()
            let label = try DirectoryLabels.computeLabel(of: canonical, key: ECVRF.SecretKey(seed: seed))
            let storage = try SQLiteStorage(path: dir.database, readers: 1, secureDelete: true)
            defer { storage.close() }
            let size = try storage.entryCount()
            let entries = try storage.entries(identity: label.hex, below: size, limit: Int(DeviceRule.maxVersion))
            let erased = try storage.eraseSealedChanges(at: entries.map(\.index), identity: DirectoryLabels.storedIdentity(canonical, vrfSeed: seed))
            // The derived state holds every label's devices: deleted, rebuilt from the log (now
            // without the erased changes) when the server next starts.
            // Zeroed first, as the log's own pages are (secure_delete): unlinked only, its pages would
            // keep the erased identity's devices on the disk's free blocks. A file that cannot be
            // removed fails the command: the next start would trust it.
            for suffix in ["", "-wal", "-shm"] { try Self.shred(dir.directoryState + suffix) }
            print("erased \(erased) sealed change(s) of \(canonical) (label \(label.hex)) and its stored label; its \(entries.count) log entr\(entries.count == 1 ? "y stays" : "ies stay")")
        } catch {
            throw commandFailed("erase", error)
        }
    }

    /// Overwrites the file at `path` with zeros, syncs and removes it; nothing if there is none.
    static func shred(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        var left = try handle.seekToEnd()
        try handle.seek(toOffset: 0)
        let zeros = Data(count: 1 << 20)
        while left > 0 {
            let n = min(UInt64(zeros.count), left)
            try handle.write(contentsOf: zeros.prefix(Int(n)))
            left -= n
        }
        try handle.synchronize()
        try handle.close()
        try FileManager.default.removeItem(atPath: path)
    }
}
