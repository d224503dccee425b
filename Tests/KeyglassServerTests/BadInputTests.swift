import Foundation
import KeyglassClient
import KeyglassCore
import KeyglassHTTP
import KeyglassTestSupport
import KeyglassWire
import XCTest

/// Every malformed request gets a 4xx JSON error that says what is wrong, and nothing is written.
final class BadInputTests: XCTestCase {
    struct Case {
        let name: String
        let method: String
        let path: String
        var body: String? = nil
        var headers: [String: String] = [:]
        let status: Int
    }

    func testEachBadInputGetsItsStatusAndLeavesTheTreeUnchanged() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let alice = try await log.publish(server, identity: "alice@example.com")
            try await log.publish(server, identity: "bob@example.com")
            let before = try await server.client.checkpoint()
            let auth = ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"]
            let key = Base64.encode(Ed25519.generate().publicKey)
            func body(_ fields: [String: Any]) -> String {
                String(decoding: try! JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
            }
            let good: [String: Any] = ["identity": "carol@example.com", "key_type": "ed25519", "public_key": key]
            func with(_ k: String, _ v: Any?) -> String { var f = good; f[k] = v; return body(f) }

            let cases: [Case] = [
                Case(name: "malformed JSON", method: "POST", path: "/v1/keys", body: "{\"identity\": ", headers: auth, status: 400),
                Case(name: "JSON array", method: "POST", path: "/v1/keys", body: "[1,2]", headers: auth, status: 400),
                Case(name: "missing field", method: "POST", path: "/v1/keys", body: with("public_key", nil), headers: auth, status: 400),
                Case(name: "unknown field", method: "POST", path: "/v1/keys", body: with("extra", 1), headers: auth, status: 400),
                Case(name: "wrong type", method: "POST", path: "/v1/keys", body: with("identity", 5), headers: auth, status: 400),
                Case(name: "bad base64", method: "POST", path: "/v1/keys", body: with("public_key", "not base64!"), headers: auth, status: 400),
                Case(name: "non-canonical base64", method: "POST", path: "/v1/keys", body: with("public_key", String(key.dropLast()) + "1"), headers: auth, status: 400),
                Case(name: "unknown key type", method: "POST", path: "/v1/keys", body: with("key_type", "rsa"), headers: auth, status: 400),
                Case(name: "short ed25519 key", method: "POST", path: "/v1/keys", body: with("public_key", Base64.encode([UInt8](repeating: 9, count: 31))), headers: auth, status: 400),
                Case(name: "p256 off curve", method: "POST", path: "/v1/keys", body: body(["identity": "c", "key_type": "p256", "public_key": Base64.encode([2] + [UInt8](repeating: 0, count: 31) + [3])]), headers: auth, status: 400),
                Case(name: "control character identity", method: "POST", path: "/v1/keys", body: with("identity", "car\u{7}ol"), headers: auth, status: 400),
                Case(name: "empty identity", method: "POST", path: "/v1/keys", body: with("identity", ""), headers: auth, status: 400),
                Case(name: "long identity", method: "POST", path: "/v1/keys", body: with("identity", String(repeating: "x", count: 300)), headers: auth, status: 400),
                Case(name: "oversized body", method: "POST", path: "/v1/keys", body: with("identity", String(repeating: "x", count: 20_000)), headers: auth, status: 413),
                Case(name: "wrong content type", method: "POST", path: "/v1/keys", body: with("identity", "carol"), headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "text/plain"], status: 415),
                Case(name: "no authorization", method: "POST", path: "/v1/keys", body: with("identity", "carol"), headers: ["Content-Type": "application/json"], status: 401),
                Case(name: "wrong token", method: "POST", path: "/v1/keys", body: with("identity", "carol"), headers: ["Authorization": "Bearer nope", "Content-Type": "application/json"], status: 403),
                Case(name: "not a bearer", method: "POST", path: "/v1/keys", body: with("identity", "carol"), headers: ["Authorization": "Basic eDp5", "Content-Type": "application/json"], status: 401),
                Case(name: "bad signature", method: "POST", path: "/v1/keys", body: body(["identity": "alice@example.com", "key_type": "ed25519", "public_key": key, "previous_index": alice.index, "signature": Base64.encode([UInt8](repeating: 1, count: 64))]), headers: ["Content-Type": "application/json"], status: 403),
                Case(name: "signature without previous index", method: "POST", path: "/v1/keys", body: with("signature", Base64.encode([UInt8](repeating: 1, count: 64))), headers: ["Content-Type": "application/json"], status: 400),
                Case(name: "previous index of another identity", method: "POST", path: "/v1/keys", body: body(["identity": "carol", "key_type": "ed25519", "public_key": key, "previous_index": alice.index, "signature": Base64.encode([UInt8](repeating: 1, count: 64))]), headers: ["Content-Type": "application/json"], status: 403),
                Case(name: "previous index beyond the log", method: "POST", path: "/v1/keys", body: body(["identity": "alice@example.com", "key_type": "ed25519", "public_key": key, "previous_index": 99, "signature": Base64.encode([UInt8](repeating: 1, count: 64))]), headers: ["Content-Type": "application/json"], status: 409),
                Case(name: "negative index", method: "GET", path: "/v1/proof/inclusion?index=-1&tree_size=2", status: 400),
                Case(name: "huge index", method: "GET", path: "/v1/proof/inclusion?index=99999999999999999999999&tree_size=2", status: 400),
                Case(name: "index not below size", method: "GET", path: "/v1/proof/inclusion?index=2&tree_size=2", status: 400),
                Case(name: "size beyond log", method: "GET", path: "/v1/proof/inclusion?index=0&tree_size=3", status: 400),
                Case(name: "size without checkpoint", method: "GET", path: "/v1/proof/consistency?from=0&to=5", status: 400),
                Case(name: "index and leaf hash", method: "GET", path: "/v1/proof/inclusion?index=0&leaf_hash=AA%3D%3D&tree_size=2", status: 400),
                Case(name: "bad leaf hash", method: "GET", path: "/v1/proof/inclusion?leaf_hash=AA%3D%3D&tree_size=2", status: 400),
                Case(name: "unknown leaf hash", method: "GET", path: "/v1/proof/inclusion?leaf_hash=\(Merkle.emptyRoot.base64.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&tree_size=2", status: 404),
                Case(name: "missing tree size", method: "GET", path: "/v1/proof/inclusion?index=0", status: 400),
                Case(name: "from > to", method: "GET", path: "/v1/proof/consistency?from=2&to=1", status: 400),
                Case(name: "leading zero", method: "GET", path: "/v1/proof/consistency?from=01&to=2", status: 400),
                Case(name: "entries start >= end", method: "GET", path: "/v1/entries?start=1&end=1", status: 400),
                Case(name: "entries past end", method: "GET", path: "/v1/entries?start=0&end=3", status: 400),
                Case(name: "entries no start", method: "GET", path: "/v1/entries", status: 400),
                Case(name: "tile bad level", method: "GET", path: "/tile/64/000", status: 400),
                Case(name: "tile bad index", method: "GET", path: "/tile/0/0000", status: 400),
                // URLSession removes the dot segments: the server sees /tile/000 (FastPathTests
                // sends them raw: 404).
                Case(name: "tile traversal", method: "GET", path: "/tile/0/../000", status: 400),
                Case(name: "tile width 256", method: "GET", path: "/tile/entries/000.p/256", status: 400),
                Case(name: "tile index with a needless x000 group", method: "GET", path: "/tile/entries/x000/000.p/2", status: 400),
                Case(name: "tile index x000 before a level", method: "GET", path: "/tile/0/x000/x000/000.p/1", status: 400),
                Case(name: "tile not yet there", method: "GET", path: "/tile/entries/000.p/3", status: 404),
                Case(name: "tile beyond", method: "GET", path: "/tile/0/x999/999", status: 404),
                Case(name: "unknown identity", method: "GET", path: "/v1/keys/nobody@example.com", status: 404),
                Case(name: "bad identity", method: "GET", path: "/v1/keys/a%20b", status: 400),
                Case(name: "bad percent encoding", method: "GET", path: "/v1/keys/%ff", status: 400),
                Case(name: "unknown route", method: "GET", path: "/v2/nothing", status: 404),
            ]
            for c in cases {
                let (status, data) = try await server.client.raw(c.method, c.path, body: c.body.map { Data($0.utf8) }, headers: c.headers)
                XCTAssertEqual(status, c.status, "\(c.name): \(String(decoding: data, as: UTF8.self))")
                let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
                XCTAssertNotNil(json?["error"] as? String, "\(c.name) has a JSON error code")
                XCTAssertFalse((json?["message"] as? String ?? "").isEmpty, "\(c.name) says what is wrong")
            }
            let after = try await server.client.checkpoint()
            XCTAssertEqual(after, before, "no bad request changed the tree")
            let count = try server.store.checkpointCount()
            XCTAssertEqual(count, 3)
        }
    }

    /// A field given twice is refused whichever parser reads the body: `PublishBodyScanner` leaves
    /// such bodies to JSONDecoder, which kept the first value, so `{"identity":"zz…","identity":
    /// "alice…"}` published for zz while a reader taking the last value saw alice.
    /// A path the API has, asked with a method it does not take: 405 with the methods it does
    /// (RFC 9110), not a 404 that says the resource does not exist; an unknown path stays 404.
    func testOtherMethodsOnKnownPathsGet405WithAllow() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            for (method, path, allow) in [("DELETE", "/checkpoint", "GET"), ("PUT", "/v1/keys", "POST"), ("POST", "/v1/keys/alice@example.com", "GET"),
                                          ("TRACE", "/v1/log", "GET"), ("PATCH", "/tile/0/000", "GET")] {
                let (status, headers, body) = try await server.client.rawResponse(method, path)
                XCTAssertEqual(status, 405, "\(method) \(path): \(String(decoding: body, as: UTF8.self))")
                XCTAssertEqual(headers["allow"], allow, "\(method) \(path)")
            }
            for method in ["GET", "DELETE"] {
                let (status, _) = try await server.client.raw(method, "/v1/nothing")
                XCTAssertEqual(status, 404, method)
            }
        }
    }

    func testDuplicateFieldsAreRefused() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let key = Base64.encode(Ed25519.generate().publicKey)
            let x = Base64.encode(Ed25519.randomBytes(32))
            let cases: [(String, String)] = [
                ("identity", #"{"identity":"zz@example.com","identity":"alice@example.com","key_type":"ed25519","public_key":"\#(key)"}"#),
                // An escaped spelling of the same name (JSONDecoder reads this body, not the scanner).
                ("identity", #"{"identity":"zz@example.com","identit\u0079":"alice@example.com","key_type":"ed25519","public_key":"\#(key)"}"#),
                ("key_type", #"{"identity":"alice@example.com","key_type":"ed25519","public_key":"\#(key)","key_type":"x25519"}"#),
                ("public_key", #"{"identity":"alice@example.com","key_type":"x25519","public_key":"\#(x)","public_key":{"a":["}",{"b":"\""}]}}"#),
                ("revocation", #" { "identity" : "alice@example.com" , "key_type":"x25519","public_key":"\#(x)","revocation":false,"revocation":true } "#),
                ("signature", #"{"identity":"alice@example.com","key_type":"x25519","public_key":"\#(x)","signature":null,"signature":null}"#),
            ]
            for (field, body) in cases {
                for headers in [["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"], ["Content-Type": "application/json"]] {
                    let (status, data) = try await server.client.raw("POST", "/v1/keys", body: Data(body.utf8), headers: headers)
                    let text = String(decoding: data, as: UTF8.self)
                    XCTAssertEqual(status, 400, "\(body): \(text)")
                    XCTAssertTrue(text.contains("duplicate field \(field)"), "\(body): \(text)")
                }
            }
            let size = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint.size
            XCTAssertEqual(size, 0, "nothing was published")
        }
    }

    /// `alice@example.com` followed by an invisible character is another identity that no watch
    /// file names: refused on publish and on lookup (the profile is `Identity`'s, Spec/entry.md).
    func testInvisibleCharactersInIdentitiesAreRefused() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let invisible: [Unicode.Scalar] = ["\u{034F}", "\u{FE0F}", "\u{3164}", "\u{2800}", "\u{115F}", "\u{1160}", "\u{17B4}",
                                               "\u{FFA0}", "\u{180B}", "\u{E0100}", "\u{200B}"]
            for c in invisible {
                let identity = "alice" + String(Character(c)) + "@example.com"
                let body = try JSONSerialization.data(withJSONObject: ["identity": identity, "key_type": "x25519", "public_key": Base64.encode(Ed25519.randomBytes(32))])
                let (status, data) = try await server.client.raw("POST", "/v1/keys", body: body,
                                                                 headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
                let text = String(decoding: data, as: UTF8.self)
                XCTAssertEqual(status, 400, "U+\(String(c.value, radix: 16)): \(text)")
                XCTAssertTrue(text.contains("forbidden character U+\(String(c.value, radix: 16, uppercase: true))"), text)
                let path = "/v1/keys/" + identity.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let (lookup, _) = try await server.client.raw("GET", path)
                XCTAssertEqual(lookup, 400, path)
            }
            // "." and ".." would be published but never looked up: no canonical URL path names them.
            for identity in [".", ".."] {
                let body = try JSONSerialization.data(withJSONObject: ["identity": identity, "key_type": "x25519", "public_key": Base64.encode(Ed25519.randomBytes(32))])
                let (status, data) = try await server.client.raw("POST", "/v1/keys", body: body,
                                                                 headers: ["Authorization": "Bearer \(log.token)", "Content-Type": "application/json"])
                XCTAssertEqual(status, 400, String(decoding: data, as: UTF8.self))
                XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("no URL path can name it"))
            }
            let size = try AnswerVerifier.openCheckpoint(try await server.client.checkpoint(), logKey: log.verifierKey).checkpoint.size
            XCTAssertEqual(size, 0, "nothing was published")
        }
    }

    func testSelfSignedRotationIsChainedAndStaleSignaturesConflict() async throws {
        let log = try await TestLog()
        defer { log.remove() }
        try await log.withServer { server in
            let first = Ed25519.generate()
            let a0 = try await log.publish(server, identity: "dana", key: first.publicKey)
            let second = Ed25519.generate()
            func signed(_ key: [UInt8], previous: UInt64, by seed: [UInt8]) -> PublishBody {
                let msg = KeyEntry.rotationMessage(identity: "dana", keyType: .ed25519, publicKey: key, revocation: false, previousIndex: previous)
                return PublishBody(identity: "dana", key_type: "ed25519", public_key: Base64.encode(key),
                                          signature: Base64.encode(Ed25519.sign(message: msg, seed: seed)), previous_index: previous)
            }
            let a1 = try await server.client.publish(signed(second.publicKey, previous: a0.index, by: first.seed), token: nil)
            let (_, v1) = try AnswerVerifier.verifyPublish(a1, logKey: log.verifierKey, identity: "dana", keyType: .ed25519, publicKey: second.publicKey)
            XCTAssertTrue(v1.entry.isChained)
            XCTAssertEqual(v1.entry.previousIndex, a0.index)
            XCTAssertTrue(v1.entry.isSigned(by: first.publicKey))
            // Replaying the old key's signature after the chain moved on is a conflict.
            do {
                _ = try await server.client.publish(signed(Ed25519.generate().publicKey, previous: a0.index, by: first.seed), token: nil)
                XCTFail("stale rotation accepted")
            } catch let ClientError.http(status, _) {
                XCTAssertEqual(status, 409)
            }
            let history = try await server.client.keys(identity: "dana")
            let (_, entries) = try AnswerVerifier.verifyLookup(history, logKey: log.verifierKey, identity: "dana")
            XCTAssertEqual(entries.map(\.entry.isChained), [false, true])
        }
    }
}
