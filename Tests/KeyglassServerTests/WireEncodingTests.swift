import Foundation
import KeyglassCore
@testable import KeyglassLog
@testable import KeyglassServer
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// The lookup and entry-page answers are written without Codable (`JSONObjectWriter.entryAnswer`):
/// they must be the bytes the Codable types give with the API's encoder, for every kind of entry.
final class WireEncodingTests: XCTestCase {
    /// The reference: the Codable answer built field by field from the parsed entry.
    private func codableAnswer(_ stored: StoredEntry, proof: [Hash]?) -> EntryAnswer {
        let entry = Base64.encode(stored.data), proofText = proof?.map(\.base64)
        do {
            let e = try KeyEntry.parse(stored.data, keys: .form)
            return EntryAnswer(index: stored.index, entry: entry, leaf_hash: stored.leafHash.base64, identity: e.identity,
                               key_type: e.keyType.rawValue, public_key: Base64.encode(e.publicKey), timestamp_ms: e.timestampMillis,
                               previous_index: e.previousIndex, chained: e.isChained, revocation: e.revocation, malformed: nil,
                               inclusion_proof: proofText)
        } catch {
            return EntryAnswer(index: stored.index, entry: entry, leaf_hash: stored.leafHash.base64, identity: nil, key_type: nil,
                               public_key: nil, timestamp_ms: nil, previous_index: nil, chained: nil, revocation: nil,
                               malformed: error.description, inclusion_proof: proofText)
        }
    }

    private func stored(_ index: UInt64, _ data: [UInt8]) -> StoredEntry {
        StoredEntry(index: index, data: data, leafHash: Merkle.leafHash(data))
    }

    /// Numbers are written digit by digit: every width, and the ends of the range, as JSONEncoder
    /// writes them; booleans likewise.
    func testNumbersAndBooleansAreWrittenAsJSONEncoderWritesThem() throws {
        struct Sample: Encodable { let n: UInt64; let t: Bool }
        var values: [UInt64] = [0, 1, 9, 10, 99, 100, UInt64.max, UInt64.max - 1, 1 << 63]
        var power: UInt64 = 1
        for _ in 0..<19 {
            values += [power - 1, power, power + 1]
            power *= 10
        }
        for (k, v) in values.enumerated() {
            var json = JSONObjectWriter()
            json.field("n", number: v)
            json.field("t", bool: k % 2 == 0)
            var buffer = json.finish()
            let written = buffer.readString(length: buffer.readableBytes)
            let reference = String(decoding: try JSONEncoder.api.encode(Sample(n: v, t: k % 2 == 0)), as: UTF8.self)
            XCTAssertEqual(written, reference, "\(v)")
        }
    }

    func testLookupAnswerIsTheCodableAnswerByteForByte() throws {
        let owner = Ed25519.generate()
        let first = KeyEntry(timestampMillis: 1_700_000_000_123, identity: "alice@example.com", keyType: .ed25519, publicKey: owner.publicKey)
        let next = Ed25519.generate().publicKey
        let message = KeyEntry.rotationMessage(identity: "alice@example.com", keyType: .ed25519, publicKey: next, revocation: false, previousIndex: 0)
        let chained = KeyEntry(timestampMillis: 1_700_000_000_456, identity: "alice@example.com", keyType: .ed25519, publicKey: next,
                               previousIndex: 0, signature: Ed25519.sign(message: message, seed: owner.seed))
        let revoked = KeyEntry(timestampMillis: 1_700_000_000_789, identity: "zoë@例え.jp", keyType: .x25519, publicKey: Ed25519.randomBytes(32),
                               revocation: true, previousIndex: 1)
        let malformed: [UInt8] = [KeyEntry.version, 0, 0, 0, 0, 0, 0, 0, 1, 3] + Array("a\"b".utf8) + [9] + Array("blake3key".utf8)
        // A key type of control bytes: the refusal quotes it, and every one must be escaped as
        // JSONEncoder escapes it.
        let controls: [UInt8] = [KeyEntry.version, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x61, 12] + [0, 1, 8, 9, 10, 12, 13, 0x1f, 0x22, 0x5c, 0x2f, 0x7f]
        let entries = [stored(0, try first.encode()), stored(1, try chained.encode()), stored(7, try revoked.encode()), stored(9, malformed),
                       stored(10, controls)]
        let proofs: [[Hash]?] = [nil, [], [Merkle.leafHash([1]), Merkle.leafHash([2])], [Merkle.emptyRoot], nil]
        for (entry, proof) in zip(entries, proofs) {
            let fast = JSONObjectWriter.entryAnswer(entry, proof: proof).finish()
            let codable = try JSONEncoder.api.encode(codableAnswer(entry, proof: proof))
            XCTAssertEqual(String(buffer: fast), String(decoding: codable, as: UTF8.self), "entry \(entry.index)")
        }
        // The whole answer, as `keys` writes it.
        let note = "test.keyglass.example/log\n10\n\(Merkle.emptyRoot.base64)\n\n— test.keyglass.example/log abc\"\\=\n"
        var json = JSONObjectWriter()
        json.field("checkpoint", string: note)
        json.field("entries", objects: zip(entries, proofs).map { JSONObjectWriter.entryAnswer($0, proof: $1) })
        json.field("identity", string: "alice@example.com")
        json.field("tree_size", number: 10)
        json.field("truncated", bool: false)
        let codable = try JSONEncoder.api.encode(KeysAnswer(identity: "alice@example.com", tree_size: 10, checkpoint: note,
                                                            entries: zip(entries, proofs).map { codableAnswer($0, proof: $1) }, truncated: false))
        XCTAssertEqual(String(buffer: json.finish()), String(decoding: codable, as: UTF8.self))
        // And an entry page, as `entries` writes it.
        var page = JSONObjectWriter()
        page.field("end", number: 11)
        page.field("entries", objects: entries.map { JSONObjectWriter.entryAnswer($0, proof: nil) })
        page.field("start", number: 0)
        let codablePage = try JSONEncoder.api.encode(EntriesAnswer(start: 0, end: 11, entries: entries.map { codableAnswer($0, proof: nil) }))
        XCTAssertEqual(String(buffer: page.finish()), String(decoding: codablePage, as: UTF8.self))
    }

    /// The directory's lookup answer (`DirectoryLookupWriter`) against the Codable one, for a member
    /// with encryption keys and a tombstone, and for identities the map proves absent both ways.
    func testDirectoryLookupAnswerIsTheCodableAnswerByteForByte() throws {
        let dir = TestLog.temporaryDirectory("wire-directory")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storage = try SQLiteStorage(path: dir + "/log.sqlite", sync: .normal)
        defer { storage.close() }
        let log = try DirectoryLog.create(storage: storage, signer: try NoteSigner.generate(name: "wire.example/log"), vrfSeed: Ed25519.generate().seed)
        // Before any change the map is empty: its absence proofs end on an empty tree.
        try log.appendMapHead()
        let emptyAnswer = try log.lookup("nobody@example.com")
        XCTAssertEqual(Array(DirectoryLookupWriter.json(emptyAnswer).finish().readableBytesView), Array(try JSONEncoder.api.encode(DirectoryLookupJSON(emptyAnswer))))
        var terminals: Set<String> = [DirectoryLookupJSON(emptyAnswer).map_proof.terminal]
        var x25519 = Ed25519.randomBytes(32)
        x25519[0] |= 1
        let phone = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey,
                                     encryptionKeys: [.init(type: .x25519, key: x25519)])
        let old = try DeviceRecord(id: Ed25519.randomBytes(16), signingKey: Ed25519.generate().publicKey)
        _ = try log.publish([.init(identity: "alice@example.com", kind: .add(old), authority: .operator)])
        _ = try log.publish([.init(identity: "alice@example.com", kind: .reset(phone), authority: .operator)])
        for i in 0..<20 {
            _ = try log.publish([.init(identity: "user\(i)@example.com", kind: .add(try DeviceRecord(id: Ed25519.randomBytes(16),
                                                                                                      signingKey: Ed25519.generate().publicKey)),
                                       authority: .operator)])
        }
        try log.appendMapHead()
        for identity in ["alice@example.com", "user3@example.com"] + (0..<40).map { "nobody\($0)@example.com" } {
            let answer = try log.lookup(identity)
            let codable = try JSONEncoder.api.encode(DirectoryLookupJSON(answer))
            let written = DirectoryLookupWriter.json(answer).finish()
            XCTAssertEqual(Array(written.readableBytesView), Array(codable), identity)
            terminals.insert(DirectoryLookupJSON(answer).map_proof.terminal)
        }
        XCTAssertEqual(terminals, ["member", "empty", "other_leaf"], "every kind of map proof compared")
    }
}
