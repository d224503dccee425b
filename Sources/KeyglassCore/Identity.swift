import Foundation

/// Identities are the names keys are published under ("alice@example.com"). One spelling per
/// identity: Unicode NFC, so visually equal names that differ only in composition are one identity.
public enum Identity {
    public static let maxBytes = 255

    public enum IdentityError: Error, Equatable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case forbiddenCharacter(UInt32)
        case notNormalized

        public var description: String {
            switch self {
            case .empty: return "identity is empty"
            case let .tooLong(n): return "identity is \(n) bytes; at most \(Identity.maxBytes)"
            case let .forbiddenCharacter(c): return "identity contains a forbidden character U+\(String(c, radix: 16, uppercase: true))"
            case .notNormalized: return "identity is not in Unicode NFC"
            }
        }
    }

    /// NFC-normalises and validates user input; the result is what is stored and looked up.
    public static func normalize(_ raw: String) throws(IdentityError) -> String {
        // Printable ASCII is already NFC; skipping Foundation's normaliser keeps audits fast.
        let nfc = isPrintableASCII(raw) ? raw : raw.precomposedStringWithCanonicalMapping
        try validate(nfc)
        return nfc
    }

    /// Checks a stored identity is already canonical (the entry parser's rule).
    public static func validate(_ identity: String) throws(IdentityError) {
        guard !identity.isEmpty else { throw .empty }
        let n = identity.utf8.count
        guard n <= maxBytes else { throw .tooLong(n) }
        if isPrintableASCII(identity) {
            if identity.utf8.contains(0x20) { throw .forbiddenCharacter(0x20) }
            return
        }
        for s in identity.unicodeScalars {
            // Controls, separators, bidi overrides and other invisible formatting characters
            // make two identities look alike; none belongs in a name.
            switch s.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator,
                 .surrogate, .privateUse, .unassigned:
                throw .forbiddenCharacter(s.value)
            default: break
            }
        }
        guard identity.precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual(identity.unicodeScalars) else {
            throw .notNormalized
        }
    }

    /// 0x20…0x7E only: such a string is NFC and needs no Unicode tables to check.
    static func isPrintableASCII(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
