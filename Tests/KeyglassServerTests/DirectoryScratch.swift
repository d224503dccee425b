import Foundation
import KeyglassCore
import KeyglassTestSupport

/// A directory for a test's v2 log, with a signer and a VRF seed (the caller removes the directory).
func directoryScratch(_ name: String) throws -> (dir: String, signer: NoteSigner, vrfSeed: [UInt8]) {
    let dir = TestLog.temporaryDirectory(name)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return (dir, try NoteSigner.generate(name: "example.com/directory"), Ed25519.generate().seed)
}
