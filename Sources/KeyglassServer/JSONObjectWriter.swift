import Foundation
import Hummingbird
import KeyglassCore

/// Writes the flat JSON objects of the hot paths (publish, inclusion proofs) straight into bytes,
/// without Codable's per-field machinery, which cost more than the SQLite work behind them.
/// Fields must be added in sorted order to match the Codable responses (`.sortedKeys`).
struct JSONObjectWriter {
    private var out: [UInt8]
    private var first = true

    /// `capacity`: the bytes the object is expected to take (growing a buffer from nothing
    /// reallocated it several times per answer).
    init(capacity: Int = 256) {
        out = [UInt8(ascii: "{")]
        out.reserveCapacity(capacity)
    }

    /// Field names are this file's callers' own ASCII names, never escaped (checked in debug builds).
    private mutating func key(_ k: String) {
        assert(!k.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }, "a field name that needs escaping")
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: k.utf8)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    private mutating func appendString(_ s: String) {
        JSONObjectWriter.appendEscaped(s, to: &out)
    }

    /// `s` as a JSON string literal, quotes included.
    static func appendEscaped(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings (base64, decimal, identities) need no escaping: copy them whole.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: s.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        let hex = Array("0123456789abcdef".utf8)
        for b in s.utf8 {
            // The short escapes JSONEncoder writes; other control bytes as \u00XX.
            let short: UInt8? = switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): b
            case 0x08: UInt8(ascii: "b")
            case 0x09: UInt8(ascii: "t")
            case 0x0a: UInt8(ascii: "n")
            case 0x0c: UInt8(ascii: "f")
            case 0x0d: UInt8(ascii: "r")
            default: nil
            }
            if let short {
                out += [0x5c, short]
            } else if b < 0x20 {
                out += [0x5c, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            } else {
                out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    mutating func field(_ k: String, string: String) {
        key(k)
        appendString(string)
    }

    mutating func field(_ k: String, number: UInt64) {
        key(k)
        // The decimal digits straight into the output (a String per number cost two allocations).
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            var n = number
            var i = d.count
            repeat {
                i -= 1
                d[i] = UInt8(ascii: "0") + UInt8(n % 10)
                n /= 10
            } while n > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: d[i...]))
        }
    }

    mutating func field(_ k: String, strings: [String]) {
        key(k)
        out.append(UInt8(ascii: "["))
        for (i, s) in strings.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(s)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// A value already encoded as a JSON string literal (see `appendEscaped`).
    mutating func field(_ k: String, escaped: [UInt8]) {
        key(k)
        out.append(contentsOf: escaped)
    }

    /// Bytes as a base64 string (its alphabet never needs escaping).
    mutating func field(_ k: String, base64 bytes: [UInt8]) {
        bytes.withUnsafeBytes { field(k, base64: $0) }
    }

    mutating func field(_ k: String, base64 bytes: UnsafeRawBufferPointer) {
        key(k)
        out.append(UInt8(ascii: "\""))
        Base64.append(bytes, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// A hash as base64: its alphabet never needs escaping, so it is encoded straight into the output.
    mutating func field(_ k: String, base64 hash: Hash) {
        key(k)
        appendBase64(hash)
    }

    mutating func field(_ k: String, base64 hashes: [Hash]) {
        key(k)
        out.append(UInt8(ascii: "["))
        for (i, h) in hashes.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendBase64(h)
        }
        out.append(UInt8(ascii: "]"))
    }

    private mutating func appendBase64(_ hash: Hash) {
        out.append(UInt8(ascii: "\""))
        hash.appendBase64(to: &out)
        out.append(UInt8(ascii: "\""))
    }

    mutating func field(_ k: String, bool: Bool) {
        key(k)
        out.append(contentsOf: (bool ? "true" : "false").utf8)
    }

    /// A finished object.
    mutating func field(_ k: String, object: JSONObjectWriter) {
        key(k)
        out.reserveCapacity(out.count + object.out.count + 64)
        out.append(contentsOf: object.out)
        out.append(UInt8(ascii: "}"))
    }

    /// An array of finished objects.
    mutating func field(_ k: String, objects: [JSONObjectWriter]) {
        key(k)
        out.reserveCapacity(out.count + objects.reduce(2) { $0 + $1.out.count + 2 } + 64)
        out.append(UInt8(ascii: "["))
        for (i, o) in objects.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: o.out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
    }

    /// The finished object.
    func finish() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(out.count + 1)
        buffer.writeBytes(out)
        buffer.writeInteger(UInt8(ascii: "}"))
        return buffer
    }

    func response(cache: String = "no-cache") -> Response {
        Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: cache], body: .init(byteBuffer: finish()))
    }
}
