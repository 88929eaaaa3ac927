// The test programs themselves, run as N plain processes on the real kernel
// (no dsmrun): they must pass and remove every System V object they create.
// These are the reference behaviour the dsmrun tests compare against, and
// they separate a program bug from a runtime bug.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

final class NativeProgramTests: XCTestCase {
    private let nodeCounts = [1, 2, 4]

    func testProgramsCompile() throws {
        let dir = try Programs.binDir()
        for p in Programs.all {
            XCTAssertEqual(access(dir.appendingPathComponent(p).path, X_OK), 0, "\(p) was not built")
        }
    }

    /// MGS and matmul pass natively, and the hash does not depend on N.
    func testComputeProgramsNative() throws {
        let size = Config.size
        for program in ["mgs", "matmul"] {
            var hashes: [Int: String] = [:]
            for n in nodeCounts {
                let run = try Runner.native(program, nodes: n, args: [String(size)], timeout: Config.computeTimeout(n: size))
                XCTAssertTrue(run.allSucceeded, "\(program) natively with \(n) processes:\n\(run.summary)")
                hashes[n] = Output.hash(in: run.output, line: "\(program) n=")
                XCTAssertNotNil(hashes[n], "no hash line:\n\(run.summary)")
                XCTAssertNotNil(Output.field("time", in: run.output, line: "time="), "no time= line:\n\(run.summary)")
            }
            XCTAssertEqual(Set(hashes.values).count, 1, "\(program): the hash depends on N: \(hashes)")
        }
    }

    func testLitmusNative() throws { try checkNative("litmus", line: "litmus failures=") }
    func testSemBarrierNative() throws { try checkNative("sem_barrier", line: "sem_barrier ") }
    func testShmErrorsNative() throws { try checkNative("shm_errors", line: "shm_errors ") }
    func testSemErrorsNative() throws { try checkNative("sem_errors", line: "sem_errors ") }
    func testSyscallFaultNative() throws { try checkNative("syscall_fault", line: "syscall_fault ") }
    func testThreadsNative() throws { try checkNative("threads", line: "threads ") }
    func testSemEINTRNative() throws { try checkNative("sem_eintr", line: "sem_eintr ") }
    func testIPCInfoNative() throws { try checkNative("ipc_info", line: "ipc_info ") }

    /// Without the runtime the API reports node 0 of 1 even when the
    /// environment says otherwise.
    func testDSMAPINative() throws {
        for n in nodeCounts {
            let run = try Runner.native("dsm_api", nodes: n, timeout: 30)
            XCTAssertTrue(run.allSucceeded, run.summary)
            for node in run.nodes {
                XCTAssertTrue(node.stdout.contains("dsm_api node=0 nodes=1 runtime=no"), run.summary)
            }
        }
    }

    func testSleeperNative() throws {
        let run = try Runner.native("sleeper", nodes: 2, args: ["1"], timeout: 30)
        XCTAssertTrue(run.allSucceeded, run.summary)
        XCTAssertTrue(run.output.contains("sleeper node=0 ready"), run.summary)
        XCTAssertTrue(run.nodes[1].stdout.contains("sleeper node=1 ready"), run.summary)
    }

    private func checkNative(_ program: String, line: String) throws {
        for n in nodeCounts {
            let run = try Runner.native(program, nodes: n, timeout: 120)
            XCTAssertTrue(run.allSucceeded, "\(program) natively with \(n) processes:\n\(run.summary)")
            XCTAssertEqual(
                Output.field("failures", in: run.output, line: line), "0",
                "\(program) natively with \(n) processes:\n\(run.summary)")
            XCTAssertEqual(Output.field("nodes", in: run.output, line: line), String(n), run.summary)
        }
    }
}
