// The C programs of Tests/Programs under `dsmrun -n N --spmd`, compared with
// (or checked like) the native run as N plain processes on the real kernel.
// Each dsmrun run must also leave no kernel System V object and no process
// behind (Runner.dsm checks both).
//
// These tests need `.build/release/dsmrun` (`swift build -c release`); without
// it they fail at once with that message.

import Foundation
import XCTest

final class DSMProgramTests: XCTestCase {
    // MARK: MGS and matmul: bit-identical to the native run

    func testMGSNodes1() throws { try checkSameHash("mgs", nodes: 1) }
    func testMGSNodes2() throws { try checkSameHash("mgs", nodes: 2) }
    func testMGSNodes4() throws { try checkSameHash("mgs", nodes: 4) }
    /// MGS whose step barrier is a hand-written spin barrier on a shared word.
    func testMGSSpinBarrierNodes2() throws { try checkSameHash("mgs_spin", nodes: 2) }
    func testMGSSpinBarrierNodes4() throws { try checkSameHash("mgs_spin", nodes: 4) }
    /// MGS whose step barrier is a semaphore-locked counter in the segment.
    func testMGSCountedBarrierNodes2() throws { try checkSameHash("mgs_semcount", nodes: 2) }
    func testMGSCountedBarrierNodes4() throws { try checkSameHash("mgs_semcount", nodes: 4) }
    /// Release consistency: the semaphore barriers are its release and
    /// acquire points, and the columns of both nodes share pages.
    func testMGSCountedBarrierReleaseNodes2() throws {
        try checkSameHash("mgs_semcount", nodes: 2, extra: ["--consistency", "release"])
    }
    func testMatmulReleaseNodes4() throws { try checkSameHash("matmul", nodes: 4, extra: ["--consistency", "release"]) }
    func testMatmulNodes1() throws { try checkSameHash("matmul", nodes: 1) }
    func testMatmulNodes2() throws { try checkSameHash("matmul", nodes: 2) }
    func testMatmulNodes4() throws { try checkSameHash("matmul", nodes: 4) }

    /// The `hash=` line of `program n` under dsmrun equals the native
    /// N-process run's.
    private func checkSameHash(_ program: String, nodes n: Int, extra: [String] = []) throws {
        _ = try Paths.requireDSMRun()
        let size = Config.size
        let timeout = Config.computeTimeout(n: size)
        let args = [String(size)]
        let native = try Runner.native(program, nodes: n, args: args, timeout: timeout)
        XCTAssertTrue(native.allSucceeded, "native reference run failed:\n\(native.summary)")
        let want = try XCTUnwrap(
            Output.hash(in: native.output, line: "\(program) n="),
            "no `\(program) n=... hash=` line in the native output:\n\(native.summary)")

        let dsm = try Runner.dsm(program, nodes: n, args: args, timeout: timeout, extra: extra)
        guard dsm.result.termination == .exited(0) else {
            return XCTFail("`dsmrun -n \(n) --spmd \(program) \(size)` failed:\n\(dsm.summary)")
        }
        let got = try XCTUnwrap(
            Output.hash(in: dsm.output, line: "\(program) n="),
            "no `\(program) n=... hash=` line in dsmrun's output:\n\(dsm.summary)")
        XCTAssertEqual(
            got, want, "\(program) n=\(size) with \(n) nodes: dsmrun hash differs from the native run\n\(dsm.summary)")
        XCTAssertEqual(Output.field("nodes", in: dsm.output, line: "\(program) n="), String(n), dsm.summary)
        let nativeTime = Output.field("time", in: native.output, line: "time=") ?? "?"
        let dsmTime = Output.field("time", in: dsm.output, line: "time=") ?? "?"
        print("\(program) n=\(size) nodes=\(n) hash=\(got) native time=\(nativeTime) dsm time=\(dsmTime)")
    }

    /// The program runs under a shell that forks it and goes on: the shell
    /// never joins (no DSM call), the program does, and the shell's exit
    /// after it does not disturb the run.
    func testProgramStartedThroughAShell() throws {
        let mgs = try Programs.path("mgs")
        let dsmrun = try Paths.requireDSMRun()
        let native = try Runner.native("mgs", nodes: 2, args: ["64"], timeout: Config.timeout(default: 60))
        let want = try XCTUnwrap(Output.hash(in: native.output, line: "mgs n="), native.summary)
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", "/bin/sh", "-c", "'\(mgs)' 64; echo shell-after-$DSM_NODE_ID"],
            label: "through-shell", timeout: Config.timeout(default: 60))
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertEqual(Output.hash(in: run.output, line: "mgs n="), want, run.summary)
        XCTAssertTrue(run.output.contains("shell-after-0") && run.output.contains("shell-after-1"), run.summary)
    }

    // MARK: Memory model and synchronisation

    func testLitmusNodes2() throws { try checkFailuresZero("litmus", nodes: 2, line: "litmus failures=") }
    func testLitmusNodes4() throws { try checkFailuresZero("litmus", nodes: 4, line: "litmus failures=") }
    func testSemBarrierNodes2() throws { try checkFailuresZero("sem_barrier", nodes: 2, line: "sem_barrier ") }
    func testSemBarrierNodes4() throws { try checkFailuresZero("sem_barrier", nodes: 4, line: "sem_barrier ") }

    /// Several threads per node fault on the same pages at once.
    func testThreadsNodes2() throws { try checkFailuresZero("threads", nodes: 2, line: "threads ") }
    func testThreadsNodes4() throws { try checkFailuresZero("threads", nodes: 4, line: "threads ") }

    // MARK: System V semantics

    func testShmErrorsNodes1() throws { try checkFailuresZero("shm_errors", nodes: 1, line: "shm_errors ") }
    func testShmErrorsNodes2() throws { try checkFailuresZero("shm_errors", nodes: 2, line: "shm_errors ") }
    func testSemErrorsNodes1() throws { try checkFailuresZero("sem_errors", nodes: 1, line: "sem_errors ") }
    func testSemErrorsNodes2() throws { try checkFailuresZero("sem_errors", nodes: 2, line: "sem_errors ") }
    /// IPC_INFO, SHM_INFO and SEM_INFO fill the caller's buffer.
    func testIPCInfoNodes2() throws { try checkFailuresZero("ipc_info", nodes: 2, line: "ipc_info ") }
    /// A signal handler interrupts a blocked semop with EINTR, on node 0 and remotely.
    func testSemEINTRNodes1() throws { try checkFailuresZero("sem_eintr", nodes: 1, line: "sem_eintr ") }
    func testSemEINTRNodes3() throws { try checkFailuresZero("sem_eintr", nodes: 3, line: "sem_eintr ") }

    // MARK: Kernel-mode and libc accesses to segment pages

    func testSyscallFaultNodes1() throws { try checkFailuresZero("syscall_fault", nodes: 1, line: "syscall_fault ") }
    func testSyscallFaultNodes2() throws { try checkFailuresZero("syscall_fault", nodes: 2, line: "syscall_fault ") }

    // MARK: Bad pointers: EFAULT, as from the kernel

    /// The reference: the kernel's own System V calls, as 2 plain processes.
    func testBadPointersNative() throws {
        let native = try Runner.native("bad_pointers", nodes: 2, timeout: 60)
        XCTAssertTrue(native.allSucceeded, native.summary)
        XCTAssertEqual(Output.field("failures", in: native.output, line: "bad_pointers "), "0", native.summary)
    }
    func testBadPointersNodes1() throws { try checkFailuresZero("bad_pointers", nodes: 1, line: "bad_pointers ") }
    func testBadPointersNodes2() throws { try checkFailuresZero("bad_pointers", nodes: 2, line: "bad_pointers ") }

    // MARK: The runtime's descriptors are its own

    /// Closing every descriptor, close_range, dup2 onto 512..529, mid-run.
    func testDescriptorsNodes1() throws { try checkFailuresZero("descriptors", nodes: 1, line: "descriptors ") }
    func testDescriptorsNodes2() throws { try checkFailuresZero("descriptors", nodes: 2, line: "descriptors ") }

    /// Runs `program` under dsmrun; it must exit 0 and node 0 must report
    /// `failures=0` on its summary line.
    private func checkFailuresZero(_ program: String, nodes n: Int, line: String, args: [String] = []) throws {
        let dsm = try Runner.dsm(program, nodes: n, args: args, timeout: Config.timeout(default: 120))
        guard dsm.result.termination == .exited(0) else {
            return XCTFail("\(program) under dsmrun -n \(n) failed:\n\(dsm.summary)")
        }
        XCTAssertEqual(
            Output.field("failures", in: dsm.output, line: line), "0",
            "\(program) under dsmrun -n \(n): no `failures=0` on the `\(line)` line:\n\(dsm.summary)")
    }

    // MARK: No allocation on the fault path

    /// In steady state the runtime allocates nothing while pages move: on
    /// the requesting node, the owner and the homes (3 nodes), counted by
    /// the runtime's own malloc (every allocation it makes passes there).
    /// An allocation per message put in the fault path shows as thousands.
    func testNoAllocationOnTheFaultPath() throws {
        let dsm = try Runner.dsm("alloc_per_fault", nodes: 3, timeout: Config.timeout(default: 120))
        XCTAssertEqual(dsm.result.termination, .exited(0), dsm.summary)
        XCTAssertEqual(Output.field("faults", in: dsm.output, line: "alloc_per_fault node=1 "), "6000", dsm.summary)
        for node in 0..<3 {
            XCTAssertEqual(Output.field("allocations", in: dsm.output, line: "alloc_per_fault node=\(node) "), "0",
                           "node \(node) allocated on the fault path:\n\(dsm.summary)")
        }
    }

    // MARK: <dsm/dsm.h>

    func testDSMAPINodes1() throws { try checkDSMAPI(nodes: 1) }
    func testDSMAPINodes2() throws { try checkDSMAPI(nodes: 2) }

    private func checkDSMAPI(nodes n: Int) throws {
        let dsm = try Runner.dsm("dsm_api", nodes: n, timeout: Config.timeout(default: 60))
        guard dsm.result.termination == .exited(0) else {
            return XCTFail("dsm_api under dsmrun -n \(n) failed:\n\(dsm.summary)")
        }
        XCTAssertEqual(Output.field("node", in: dsm.output, line: "dsm_api "), "0", dsm.summary)
        XCTAssertEqual(Output.field("nodes", in: dsm.output, line: "dsm_api "), String(n), dsm.summary)
        XCTAssertEqual(
            Output.field("runtime", in: dsm.output, line: "dsm_api "), "yes",
            "dsm_rt_barrier not found with dlsym(RTLD_DEFAULT) under dsmrun:\n\(dsm.summary)")
    }

    /// A plain run (no runtime, no environment): node 0 of 1, barriers
    /// return 0.
    func testDSMAPIPlainRun() throws {
        let exe = try Programs.path("dsm_api")
        let r = try runCommand(exe, [], environment: childEnvironment([:]), timeout: 30, label: "dsm_api-plain")
        XCTAssertEqual(r.termination, .exited(0), r.summary)
        XCTAssertTrue(r.stdout.contains("dsm_api node=0 nodes=1 runtime=no"), r.summary)
    }
}
