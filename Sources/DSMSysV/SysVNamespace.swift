import DSMCore

/// The cluster's System V IPC namespace (shared memory and semaphores) as a
/// pure value: node 0 holds one and answers every node's interposed
/// shmget/shmat/shmdt/shmctl/semget/semop/semtimedop/semctl with it.
///
/// It follows Linux (ipc/util.c, ipc/shm.c, ipc/sem.c) down to identifier
/// values, errno precedence and the order blocked semops are retried in.
/// It performs no I/O and reads no clock: callers pass credentials and the
/// time (seconds since the epoch) with every call.
///
/// Answering blocked callers: a semop that must wait returns `.blocked` and
/// stays queued under its WaiterID. Any later call may finish queued semops:
/// each call that can takes the caller's `SysVEffects` sink, and reports
/// them into it (`wake`) in the order Linux wakes them, as DSMCoherence and
/// DSMSync report their effects. The call's own answer is its return value.
public struct SysVNamespace: Sendable {
    public let limits: SysVLimits

    var segments = IdentifierTable<SharedSegment>()
    var semaphoreSets = IdentifierTable<SemaphoreSet>()
    /// shm_tot: pages of all segments.
    var segmentPages: UInt64 = 0
    /// used_sems: semaphores of all sets.
    var semaphoresInUse = 0
    var nextContainer: ContainerID

    /// Live attachments per process and segment id (nattch's share of each).
    var attachments: [IPCProcess: [Int32: Int]] = [:]
    /// Each process's SEM_UNDO sets, most recently used first (the order
    /// Linux keeps its undo list in, and so applies it at exit).
    var undoSets: [IPCProcess: [Int32]] = [:]
    var waiters: [WaiterID: WaiterRecord] = [:]
    /// The semops the current call finished, until it hands them to its sink.
    var completions: [SemaphoreWakeup] = []

    /// - Parameter firstContainer: the first container id handed to a new
    ///   segment; later ones count up from it and are never reused.
    public init(limits: SysVLimits = .linux, firstContainer: ContainerID = 1) {
        self.limits = limits
        self.nextContainer = firstContainer
    }

    /// Hands the semops the current call finished to its sink, in order.
    mutating func report<E: SysVEffects>(_ effects: inout E) {
        guard !completions.isEmpty else { return }
        for wakeup in completions { effects.wake(wakeup) }
        completions.removeAll(keepingCapacity: true)
    }

    /// Whether a semop is still queued under `waiter`.
    public func isWaiting(_ waiter: WaiterID) -> Bool { waiters[waiter] != nil }

    /// Ids of the segments that exist (removed-but-attached ones included).
    public var sharedMemoryIdentifiers: [Int32] {
        segments.indices.sorted().map { segments.identifier(ofSlot: $0) }
    }

    /// Ids of the semaphore sets that exist.
    public var semaphoreSetIdentifiers: [Int32] {
        semaphoreSets.indices.sorted().map { semaphoreSets.identifier(ofSlot: $0) }
    }

    // MARK: process life cycle

    /// fork(): the child inherits every attachment (nattch counts each
    /// again; Linux's shm_open runs in the parent, so shm_lpid is the
    /// parent's pid). SEM_UNDO state is not inherited.
    public mutating func processForked(parent: IPCProcess, child: IPCProcess, now: Int64) {
        guard let inherited = attachments[parent], !inherited.isEmpty else { return }
        for (id, count) in inherited {
            guard let slot = segments.slot(forIdentifier: id) else { continue }
            segments[slot].attachCount += count
            segments[slot].attachTime = now
            segments[slot].lastPID = parent.pid
        }
        attachments[child, default: [:]].merge(inherited, uniquingKeysWith: +)
    }

    /// execve() and exit(): every attachment of the process goes, as if
    /// shmdt'd one by one. Returns the containers this destroyed.
    public mutating func detachAll(_ process: IPCProcess, now: Int64) -> [ContainerID] {
        guard let held = attachments.removeValue(forKey: process) else { return [] }
        var destroyed: [ContainerID] = []
        for (id, count) in held.sorted(by: { $0.key < $1.key }) {
            for _ in 0..<count {
                if let container = detachOne(id: id, pid: process.pid, now: now) { destroyed.append(container) }
            }
        }
        return destroyed
    }

    /// The process is gone: its queued semops are dropped unanswered, its
    /// attachments detached, and its SEM_UNDO adjustments applied (clamped
    /// to 0...SEMVMX, as Linux's exit_sem does), which may finish other
    /// semops (reported into `effects`). Returns the containers destroyed.
    public mutating func processExited<E: SysVEffects>(_ process: IPCProcess, now: Int64,
                                                      _ effects: inout E) -> [ContainerID] {
        for (waiter, record) in waiters where record.process == process {
            _ = cancelWait(waiter)
        }
        let destroyed = detachAll(process, now: now)
        applyUndo(of: process, now: now)
        report(&effects)
        return destroyed
    }

    /// A node left the cluster: all its processes count as exited.
    public mutating func nodeLeft<E: SysVEffects>(_ node: NodeID, now: Int64, _ effects: inout E) -> [ContainerID] {
        var processes = Set<IPCProcess>()
        processes.formUnion(attachments.keys.filter { $0.node == node })
        processes.formUnion(undoSets.keys.filter { $0.node == node })
        processes.formUnion(waiters.values.map(\.process).filter { $0.node == node })
        var destroyed: [ContainerID] = []
        for process in processes.sorted(by: { $0.pid < $1.pid }) {
            destroyed += processExited(process, now: now, &effects)
        }
        return destroyed
    }
}

/// Where the namespace reports what a call did to other callers: a queued
/// semop finished, or failed (EIDRM when its set was removed), because of
/// it. Its caller waits for this answer.
public protocol SysVEffects {
    mutating func wake(_ wakeup: SemaphoreWakeup)
}
