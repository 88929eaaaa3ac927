import DSMCore
import DSMTransport
import Foundation
import XCTest

/// Builds real meshes over loopback TCP, one thread per node.
final class MeshTests: XCTestCase {
    /// Runs `nodes` nodes against a coordinator; returns their meshes.
    private func buildMesh(nodes: Int, token: String,
                           logged: UnsafeMutablePointer<[String]>? = nil) throws -> [Mesh] {
        let coordinator = try Coordinator(nodes: nodes, token: token)
        var meshes = [Mesh?](repeating: nil, count: nodes)
        var errors: [Error] = []
        let lock = NSLock()
        let group = DispatchGroup()
        for node in 0..<nodes {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let mesh = try Mesh.establish(node: node, nodes: nodes, coordinator: coordinator.endpoint, token: token,
                                                  timeoutMilliseconds: 10_000, log: { message in
                                                      lock.lock(); logged?.pointee.append(message); lock.unlock()
                                                  })
                    lock.lock(); meshes[node] = mesh; lock.unlock()
                } catch {
                    lock.lock(); errors.append(error); lock.unlock()
                }
            }
        }
        let deadline = monotonicMilliseconds() + 10_000
        try coordinator.run(beatMilliseconds: 1_000, shouldGiveUp: { monotonicMilliseconds() > deadline }, log: { _ in })
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success, "mesh set-up hung")
        XCTAssertTrue(errors.isEmpty, "\(errors)")
        return meshes.compactMap { $0 }
    }

    func testFourNodesConnectAndExchangeFrames() throws {
        let meshes = try buildMesh(nodes: 4, token: "t0ken")
        XCTAssertEqual(meshes.count, 4)
        for mesh in meshes {
            for peer in 0..<4 {
                if peer == mesh.node { XCTAssertNil(mesh.peers[peer]) } else { XCTAssertEqual(mesh.peers[peer]?.peer, peer) }
            }
        }
        // Every node sends a page-sized frame to every other node.
        let page = [UInt8](repeating: 0xAB, count: dsmPageSize)
        for mesh in meshes {
            for case let connection? in mesh.peers {
                try page.withUnsafeBytes {
                    try connection.send(FrameHeader(kind: .data, source: mesh.node, index: UInt32(mesh.node)), payload: $0)
                }
            }
        }
        for mesh in meshes {
            for case let connection? in mesh.peers {
                let (header, payload) = try connection.receiveFrameBlocking(timeoutMilliseconds: 5_000)
                XCTAssertEqual(header.kind, .data)
                XCTAssertEqual(Int(header.source), connection.peer)
                XCTAssertEqual(Int(header.index), connection.peer)
                XCTAssertEqual(payload, page)
            }
        }
    }

    func testConnectionWithoutTheSecretIsRefusedAndLogged() throws {
        var logged: [String] = []
        let coordinator = try Coordinator(nodes: 2, token: "right")
        // A stranger tries to register with the coordinator with a wrong token.
        let stranger = Thread {
            guard let c = try? connectPresenting(token: "wrong", to: coordinator.endpoint, timeoutMilliseconds: 5_000) else { return }
            try? c.sendBlocking(FrameHeader(kind: .hello, source: 0, a: 0),
                                payload: RendezvousHello(endpoint: Endpoint(host: "127.0.0.1", port: 1)).encoded(),
                                timeoutMilliseconds: 5_000)
            _ = try? c.receiveFrameBlocking(timeoutMilliseconds: 3_000)
        }
        stranger.start()
        let meshes = try establishDelayed(coordinator: coordinator, token: "right", logged: &logged)
        XCTAssertNotNil(meshes[0])
        XCTAssertNotNil(meshes[1])
        XCTAssertTrue(logged.contains { $0.contains("secret") }, "refusal not logged: \(logged)")
    }

    /// Idle strangers (more than the gate keeps at once) and a stranger that
    /// sends a frame whose fields are out of every range, before any
    /// preamble, neither stop nor delay the rendezvous.
    func testIdleAndHostileStrangersDoNotStopTheRendezvous() throws {
        var logged: [String] = []
        let coordinator = try Coordinator(nodes: 2, token: "right")
        var idle: [Connection] = []
        for _ in 0..<(Gate.maxPending + 4) {
            idle.append(try connect(to: coordinator.endpoint, timeoutMilliseconds: 5_000))
        }
        let hostile = try connect(to: coordinator.endpoint, timeoutMilliseconds: 5_000)
        try hostile.sendBlocking(FrameHeader(kind: .hello, source: 0, a: UInt64.max), payload: [UInt8](repeating: 0xff, count: 100),
                                 timeoutMilliseconds: 5_000)
        let started = monotonicMilliseconds()
        let meshes = try establishDelayed(coordinator: coordinator, token: "right", logged: &logged)
        XCTAssertNotNil(meshes[0])
        XCTAssertNotNil(meshes[1])
        XCTAssertLessThan(monotonicMilliseconds() - started, 2_500, "strangers delayed the rendezvous")
        XCTAssertTrue(logged.contains { $0.contains("too many") }, "\(logged)")
        XCTAssertTrue(logged.contains { $0.contains("secret") }, "\(logged)")
        withExtendedLifetime(idle) {}
    }

    /// Two nodes that join 200 ms after the coordinator starts.
    private func establishDelayed(coordinator: Coordinator, token: String, logged: inout [String]) throws -> [Mesh?] {
        var meshes: [Mesh?] = [nil, nil]
        var messages: [String] = []
        let lock = NSLock()
        let group = DispatchGroup()
        for node in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                usleep(200_000)
                let m = try? Mesh.establish(node: node, nodes: 2, coordinator: coordinator.endpoint, token: token,
                                            timeoutMilliseconds: 10_000, log: { _ in })
                lock.lock(); meshes[node] = m; lock.unlock()
            }
        }
        let deadline = monotonicMilliseconds() + 10_000
        try coordinator.run(beatMilliseconds: 1_000, shouldGiveUp: { monotonicMilliseconds() > deadline },
                            log: { m in lock.lock(); messages.append(m); lock.unlock() })
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        lock.lock(); logged += messages; lock.unlock()
        return meshes
    }
}
