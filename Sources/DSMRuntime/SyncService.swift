// Synchronisation in image mode: pthread mutexes, conditions, barriers,
// rwlocks, spin locks, POSIX semaphores and futex waits on shared memory go
// to the object's home node (a hash of its address), where DSMSync's model
// queues and grants them. The object's memory is never used as a lock word,
// so no page moves for a lock; the data it protects moves by coherence.
//
// What happens on pthread_mutex_lock, in order:
// 1. sync.c looks the mutex up in this node's lock table and, under the
//    entry's spin lock, asks DSMSync's NodeLock (`dsm_swift_lock_attempt`
//    below). While the node holds the mutex's token, its threads lock and
//    unlock it there with no message (owner, recursion and error checks are
//    local).
// 2. Without the token, the first thread to miss it posts a
//    DSM_TOKEN_ACQUIRE notice on behalf of the node
//    (`dsm_swift_sync_notice` below: nobody waits for an answer) and waits
//    on the entry's private futex word; the node's other threads wait on
//    the same word without asking again.
// 3. The call router sends the request to the home (`CallRouter.start`);
//    the home's `handleSync` hands it to DSMSync's model, which grants the
//    token at once or recalls it from the node that holds it
//    (`SyncServiceEffects`: `.lockGranted`, `.lockRecalled` notices).
// 4. The holder's runtime thread takes the recall (`lockTokenEvent`):
//    NodeLock gives the token back at once if the mutex is free and has
//    been used a batch's worth, or keeps it until the mutex idles
//    (`deferredRecalls`, `checkDeferredRecalls`), then tells the home
//    (`.tokenRelease`).
// 5. The home grants the token to the next node; its runtime thread hands
//    the grant to NodeLock and wakes the waiting threads
//    (`dsm_lock_entry_done`), one of which takes the mutex as in step 1.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMSync
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

extension ServiceRequest {
    /// Traffic during which image mode's runtime thread stays ordinary
    /// (Node.becomeRealtime): lock tokens, conditions, semaphores, rwlocks,
    /// futexes and cross-node frees; barriers do not count.
    var isSyncTraffic: Bool {
        switch self {
        case .sync(let s):
            switch s.operation {
            case .barrierInit, .barrierWait, .barrierDestroy: return false
            default: return true
            }
        case .lockGranted, .lockRecalled, .lockTryRecalled, .remoteFree: return true
        default: return false
        }
    }
}

struct SyncRequest {
    var object: UInt64
    var operation: SyncOperation
    /// The calling thread (pthread_self(), unique cluster-wide in image mode).
    var thread: UInt64
    /// Relative; < 0: none.
    var timeoutNanoseconds: Int64

    /// Sent without waiting for an answer (dsm_swift_sync_notice).
    var isNotice = false

    /// The object's home: spread by address.
    func home(nodes: Int) -> NodeID {
        Int(((object >> 3) &* 0x9E37_79B9_7F4A_7C15) >> 33) % nodes
    }

    init(object: UInt64, operation: SyncOperation, thread: UInt64, timeoutNanoseconds: Int64) {
        self.object = object
        self.operation = operation
        self.thread = thread
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// From the C entry point's operation code, called on the asking
    /// thread of node `node`: a token operation is the node's, any other
    /// the thread's.
    init?(object: UInt64, code: Int32, argument: UInt64, node: NodeID, timeoutNanoseconds: Int64) {
        guard let operation = SyncRequest.operation(code: code, argument: argument) else { return nil }
        let thread = operation.isTokenOperation ? UInt64(node) : UInt64(pthread_self())
        self.init(object: object, operation: operation, thread: thread, timeoutNanoseconds: timeoutNanoseconds)
    }

    /// The operation of a code of `dsm_sync_operation` (CDSMPreload.h, the
    /// one table), nil for a code that is none. The switch is exhaustive:
    /// a code added there must be mapped here. The range is checked first:
    /// Swift makes an imported C enum of any number, and a switch over one
    /// that names no case traps (a peer's bytes must never trap).
    static func operation(code: Int32, argument: UInt64) -> SyncOperation? {
        let first = Int32(dsm_sync_operation.DSM_TOKEN_ACQUIRE.rawValue)
        let end = Int32(dsm_sync_operation.DSM_SYNC_OPERATIONS_END.rawValue)
        guard code >= first && code < end, let known = dsm_sync_operation(rawValue: numericCast(code)) else { return nil }
        switch known {
        case .DSM_SYNC_OPERATIONS_END: return nil
        case .DSM_TOKEN_ACQUIRE: return .tokenAcquire
        case .DSM_TOKEN_TRY: return .tokenTry
        case .DSM_TOKEN_RELEASE: return .tokenRelease
        case .DSM_TOKEN_BUSY: return .tokenBusy
        case .DSM_COND_ENQUEUE: return .condEnqueue
        case .DSM_COND_AWAIT: return .condAwait(ticket: argument)
        case .DSM_COND_SIGNAL: return .condSignal
        case .DSM_COND_BROADCAST: return .condBroadcast
        case .DSM_COND_DESTROY: return .condDestroy
        case .DSM_BARRIER_INIT: return .barrierInit(count: UInt32(truncatingIfNeeded: argument))
        case .DSM_BARRIER_WAIT: return .barrierWait
        case .DSM_BARRIER_DESTROY: return .barrierDestroy
        case .DSM_RW_READ, .DSM_RW_TRYREAD: return .readLock(tryOnly: known == .DSM_RW_TRYREAD)
        case .DSM_RW_WRITE, .DSM_RW_TRYWRITE: return .writeLock(tryOnly: known == .DSM_RW_TRYWRITE)
        case .DSM_RW_UNLOCK: return .rwUnlock
        case .DSM_RW_DESTROY: return .rwDestroy
        case .DSM_SEM_INIT: return .semInit(value: UInt32(truncatingIfNeeded: argument))
        case .DSM_SEM_WAIT, .DSM_SEM_TRYWAIT: return .semWait(tryOnly: known == .DSM_SEM_TRYWAIT)
        case .DSM_SEM_POST: return .semPost
        case .DSM_SEM_VALUE: return .semValue
        case .DSM_SEM_DESTROY: return .semDestroy
        case .DSM_FUTEX_SEQUENCE: return .futexSequence
        case .DSM_FUTEX_WAIT: return .futexWait(sequence: argument)
        case .DSM_FUTEX_WAKE: return .futexWake(count: Int32(truncatingIfNeeded: argument))
        }
    }

    /// The operation as (code, argument), for the wire.
    var code: (Int32, UInt64) {
        let (known, argument) = codeAndArgument
        return (Int32(known.rawValue), argument)
    }

    private var codeAndArgument: (dsm_sync_operation, UInt64) {
        switch operation {
        case .tokenAcquire: return (.DSM_TOKEN_ACQUIRE, 0)
        case .tokenTry: return (.DSM_TOKEN_TRY, 0)
        case .tokenRelease: return (.DSM_TOKEN_RELEASE, 0)
        case .tokenBusy: return (.DSM_TOKEN_BUSY, 0)
        case .condEnqueue: return (.DSM_COND_ENQUEUE, 0)
        case .condAwait(let ticket): return (.DSM_COND_AWAIT, ticket)
        case .condSignal: return (.DSM_COND_SIGNAL, 0)
        case .condBroadcast: return (.DSM_COND_BROADCAST, 0)
        case .condDestroy: return (.DSM_COND_DESTROY, 0)
        case .barrierInit(let count): return (.DSM_BARRIER_INIT, UInt64(count))
        case .barrierWait: return (.DSM_BARRIER_WAIT, 0)
        case .barrierDestroy: return (.DSM_BARRIER_DESTROY, 0)
        case .readLock(let tryOnly): return (tryOnly ? .DSM_RW_TRYREAD : .DSM_RW_READ, 0)
        case .writeLock(let tryOnly): return (tryOnly ? .DSM_RW_TRYWRITE : .DSM_RW_WRITE, 0)
        case .rwUnlock: return (.DSM_RW_UNLOCK, 0)
        case .rwDestroy: return (.DSM_RW_DESTROY, 0)
        case .semInit(let value): return (.DSM_SEM_INIT, UInt64(value))
        case .semWait(let tryOnly): return (tryOnly ? .DSM_SEM_TRYWAIT : .DSM_SEM_WAIT, 0)
        case .semPost: return (.DSM_SEM_POST, 0)
        case .semValue: return (.DSM_SEM_VALUE, 0)
        case .semDestroy: return (.DSM_SEM_DESTROY, 0)
        case .futexSequence: return (.DSM_FUTEX_SEQUENCE, 0)
        case .futexWait(let sequence): return (.DSM_FUTEX_WAIT, sequence)
        case .futexWake(let count): return (.DSM_FUTEX_WAKE, UInt64(UInt32(bitPattern: count)))
        }
    }

    func encode(into w: inout WireWriter) {
        let (c, argument) = code
        w.put(object); w.put(thread); w.put(timeoutNanoseconds); w.put(c); w.put(argument)
    }

    static func decode(_ r: inout WireReader) -> SyncRequest? {
        let object: UInt64 = r.get()
        let thread: UInt64 = r.get()
        let timeout: Int64 = r.get()
        let code: Int32 = r.get()
        let argument: UInt64 = r.get()
        guard let operation = SyncRequest.operation(code: code, argument: argument) else { return nil }
        return SyncRequest(object: object, operation: operation, thread: thread, timeoutNanoseconds: timeout)
    }
}

let traceLocks = processConfiguration?.tunables.traceLocks ?? false

/// Carries out what the lock service's model decides, as it decides it:
/// answers to callers, and lock tokens granted or asked back, as messages
/// to their nodes. A token notice for this node itself waits until the
/// model has returned (`deliverSelfSyncNotices`), like the coherence
/// protocol's self-messages: handled at once, a grant can give the token
/// straight back, which would call the model again from inside itself.
struct SyncServiceEffects: SyncEffects {
    unowned let router: CallRouter

    func reply(_ waiter: ReplyDestination, _ result: Int64) {
        router.answer(waiter, ServiceReply(result: result))
    }

    func grant(_ object: UInt64, to target: Int) {
        if traceLocks { log("grant \(String(object, radix: 16)) to \(target)") }
        notify(.lockGranted(object: object, node: target), target)
    }

    func recall(_ object: UInt64, from target: Int) {
        if traceLocks { log("recall \(String(object, radix: 16)) from \(target)") }
        notify(.lockRecalled(object: object, node: target), target)
    }

    func tryRecall(_ object: UInt64, from target: Int) {
        notify(.lockTryRecalled(object: object, node: target), target)
    }

    private func notify(_ notice: ServiceRequest, _ target: NodeID) {
        if target == router.id {
            router.selfSyncNotices.append(notice)
        } else {
            router.deliver(notice, to: target)
        }
    }
}

extension CallRouter {
    /// A synchronisation request for an object homed here.
    func handleSync(_ request: SyncRequest, reply: ReplyDestination) {
        if traceLocks { log("home \(String(request.object, radix: 16)) \(request.operation) from \(request.thread)") }
        let deadline = request.timeoutNanoseconds >= 0
            ? monotonicNanoseconds() &+ UInt64(request.timeoutNanoseconds) : nil
        var effects = SyncServiceEffects(router: self)
        syncObjects.handle(request.object, request.operation, thread: request.thread, deadline: deadline,
                           waiter: reply, &effects)
        deliverSelfSyncNotices()
    }

    /// The token notices the lock service sent this node, in order, each
    /// once the model call that made it has returned (one handled here may
    /// make more: they are taken in the same pass).
    func deliverSelfSyncNotices() {
        guard !deliveringSelfSyncNotices else { return }
        deliveringSelfSyncNotices = true
        var i = 0
        while i < selfSyncNotices.count {
            let notice = selfSyncNotices[i]
            i += 1
            handleHere(notice, caller: anonymousCaller, reply: .none)
        }
        selfSyncNotices.removeAll(keepingCapacity: true)
        deliveringSelfSyncNotices = false
    }

    /// A token arrived or is asked back: NodeLock decides, on the state of
    /// the mutex in this node's lock table, whether it goes straight back
    /// to its home.
    func lockTokenEvent(_ request: ServiceRequest) {
        let giveBack: Bool
        let object: UInt64
        switch request {
        case .lockGranted(let o, _):
            object = o
            // Release consistency: the token's arrival is an acquire; the
            // copies its last holder's releases made old go first
            // (ReleasePages.swift).
            if pages.releaseConsistent { pages.acquireWrites() }
            // No entry (the table is full): nobody here can want it.
            giveBack = withLockState(o, create: true, wake: .max) { NodeLock.granted(&$0) } ?? true
        case .lockRecalled(let o, _):
            object = o
            let now = Int64(monotonicNanoseconds())
            guard let recall = withLockState(o, { NodeLock.recalled(&$0, now: now) }) else { return }
            if recall == .later && !deferredRecalls.contains(o) { deferredRecalls.append(o) }
            giveBack = recall == .giveBack
        case .lockTryRecalled(let o, _):
            object = o
            giveBack = withLockState(o) { NodeLock.tryRecalled(&$0) } ?? true
            if !giveBack { tellHome(.tokenBusy, object: o) }
        default: return
        }
        if traceLocks { log("event \(request) giveBack=\(giveBack)") }
        if giveBack { tellHome(.tokenRelease, object: object) }
    }

    /// The home said yes to a try-lock of this node's.
    func tryTokenArrived(_ object: UInt64) {
        // The asking thread is answered right after: an acquire first.
        if pages.releaseConsistent { pages.acquireWrites() }
        withLockState(object, create: true) { NodeLock.tryTokenArrived(&$0) }
    }

    /// Runs one of NodeLock's decisions on the state of `object`'s token in
    /// this node's lock table, with its entry locked (create: make the entry
    /// if absent), then unlocks it and wakes `wake` of the threads waiting
    /// there. Nil when the node has no entry for it.
    @discardableResult
    private func withLockState<T>(_ object: UInt64, create: Bool = false, wake: Int32 = 0,
                                  _ decide: (inout dsm_lock_state) -> T) -> T? {
        guard let state = dsm_lock_entry(object, create ? 1 : 0) else { return nil }
        let result = decide(&state.pointee)
        dsm_lock_entry_done(state, wake)
        return result
    }

    /// This node's word about a lock token, to the object's home.
    /// Release consistency: a token given back leaves once what this node
    /// wrote is at its homes (ReleasePages.swift).
    private func tellHome(_ operation: SyncOperation, object: UInt64) {
        if operation == .tokenRelease && pages.releaseConsistent && !pages.releaseWrites(then: .token(object)) { return }
        tellHomeNow(operation, object: object)
    }

    func tellHomeNow(_ operation: SyncOperation, object: UInt64) {
        let notice = SyncRequest(object: object, operation: operation, thread: UInt64(id), timeoutNanoseconds: -1)
        deliver(.sync(notice), to: notice.home(nodes: nodes))
    }

    /// Recalled tokens kept for a batch: given back once their mutex idles.
    func checkDeferredRecalls() {
        guard !deferredRecalls.isEmpty else { return }
        let now = Int64(monotonicNanoseconds())
        var i = 0
        while i < deferredRecalls.count {
            let object = deferredRecalls[i]
            switch withLockState(object, { NodeLock.recallDue(&$0, now: now) }) ?? .settled {
            case .giveBack:
                if traceLocks { log("deferred release \(String(object, radix: 16))") }
                tellHome(.tokenRelease, object: object)
                deferredRecalls.remove(at: i)
            case .settled: deferredRecalls.remove(at: i)
            case .notYet: i += 1
            }
        }
    }

    /// Timed waits that ran out.
    func expireSyncDeadlines() {
        guard let next = syncObjects.nextDeadline, next <= monotonicNanoseconds() else { return }
        var effects = SyncServiceEffects(router: self)
        syncObjects.expire(now: monotonicNanoseconds(), &effects)
        deliverSelfSyncNotices()
    }


}

@_cdecl("dsm_swift_sync")
public func dsmSwiftSync(_ object: UInt64, _ operation: Int32, _ argument: UInt64, _ timeout: Int64) -> Int {
    let node = runtimeNode!
    guard let request = SyncRequest(object: object, code: operation, argument: argument, node: node.id,
                                    timeoutNanoseconds: timeout) else {
        return -Int(EINVAL)
    }
    return Int(node.calls.perform(.sync(request), caller: node.calls.anonymousCaller).result)
}

@_cdecl("dsm_swift_sync_notice")
public func dsmSwiftSyncNotice(_ object: UInt64, _ operation: Int32, _ argument: UInt64) {
    let node = runtimeNode!
    guard var request = SyncRequest(object: object, code: operation, argument: argument, node: node.id,
                                    timeoutNanoseconds: -1) else { return }
    request.isNotice = true
    node.calls.post(.sync(request), caller: node.calls.anonymousCaller)
}

// MARK: the node side of lock tokens, for sync.c (each with the entry locked)

@_cdecl("dsm_swift_lock_attempt")
public func dsmSwiftLockAttempt(_ state: UnsafeMutablePointer<dsm_lock_state>, _ thread: UInt64, _ tryOnly: Int32,
                                _ seen: UnsafeMutablePointer<UInt32>) -> dsm_lock_attempt {
    switch NodeLock.lock(&state.pointee, thread: thread, tryOnly: tryOnly != 0) {
    case .acquired: return .DSM_LOCK_ACQUIRED
    case .refused(.busy): return .DSM_LOCK_BUSY
    case .refused(.deadlock): return .DSM_LOCK_DEADLOCK
    case .askTry: return .DSM_LOCK_ASK_TRY
    case .wait(let ask, let sequence):
        seen.pointee = sequence
        return ask ? .DSM_LOCK_ASK_AND_WAIT : .DSM_LOCK_WAIT
    }
}

@_cdecl("dsm_swift_lock_end_wait")
public func dsmSwiftLockEndWait(_ state: UnsafeMutablePointer<dsm_lock_state>, _ timedOut: Int32) -> Int32 {
    NodeLock.endWait(&state.pointee, timedOut: timedOut != 0) ? 1 : 0
}

@_cdecl("dsm_swift_lock_unlock")
public func dsmSwiftLockUnlock(_ state: UnsafeMutablePointer<dsm_lock_state>, _ thread: UInt64,
                               _ now: Int64) -> dsm_unlock_step {
    switch NodeLock.unlock(&state.pointee, thread: thread, now: now) {
    case .notHeld(let permitted): return permitted ? .DSM_UNLOCK_IGNORED : .DSM_UNLOCK_NOT_OWNER
    case .stillHeld: return .DSM_UNLOCK_STILL_HELD
    case .released(let giveBack, _): return giveBack ? .DSM_UNLOCK_GIVE_BACK : .DSM_UNLOCK_RELEASED
    }
}
