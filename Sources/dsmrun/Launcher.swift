import CDSMKernel
import Synchronization
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Starts the nodes, runs the rendezvous, watches the nodes, and makes sure
/// nothing of the run outlives it.
final class Launcher {
    let nodes: Int
    let program: String
    let arguments: [String]
    let runtime: String
    let verbose: Bool
    let stats: StatsFormat?
    let bind: Bool
    /// Image mode: main on node 0, whose status is the program's.
    let image: Bool
    let placement: PlacementPolicy
    /// Process group of each node (= its pid); read by the signal handler.
    let groups: UnsafeMutablePointer<pid_t>

    init(nodes: Int, program: String, arguments: [String], runtime: String, verbose: Bool, stats: StatsFormat?,
         bind: Bool, image: Bool, placement: PlacementPolicy) {
        self.image = image
        self.placement = placement
        self.stats = stats
        self.bind = bind
        self.nodes = nodes
        self.program = program
        self.arguments = arguments
        self.runtime = runtime
        self.verbose = verbose
        groups = .allocate(capacity: nodes)
        groups.initialize(repeating: 0, count: nodes)
    }

    /// How long the other nodes get to stop after a failure before SIGKILL.
    static let graceMilliseconds: Int64 = 2_000

    func run() -> Int32 {
        let token = makeToken()
        let coordinator: Coordinator
        do {
            coordinator = try Coordinator(nodes: nodes, token: token)
        } catch {
            warn("cannot listen for the rendezvous: \(error)")
            return 1
        }
        if cdsm_disable_aslr() != 0 { warn("cannot disable address-space randomisation; continuing") }
        cdsm_forward_signals(groups, Int32(nodes))
        if bind && verbose {
            warn("topology: \(cdsm_online_cpus()) CPU(s), \(cdsm_numa_nodes()) NUMA node(s); node i runs on CPU i mod \(cdsm_online_cpus())")
        }

        var baseEnvironment: [String] = []
        var preload = runtime
        var index = 0
        while let entry = environ[index] {
            let s = String(cString: entry)
            index += 1
            if s.hasPrefix("LD_PRELOAD=") {
                let existing = s.dropFirst("LD_PRELOAD=".count)
                if !existing.isEmpty { preload += ":" + existing }
                continue
            }
            if s.hasPrefix("DSM_NODE_ID=") || s.hasPrefix("DSM_NODES=") || s.hasPrefix("DSM_COORD=")
                || s.hasPrefix("DSM_TOKEN=") || s.hasPrefix("DSM_VERBOSE=") || s.hasPrefix("DSM_STATS=") || s.hasPrefix("DSM_BIND=")
                || s.hasPrefix("DSM_MODE=") || s.hasPrefix("DSM_PROGRAM=") || s.hasPrefix("DSM_PLACEMENT=") { continue }
            baseEnvironment.append(s)
        }

        for node in 0..<nodes {
            let environment = baseEnvironment + [
                "LD_PRELOAD=\(preload)", "DSM_NODE_ID=\(node)", "DSM_NODES=\(nodes)",
                "DSM_COORD=\(coordinator.endpoint)", "DSM_TOKEN=\(token)", "DSM_VERBOSE=\(verbose ? 1 : 0)", "DSM_STATS=\(stats == nil ? 0 : 1)", "DSM_BIND=\(bind ? 1 : 0)",
            ] + (image ? ["DSM_MODE=image", "DSM_PROGRAM=\(program)", "DSM_PLACEMENT=\(placement.rawValue)"] : ["DSM_MODE=spmd"])
            let pid = spawn(program, arguments, environment)
            if pid < 0 {
                warn("cannot start node \(node): \(Errno(rawValue: -pid))")
                stopAll(signal: SIGKILL)
                reapAll()
                return 1
            }
            groups[node] = pid
            if verbose { warn("node \(node) is pid \(pid)") }
        }

        // The rendezvous runs beside the watch loop: a node that dies before
        // saying hello must not leave the launcher waiting.
        let rendezvous = RendezvousThread(coordinator: coordinator)
        rendezvous.start()

        let status = watch(rendezvous: rendezvous)
        rendezvous.join()
        if let stats {
            let reports = coordinator.connections.compactMap { connection -> String? in
                guard let (header, payload) = try? connection.receiveFrameBlocking(timeoutMilliseconds: 200),
                      header.kind == .stats else { return nil }
                return String(decoding: payload, as: UTF8.self)
            }
            printStatistics(reports, format: stats)
        }
        return status
    }

    private func spawn(_ path: String, _ argv: [String], _ envp: [String]) -> pid_t {
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = envp.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        return cdsm_spawn(path, &cArgs, &cEnv)
    }

    struct Ending {
        var node: NodeID
        var status: Int32
        var description: String
        var secondary: Bool
        var signalled = false
    }

    /// Waits for every node. The first real failure stops the others.
    private func watch(rendezvous: RendezvousThread) -> Int32 {
        var alive = nodes
        var firstFailure: Ending?
        var secondaryFailure: Ending?
        var stopDeadline: Int64?
        var killed = false
        var programStatus: Int32?
        while alive > 0 {
            var raw: Int32 = 0
            let pid = waitpid(-1, &raw, WNOHANG)
            if pid > 0, let node = (0..<nodes).first(where: { groups[$0] == pid }) {
                alive -= 1
                let ending = describe(node: node, raw: raw)
                if verbose { warn(ending.description) }
                // Anything the node left in its process group goes with it;
                // then the group is forgotten (its id may be reused).
                kill(-pid, SIGKILL)
                groups[node] = 0
                if image && node == 0 && !ending.signalled {
                    // The program's own exit: its status is the run's. The
                    // other nodes leave with it; any that linger are stopped.
                    programStatus = ending.status
                    if stopDeadline == nil && alive > 0 { stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds }
                    continue
                }
                if ending.status != 0 {
                    if ending.secondary {
                        if secondaryFailure == nil { secondaryFailure = ending }
                    } else if firstFailure == nil {
                        firstFailure = ending
                        // Named even when a node that noticed the loss ended first.
                        warn(ending.description + (alive > 0 ? "; stopping the other nodes" : ""))
                    }
                    if stopDeadline == nil && alive > 0 {
                        stopAll(signal: SIGTERM)
                        stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds
                    }
                }
                continue
            }
            if pid < 0 && cdsm_errno() == ECHILD { break }
            if let deadline = stopDeadline, !killed, monotonicMilliseconds() > deadline {
                stopAll(signal: SIGKILL)
                killed = true
            }
            if rendezvous.failed.load(ordering: .acquiring) && stopDeadline == nil {
                warn("the nodes could not meet: \(rendezvous.failure ?? "unknown error"); stopping")
                stopAll(signal: SIGTERM)
                stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds
                if firstFailure == nil {
                    firstFailure = Ending(node: -1, status: 1, description: "rendezvous failed", secondary: false)
                }
            }
            usleep(5_000)
        }
        rendezvous.giveUp.store(true, ordering: .releasing)
        if let f = firstFailure {
            return f.status
        }
        if let programStatus { return programStatus }
        if let s = secondaryFailure {
            warn(s.description)
            return s.status
        }
        let signal = cdsm_forwarded_signal()
        return signal != 0 ? 128 + signal : 0
    }

    private func describe(node: NodeID, raw: Int32) -> Ending {
        let exited = raw & 0x7f == 0
        if exited {
            let code = (raw >> 8) & 0xff
            if code == 250 {
                return Ending(node: node, status: code, description: "node \(node) stopped because another node failed", secondary: true)
            }
            return Ending(node: node, status: code, description: "node \(node) exited with status \(code)", secondary: false)
        }
        let signal = raw & 0x7f
        let name = String(cString: strsignal(signal))
        return Ending(node: node, status: 128 + signal,
                      description: "node \(node) (pid \(groups[node])) was killed by signal \(signal) (\(name))",
                      secondary: false, signalled: true)
    }

    private func stopAll(signal: Int32) {
        for i in 0..<nodes where groups[i] > 0 { kill(-groups[i], signal) }
    }

    private func reapAll() {
        var raw: Int32 = 0
        while waitpid(-1, &raw, 0) > 0 {}
    }

    private func makeToken() -> String {
        var bytes = [UInt8](repeating: 0, count: 24)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = read(fd, &bytes, bytes.count)
            close(fd)
        }
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The rendezvous on its own thread.
final class RendezvousThread {
    let coordinator: Coordinator
    private var thread = pthread_t()
    /// Set by the launcher's thread when the run is over.
    let giveUp = Atomic<Bool>(false)
    /// Set (after `failure`) when the rendezvous failed.
    let failed = Atomic<Bool>(false)
    /// Written before `failed` is set, read after it is seen.
    nonisolated(unsafe) var failure: String?

    init(coordinator: Coordinator) { self.coordinator = coordinator }

    func start() {
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { context in
            let me = Unmanaged<RendezvousThread>.fromOpaque(context!).takeRetainedValue()
            do {
                try me.coordinator.run(timeoutMilliseconds: 60_000, shouldGiveUp: { me.giveUp.load(ordering: .acquiring) },
                                       log: { warn($0) })
                me.coordinator.declineLateComers(shouldGiveUp: { me.giveUp.load(ordering: .acquiring) })
            } catch {
                if !me.giveUp.load(ordering: .acquiring) {
                    me.failure = "\(error)"
                    me.failed.store(true, ordering: .releasing)
                }
            }
            return nil
        }, unmanaged.toOpaque())
    }

    func join() {
        giveUp.store(true, ordering: .releasing)
        pthread_join(thread, nil)
    }
}
