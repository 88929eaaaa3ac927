import DSMCore
import XCTest
@testable import DSMSysV

final class SemaphoreModelTests: XCTestCase {
    override func setUp() {
        super.setUp()
        reportedWakeups.removeAll()
    }

    let root = Callers.root
    let undo = SysV.SEM_UNDO
    let noWait = SysV.IPC_NOWAIT

    func makeSet(_ ns: inout SysVNamespace, count: Int32 = 2, values: [UInt16]? = nil,
                 mode: Int32 = 0o600) throws -> Int32 {
        let id = try XCTUnwrapSuccess(ns.semget(key: SysV.IPC_PRIVATE, count: count, flags: mode, caller: root, now: 1))
        if let values {
            _ = try XCTUnwrapSuccess(ns.semctl(id: id, number: 0, command: .setAll(values), caller: root, now: 1))
        }
        return id
    }

    func testSemgetRules() throws {
        var ns = SysVNamespace()
        let create = SysV.IPC_CREAT | 0o600
        XCTAssertFails(ns.semget(key: 1, count: -1, flags: create, caller: root, now: 1), .invalidArgument)
        XCTAssertFails(ns.semget(key: 1, count: 32001, flags: create, caller: root, now: 1), .invalidArgument)
        XCTAssertFails(ns.semget(key: 1, count: 0, flags: create, caller: root, now: 1), .invalidArgument,
                       "a new set needs semaphores")
        XCTAssertFails(ns.semget(key: 1, count: 1, flags: 0o600, caller: root, now: 1), .noSuchFileOrDirectory)
        let id = try XCTUnwrapSuccess(ns.semget(key: 1, count: 3, flags: create | SysV.IPC_EXCL, caller: root, now: 5))
        XCTAssertEqual(id, 0)
        XCTAssertEqual(ns.semget(key: 1, count: 0, flags: 0, caller: root, now: 1).value, id)
        XCTAssertEqual(ns.semget(key: 1, count: 3, flags: create, caller: root, now: 1).value, id)
        XCTAssertFails(ns.semget(key: 1, count: 4, flags: 0, caller: root, now: 1), .invalidArgument)
        XCTAssertFails(ns.semget(key: 1, count: 4, flags: create | SysV.IPC_EXCL, caller: root, now: 1), .fileExists)
        XCTAssertFails(ns.semget(key: 1, count: 40000, flags: create | SysV.IPC_EXCL, caller: root, now: 1),
                       .invalidArgument, "nsems is checked before the key")
        let stranger = Callers.user(1000)
        XCTAssertFails(ns.semget(key: 1, count: 1, flags: 0o400, caller: stranger, now: 1), .permissionDenied)
        XCTAssertEqual(ns.semget(key: 1, count: 1, flags: 0, caller: stranger, now: 1).value, id)
        let status = try XCTUnwrap(ns.semStatus(id))
        XCTAssertEqual(status.count, 3)
        XCTAssertEqual(status.changeTime, 5)
        XCTAssertEqual(status.operationTime, 0)
        XCTAssertEqual(status.permissions, IPCPermissions(key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, seq: 0))
        XCTAssertEqual(ns.values(id), [0, 0, 0])

        var limited = SysVNamespace(limits: { var l = SysVLimits.linux; l.semmns = 4; l.semmni = 2; return l }())
        _ = try XCTUnwrapSuccess(limited.semget(key: SysV.IPC_PRIVATE, count: 3, flags: 0o600, caller: root, now: 1))
        XCTAssertFails(limited.semget(key: SysV.IPC_PRIVATE, count: 2, flags: 0o600, caller: root, now: 1), .noSpace)
        _ = try XCTUnwrapSuccess(limited.semget(key: SysV.IPC_PRIVATE, count: 1, flags: 0o600, caller: root, now: 1))
        XCTAssertFails(limited.semget(key: SysV.IPC_PRIVATE, count: 0, flags: 0o600, caller: root, now: 1),
                       .invalidArgument)
    }

    /// What SETALL copies from the caller: checked for the id and alter
    /// permission before the caller's array is read (group write only).
    func testSetAllCountNeedsAlterPermissionOnly() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 3, mode: 0o620)
        XCTAssertEqual(ns.semaphoreCountForSetAll(id: id, caller: root).value, 3)
        XCTAssertEqual(ns.semaphoreCountForSetAll(id: id, caller: Callers.user(1000, gid: 0)).value, 3,
                       "group write is enough")
        XCTAssertFails(ns.semaphoreCountForSetAll(id: id, caller: Callers.user(1000, gid: 500)), .permissionDenied)
        XCTAssertFails(ns.semaphoreCountForSetAll(id: id + 1, caller: root), .invalidArgument)
    }

    func testSemopErrors() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, values: [1, 0])
        XCTAssertEqual(ns.op(id, []), .failed(.invalidArgument))
        XCTAssertEqual(ns.op(-1, [sop(0, 1)]), .failed(.invalidArgument))
        XCTAssertEqual(ns.op(id, Array(repeating: sop(0, 0), count: 501)), .failed(.argListTooLong))
        XCTAssertEqual(ns.op(id, Array(repeating: sop(0, 1), count: 500)), .completed)
        XCTAssertEqual(ns.op(id + 1, [sop(0, 1)]), .failed(.invalidArgument))
        XCTAssertEqual(ns.op(id, [sop(0, 1), sop(2, 1)]), .failed(.fileTooLarge))
        XCTAssertEqual(ns.values(id), [501, 0])
        XCTAssertEqual(ns.op(id, [sop(1, 1), sop(0, 32767)]), .failed(.outOfRange))
        XCTAssertEqual(ns.values(id), [501, 0], "all or nothing")
        XCTAssertEqual(ns.op(id, [sop(0, -1), sop(1, -1, noWait)]), .failed(.resourceTemporarilyUnavailable))
        XCTAssertEqual(ns.op(id, [sop(1, 0), sop(0, 0, noWait)]), .failed(.resourceTemporarilyUnavailable))
        XCTAssertEqual(ns.values(id), [501, 0])
        XCTAssertEqual(ns.semop(id: id, operations: [sop(1, -1)], timeout: SemTimeout(seconds: 0, nanoseconds: -1),
                                waiter: WaiterID(1), caller: root, now: 1), .failed(.invalidArgument))
        XCTAssertEqual(ns.semop(id: id, operations: [sop(1, -1)], timeout: SemTimeout(seconds: 1, nanoseconds: 1_000_000_000),
                                waiter: WaiterID(1), caller: root, now: 1), .failed(.invalidArgument))
        XCTAssertEqual(ns.semopPrecheck(id: id, operationCount: 0), .invalidArgument)
        XCTAssertEqual(ns.semopPrecheck(id: id, operationCount: 9999), .argListTooLong)
        XCTAssertNil(ns.semopPrecheck(id: 12345, operationCount: 1))

        // Permissions: altering needs write, waiting for zero only read.
        let reader = Callers.user(1000)
        _ = ns.semctl(id: id, number: 0, command: .set(IPCOwnership(uid: 0, gid: 0, mode: 0o604)), caller: root, now: 2)
        XCTAssertEqual(ns.op(id, [sop(1, 0)], caller: reader), .completed)
        XCTAssertEqual(ns.op(id, [sop(0, 1)], caller: reader), .failed(.permissionDenied))
        // EFBIG comes before EACCES.
        XCTAssertEqual(ns.op(id, [sop(5, 1)], caller: reader), .failed(.fileTooLarge))
    }

    func testUndoRangeIsAShort() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 1)
        XCTAssertEqual(ns.op(id, [sop(0, 32767, undo)]), .completed)   // semadj -32767
        XCTAssertEqual(ns.op(id, [sop(0, -32767)]), .completed)
        XCTAssertEqual(ns.op(id, [sop(0, 1, undo)]), .completed)       // semadj -32768: still fits
        XCTAssertEqual(ns.op(id, [sop(0, -1)]), .completed)
        XCTAssertEqual(ns.op(id, [sop(0, 1, undo)]), .failed(.outOfRange))
        XCTAssertEqual(ns.values(id), [0])
    }

    func testBlockedDecrementsAreServedInQueueOrder() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 1)
        XCTAssertEqual(ns.op(id, [sop(0, -2)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 2), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 3), .blocked)
        XCTAssertEqual(ns.count(id, 0, zero: false), 3)
        XCTAssertTrue(takeWakeups().isEmpty)

        XCTAssertEqual(ns.op(id, [sop(0, 1)], caller: Callers.user(0, pid: 77), now: 50), .completed)
        XCTAssertEqual(takeWakeups(), [wake(2)], "the first waiter needs 2: the next one gets the unit")
        XCTAssertEqual(ns.value(id, 0), 0)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .getPID, caller: root, now: 0).value, .value(100),
                       "the waiter's process performed the last change")
        XCTAssertEqual(ns.semStatus(id)?.operationTime, 50)

        XCTAssertEqual(ns.op(id, [sop(0, 3)]), .completed)
        XCTAssertEqual(takeWakeups(), [wake(1), wake(3)])
        XCTAssertEqual(ns.value(id, 0), 0)
        XCTAssertEqual(ns.count(id, 0, zero: false), 0)
        XCTAssertFalse(ns.isWaiting(WaiterID(1)))
    }

    func testWaitForZero() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, values: [2, 0])
        XCTAssertEqual(ns.op(id, [sop(0, 0)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(1, 0), sop(0, 0)], waiter: 2), .blocked)
        XCTAssertEqual(ns.count(id, 0, zero: true), 2, "each counted on the operation it blocked on")
        XCTAssertEqual(ns.count(id, 1, zero: true), 0)
        XCTAssertEqual(ns.op(id, [sop(0, 0)], waiter: 3, caller: root), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1)]), .completed)
        XCTAssertTrue(takeWakeups().isEmpty)
        XCTAssertEqual(ns.op(id, [sop(0, -1)]), .completed)
        XCTAssertEqual(takeWakeups(), [wake(1), wake(3), wake(2)],
                       "single zero-waiters of the semaphore first, then the set's")
        XCTAssertEqual(ns.op(id, [sop(1, 0), sop(0, 0)]), .completed, "zero-waits complete at once when satisfied")
    }

    func testNcountCountsTheBlockingOperationOnly() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, values: [0, 1])
        XCTAssertEqual(ns.op(id, [sop(1, -1), sop(0, -1), sop(1, 0)], waiter: 1), .blocked)
        XCTAssertEqual([ns.count(id, 0, zero: false), ns.count(id, 1, zero: false), ns.count(id, 1, zero: true)],
                       [1, 0, 0])
        // Now it gets past semaphore 0 and blocks on waiting for 1 to be zero.
        XCTAssertEqual(ns.op(id, [sop(0, 1), sop(1, 1)]), .completed)
        XCTAssertTrue(takeWakeups().isEmpty)
        XCTAssertEqual([ns.count(id, 0, zero: false), ns.count(id, 1, zero: false), ns.count(id, 1, zero: true)],
                       [0, 0, 1])
        XCTAssertEqual(ns.semctl(id: id, number: 2, command: .getNCount, caller: root, now: 0).error, .invalidArgument)
    }

    func testComplexWaiterMergesQueuesInLinuxOrder() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 2)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(1, -1)], waiter: 2), .blocked)
        // A multi-operation waiter moves the single ones to the set queue,
        // semaphore 1's ahead of semaphore 0's (Linux's merge_queues).
        XCTAssertEqual(ns.op(id, [sop(0, -1), sop(1, -1)], waiter: 3), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 4), .blocked)
        _ = try XCTUnwrapSuccess(ns.semctl(id: id, number: 0, command: .setAll([2, 2]), caller: root, now: 5))
        XCTAssertEqual(takeWakeups(), [wake(2), wake(1), wake(3)])
        XCTAssertEqual(ns.values(id), [0, 0])
        XCTAssertEqual(ns.count(id, 0, zero: false), 1)
        XCTAssertEqual(ns.semStatus(id)?.operationTime, 5, "a woken semop stamps sem_otime")
        // Once no multi-operation waiter is left the queues split again.
        XCTAssertEqual(ns.op(id, [sop(0, 1)]), .completed)
        XCTAssertEqual(takeWakeups(), [wake(4)])
    }

    func testRetryHittingNoWaitFailsTheWaiter() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 2)
        XCTAssertEqual(ns.op(id, [sop(0, -1), sop(1, -1, noWait)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, 1)]), .completed)
        XCTAssertEqual(takeWakeups(), [wake(1, .resourceTemporarilyUnavailable)])
        XCTAssertEqual(ns.values(id), [1, 0])
    }

    func testCancelWait() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 2)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1), sop(1, -1)], waiter: 2), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 3), .blocked)
        XCTAssertEqual(ns.count(id, 0, zero: false), 3)
        XCTAssertTrue(ns.cancelWait(WaiterID(2)))
        XCTAssertFalse(ns.cancelWait(WaiterID(2)))
        XCTAssertTrue(ns.cancelWait(WaiterID(1)))
        XCTAssertEqual(ns.count(id, 0, zero: false), 1)
        XCTAssertEqual(ns.op(id, [sop(0, 1)]), .completed)
        XCTAssertEqual(takeWakeups(), [wake(3)])
        XCTAssertFalse(ns.cancelWait(WaiterID(3)), "already completed: the completion wins")
        XCTAssertFalse(ns.cancelWait(WaiterID(99)))
        // The id can be used again once it is not waiting.
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 3), .blocked)
    }

    func testRemoveFailsWaitersWithEIDRM() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 2, values: [0, 1])
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(id, [sop(1, 0)], waiter: 2), .blocked)
        XCTAssertEqual(ns.op(id, [sop(0, -1), sop(1, -1)], waiter: 3), .blocked)
        XCTAssertEqual(ns.op(id, [sop(1, 0), sop(0, 0)], waiter: 4), .blocked)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .remove, caller: Callers.user(1000), now: 1), .notPermitted)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .remove, caller: root, now: 1).value, .done)
        XCTAssertEqual(takeWakeups(), [wake(4, .identifierRemoved), wake(1, .identifierRemoved),
                                              wake(3, .identifierRemoved), wake(2, .identifierRemoved)],
                       "set const, set alter, then each semaphore's")
        XCTAssertFalse(ns.cancelWait(WaiterID(1)))
        XCTAssertEqual(ns.op(id, [sop(0, 1)]), .failed(.invalidArgument))
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .getValue, caller: root, now: 1), .invalidArgument)
        XCTAssertTrue(ns.semaphoreSetIdentifiers.isEmpty)
    }

    func testUndoAppliedAtExitWithClamping() throws {
        var ns = SysVNamespace()
        let a = Callers.user(0, pid: 10, node: 1)
        let b = Callers.user(0, pid: 20, node: 2)
        let id = try makeSet(&ns, count: 3, values: [5, 0, 7])
        XCTAssertEqual(ns.op(id, [sop(0, -3, undo)], caller: a), .completed)      // sem0 2, adj +3
        XCTAssertEqual(ns.op(id, [sop(1, 3, undo)], caller: a), .completed)       // sem1 3, adj -3
        XCTAssertEqual(ns.op(id, [sop(2, 1, undo), sop(2, -1)], caller: a), .completed) // adj -1, value 7
        XCTAssertEqual(ns.op(id, [sop(0, 32765), sop(1, -3)], caller: b), .completed)
        XCTAssertEqual(ns.values(id), [32767, 0, 7])
        XCTAssertEqual(ns.processExited(a.process, now: 2000), [])
        XCTAssertEqual(ns.values(id), [32767, 0, 6], "clamped to SEMVMX and to 0")
        XCTAssertEqual(ns.semctl(id: id, number: 1, command: .getPID, caller: root, now: 0).value?.returnValue, 10)
        XCTAssertEqual(ns.semStatus(id)?.operationTime, 2000, "exit stamps sem_otime")
        XCTAssertEqual(ns.processExited(a.process, now: 2001), [], "applied once")
        XCTAssertEqual(ns.values(id), [32767, 0, 6])
    }

    func testUndoAtExitWakesWaiters() throws {
        var ns = SysVNamespace()
        let holder = Callers.user(0, pid: 10)
        let waiter = Callers.user(0, pid: 11)
        let id = try makeSet(&ns, count: 1, values: [1])
        XCTAssertEqual(ns.op(id, [sop(0, -1, undo)], caller: holder), .completed)
        XCTAssertEqual(ns.op(id, [sop(0, -1, undo)], waiter: 5, caller: waiter), .blocked)
        XCTAssertEqual(ns.processExited(holder.process, now: 3), [])
        XCTAssertEqual(takeWakeups(), [wake(5)])
        XCTAssertEqual(ns.value(id, 0), 0)
        // The exiting process's own waiters are dropped, not answered.
        XCTAssertEqual(ns.op(id, [sop(0, -1)], waiter: 6, caller: holder), .blocked)
        _ = ns.processExited(holder.process, now: 4)
        XCTAssertFalse(ns.isWaiting(WaiterID(6)))
        XCTAssertEqual(ns.count(id, 0, zero: false), 0)
        XCTAssertEqual(ns.nodeLeft(waiter.node, now: 5), [])
        XCTAssertEqual(ns.value(id, 0), 1, "the node's processes exited: their undo applied")
    }

    func testUndoAcrossSetsAppliesMostRecentlyUsedFirst() throws {
        var ns = SysVNamespace()
        let a = Callers.user(0, pid: 10)
        let first = try makeSet(&ns, count: 1, values: [1])
        let second = try makeSet(&ns, count: 1, values: [1])
        XCTAssertEqual(ns.op(first, [sop(0, -1, undo)], caller: a), .completed)
        XCTAssertEqual(ns.op(second, [sop(0, -1, undo)], caller: a), .completed)
        XCTAssertEqual(ns.op(first, [sop(0, -1)], waiter: 1), .blocked)
        XCTAssertEqual(ns.op(second, [sop(0, -1)], waiter: 2), .blocked)
        _ = ns.processExited(a.process, now: 1)
        XCTAssertEqual(takeWakeups(), [wake(2), wake(1)])
    }

    func testSetValueAndSetAll() throws {
        var ns = SysVNamespace()
        let a = Callers.user(0, pid: 10)
        let id = try makeSet(&ns, count: 2)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .setValue(-1), caller: root, now: 1), .outOfRange)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .setValue(32768), caller: root, now: 1), .outOfRange)
        XCTAssertFails(ns.semctl(id: 999, number: 0, command: .setValue(32768), caller: root, now: 1), .outOfRange,
                       "SETVAL checks the value before the id")
        XCTAssertFails(ns.semctl(id: id, number: 2, command: .setValue(1), caller: root, now: 1), .invalidArgument)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .setValue(1), caller: Callers.user(5), now: 1),
                       .permissionDenied)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .setAll([1, 32768]), caller: root, now: 1), .outOfRange)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .setAll([1]), caller: root, now: 1), .badAddress)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .getAll, caller: Callers.user(5), now: 1),
                       .permissionDenied)
        XCTAssertEqual(ns.values(id), [0, 0])

        // SETVAL wakes waiters and forgets the semaphore's undo adjustments.
        XCTAssertEqual(ns.op(id, [sop(0, 2, undo), sop(1, 2, undo)], caller: a), .completed)
        XCTAssertEqual(ns.op(id, [sop(0, -5)], waiter: 1), .blocked)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .setValue(10), caller: Callers.user(0, pid: 33), now: 7)
                       .value, .done)
        XCTAssertEqual(takeWakeups(), [wake(1)])
        XCTAssertEqual(ns.semStatus(id)?.changeTime, 7)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .getPID, caller: root, now: 0).value, .value(100),
                       "the woken semop changed it last")
        _ = ns.processExited(a.process, now: 8)
        XCTAssertEqual(ns.values(id), [5, 0], "sem0's adjustment was cleared, sem1's applied")

        XCTAssertEqual(ns.op(id, [sop(1, 4, undo)], caller: a), .completed)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .setAll([3, 3]), caller: Callers.user(0, pid: 44), now: 9)
                       .value, .done)
        XCTAssertEqual(ns.semctl(id: id, number: 1, command: .getPID, caller: root, now: 0).value, .value(44))
        _ = ns.processExited(a.process, now: 10)
        XCTAssertEqual(ns.values(id), [3, 3], "SETALL cleared every adjustment")
    }

    func testStatInfoAndOwnership() throws {
        var ns = SysVNamespace()
        let id = try makeSet(&ns, count: 4)
        XCTAssertEqual(ns.op(id, [sop(2, 1)], now: 33), .completed)
        let status = try XCTUnwrap(ns.semStatus(id))
        XCTAssertEqual(status.operationTime, 33)
        XCTAssertEqual(status.count, 4)
        XCTAssertFails(ns.semctl(id: id, number: 0, command: .stat, caller: Callers.user(9), now: 1), .permissionDenied)
        XCTAssertEqual(ns.semctl(id: id, number: 0, command: .statIndexAny, caller: Callers.user(9), now: 1)
                       .value?.returnValue, id)
        XCTAssertFails(ns.semctl(id: -3, number: 0, command: .limits, caller: root, now: 1), .invalidArgument)
        guard case .limits(let info, let highest)? = ns.semctl(id: 0, number: 0, command: .usage, caller: root, now: 1)
            .value else { return XCTFail("SEM_INFO") }
        XCTAssertEqual(info.semusz, 1)
        XCTAssertEqual(info.semaem, 4)
        XCTAssertEqual(info.semmsl, 32000)
        XCTAssertEqual(highest, 0)
        guard case .limits(let ipcInfo, _)? = ns.semctl(id: 0, number: 0, command: .limits, caller: root, now: 1)
            .value else { return XCTFail("IPC_INFO") }
        XCTAssertEqual(ipcInfo.semusz, 20)
        XCTAssertEqual(ipcInfo.semaem, 32767)
        XCTAssertEqual(ipcInfo.semmns, 1_024_000_000)

        let owner = Callers.user(1000, gid: 1000)
        let mine = try XCTUnwrapSuccess(ns.semget(key: 3, count: 1, flags: SysV.IPC_CREAT | 0o600, caller: owner, now: 1))
        XCTAssertFails(ns.semctl(id: mine, number: 0, command: .set(IPCOwnership(uid: 5, gid: 5, mode: 0o666)),
                                 caller: Callers.user(1001), now: 2), .notPermitted)
        XCTAssertEqual(ns.semctl(id: mine, number: 0, command: .set(IPCOwnership(uid: 5, gid: 5, mode: 0o1666)),
                                 caller: owner, now: 2).value, .done)
        let changed = try XCTUnwrap(ns.semStatus(mine))
        XCTAssertEqual([changed.permissions.uid, changed.permissions.gid, changed.permissions.mode], [5, 5, 0o666])
        XCTAssertEqual(changed.permissions.cuid, 1000)
    }
}
