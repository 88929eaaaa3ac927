import CDSMKernel
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// The full mesh of a run: one authenticated TCP connection to every other
/// node. Built through a rendezvous with the coordinator (dsmrun), which
/// hands every node the listening address of every other node.
public final class Mesh {
    public let node: NodeID
    public let nodes: Int
    /// peers[i] is the connection to node i; nil for this node.
    public private(set) var peers: [Connection?]
    /// Kept open for the whole run: its end means the launcher is gone.
    public let coordinator: Connection

    init(node: NodeID, nodes: Int, peers: [Connection?], coordinator: Connection) {
        self.node = node
        self.nodes = nodes
        self.peers = peers
        self.coordinator = coordinator
    }

    /// Joins the run: registers with the coordinator, learns the table, then
    /// connects to every lower node and accepts every higher one. Connections
    /// that do not present `token` are refused and reported through `log`.
    public static func establish(node: NodeID, nodes: Int, coordinator endpoint: Endpoint, token: String,
                                 host: String = "127.0.0.1", timeoutMilliseconds: Int32 = 30_000,
                                 log: (String) -> Void) throws -> Mesh {
        let listener = try Listener(host: host)
        let coordinator = try connect(to: endpoint, timeoutMilliseconds: timeoutMilliseconds)
        coordinator.peer = -1
        var hello = RendezvousHello(token: token, endpoint: listener.endpoint).encoded()
        try coordinator.sendBlocking(FrameHeader(kind: .hello, source: node, a: UInt64(node)), payload: hello,
                                     timeoutMilliseconds: timeoutMilliseconds)
        hello.removeAll()
        let (header, payload) = try coordinator.receiveFrameBlocking(timeoutMilliseconds: timeoutMilliseconds)
        if header.kind == .abort { throw TransportError.refused(String(decoding: payload, as: UTF8.self)) }
        guard header.kind == .table else { throw TransportError.protocolViolation("expected the node table, got \(header.kind)") }
        let table = try RendezvousTable.decode(payload)
        guard table.count == nodes else { throw TransportError.protocolViolation("table has \(table.count) nodes, expected \(nodes)") }

        var peers = [Connection?](repeating: nil, count: nodes)
        for lower in 0..<node {
            let connection = try connect(to: table[lower], timeoutMilliseconds: timeoutMilliseconds)
            connection.peer = lower
            try connection.sendBlocking(FrameHeader(kind: .auth, source: node, a: UInt64(node)),
                                        payload: Array(token.utf8), timeoutMilliseconds: timeoutMilliseconds)
            peers[lower] = connection
        }
        var missing = nodes - node - 1
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while missing > 0 {
            let left = Int32(clamping: max(1, deadline - monotonicMilliseconds()))
            let (connection, name) = try listener.accept(timeoutMilliseconds: left)
            let first: (FrameHeader, [UInt8])
            do {
                first = try connection.receiveFrameBlocking(timeoutMilliseconds: min(left, 5_000))
            } catch {
                log("refused a connection from \(name): \(error)")
                continue
            }
            let claimed = Int(first.0.a)
            guard first.0.kind == .auth, constantTimeEqual(first.1, Array(token.utf8)) else {
                log("refused a connection from \(name): it did not present this run's secret")
                continue
            }
            guard claimed > node, claimed < nodes, peers[claimed] == nil else {
                log("refused a connection from \(name): it claims to be node \(claimed)")
                continue
            }
            connection.peer = claimed
            peers[claimed] = connection
            missing -= 1
        }
        return Mesh(node: node, nodes: nodes, peers: peers, coordinator: coordinator)
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}

/// What a node tells the coordinator: the run's secret and where it listens.
public struct RendezvousHello: Equatable {
    public var token: String
    public var endpoint: Endpoint

    public init(token: String, endpoint: Endpoint) {
        self.token = token
        self.endpoint = endpoint
    }

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        appendString(token, to: &bytes)
        appendString(endpoint.host, to: &bytes)
        bytes.append(UInt8(endpoint.port & 0xff))
        bytes.append(UInt8(endpoint.port >> 8))
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> RendezvousHello {
        var offset = 0
        let token = try readString(bytes, &offset)
        let host = try readString(bytes, &offset)
        guard offset + 2 <= bytes.count else { throw TransportError.protocolViolation("short hello") }
        let port = UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
        return RendezvousHello(token: token, endpoint: Endpoint(host: host, port: port))
    }
}

/// What the coordinator answers once every node has said hello.
public enum RendezvousTable {
    public static func encode(_ endpoints: [Endpoint]) -> [UInt8] {
        var bytes: [UInt8] = []
        for e in endpoints {
            appendString(e.host, to: &bytes)
            bytes.append(UInt8(e.port & 0xff))
            bytes.append(UInt8(e.port >> 8))
        }
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> [Endpoint] {
        var offset = 0
        var endpoints: [Endpoint] = []
        while offset < bytes.count {
            let host = try readString(bytes, &offset)
            guard offset + 2 <= bytes.count else { throw TransportError.protocolViolation("short table") }
            endpoints.append(Endpoint(host: host, port: UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8))
            offset += 2
        }
        return endpoints
    }
}

private func appendString(_ s: String, to bytes: inout [UInt8]) {
    let utf8 = Array(s.utf8)
    bytes.append(UInt8(utf8.count))
    bytes.append(contentsOf: utf8)
}

private func readString(_ bytes: [UInt8], _ offset: inout Int) throws -> String {
    guard offset < bytes.count else { throw TransportError.protocolViolation("short string") }
    let length = Int(bytes[offset])
    offset += 1
    guard offset + length <= bytes.count else { throw TransportError.protocolViolation("short string") }
    let s = String(decoding: bytes[offset..<offset + length], as: UTF8.self)
    offset += length
    return s
}

/// The launcher's side of the rendezvous: collects every node's hello,
/// checks the secret, answers with the table. Connections stay open so that
/// nodes notice when the launcher goes away.
public final class Coordinator {
    public let listener: Listener
    public let nodes: Int
    public let token: String
    public private(set) var connections: [Connection] = []

    public init(nodes: Int, token: String, host: String = "127.0.0.1") throws {
        self.listener = try Listener(host: host)
        self.nodes = nodes
        self.token = token
    }

    public var endpoint: Endpoint { listener.endpoint }

    /// Runs the rendezvous. `shouldGiveUp` is polled between accepts so the
    /// launcher can stop waiting when a node died before saying hello.
    public func run(timeoutMilliseconds: Int32, shouldGiveUp: () -> Bool, log: (String) -> Void) throws {
        var table = [Endpoint?](repeating: nil, count: nodes)
        var byNode = [Connection?](repeating: nil, count: nodes)
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        var registered = 0
        while registered < nodes {
            if shouldGiveUp() { throw TransportError.closed }
            if monotonicMilliseconds() > deadline { throw TransportError.timedOut }
            let accepted: (Connection, String)
            do {
                accepted = try listener.accept(timeoutMilliseconds: 10)
            } catch TransportError.timedOut {
                continue
            }
            let (connection, name) = accepted
            guard let (header, payload) = try? connection.receiveFrameBlocking(timeoutMilliseconds: 5_000),
                  header.kind == .hello, let hello = try? RendezvousHello.decode(payload),
                  constantTimeEqual(Array(hello.token.utf8), Array(token.utf8)) else {
                log("refused a rendezvous connection from \(name): it did not present this run's secret")
                continue
            }
            let node = Int(header.a)
            guard node >= 0, node < nodes else {
                log("refused a rendezvous connection from \(name): bad node id \(node)")
                continue
            }
            guard table[node] == nil else {
                Coordinator.decline(connection, node: node)
                continue
            }
            connection.peer = node
            table[node] = hello.endpoint
            byNode[node] = connection
            registered += 1
        }
        let encoded = RendezvousTable.encode(table.map { $0! })
        for connection in byNode {
            try connection!.sendBlocking(FrameHeader(kind: .table, source: 0), payload: encoded, timeoutMilliseconds: 5_000)
        }
        connections = byNode.map { $0! }
    }

    /// After the rendezvous: later callers are processes that want to be a
    /// node already in the run (a wrapper exiting after the program it
    /// ran); they are sent away until `shouldGiveUp`, polled every 10 ms so
    /// that the launcher is not kept waiting when the run ends.
    public func declineLateComers(shouldGiveUp: () -> Bool) {
        while !shouldGiveUp() {
            guard let (connection, _) = try? listener.accept(timeoutMilliseconds: 10) else { continue }
            if let (header, payload) = try? connection.receiveFrameBlocking(timeoutMilliseconds: 2_000),
               header.kind == .hello, let hello = try? RendezvousHello.decode(payload),
               constantTimeEqual(Array(hello.token.utf8), Array(token.utf8)) {
                Coordinator.decline(connection, node: Int(header.a))
            }
        }
    }

    private static func decline(_ connection: Connection, node: Int) {
        try? connection.sendBlocking(FrameHeader(kind: .abort, source: 0), payload: Array("node \(node) is in the run already".utf8),
                                     timeoutMilliseconds: 1_000)
    }
}
