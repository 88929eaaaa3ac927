import CDSMKernel
import CDSMPreload
import DSMCoherence
import DSMCore
import DSMSync
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// One node of the run: the runtime thread's world. Everything here is
/// touched by the runtime thread only, except `incomingCalls` (under
/// `callLock`), which program threads fill.
final class Node {
    let configuration: Configuration
    var id: NodeID { configuration.node }
    var nodes: Int { configuration.nodes }
    let mesh: Mesh
    let uffd: Int32
    let epoll: Int32
    /// Program threads ring this when they queue a call.
    let callBell: Int32

    var coherence: CoherenceNode
    var containers = ContainerTable<LocalContainer>()
    var attachmentIndex = AttachmentIndex()
    var selfQueue: [ProtocolMessage] = []
    var selfQueueHead = 0
    let faultBatchCapacity = 32
    let faultBatch: UnsafeMutablePointer<cdsm_uffd_fault>
    let zeroPage: UnsafeMutableRawPointer
    var stats = NodeStats()
    /// Page counters of destroyed containers, for --stats.
    var retiredPages: [PageRecord] = []
    /// Pages with a fault not yet answered (program threads blocked on them).
    var faultsWaiting = 0
    /// Calls of this node's program threads not yet answered.
    var callsWaiting = 0

    /// On the heap: a pthread mutex must not move, and `&property` of a
    /// class may hand C a temporary.
    private let callLock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    private var incomingCalls: [LocalCall] = []
    private var takenCalls: [LocalCall] = []
    var pendingRemote: [UInt64: LocalCall] = [:]
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
    lazy var runningProgramThreads = configuration.image && id == 0 ? 1 : 0
    /// Synchronisation objects homed here (image mode).
    var syncObjects = SyncObjects<ReplyDestination>()
    /// Lock tokens recalled but kept for a batch (SyncService.swift).
    var deferredRecalls: [UInt64] = []
    /// Token notices the lock service sent this node itself, waiting for
    /// the model call that made them to return (SyncService.swift).
    var selfSyncNotices: [ServiceRequest] = []
    var deliveringSelfSyncNotices = false
    /// Coherence messages held back by hold windows (HoldWindow.swift), and
    /// the earliest time one of them is due.
    var held: [HeldMessage] = []
    var earliestRelease = UInt64.max
    /// When frames held back by DSM_DELAY_US may next leave.
    var earliestDelayedSend = UInt64.max
    /// Whether the runtime thread runs real-time, and when it should
    /// (DSMCore's RuntimeScheduling).
    var scheduling = RuntimeScheduling()
    /// Installs waiting to go as one run (FaultPath.swift).
    var staged = StagedRun()
    /// Drops waiting to be punched out as one run (FaultPath.swift).
    var drops = PendingDrops()
    /// How long a page brought in for a waiting thread stays (DSM_HOLD_US).
    var holdNanoseconds: UInt64 { configuration.tunables.holdNanoseconds }
    /// Node 0 only: the System V namespace and the barriers.
    var service: ClusterService?
    /// Set once every node has finished: connections closing is then normal.
    var finishing = false
    /// Heartbeats and the peer timeout (Liveness.swift).
    var liveness: Liveness
    /// Standard output and error sent to node 0 (OutputForwarding.swift).
    private(set) var output: OutputForwarding?
    private var wantsWritable: [Bool]
    /// Peers with frames queued since the last `flushQueued`.
    private var queuedFor: [Bool]
    private var peersWithQueuedFrames: [NodeID] = []
    /// A read miss on an even page also fetches the next one (DSM_PREFETCH_BUDDY=0: off).
    var buddyPrefetch: Bool { configuration.tunables.buddyPrefetch }
    /// How long the runtime thread polls, while a program thread of its node
    /// waits on it, before sleeping. Polling saves two thread wake-ups per
    /// fault or call, but only pays when the node has a CPU of its own
    /// (bound, one node per CPU, or alone on its host); with several nodes
    /// per CPU it steals from them. DSM_SPIN_US overrides.
    lazy var spinNanoseconds: UInt64 = {
        if let chosen = configuration.tunables.spinNanoseconds { return chosen }
        let ownCPU = configuration.localNodes <= Int(cdsm_online_cpus()) && (configuration.bind || configuration.localNodes == 1)
        return ownCPU && nodes > 1 ? 50_000 : 0
    }()

    private static let uffdTag: UInt64 = 1 << 32
    private static let bellTag: UInt64 = 2 << 32
    private static let coordinatorTag: UInt64 = 3 << 32

    /// Joins the run; nil when this node is in the run already (this
    /// process only executed the program that is).
    init?(configuration: Configuration) {
        self.configuration = configuration
        logPrefix = "dsm[node \(configuration.node)]"
        let fd = cdsm_uffd_open()
        if fd < 0 {
            fatal("""
                cannot open userfaultfd: \(Errno(rawValue: -fd)). dsm needs userfaultfd with kernel-mode faults: \
                run as root, or give the user read-write access to /dev/userfaultfd, or set vm.unprivileged_userfaultfd=1
                """)
        }
        uffd = fd
        do {
            mesh = try Mesh.establish(node: configuration.node, nodes: configuration.nodes,
                                      coordinator: configuration.coordinator, token: configuration.token,
                                      host: configuration.listenAddress,
                                      silenceMilliseconds: Int32(clamping: configuration.peerTimeoutNanoseconds / 1_000_000),
                                      log: { log($0) })
        } catch TransportError.refused {
            close(fd)
            return nil
        } catch {
            fatal("cannot join the run at \(configuration.coordinator): \(error)")
        }
        coherence = CoherenceNode(node: configuration.node, nodes: configuration.nodes,
                                  handsOverMigratoryPages: configuration.tunables.migratoryPages)
        liveness = Liveness(nodes: configuration.nodes, timeoutNanoseconds: configuration.peerTimeoutNanoseconds)
        for case let peer? in mesh.peers {
            // A backstop: the heartbeats speak first, and name the node.
            _ = cdsm_tcp_user_timeout(peer.fd, UInt32(clamping: 2 * configuration.peerTimeoutNanoseconds / 1_000_000))
            peer.delayNanoseconds = configuration.delayNanoseconds
        }
        epoll = cdsm_epoll_create()
        callBell = cdsm_eventfd()
        if epoll < 0 || callBell < 0 { fatal("cannot create the event loop: \(Errno(rawValue: -min(epoll, callBell)))") }
        faultBatch = .allocate(capacity: faultBatchCapacity)
        zeroPage = UnsafeMutableRawPointer.allocate(byteCount: dsmPageSize, alignment: dsmPageSize)
        zeroPage.initializeMemory(as: UInt8.self, repeating: 0, count: dsmPageSize)
        wantsWritable = [Bool](repeating: false, count: configuration.nodes)
        queuedFor = [Bool](repeating: false, count: configuration.nodes)
        peersWithQueuedFrames.reserveCapacity(configuration.nodes)
        incomingCalls.reserveCapacity(64)
        takenCalls.reserveCapacity(64)
        selfQueue.reserveCapacity(256)
        held.reserveCapacity(256)
        if configuration.node == 0 { service = ClusterService(nodes: configuration.nodes, base: configuration.base) }

        watch(uffd, tag: Node.uffdTag)
        watch(callBell, tag: Node.bellTag)
        watch(mesh.coordinator.fd, tag: Node.coordinatorTag)
        for case let peer? in mesh.peers { watch(peer.fd, tag: UInt64(peer.peer)) }
        if let streams = configuration.forwardOutput {
            output = OutputForwarding.start(streams)
            for fd in output?.readEnds ?? [] where fd >= 0 { watch(fd, tag: Node.outputTag) }
        }
    }

    /// Polling steals the CPU from any program thread of this node that is
    /// not blocked on the runtime (in image mode, node 0's worker while main
    /// waits in pthread_join). Blocked threads are counted from below: the
    /// calls in flight, one per page with a fault waiting.
    private var otherThreadsMayRun: Bool {
        configuration.image && callsWaiting + faultsWaiting < runningProgramThreads
    }

    private func earliest(_ a: UInt64?, _ b: UInt64?) -> UInt64? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    /// epoll's timeout for the earliest deadline (monotonic ns): -1 for none,
    /// rounded up to whole milliseconds.
    private func millisecondsUntil(_ deadline: UInt64?) -> Int32 {
        guard let deadline else { return -1 }
        let now = monotonicNanoseconds()
        if deadline <= now { return 0 }
        return Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }

    private func watch(_ fd: Int32, tag: UInt64) {
        let r = cdsm_epoll_add(epoll, fd, CDSM_EPOLLIN, tag)
        if r != 0 { fatal("epoll_ctl: \(Errno(rawValue: -r))") }
    }

    private func setWritableInterest(_ peer: NodeID, _ on: Bool) {
        guard wantsWritable[peer] != on, let connection = mesh.peers[peer] else { return }
        wantsWritable[peer] = on
        _ = cdsm_epoll_modify(epoll, connection.fd, CDSM_EPOLLIN | (on ? CDSM_EPOLLOUT : 0), UInt64(peer))
    }

    // MARK: sending

    /// Queues a frame for `peer`. It leaves with everything else queued for
    /// that peer when the loop has handled its batch of events
    /// (`flushQueued`): one `send` per peer and round instead of one per
    /// frame, which on loopback TCP also means one wake-up of the receiver.
    func sendFrame(_ header: FrameHeader, payload: UnsafeRawBufferPointer?, to peer: NodeID) {
        guard peer >= 0, peer < nodes, let connection = mesh.peers[peer] else { fatal("no connection to node \(peer)") }
        stats.messagesSent &+= 1
        stats.bytesSent &+= UInt64(FrameHeader.size + (payload?.count ?? 0))
        connection.queue(header, payload: payload)
        if !queuedFor[peer] {
            queuedFor[peer] = true
            peersWithQueuedFrames.append(peer)
        }
    }

    /// Writes out the frames queued since the last call; what a socket does
    /// not take now leaves when it becomes writable.
    func flushQueued() {
        punchPendingDrops()
        for peer in peersWithQueuedFrames {
            queuedFor[peer] = false
            guard let connection = mesh.peers[peer] else { continue }
            do { try connection.flush() } catch { peerLost(peer, why: "\(error)") }
            if connection.waitingForSocket { setWritableInterest(peer, true) }
        }
        peersWithQueuedFrames.removeAll(keepingCapacity: true)
        if configuration.delayNanoseconds > 0 { flushDelayed() }
    }

    /// Emulated distance (DSM_DELAY_US): frames whose delay has passed
    /// leave; `earliestDelayedSend` is when the next ones may.
    private func flushDelayed() {
        earliestDelayedSend = .max
        for case let connection? in mesh.peers where connection.hasPendingOutput {
            if !connection.waitingForSocket {
                do { try connection.flush() } catch { peerLost(connection.peer, why: "\(error)") }
                if connection.waitingForSocket { setWritableInterest(connection.peer, true) }
            }
            if let next = connection.nextDelayedSend { earliestDelayedSend = min(earliestDelayedSend, next) }
        }
    }

    /// Sends a service request to `destination` (never this node).
    func sendCall(_ request: ServiceRequest, caller: Caller, callID: UInt64, to destination: NodeID) {
        let bytes = request.encode(caller: caller)
        bytes.withUnsafeBytes {
            sendFrame(FrameHeader(kind: .call, source: id, a: callID), payload: $0, to: destination)
        }
    }

    func sendReply(_ reply: ServiceReply, callID: UInt64, to destination: NodeID) {
        var w = WireWriter()
        w.put(reply.result)
        w.bytes.append(contentsOf: reply.data)
        w.bytes.withUnsafeBytes {
            sendFrame(FrameHeader(kind: .reply, source: id, a: callID), payload: $0, to: destination)
        }
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

    /// For requests that need no credentials (synchronisation, the runtime's
    /// own notices): saves the system calls of Caller.current.
    var anonymousCaller: Caller { Caller(uid: 0, gid: 0, pid: 0, node: id) }

    /// A notice from the runtime thread: handled here if `node` is this
    /// one, else sent, in order with this node's other messages to it.
    func deliver(_ notice: ServiceRequest, to node: NodeID) {
        if node == id {
            handleHere(notice, caller: anonymousCaller, reply: .none)
        } else {
            sendCall(notice, caller: anonymousCaller, callID: 0, to: node)
        }
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

    private func hand(_ call: LocalCall) {
        pthread_mutex_lock(callLock)
        incomingCalls.append(call)
        pthread_mutex_unlock(callLock)
        var one: UInt64 = 1
        _ = write(callBell, &one, 8)
    }

    private func takeCalls() {
        if output != nil { forwardOutput() }
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
            service.handle(request, caller: caller, reply: reply, node: self)
        }
    }

    /// A signal interrupted the program thread waiting for `target`.
    private func interrupt(_ target: LocalCall) {
        if id == 0 {
            service!.interrupt(.local(target), node: self)
        } else if let callID = pendingRemote.first(where: { $0.value === target })?.key {
            sendCall(.interruptSemop(callID: callID), caller: target.caller, callID: 0, to: 0)
        }
        // Otherwise its answer is already on its way.
    }

    /// Answers a request, locally or over the wire.
    func answer(_ destination: ReplyDestination, _ reply: ServiceReply) {
        switch destination {
        case .local(let call):
            callsWaiting -= 1
            call.complete(reply)
        case .remote(let node, let callID): sendReply(reply, callID: callID, to: node)
        case .none: break
        }
    }

    // MARK: the loop

    func run() -> Never {
        dsm_preload_enter_runtime_thread()
        cdsm_block_all_signals()
        apply(RuntimeScheduling.initial(wantRealtime: configuration.tunables.realtimeRuntime),
              adaptive: configuration.image && configuration.tunables.adaptiveRealtime)
        // Frames that arrived with a peer's authentication during set-up are
        // already in its buffer, where no readiness event will announce them.
        for case let connection? in mesh.peers { drainFrames(connection) }
        let tags = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
        while true {
            flushStagedRun()
            releaseHeldMessages()
            flushQueued()
            let timeout = millisecondsUntil(earliest(earliest(service?.nextDeadline, syncObjects.nextDeadline), liveness.nextBeat))
            var n: Int32 = 0
            if spinNanoseconds > 0 && (faultsWaiting > 0 || callsWaiting > 0) && !otherThreadsMayRun {
                // A program thread of this node is blocked on an answer,
                // which usually comes within tens of microseconds: polling
                // a little can be cheaper than two wake-ups (DSM_SPIN_US).
                let until = min(monotonicNanoseconds() + spinNanoseconds, earliestRelease, earliestDelayedSend)
                repeat { n = cdsm_epoll_wait(epoll, tags, events, 64, 0) } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 {
                if (!deferredRecalls.isEmpty || !held.isEmpty || earliestDelayedSend != .max) && timeout != 0 {
                    // A recalled lock token kept for a batch is looked at
                    // again once its mutex may have idled (50 µs); a held
                    // message when its page's hold ends; a delayed frame
                    // when its delay has passed.
                    var micros: UInt64 = 50
                    let due = min(held.isEmpty ? .max : earliestRelease, earliestDelayedSend)
                    if due != .max {
                        let now = monotonicNanoseconds()
                        micros = min(micros, due > now ? (due - now + 999) / 1000 : 0)
                    }
                    n = cdsm_epoll_wait_us(epoll, tags, events, 64, Int64(micros))
                } else {
                    n = cdsm_epoll_wait(epoll, tags, events, 64, timeout)
                }
            }
            if n < 0 {
                if -n == EINTR { continue }
                fatal("epoll_wait: \(Errno(rawValue: -n))")
            }
            // Text printed before a fault or a call leaves before their
            // consequences (OutputForwarding.swift).
            if output != nil { forwardOutput() }
            for i in 0..<Int(n) {
                let tag = tags[i]
                let flags = events[i]
                switch tag {
                case Node.outputTag: break
                case Node.uffdTag: drainFaults()
                case Node.bellTag: takeCalls()
                case Node.coordinatorTag: coordinatorReadable()
                default: peerEvent(NodeID(tag), flags: flags)
                }
            }
            if scheduling.mayResume { apply(scheduling.idle(now: monotonicNanoseconds())) }
            service?.expireDeadlines(node: self)
            expireSyncDeadlines()
            checkDeferredRecalls()
            checkLiveness()
        }
    }

    /// Asks the kernel for the runtime thread's policy that
    /// `RuntimeScheduling` chose (DSMCore: when, and why).
    private func apply(_ change: RuntimeScheduling.Change, adaptive: Bool? = nil) {
        guard change != .none || adaptive != nil else { return }
        var took = false
        switch change {
        case .none: break
        case .becomeRealtime:
            var parameters = sched_param(sched_priority: 1)
            took = sched_setscheduler(0, SCHED_FIFO, &parameters) == 0
            if !took && configuration.verbose {
                log("the runtime thread stays an ordinary thread: SCHED_FIFO: \(Errno(rawValue: cdsm_errno()))")
            }
        case .becomeOrdinary:
            var parameters = sched_param(sched_priority: 0)
            took = sched_setscheduler(0, SCHED_OTHER, &parameters) == 0
        }
        scheduling.changed(change, took: took, adaptive: adaptive)
    }

    /// Lock tokens and condition wake-ups: the runtime thread turns ordinary
    /// while such traffic is dense (`RuntimeScheduling`).
    func sawSyncTraffic() {
        apply(scheduling.syncEvent(now: monotonicNanoseconds()))
    }

    private func coordinatorReadable() {
        let result = try? mesh.coordinator.receive()
        // The launcher says nothing after the table: whatever comes is read
        // and dropped, so that the buffer does not grow.
        do {
            while try mesh.coordinator.nextFrame() != nil {}
        } catch {
            fatal("the launcher broke the protocol: \(error)")
        }
        if result == .endOfStream || result == nil {
            if finishing {
                // Level-triggered: an ended stream would wake the loop forever.
                _ = cdsm_epoll_remove(epoll, mesh.coordinator.fd)
                return
            }
            fatal("the launcher (dsmrun) is gone; stopping", status: NodeExitStatus.abortedByPeer)
        }
    }

    private func peerEvent(_ peer: NodeID, flags: UInt32) {
        guard let connection = mesh.peers[peer] else { return }
        if flags & CDSM_EPOLLOUT != 0 {
            punchPendingDrops()
            do { try connection.flush() } catch { peerLost(peer, why: "\(error)") }
            if !connection.waitingForSocket { setWritableInterest(peer, false) }
        }
        guard flags & (CDSM_EPOLLIN | CDSM_EPOLLHUP | CDSM_EPOLLERR) != 0 else { return }
        let result: Connection.ReadResult
        do { result = try connection.receive() } catch {
            peerLost(peer, why: "\(error)")
            return
        }
        liveness.lastHeard[peer] = monotonicNanoseconds()
        drainFrames(connection)
        if result == .endOfStream { peerLost(peer, why: "connection closed") }
    }

    /// Handles every complete frame in the connection's input buffer.
    private func drainFrames(_ connection: Connection) {
        let peer = connection.peer
        while true {
            let frame: (FrameHeader, UnsafeRawBufferPointer)?
            do { frame = try connection.nextFrame() } catch {
                fatal("node \(peer) broke the protocol: \(error)")
            }
            guard let (header, payload) = frame else { break }
            stats.messagesReceived &+= 1
            stats.bytesReceived &+= UInt64(FrameHeader.size + payload.count)
            if header.kind != .heartbeat { liveness.lastSaid[peer] = header.kind.rawValue }
            dispatch(header, payload, from: peer)
        }
        flushStagedRun()
    }

    /// One frame from `peer`. Anything that is not what a node of this run
    /// sends ends the run with a message naming the peer (never a trap).
    private func dispatch(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        switch header.kind {
        case .call:
            let (request, caller): (ServiceRequest, Caller)
            switch ServiceRequest.decode(payload, node: peer) {
            case .success(let decoded): (request, caller) = decoded
            case .failure(let problem): fatal("node \(peer) broke the protocol: \(problem)")
            }
            if let problem = validate(request, from: peer) { fatal("node \(peer) broke the protocol: \(problem)") }
            let destination: ReplyDestination = header.a == 0 ? .none : .remote(node: peer, callID: header.a)
            handleHere(request, caller: caller, reply: destination)
        case .reply:
            if let service, service.acknowledged(header.a, node: self) { return }
            guard let call = pendingRemote.removeValue(forKey: header.a) else { return }
            var r = WireReader(payload)
            let result: Int64 = r.get()
            if r.failed { fatal("node \(peer) broke the protocol: a reply of \(payload.count) bytes") }
            if case .exitArrive = call.request { announceDeparture() }
            callsWaiting -= 1
            call.complete(ServiceReply(result: result, data: r.rest()))
        case .exiting:
            // Sent only after the exit rendezvous: the run is ending well.
            finishing = true
        case .heartbeat:
            break
        case .output:
            writeForwardedOutput(header, payload)
        case .readRequest, .writeRequest, .forwardRead, .forwardWrite, .invalidate, .invalidateAck, .data, .grant, .done,
             .unwritten:
            handleCoherenceFrame(header, payload, from: peer)
        case .abort, .stats, .hello, .table, .auth, .agentHello, .nodeEnded, .signalNodes, .stdinData:
            fatal("node \(peer) broke the protocol: it sent a \(header.kind) frame, which nodes never send each other")
        }
    }

    /// What a peer may not ask, whatever its bytes say: a lock token on
    /// behalf of another node (the home would send that node's token to a
    /// node that may not exist), or a container no System V segment of the
    /// run can be.
    private func validate(_ request: ServiceRequest, from peer: NodeID) -> String? {
        switch request {
        case .sync(let s):
            switch s.operation {
            case .tokenAcquire, .tokenTry, .tokenRelease, .tokenBusy:
                if s.thread != UInt64(peer) { return "a lock token operation on behalf of node \(s.thread)" }
            default: break
            }
        case .addContainer(let container, let pages, _):
            return wireContainerProblem(container, pages: pages)
        case .destroyContainer(let container):
            // Node 0's System V service destroys a segment's container
            // everywhere once no node has it attached; anything else would
            // unmap memory under the program.
            if peer != 0 { return "a container destroyed by node \(peer) (only node 0's System V service destroys one)" }
            if let problem = wireContainerProblem(container, pages: 1) { return problem }
            if let c = containers[container], !c.attachments.isEmpty {
                return "container \(container) destroyed while this node has it attached"
            }
        default: break
        }
        return nil
    }

    /// Every node has finished: tell each peer before the connection closes,
    /// so that the close (which follows on the same stream) reads as a
    /// departure, not a crash.
    func announceDeparture() {
        finishing = true
        reportStatistics()
        for peer in 0..<nodes where peer != id {
            sendFrame(FrameHeader(kind: .exiting, source: id), payload: nil, to: peer)
        }
        flushEverything()
    }

    private func peerLost(_ peer: NodeID, why: String) {
        if finishing {
            if let connection = mesh.peers[peer] { _ = cdsm_epoll_remove(epoll, connection.fd) }
            return
        }
        fatal("lost node \(peer) (\(why)); stopping", status: NodeExitStatus.abortedByPeer)
    }

    // MARK: local requests

    func runLocally(_ request: ServiceRequest) -> ServiceReply {
        switch request {
        case .addContainer(let container, let pages, let address):
            ensureContainer(container, pages: pages, canonical: address)
            return ServiceReply(result: 0)
        case .destroyContainer(let container):
            if let c = containers.removeValue(forKey: container) {
                releaseWaiters(c, attachments: c.attachments)
                if configuration.stats { retiredPages += c.busiestPages() }
                coherence.removeContainer(container)
                attachmentIndex.rebuild(from: containers)
            }
            return ServiceReply(result: 0)
        case .mapAttachment(let container, let pages, let canonical, let address, let fixed, let readOnly, let execute, let shmid):
            let c = ensureContainer(container, pages: pages, canonical: canonical)
            do {
                // One node: nothing to keep coherent, so no fault is trapped
                // and the program runs on plain shared memory.
                let at = try c.attach(at: address, fixed: fixed, readOnly: readOnly, execute: execute, shmid: shmid,
                                      uffd: nodes > 1 ? uffd : nil)
                if nodes > 1 { protectNewAttachment(c, at: at) }
                attachmentIndex.rebuild(from: containers)
                return ServiceReply(result: Int64(at))
            } catch {
                return .error(error)
            }
        case .setUpImage(let data, let heapPages):
            return setUpImage(data: data, heapPages: heapPages)
        case .spawned, .threadFinished, .threadReaped:
            threadEvent(request)
            return ServiceReply(result: 0)
        case .endProgram:
            for peer in 0..<nodes where peer != id { deliver(.programEnd, to: peer) }
            return ServiceReply(result: 0)
        case .unmapAttachment(let address):
            for (_, c) in containers {
                guard let a = c.detach(at: address, beforeUnmap: { releaseWaiters(c, attachments: [$0]) }) else { continue }
                attachmentIndex.rebuild(from: containers)
                return ServiceReply(result: Int64(a.shmid))
            }
            return .error(.invalidArgument)
        default:
            preconditionFailure("not a local request")
        }
    }

    /// Before attachments go away: threads still blocked on a fault there
    /// are woken (their access then fails as Linux's would, with SIGSEGV on
    /// the unmapped range) and stop counting as waiting.
    private func releaseWaiters(_ c: LocalContainer, attachments: [LocalContainer.Attachment]) {
        for a in attachments { _ = cdsm_uffd_wake(uffd, a.start, a.length) }
        for i in 0..<c.pages where c.counters.waitingSince[i] != 0 {
            c.counters.waitingSince[i] = 0
            faultsWaiting -= 1
        }
    }

    @discardableResult
    func ensureContainer(_ container: ContainerID, pages: UInt32, canonical: UInt64) -> LocalContainer {
        if let c = containers[container] { return c }
        do {
            let c = try LocalContainer(id: container, pages: Int(pages), canonicalAddress: canonical)
            containers[container] = c
            coherence.addContainer(container, pages: Int(pages))
            return c
        } catch {
            fatal("cannot back container \(container) (\(pages) pages): \(error)")
        }
    }

    /// A new attachment sees whatever pages this node holds: those it may
    /// not write yet must be write-protected in it too.
    private func protectNewAttachment(_ c: LocalContainer, at start: UInt64) {
        guard let a = c.attachments.last, !a.readOnly else { return }
        for index in 0..<UInt32(c.pages) where coherence.localState(PageID(container: c.id, index: index)).isWriteProtected {
            uffdCall { cdsm_uffd_writeprotect(uffd, start + UInt64(index) << 12, UInt64(dsmPageSize), 1, 1) }
        }
    }
}

enum ReplyDestination {
    case local(LocalCall)
    case remote(node: NodeID, callID: UInt64)
    /// A notice: nobody waits for an answer.
    case none
}
