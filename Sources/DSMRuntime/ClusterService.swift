import CDSMKernel
import CDSMPreload
import DSMCore
import DSMSysV
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Node 0's services: the System V namespace (see SysVService.swift), the
/// cluster barrier and the exit rendezvous.
final class ClusterService {
    let nodes: Int
    /// Where the next segment is placed (same address on every node).
    var nextAddress: UInt64
    var namespace = SysVNamespace()
    /// Containers every node knows, with their canonical address.
    var announced: [ContainerID: UInt64] = [:]

    private var barrierWaiters: [ReplyDestination] = []
    private var exitWaiters: [ReplyDestination] = []

    /// Calls waiting for every node to acknowledge a new container.
    struct PendingBroadcast {
        var acknowledgementsMissing: Int
        var reply: ReplyDestination
        var answer: ServiceReply
    }
    var broadcasts: [UInt64: PendingBroadcast] = [:]
    var nextBroadcastID: UInt64 = 1 << 62

    /// Blocked semops with a timeout: when each gives up.
    var deadlines: [(deadline: UInt64, waiter: UInt64)] = []
    var semWaiters: [UInt64: ReplyDestination] = [:]
    var nextWaiter: UInt64 = 1

    init(nodes: Int, base: UInt64) {
        self.nodes = nodes
        self.nextAddress = base
    }

    func handle(_ request: ServiceRequest, caller: Caller, reply: ReplyDestination, node: Node) {
        switch request {
        case .barrier:
            barrierWaiters.append(reply)
            if barrierWaiters.count == nodes {
                let waiters = barrierWaiters
                barrierWaiters.removeAll()
                for w in waiters { node.answer(w, ServiceReply(result: 0)) }
            }
        case .exitArrive:
            processExited(caller, node: node)
            exitWaiters.append(reply)
            if exitWaiters.count == nodes {
                for w in exitWaiters where !w.isLocal { node.answer(w, ServiceReply(result: 0)) }
                node.announceDeparture()
                for w in exitWaiters where w.isLocal { node.answer(w, ServiceReply(result: 0)) }
                exitWaiters.removeAll()
            }
        default:
            handleSysV(request, caller: caller, reply: reply, node: node)
        }
    }

    /// Announces a new container to every other node and answers `reply`
    /// once all have it ready: a fault on it may reach any node as home.
    func broadcastContainer(_ container: ContainerID, pages: UInt32, address: UInt64, then reply: ReplyDestination,
                            with answer: ServiceReply, node: Node) {
        node.ensureContainer(container, pages: pages, canonical: address)
        if nodes == 1 {
            node.answer(reply, answer)
            return
        }
        let id = nextBroadcastID
        nextBroadcastID += 1
        broadcasts[id] = PendingBroadcast(acknowledgementsMissing: nodes - 1, reply: reply, answer: answer)
        let request = ServiceRequest.addContainer(container: container, pages: pages, address: address)
        for peer in 1..<nodes {
            node.sendCall(request, caller: Caller.current(node: 0), callID: id, to: peer)
        }
    }

    /// A reply to one of node 0's own broadcasts.
    func acknowledged(_ id: UInt64, node: Node) -> Bool {
        guard var pending = broadcasts[id] else { return false }
        pending.acknowledgementsMissing -= 1
        if pending.acknowledgementsMissing == 0 {
            broadcasts[id] = nil
            node.answer(pending.reply, pending.answer)
        } else {
            broadcasts[id] = pending
        }
        return true
    }

    func destroyEverywhere(_ container: ContainerID, node: Node) {
        _ = node.runLocally(.destroyContainer(container: container))
        for peer in 1..<max(nodes, 1) {
            node.sendCall(.destroyContainer(container: container), caller: Caller.current(node: 0), callID: 0, to: peer)
        }
    }

    func millisecondsUntilNextDeadline() -> Int32 {
        guard let first = deadlines.min(by: { $0.deadline < $1.deadline }) else { return -1 }
        let now = monotonicNanoseconds()
        if first.deadline <= now { return 0 }
        return Int32(clamping: (first.deadline - now + 999_999) / 1_000_000)
    }
}

extension ReplyDestination {
    var isLocal: Bool {
        if case .local = self { return true }
        return false
    }
}

extension Node {
    /// Writes out everything queued for every peer (at exit).
    func flushEverything() {
        for case let connection? in mesh.peers {
            while connection.hasPendingOutput {
                do { try connection.flush() } catch { break }
                if connection.hasPendingOutput {
                    var p = pollfd(fd: connection.fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                }
            }
        }
    }
}
