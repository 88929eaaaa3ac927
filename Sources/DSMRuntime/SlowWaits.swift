// A wait far longer than the protocol ever needs (half the peer timeout:
// pages and tokens move in micro- to milliseconds) is said on stderr, so a
// slow run is never taken for a hung one: what the thread waits for, and
// where it is. Once per kind per node; every time with --verbose.
//
// Three kinds of waits are watched: a fault on a page (checked from the
// liveness tick, on the fault that began waiting last: in a stall it is the
// one stuck), a pthread lock whose token is elsewhere (sync.c asks after
// waiting that long) and dsm_barrier().

import CDSMKernel
import DSMCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

enum SlowWait: UInt8 {
    case page = 1, lock = 2, barrier = 4

    /// The kinds already said on this node.
    static let told = Atomic<UInt8>(0)

    /// Whether to say it: the first of its kind, or any with --verbose.
    static func shouldTell(_ kind: SlowWait, verbose: Bool) -> Bool {
        let before = told.bitwiseOr(kind.rawValue, ordering: .relaxed).oldValue
        return verbose || before & kind.rawValue == 0
    }
}

/// The fault that began waiting last (the liveness tick looks at it).
struct LatestWait {
    var container: ContainerID = 0
    var index = -1
    var since: UInt64 = 0
}

/// How a container is named in messages, as dsmrun --stats names it.
func containerName(_ container: ContainerID) -> String {
    if let object = PageID.imageDataObject(of: container) {
        return object == 0 ? "the program's data" : "the data of the program's library \(object)"
    }
    if PageID.blockPages(of: container) != nil { return "the heap" }
    return "System V segment container \(container)"
}

func secondsText(_ nanoseconds: UInt64) -> String {
    let tenths = nanoseconds / 100_000_000
    return "\(tenths / 10).\(tenths % 10) s"
}

extension Configuration {
    /// Half the peer timeout: longer than any healthy wait, shorter than
    /// the silence that ends the run.
    var slowWaitNanoseconds: UInt64 { peerTimeoutNanoseconds / 2 }
}

extension PageEngine {
    /// Liveness tick: is the latest waiting fault still waiting, and for long?
    func checkSlowFault(now: UInt64) {
        let w = latestWait
        guard w.index >= 0, let c = containers[w.container], w.index < c.pages,
              c.counters.waitingSince[w.index] == w.since, now &- w.since > configuration.slowWaitNanoseconds else { return }
        latestWait.index = -1
        guard SlowWait.shouldTell(.page, verbose: configuration.verbose) else { return }
        let page = PageID(container: w.container, index: UInt32(w.index))
        let home = page.home(nodes: nodes)
        log("""
            a thread has waited \(secondsText(now &- w.since)) for page \(w.index) of \(containerName(w.container)) \
            (its home is node \(home)\(home == id ? ", this one" : "")); every node still answers, so the run is slow, not hung
            """)
    }
}

extension CallRouter {
    /// dsm_barrier(): waits, saying so once it has waited long.
    func barrierWait(_ call: LocalCall) -> ServiceReply {
        let slow = configuration.slowWaitNanoseconds
        if cdsm_futex_wait_for(call.doneWord, 0, slow) == 0
            && SlowWait.shouldTell(.barrier, verbose: configuration.verbose) {
            log("""
                a thread has waited \(secondsText(slow)) in dsm_barrier(): not every node has called it yet \
                (it needs one call from each of the \(nodes) nodes\(configuration.image ? "; in image mode, one thread per node" : ""))
                """)
        }
        return call.wait()
    }
}

/// sync.c: a thread has waited that long for the lock at `object`, whose
/// token is elsewhere (a holder on its own node is the program's affair).
@_cdecl("dsm_swift_slow_lock_wait")
public func dsmSwiftSlowLockWait(_ object: UInt64) {
    guard let node = runtimeNode, SlowWait.shouldTell(.lock, verbose: node.configuration.verbose) else { return }
    log("""
        a thread has waited \(secondsText(node.configuration.slowWaitNanoseconds)) for the lock at 0x\(String(object, radix: 16)) \
        (held on another node, or its token is on the way); every node still answers, so the program is slow, not hung
        """)
}

/// sync.c: how long a lock wait lasts before it is said (0: not yet known).
@_cdecl("dsm_swift_slow_wait_nanoseconds")
public func dsmSwiftSlowWaitNanoseconds() -> UInt64 { runtimeNode?.configuration.slowWaitNanoseconds ?? 0 }
