@testable import KeyglassCore
import XCTest

/// Checkpoint bodies (transparency-dev/formats, sumdb/tlog) and tile paths (tessera, C2SP).
final class FormatVectorTests: XCTestCase {
    func testCheckpointUnmarshalCases() throws {
        let cases = try Vectors.load("transparency-dev-formats.json").dict("checkpoint_unmarshal").list("cases")
        XCTAssertEqual(cases.count, 12)
        for c in cases {
            let desc = try c.string("desc")
            let body = try? Checkpoint.parseBody(try c.string("m"))
            if try c.bool("wantErr") {
                XCTAssertNil(body, desc)
            } else {
                let b = try XCTUnwrap(body, desc)
                let want = try c.dict("want")
                XCTAssertEqual(b.origin, try want.string("Origin"), desc)
                XCTAssertEqual(b.size, try want.u64("Size"), desc)
                XCTAssertEqual(String(decoding: b.root, as: UTF8.self), try want.string("Hash_ascii"), desc)
                XCTAssertEqual(b.rest, (c["wantRest"] as? String) ?? "", desc)
                // Keyglass's strict parser also demands a 32-byte root; these placeholders are not.
                XCTAssertThrowsError(try Checkpoint.parse(try c.string("m")), desc)
            }
        }
    }

    func testSumdbTreeNote() throws {
        let v = try Vectors.load("golang-mod-sumdb.json").dict("tree_note")
        let cp = Checkpoint(origin: "go.sum database tree", size: try v.u64("N"), root: Merkle.leafHash(Array("hello world".utf8)))
        XCTAssertEqual(cp.text, try v.string("golden"))
        XCTAssertEqual(try Checkpoint.parse(try v.string("golden")), cp)
        for bad in try XCTUnwrap(v["bad_trees_must_fail"] as? [String]) {
            let parsed = try? Checkpoint.parse(bad)
            XCTAssertTrue(parsed == nil || parsed?.origin != "go.sum database tree", bad)
        }
    }

    func testTesseraPaths() throws {
        let v = try Vectors.load("tessera-layout-paths.json")
        for c in try v.list("EntriesPathForLogIndex(seq, logSize)") {
            XCTAssertEqual(TileLayout.entriesPath(forEntry: try c.u64("seq"), logSize: try c.u64("logSize")), try c.string("wantPath"))
        }
        for c in try v.list("EntriesPath(N, p)") {
            XCTAssertEqual(TileLayout.entriesPath(index: try c.u64("N"), partial: (c["p"] as? NSNumber)?.uint64Value ?? 0), try c.string("wantPath"))
        }
        for c in try v.list("TilePath(level, index, p)") {
            XCTAssertEqual(TileLayout.tilePath(level: UInt8(try c.u64("level")), index: try c.u64("index"),
                                               partial: (c["p"] as? NSNumber)?.uint64Value ?? 0), try c.string("wantPath"))
        }
        for c in try v.list("NWithSuffix(level, index, p)") {
            XCTAssertEqual(TileLayout.indexWithSuffix(try c.u64("index"), partial: (c["p"] as? NSNumber)?.uint64Value ?? 0), try c.string("wantPath"))
        }
        let parses = try v.list("ParseTileLevelIndexPartial(pathLevel, pathIndex)")
        XCTAssertEqual(parses.count, 19)
        for c in parses {
            let level = try c.string("pathLevel"), index = try c.string("pathIndex")
            let got = try? TileLayout.parse(level: Substring(level), index: Substring(index))
            if (c["wantErr"] as? Bool) == true {
                XCTAssertNil(got, "\(level) \(index)")
            } else {
                let g = try XCTUnwrap(got, "\(level) \(index)")
                XCTAssertEqual(UInt64(g.level ?? 255), try c.u64("wantLevel"))
                XCTAssertEqual(g.index, try c.u64("wantIndex"))
                XCTAssertEqual(g.partial, try c.u64("wantP"))
            }
        }
    }

    func testC2SPTileExamples() throws {
        let t = try Vectors.load("c2sp-spec-examples.json").dict("tiles")
        let ex = try t.dict("index_path_example")
        XCTAssertEqual(TileLayout.encodeIndex(try ex.u64("N")), try ex.string("path_element"))
        XCTAssertEqual(try t.u64("tile_width"), TileLayout.width)
        let s = try t.dict("tree_size_70000")
        // Level 0 holds 70000 hashes; level 1 holds 70000/256; level 2 holds 70000/65536.
        XCTAssertEqual(70000 / TileLayout.width, try s.u64("full_level0_tiles"))
        XCTAssertEqual(TileLayout.partialWidth(tileIndex: 70000 / 256, count: 70000), try s.u64("partial_level0_width"))
        XCTAssertEqual(273 / TileLayout.width, try s.u64("full_level1_tiles"))
        XCTAssertEqual(TileLayout.partialWidth(tileIndex: 1, count: 273), try s.u64("partial_level1_width"))
        XCTAssertEqual(TileLayout.partialWidth(tileIndex: 0, count: 1), try s.u64("partial_level2_width"))
    }

    func testEntryBundleRoundTrip() {
        let entries: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300)]
        let bundle = EntryBundle.encode(entries)
        XCTAssertEqual(Array(bundle.prefix(5)), [0, 3, 1, 2, 3])
        XCTAssertEqual(EntryBundle.decode(bundle), entries)
        XCTAssertNil(EntryBundle.decode(Array(bundle.dropLast())))
    }
}
