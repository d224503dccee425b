import Foundation
import Hummingbird
import KeyglassCore

/// Writes the flat JSON objects of the hot paths (publish, inclusion proofs) straight into bytes,
/// without Codable's per-field machinery, which cost more than the SQLite work behind them.
/// Fields must be added in sorted order to match the Codable responses (`.sortedKeys`).
struct JSONObjectWriter {
    private var out: [UInt8] = [UInt8(ascii: "{")]
    private var first = true

    private mutating func key(_ k: String) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        appendString(k)
        out.append(UInt8(ascii: ":"))
    }

    private mutating func appendString(_ s: String) {
        out.append(UInt8(ascii: "\""))
        // Most strings (base64, decimal, identities) need no escaping: copy them whole.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: s.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [0x5c, 0x22]
            case UInt8(ascii: "\\"): out += [0x5c, 0x5c]
            case 0x0a: out += [0x5c, UInt8(ascii: "n")]
            case 0x0d: out += [0x5c, UInt8(ascii: "r")]
            case 0x09: out += [0x5c, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5c, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            default: out.append(b)
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
        out += Array(String(number).utf8)
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
