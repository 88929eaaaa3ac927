// The Swift side of the interposers (Sources/CDSMPreload/preload.c). Each
// entry point runs on the calling program thread: it checks what it can
// locally, then hands the request to the runtime thread and sleeps until
// the answer comes back. Results are >= 0 or -errno.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMTransport
import DSMSysV
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) var runtimeNode: Node!

/// x86-64's SHMLBA: attach addresses are rounded to it with SHM_RND.
let shmLowBoundary: UInt64 = 4096

/// Read once, before main.
nonisolated(unsafe) var processConfiguration: Configuration?

@_cdecl("dsm_swift_configured")
public func dsmSwiftConfigured() -> Int32 {
    processConfiguration = Configuration.fromEnvironment()
    guard let configuration = processConfiguration else { return 0 }
    logPrefix = "dsm[node \(configuration.node)]"
    // Before main, so that every thread the program starts stays there.
    if configuration.bind { bindToProcessor(configuration) }
    return 1
}

@_cdecl("dsm_swift_start")
public func dsmSwiftStart() -> Int32 {
    guard let configuration = processConfiguration else { return 0 }
    // On another host, or after the program lowered its own limit.
    if let shortage = descriptorShortage(nodes: configuration.nodes) { fatal(shortage) }
    takeSecretFromEnvironment()
    guard let node = Node(configuration: configuration) else { return 0 }
    runtimeNode = node
    if node.pages.releaseConsistent {
        // libgomp's barriers and locks are atomics on shared words, which no
        // release or acquire point sees: its threads would read stale data.
        if configuration.image && dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD) != nil {
            fatal("""
                --consistency release does not see OpenMP's synchronisation (libgomp's barriers are atomics                 on shared words): run OpenMP programs with the default, --consistency sequential
                """)
        }
        dsm_release_enable()
    }
    var thread = pthread_t()
    let r = pthread_create(&thread, nil, { _ in runtimeNode.run() }, nil)
    if r != 0 { fatal("cannot start the runtime thread: \(Errno(rawValue: r))") }
    if configuration.verbose { log("joined a run of \(configuration.nodes) nodes") }
    return 1
}

/// dsmrun --bind: node i runs on CPU i mod CPUs, its memory preferably on
/// that CPU's NUMA node (libnuma, when installed).
func bindToProcessor(_ configuration: Configuration) {
    let cpus = max(cdsm_online_cpus(), 1)
    let cpu = Int32(configuration.node) % cpus
    let r = cdsm_pin_to_cpu(cpu)
    if r != 0 {
        log("--bind: cannot pin to CPU \(cpu): \(Errno(rawValue: -r))")
        return
    }
    let numaNode = cdsm_numa_node_of_cpu(cpu)
    if numaNode >= 0 { _ = cdsm_numa_prefer(numaNode) }
    if configuration.verbose {
        let memory = numaNode >= 0 ? "memory on NUMA node \(numaNode) of \(cdsm_numa_nodes())" : "no libnuma: memory not bound"
        log("bound to CPU \(cpu) of \(cpus), \(memory)")
    }
}

@_cdecl("dsm_swift_exit")
public func dsmSwiftExit(_ status: Int32) {
    guard let node = runtimeNode else { return }
    if node.configuration.image {
        // The program's status is node 0's, whatever it is: every node
        // leaves together once node 0 has told them the program ended.
        if node.id == 0 { _ = node.calls.perform(.endProgram) }
        _ = node.calls.perform(.exitArrive)
        return
    }
    // A failing node leaves at once; the launcher stops the others. A node
    // that finished well keeps serving its pages until every node is done.
    // Its streams are flushed first: forwarded to node 0, their text must
    // leave before node 0 may end.
    if node.output != nil { fflush(nil) }
    if status == 0 { _ = node.calls.perform(.exitArrive) }
    node.output?.restore()
}

@_cdecl("dsm_swift_node_id")
public func dsmSwiftNodeID() -> Int32 { Int32(processConfiguration?.node ?? 0) }

@_cdecl("dsm_swift_nodes")
public func dsmSwiftNodes() -> Int32 { Int32(processConfiguration?.nodes ?? 1) }

@_cdecl("dsm_swift_barrier")
public func dsmSwiftBarrier() -> Int32 { Int32(runtimeNode.calls.perform(.barrier).result) }

// MARK: shared memory

@_cdecl("dsm_swift_shmget")
public func dsmSwiftShmget(_ key: Int32, _ size: UInt64, _ flags: Int32) -> Int {
    Int(runtimeNode.calls.perform(.shmget(key: key, size: size, flags: flags)).result)
}

@_cdecl("dsm_swift_shmat")
public func dsmSwiftShmat(_ id: Int32, _ address: UInt64, _ flags: Int32) -> Int {
    var address = address
    if address != 0 {
        if flags & SHM_RND != 0 {
            // Rounded down to 0 it means "anywhere", as on Linux without SHM_REMAP.
            address &= ~(shmLowBoundary - 1)
        } else if address % shmLowBoundary != 0 {
            return -Int(EINVAL)
        }
    }
    let readOnly = flags & SHM_RDONLY != 0
    let execute = flags & SysV.SHM_EXEC != 0
    let node = runtimeNode!
    let attached = node.calls.perform(.shmAttach(id: id, readOnly: readOnly, execute: execute))
    guard attached.result >= 0 else { return Int(attached.result) }
    var r = WireReader(attached.data)
    let container: UInt32 = r.get()
    let pages: UInt32 = r.get()
    let canonical: UInt64 = r.get()
    if r.failed { fatal("node 0 broke the protocol: a short answer to shmat") }
    if let problem = wireContainerProblem(container, pages: pages) { fatal("node 0 broke the protocol: \(problem)") }
    let mapped = node.calls.perform(.mapAttachment(container: container, pages: pages, canonical: canonical,
                                             address: address, fixed: address != 0, readOnly: readOnly, execute: execute, shmid: id))
    if mapped.result < 0 { _ = node.calls.perform(.shmDetach(id: id)) }
    return Int(mapped.result)
}

@_cdecl("dsm_swift_shmdt")
public func dsmSwiftShmdt(_ address: UInt64) -> Int {
    let node = runtimeNode!
    let unmapped = node.calls.perform(.unmapAttachment(address: address))
    guard unmapped.result >= 0 else { return Int(unmapped.result) }
    return Int(node.calls.perform(.shmDetach(id: Int32(unmapped.result))).result)
}

@_cdecl("dsm_swift_shmctl")
public func dsmSwiftShmctl(_ id: Int32, _ command: Int32, _ status: UnsafeMutablePointer<dsm_shm_status>,
                           _ info: UnsafeMutablePointer<dsm_ipc_info>) -> Int {
    let p = status.pointee.perm
    let reply = runtimeNode.calls.perform(.shmctl(id: id, command: command, uid: p.uid, gid: p.gid, mode: p.mode))
    if reply.result >= 0 && !reply.data.isEmpty {
        if command == SysV.IPC_INFO || command == SysV.SHM_INFO {
            InfoWire.decode(reply.data, into: info)
        } else {
            var r = WireReader(reply.data)
            status.pointee = ShmStatusWire.read(&r)
        }
    }
    return Int(reply.result)
}

// MARK: semaphores

@_cdecl("dsm_swift_semget")
public func dsmSwiftSemget(_ key: Int32, _ count: Int32, _ flags: Int32) -> Int {
    Int(runtimeNode.calls.perform(.semget(key: key, count: count, flags: flags)).result)
}

@_cdecl("dsm_swift_semop")
public func dsmSwiftSemop(_ id: Int32, _ operations: UnsafePointer<dsm_sem_operation>?, _ count: UInt64,
                          _ timeout: Int64) -> Int {
    let ops = Array(UnsafeBufferPointer(start: operations, count: Int(count)))
    return Int(runtimeNode.calls.performInterruptibly(.semop(id: id, operations: ops, timeoutNanoseconds: timeout)).result)
}

@_cdecl("dsm_swift_semctl")
public func dsmSwiftSemctl(_ id: Int32, _ number: Int32, _ command: Int32, _ value: Int32,
                           _ values: UnsafeMutablePointer<UInt16>?, _ status: UnsafeMutablePointer<dsm_sem_status>,
                           _ info: UnsafeMutablePointer<dsm_ipc_info>) -> Int {
    let node = runtimeNode!
    var toSet: [UInt16] = []
    if command == SETALL, let values {
        // The set's size is needed to read the caller's array: ask first
        // (with the id and alter-permission checks the kernel makes before
        // it copies sem_nsems values).
        let count = node.calls.perform(.semaphoreCount(id: id))
        if count.result < 0 { return Int(count.result) }
        toSet = [UInt16](repeating: 0, count: Int(count.result))
        if toSet.withUnsafeMutableBytes({ cdsm_copy_in($0.baseAddress, values, $0.count) }) != 0 { return -Int(EFAULT) }
    } else if command == SETALL {
        return -Int(EFAULT)
    }
    let p = status.pointee.perm
    let reply = node.calls.perform(.semctl(id: id, number: number, command: command, value: value, values: toSet,
                                     uid: p.uid, gid: p.gid, mode: p.mode))
    guard reply.result >= 0 else { return Int(reply.result) }
    var r = WireReader(reply.data)
    if command == GETALL {
        let got: [UInt16] = r.getArray()
        if got.withUnsafeBytes({ cdsm_copy_out(values, $0.baseAddress, $0.count) }) != 0 { return -Int(EFAULT) }
    } else if command == SysV.IPC_INFO || command == SysV.SEM_INFO {
        InfoWire.decode(reply.data, into: info)
    } else if !reply.data.isEmpty {
        status.pointee = SemStatusWire.read(&r)
    }
    return Int(reply.result)
}

// MARK: status records on the wire

enum ShmStatusWire {
    static func write(_ s: dsm_shm_status, into w: inout WireWriter) {
        PermWire.write(s.perm, into: &w)
        w.put(s.segsz); w.put(s.atime); w.put(s.dtime); w.put(s.ctime)
        w.put(s.cpid); w.put(s.lpid); w.put(s.nattch)
    }

    static func read(_ r: inout WireReader) -> dsm_shm_status {
        var s = dsm_shm_status()
        s.perm = PermWire.read(&r)
        s.segsz = r.get(); s.atime = r.get(); s.dtime = r.get(); s.ctime = r.get()
        s.cpid = r.get(); s.lpid = r.get(); s.nattch = r.get()
        return s
    }
}

enum SemStatusWire {
    static func write(_ s: dsm_sem_status, into w: inout WireWriter) {
        PermWire.write(s.perm, into: &w)
        w.put(s.otime); w.put(s.ctime); w.put(s.nsems)
    }

    static func read(_ r: inout WireReader) -> dsm_sem_status {
        var s = dsm_sem_status()
        s.perm = PermWire.read(&r)
        s.otime = r.get(); s.ctime = r.get(); s.nsems = r.get()
        return s
    }
}

enum PermWire {
    static func write(_ p: dsm_ipc_perm, into w: inout WireWriter) {
        w.put(p.key); w.put(p.uid); w.put(p.gid); w.put(p.cuid); w.put(p.cgid); w.put(p.mode); w.put(p.seq)
    }

    static func read(_ r: inout WireReader) -> dsm_ipc_perm {
        dsm_ipc_perm(key: r.get(), uid: r.get(), gid: r.get(), cuid: r.get(), cgid: r.get(), mode: r.get(), seq: r.get())
    }
}

/// IPC_INFO / SHM_INFO / SEM_INFO records on the wire: a list of numbers.
enum InfoWire {
    static func encode(_ values: [Int64]) -> [UInt8] {
        var w = WireWriter()
        w.put(array: values)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8], into info: UnsafeMutablePointer<dsm_ipc_info>) {
        var r = WireReader(bytes)
        let values: [Int64] = r.getArray()
        withUnsafeMutableBytes(of: &info.pointee.values) { raw in
            let slots = raw.bindMemory(to: Int64.self)
            for (i, v) in values.prefix(slots.count).enumerated() { slots[i] = v }
        }
    }
}
