/// When the runtime thread should run real-time (SCHED_FIFO, the lowest
/// priority) and when ordinary: the decisions alone, without the system
/// calls, so that they can be tested. The node asks the kernel for the
/// change each call returns and reports whether it took (`changed`).
///
/// The runtime thread shares its CPU with the program's threads, and a peer
/// waits on every request it serves: real-time, it runs as soon as a request
/// arrives instead of when the scheduler next preempts a computing thread.
/// It only ever blocks or polls for a bounded time. Without the right (not
/// root, no RLIMIT_RTPRIO) it stays ordinary; DSM_RUNTIME_FIFO=0 too.
///
/// Measured, medians of paired runs, 2 nodes: --spmd MGS 1024 0.59 -> 0.55
/// s, matmul 1024 0.30 -> 0.28 s; 3 and 4 nodes on 2 CPUs MGS 1.19 -> 1.06 s
/// and 1.11 -> 0.92 s; img_mgs 0.67 -> 0.60 s, img_matmul 0.30 -> 0.25 s.
/// But programs that synchronise a lot lose (img_prodcons 0.8 -> 1.9-3.9 s,
/// img_mutex worse): lock tokens and condition wake-ups change hands at once
/// instead of after a batch of local uses. So in image mode the thread turns
/// ordinary while mutex, condition, semaphore, rwlock, futex or remote-free
/// traffic (barriers do not count) is dense, and real-time again once it has
/// thinned out for 100 ms (DSM_ADAPTIVE=0 keeps it real-time): img_prodcons
/// 0.71-0.77 s against 0.71-0.86 s ordinary.
///
/// Dense means at least `denseEvents` in one `window` (8 a millisecond).
/// Counted on 2 nodes: img_prodcons and img_mutex make 25-50 such events a
/// millisecond; a program that takes a mutex once per step of its
/// computation (img_mgs_counter, 1.6 a millisecond) keeps the real-time
/// runtime thread its page transfers need: turning ordinary on the first
/// event made it 1.75x slower.
public struct RuntimeScheduling: Sendable {
    public static let window: UInt64 = 2_000_000
    public static let denseEvents = 16
    public static let quietBeforeRealtime: UInt64 = 100_000_000

    /// A change of policy to ask the kernel for.
    public enum Change: Equatable, Sendable {
        case none, becomeRealtime, becomeOrdinary
    }

    /// The thread runs real-time now.
    public private(set) var realtime = false
    /// It turns ordinary under dense synchronisation traffic (image mode).
    private var adaptive = false
    private var windowStart: UInt64 = 0
    private var windowEvents = 0
    private var lastDense: UInt64 = 0

    public init() {}

    /// At the start: whether to ask for real-time at all.
    public static func initial(wantRealtime: Bool) -> Change { wantRealtime ? .becomeRealtime : .none }

    /// The answer to a change asked for. `adaptive` is set with the first
    /// answer: only a thread that got real-time has anything to adapt.
    public mutating func changed(_ change: Change, took: Bool, adaptive: Bool? = nil) {
        if let adaptive { self.adaptive = took && adaptive }
        guard took else { return }
        switch change {
        case .becomeRealtime: realtime = true
        case .becomeOrdinary: realtime = false
        case .none: break
        }
    }

    /// A synchronisation event (lock token, condition, semaphore, rwlock,
    /// futex, remote free) at `now`.
    public mutating func syncEvent(now: UInt64) -> Change {
        guard adaptive else { return .none }
        if now &- windowStart > Self.window {
            windowStart = now
            windowEvents = 0
        }
        windowEvents += 1
        guard windowEvents >= Self.denseEvents else { return .none }
        lastDense = now
        return realtime ? .becomeOrdinary : .none
    }

    /// Whether `idle` may say anything (spares the clock read otherwise).
    public var mayResume: Bool { adaptive && !realtime }

    /// Once a round of the event loop: back to real-time after a quiet spell.
    public func idle(now: UInt64) -> Change {
        mayResume && now &- lastDense > Self.quietBeforeRealtime ? .becomeRealtime : .none
    }
}
