// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Keyglass",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "keyglass-server", targets: ["keyglass-server"]),
        .executable(name: "keyglass", targets: ["keyglass"]),
        .library(name: "KeyglassCore", targets: ["KeyglassCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Already in the build through Hummingbird; named because the event-loop fast path for reads
        // (KeyglassServer/FastPathHandler.swift) uses their channel handlers directly.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // Already built for Hummingbird and NIO; named here for Deque (the pending index's rows).
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        // GET /metrics: the log records through swift-metrics' API, the server exposes it in
        // Prometheus's text format (issue 16).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The second storage driver (issue 15): one log on PostgreSQL, shared by several servers.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // Already built for postgres-nio; named for the TLS context of `sslmode=verify-full`.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // System libraries. Named per project so they never clash with another package's shim.
        .systemLibrary(name: "CKeyglassSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CKeyglassSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CKeyglassOpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CKeyglassLibc"),

        // The verification core: hashing, proofs, notes, checkpoints, entries, tile paths.
        // No server, storage or network code, so an auditor can read it in one sitting.
        .target(name: "KeyglassCore", dependencies: ["CKeyglassSodium", "CKeyglassOpenSSL"]),

        // Storage (SQLite) and the sequencer that owns all writes.
        .target(name: "KeyglassLog", dependencies: [
            "KeyglassCore", "KeyglassFiles", "CKeyglassSQLite",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),

        // The PostgreSQL driver behind the storage seam (`LogStorage`), and the lease that lets
        // exactly one of several servers on one database sequence. All of its SQL is here.
        .target(name: "KeyglassPostgres", dependencies: [
            "KeyglassCore", "KeyglassLog",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // The HTTP API on Hummingbird 2.
        .target(name: "KeyglassServer", dependencies: [
            "CKeyglassLibc",
            "KeyglassCore", "KeyglassLog", "KeyglassWire", "KeyglassWitness",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),

        // The JSON bodies of the HTTP API, defined once for the server and its clients.
        .target(name: "KeyglassWire", dependencies: ["KeyglassCore"]),

        // Private and atomic file writes, key files: for the CLI, the auditor's state, the witness.
        .target(name: "KeyglassFiles", dependencies: ["KeyglassCore"]),

        // HTTP for clients that do not trust the server to answer: deadlines, size caps, the
        // pipelined NIO client, URLSession bounded the same way.
        .target(name: "KeyglassHTTP", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),

        // The client side: the log client, lookup verification, auditor.
        // KeyglassLog for the key directory auditor's state database (SQLite).
        .target(name: "KeyglassClient", dependencies: [
            "KeyglassCore", "KeyglassWire", "KeyglassFiles", "KeyglassHTTP", "KeyglassLog",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),

        // A c2sp.org/tlog-witness any auditor can run (`keyglass witness serve`), and the client a
        // log uses to ask witnesses for cosignatures.
        .target(name: "KeyglassWitness", dependencies: [
            "KeyglassCore", "KeyglassFiles", "KeyglassHTTP",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "keyglass-server", dependencies: [
            "KeyglassServer", "KeyglassLog", "KeyglassCore", "KeyglassPostgres",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // `make bench` reference measurements (raw SQLite inserts, SHA-256 rate, entry export for Go).
        .executableTarget(name: "keyglass-bench", dependencies: [
            "KeyglassCore", "KeyglassLog", "KeyglassWire", "CKeyglassSQLite", "CKeyglassSodium", "CKeyglassOpenSSL",
        ], path: "Benchmarks/KeyglassBench"),

        .executableTarget(name: "keyglass", dependencies: [
            "KeyglassClient", "KeyglassCore", "KeyglassLog", "KeyglassWitness", "KeyglassWire", "KeyglassFiles", "KeyglassHTTP",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Starts real servers on loopback for the tests (not shipped in any product).
        .target(name: "KeyglassTestSupport", dependencies: [
            "KeyglassServer", "KeyglassLog", "KeyglassCore", "KeyglassClient", "KeyglassWitness", "CKeyglassSQLite",
            "KeyglassWire", "KeyglassFiles", "KeyglassHTTP", "KeyglassPostgres",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/KeyglassTestSupport"),

        // A SQLite VFS that simulates power loss (writes no sync covered are lost or torn), for the
        // power-cut tests. Test-only; C because a VFS is a table of C callbacks.
        .target(name: "CKeyglassCrashVFS", dependencies: ["CKeyglassSQLite"], path: "Tests/CKeyglassCrashVFS"),

        .testTarget(name: "KeyglassCoreTests", dependencies: ["KeyglassCore", "KeyglassTestSupport"]),
        .testTarget(name: "KeyglassServerTests", dependencies: [
            "KeyglassTestSupport", "KeyglassServer", "KeyglassLog", "KeyglassCore", "KeyglassClient", "CKeyglassCrashVFS",
            "KeyglassWire", "KeyglassFiles", "KeyglassHTTP", "KeyglassPostgres",
        ]),
        .testTarget(name: "KeyglassClientTests", dependencies: [
            "KeyglassTestSupport", "KeyglassClient", "KeyglassLog", "KeyglassCore", "KeyglassWitness", "KeyglassServer",
            "KeyglassWire", "KeyglassFiles", "KeyglassHTTP", "KeyglassPostgres",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
