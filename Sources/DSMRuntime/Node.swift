// One node of the run, and its runtime thread's event loop. The loop waits
// on one epoll for four kinds of events and hands each to the part that
// owns it:
// - the userfaultfd (a program thread touched a page it may not): the page
//   engine (PageEngine.swift, FaultPath.swift);
// - the call bell (a program thread queued a call: System V, a lock, a
//   thread): the call router (CallRouter.swift);
// - a peer's socket: coherence frames to the page engine, calls and replies
//   to the call router, forwarded output to the terminal;
// - the launcher's connection (it went away: the run is over).
// Between events it keeps time: held messages, timed waits, heartbeats, and
// whether the runtime thread runs real-time (RuntimeScheduling); while a
// program thread of this node waits on it, it may poll instead of sleeping.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Everything here is touched by the runtime thread only, except what
/// program threads hand the call router (`CallRouter.perform`).
final class Node {
    let configuration: Configuration
    var id: NodeID { configuration.node }
    var nodes: Int { configuration.nodes }
    let uffd: Int32
    let epoll: Int32
    let links: PeerLinks
    let pages: PageEngine
    let calls: CallRouter

    /// Whether the runtime thread runs real-time, and when it should
    /// (DSMCore's RuntimeScheduling).
    var scheduling = RuntimeScheduling()
    /// Heartbeats and the peer timeout (Liveness.swift).
    var liveness: Liveness
    /// Standard output and error sent to node 0 (OutputForwarding.swift).
    private(set) var output: OutputForwarding?
    /// How long the runtime thread polls, while a program thread of its node
    /// waits on it, before sleeping. Polling saves two thread wake-ups per
    /// fault or call, but only pays when the node has a CPU of its own
    /// (bound, one node per CPU, or alone on its host); with several nodes
    /// per CPU it steals from them. DSM_SPIN_US overrides.
    let spinNanoseconds: UInt64

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
        let mesh: Mesh
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
        for case let peer? in mesh.peers {
            // A backstop: the heartbeats speak first, and name the node.
            _ = cdsm_tcp_user_timeout(peer.fd, UInt32(clamping: 2 * configuration.peerTimeoutNanoseconds / 1_000_000))
            peer.delayNanoseconds = configuration.delayNanoseconds
        }
        epoll = cdsm_epoll_create()
        if epoll < 0 { fatal("cannot create the event loop: \(Errno(rawValue: -epoll))") }
        liveness = Liveness(nodes: configuration.nodes, timeoutNanoseconds: configuration.peerTimeoutNanoseconds)
        links = PeerLinks(mesh: mesh, id: configuration.node, nodes: configuration.nodes, epoll: epoll,
                          delayNanoseconds: configuration.delayNanoseconds)
        pages = PageEngine(configuration: configuration, uffd: fd, links: links)
        calls = CallRouter(configuration: configuration, links: links, pages: pages)
        if let chosen = configuration.tunables.spinNanoseconds {
            spinNanoseconds = chosen
        } else {
            let ownCPU = configuration.localNodes <= Int(cdsm_online_cpus())
                && (configuration.bind || configuration.localNodes == 1)
            spinNanoseconds = ownCPU && configuration.nodes > 1 ? 50_000 : 0
        }
        // The parts' calls back: a drop is punched before any frame leaves
        // (the frame may let another node write the page); the call router
        // reports synchronisation traffic and the end of the run.
        links.beforeFramesLeave = { [unowned(unsafe) pages] in pages.punchPendingDrops() }
        calls.sawSyncTraffic = { [unowned(unsafe) self] in sawSyncTraffic() }
        calls.leaveRun = { [unowned(unsafe) self] in announceDeparture() }

        watch(uffd, tag: Node.uffdTag)
        watch(calls.callBell, tag: Node.bellTag)
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
        configuration.image && calls.callsWaiting + pages.faultsWaiting < calls.runningProgramThreads
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

    // MARK: the loop

    func run() -> Never {
        dsm_preload_enter_runtime_thread()
        cdsm_block_all_signals()
        apply(RuntimeScheduling.initial(wantRealtime: configuration.tunables.realtimeRuntime),
              adaptive: configuration.image && configuration.tunables.adaptiveRealtime)
        // Frames that arrived with a peer's authentication during set-up are
        // already in its buffer, where no readiness event will announce them.
        for case let connection? in links.mesh.peers { drainFrames(connection) }
        let tags = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
        while true {
            pages.settle()
            links.flushQueued()
            let timeout = millisecondsUntil(earliest(calls.nextDeadline, liveness.nextBeat))
            let delayedSend = links.earliestDelayedSend
            let release = pages.nextRelease
            var n: Int32 = 0
            if spinNanoseconds > 0 && (pages.faultsWaiting > 0 || calls.callsWaiting > 0) && !otherThreadsMayRun {
                // A program thread of this node is blocked on an answer,
                // which usually comes within tens of microseconds: polling
                // a little can be cheaper than two wake-ups (DSM_SPIN_US).
                let until = min(monotonicNanoseconds() + spinNanoseconds, release ?? .max, delayedSend)
                repeat { n = cdsm_epoll_wait(epoll, tags, events, 64, 0) } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 {
                if (calls.hasDeferredRecalls || release != nil || delayedSend != .max) && timeout != 0 {
                    // A recalled lock token kept for a batch is looked at
                    // again once its mutex may have idled (50 µs); a held
                    // message when its page's hold ends; a delayed frame
                    // when its delay has passed.
                    var micros: UInt64 = 50
                    let due = min(release ?? .max, delayedSend)
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
                case Node.uffdTag: pages.drainFaults()
                case Node.bellTag:
                    if output != nil { forwardOutput() }
                    calls.takeCalls()
                case Node.coordinatorTag: coordinatorReadable()
                default: peerEvent(NodeID(tag), flags: flags)
                }
            }
            if scheduling.mayResume { apply(scheduling.idle(now: monotonicNanoseconds())) }
            calls.expireDeadlines()
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
    private func sawSyncTraffic() {
        apply(scheduling.syncEvent(now: monotonicNanoseconds()))
    }

    private func coordinatorReadable() {
        let coordinator = links.mesh.coordinator
        let result = try? coordinator.receive()
        // The launcher says nothing after the table: whatever comes is read
        // and dropped, so that the buffer does not grow.
        do {
            while try coordinator.nextFrame() != nil {}
        } catch {
            fatal("the launcher broke the protocol: \(error)")
        }
        if result == .endOfStream || result == nil {
            if links.finishing {
                // Level-triggered: an ended stream would wake the loop forever.
                _ = cdsm_epoll_remove(epoll, coordinator.fd)
                return
            }
            fatal("the launcher (dsmrun) is gone; stopping", status: NodeExitStatus.abortedByPeer)
        }
    }

    private func peerEvent(_ peer: NodeID, flags: UInt32) {
        guard let connection = links.mesh.peers[peer] else { return }
        if flags & CDSM_EPOLLOUT != 0 { links.writable(connection) }
        guard flags & (CDSM_EPOLLIN | CDSM_EPOLLHUP | CDSM_EPOLLERR) != 0 else { return }
        let result: Connection.ReadResult
        do { result = try connection.receive() } catch {
            links.peerLost(peer, why: "\(error)")
            return
        }
        liveness.lastHeard[peer] = monotonicNanoseconds()
        drainFrames(connection)
        if result == .endOfStream { links.peerLost(peer, why: "connection closed") }
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
            links.traffic.messagesReceived &+= 1
            links.traffic.bytesReceived &+= UInt64(FrameHeader.size + payload.count)
            if header.kind != .heartbeat { liveness.lastSaid[peer] = header.kind.rawValue }
            dispatch(header, payload, from: peer)
        }
        pages.flushStagedRun()
    }

    /// One frame from `peer`, to the part that owns it. Anything that is not
    /// what a node of this run sends ends the run with a message naming the
    /// peer (never a trap).
    private func dispatch(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        switch header.kind {
        case .readRequest, .writeRequest, .forwardRead, .forwardWrite, .invalidate, .invalidateAck, .data, .grant, .done,
             .unwritten:
            pages.handleCoherenceFrame(header, payload, from: peer)
        case .releaseFetch, .releaseData, .releaseDiff, .releaseDiffAck, .releaseStale, .releaseStaleSeen, .releaseMove:
            pages.handleReleaseFrame(header, payload, from: peer)
        case .call:
            calls.received(call: header, payload, from: peer)
        case .reply:
            calls.received(reply: header, payload, from: peer)
        case .exiting:
            // Sent only after the exit rendezvous: the run is ending well.
            links.finishing = true
        case .heartbeat:
            break
        case .output:
            writeForwardedOutput(header, payload)
        case .abort, .stats, .hello, .table, .auth, .agentHello, .nodeEnded, .signalNodes, .stdinData:
            fatal("node \(peer) broke the protocol: it sent a \(header.kind) frame, which nodes never send each other")
        }
    }

    /// Every node has finished: tell each peer before the connection closes,
    /// so that the close (which follows on the same stream) reads as a
    /// departure, not a crash.
    private func announceDeparture() {
        links.finishing = true
        reportStatistics()
        for peer in 0..<nodes where peer != id {
            links.sendFrame(FrameHeader(kind: .exiting, source: id), payload: nil, to: peer)
        }
        links.flushEverything()
    }
}
