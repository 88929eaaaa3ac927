import CDSMPreload
import DSMCore
import DSMSysV
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Node 0's System V service: every node's shm*/sem* call arrives here and
/// is answered from the pure model (DSMSysV) with Linux's semantics.
extension ClusterService {
    func handleSysV(_ request: ServiceRequest, caller: Caller, reply: ReplyDestination, router: CallRouter) {
        let credentials = IPCCredentials(uid: caller.uid, gid: caller.gid, supplementaryGroups: caller.groups,
                                         pid: caller.pid, node: caller.node)
        let now = Int64(time(nil))
        switch request {
        case .shmget(let key, let size, let flags):
            router.answer(reply, ServiceReply(namespace.shmget(key: key, size: size, flags: flags, caller: credentials, now: now)))

        case .shmAttach(let id, let readOnly, let execute):
            switch namespace.shmAttach(id: id, readOnly: readOnly, execute: execute, caller: credentials, now: now) {
            case .failure(let e):
                router.answer(reply, .error(e))
            case .success(let attachment):
                let pages = UInt32((attachment.size + UInt64(dsmPageSize) - 1) / UInt64(dsmPageSize))
                let address = placement(of: attachment.container, pages: pages)
                var w = WireWriter()
                w.put(attachment.container); w.put(pages); w.put(address)
                let answer = ServiceReply(result: 0, data: w.bytes)
                if announced[attachment.container] == nil {
                    announced[attachment.container] = address
                    broadcastContainer(attachment.container, pages: pages, address: address, then: reply, with: answer, router: router)
                } else {
                    answerWhenAnnounced(attachment.container, reply, answer, router: router)
                }
            }

        case .shmDetach(let id):
            switch namespace.shmDetach(id: id, caller: credentials, now: now) {
            case .failure(let e): router.answer(reply, .error(e))
            case .success(let destroyed):
                if let destroyed { destroy(destroyed, router: router) }
                router.answer(reply, ServiceReply(result: 0))
            }

        case .shmctl(let id, let command, let uid, let gid, let mode):
            guard let decoded = ShmCommand(linuxCommand: command, ownership: IPCOwnership(uid: uid, gid: gid, mode: mode)) else {
                router.answer(reply, .error(.invalidArgument))
                return
            }
            switch namespace.shmctl(id: id, command: decoded, caller: credentials, now: now) {
            case .failure(let e): router.answer(reply, .error(e))
            case .success(let result):
                var answer = ServiceReply(result: Int64(result.returnValue))
                switch result {
                case .removed(let destroyed?): destroy(destroyed, router: router)
                case .status(let s, _):
                    var w = WireWriter()
                    ShmStatusWire.write(dsm_shm_status(s), into: &w)
                    answer.data = w.bytes
                case .limits(let l, _):
                    answer.data = InfoWire.encode([l.shmmax, l.shmmin, l.shmmni, l.shmseg, l.shmall].map { Int64(clamping: $0) })
                case .usage(let u, _):
                    answer.data = InfoWire.encode([Int64(u.usedIDs), Int64(clamping: u.totalPages),
                                                   Int64(clamping: u.residentPages), Int64(clamping: u.swappedPages)])
                default: break
                }
                router.answer(reply, answer)
            }

        case .semget(let key, let count, let flags):
            router.answer(reply, ServiceReply(namespace.semget(key: key, count: count, flags: flags, caller: credentials, now: now)))

        case .semop(let id, let operations, let timeout):
            let waiter = WaiterID(nextWaiter)
            nextWaiter += 1
            let ops = operations.map { SemOperation(number: $0.num, operation: $0.op, flags: $0.flags) }
            let semTimeout = timeout >= 0 ? SemTimeout(seconds: timeout / 1_000_000_000, nanoseconds: timeout % 1_000_000_000) : nil
            var effects = SysVServiceEffects(service: self, router: router)
            switch namespace.semop(id: id, operations: ops, timeout: semTimeout, waiter: waiter, caller: credentials,
                                   now: now, &effects) {
            case .completed: router.answer(reply, ServiceReply(result: 0))
            case .failed(let e): router.answer(reply, .error(e))
            case .blocked:
                semWaiters[waiter.rawValue] = reply
                if timeout >= 0 {
                    deadlines.append((deadline: monotonicNanoseconds() + UInt64(timeout), waiter: waiter.rawValue))
                }
            }

        case .semctl(let id, let number, let command, let value, let values, let uid, let gid, let mode):
            guard let decoded = SemCommand(linuxCommand: command, value: value, values: values,
                                           ownership: IPCOwnership(uid: uid, gid: gid, mode: mode)) else {
                router.answer(reply, .error(.invalidArgument))
                return
            }
            var effects = SysVServiceEffects(service: self, router: router)
            switch namespace.semctl(id: id, number: number, command: decoded, caller: credentials, now: now, &effects) {
            case .failure(let e): router.answer(reply, .error(e))
            case .success(let result):
                var answer = ServiceReply(result: Int64(result.returnValue))
                var w = WireWriter()
                switch result {
                case .values(let all): w.put(array: all)
                case .status(let s, _): SemStatusWire.write(dsm_sem_status(s), into: &w)
                case .limits(let l, _):
                    w.bytes = InfoWire.encode([l.semmap, l.semmni, l.semmns, l.semmnu, l.semmsl, l.semopm, l.semume,
                                               l.semusz, l.semvmx, l.semaem].map { Int64($0) })
                default: break
                }
                answer.data = w.bytes
                router.answer(reply, answer)
            }

        case .semaphoreCount(let id):
            router.answer(reply, ServiceReply(namespace.semaphoreCountForSetAll(id: id, caller: credentials).map { Int32($0) }))

        case .interruptSemop(let callID):
            interrupt(.remote(node: caller.node, callID: callID), router: router)

        default:
            preconditionFailure("not a System V request")
        }
    }

    /// Where a container sits on every node: a fresh range per container,
    /// 2 MiB aligned, with a guard gap.
    private func placement(of container: ContainerID, pages: UInt32) -> UInt64 {
        if let address = announced[container] { return address }
        let address = nextAddress
        let bytes = UInt64(pages) * UInt64(dsmPageSize)
        let step: UInt64 = 2 << 20
        nextAddress += (bytes + step) / step * step + step
        return address
    }

    private func destroy(_ container: ContainerID, router: CallRouter) {
        guard announced.removeValue(forKey: container) != nil else { return }
        destroyEverywhere(container, router: router)
    }

    /// A semop another call finished: answer its caller.
    func finished(_ wakeup: SemaphoreWakeup, router: CallRouter) {
        guard let reply = semWaiters.removeValue(forKey: wakeup.waiter.rawValue) else { return }
        deadlines.removeAll { $0.waiter == wakeup.waiter.rawValue }
        router.answer(reply, wakeup.error.map { ServiceReply.error($0) } ?? ServiceReply(result: 0))
    }

    /// The caller of a waiting semop was interrupted by a signal: EINTR,
    /// unless the semop completed already (then its answer stands).
    func interrupt(_ destination: ReplyDestination, router: CallRouter) {
        guard let key = semWaiters.first(where: { $0.value.sameCall(as: destination) })?.key else { return }
        if namespace.cancelWait(WaiterID(key)), let reply = semWaiters.removeValue(forKey: key) {
            deadlines.removeAll { $0.waiter == key }
            router.answer(reply, .error(.interrupted))
        }
    }

    /// Semops whose timeout passed give up with EAGAIN.
    func expireDeadlines(router: CallRouter) {
        guard !deadlines.isEmpty else { return }
        let now = monotonicNanoseconds()
        let expired = deadlines.filter { $0.deadline <= now }
        guard !expired.isEmpty else { return }
        deadlines.removeAll { $0.deadline <= now }
        for entry in expired {
            let waiter = WaiterID(entry.waiter)
            if namespace.cancelWait(waiter), let reply = semWaiters.removeValue(forKey: entry.waiter) {
                router.answer(reply, .error(.resourceTemporarilyUnavailable))
            }
        }
    }

    /// A node's program finished: its SEM_UNDO adjustments apply now, its
    /// attachments go (which may destroy removed segments).
    func processExited(_ caller: Caller, router: CallRouter) {
        var effects = SysVServiceEffects(service: self, router: router)
        let destroyed = namespace.processExited(IPCProcess(node: caller.node, pid: caller.pid), now: Int64(time(nil)),
                                                &effects)
        for c in destroyed { destroy(c, router: router) }
    }
}

/// Carries out what a System V call did to other callers: each semop it
/// finished is answered as it is reported.
struct SysVServiceEffects: SysVEffects {
    unowned let service: ClusterService
    unowned let router: CallRouter

    func wake(_ wakeup: SemaphoreWakeup) {
        service.finished(wakeup, router: router)
    }
}

extension ServiceReply {
    init(_ result: Result<Int32, Errno>) {
        switch result {
        case .success(let v): self.init(result: Int64(v))
        case .failure(let e): self.init(result: -Int64(e.rawValue))
        }
    }
}

extension dsm_ipc_perm {
    init(_ p: IPCPermissions) {
        self.init(key: p.key, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid, mode: p.mode, seq: UInt32(p.seq))
    }
}

extension dsm_shm_status {
    init(_ s: SharedSegmentStatus) {
        self.init(perm: dsm_ipc_perm(s.permissions), segsz: s.segmentSize, atime: s.attachTime, dtime: s.detachTime,
                  ctime: s.changeTime, cpid: s.creatorPID, lpid: s.lastPID, nattch: s.attachCount)
    }
}

extension dsm_sem_status {
    init(_ s: SemaphoreSetStatus) {
        self.init(perm: dsm_ipc_perm(s.permissions), otime: s.operationTime, ctime: s.changeTime, nsems: s.count)
    }
}

extension ReplyDestination {
    func sameCall(as other: ReplyDestination) -> Bool {
        switch (self, other) {
        case (.local(let a), .local(let b)): return a === b
        case (.remote(let n1, let c1), .remote(let n2, let c2)): return n1 == n2 && c1 == c2
        default: return false
        }
    }
}
