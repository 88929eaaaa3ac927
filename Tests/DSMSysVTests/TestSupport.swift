import DSMCore
import XCTest
@testable import DSMSysV

/// Callers used across the model tests: root on node 0, and unprivileged
/// users elsewhere.
enum Callers {
    static let root = IPCCredentials(uid: 0, gid: 0, pid: 100, node: 0)
    static let rootElsewhere = IPCCredentials(uid: 0, gid: 0, pid: 101, node: 1)

    static func user(_ uid: UInt32, gid: UInt32 = 500, groups: [UInt32] = [], pid: Int32 = 300,
                     node: NodeID = 1) -> IPCCredentials {
        IPCCredentials(uid: uid, gid: gid, supplementaryGroups: groups, pid: pid, node: node)
    }
}

extension Result {
    var value: Success? { if case .success(let v) = self { return v } else { return nil } }
    var error: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}

func XCTAssertFails<T>(_ result: Result<T, Errno>, _ expected: Errno, _ message: String = "",
                       file: StaticString = #filePath, line: UInt = #line) {
    switch result {
    case .success(let value):
        XCTFail("expected \(expected), got success \(value) \(message)", file: file, line: line)
    case .failure(let error):
        XCTAssertEqual(error, expected, message, file: file, line: line)
    }
}

@discardableResult
func XCTUnwrapSuccess<T>(_ result: Result<T, Errno>, _ message: String = "",
                         file: StaticString = #filePath, line: UInt = #line) throws -> T {
    switch result {
    case .success(let value): return value
    case .failure(let error):
        XCTFail("unexpected \(error) \(message)", file: file, line: line)
        throw error
    }
}

/// Records what the namespace reports, for tests to compare.
struct RecordingSysVEffects: SysVEffects {
    var wakeups: [SemaphoreWakeup] = []
    mutating func wake(_ wakeup: SemaphoreWakeup) { wakeups.append(wakeup) }
}

/// What the shorthands below reported since the last `takeWakeups()` (tests
/// run one at a time; each model test class clears it in `setUp`).
nonisolated(unsafe) var reportedWakeups: [SemaphoreWakeup] = []

func takeWakeups() -> [SemaphoreWakeup] {
    defer { reportedWakeups.removeAll() }
    return reportedWakeups
}

extension SysVNamespace {
    // Shorthands for the calls that report into a sink: a recording one,
    // whose wakeups `takeWakeups()` returns.
    mutating func semop(id: Int32, operations: [SemOperation], timeout: SemTimeout? = nil,
                        waiter: WaiterID, caller: IPCCredentials, now: Int64) -> SemopOutcome {
        var effects = RecordingSysVEffects()
        defer { reportedWakeups += effects.wakeups }
        return semop(id: id, operations: operations, timeout: timeout, waiter: waiter, caller: caller, now: now, &effects)
    }

    mutating func semctl(id: Int32, number: Int32, command: SemCommand, caller: IPCCredentials,
                         now: Int64) -> Result<SemControlResult, Errno> {
        var effects = RecordingSysVEffects()
        defer { reportedWakeups += effects.wakeups }
        return semctl(id: id, number: number, command: command, caller: caller, now: now, &effects)
    }

    mutating func processExited(_ process: IPCProcess, now: Int64) -> [ContainerID] {
        var effects = RecordingSysVEffects()
        defer { reportedWakeups += effects.wakeups }
        return processExited(process, now: now, &effects)
    }

    mutating func nodeLeft(_ node: NodeID, now: Int64) -> [ContainerID] {
        var effects = RecordingSysVEffects()
        defer { reportedWakeups += effects.wakeups }
        return nodeLeft(node, now: now, &effects)
    }

    /// Test shorthand: one semop with a caller-chosen waiter id.
    mutating func op(_ id: Int32, _ operations: [SemOperation], waiter: UInt64 = 0,
                     caller: IPCCredentials = Callers.root, now: Int64 = 1000) -> SemopOutcome {
        semop(id: id, operations: operations, waiter: WaiterID(waiter), caller: caller, now: now)
    }

    func value(_ id: Int32, _ number: Int32, caller: IPCCredentials = Callers.root) -> Int32? {
        var copy = self
        return copy.semctl(id: id, number: number, command: .getValue, caller: caller, now: 0).value?.returnValue
    }

    func values(_ id: Int32) -> [UInt16]? {
        var copy = self
        if case .values(let v)? = copy.semctl(id: id, number: 0, command: .getAll, caller: Callers.root, now: 0).value {
            return v
        }
        return nil
    }

    func count(_ id: Int32, _ number: Int32, zero: Bool) -> Int32? {
        var copy = self
        return copy.semctl(id: id, number: number, command: zero ? .getZCount : .getNCount,
                           caller: Callers.root, now: 0).value?.returnValue
    }

    func shmStatus(_ id: Int32, caller: IPCCredentials = Callers.root) -> SharedSegmentStatus? {
        var copy = self
        if case .status(let s, _)? = copy.shmctl(id: id, command: .stat, caller: caller, now: 0).value { return s }
        return nil
    }

    func semStatus(_ id: Int32) -> SemaphoreSetStatus? {
        var copy = self
        if case .status(let s, _)? = copy.semctl(id: id, number: 0, command: .stat, caller: Callers.root, now: 0).value {
            return s
        }
        return nil
    }
}

func wake(_ waiter: UInt64, _ error: Errno? = nil) -> SemaphoreWakeup {
    SemaphoreWakeup(waiter: WaiterID(waiter), error: error)
}

func sop(_ number: UInt16, _ operation: Int16, _ flags: Int16 = 0) -> SemOperation {
    SemOperation(number: number, operation: operation, flags: flags)
}
