import CDSMKernel
import CDSMPreload
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Who asks: the credentials a System V check needs, taken from the
/// calling thread when the call is made.
struct Caller {
    var uid: UInt32
    var gid: UInt32
    /// Supplementary groups: Linux's permission checks (in_group_p) use them.
    var groups: [UInt32] = []
    var pid: Int32
    var node: NodeID

    static func current(node: NodeID) -> Caller {
        var groups = [gid_t](repeating: 0, count: 64)
        var count = getgroups(Int32(groups.count), &groups)
        if count < 0 {
            let needed = getgroups(0, nil)
            groups = [gid_t](repeating: 0, count: Int(max(needed, 0)))
            count = getgroups(Int32(groups.count), &groups)
        }
        return Caller(uid: geteuid(), gid: getegid(), groups: Array(groups.prefix(Int(max(count, 0)))), pid: getpid(), node: node)
    }
}

/// A request a program thread hands to the runtime thread. Most go on to
/// node 0 (the System V namespace, the barrier); map/unmap run locally.
enum ServiceRequest {
    case shmget(key: Int32, size: UInt64, flags: Int32)
    case shmAttach(id: Int32, readOnly: Bool, execute: Bool)
    case shmDetach(id: Int32)
    case shmctl(id: Int32, command: Int32, uid: UInt32, gid: UInt32, mode: UInt32)
    case semget(key: Int32, count: Int32, flags: Int32)
    case semop(id: Int32, operations: [dsm_sem_operation], timeoutNanoseconds: Int64)
    case semctl(id: Int32, number: Int32, command: Int32, value: Int32, values: [UInt16], uid: UInt32, gid: UInt32, mode: UInt32)
    case barrier
    /// The node's program finished with status 0: apply its SEM_UNDO and
    /// wait until every node has finished (its pages stay served until then).
    case exitArrive
    /// node 0 -> every node: a container exists (its directory must be ready
    /// before anyone can fault on it); answered once ready.
    case addContainer(container: ContainerID, pages: UInt32, address: UInt64)
    /// node 0 -> every node: a container is gone; no answer.
    case destroyContainer(container: ContainerID)
    /// How many semaphores a set has (SETALL reads that many values).
    case semaphoreCount(id: Int32)
    /// node -> node 0: the program thread behind call `callID` of this node
    /// was interrupted by a signal; if its semop still waits, it fails with
    /// EINTR. No answer (the semop's own answer follows either way).
    case interruptSemop(callID: UInt64)
    // Image mode (ImageMode.swift, ThreadService.swift).
    /// node -> node 0: set-up done, with the node's layout; answered when
    /// every node is there (-EXDEV: the layout differs from node 0's).
    case imageStart(fingerprint: UInt64)
    /// creator -> host node: start a thread there; answered with its id.
    case spawnThread(routine: UInt64, argument: UInt64, stackSize: UInt64, detached: Bool, node: NodeID)
    /// -> the thread's node: wait for it to end; answered with its value.
    case joinThread(thread: UInt64, node: NodeID)
    case detachThread(thread: UInt64, node: NodeID)
    /// -> the arena's node: free a heap block (a notice).
    case remoteFree(address: UInt64, node: NodeID)
    case remoteUsableSize(address: UInt64, node: NodeID)
    /// node -> node 0: a thread called exit(status) (a notice).
    case programExit(status: Int32)
    /// node 0 -> node: the program has ended (a notice).
    case programEnd
    /// -> node 0: the program's threads cluster-wide went up or down by
    /// `delta` (a notice: +1 by the creator's node before a spawn, -1 by the
    /// host when the thread ends or by the creator when the spawn failed).
    case threadCount(delta: Int32)
    /// -> node 0: answered once no thread of the program is left (main
    /// called pthread_exit).
    case awaitThreads
    /// A synchronisation operation, served at the object's home (SyncService.swift).
    case sync(SyncRequest)
    /// home -> node: the lock token of `object` is this node's (a notice).
    case lockGranted(object: UInt64, node: NodeID)
    /// home -> node: give the token of `object` back when it is free.
    case lockRecalled(object: UInt64, node: NodeID)
    /// home -> node: give the token of `object` now if it is free, or say busy.
    case lockTryRecalled(object: UInt64, node: NodeID)

    // Local only: run on the runtime thread of the calling node.
    /// Creates the image containers (the data ones filled from the
    /// program's data on node 0) and maps them over the program's address
    /// space.
    case setUpImage(data: [ImageData], heapPages: UInt32)
    /// The host thread started the thread of spawn `token` (error 0) or not.
    case spawned(token: UInt64, thread: UInt64, error: Int32)
    case threadFinished(thread: UInt64, value: UInt64)
    /// The host thread has joined the finished thread: its stack may go.
    case threadReaped(thread: UInt64, stack: UInt64)
    /// Node 0: tell every node the program has ended.
    case endProgram
    case mapAttachment(container: ContainerID, pages: UInt32, canonical: UInt64, address: UInt64, fixed: Bool, readOnly: Bool,
                       execute: Bool, shmid: Int32)
    case unmapAttachment(address: UInt64)
    /// A signal interrupted the program thread waiting for `call`.
    case interrupted(LocalCall)
    /// Release consistency: send this node's writes home; answered once
    /// the homes have them (ReleasePages.swift).
    case releaseWrites
    /// Release consistency: drop the copies homes said are old.
    case acquireWrites

    var isLocal: Bool {
        switch self {
        case .mapAttachment, .unmapAttachment, .interrupted, .setUpImage, .spawned, .threadFinished,
             .threadReaped, .endProgram, .releaseWrites, .acquireWrites:
            return true
        default: return false
        }
    }

    /// Nobody waits for an answer: the calling thread goes on once it is sent.
    var isNotice: Bool {
        switch self {
        case .remoteFree, .programExit, .programEnd, .lockGranted, .lockRecalled, .lockTryRecalled, .threadCount:
            return true
        case .sync(let s): return s.isNotice
        default: return false
        }
    }

    /// The node that serves the request.
    func destination(nodes: Int) -> NodeID {
        switch self {
        case .spawnThread(_, _, _, _, let node), .joinThread(_, let node), .detachThread(_, let node),
             .remoteFree(_, let node), .remoteUsableSize(_, let node), .lockGranted(_, let node), .lockRecalled(_, let node),
             .lockTryRecalled(_, let node):
            return node
        case .sync(let s): return s.home(nodes: nodes)
        default: return 0
        }
    }

    func encode(caller: Caller) -> [UInt8] {
        var w = WireWriter()
        w.put(caller.uid)
        w.put(caller.gid)
        w.put(array: caller.groups)
        w.put(caller.pid)
        switch self {
        case .shmget(let key, let size, let flags):
            w.put(CallOpcode.shmget.rawValue); w.put(key); w.put(size); w.put(flags)
        case .shmAttach(let id, let readOnly, let execute):
            w.put(CallOpcode.shmAttach.rawValue); w.put(id); w.put(readOnly); w.put(execute)
        case .shmDetach(let id):
            w.put(CallOpcode.shmDetach.rawValue); w.put(id)
        case .shmctl(let id, let command, let uid, let gid, let mode):
            w.put(CallOpcode.shmctl.rawValue); w.put(id); w.put(command); w.put(uid); w.put(gid); w.put(mode)
        case .semget(let key, let count, let flags):
            w.put(CallOpcode.semget.rawValue); w.put(key); w.put(count); w.put(flags)
        case .semop(let id, let operations, let timeout):
            w.put(CallOpcode.semop.rawValue); w.put(id); w.put(timeout)
            w.put(UInt32(operations.count))
            for o in operations { w.put(o.num); w.put(o.op); w.put(o.flags) }
        case .semctl(let id, let number, let command, let value, let values, let uid, let gid, let mode):
            w.put(CallOpcode.semctl.rawValue); w.put(id); w.put(number); w.put(command); w.put(value); w.put(array: values)
            w.put(uid); w.put(gid); w.put(mode)
        case .barrier:
            w.put(CallOpcode.barrier.rawValue)
        case .exitArrive:
            w.put(CallOpcode.exitArrive.rawValue)
        case .addContainer(let container, let pages, let address):
            w.put(CallOpcode.addContainer.rawValue); w.put(container); w.put(pages); w.put(address)
        case .destroyContainer(let container):
            w.put(CallOpcode.destroyContainer.rawValue); w.put(container)
        case .interruptSemop(let callID):
            w.put(CallOpcode.interruptSemop.rawValue); w.put(callID)
        case .semaphoreCount(let id):
            w.put(CallOpcode.semaphoreCount.rawValue); w.put(id)
        case .imageStart(let fingerprint):
            w.put(CallOpcode.imageStart.rawValue); w.put(fingerprint)
        case .spawnThread(let routine, let argument, let stackSize, let detached, let node):
            w.put(CallOpcode.spawnThread.rawValue); w.put(routine); w.put(argument); w.put(stackSize); w.put(detached); w.put(Int32(node))
        case .joinThread(let thread, let node):
            w.put(CallOpcode.joinThread.rawValue); w.put(thread); w.put(Int32(node))
        case .detachThread(let thread, let node):
            w.put(CallOpcode.detachThread.rawValue); w.put(thread); w.put(Int32(node))
        case .remoteFree(let address, let node):
            w.put(CallOpcode.remoteFree.rawValue); w.put(address); w.put(Int32(node))
        case .remoteUsableSize(let address, let node):
            w.put(CallOpcode.remoteUsableSize.rawValue); w.put(address); w.put(Int32(node))
        case .programExit(let status):
            w.put(CallOpcode.programExit.rawValue); w.put(status)
        case .programEnd:
            w.put(CallOpcode.programEnd.rawValue)
        case .threadCount(let delta):
            w.put(CallOpcode.threadCount.rawValue); w.put(delta)
        case .awaitThreads:
            w.put(CallOpcode.awaitThreads.rawValue)
        case .sync(let s):
            w.put(CallOpcode.sync.rawValue); s.encode(into: &w)
        case .lockGranted(let object, let node):
            w.put(CallOpcode.lockGranted.rawValue); w.put(object); w.put(Int32(node))
        case .lockRecalled(let object, let node):
            w.put(CallOpcode.lockRecalled.rawValue); w.put(object); w.put(Int32(node))
        case .lockTryRecalled(let object, let node):
            w.put(CallOpcode.lockTryRecalled.rawValue); w.put(object); w.put(Int32(node))
        case .mapAttachment, .unmapAttachment, .interrupted, .setUpImage, .spawned, .threadFinished,
             .threadReaped, .endProgram, .releaseWrites, .acquireWrites:
            preconditionFailure("local requests never travel")
        }
        return w.bytes
    }

    /// Decodes a call from `node`. Total on any bytes: a short payload, a
    /// count the payload cannot hold, an unknown operation or bytes left
    /// over are a `MalformedFrame`, never a trap; nothing is allocated
    /// beyond the payload's own size.
    static func decode(_ bytes: UnsafeRawBufferPointer, node: NodeID) -> Result<(ServiceRequest, Caller), MalformedFrame> {
        var r = WireReader(bytes)
        let caller = Caller(uid: r.get(), gid: r.get(), groups: r.getArray(), pid: r.get(), node: node)
        if r.failed { return .failure(MalformedFrame("a call of \(bytes.count) bytes without the caller's credentials")) }
        let operation: UInt8 = r.get()
        guard let opcode = CallOpcode(rawValue: operation) else {
            return .failure(MalformedFrame(r.failed ? "a call without its operation" : "a call of unknown operation \(operation)"))
        }
        let request: ServiceRequest
        switch opcode {
        case .shmget: request = .shmget(key: r.get(), size: r.get(), flags: r.get())
        case .shmAttach: request = .shmAttach(id: r.get(), readOnly: r.getBool(), execute: r.getBool())
        case .shmDetach: request = .shmDetach(id: r.get())
        case .shmctl: request = .shmctl(id: r.get(), command: r.get(), uid: r.get(), gid: r.get(), mode: r.get())
        case .semget: request = .semget(key: r.get(), count: r.get(), flags: r.get())
        case .semop:
            let id: Int32 = r.get()
            let timeout: Int64 = r.get()
            guard let count = r.getCount(elementSize: 6) else { return .failure(MalformedFrame("a semop with more operations than bytes")) }
            var operations: [dsm_sem_operation] = []
            operations.reserveCapacity(count)
            for _ in 0..<count { operations.append(dsm_sem_operation(num: r.get(), op: r.get(), flags: r.get())) }
            request = .semop(id: id, operations: operations, timeoutNanoseconds: timeout)
        case .semctl:
            request = .semctl(id: r.get(), number: r.get(), command: r.get(), value: r.get(), values: r.getArray(),
                              uid: r.get(), gid: r.get(), mode: r.get())
        case .barrier: request = .barrier
        case .exitArrive: request = .exitArrive
        case .addContainer: request = .addContainer(container: r.get(), pages: r.get(), address: r.get())
        case .destroyContainer: request = .destroyContainer(container: r.get())
        case .interruptSemop: request = .interruptSemop(callID: r.get())
        case .semaphoreCount: request = .semaphoreCount(id: r.get())
        case .imageStart: request = .imageStart(fingerprint: r.get())
        case .spawnThread:
            request = .spawnThread(routine: r.get(), argument: r.get(), stackSize: r.get(), detached: r.getBool(),
                                   node: Int(r.get(Int32.self)))
        case .joinThread: request = .joinThread(thread: r.get(), node: Int(r.get(Int32.self)))
        case .detachThread: request = .detachThread(thread: r.get(), node: Int(r.get(Int32.self)))
        case .remoteFree: request = .remoteFree(address: r.get(), node: Int(r.get(Int32.self)))
        case .remoteUsableSize: request = .remoteUsableSize(address: r.get(), node: Int(r.get(Int32.self)))
        case .programExit: request = .programExit(status: r.get())
        case .programEnd: request = .programEnd
        case .sync:
            guard let s = SyncRequest.decode(&r) else {
                return .failure(MalformedFrame(r.failed ? "a short synchronisation call" : "an unknown synchronisation operation"))
            }
            request = .sync(s)
        case .lockGranted: request = .lockGranted(object: r.get(), node: Int(r.get(Int32.self)))
        case .lockRecalled: request = .lockRecalled(object: r.get(), node: Int(r.get(Int32.self)))
        case .lockTryRecalled: request = .lockTryRecalled(object: r.get(), node: Int(r.get(Int32.self)))
        case .threadCount: request = .threadCount(delta: r.get())
        case .awaitThreads: request = .awaitThreads
        }
        if r.failed { return .failure(MalformedFrame("a short call (operation \(operation), \(bytes.count) bytes)")) }
        if r.remaining != 0 {
            return .failure(MalformedFrame("a call (operation \(operation)) with \(r.remaining) bytes too many"))
        }
        return .success((request, caller))
    }
}

/// A frame whose contents are not what a node of this run sends: the run
/// ends with this message, naming the node.
struct MalformedFrame: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The answer: a result (>= 0, or -errno) and, for some calls, data.
struct ServiceReply {
    var result: Int64
    var data: [UInt8] = []

    static func error(_ e: Errno) -> ServiceReply { ServiceReply(result: -Int64(e.rawValue)) }
}

/// A request in flight from a program thread. The thread sleeps on a futex
/// word until the runtime thread stores the reply.
final class LocalCall {
    let request: ServiceRequest
    let caller: Caller
    var reply = ServiceReply(result: 0)
    let doneWord: UnsafeMutablePointer<UInt32>

    init(_ request: ServiceRequest, caller: Caller) {
        self.request = request
        self.caller = caller
        doneWord = .allocate(capacity: 1)
        doneWord.initialize(to: 0)
    }

    deinit { doneWord.deallocate() }

    /// Set when the caller waits interruptibly: rung on completion.
    var bell: Int32 = -1

    /// Runtime thread: publish the reply and wake the caller.
    func complete(_ reply: ServiceReply) {
        self.reply = reply
        let bell = self.bell
        __atomic_store_word(doneWord, 1)
        cdsm_futex_wake(doneWord)
        if bell >= 0 { cdsm_ring(bell) }
    }

    /// Program thread: wait for the reply.
    func wait() -> ServiceReply {
        cdsm_futex_wait(doneWord, 0)
        return reply
    }

    /// Program thread: wait for the reply; false if a signal handler ran
    /// first (the call is still in flight).
    /// Expects the caller's signals blocked (cdsm_block_signals) since
    /// before the call was handed over; unblocks them.
    func waitInterruptibly() -> Bool {
        cdsm_wait_interruptible(doneWord, 0, bell) == 0
    }
}

@inline(__always)
private func __atomic_store_word(_ p: UnsafeMutablePointer<UInt32>, _ v: UInt32) {
    // A release store through the C side keeps Swift from reordering it.
    cdsm_store_release(p, v)
}

/// The operation byte of a call on the wire: the one table, used by both
/// `encode` and `decode` (whose switch the compiler checks is complete).
enum CallOpcode: UInt8 {
    case shmget = 1, shmAttach, shmDetach, shmctl, semget, semop, semctl, barrier, exitArrive, addContainer
    case destroyContainer, interruptSemop, semaphoreCount, imageStart, spawnThread, joinThread, detachThread
    case remoteFree, remoteUsableSize, programExit, programEnd, sync, lockGranted, lockRecalled, lockTryRecalled
    case threadCount, awaitThreads
}
