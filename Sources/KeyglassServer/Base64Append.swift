import KeyglassCore

// Base64 written straight into a byte buffer, for `JSONObjectWriter`. Server-only: the core keeps
// the one strict encoder and decoder (`Base64.encode`/`decode`) an auditor needs to read, and this
// exists only because the hot JSON answers encode dozens of hashes each.

extension Base64 {
    /// Appends the standard base64 (RFC 4648 §4, padded) of `bytes` to `out`, without a String in
    /// between. Table-driven, so only for public data, never for secrets. Tested against
    /// Foundation's encoder (`Base64AppendTests`).
    static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)])
            out.append(alphabet[Int(v & 63)])
            i += 3
        }
        switch bytes.count - i {
        case 1:
            let v = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(v >> 18)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        case 2:
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(v >> 18)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)])
            out.append(UInt8(ascii: "="))
        default:
            break
        }
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
}

extension Hash {
    /// Appends the 44-character base64 form to `out` (see `Base64.append`).
    func appendBase64(to out: inout [UInt8]) {
        withUnsafeBytes { Base64.append($0, to: &out) }
    }
}
