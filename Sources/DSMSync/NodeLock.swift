import CDSMLockState

/// The node side of a mutex's lock token. A mutex is owned by a node, not a
/// thread: while this node holds the token (granted by the mutex's home,
/// `SyncObjects`), its threads lock and unlock the mutex here with no
/// message at all. When another node asks, the home recalls the token; this
/// node gives it back once it has used it `batch` times since it came, or as
/// soon as the mutex has been free for `idleNanoseconds` (a thread in a
/// tight lock/unlock loop keeps it for a batch: one hand-over costs a few
/// messages and the page of the data it protects). Owner, recursion count
/// and the error checks are local, since only this node's threads can hold
/// the mutex while the token is here.
///
/// Pure: each function takes the state (`dsm_lock_state`, held by sync.c
/// under the entry's spin lock) and the time, changes the state and says
/// what the caller must do (send a notice to the home, wait on `seq`, wake
/// waiters). It never waits, sends or reads a clock itself.
public enum NodeLock {
    /// Locks a node makes with a recalled token before it must go.
    public static let batch: UInt32 = 16
    /// How long a recalled token's mutex must be free before it goes.
    public static let idleNanoseconds: Int64 = 50_000

    public enum Refusal: Equatable, Sendable {
        /// EBUSY: a try-lock of a mutex that is locked (or whose token is
        /// on its way).
        case busy
        /// EDEADLK: an error-checking mutex locked again by its owner.
        case deadlock
    }

    /// What a thread that locks the mutex does next.
    public enum Attempt: Equatable, Sendable {
        /// It holds the mutex.
        case acquired
        case refused(Refusal)
        /// A try-lock with no token here and nobody asking: it asks the
        /// home (`tokenTry`), counted as a waiter meanwhile. On 1 the runtime
        /// thread records the token (`tryTokenArrived`) before it hands the
        /// answer on; then the thread ends its wait (`endWait`) and, on 1,
        /// locks again, otherwise it is refused as busy.
        case askTry
        /// It waits on `seq` while it still reads `seen`, then locks again;
        /// with `ask`, it first sends the home `tokenAcquire` for the node.
        case wait(ask: Bool, seen: UInt32)
    }

    /// A thread locks the mutex (`tryOnly`: pthread_mutex_trylock).
    @inlinable
    public static func lock(_ s: inout dsm_lock_state, thread: UInt64, tryOnly: Bool) -> Attempt {
        if s.token != 0 && s.locked != 0 && s.owner == thread {
            if s.kind == 1 {
                s.count += 1
                return .acquired
            }
            if s.kind == 2 || tryOnly { return .refused(tryOnly ? .busy : .deadlock) }
            // A normal mutex locked twice by its owner: it waits for ever,
            // as with glibc.
        }
        if s.token != 0 && s.locked == 0 && !(s.recall != 0 && s.uses >= batch) {
            s.locked = 1
            s.uses += 1
            s.owner = thread
            s.count = 1
            return .acquired
        }
        let ask = s.token == 0 && s.requesting == 0
        if tryOnly {
            guard ask else { return .refused(.busy) }
            s.waiters += 1
            return .askTry
        }
        if ask { s.requesting = 1 }
        s.waiters += 1
        return .wait(ask: ask, seen: s.seq)
    }

    /// Runtime thread: the home answered a try-lock's `tokenTry` with the
    /// token. Recorded before anything the home sends after it (a recall)
    /// is handled: recorded by the thread itself, once it ran, a recall in
    /// between would find no token and be lost, and the node would keep the
    /// token for ever (found by exploring every interleaving).
    @inlinable
    public static func tryTokenArrived(_ s: inout dsm_lock_state) {
        s.token = 1
        s.recall = 0
        s.uses = 0
    }

    /// A waiting thread stops waiting (woken, or its time ran out). True:
    /// it gave up on a recalled token nobody here wants any more, which
    /// goes back to the home now (the caller sends `tokenRelease`). A woken
    /// thread locks again (`lock`) before it lets go of the state: in
    /// between, a recall could find the mutex idle and take a token just
    /// granted for it, over and over.
    @inlinable
    public static func endWait(_ s: inout dsm_lock_state, timedOut: Bool) -> Bool {
        s.waiters -= 1
        guard timedOut && s.waiters == 0 && s.token != 0 && s.locked == 0 && s.recall != 0 else { return false }
        giveUp(&s)
        return true
    }

    public enum Unlock: Equatable, Sendable {
        /// Not held by the caller: 0 for a normal mutex (glibc does not
        /// check), EPERM for the others.
        case notHeld(permitted: Bool)
        /// A recursive mutex still held.
        case stillHeld
        /// Free. `giveBack`: the token goes to the home now (the caller
        /// sends `tokenRelease`); `wakeOne`: a thread here waits.
        case released(giveBack: Bool, wakeOne: Bool)
    }

    @inlinable
    public static func unlock(_ s: inout dsm_lock_state, thread: UInt64, now: Int64) -> Unlock {
        if s.token == 0 || s.locked == 0 || (s.owner != thread && s.kind != 0) {
            return .notHeld(permitted: s.kind == 0)
        }
        if s.kind == 1 && s.count > 1 {
            s.count -= 1
            return .stillHeld
        }
        s.locked = 0
        s.count = 0
        s.last_unlock = now
        let giveBack = s.recall != 0 && s.uses >= batch
        if giveBack { giveUp(&s) } else { s.seq &+= 1 }
        return .released(giveBack: giveBack, wakeOne: s.waiters > 0)
    }

    /// Runtime thread: the token arrived (the caller wakes every waiter).
    /// True: nobody here wants it any more (a timed lock gave up), it goes
    /// straight back.
    @inlinable
    public static func granted(_ s: inout dsm_lock_state) -> Bool {
        s.token = 1
        s.requesting = 0
        s.recall = 0
        s.uses = 0
        s.seq &+= 1
        guard s.waiters == 0 else { return false }
        s.token = 0
        return true
    }

    public enum Recall: Equatable, Sendable {
        /// The token is not here (it is on its way back already).
        case notHere
        /// It goes back now.
        case giveBack
        /// Later: an unlock gives it back after the batch, or `recallDue`
        /// once the mutex idles.
        case later
    }

    /// Runtime thread: another node wants the token.
    @inlinable
    public static func recalled(_ s: inout dsm_lock_state, now: Int64) -> Recall {
        guard s.token != 0 else { return .notHere }
        s.recall = 1
        if idles(s, now: now) || (s.locked == 0 && s.uses >= batch) {
            giveUp(&s)
            return .giveBack
        }
        return .later
    }

    /// Runtime thread: a try-lock on another node. True: the mutex is free
    /// here and the token goes; false: it is locked (the node tells the
    /// home `tokenBusy`).
    @inlinable
    public static func tryRecalled(_ s: inout dsm_lock_state) -> Bool {
        guard s.token != 0 else { return true }
        if s.locked != 0 { return false }
        giveUp(&s)
        return true
    }

    public enum Due: Equatable, Sendable {
        /// Nothing left to do: the token went already, or nobody recalls it.
        case settled
        case notYet
        /// The mutex idles: the token goes back now.
        case giveBack
    }

    /// Runtime thread, for a recall it deferred.
    @inlinable
    public static func recallDue(_ s: inout dsm_lock_state, now: Int64) -> Due {
        guard s.token != 0 && s.recall != 0 else { return .settled }
        guard idles(s, now: now) else { return .notYet }
        giveUp(&s)
        return .giveBack
    }

    /// Free, nobody here waiting, and unused for `idleNanoseconds`.
    @inlinable
    static func idles(_ s: dsm_lock_state, now: Int64) -> Bool {
        s.locked == 0 && s.waiters == 0 && now - s.last_unlock >= idleNanoseconds
    }

    /// The token goes back to the home (the caller sends the release).
    @inlinable
    static func giveUp(_ s: inout dsm_lock_state) {
        s.token = 0
        s.recall = 0
        s.seq &+= 1
    }
}
