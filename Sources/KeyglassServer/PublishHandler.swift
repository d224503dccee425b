import Foundation
import Hummingbird
import KeyglassCore
import KeyglassLog

/// POST /v1/keys body.
struct PublishBody: Decodable {
    let identity: String
    let key_type: String
    let public_key: String
    let signature: String?
    let previous_index: UInt64?
    let revocation: Bool?

    static let fields: Set<String> = ["identity", "key_type", "public_key", "signature", "previous_index", "revocation"]
}

extension KeyglassAPI {
    func publish(_ request: Request) async throws -> Response {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
        }
        let buffer = try await request.body.collect(upTo: options.maxBodyBytes)
        let data = Data(buffer.readableBytesView)
        let body = try decode(data)

        let identity: String
        do { identity = try Identity.normalize(body.identity) } catch { throw APIError.badRequest(error.description) }
        let keyType: KeyType
        do { keyType = try KeyType.parse(body.key_type) } catch { throw APIError.badRequest(error.description) }
        guard let key = Base64.decode(body.public_key) else { throw APIError.badRequest("public_key is not canonical base64") }
        do { try keyType.validate(key) } catch { throw APIError.badRequest(error.description) }
        let revocation = body.revocation ?? false

        let authorization = try await authorize(request, body: body, identity: identity, keyType: keyType, key: key, revocation: revocation)
        let receipt: PublishReceipt
        do {
            receipt = try await sequencer.submit(PublishRequest(identity: identity, keyType: keyType, publicKey: key,
                                                                revocation: revocation, authorization: authorization))
        } catch let e as PublishError {
            switch e {
            case .conflict(let m): throw APIError(.conflict, "conflict", m)
            case .overloaded, .shuttingDown:
                var err = APIError(.serviceUnavailable, "unavailable", e.description)
                err.headers[.retryAfter] = "1"
                throw err
            case .storage: throw APIError(.serviceUnavailable, "storage_unavailable", e.description)
            case .logFull: throw APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), "log_full", e.description)
            }
        }
        let proof = try await store.inclusionProof(index: receipt.index, size: receipt.checkpoint.size)
        return try .json(PublishResponse(index: receipt.index, leaf_hash: receipt.leafHash.base64, entry: Base64.encode(receipt.entry),
                                         tree_size: receipt.checkpoint.size, checkpoint: receipt.checkpoint.note,
                                         inclusion_proof: proof.map(\.base64)))
    }

    private func decode(_ data: Data) throws -> PublishBody {
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw APIError.badRequest("body must be a JSON object")
        }
        let unknown = Set(dict.keys).subtracting(PublishBody.fields)
        guard unknown.isEmpty else { throw APIError.badRequest("unknown field(s): \(unknown.sorted().joined(separator: ", "))") }
        do {
            return try JSONDecoder().decode(PublishBody.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.badRequest("missing field \(key.stringValue)")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw APIError.badRequest("field \(ctx.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw APIError.badRequest("invalid value for \(ctx.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch {
            throw APIError.badRequest("malformed JSON body")
        }
    }

    /// A bearer token, if presented, must be valid. A signature, if present, must be the identity's
    /// current key's over the rotation message; it makes the entry chained. Neither: 401.
    private func authorize(_ request: Request, body: PublishBody, identity: String, keyType: KeyType, key: [UInt8],
                           revocation: Bool) async throws -> PublishRequest.Authorization {
        var tokenOK = false
        if let header = request.headers[.authorization] {
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
            return .operatorToken
        }
        guard let signature = Base64.decode(sigText), signature.count == Ed25519.signatureLength else {
            throw APIError.badRequest("signature must be base64 of a 64-byte Ed25519 signature")
        }
        guard let previous = body.previous_index else { throw APIError.badRequest("a signed publish must give previous_index, the index of the identity's current entry") }
        let size = sequencer.latestCheckpoint.size
        guard previous < size, let stored = try await store.entry(at: previous) else {
            throw APIError(.conflict, "conflict", "previous_index \(previous) is not in the log")
        }
        let prior = try KeyEntry.parse(stored.data)
        guard prior.identity == identity else { throw APIError(.forbidden, "forbidden", "entry \(previous) belongs to another identity") }
        guard prior.keyType.canSignRotation else { throw APIError(.forbidden, "forbidden", "the current key is \(prior.keyType.rawValue), which cannot sign; publish with the operator token") }
        guard !prior.revocation else { throw APIError(.forbidden, "forbidden", "the current key is revoked and cannot sign") }
        let message = KeyEntry.rotationMessage(identity: identity, keyType: keyType, publicKey: key, revocation: revocation, previousIndex: previous)
        guard Ed25519.verify(signature: signature, message: message, publicKey: prior.publicKey) else {
            throw APIError(.forbidden, "forbidden", "signature does not verify under the key of entry \(previous)")
        }
        return .chained(previousIndex: previous, signature: signature)
    }
}
