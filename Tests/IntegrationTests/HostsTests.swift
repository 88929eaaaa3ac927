// Several hosts on one machine: network namespaces joined by veth pairs to
// a bridge (Tests/Hosts/testbed), each node also in an IPC and PID namespace
// of its host's own, started through `--rsh Tests/Hosts/rsh` as ssh would
// start it. The programs must give the native run's results, failures must
// end the run on every host, and nothing may be left on any host.
//
// These tests need root (network namespaces) and iproute2's `ip`; without
// them they fail with that message.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// The test hosts: made once per test process, removed at its exit.
enum TestBed {
    static let subnet = "10.213.0"
    static let network = "10.213.0.0/24"
    static let hostCount = 4
    static let name = "dsmt\(getpid())h"
    static var rsh: String { Paths.root.appendingPathComponent("Tests/Hosts/rsh").path }
    static var script: String { Paths.root.appendingPathComponent("Tests/Hosts/testbed").path }
    static func host(_ i: Int) -> String { "\(name)\(i)" }
    /// A pause of a few tenths of a second in shell builtins: a `sleep`
    /// child would be a process of the node that joins the run at its exit.
    static let shellPause = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done;"
    static func address(_ i: Int) -> String { "\(subnet).\(1 + i)" }

    private static let once = SetUpOnce(make)

    /// Makes the hosts (once); throws why they cannot be made.
    static func require() throws { try once.require() }

    private static func make() throws {
        guard getuid() == 0 else {
            throw HarnessError("the several-hosts tests need root to make network namespaces (running as uid \(getuid()))")
        }
        guard access("/usr/sbin/ip", X_OK) == 0 || access("/sbin/ip", X_OK) == 0 || access("/usr/bin/ip", X_OK) == 0 else {
            throw HarnessError("the several-hosts tests need iproute2's `ip` (apt-get install iproute2)")
        }
        // Hosts left by a test process that died take the same subnet.
        _ = try? runCommand("/bin/sh", ["-c", """
            for b in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep -E '^dsmt[0-9]+hbr$'); do
              owner=${b#dsmt}; owner=${owner%hbr}
              [ -d /proc/$owner ] || '\(script)' down ${b%br}
            done
            """], environment: childEnvironment([:]), timeout: 30, label: "testbed-clean")
        try runSetUp(script, ["up", name, String(hostCount), subnet], what: "cannot make the test hosts", label: "testbed-up")
        atexit {
            _ = try? runCommand(TestBed.script, ["down", TestBed.name], environment: childEnvironment([:]), timeout: 30,
                                label: "testbed-down")
        }
    }

    /// Pids of processes running in host `i`'s network namespace, but the
    /// test Slurm cluster's daemons (EngineTests) and the test sshd's
    /// listeners (SSHTests); ssh sessions count.
    static func processes(onHost i: Int) -> [pid_t] {
        guard let r = try? runCommand("/bin/sh", ["-c", "ip netns pids \(host(i))"], environment: childEnvironment([:]),
                                      timeout: 10, label: "netns-pids") else { return [] }
        let daemons: Set<String> = ["slurmd", "slurmctld", "slurmscriptd"]
        let listeners = TestSSH.listeners
        return r.stdout.split(separator: "\n").compactMap { pid_t($0.trimmingCharacters(in: .whitespaces)) }.filter { pid in
            guard !listeners.contains(pid), let state = ProcessScan.stat(pid), state.state != "Z" else { return false }
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            return !daemons.contains(comm)
        }
    }

    /// `command... program SIZE [threads]` gives the native run's hash:
    /// N plain processes (SPMD) or one plain process (image mode, `nodes`
    /// threads). Nothing is left on any host afterwards.
    static func expectNativeHash(_ program: String, nodes n: Int, image: Bool, command: [String],
                                 environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) throws {
        let size = Config.size
        let timeout = Config.computeTimeout(n: size) * 2
        let args = image ? [String(size), String(n)] : [String(size)]
        let want: String
        if image {
            let plain = try Runner.plain(program, args: args, timeout: timeout)
            XCTAssertEqual(plain.termination, .exited(0), plain.summary, file: file, line: line)
            want = try XCTUnwrap(Output.hash(in: plain.stdout, line: "\(program) n="), plain.summary, file: file, line: line)
        } else {
            let native = try Runner.native(program, nodes: n, args: args, timeout: timeout)
            XCTAssertTrue(native.allSucceeded, native.summary, file: file, line: line)
            want = try XCTUnwrap(Output.hash(in: native.output, line: "\(program) n="), native.summary, file: file, line: line)
        }
        let run = try Runner.launch(command + args, label: "\(program)-\(n)", timeout: timeout, environment: environment)
        XCTAssertEqual(run.result.termination, .exited(0), run.summary, file: file, line: line)
        XCTAssertEqual(Output.hash(in: run.output, line: "\(program) n="), want, run.summary, file: file, line: line)
        if !image {
            XCTAssertEqual(Output.field("nodes", in: run.output, line: "\(program) n="), String(n), run.summary, file: file, line: line)
        }
        print("\(command.first.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "") \(program) n=\(size) nodes=\(n): "
              + "time=\(Output.field("time", in: run.output, line: "time") ?? "?")")
        try checkHostsEmpty(run.summary)
    }

    /// Nothing of a run is left on any host.
    static func checkHostsEmpty(_ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Monotonic.now + 3
        var left: [Int: [pid_t]] = [:]
        repeat {
            left = [:]
            for i in 1...hostCount {
                let pids = processes(onHost: i)
                if !pids.isEmpty { left[i] = pids }
            }
            if left.isEmpty { return }
            usleep(20_000)
        } while Monotonic.now < deadline
        for (_, pids) in left { for p in pids { kill(p, SIGKILL) } }
        XCTFail("processes left on the test hosts after the run: "
                + left.map { "host \($0.key): \($0.value.map { "\($0) (\(ProcessScan.commandLine($0).joined(separator: " ")))" })" }
                    .joined(separator: "; ") + "\n" + context, file: file, line: line)
    }

    /// `--hosts` for hosts 1...count by namespace name, `slots` each.
    static func hostsOption(_ count: Int, slots: Int? = nil) -> String {
        (1...count).map { host($0) + (slots.map { ":\($0)" } ?? "") }.joined(separator: ",")
    }
}

final class HostsTests: XCTestCase {
    override func setUpWithError() throws {
        try TestBed.require()
    }

    private var common: [String] { ["--rsh", TestBed.rsh] }

    // MARK: Results across hosts, bit-identical to the native run

    /// SPMD MGS on 2 hosts, one node each; hosts named by namespace, the
    /// interface given as a network.
    func testMGSOnTwoHostsSPMD() throws {
        try checkSameHash("mgs", nodes: 2, hosts: ["--hosts", TestBed.hostsOption(2), "--iface", TestBed.network])
    }

    /// SPMD matrix multiply on 4 hosts; hosts named by address, so the
    /// launcher finds the interface from the route towards them.
    func testMatmulOnFourHostsSPMD() throws {
        let hosts = (1...4).map { TestBed.address($0) }.joined(separator: ",")
        try checkSameHash("matmul", nodes: 4, hosts: ["--hosts", hosts])
    }

    /// Two nodes on each of 2 hosts, from a hostfile with comments.
    func testMGSFromAHostfile() throws {
        let file = Paths.newRunDir("hostfile").appendingPathComponent("hosts")
        try """
        # two test hosts, two slots each
        \(TestBed.host(1)) slots=2   # first host
        \(TestBed.host(2)) slots=2

        """.write(to: file, atomically: true, encoding: .utf8)
        try checkSameHash("mgs", nodes: 4, hosts: ["--hostfile", file.path, "--iface", TestBed.network])
    }

    /// Image mode (pthreads MGS, main on host 1) across 2 hosts.
    func testImageMGSOnTwoHosts() throws {
        try checkImageSameHash("img_mgs", nodes: 2, threads: 2, hosts: ["--hosts", TestBed.hostsOption(2), "--iface", TestBed.network])
    }

    /// Image mode (pthreads matrix multiply) across 4 hosts.
    func testImageMatmulOnFourHosts() throws {
        try checkImageSameHash("img_matmul", nodes: 4, threads: 4, hosts: ["--hosts", TestBed.hostsOption(4), "--iface", TestBed.network])
    }

    private func checkSameHash(_ program: String, nodes n: Int, hosts: [String]) throws {
        let dsmrun = try Paths.requireDSMRun()
        try TestBed.expectNativeHash(program, nodes: n, image: false,
                                     command: [dsmrun.path] + common + hosts + ["--spmd", try Programs.path(program)])
    }

    private func checkImageSameHash(_ program: String, nodes n: Int, threads: Int, hosts: [String]) throws {
        let dsmrun = try Paths.requireDSMRun()
        try TestBed.expectNativeHash(program, nodes: threads, image: true,
                                     command: [dsmrun.path] + common + hosts + [try Programs.path(program)])
    }

    private func checkHostsEmpty(_ context: String) throws { try TestBed.checkHostsEmpty(context) }

    // MARK: A stranger, the secret, the exit status

    /// A program's exit status on another host is dsmrun's.
    func testExitStatusFromAnotherHost() throws {
        let dsmrun = try Paths.requireDSMRun()
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path,
            arguments: common + ["--hosts", TestBed.hostsOption(2), "--iface", TestBed.network, "--spmd",
                                 "/bin/sh", "-c", "echo on-$DSM_NODE_ID; [ $DSM_NODE_ID = 1 ] && { \(TestBed.shellPause) exit 3; }; exit 0"],
            label: "hosts-exit", timeout: 30)
        XCTAssertEqual(run.result.termination, .exited(3), run.summary)
        XCTAssertTrue(run.output.contains("on-0") && run.output.contains("on-1"), run.summary)
        XCTAssertTrue(run.result.stderr.contains("node 1 on host \(TestBed.host(2)) exited with status 3"), run.summary)
        try checkHostsEmpty(run.summary)
    }

    /// The launcher's standard input reaches node 0 on another host, whole
    /// (1.3 MB, more than the pipes and buffers on the way hold); the other
    /// nodes read an empty input.
    func testStandardInputReachesNodeZeroOnAnotherHost() throws {
        let dsmrun = try Paths.requireDSMRun()
        let input = (1...200_000).map(String.init).joined(separator: "\n") + "\n"
        let file = Paths.newRunDir("stdin").appendingPathComponent("input")
        try input.write(to: file, atomically: true, encoding: .utf8)
        let want = try runCommand("/bin/sh", ["-c", "cksum < '\(file.path)'"], environment: childEnvironment([:]), timeout: 10,
                                  label: "cksum").stdout
        let hosts = TestBed.hostsOption(2)
        let command = "exec '\(dsmrun.path)' --rsh '\(TestBed.rsh)' --hosts \(hosts) --iface \(TestBed.network) --spmd /bin/sh -c "
            + "'if [ $DSM_NODE_ID = 0 ]; then exec cksum; else exec wc -c; fi' < '\(file.path)'"
        let run = try Runner.launch(["/bin/sh", "-c", command], label: "hosts-stdin", timeout: 30)
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        let lines = run.output.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains(want.trimmingCharacters(in: .whitespacesAndNewlines)), "node 0's cksum differs:\n\(run.summary)")
        XCTAssertTrue(lines.contains("0"), "node 1 did not read an empty input:\n\(run.summary)")
        try checkHostsEmpty(run.summary)
    }

    /// While a run goes on: the secret is on no command line of any host,
    /// and strangers on the launcher's port (idle, or sending a frame with
    /// every field out of range) neither end nor disturb it.
    func testSecretStaysOffCommandLinesAndStrangersAreRefused() throws {
        let run = try startSleepers(hosts: 2)
        defer { run.stop() }
        let token = try XCTUnwrap(ProcessScan.environment(run.nodes[1]!, "DSM_TOKEN"), "node 1 has no DSM_TOKEN")
        XCTAssertGreaterThanOrEqual(token.count, 32)
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { pid_t($0) } ?? []
        XCTAssertGreaterThan(all.count, 5)
        for pid in all {
            let line = ProcessScan.commandLine(pid).joined(separator: " ")
            XCTAssertFalse(line.contains(token), "the run's secret is on the command line of pid \(pid): \(line)")
        }
        // The launcher's rendezvous port, from --verbose.
        let endpoint = try XCTUnwrap(run.child.stderr.split(separator: "\n").compactMap { line -> Substring? in
            guard let r = line.range(of: "rendezvous on ") else { return nil }
            return line[r.upperBound...]
        }.first, "dsmrun --verbose did not say where the rendezvous listens:\n\(run.child.stderr)")
        let parts = endpoint.split(separator: ":")
        let port = try XCTUnwrap(UInt16(parts.last ?? ""))
        var strangers: [Int32] = []
        for i in 0..<24 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, String(parts[0]), &address.sin_addr)
            let r = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(r, 0, "cannot connect to the launcher's port \(endpoint)")
            if i % 3 == 0 {
                // A frame header with magic, a hello, every other byte 0xff.
                var hostile = [UInt8](repeating: 0xff, count: 4096)
                hostile[0] = 0xD5
                hostile[1] = 40
                _ = send(fd, hostile, hostile.count, Int32(MSG_NOSIGNAL))
            }
            strangers.append(fd)
        }
        usleep(500_000)
        for fd in strangers { close(fd) }
        XCTAssertNil(run.child.termination, "the run ended after strangers connected:\n\(run.child.stderr)")
        // The run still works: SIGTERM reaches both hosts' nodes.
        kill(run.child.pid, SIGTERM)
        guard run.child.wait(until: Monotonic.now + 10) else { return XCTFail("dsmrun did not end within 10 s of SIGTERM") }
        XCTAssertEqual(run.child.termination, .exited(128 + SIGTERM), run.child.stderr)
        try checkHostsEmpty(run.child.stderr)
    }

    // MARK: Failures across hosts

    /// A node killed on another host ends the run on every host within 5 s,
    /// naming the node and its host.
    func testKillingANodeOnAnotherHostStopsTheRun() throws {
        let run = try startSleepers(hosts: 2)
        defer { run.stop() }
        XCTAssertEqual(kill(run.nodes[1]!, SIGKILL), 0)
        let killedAt = Monotonic.now
        guard run.child.wait(until: killedAt + 5.5) else {
            return XCTFail("dsmrun did not exit within 5 s of node 1's SIGKILL\n\(run.child.stderr)")
        }
        XCTAssertEqual(run.child.termination, .exited(128 + SIGKILL), run.child.stderr)
        XCTAssertTrue(run.child.stderr.contains("node 1 on host \(TestBed.host(2))"), run.child.stderr)
        XCTAssertTrue(run.child.stderr.contains("signal 9"), run.child.stderr)
        print("dsmrun exited \(Monotonic.now - killedAt) s after a remote node's SIGKILL")
        try checkHostsEmpty(run.child.stderr)
    }

    /// Host 2's link goes down (no FIN, no RST: packets just vanish): the
    /// run ends on both hosts within the peer timeout, naming the silent node.
    func testLinkDownEndsTheRunOnEveryHost() throws {
        let run = try startSleepers(hosts: 2, extra: ["--peer-timeout", "3"])
        defer { run.stop() }
        let link = "\(TestBed.name)v2"
        let down = try runCommand("/bin/sh", ["-c", "ip link set \(link) down"], environment: childEnvironment([:]), timeout: 10, label: "link-down")
        XCTAssertTrue(down.termination.isSuccess, down.summary)
        defer { _ = try? runCommand("/bin/sh", ["-c", "ip link set \(link) up"], environment: childEnvironment([:]), timeout: 10, label: "link-up") }
        let cutAt = Monotonic.now
        guard run.child.wait(until: cutAt + 12) else {
            return XCTFail("dsmrun still runs 12 s after host 2's link went down (peer timeout 3 s)\n\(run.child.stderr)")
        }
        print("link down -> dsmrun exited after \(String(format: "%.2f", Monotonic.now - cutAt)) s (peer timeout 3 s)")
        XCTAssertNotEqual(run.child.termination, .exited(0), run.child.stderr)
        XCTAssertTrue(run.child.stderr.contains("has sent nothing for"), run.child.stderr)
        try checkHostsEmpty(run.child.stderr)
    }

    /// A node stopped with SIGSTOP on another host: the run ends within the
    /// peer timeout, naming it, and the stopped node is removed too.
    func testFrozenNodeEndsTheRun() throws {
        let run = try startSleepers(hosts: 2, extra: ["--peer-timeout", "3"])
        defer { run.stop() }
        XCTAssertEqual(kill(run.nodes[1]!, SIGSTOP), 0)
        let stoppedAt = Monotonic.now
        guard run.child.wait(until: stoppedAt + 12) else {
            return XCTFail("dsmrun still runs 12 s after node 1 was stopped (peer timeout 3 s)\n\(run.child.stderr)")
        }
        print("SIGSTOP -> dsmrun exited after \(String(format: "%.2f", Monotonic.now - stoppedAt)) s (peer timeout 3 s)")
        XCTAssertNotEqual(run.child.termination, .exited(0), run.child.stderr)
        XCTAssertTrue(run.child.stderr.contains("node 1 (\(TestBed.address(2))) has sent nothing for"), run.child.stderr)
        try checkHostsEmpty(run.child.stderr)
    }

    /// The launcher killed with SIGKILL: the nodes on every host notice and
    /// go by themselves.
    func testNodesOnOtherHostsGoWhenTheLauncherIsKilled() throws {
        let run = try startSleepers(hosts: 2)
        defer { run.stop() }
        XCTAssertEqual(kill(run.child.pid, SIGKILL), 0)
        _ = run.child.wait(until: Monotonic.now + 5)
        let deadline = Monotonic.now + 10
        var left: [pid_t] = []
        repeat {
            left = (1...2).flatMap { TestBed.processes(onHost: $0) }
            if left.isEmpty { break }
            usleep(50_000)
        } while Monotonic.now < deadline
        XCTAssertEqual(left, [], "processes still on the hosts 10 s after the launcher's SIGKILL: "
                       + left.map { "\($0) (\(ProcessScan.commandLine($0).joined(separator: " ")))" }.joined(separator: ", "))
    }

    /// A host that does not exist: a clear message naming it, a non-zero
    /// status, quickly, and nothing left anywhere.
    func testMissingHostIsNamed() throws {
        let dsmrun = try Paths.requireDSMRun()
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path,
            arguments: common + ["--hosts", "\(TestBed.host(1)),no-such-host-\(getpid())", "--iface", TestBed.network, "--spmd",
                                 try Programs.path("sleeper"), "30"],
            label: "hosts-missing", timeout: 30)
        XCTAssertNotEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertTrue(run.result.stderr.contains("host no-such-host-\(getpid())"), run.summary)
        XCTAssertLessThan(run.result.elapsed, 10, run.summary)
        try checkHostsEmpty(run.summary)
    }

    /// A host whose program is another build than the launcher's is refused
    /// by name, before any node starts.
    func testDifferentProgramOnAHostIsRefused() throws {
        let dsmrun = try Paths.requireDSMRun()
        let sleeper = try Programs.path("sleeper")
        let other = try Programs.path("threads")
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path,
            arguments: common + ["--hosts", TestBed.hostsOption(2), "--iface", TestBed.network, "--spmd", sleeper, "30"],
            label: "hosts-different", timeout: 30,
            environment: ["DSM_TESTBED_SHADOW": "\(TestBed.host(2))=\(other):\(sleeper)"])
        XCTAssertEqual(run.result.termination, .exited(2), run.summary)
        XCTAssertTrue(run.result.stderr.contains("host \(TestBed.host(2)): the program \(sleeper) differs from the launcher's"), run.summary)
        try checkHostsEmpty(run.summary)
    }

    /// A host without dsmrun at the launcher's path: named, non-zero.
    func testHostWithoutDSMRunIsNamed() throws {
        let dsmrun = try Paths.requireDSMRun()
        let empty = Paths.newRunDir("empty").path
        let release = dsmrun.deletingLastPathComponent().path
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path,
            arguments: common + ["--hosts", TestBed.hostsOption(2), "--iface", TestBed.network, "--spmd", try Programs.path("sleeper"), "30"],
            label: "hosts-no-dsmrun", timeout: 30,
            environment: ["DSM_TESTBED_SHADOW": "\(TestBed.host(1))=\(empty):\(release)"])
        XCTAssertEqual(run.result.termination, .exited(127), run.summary)
        XCTAssertTrue(run.result.stderr.contains("host \(TestBed.host(1)): could not start its nodes"), run.summary)
        try checkHostsEmpty(run.summary)
    }

    // MARK: Helpers

    struct SleeperRun {
        var child: Child
        var nodes: [Int: pid_t]
        var marker: String
        func stop() {
            if child.termination == nil { child.killGroup() }
            ProcessScan.killAll(marker: marker)
        }
    }

    /// One sleeper node on each of `hosts` hosts, up and ready.
    private func startSleepers(hosts: Int, extra: [String] = []) throws -> SleeperRun {
        let dsmrun = try Paths.requireDSMRun()
        let sleeper = try Programs.path("sleeper")
        let token = UUID().uuidString
        let marker = "DSM_TEST_RUN=\(token)"
        let env = childEnvironment(["DSM_TEST_KEY": "0x" + String(IPC.freshKeyBase(), radix: 16), "DSM_TEST_RUN": token])
        let child = try Child(
            executable: dsmrun.path,
            arguments: common + extra + ["--verbose", "--hosts", TestBed.hostsOption(hosts), "--iface", TestBed.network, "--spmd", sleeper, "60"],
            environment: env, dir: Paths.newRunDir("hosts-sleepers"), label: "dsmrun")
        let deadline = Monotonic.now + 20
        while true {
            if child.poll() { throw HarnessError("dsmrun exited before the nodes were up: \(child.termination!)\n\(child.stderr)") }
            var nodes: [Int: pid_t] = [:]
            for pid in ProcessScan.processes(withMarker: marker) {
                let argv0 = ProcessScan.commandLine(pid).first ?? ""
                if argv0.hasSuffix("sleeper"), let id = ProcessScan.environment(pid, "DSM_NODE_ID").flatMap(Int.init) { nodes[id] = pid }
            }
            let ready = child.stdout.components(separatedBy: "\n").filter { $0.contains("ready") }.count
            if nodes.count == hosts && ready >= hosts { return SleeperRun(child: child, nodes: nodes, marker: marker) }
            if Monotonic.now > deadline {
                child.killGroup()
                ProcessScan.killAll(marker: marker)
                throw HarnessError("the sleepers did not come up on \(hosts) hosts within 20 s (found \(nodes))\n\(child.stderr)")
            }
            usleep(20_000)
        }
    }
}
