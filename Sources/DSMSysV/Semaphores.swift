import DSMCore

/// A blocked semop (Linux's sem_queue).
struct PendingSemop: Sendable {
    let waiter: WaiterID
    let process: IPCProcess
    let operations: [SemOperation]
    /// Some operation is not a wait-for-zero.
    let alters: Bool
    /// The operation it last blocked on: what GETNCNT/GETZCNT count.
    var blockingIndex: Int

    /// More than one operation: queued on the set, not on one semaphore.
    var isComplex: Bool { operations.count > 1 }
}

/// Where a waiter is queued, to find it again.
struct WaiterRecord: Sendable {
    let setID: Int32
    /// The semaphore of its first operation: the only per-semaphore queue
    /// it can be on.
    let firstNumber: Int
    let process: IPCProcess
}

struct Semaphore: Sendable {
    var value: Int32 = 0
    /// sempid: last process to change it (semop, SETVAL/SETALL, exit undo).
    var lastPID: Int32 = 0
    /// This semaphore's candidate for sem_otime (the set reports the latest).
    var operationTime: Int64 = 0
    /// Blocked single-operation semops on this semaphore, FIFO.
    var pendingAlter: [PendingSemop] = []
    var pendingConst: [PendingSemop] = []
}

/// One of the queues a set keeps: the set-wide ones hold multi-operation
/// semops (and, while any such waits, every altering one, for FIFO order).
enum PendingQueue {
    case setAlter
    case setConst
    case alter(Int)
    case const(Int)
}

enum SemopAttempt {
    case completed
    case wouldBlock
    case failed(Errno)
}

/// sem_array: one set, with its queues kept exactly as Linux keeps them so
/// that retries happen in Linux's order (see updateQueue).
struct SemaphoreSet: IPCObject, Sendable {
    var permissions: IPCPermissions
    var changeTime: Int64
    var semaphores: [Semaphore]
    var pendingAlter: [PendingSemop] = []
    var pendingConst: [PendingSemop] = []
    /// Queued multi-operation semops.
    var complexCount = 0
    /// SEM_UNDO adjustments (semadj) per process that used SEM_UNDO here.
    var undo: [IPCProcess: [Int16]] = [:]

    init(permissions: IPCPermissions, count: Int, now: Int64) {
        self.permissions = permissions
        self.changeTime = now
        self.semaphores = Array(repeating: Semaphore(), count: count)
    }

    var operationTime: Int64 { semaphores.lazy.map(\.operationTime).max() ?? 0 }

    // MARK: performing

    /// perform_atomic_semop(): all operations in order or none. A blocking
    /// operation with IPC_NOWAIT fails with EAGAIN instead; a result above
    /// SEMVMX, or an undo adjustment out of a short's range, is ERANGE.
    mutating func attempt(_ operations: [SemOperation], by process: IPCProcess,
                          blockingIndex: inout Int) -> SemopAttempt {
        var outcome = SemopAttempt.completed
        var applied = 0
        for (index, operation) in operations.enumerated() {
            let number = Int(operation.number)
            let current = semaphores[number].value
            let result = current + Int32(operation.operation)
            if (operation.operation == 0 && current != 0) || result < 0 {
                blockingIndex = index
                outcome = operation.flags & SysV.IPC_NOWAIT != 0
                    ? .failed(.resourceTemporarilyUnavailable) : .wouldBlock
                break
            }
            if result > SysV.SEMVMX {
                outcome = .failed(.outOfRange)
                break
            }
            if operation.flags & SysV.SEM_UNDO != 0 {
                let adjustment = Int32(undoAdjustment(process, number)) - Int32(operation.operation)
                if adjustment < -SysV.SEMAEM - 1 || adjustment > SysV.SEMAEM {
                    outcome = .failed(.outOfRange)
                    break
                }
                undo[process]![number] = Int16(adjustment)
            }
            semaphores[number].value = result
            applied = index + 1
        }
        if case .completed = outcome {
            for operation in operations { semaphores[Int(operation.number)].lastPID = process.pid }
            return outcome
        }
        for operation in operations[..<applied].reversed() {
            let number = Int(operation.number)
            semaphores[number].value -= Int32(operation.operation)
            if operation.flags & SysV.SEM_UNDO != 0 {
                undo[process]![number] = Int16(Int32(undo[process]![number]) + Int32(operation.operation))
            }
        }
        return outcome
    }

    private mutating func undoAdjustment(_ process: IPCProcess, _ number: Int) -> Int16 {
        if undo[process] == nil { undo[process] = Array(repeating: 0, count: semaphores.count) }
        return undo[process]![number]
    }

    /// set_semotime()
    mutating func recordOperationTime(_ operations: [SemOperation]?, now: Int64) {
        semaphores[Int(operations?.first?.number ?? 0)].operationTime = now
    }

    // MARK: queues

    func count(_ queue: PendingQueue) -> Int {
        switch queue {
        case .setAlter: return pendingAlter.count
        case .setConst: return pendingConst.count
        case .alter(let n): return semaphores[n].pendingAlter.count
        case .const(let n): return semaphores[n].pendingConst.count
        }
    }

    func pending(_ queue: PendingQueue, _ index: Int) -> PendingSemop {
        switch queue {
        case .setAlter: return pendingAlter[index]
        case .setConst: return pendingConst[index]
        case .alter(let n): return semaphores[n].pendingAlter[index]
        case .const(let n): return semaphores[n].pendingConst[index]
        }
    }

    mutating func setBlockingIndex(_ queue: PendingQueue, _ index: Int, _ blocking: Int) {
        switch queue {
        case .setAlter: pendingAlter[index].blockingIndex = blocking
        case .setConst: pendingConst[index].blockingIndex = blocking
        case .alter(let n): semaphores[n].pendingAlter[index].blockingIndex = blocking
        case .const(let n): semaphores[n].pendingConst[index].blockingIndex = blocking
        }
    }

    /// unlink_queue()
    @discardableResult
    mutating func unlink(_ queue: PendingQueue, _ index: Int) -> PendingSemop {
        let removed: PendingSemop
        switch queue {
        case .setAlter: removed = pendingAlter.remove(at: index)
        case .setConst: removed = pendingConst.remove(at: index)
        case .alter(let n): removed = semaphores[n].pendingAlter.remove(at: index)
        case .const(let n): removed = semaphores[n].pendingConst.remove(at: index)
        }
        if removed.isComplex { complexCount -= 1 }
        return removed
    }

    /// Queue a semop that must wait, where do_semtimedop() puts it.
    mutating func enqueue(_ semop: PendingSemop) {
        if !semop.isComplex {
            let number = Int(semop.operations[0].number)
            if !semop.alters {
                semaphores[number].pendingConst.append(semop)
            } else if complexCount > 0 {
                pendingAlter.append(semop)
            } else {
                semaphores[number].pendingAlter.append(semop)
            }
            return
        }
        if complexCount == 0 { mergeQueues() }
        if semop.alters { pendingAlter.append(semop) } else { pendingConst.append(semop) }
        complexCount += 1
    }

    /// merge_queues(): before a multi-operation semop waits, every waiting
    /// single-operation alter moves to the set queue. Each semaphore's list
    /// is spliced in at the front, so the last semaphore's come first.
    private mutating func mergeQueues() {
        for number in semaphores.indices where !semaphores[number].pendingAlter.isEmpty {
            pendingAlter.insert(contentsOf: semaphores[number].pendingAlter, at: 0)
            semaphores[number].pendingAlter.removeAll()
        }
    }

    /// unmerge_queues(): Linux runs it when it releases the set lock, so the
    /// model runs it at the end of every call that touched the set.
    mutating func unmergeQueues() {
        guard complexCount == 0, !pendingAlter.isEmpty else { return }
        for semop in pendingAlter {
            semaphores[Int(semop.operations[0].number)].pendingAlter.append(semop)
        }
        pendingAlter.removeAll()
    }

    /// Removes `waiter` if queued (timeout, signal, exit).
    mutating func cancel(_ waiter: WaiterID, firstNumber: Int) -> Bool {
        for queue in [PendingQueue.setAlter, .setConst, .alter(firstNumber), .const(firstNumber)] {
            for index in 0..<count(queue) where pending(queue, index).waiter == waiter {
                unlink(queue, index)
                unmergeQueues()
                return true
            }
        }
        return false
    }

    // MARK: retrying waiters

    /// wake_const_ops(): retry the wait-for-zero semops of one semaphore's
    /// queue (or the set's). Returns whether one completed.
    mutating func wakeConstOperations(_ number: Int?, _ wakeups: inout [SemaphoreWakeup]) -> Bool {
        let queue: PendingQueue = number.map { .const($0) } ?? .setConst
        var completed = false
        var index = 0
        while index < count(queue) {
            var semop = pending(queue, index)
            let result = attempt(semop.operations, by: semop.process, blockingIndex: &semop.blockingIndex)
            if case .wouldBlock = result {
                setBlockingIndex(queue, index, semop.blockingIndex)
                index += 1
                continue
            }
            unlink(queue, index)
            switch result {
            case .completed:
                completed = true
                wakeups.append(SemaphoreWakeup(waiter: semop.waiter, error: nil))
            case .failed(let error):
                wakeups.append(SemaphoreWakeup(waiter: semop.waiter, error: error))
            case .wouldBlock:
                break
            }
        }
        return completed
    }

    /// do_smart_wakeup_zero(): after `operations` (nil: any semaphore may
    /// have changed), retry wait-for-zero semops of semaphores now at zero.
    mutating func wakeZeroWaiters(after operations: [SemOperation]?, _ wakeups: inout [SemaphoreWakeup]) -> Bool {
        var completed = false
        var gotZero = false
        func wakeIfZero(_ number: Int) {
            guard semaphores[number].value == 0 else { return }
            gotZero = true
            if wakeConstOperations(number, &wakeups) { completed = true }
        }
        if let operations {
            for operation in operations { wakeIfZero(Int(operation.number)) }
        } else {
            for number in semaphores.indices { wakeIfZero(number) }
        }
        if gotZero && wakeConstOperations(nil, &wakeups) { completed = true }
        return completed
    }

    /// update_queue(): retry the altering semops of one semaphore's queue
    /// (or the set's) in FIFO order; after a completion that may enable
    /// older waiters (a multi-operation one, or while set-wide waiters
    /// exist), start over from the head. Returns whether one completed.
    mutating func updateQueue(_ number: Int?, _ wakeups: inout [SemaphoreWakeup]) -> Bool {
        let queue: PendingQueue = number.map { .alter($0) } ?? .setAlter
        var completed = false
        var index = 0
        while index < count(queue) {
            // Single decrements cannot succeed on a zero semaphore.
            if let number, semaphores[number].value == 0 { break }
            var semop = pending(queue, index)
            let result = attempt(semop.operations, by: semop.process, blockingIndex: &semop.blockingIndex)
            if case .wouldBlock = result {
                setBlockingIndex(queue, index, semop.blockingIndex)
                index += 1
                continue
            }
            unlink(queue, index)
            switch result {
            case .completed:
                completed = true
                _ = wakeZeroWaiters(after: semop.operations, &wakeups)
                let restart = !pendingAlter.isEmpty || semop.isComplex
                wakeups.append(SemaphoreWakeup(waiter: semop.waiter, error: nil))
                if restart { index = 0 }
            case .failed(let error):
                wakeups.append(SemaphoreWakeup(waiter: semop.waiter, error: error))
            case .wouldBlock:
                break
            }
        }
        return completed
    }

    /// do_smart_update(): after a change (by `operations`, or by nil:
    /// SETVAL/SETALL/exit undo), retry whatever may now proceed, and stamp
    /// sem_otime if anything was performed (or `forceOperationTime`).
    mutating func retryWaiters(after operations: [SemOperation]?, forceOperationTime: Bool, now: Int64,
                               _ wakeups: inout [SemaphoreWakeup]) {
        var stamp = forceOperationTime
        if wakeZeroWaiters(after: operations, &wakeups) { stamp = true }
        if !pendingAlter.isEmpty {
            if updateQueue(nil, &wakeups) { stamp = true }
        } else if let operations {
            // Only increments can let single decrements proceed.
            for operation in operations where operation.operation > 0 {
                if updateQueue(Int(operation.number), &wakeups) { stamp = true }
            }
        } else {
            for number in semaphores.indices where updateQueue(number, &wakeups) { stamp = true }
        }
        if stamp { recordOperationTime(operations, now: now) }
    }

    /// count_semcnt(): waiters blocked on semaphore `number`, each counted
    /// on the operation it blocked on only.
    func waitingCount(on number: Int, forZero: Bool) -> Int {
        func blocksHere(_ semop: PendingSemop) -> Bool {
            let operation = semop.operations[semop.blockingIndex]
            guard Int(operation.number) == number else { return false }
            return forZero ? operation.operation == 0 : operation.operation < 0
        }
        var count = forZero ? semaphores[number].pendingConst.count : semaphores[number].pendingAlter.count
        count += pendingAlter.filter(blocksHere).count
        if forZero { count += pendingConst.filter(blocksHere).count }
        return count
    }

    /// freeary()'s wake order: every waiter fails with EIDRM.
    mutating func failAllWaiters(_ wakeups: inout [SemaphoreWakeup]) {
        var failed = pendingConst + pendingAlter
        for number in semaphores.indices {
            failed += semaphores[number].pendingConst
            failed += semaphores[number].pendingAlter
            semaphores[number].pendingConst.removeAll()
            semaphores[number].pendingAlter.removeAll()
        }
        pendingConst.removeAll()
        pendingAlter.removeAll()
        complexCount = 0
        wakeups += failed.map { SemaphoreWakeup(waiter: $0.waiter, error: .identifierRemoved) }
    }
}

extension SysVNamespace {
    /// semget(). `flags`: IPC_CREAT, IPC_EXCL and the mode's low 9 bits.
    public mutating func semget(key: Int32, count: Int32, flags: Int32, caller: IPCCredentials,
                                now: Int64) -> Result<Int32, Errno> {
        if count < 0 || Int(count) > limits.semmsl { return .failure(.invalidArgument) }
        if key == SysV.IPC_PRIVATE {
            return createSemaphoreSet(key: key, count: Int(count), flags: flags, caller: caller, now: now)
        }
        guard let slot = semaphoreSets.slot(forKey: key) else {
            guard flags & SysV.IPC_CREAT != 0 else { return .failure(.noSuchFileOrDirectory) }
            return createSemaphoreSet(key: key, count: Int(count), flags: flags, caller: caller, now: now)
        }
        if flags & SysV.IPC_CREAT != 0 && flags & SysV.IPC_EXCL != 0 { return .failure(.fileExists) }
        if Int(count) > semaphoreSets[slot].semaphores.count { return .failure(.invalidArgument) }
        guard semaphoreSets[slot].permissions.grants(flags, to: caller) else { return .failure(.permissionDenied) }
        return .success(semaphoreSets.identifier(ofSlot: slot))
    }

    /// newary()
    private mutating func createSemaphoreSet(key: Int32, count: Int, flags: Int32, caller: IPCCredentials,
                                             now: Int64) -> Result<Int32, Errno> {
        if count == 0 { return .failure(.invalidArgument) }
        if semaphoresInUse + count > limits.semmns { return .failure(.noSpace) }
        let permissions = IPCPermissions(key: key, uid: caller.uid, gid: caller.gid, cuid: caller.uid,
                                         cgid: caller.gid, mode: UInt32(truncatingIfNeeded: flags) & SysV.permissionBits,
                                         seq: 0)
        let added = semaphoreSets.add(key: key, limit: limits.semmni) { _ in
            SemaphoreSet(permissions: permissions, count: count, now: now)
        }
        if case .success = added { semaphoresInUse += count }
        return added
    }

    /// How many values SETALL copies from the caller: the set's size, after
    /// the checks semctl_main() makes before copy_from_user (EINVAL for an
    /// unknown id, EACCES without alter permission).
    public func semaphoreCountForSetAll(id: Int32, caller: IPCCredentials) -> Result<Int, Errno> {
        guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
        guard semaphoreSets[slot].permissions.grants(0o222, to: caller) else { return .failure(.permissionDenied) }
        return .success(semaphoreSets[slot].semaphores.count)
    }

    /// The checks semtimedop() makes before it reads the operations: EINVAL
    /// for no operations or a negative id, E2BIG past SEMOPM. The runtime
    /// may call this before copying a caller's array; semop repeats them.
    public func semopPrecheck(id: Int32, operationCount: Int) -> Errno? {
        if operationCount < 1 || id < 0 { return .invalidArgument }
        if operationCount > limits.semopm { return .argListTooLong }
        return nil
    }

    /// semop()/semtimedop(). On `.blocked` the semop waits under `waiter`
    /// (which must not be waiting already): the caller arms its timeout, if
    /// any, and calls cancelWait when it expires or a signal interrupts.
    public mutating func semop<E: SysVEffects>(id: Int32, operations: [SemOperation], timeout: SemTimeout? = nil,
                                              waiter: WaiterID, caller: IPCCredentials, now: Int64,
                                              _ effects: inout E) -> SemopOutcome {
        defer { report(&effects) }
        if let error = semopPrecheck(id: id, operationCount: operations.count) { return .failed(error) }
        if let timeout, !timeout.isValid { return .failed(.invalidArgument) }
        var highestNumber = 0
        var usesUndo = false
        var alters = false
        for operation in operations {
            highestNumber = max(highestNumber, Int(operation.number))
            if operation.flags & SysV.SEM_UNDO != 0 { usesUndo = true }
            if operation.operation != 0 { alters = true }
        }
        let process = caller.process
        if usesUndo {
            // find_alloc_undo(): made before the other checks, so it stays
            // even if they fail; most recently used goes first.
            if let position = undoSets[process]?.firstIndex(of: id) {
                undoSets[process]!.remove(at: position)
                undoSets[process]!.insert(id, at: 0)
            } else {
                guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failed(.invalidArgument) }
                semaphoreSets[slot].undo[process] = Array(repeating: 0, count: semaphoreSets[slot].semaphores.count)
                undoSets[process, default: []].insert(id, at: 0)
            }
        }
        guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failed(.invalidArgument) }
        if highestNumber >= semaphoreSets[slot].semaphores.count { return .failed(.fileTooLarge) }
        guard semaphoreSets[slot].permissions.grants(alters ? 0o222 : 0o444, to: caller) else {
            return .failed(.permissionDenied)
        }

        var blockingIndex = 0
        switch semaphoreSets[slot].attempt(operations, by: process, blockingIndex: &blockingIndex) {
        case .completed:
            let firstNew = completions.count
            if alters {
                semaphoreSets[slot].retryWaiters(after: operations, forceOperationTime: true, now: now, &completions)
            } else {
                semaphoreSets[slot].recordOperationTime(operations, now: now)
            }
            settle(slot: slot, completionsFrom: firstNew)
            return .completed
        case .failed(let error):
            return .failed(error)
        case .wouldBlock:
            precondition(waiters[waiter] == nil, "\(waiter) is already waiting")
            semaphoreSets[slot].enqueue(PendingSemop(waiter: waiter, process: process, operations: operations,
                                                     alters: alters, blockingIndex: blockingIndex))
            waiters[waiter] = WaiterRecord(setID: id, firstNumber: Int(operations[0].number), process: process)
            return .blocked
        }
    }

    /// A waiting semop gives up (timeout: the caller answers EAGAIN; signal:
    /// EINTR). False when it is not queued any more: it already completed
    /// or failed and was reported to a sink, which wins.
    public mutating func cancelWait(_ waiter: WaiterID) -> Bool {
        guard let record = waiters.removeValue(forKey: waiter) else { return false }
        guard let slot = semaphoreSets.slot(forIdentifier: record.setID) else { return false }
        return semaphoreSets[slot].cancel(waiter, firstNumber: record.firstNumber)
    }

    public mutating func semctl<E: SysVEffects>(id: Int32, number: Int32, command: SemCommand, caller: IPCCredentials,
                                               now: Int64, _ effects: inout E) -> Result<SemControlResult, Errno> {
        defer { report(&effects) }
        guard id >= 0 else { return .failure(.invalidArgument) }
        switch command {
        case .limits, .usage:
            let usage = command == .usage
            let info = SemaphoreLimitsInfo(
                semmap: Int32(clamping: limits.semmns), semmni: Int32(clamping: limits.semmni),
                semmns: Int32(clamping: limits.semmns), semmnu: Int32(clamping: limits.semmns),
                semmsl: Int32(clamping: limits.semmsl), semopm: Int32(clamping: limits.semopm),
                semume: Int32(clamping: limits.semopm),
                semusz: usage ? Int32(semaphoreSets.inUse) : 20,
                semvmx: SysV.SEMVMX,
                semaem: usage ? Int32(clamping: semaphoresInUse) : SysV.SEMAEM)
            return .success(.limits(info, returnValue: Int32(max(semaphoreSets.highestIndex, 0))))

        case .stat, .statIndex, .statIndexAny:
            let found = command == .stat ? semaphoreSets.slot(forIdentifier: id) : semaphoreSets.slot(forIndex: id)
            guard let slot = found else { return .failure(.invalidArgument) }
            let set = semaphoreSets[slot]
            if command != .statIndexAny && !set.permissions.grants(0o444, to: caller) {
                return .failure(.permissionDenied)
            }
            let status = SemaphoreSetStatus(permissions: set.permissions, operationTime: set.operationTime,
                                            changeTime: set.changeTime, count: UInt64(set.semaphores.count))
            return .success(.status(status, returnValue: command == .stat ? 0 : semaphoreSets.identifier(ofSlot: slot)))

        case .setValue(let value):
            // semctl_setval(): the range check comes before the lookup, and
            // the semaphore number before the permission check.
            if value < 0 || value > SysV.SEMVMX { return .failure(.outOfRange) }
            guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            let n = Int(number)
            guard n >= 0 && n < semaphoreSets[slot].semaphores.count else { return .failure(.invalidArgument) }
            guard semaphoreSets[slot].permissions.grants(0o222, to: caller) else { return .failure(.permissionDenied) }
            let firstNew = completions.count
            for process in semaphoreSets[slot].undo.keys { semaphoreSets[slot].undo[process]![n] = 0 }
            semaphoreSets[slot].semaphores[n].value = value
            semaphoreSets[slot].semaphores[n].lastPID = caller.pid
            semaphoreSets[slot].changeTime = now
            semaphoreSets[slot].retryWaiters(after: nil, forceOperationTime: false, now: now, &completions)
            settle(slot: slot, completionsFrom: firstNew)
            return .success(.done)

        case .getAll, .setAll, .getValue, .getPID, .getNCount, .getZCount:
            guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            let isSetAll: Bool
            if case .setAll = command { isSetAll = true } else { isSetAll = false }
            guard semaphoreSets[slot].permissions.grants(isSetAll ? 0o222 : 0o444, to: caller) else {
                return .failure(.permissionDenied)
            }
            let count = semaphoreSets[slot].semaphores.count
            switch command {
            case .getAll:
                return .success(.values(semaphoreSets[slot].semaphores.map { UInt16(truncatingIfNeeded: $0.value) }))
            case .setAll(let values):
                // The kernel reads sem_nsems values from the caller.
                guard values.count == count else { return .failure(.badAddress) }
                if values.contains(where: { Int32($0) > SysV.SEMVMX }) { return .failure(.outOfRange) }
                let firstNew = completions.count
                for (n, value) in values.enumerated() {
                    semaphoreSets[slot].semaphores[n].value = Int32(value)
                    semaphoreSets[slot].semaphores[n].lastPID = caller.pid
                }
                for process in semaphoreSets[slot].undo.keys {
                    semaphoreSets[slot].undo[process] = Array(repeating: 0, count: count)
                }
                semaphoreSets[slot].changeTime = now
                semaphoreSets[slot].retryWaiters(after: nil, forceOperationTime: false, now: now, &completions)
                settle(slot: slot, completionsFrom: firstNew)
                return .success(.done)
            default:
                break
            }
            let n = Int(number)
            guard n >= 0 && n < count else { return .failure(.invalidArgument) }
            let set = semaphoreSets[slot]
            switch command {
            case .getValue: return .success(.value(set.semaphores[n].value))
            case .getPID: return .success(.value(set.semaphores[n].lastPID))
            case .getNCount: return .success(.value(Int32(set.waitingCount(on: n, forZero: false))))
            default: return .success(.value(Int32(set.waitingCount(on: n, forZero: true))))
            }

        case .set(let ownership):
            guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            guard semaphoreSets[slot].permissions.allowsControl(by: caller) else { return .failure(.notPermitted) }
            guard ownership.isValid else { return .failure(.invalidArgument) }
            semaphoreSets[slot].permissions.apply(ownership)
            semaphoreSets[slot].changeTime = now
            return .success(.done)

        case .remove:
            guard let slot = semaphoreSets.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            guard semaphoreSets[slot].permissions.allowsControl(by: caller) else { return .failure(.notPermitted) }
            removeSemaphoreSet(slot: slot)
            return .success(.done)
        }
    }

    /// freeary()
    private mutating func removeSemaphoreSet(slot: Int) {
        let id = semaphoreSets.identifier(ofSlot: slot)
        let firstNew = completions.count
        for process in semaphoreSets[slot].undo.keys {
            undoSets[process]?.removeAll { $0 == id }
            if undoSets[process]?.isEmpty == true { undoSets[process] = nil }
        }
        semaphoreSets[slot].failAllWaiters(&completions)
        for wakeup in completions[firstNew...] { waiters[wakeup.waiter] = nil }
        let set = semaphoreSets.remove(slot: slot)
        semaphoresInUse -= set.semaphores.count
    }

    /// exit_sem(): apply the process's adjustments, most recently used set
    /// first, each clamped to 0...SEMVMX, then retry that set's waiters.
    mutating func applyUndo(of process: IPCProcess, now: Int64) {
        guard let ids = undoSets.removeValue(forKey: process) else { return }
        for id in ids {
            guard let slot = semaphoreSets.slot(forIdentifier: id),
                  let adjustments = semaphoreSets[slot].undo.removeValue(forKey: process) else { continue }
            let firstNew = completions.count
            for (n, adjustment) in adjustments.enumerated() where adjustment != 0 {
                let value = semaphoreSets[slot].semaphores[n].value + Int32(adjustment)
                semaphoreSets[slot].semaphores[n].value = min(max(value, 0), SysV.SEMVMX)
                semaphoreSets[slot].semaphores[n].lastPID = process.pid
            }
            semaphoreSets[slot].retryWaiters(after: nil, forceOperationTime: true, now: now, &completions)
            settle(slot: slot, completionsFrom: firstNew)
        }
    }

    /// End of a call that changed a set: Linux's unlock-time unmerge, and
    /// the finished waiters leave the waiting list.
    private mutating func settle(slot: Int, completionsFrom firstNew: Int) {
        semaphoreSets[slot].unmergeQueues()
        for wakeup in completions[firstNew...] { waiters[wakeup.waiter] = nil }
    }
}
