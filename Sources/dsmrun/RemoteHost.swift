import CDSMKernel
import DSMCore
import DSMLaunch
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// The launcher's side of another host: the remote start command (ssh or
/// `--rsh`) running `dsmrun --agent` there, the pipe that is the agent's
/// standard input and lifeline, and the agent's control connection.
final class RemoteHost {
    let index: Int
    let name: String
    let nodes: [NodeID]
    /// The remote start command's process (its own process group); 0 once reaped.
    var pid: pid_t = 0
    /// Write end of the agent's standard input: closing it tells the agent
    /// the launcher is gone.
    private var lifeline: Int32 = -1
    /// Set once the agent has connected back.
    var control: Connection?
    private var command: String = ""

    init(index: Int, name: String, nodes: [NodeID]) {
        self.index = index
        self.name = name
        self.nodes = nodes
    }

    /// Runs `rsh HOST COMMAND` (ssh's calling convention: the command is one
    /// string for the remote shell) and writes the spec to its stdin.
    func start(rsh: [String], command: String, spec: AgentSpec) -> LaunchProblem? {
        self.command = (rsh + [name]).joined(separator: " ")
        let bytes = spec.encoded()
        // The whole spec fits in the pipe, so writing never waits for the agent.
        var ends: [Int32] = [0, 0]
        let made = cdsm_pipe(&ends, Int32(bytes.count + 4096))
        guard made == 0 else {
            return LaunchProblem(message: "host \(name): cannot make a pipe for the run's description: \(Errno(rawValue: -made))", status: 1)
        }
        let argv = rsh + [name, command]
        let path = resolveProgram(argv[0])
        guard case .success(let executable) = path else {
            Glibc.close(ends[0]); Glibc.close(ends[1])
            return LaunchProblem(message: "host \(name): remote start command \(argv[0]) not found", status: 127)
        }
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = currentEnvironment().map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        let pid = cdsm_spawn_stdin(executable, &cArgs, &cEnv, ends[0])
        Glibc.close(ends[0])
        guard pid > 0 else {
            Glibc.close(ends[1])
            return LaunchProblem(message: "host \(name): cannot run \(argv[0]): \(Errno(rawValue: -pid))", status: 1)
        }
        self.pid = pid
        lifeline = ends[1]
        let written = bytes.withUnsafeBytes { write(lifeline, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            stop(signal: SIGKILL)
            return LaunchProblem(message: "host \(name): cannot hand the run to `\(self.command)` (it exited at once?)", status: 1)
        }
        return nil
    }

    /// Node endings the agent has reported since the last call.
    func poll() -> [(NodeID, Int32)] { read(timeoutMilliseconds: 0).endings }

    /// Reads the control connection: the endings it reports, and whether it
    /// is still open.
    private func read(timeoutMilliseconds: Int32) -> (endings: [(NodeID, Int32)], open: Bool) {
        guard let control else { return ([], false) }
        var endings: [(NodeID, Int32)] = []
        var broken = false
        func drain() {
            do {
                while let (header, _) = try control.nextFrame() {
                    if header.kind == .nodeEnded, header.a < UInt64(Int.max), nodes.contains(Int(header.a)) {
                        endings.append((Int(header.a), Int32(bitPattern: header.index)))
                    }
                }
            } catch {
                // Nothing after a broken frame can be read: the connection
                // is dropped (the agent's end then tells what became of its
                // nodes), and its bytes stop piling up.
                warn("host \(name): the agent broke the protocol: \(error); its connection is closed")
                self.control = nil
                broken = true
            }
        }
        // Frames that came in with the agent's hello are buffered already.
        drain()
        if broken { return (endings, false) }
        var p = pollfd(fd: control.fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&p, 1, endings.isEmpty ? timeoutMilliseconds : 0) > 0 else { return (endings, true) }
        let result = try? control.receive()
        drain()
        return (endings, !broken && (result == .data || result == .wouldBlock))
    }

    /// The remote start command has ended: whatever the agent still had to
    /// say is read (endings reported last), and the host's nodes it did
    /// not report are lost.
    func agentExited(raw: Int32, running: Set<NodeID>) -> (reported: [(NodeID, Int32)], lost: [Launcher.Ending]) {
        var late: [(NodeID, Int32)] = []
        if control != nil {
            // Its last frames may still be in flight.
            let deadline = monotonicMilliseconds() + 1_000
            while monotonicMilliseconds() < deadline {
                let (endings, open) = read(timeoutMilliseconds: 50)
                late += endings
                if !open { break }
            }
        }
        let lost = nodes.filter { node in running.contains(node) && !late.contains { $0.0 == node } }
        guard !lost.isEmpty else { return (late, []) }
        let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        let how = raw & 0x7f == 0 ? "exited with status \(code)" : "was killed by signal \(raw & 0x7f)"
        let what = control == nil
            ? "host \(name): could not start its nodes (\(lost.map(String.init).joined(separator: ","))): `\(command)` \(how)"
            : "host \(name): lost its nodes \(lost.map(String.init).joined(separator: ",")): `\(command)` \(how)"
        return (late, lost.enumerated().map { i, node in
            Launcher.Ending(node: node, status: code == 0 ? 1 : code, description: what, secondary: i > 0)
        })
    }

    /// Forwards a signal to the host's nodes.
    /// Sends `signal` to the host's nodes, or to `node` only.
    func signal(_ signal: Int32, node: NodeID? = nil) {
        guard pid > 0 else { return }
        guard let control else {
            // The agent has not connected yet: its nodes may not exist, and
            // ending the remote start command ends the agent and them.
            if signal != SIGCONT { stop(signal: signal) }
            return
        }
        try? control.sendBlocking(FrameHeader(kind: .signalNodes, source: 0, index: node.map { UInt32($0) + 1 } ?? 0, a: UInt64(signal)), payload: [],
                                  timeoutMilliseconds: 1_000)
    }

    /// Stops the host's nodes: through the agent, or, for SIGKILL or an
    /// agent not yet connected, by ending the remote start command (the
    /// agent then sees its lifeline close and kills its nodes).
    func stop(signal: Int32) {
        guard pid > 0 else { return }
        if signal != SIGKILL, control != nil {
            self.signal(signal)
            return
        }
        close()
        kill(-pid, signal == SIGKILL ? SIGKILL : SIGTERM)
    }

    /// Closes the lifeline and the control connection.
    func close() {
        if lifeline >= 0 {
            Glibc.close(lifeline)
            lifeline = -1
        }
        control = nil
    }
}

/// This process's environment, as `NAME=value` strings.
func currentEnvironment() -> [String] {
    var out: [String] = []
    var index = 0
    while let entry = environ[index] {
        out.append(String(cString: entry))
        index += 1
    }
    return out
}

func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return String(cString: buffer)
}

/// `text` quoted for a POSIX shell.
func shellQuoted(_ text: String) -> String {
    "'" + text.replacingAll("'", with: "'\\''") + "'"
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
