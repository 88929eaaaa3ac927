// Test harness for the C programs in Tests/Programs: compiles them once per
// test process, runs them as N plain processes (the native reference) or
// under `dsmrun -n N --spmd`, always with a timeout, and checks that a run
// leaves no System V object and no process behind.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import XCTest

// MARK: - Errors and configuration

/// A harness failure: thrown out of a test so that XCTest records it with the
/// message and the test stops at once.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

enum Config {
    /// Matrix size of the MGS / matmul tests (env DSM_TEST_SIZE, default 256).
    static var size: Int {
        if let s = ProcessInfo.processInfo.environment["DSM_TEST_SIZE"], let v = Int(s), v > 1 { return v }
        return 256
    }

    /// Timeout of one program run, in seconds (env DSM_TEST_TIMEOUT overrides).
    static func timeout(default d: Double) -> Double {
        if let s = ProcessInfo.processInfo.environment["DSM_TEST_TIMEOUT"], let v = Double(s), v > 0 { return v }
        return d
    }

    /// Timeout of a compute run of size n: generous for n = 1024 under dsmrun.
    static func computeTimeout(n: Int) -> Double {
        let scale = max(1.0, Double(n) * Double(n) / (256.0 * 256.0))
        return timeout(default: min(1800, 120 * scale))
    }
}

// MARK: - Paths

enum Paths {
    /// The package root, found from this file's path (Tests/IntegrationTests/Harness.swift).
    static let root: URL = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }()

    static var programsDir: URL { root.appendingPathComponent("Tests/Programs") }
    static var includeDir: URL { root.appendingPathComponent("include") }
    /// `<root>/.build/release/dsmrun`, or env DSM_TEST_DSMRUN when set.
    static var dsmrun: URL {
        if let p = ProcessInfo.processInfo.environment["DSM_TEST_DSMRUN"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return root.appendingPathComponent(".build/release/dsmrun")
    }

    /// The launcher, or a clear error when it is missing.
    static func requireDSMRun() throws -> URL {
        let p = dsmrun.path
        guard access(p, X_OK) == 0 else {
            throw HarnessError(
                "dsmrun not found (or not executable) at \(p): run `swift build -c release` in \(root.path) first")
        }
        return dsmrun
    }

    /// A fresh private directory for one test process: the compiled programs
    /// and every run's stdout / stderr files.
    static let scratch: URL = {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
        var template = Array(base.appendingPathComponent("dsm-it-\(getpid())-XXXXXX").path.utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { buf -> String in
            guard let p = mkdtemp(buf.baseAddress!) else { fatalError("mkdtemp failed: \(errno)") }
            return String(cString: p)
        }
        // Removed when the test process exits, unless DSM_TEST_KEEP is set
        // (to look at the programs' output files after a failure).
        if ProcessInfo.processInfo.environment["DSM_TEST_KEEP"] == nil {
            atexit { try? FileManager.default.removeItem(atPath: Paths.scratchPath) }
        } else {
            print("IntegrationTests: keeping the scratch directory \(dir)")
        }
        return URL(fileURLWithPath: dir)
    }()

    /// `scratch` as a plain path, for the exit handler.
    static var scratchPath: String { scratch.path }

    private static let counterLock = NSLock()
    nonisolated(unsafe) private static var counter = 0

    /// A new unique subdirectory of `scratch` for one run's output files.
    static func newRunDir(_ label: String) -> URL {
        counterLock.lock()
        counter += 1
        let c = counter
        counterLock.unlock()
        let safe = label.map { $0.isLetter || $0.isNumber ? $0 : "_" }
        let dir = scratch.appendingPathComponent("run\(c)-\(String(safe))")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

// MARK: - Spawning processes

/// How a process ended.
enum Termination: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus s: Int32) {
        if s & 0x7f == 0 { self = .exited((s >> 8) & 0xff) } else { self = .signaled(s & 0x7f) }
    }

    var isSuccess: Bool { self == .exited(0) }

    var description: String {
        switch self {
        case .exited(let c): return "exit status \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        }
    }
}

/// One spawned process: its own process group, stdin from /dev/null,
/// stdout / stderr to files.
final class Child: @unchecked Sendable {
    let pid: pid_t
    let label: String
    let stdoutPath: String
    let stderrPath: String
    let started: Double
    private(set) var termination: Termination?
    private(set) var ended: Double?

    init(executable: String, arguments: [String], environment: [String: String], dir: URL, label: String) throws {
        self.label = label
        stdoutPath = dir.appendingPathComponent("\(label).out").path
        stderrPath = dir.appendingPathComponent("\(label).err").path

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGALRM, SIGCHLD, SIGUSR1, SIGUSR2, SIGSEGV, SIGBUS] {
            sigaddset(&defaults, s)
        }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(
            &attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&fa, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] =
            environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &fa, &attr, argv, envp)
        guard rc == 0 else {
            throw HarnessError("posix_spawn(\(executable)) failed: \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        started = Monotonic.now
    }

    /// Reaps the child if it has ended; returns true when it has.
    @discardableResult
    func poll() -> Bool {
        if termination != nil { return true }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            termination = Termination(waitStatus: status)
            ended = Monotonic.now
            return true
        }
        if r < 0 && errno == ECHILD {  // should not happen: we are its parent
            termination = .exited(255)
            ended = Monotonic.now
            return true
        }
        return false
    }

    /// Waits until the child ends or `deadline` (monotonic seconds) passes.
    func wait(until deadline: Double) -> Bool {
        while !poll() {
            if Monotonic.now >= deadline { return false }
            usleep(2000)
        }
        return true
    }

    /// SIGKILLs the child's whole process group and reaps the child.
    func killGroup() {
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        _ = wait(until: Monotonic.now + 10)
    }

    var elapsed: Double { (ended ?? Monotonic.now) - started }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

enum Monotonic {
    static var now: Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// The harness's environment for children: ours without any DSM_* variable
/// or LD_PRELOAD, plus `extra`.
func childEnvironment(_ extra: [String: String]) -> [String: String] {
    // OpenMP's settings too: a test says which it wants.
    var env = ProcessInfo.processInfo.environment.filter {
        !$0.key.hasPrefix("DSM_") && $0.key != "LD_PRELOAD" && !$0.key.hasPrefix("OMP_") && !$0.key.hasPrefix("GOMP_")
    }
    for (k, v) in extra { env[k] = v }
    return env
}

/// The result of one command run with `runCommand`.
struct CommandResult {
    var termination: Termination
    var stdout: String
    var stderr: String
    var elapsed: Double
    var pid: pid_t

    var summary: String {
        "\(termination) after \(String(format: "%.2f", elapsed)) s\n--- stdout ---\n\(stdout.suffix(4000))\n--- stderr ---\n\(stderr.suffix(4000))"
    }
}

/// Runs a command in its own process group with a timeout. On timeout the
/// whole group (and every process carrying `marker` in its environment) is
/// SIGKILLed and a HarnessError is thrown.
func runCommand(
    _ executable: String, _ arguments: [String], environment: [String: String], timeout: Double,
    label: String, marker: String? = nil
) throws -> CommandResult {
    let dir = Paths.newRunDir(label)
    let child = try Child(
        executable: executable, arguments: arguments, environment: environment, dir: dir, label: "cmd")
    if !child.wait(until: child.started + timeout) {
        child.killGroup()
        if let marker { ProcessScan.killAll(marker: marker) }
        throw HarnessError(
            "timeout: `\(([executable] + arguments).joined(separator: " "))` still running after \(timeout) s "
                + "(killed its process group)\n--- stdout ---\n\(child.stdout.suffix(3000))\n--- stderr ---\n\(child.stderr.suffix(3000))"
        )
    }
    return CommandResult(
        termination: child.termination!, stdout: child.stdout, stderr: child.stderr, elapsed: child.elapsed,
        pid: child.pid)
}

// MARK: - Fixtures made once per test process

/// What a test process sets up once for several tests (hosts, a Slurm
/// cluster, an sshd): the first test that needs it makes it; if that
/// failed, every test that needs it fails with the same message.
final class SetUpOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var made: Result<Void, HarnessError>?
    private let make: () throws -> Void

    init(_ make: @escaping () throws -> Void) { self.make = make }

    func require() throws {
        lock.lock()
        defer { lock.unlock() }
        if made == nil {
            do {
                try make()
                made = .success(())
            } catch let e as HarnessError {
                made = .failure(e)
            } catch {
                made = .failure(HarnessError("\(error)"))
            }
        }
        try made!.get()
    }
}

/// Runs a set-up command; throws `what` with its output when it fails.
func runSetUp(_ executable: String, _ arguments: [String], what: String, label: String, timeout: Double = 60,
              environment: [String: String] = [:]) throws {
    let r = try runCommand(executable, arguments, environment: childEnvironment(environment), timeout: timeout, label: label)
    guard r.termination.isSuccess else { throw HarnessError("\(what):\n\(r.summary)") }
}

// MARK: - Compiling the programs

enum Programs {
    static let all = [
        "mgs", "mgs_spin", "mgs_semcount", "matmul", "litmus", "sem_barrier", "shm_errors", "sem_errors", "dsm_api", "syscall_fault", "sleeper",
        "threads", "affinity", "sem_eintr", "ipc_info", "env_token",
        // Image mode (plain pthreads programs, no DSM API).
        "img_basic", "img_mgs", "img_mgs_counter", "img_workqueue", "img_jacobi", "img_matmul", "img_prodcons", "img_mutex", "img_barrier", "img_malloc", "img_exit",
        "img_api", "img_main_exit", "img_heap_limit", "img_print_order", "signals", "img_sparse_heap", "descriptors", "img_descriptors", "img_slow_wait", "img_guards", "bad_pointers", "late_join", "img_clocks", "img_cxx", "img_sem_open", "img_fork", "img_process_state", "img_constructors", "img_release", "img_keys",
        // Futexes outside libc, and OpenMP (built with -fopenmp: omp_*).
        "futex_inline", "omp_constructs",
        // The runtime's allocations on the fault path (SPMD).
        "alloc_per_fault",
    ]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: Result<URL, HarnessError>?

    /// Compiles every program once per test process (concurrently) and
    /// returns the directory of the binaries.
    static func binDir() throws -> URL {
        lock.lock()
        defer { lock.unlock() }
        if built == nil { built = compileAll() }
        return try built!.get()
    }

    /// The path of a compiled program.
    static func path(_ name: String) throws -> String {
        try binDir().appendingPathComponent(name).path
    }

    private static func compileAll() -> Result<URL, HarnessError> {
        let out = Paths.scratch.appendingPathComponent("bin")
        try? FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let logs = Paths.newRunDir("compile")
        var children: [(String, Child)] = []
        for name in all {
            // C, or C++ where the program is a .cpp file.
            let cxx = FileManager.default.fileExists(atPath: Paths.programsDir.appendingPathComponent("\(name).cpp").path)
            let src = Paths.programsDir.appendingPathComponent(cxx ? "\(name).cpp" : "\(name).c").path
            let args = [
                cxx ? "-std=c++17" : "-std=c11", "-O2", "-Wall", "-Werror", "-pthread", "-I", Paths.includeDir.path,
                "-I", Paths.programsDir.path, src, "-o", out.appendingPathComponent(name).path, "-lm",
            ] + (name.hasPrefix("omp_") ? ["-fopenmp"] : [])
            do {
                children.append(
                    (name, try Child(executable: "/usr/bin/env", arguments: [cxx ? "c++" : "cc"] + args,
                                     environment: childEnvironment([:]), dir: logs, label: name)))
            } catch {
                return .failure(HarnessError("cannot start cc: \(error)"))
            }
        }
        var errors: [String] = []
        let deadline = Monotonic.now + 180
        for (name, c) in children {
            if !c.wait(until: deadline) {
                c.killGroup()
                errors.append("cc \(name).c: timed out")
            } else if !c.termination!.isSuccess {
                errors.append("cc \(name).c: \(c.termination!)\n\(c.stderr)")
            }
        }
        if !errors.isEmpty {
            return .failure(HarnessError("compiling Tests/Programs failed:\n" + errors.joined(separator: "\n")))
        }
        return .success(out)
    }
}

// MARK: - System V objects

/// A System V object listed in /proc/sysvipc (what `ipcs` shows).
struct IPCObject: Hashable, CustomStringConvertible {
    enum Kind: String { case shm, sem }
    var kind: Kind
    var key: Int32
    var id: Int32

    var description: String {
        "\(kind == .shm ? "shm segment" : "semaphore set") id \(id) key 0x\(String(UInt32(bitPattern: key), radix: 16))"
    }
}

enum IPC {
    /// The test programs' keys are 0x5Dxxxx00 + 0..0xff.
    static let keyRegion: UInt32 = 0x5D00_0000

    static func snapshot() -> Set<IPCObject> {
        var result = Set<IPCObject>()
        for kind in [IPCObject.Kind.shm, .sem] {
            guard let text = try? String(contentsOfFile: "/proc/sysvipc/\(kind.rawValue)", encoding: .utf8)
            else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count >= 2, let key = Int32(f[0]), let id = Int32(f[1]) else { continue }
                result.insert(IPCObject(kind: kind, key: key, id: id))
            }
        }
        return result
    }

    /// A fresh key base (0x5Dxxxx00) not in use by any existing object.
    static func freshKeyBase() -> UInt32 {
        let existing = snapshot()
        while true {
            let base = keyRegion | (UInt32.random(in: 1...0xFFFF) << 8)
            if !existing.contains(where: { inRange($0, base) }) { return base }
        }
    }

    static func inRange(_ o: IPCObject, _ base: UInt32) -> Bool {
        let k = UInt32(bitPattern: o.key)
        return k >= base && k < base + 0x100
    }

    /// Objects created since `before` that belong to the run with key base
    /// `base`: keys in its range, or keys no test program uses (IPC_PRIVATE,
    /// keys outside the 0x5Dxxxxxx region). Objects of concurrent test runs
    /// (other keys of the region) are ignored.
    static func leaked(since before: Set<IPCObject>, base: UInt32) -> [IPCObject] {
        snapshot().subtracting(before).filter {
            inRange($0, base) || (UInt32(bitPattern: $0.key) & 0xFF00_0000) != keyRegion
        }.sorted { $0.id < $1.id }
    }

    /// Removes objects (after a failed run) with ipcrm.
    static func remove(_ objects: [IPCObject]) {
        for o in objects {
            _ = try? runCommand(
                "/usr/bin/env", ["ipcrm", o.kind == .shm ? "-m" : "-s", String(o.id)],
                environment: childEnvironment([:]), timeout: 10, label: "ipcrm")
        }
    }
}

// MARK: - Processes of a run

enum ProcessScan {
    /// Live (non-zombie) processes whose environment contains `marker`.
    static func processes(withMarker marker: String) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let needle = Array(marker.utf8)
        var found: [pid_t] = []
        for e in entries {
            guard let pid = pid_t(e), pid != getpid() else { continue }
            guard let env = readFile("/proc/\(pid)/environ") else { continue }
            if contains(env, needle) && !isZombie(pid) { found.append(pid) }
        }
        return found
    }

    static func killAll(marker: String) {
        for pid in processes(withMarker: marker) { kill(pid, SIGKILL) }
    }

    /// Children of `parent` (like `pgrep -P`), from /proc/<pid>/stat.
    static func children(of parent: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var result: [pid_t] = []
        for e in entries {
            guard let pid = pid_t(e), let st = stat(pid) else { continue }
            if st.ppid == parent { result.append(pid) }
        }
        return result
    }

    /// Every descendant of `root`.
    static func descendants(of root: pid_t) -> [pid_t] {
        var result: [pid_t] = []
        var queue = [root]
        while let p = queue.popLast() {
            let c = children(of: p)
            result += c
            queue += c
        }
        return result
    }

    /// Live (non-zombie) processes of process group `pgid`.
    static func liveMembers(ofGroup pgid: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { e -> pid_t? in
            guard let pid = pid_t(e), let st = stat(pid), st.pgrp == pgid, st.state != "Z" else { return nil }
            return pid
        }
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 && !isZombie(pid)
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        stat(pid)?.state == "Z"
    }

    /// State, parent and process group from /proc/<pid>/stat (the command
    /// may contain spaces).
    static func stat(_ pid: pid_t) -> (state: Character, ppid: pid_t, pgrp: pid_t)? {
        guard let bytes = readFile("/proc/\(pid)/stat"), let text = String(bytes: bytes, encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        guard rest.count >= 3, let st = rest[0].first, let pp = pid_t(rest[1]), let pg = pid_t(rest[2])
        else { return nil }
        return (st, pp, pg)
    }

    /// The value of an environment variable of process `pid`.
    static func environment(_ pid: pid_t, _ name: String) -> String? {
        guard let bytes = readFile("/proc/\(pid)/environ") else { return nil }
        for entry in bytes.split(separator: 0) {
            guard let s = String(bytes: entry, encoding: .utf8) else { continue }
            if s.hasPrefix(name + "=") { return String(s.dropFirst(name.count + 1)) }
        }
        return nil
    }

    static func commandLine(_ pid: pid_t) -> [String] {
        guard let bytes = readFile("/proc/\(pid)/cmdline") else { return [] }
        return bytes.split(separator: 0).compactMap { String(bytes: $0, encoding: .utf8) }
    }

    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    private static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, hay.count >= needle.count else { return false }
        // Entries are NUL-separated; compare entry by entry.
        for entry in hay.split(separator: 0) where entry.count == needle.count {
            if entry.elementsEqual(needle) { return true }
        }
        return false
    }
}

// MARK: - Running the programs

/// A native run: N plain processes of one program.
struct NativeRun {
    var nodes: [CommandResult]
    var keyBase: UInt32

    /// Node 0's stdout.
    var output: String { nodes[0].stdout }
    var allSucceeded: Bool { nodes.allSatisfy { $0.termination.isSuccess } }

    var summary: String {
        nodes.enumerated().map { "node \($0.offset): \($0.element.summary)" }.joined(separator: "\n")
    }
}

/// A run under `dsmrun -n N --spmd`.
struct DSMRun {
    var result: CommandResult
    var keyBase: UInt32
    var output: String { result.stdout }
    var summary: String { result.summary }
}

enum Runner {
    /// Runs `program args` as N plain processes with DSM_NODE_ID, DSM_NODES
    /// and a fresh DSM_TEST_KEY; waits for all of them (a failing node makes
    /// the others be killed after a short grace). Throws on timeout. Checks
    /// that the run leaves none of its System V objects behind (removes them
    /// and throws if it does).
    static func native(
        _ program: String, nodes n: Int, args: [String] = [], timeout: Double
    ) throws -> NativeRun {
        let exe = try Programs.path(program)
        let base = IPC.freshKeyBase()
        let before = IPC.snapshot()
        let dir = Paths.newRunDir("native-\(program)-\(n)")
        let marker = "DSM_TEST_RUN=\(UUID().uuidString)"
        var children: [Child] = []
        for i in 0..<n {
            let env = childEnvironment([
                "DSM_NODE_ID": String(i), "DSM_NODES": String(n), "DSM_TEST_KEY": "0x" + String(base, radix: 16),
                "DSM_TEST_RUN": String(marker.dropFirst("DSM_TEST_RUN=".count)),
            ])
            do {
                children.append(try Child(executable: exe, arguments: args, environment: env, dir: dir, label: "node\(i)"))
            } catch {
                for c in children { c.killGroup() }
                throw error
            }
        }
        let deadline = Monotonic.now + timeout
        var failureGrace: Double?
        while true {
            var running = 0
            for c in children where !c.poll() { running += 1 }
            if running == 0 { break }
            let now = Monotonic.now
            if failureGrace == nil, children.contains(where: { $0.termination.map { !$0.isSuccess } ?? false }) {
                failureGrace = now + 3  // the others would wait for the failed node forever
            }
            if now >= deadline || (failureGrace.map { now >= $0 } ?? false) {
                for c in children where c.termination == nil { c.killGroup() }
                ProcessScan.killAll(marker: marker)
                let leaked = IPC.leaked(since: before, base: base)
                IPC.remove(leaked)
                let states = children.enumerated().map { i, c in
                    "node \(i): \(c.termination.map { "\($0)" } ?? "still running (killed)")\n--- stdout ---\n\(c.stdout.suffix(2000))--- stderr ---\n\(c.stderr.suffix(2000))"
                }.joined(separator: "\n")
                throw HarnessError(
                    (now >= deadline ? "timeout after \(timeout) s" : "a node failed; the others were killed")
                        + " in the native run of `\(program) \(args.joined(separator: " "))` with \(n) processes:\n"
                        + states)
            }
            usleep(2000)
        }
        let run = NativeRun(
            nodes: children.map {
                CommandResult(
                    termination: $0.termination!, stdout: $0.stdout, stderr: $0.stderr, elapsed: $0.elapsed,
                    pid: $0.pid)
            }, keyBase: base)
        let leaked = IPC.leaked(since: before, base: base)
        if !leaked.isEmpty {
            IPC.remove(leaked)
            throw HarnessError(
                "the native run of \(program) with \(n) processes left System V objects behind: \(leaked)\n\(run.summary)"
            )
        }
        return run
    }

    /// Runs `dsmrun -n N --spmd program args` with a timeout, then checks
    /// that no kernel System V object was created by the run and that no
    /// process of the run is left.
    static func dsm(
        _ program: String, nodes n: Int, args: [String] = [], timeout: Double, extra: [String] = []
    ) throws -> DSMRun {
        let dsmrun = try Paths.requireDSMRun()
        let exe = try Programs.path(program)
        return try dsmCommand(
            dsmrun: dsmrun.path, arguments: ["-n", String(n), "--spmd"] + extra + [exe] + args, label: "dsm-\(program)-\(n)",
            timeout: timeout)
    }

    /// Runs `dsmrun -n N program args` (image mode: main on node 0, threads
    /// spread) with the checks of `dsm`.
    static func image(
        _ program: String, nodes n: Int, args: [String] = [], timeout: Double, extra: [String] = [],
        environment: [String: String] = [:]
    ) throws -> DSMRun {
        let dsmrun = try Paths.requireDSMRun()
        let exe = try Programs.path(program)
        return try dsmCommand(
            dsmrun: dsmrun.path, arguments: ["-n", String(n)] + extra + [exe] + args, label: "image-\(program)-\(n)",
            timeout: timeout, environment: environment)
    }

    /// Runs `program args` once as a plain process (the reference for an
    /// image-mode run).
    static func plain(_ program: String, args: [String] = [], timeout: Double, environment: [String: String] = [:]) throws
        -> CommandResult
    {
        let exe = try Programs.path(program)
        return try runCommand(exe, args, environment: childEnvironment(environment), timeout: timeout,
                              label: "plain-\(program)", marker: "DSM_TEST_RUN=\(UUID().uuidString)")
    }

    /// Any command line that runs dsmrun (srun, salloc, mpirun...), with
    /// the checks of `dsm`.
    static func launch(_ command: [String], label: String, timeout: Double, environment: [String: String] = [:]) throws -> DSMRun {
        let base = IPC.freshKeyBase()
        let before = IPC.snapshot()
        let token = UUID().uuidString
        let marker = "DSM_TEST_RUN=\(token)"
        let env = childEnvironment(
            environment.merging(["DSM_TEST_KEY": "0x" + String(base, radix: 16), "DSM_TEST_RUN": token]) { $1 })
        let result = try runCommand(command[0], Array(command.dropFirst()), environment: env, timeout: timeout, label: label,
                                    marker: marker)
        try checkClean(marker: marker, pgid: result.pid, before: before, base: base, context: result.summary)
        return DSMRun(result: result, keyBase: base)
    }

    /// `dsmrun arguments...` with the checks of `dsm`.
    static func dsmCommand(
        dsmrun: String, arguments: [String], label: String, timeout: Double, environment: [String: String] = [:]
    ) throws -> DSMRun {
        try launch([dsmrun] + arguments, label: label, timeout: timeout, environment: environment)
    }

    /// After a dsmrun run: no process carrying the run's marker (or in its
    /// process group) is alive, and no System V object was created.
    static func checkClean(
        marker: String, pgid: pid_t, before: Set<IPCObject>, base: UInt32, context: String
    ) throws {
        var problems: [String] = []
        // A short grace for processes that are already dying.
        let deadline = Monotonic.now + 1.0
        var left = ProcessScan.processes(withMarker: marker)
        while !left.isEmpty && Monotonic.now < deadline {
            usleep(10000)
            left = ProcessScan.processes(withMarker: marker)
        }
        if !left.isEmpty {
            let desc = left.map { "\($0) (\(ProcessScan.commandLine($0).joined(separator: " ")))" }
            problems.append("processes of the run are still alive after dsmrun exited: \(desc.joined(separator: ", "))")
            for p in left { kill(p, SIGKILL) }
        }
        // Only zombies (reparented, not reaped) may remain in dsmrun's group.
        let group = ProcessScan.liveMembers(ofGroup: pgid)
        if !group.isEmpty {
            let desc = group.map { "\($0) (\(ProcessScan.commandLine($0).joined(separator: " ")))" }
            problems.append("dsmrun's process group \(pgid) still has live members: \(desc.joined(separator: ", "))")
            kill(-pgid, SIGKILL)
        }
        let leaked = IPC.leaked(since: before, base: base)
        if !leaked.isEmpty {
            problems.append("kernel System V objects were created by the run and left behind (ipcs): \(leaked)")
            IPC.remove(leaked)
        }
        if !problems.isEmpty {
            throw HarnessError(problems.joined(separator: "\n") + "\n" + context)
        }
    }
}

// MARK: - Output parsing

enum Output {
    /// The value of `name=` on the first line of `text` that starts (after an
    /// optional launcher prefix) with `prefix`.
    static func field(_ name: String, in text: String, line prefix: String) -> String? {
        for line in text.split(separator: "\n") {
            guard let r = line.range(of: prefix) else { continue }
            let rest = line[r.lowerBound...]
            for token in rest.split(separator: " ") where token.hasPrefix(name + "=") {
                return String(token.dropFirst(name.count + 1))
            }
        }
        return nil
    }

    /// A `hash=` of 16 hex digits on the line starting with `prefix`.
    static func hash(in text: String, line prefix: String) -> String? {
        guard let h = field("hash", in: text, line: prefix), h.count == 16,
            h.allSatisfy({ $0.isHexDigit })
        else { return nil }
        return h
    }
}
