import Foundation
import KeyglassWire

/// Reads the common shape of a publish body without JSONDecoder: one flat object whose values are
/// plain ASCII strings without escapes, unsigned integers or booleans, each known key at most once.
/// Anything else — escapes, non-ASCII, null, nesting, duplicates, unknown keys, trailing bytes —
/// returns nil and the body goes to JSONDecoder, which decides and words the error. So this never
/// accepts what JSONDecoder would refuse or read differently (`PublishBodyScannerTests` checks it
/// differentially); it only skips JSONDecoder's cost (~7% of a publish's CPU, measured) for the
/// bodies every client sends.
enum PublishBodyScanner {
    static func scan(_ bytes: UnsafeRawBufferPointer) -> PublishBody? {
        var s = Scanner(bytes: bytes)
        var identity: String?, keyType: String?, publicKey: String?, signature: String?
        var previous: UInt64?, revocation: Bool?
        s.skipSpace()
        guard s.take(UInt8(ascii: "{")) else { return nil }
        s.skipSpace()
        if s.take(UInt8(ascii: "}")) { return nil }  // {}: JSONDecoder reports the missing field
        repeat {
            s.skipSpace()
            guard let key = s.string() else { return nil }
            s.skipSpace()
            guard s.take(UInt8(ascii: ":")) else { return nil }
            s.skipSpace()
            switch key {
            case "identity": guard identity == nil, let v = s.string() else { return nil }; identity = v
            case "key_type": guard keyType == nil, let v = s.string() else { return nil }; keyType = v
            case "public_key": guard publicKey == nil, let v = s.string() else { return nil }; publicKey = v
            case "signature": guard signature == nil, let v = s.string() else { return nil }; signature = v
            case "previous_index": guard previous == nil, let v = s.unsigned() else { return nil }; previous = v
            case "revocation": guard revocation == nil, let v = s.boolean() else { return nil }; revocation = v
            default: return nil
            }
            s.skipSpace()
        } while s.take(UInt8(ascii: ","))
        guard s.take(UInt8(ascii: "}")) else { return nil }
        s.skipSpace()
        guard s.atEnd, let identity, let keyType, let publicKey else { return nil }
        return PublishBody(identity: identity, key_type: keyType, public_key: publicKey, signature: signature,
                           previous_index: previous, revocation: revocation)
    }

    /// The names of a JSON object's members, in order, escapes decoded; nil if the bytes are not
    /// one object. Values are skipped, whatever their shape. Used to refuse repeated names in the
    /// bodies `scan` leaves to JSONDecoder (`KeyglassAPI.decode`); it only has to be exact on
    /// input JSONDecoder accepts, and bodies it cannot read are refused when JSONDecoder accepts
    /// them (`PublishBodyScannerTests` checks it reads every such body).
    static func memberNames(_ bytes: UnsafeRawBufferPointer) -> [String]? {
        var s = Scanner(bytes: bytes)
        var names: [String] = []
        s.skipSpace()
        guard s.take(UInt8(ascii: "{")) else { return nil }
        s.skipSpace()
        if s.take(UInt8(ascii: "}")) { return s.atEndAfterSpace() ? names : nil }
        repeat {
            s.skipSpace()
            // Foundation's JSONDecoder accepts a trailing comma: `{"a":1,}`.
            if !names.isEmpty, s.at < bytes.count, bytes[s.at] == UInt8(ascii: "}") { break }
            guard let name = s.anyString() else { return nil }
            names.append(name)
            s.skipSpace()
            guard s.take(UInt8(ascii: ":")) else { return nil }
            s.skipSpace()
            guard s.skipValue() else { return nil }
            s.skipSpace()
        } while s.take(UInt8(ascii: ","))
        guard s.take(UInt8(ascii: "}")), s.atEndAfterSpace() else { return nil }
        return names
    }

    private struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var at = 0

        var atEnd: Bool { at == bytes.count }

        mutating func skipSpace() {
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0a || bytes[at] == 0x0d || bytes[at] == 0x09 { at += 1 }
        }

        mutating func take(_ b: UInt8) -> Bool {
            guard at < bytes.count, bytes[at] == b else { return false }
            at += 1
            return true
        }

        /// A string of printable ASCII without escapes; nil for anything else.
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = at
            while at < bytes.count {
                let b = bytes[at]
                if b == UInt8(ascii: "\"") {
                    defer { at += 1 }
                    return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
                }
                guard b >= 0x20, b < 0x7f, b != UInt8(ascii: "\\") else { return nil }
                at += 1
            }
            return nil
        }

        /// A JSON integer ≥ 0 without sign, fraction, exponent or leading zero that fits 64 bits.
        mutating func unsigned() -> UInt64? {
            let start = at
            var v: UInt64 = 0
            while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(bytes[at] - 0x30))
                guard !o1, !o2 else { return nil }
                v = a
                at += 1
            }
            let n = at - start
            guard n > 0, n == 1 || bytes[start] != 0x30 else { return nil }
            // A fraction or exponent follows: not an integer this scanner reads.
            if at < bytes.count, bytes[at] == UInt8(ascii: ".") || bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") { return nil }
            return v
        }

        mutating func atEndAfterSpace() -> Bool {
            skipSpace()
            return atEnd
        }

        /// A string with any content; escapes are decoded by JSONDecoder itself, so a name compares
        /// exactly as JSONDecoder's copy of it does.
        mutating func anyString() -> String? {
            let start = at
            guard let escaped = skipString() else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<at])
            guard escaped else { return String(decoding: raw.dropFirst().dropLast(), as: UTF8.self) }
            return try? JSONDecoder().decode(String.self, from: Data(raw))
        }

        /// Moves past a string, quotes included; whether it holds escapes, or nil if it does not end.
        mutating func skipString() -> Bool? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var escaped = false
            while at < bytes.count {
                let b = bytes[at]
                at += 1
                if b == UInt8(ascii: "\"") { return escaped }
                if b == UInt8(ascii: "\\") {
                    escaped = true
                    at += 1  // the escaped byte, which may be a quote
                }
            }
            return nil
        }

        /// Skips one value of any kind: a string, an object or array (strings inside may hold
        /// brackets), or a number or literal (up to the next delimiter).
        mutating func skipValue() -> Bool {
            guard at < bytes.count else { return false }
            switch bytes[at] {
            case UInt8(ascii: "\""):
                return skipString() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while at < bytes.count {
                    switch bytes[at] {
                    case UInt8(ascii: "\""):
                        guard skipString() != nil else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                    default: break
                    }
                    at += 1
                    if depth == 0 { return true }
                }
                return false
            default:
                let start = at
                while at < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0a, 0x0d, 0x09].contains(bytes[at]) { at += 1 }
                return at > start
            }
        }

        mutating func boolean() -> Bool? {
            for (word, value) in [("true", true), ("false", false)] where bytes.count - at >= word.utf8.count {
                if word.utf8.elementsEqual(bytes[at..<(at + word.utf8.count)]) {
                    at += word.utf8.count
                    return value
                }
            }
            return nil
        }
    }
}
