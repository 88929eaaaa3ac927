import DSMCore

/// A process of the cluster. Pids are only unique per node, so SEM_UNDO
/// state and attachments are kept per (node, pid).
public struct IPCProcess: Hashable, Sendable, CustomStringConvertible {
    public var node: NodeID
    public var pid: Int32

    public init(node: NodeID, pid: Int32) {
        self.node = node
        self.pid = pid
    }

    public var description: String { "\(pid)@\(node)" }
}

/// Who makes a call: what Linux reads from the calling task's credentials.
public struct IPCCredentials: Hashable, Sendable {
    /// Effective uid. 0 stands for the capabilities root holds
    /// (CAP_IPC_OWNER, CAP_SYS_ADMIN, CAP_IPC_LOCK).
    public var uid: UInt32
    /// Effective (filesystem) gid.
    public var gid: UInt32
    /// Further groups checked by in_group_p().
    public var supplementaryGroups: [UInt32]
    /// The calling process (thread group) id, as sempid/shm_lpid record it.
    public var pid: Int32
    public var node: NodeID

    public init(uid: UInt32, gid: UInt32, supplementaryGroups: [UInt32] = [], pid: Int32, node: NodeID) {
        self.uid = uid
        self.gid = gid
        self.supplementaryGroups = supplementaryGroups
        self.pid = pid
        self.node = node
    }

    public var process: IPCProcess { IPCProcess(node: node, pid: pid) }

    var isPrivileged: Bool { uid == 0 }

    func isMember(of group: UInt32) -> Bool { gid == group || supplementaryGroups.contains(group) }
}

/// `struct ipc64_perm` as IPC_STAT reports it.
public struct IPCPermissions: Equatable, Sendable {
    public var key: Int32
    public var uid: UInt32
    public var gid: UInt32
    public var cuid: UInt32
    public var cgid: UInt32
    /// Low 9 bits: rwx for owner/group/other; shm adds SHM_DEST and SHM_LOCKED.
    public var mode: UInt32
    /// The slot's reuse counter, the high bits of the identifier.
    public var seq: UInt16

    public init(key: Int32, uid: UInt32, gid: UInt32, cuid: UInt32, cgid: UInt32, mode: UInt32, seq: UInt16) {
        self.key = key
        self.uid = uid
        self.gid = gid
        self.cuid = cuid
        self.cgid = cgid
        self.mode = mode
        self.seq = seq
    }

    /// ipcperms(): the rwx bits asked for in the low 9 bits of `flag` (any
    /// of owner/group/other position) must all be granted to the caller's
    /// class; root bypasses.
    func grants(_ flag: Int32, to caller: IPCCredentials) -> Bool {
        let requested = (flag >> 6) | (flag >> 3) | flag
        var granted = Int32(truncatingIfNeeded: mode)
        if caller.uid == cuid || caller.uid == uid {
            granted >>= 6
        } else if caller.isMember(of: cgid) || caller.isMember(of: gid) {
            granted >>= 3
        }
        return requested & ~granted & 0o7 == 0 || caller.isPrivileged
    }

    /// ipcctl_obtain_check(): IPC_SET and IPC_RMID need the owner, the
    /// creator or root.
    func allowsControl(by caller: IPCCredentials) -> Bool {
        caller.uid == cuid || caller.uid == uid || caller.isPrivileged
    }

    /// IPC_SET: new owner and permission bits; the other mode bits stay.
    mutating func apply(_ ownership: IPCOwnership) {
        uid = ownership.uid
        gid = ownership.gid
        mode = mode & ~SysV.permissionBits | ownership.mode & SysV.permissionBits
    }
}

/// The fields IPC_SET takes from the caller's `shm_perm`/`sem_perm`.
public struct IPCOwnership: Equatable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    /// Only the low 9 bits are used.
    public var mode: UInt32

    public init(uid: UInt32, gid: UInt32, mode: UInt32) {
        self.uid = uid
        self.gid = gid
        self.mode = mode
    }

    /// ipc_update_perm(): uid/gid -1 do not map to an id.
    var isValid: Bool { uid != UInt32.max && gid != UInt32.max }
}

// MARK: shared memory

/// What a successful attach tells the runtime to map.
public struct SegmentAttachment: Equatable, Sendable {
    public var id: Int32
    public var container: ContainerID
    /// shm_segsz: the size asked for at creation (the mapping is that,
    /// rounded up to pages).
    public var size: UInt64

    public init(id: Int32, container: ContainerID, size: UInt64) {
        self.id = id
        self.container = container
        self.size = size
    }
}

/// `struct shmid64_ds` as IPC_STAT/SHM_STAT report it.
public struct SharedSegmentStatus: Equatable, Sendable {
    public var permissions: IPCPermissions
    /// shm_segsz
    public var segmentSize: UInt64
    /// shm_atime, shm_dtime, shm_ctime: seconds, 0 = never.
    public var attachTime: Int64
    public var detachTime: Int64
    public var changeTime: Int64
    /// shm_cpid, shm_lpid (0 before the first attach)
    public var creatorPID: Int32
    public var lastPID: Int32
    /// shm_nattch
    public var attachCount: UInt64

    public init(permissions: IPCPermissions, segmentSize: UInt64, attachTime: Int64, detachTime: Int64,
                changeTime: Int64, creatorPID: Int32, lastPID: Int32, attachCount: UInt64) {
        self.permissions = permissions
        self.segmentSize = segmentSize
        self.attachTime = attachTime
        self.detachTime = detachTime
        self.changeTime = changeTime
        self.creatorPID = creatorPID
        self.lastPID = lastPID
        self.attachCount = attachCount
    }
}

/// `struct shminfo64` (IPC_INFO).
public struct SharedMemoryLimitsInfo: Equatable, Sendable {
    public var shmmax: UInt64
    public var shmmin: UInt64
    public var shmmni: UInt64
    public var shmseg: UInt64
    public var shmall: UInt64
}

/// `struct shm_info` (SHM_INFO). Residency is the DSM's business, not the
/// namespace's: rss and swap are reported as 0.
public struct SharedMemoryUsage: Equatable, Sendable {
    public var usedIDs: Int32
    /// shm_tot: pages of all segments.
    public var totalPages: UInt64
    public var residentPages: UInt64
    public var swappedPages: UInt64
}

/// shmctl commands. The `index` forms take a slot index where the id goes
/// and return the full id, as SHM_STAT does.
public enum ShmCommand: Equatable, Sendable {
    case stat             // IPC_STAT
    case statIndex        // SHM_STAT
    case statIndexAny     // SHM_STAT_ANY: no read permission needed
    case set(IPCOwnership) // IPC_SET
    case remove           // IPC_RMID
    case lock             // SHM_LOCK
    case unlock           // SHM_UNLOCK
    case limits           // IPC_INFO
    case usage            // SHM_INFO

    /// Decodes a C command number; nil (EINVAL) for an unknown one.
    /// `ownership` is only read for IPC_SET.
    public init?(linuxCommand command: Int32, ownership: IPCOwnership) {
        switch command {
        case SysV.IPC_STAT: self = .stat
        case SysV.SHM_STAT: self = .statIndex
        case SysV.SHM_STAT_ANY: self = .statIndexAny
        case SysV.IPC_SET: self = .set(ownership)
        case SysV.IPC_RMID: self = .remove
        case SysV.SHM_LOCK: self = .lock
        case SysV.SHM_UNLOCK: self = .unlock
        case SysV.IPC_INFO: self = .limits
        case SysV.SHM_INFO: self = .usage
        default: return nil
        }
    }
}

public enum ShmControlResult: Equatable, Sendable {
    /// IPC_SET, SHM_LOCK, SHM_UNLOCK.
    case done
    /// IPC_RMID. `destroyed` is the container when nothing was attached and
    /// the segment is gone now; nil when it was only marked SHM_DEST.
    case removed(destroyed: ContainerID?)
    /// IPC_STAT (returns 0) and SHM_STAT[_ANY] (returns the id).
    case status(SharedSegmentStatus, returnValue: Int32)
    /// IPC_INFO: returns the highest slot index in use (0 when none).
    case limits(SharedMemoryLimitsInfo, returnValue: Int32)
    /// SHM_INFO: returns the highest slot index in use (0 when none).
    case usage(SharedMemoryUsage, returnValue: Int32)

    /// What shmctl() returns.
    public var returnValue: Int32 {
        switch self {
        case .done, .removed: return 0
        case .status(_, let r), .limits(_, let r), .usage(_, let r): return r
        }
    }
}

// MARK: semaphores

/// `struct sembuf`.
public struct SemOperation: Equatable, Sendable {
    /// sem_num
    public var number: UInt16
    /// sem_op: > 0 adds, < 0 waits to subtract, 0 waits for zero.
    public var operation: Int16
    /// sem_flg: IPC_NOWAIT, SEM_UNDO.
    public var flags: Int16

    public init(number: UInt16, operation: Int16, flags: Int16 = 0) {
        self.number = number
        self.operation = operation
        self.flags = flags
    }
}

/// semtimedop's timeout as the caller gave it; the model only checks that
/// it is well formed (the caller keeps the clock and calls cancelWait).
public struct SemTimeout: Equatable, Sendable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    var isValid: Bool { seconds >= 0 && nanoseconds >= 0 && nanoseconds < 1_000_000_000 }
}

/// Names one blocked semop; chosen by the caller, unique among the waiting.
public struct WaiterID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { "waiter \(rawValue)" }
}

public enum SemopOutcome: Equatable, Sendable {
    /// Done now: semop returns 0.
    case completed
    /// Failed now: semop returns -1 with this errno.
    case failed(Errno)
    /// Queued under the caller's WaiterID: answer it when a later call
    /// reports it (`SysVEffects.wake`), or after cancelWait (EAGAIN on
    /// timeout, EINTR on a signal).
    case blocked
}

/// A queued semop that finished because of another call.
public struct SemaphoreWakeup: Equatable, Sendable {
    public var waiter: WaiterID
    /// nil: the operations were performed (semop returns 0). Otherwise the
    /// errno: EIDRM when the set was removed, EAGAIN/ERANGE when a retry hit
    /// an IPC_NOWAIT or out-of-range operation.
    public var error: Errno?

    public init(waiter: WaiterID, error: Errno?) {
        self.waiter = waiter
        self.error = error
    }
}

/// `struct semid64_ds` as IPC_STAT/SEM_STAT report it.
public struct SemaphoreSetStatus: Equatable, Sendable {
    public var permissions: IPCPermissions
    /// sem_otime: last semop, 0 = never.
    public var operationTime: Int64
    /// sem_ctime: creation or last IPC_SET/SETVAL/SETALL.
    public var changeTime: Int64
    /// sem_nsems
    public var count: UInt64

    public init(permissions: IPCPermissions, operationTime: Int64, changeTime: Int64, count: UInt64) {
        self.permissions = permissions
        self.operationTime = operationTime
        self.changeTime = changeTime
        self.count = count
    }
}

/// `struct seminfo` (IPC_INFO and SEM_INFO; SEM_INFO puts the sets in use in
/// semusz and the semaphores in use in semaem).
public struct SemaphoreLimitsInfo: Equatable, Sendable {
    public var semmap: Int32
    public var semmni: Int32
    public var semmns: Int32
    public var semmnu: Int32
    public var semmsl: Int32
    public var semopm: Int32
    public var semume: Int32
    public var semusz: Int32
    public var semvmx: Int32
    public var semaem: Int32
}

public enum SemCommand: Equatable, Sendable {
    case getValue             // GETVAL
    case setValue(Int32)      // SETVAL
    case getAll               // GETALL
    case setAll([UInt16])     // SETALL: one value per semaphore
    case getPID               // GETPID
    case getNCount            // GETNCNT
    case getZCount            // GETZCNT
    case stat                 // IPC_STAT
    case statIndex            // SEM_STAT
    case statIndexAny         // SEM_STAT_ANY
    case set(IPCOwnership)    // IPC_SET
    case remove               // IPC_RMID
    case limits               // IPC_INFO
    case usage                // SEM_INFO

    /// Decodes a C command number; nil (EINVAL) for an unknown one. Only
    /// the argument the command reads is used.
    public init?(linuxCommand command: Int32, value: Int32, values: [UInt16], ownership: IPCOwnership) {
        switch command {
        case SysV.GETVAL: self = .getValue
        case SysV.SETVAL: self = .setValue(value)
        case SysV.GETALL: self = .getAll
        case SysV.SETALL: self = .setAll(values)
        case SysV.GETPID: self = .getPID
        case SysV.GETNCNT: self = .getNCount
        case SysV.GETZCNT: self = .getZCount
        case SysV.IPC_STAT: self = .stat
        case SysV.SEM_STAT: self = .statIndex
        case SysV.SEM_STAT_ANY: self = .statIndexAny
        case SysV.IPC_SET: self = .set(ownership)
        case SysV.IPC_RMID: self = .remove
        case SysV.IPC_INFO: self = .limits
        case SysV.SEM_INFO: self = .usage
        default: return nil
        }
    }
}

public enum SemControlResult: Equatable, Sendable {
    /// SETVAL, SETALL, IPC_SET, IPC_RMID.
    case done
    /// GETVAL, GETPID, GETNCNT, GETZCNT: returned as semctl's value.
    case value(Int32)
    /// GETALL (returns 0).
    case values([UInt16])
    /// IPC_STAT (returns 0), SEM_STAT[_ANY] (returns the id).
    case status(SemaphoreSetStatus, returnValue: Int32)
    /// IPC_INFO, SEM_INFO: return the highest slot index in use (0 when none).
    case limits(SemaphoreLimitsInfo, returnValue: Int32)

    /// What semctl() returns.
    public var returnValue: Int32 {
        switch self {
        case .done, .values: return 0
        case .value(let v): return v
        case .status(_, let r), .limits(_, let r): return r
        }
    }
}
