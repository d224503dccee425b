import Foundation

/// Identities are the names keys are published under ("alice@example.com"). One spelling per
/// identity: Unicode NFC, so visually equal names that differ only in composition are one identity,
/// and nothing invisible, so a name cannot be copied with a character nobody sees added. The profile,
/// and why case is not folded and confusables are not refused, is in Spec/entry.md.
public enum Identity {
    /// Longest identity in UTF-8 bytes: the entry stores its length in one byte (Spec/entry.md).
    public static let maxBytes = 255

    /// Which rule of the identity profile (Spec/entry.md) an identity breaks.
    public enum IdentityError: Error, Equatable, CustomStringConvertible {
        /// No characters at all.
        case empty
        /// Longer than `maxBytes`; carries the UTF-8 length.
        case tooLong(Int)
        /// A space, control, invisible or blank-looking character; carries its scalar value.
        case forbiddenCharacter(UInt32)
        /// Not in NFC (only `validate` throws this; `normalize` normalises first).
        case notNormalized
        /// "." or "..": a lookup's URL path could not name it (`/v1/keys/..` is not a canonical path).
        case dotSegment

        /// One line for logs and error answers.
        public var description: String {
            switch self {
            case .empty: return "identity is empty"
            case .tooLong(let n): return "identity is \(n) bytes; at most \(Identity.maxBytes)"
            case .forbiddenCharacter(let c): return "identity contains a forbidden character U+\(String(c, radix: 16, uppercase: true))"
            case .notNormalized: return "identity is not in Unicode NFC"
            case .dotSegment: return "identity may not be \".\" or \"..\" (no URL path can name it)"
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
        if isDotSegment(identity.utf8) { throw .dotSegment }
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
            // Default-ignorable code points are invisible by definition (fonts draw nothing): the
            // combining grapheme joiner U+034F, variation selectors, Hangul fillers, Khmer inherent
            // vowels… Most are not Cf, so the categories above miss them.
            if s.properties.isDefaultIgnorableCodePoint || blankLooking.contains(s.value) { throw .forbiddenCharacter(s.value) }
        }
        guard identity.precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual(identity.unicodeScalars) else {
            throw .notNormalized
        }
    }

    /// Characters that render as blank space but are neither spaces nor default-ignorable: U+2800
    /// BRAILLE PATTERN BLANK, U+16FE4 KHITAN SMALL SCRIPT FILLER, U+1D159 MUSICAL SYMBOL NULL
    /// NOTEHEAD. Plus the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), default-ignorable in
    /// current Unicode, named so that a platform with older tables refuses them too.
    static let blankLooking: Set<UInt32> = [0x2800, 0x16FE4, 0x1D159, 0x115F, 0x1160, 0x3164, 0xFFA0]

    /// "." and "..", which URL paths treat as dot segments. (The entry parser checks it on bytes.)
    static func isDotSegment<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        (bytes.count == 1 || bytes.count == 2) && bytes.allSatisfy { $0 == UInt8(ascii: ".") }
    }

    /// 0x20…0x7E only: such a string is NFC and needs no Unicode tables to check.
    static func isPrintableASCII(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
