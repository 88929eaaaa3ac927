import CDSMKernel
import DSMCore
import DSMLaunch
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// `dsmrun --agent`: the launcher's helper on another host, started there by
/// ssh (or `--rsh`). It reads the run from its standard input, checks that
/// this host has the same program and runtime, starts the host's nodes and
/// reports how each ends over a control connection to the launcher. When
/// the launcher goes (its pipe or its connection closes), it kills the
/// nodes: nothing of a run outlives its launcher on any host.
enum Agent {
    static func run() -> Int32 {
        // Its standard streams are ssh's: a closed one must not kill the
        // agent before it has killed its nodes.
        signal(SIGPIPE, SIG_IGN)
        guard let spec = readSpec() else {
            warn("--agent: no run description on standard input (this mode is started by dsmrun itself)")
            return 2
        }
        let host = "host \(spec.hostName)"
        guard !spec.token.isEmpty, spec.token.utf8.count <= Preamble.maxToken else {
            warn("\(host): --agent: the run's secret is \(spec.token.utf8.count) bytes (1 to \(Preamble.maxToken))")
            return 2
        }
        // Standard input was the launcher's pipe: it stays open as the
        // lifeline; the nodes read /dev/null.
        let lifeline = cdsm_high_fd(fcntl(0, F_DUPFD_CLOEXEC, 0))
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard lifeline >= 0, devNull >= 0 else {
            warn("\(host): cannot set up standard input: \(Errno(rawValue: cdsm_errno()))")
            return 2
        }
        guard chdir(spec.directory) == 0 else {
            warn("\(host): cannot enter \(spec.directory): \(Errno(rawValue: cdsm_errno())) (every host needs the launcher's working directory)")
            return 2
        }
        if let problem = checkSameFiles(spec, host: host) {
            warn(problem.message)
            return problem.status
        }
        guard let endpoint = Endpoint(parsing: spec.coordinator) else {
            warn("\(host): bad launcher address \(spec.coordinator)")
            return 2
        }
        let control: Connection
        do {
            control = try connectPresenting(token: spec.token, to: endpoint, timeoutMilliseconds: 10_000)
            try control.sendBlocking(FrameHeader(kind: .agentHello, source: 0, a: UInt64(spec.hostIndex)), payload: [],
                                     timeoutMilliseconds: 10_000)
        } catch {
            warn("\(host): cannot reach the launcher at \(spec.coordinator): \(error) (is that address routable from here? see --iface)")
            return 2
        }
        if cdsm_disable_aslr() != 0 { warn("\(host): cannot disable address-space randomisation; continuing") }

        let groups = UnsafeMutablePointer<pid_t>.allocate(capacity: spec.nodes.count)
        groups.initialize(repeating: 0, count: spec.nodes.count)
        cdsm_forward_signals(groups, Int32(spec.nodes.count))
        // Node 0 reads the launcher's standard input, which comes over the
        // control connection into this pipe; the others read /dev/null.
        var input = StandardInput()
        if spec.nodes.contains(0) {
            var ends: [Int32] = [0, 0]
            let made = cdsm_pipe(&ends, 65_536)
            guard made == 0 else {
                warn("\(host): cannot make node 0's standard input: \(Errno(rawValue: -made))")
                return 2
            }
            input.fd = ends[1]
            _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
            input.readEnd = ends[0]
        }
        for (slot, node) in spec.nodes.enumerated() {
            let pid = spawnNode(spec, node: node, stdin: node == 0 ? input.readEnd : devNull)
            if pid < 0 {
                warn("\(host): cannot start node \(node): \(Errno(rawValue: -pid))")
                // Reported as a node that exited 127, as a shell would.
                try? control.sendBlocking(FrameHeader(kind: .nodeEnded, source: 0, index: 127 << 8, a: UInt64(node)),
                                          payload: [], timeoutMilliseconds: 5_000)
                continue
            }
            groups[slot] = pid
        }
        if input.readEnd >= 0 {
            close(input.readEnd)
            input.readEnd = -1
        }
        return watch(spec, groups: groups, control: control, lifeline: lifeline, input: &input)
    }

    /// Node 0's standard input on this host: bytes from the launcher not yet
    /// taken by the pipe. The control connection is not read while some
    /// wait, so a node 0 that does not read holds the launcher back (TCP's
    /// own flow control) instead of filling the agent's memory.
    struct StandardInput {
        var fd: Int32 = -1
        var readEnd: Int32 = -1
        var pending: [UInt8] = []
        var ended = false

        mutating func take(_ payload: UnsafeRawBufferPointer) {
            guard fd >= 0 else { return }
            if payload.isEmpty { ended = true } else { pending.append(contentsOf: payload) }
            push()
        }

        /// Writes what the pipe takes now; closes it at the end, or when
        /// node 0 no longer reads it.
        mutating func push() {
            guard fd >= 0 else { return }
            while !pending.isEmpty {
                let n = pending.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    pending.removeFirst(n)
                    continue
                }
                if n < 0 && (cdsm_errno() == EAGAIN || cdsm_errno() == EINTR) { return }
                pending.removeAll()
                ended = true
            }
            if ended {
                close(fd)
                fd = -1
            }
        }
    }

    /// Reads the spec: NUL-ended entries up to an empty one, within 30 s.
    private static func readSpec() -> AgentSpec? {
        var bytes: [UInt8] = []
        let deadline = monotonicMilliseconds() + 30_000
        var byte: UInt8 = 0
        while true {
            var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            let left = deadline - monotonicMilliseconds()
            guard left > 0, poll(&p, 1, Int32(left)) > 0 else { return nil }
            // One byte at a time: what follows the spec is not ours to read.
            guard read(0, &byte, 1) == 1 else { return nil }
            bytes.append(byte)
            if byte == 0 && (bytes.count == 1 || bytes[bytes.count - 2] == 0) { break }
            if bytes.count > 16 << 20 { return nil }
        }
        return AgentSpec.decode(bytes)
    }

    /// The program and the runtime must be here and be the launcher's.
    private static func checkSameFiles(_ spec: AgentSpec, host: String) -> LaunchProblem? {
        switch resolveProgram(spec.program) {
        case .failure(let problem):
            return LaunchProblem(message: "\(host): \(problem.message) (every host needs the program at the same path)",
                                 status: problem.status)
        case .success: break
        }
        guard access(spec.runtime, R_OK) == 0 else {
            return LaunchProblem(message: "\(host): runtime library not found: \(spec.runtime) (every host needs it at the same path)",
                                 status: 2)
        }
        for (path, expected, what) in [(spec.program, spec.programFingerprint, "program"),
                                       (spec.runtime, spec.runtimeFingerprint, "runtime library")] {
            guard let found = fileFingerprint(path) else {
                return LaunchProblem(message: "\(host): cannot read the \(what) \(path)", status: 2)
            }
            if found != expected {
                return LaunchProblem(message: """
                    \(host): the \(what) \(path) differs from the launcher's (fingerprint \(hex(found)) against \(hex(expected))): \
                    every host must run the same build
                    """, status: 2)
            }
        }
        return nil
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    private static func spawnNode(_ spec: AgentSpec, node: Int, stdin: Int32) -> pid_t {
        // Output forwarding compares with this host's streams (ssh's), not the launcher's.
        var environment = spec.environment.filter { !$0.hasPrefix("DSM_FORWARD_OUTPUT=") }
        if environment.count != spec.environment.count { environment.append("DSM_FORWARD_OUTPUT=\(standardStreamIdentities())") }
        environment += ["DSM_NODE_ID=\(node)", "DSM_LOCAL_NODES=\(spec.nodes.count)", "PWD=\(spec.directory)",
                        "DSM_STARTER_PID=\(getpid())"]
        var cArgs = spec.arguments.map { strdup($0) } + [nil]
        var cEnv = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        return cdsm_spawn_stdin(spec.program, &cArgs, &cEnv, stdin)
    }

    /// Reports each node's end to the launcher; kills every node when the
    /// launcher goes. Returns once every node has ended.
    private static func watch(_ spec: AgentSpec, groups: UnsafeMutablePointer<pid_t>, control: Connection,
                              lifeline: Int32, input: inout StandardInput) -> Int32 {
        var alive = (0..<spec.nodes.count).filter { groups[$0] > 0 }.count
        var launcherGone = false
        while alive > 0 {
            var raw: Int32 = 0
            let pid = waitpid(-1, &raw, WNOHANG)
            if pid > 0, let slot = (0..<spec.nodes.count).first(where: { groups[$0] == pid }) {
                alive -= 1
                kill(-pid, SIGKILL)
                groups[slot] = 0
                if !launcherGone {
                    try? control.sendBlocking(FrameHeader(kind: .nodeEnded, source: 0, index: UInt32(bitPattern: raw),
                                                          a: UInt64(spec.nodes[slot])),
                                              payload: [], timeoutMilliseconds: 5_000)
                }
                continue
            }
            if launcherGone {
                usleep(5_000)
                continue
            }
            let waiting = !input.pending.isEmpty
            var fds = [pollfd(fd: lifeline, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: control.fd, events: waiting ? 0 : Int16(POLLIN), revents: 0),
                       pollfd(fd: waiting ? input.fd : -1, events: Int16(POLLOUT), revents: 0)]
            _ = poll(&fds, 3, 5)
            if fds[2].revents != 0 { input.push() }
            var gone = false
            if fds[0].revents != 0 {
                var scratch = [UInt8](repeating: 0, count: 256)
                if read(lifeline, &scratch, scratch.count) <= 0 { gone = true }
            }
            if fds[1].revents != 0 {
                do {
                    if try control.receive() == .endOfStream { gone = true }
                    while let (header, payload) = try control.nextFrame() {
                        if header.kind == .signalNodes, header.a < 65 {
                            // `index` > 0: node index - 1 only (node 0 of an image).
                            for slot in 0..<spec.nodes.count where groups[slot] > 0
                                && (header.index == 0 || spec.nodes[slot] == Int(header.index) - 1) {
                                kill(-groups[slot], Int32(header.a))
                            }
                        } else if header.kind == .stdinData {
                            input.take(payload)
                        }
                    }
                } catch {
                    warn("host \(spec.hostName): the launcher's connection broke the protocol: \(error)")
                    gone = true
                }
            }
            if gone {
                launcherGone = true
                // Kill first: the message may go nowhere (ssh's pipes closed).
                for slot in 0..<spec.nodes.count where groups[slot] > 0 { kill(-groups[slot], SIGKILL) }
                warn("host \(spec.hostName): the launcher is gone; stopped this host's nodes")
            }
        }
        return launcherGone ? 1 : 0
    }
}
