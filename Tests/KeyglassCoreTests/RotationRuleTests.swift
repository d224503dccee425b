@testable import KeyglassCore
import XCTest

/// The rotation rule, case by case: the server, the auditor and `lookup` all apply this one function.
final class RotationRuleTests: XCTestCase {
    let owner = Ed25519.generate()
    let other = Ed25519.generate()
    let next = Ed25519.generate().publicKey

    func signed(_ identity: String, previous: UInt64, by seed: [UInt8], revocation: Bool = false, key: [UInt8]? = nil) -> KeyEntry {
        let k = key ?? next
        let m = KeyEntry.rotationMessage(identity: identity, keyType: .ed25519, publicKey: k, revocation: revocation, previousIndex: previous)
        return KeyEntry(timestampMillis: 1, identity: identity, keyType: .ed25519, publicKey: k, revocation: revocation,
                        previousIndex: previous, signature: Ed25519.sign(message: m, seed: seed))
    }

    func head(_ index: UInt64, identity: String = "alice", type: KeyType = .ed25519, key: [UInt8]? = nil, revoked: Bool = false) -> RotationRule.Previous {
        RotationRule.Previous(index: index, identity: identity, keyType: type, publicKey: key ?? owner.publicKey, revoked: revoked)
    }

    func testEveryCase() {
        let first = KeyEntry(timestampMillis: 1, identity: "alice", keyType: .ed25519, publicKey: owner.publicKey)
        let byOperator = KeyEntry(timestampMillis: 1, identity: "alice", keyType: .ed25519, publicKey: next, previousIndex: 7)
        let p256Key: [UInt8] = [0x02] + Array(repeating: 1, count: 32)
        let cases: [(String, KeyEntry, UInt64?, RotationRule.Previous?, Result<RotationRule.Authorisation, RotationRule.Refusal>)] = [
            ("first entry of a new identity", first, 0, nil, .success(.first)),
            ("claims first, but the identity has one", first, 9, head(3), .failure(.notFirst(existing: 3))),
            ("operator change naming the newest entry", byOperator, 9, head(7), .success(.operator)),
            ("names an entry the identity does not have", byOperator, 9, nil, .failure(.noPreviousEntry(named: 7))),
            ("names an entry that is not the newest", byOperator, 9, head(8), .failure(.previousNotNewest(named: 7, newest: 8))),
            ("names another identity's entry", byOperator, 9, head(7, identity: "bob"), .failure(.previousOfAnotherIdentity(named: 7, owner: "bob"))),
            ("names an entry not before it", byOperator, 7, head(7), .failure(.previousNotBefore(named: 7))),
            ("chained, signed by the previous key", signed("alice", previous: 7, by: owner.seed), 9, head(7), .success(.chained)),
            ("chained, previous key revoked", signed("alice", previous: 7, by: owner.seed), 9, head(7, revoked: true), .failure(.signerRevoked(index: 7))),
            ("chained, previous key x25519", signed("alice", previous: 7, by: owner.seed), 9, head(7, type: .x25519), .failure(.signerCannotSign(index: 7, .x25519))),
            ("chained, previous key p256", signed("alice", previous: 7, by: owner.seed), 9, head(7, type: .p256, key: p256Key), .failure(.signerCannotSign(index: 7, .p256))),
            ("chained, signed by another key", signed("alice", previous: 7, by: other.seed), 9, head(7), .failure(.badSignature(previous: 7))),
            ("chained, a signature made for another previous index (replayed)", { var e = signed("alice", previous: 5, by: owner.seed); e.previousIndex = 7; return e }(), 9, head(7), .failure(.badSignature(previous: 7))),
            ("chained, a signature made for another identity", { var e = signed("bob", previous: 7, by: owner.seed); e.identity = "alice"; return e }(), 9, head(7), .failure(.badSignature(previous: 7))),
            ("chained revocation by the key itself", signed("alice", previous: 7, by: owner.seed, revocation: true, key: owner.publicKey), 9, head(7), .success(.chained)),
        ]
        for (name, entry, index, previous, want) in cases {
            let got: Result<RotationRule.Authorisation, RotationRule.Refusal>
            do { got = .success(try RotationRule.authorise(entry, at: index, previous: previous)) } catch { got = .failure(error) }
            XCTAssertEqual(got, want, name)
        }
    }
}
