// dsmrun's default remote start, real ssh: an sshd on test hosts 1 and 2
// (its own host key, a key for root in a file of the test's), and dsmrun
// calling the ssh client as it calls any --rsh command.
//
// They need openssh-server and openssh-client (.ci/run installs them).

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

enum TestSSH {
    static let port = 2222
    static let hosts = 2
    static let directory = Paths.scratch.appendingPathComponent("ssh")
    static var key: String { directory.appendingPathComponent("client").path }
    /// The ssh client as a user would call it, with the test's key and no
    /// known-hosts file; BatchMode as dsmrun's default.
    static var rsh: String {
        "ssh -i \(key) -p \(port) -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=3"
    }

    private static let once = SetUpOnce(make)
    private static let pidLock = NSLock()
    nonisolated(unsafe) private static var pids: [pid_t] = []

    /// The listening sshd's pids (not a run's leftovers).
    static var listeners: Set<pid_t> {
        pidLock.lock()
        defer { pidLock.unlock() }
        return Set(pids)
    }

    static func require() throws {
        try TestBed.require()
        try once.require()
    }

    private static func make() throws {
        guard access("/usr/sbin/sshd", X_OK) == 0, Engines.find("ssh") != nil, Engines.find("ssh-keygen") != nil else {
            throw HarnessError("sshd or ssh not found: the ssh tests need openssh-server and openssh-client")
        }
        let dir = directory.path
        let config = """
            Port \(port)
            HostKey \(dir)/hostkey
            AuthorizedKeysFile \(dir)/client.pub
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            """
        var script = """
            set -e
            mkdir -p '\(dir)' /run/sshd
            ssh-keygen -q -t ed25519 -N '' -f '\(dir)/client'
            ssh-keygen -q -t ed25519 -N '' -f '\(dir)/hostkey'
            cat > '\(dir)/sshd_config' <<'CONFIG'
            \(config)
            CONFIG

            """
        for i in 1...hosts {
            script += """
                nsenter --net=/run/netns/\(TestBed.host(i)) --uts=/run/dsm-testbed/\(TestBed.host(i)).uts -- \
                /usr/sbin/sshd -f '\(dir)/sshd_config' -o ListenAddress=\(TestBed.address(i)) -o PidFile='\(dir)/sshd\(i).pid' -E '\(dir)/sshd\(i).log'

                """
        }
        try runSetUp("/bin/bash", ["-c", script], what: "cannot start the test sshd", label: "sshd-up", timeout: 30)
        let deadline = Monotonic.now + 10
        var found: [pid_t] = []
        while found.count < hosts && Monotonic.now < deadline {
            found = (1...hosts).compactMap { i in
                (try? String(contentsOfFile: "\(dir)/sshd\(i).pid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            usleep(20_000)
        }
        guard found.count == hosts else { throw HarnessError("the test sshd did not start (no pid files in \(dir))") }
        pidLock.lock()
        pids = found
        pidLock.unlock()
        atexit { for pid in TestSSH.listeners { kill(pid, SIGTERM) } }
    }
}

final class SSHTests: XCTestCase {
    override func setUpWithError() throws { try TestSSH.require() }

    private var hosts: String { (1...TestSSH.hosts).map { TestBed.address($0) }.joined(separator: ",") }

    /// SPMD MGS on 2 hosts started over ssh: the native run's result.
    func testMGSOverSSH() throws {
        let dsmrun = try Paths.requireDSMRun().path
        try TestBed.expectNativeHash("mgs", nodes: 2, image: false,
                                     command: [dsmrun, "--rsh", TestSSH.rsh, "--hosts", hosts, "--spmd", try Programs.path("mgs")])
    }

    /// Image mode over ssh: a thread on the other host prints, main joins
    /// it and prints; the lines come out in that order, round after round,
    /// exactly as the plain run's (each node's output goes through node 0).
    func testOutputOrderOverSSH() throws {
        let dsmrun = try Paths.requireDSMRun().path
        let plain = try Runner.plain("img_print_order", args: ["200"], timeout: 30)
        XCTAssertEqual(plain.termination, .exited(0), plain.summary)
        let run = try Runner.launch([dsmrun, "--rsh", TestSSH.rsh, "--hosts", hosts, try Programs.path("img_print_order"), "200"],
                                    label: "ssh-order", timeout: 60)
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertEqual(run.output, plain.stdout, "lines out of order over ssh:\n\(run.summary)")
        try TestBed.checkHostsEmpty(run.summary)
    }

    /// SPMD over ssh: what node 1 prints (a pipe: fully buffered, flushed
    /// at exit) reaches the launcher's output before the run ends.
    func testSPMDOutputOfEveryNodeOverSSH() throws {
        let dsmrun = try Paths.requireDSMRun().path
        let run = try Runner.launch([dsmrun, "--rsh", TestSSH.rsh, "--hosts", hosts, "--spmd", try Programs.path("dsm_api")],
                                    label: "ssh-spmd-output", timeout: 60)
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        let local = try Runner.dsm("dsm_api", nodes: 2, timeout: 60)
        XCTAssertEqual(Set(run.output.split(separator: "\n")), Set(local.output.split(separator: "\n")),
                       "over ssh, the nodes' lines differ from a run on one host:\n\(run.summary)\n--- one host ---\n\(local.summary)")
        try TestBed.checkHostsEmpty(run.summary)
    }

    /// The launcher killed with SIGKILL: ssh's standard input closes, each
    /// agent kills its nodes, the sessions end; nothing is left on any host.
    func testLauncherKilledOverSSHLeavesNothing() throws {
        let dsmrun = try Paths.requireDSMRun().path
        let token = UUID().uuidString
        let child = try Child(executable: dsmrun,
                              arguments: ["--rsh", TestSSH.rsh, "--hosts", hosts, "--spmd", try Programs.path("sleeper"), "60"],
                              environment: childEnvironment(["DSM_TEST_KEY": "0x" + String(IPC.freshKeyBase(), radix: 16),
                                                             "DSM_TEST_RUN": token]),
                              dir: Paths.newRunDir("ssh-kill"), label: "dsmrun")
        defer {
            if child.termination == nil { child.killGroup() }
            ProcessScan.killAll(marker: "DSM_TEST_RUN=\(token)")
        }
        let up = Monotonic.now + 20
        while child.stdout.components(separatedBy: "ready").count < 3 {
            if child.poll() || Monotonic.now > up {
                return XCTFail("the sleepers did not come up over ssh within 20 s\n\(child.stderr)")
            }
            usleep(20_000)
        }
        XCTAssertEqual(kill(child.pid, SIGKILL), 0)
        _ = child.wait(until: Monotonic.now + 5)
        let deadline = Monotonic.now + 10
        var left: [pid_t] = []
        repeat {
            left = (1...TestSSH.hosts).flatMap { TestBed.processes(onHost: $0) }
            if left.isEmpty { break }
            usleep(50_000)
        } while Monotonic.now < deadline
        XCTAssertEqual(left, [], "still on the hosts 10 s after the launcher's SIGKILL: "
                       + left.map { "\($0) (\(ProcessScan.commandLine($0).joined(separator: " ")))" }.joined(separator: ", "))
        // The local ssh clients end too (their standard input closed).
        XCTAssertEqual(ProcessScan.processes(withMarker: "DSM_TEST_RUN=\(token)"), [])
    }

    /// A host ssh cannot reach: named, non-zero, within ssh's connect timeout.
    func testUnreachableHostOverSSH() throws {
        let dsmrun = try Paths.requireDSMRun().path
        let missing = "\(TestBed.subnet).250"
        let run = try Runner.launch([dsmrun, "--rsh", TestSSH.rsh, "--hosts", "\(TestBed.address(1)),\(missing)", "--spmd",
                                     try Programs.path("sleeper"), "30"], label: "ssh-unreachable", timeout: 30)
        XCTAssertEqual(run.result.termination, .exited(255), run.summary)
        XCTAssertTrue(run.result.stderr.contains("host \(missing): could not start its nodes"), run.summary)
        XCTAssertLessThan(run.result.elapsed, 10, run.summary)
        try TestBed.checkHostsEmpty(run.summary)
    }
}
