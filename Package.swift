// swift-tools-version:6.0
import PackageDescription

// The preloaded runtime links the Swift runtime statically so that any C
// program can LD_PRELOAD it. `swift test` never links that product: test
// targets depend only on pure modules, and the runtime itself is exercised by
// running C programs under dsmrun (Tests/IntegrationTests).
let package = Package(
    name: "dsm",
    products: [
        .executable(name: "dsmrun", targets: ["dsmrun"]),
        .library(name: "DSMRuntime", type: .dynamic, targets: ["DSMRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // Kernel constants and thin syscall wrappers Swift cannot import (C).
        .target(name: "CDSMKernel"),
        // ids, page math, errors, configuration.
        .target(name: "DSMCore", dependencies: [
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        // The pure MESI home-directory state machine.
        .target(name: "DSMCoherence", dependencies: ["DSMCore"]),
        // The pure System V (shm/sem) object model with Linux semantics.
        .target(name: "DSMSysV", dependencies: ["DSMCore"]),
        // A node's state of one mutex's lock token, one C declaration for sync.c and DSMSync.
        .target(name: "CDSMLockState"),
        // The pure model of mutexes, conditions, barriers, rwlocks, semaphores, futexes at their home,
        // and of a node's lock tokens.
        .target(name: "DSMSync", dependencies: ["CDSMLockState"]),
        // Wire format, TCP mesh, in-process loopback.
        .target(name: "DSMTransport", dependencies: ["DSMCore", "CDSMKernel"]),
        // PMIx (libpmix, loaded with dlopen): rank, size and endpoint exchange under srun / mpirun.
        .target(name: "CDSMPMIx",
                cSettings: [.unsafeFlags(["-I/usr/lib/x86_64-linux-gnu/pmix2/include", "-I/usr/include/pmix"])],
                linkerSettings: [.linkedLibrary("dl")]),
        // Interposers and the start-up hook; they call the runtime's @_cdecl entry points.
        .target(name: "CDSMPreload", dependencies: ["CDSMLockState"], linkerSettings: [.linkedLibrary("dl")]),
        // The preloaded library.
        .target(
            name: "DSMRuntime",
            dependencies: ["CDSMPreload", "CDSMKernel", "DSMCore", "DSMCoherence", "DSMSysV", "DSMSync", "DSMTransport"],
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]
        ),
        // Where nodes run: host lists, placement, the agent's run description.
        .target(name: "DSMLaunch", dependencies: ["DSMTransport"]),
        .executableTarget(name: "dsmrun", dependencies: [
            "DSMCore", "DSMTransport", "DSMLaunch", "CDSMKernel", "CDSMPMIx",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        .testTarget(name: "DSMCoherenceTests", dependencies: ["DSMCoherence"]),
        .testTarget(name: "DSMSysVTests", dependencies: ["DSMSysV"]),
        .testTarget(name: "DSMSyncTests", dependencies: ["DSMSync"]),
        .testTarget(name: "DSMLaunchTests", dependencies: ["DSMLaunch"]),
        // Tests drive nodes from plain threads; Swift 5 mode keeps them simple.
        .testTarget(name: "DSMTransportTests", dependencies: ["DSMTransport"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "IntegrationTests", dependencies: ["DSMCore", "DSMTransport"]),
    ]
)
