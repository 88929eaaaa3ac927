// The program's threads in image mode. A thread is placed on a node when it
// is created (round-robin from the creator's next node by default), started
// there by the node's host thread on a stack in the DSM heap, and known by
// its pthread_t, which lies in that stack and so is unique cluster-wide and
// names the node that hosts it. The hosting node's runtime thread keeps its
// record: finished or not, its value, detached, who waits to join it.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct HostedThread {
    var finished = false
    var value: UInt64 = 0
    var detached = false
    var joiner: ReplyDestination?
    /// Set once the host has joined the kernel thread: its stack, no longer
    /// used, to free.
    var reapedStack: UInt64?
    /// Joined or detached-and-finished: nobody will ask about it again.
    var released = false
    /// Started and not finished: counted in Node.runningProgramThreads.
    var running = false
}

/// Where the next thread goes, counted per creating node.
let placementCounter = Atomic<Int>(0)

enum Placement: String {
    case roundRobin = "round-robin"
    /// Every thread on its creator's node (a baseline for measurements).
    case local
}

extension CallRouter {
    func handleThreadRequest(_ request: ServiceRequest, reply: ReplyDestination) {
        switch request {
        case .spawnThread(let routine, let argument, let stackSize, let detached, _):
            let token = nextSpawnToken
            nextSpawnToken += 1
            pendingSpawns[token] = (reply, detached)
            dsm_host_post(Int32(DSM_HOST_SPAWN), routine, argument, stackSize, token)
        case .joinThread(let thread, _):
            guard var t = hostedThreads[thread], !t.released else { return answer(reply, .error(.noSuchProcess)) }
            if t.detached || t.joiner != nil { return answer(reply, .error(.invalidArgument)) }
            if t.finished {
                t.released = true
                answer(reply, ServiceReply(result: 0, data: encode(t.value)))
                settle(thread, t)
            } else {
                t.joiner = reply
                hostedThreads[thread] = t
            }
        case .detachThread(let thread, _):
            guard var t = hostedThreads[thread], !t.released else { return answer(reply, .error(.noSuchProcess)) }
            if t.detached { return answer(reply, .error(.invalidArgument)) }
            t.detached = true
            if t.finished { t.released = true }
            settle(thread, t)
            answer(reply, ServiceReply(result: 0))
        case .remoteFree(let address, _):
            dsm_heap_free_here(UnsafeMutableRawPointer(bitPattern: UInt(address)))
            answer(reply, ServiceReply(result: 0))
        case .remoteUsableSize(let address, _):
            answer(reply, ServiceReply(result: Int64(dsm_heap_usable_size(UnsafeRawPointer(bitPattern: UInt(address))))))
        case .programExit(let status):
            // exit() runs on node 0, where main and the atexit handlers are.
            dsm_host_post(Int32(DSM_HOST_EXIT), UInt64(UInt32(bitPattern: status)), 0, 0, 0)
            answer(reply, ServiceReply(result: 0))
        case .programEnd:
            dsm_host_post(Int32(DSM_HOST_END), 0, 0, 0, 0)
            answer(reply, ServiceReply(result: 0))
        case .threadCount(let delta):
            programThreads += Int(delta)
            if programThreads <= 0 {
                for w in threadsGoneWaiters { answer(w, ServiceReply(result: 0)) }
                threadsGoneWaiters.removeAll()
            }
            answer(reply, ServiceReply(result: 0))
        case .awaitThreads:
            if programThreads <= 0 {
                answer(reply, ServiceReply(result: 0))
            } else {
                threadsGoneWaiters.append(reply)
            }
        default:
            preconditionFailure("not a thread request")
        }
    }

    /// Local requests of the host thread and of finishing threads.
    func threadEvent(_ request: ServiceRequest) {
        switch request {
        case .spawned(let token, let thread, let error):
            guard let (reply, detached) = pendingSpawns.removeValue(forKey: token) else { return }
            if error != 0 { return answer(reply, .error(Errno(rawValue: error))) }
            var t = hostedThreads[thread] ?? HostedThread()
            t.detached = detached
            if !t.finished {
                t.running = true
                runningProgramThreads += 1
            }
            if t.finished && detached { t.released = true }
            settle(thread, t)
            answer(reply, ServiceReply(result: 0, data: encode(thread)))
        case .threadFinished(let thread, let value):
            deliver(.threadCount(delta: -1), to: 0)
            var t = hostedThreads[thread] ?? HostedThread()
            t.finished = true
            t.value = value
            if t.running {
                t.running = false
                runningProgramThreads -= 1
            }
            if let joiner = t.joiner {
                t.joiner = nil
                t.released = true
                answer(joiner, ServiceReply(result: 0, data: encode(value)))
            } else if t.detached {
                t.released = true
            }
            settle(thread, t)
        case .threadReaped(let thread, let stack):
            var t = hostedThreads[thread] ?? HostedThread()
            t.reapedStack = stack
            settle(thread, t)
        default:
            preconditionFailure("not a thread event")
        }
    }

    /// Stores the record, or drops it (and frees the stack) once the thread
    /// is both gone and released: before that its id, the address of its
    /// stack, must not be reused.
    private func settle(_ thread: UInt64, _ t: HostedThread) {
        if let stack = t.reapedStack, t.released {
            hostedThreads[thread] = nil
            dsm_image_free_stack(UnsafeMutableRawPointer(bitPattern: UInt(stack)))
        } else {
            hostedThreads[thread] = t
        }
    }

    private func encode(_ value: UInt64) -> [UInt8] {
        var w = WireWriter()
        w.put(value)
        return w.bytes
    }
}

// MARK: entry points (program threads and the host thread)

@_cdecl("dsm_swift_thread_create")
public func dsmSwiftThreadCreate(_ routine: UInt64, _ argument: UInt64, _ stackSize: UInt64, _ detached: Int32,
                                 _ thread: UnsafeMutablePointer<UInt64>) -> Int {
    let node = runtimeNode!
    let target: NodeID
    switch node.configuration.placement {
    case .local: target = node.id
    case .roundRobin:
        let k = placementCounter.wrappingAdd(1, ordering: .relaxed).oldValue
        target = (node.id + 1 + k) % node.nodes
    }
    // Counted before it exists: node 0 then never sees the count drop to 0
    // while the new thread is on its way (main may be in pthread_exit).
    node.calls.post(.threadCount(delta: 1), caller: node.calls.anonymousCaller)
    let reply = node.calls.perform(.spawnThread(routine: routine, argument: argument, stackSize: stackSize,
                                          detached: detached != 0, node: target))
    guard reply.result >= 0 else {
        node.calls.post(.threadCount(delta: -1), caller: node.calls.anonymousCaller)
        return Int(reply.result)
    }
    var r = WireReader(reply.data)
    thread.pointee = r.get()
    return 0
}

@_cdecl("dsm_swift_spawned")
public func dsmSwiftSpawned(_ token: UInt64, _ thread: UInt64, _ error: Int32) {
    _ = runtimeNode.calls.perform(.spawned(token: token, thread: thread, error: error))
}

@_cdecl("dsm_swift_thread_finished")
public func dsmSwiftThreadFinished(_ thread: UInt64, _ value: UInt64) {
    _ = runtimeNode.calls.perform(.threadFinished(thread: thread, value: value))
}

@_cdecl("dsm_swift_thread_reaped")
public func dsmSwiftThreadReaped(_ thread: UInt64, _ stack: UInt64) {
    _ = runtimeNode.calls.perform(.threadReaped(thread: thread, stack: stack))
}

@_cdecl("dsm_swift_thread_join")
public func dsmSwiftThreadJoin(_ thread: UInt64, _ node: Int32, _ value: UnsafeMutablePointer<UInt64>) -> Int {
    let reply = runtimeNode.calls.perform(.joinThread(thread: thread, node: Int(node)))
    guard reply.result >= 0 else { return Int(reply.result) }
    var r = WireReader(reply.data)
    value.pointee = r.get()
    return 0
}

@_cdecl("dsm_swift_thread_detach")
public func dsmSwiftThreadDetach(_ thread: UInt64, _ node: Int32) -> Int {
    Int(runtimeNode.calls.perform(.detachThread(thread: thread, node: Int(node))).result)
}

@_cdecl("dsm_swift_remote_free")
public func dsmSwiftRemoteFree(_ address: UInt64, _ node: Int32) {
    _ = runtimeNode.calls.perform(.remoteFree(address: address, node: Int(node)))
}

@_cdecl("dsm_swift_remote_usable_size")
public func dsmSwiftRemoteUsableSize(_ address: UInt64, _ node: Int32) -> Int {
    Int(runtimeNode.calls.perform(.remoteUsableSize(address: address, node: Int(node))).result)
}

/// main called pthread_exit: wait until no thread of the program is left.
@_cdecl("dsm_swift_await_threads")
public func dsmSwiftAwaitThreads() {
    _ = runtimeNode.calls.perform(.awaitThreads)
}

@_cdecl("dsm_swift_program_exit")
public func dsmSwiftProgramExit(_ status: Int32) {
    _ = runtimeNode.calls.perform(.programExit(status: status))
}
