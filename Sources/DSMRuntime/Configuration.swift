import CDSMKernel
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// What dsmrun tells a node through its environment.
struct Configuration {
    var node: NodeID
    var nodes: Int
    var coordinator: Endpoint
    var token: String
    var verbose: Bool
    /// dsmrun --stats: report counters to the launcher at exit.
    var stats: Bool
    /// dsmrun --bind: pin to one CPU, memory on its NUMA node
    /// (DSM_BIND=1; auto: when 2 or more nodes on this host each have a CPU).
    var bind: Bool
    /// How many nodes of the run are on this host (DSM_LOCAL_NODES).
    var localNodes = 1
    /// Where segments are placed so that they sit at the same address on
    /// every node (DSM_BASE, hex).
    var base: UInt64
    /// Image mode (DSM_MODE=image): main on node 0, threads spread.
    var image = false
    /// The program dsmrun was asked to run (DSM_PROGRAM).
    var program: String?
    /// What users tune (DSMCore's Tunables: heap, readahead, hold window,
    /// polling, real-time policy, peer timeout, emulated delay).
    var tunables = Tunables()
    /// Size of the image-mode heap, all arenas: a reservation, as Linux's
    /// overcommit grants one; pages cost memory once touched, and its tables
    /// cost nothing until then (ZeroTable), so the default is the largest
    /// (1 TiB).
    var heapBytes: UInt64 { tunables.heapBytes }
    var placement: Placement = .roundRobin
    /// The address this node's peers reach it at: on DSM_IFACE (an interface
    /// name or a CIDR network) when set, else on the route towards the
    /// coordinator (loopback when the coordinator is on this host).
    var listenAddress = "127.0.0.1"
    /// Emulated distance: every frame to a peer leaves this much later.
    var delayNanoseconds: UInt64 { tunables.delayNanoseconds }
    /// Send standard output and error to node 0 when they are still the
    /// ones the node was started with (DSM_FORWARD_OUTPUT: their identities,
    /// set by dsmrun when nodes run on several hosts).
    var forwardOutput: String?
    /// A peer silent this long ends the run.
    var peerTimeoutNanoseconds: UInt64 { tunables.peerTimeoutNanoseconds }

    /// nil when the program runs without dsmrun, or is a descendant of a
    /// node: a node takes the run's secret out of its environment when it
    /// joins (`takeSecretFromEnvironment`), so what it starts inherits the
    /// rest of the run's environment but not DSM_TOKEN, and runs as a plain
    /// process.
    static func fromEnvironment() -> Configuration? {
        guard let nodesText = environment("DSM_NODES"), let coordText = environment("DSM_COORD") else { return nil }
        guard let token = environment("DSM_TOKEN") else { return nil }
        guard let nodes = Int(nodesText), nodes >= 1, nodes <= maxNodes,
              let node = Int(environment("DSM_NODE_ID") ?? ""), node >= 0, node < nodes,
              let coordinator = Endpoint(parsing: coordText),
              !token.isEmpty, token.utf8.count <= Preamble.maxToken else {
            fatal("bad DSM_* environment (DSM_NODES=\(nodesText) DSM_NODE_ID=\(environment("DSM_NODE_ID") ?? "-") DSM_COORD=\(coordText))")
        }
        var base: UInt64 = 0x2000_0000_0000
        if let text = environment("DSM_BASE") {
            let digits = text.hasPrefix("0x") ? String(text.dropFirst(2)) : text
            guard let value = UInt64(digits, radix: 16), value % UInt64(dsmPageSize) == 0 else {
                fatal("DSM_BASE must be a page-aligned hexadecimal address, got \(text)")
            }
            base = value
        }
        var c = Configuration(node: node, nodes: nodes, coordinator: coordinator, token: token,
                              verbose: environment("DSM_VERBOSE") == "1",
                              stats: environment("DSM_STATS") == "1", bind: false, base: base)
        c.localNodes = environment("DSM_LOCAL_NODES").flatMap { Int($0) }.map { max(1, min($0, nodes)) } ?? nodes
        switch environment("DSM_BIND") {
        case "1": c.bind = true
        case "auto": c.bind = c.localNodes >= 2 && c.localNodes <= Int(cdsm_online_cpus())
        default: c.bind = false
        }
        if let spec = environment("DSM_IFACE"), !spec.isEmpty {
            guard let address = Addresses.interfaceAddress(spec) else {
                var name = [CChar](repeating: 0, count: 256)
                _ = gethostname(&name, 255)
                fatal("""
                    --iface \(spec): host \(String(cString: name)) has no IPv4 address on that interface or network \
                    (interface names differ between hosts; a network as ADDRESS/BITS names the same one everywhere)
                    """)
            }
            c.listenAddress = address
        } else if let coordinator = Addresses.resolve(coordinator.host) {
            c.listenAddress = Addresses.routeSource(towards: coordinator) ?? "127.0.0.1"
        } else {
            fatal("DSM_COORD=\(coordText): cannot resolve \(coordinator.host)")
        }
        do {
            c.tunables = try Tunables(lookup: environment)
        } catch {
            fatal(error.description)
        }
        if node != 0, let streams = environment("DSM_FORWARD_OUTPUT"), !streams.isEmpty { c.forwardOutput = streams }
        c.image = environment("DSM_MODE") == "image"
        c.program = environment("DSM_PROGRAM")
        if let text = environment("DSM_PLACEMENT") {
            guard let p = Placement(rawValue: text) else {
                fatal("DSM_PLACEMENT must be round-robin or local, got \(text)")
            }
            c.placement = p
        }
        return c
    }
}

/// The run's secret leaves the environment of the process that becomes
/// (or tries to become) a node: its children, which are not nodes, do not
/// inherit it. Until then it stays: a process that has not joined may be a
/// wrapper (`sh -c`, `env`, `time`) whose child is the node. The node keeps
/// it in its configuration, read before main. Called before the runtime
/// thread starts; in image mode that is before main, with one thread.
func takeSecretFromEnvironment() {
    unsetenv("DSM_TOKEN")
}

func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// The node's name in messages, set once the configuration is known.
nonisolated(unsafe) var logPrefix = "dsm"
/// Where the runtime's messages go: standard error, or the original one
/// when the program's is forwarded to node 0 (OutputForwarding.swift).
nonisolated(unsafe) var logDescriptor: Int32 = 2

func log(_ message: String) {
    let line = "\(logPrefix): \(message)\n"
    _ = line.withCString { write(logDescriptor, $0, strlen($0)) }
}


/// Ends this node at once (no atexit handlers: the cluster is going down).
func fatal(_ message: String, status: Int32 = 1) -> Never {
    log(message)
    cdsm_exit_now(status)
}

/// The largest readahead window, in pages (read once the configuration is).
let readaheadWindow: Int = processConfiguration?.tunables.readaheadPages ?? Tunables().readaheadPages
