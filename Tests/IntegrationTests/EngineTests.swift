// dsmrun under the engines clusters already run: Slurm (srun --mpi=pmix,
// salloc) and Open MPI (mpirun), across 2 of the namespace hosts. Each task
// is one node; the nodes find each other through the engine's PMIx server.
//
// They need Debian's slurm-wlm (22.05, with its PMIx plugin), openmpi-bin
// and libpmix2 (.ci/run installs them); without them they fail and say so.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// A Slurm cluster on test hosts 1 and 2, made once per test process.
enum TestSlurm {
    static let hosts = 2
    static let directory = "/tmp/dsm-slurm-\(getpid())"
    static var script: String { Paths.root.appendingPathComponent("Tests/Hosts/slurm").path }
    static var environment: [String: String] { ["SLURM_CONF": "\(directory)/slurm.conf"] }

    private static let once = SetUpOnce(make)

    static func require() throws {
        try TestBed.require()
        try once.require()
    }

    private static func make() throws {
        for tool in ["slurmctld", "slurmd", "srun", "salloc"] where Engines.find(tool) == nil {
            throw HarnessError("\(tool) not found: the Slurm tests need Debian's slurm-wlm (apt-get install slurm-wlm)")
        }
        try runSetUp(script, ["up", directory, TestBed.name, String(hosts), TestBed.subnet],
                     what: "cannot start the test Slurm cluster", label: "slurm-up")
        atexit {
            _ = try? runCommand(TestSlurm.script, ["down", TestSlurm.directory], environment: childEnvironment(TestSlurm.environment),
                                timeout: 30, label: "slurm-down")
        }
    }
}

enum Engines {
    static func find(_ tool: String) -> String? {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] where access("\(directory)/\(tool)", X_OK) == 0 {
            return "\(directory)/\(tool)"
        }
        return nil
    }

    static func require(_ tool: String, package: String) throws -> String {
        guard let path = find(tool) else { throw HarnessError("\(tool) not found: this test needs \(package) (apt-get install \(package))") }
        return path
    }
}

final class EngineTests: XCTestCase {
    private var dsmrun: String { get throws { try Paths.requireDSMRun().path } }
    private var iface: [String] { ["--iface", TestBed.network] }

    // MARK: Slurm

    /// `srun --mpi=pmix -N 2 -n 2 dsmrun --spmd mgs`: one node a task, on 2 hosts.
    func testSrunRunsOneNodePerTask() throws {
        try TestSlurm.require()
        let srun = try Engines.require("srun", package: "slurm-wlm")
        try TestBed.expectNativeHash("mgs", nodes: 2, image: false,
                                     command: [srun, "--mpi=pmix", "-N", "2", "-n", "2", try dsmrun] + iface + ["--spmd", try Programs.path("mgs")],
                                     environment: TestSlurm.environment)
    }

    /// Image mode under srun: main on rank 0's host, threads on both.
    func testSrunImageMode() throws {
        try TestSlurm.require()
        let srun = try Engines.require("srun", package: "slurm-wlm")
        try TestBed.expectNativeHash("img_matmul", nodes: 2, image: true,
                                     command: [srun, "--mpi=pmix", "-N", "2", "-n", "2", try dsmrun] + iface + [try Programs.path("img_matmul")],
                                     environment: TestSlurm.environment)
    }

    /// `salloc -N 2 -n 4 dsmrun ...`: inside the allocation dsmrun places its
    /// nodes on the allocation's hosts through srun.
    func testSallocPlacesNodesOnTheAllocation() throws {
        try TestSlurm.require()
        let salloc = try Engines.require("salloc", package: "slurm-wlm")
        try TestBed.expectNativeHash("mgs", nodes: 4, image: false,
                                     command: [salloc, "-Q", "-N", "2", "-n", "4", try dsmrun] + iface + ["--spmd", try Programs.path("mgs")],
                                     environment: TestSlurm.environment)
    }

    /// A program's exit status on rank 1 reaches srun.
    func testSrunReportsTheExitStatus() throws {
        try TestSlurm.require()
        let srun = try Engines.require("srun", package: "slurm-wlm")
        let run = try Runner.launch([srun, "--mpi=pmix", "-N", "2", "-n", "2", try dsmrun] + iface
                                    + ["--spmd", "/bin/sh", "-c", "echo rank-$DSM_NODE_ID-on-$(hostname); [ $DSM_NODE_ID = 1 ] && { \(TestBed.shellPause) exit 3; }; exit 0"],
                                    label: "srun-exit", timeout: 60, environment: TestSlurm.environment)
        XCTAssertEqual(run.result.termination, .exited(3), run.summary)
        XCTAssertTrue(run.output.contains("rank-0-on-\(TestBed.host(1))"), run.summary)
        XCTAssertTrue(run.output.contains("rank-1-on-\(TestBed.host(2))"), run.summary)
        try TestBed.checkHostsEmpty(run.summary)
    }

    /// -n that disagrees with the job is refused with a clear message.
    func testSrunRejectsAnotherNodeCount() throws {
        try TestSlurm.require()
        let srun = try Engines.require("srun", package: "slurm-wlm")
        let run = try Runner.launch([srun, "--mpi=pmix", "-N", "2", "-n", "2", try dsmrun, "-n", "3"] + iface
                                    + ["--spmd", try Programs.path("mgs"), "64"],
                                    label: "srun-bad-n", timeout: 60, environment: TestSlurm.environment)
        XCTAssertNotEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertTrue(run.result.stderr.contains("-n 3, but the job that started dsmrun has 2 tasks"), run.summary)
        try TestBed.checkHostsEmpty(run.summary)
    }

    // MARK: Open MPI

    /// `mpirun -np 2 --host a,b dsmrun --spmd matmul`, Open MPI starting its
    /// daemons through the test hosts' remote shell.
    func testMpirunRunsOneNodePerRank() throws {
        try TestBed.require()
        let mpirun = try Engines.require("mpirun", package: "openmpi-bin")
        let rsh = Paths.root.appendingPathComponent("Tests/Hosts/rsh").path
        try TestBed.expectNativeHash("matmul", nodes: 2, image: false,
                                     command: [mpirun, "-np", "2", "--host", "\(TestBed.address(1)),\(TestBed.address(2))",
                                               "--mca", "plm_rsh_agent", rsh, "--mca", "plm_rsh_no_tree_spawn", "1",
                                               "--mca", "oob_tcp_if_include", TestBed.network,
                                               try dsmrun] + iface + ["--spmd", try Programs.path("matmul")],
                                     environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                                                   "DSM_TESTBED_SHARED_PID": "1"])
    }
}
