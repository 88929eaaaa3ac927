import ArgumentParser
import CDSMKernel
import DSMCore
import DSMLaunch
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

@main
struct DSMRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsmrun",
        abstract: "Run a program on N nodes as one shared-memory machine.",
        discussion: """
            Without --spmd (image mode), main runs once, on node 0; the program's threads are placed over the \
            nodes and its heap, data, bss and thread stacks are shared coherently, with pthread mutexes, \
            conditions, barriers, rwlocks and semaphores served cluster-wide.
            With --spmd, main runs on every node (DSM_NODE_ID = 0..N-1, DSM_NODES = N) and System V \
            shared memory segments and semaphores are shared by key across the nodes.
            """)

    @Option(name: .customShort("n"), help: "Number of nodes (1...\(maxNodes)); with --hosts or --hostfile, the slots by default.")
    var nodes: Int?

    @Option(help: ArgumentHelp("Run the nodes on these hosts: host[:slots],... Nodes fill each host's slots in order; without slots they are spread evenly.",
                               valueName: "hosts"))
    var hosts: String?

    @Option(help: ArgumentHelp("Hosts from a file in mpirun's format: 'host slots=N' a line, '#' comments.", valueName: "file"))
    var hostfile: String?

    @Option(help: ArgumentHelp("How to start dsmrun on another host, called as CMD HOST COMMAND (default: ssh -o BatchMode=yes -T -x).",
                               valueName: "cmd"))
    var rsh: String?

    @Option(help: ArgumentHelp("The interface (name, or network as ADDRESS/BITS) the nodes listen and connect on. Default: the route towards the other hosts; loopback when every node is here.",
                               valueName: "iface"))
    var iface: String?

    @Flag(help: "Run main on every node (mpirun-like); System V segments and semaphores are shared.")
    var spmd = false

    @Option(help: "Image mode: where new threads go: round-robin (from the creator's next node) or local.")
    var placement: PlacementPolicy = .roundRobin

    @Flag(inversion: .prefixedNo,
          help: "Pin node i to CPU i mod CPUs, memory on its NUMA node (libnuma). Default: on a host where 2 or more nodes can each have a CPU of their own.")
    var bind: Bool?

    @Option(help: ArgumentHelp("A node that hears nothing from another for this long (a frozen process, a host cut off) ends the run (default 10, or $DSM_PEER_TIMEOUT).",
                               valueName: "seconds"))
    var peerTimeout: Double?

    // What users tune. Each flag sets a DSM_* variable for the nodes (the
    // variable itself works too; the flag wins); all are checked before any
    // node starts (DSMCore's Tunables).

    @Option(name: .customLong("heap-mb"),
            help: ArgumentHelp("Image mode's heap reservation (16 to 1048576; default 1 TiB): it costs memory only where touched.",
                               valueName: "MiB"))
    var heapMB: String?

    @Option(help: ArgumentHelp("The largest readahead window (0 to 4096; default 128; 0: off).", valueName: "pages"))
    var prefetch: String?

    @Flag(inversion: .prefixedNo, help: "A read miss on an even page also fetches the next one (default: on).")
    var buddyPrefetch: Bool?

    @Flag(inversion: .prefixedNo,
          help: "Pages that nodes read and then write in turn go whole to the next reader (default: on).")
    var migratory: Bool?

    @Option(help: ArgumentHelp("The memory model: sequential (the default) or release (nodes write one page side by side between synchronisations; for data-race-free programs that synchronise through pthreads, System V semaphores or futexes, not C11 atomics or spin flags; see the README).",
                               valueName: "model"))
    var consistency: String?

    @Option(name: .customLong("hold-us"),
            help: ArgumentHelp("How long a page brought in for a waiting thread stays before another node may take it (1 to 100000; default 50).",
                               valueName: "µs"))
    var holdUS: String?

    @Option(name: .customLong("spin-us"),
            help: ArgumentHelp("How long the runtime thread polls while a thread of its node waits on it (0 to 10000; default 50 when each node has a CPU of its own, else 0).",
                               valueName: "µs"))
    var spinUS: String?

    @Option(help: "The runtime thread's scheduling: adaptive (real-time, ordinary while image mode's locks keep it busy; the default), realtime, or normal.")
    var runtimePriority: RuntimePriority?

    @Flag(help: "Log every lock-token grant, recall and release of image mode on stderr (a diagnostic).")
    var traceLocks = false

    @Option(name: .customLong("delay-us"),
            help: ArgumentHelp("Emulate distance: every frame a node sends leaves this much later (0 to 1000000; benchmarks).", valueName: "µs"))
    var delayUS: String?

    /// The DSM_* settings the flags above make, and each flag's name.
    var tunableSettings: [(variable: String, flag: String, value: String)] {
        var settings: [(String, String, String?)] = [
            ("DSM_HEAP_MB", "--heap-mb", heapMB), ("DSM_PREFETCH", "--prefetch", prefetch),
            ("DSM_PREFETCH_BUDDY", "--buddy-prefetch", buddyPrefetch.map { $0 ? "1" : "0" }),
            ("DSM_MIGRATORY", "--migratory", migratory.map { $0 ? "1" : "0" }),
            ("DSM_CONSISTENCY", "--consistency", consistency),
            ("DSM_HOLD_US", "--hold-us", holdUS), ("DSM_SPIN_US", "--spin-us", spinUS),
            ("DSM_TRACE_LOCKS", "--trace-locks", traceLocks ? "1" : nil), ("DSM_DELAY_US", "--delay-us", delayUS),
            ("DSM_PEER_TIMEOUT", "--peer-timeout", peerTimeout.map { String($0) }),
        ]
        if let runtimePriority {
            settings.append(("DSM_RUNTIME_FIFO", "--runtime-priority", runtimePriority == .normal ? "0" : "1"))
            settings.append(("DSM_ADAPTIVE", "--runtime-priority", runtimePriority == .adaptive ? "1" : "0"))
        }
        return settings.compactMap { variable, flag, value in value.map { (variable, flag, $0) } }
    }

    /// The tunables the nodes will have: flags over the environment.
    func tunables() throws(TunableError) -> Tunables {
        let settings = tunableSettings
        return try Tunables { name in settings.first { $0.variable == name }?.value ?? environment(name) }
    }

    @Flag(help: "Say what the launcher and the nodes do.")
    var verbose = false

    @Option(help: "The runtime library to preload (default: libDSMRuntime.so next to dsmrun, or $DSM_RUNTIME).")
    var runtime: String?

    @Option(name: .customLong("stats"),
            help: ArgumentHelp("Print per-node counters at exit: --stats (a table) or --stats=json (one JSON line), on stderr.",
                               valueName: "table|json"))
    var statsFormat: StatsFormat?

    /// `--stats` alone means `--stats=table`: rewritten before parsing, up to
    /// the program's name (its own arguments are never touched).
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["--agent"] { Glibc.exit(Agent.run()) }
        // Writes to a remote host's pipe that has gone must fail, not kill
        // the launcher before it has cleaned up.
        signal(SIGPIPE, SIG_IGN)
        // Reading standard input for a node on another host from the
        // background must end its input, not stop the launcher.
        signal(SIGTTIN, SIG_IGN)
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" || !a.hasPrefix("-") { break }
            if a == "--stats" { arguments[i] = "--stats=table" }
            // The program's arguments are captured as they come, so the
            // parser would take --help for the program.
            if a == "--help" || a == "-h" {
                print(helpMessage())
                Glibc.exit(0)
            }
            if ["-n", "--runtime", "--placement", "--hosts", "--hostfile", "--rsh", "--iface", "--peer-timeout", "--heap-mb",
                "--prefetch", "--hold-us", "--spin-us", "--runtime-priority", "--delay-us", "--consistency"].contains(a) { i += 1 }
            i += 1
        }
        main(arguments)
    }

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String] = []

    func validate() throws {
        if hosts != nil && hostfile != nil { throw ValidationError("give --hosts or --hostfile, not both") }
        if let nodes {
            guard nodes >= 1 && nodes <= maxNodes else {
                throw ValidationError("-n must be between 1 and \(maxNodes), got \(nodes)")
            }
        } else if hosts == nil && hostfile == nil && !EngineWireUp.present && !SlurmAllocation.present {
            throw ValidationError("missing -n: how many nodes to run (or --hosts / --hostfile to take their slots)")
        }
        if let rsh, rsh.split(separator: " ").isEmpty { throw ValidationError("--rsh: empty command") }
        do {
            _ = try tunables()
        } catch {
            // Said with the flag's name when a flag gave the value.
            var message = error.description
            if let setting = tunableSettings.first(where: { $0.variable == error.name }) {
                message = message.replacingOccurrences(of: error.name, with: setting.flag)
            }
            throw ValidationError(message)
        }
        guard !command.isEmpty, !(command.count == 1 && command[0] == "--") else {
            throw ValidationError("no program to run")
        }
    }

    func run() throws {
        var arguments = command
        if arguments.first == "--" { arguments.removeFirst() }
        let program: String
        switch resolveProgram(arguments[0]) {
        case .success(let path): program = path
        case .failure(let problem):
            warn(problem.message)
            throw ExitCode(problem.status)
        }
        if !spmd && ProgramKind.inspect(path: program) == .script {
            // Image mode runs one program's main once; a script's
            // interpreter would run on every node, and what it starts as N
            // unrelated copies.
            warn("""
                \(arguments[0]) is a script: image mode runs one executable as one program over the nodes, and a script \
                would run on every node, with what it starts as unrelated copies. Run the program itself (set its \
                environment in dsmrun's: VAR=value dsmrun -n N ./app), or use --spmd to run the script on every node
                """)
            throw ExitCode(126)
        }
        let library = runtime ?? environment("DSM_RUNTIME") ?? defaultRuntimePath()
        guard access(library, R_OK) == 0 else {
            warn("runtime library not found: \(library) (build it with `swift build -c release`, or pass --runtime)")
            throw ExitCode(2)
        }
        let placed = hosts != nil || hostfile != nil
        if !placed && !EngineWireUp.present && SlurmAllocation.present {
            // salloc / sbatch: srun starts one dsmrun task per node, which
            // then find each other through PMIx.
            throw ExitCode(SlurmAllocation.run(nodes: nodes, arguments: Array(CommandLine.arguments.dropFirst())))
        }
        var sites = Sites()
        var count = 0
        do {
            if !placed && EngineWireUp.present {
                let wireUp = try EngineWireUp.join(iface: iface, program: absolutePath(program), runtime: absolutePath(library),
                                                   makeToken: makeToken)
                if let nodes, nodes != wireUp.size {
                    wireUp.finish()
                    throw LaunchProblem(message: "-n \(nodes), but the job that started dsmrun has \(wireUp.size) tasks (one node each)", status: 2)
                }
                sites.engine = wireUp
                count = wireUp.size
            } else if let hosts {
                sites.hosts = try HostList.parse(option: hosts)
            } else if let hostfile {
                guard let text = readTextFile(hostfile) else {
                    throw LaunchProblem(message: "cannot read the hostfile \(hostfile): \(Errno(rawValue: cdsm_errno()))", status: 2)
                }
                sites.hosts = try HostList.parse(hostfile: text, path: hostfile)
            }
            if sites.engine == nil && sites.hosts.isEmpty {
                count = nodes!
            } else if sites.engine == nil {
                sites.placement = try HostList.place(nodes: nodes, on: sites.hosts)
                count = sites.placement.count
                guard count >= 1 && count <= maxNodes else {
                    throw LaunchProblem(message: "the hosts give \(count) nodes; a run has 1 to \(maxNodes)", status: 2)
                }
                sites.local = sites.hosts.map { HostList.isThisHost($0.name) }
            }
        } catch let problem as LaunchProblem {
            warn(problem.message)
            throw ExitCode(problem.status)
        }
        if let rsh { sites.rsh = rsh.split(separator: " ").map(String.init) }
        sites.iface = iface
        // Checked in validate(): the default stands only for the impossible.
        sites.peerTimeout = Double(((try? tunables()) ?? Tunables()).peerTimeoutNanoseconds) / 1e9
        // A node started on another host must find the program at the same
        // path: a relative path is taken from the launcher's directory.
        let programPath = sites.anyRemote && !program.hasPrefix("/") ? currentDirectory() + "/" + program : program
        let launcher = Launcher(nodes: count, program: programPath, arguments: arguments, runtime: absolutePath(library), verbose: verbose,
                                stats: statsFormat, bind: bind,
                                image: !spmd, placement: placement, sites: sites,
                                settings: tunableSettings.filter { $0.variable != "DSM_PEER_TIMEOUT" }.map { "\($0.variable)=\($0.value)" })
        throw ExitCode(launcher.run())
    }
}

enum PlacementPolicy: String, ExpressibleByArgument {
    case roundRobin = "round-robin"
    case local
}

enum RuntimePriority: String, ExpressibleByArgument {
    case adaptive, realtime, normal
}

enum StatsFormat: String, ExpressibleByArgument {
    case table, json
}

/// Finds the program as a shell would: a path with a slash is taken as is,
/// a bare name is looked up in PATH.
func resolveProgram(_ name: String) -> Result<String, LaunchProblem> {
    func check(_ path: String) -> LaunchProblem? {
        var st = stat()
        guard stat(path, &st) == 0 else { return LaunchProblem(message: "program not found: \(name)", status: 127) }
        if st.st_mode & S_IFMT == S_IFDIR { return LaunchProblem(message: "\(name) is a directory, not a program", status: 126) }
        guard access(path, X_OK) == 0 else { return LaunchProblem(message: "\(name) is not executable", status: 126) }
        if ProgramKind.inspect(path: path) == .staticExecutable {
            return LaunchProblem(message: """
                \(name) is statically linked: dsmrun's runtime enters a program through the dynamic loader (LD_PRELOAD), \
                so each node would run an unrelated copy; link it without -static
                """, status: 126)
        }
        return nil
    }
    if name.contains("/") {
        if let problem = check(name) { return .failure(problem) }
        return .success(name)
    }
    for directory in (environment("PATH") ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if access(candidate, X_OK) == 0 && check(candidate) == nil { return .success(candidate) }
    }
    return .failure(LaunchProblem(message: "program not found: \(name) (not a path, and not in PATH)", status: 127))
}

func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 { return nil }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : currentDirectory() + "/" + path
}

/// This executable's path (so that agents on other hosts run the same dsmrun).
func defaultExecutablePath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return CommandLine.arguments[0] }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func defaultRuntimePath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "libDSMRuntime.so" }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return directory + "/libDSMRuntime.so"
}

func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(cString: v)
}

func warn(_ message: String) {
    let line = "dsmrun: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
