#if canImport(Glibc)
import Glibc
#endif

/// What the launcher tells the agent on another host, on the agent's
/// standard input (never on a command line: it carries the run's secret).
/// Encoded as `key=value` strings, each ended by a NUL, the whole ended by
/// an empty string; the pipe then stays open as the agent's lifeline.
public struct AgentSpec: Equatable, Sendable {
    /// The host as the launcher names it, and its index in the host list.
    public var hostName = ""
    public var hostIndex = 0
    /// The launcher's rendezvous address (`host:port`).
    public var coordinator = ""
    public var token = ""
    public var directory = ""
    public var program = ""
    public var runtime = ""
    /// Fingerprints of the program and the runtime library on the launcher's host.
    public var programFingerprint: UInt64 = 0
    public var runtimeFingerprint: UInt64 = 0
    public var arguments: [String] = []
    /// Every node's environment but DSM_NODE_ID.
    public var environment: [String] = []
    public var nodes: [Int] = []

    public static let magic = "dsm-agent-1"

    public init(hostName: String = "", hostIndex: Int = 0, coordinator: String = "", token: String = "", directory: String = "",
                program: String = "", runtime: String = "", programFingerprint: UInt64 = 0, runtimeFingerprint: UInt64 = 0,
                arguments: [String] = [], environment: [String] = [], nodes: [Int] = []) {
        self.hostName = hostName
        self.hostIndex = hostIndex
        self.coordinator = coordinator
        self.token = token
        self.directory = directory
        self.program = program
        self.runtime = runtime
        self.programFingerprint = programFingerprint
        self.runtimeFingerprint = runtimeFingerprint
        self.arguments = arguments
        self.environment = environment
        self.nodes = nodes
    }

    public func encoded() -> [UInt8] {
        var entries = ["magic=\(AgentSpec.magic)", "host=\(hostName)", "index=\(hostIndex)", "coord=\(coordinator)",
                       "token=\(token)", "cwd=\(directory)", "program=\(program)", "runtime=\(runtime)",
                       "program-fp=\(programFingerprint)", "runtime-fp=\(runtimeFingerprint)"]
        entries += arguments.map { "arg=\($0)" }
        entries += environment.map { "env=\($0)" }
        entries += nodes.map { "node=\($0)" }
        var bytes: [UInt8] = []
        for e in entries {
            bytes += Array(e.utf8)
            bytes.append(0)
        }
        bytes.append(0)
        return bytes
    }

    /// Decodes a complete spec (the bytes up to and including the empty
    /// string that ends it).
    public static func decode(_ bytes: [UInt8]) -> AgentSpec? {
        var spec = AgentSpec()
        var sawMagic = false
        for raw in bytes.split(separator: 0, omittingEmptySubsequences: true) {
            let text = String(decoding: raw, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { return nil }
            let key = text[..<equals]
            let value = String(text[text.index(after: equals)...])
            switch key {
            case "magic": sawMagic = value == AgentSpec.magic
            case "host": spec.hostName = value
            case "index": guard let i = Int(value) else { return nil }; spec.hostIndex = i
            case "coord": spec.coordinator = value
            case "token": spec.token = value
            case "cwd": spec.directory = value
            case "program": spec.program = value
            case "runtime": spec.runtime = value
            case "program-fp": guard let v = UInt64(value) else { return nil }; spec.programFingerprint = v
            case "runtime-fp": guard let v = UInt64(value) else { return nil }; spec.runtimeFingerprint = v
            case "arg": spec.arguments.append(value)
            case "env": spec.environment.append(value)
            case "node": guard let n = Int(value) else { return nil }; spec.nodes.append(n)
            default: return nil
            }
        }
        return sawMagic ? spec : nil
    }
}

/// A file's fingerprint (64-bit FNV-1a of its bytes): two hosts run the same
/// program and runtime only if theirs match. nil when it cannot be read.
public func fileFingerprint(_ path: String) -> UInt64? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return nil }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(st.st_size)
    let size = Int(st.st_size)
    if size == 0 { return hash }
    guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else { return nil }
    defer { munmap(map, size) }
    // Eight bytes at a time: a runtime library of ~10 MB takes a few ms.
    let words = map.bindMemory(to: UInt64.self, capacity: size / 8)
    for i in 0..<(size / 8) {
        hash = (hash ^ words[i]) &* 0x0000_0100_0000_01b3
    }
    let bytes = map.assumingMemoryBound(to: UInt8.self)
    for i in (size / 8 * 8)..<size {
        hash = (hash ^ UInt64(bytes[i])) &* 0x0000_0100_0000_01b3
    }
    return hash
}
