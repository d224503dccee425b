/// c2sp.org/tlog-tiles paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, where N is
/// written in groups of three digits, all but the last prefixed with "x" (1234067 → x001/x234/067).
public enum TileLayout {
    /// Hashes or entries per full tile.
    public static let width: UInt64 = 256
    /// Tile height: each tile level covers 8 levels of the Merkle tree.
    public static let height = 8
    /// The deepest tile level a 64-bit log can need.
    public static let maxLevel = 63

    /// The index `N` in three-digit groups, all but the last prefixed with "x": 1234067 → `x001/x234/067`.
    public static func encodeIndex(_ n: UInt64) -> String {
        var groups: [String] = []
        var v = n
        repeat {
            let g = String(v % 1000)
            groups.append(String(repeating: "0", count: 3 - g.count) + g)
            v /= 1000
        } while v > 0
        groups.reverse()
        return groups.enumerated().map { $0.offset < groups.count - 1 ? "x" + $0.element : $0.element }.joined(separator: "/")
    }

    /// `N` or `N.p/W`; a partial width of 0 or 256 means a full tile and has no suffix.
    public static func indexWithSuffix(_ n: UInt64, partial: UInt64 = 0) -> String {
        let base = encodeIndex(n)
        return partial > 0 && partial < width ? "\(base).p/\(partial)" : base
    }

    /// `tile/<L>/<N>[.p/<W>]`: hash tile `index` at tile level `level`.
    public static func tilePath(level: UInt8, index: UInt64, partial: UInt64 = 0) -> String {
        "tile/\(level)/\(indexWithSuffix(index, partial: partial))"
    }

    /// `tile/entries/<N>[.p/<W>]`: entry bundle `index` (entries 256·N onwards).
    public static func entriesPath(index: UInt64, partial: UInt64 = 0) -> String {
        "tile/entries/\(indexWithSuffix(index, partial: partial))"
    }

    /// The entry bundle holding log entry `seq` of a log of `logSize` entries.
    public static func entriesPath(forEntry seq: UInt64, logSize: UInt64) -> String {
        let n = seq / width
        return entriesPath(index: n, partial: partialWidth(tileIndex: n, count: logSize))
    }

    /// Hashes of tile level `level` (height 8·level) a tree of `treeSize` leaves has: its complete
    /// subtrees of 256^level leaves. The server's tiles, the static export and proofs read from
    /// tiles all count them this way.
    public static func hashCount(level: UInt8, treeSize: UInt64) -> UInt64 {
        let bits = UInt64(level) * UInt64(height)
        return bits >= 64 ? 0 : treeSize >> bits
    }

    /// Width of tile `tileIndex` when `count` items exist at its level: 0 when full.
    public static func partialWidth(tileIndex: UInt64, count: UInt64) -> UInt64 {
        let start = tileIndex * width
        return count >= start + width ? 0 : count - start
    }

    /// Why a tile path was refused (the server answers 400).
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .malformed(let why): return "malformed tile path: \(why)"
            }
        }
    }

    /// A parsed tile coordinate: `level` nil for an entry bundle; `partial` 0 for a full tile.
    public struct Coordinate: Equatable, Sendable {
        /// Tile level, 0 to 63; nil for an entry bundle.
        public var level: UInt8?
        /// 0-based position of the tile in its level.
        public var index: UInt64
        /// Width of a partial tile, 1 to 255; 0 for a full one.
        public var partial: UInt64
    }

    /// Parses the level segment ("0"…"63", no leading zeros) and the index part (`x001/x234/067[.p/W]`).
    /// Only the canonical spelling, the one `tilePath`/`entriesPath` write, is accepted: one tile,
    /// one path (`x000/000` would be a second name for tile 0, cached and served separately).
    public static func parse(level levelText: Substring, index indexText: Substring) throws(ParseError) -> Coordinate {
        let c = try parseGroups(level: levelText, index: indexText)
        // The grammar below allows leading `x000` groups; writing the index back and comparing is
        // the simplest exact test of canonical form.
        guard indexWithSuffix(c.index, partial: c.partial) == indexText else {
            throw .malformed("index is not in canonical form (no leading x000 groups)")
        }
        return c
    }

    private static func parseGroups(level levelText: Substring, index indexText: Substring) throws(ParseError) -> Coordinate {
        let level: UInt8?
        if levelText == "entries" {
            level = nil
        } else {
            guard let l = parseCanonicalDecimal(levelText), l <= UInt64(maxLevel) else { throw .malformed("level must be 0 to 63") }
            level = UInt8(l)
        }
        var groups = indexText.split(separator: "/", omittingEmptySubsequences: false)
        var partial: UInt64 = 0
        // "…/067.p/89": the last two slash-separated pieces are "067.p" and "89".
        if groups.count >= 2, groups[groups.count - 2].hasSuffix(".p") {
            let wText = groups.removeLast()
            guard let w = parseCanonicalDecimal(wText), w >= 1, w < width else { throw .malformed("partial width must be 1 to 255") }
            partial = w
            groups[groups.count - 1] = groups[groups.count - 1].dropLast(2)
        }
        guard !groups.isEmpty, groups.count <= 7 else { throw .malformed("bad number of index groups") }
        var index: UInt64 = 0
        for (i, g) in groups.enumerated() {
            var digits = g
            if i < groups.count - 1 {
                guard digits.first == "x" else { throw .malformed("index groups before the last must start with x") }
                digits = digits.dropFirst()
            }
            guard digits.count == 3, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let d = UInt64(digits) else {
                throw .malformed("index groups must be three digits")
            }
            let (m, o1) = index.multipliedReportingOverflow(by: 1000)
            let (s, o2) = m.addingReportingOverflow(d)
            guard !o1, !o2 else { throw .malformed("index too large") }
            index = s
        }
        return Coordinate(level: level, index: index, partial: partial)
    }
}
