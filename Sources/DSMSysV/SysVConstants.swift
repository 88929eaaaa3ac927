/// Linux's values of the System V constants the model reads or reports, so
/// neither the runtime nor the tests need a C header to talk to it.
/// Names are the C names on purpose: they are what a reader looks up.
public enum SysV {
    // <sys/ipc.h>
    public static let IPC_PRIVATE: Int32 = 0
    public static let IPC_CREAT: Int32 = 0o1000
    public static let IPC_EXCL: Int32 = 0o2000
    public static let IPC_NOWAIT: Int16 = 0o4000

    public static let IPC_RMID: Int32 = 0
    public static let IPC_SET: Int32 = 1
    public static let IPC_STAT: Int32 = 2
    public static let IPC_INFO: Int32 = 3

    // <sys/shm.h>
    public static let SHM_RDONLY: Int32 = 0o10000
    public static let SHM_RND: Int32 = 0o20000
    public static let SHM_REMAP: Int32 = 0o40000
    public static let SHM_EXEC: Int32 = 0o100000
    /// In `shm_perm.mode`: removed, destroyed at the last detach.
    public static let SHM_DEST: UInt32 = 0o1000
    /// In `shm_perm.mode`: SHM_LOCK was applied.
    public static let SHM_LOCKED: UInt32 = 0o2000

    public static let SHM_LOCK: Int32 = 11
    public static let SHM_UNLOCK: Int32 = 12
    public static let SHM_STAT: Int32 = 13
    public static let SHM_INFO: Int32 = 14
    public static let SHM_STAT_ANY: Int32 = 15

    // <sys/sem.h>
    public static let SEM_UNDO: Int16 = 0x1000

    public static let GETPID: Int32 = 11
    public static let GETVAL: Int32 = 12
    public static let GETALL: Int32 = 13
    public static let GETNCNT: Int32 = 14
    public static let GETZCNT: Int32 = 15
    public static let SETVAL: Int32 = 16
    public static let SETALL: Int32 = 17
    public static let SEM_STAT: Int32 = 18
    public static let SEM_INFO: Int32 = 19
    public static let SEM_STAT_ANY: Int32 = 20

    /// Largest semaphore value (fixed in Linux, not a sysctl).
    public static let SEMVMX: Int32 = 32767
    /// Largest SEM_UNDO adjustment magnitude.
    public static let SEMAEM: Int32 = SEMVMX

    /// The permission bits of a mode (S_IRWXUGO).
    static let permissionBits: UInt32 = 0o777
}

/// The namespace's tunables, Linux's defaults in `.linux` (what a fresh IPC
/// namespace starts with: see /proc/sys/kernel/shm* and kernel/sem).
public struct SysVLimits: Equatable, Sendable {
    /// Smallest segment, bytes (SHMMIN; a constant in Linux).
    public var shmmin: UInt64
    /// Largest segment, bytes (kernel.shmmax).
    public var shmmax: UInt64
    /// Pages all segments together may use (kernel.shmall).
    public var shmall: UInt64
    /// Most segments at once (kernel.shmmni).
    public var shmmni: Int
    /// Most semaphores in a set (SEMMSL).
    public var semmsl: Int
    /// Most semaphores in all sets (SEMMNS).
    public var semmns: Int
    /// Most operations in one semop (SEMOPM).
    public var semopm: Int
    /// Most semaphore sets at once (SEMMNI).
    public var semmni: Int
    /// The page size segment sizes are counted in for shmall.
    public var pageSize: UInt64

    public init(shmmin: UInt64, shmmax: UInt64, shmall: UInt64, shmmni: Int, semmsl: Int, semmns: Int,
                semopm: Int, semmni: Int, pageSize: UInt64) {
        self.shmmin = shmmin
        self.shmmax = shmmax
        self.shmall = shmall
        self.shmmni = shmmni
        self.semmsl = semmsl
        self.semmns = semmns
        self.semopm = semopm
        self.semmni = semmni
        self.pageSize = pageSize
    }

    public static let linux = SysVLimits(
        shmmin: 1,
        shmmax: UInt64.max - (1 << 24),
        shmall: UInt64.max - (1 << 24),
        shmmni: 4096,
        semmsl: 32000,
        semmns: 32000 * 32000,
        semopm: 500,
        semmni: 32000,
        pageSize: 4096
    )
}
