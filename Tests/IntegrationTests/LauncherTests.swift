// The launcher: bad input is rejected quickly with a clear message, and a
// node that dies stops the whole run.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import XCTest

final class LauncherTests: XCTestCase {
    // MARK: Bad input: non-zero exit, a message on stderr, within 1 s

    func testRejectsZeroNodes() throws {
        try checkRejected(["-n", "0", "--spmd", try Programs.path("sleeper"), "1"], mentions: ["-n", "node"])
    }

    func testRejectsNonNumericNodeCount() throws {
        try checkRejected(["-n", "x", "--spmd", try Programs.path("sleeper"), "1"], mentions: ["-n", "node", "'x'", "\"x\""])
    }

    func testRejectsNegativeNodeCount() throws {
        try checkRejected(["-n", "-1", "--spmd", try Programs.path("sleeper"), "1"], mentions: ["-n", "node", "-1"])
    }

    func testRejectsMissingProgram() throws {
        let missing = Paths.scratch.appendingPathComponent("no-such-program-\(UUID().uuidString)").path
        try checkRejected(
            ["-n", "2", "--spmd", missing], mentions: [URL(fileURLWithPath: missing).lastPathComponent, "no such file", "not found"])
    }

    func testRejectsNonExecutableFile() throws {
        let dir = Paths.newRunDir("nonexec")
        let file = dir.appendingPathComponent("not-executable-\(UUID().uuidString)")
        try "#!/bin/sh\nexit 0\n".write(to: file, atomically: true, encoding: .utf8)
        chmod(file.path, 0o644)
        try checkRejected(
            ["-n", "2", "--spmd", file.path],
            mentions: [file.lastPathComponent, "not executable", "permission", "executable"])
    }

    /// A static executable never meets the runtime (it enters through the
    /// dynamic loader): refused, not run as N unrelated copies.
    func testRejectsAStaticExecutable() throws {
        let dir = Paths.newRunDir("static")
        let source = dir.appendingPathComponent("static.c")
        let binary = dir.appendingPathComponent("static-program")
        try "int main(void) { return 0; }\n".write(to: source, atomically: true, encoding: .utf8)
        let cc = try runCommand("/usr/bin/env", ["cc", "-static", "-o", binary.path, source.path],
                                environment: childEnvironment([:]), timeout: 60, label: "cc-static")
        XCTAssertEqual(cc.termination, .exited(0), "cannot link a static program (libc6-dev provides libc.a):\n\(cc.summary)")
        try checkRejected(["-n", "2", binary.path], mentions: ["statically linked"])
        try checkRejected(["-n", "2", "--spmd", binary.path], mentions: ["statically linked"])
    }

    /// Image mode runs one program: a script (whose interpreter would run
    /// on every node) is refused with status 126 and what to do instead;
    /// --spmd runs it on every node.
    func testImageModeRejectsAScript() throws {
        let script = Paths.newRunDir("script").appendingPathComponent("wrap.sh")
        try "#!/bin/sh\necho ran-$DSM_NODE_ID\n".write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        try checkRejected(["-n", "2", script.path], mentions: ["is a script"])
        let dsmrun = try Paths.requireDSMRun()
        let refused = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", script.path], label: "script", timeout: 10)
        XCTAssertEqual(refused.result.termination, .exited(126), refused.summary)
        XCTAssertFalse(refused.output.contains("ran-"), refused.summary)
        let spmd = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", script.path], label: "script-spmd",
                                         timeout: 30)
        XCTAssertEqual(spmd.result.termination, .exited(0), spmd.summary)
        XCTAssertTrue(spmd.output.contains("ran-0") && spmd.output.contains("ran-1"), spmd.summary)
    }

    /// A malformed or out-of-range tunable, from the environment or a
    /// flag, is one error at launch naming it, before any node starts.
    func testRejectsABadTunable() throws {
        try checkRejected(["--hold-us", "0", "-n", "2", "/bin/true"], mentions: ["--hold-us must be"])
        try checkRejected(["--prefetch", "many", "-n", "2", "--spmd", "/bin/true"], mentions: ["--prefetch must be"])
        let dsmrun = try Paths.requireDSMRun()
        for (name, value) in [("DSM_HOLD_US", "abc"), ("DSM_PREFETCH_BUDDY", "yes"), ("DSM_HEAP_MB", "1")] {
            let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", "/bin/true"], label: "tunable",
                                            timeout: 10, environment: [name: value])
            XCTAssertEqual(run.result.termination, .exited(64), run.summary)
            XCTAssertTrue(run.result.stderr.contains("\(name) must be"), run.summary)
        }
    }

    /// --help lists the options, the tunables among them, and exits 0.
    func testHelp() throws {
        let dsmrun = try Paths.requireDSMRun()
        let run = try runCommand(dsmrun.path, ["--help"], environment: childEnvironment([:]), timeout: 10, label: "help")
        XCTAssertEqual(run.termination, .exited(0), run.summary)
        for option in ["--spmd", "--peer-timeout", "--heap-mb", "--prefetch", "--hold-us", "--spin-us", "--runtime-priority",
                       "--trace-locks", "--delay-us"] {
            XCTAssertTrue(run.stdout.contains(option), "--help does not list \(option):\n\(run.stdout)")
        }
    }

    /// dsmrun `args` must exit non-zero within 1 s with an error message on
    /// stderr (usage / help lines aside) that mentions one of `mentions`
    /// (case-insensitive); and leave nothing behind.
    private func checkRejected(_ args: [String], mentions: [String]) throws {
        let dsmrun = try Paths.requireDSMRun()
        let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: args, label: "launcher", timeout: 10)
        let r = run.result
        let cmd = "dsmrun \(args.joined(separator: " "))"
        XCTAssertNotEqual(r.termination, .exited(0), "`\(cmd)` was accepted:\n\(r.summary)")
        XCTAssertLessThan(r.elapsed, 1.0, "`\(cmd)` took \(r.elapsed) s to fail (limit 1 s)")
        // The message itself, not the usage text that may follow it.
        let err = r.stderr.lowercased().split(separator: "\n").filter {
            let t = $0.trimmingCharacters(in: .whitespaces)
            return !t.isEmpty && !t.hasPrefix("usage:") && !t.hasPrefix("help:") && !t.hasPrefix("see ")
        }.joined(separator: "\n")
        XCTAssertFalse(err.isEmpty, "`\(cmd)`: no error message on stderr:\n\(r.stderr)")
        XCTAssertTrue(
            mentions.contains { err.contains($0.lowercased()) },
            "`\(cmd)`: stderr does not mention the problem (expected one of \(mentions)):\n\(r.stderr)")
    }

    // MARK: Kill a node

    /// `dsmrun -n 2 --spmd sleeper`: once both nodes run, SIGKILL node 1.
    /// dsmrun must exit within 5 s with 128+9, name the node and the signal on
    /// stderr, and leave no process and no System V object behind.
    /// A run of 2 sleeper nodes, up and ready.
    private struct SleeperRun {
        var child: Child
        var nodes: [Int: pid_t]
        var marker: String
        var before: Set<IPCObject>
        var base: UInt32
    }

    private func startSleepers() throws -> SleeperRun {
        let dsmrun = try Paths.requireDSMRun()
        let sleeper = try Programs.path("sleeper")
        let base = IPC.freshKeyBase()
        let before = IPC.snapshot()
        let token = UUID().uuidString
        let marker = "DSM_TEST_RUN=\(token)"
        let env = childEnvironment(["DSM_TEST_KEY": "0x" + String(base, radix: 16), "DSM_TEST_RUN": token])
        let child = try Child(
            executable: dsmrun.path, arguments: ["-n", "2", "--spmd", sleeper, "60"], environment: env,
            dir: Paths.newRunDir("kill"), label: "dsmrun")

        // Wait until both nodes run the program and have printed `ready`.
        var nodes: [Int: pid_t] = [:]
        let startDeadline = Monotonic.now + 20
        while true {
            if child.poll() {
                throw HarnessError("dsmrun exited before both nodes were up: \(child.termination!)\n\(child.stderr)")
            }
            nodes = [:]
            for pid in ProcessScan.descendants(of: child.pid) {
                guard let id = ProcessScan.environment(pid, "DSM_NODE_ID").flatMap(Int.init) else { continue }
                let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
                let argv0 = ProcessScan.commandLine(pid).first ?? ""
                if exe.hasSuffix("/sleeper") || argv0.hasSuffix("sleeper") { nodes[id] = pid }
            }
            let ready = child.stdout.components(separatedBy: "\n").filter { $0.contains("ready") }.count
            if nodes.count == 2 && ready >= 2 { break }
            if Monotonic.now > startDeadline {
                throw HarnessError(
                    "the 2 sleeper nodes did not come up within 20 s (found \(nodes), \(ready) ready lines; descendants of dsmrun: \(ProcessScan.descendants(of: child.pid)))\n--- stdout ---\n\(child.stdout)\n--- stderr ---\n\(child.stderr)"
                )
            }
            usleep(20000)
        }
        XCTAssertEqual(Set(nodes.keys), [0, 1], "node ids seen: \(nodes)")
        return SleeperRun(child: child, nodes: nodes, marker: marker, before: before, base: base)
    }

    func testKillingANodeStopsTheRun() throws {
        let run = try startSleepers()
        let (child, nodes, marker, before, base) = (run.child, run.nodes, run.marker, run.before, run.base)
        defer {
            if child.termination == nil { child.killGroup() }
            ProcessScan.killAll(marker: marker)
        }
        let victim = try XCTUnwrap(nodes[1])

        XCTAssertEqual(kill(victim, SIGKILL), 0)
        let killedAt = Monotonic.now
        let exitedInTime = child.wait(until: killedAt + 5.5)
        let took = Monotonic.now - killedAt
        if !exitedInTime {
            child.killGroup()
            XCTFail("dsmrun did not exit within 5 s after node 1 (pid \(victim)) was SIGKILLed\n\(child.stderr)")
            return
        }
        let status = child.termination!
        let err = child.stderr
        XCTAssertNotEqual(status, .exited(0), "dsmrun exited 0 after a node was killed")
        XCTAssertEqual(status, .exited(128 + SIGKILL), "dsmrun should exit with the failing node's 128+signal")
        print("dsmrun exited \(took) s after the kill: \(status)")
        let lower = err.lowercased()
        let namesNode = lower.range(of: #"node\W{0,3}1\b"#, options: .regularExpression) != nil
        let namesSignal = ["sigkill", "signal 9", "killed"].contains { lower.contains($0) }
        XCTAssertTrue(namesNode, "dsmrun's stderr does not name node 1:\n\(err)")
        XCTAssertTrue(namesSignal, "dsmrun's stderr does not name the signal (SIGKILL / signal 9):\n\(err)")

        // Every node process is gone, as is everything else of the run.
        for (id, pid) in nodes where ProcessScan.isAlive(pid) {
            XCTFail("node \(id) (pid \(pid)) is still alive after dsmrun exited")
            kill(pid, SIGKILL)
        }
        try Runner.checkClean(
            marker: marker, pgid: child.pid, before: before, base: base,
            context: "--- stderr ---\n\(err)")
    }

    /// SIGTERM to dsmrun reaches every node; dsmrun reports 128+SIGTERM and
    /// leaves nothing behind.
    func testTerminatingTheLauncherStopsEveryNode() throws {
        let run = try startSleepers()
        defer {
            if run.child.termination == nil { run.child.killGroup() }
            ProcessScan.killAll(marker: run.marker)
        }
        XCTAssertEqual(kill(run.child.pid, SIGTERM), 0)
        let sentAt = Monotonic.now
        guard run.child.wait(until: sentAt + 5.5) else {
            run.child.killGroup()
            return XCTFail("dsmrun did not exit within 5 s of SIGTERM\n\(run.child.stderr)")
        }
        XCTAssertEqual(run.child.termination, .exited(128 + SIGTERM), run.child.stderr)
        for (id, pid) in run.nodes where ProcessScan.isAlive(pid) {
            XCTFail("node \(id) (pid \(pid)) is still alive after dsmrun exited")
            kill(pid, SIGKILL)
        }
        try Runner.checkClean(marker: run.marker, pgid: run.child.pid, before: run.before, base: run.base,
                              context: "--- stderr ---\n\(run.child.stderr)")
    }

    // MARK: Too few descriptors

    /// `ulimit -n 32` cannot hold a run of 40 nodes: dsmrun says which limit
    /// to raise, at once, and starts nothing.
    func testTooLowADescriptorLimitIsNamed() throws {
        let dsmrun = try Paths.requireDSMRun()
        let r = try Runner.launch(["/bin/sh", "-c", "ulimit -n 32 && exec \"$0\" -n 40 --spmd /bin/true", dsmrun.path],
                                  label: "nofile", timeout: 30).result
        XCTAssertEqual(r.termination, .exited(1), r.summary)
        XCTAssertLessThan(r.elapsed, 2, r.summary)
        XCTAssertTrue(r.stderr.contains("ulimit -n") && r.stderr.contains("32"), "the limit is not named:\n\(r.summary)")
    }

    // MARK: Start-up

    /// In SPMD mode a node joins at its first DSM call, as late as the
    /// program makes it: the others wait for it as long as it runs (here 3 s
    /// with a 1 s peer timeout; the launcher's heartbeats keep them waiting).
    func testALateFirstCallIsWaitedFor() throws {
        let dsmrun = try Paths.requireDSMRun()
        let r = try Runner.dsmCommand(dsmrun: dsmrun.path,
                                      arguments: ["-n", "2", "--spmd", "--peer-timeout", "1", try Programs.path("late_join"), "sleep", "3"],
                                      label: "late-join", timeout: 60).result
        XCTAssertEqual(r.termination, .exited(0), r.summary)
        XCTAssertEqual(r.stdout.components(separatedBy: " ok\n").count - 1, 2, r.summary)
    }

    /// A node stopped before it joins is named after the peer timeout, not
    /// waited for without end.
    func testANodeStoppedBeforeJoiningIsNamed() throws {
        let dsmrun = try Paths.requireDSMRun()
        let r = try Runner.dsmCommand(dsmrun: dsmrun.path,
                                      arguments: ["-n", "2", "--spmd", "--peer-timeout", "2", try Programs.path("late_join"), "stop"],
                                      label: "stopped-join", timeout: 60).result
        XCTAssertEqual(r.termination, .exited(251), r.summary)
        XCTAssertLessThan(r.elapsed, 10, r.summary)
        XCTAssertTrue(r.stderr.contains("node 1") && r.stderr.contains("stopped"), r.summary)
    }

    // MARK: Nodes that never join

    /// dash leaves through _exit, so a node running `sh -c 'exit 0'` never
    /// joins the run. When every node does that the run is fine (status 0,
    /// as natively); when another node joined and waits for it, dsmrun must
    /// say so within seconds, not wait out the 60 s rendezvous.
    func testANodeLeavingWithoutJoiningIsNamedNotWaitedFor() throws {
        let dsmrun = try Paths.requireDSMRun()
        let quiet = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", "/bin/sh", "-c", "echo hi"],
                                          label: "unjoined-all", timeout: 30).result
        XCTAssertEqual(quiet.termination, .exited(0), quiet.summary)
        XCTAssertEqual(quiet.stdout.components(separatedBy: "hi").count - 1, 2, quiet.summary)

        // Node 0 joins in /bin/true's exit(); node 1 leaves through _exit.
        let mixed = try Runner.dsmCommand(
            dsmrun: dsmrun.path,
            arguments: ["-n", "2", "--spmd", "/bin/sh", "-c", "[ $DSM_NODE_ID = 0 ] && exec /bin/true; exit 0"],
            label: "unjoined-one", timeout: 30).result
        XCTAssertEqual(mixed.termination, .exited(1), mixed.summary)
        XCTAssertLessThan(mixed.elapsed, 10, "dsmrun waited \(mixed.elapsed) s for a node that had left")
        XCTAssertTrue(mixed.stderr.contains("node 1") && mixed.stderr.contains("without joining"), mixed.summary)
    }

    // MARK: Signals sent to the job

    /// Starts `dsmrun arguments`, waits until stdout has `readyLines` lines
    /// `ready` (or, with 0, until `processes` processes carry the run's
    /// marker), sends `signal` to dsmrun and waits for it (10 s at most).
    private func runSignalled(_ arguments: [String], readyLines: Int, processes: Int = 0, signal: Int32,
                              label: String) throws -> (child: Child, marker: String) {
        let dsmrun = try Paths.requireDSMRun()
        let token = UUID().uuidString
        let marker = "DSM_TEST_RUN=\(token)"
        let child = try Child(executable: dsmrun.path, arguments: arguments,
                              environment: childEnvironment(["DSM_TEST_RUN": token]), dir: Paths.newRunDir(label), label: "dsmrun")
        let deadline = Monotonic.now + 20
        while true {
            if child.poll() { throw HarnessError("dsmrun ended before it was signalled: \(child.termination!)\n\(child.stderr)") }
            let ready = child.stdout.components(separatedBy: "\n").filter { $0 == "ready" }.count
            let up = ProcessScan.processes(withMarker: marker).count
            if ready >= readyLines && up >= processes { break }
            if Monotonic.now > deadline {
                child.killGroup()
                ProcessScan.killAll(marker: marker)
                throw HarnessError("the run did not come up within 20 s (\(ready) ready lines, \(up) processes)\n\(child.stderr)")
            }
            usleep(20_000)
        }
        XCTAssertEqual(kill(child.pid, signal), 0)
        if !child.wait(until: Monotonic.now + 10) {
            child.killGroup()
            ProcessScan.killAll(marker: marker)
            XCTFail("dsmrun did not end within 10 s of signal \(signal)\n\(child.stderr)")
        }
        return (child, marker)
    }

    /// SPMD: each node is one of the program's processes; every one gets the
    /// signal, as from mpirun, and handles it; the run's status is theirs (0).
    func testSignalsReachEveryNodeOfAnSPMDRunAndItsStatusIsThePrograms() throws {
        for signal in [SIGINT, SIGUSR1, SIGQUIT] {
            let (child, marker) = try runSignalled(["-n", "2", "--spmd", try Programs.path("signals")], readyLines: 2,
                                                   signal: signal, label: "signal-spmd")
            defer { ProcessScan.killAll(marker: marker) }
            XCTAssertEqual(child.termination, .exited(0), "signal \(signal): \(child.stderr)")
            XCTAssertEqual(child.stdout.components(separatedBy: "handled \(signal) calls 1\n").count - 1, 2,
                           "signal \(signal): each node's handler runs once\n\(child.stdout)")
            XCTAssertFalse(child.stderr.contains("Backtrace") || child.stderr.contains("Crash"), child.stderr)
        }
    }

    /// Image mode: the nodes are one process; the signal reaches it once
    /// (node 0, where main runs), its handler runs once, and the program's
    /// exit is the run's.
    func testASignalReachesAnImageOnceAndItsStatusIsTheProgramsOwn() throws {
        for signal in [SIGINT, SIGTERM, SIGUSR2] {
            let (child, marker) = try runSignalled(["-n", "2", try Programs.path("signals")], readyLines: 1,
                                                   signal: signal, label: "signal-image")
            defer { ProcessScan.killAll(marker: marker) }
            XCTAssertEqual(child.termination, .exited(0), "signal \(signal): \(child.stderr)")
            XCTAssertEqual(child.stdout.components(separatedBy: "handled \(signal) calls 1\n").count - 1, 1, child.stdout)
            XCTAssertFalse(child.stderr.contains("killed by signal"), child.stderr)
        }
    }

    /// A signal the program leaves at its default ends the run with 128 +
    /// the signal, as the shell reports natively, and nothing is left.
    /// Signals that mean a crash when the kernel raises them (SIGSEGV,
    /// SIGABRT) are passed on the same way when someone sends them, without
    /// a crash report from dsmrun itself.
    func testAnUnhandledSignalEndsTheRunWithItsStatus() throws {
        for signal in [SIGINT, SIGSEGV, SIGABRT] {
            let (child, marker) = try runSignalled(["-n", "2", "/bin/sleep", "30"], readyLines: 0, processes: 3,
                                                   signal: signal, label: "signal-default")
            XCTAssertEqual(child.termination, .exited(128 + signal), child.stderr)
            XCTAssertFalse(child.stderr.contains("Backtrac") || child.stderr.contains("Crash"), "signal \(signal):\n\(child.stderr)")
            usleep(200_000)
            XCTAssertEqual(ProcessScan.processes(withMarker: marker), [], "processes left after the run")
            ProcessScan.killAll(marker: marker)
        }
    }

    /// SIGKILL to dsmrun cannot be passed on: the nodes die with it all the
    /// same, including SPMD nodes that have made no DSM call yet.
    func testNodesDieWithAKilledLauncherBeforeTheyJoin() throws {
        let (child, marker) = try runSignalled(["-n", "2", "--spmd", "/bin/sleep", "60"], readyLines: 0, processes: 3,
                                               signal: SIGKILL, label: "launcher-killed")
        XCTAssertEqual(child.termination, .signaled(SIGKILL))
        let deadline = Monotonic.now + 3
        while !ProcessScan.processes(withMarker: marker).isEmpty && Monotonic.now < deadline { usleep(20_000) }
        XCTAssertEqual(ProcessScan.processes(withMarker: marker), [], "nodes outlived the launcher by 3 s")
        ProcessScan.killAll(marker: marker)
    }
}
