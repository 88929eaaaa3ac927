// The call router: every request that is not a page fault. A program thread
// hands its call (shmget, semop, pthread_mutex_lock on an object whose token
// is elsewhere, pthread_create in image mode, dsm_barrier) to the runtime
// thread and sleeps (`perform`); the router serves it here or sends it to
// the node that serves it, and wakes the thread with the answer (`answer`).
// Who serves what:
// - System V and the run's barriers: node 0 (ClusterService.swift,
//   SysVService.swift);
// - a synchronisation object: its home, the lock service
//   (SyncService.swift), which moves lock tokens between the nodes' lock
//   tables (CDSMPreload/sync.c);
// - a hosted thread: the node that runs it (ThreadService.swift);
// - containers, mappings and the image: this node's page engine.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMSync
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

final class CallRouter {
    let configuration: Configuration
    var id: NodeID { configuration.node }
    var nodes: Int { configuration.nodes }
    unowned(unsafe) let links: PeerLinks
    unowned(unsafe) let pages: PageEngine
    /// Program threads ring this when they queue a call.
    let callBell: Int32

    /// Lock tokens and condition wake-ups: the event loop may change how the
    /// runtime thread is scheduled (RuntimeScheduling).
    var sawSyncTraffic: () -> Void = {}
    /// Every node has finished: the event loop says goodbye to the peers.
    var leaveRun: () -> Void = {}

    /// Calls of this node's program threads not yet answered.
    var callsWaiting = 0
    /// On the heap: a pthread mutex must not move, and `&property` of a
    /// class may hand C a temporary.
    private let callLock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    /// Filled by program threads under `callLock`; everything else here is
    /// the runtime thread's.
    private var incomingCalls: [LocalCall] = []
    private var takenCalls: [LocalCall] = []
    /// Calls sent to another node, by call id, until their reply.
    private var pendingRemote: [UInt64: LocalCall] = [:]
    private var nextCallID: UInt64 = 1

    /// Image mode: the threads this node hosts, by pthread_t.
    var hostedThreads: [UInt64: HostedThread] = [:]
    /// Spawns handed to the host thread, by token: who waits, detached.
    var pendingSpawns: [UInt64: (ReplyDestination, Bool)] = [:]
    var nextSpawnToken: UInt64 = 1
    /// Node 0, image mode: the program's threads cluster-wide (main not
    /// counted), and who waits for none to be left.
    var programThreads = 0
    var threadsGoneWaiters: [ReplyDestination] = []
    /// Image mode: the program's threads on this node that may be running
    /// (main on node 0, and the hosted threads not finished).
    var runningProgramThreads: Int

    /// Synchronisation objects homed here (image mode).
    var syncObjects = SyncObjects<ReplyDestination>()
    /// Lock tokens recalled but kept for a batch (SyncService.swift).
    var deferredRecalls: [UInt64] = []
    /// Token notices the lock service sent this node itself, waiting for
    /// the model call that made them to return (SyncService.swift).
    var selfSyncNotices: [ServiceRequest] = []
    var deliveringSelfSyncNotices = false

    /// Node 0 only: the System V namespace and the barriers.
    let service: ClusterService?

    init(configuration: Configuration, links: PeerLinks, pages: PageEngine) {
        self.configuration = configuration
        self.links = links
        self.pages = pages
        callBell = cdsm_eventfd()
        if callBell < 0 { fatal("cannot create the call bell: \(Errno(rawValue: -callBell))") }
        runningProgramThreads = configuration.image && configuration.node == 0 ? 1 : 0
        service = configuration.node == 0 ? ClusterService(nodes: configuration.nodes, base: configuration.base) : nil
        incomingCalls.reserveCapacity(64)
        takenCalls.reserveCapacity(64)
        pages.releaseDone = { [unowned self] waiter in
            switch waiter {
            case .call(let call): finish(call, ServiceReply(result: 0))
            case .token(let object): tellHomeNow(.tokenRelease, object: object)
            }
        }
    }

    /// When the router needs the loop back without any event: a timed
    /// semop or synchronisation wait running out.
    var nextDeadline: UInt64? {
        switch (service?.nextDeadline, syncObjects.nextDeadline) {
        case (let a?, let b?): return min(a, b)
        case (let a, let b): return a ?? b
        }
    }

    /// Lock tokens kept for a batch are looked at again soon, whatever
    /// else happens (`checkDeferredRecalls`).
    var hasDeferredRecalls: Bool { !deferredRecalls.isEmpty }

    /// Once per round of the loop: waits that ran out, tokens kept for a
    /// batch whose mutex has idled.
    func expireDeadlines() {
        service?.expireDeadlines(router: self)
        expireSyncDeadlines()
        checkDeferredRecalls()
    }

    // MARK: program threads

    /// Called on a program thread: hands the request to the runtime thread
    /// and sleeps until it is answered.
    func perform(_ request: ServiceRequest) -> ServiceReply {
        perform(request, caller: Caller.current(node: id))
    }

    func perform(_ request: ServiceRequest, caller: Caller) -> ServiceReply {
        let call = LocalCall(request, caller: caller)
        hand(call)
        if case .barrier = request { return barrierWait(call) }
        return call.wait()
    }

    /// Hands a notice to the runtime thread and goes on: it is sent in the
    /// order of this node's calls, nobody waits for its answer.
    func post(_ request: ServiceRequest, caller: Caller) {
        hand(LocalCall(request, caller: caller))
    }

    /// As `perform`, for a semop: a signal handler running in the waiting
    /// thread makes it fail with EINTR, as Linux's semop does (never
    /// restarted, whatever SA_RESTART says), unless it completed first.
    func performInterruptibly(_ request: ServiceRequest) -> ServiceReply {
        let call = LocalCall(request, caller: Caller.current(node: id))
        call.bell = cdsm_thread_eventfd()
        if call.bell < 0 { return perform(request) }
        cdsm_block_signals()
        hand(call)
        if call.waitInterruptibly() { return call.reply }
        hand(LocalCall(.interrupted(call), caller: call.caller))
        return call.wait()
    }

    /// For requests that need no credentials (synchronisation, the runtime's
    /// own notices): saves the system calls of Caller.current.
    var anonymousCaller: Caller { Caller(uid: 0, gid: 0, pid: 0, node: id) }

    private func hand(_ call: LocalCall) {
        pthread_mutex_lock(callLock)
        incomingCalls.append(call)
        pthread_mutex_unlock(callLock)
        var one: UInt64 = 1
        _ = write(callBell, &one, 8)
    }

    // MARK: the runtime thread

    /// The bell rang: starts every call the program threads queued.
    func takeCalls() {
        var count: UInt64 = 0
        _ = read(callBell, &count, 8)
        pthread_mutex_lock(callLock)
        swap(&incomingCalls, &takenCalls)
        pthread_mutex_unlock(callLock)
        for call in takenCalls { start(call) }
        takenCalls.removeAll(keepingCapacity: true)
    }

    private func start(_ call: LocalCall) {
        if case .interrupted(let target) = call.request {
            interrupt(target)
            return
        }
        switch call.request {
        case .releaseWrites:
            // Answered once the homes acknowledge the diffs (ReleasePages.swift).
            callsWaiting += 1
            if pages.releaseWrites(then: .call(call)) { finish(call, ServiceReply(result: 0)) }
            return
        default: break
        }
        if call.request.isLocal {
            call.complete(runLocally(call.request))
            return
        }
        let target = call.request.destination(nodes: nodes)
        // A synchronisation call served elsewhere (handleHere sees the others).
        if case .sync = call.request, target != id, call.request.isSyncTraffic { sawSyncTraffic() }
        if call.request.isNotice {
            // Sent (or done) now; later calls of this node to the same
            // node travel behind it.
            if target == id {
                handleHere(call.request, caller: call.caller, reply: .none)
            } else {
                sendCall(call.request, caller: call.caller, callID: 0, to: target)
            }
            call.complete(ServiceReply(result: 0))
            return
        }
        callsWaiting += 1
        if target == id {
            handleHere(call.request, caller: call.caller, reply: .local(call))
        } else {
            let callID = nextCallID
            nextCallID &+= 1
            pendingRemote[callID] = call
            sendCall(call.request, caller: call.caller, callID: callID, to: target)
        }
    }

    /// A request this node serves, from one of its threads or from a peer.
    func handleHere(_ request: ServiceRequest, caller: Caller, reply: ReplyDestination) {
        if request.isSyncTraffic { sawSyncTraffic() }
        switch request {
        case .addContainer, .destroyContainer:
            answer(reply, runLocally(request))
        case .sync(let s):
            handleSync(s, reply: reply)
        case .lockGranted, .lockRecalled, .lockTryRecalled:
            lockTokenEvent(request)
        case .spawnThread, .joinThread, .detachThread, .remoteFree, .remoteUsableSize, .programEnd:
            handleThreadRequest(request, reply: reply)
        case .programExit where id == 0, .threadCount where id == 0, .awaitThreads where id == 0:
            handleThreadRequest(request, reply: reply)
        default:
            guard let service else { fatal("node \(caller.node) sent a service call to node \(id)") }
            service.handle(request, caller: caller, reply: reply, router: self)
        }
    }

    /// A notice from the runtime thread: handled here if `node` is this
    /// one, else sent, in order with this node's other messages to it.
    func deliver(_ notice: ServiceRequest, to node: NodeID) {
        if node == id {
            handleHere(notice, caller: anonymousCaller, reply: .none)
        } else {
            sendCall(notice, caller: anonymousCaller, callID: 0, to: node)
        }
    }

    /// A signal interrupted the program thread waiting for `target`.
    private func interrupt(_ target: LocalCall) {
        if id == 0 {
            service!.interrupt(.local(target), router: self)
        } else if let callID = pendingRemote.first(where: { $0.value === target })?.key {
            sendCall(.interruptSemop(callID: callID), caller: target.caller, callID: 0, to: 0)
        }
        // Otherwise its answer is already on its way.
    }

    /// Answers a request, locally or over the wire.
    func answer(_ destination: ReplyDestination, _ reply: ServiceReply) {
        switch destination {
        case .local(let call):
            finish(call, reply)
        case .remote(let node, let callID): sendReply(reply, callID: callID, to: node)
        case .none: break
        }
    }

    /// Requests this node's runtime thread serves for its own threads.
    func runLocally(_ request: ServiceRequest) -> ServiceReply {
        switch request {
        case .addContainer(let container, let pages, let address):
            self.pages.ensureContainer(container, pages: pages, canonical: address)
            return ServiceReply(result: 0)
        case .destroyContainer(let container):
            pages.destroyContainer(container)
            return ServiceReply(result: 0)
        case .mapAttachment(let container, let count, let canonical, let address, let fixed, let readOnly, let execute, let shmid):
            do {
                let at = try pages.mapAttachment(container: container, pages: count, canonical: canonical, address: address,
                                                 fixed: fixed, readOnly: readOnly, execute: execute, shmid: shmid)
                return ServiceReply(result: Int64(at))
            } catch {
                return .error(error)
            }
        case .setUpImage(let data, let heapPages):
            return pages.setUpImage(data: data, heapPages: heapPages)
        case .spawned, .threadFinished, .threadReaped:
            threadEvent(request)
            return ServiceReply(result: 0)
        case .endProgram:
            for peer in 0..<nodes where peer != id { deliver(.programEnd, to: peer) }
            return ServiceReply(result: 0)
        case .acquireWrites:
            // Done at once: the homes told this node which copies are old.
            pages.acquireWrites()
            return ServiceReply(result: 0)
        case .unmapAttachment(let address):
            guard let shmid = pages.unmapAttachment(at: address) else { return .error(.invalidArgument) }
            return ServiceReply(result: Int64(shmid))
        default:
            preconditionFailure("not a local request")
        }
    }

    // MARK: the wire

    /// Sends a service request to `destination` (never this node).
    func sendCall(_ request: ServiceRequest, caller: Caller, callID: UInt64, to destination: NodeID) {
        let bytes = request.encode(caller: caller)
        bytes.withUnsafeBytes {
            links.sendFrame(FrameHeader(kind: .call, source: id, a: callID), payload: $0, to: destination)
        }
    }

    func sendReply(_ reply: ServiceReply, callID: UInt64, to destination: NodeID) {
        var w = WireWriter()
        w.put(reply.result)
        w.bytes.append(contentsOf: reply.data)
        w.bytes.withUnsafeBytes {
            links.sendFrame(FrameHeader(kind: .reply, source: id, a: callID), payload: $0, to: destination)
        }
    }

    /// A call frame from `peer`: served here, answered to its call id (0:
    /// a notice). Anything no node of this run sends ends the run.
    func received(call header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        let (request, caller): (ServiceRequest, Caller)
        switch ServiceRequest.decode(payload, node: peer) {
        case .success(let decoded): (request, caller) = decoded
        case .failure(let problem): fatal("node \(peer) broke the protocol: \(problem)")
        }
        if let problem = validate(request, from: peer) { fatal("node \(peer) broke the protocol: \(problem)") }
        let destination: ReplyDestination = header.a == 0 ? .none : .remote(node: peer, callID: header.a)
        handleHere(request, caller: caller, reply: destination)
    }

    /// A reply frame from `peer`: to one of node 0's broadcasts, or to a
    /// call of one of this node's threads.
    func received(reply header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        if let service, service.acknowledged(header.a, router: self) { return }
        guard let call = pendingRemote.removeValue(forKey: header.a) else { return }
        var r = WireReader(payload)
        let result: Int64 = r.get()
        if r.failed { fatal("node \(peer) broke the protocol: a reply of \(payload.count) bytes") }
        if case .exitArrive = call.request { leaveRun() }
        finish(call, ServiceReply(result: result, data: r.rest()))
    }

    /// A call of this node's threads is answered. A try-lock's yes puts
    /// the token in the node's lock table first (NodeLock.tryTokenArrived):
    /// whatever the home sends after it, a recall, finds it there.
    private func finish(_ call: LocalCall, _ reply: ServiceReply) {
        if case .sync(let s) = call.request, s.operation == .tokenTry, reply.result == 1 {
            tryTokenArrived(s.object)
        }
        callsWaiting -= 1
        call.complete(reply)
    }

    /// What a peer may not ask, whatever its bytes say: a lock token on
    /// behalf of another node (the home would send that node's token to a
    /// node that may not exist), or a container no System V segment of the
    /// run can be.
    private func validate(_ request: ServiceRequest, from peer: NodeID) -> String? {
        switch request {
        case .sync(let s):
            if s.operation.isTokenOperation && s.thread != UInt64(peer) {
                return "a lock token operation on behalf of node \(s.thread)"
            }
        case .addContainer(let container, let pages, _):
            return wireContainerProblem(container, pages: pages)
        case .destroyContainer(let container):
            // Node 0's System V service destroys a segment's container
            // everywhere once no node has it attached; anything else would
            // unmap memory under the program.
            if peer != 0 { return "a container destroyed by node \(peer) (only node 0's System V service destroys one)" }
            if let problem = wireContainerProblem(container, pages: 1) { return problem }
            if pages.isAttached(container) {
                return "container \(container) destroyed while this node has it attached"
            }
        default: break
        }
        return nil
    }
}

enum ReplyDestination {
    case local(LocalCall)
    case remote(node: NodeID, callID: UInt64)
    /// A notice: nobody waits for an answer.
    case none
}
