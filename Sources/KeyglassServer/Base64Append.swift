import KeyglassCore

// Base64 written straight into a byte buffer, for `JSONObjectWriter`. Server-only: the core keeps
// the one strict encoder and decoder (`Base64.encode`/`decode`) an auditor needs to read, and this
// exists only because the hot JSON answers encode dozens of hashes each.

extension Base64 {
    /// Appends the standard base64 (RFC 4648 §4, padded) of `bytes` to `out`, without a String in
    /// between. Table-driven, so only for public data, never for secrets. Tested against
    /// Foundation's encoder (`Base64AppendTests`).
    static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let start = out.count
        let length = (bytes.count + 2) / 3 * 4
        // Room first, then the characters written in place: appending one at a time checked the
        // capacity and the table's bounds for each (~3% of a lookup's CPU).
        out.append(contentsOf: repeatElement(UInt8(ascii: "="), count: length))
        alphabet.withUnsafeBufferPointer { table in
            out.withUnsafeMutableBufferPointer { o in
                var i = 0
                var j = start
                while i + 3 <= bytes.count {
                    let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                    o[j] = table[Int(v >> 18)]
                    o[j + 1] = table[Int(v >> 12 & 63)]
                    o[j + 2] = table[Int(v >> 6 & 63)]
                    o[j + 3] = table[Int(v & 63)]
                    i += 3
                    j += 4
                }
                // One or two bytes left: two or three characters, the rest stays "=".
                let rest = bytes.count - i
                guard rest > 0 else { return }
                let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
                o[j] = table[Int(v >> 18)]
                o[j + 1] = table[Int(v >> 12 & 63)]
                if rest == 2 { o[j + 2] = table[Int(v >> 6 & 63)] }
            }
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
