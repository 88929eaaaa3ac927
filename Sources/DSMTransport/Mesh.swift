import CDSMKernel
import DSMCore
import Synchronization
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
    /// Where each node listens (the rendezvous table): names a node's host.
    public let endpoints: [Endpoint]

    init(node: NodeID, nodes: Int, peers: [Connection?], coordinator: Connection, endpoints: [Endpoint]) {
        self.node = node
        self.nodes = nodes
        self.peers = peers
        self.coordinator = coordinator
        self.endpoints = endpoints
    }

    /// Joins the run: registers with the coordinator, learns the table, then
    /// connects to every lower node and accepts every higher one. Every
    /// connection opens with the run's preamble (Admission.swift); those
    /// that do not present it are refused and reported through `log`.
    /// `host` is the address this node listens on: the one its peers reach.
    public static func establish(node: NodeID, nodes: Int, coordinator endpoint: Endpoint, token: String,
                                 host: String = "127.0.0.1", timeoutMilliseconds: Int32 = 30_000,
                                 silenceMilliseconds: Int32 = 30_000, log: (String) -> Void) throws -> Mesh {
        let gate = Gate(listener: try Listener(host: host), token: token)
        let coordinator = try connectPresenting(token: token, to: endpoint, timeoutMilliseconds: timeoutMilliseconds)
        coordinator.peer = -1
        try coordinator.sendBlocking(FrameHeader(kind: .hello, source: node, a: UInt64(node)),
                                     payload: RendezvousHello(endpoint: gate.listener.endpoint).encoded(),
                                     timeoutMilliseconds: timeoutMilliseconds)
        // The table comes once every node has joined, which in SPMD mode is
        // at each one's first DSM call: as late as the program makes it.
        // Meanwhile the coordinator beats; its silence is the only failure.
        var (header, payload) = try receiveSpeaking(coordinator, silenceMilliseconds: silenceMilliseconds)
        while header.kind == .heartbeat {
            (header, payload) = try receiveSpeaking(coordinator, silenceMilliseconds: silenceMilliseconds)
        }
        if header.kind == .abort { throw TransportError.refused(String(decoding: payload, as: UTF8.self)) }
        guard header.kind == .table else { throw TransportError.protocolViolation("expected the node table, got \(header.kind)") }
        let table = try RendezvousTable.decode(payload)
        guard table.count == nodes else { throw TransportError.protocolViolation("table has \(table.count) nodes, expected \(nodes)") }

        var peers = [Connection?](repeating: nil, count: nodes)
        for lower in 0..<node {
            let connection = try connectPresenting(token: token, to: table[lower], timeoutMilliseconds: timeoutMilliseconds)
            connection.peer = lower
            try connection.sendBlocking(FrameHeader(kind: .auth, source: node, a: UInt64(node)), payload: [],
                                        timeoutMilliseconds: timeoutMilliseconds)
            peers[lower] = connection
        }
        var missing = nodes - node - 1
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while missing > 0 {
            let left = Int32(clamping: max(1, deadline - monotonicMilliseconds()))
            let (connection, name) = try gate.admit(timeoutMilliseconds: left, refused: log)
            let first: FrameHeader
            do {
                first = try connection.receiveFrameBlocking(timeoutMilliseconds: min(left, 5_000)).0
            } catch {
                log("refused a connection from \(name): \(error)")
                continue
            }
            // Compared as sent (64 bits): a claim is a node of this run or refused.
            let claimed = first.a
            guard first.kind == .auth, claimed > UInt64(node), claimed < UInt64(nodes), peers[Int(claimed)] == nil else {
                log("refused a connection from \(name): it claims to be node \(claimed)")
                continue
            }
            connection.peer = Int(claimed)
            peers[Int(claimed)] = connection
            missing -= 1
        }
        return Mesh(node: node, nodes: nodes, peers: peers, coordinator: coordinator, endpoints: table)
    }

    private static func receiveSpeaking(_ coordinator: Connection, silenceMilliseconds: Int32) throws -> (FrameHeader, [UInt8]) {
        do {
            return try coordinator.receiveFrameBlocking(timeoutMilliseconds: silenceMilliseconds)
        } catch TransportError.timedOut {
            throw TransportError.protocolViolation(
                "the launcher has sent nothing for \(silenceMilliseconds / 1000) s while this node waited for the others (--peer-timeout)")
        }
    }
}

/// What a node tells the coordinator: where it listens (the secret went
/// before, in the preamble).
public struct RendezvousHello: Equatable {
    public var endpoint: Endpoint

    public init(endpoint: Endpoint) {
        self.endpoint = endpoint
    }

    public func encoded() -> [UInt8] { RendezvousTable.encode([endpoint]) }

    public static func decode(_ bytes: [UInt8]) throws -> RendezvousHello {
        let endpoints = try RendezvousTable.decode(bytes)
        guard endpoints.count == 1 else { throw TransportError.protocolViolation("a hello names one endpoint") }
        return RendezvousHello(endpoint: endpoints[0])
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
    // A length byte: a longer name (never an IPv4 address) is cut.
    let utf8 = Array(s.utf8.prefix(255))
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
/// answers with the table. Connections stay open so that nodes notice when
/// the launcher goes away. Agents (the launcher's helpers on other hosts)
/// open their control connection to the same port.
public final class Coordinator {
    public let gate: Gate
    public let nodes: Int
    /// The nodes that register here (all, unless an engine such as Slurm or
    /// Open MPI started the others and `completeTable` learns where they are).
    public let expected: Set<NodeID>
    public private(set) var connections: [Connection] = []
    /// Called for each agent's control connection, with the host index it
    /// gave; from the thread running `run` or `declineLateComers`.
    public var agentArrived: ((Connection, Int) -> Void)?
    /// Given the endpoints of the nodes that registered here, the whole
    /// table (the PMIx exchange); nil when every node registers here.
    public var completeTable: (([NodeID: Endpoint]) throws -> [Endpoint])?

    public init(nodes: Int, expected: Set<NodeID>? = nil, token: String, host: String = "127.0.0.1") throws {
        self.gate = Gate(listener: try Listener(host: host), token: token)
        self.nodes = nodes
        self.expected = expected ?? Set(0..<nodes)
    }

    /// Which nodes have said hello, a bit each (at most 64 nodes): written
    /// by the thread running `run`, read by the launcher's.
    private let joined = Atomic<UInt64>(0)

    /// Whether `node` has joined the rendezvous.
    public func hasJoined(_ node: NodeID) -> Bool {
        node >= 0 && node < 64 && joined.load(ordering: .acquiring) & (1 << UInt64(node)) != 0
    }

    /// Whether any node has joined the rendezvous.
    public var anyJoined: Bool { joined.load(ordering: .acquiring) != 0 }

    public var endpoint: Endpoint { gate.listener.endpoint }

    /// An admitted connection's first frame, or nil (logged) when it sends
    /// none in time or something else than a hello.
    private func firstFrame(_ connection: Connection, _ name: String, log: (String) -> Void) -> (FrameHeader, [UInt8])? {
        guard let first = try? connection.receiveFrameBlocking(timeoutMilliseconds: 5_000) else {
            log("dropped a rendezvous connection from \(name): no hello")
            return nil
        }
        if first.0.kind == .agentHello {
            agentArrived?(connection, Int(clamping: first.0.a))
            return nil
        }
        return first
    }

    /// Runs the rendezvous. `shouldGiveUp` is polled between accepts so the
    /// launcher can stop waiting when a node died before saying hello.
    /// Registers every expected node, then sends each the table. Nodes
    /// waiting for the others get a heartbeat every `beatMilliseconds`;
    /// there is no deadline: the caller gives up (`shouldGiveUp`) when a
    /// node that has not joined is gone.
    public func run(beatMilliseconds: Int64, shouldGiveUp: () -> Bool, log: (String) -> Void) throws {
        var table = [Endpoint?](repeating: nil, count: nodes)
        var byNode = [Connection?](repeating: nil, count: nodes)
        var nextBeat = monotonicMilliseconds() + beatMilliseconds
        var registered = 0
        while registered < expected.count {
            if shouldGiveUp() { throw TransportError.closed }
            if monotonicMilliseconds() >= nextBeat {
                nextBeat = monotonicMilliseconds() + beatMilliseconds
                for case let waiting? in byNode {
                    try? waiting.sendBlocking(FrameHeader(kind: .heartbeat, source: 0), payload: [], timeoutMilliseconds: 100)
                }
            }
            let admitted: (Connection, String)
            do {
                admitted = try gate.admit(timeoutMilliseconds: 10, refused: log)
            } catch TransportError.timedOut {
                continue
            }
            let (connection, name) = admitted
            guard let (header, payload) = firstFrame(connection, name, log: log) else { continue }
            guard header.kind == .hello, let hello = try? RendezvousHello.decode(payload) else {
                log("dropped a rendezvous connection from \(name): it sent \(header.kind), not a hello")
                continue
            }
            guard header.a < UInt64(nodes), expected.contains(Int(header.a)) else {
                log("refused a rendezvous connection from \(name): bad node id \(header.a)")
                continue
            }
            let node = Int(header.a)
            guard table[node] == nil else {
                Coordinator.decline(connection, node: node)
                continue
            }
            connection.peer = node
            table[node] = hello.endpoint
            byNode[node] = connection
            registered += 1
            joined.bitwiseOr(1 << UInt64(node), ordering: .releasing)
        }
        let complete: [Endpoint]
        if let completeTable {
            var here: [NodeID: Endpoint] = [:]
            for node in expected { here[node] = table[node]! }
            complete = try completeTable(here)
            guard complete.count == nodes else {
                throw TransportError.protocolViolation("the node table has \(complete.count) nodes, expected \(nodes)")
            }
        } else {
            complete = table.map { $0! }
        }
        let encoded = RendezvousTable.encode(complete)
        connections = byNode.compactMap { $0 }
        for connection in connections {
            try connection.sendBlocking(FrameHeader(kind: .table, source: 0), payload: encoded, timeoutMilliseconds: 5_000)
        }
    }

    /// After the rendezvous: later callers are processes that want to be a
    /// node already in the run (a wrapper exiting after the program it
    /// ran); they are sent away until `shouldGiveUp`, polled every 10 ms so
    /// that the launcher is not kept waiting when the run ends.
    public func declineLateComers(shouldGiveUp: () -> Bool) {
        while !shouldGiveUp() {
            guard let (connection, name) = try? gate.admit(timeoutMilliseconds: 10, refused: { _ in }) else { continue }
            if let (header, _) = firstFrame(connection, name, log: { _ in }), header.kind == .hello {
                Coordinator.decline(connection, node: Int(clamping: header.a))
            }
        }
    }

    private static func decline(_ connection: Connection, node: Int) {
        try? connection.sendBlocking(FrameHeader(kind: .abort, source: 0), payload: Array("node \(node) is in the run already".utf8),
                                     timeoutMilliseconds: 1_000)
    }
}
