// --consistency release: nodes write one page side by side between
// synchronisations, and what was written before a release is seen after the
// matching acquire. img_release checks it with each kind of synchronisation
// a pthreads program uses (barrier, mutex, condition variable, semaphore,
// raw futex, join) and with false sharing in a global and a malloc'd array;
// the compute programs' hashes are checked in ImageComputeTests and
// DSMProgramTests. A program the model cannot serve (OpenMP: its
// synchronisation is atomics dsm does not see) is refused with a message.

import Foundation
import XCTest

final class ReleaseConsistencyTests: XCTestCase {
    private static var timeout: Double { Config.timeout(default: 120) }
    private let line = "img_release threads="

    func testReleasePlain() throws {
        let run = try Runner.plain("img_release", timeout: Self.timeout)
        check(run.termination, run.stdout, summary: run.summary, what: "plain img_release")
    }

    func testSequentialNodes2() throws { try image(nodes: 2, model: "sequential") }
    func testReleaseNodes2() throws { try image(nodes: 2, model: "release") }
    func testReleaseNodes4() throws { try image(nodes: 4, model: "release") }
    /// More threads than nodes: several threads of one node share its copies.
    func testReleaseNodes2SixThreads() throws { try image(nodes: 2, model: "release", args: ["6", "10"]) }

    /// The environment variable works as the flag does.
    func testReleaseFromEnvironment() throws {
        let run = try Runner.image("img_release", nodes: 2, timeout: Self.timeout, environment: ["DSM_CONSISTENCY": "release"])
        check(run.result.termination, run.output, summary: run.summary, what: "DSM_CONSISTENCY=release dsmrun -n 2 img_release")
    }

    /// A stencil whose rows each node writes alone: their pages' homes move
    /// to their writers (their writes stop travelling), the result stays.
    func testHomesMoveToTheirOnlyWriter() throws {
        let plain = try Runner.plain("img_jacobi", args: ["256", "2"], timeout: Self.timeout)
        let want = try XCTUnwrap(Output.hash(in: plain.stdout, line: "img_jacobi n="), plain.summary)
        let run = try Runner.image("img_jacobi", nodes: 2, args: ["256", "2"], timeout: Self.timeout,
                                   extra: ["--consistency", "release", "--stats=json"])
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertEqual(Output.hash(in: run.output, line: "img_jacobi n="), want, run.summary)
        let json = try XCTUnwrap(run.result.stderr.split(separator: "\n").first { $0.hasPrefix("dsm-stats ") }, run.summary)
        let report = try JSONSerialization.jsonObject(with: Data(json.dropFirst("dsm-stats ".count).utf8)) as? [String: Any]
        let nodes = try XCTUnwrap(report?["nodes"] as? [[String: Any]], run.summary)
        let moved = nodes.compactMap { ($0["release"] as? [String: Any])?["homesMoved"] as? Int }.reduce(0, +)
        XCTAssertGreaterThan(moved, 0, "no page's home moved:\n\(run.summary)")
        print("img_jacobi 256 -n 2 release: \(moved / 2) homes moved")
    }

    func testOpenMPIsRefused() throws {
        let run = try Runner.image("omp_constructs", nodes: 2, args: ["1", "0"], timeout: Self.timeout,
                                   extra: ["--consistency", "release"], environment: ["OMP_NUM_THREADS": "2"])
        XCTAssertNotEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertTrue(run.result.stderr.contains("--consistency release does not see OpenMP"), run.summary)
    }

    func testUnknownModelIsRefused() throws {
        let run = try Runner.image("img_release", nodes: 2, timeout: Self.timeout, extra: ["--consistency", "weak"])
        XCTAssertEqual(run.result.termination, .exited(64), run.summary)
        XCTAssertTrue(run.result.stderr.contains("--consistency must be sequential or release, got 'weak'"), run.summary)
    }

    private func image(nodes n: Int, model: String, args: [String] = []) throws {
        let run = try Runner.image("img_release", nodes: n, args: args, timeout: Self.timeout, extra: ["--consistency", model])
        check(run.result.termination, run.output, summary: run.summary,
              what: "dsmrun -n \(n) --consistency \(model) img_release \(args.joined(separator: " "))")
        print("img_release nodes=\(n) \(model) \(Output.field("time", in: run.output, line: line) ?? "?") s")
    }

    private func check(_ termination: Termination, _ stdout: String, summary: String, what: String) {
        XCTAssertEqual(termination, .exited(0), "\(what) failed:\n\(summary)")
        XCTAssertEqual(Output.field("failures", in: stdout, line: line), "0", "\(what): no `failures=0` line:\n\(summary)")
    }
}
