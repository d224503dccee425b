import Foundation
import XCTest

/// Loads the independent implementations' vectors from `../shared/vectors` beside the checkout
/// (or `$KEYGLASS_VECTORS`). A missing file fails the test: vectors are never skipped silently.
enum Vectors {
    static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["KEYGLASS_VECTORS"] { return URL(fileURLWithPath: env) }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/vectors")
    }

    static func load(_ name: String) throws -> [String: Any] {
        let url = directory.appendingPathComponent(name)
        let data = try Data(contentsOf: url)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

extension Dictionary where Key == String, Value == Any {
    func dict(_ k: String) throws -> [String: Any] { try XCTUnwrap(self[k] as? [String: Any], "missing \(k)") }
    func list(_ k: String) throws -> [[String: Any]] { try XCTUnwrap(self[k] as? [[String: Any]], "missing \(k)") }
    func string(_ k: String) throws -> String { try XCTUnwrap(self[k] as? String, "missing \(k)") }
    func u64(_ k: String) throws -> UInt64 { UInt64(try XCTUnwrap(self[k] as? NSNumber, "missing \(k)").uint64Value) }
    func bool(_ k: String) throws -> Bool { try XCTUnwrap(self[k] as? Bool, "missing \(k)") }
}
