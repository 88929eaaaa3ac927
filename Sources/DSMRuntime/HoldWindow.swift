// A page brought in for a waiting thread stays a moment before this node
// gives it up again (Mirage's time window). Without it, two nodes writing one
// page can hand it back and forth without either making progress: the
// runtime thread, which runs before the program's threads (SCHED_FIFO),
// would serve the other node's request for the page in the same breath as
// it installed the page, before the woken thread had touched it. The hold
// guarantees that thread its access (img_api's cross-node atomics: 31.5 s
// without a hold, with a FIFO runtime thread).
//
// Held: what takes the page or its write access away (`forwardRead`,
// `forwardWrite`, `invalidate`). A held message keeps the messages about
// the same page that come after it behind it, so each page's messages are
// still handled in the order they came; other pages' go on.

import DSMCoherence
import DSMCore
import DSMTransport

struct HeldMessage {
    var message: ProtocolMessage
    var release: UInt64
}

extension PageEngine {
    /// Called when a thread that waited for `page` is woken: the page stays
    /// for `holdNanoseconds` (DSM_HOLD_US).
    @inline(__always)
    func startHold(_ container: LocalContainer, _ index: Int, now: UInt64) {
        if holdNanoseconds > 0 { container.counters.holdUntil[index] = now &+ holdNanoseconds }
    }

    /// Whether `message` must wait; if so it has been set aside.
    func holdsBack(_ message: ProtocolMessage) -> Bool {
        let page: PageID
        switch message {
        case .forwardRead(let p, _), .forwardWrite(let p, _, _), .invalidate(let p): page = p
        default: return false
        }
        guard let container = containers[page.container] else { return false }
        let i = Int(page.index)
        let until = container.counters.holdUntil[i]
        if container.counters.heldMessages[i] == 0 {
            if until == 0 { return false }
            if monotonicNanoseconds() >= until {
                container.counters.holdUntil[i] = 0
                return false
            }
        }
        container.counters.heldMessages[i] += 1
        held.append(HeldMessage(message: message, release: until))
        earliestRelease = min(earliestRelease, until)
        stats.heldMessages &+= 1
        return true
    }

    /// Hands the held messages whose time has come to the protocol, in the
    /// order they came.
    func releaseHeldMessages() {
        guard !held.isEmpty else { return }
        let now = monotonicNanoseconds()
        guard now >= earliestRelease else { return }
        let count = held.count
        var kept = 0
        var next = UInt64.max
        for k in 0..<count {
            let h = held[k]
            if h.release <= now {
                let page = h.message.page
                if let container = containers[page.container] {
                    let i = Int(page.index)
                    container.counters.heldMessages[i] -= 1
                    if container.counters.heldMessages[i] == 0 { container.counters.holdUntil[i] = 0 }
                    var effects = RuntimeEffects(engine: self)
                    coherence.receive(h.message, &effects)
                }
            } else {
                held[kept] = h
                kept += 1
                next = min(next, h.release)
            }
        }
        // Releasing only queues self-messages (drained below): nothing is
        // held meanwhile.
        assert(held.count == count)
        held.removeLast(count - kept)
        earliestRelease = next
        drainSelfMessages()
    }
}
