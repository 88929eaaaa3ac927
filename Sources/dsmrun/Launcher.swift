import CDSMKernel
import Synchronization
import DSMCore
import DSMLaunch
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Where the nodes run: this host (started directly) or other hosts
/// (started through an agent each, over ssh or `--rsh`).
struct Sites {
    /// The hosts of --hosts / --hostfile; empty: every node on this host.
    var hosts: [HostSlots] = []
    /// The host index of each node (empty with no hosts).
    var placement: [Int] = []
    /// Whether each host is this one.
    var local: [Bool] = []
    /// The remote start command, as words (`ssh -o BatchMode=yes -T`).
    var rsh: [String] = ["ssh", "-o", "BatchMode=yes", "-T", "-x"]
    /// --iface: the interface or network every node listens on.
    var iface: String?
    /// --peer-timeout, seconds.
    var peerTimeout: Double = 10
    /// Started as one task by Slurm or Open MPI: this launcher runs only
    /// the node of its rank; PMIx tells where the others are.
    var engine: EngineWireUp?

    func isRemote(_ node: NodeID) -> Bool { !placement.isEmpty && !local[placement[node]] }
    /// The nodes this launcher starts itself.
    func startedHere(nodes: Int) -> [NodeID] {
        if let engine { return [engine.rank] }
        return (0..<nodes).filter { !isRemote($0) }
    }
    var anyRemote: Bool { local.contains(false) }
}

/// Starts the nodes, runs the rendezvous, watches the nodes, and makes sure
/// nothing of the run outlives it, on any host.
final class Launcher {
    let nodes: Int
    let program: String
    let arguments: [String]
    let runtime: String
    let verbose: Bool
    let stats: StatsFormat?
    /// --bind / --no-bind; nil: each host decides (its nodes, its CPUs).
    let bind: Bool?
    /// Image mode: main on node 0, whose status is the program's.
    let image: Bool
    let placement: PlacementPolicy
    let sites: Sites
    /// DSM_*=value settings from dsmrun's flags, over the inherited ones.
    let settings: [String]
    /// Process group of each local node (= its pid); read by the signal handler.
    let groups: UnsafeMutablePointer<pid_t>
    /// One per other host with nodes.
    private var remotes: [RemoteHost] = []
    private let mailbox = AgentMailbox()

    init(nodes: Int, program: String, arguments: [String], runtime: String, verbose: Bool, stats: StatsFormat?,
         bind: Bool?, image: Bool, placement: PlacementPolicy, sites: Sites, settings: [String] = []) {
        self.settings = settings
        self.image = image
        self.placement = placement
        self.stats = stats
        self.bind = bind
        self.nodes = nodes
        self.program = program
        self.arguments = arguments
        self.runtime = runtime
        self.verbose = verbose
        self.sites = sites
        groups = .allocate(capacity: nodes)
        groups.initialize(repeating: 0, count: nodes)
    }

    /// How long the other nodes get to stop after a failure before SIGKILL.
    static let graceMilliseconds: Int64 = 2_000

    /// The address the rendezvous listens on: loopback when every node is
    /// here, else the interface that reaches the other hosts.
    private func rendezvousAddress() -> Result<String, LaunchProblem> {
        if let iface = sites.iface {
            guard let address = Addresses.interfaceAddress(iface) else {
                return .failure(LaunchProblem(message: "--iface \(iface): this host has no IPv4 address on that interface or network", status: 2))
            }
            return .success(address)
        }
        guard sites.anyRemote else { return .success("127.0.0.1") }
        for (index, host) in sites.hosts.enumerated() where !sites.local[index] {
            guard let address = Addresses.resolve(host.name) else {
                return .failure(LaunchProblem(message: """
                    cannot tell which interface reaches host \(host.name): the name does not resolve here; \
                    pass --iface NAME or --iface NETWORK/BITS
                    """, status: 2))
            }
            if let source = Addresses.routeSource(towards: address) { return .success(source) }
            return .failure(LaunchProblem(message: "no route to host \(host.name) (\(address)); pass --iface", status: 2))
        }
        return .success("127.0.0.1")
    }

    func run() -> Int32 {
        if let shortage = descriptorShortage(nodes: sites.engine == nil ? nodes : 1) {
            warn(shortage)
            return 1
        }
        let token = sites.engine?.token ?? makeToken()
        let coordinator: Coordinator
        switch sites.engine != nil ? .success("127.0.0.1") : rendezvousAddress() {
        case .failure(let problem):
            warn(problem.message)
            return problem.status
        case .success(let address):
            do {
                // Every node registers here, wherever it runs, except under an
                // engine, where only this task's node does.
                coordinator = try Coordinator(nodes: nodes, expected: sites.engine.map { [$0.rank] }, token: token, host: address)
            } catch {
                warn("cannot listen for the rendezvous on \(address): \(error)")
                return 1
            }
        }
        if let engine = sites.engine { coordinator.completeTable = { try engine.exchange($0) } }
        defer { sites.engine?.finish() }
        if verbose { warn("rendezvous on \(coordinator.endpoint)") }
        let mailbox = self.mailbox
        coordinator.agentArrived = { connection, host in mailbox.post(connection, host: host) }
        if cdsm_disable_aslr() != 0 { warn("cannot disable address-space randomisation; continuing") }
        // A signal sent to the job reaches the program as it would reach one
        // process: every node of an SPMD run, node 0 (where main runs) of
        // an image.
        cdsm_forward_signals(groups, Int32(image ? 1 : nodes))
        if bind != false && verbose {
            warn("topology: \(cdsm_online_cpus()) CPU(s), \(cdsm_numa_nodes()) NUMA node(s); node i runs on CPU i mod \(cdsm_online_cpus())")
        }

        var common: [String] = []
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
            if Launcher.controlVariables.contains(where: { s.hasPrefix($0 + "=") }) { continue }
            if settings.contains(where: { s.hasPrefix($0.prefix { $0 != "=" } + "=") }) { continue }
            common.append(s)
        }
        common += settings
        common += [
            "LD_PRELOAD=\(preload)", "DSM_NODES=\(nodes)",
            "DSM_COORD=\(coordinator.endpoint)", "DSM_TOKEN=\(token)", "DSM_VERBOSE=\(verbose ? 1 : 0)", "DSM_STATS=\(stats == nil ? 0 : 1)", "DSM_BIND=\(bind.map { $0 ? "1" : "0" } ?? "auto")",
        ] + (image ? ["DSM_MODE=image", "DSM_PROGRAM=\(program)", "DSM_PLACEMENT=\(placement.rawValue)"] : ["DSM_MODE=spmd"])
        // OpenMP's default wait spins on words that threads of other nodes
        // write, and every spin on a lost page fetches it again: passive
        // waits made NPB's class S runs 3-10x faster on two nodes (BT, CG,
        // MG). The user's own choice stands.
        if image && nodes > 1 && !common.contains(where: { $0.hasPrefix("OMP_WAIT_POLICY=") || $0.hasPrefix("GOMP_SPINCOUNT=") }) {
            common.append("OMP_WAIT_POLICY=passive")
        }
        if let engine = sites.engine {
            common.append("DSM_IFACE=\(engine.listenAddress)/32")
        } else if let iface = sites.iface {
            common.append("DSM_IFACE=\(iface)")
        }
        common.append("DSM_PEER_TIMEOUT=\(sites.peerTimeout)")
        // Output from several hosts is ordered through node 0.
        if sites.anyRemote || sites.engine != nil { common.append("DSM_FORWARD_OUTPUT=\(standardStreamIdentities())") }

        // The rendezvous runs beside the watch loop: a node that dies before
        // saying hello must not leave the launcher waiting.
        let rendezvous = RendezvousThread(coordinator: coordinator, beatMilliseconds: max(Int64(sites.peerTimeout * 200), 10))
        rendezvous.start()

        if sites.anyRemote, let problem = startRemoteHosts(common: common, coordinator: coordinator, token: token) {
            warn(problem.message)
            stopAll(signal: SIGKILL)
            reapAll()
            rendezvous.join()
            return problem.status
        }
        let here = sites.startedHere(nodes: nodes)
        let onThisHost = sites.engine?.localSize ?? here.count
        for node in here {
            let pid = spawn(program, arguments, common + ["DSM_NODE_ID=\(node)", "DSM_LOCAL_NODES=\(onThisHost)", "DSM_STARTER_PID=\(getpid())"])
            if pid < 0 {
                warn("cannot start node \(node): \(Errno(rawValue: -pid))")
                stopAll(signal: SIGKILL)
                reapAll()
                rendezvous.join()
                return 1
            }
            groups[node] = pid
            if verbose { warn("node \(node) is pid \(pid)") }
        }

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

    /// Agents' connections the rendezvous thread accepted go to their hosts.
    private func attachArrivedAgents() {
        while let (connection, index) = mailbox.take() {
            if let remote = remotes.first(where: { $0.index == index && $0.control == nil }) { remote.control = connection }
        }
    }

    /// Variables the launcher sets for the nodes: never inherited.
    static let controlVariables = ["DSM_NODE_ID", "DSM_NODES", "DSM_COORD", "DSM_TOKEN", "DSM_VERBOSE", "DSM_STATS", "DSM_BIND",
                                   "DSM_MODE", "DSM_PROGRAM", "DSM_PLACEMENT", "DSM_IFACE", "DSM_PEER_TIMEOUT", "DSM_LOCAL_NODES", "DSM_FORWARD_OUTPUT"]
    /// Variables that describe this host or this login, not the run: not
    /// sent to other hosts.
    static let hostVariables = ["HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY",
                                "SSH_AUTH_SOCK", "DISPLAY", "XAUTHORITY"]

    /// Starts an agent on every other host with nodes; the secret goes on
    /// the agent's standard input.
    private func startRemoteHosts(common: [String], coordinator: Coordinator, token: String) -> LaunchProblem? {
        let directory = currentDirectory()
        guard let programFingerprint = fileFingerprint(program), let runtimeFingerprint = fileFingerprint(runtime) else {
            return LaunchProblem(message: "cannot read \(program) or \(runtime) to fingerprint it", status: 2)
        }
        let forwarded = common.filter { entry in !Launcher.hostVariables.contains { entry.hasPrefix($0 + "=") } }
        let agentCommand = "exec \(shellQuoted(defaultExecutablePath())) --agent"
        for (index, host) in sites.hosts.enumerated() where !sites.local[index] {
            let hostNodes = (0..<nodes).filter { sites.placement[$0] == index }
            if hostNodes.isEmpty { continue }
            let spec = AgentSpec(hostName: host.name, hostIndex: index, coordinator: "\(coordinator.endpoint)", token: token,
                                 directory: directory, program: program, runtime: runtime,
                                 programFingerprint: programFingerprint, runtimeFingerprint: runtimeFingerprint,
                                 arguments: arguments, environment: forwarded, nodes: hostNodes)
            let remote = RemoteHost(index: index, name: host.name, nodes: hostNodes)
            if let problem = remote.start(rsh: sites.rsh, command: agentCommand, spec: spec) { return problem }
            if verbose {
                warn("host \(host.name): nodes \(hostNodes.map(String.init).joined(separator: ",")) through `\((sites.rsh + [host.name]).joined(separator: " "))` (pid \(remote.pid))")
            }
            remotes.append(remote)
        }
        return nil
    }

    private func spawn(_ path: String, _ argv: [String], _ envp: [String]) -> pid_t {
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = envp.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        // Standard input is node 0's: when node 0 runs on another host, the
        // nodes here read /dev/null (as mpirun's other ranks do).
        guard sites.engine == nil, sites.isRemote(0) else { return cdsm_spawn(path, &cArgs, &cEnv) }
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        return cdsm_spawn_stdin(path, &cArgs, &cEnv, devNull)
    }

    /// Node 0 on another host: the launcher's standard input goes to it
    /// through its agent, as much as the control connection takes (a node
    /// 0 that does not read holds the reading back).
    private var standardInputEnded = false
    private func forwardStandardInput() {
        guard !standardInputEnded, sites.engine == nil, sites.isRemote(0),
              let remote = remotes.first(where: { $0.nodes.contains(0) }), let control = remote.control else { return }
        do { try control.flush() } catch { standardInputEnded = true; return }
        guard !control.hasPendingOutput else { return }
        var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let n = read(0, &buffer, buffer.count)
        if n < 0 && cdsm_errno() == EINTR { return }
        // The end (or an error, or a background terminal): node 0 sees its end.
        if n <= 0 { standardInputEnded = true }
        buffer.withUnsafeBytes { bytes in
            control.queue(FrameHeader(kind: .stdinData, source: 0), payload: UnsafeRawBufferPointer(rebasing: bytes[0..<max(n, 0)]))
        }
        try? control.flush()
    }

    struct Ending {
        var node: NodeID
        var status: Int32
        var description: String
        var secondary: Bool
        var signalled = false
        /// Ended by a signal the user sent the job (and dsmrun passed on).
        var fromUser = false
    }

    /// Waits for every node, here and on other hosts. The first real failure
    /// stops the others.
    private func watch(rendezvous: RendezvousThread) -> Int32 {
        // Every node's end is watched, here or through its host's agent;
        // under an engine, only this task's node.
        var running = sites.engine.map { Set([$0.rank]) } ?? Set(0..<nodes)
        var firstFailure: Ending?
        var secondaryFailure: Ending?
        var stopDeadline: Int64?
        var killed = false
        var programStatus: Int32?
        var signalsSeen = cdsm_forwarded_count()

        // A node joins at its first DSM call or in exit(); one that ends
        // through _exit having made neither is fine while no node waits at
        // the rendezvous (every node of `sh -c 'echo hi'` leaves so), but
        // would leave any node that joined waiting for it.
        var leftUnjoined: Ending?

        func ended(_ ending: Ending) {
            guard running.remove(ending.node) != nil else { return }
            if verbose { warn(ending.description) }
            if ending.status == 0, sites.engine == nil, !rendezvous.coordinator.hasJoined(ending.node),
               !rendezvous.done.load(ordering: .acquiring) {
                if leftUnjoined == nil {
                    leftUnjoined = Ending(node: ending.node, status: 1, description: """
                        node \(ending.node)\(whereIs(ending.node)) ended (status 0) without joining the run: it made no DSM call and \
                        left through _exit, so the nodes that did cannot meet it
                        """, secondary: false)
                }
                return
            }
            ended(asFailure: ending)
        }

        func ended(asFailure ending: Ending) {
            if image && ending.node == 0 && !ending.signalled {
                // The program's own exit: its status is the run's. The
                // other nodes leave with it; any that linger are stopped.
                programStatus = ending.status
                if stopDeadline == nil && !running.isEmpty { stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds }
                return
            }
            guard ending.status != 0 else { return }
            if ending.secondary {
                if secondaryFailure == nil { secondaryFailure = ending }
            } else if firstFailure == nil {
                firstFailure = ending
                // Named even when a node that noticed the loss ended first;
                // not when the signal that ended it is one the user sent.
                if !ending.fromUser { warn(ending.description + (running.isEmpty ? "" : "; stopping the other nodes")) }
            }
            if stopDeadline == nil && !running.isEmpty {
                stopAll(signal: SIGTERM)
                stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds
            }
        }

        // Before every node has met, the runtime's heartbeats are not there
        // yet: a node here that stays stopped (SIGSTOP) that long is named
        // by the launcher instead.
        var stoppedSince: [NodeID: Int64] = [:]

        while !running.isEmpty || remotes.contains(where: { $0.pid > 0 }) {
            var raw: Int32 = 0
            let pid = waitpid(-1, &raw, WNOHANG | WUNTRACED | WCONTINUED)
            if pid > 0, raw & 0xff == 0x7f || raw == 0xffff {
                // Stopped, or continued: not an end.
                if let node = (0..<nodes).first(where: { groups[$0] == pid }) {
                    if raw == 0xffff { stoppedSince[node] = nil } else { stoppedSince[node] = monotonicMilliseconds() }
                }
                continue
            }
            if let (node, since) = stoppedSince.first, firstFailure == nil, !rendezvous.done.load(ordering: .acquiring),
               Double(monotonicMilliseconds() - since) > sites.peerTimeout * 1000 {
                stoppedSince[node] = nil
                ended(asFailure: Ending(node: node, status: NodeExitStatus.peerSilent, description: """
                    node \(node) (pid \(groups[node])) has been stopped for \(sites.peerTimeout) s before every node had joined \
                    the run (--peer-timeout)
                    """, secondary: false))
            }
            if pid > 0 {
                if let node = (0..<nodes).first(where: { groups[$0] == pid }) { stoppedSince[node] = nil }
                if let node = (0..<nodes).first(where: { groups[$0] == pid }) {
                    // Anything the node left in its process group goes with
                    // it; then the group is forgotten (its id may be reused).
                    kill(-pid, SIGKILL)
                    let ending = describe(node: node, raw: raw)
                    groups[node] = 0
                    ended(ending)
                } else if let remote = remotes.first(where: { $0.pid == pid }) {
                    kill(-pid, SIGKILL)
                    remote.pid = 0
                    // An agent whose nodes ended at once may exit before the
                    // rendezvous thread has handed over its connection: what
                    // it reported is read from there, not taken as lost.
                    let deadline = monotonicMilliseconds() + 1_000
                    while remote.control == nil && monotonicMilliseconds() < deadline {
                        attachArrivedAgents()
                        if remote.control == nil { usleep(10_000) }
                    }
                    let (reported, lost) = remote.agentExited(raw: raw, running: running)
                    for (node, raw) in reported { ended(describe(node: node, raw: raw)) }
                    for ending in lost { ended(ending) }
                }
                continue
            }
            if pid < 0 && cdsm_errno() == ECHILD && remotes.allSatisfy({ $0.pid == 0 }) { break }
            attachArrivedAgents()
            for remote in remotes {
                for (node, raw) in remote.poll() where sites.placement[node] == remote.index {
                    ended(describe(node: node, raw: raw))
                }
            }
            forwardStandardInput()
            let signals = cdsm_forwarded_count()
            if signals != signalsSeen {
                signalsSeen = signals
                for remote in remotes {
                    if !image { remote.signal(cdsm_forwarded_signal()) } else if remote.nodes.contains(0) { remote.signal(cdsm_forwarded_signal(), node: 0) }
                }
            }
            if running.isEmpty && stopDeadline == nil {
                // Every node has ended: agents leave by themselves; any that
                // does not within the grace period is stopped.
                stopDeadline = monotonicMilliseconds() + Launcher.graceMilliseconds
            }
            if let deadline = stopDeadline, monotonicMilliseconds() > deadline {
                if !killed {
                    stopAll(signal: SIGKILL)
                    killed = true
                } else if monotonicMilliseconds() > deadline + Launcher.graceMilliseconds {
                    // A remote start command that outlives its agent's nodes.
                    for remote in remotes where remote.pid > 0 { kill(-remote.pid, SIGKILL) }
                }
            }
            if let left = leftUnjoined, firstFailure == nil, rendezvous.coordinator.anyJoined,
               !rendezvous.done.load(ordering: .acquiring) {
                ended(asFailure: left)
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
        for remote in remotes { remote.close() }
        if let f = firstFailure {
            return f.status
        }
        if let programStatus { return programStatus }
        if let s = secondaryFailure {
            warn(s.description)
            return s.status
        }
        // Every node ended well, a signal the user sent included (the
        // program handled it): the program's status, as natively.
        return 0
    }

    private func whereIs(_ node: NodeID) -> String {
        sites.placement.isEmpty ? "" : " on host \(sites.hosts[sites.placement[node]].name)"
    }

    private func describe(node: NodeID, raw: Int32) -> Ending {
        let exited = raw & 0x7f == 0
        if exited {
            let code = (raw >> 8) & 0xff
            if code == NodeExitStatus.abortedByPeer {
                return Ending(node: node, status: code, description: "node \(node)\(whereIs(node)) stopped because another node failed", secondary: true)
            }
            if code == NodeExitStatus.peerSilent {
                return Ending(node: node, status: code, description: """
                    node \(node)\(whereIs(node)) stopped the run: a node went silent for --peer-timeout (\(sites.peerTimeout) s; \
                    its message above names it)
                    """, secondary: false)
            }
            return Ending(node: node, status: code, description: "node \(node)\(whereIs(node)) exited with status \(code)", secondary: false)
        }
        let signal = raw & 0x7f
        let name = String(cString: strsignal(signal))
        let pid = sites.isRemote(node) ? "" : " (pid \(groups[node]))"
        return Ending(node: node, status: 128 + signal,
                      description: "node \(node)\(whereIs(node))\(pid) was killed by signal \(signal) (\(name))",
                      secondary: false, signalled: true, fromUser: cdsm_was_forwarded(signal) != 0)
    }

    /// Sends `signal` to every node, here and on the other hosts. A SIGTERM
    /// is followed by SIGCONT, so that a stopped node (the one that went
    /// silent) ends now rather than at the SIGKILL after the grace period.
    private func stopAll(signal: Int32) {
        for i in 0..<nodes where groups[i] > 0 {
            kill(-groups[i], signal)
            if signal == SIGTERM { kill(-groups[i], SIGCONT) }
        }
        for remote in remotes {
            remote.stop(signal: signal)
            if signal == SIGTERM { remote.signal(SIGCONT) }
        }
    }

    private func reapAll() {
        var raw: Int32 = 0
        while waitpid(-1, &raw, 0) > 0 {}
    }

}


/// A new secret for a run: 24 random bytes as hex.
func makeToken() -> String {
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

/// Agents' control connections, handed from the rendezvous thread (which
/// accepts them) to the launcher's thread.
final class AgentMailbox: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private var posted: [(Connection, Int)] = []
    func post(_ connection: Connection, host: Int) { lock.withLock { _ in posted.append((connection, host)) } }
    func take() -> (Connection, Int)? { lock.withLock { _ in posted.isEmpty ? nil : posted.removeFirst() } }
}

/// The rendezvous on its own thread.
final class RendezvousThread {
    let coordinator: Coordinator
    private var thread = pthread_t()
    /// Set when every node has met.
    let done = Atomic<Bool>(false)
    /// Set by the launcher's thread when the run is over.
    let giveUp = Atomic<Bool>(false)
    /// Set (after `failure`) when the rendezvous failed.
    let failed = Atomic<Bool>(false)
    /// Written before `failed` is set, read after it is seen.
    nonisolated(unsafe) var failure: String?

    /// How often nodes waiting for the others hear from the launcher.
    let beatMilliseconds: Int64

    init(coordinator: Coordinator, beatMilliseconds: Int64) {
        self.coordinator = coordinator
        self.beatMilliseconds = beatMilliseconds
    }

    func start() {
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { context in
            let me = Unmanaged<RendezvousThread>.fromOpaque(context!).takeRetainedValue()
            do {
                try me.coordinator.run(beatMilliseconds: me.beatMilliseconds, shouldGiveUp: { me.giveUp.load(ordering: .acquiring) },
                                       log: { warn($0) })
                me.done.store(true, ordering: .releasing)
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
