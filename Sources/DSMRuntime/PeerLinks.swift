// The node's connections to its peers: frames are queued per peer and leave
// once per round of the event loop, one `send` per peer (on loopback TCP
// that is also one wake-up of the receiver). Emulated distance
// (DSM_DELAY_US) holds frames back here.

import CDSMKernel
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Messages and bytes over the wire, for --stats.
struct TrafficCounters {
    var messagesSent: UInt64 = 0
    var messagesReceived: UInt64 = 0
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
}

final class PeerLinks {
    let id: NodeID
    let nodes: Int
    let mesh: Mesh
    /// The event loop's epoll: a peer's socket is watched for writability
    /// while it has frames the socket did not take.
    let epoll: Int32
    let delayNanoseconds: UInt64
    var traffic = TrafficCounters()
    /// Set once every node has finished: connections closing is then normal.
    var finishing = false
    /// When frames held back by DSM_DELAY_US may next leave.
    private(set) var earliestDelayedSend = UInt64.max
    /// Runs before any queued frame leaves: a frame may tell another node
    /// it may now write a page this node dropped, so the drop must be
    /// punched out first (the page engine's pending drops).
    var beforeFramesLeave: () -> Void = {}
    private var wantsWritable: [Bool]
    /// Peers with frames queued since the last `flushQueued`.
    private var queuedFor: [Bool]
    private var peersWithQueuedFrames: [NodeID] = []

    init(mesh: Mesh, id: NodeID, nodes: Int, epoll: Int32, delayNanoseconds: UInt64) {
        self.mesh = mesh
        self.id = id
        self.nodes = nodes
        self.epoll = epoll
        self.delayNanoseconds = delayNanoseconds
        wantsWritable = [Bool](repeating: false, count: nodes)
        queuedFor = [Bool](repeating: false, count: nodes)
        peersWithQueuedFrames.reserveCapacity(nodes)
    }

    /// Queues a frame for `peer`. It leaves with everything else queued for
    /// that peer when the loop has handled its batch of events
    /// (`flushQueued`).
    func sendFrame(_ header: FrameHeader, payload: UnsafeRawBufferPointer?, to peer: NodeID) {
        guard peer >= 0, peer < nodes, let connection = mesh.peers[peer] else { fatal("no connection to node \(peer)") }
        traffic.messagesSent &+= 1
        traffic.bytesSent &+= UInt64(FrameHeader.size + (payload?.count ?? 0))
        connection.queue(header, payload: payload)
        if !queuedFor[peer] {
            queuedFor[peer] = true
            peersWithQueuedFrames.append(peer)
        }
    }

    /// Writes out the frames queued since the last call; what a socket does
    /// not take now leaves when it becomes writable (`writable`).
    func flushQueued() {
        beforeFramesLeave()
        for peer in peersWithQueuedFrames {
            queuedFor[peer] = false
            guard let connection = mesh.peers[peer] else { continue }
            do { try connection.flush() } catch { peerLost(peer, why: "\(error)") }
            if connection.waitingForSocket { setWritableInterest(peer, true) }
        }
        peersWithQueuedFrames.removeAll(keepingCapacity: true)
        if delayNanoseconds > 0 { flushDelayed() }
    }

    /// The socket to `peer` takes data again.
    func writable(_ connection: Connection) {
        beforeFramesLeave()
        do { try connection.flush() } catch { peerLost(connection.peer, why: "\(error)") }
        if !connection.waitingForSocket { setWritableInterest(connection.peer, false) }
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

    private func setWritableInterest(_ peer: NodeID, _ on: Bool) {
        guard wantsWritable[peer] != on, let connection = mesh.peers[peer] else { return }
        wantsWritable[peer] = on
        _ = cdsm_epoll_modify(epoll, connection.fd, CDSM_EPOLLIN | (on ? CDSM_EPOLLOUT : 0), UInt64(peer))
    }

    /// Writes out everything queued for every peer (at exit).
    /// Gives up after 5 s: a peer that takes nothing is gone or stuck, and
    /// the launcher deals with it.
    func flushEverything() {
        beforeFramesLeave()
        let deadline = monotonicMilliseconds() + 5_000
        for case let connection? in mesh.peers {
            while connection.hasPendingOutput && monotonicMilliseconds() < deadline {
                do { try connection.flush() } catch { break }
                if connection.hasPendingOutput {
                    var p = pollfd(fd: connection.fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 100)
                }
            }
        }
    }

    /// A connection failed or closed: the end of the run, unless every node
    /// has finished (then it is a departure).
    func peerLost(_ peer: NodeID, why: String) {
        if finishing {
            if let connection = mesh.peers[peer] { _ = cdsm_epoll_remove(epoll, connection.fd) }
            return
        }
        fatal("lost node \(peer) (\(why)); stopping", status: NodeExitStatus.abortedByPeer)
    }
}
