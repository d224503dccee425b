import Foundation
import Hummingbird
import KeyglassCore
import KeyglassLog
import KeyglassWire
import Synchronization

/// The newest checkpoint note as a JSON string literal: every publish of a batch answers with the
/// same note, so it is escaped once per batch rather than once per publish.
final class EscapedNoteCache: Sendable {
    private let latest = Mutex<(size: UInt64, note: String, escaped: [UInt8])?>(nil)

    func escaped(_ cp: StoredCheckpoint) -> [UInt8] {
        if let hit = latest.withLock({ $0 }), hit.size == cp.size, hit.note == cp.note { return hit.escaped }
        var out: [UInt8] = []
        JSONObjectWriter.appendEscaped(cp.note, to: &out)
        latest.withLock { $0 = (cp.size, cp.note, out) }
        return out
    }
}

extension KeyglassAPI {
    func publish(_ request: Request) async throws -> Response {
        try requireJSON(contentType: request.headers[.contentType])
        let body = try await request.body.collect(upTo: options.maxBodyBytes)
        // A signed publish reads the entry it names: a read of the store like any other.
        let authorization = request.headers[.authorization]
        let publish = try await readingStorage { [self] in try preparePublish(body: body, authorization: authorization) }
        let receipt: PublishReceipt
        do { receipt = try await sequencer.submit(publish) } catch let e as PublishError { throw Self.apiError(e) }
        return try await readingStorage { [self] in try publishAnswer(receipt) }.response
    }

    /// Every check a publish passes before it is queued (body, identity, key, authorization).
    /// Synchronous, so the event-loop fast path (`FastPathHandler`) runs the same code.
    func preparePublish(body buffer: ByteBuffer, authorization: String?) throws -> PublishRequest {
        let body = try buffer.withUnsafeReadableBytes { PublishBodyScanner.scan($0) } ?? decode(Data(buffer.readableBytesView))
        let identity: String
        do { identity = try Identity.normalize(body.identity) } catch { throw APIError.badRequest(error.description) }
        let keyType: KeyType
        do { keyType = try KeyType.parse(body.key_type) } catch { throw APIError.badRequest(error.description) }
        guard let key = Base64.decode(body.public_key) else { throw APIError.badRequest("public_key is not canonical base64") }
        // The one full check of the key (for Ed25519 a scalar multiplication): the request carries
        // the fact, and the sequencer does not check it again.
        do { try keyType.validate(key) } catch { throw APIError.badRequest(error.description) }
        let revocation = body.revocation ?? false
        return try authorize(authorization, body: body, identity: identity, keyType: keyType, key: key, revocation: revocation)
            .keyCheckedInFull()
    }

    static func apiError(_ e: PublishError) -> APIError {
        switch e {
        case .conflict(let m): return APIError(.conflict, "conflict", m)
        case .overloaded, .shuttingDown:
            var err = APIError(.serviceUnavailable, "unavailable", e.description)
            err.headers[.retryAfter] = "1"
            return err
        case .notSequencer:
            var err = APIError(.serviceUnavailable, "not_sequencer", e.description)
            err.headers[.retryAfter] = "1"
            return err
        case .storage: return APIError(.serviceUnavailable, "storage_unavailable", e.description)
        case .invalid: return APIError.badRequest(e.description)
        case .logFull: return APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), "log_full", e.description)
        // No Retry-After: retrying does not help until the operator has looked at the log.
        case .futureTimestamp: return APIError(.serviceUnavailable, "future_timestamp", e.description)
        }
    }

    /// The answer to an integrated publish: the entry, its inclusion proof and the checkpoint.
    func publishAnswer(_ receipt: PublishReceipt) throws -> ReadAnswer {
        let proof = try store.inclusionProof(index: receipt.index, size: receipt.checkpoint.size)
        var json = JSONObjectWriter()
        json.field("checkpoint", escaped: escapedNotes.escaped(receipt.checkpoint))
        json.field("entry", base64: receipt.entry)
        json.field("inclusion_proof", base64: proof)
        json.field("index", number: receipt.index)
        json.field("leaf_hash", base64: receipt.leafHash)
        json.field("tree_size", number: receipt.checkpoint.size)
        return .json(json)
    }

    /// Bodies the scanner leaves (escapes, non-ASCII, duplicates, errors…). JSONDecoder keeps one
    /// of two values given for a name without a word, so the names are read first and a repeated
    /// one refused: `{"identity":"zz…","identity":"alice…"}` must not publish for either.
    func decode(_ data: Data) throws -> PublishBody {
        let names = data.withUnsafeBytes { PublishBodyScanner.memberNames($0) }
        var seen = Set<String>()  // String equality, as JSONDecoder's keys compare
        for name in names ?? [] where !seen.insert(name).inserted {
            throw APIError.badRequest("duplicate field \(name)")
        }
        let body = try decodeFields(data)
        // JSONDecoder took a body whose names could not be read: never guess what it kept.
        guard names != nil else { throw APIError.badRequest("malformed JSON body") }
        return body
    }

    private func decodeFields(_ data: Data) throws -> PublishBody {
        do {
            return try JSONDecoder().decode(PublishBody.self, from: data)
        } catch let e as PublishBody.UnknownFields {
            throw APIError.badRequest("unknown field(s): \(e.names.joined(separator: ", "))")
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.badRequest("missing field \(key.stringValue)")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            if ctx.codingPath.isEmpty { throw APIError.badRequest("body must be a JSON object") }
            throw APIError.badRequest("field \(ctx.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw APIError.badRequest("invalid value for \(ctx.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch {
            throw APIError.badRequest("malformed JSON body")
        }
    }

    /// A bearer token, if presented, must be valid. A signature, if present, must be the identity's
    /// current key's over the rotation message; it makes the entry chained. Neither: 401.
    private func authorize(_ authorization: String?, body: PublishBody, identity: String, keyType: KeyType, key: [UInt8],
                           revocation: Bool) throws -> PublishRequest {
        var tokenOK = false
        if let header = authorization {
            guard header.hasPrefix("Bearer ") else { throw APIError(.unauthorized, "unauthorized", "Authorization must be a Bearer token") }
            guard authorizer.accepts(String(header.dropFirst(7))) else { throw APIError(.forbidden, "forbidden", "publish token not accepted") }
            tokenOK = true
        }
        guard let sigText = body.signature else {
            guard tokenOK else {
                var e = APIError(.unauthorized, "unauthorized", "publishing needs an operator Bearer token or a signature by the identity's current key")
                e.headers[.wwwAuthenticate] = "Bearer"
                throw e
            }
            guard body.previous_index == nil else { throw APIError.badRequest("previous_index is only for signed (chained) publishes") }
            return PublishRequest(identity: identity, keyType: keyType, publicKey: key, revocation: revocation)
        }
        guard let signature = Base64.decode(sigText), signature.count == Ed25519.signatureLength else {
            throw APIError.badRequest("signature must be base64 of a 64-byte Ed25519 signature")
        }
        guard let previous = body.previous_index else { throw APIError.badRequest("a signed publish must give previous_index, the index of the identity's current entry") }
        let size = sequencer.latestCheckpoint.size
        guard previous < size, let stored = try store.entry(at: previous) else {
            throw APIError(.conflict, "conflict", "previous_index \(previous) is not in the log")
        }
        // An entry stored before a rule was added may now be malformed (e.g. an identity with an
        // invisible character): it authorises nothing, and that is the client's answer, not a 500.
        // `.form`: the prior key was checked in full when it was published; the signature check
        // below decodes it again anyway.
        guard let prior = try? KeyEntry.parse(stored.data, keys: .form) else {
            throw APIError(.forbidden, "forbidden", "entry \(previous) is not a valid key entry under this log's current rules and cannot authorise a rotation; publish with the operator token")
        }
        // The one rotation rule every reader applies too (`RotationRule`), applied by the only way
        // to make a chained request. Whether `previous` is still the identity's newest entry is
        // settled by the sequencer, in order, when it writes.
        do {
            return try PublishRequest.chained(identity: identity, keyType: keyType, publicKey: key, revocation: revocation,
                                              previous: RotationRule.Previous(index: previous, entry: prior), signature: signature)
        } catch {
            switch error {
            case .previousOfAnotherIdentity: throw APIError(.forbidden, "forbidden", "entry \(previous) belongs to another identity")
            case .signerCannotSign(_, let type): throw APIError(.forbidden, "forbidden", "the current key is \(type.rawValue), which cannot sign; publish with the operator token")
            case .signerRevoked: throw APIError(.forbidden, "forbidden", "the current key is revoked and cannot sign")
            case .badSignature: throw APIError(.forbidden, "forbidden", "signature does not verify under the key of entry \(previous)")
            default: throw APIError(.forbidden, "forbidden", "entry \(error)")
            }
        }
    }
}
