import CDSMKernel
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// A peer that has crashed closes its connections, but a frozen process
/// (SIGSTOP) or a host whose link went down sends nothing at all, not even a
/// FIN. So every node sends each peer a heartbeat every fifth of the peer
/// timeout, and a peer heard from by no frame for the whole timeout ends the
/// run (DSM_PEER_TIMEOUT, dsmrun --peer-timeout). The connections also carry
/// TCP_USER_TIMEOUT, so data left unacknowledged that long fails the socket.
struct Liveness {
    let timeout: UInt64
    let interval: UInt64
    /// When a frame last came from each peer (monotonic ns).
    var lastHeard: [UInt64]
    /// The kind of the last frame other than a heartbeat from each peer
    /// (raw FrameKind; 0: none yet): what it was last doing, for the message.
    var lastSaid: [UInt8]
    var nextBeat: UInt64

    init(nodes: Int, timeoutNanoseconds: UInt64) {
        timeout = timeoutNanoseconds
        interval = max(timeoutNanoseconds / 5, 1_000_000)
        let now = monotonicNanoseconds()
        lastHeard = [UInt64](repeating: now, count: nodes)
        lastSaid = [UInt8](repeating: 0, count: nodes)
        nextBeat = now &+ interval
    }
}

extension Node {
    /// Sends the heartbeats that are due and ends the run if a peer has been
    /// silent for the timeout. Called once per loop round; cheap when
    /// nothing is due.
    func checkLiveness() {
        let now = monotonicNanoseconds()
        guard now >= liveness.nextBeat else { return }
        if now &- liveness.nextBeat > 2 * liveness.interval {
            // This node itself did not run for a while (the whole job was
            // suspended, or the machine): its peers may not have run
            // either, so their silence proves nothing yet.
            for peer in 0..<nodes { liveness.lastHeard[peer] = now }
        }
        liveness.nextBeat = now &+ liveness.interval
        pages.checkSlowFault(now: now)
        for peer in 0..<nodes where peer != id && links.mesh.peers[peer] != nil {
            let silent = now &- liveness.lastHeard[peer]
            if silent > liveness.timeout && !links.finishing {
                let tenths = silent / 100_000_000
                fatal("""
                    node \(peer) (\(links.mesh.endpoints[peer].host)) has sent nothing for \(tenths / 10).\(tenths % 10) s: \
                    it is stopped or frozen, or its host cannot be reached (\(lastDoing(peer))); stopping the run (--peer-timeout)
                    """, status: NodeExitStatus.peerSilent)
            }
            links.sendFrame(FrameHeader(kind: .heartbeat, source: id), payload: nil, to: peer)
        }
    }

    /// What the silent peer last said, in words.
    private func lastDoing(_ peer: NodeID) -> String {
        let what: String
        switch FrameKind(rawValue: liveness.lastSaid[peer]) {
        case nil: return "it had sent nothing but heartbeats"
        case .readRequest?, .writeRequest?: what = "asking for a page"
        case .forwardRead?, .forwardWrite?: what = "passing on a request for a page"
        case .invalidate?: what = "invalidating a page"
        case .invalidateAck?: what = "acknowledging an invalidation"
        case .data?, .grant?: what = "sending a page or write access"
        case .done?: what = "finishing a page transfer"
        case .unwritten?: what = "saying a page stopped migrating"
        case .call?: what = "calling a service (System V, lock, thread)"
        case .reply?: what = "answering a call"
        case .output?: what = "forwarding the program's output"
        case let kind?: what = "\(kind)"
        }
        return "the last it did was " + what
    }
}
