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
///
/// Effects go out through the caller's `SyncEffects` sink, in order, as
/// DSMCoherence's do through `CoherenceEffects`: nothing is collected into
/// an array on the way.
public struct SyncObjects<Waiter> {
    public init() {}

    struct Pending {
        var thread: UInt64
        var waiter: Waiter?
        var deadline: UInt64?
        var write = false
    }

    /// A mutex (or spin lock, or pthread_once) is owned by a node: that
    /// node's threads lock and unlock it locally while it holds the token,
    /// and give it back when recalled (Sources/CDSMPreload/sync.c).
    struct Token {
        var holder: Int?
        var queue: [Int] = []
        var recalled = false
        /// A trylock from another node: the holder is asked to give the
        /// token up only if its mutex is free (`tryRecall`).
        var trying: (node: Int, waiter: Waiter?)?
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

    var tokens: [UInt64: Token] = [:]
    /// Condition waiters by ticket (`thread` holds the ticket, `write`
    /// marks a ticket signalled before its waiter came to wait).
    var conditions: [UInt64: [Pending]] = [:]
    var nextTicket: UInt64 = 1
    var rwlocks: [UInt64: RWLock] = [:]
    var barriers: [UInt64: Barrier] = [:]
    var semaphores: [UInt64: Semaphore] = [:]
    var futexes: [UInt64: Futex] = [:]

    /// Objects with a thread waiting on a deadline.
    public private(set) var nextDeadline: UInt64?

    /// The result of barrierWait for the one thread that gets
    /// PTHREAD_BARRIER_SERIAL_THREAD.
    public static var serialThread: Int64 { 1 }

    public mutating func handle<E: SyncEffects>(
        _ object: UInt64, _ operation: SyncOperation, thread: UInt64, deadline: UInt64?, waiter: Waiter?,
        _ effects: inout E
    ) where E.Waiter == Waiter {
        func reply(_ r: Int64) { if let waiter { effects.reply(waiter, r) } }
        let me = Pending(thread: thread, waiter: waiter, deadline: deadline)
        switch operation {
        case .tokenAcquire:
            // `thread` names a node for the token operations; one no Int
            // can hold names none.
            guard let node = Int(exactly: thread) else { break }
            var t = tokens[object] ?? Token()
            if t.holder == nil {
                t.holder = node
                effects.grant(object, to: node)
            } else if t.holder == node {
                // The holder's release is on its way: a node asks only once
                // it has given the token up, but its release and its next
                // request can come from two threads in either order. It
                // waits its turn behind the release.
                if !t.queue.contains(node) { t.queue.append(node) }
            } else {
                if !t.queue.contains(node) { t.queue.append(node) }
                if !t.recalled {
                    t.recalled = true
                    effects.recall(object, from: t.holder!)
                }
            }
            tokens[object] = t
        case .tokenTry:
            guard let node = Int(exactly: thread) else {
                reply(-SyncErrno.EINVAL)
                break
            }
            var t = tokens[object] ?? Token()
            if t.holder == nil {
                t.holder = node
                reply(1)
            } else if t.holder == node || t.trying != nil {
                // (From the holder: its release is on its way; busy for now.)
                reply(-SyncErrno.EBUSY)
            } else {
                t.trying = (node, waiter)
                effects.tryRecall(object, from: t.holder!)
            }
            tokens[object] = t
        case .tokenBusy:
            guard var t = tokens[object], let trying = t.trying else { break }
            t.trying = nil
            if let w = trying.waiter { effects.reply(w, -SyncErrno.EBUSY) }
            tokens[object] = t
        case .tokenRelease:
            guard let node = Int(exactly: thread), var t = tokens[object], t.holder == node else { break }
            t.holder = nil
            t.recalled = false
            if let trying = t.trying {
                t.trying = nil
                t.holder = trying.node
                t.queue.removeAll { $0 == trying.node }
                if let w = trying.waiter { effects.reply(w, 1) }
                if !t.queue.isEmpty {
                    t.recalled = true
                    effects.recall(object, from: trying.node)
                }
            } else if !t.queue.isEmpty {
                let next = t.queue.removeFirst()
                t.holder = next
                effects.grant(object, to: next)
                if !t.queue.isEmpty {
                    // Others wait too: the new holder gives it back after
                    // one use (its node's recall rule).
                    t.recalled = true
                    effects.recall(object, from: next)
                }
            }
            tokens[object] = t.holder == nil ? nil : t
        case .condEnqueue:
            let ticket = nextTicket
            nextTicket &+= 1
            conditions[object, default: []].append(Pending(thread: ticket, waiter: nil, deadline: nil))
            reply(Int64(ticket))
        case .condAwait(let ticket):
            guard var q = conditions[object], let i = q.firstIndex(where: { $0.thread == ticket }) else {
                reply(0) // signalled and gone already
                break
            }
            if q[i].write {
                // Signalled before the waiter came to wait.
                q.remove(at: i)
                conditions[object] = q.isEmpty ? nil : q
                reply(0)
            } else {
                q[i].waiter = waiter
                q[i].deadline = deadline
                conditions[object] = q
                noteDeadline(deadline)
            }
        case .condSignal:
            if var q = conditions[object], let i = q.firstIndex(where: { !$0.write }) {
                signal(&q, at: i, &effects)
                conditions[object] = q.isEmpty ? nil : q
            }
            reply(0)
        case .condBroadcast:
            if var q = conditions[object] {
                var i = 0
                while i < q.count {
                    if q[i].write { i += 1; continue }
                    if signal(&q, at: i, &effects) { continue }
                    i += 1
                }
                conditions[object] = q.isEmpty ? nil : q
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
                    if let w = p.waiter { effects.reply(w, i == b.arrived.count - 1 ? Self.serialThread : 0) }
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
            grantReadersAndWriters(&l, &effects)
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
                if let w = next.waiter { effects.reply(w, 0) }
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
                if let w = next.waiter { effects.reply(w, 0) }
                woken += 1
            }
            futexes[object] = f
            reply(woken)
        }
    }

    /// Marks ticket `i` signalled; wakes and removes it if its waiter waits.
    @discardableResult
    private func signal<E: SyncEffects>(_ q: inout [Pending], at i: Int, _ effects: inout E) -> Bool
    where E.Waiter == Waiter {
        if let w = q[i].waiter {
            effects.reply(w, 0)
            q.remove(at: i)
            return true
        }
        q[i].write = true
        return false
    }

    /// After an unlock: readers go in while no writer holds the lock (glibc's
    /// default prefers readers); a writer goes in when nobody holds it.
    private func grantReadersAndWriters<E: SyncEffects>(_ l: inout RWLock, _ effects: inout E) where E.Waiter == Waiter {
        var rest: [Pending] = []
        for p in l.queue {
            if p.write {
                if l.writer == nil && l.readers == 0 {
                    l.writer = p.thread
                    if let w = p.waiter { effects.reply(w, 0) }
                } else {
                    rest.append(p)
                }
            } else if l.writer == nil {
                l.readers += 1
                if let w = p.waiter { effects.reply(w, 0) }
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
    public mutating func expire<E: SyncEffects>(now: UInt64, _ effects: inout E) where E.Waiter == Waiter {
        guard let next = nextDeadline, next <= now else { return }
        var earliest: UInt64?
        func sweep(_ queue: inout [Pending]) {
            queue.removeAll { p in
                guard let d = p.deadline, p.waiter != nil else { return false }
                if d <= now {
                    if let w = p.waiter { effects.reply(w, -SyncErrno.ETIMEDOUT) }
                    return true
                }
                if earliest == nil || d < earliest! { earliest = d }
                return false
            }
        }
        for key in Array(conditions.keys) {
            sweep(&conditions[key]!)
            if conditions[key]!.isEmpty { conditions[key] = nil }
        }
        for key in Array(rwlocks.keys) { sweep(&rwlocks[key]!.queue) }
        for key in Array(semaphores.keys) { sweep(&semaphores[key]!.queue) }
        for key in Array(futexes.keys) { sweep(&futexes[key]!.queue) }
        nextDeadline = earliest
    }
}

/// What a program thread asks of a synchronisation object.
public enum SyncOperation: Equatable, Sendable {
    /// Node `thread` asks for the lock token (a notice; `.grant` answers).
    case tokenAcquire
    /// Node `thread` takes the token if nobody holds it: 1, or EBUSY.
    case tokenTry
    /// Node `thread` gives the token back (a notice).
    case tokenRelease
    /// Node `thread` keeps the token: its mutex is locked (answers a tryRecall).
    case tokenBusy
    /// A thread about to wait: answered with its ticket at once, so that it
    /// can release its mutex knowing a signal from now on reaches it.
    case condEnqueue
    /// Wait for the ticket's signal.
    case condAwait(ticket: UInt64)
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

extension SyncOperation {
    /// The lock token's operations, whose `thread` names a node; the
    /// others name the calling thread.
    public var isTokenOperation: Bool {
        switch self {
        case .tokenAcquire, .tokenTry, .tokenRelease, .tokenBusy: true
        default: false
        }
    }
}

/// What the model asks the runtime to do, in order.
public protocol SyncEffects {
    associatedtype Waiter
    /// Answer a waiting caller: >= 0, or -errno.
    mutating func reply(_ waiter: Waiter, _ result: Int64)
    /// The lock token of `object` goes to node `to` (a message there).
    mutating func grant(_ object: UInt64, to node: Int)
    /// Node `from` is asked to give the token back.
    mutating func recall(_ object: UInt64, from node: Int)
    /// Node `from` is asked to give the token up now if its mutex is free
    /// (`.tokenRelease`), or to say it is busy (`.tokenBusy`).
    mutating func tryRecall(_ object: UInt64, from node: Int)
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
