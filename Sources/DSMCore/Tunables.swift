/// The runtime's settings a user may tune: each is a `DSM_*` environment
/// variable (dsmrun's flags set them), read and validated here and nowhere
/// else. dsmrun checks them before it starts any node, so a malformed value
/// is one clear error at launch; a node checks them again (it may have been
/// started by other means) and stops with the same message.
public struct Tunables: Equatable, Sendable {
    /// Image mode's heap reservation, all arenas (DSM_HEAP_MB, MiB).
    public var heapBytes: UInt64 = 1 << 40
    /// The largest readahead window, in pages (DSM_PREFETCH; 0: off).
    public var readaheadPages = 128
    /// A read miss on an even page also fetches the next one
    /// (DSM_PREFETCH_BUDDY=0: off).
    public var buddyPrefetch = true
    /// Pages read and then written by nodes in turn are handed over whole
    /// on a read miss (DSM_MIGRATORY=0: off).
    public var migratoryPages = true
    /// The memory model the run gives the program (DSM_CONSISTENCY):
    /// sequential (the default) or release (ReleasePages.swift).
    public var consistency: Consistency = .sequential
    /// How long a page brought in for a waiting thread stays before another
    /// node may take it (DSM_HOLD_US, microseconds). At least 1: without a
    /// hold two nodes writing one page can take it from each other forever.
    public var holdNanoseconds: UInt64 = 50_000
    /// How long the runtime thread polls before sleeping while a program
    /// thread waits on it (DSM_SPIN_US, microseconds); nil: chosen from the
    /// placement (50 µs when each node has a CPU of its own, else 0).
    public var spinNanoseconds: UInt64?
    /// The runtime thread asks for SCHED_FIFO (DSM_RUNTIME_FIFO=0: never).
    public var realtimeRuntime = true
    /// In image mode it turns ordinary while synchronisation traffic goes on
    /// (DSM_ADAPTIVE=0: always real-time when it can be).
    public var adaptiveRealtime = true
    /// Log every lock-token grant, recall and release (DSM_TRACE_LOCKS=1).
    public var traceLocks = false
    /// Emulated distance: every frame leaves this much later (DSM_DELAY_US;
    /// for benchmarks, where no netem is).
    public var delayNanoseconds: UInt64 = 0
    /// A peer silent this long ends the run (DSM_PEER_TIMEOUT, seconds).
    public var peerTimeoutNanoseconds: UInt64 = 10_000_000_000

    /// Every variable read here, with what it takes (for messages and help).
    public static let variables: [(name: String, takes: String)] = [
        ("DSM_HEAP_MB", "a number of MiB from 16 to 1048576"),
        ("DSM_PREFETCH", "a number of pages from 0 to 4096"),
        ("DSM_PREFETCH_BUDDY", "0 or 1"),
        ("DSM_MIGRATORY", "0 or 1"),
        ("DSM_CONSISTENCY", "sequential or release"),
        ("DSM_HOLD_US", "a number of microseconds from 1 to 100000"),
        ("DSM_SPIN_US", "a number of microseconds from 0 to 10000"),
        ("DSM_RUNTIME_FIFO", "0 or 1"),
        ("DSM_ADAPTIVE", "0 or 1"),
        ("DSM_TRACE_LOCKS", "0 or 1"),
        ("DSM_DELAY_US", "a number of microseconds from 0 to 1000000"),
        ("DSM_PEER_TIMEOUT", "a number of seconds from 0.5 to 86400"),
    ]

    public init() {}

    /// Reads the variables through `lookup` (the environment); nil for
    /// unset. Throws the first malformed or out-of-range one.
    public init(lookup: (String) -> String?) throws(TunableError) {
        func integer(_ name: String, _ range: ClosedRange<UInt64>) throws(TunableError) -> UInt64? {
            guard let text = lookup(name) else { return nil }
            guard let value = UInt64(text), range.contains(value) else { throw TunableError(name: name, value: text) }
            return value
        }
        func flag(_ name: String) throws(TunableError) -> Bool? {
            guard let text = lookup(name) else { return nil }
            switch text {
            case "0": return false
            case "1": return true
            default: throw TunableError(name: name, value: text)
            }
        }
        if let mb = try integer("DSM_HEAP_MB", 16...(1 << 20)) { heapBytes = mb << 20 }
        if let pages = try integer("DSM_PREFETCH", 0...4096) { readaheadPages = Int(pages) }
        if let on = try flag("DSM_PREFETCH_BUDDY") { buddyPrefetch = on }
        if let on = try flag("DSM_MIGRATORY") { migratoryPages = on }
        if let text = lookup("DSM_CONSISTENCY") {
            guard let model = Consistency(rawValue: text) else { throw TunableError(name: "DSM_CONSISTENCY", value: text) }
            consistency = model
        }
        if let us = try integer("DSM_HOLD_US", 1...100_000) { holdNanoseconds = us * 1000 }
        if let us = try integer("DSM_SPIN_US", 0...10_000) { spinNanoseconds = us * 1000 }
        if let on = try flag("DSM_RUNTIME_FIFO") { realtimeRuntime = on }
        if let on = try flag("DSM_ADAPTIVE") { adaptiveRealtime = on }
        if let on = try flag("DSM_TRACE_LOCKS") { traceLocks = on }
        if let us = try integer("DSM_DELAY_US", 0...1_000_000) { delayNanoseconds = us * 1000 }
        if let text = lookup("DSM_PEER_TIMEOUT") {
            guard let seconds = Double(text), seconds >= 0.5, seconds <= 86_400 else {
                throw TunableError(name: "DSM_PEER_TIMEOUT", value: text)
            }
            peerTimeoutNanoseconds = UInt64(seconds * 1e9)
        }
        // A delay that long would look like a silent peer.
        if delayNanoseconds * 10 > peerTimeoutNanoseconds {
            throw TunableError(
                name: "DSM_DELAY_US", value: String(delayNanoseconds / 1000),
                why: "too long for a peer timeout of \(peerTimeoutNanoseconds / 1_000_000) ms (at most a tenth of it)")
        }
    }
}

/// What a program sees of other threads' writes.
public enum Consistency: String, Equatable, Sendable, CaseIterable {
    /// Every read sees the latest write, on any node (MESI; the default).
    case sequential
    /// Writes made before a release (an unlock, a barrier, a semop, a
    /// futex wake, a thread's end) are seen by whoever acquires after it;
    /// between synchronisations, nodes write one page side by side. For
    /// data-race-free programs that synchronise through calls dsm sees.
    case release
}

/// A tunable's malformed or out-of-range value.
public struct TunableError: Error, Equatable, CustomStringConvertible {
    public var name: String
    public var value: String
    public var why: String?

    public init(name: String, value: String, why: String? = nil) {
        self.name = name
        self.value = value
        self.why = why
    }

    public var description: String {
        if let why { return "\(name)=\(value) is \(why)" }
        let takes = Tunables.variables.first { $0.name == name }?.takes ?? "another value"
        return "\(name) must be \(takes), got '\(value)'"
    }
}
