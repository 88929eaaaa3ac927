#if canImport(Glibc)
import DSMCore
import Glibc
import XCTest
@testable import DSMSysV

/// The same scripted calls on the real kernel (we run as root on Linux) and
/// on the model; every return value, errno and reported field must agree.
/// Whatever a script creates is removed at the end, failed or not.
final class KernelComparisonTests: XCTestCase {
    override func setUp() {
        super.setUp()
        reportedWakeups.removeAll()
    }

    let creat = SysV.IPC_CREAT
    let excl = SysV.IPC_EXCL
    let undo = SysV.SEM_UNDO
    let noWait = SysV.IPC_NOWAIT

    func testSharedMemoryScript() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            let key = IPCSandbox.randomKey()
            let size: UInt64 = 2 * 4096 + 100

            twin.shmget(key, 0, creat | 0o600)
            twin.shmget(key, 0, creat | excl | 0o600)
            twin.shmget(key + 1, 4096, 0o600)
            twin.shmget(key + 1, SysVLimits.linux.shmmax + 1, creat | 0o600)
            guard let id = twin.shmget(key, size, creat | excl | 0o600) else { return XCTFail("create") }
            twin.shmget(key, size, creat | excl | 0o600)
            twin.shmget(key, 4096, creat | excl | 0o600)
            twin.shmget(key, size + 1, 0o600)
            twin.shmget(key, 16 * 4096, creat | 0o600)
            twin.shmget(key, 4096, 0o600)
            twin.shmget(key, 0, 0)
            twin.shmget(key, size, creat | 0o600)
            twin.shmget(SysV.IPC_PRIVATE, 1, 0)
            twin.shmget(SysV.IPC_PRIVATE, 1, excl)

            twin.shmat(-1)
            twin.shmat(0x7fff_fff0)
            twin.shmctl(-1, .stat)
            twin.shmctl(id, .stat)

            let first = twin.shmat(id)
            let second = twin.shmat(id, readOnly: true)
            twin.shmctl(id, .stat)
            if let second { twin.shmdt(second) }
            twin.shmctl(id, .stat)

            twin.shmctl(id, .set(IPCOwnership(uid: 0, gid: 0, mode: 0o7640)))
            twin.shmctl(id, .stat)
            twin.shmctl(id, .set(IPCOwnership(uid: UInt32.max, gid: 0, mode: 0o600)))
            twin.shmctl(id, .lock)
            twin.shmctl(id, .stat)
            twin.shmctl(id, .unlock)
            twin.shmctl(id, .stat)

            // Removed while attached: marked, key released, still attachable by id.
            twin.shmctl(id, .remove)
            twin.shmctl(id, .stat)
            twin.shmget(key, size, 0o600)
            guard let reused = twin.shmget(key, size, creat | excl | 0o600) else { return XCTFail("re-create") }
            XCTAssertNotEqual(reused, id)
            let third = twin.shmat(id)
            twin.shmctl(id, .remove)
            twin.shmctl(id, .stat)
            if let third { twin.shmdt(third) }
            if let first { twin.shmdt(first) }
            // The last detach destroyed it: the id is stale now.
            twin.shmctl(id, .stat)
            twin.shmat(id)
            twin.shmctl(reused, .remove)
            twin.shmctl(reused, .stat)

            twin.shmctl(0, .limits)
            twin.shmctl(0, .usage)
            if isolated {
                twin.shmctl(1, .statIndex)
                twin.shmctl(5, .statIndex)
            }
        }
    }

    func testIdentifierAllocation() throws {
        try IPCSandbox.run { isolated in
            guard isolated else { throw XCTSkip("exact identifiers need a private IPC namespace") }
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            // Cycle through the first 64 slots and into the next sequence.
            for _ in 0..<70 {
                if let id = twin.shmget(SysV.IPC_PRIVATE, 1, 0o600) { twin.shmctl(id, .remove) }
                if let id = twin.semget(SysV.IPC_PRIVATE, 1, 0o600) { twin.semctl(id, 0, .remove) }
            }
            // Holes are filled after the last slot handed out, not at once.
            let ids = (0..<4).compactMap { _ in twin.semget(SysV.IPC_PRIVATE, 2, 0o600) }
            twin.semctl(ids[1], 0, .remove)
            twin.semget(SysV.IPC_PRIVATE, 1, 0o600)
            twin.semctl(ids[1], 0, .getValue)
            twin.semctl(0, 0, .usage)
            twin.semctl(0, 0, .limits)
            twin.semctl(ids[2] & 0x7fff, 0, .statIndex)
            twin.semctl(ids[1] & 0x7fff, 0, .statIndexAny)
        }
    }

    func testUnprivilegedCallers() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            let key = IPCSandbox.randomKey()
            let group: UInt32 = 4242
            var segments: [Int32] = []
            var sets: [Int32] = []
            for (offset, mode) in [Int32(0o600), 0o640, 0o604, 0o460].enumerated() {
                let k = key + Int32(offset)
                if let id = twin.shmget(k, 4096, creat | excl | mode) {
                    segments.append(id)
                    twin.shmctl(id, .set(IPCOwnership(uid: 0, gid: group, mode: UInt32(mode))))
                }
                if let id = twin.semget(k, 2, creat | excl | mode) {
                    sets.append(id)
                    twin.semctl(id, 0, .set(IPCOwnership(uid: 0, gid: group, mode: UInt32(mode))))
                }
            }
            // A stranger, then a member of the objects' group.
            for (uid, gid) in [(UInt32(65534), UInt32(65534)), (65533, group)] {
                var attached: [UnsafeMutableRawPointer] = []
                IPCSandbox.asUser(uid: uid, gid: gid) {
                    for (offset, id) in segments.enumerated() {
                        let k = key + Int32(offset)
                        for flags: Int32 in [0, 0o400, 0o600, 0o040, 0o004, 0o444, 0o066] { twin.shmget(k, 0, flags) }
                        twin.shmget(k, 8192, 0o400)
                        if let a = twin.shmat(id, readOnly: true) { attached.append(a) }
                        if let a = twin.shmat(id) { attached.append(a) }
                        twin.shmctl(id, .stat)
                        twin.shmctl(id, .set(IPCOwnership(uid: uid, gid: gid, mode: 0o777)))
                        twin.shmctl(id, .lock)
                        twin.shmctl(id, .remove)
                    }
                    for (offset, id) in sets.enumerated() {
                        let k = key + Int32(offset)
                        for flags: Int32 in [0, 0o400, 0o600, 0o040, 0o004] { twin.semget(k, 1, flags) }
                        twin.semget(k, 3, 0o400)
                        twin.semop(id, [sop(0, 0)])
                        twin.semop(id, [sop(0, 1)])
                        twin.semop(id, [sop(3, 1)])
                        twin.semctl(id, 0, .getValue)
                        twin.semctl(id, 5, .getValue)
                        twin.semctl(id, 0, .getAll)
                        twin.semctl(id, 0, .setValue(1))
                        twin.semctl(id, 7, .setValue(1))
                        twin.semctl(id, 0, .setAll([2, 2]))
                        twin.semctl(id, 0, .stat)
                        twin.semctl(id, 0, .set(IPCOwnership(uid: uid, gid: gid, mode: 0o777)))
                        twin.semctl(id, 0, .remove)
                    }
                }
                for a in attached { twin.shmdt(a) }
            }
        }
    }

    func testSemaphoreScript() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            let key = IPCSandbox.randomKey()
            twin.semget(key, -1, creat | 0o600)
            twin.semget(key, 32001, creat | 0o600)
            twin.semget(key, 0, creat | 0o600)
            twin.semget(key, 1, 0o600)
            guard let id = twin.semget(key, 3, creat | excl | 0o640) else { return XCTFail("create") }
            twin.semget(key, 3, creat | excl | 0o600)
            twin.semget(key, 4, 0o600)
            twin.semget(key, 40000, creat | excl)
            twin.semget(key, 0, 0)
            twin.semget(key, 2, creat | 0o600)
            twin.semctl(id, 0, .stat)

            twin.semctl(id, 0, .setValue(32768))
            twin.semctl(id, 0, .setValue(-1))
            twin.semctl(id, 3, .setValue(1))
            twin.semctl(id, -1, .getValue)
            twin.semctl(id, 1, .setValue(5))
            twin.semctl(id, 0, .setAll([1, 32768, 0]))
            twin.semctl(id, 0, .setAll([1, 2, 3]))
            twin.semctl(id, 0, .getAll)
            twin.semctl(id, 2, .getPID)

            twin.semop(id, [])
            twin.semop(-1, [sop(0, 1)])
            twin.semop(id, Array(repeating: sop(0, 0, noWait), count: 501))
            twin.semop(id, Array(repeating: sop(1, 1), count: 500))
            twin.semop(id, [sop(0, 1), sop(3, 1)])
            twin.semop(id, [sop(2, 1), sop(1, 32767)])
            twin.semop(id, [sop(0, -1), sop(2, -9, noWait)])
            twin.semop(id, [sop(2, 0, noWait)])
            twin.semop(id, [sop(0, -1, undo), sop(0, 1), sop(2, -3)])
            twin.semctl(id, 0, .getAll)
            twin.semctl(id, 0, .getPID)
            twin.semctl(id, 0, .getNCount)
            twin.semctl(id, 0, .getZCount)
            twin.semctl(id, 2, .getZCount)
            twin.semctl(id, 0, .stat)
            // semadj must stay within a short.
            twin.semctl(id, 0, .setAll([0, 0, 0]))
            twin.semop(id, [sop(2, 32767, undo)])
            twin.semop(id, [sop(2, -32767)])
            twin.semop(id, [sop(2, 1, undo)])
            twin.semop(id, [sop(2, -1)])
            twin.semop(id, [sop(2, 1, undo)])
            twin.semop(id, [sop(2, 1, undo | noWait), sop(2, -1)])
            twin.semctl(id, 0, .getAll)

            twin.semctl(id, 0, .set(IPCOwnership(uid: 12, gid: 34, mode: 0o1606)))
            twin.semctl(id, 0, .stat)
            twin.semctl(id, 0, .set(IPCOwnership(uid: 0, gid: UInt32.max, mode: 0o600)))
            twin.semctl(0, 0, .limits)
            twin.semctl(0, 0, .usage)
            if isolated { twin.semctl(id & 0x7fff, 0, .statIndex) }
            twin.semctl(id, 0, .remove)
            twin.semctl(id, 0, .getValue)
            twin.semctl(id, 0, .stat)
            twin.semop(id, [sop(0, 1)])
            twin.semop(id, [sop(0, 1, undo)])
            twin.semctl(id, 0, .remove)
            twin.semget(key, 1, 0)
        }
    }

    func testBlockedSemops() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            guard let id = twin.semget(SysV.IPC_PRIVATE, 3, 0o600) else { return XCTFail("create") }
            twin.semctl(id, 1, .setValue(1))

            twin.blockingSemop(1, id, [sop(0, -2)])
            twin.blockingSemop(2, id, [sop(0, -1)])
            twin.blockingSemop(3, id, [sop(1, 0)])
            twin.blockingSemop(4, id, [sop(1, -1), sop(0, -1), sop(2, 0)])
            twin.blockingSemop(5, id, [sop(0, -1), sop(2, -1, noWait)])
            twin.blockingSemop(6, id, [sop(2, -1)])
            twin.blockingSemop(7, id, [sop(0, -100)], timeoutMilliseconds: 200)
            twin.compareWaiters(id)
            twin.expectTimeout(7)
            twin.compareWaiters(id)

            twin.semop(id, [sop(0, 1)])
            twin.compareWaiters(id)
            twin.semop(id, [sop(1, -1)])
            twin.compareWaiters(id)
            twin.semctl(id, 0, .setAll([3, 1, 1]))
            twin.compareWaiters(id)
            twin.blockingSemop(8, id, [sop(2, 0), sop(0, -5)])
            twin.blockingSemop(9, id, [sop(1, 0)])
            twin.compareWaiters(id)
            twin.semop(id, [sop(2, 1)])
            twin.compareWaiters(id)
            twin.semctl(id, 0, .setValue(2))
            twin.compareWaiters(id)
            twin.semctl(id, 0, .remove)
            twin.compareWaiters(id)
        }
    }

    /// SEM_UNDO at exit needs a process that exits: a forked child does its
    /// semops, waits for the parent's, and exits.
    func testUndoAtExit() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            guard let id = twin.semget(SysV.IPC_PRIVATE, 4, 0o600) else { return XCTFail("create") }
            twin.semctl(id, 0, .setAll([5, 0, 7, 1]))
            let childOperations: [[SemOperation]] = [
                [sop(0, -3, undo)], [sop(1, 3, undo)], [sop(2, 1, undo), sop(2, -1)], [sop(3, -1, undo)],
            ]
            let child = try runChild(semaphoreSet: id, operations: childOperations) {
                let childCaller = IPCCredentials(uid: 0, gid: 0, pid: $0, node: 0)
                for operations in childOperations {
                    XCTAssertEqual(twin.model.semop(id: twin.modelSet(id), operations: operations, waiter: WaiterID(0),
                                                    caller: childCaller, now: twin.now), .completed)
                }
                twin.semop(id, [sop(0, 32765), sop(1, -3)])
                twin.blockingSemop(1, id, [sop(3, -1)])
            }
            _ = twin.model.processExited(IPCProcess(node: 0, pid: child), now: twin.now)
            twin.compareWaiters(id)
            twin.semctl(id, 0, .getAll)
            for n: Int32 in 0..<4 { twin.semctl(id, n, .getPID) }
            twin.semctl(id, 0, .stat)
        }
    }

    func testSharedMemoryAcrossForkAndExit() throws {
        try IPCSandbox.run { isolated in
            let twin = Twin(isolated: isolated)
            defer { twin.cleanUp() }
            guard let id = twin.shmget(SysV.IPC_PRIVATE, 4096, 0o600) else { return XCTFail("create") }
            guard let address = twin.shmat(id) else { return XCTFail("attach") }
            let parent = IPCProcess(node: 0, pid: getpid())
            let child = try runChild(semaphoreSet: nil, operations: []) { child in
                twin.model.processForked(parent: parent, child: IPCProcess(node: 0, pid: child), now: twin.now)
                twin.shmctl(id, .stat)
            }
            XCTAssertEqual(twin.model.processExited(IPCProcess(node: 0, pid: child), now: twin.now), [])
            twin.shmctl(id, .stat)
            twin.shmctl(id, .remove)
            twin.shmdt(address)
            twin.shmctl(id, .stat)
        }
    }

    /// Forks a child that performs `operations` on the kernel (SEM_UNDO
    /// state is per process, so it must be another process), then waits;
    /// `whileAlive` runs meanwhile with the child's pid. The child then
    /// exits. Only async-signal-safe calls run in the child.
    private func runChild(semaphoreSet id: Int32?, operations: [[SemOperation]],
                          whileAlive: (Int32) throws -> Void) throws -> Int32 {
        var ready: [Int32] = [0, 0]
        var release: [Int32] = [0, 0]
        guard pipe(&ready) == 0, pipe(&release) == 0 else { throw Errno(rawValue: errno) }
        // Everything the child touches is prepared before fork.
        let prepared = operations.map { ops -> (UnsafeMutablePointer<sembuf>, Int) in
            let buffer = UnsafeMutablePointer<sembuf>.allocate(capacity: ops.count)
            for (i, o) in ops.enumerated() { buffer[i] = sembuf(sem_num: o.number, sem_op: o.operation, sem_flg: o.flags) }
            return (buffer, ops.count)
        }
        defer { prepared.forEach { $0.0.deallocate() } }
        let setID = id ?? -1
        let pid = fork()
        if pid == 0 {
            // The parent's ends must not stay open here, or no EOF comes.
            close(ready[0])
            close(release[1])
            var status: Int32 = 0
            for (buffer, count) in prepared where Glibc.semop(setID, buffer, count) != 0 { status = 1 }
            var byte: UInt8 = 1
            _ = write(ready[1], &byte, 1)
            // EOF when the parent closes its end; a parent that died or
            // got stuck cannot keep the child forever either.
            var waitForParent = pollfd(fd: release[0], events: Int16(POLLIN), revents: 0)
            _ = poll(&waitForParent, 1, 30_000)
            _exit(status)
        }
        guard pid > 0 else { throw Errno(rawValue: errno) }
        close(ready[1])
        close(release[0])
        var byte: UInt8 = 0
        _ = read(ready[0], &byte, 1)
        var thrown: Error?
        do { try whileAlive(pid) } catch { thrown = error }
        close(release[1])
        close(ready[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        if let thrown { throw thrown }
        XCTAssertEqual(status, 0, "the child's semops failed")
        return pid
    }
}
#endif
