import DSMCore
import XCTest
@testable import DSMSysV

final class SharedMemoryModelTests: XCTestCase {
    override func setUp() {
        super.setUp()
        reportedWakeups.removeAll()
    }

    let create = SysV.IPC_CREAT | 0o600
    let exclusive = SysV.IPC_CREAT | SysV.IPC_EXCL | 0o600

    func testCreateLookupAndKeyErrors() throws {
        var ns = SysVNamespace()
        let root = Callers.root
        // Identifiers start at slot 0, sequence 0, like a fresh kernel namespace.
        let id = try XCTUnwrapSuccess(ns.shmget(key: 42, size: 8192, flags: exclusive, caller: root, now: 10))
        XCTAssertEqual(id, 0)
        XCTAssertEqual(ns.shmget(key: 42, size: 8192, flags: 0, caller: root, now: 11).value, id)
        XCTAssertEqual(ns.shmget(key: 42, size: 100, flags: create, caller: root, now: 11).value, id,
                       "IPC_CREAT without IPC_EXCL finds the existing segment")
        XCTAssertEqual(ns.shmget(key: 42, size: 0, flags: 0, caller: root, now: 11).value, id,
                       "size 0 is fine for a lookup")
        XCTAssertFails(ns.shmget(key: 42, size: 8192, flags: exclusive, caller: root, now: 11), .fileExists)
        XCTAssertFails(ns.shmget(key: 42, size: 8193, flags: 0, caller: root, now: 11), .invalidArgument,
                       "existing segment smaller than asked")
        // EEXIST comes before the size check.
        XCTAssertFails(ns.shmget(key: 42, size: 1 << 20, flags: exclusive, caller: root, now: 11), .fileExists)
        XCTAssertFails(ns.shmget(key: 43, size: 8192, flags: 0o600, caller: root, now: 11), .noSuchFileOrDirectory)
        XCTAssertFails(ns.shmget(key: 43, size: 0, flags: create, caller: root, now: 11), .invalidArgument,
                       "below SHMMIN")
        XCTAssertFails(ns.shmget(key: 43, size: SysVLimits.linux.shmmax + 1, flags: create, caller: root, now: 11),
                       .invalidArgument, "above SHMMAX")
        XCTAssertFails(ns.shmget(key: SysV.IPC_PRIVATE, size: 0, flags: create, caller: root, now: 11),
                       .invalidArgument)

        // IPC_PRIVATE always creates, whatever the flags.
        let p1 = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 1, flags: 0, caller: root, now: 12))
        let p2 = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 1, flags: SysV.IPC_EXCL, caller: root,
                                                now: 12))
        XCTAssertEqual([p1, p2], [1, 2])

        let status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.permissions, IPCPermissions(key: 42, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, seq: 0))
        XCTAssertEqual(status.segmentSize, 8192)
        XCTAssertEqual(status.creatorPID, root.pid)
        XCTAssertEqual(status.lastPID, 0)
        XCTAssertEqual(status.attachCount, 0)
        XCTAssertEqual([status.attachTime, status.detachTime, status.changeTime], [0, 0, 10])
        XCTAssertEqual(ns.shmStatus(p1)?.permissions.mode, 0, "IPC_PRIVATE with flags 0 has mode 0")
    }

    func testIdentifiersCycleThroughSlotsAndBumpTheSequence() throws {
        var ns = SysVNamespace()
        var ids: [Int32] = []
        // Create and remove one at a time: slots 0..63 are cycled through,
        // then slot 0 again with the next sequence number.
        for _ in 0..<66 {
            let id = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 1, flags: 0o600,
                                                    caller: Callers.root, now: 1))
            ids.append(id)
            XCTAssertEqual(ns.shmctl(id: id, command: .remove, caller: Callers.root, now: 1).value,
                           .removed(destroyed: ContainerID(ids.count)))
        }
        XCTAssertEqual(Array(ids[0..<64]), (0..<64).map { Int32($0) })
        XCTAssertEqual(ids[64], 32768)
        XCTAssertEqual(ids[65], 32769)
        // A stale id is EINVAL, not someone else's segment.
        let live = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 1, flags: 0o600,
                                                  caller: Callers.root, now: 1))
        XCTAssertEqual(live, 32770)
        XCTAssertFails(ns.shmctl(id: 2, command: .stat, caller: Callers.root, now: 1), .invalidArgument)
        XCTAssertFails(ns.shmAttach(id: 2, readOnly: false, caller: Callers.root, now: 1), .invalidArgument)
        XCTAssertFails(ns.shmctl(id: -1, command: .stat, caller: Callers.root, now: 1), .invalidArgument)
        // SHM_STAT takes a slot index and returns the full id.
        XCTAssertEqual(ns.shmctl(id: 2, command: .statIndex, caller: Callers.root, now: 1).value?.returnValue, 32770)
    }

    func testPermissionsFollowIpcperms() throws {
        var ns = SysVNamespace()
        let owner = Callers.user(1000, gid: 1000, pid: 10)
        let groupMate = Callers.user(2000, gid: 1000, pid: 11)
        let viaSupplementary = Callers.user(2001, gid: 7, groups: [1000], pid: 12)
        let stranger = Callers.user(3000, gid: 3000, pid: 13)
        let id = try XCTUnwrapSuccess(ns.shmget(key: 7, size: 4096, flags: SysV.IPC_CREAT | 0o640, caller: owner,
                                                now: 1))

        XCTAssertEqual(ns.shmget(key: 7, size: 0, flags: 0o600, caller: owner, now: 1).value, id)
        XCTAssertEqual(ns.shmget(key: 7, size: 0, flags: 0o400, caller: groupMate, now: 1).value, id)
        XCTAssertFails(ns.shmget(key: 7, size: 0, flags: 0o600, caller: groupMate, now: 1), .permissionDenied)
        XCTAssertEqual(ns.shmget(key: 7, size: 0, flags: 0o004, caller: viaSupplementary, now: 1).value, id,
                       "requested bits are checked against the caller's class whatever position they are in")
        XCTAssertFails(ns.shmget(key: 7, size: 0, flags: 0o400, caller: stranger, now: 1), .permissionDenied)
        XCTAssertEqual(ns.shmget(key: 7, size: 0, flags: 0, caller: stranger, now: 1).value, id,
                       "asking for no access always passes")
        XCTAssertEqual(ns.shmget(key: 7, size: 0, flags: 0o600, caller: Callers.rootElsewhere, now: 1).value, id,
                       "root bypasses")
        // EINVAL (size) comes before EACCES.
        XCTAssertFails(ns.shmget(key: 7, size: 8192, flags: 0o600, caller: stranger, now: 1), .invalidArgument)

        XCTAssertFails(ns.shmAttach(id: id, readOnly: false, caller: groupMate, now: 1), .permissionDenied)
        XCTAssertNotNil(ns.shmAttach(id: id, readOnly: true, caller: groupMate, now: 1).value)
        XCTAssertFails(ns.shmAttach(id: id, readOnly: true, caller: stranger, now: 1), .permissionDenied)
        XCTAssertFails(ns.shmAttach(id: id, readOnly: true, execute: true, caller: owner, now: 1), .permissionDenied)

        XCTAssertFails(ns.shmctl(id: id, command: .stat, caller: stranger, now: 1), .permissionDenied)
        XCTAssertNotNil(ns.shmctl(id: id, command: .stat, caller: groupMate, now: 1).value)
        XCTAssertNotNil(ns.shmctl(id: id, command: .statIndexAny, caller: stranger, now: 1).value,
                        "SHM_STAT_ANY needs no read permission")

        // IPC_SET/IPC_RMID: owner, creator or root; the group does not do.
        let ownership = IPCOwnership(uid: 2000, gid: 1000, mode: 0o7660)
        XCTAssertFails(ns.shmctl(id: id, command: .set(ownership), caller: groupMate, now: 2), .notPermitted)
        XCTAssertFails(ns.shmctl(id: id, command: .remove, caller: stranger, now: 2), .notPermitted)
        XCTAssertEqual(ns.shmctl(id: id, command: .set(ownership), caller: owner, now: 2).value, .done)
        let status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.permissions.uid, 2000)
        XCTAssertEqual(status.permissions.cuid, 1000)
        XCTAssertEqual(status.permissions.mode, 0o660, "only the permission bits are taken")
        XCTAssertEqual(status.changeTime, 2)
        // Now both the new owner and the creator may change it.
        XCTAssertEqual(ns.shmctl(id: id, command: .set(ownership), caller: groupMate, now: 3).value, .done)
        XCTAssertEqual(ns.shmctl(id: id, command: .set(ownership), caller: owner, now: 3).value, .done)
        // EPERM comes before an invalid uid's EINVAL.
        let invalid = IPCOwnership(uid: UInt32.max, gid: 0, mode: 0o600)
        XCTAssertFails(ns.shmctl(id: id, command: .set(invalid), caller: stranger, now: 3), .notPermitted)
        XCTAssertFails(ns.shmctl(id: id, command: .set(invalid), caller: owner, now: 3), .invalidArgument)

        XCTAssertFails(ns.shmctl(id: id, command: .lock, caller: stranger, now: 3), .notPermitted)
        XCTAssertEqual(ns.shmctl(id: id, command: .lock, caller: owner, now: 3).value, .done)
        XCTAssertEqual(ns.shmStatus(id)?.permissions.mode, 0o660 | SysV.SHM_LOCKED)
        XCTAssertEqual(ns.shmctl(id: id, command: .unlock, caller: Callers.root, now: 3).value, .done)
        XCTAssertEqual(ns.shmStatus(id)?.permissions.mode, 0o660)
    }

    func testAttachCountsAndDestroyAtLastDetach() throws {
        var ns = SysVNamespace(firstContainer: 50)
        let a = Callers.user(1000, pid: 10, node: 1)
        let b = Callers.user(1000, pid: 10, node: 2) // same pid, another node: another process
        let id = try XCTUnwrapSuccess(ns.shmget(key: 9, size: 5000, flags: SysV.IPC_CREAT | 0o666, caller: a, now: 1))
        let attachment = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: a, now: 5))
        XCTAssertEqual(attachment, SegmentAttachment(id: id, container: 50, size: 5000))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: true, caller: a, now: 6))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: b, now: 7))
        var status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.attachCount, 3)
        XCTAssertEqual(status.attachTime, 7)
        XCTAssertEqual(status.lastPID, 10)

        XCTAssertFails(ns.shmDetach(id: id, caller: Callers.user(1000, pid: 11), now: 8), .invalidArgument,
                       "a process without an attachment cannot detach")
        XCTAssertEqual(ns.shmDetach(id: id, caller: b, now: 8).value, .some(nil))
        XCTAssertFails(ns.shmDetach(id: id, caller: b, now: 8), .invalidArgument)
        status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.attachCount, 2)
        XCTAssertEqual(status.detachTime, 8)

        // IPC_RMID while attached: marked, key released, still attachable by id.
        XCTAssertEqual(ns.shmctl(id: id, command: .remove, caller: a, now: 9).value, .removed(destroyed: nil))
        status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.permissions.key, SysV.IPC_PRIVATE)
        XCTAssertEqual(status.permissions.mode, 0o666 | SysV.SHM_DEST)
        XCTAssertFails(ns.shmget(key: 9, size: 1, flags: 0, caller: a, now: 9), .noSuchFileOrDirectory)
        let reused = try XCTUnwrapSuccess(ns.shmget(key: 9, size: 100, flags: exclusive, caller: a, now: 9))
        XCTAssertNotEqual(reused, id)
        XCTAssertEqual(ns.shmAttach(id: reused, readOnly: false, caller: a, now: 9).value?.container, 51)
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: b, now: 10))
        XCTAssertEqual(ns.shmStatus(id)?.attachCount, 3)
        // Removing it again changes nothing.
        XCTAssertEqual(ns.shmctl(id: id, command: .remove, caller: a, now: 10).value, .removed(destroyed: nil))

        XCTAssertEqual(ns.shmDetach(id: id, caller: a, now: 11).value, .some(nil))
        XCTAssertEqual(ns.shmDetach(id: id, caller: b, now: 11).value, .some(nil))
        XCTAssertEqual(ns.shmDetach(id: id, caller: a, now: 12).value, .some(50), "the last detach destroys it")
        XCTAssertFails(ns.shmctl(id: id, command: .stat, caller: a, now: 12), .invalidArgument)
        XCTAssertEqual(ns.sharedMemoryIdentifiers, [reused])

        // Not attached: removed at once; containers are never reused.
        XCTAssertEqual(ns.shmDetach(id: reused, caller: a, now: 13).value, .some(nil))
        XCTAssertEqual(ns.shmctl(id: reused, command: .remove, caller: a, now: 13).value, .removed(destroyed: 51))
        let next = try XCTUnwrapSuccess(ns.shmget(key: 9, size: 100, flags: exclusive, caller: a, now: 14))
        XCTAssertEqual(ns.shmAttach(id: next, readOnly: false, caller: a, now: 14).value?.container, 52)
    }

    func testForkExecAndExitAdjustAttachments() throws {
        var ns = SysVNamespace()
        let parent = Callers.user(1000, pid: 10)
        let child = IPCProcess(node: parent.node, pid: 20)
        let id = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 4096, flags: 0o600, caller: parent, now: 1))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: parent, now: 1))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: true, caller: parent, now: 1))
        ns.processForked(parent: parent.process, child: child, now: 2)
        var status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.attachCount, 4)
        XCTAssertEqual(status.lastPID, 10, "Linux counts the fork's attaches in the parent")
        XCTAssertEqual(status.attachTime, 2)

        XCTAssertEqual(ns.shmctl(id: id, command: .remove, caller: parent, now: 3).value, .removed(destroyed: nil))
        XCTAssertEqual(ns.detachAll(child, now: 4), [], "exec drops the child's attachments")
        status = try XCTUnwrap(ns.shmStatus(id))
        XCTAssertEqual(status.attachCount, 2)
        XCTAssertEqual(status.lastPID, 20)
        XCTAssertEqual(ns.processExited(parent.process, now: 5), [1], "exit detaches and destroys")
        XCTAssertTrue(ns.sharedMemoryIdentifiers.isEmpty)
    }

    func testNodeLeftDetachesItsProcesses() throws {
        var ns = SysVNamespace()
        let onNode2 = Callers.user(0, pid: 10, node: 2)
        let onNode3 = Callers.user(0, pid: 10, node: 3)
        let id = try XCTUnwrapSuccess(ns.shmget(key: 5, size: 4096, flags: create, caller: onNode2, now: 1))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: onNode2, now: 1))
        _ = try XCTUnwrapSuccess(ns.shmAttach(id: id, readOnly: false, caller: onNode3, now: 1))
        _ = ns.shmctl(id: id, command: .remove, caller: onNode2, now: 1)
        XCTAssertEqual(ns.nodeLeft(2, now: 2), [])
        XCTAssertEqual(ns.shmStatus(id)?.attachCount, 1)
        XCTAssertEqual(ns.nodeLeft(3, now: 3), [1])
    }

    func testLimitsAndUsage() throws {
        var limits = SysVLimits.linux
        limits.shmmni = 2
        limits.shmall = 3
        var ns = SysVNamespace(limits: limits)
        let root = Callers.root
        let a = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 4097, flags: 0o600, caller: root, now: 1))
        XCTAssertFails(ns.shmget(key: SysV.IPC_PRIVATE, size: 4097, flags: 0o600, caller: root, now: 1), .noSpace,
                       "2 + 2 pages exceed SHMALL 3")
        _ = try XCTUnwrapSuccess(ns.shmget(key: SysV.IPC_PRIVATE, size: 4096, flags: 0o600, caller: root, now: 1))
        XCTAssertFails(ns.shmget(key: 77, size: 1, flags: create, caller: root, now: 1), .noSpace, "SHMMNI reached")

        guard case .usage(let usage, let highest)? = ns.shmctl(id: 0, command: .usage, caller: root, now: 1).value else {
            return XCTFail("SHM_INFO")
        }
        XCTAssertEqual(usage.usedIDs, 2)
        XCTAssertEqual(usage.totalPages, 3)
        XCTAssertEqual(highest, 1)
        guard case .limits(let info, _)? = ns.shmctl(id: 0, command: .limits, caller: root, now: 1).value else {
            return XCTFail("IPC_INFO")
        }
        XCTAssertEqual(info.shmmni, 2)
        XCTAssertEqual(info.shmmin, 1)
        _ = ns.shmctl(id: a, command: .remove, caller: root, now: 1)
        XCTAssertNotNil(ns.shmget(key: SysV.IPC_PRIVATE, size: 4096, flags: 0o600, caller: root, now: 1).value,
                        "removal gives the pages back")
    }

    func testCommandDecoding() {
        let ownership = IPCOwnership(uid: 1, gid: 2, mode: 0o600)
        XCTAssertEqual(ShmCommand(linuxCommand: 2, ownership: ownership), .stat)
        XCTAssertEqual(ShmCommand(linuxCommand: 1, ownership: ownership), .set(ownership))
        XCTAssertEqual(ShmCommand(linuxCommand: 0, ownership: ownership), .remove)
        XCTAssertNil(ShmCommand(linuxCommand: 0x7777, ownership: ownership))
        XCTAssertEqual(SemCommand(linuxCommand: 16, value: 5, values: [], ownership: ownership), .setValue(5))
        XCTAssertEqual(SemCommand(linuxCommand: 17, value: 0, values: [1, 2], ownership: ownership), .setAll([1, 2]))
        XCTAssertNil(SemCommand(linuxCommand: -1, value: 0, values: [], ownership: ownership))
    }
}
