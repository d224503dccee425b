@testable import KeyglassCore
import KeyglassTestSupport
import XCTest

/// Mutation fuzzing of every parser an attacker can reach: thousands of corrupted inputs each.
/// No input may crash a parser, and any input a parser accepts must be canonical: serialising
/// the parsed value gives back exactly the input. Seeded, so a failure reproduces.
final class ParserFuzzTests: XCTestCase {
    static let iterations = 4000

    /// A corrupted copy of `input`: bit flips, inserted, deleted or replaced bytes, truncation,
    /// duplication, or interesting values.
    func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let op = Int.random(in: 0..<7, using: &rng)
            let at = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
            switch op {
            case 0 where !b.isEmpty: b[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: b.insert(UInt8.random(in: 0...255, using: &rng), at: at)
            case 2 where !b.isEmpty: b.remove(at: at)
            case 3 where !b.isEmpty: b = Array(b[..<at])
            case 4 where !b.isEmpty: b[at] = [0x00, 0x0a, 0x20, 0x2b, 0x2d, 0x2f, 0x30, 0x39, 0x3d, 0x78, 0x7f, 0x80, 0xc3, 0xe2, 0xff].randomElement(using: &rng)!
            case 5 where !b.isEmpty: b.insert(contentsOf: b[at..<min(b.count, at + 8)], at: at)
            default: b.append(UInt8.random(in: 0...255, using: &rng))
            }
        }
        return b
    }

    func fuzz(_ name: String, seeds: [[UInt8]], check: ([UInt8]) -> Void) {
        var rng = SplitMix64(state: UInt64(truncatingIfNeeded: name.hashValue & 0) &+ 42)
        for s in seeds { check(s) }
        for _ in 0..<Self.iterations {
            check(mutate(seeds.randomElement(using: &rng)!, &rng))
        }
    }

    func text(_ b: [UInt8]) -> String? { String(validating: b, as: UTF8.self) }

    func testKeyEntryParser() throws {
        let signer = Ed25519.keyPair(seed: [UInt8](repeating: 5, count: 32))!
        let seeds = try [
            KeyEntry(timestampMillis: 1, identity: "alice@example.com", keyType: .ed25519, publicKey: signer.publicKey).encode(),
            KeyEntry(timestampMillis: 2, identity: "zoë", keyType: .x25519, publicKey: [UInt8](repeating: 9, count: 32), previousIndex: 5).encode(),
            KeyEntry(timestampMillis: 3, identity: "b", keyType: .ed25519, publicKey: signer.publicKey, revocation: true, previousIndex: 0,
                     signature: [UInt8](repeating: 1, count: 64)).encode(),
        ]
        var accepted = 0
        fuzz("entry", seeds: seeds) { input in
            guard let e = try? KeyEntry.parse(input) else { return }
            accepted += 1
            XCTAssertEqual(try? e.encode(), input, "accepted entry must be canonical: \(Hex.encode(input))")
        }
        XCTAssertGreaterThanOrEqual(accepted, seeds.count)
    }

    func testSignedNoteAndCheckpointParsers() throws {
        let signer = try NoteSigner(name: "fuzz.example/log", seed: [UInt8](repeating: 3, count: 32))
        let witness = try NoteSigner(name: "fuzz.example/w", seed: [UInt8](repeating: 4, count: 32))
        let wkey = try NoteVerifierKey(name: witness.name, type: .cosignatureV1, publicKey: witness.verifierKey.publicKey)
        let cp = Checkpoint(origin: "fuzz.example/log", size: 1234, root: Merkle.emptyRoot)
        let signed = try SignedCheckpoint.sign(cp, with: signer).note
        let cosigned = SignedNote(text: signed.text, signatures: signed.signatures + [try Cosignature.sign(checkpointText: signed.text, time: 99, witness: witness)])
        let seeds = [Array(signed.serialized.utf8), Array(cosigned.serialized.utf8)]
        fuzz("note", seeds: seeds) { input in
            guard let t = text(input) else { return }
            if let note = try? SignedNote.parse(t) {
                XCTAssertEqual(note.serialized, t, "accepted note must re-serialise exactly")
                if let c = try? Checkpoint.parse(note.text) { XCTAssertEqual(c.text, note.text) }
            }
            // Opening must never accept a note whose signed text differs from the original.
            if let opened = try? SignedCheckpoint.open(t, logKey: signer.verifierKey, witnesses: [wkey]) {
                XCTAssertEqual(opened.0.note.text, signed.text)
            }
        }
    }

    func testTLogProofAddCheckpointAndKeyParsers() throws {
        // A fixed key whose hash has letters, so the fuzzer can try upper-case spellings of it.
        var signer = try NoteSigner(name: "fuzz.example/log", seed: [UInt8](repeating: 7, count: 32))
        var seed: UInt8 = 8
        while String(signer.verifierKey.keyID, radix: 16).allSatisfy(\.isNumber) {
            signer = try NoteSigner(name: "fuzz.example/log", seed: [UInt8](repeating: seed, count: 32))
            seed += 1
        }
        let note = try SignedCheckpoint.sign(Checkpoint(origin: "fuzz.example/log", size: 7, root: Merkle.emptyRoot), with: signer).note.serialized
        let proof = TLogProof(extra: [1, 2, 3], index: 3, proof: [Merkle.emptyRoot, Merkle.leafHash([1])], checkpoint: note)
        fuzz("tlog-proof", seeds: [Array(proof.serialized.utf8)]) { input in
            guard let t = text(input), let p = try? TLogProof.parse(t) else { return }
            XCTAssertEqual(p.serialized, t)
        }
        let add = AddCheckpointRequest(oldSize: 3, proof: [Merkle.emptyRoot], note: note)
        fuzz("add-checkpoint", seeds: [Array(add.body.utf8)]) { input in
            guard let t = text(input), let r = try? AddCheckpointRequest.parse(t) else { return }
            XCTAssertEqual(r.body, t)
        }
        fuzz("vkey", seeds: [Array(signer.verifierKey.description.utf8)]) { input in
            guard let t = text(input), let k = try? NoteVerifierKey(t) else { return }
            XCTAssertEqual(k.description, t)
        }
    }

    /// The parser accepts exactly the paths `tilePath`/`entriesPath` write: no `x000` group the
    /// index does not need, so one tile has one path (c2sp.org/tlog-tiles).
    func testTilePathParserRefusesNonCanonicalIndices() {
        for (level, index) in [("entries", "x000/000"), ("0", "x000/001"), ("0", "x000/x000/000"), ("entries", "x000/123.p/5"),
                               ("1", "x000/x001/000"), ("entries", "x00/000"), ("0", "x0001/000"), ("0", "00"), ("0", "000.p/01"),
                               ("0", "x001/x000/000.p/0"), ("0", "000.p"), ("entries", "000/"), ("0", "/000")] {
            XCTAssertThrowsError(try TileLayout.parse(level: level[...], index: index[...]), "\(level)/\(index)")
        }
        for (level, index, n, w) in [("entries", "000", UInt64(0), UInt64(0)), ("0", "x001/000", 1000, 0), ("0", "x001/x000/000", 1_000_000, 0),
                                     ("entries", "x001/234.p/5", 1234, 5), ("63", "999", 999, 0),
                                     ("0", "x018/x446/x744/x073/x709/x551/615", UInt64.max, 0)] {
            let c = try? TileLayout.parse(level: level[...], index: index[...])
            XCTAssertEqual(c?.index, n, "\(level)/\(index)")
            XCTAssertEqual(c?.partial, w, "\(level)/\(index)")
        }
    }

    func testTilePathParser() {
        let seeds = ["0/x001/x234/067.p/89", "entries/x123/456", "63/000", "1/x001/000.p/1"].map { Array($0.utf8) }
        fuzz("tile", seeds: seeds) { input in
            guard let t = text(input), let slash = t.firstIndex(of: "/") else { return }
            guard let c = try? TileLayout.parse(level: t[..<slash], index: t[t.index(after: slash)...]) else { return }
            let back = c.level.map { "\($0)/" } ?? "entries/"
            XCTAssertEqual(back + TileLayout.indexWithSuffix(c.index, partial: c.partial), t)
        }
    }
}
