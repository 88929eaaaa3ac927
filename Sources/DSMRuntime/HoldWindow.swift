// A page brought in for a waiting thread stays a moment before this node
// gives it up again (Mirage's time window). Without it, two nodes writing one
// page can hand it back and forth without either making progress: the
// runtime thread, which runs before the program's threads (SCHED_FIFO),
// would serve the other node's request for the page in the same breath as
// it installed the page, before the woken thread had touched it. The hold
// guarantees that thread its access (img_api's cross-node atomics: 31.5 s
// without a hold, with a FIFO runtime thread).
//
// Which messages wait, and when a window opens, is the protocol's
// (DSMCoherence's HoldWindow.swift, explored with the rest): a page that came
// for a waiting thread holds, and a message that would take it or its write
// access away (`forwardRead`, `forwardWrite`, `invalidate`) waits for
// `endHold`. The time is the runtime's: a window lasts `holdNanoseconds`
// from the wake (DSM_HOLD_US), and the loop ends it when it is due.

import DSMCoherence
import DSMCore
import DSMTransport

/// A page whose hold window keeps a message, and when the window closes.
struct HeldPage {
    var page: PageID
    var release: UInt64
}

extension PageEngine {
    /// Called when a thread that waited for `page` is woken: the page's
    /// window lasts `holdNanoseconds` (DSM_HOLD_US).
    @inline(__always)
    func startHold(_ container: LocalContainer, _ index: Int, now: UInt64) {
        if holdNanoseconds > 0 { container.counters.holdUntil[index] = now &+ holdNanoseconds }
    }

    /// Before a message that a hold could keep: a window whose time has
    /// passed closes first, so that the message is handled at once.
    @inline(__always)
    func closeExpiredHold(before message: ProtocolMessage) {
        let page: PageID
        switch message {
        case .forwardRead(let p, _), .forwardWrite(let p, _, _), .invalidate(let p): page = p
        default: return
        }
        guard let container = containers[page.container] else { return }
        let i = Int(page.index)
        let until = container.counters.holdUntil[i]
        if until != 0 && monotonicNanoseconds() < until { return }
        container.counters.holdUntil[i] = 0
        var effects = RuntimeEffects(engine: self)
        coherence.endHold(page, &effects)
    }

    /// The protocol keeps a message until `page`'s window closes.
    func heldBack(_ page: PageID) {
        var release = monotonicNanoseconds()
        if let container = containers[page.container] {
            let until = container.counters.holdUntil[Int(page.index)]
            if until > release { release = until }
        }
        held.append(HeldPage(page: page, release: release))
        earliestRelease = min(earliestRelease, release)
    }

    /// Closes the windows whose time has come, each handing its message to
    /// the protocol, in the order they were held.
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
                if let container = containers[h.page.container] {
                    container.counters.holdUntil[Int(h.page.index)] = 0
                    var effects = RuntimeEffects(engine: self)
                    coherence.endHold(h.page, &effects)
                }
            } else {
                held[kept] = h
                kept += 1
                next = min(next, h.release)
            }
        }
        // Ending a hold only queues self-messages (drained below): nothing
        // is held meanwhile.
        assert(held.count == count)
        held.removeLast(count - kept)
        earliestRelease = next
        drainSelfMessages()
    }
}
