import DSMCoherence
import DSMCore

/// One effect as a value, so tests can compare what a node asked for.
enum Effect: Equatable, CustomStringConvertible {
    case send(ProtocolMessage, to: NodeID)
    case writeProtect(PageID)
    case drop(PageID)
    case install(PageID, writable: Bool)
    case installZero(PageID)
    case makeWritable(PageID)
    case wake(PageID)
    case held(PageID)
    case violation(String, PageID)

    var description: String {
        switch self {
        case .send(let message, let to): "send \(message) to \(to)"
        case .writeProtect(let page): "writeProtect \(page)"
        case .drop(let page): "drop \(page)"
        case .install(let page, let writable): "install \(page) writable: \(writable)"
        case .installZero(let page): "installZero \(page)"
        case .makeWritable(let page): "makeWritable \(page)"
        case .wake(let page): "wake \(page)"
        case .held(let page): "held \(page)"
        case .violation(let reason, let page): "VIOLATION \(reason) on \(page)"
        }
    }
}

/// Records effects in order instead of performing them.
struct RecordingEffects: CoherenceEffects {
    var effects: [Effect] = []

    mutating func send(_ message: ProtocolMessage, to node: NodeID) { effects.append(.send(message, to: node)) }
    mutating func writeProtect(_ page: PageID) { effects.append(.writeProtect(page)) }
    mutating func drop(_ page: PageID) { effects.append(.drop(page)) }
    mutating func install(_ page: PageID, writable: Bool) { effects.append(.install(page, writable: writable)) }
    mutating func installZero(_ page: PageID) { effects.append(.installZero(page)) }
    mutating func makeWritable(_ page: PageID) { effects.append(.makeWritable(page)) }
    mutating func wake(_ page: PageID) { effects.append(.wake(page)) }
    mutating func held(_ page: PageID) { effects.append(.held(page)) }
    mutating func protocolViolation(_ reason: StaticString, page: PageID) {
        effects.append(.violation("\(reason)", page))
    }
}

/// A few nodes joined by one global FIFO queue (one legal delivery order among
/// many), for step-by-step unit tests of whole transactions.
struct TestCluster {
    struct InFlight: Equatable {
        var from: NodeID
        var to: NodeID
        var message: ProtocolMessage
    }

    var nodes: [CoherenceNode]
    var inFlight: [InFlight] = []

    init(nodes count: Int, container: ContainerID = 0, pages: Int = 8, handsOverMigratoryPages: Bool = true,
         holdsPages: Bool = false) {
        nodes = (0..<count).map {
            CoherenceNode(node: $0, nodes: count, handsOverMigratoryPages: handsOverMigratoryPages,
                          holdsPages: holdsPages)
        }
        for index in nodes.indices { nodes[index].addContainer(container, pages: pages) }
    }

    /// Runs a fault on `node`, queues its sends, returns all its effects.
    @discardableResult
    mutating func fault(_ node: NodeID, _ page: PageID, _ access: Access) -> [Effect] {
        var sink = RecordingEffects()
        nodes[node].fault(page, access, &sink)
        enqueueSends(of: sink.effects, from: node)
        return sink.effects
    }

    /// Delivers the oldest message; returns it with the receiver's effects.
    @discardableResult
    mutating func deliverNext() -> (InFlight, [Effect]) {
        let next = inFlight.removeFirst()
        var sink = RecordingEffects()
        nodes[next.to].receive(next.message, &sink)
        enqueueSends(of: sink.effects, from: next.to)
        return (next, sink.effects)
    }

    /// Ends `page`'s hold window on `node`; returns the node's effects.
    @discardableResult
    mutating func endHold(_ node: NodeID, _ page: PageID) -> [Effect] {
        var sink = RecordingEffects()
        nodes[node].endHold(page, &sink)
        enqueueSends(of: sink.effects, from: node)
        return sink.effects
    }

    /// Delivers until nothing is in flight; returns every delivered message.
    @discardableResult
    mutating func settle() -> [InFlight] {
        var delivered: [InFlight] = []
        while !inFlight.isEmpty { delivered.append(deliverNext().0) }
        return delivered
    }

    /// Fault, then settle; returns the messages the access cost.
    @discardableResult
    mutating func access(_ node: NodeID, _ page: PageID, _ access: Access) -> [InFlight] {
        fault(node, page, access)
        return settle()
    }

    private mutating func enqueueSends(of effects: [Effect], from node: NodeID) {
        for case .send(let message, let to) in effects {
            inFlight.append(InFlight(from: node, to: to, message: message))
        }
    }
}
