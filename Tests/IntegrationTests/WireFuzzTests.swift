// A wire that cannot be crashed: random and mutated frames against a real
// run. Strangers (no secret, a wrong one, a torn one) flood the launcher's
// rendezvous port and node 0's mesh port while the nodes are meeting, and
// the rendezvous port while they compute: the run must complete with the
// right result. And a peer that has the secret sends garbage to a real
// node: the node may stop with a message, but must never die of a signal
// (a Swift trap is SIGILL or SIGTRAP, a bad access SIGSEGV or SIGBUS).
//
// These tests need `.build/release/dsmrun` (`swift build -c release`).

import DSMCore
import DSMTransport
import Foundation
import XCTest

typealias FuzzRandom = SeededRandom

/// Makes frames: valid headers of every kind with fields mutated towards
/// their bounds, lengths at the bounds, truncated frames, bad magic, unknown
/// kinds, random bytes; and, for a peer that has the secret, calls whose
/// payloads follow each operation's layout with values at their bounds.
struct WireFuzzer {
    var rng: FuzzRandom
    /// The container and page count a node knows (authenticated fuzzing).
    var container: UInt32 = 1
    var pages: UInt32 = 64

    init(seed: UInt64) { rng = FuzzRandom(seed: seed) }

    mutating func chance(_ oneIn: Int) -> Bool { Int.random(in: 0..<oneIn, using: &rng) == 0 }
    mutating func below(_ n: Int) -> Int { Int.random(in: 0..<n, using: &rng) }
    mutating func bytes(_ n: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            var i = 0
            while i < n {
                var word = rng.next()
                for _ in 0..<min(8, n - i) {
                    buffer[i] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    i += 1
                }
            }
            initialized = n
        }
    }

    static let bounds: [UInt64] = [0, 1, 2, 3, 63, 64, 127, 128, 255, 256, 4095, 4096, 65535, 65536,
                                   UInt64(FrameHeader.maxPayload), UInt64(FrameHeader.maxPayload) + 1,
                                   0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000,
                                   UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max - 1, UInt64.max]
    static let kinds = FrameKind.allCases
    static let coherence: [FrameKind] = [.readRequest, .writeRequest, .forwardRead, .forwardWrite, .invalidate, .invalidateAck,
                                         .data, .grant, .done]
    static let unknownKinds: [UInt8] = (0...255).filter { k in !FrameKind.allCases.contains { $0.rawValue == k } }

    /// A value at or near a bound, or a random one.
    mutating func value() -> UInt64 {
        let r = rng.next()
        return r & 1 == 0 ? WireFuzzer.bounds[Int((r >> 1) % UInt64(WireFuzzer.bounds.count))] : rng.next()
    }

    mutating func anyKind() -> UInt8 { WireFuzzer.kinds[below(WireFuzzer.kinds.count)].rawValue }

    static func header(magic: UInt8 = FrameHeader.magic, kind: UInt8, flags: UInt8 = 0, source: UInt16 = 0, length: UInt32,
                       container: UInt32 = 0, index: UInt32 = 0, a: UInt64 = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: FrameHeader.size)
        func store<T: FixedWidthInteger>(_ v: T, at offset: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { out[offset + i] = b } }
        }
        out[0] = magic
        out[1] = kind
        out[2] = flags
        store(source, at: 4)
        store(length, at: 8)
        store(container, at: 12)
        store(index, at: 16)
        store(a, at: 24)
        return out
    }

    /// One frame as a stranger (or anyone) might send it.
    mutating func frame() -> [UInt8] {
        switch below(20) {
        case 0:
            return bytes(FrameHeader.size + below(40))
        case 1:
            // Bad magic.
            var f = WireFuzzer.header(magic: UInt8.random(in: 0...0xD4, using: &rng), kind: anyKind(), length: 0)
            f += bytes(below(16))
            return f
        case 2:
            // An unknown kind.
            let k = WireFuzzer.unknownKinds[below(WireFuzzer.unknownKinds.count)]
            return WireFuzzer.header(kind: k, length: UInt32(below(8))) + bytes(below(8))
        case 3:
            // A length at the bounds, with fewer bytes than it says (truncated).
            let lengths: [UInt32] = [UInt32(FrameHeader.maxPayload), UInt32(FrameHeader.maxPayload) + 1, UInt32.max, 1 << 31, 4097]
            return WireFuzzer.header(kind: anyKind(), length: lengths[below(lengths.count)], a: value()) + bytes(below(64))
        case 4:
            // A header cut short.
            return Array(WireFuzzer.header(kind: anyKind(), length: 0).prefix(1 + below(FrameHeader.size - 1)))
        default:
            return authenticatedFrame()
        }
    }

    /// A frame worth sending to a node as a peer that has the secret: mostly
    /// well formed (so that it reaches the services and the protocol), now
    /// and then not at all.
    mutating func authenticatedFrame() -> [UInt8] {
        switch below(100) {
        case 0..<30:
            // Coherence: the known container or another, a page in or past
            // it, a node that is the sender (1) or not.
            let kind = WireFuzzer.coherence[below(WireFuzzer.coherence.count)]
            let c = chance(4) ? UInt32(truncatingIfNeeded: value()) : container
            let i = chance(5) ? UInt32(truncatingIfNeeded: value()) : UInt32(below(Int(pages) + 2))
            let a: UInt64 = chance(8) ? value() : 1
            var payload: [UInt8] = []
            if kind == .data { payload = chance(5) ? bytes(below(5000)) : bytes(dsmPageSize) }
            return WireFuzzer.header(kind: kind.rawValue, flags: UInt8.random(in: 0...7, using: &rng),
                                     source: UInt16(truncatingIfNeeded: value()), length: UInt32(payload.count),
                                     container: c, index: i, a: a) + payload
        case 30..<70:
            let payload = callPayload()
            return WireFuzzer.header(kind: FrameKind.call.rawValue, length: UInt32(payload.count), a: chance(3) ? 0 : value())
                + payload
        case 70..<80:
            var w = WireWriter()
            w.put(Int64(bitPattern: value()))
            let payload = w.bytes + bytes(below(24))
            return WireFuzzer.header(kind: FrameKind.reply.rawValue, length: UInt32(payload.count), a: value()) + payload
        case 80..<88:
            return WireFuzzer.header(kind: FrameKind.heartbeat.rawValue, length: 0, a: value())
        case 88..<93:
            let payload = bytes(below(40))
            return WireFuzzer.header(kind: FrameKind.output.rawValue, length: UInt32(payload.count), a: UInt64(below(4)))
                + payload
        case 93..<95:
            return WireFuzzer.header(kind: FrameKind.exiting.rawValue, length: 0)
        default:
            // Anything: every kind (set-up and launcher kinds included),
            // random fields, a payload of random length.
            let payload = bytes(below(64))
            return WireFuzzer.header(kind: anyKind(), flags: UInt8.random(in: 0...255, using: &rng),
                                     source: UInt16(truncatingIfNeeded: value()), length: UInt32(payload.count),
                                     container: UInt32(truncatingIfNeeded: value()), index: UInt32(truncatingIfNeeded: value()),
                                     a: value()) + payload
        }
    }

    /// A call's payload: the caller's credentials, an operation and its
    /// fields in the runtime's layout (Sources/DSMRuntime/Calls.swift), with
    /// values at their bounds; sometimes cut short, lengthened, or with a
    /// count the payload cannot hold.
    mutating func callPayload() -> [UInt8] {
        var w = WireWriter()
        func i32() -> Int32 { Int32(truncatingIfNeeded: value()) }
        func u32() -> UInt32 { UInt32(truncatingIfNeeded: value()) }
        func u64() -> UInt64 { value() }
        w.put(u32()); w.put(u32())
        if chance(40) {
            w.put(UInt32.max - UInt32(below(3)))  // a count no payload holds
        } else {
            let groups = below(4)
            w.put(UInt32(groups))
            for _ in 0..<groups { w.put(u32()) }
        }
        w.put(i32())
        let operation = chance(40) ? UInt8.random(in: 0...255, using: &rng) : UInt8(1 + below(27))
        w.put(operation)
        switch operation {
        case 1:
            // shmget: small sizes, or past SHMMAX (a segment of every size
            // up to 16 GiB would be allowed, and costs what it says).
            w.put(i32()); w.put(chance(4) ? u64() | (1 << 35) : UInt64(1 + below(1 << 20))); w.put(i32())
        case 2: w.put(Int32(below(4)) - 1); w.put(chance(2)); w.put(chance(2))
        case 3, 13: w.put(Int32(below(4)) - 1)
        case 4: w.put(i32()); w.put(i32()); w.put(u32()); w.put(u32()); w.put(u32())
        case 5: w.put(i32()); w.put(chance(2) ? i32() : Int32(below(40))); w.put(i32())
        case 6:
            w.put(Int32(below(4)) - 1); w.put(chance(2) ? Int64(-1) : Int64(bitPattern: u64()))
            if chance(10) {
                w.put(u32())
            } else {
                let n = below(6)
                w.put(UInt32(n))
                for _ in 0..<n { w.put(UInt16(truncatingIfNeeded: value())); w.put(Int16(truncatingIfNeeded: value())); w.put(Int16(truncatingIfNeeded: value())) }
            }
        case 7:
            w.put(Int32(below(4)) - 1); w.put(i32()); w.put(i32()); w.put(i32())
            if chance(10) { w.put(u32()) } else { w.put(array: (0..<below(5)).map { _ in UInt16(truncatingIfNeeded: value()) }) }
            w.put(u32()); w.put(u32()); w.put(u32())
        case 10:
            // A container: small, or past SHMMAX, or an id of the image's.
            w.put(chance(3) ? u32() : UInt32(2 + below(6))); w.put(chance(3) ? u32() | (1 << 23) : UInt32(below(64))); w.put(u64())
        case 11: w.put(chance(2) ? u32() : UInt32(2 + below(6)))
        case 12, 14: w.put(u64())
        case 15: w.put(u64()); w.put(u64()); w.put(u64()); w.put(chance(2)); w.put(i32())
        case 16, 17, 18, 19, 23, 24, 25: w.put(u64()); w.put(i32())
        case 20, 26: w.put(i32())
        case 22:
            // A synchronisation request; the token operations (1-4) name a
            // node in `thread`: this one (1) or another.
            let code = chance(10) ? i32() : Int32(1 + below(25))
            w.put(UInt64(below(8)) << 3); w.put(code <= 4 && !chance(3) ? UInt64(1) : u64()); w.put(chance(2) ? Int64(-1) : Int64(below(1000)))
            w.put(code); w.put(chance(2) ? UInt64(below(4)) : u64())
        default: break
        }
        var out = w.bytes
        if chance(30) { out = Array(out.prefix(below(out.count + 1))) }
        if chance(30) { out += bytes(1 + below(8)) }
        return out
    }

    /// The first bytes a stranger sends: no preamble at all (frames at
    /// once), a preamble with a wrong or random secret, random bytes, zeros,
    /// or the magic word and then a torn secret.
    mutating func strangerOpening() -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        switch below(7) {
        case 0: return []
        case 1: return Preamble.bytes(token: String(decoding: (0..<48).map { _ in hex[below(16)] }, as: UTF8.self))
        case 2: return Array("dsm-run1".utf8) + bytes(Preamble.size - 8)
        case 3: return bytes(Preamble.size)
        case 4: return [UInt8](repeating: 0, count: Preamble.size)
        case 5: return Array(Preamble.bytes(token: String(decoding: (0..<48).map { _ in hex[below(16)] }, as: UTF8.self)).prefix(8 + below(56)))
        default: return Array("dsm-run1".utf8) + bytes(below(Preamble.size - 8))
        }
    }
}

/// Sockets as a stranger uses them: raw, non-blocking, every wait bounded.
enum RawSocket {
    /// A connection to 127.0.0.1:`port`, or nil if it is refused or not
    /// accepted into the backlog within `timeoutMilliseconds`.
    static func dial(port: UInt16, timeoutMilliseconds: Int32) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 {
            guard errno == EINPROGRESS else { close(fd); return nil }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard poll(&p, 1, timeoutMilliseconds) == 1, getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == 0 else {
                close(fd)
                return nil
            }
        }
        return fd
    }

    /// Sends what the socket takes now (never waits); the number of bytes taken.
    static func sendNow(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            sent += n
        }
        return sent
    }

    /// The IPv4 TCP ports `pid` listens on, from /proc (ephemeral ports are
    /// found this way, not from anything the run prints).
    static func listeningPorts(of pid: pid_t) -> [UInt16] {
        let fdDirectory = "/proc/\(pid)/fd"
        guard let fds = try? FileManager.default.contentsOfDirectory(atPath: fdDirectory) else { return [] }
        var inodes = Set<Substring>()
        for fd in fds {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(fd)"),
                  target.hasPrefix("socket:[") else { continue }
            inodes.insert(target.dropFirst("socket:[".count).dropLast())
        }
        guard !inodes.isEmpty, let table = ProcessScan.readFile("/proc/\(pid)/net/tcp") else { return [] }
        var ports: [UInt16] = []
        for line in String(decoding: table, as: UTF8.self).split(separator: "\n").dropFirst() {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 10, f[3] == "0A", inodes.contains(f[9]),
                  let colon = f[1].lastIndex(of: ":"), let port = UInt16(f[1][f[1].index(after: colon)...], radix: 16) else { continue }
            ports.append(port)
        }
        return ports
    }
}

final class WireFuzzTests: XCTestCase {
    private func newSeed() -> UInt64 {
        if let s = ProcessInfo.processInfo.environment["DSM_TEST_FUZZ_SEED"], let v = UInt64(s) { return v }
        return UInt64.random(in: 1...UInt64.max)
    }

    /// What strangers sent to one port.
    struct Tally {
        var connections = 0
        var frames = 0
        var bytes = 0
        var unreachable = 0
    }

    /// Opens a connection to `port` as a stranger and sends an opening and a
    /// batch of frames; counts the frames the socket took whole. Every so
    /// often the stranger stays, silent, for a while (`idle`).
    private func stranger(_ fuzzer: inout WireFuzzer, port: UInt16, tally: inout Tally, idle: inout [(Int32, Double)]) {
        guard let fd = RawSocket.dial(port: port, timeoutMilliseconds: 200) else {
            tally.unreachable += 1
            return
        }
        tally.connections += 1
        if idle.count < 3 && fuzzer.chance(40) {
            // Silent, or a few bytes of a preamble, then nothing more.
            _ = RawSocket.sendNow(fd, Array(fuzzer.strangerOpening().prefix(fuzzer.below(20))))
            idle.append((fd, Monotonic.now + 0.1 + Double(fuzzer.below(400)) / 1000))
            return
        }
        var stream = fuzzer.strangerOpening()
        var ends: [Int] = []
        for _ in 0..<(100 + fuzzer.below(400)) {
            stream += fuzzer.frame()
            ends.append(stream.count)
        }
        let sent = RawSocket.sendNow(fd, stream)
        tally.bytes += sent
        tally.frames += ends.filter { $0 <= sent }.count
        close(fd)
    }

    private func closeIdle(_ idle: inout [(Int32, Double)], all: Bool = false) {
        let now = Monotonic.now
        idle.removeAll { fd, until in
            guard all || until <= now else { return false }
            close(fd)
            return true
        }
    }

    /// `dsmrun -n 2 --spmd litmus` through a shell that holds node 1 back
    /// until the test says go: node 0 has joined and listens for node 1,
    /// the rendezvous waits for node 1's hello. Strangers flood both ports
    /// then, and the rendezvous port once the nodes have met, until the run
    /// ends. The run must end 0 with litmus's own check passed
    /// (`failures=0`), the strangers refused, at least 100,000 frames sent.
    func testStrangersFloodingTheRunDoNotDisturbIt() throws {
        let dsmrun = try Paths.requireDSMRun()
        let litmus = try Programs.path("litmus")
        let seed = newSeed()
        print("WireFuzzTests seed \(seed) (DSM_TEST_FUZZ_SEED replays it)")
        var fuzzer = WireFuzzer(seed: seed)
        let dir = Paths.newRunDir("wirefuzz")
        let go = dir.appendingPathComponent("go").path
        let base = IPC.freshKeyBase()
        let before = IPC.snapshot()
        let runID = UUID().uuidString
        let marker = "DSM_TEST_RUN=\(runID)"
        // Node 1 waits (at most 15 s) for the go file; `sleep` runs without
        // the runtime: a process of the run that exits 0 would join it.
        let script = """
            if [ "$DSM_NODE_ID" = 1 ]; then i=0; while [ ! -e '\(go)' ] && [ $i -lt 1500 ]; do LD_PRELOAD= sleep 0.01; i=$((i+1)); done; fi; \
            exec '\(litmus)' 20000 800
            """
        let child = try Child(executable: dsmrun.path, arguments: ["-n", "2", "--spmd", "/bin/sh", "-c", script],
                              environment: childEnvironment(["DSM_TEST_KEY": "0x" + String(base, radix: 16), "DSM_TEST_RUN": runID]),
                              dir: dir, label: "dsmrun")
        var idle: [(Int32, Double)] = []
        defer {
            closeIdle(&idle, all: true)
            if child.termination == nil { child.killGroup() }
            ProcessScan.killAll(marker: marker)
            FileManager.default.createFile(atPath: go, contents: nil)
        }
        let started = Monotonic.now

        // The rendezvous port (dsmrun's), then node 0 and its mesh port.
        var rendezvous: UInt16?
        var node0: pid_t?
        var mesh: UInt16?
        let findDeadline = Monotonic.now + 20
        while rendezvous == nil || mesh == nil {
            if child.poll() { throw HarnessError("dsmrun ended during set-up: \(child.termination!)\n\(child.stderr)") }
            if Monotonic.now > findDeadline {
                throw HarnessError("no listening ports found within 20 s (rendezvous \(String(describing: rendezvous)), node 0 \(String(describing: node0)))\n\(child.stderr)")
            }
            if rendezvous == nil { rendezvous = RawSocket.listeningPorts(of: child.pid).first }
            if node0 == nil {
                node0 = ProcessScan.children(of: child.pid).first { ProcessScan.environment($0, "DSM_NODE_ID") == "0" }
            }
            if let node0, mesh == nil { mesh = RawSocket.listeningPorts(of: node0).first }
            usleep(5_000)
        }
        let setupFound = Monotonic.now - started

        // Set-up: node 0 waits for the table with its port open (nobody
        // accepts there until node 1 has said hello: at most 60 strangers,
        // below its backlog); the rendezvous waits for node 1.
        var toRendezvous = Tally(), toMesh = Tally(), afterMeeting = Tally()
        let phaseStart = Monotonic.now
        // At least 3 s, and (on a loaded machine, up to 12 s) until the
        // 100,000 frames are sent.
        while Monotonic.now - phaseStart < 3 || toRendezvous.frames + toMesh.frames < 100_000 {
            if Monotonic.now - phaseStart > 12 { break }
            stranger(&fuzzer, port: rendezvous!, tally: &toRendezvous, idle: &idle)
            if toMesh.connections + toMesh.unreachable < 60, fuzzer.chance(3) {
                stranger(&fuzzer, port: mesh!, tally: &toMesh, idle: &idle)
            }
            closeIdle(&idle)
        }
        let setupPhase = Monotonic.now - phaseStart
        XCTAssertNil(child.termination, "dsmrun ended while strangers knocked during set-up:\n\(child.stderr)")
        XCTAssertTrue(RawSocket.listeningPorts(of: node0!).contains(mesh!), "node 0 stopped listening before node 1 came")

        // Node 1 goes; strangers go on at the rendezvous port until the run ends.
        FileManager.default.createFile(atPath: go, contents: nil)
        var meshClosed = false
        let runDeadline = Monotonic.now + 60
        while !child.poll() {
            if Monotonic.now > runDeadline {
                child.killGroup()
                throw HarnessError("the run did not end within 60 s under the strangers' frames\n\(child.stderr.suffix(3000))")
            }
            stranger(&fuzzer, port: rendezvous!, tally: &afterMeeting, idle: &idle)
            closeIdle(&idle)
            if !meshClosed, ProcessScan.isAlive(node0!), !RawSocket.listeningPorts(of: node0!).contains(mesh!) { meshClosed = true }
        }
        closeIdle(&idle, all: true)
        let total = toRendezvous.frames + toMesh.frames + afterMeeting.frames
        let elapsed = Monotonic.now - started
        print("""
            WireFuzzTests: \(total) frames in \(String(format: "%.1f", elapsed)) s (ports found after \(String(format: "%.2f", setupFound)) s); \
            set-up (\(String(format: "%.1f", setupPhase)) s): rendezvous \(toRendezvous.frames) frames / \(toRendezvous.connections) connections, \
            node 0's mesh port \(toMesh.frames) / \(toMesh.connections); after the meeting: rendezvous \(afterMeeting.frames) / \(afterMeeting.connections) \
            (\(afterMeeting.unreachable) unreachable)
            """)

        let summary = "\(child.termination!)\n--- stdout ---\n\(child.stdout.suffix(2000))\n--- stderr ---\n\(child.stderr.suffix(4000))"
        XCTAssertEqual(child.termination, .exited(0), "the run failed under the strangers' frames (seed \(seed)):\n\(summary)")
        XCTAssertEqual(Output.field("failures", in: child.stdout, line: "litmus failures="), "0", summary)
        XCTAssertEqual(Output.field("nodes", in: child.stdout, line: "litmus failures="), "2", summary)
        XCTAssertGreaterThanOrEqual(total, 100_000, "too few frames sent")
        XCTAssertGreaterThan(toMesh.frames, 0, "no frame reached node 0's mesh port during set-up")
        XCTAssertGreaterThan(afterMeeting.frames, 0, "no frame reached the rendezvous port after the nodes met")
        XCTAssertTrue(meshClosed, "node 0 still listened after the nodes met")
        // The strangers were refused, by the launcher and by node 0.
        XCTAssertTrue(child.stderr.contains("dsmrun: refused a connection"), summary)
        XCTAssertTrue(child.stderr.contains("dsm[node 0]: refused a connection"), summary)
        XCTAssertFalse(child.stderr.contains("Fatal error"), summary)
        try Runner.checkClean(marker: marker, pgid: child.pid, before: before, base: base, context: summary)
    }

    // MARK: A peer with the secret

    /// The test plays the launcher and node 1 of a run of 2 and sends a
    /// real node 0 (`sleeper`, which joins with a segment) garbage: frames
    /// of every kind, calls in every operation's layout with values at their
    /// bounds, coherence messages about its segment and others, cut short
    /// and lengthened. Each session ends when node 0 stops or after a few
    /// thousand frames. Node 0 may stop the run with a message (exit status
    /// 1 and `broke the protocol`), but never die of a signal: a Swift trap
    /// (SIGILL, SIGTRAP), a bad access (SIGSEGV, SIGBUS) or an allocation
    /// failure (SIGABRT).
    func testGarbageFromAPeerWithTheSecretStopsANodeOnlyWithAMessage() throws {
        let runtime = Paths.dsmrun.deletingLastPathComponent().appendingPathComponent("libDSMRuntime.so").path
        _ = try Paths.requireDSMRun()
        guard access(runtime, R_OK) == 0 else { throw HarnessError("runtime library not found at \(runtime)") }
        let sleeper = try Programs.path("sleeper")
        let seed = newSeed()
        print("WireFuzzTests seed \(seed) (DSM_TEST_FUZZ_SEED replays it)")
        var fuzzer = WireFuzzer(seed: seed)
        let hex = Array("0123456789abcdef".utf8)
        let token = String(decoding: (0..<48).map { _ in hex[fuzzer.below(16)] }, as: UTF8.self)
        let dir = Paths.newRunDir("wirefuzz-peer")
        let before = IPC.snapshot()
        let base = IPC.freshKeyBase()

        var sessions = 0, frames = 0, survived = 0
        var endings: [String: Int] = [:]
        var crashes: [String] = []
        let started = Monotonic.now
        while (Monotonic.now - started < 10 || sessions < 10) && sessions < 3000 && crashes.isEmpty {
            sessions += 1
            let sessionSeed = fuzzer.rng.next()
            let outcome = try peerSession(seed: sessionSeed, token: token, runtime: runtime, program: sleeper, base: base, dir: dir,
                                          label: "node0-\(sessions)")
            frames += outcome.frames
            switch outcome.termination {
            case nil:
                survived += 1
            case .exited?:
                // The message it stopped with (`.output` frames may have put
                // random bytes around it), numbers left out.
                var gist = "(no message)"
                if let r = outcome.stderr.range(of: "dsm[node 0]: ", options: .backwards) {
                    let line = outcome.stderr[r.upperBound...].prefix { $0 != "\n" }
                    gist = String(line.map { $0.isNumber ? "#" : $0 }.prefix(90))
                }
                endings["\(outcome.termination!): \(gist)", default: 0] += 1
                if outcome.stderr.contains("Fatal error") {
                    crashes.append("session seed \(sessionSeed): a Swift runtime error:\n\(outcome.stderr.suffix(2000))")
                }
            case .signaled(let s)?:
                crashes.append("""
                    session seed \(sessionSeed) (\(outcome.frames) frames): node 0 was killed by signal \(s) \
                    (\(String(cString: strsignal(s)))); the last frames sent:\n\(outcome.last.joined(separator: "\n"))\n\
                    --- stderr ---\n\(outcome.stderr.suffix(3000))
                    """)
            }
        }
        print("""
            WireFuzzTests: \(sessions) sessions as node 1 with the secret, \(frames) frames in \
            \(String(format: "%.1f", Monotonic.now - started)) s; \(survived) nodes survived their session; endings:
            \(endings.sorted { $0.value > $1.value }.prefix(12).map { "  \($0.value)x \($0.key)" }.joined(separator: "\n"))
            """)
        XCTAssertTrue(crashes.isEmpty, "a node died of a signal under a peer's garbage (seed \(seed)):\n\(crashes.joined(separator: "\n"))")
        XCTAssertGreaterThanOrEqual(sessions, 10)
        XCTAssertGreaterThan(frames, 5_000)
        // The checks were reached: nodes stopped because of what was sent.
        XCTAssertTrue(endings.keys.contains { $0.contains("broke the protocol") }, "\(endings)")
        let leaked = IPC.leaked(since: before, base: base)
        IPC.remove(leaked)
        XCTAssertTrue(leaked.isEmpty, "System V objects left behind: \(leaked)")
    }

    struct PeerOutcome {
        /// How node 0 ended by itself; nil: it was still running at the end of the session.
        var termination: Termination?
        var frames: Int
        var stderr: String
        /// The last frames sent (header and the start of the payload, hex), for a crash report.
        var last: [String]
    }

    /// One node 0, met as its launcher and its node 1, then sent garbage:
    /// random frames, or (`script`) the given frames once node 0's program
    /// has its segment and has written its first page.
    private func peerSession(seed: UInt64, token: String, runtime: String, program: String, base: UInt32, dir: URL,
                             label: String, script: [[UInt8]]? = nil) throws -> PeerOutcome {
        var fuzzer = WireFuzzer(seed: seed)
        let coordinator = Gate(listener: try Listener(host: "127.0.0.1"), token: token)
        let runID = UUID().uuidString
        let env = childEnvironment([
            "LD_PRELOAD": runtime, "DSM_NODES": "2", "DSM_NODE_ID": "0", "DSM_COORD": "\(coordinator.listener.endpoint)",
            "DSM_TOKEN": token, "DSM_MODE": "spmd", "DSM_PEER_TIMEOUT": "120", "DSM_BIND": "0", "DSM_RUNTIME_FIFO": "0",
            "DSM_LOCAL_NODES": "2", "DSM_TEST_KEY": "0x" + String(base, radix: 16), "DSM_TEST_RUN": runID,
        ])
        let child = try Child(executable: program, arguments: ["60"], environment: env, dir: dir, label: label)
        defer {
            if child.termination == nil { child.killGroup() }
            ProcessScan.killAll(marker: "DSM_TEST_RUN=\(runID)")
        }
        // The rendezvous, as the launcher: node 0's hello, then a table in
        // which node 1 is this test.
        let (launcher, _) = try coordinator.admit(timeoutMilliseconds: 10_000, refused: { _ in })
        let (hello, payload) = try launcher.receiveFrameBlocking(timeoutMilliseconds: 10_000)
        guard hello.kind == .hello, hello.a == 0 else { throw HarnessError("node 0 said \(hello.kind) a=\(hello.a), not hello") }
        let endpoint = try RendezvousHello.decode(payload).endpoint
        try launcher.sendBlocking(FrameHeader(kind: .table, source: 0),
                                  payload: RendezvousTable.encode([endpoint, Endpoint(host: "127.0.0.1", port: 9)]),
                                  timeoutMilliseconds: 5_000)
        let peer = try connectPresenting(token: token, to: endpoint, timeoutMilliseconds: 10_000)
        try peer.sendBlocking(FrameHeader(kind: .auth, source: 1, a: 1), payload: [], timeoutMilliseconds: 5_000)

        var frames = 0
        var last: [String] = []
        var announced = false, granted = false
        let limit = 200 + fuzzer.below(3000)
        let deadline = Monotonic.now + (script == nil ? 2 : 10)
        var pending = script ?? []
        var answer: [UInt8] = []
        withUnsafeBytes(of: Int64(0).littleEndian) { answer = Array($0) }
        session: while frames < limit && Monotonic.now < deadline && !child.poll() {
            // Node 1's part, enough for node 0's program to go on: calls
            // (the segment's announcement) are answered, requests for pages
            // homed here are granted as first touches; the rest is dropped.
            do {
                _ = try peer.receive()
                while let (header, payload) = try peer.nextFrame() {
                    if header.kind == .call && header.a != 0 {
                        answer.withUnsafeBytes { peer.queue(FrameHeader(kind: .reply, source: 1, a: header.a), payload: $0) }
                        var r = WireReader(payload)
                        _ = (r.get(UInt32.self), r.get(UInt32.self), r.getArray(UInt32.self), r.get(Int32.self))
                        if r.get(UInt8.self) == 10 { announced = true }
                    } else if header.kind == .readRequest || header.kind == .writeRequest {
                        peer.queue(FrameHeader(kind: .grant, flags: 7, source: 1, container: header.container, index: header.index),
                                   payload: nil)
                        granted = true
                    }
                }
                try peer.flush()
            } catch {
                break session
            }
            var batch: [UInt8] = []
            var count = 1
            if script != nil {
                // The script goes once the program has its segment and a page.
                guard announced && granted else {
                    usleep(2_000)
                    continue
                }
                if pending.isEmpty {
                    usleep(2_000)
                    continue
                }
                batch = pending.removeFirst()
                last.append(batch.prefix(FrameHeader.size + 24).map { String(format: "%02x", $0) }.joined())
            } else {
                count = 1 + fuzzer.below(8)
                for _ in 0..<count {
                    let frame = fuzzer.authenticatedFrame()
                    batch += frame
                    last.append(frame.prefix(FrameHeader.size + 24).map { String(format: "%02x", $0) }.joined() + " (\(frame.count) bytes)")
                    if last.count > 8 { last.removeFirst() }
                }
            }
            do {
                try peer.sendRawBlocking(batch, timeoutMilliseconds: 1_000)
            } catch {
                break session
            }
            frames += count
        }
        // A node that stopped on a frame does so within moments (its
        // connections stay open meanwhile: their end would stop it too).
        _ = child.wait(until: Monotonic.now + (script == nil ? 0.3 : 3))
        withExtendedLifetime((coordinator, launcher, peer)) {}
        // Read whatever it is: `.output` frames put random bytes there too.
        let stderr = String(decoding: ProcessScan.readFile(child.stderrPath) ?? [], as: UTF8.self)
        if script != nil && !(announced && granted) {
            throw HarnessError("node 0's program did not get its segment and first page within 10 s:\n\(stderr.suffix(2000))")
        }
        return PeerOutcome(termination: child.termination, frames: frames, stderr: stderr, last: last)
    }

    /// Frames that crashed a node before they were checked (found by the
    /// audit, and the fuzzing above crashed that runtime within a few
    /// sessions): each killed node 0 with SIGILL, and now stops it with a
    /// message naming what was wrong. Node 0 owns page 0 of its 64-page segment
    /// (container 1) and is the home of the odd pages.
    func testFramesThatOnceTrappedStopTheNodeWithAMessage() throws {
        let runtime = Paths.dsmrun.deletingLastPathComponent().appendingPathComponent("libDSMRuntime.so").path
        _ = try Paths.requireDSMRun()
        let sleeper = try Programs.path("sleeper")
        let dir = Paths.newRunDir("wirefuzz-known")
        let before = IPC.snapshot()
        let base = IPC.freshKeyBase()
        let token = UUID().uuidString.replacingOccurrences(of: "-", with: "")
        func frame(_ kind: FrameKind, flags: UInt8 = 0, container: UInt32 = 1, index: UInt32 = 0, a: UInt64, payload: [UInt8] = []) -> [UInt8] {
            WireFuzzer.header(kind: kind.rawValue, flags: flags, source: 1, length: UInt32(payload.count), container: container,
                              index: index, a: a) + payload
        }
        func call(_ fields: (inout WireWriter) -> Void) -> [UInt8] {
            var w = WireWriter()
            w.put(UInt32(0)); w.put(UInt32(0)); w.put(array: [UInt32]()); w.put(Int32(1))
            fields(&w)
            return frame(.call, a: 0, payload: w.bytes)
        }
        func tokenAcquire(thread: UInt64) -> [UInt8] {
            call { w in w.put(UInt8(22)); w.put(UInt64(0x1000)); w.put(thread); w.put(Int64(-1)); w.put(Int32(1)); w.put(UInt64(0)) }
        }
        let cases: [(String, [[UInt8]], String)] = [
            // Int(a) of a node field of 2^63 trapped.
            ("a node past 2^63", [frame(.readRequest, index: 1, a: 1 << 63)], "names node 9223372036854775808"),
            // The page went to peers[5]: out of range.
            ("a forward to a node past the run", [frame(.forwardRead, a: 5)], "names node 5"),
            // A page sent to its own node: a precondition.
            ("a forward to the node itself", [frame(.forwardRead, a: 0)], "names node 0"),
            // The hold window's counters were indexed before any check.
            ("a page past the container", [frame(.invalidate, index: 1000, a: 0)], "page 1000 of container 1, which has 64"),
            // A forced unwrap of node 0's own arrival.
            ("image set-up twice", [call { $0.put(UInt8(14)); $0.put(UInt64(7)) }, call { $0.put(UInt8(14)); $0.put(UInt64(7)) }],
             "set up its image twice"),
            // Int(thread) of a token request trapped; a small one was granted to peers[thread].
            ("a token for a node past 2^63", [tokenAcquire(thread: 1 << 63)], "on behalf of node 9223372036854775808"),
            ("a token for a node past the run", [tokenAcquire(thread: 5)], "on behalf of node 5"),
            // A block-homed container with no block: home() divided by zero.
            ("a container homed in blocks of 0 pages",
             [call { $0.put(UInt8(10)); $0.put(UInt32(0xA000_0000)); $0.put(UInt32(16)); $0.put(UInt64(0x3000_0000_0000)) },
              frame(.readRequest, container: 0xA000_0000, index: 0, a: 1)], "is not a System V segment's"),
            // Per-page state for as many pages as it said (2^32: tens of GB).
            ("a container larger than SHMMAX",
             [call { $0.put(UInt8(10)); $0.put(UInt32(9)); $0.put(UInt32(4_194_305)); $0.put(UInt64(0x3000_0000_0000)) }],
             "a segment of 4194305 pages"),
            // Its attachment was unmapped under the program, which died of
            // SIGSEGV at its next write (found by the fuzzing above in CI).
            ("a live segment's container destroyed by a peer", [call { $0.put(UInt8(11)); $0.put(UInt32(1)) }],
             "destroyed by node 1"),
            // Set-up kinds between nodes were taken for coherence messages and dropped.
            ("a hello between nodes", [frame(.hello, a: 1)], "it sent a hello frame"),
        ]
        var problems: [String] = []
        for (i, (name, script, expected)) in cases.enumerated() {
            let outcome = try peerSession(seed: UInt64(i), token: token, runtime: runtime, program: sleeper, base: base, dir: dir,
                                          label: "known-\(i)", script: script)
            let said = outcome.stderr.split(separator: "\n").filter { $0.contains("dsm[node 0]") }.joined(separator: "\n")
            if outcome.termination != .exited(1) || !outcome.stderr.contains(expected) {
                problems.append("""
                    \(name): node 0 \(outcome.termination.map { "\($0)" } ?? "kept running"), \
                    expected exit status 1 and `\(expected)`; it said:\n\(said.isEmpty ? outcome.stderr.suffix(1500) : Substring(said))
                    """)
            }
        }
        XCTAssertTrue(problems.isEmpty, problems.joined(separator: "\n"))
        let leaked = IPC.leaked(since: before, base: base)
        IPC.remove(leaked)
        XCTAssertTrue(leaked.isEmpty, "System V objects left behind: \(leaked)")
    }
}
