import DSMCore

/// shmid_kernel: one segment. Its pages live in `container`.
struct SharedSegment: IPCObject, Sendable {
    var permissions: IPCPermissions
    let container: ContainerID
    let size: UInt64
    var attachTime: Int64 = 0
    var detachTime: Int64 = 0
    var changeTime: Int64
    let creatorPID: Int32
    var lastPID: Int32 = 0
    var attachCount = 0

    var isMarkedForDestruction: Bool { permissions.mode & SysV.SHM_DEST != 0 }
}

extension SysVNamespace {
    /// shmget(). `flags`: IPC_CREAT, IPC_EXCL and the mode's low 9 bits
    /// (SHM_HUGETLB/SHM_NORESERVE are accepted and ignored).
    public mutating func shmget(key: Int32, size: UInt64, flags: Int32, caller: IPCCredentials,
                                now: Int64) -> Result<Int32, Errno> {
        if key == SysV.IPC_PRIVATE {
            return createSegment(key: key, size: size, flags: flags, caller: caller, now: now)
        }
        guard let slot = segments.slot(forKey: key) else {
            guard flags & SysV.IPC_CREAT != 0 else { return .failure(.noSuchFileOrDirectory) }
            return createSegment(key: key, size: size, flags: flags, caller: caller, now: now)
        }
        // ipcget_public(): EEXIST, then the size check, then permissions.
        if flags & SysV.IPC_CREAT != 0 && flags & SysV.IPC_EXCL != 0 { return .failure(.fileExists) }
        let segment = segments[slot]
        if segment.size < size { return .failure(.invalidArgument) }
        guard segment.permissions.grants(flags, to: caller) else { return .failure(.permissionDenied) }
        return .success(segments.identifier(ofSlot: slot))
    }

    /// newseg()
    private mutating func createSegment(key: Int32, size: UInt64, flags: Int32, caller: IPCCredentials,
                                        now: Int64) -> Result<Int32, Errno> {
        if size < limits.shmmin || size > limits.shmmax { return .failure(.invalidArgument) }
        let (roundedUp, overflow) = size.addingReportingOverflow(limits.pageSize - 1)
        if overflow { return .failure(.noSpace) }
        let pages = roundedUp / limits.pageSize
        let (total, totalOverflow) = segmentPages.addingReportingOverflow(pages)
        if totalOverflow || total > limits.shmall { return .failure(.noSpace) }

        let container = nextContainer
        let permissions = IPCPermissions(key: key, uid: caller.uid, gid: caller.gid, cuid: caller.uid,
                                         cgid: caller.gid, mode: UInt32(truncatingIfNeeded: flags) & SysV.permissionBits,
                                         seq: 0)
        let added = segments.add(key: key, limit: limits.shmmni) { _ in
            SharedSegment(permissions: permissions, container: container, size: size, changeTime: now,
                          creatorPID: caller.pid)
        }
        if case .success = added {
            nextContainer += 1
            segmentPages = total
        }
        return added
    }

    /// shmat() after the address checks (the runtime's): permission to read,
    /// and to write unless `readOnly`, and to execute if `execute`. A segment
    /// already removed (SHM_DEST) can still be attached by id, as on Linux.
    public mutating func shmAttach(id: Int32, readOnly: Bool, execute: Bool = false, caller: IPCCredentials,
                                   now: Int64) -> Result<SegmentAttachment, Errno> {
        guard let slot = segments.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
        var access: Int32 = readOnly ? 0o444 : 0o666
        if execute { access |= 0o111 }
        guard segments[slot].permissions.grants(access, to: caller) else { return .failure(.permissionDenied) }
        segments[slot].attachCount += 1
        segments[slot].attachTime = now
        segments[slot].lastPID = caller.pid
        attachments[caller.process, default: [:]][id, default: 0] += 1
        let segment = segments[slot]
        return .success(SegmentAttachment(id: id, container: segment.container, size: segment.size))
    }

    /// shmdt() of one attachment the caller's process holds of segment `id`
    /// (the runtime maps the address to the id). Returns the container when
    /// this was the last attachment of a removed segment, which is now gone.
    /// EINVAL when the process holds no attachment of `id`.
    public mutating func shmDetach(id: Int32, caller: IPCCredentials, now: Int64) -> Result<ContainerID?, Errno> {
        let process = caller.process
        guard let held = attachments[process]?[id], held > 0 else { return .failure(.invalidArgument) }
        if held == 1 {
            attachments[process]![id] = nil
            if attachments[process]!.isEmpty { attachments[process] = nil }
        } else {
            attachments[process]![id] = held - 1
        }
        return .success(detachOne(id: id, pid: caller.pid, now: now))
    }

    /// shm_close()
    mutating func detachOne(id: Int32, pid: Int32, now: Int64) -> ContainerID? {
        guard let slot = segments.slot(forIdentifier: id) else { return nil }
        segments[slot].lastPID = pid
        segments[slot].detachTime = now
        segments[slot].attachCount -= 1
        if segments[slot].attachCount == 0 && segments[slot].isMarkedForDestruction {
            return destroySegment(slot: slot)
        }
        return nil
    }

    /// shm_destroy()
    private mutating func destroySegment(slot: Int) -> ContainerID {
        let segment = segments.remove(slot: slot)
        segmentPages -= (segment.size + limits.pageSize - 1) / limits.pageSize
        return segment.container
    }

    public mutating func shmctl(id: Int32, command: ShmCommand, caller: IPCCredentials,
                                now: Int64) -> Result<ShmControlResult, Errno> {
        guard id >= 0 else { return .failure(.invalidArgument) }
        switch command {
        case .limits:
            let info = SharedMemoryLimitsInfo(shmmax: limits.shmmax, shmmin: limits.shmmin,
                                              shmmni: UInt64(limits.shmmni), shmseg: UInt64(limits.shmmni),
                                              shmall: limits.shmall)
            return .success(.limits(info, returnValue: Int32(max(segments.highestIndex, 0))))
        case .usage:
            let usage = SharedMemoryUsage(usedIDs: Int32(segments.inUse), totalPages: segmentPages,
                                          residentPages: 0, swappedPages: 0)
            return .success(.usage(usage, returnValue: Int32(max(segments.highestIndex, 0))))
        case .stat, .statIndex, .statIndexAny:
            let found = command == .stat ? segments.slot(forIdentifier: id) : segments.slot(forIndex: id)
            guard let slot = found else { return .failure(.invalidArgument) }
            let segment = segments[slot]
            if command != .statIndexAny && !segment.permissions.grants(0o444, to: caller) {
                return .failure(.permissionDenied)
            }
            let status = SharedSegmentStatus(
                permissions: segment.permissions, segmentSize: segment.size, attachTime: segment.attachTime,
                detachTime: segment.detachTime, changeTime: segment.changeTime, creatorPID: segment.creatorPID,
                lastPID: segment.lastPID, attachCount: UInt64(segment.attachCount))
            return .success(.status(status, returnValue: command == .stat ? 0 : segments.identifier(ofSlot: slot)))
        case .set(let ownership):
            guard let slot = segments.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            guard segments[slot].permissions.allowsControl(by: caller) else { return .failure(.notPermitted) }
            guard ownership.isValid else { return .failure(.invalidArgument) }
            segments[slot].permissions.apply(ownership)
            segments[slot].changeTime = now
            return .success(.done)
        case .remove:
            guard let slot = segments.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            guard segments[slot].permissions.allowsControl(by: caller) else { return .failure(.notPermitted) }
            // do_shm_rmid(): attached segments live on, unreachable by key.
            if segments[slot].attachCount > 0 {
                segments[slot].permissions.mode |= SysV.SHM_DEST
                segments.makePrivate(slot: slot)
                return .success(.removed(destroyed: nil))
            }
            return .success(.removed(destroyed: destroySegment(slot: slot)))
        case .lock, .unlock:
            guard let slot = segments.slot(forIdentifier: id) else { return .failure(.invalidArgument) }
            let permissions = segments[slot].permissions
            // shmctl_do_lock(): owner or creator without CAP_IPC_LOCK (a zero
            // RLIMIT_MEMLOCK, which would also refuse SHM_LOCK, is not modelled).
            if !caller.isPrivileged && caller.uid != permissions.uid && caller.uid != permissions.cuid {
                return .failure(.notPermitted)
            }
            if command == .lock {
                segments[slot].permissions.mode |= SysV.SHM_LOCKED
            } else {
                segments[slot].permissions.mode &= ~SysV.SHM_LOCKED
            }
            return .success(.done)
        }
    }
}
