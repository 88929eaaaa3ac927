#if canImport(Glibc)
import DSMCore
import Foundation
import Glibc
import XCTest
@testable import DSMSysV

/// The real kernel's System V calls, to hold the model against. Swift cannot
/// call C variadic functions (semctl) nor sees the GNU-only ones (semtimedop,
/// unshare, setns), so those are looked up with dlsym; on x86-64 a variadic
/// callee reads integer arguments from the same registers.
enum Kernel {
    private static func symbol<T>(_ name: String, as type: T.Type) -> T {
        guard let address = dlsym(nil, name) else { fatalError("no \(name) in libc") }
        return unsafeBitCast(address, to: type)
    }

    typealias SemctlFunction = @convention(c) (Int32, Int32, Int32, UInt) -> Int32
    typealias SemtimedopFunction = @convention(c) (Int32, UnsafeMutablePointer<sembuf>?, Int,
                                                    UnsafePointer<timespec>?) -> Int32
    typealias UnshareFunction = @convention(c) (Int32) -> Int32
    typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32

    nonisolated(unsafe) static let semctlFunction = symbol("semctl", as: SemctlFunction.self)
    nonisolated(unsafe) static let semtimedopFunction = symbol("semtimedop", as: SemtimedopFunction.self)
    nonisolated(unsafe) static let unshareFunction = symbol("unshare", as: UnshareFunction.self)
    nonisolated(unsafe) static let setnsFunction = symbol("setns", as: SetnsFunction.self)

    static let CLONE_NEWIPC: Int32 = 0x0800_0000

    static func result(_ value: Int32) -> Result<Int32, Errno> {
        value >= 0 ? .success(value) : .failure(Errno(rawValue: errno))
    }

    // MARK: shared memory

    static func shmget(_ key: Int32, _ size: UInt64, _ flags: Int32) -> Result<Int32, Errno> {
        result(Glibc.shmget(key, Int(bitPattern: UInt(size)), flags))
    }

    static func shmat(_ id: Int32, readOnly: Bool) -> Result<UnsafeMutableRawPointer, Errno> {
        let address = Glibc.shmat(id, nil, readOnly ? SHM_RDONLY : 0)
        if address == nil || UInt(bitPattern: address) == UInt.max { return .failure(Errno(rawValue: errno)) }
        return .success(address!)
    }

    static func shmdt(_ address: UnsafeMutableRawPointer) -> Result<Int32, Errno> { result(Glibc.shmdt(address)) }

    static func shmctl(_ id: Int32, _ command: Int32, _ buffer: inout shmid_ds) -> Result<Int32, Errno> {
        result(Glibc.shmctl(id, command, &buffer))
    }

    static func shmStatus(_ id: Int32, command: Int32 = SysV.IPC_STAT) -> Result<(shmid_ds, Int32), Errno> {
        var buffer = shmid_ds()
        return shmctl(id, command, &buffer).map { (buffer, $0) }
    }

    // MARK: semaphores

    static func semget(_ key: Int32, _ count: Int32, _ flags: Int32) -> Result<Int32, Errno> {
        result(Glibc.semget(key, count, flags))
    }

    static func semop(_ id: Int32, _ operations: [SemOperation], timeout: timespec? = nil) -> Result<Int32, Errno> {
        var buffers = operations.map { sembuf(sem_num: $0.number, sem_op: $0.operation, sem_flg: $0.flags) }
        return buffers.withUnsafeMutableBufferPointer { ops in
            if var timeout {
                return result(semtimedopFunction(id, ops.baseAddress, ops.count, &timeout))
            }
            return result(semtimedopFunction(id, ops.baseAddress, ops.count, nil))
        }
    }

    static func semctl(_ id: Int32, _ number: Int32, _ command: Int32, _ argument: UInt = 0) -> Result<Int32, Errno> {
        result(semctlFunction(id, number, command, argument))
    }

    static func semctl(_ id: Int32, _ number: Int32, _ command: Int32,
                       buffer: UnsafeMutableRawPointer) -> Result<Int32, Errno> {
        semctl(id, number, command, UInt(bitPattern: buffer))
    }

    static func getAll(_ id: Int32, count: Int) -> Result<[UInt16], Errno> {
        var values = [UInt16](repeating: 0, count: max(count, 1))
        let r = values.withUnsafeMutableBytes { semctl(id, 0, SysV.GETALL, buffer: $0.baseAddress!) }
        return r.map { _ in Array(values.prefix(count)) }
    }

    static func setAll(_ id: Int32, _ values: [UInt16]) -> Result<Int32, Errno> {
        var values = values
        return values.withUnsafeMutableBytes { semctl(id, 0, SysV.SETALL, buffer: $0.baseAddress!) }
    }

    static func semStatus(_ id: Int32, command: Int32 = SysV.IPC_STAT) -> Result<(semid_ds, Int32), Errno> {
        var buffer = semid_ds()
        return withUnsafeMutableBytes(of: &buffer) { semctl(id, 0, command, buffer: $0.baseAddress!) }
            .map { (buffer, $0) }
    }

    static func semSet(_ id: Int32, _ ownership: IPCOwnership) -> Result<Int32, Errno> {
        var buffer = semid_ds()
        buffer.sem_perm.uid = ownership.uid
        buffer.sem_perm.gid = ownership.gid
        buffer.sem_perm.mode = .init(truncatingIfNeeded: ownership.mode)
        return withUnsafeMutableBytes(of: &buffer) { semctl(id, 0, SysV.IPC_SET, buffer: $0.baseAddress!) }
    }

    // MARK: credentials

    static func groups() -> [UInt32] {
        let count = getgroups(0, nil)
        guard count > 0 else { return [] }
        var list = [gid_t](repeating: 0, count: Int(count))
        let got = getgroups(count, &list)
        return Array(list.prefix(Int(max(got, 0))))
    }

    /// The model's view of the calling thread's credentials.
    static func currentCaller() -> IPCCredentials {
        IPCCredentials(uid: geteuid(), gid: getegid(), supplementaryGroups: groups(), pid: getpid(), node: 0)
    }
}

/// Runs kernel comparisons in a private IPC namespace when the kernel lets
/// this thread make one: identifiers then start from a known state (so the
/// model's can be compared exactly) and whatever a failed test leaves behind
/// dies with the namespace. Elsewhere the tests run in the current namespace
/// with random keys and map identifiers.
enum IPCSandbox {
    static func run(_ body: (_ isolated: Bool) throws -> Void) throws {
        guard geteuid() == 0 else { throw XCTSkip("comparing with the kernel needs root (seteuid, unshare)") }
        let saved = open("/proc/thread-self/ns/ipc", O_RDONLY)
        let isolated = saved >= 0 && Kernel.unshareFunction(Kernel.CLONE_NEWIPC) == 0
        defer {
            if isolated { _ = Kernel.setnsFunction(saved, Kernel.CLONE_NEWIPC) }
            if saved >= 0 { close(saved) }
        }
        try body(isolated)
    }

    /// Runs `body` with the effective uid/gid changed and no supplementary
    /// groups (root's real ids stay, so root comes back whatever happens).
    static func asUser<T>(uid: UInt32, gid: UInt32, _ body: () throws -> T) rethrows -> T {
        let groups = Kernel.groups()
        precondition(setgroups(0, nil) == 0 && setegid(gid) == 0 && seteuid(uid) == 0,
                     "cannot switch to \(uid):\(gid)")
        defer {
            precondition(seteuid(0) == 0 && setegid(0) == 0 && setgroups(groups.count, groups) == 0,
                         "cannot get root back")
        }
        return try body()
    }

    /// A key unlikely to be used by anyone else.
    static func randomKey() -> Int32 { Int32.random(in: 0x1000_0000...0x7000_0000) }
}

/// Semops run on their own threads because the kernel blocks them; each
/// reports the errno it ended with (0 for success).
final class KernelWaiters: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [UInt64: Int32] = [:]
    private var started = 0

    func start(_ waiter: UInt64, id: Int32, operations: [SemOperation], timeoutMilliseconds: Int? = nil) {
        lock.withLock { started += 1 }
        let thread = Thread { [self] in
            let timeout = timeoutMilliseconds.map { timespec(tv_sec: $0 / 1000, tv_nsec: ($0 % 1000) * 1_000_000) }
            let outcome = Kernel.semop(id, operations, timeout: timeout)
            lock.withLock { results[waiter] = outcome.error?.rawValue ?? 0 }
        }
        thread.start()
    }

    var finished: [UInt64: Int32] { lock.withLock { results } }

    var allFinished: Bool { lock.withLock { results.count == started } }

    /// Polls until `condition` holds; false after `seconds`.
    static func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }
}

/// Performs each call on the kernel and on a model, and compares the
/// answers: return values, errno, and what IPC_STAT/GETALL/GETNCNT show.
final class Twin {
    var model = SysVNamespace()
    let isolated: Bool
    /// Kernel id -> model id (they are equal in a private namespace).
    private var segmentIDs: [Int32: Int32] = [:]
    private var setIDs: [Int32: Int32] = [:]
    private var setSizes: [Int32: Int] = [:]
    /// What to remove whatever happens: kernel ids and attach addresses.
    private var createdSegments: Set<Int32> = []
    private var createdSets: Set<Int32> = []
    private var attachedAddresses: [UnsafeMutableRawPointer: Int32] = [:]
    let waiters = KernelWaiters()
    /// Final result (errno, 0 = success) of every model waiter answered.
    private(set) var modelFinished: [UInt64: Int32] = [:]

    init(isolated: Bool) { self.isolated = isolated }

    var caller: IPCCredentials { Kernel.currentCaller() }
    var now: Int64 { Int64(time(nil)) }

    /// Removes everything the kernel side created; waiters wake with EIDRM.
    func cleanUp() {
        precondition(geteuid() == 0)
        for address in attachedAddresses.keys { _ = Glibc.shmdt(address) }
        attachedAddresses.removeAll()
        for id in createdSegments { _ = Glibc.shmctl(id, IPC_RMID, nil) }
        createdSegments.removeAll()
        for id in createdSets { _ = Kernel.semctl(id, 0, SysV.IPC_RMID) }
        createdSets.removeAll()
        _ = KernelWaiters.eventually { self.waiters.allFinished }
    }

    func modelSegment(_ kernelID: Int32) -> Int32 { segmentIDs[kernelID] ?? kernelID }
    func modelSet(_ kernelID: Int32) -> Int32 { setIDs[kernelID] ?? kernelID }

    /// Same outcome; for identifiers, the same value in a private namespace
    /// and a consistent mapping anywhere.
    private func compareIdentifiers(_ kernel: Result<Int32, Errno>, _ model: Result<Int32, Errno>,
                                    map: inout [Int32: Int32], _ what: String, file: StaticString, line: UInt) {
        switch (kernel, model) {
        case (.success(let k), .success(let m)):
            if isolated { XCTAssertEqual(k, m, "\(what): identifiers differ", file: file, line: line) }
            if let known = map[k] {
                XCTAssertEqual(known, m, "\(what): kernel id \(k) maps to another model id", file: file, line: line)
            }
            map[k] = m
        default:
            compare(kernel, model, what, file: file, line: line)
        }
    }

    func compare<A, B>(_ kernel: Result<A, Errno>, _ model: Result<B, Errno>, _ what: String,
                                             file: StaticString, line: UInt) {
        switch (kernel, model) {
        case (.failure(let k), .failure(let m)):
            XCTAssertEqual(k, m, "\(what): errno differs", file: file, line: line)
        case (.success, .success):
            break
        default:
            XCTFail("\(what): kernel \(kernel), model \(model)", file: file, line: line)
        }
    }

    private func sameTime(_ kernel: Int, _ model: Int64, _ what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(kernel == 0, model == 0, "\(what): \(kernel) vs \(model)", file: file, line: line)
        XCTAssertLessThanOrEqual(abs(Int64(kernel) - model), 2, "\(what): \(kernel) vs \(model)", file: file, line: line)
    }

    private func samePermissions(_ k: ipc_perm, _ m: IPCPermissions, _ what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(k.__key, m.key, "\(what): key", file: file, line: line)
        XCTAssertEqual([k.uid, k.gid, k.cuid, k.cgid], [m.uid, m.gid, m.cuid, m.cgid], "\(what): ids", file: file,
                       line: line)
        XCTAssertEqual(UInt32(k.mode), m.mode, "\(what): mode", file: file, line: line)
        if isolated { XCTAssertEqual(k.__seq, m.seq, "\(what): seq", file: file, line: line) }
    }

    // MARK: shared memory

    @discardableResult
    func shmget(_ key: Int32, _ size: UInt64, _ flags: Int32, file: StaticString = #filePath,
                line: UInt = #line) -> Int32? {
        let kernel = Kernel.shmget(key, size, flags)
        if let id = kernel.value { createdSegments.insert(id) }
        let model = model.shmget(key: key, size: size, flags: flags, caller: caller, now: now)
        compareIdentifiers(kernel, model, map: &segmentIDs, "shmget(\(key), \(size), \(String(flags, radix: 8)))",
                           file: file, line: line)
        return kernel.value
    }

    @discardableResult
    func shmat(_ id: Int32, readOnly: Bool = false, file: StaticString = #filePath,
               line: UInt = #line) -> UnsafeMutableRawPointer? {
        let kernel = Kernel.shmat(id, readOnly: readOnly)
        if let address = kernel.value { attachedAddresses[address] = id }
        let model = model.shmAttach(id: modelSegment(id), readOnly: readOnly, caller: caller, now: now)
        compare(kernel.map { _ in 0 }, model.map { _ in 0 }, "shmat(\(id))", file: file, line: line)
        return kernel.value
    }

    func shmdt(_ address: UnsafeMutableRawPointer, file: StaticString = #filePath, line: UInt = #line) {
        let id = attachedAddresses.removeValue(forKey: address)!
        let kernel = Kernel.shmdt(address)
        let model = model.shmDetach(id: modelSegment(id), caller: caller, now: now)
        compare(kernel, model.map { _ in 0 }, "shmdt(\(id))", file: file, line: line)
    }

    func shmctl(_ id: Int32, _ command: ShmCommand, file: StaticString = #filePath, line: UInt = #line) {
        let linux: Int32
        var buffer = shmid_ds()
        switch command {
        case .stat: linux = SysV.IPC_STAT
        case .statIndex: linux = SysV.SHM_STAT
        case .statIndexAny: linux = SysV.SHM_STAT_ANY
        case .set(let o):
            linux = SysV.IPC_SET
            buffer.shm_perm.uid = o.uid
            buffer.shm_perm.gid = o.gid
            buffer.shm_perm.mode = .init(truncatingIfNeeded: o.mode)
        case .remove: linux = SysV.IPC_RMID
        case .lock: linux = SysV.SHM_LOCK
        case .unlock: linux = SysV.SHM_UNLOCK
        case .limits: linux = SysV.IPC_INFO
        case .usage: linux = SysV.SHM_INFO
        }
        let kernel = Kernel.shmctl(id, linux, &buffer)
        let modelID = (command == .statIndex || command == .statIndexAny || command == .limits || command == .usage)
            ? id : modelSegment(id)
        let model = model.shmctl(id: modelID, command: command, caller: caller, now: now)
        let what = "shmctl(\(id), \(command))"
        compare(kernel, model, what, file: file, line: line)
        guard let k = kernel.value, let m = model.value else { return }
        switch m {
        case .status(let status, let returned):
            if command == .stat || isolated { XCTAssertEqual(k, returned, what, file: file, line: line) }
            samePermissions(buffer.shm_perm, status.permissions, what, file: file, line: line)
            XCTAssertEqual(UInt64(buffer.shm_segsz), status.segmentSize, "\(what): size", file: file, line: line)
            XCTAssertEqual(UInt64(buffer.shm_nattch), status.attachCount, "\(what): nattch", file: file, line: line)
            XCTAssertEqual(buffer.shm_cpid, status.creatorPID, "\(what): cpid", file: file, line: line)
            XCTAssertEqual(buffer.shm_lpid, status.lastPID, "\(what): lpid", file: file, line: line)
            sameTime(buffer.shm_atime, status.attachTime, "\(what): atime", file: file, line: line)
            sameTime(buffer.shm_dtime, status.detachTime, "\(what): dtime", file: file, line: line)
            sameTime(buffer.shm_ctime, status.changeTime, "\(what): ctime", file: file, line: line)
        case .limits(let info, let returned):
            withUnsafeBytes(of: buffer) { raw in
                let k = raw.bindMemory(to: UInt.self) // struct shminfo: shmmax, shmmin, shmmni, shmseg, shmall
                XCTAssertEqual([UInt64(k[0]), UInt64(k[1]), UInt64(k[2]), UInt64(k[3]), UInt64(k[4])],
                               [info.shmmax, info.shmmin, info.shmmni, info.shmseg, info.shmall], what,
                               file: file, line: line)
            }
            if isolated { XCTAssertEqual(k, returned, what, file: file, line: line) }
        case .usage(let usage, let returned):
            withUnsafeBytes(of: buffer) { raw in
                // struct shm_info: int used_ids; unsigned long shm_tot, ...
                let used = raw.load(as: Int32.self)
                let total = raw.load(fromByteOffset: 8, as: UInt.self)
                if isolated {
                    XCTAssertEqual(used, usage.usedIDs, "\(what): used_ids", file: file, line: line)
                    XCTAssertEqual(UInt64(total), usage.totalPages, "\(what): shm_tot", file: file, line: line)
                }
            }
            if isolated { XCTAssertEqual(k, returned, what, file: file, line: line) }
        case .removed, .done:
            XCTAssertEqual(k, 0, what, file: file, line: line)
        }
    }

    // MARK: semaphores

    @discardableResult
    func semget(_ key: Int32, _ count: Int32, _ flags: Int32, file: StaticString = #filePath,
                line: UInt = #line) -> Int32? {
        let kernel = Kernel.semget(key, count, flags)
        if let id = kernel.value {
            createdSets.insert(id)
            if setSizes[id] == nil { setSizes[id] = Int(count) }
        }
        let model = model.semget(key: key, count: count, flags: flags, caller: caller, now: now)
        compareIdentifiers(kernel, model, map: &setIDs, "semget(\(key), \(count), \(String(flags, radix: 8)))",
                           file: file, line: line)
        return kernel.value
    }

    /// A semop that must not block (the model decides; the kernel gets
    /// IPC_NOWAIT-free operations only when the model says they complete).
    func semop(_ id: Int32, _ operations: [SemOperation], file: StaticString = #filePath, line: UInt = #line) {
        let model = model.semop(id: modelSet(id), operations: operations, waiter: WaiterID(UInt64.max),
                                caller: caller, now: now)
        guard model != .blocked else {
            _ = self.model.cancelWait(WaiterID(UInt64.max))
            return XCTFail("semop(\(id), \(operations)) would block in the model", file: file, line: line)
        }
        // A timeout keeps a wrong model from hanging the test on the kernel.
        let kernel = Kernel.semop(id, operations, timeout: timespec(tv_sec: 2, tv_nsec: 0))
        let modelResult: Result<Int32, Errno> = model == .completed ? .success(0) : .failure({
            if case .failed(let e) = model { return e } else { return .invalidArgument }
        }())
        compare(kernel, modelResult, "semop(\(id), \(operations))", file: file, line: line)
        recordModelCompletions()
    }

    func semctl(_ id: Int32, _ number: Int32, _ command: SemCommand, file: StaticString = #filePath,
                line: UInt = #line) {
        let what = "semctl(\(id), \(number), \(command))"
        let kernel: Result<Int32, Errno>
        var kernelValues: [UInt16] = []
        var kernelStatus = semid_ds()
        var kernelInfo = [Int32](repeating: 0, count: 10)
        switch command {
        case .getValue: kernel = Kernel.semctl(id, number, SysV.GETVAL)
        case .setValue(let v): kernel = Kernel.semctl(id, number, SysV.SETVAL, UInt(UInt32(bitPattern: v)))
        case .getPID: kernel = Kernel.semctl(id, number, SysV.GETPID)
        case .getNCount: kernel = Kernel.semctl(id, number, SysV.GETNCNT)
        case .getZCount: kernel = Kernel.semctl(id, number, SysV.GETZCNT)
        case .getAll:
            let r = Kernel.getAll(id, count: setSizes[id] ?? 1)
            kernelValues = r.value ?? []
            kernel = r.map { _ in 0 }
        case .setAll(let values): kernel = Kernel.setAll(id, values)
        case .stat, .statIndex, .statIndexAny:
            let linux = command == .stat ? SysV.IPC_STAT : command == .statIndex ? SysV.SEM_STAT : SysV.SEM_STAT_ANY
            let r = Kernel.semStatus(id, command: linux)
            kernelStatus = r.value?.0 ?? semid_ds()
            kernel = r.map(\.1)
        case .set(let ownership): kernel = Kernel.semSet(id, ownership)
        case .remove: kernel = Kernel.semctl(id, number, SysV.IPC_RMID)
        case .limits, .usage:
            kernel = kernelInfo.withUnsafeMutableBytes {
                Kernel.semctl(id, number, command == .limits ? SysV.IPC_INFO : SysV.SEM_INFO, buffer: $0.baseAddress!)
            }
        }
        let byIndex = [SemCommand.statIndex, .statIndexAny, .limits, .usage].contains(command)
        let model = model.semctl(id: byIndex ? id : modelSet(id), number: number, command: command, caller: caller,
                                 now: now)
        compare(kernel, model, what, file: file, line: line)
        recordModelCompletions()
        guard let k = kernel.value, let m = model.value else { return }
        switch m {
        case .done:
            XCTAssertEqual(k, 0, what, file: file, line: line)
        case .value(let v):
            XCTAssertEqual(k, v, what, file: file, line: line)
        case .values(let values):
            XCTAssertEqual(kernelValues, values, what, file: file, line: line)
        case .status(let status, let returned):
            if command == .stat || isolated { XCTAssertEqual(k, returned, what, file: file, line: line) }
            samePermissions(kernelStatus.sem_perm, status.permissions, what, file: file, line: line)
            XCTAssertEqual(UInt64(kernelStatus.sem_nsems), status.count, "\(what): nsems", file: file, line: line)
            sameTime(kernelStatus.sem_otime, status.operationTime, "\(what): otime", file: file, line: line)
            sameTime(kernelStatus.sem_ctime, status.changeTime, "\(what): ctime", file: file, line: line)
        case .limits(let info, let returned):
            // struct seminfo: semmap, semmni, semmns, semmnu, semmsl, semopm, semume, semusz, semvmx, semaem
            let modelInfo = [info.semmap, info.semmni, info.semmns, info.semmnu, info.semmsl, info.semopm,
                             info.semume, info.semusz, info.semvmx, info.semaem]
            if isolated || command == .limits {
                XCTAssertEqual(kernelInfo, modelInfo, what, file: file, line: line)
            }
            if isolated { XCTAssertEqual(k, returned, what, file: file, line: line) }
        }
    }

    // MARK: blocking semops

    /// Starts a semop on its own kernel thread and in the model under
    /// `waiter`. When the model queues it, waits until the kernel's
    /// GETNCNT/GETZCNT show it queued too (so queue order is the same).
    func blockingSemop(_ waiter: UInt64, _ id: Int32, _ operations: [SemOperation], timeoutMilliseconds: Int? = nil,
                       file: StaticString = #filePath, line: UInt = #line) {
        let modelID = modelSet(id)
        let outcome = model.semop(id: modelID, operations: operations,
                                  timeout: timeoutMilliseconds.map { SemTimeout(seconds: 0, nanoseconds: Int64($0) * 1_000_000) },
                                  waiter: WaiterID(waiter), caller: caller, now: now)
        waiters.start(waiter, id: id, operations: operations, timeoutMilliseconds: timeoutMilliseconds)
        switch outcome {
        case .blocked:
            let queued = KernelWaiters.eventually { self.waitCounts(kernel: id) == self.modelWaitCounts(id) }
            XCTAssertTrue(queued, "waiter \(waiter) did not queue like the model's", file: file, line: line)
        case .completed:
            modelFinished[waiter] = 0
        case .failed(let error):
            modelFinished[waiter] = error.rawValue
        }
        recordModelCompletions()
    }

    /// The waiter's timeout expired in the kernel: the model cancels it.
    func expectTimeout(_ waiter: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let ended = KernelWaiters.eventually { self.waiters.finished[waiter] != nil }
        XCTAssertTrue(ended, "kernel waiter \(waiter) never timed out", file: file, line: line)
        if model.cancelWait(WaiterID(waiter)) {
            modelFinished[waiter] = Errno.resourceTemporarilyUnavailable.rawValue
        }
    }

    private func recordModelCompletions() {
        for wakeup in takeWakeups() { modelFinished[wakeup.waiter.rawValue] = wakeup.error?.rawValue ?? 0 }
    }

    /// The kernel's blocked threads and the model's answered waiters agree,
    /// and so do the semaphores' values and wait counts.
    func compareWaiters(_ id: Int32, file: StaticString = #filePath, line: UInt = #line) {
        recordModelCompletions()
        let expected = modelFinished
        let settled = KernelWaiters.eventually { self.waiters.finished.count >= expected.count }
        XCTAssertTrue(settled, "kernel finished \(waiters.finished), model \(expected)", file: file, line: line)
        XCTAssertEqual(waiters.finished, expected, "finished waiters and their errno", file: file, line: line)
        guard setSizes[id] != nil, model.semaphoreSetIdentifiers.contains(modelSet(id)) else { return }
        XCTAssertEqual(Kernel.getAll(id, count: setSizes[id]!).value, model.values(modelSet(id)), "values",
                       file: file, line: line)
        XCTAssertEqual(waitCounts(kernel: id), modelWaitCounts(id), "GETNCNT/GETZCNT", file: file, line: line)
    }

    private func waitCounts(kernel id: Int32) -> [Int32] {
        (0..<Int32(setSizes[id] ?? 0)).flatMap { n in
            [Kernel.semctl(id, n, SysV.GETNCNT).value ?? -1, Kernel.semctl(id, n, SysV.GETZCNT).value ?? -1]
        }
    }

    private func modelWaitCounts(_ id: Int32) -> [Int32] {
        (0..<Int32(setSizes[id] ?? 0)).flatMap { n in
            [model.count(modelSet(id), n, zero: false) ?? -1, model.count(modelSet(id), n, zero: true) ?? -1]
        }
    }
}
#endif
