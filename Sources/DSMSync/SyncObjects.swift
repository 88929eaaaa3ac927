/// The synchronisation objects whose home is one node, as a pure model:
/// requests go in, replies (and unlocks on behalf of condition waiters) come
/// out. No I/O, no clock: deadlines are given and checked by the caller.
///
/// Objects are named by their address, which is the same on every node in
/// image mode; the object's own memory is never read or written here, so a
/// lock word never moves between nodes: only the grant does, and the pages
/// the lock protects follow by coherence.
///
/// Results follow the runtime's convention: >= 0, or -errno.
public struct SyncObjects<Waiter> {
    public init() {}

    struct Pending {
        var thread: UInt64
        var waiter: Waiter?
        var deadline: UInt64?
        var write = false
    }

    struct Mutex {
        var kind: MutexKind?
        var owner: UInt64?
        var count = 0
        var queue: [Pending] = []
    }

    struct RWLock {
        var writer: UInt64?
        var readers = 0
        var queue: [Pending] = []
    }

    struct Barrier {
        var count: UInt32
        var arrived: [Pending] = []
    }

    struct Semaphore {
        var value: UInt32 = 0
        var queue: [Pending] = []
    }

    struct Futex {
        var sequence: UInt64 = 0
        var queue: [Pending] = []
    }

    var mutexes: [UInt64: Mutex] = [:]
    var conditions: [UInt64: [Pending]] = [:]
    var rwlocks: [UInt64: RWLock] = [:]
    var barriers: [UInt64: Barrier] = [:]
    var semaphores: [UInt64: Semaphore] = [:]
    var futexes: [UInt64: Futex] = [:]

    /// Objects with a thread waiting on a deadline.
    public private(set) var nextDeadline: UInt64?

    public enum Action {
        case reply(Waiter, Int64)
        /// A condition wait releases its mutex: unlock `mutex` for `thread`
        /// at the mutex's home (a notice: nobody waits for its answer).
        case unlockMutex(UInt64, thread: UInt64)
    }

    /// The result of mutexLock when neither the request nor the home knows
    /// the mutex's kind (a statically initialised mutex): the caller reads it
    /// from the object and asks again.
    public static var kindNeeded: Int64 { 1 }
    /// The result of barrierWait for the one thread that gets
    /// PTHREAD_BARRIER_SERIAL_THREAD.
    public static var serialThread: Int64 { 1 }

    public mutating func handle(_ object: UInt64, _ operation: SyncOperation, thread: UInt64, deadline: UInt64?,
                                waiter: Waiter?) -> [Action] {
        var out: [Action] = []
        func reply(_ r: Int64) { if let waiter { out.append(.reply(waiter, r)) } }
        let me = Pending(thread: thread, waiter: waiter, deadline: deadline)
        switch operation {
        case .mutexInit(let kind):
            mutexes[object] = Mutex(kind: kind)
            reply(0)
        case .mutexLock(let kind, let tryOnly):
            var m = mutexes[object] ?? Mutex()
            if m.kind == nil {
                guard let kind else {
                    reply(Self.kindNeeded)
                    return out
                }
                m.kind = kind
            }
            if m.owner == nil {
                m.owner = thread
                m.count = 1
                reply(0)
            } else if m.owner == thread && m.kind == .recursive {
                m.count += 1
                reply(0)
            } else if m.owner == thread && m.kind == .errorCheck {
                reply(-SyncErrno.EDEADLK)
            } else if tryOnly {
                reply(-SyncErrno.EBUSY)
            } else {
                m.queue.append(me)
                noteDeadline(deadline)
            }
            mutexes[object] = m
        case .mutexUnlock:
            guard var m = mutexes[object], let owner = m.owner else {
                reply(mutexes[object]?.kind == MutexKind.normal || mutexes[object]?.kind == nil ? 0 : -SyncErrno.EPERM)
                break
            }
            if owner != thread && m.kind != .normal {
                reply(-SyncErrno.EPERM)
                break
            }
            if m.kind == .recursive && m.count > 1 {
                m.count -= 1
            } else if m.queue.isEmpty {
                m.owner = nil
                m.count = 0
            } else {
                let next = m.queue.removeFirst()
                m.owner = next.thread
                m.count = 1
                if let w = next.waiter { out.append(.reply(w, 0)) }
            }
            mutexes[object] = m
            reply(0)
        case .mutexDestroy:
            if let m = mutexes[object], m.owner != nil || !m.queue.isEmpty {
                reply(-SyncErrno.EBUSY)
            } else {
                mutexes[object] = nil
                reply(0)
            }
        case .condWait(let mutex):
            conditions[object, default: []].append(me)
            noteDeadline(deadline)
            out.append(.unlockMutex(mutex, thread: thread))
        case .condSignal:
            if var q = conditions[object], !q.isEmpty {
                let next = q.removeFirst()
                conditions[object] = q.isEmpty ? nil : q
                if let w = next.waiter { out.append(.reply(w, 0)) }
            }
            reply(0)
        case .condBroadcast:
            for p in conditions.removeValue(forKey: object) ?? [] {
                if let w = p.waiter { out.append(.reply(w, 0)) }
            }
            reply(0)
        case .condDestroy:
            reply(conditions[object]?.isEmpty == false ? -SyncErrno.EBUSY : 0)
        case .barrierInit(let count):
            if count == 0 {
                reply(-SyncErrno.EINVAL)
            } else if let b = barriers[object], !b.arrived.isEmpty {
                reply(-SyncErrno.EBUSY)
            } else {
                barriers[object] = Barrier(count: count)
                reply(0)
            }
        case .barrierWait:
            guard var b = barriers[object] else {
                reply(-SyncErrno.EINVAL)
                break
            }
            b.arrived.append(me)
            if b.arrived.count == Int(b.count) {
                // The last to arrive is the serial thread, as in glibc.
                for (i, p) in b.arrived.enumerated() {
                    if let w = p.waiter { out.append(.reply(w, i == b.arrived.count - 1 ? Self.serialThread : 0)) }
                }
                b.arrived.removeAll()
            }
            barriers[object] = b
        case .barrierDestroy:
            if let b = barriers[object], !b.arrived.isEmpty {
                reply(-SyncErrno.EBUSY)
            } else {
                barriers[object] = nil
                reply(0)
            }
        case .readLock(let tryOnly), .writeLock(let tryOnly):
            let write = operation == .writeLock(tryOnly: tryOnly)
            var l = rwlocks[object] ?? RWLock()
            if l.writer == thread {
                reply(-SyncErrno.EDEADLK)
            } else if write ? (l.writer == nil && l.readers == 0) : (l.writer == nil) {
                if write { l.writer = thread } else { l.readers += 1 }
                reply(0)
            } else if tryOnly {
                reply(-SyncErrno.EBUSY)
            } else {
                var p = me
                p.write = write
                l.queue.append(p)
                noteDeadline(deadline)
            }
            rwlocks[object] = l
        case .rwUnlock:
            guard var l = rwlocks[object] else {
                reply(-SyncErrno.EPERM)
                break
            }
            if l.writer == thread {
                l.writer = nil
            } else if l.readers > 0 {
                l.readers -= 1
            } else {
                reply(-SyncErrno.EPERM)
                break
            }
            grantReadersAndWriters(&l, into: &out)
            rwlocks[object] = l.writer == nil && l.readers == 0 && l.queue.isEmpty ? nil : l
            reply(0)
        case .rwDestroy:
            if let l = rwlocks[object], l.writer != nil || l.readers > 0 || !l.queue.isEmpty {
                reply(-SyncErrno.EBUSY)
            } else {
                rwlocks[object] = nil
                reply(0)
            }
        case .semInit(let value):
            semaphores[object] = Semaphore(value: value)
            reply(0)
        case .semWait(let tryOnly):
            var s = semaphores[object] ?? Semaphore()
            if s.value > 0 {
                s.value -= 1
                reply(0)
            } else if tryOnly {
                reply(-SyncErrno.EAGAIN)
            } else {
                s.queue.append(me)
                noteDeadline(deadline)
            }
            semaphores[object] = s
        case .semPost:
            var s = semaphores[object] ?? Semaphore()
            if !s.queue.isEmpty {
                let next = s.queue.removeFirst()
                if let w = next.waiter { out.append(.reply(w, 0)) }
                reply(0)
            } else if s.value == Int32.max.magnitude {
                reply(-SyncErrno.EOVERFLOW)
            } else {
                s.value += 1
                reply(0)
            }
            semaphores[object] = s
        case .semValue:
            reply(Int64(semaphores[object]?.value ?? 0))
        case .semDestroy:
            semaphores[object] = nil
            reply(0)
        case .futexSequence:
            reply(Int64(truncatingIfNeeded: futexes[object]?.sequence ?? 0))
        case .futexWait(let sequence):
            var f = futexes[object] ?? Futex()
            if f.sequence != sequence {
                // Woken between the caller's look at the word and now.
                reply(-SyncErrno.EAGAIN)
            } else {
                f.queue.append(me)
                noteDeadline(deadline)
                futexes[object] = f
            }
        case .futexWake(let count):
            var f = futexes[object] ?? Futex()
            f.sequence &+= 1
            var woken: Int64 = 0
            while woken < Int64(count), !f.queue.isEmpty {
                let next = f.queue.removeFirst()
                if let w = next.waiter { out.append(.reply(w, 0)) }
                woken += 1
            }
            futexes[object] = f
            reply(woken)
        }
        return out
    }

    /// After an unlock: readers go in while no writer holds the lock (glibc's
    /// default prefers readers); a writer goes in when nobody holds it.
    private func grantReadersAndWriters(_ l: inout RWLock, into out: inout [Action]) {
        var rest: [Pending] = []
        for p in l.queue {
            if p.write {
                if l.writer == nil && l.readers == 0 {
                    l.writer = p.thread
                    if let w = p.waiter { out.append(.reply(w, 0)) }
                } else {
                    rest.append(p)
                }
            } else if l.writer == nil {
                l.readers += 1
                if let w = p.waiter { out.append(.reply(w, 0)) }
            } else {
                rest.append(p)
            }
        }
        l.queue = rest
    }

    private mutating func noteDeadline(_ deadline: UInt64?) {
        guard let deadline else { return }
        if nextDeadline == nil || deadline < nextDeadline! { nextDeadline = deadline }
    }

    /// Waiters whose deadline has passed get ETIMEDOUT. A condition waiter
    /// that times out still has its mutex to take again (its caller does that).
    public mutating func expire(now: UInt64) -> [Action] {
        guard let next = nextDeadline, next <= now else { return [] }
        var out: [Action] = []
        var earliest: UInt64?
        func sweep(_ queue: inout [Pending]) {
            queue.removeAll { p in
                guard let d = p.deadline else { return false }
                if d <= now {
                    if let w = p.waiter { out.append(.reply(w, -SyncErrno.ETIMEDOUT)) }
                    return true
                }
                if earliest == nil || d < earliest! { earliest = d }
                return false
            }
        }
        for key in Array(mutexes.keys) { sweep(&mutexes[key]!.queue) }
        for key in Array(conditions.keys) {
            sweep(&conditions[key]!)
            if conditions[key]!.isEmpty { conditions[key] = nil }
        }
        for key in Array(rwlocks.keys) { sweep(&rwlocks[key]!.queue) }
        for key in Array(semaphores.keys) { sweep(&semaphores[key]!.queue) }
        for key in Array(futexes.keys) { sweep(&futexes[key]!.queue) }
        nextDeadline = earliest
        return out
    }
}

public enum MutexKind: UInt8, Sendable {
    case normal = 0, recursive = 1, errorCheck = 2
}

/// What a program thread asks of a synchronisation object.
public enum SyncOperation: Equatable, Sendable {
    case mutexInit(MutexKind)
    /// `kind` nil: the caller does not know it (see `kindNeeded`).
    case mutexLock(kind: MutexKind?, tryOnly: Bool)
    case mutexUnlock
    case mutexDestroy
    /// Wait on the condition and release `mutex` (for the same thread).
    case condWait(mutex: UInt64)
    case condSignal
    case condBroadcast
    case condDestroy
    case barrierInit(count: UInt32)
    case barrierWait
    case barrierDestroy
    case readLock(tryOnly: Bool)
    case writeLock(tryOnly: Bool)
    case rwUnlock
    case rwDestroy
    case semInit(value: UInt32)
    case semWait(tryOnly: Bool)
    case semPost
    case semValue
    case semDestroy
    /// The futex's wake counter: a wait names the value it saw, so a wake
    /// between the caller's check of the word and its wait is not lost.
    case futexSequence
    case futexWait(sequence: UInt64)
    case futexWake(count: Int32)
}

/// The few errno values the model returns (Linux's numbers).
public enum SyncErrno {
    public static let EPERM: Int64 = 1
    public static let EAGAIN: Int64 = 11
    public static let EBUSY: Int64 = 16
    public static let EINVAL: Int64 = 22
    public static let EDEADLK: Int64 = 35
    public static let EOVERFLOW: Int64 = 75
    public static let ETIMEDOUT: Int64 = 110
}
