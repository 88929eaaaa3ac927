#if canImport(Glibc)
import Glibc
#endif

/// Open descriptors a process of a run of `nodes` nodes needs: the launcher
/// holds a connection per node, a node one per other node, and both a few
/// more of their own (listener, epoll, userfaultfd, bells, one memfd per
/// container); the program needs its own on top.
public func descriptorsNeeded(nodes: Int) -> Int { nodes + 16 }

/// A clear message when this process's `ulimit -n` is too low for a run of
/// `nodes` nodes, before anything is opened; nil when it is enough.
public func descriptorShortage(nodes: Int) -> String? {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
    let needed = descriptorsNeeded(nodes: nodes)
    guard Int(limit.rlim_cur) < needed else { return nil }
    let hard = limit.rlim_max == rlim_t.max ? "unlimited" : String(limit.rlim_max)
    return """
        a run of \(nodes) nodes needs at least \(needed) open descriptors per process (one connection per node, plus \
        the runtime's own), but `ulimit -n` is \(limit.rlim_cur) (hard limit \(hard)): raise it, e.g. `ulimit -n \(max(needed, 1024))` (EMFILE)
        """
}
