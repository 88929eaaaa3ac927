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
    var namespace = SysVNamespace(limits: ClusterService.limits)

    /// Linux's limits, except SHMMAX and SHMALL: a segment is a memfd on
    /// every node plus per-page state (about 20 bytes a page), so the run
    /// caps one segment at 16 GiB and all of them at 64 GiB, as a
    /// kernel.shmmax / kernel.shmall setting would (shmget says EINVAL /
    /// ENOSPC beyond).
    static let limits: SysVLimits = {
        var l = SysVLimits.linux
        l.shmmax = 16 << 30
        l.shmall = (64 << 30) / UInt64(dsmPageSize)
        return l
    }()
    /// Containers every node knows, with their canonical address.
    var announced: [ContainerID: UInt64] = [:]

    private var barrierWaiters: [ReplyDestination] = []
    /// Image start-up: each node's layout fingerprint, until all are in.
    private var imageArrivals: [(node: NodeID, fingerprint: UInt64, reply: ReplyDestination)] = []
    private var exitWaiters: [ReplyDestination] = []

    /// Calls waiting for every node to acknowledge a new container.
    struct PendingBroadcast {
        var container: ContainerID
        var acknowledgementsMissing: Int
        /// Attachers waiting for every node to know the container: the first
        /// one, and any that came while the acknowledgements were missing.
        var waiting: [(ReplyDestination, ServiceReply)]
    }
    var broadcasts: [UInt64: PendingBroadcast] = [:]

    /// Answers an attacher of `container` once every node knows it.
    func answerWhenAnnounced(_ container: ContainerID, _ reply: ReplyDestination, _ answer: ServiceReply, router: CallRouter) {
        if let id = broadcasts.first(where: { $0.value.container == container })?.key {
            broadcasts[id]!.waiting.append((reply, answer))
        } else {
            router.answer(reply, answer)
        }
    }
    var nextBroadcastID: UInt64 = 1 << 62

    /// Blocked semops with a timeout: when each gives up.
    var deadlines: [(deadline: UInt64, waiter: UInt64)] = []
    var semWaiters: [UInt64: ReplyDestination] = [:]
    var nextWaiter: UInt64 = 1

    init(nodes: Int, base: UInt64) {
        self.nodes = nodes
        self.nextAddress = base
    }

    func handle(_ request: ServiceRequest, caller: Caller, reply: ReplyDestination, router: CallRouter) {
        switch request {
        case .imageStart(let fingerprint):
            if imageArrivals.contains(where: { $0.node == caller.node }) {
                fatal("node \(caller.node) broke the protocol: it set up its image twice")
            }
            imageArrivals.append((caller.node, fingerprint, reply))
            // One arrival per node, so node 0's is among them once all are in.
            if imageArrivals.count == nodes, let reference = imageArrivals.first(where: { $0.node == 0 })?.fingerprint {
                for a in imageArrivals {
                    router.answer(a.reply, a.fingerprint == reference ? ServiceReply(result: 0) : .error(.improperLink))
                }
                imageArrivals.removeAll()
            }
        case .barrier:
            barrierWaiters.append(reply)
            if barrierWaiters.count == nodes {
                for w in barrierWaiters { router.answer(w, ServiceReply(result: 0)) }
                // The array keeps its storage: a barrier allocates nothing here.
                barrierWaiters.removeAll(keepingCapacity: true)
            }
        case .exitArrive:
            processExited(caller, router: router)
            exitWaiters.append(reply)
            if exitWaiters.count == nodes {
                for w in exitWaiters where !w.isLocal { router.answer(w, ServiceReply(result: 0)) }
                router.leaveRun()
                for w in exitWaiters where w.isLocal { router.answer(w, ServiceReply(result: 0)) }
                exitWaiters.removeAll()
            }
        default:
            handleSysV(request, caller: caller, reply: reply, router: router)
        }
    }

    /// Announces a new container to every other node and answers `reply`
    /// once all have it ready: a fault on it may reach any node as home.
    func broadcastContainer(_ container: ContainerID, pages: UInt32, address: UInt64, then reply: ReplyDestination,
                            with answer: ServiceReply, router: CallRouter) {
        router.pages.ensureContainer(container, pages: pages, canonical: address)
        if nodes == 1 {
            router.answer(reply, answer)
            return
        }
        let id = nextBroadcastID
        nextBroadcastID += 1
        broadcasts[id] = PendingBroadcast(container: container, acknowledgementsMissing: nodes - 1, waiting: [(reply, answer)])
        let request = ServiceRequest.addContainer(container: container, pages: pages, address: address)
        for peer in 1..<nodes {
            router.sendCall(request, caller: Caller.current(node: 0), callID: id, to: peer)
        }
    }

    /// A reply to one of node 0's own broadcasts.
    func acknowledged(_ id: UInt64, router: CallRouter) -> Bool {
        guard var pending = broadcasts[id] else { return false }
        pending.acknowledgementsMissing -= 1
        if pending.acknowledgementsMissing == 0 {
            broadcasts[id] = nil
            for (reply, answer) in pending.waiting { router.answer(reply, answer) }
        } else {
            broadcasts[id] = pending
        }
        return true
    }

    func destroyEverywhere(_ container: ContainerID, router: CallRouter) {
        _ = router.runLocally(.destroyContainer(container: container))
        for peer in 1..<nodes {
            router.sendCall(.destroyContainer(container: container), caller: Caller.current(node: 0), callID: 0, to: peer)
        }
    }

    /// When the first blocked semop gives up (monotonic ns), if any does.
    var nextDeadline: UInt64? { deadlines.min(by: { $0.deadline < $1.deadline })?.deadline }
}

extension ReplyDestination {
    var isLocal: Bool {
        if case .local = self { return true }
        return false
    }
}
