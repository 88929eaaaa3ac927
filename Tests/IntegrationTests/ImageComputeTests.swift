// Image mode compute programs: img_mgs and img_matmul, plain pthreads
// programs (heap matrices, bss results, arguments in main's stack, results
// through pthread_join), and programs written with globals side by side:
// img_mgs_counter (a mutex-protected progress counter among them),
// img_workqueue (a mutex-protected next-row index, rows sharing pages) and
// img_jacobi (a mutex-protected largest change, two barriers a step), run once as a plain process (the reference) and
// under `dsmrun -n N` (main on node 0, threads spread over the nodes). The
// hash of the result must be the same: every element sees the same
// floating-point operations in the same order whatever the placement.
//
// The size is min(DSM_TEST_SIZE, 256) by default, to keep the suite fast;
// DSM_TEST_SIZE, when set, is used as is (img_matmul accepts up to 1024,
// img_mgs up to 4096). These tests need `.build/release/dsmrun`.

import Foundation
import XCTest

final class ImageComputeTests: XCTestCase {
    func testMGSNodes1() throws { try checkSameHash("img_mgs", nodes: 1) }
    func testMGSNodes2() throws { try checkSameHash("img_mgs", nodes: 2) }
    func testMGSNodes4() throws { try checkSameHash("img_mgs", nodes: 4) }
    func testMatmulNodes1() throws { try checkSameHash("img_matmul", nodes: 1) }
    func testMatmulNodes2() throws { try checkSameHash("img_matmul", nodes: 2) }
    func testMatmulNodes4() throws { try checkSameHash("img_matmul", nodes: 4) }
    func testMGSCounterNodes2() throws { try checkSameHash("img_mgs_counter", nodes: 2) }
    func testMGSCounterNodes4() throws { try checkSameHash("img_mgs_counter", nodes: 4) }
    func testWorkQueueNodes2() throws { try checkSameHash("img_workqueue", nodes: 2) }
    func testWorkQueueNodes4() throws { try checkSameHash("img_workqueue", nodes: 4) }
    func testJacobiNodes2() throws { try checkSameHash("img_jacobi", nodes: 2) }
    func testJacobiNodes4() throws { try checkSameHash("img_jacobi", nodes: 4) }

    // Release consistency (--consistency release): the same programs, the
    // same hashes; rows and columns of different nodes share pages.
    private static let release = ["--consistency", "release"]
    func testMGSReleaseNodes2() throws { try checkSameHash("img_mgs", nodes: 2, extra: Self.release) }
    func testMatmulReleaseNodes2() throws { try checkSameHash("img_matmul", nodes: 2, extra: Self.release) }
    func testMGSCounterReleaseNodes2() throws { try checkSameHash("img_mgs_counter", nodes: 2, extra: Self.release) }
    func testWorkQueueReleaseNodes2() throws { try checkSameHash("img_workqueue", nodes: 2, extra: Self.release) }
    func testWorkQueueReleaseNodes4() throws { try checkSameHash("img_workqueue", nodes: 4, extra: Self.release) }
    func testJacobiReleaseNodes2() throws { try checkSameHash("img_jacobi", nodes: 2, extra: Self.release) }
    func testJacobiReleaseNodes4() throws { try checkSameHash("img_jacobi", nodes: 4, extra: Self.release) }

    /// Threads of the programs (placed round-robin over the nodes).
    private static let threads = 4

    /// The matrix size: DSM_TEST_SIZE when set, else min(Config.size, 256).
    private static var size: Int {
        if ProcessInfo.processInfo.environment["DSM_TEST_SIZE"] != nil { return Config.size }
        return min(Config.size, 256)
    }

    /// `program size 4` under `dsmrun -n N` prints the same `hash=` as the
    /// plain run.
    private func checkSameHash(_ program: String, nodes n: Int, extra: [String] = []) throws {
        _ = try Paths.requireDSMRun()
        let size = Self.size
        let timeout = Config.computeTimeout(n: size)
        let args = [String(size), String(Self.threads)]
        let prefix = "\(program) n="

        let plain = try Runner.plain(program, args: args, timeout: timeout)
        guard plain.termination == .exited(0) else {
            return XCTFail("plain reference run `\(program) \(args.joined(separator: " "))` failed:\n\(plain.summary)")
        }
        let want = try XCTUnwrap(
            Output.hash(in: plain.stdout, line: prefix),
            "no `\(prefix)... hash=` line in the plain run's output:\n\(plain.summary)")

        let image = try Runner.image(program, nodes: n, args: args, timeout: timeout, extra: extra)
        guard image.result.termination == .exited(0) else {
            return XCTFail(
                "`dsmrun -n \(n) \(program) \(args.joined(separator: " "))` failed:\n\(image.summary)\n"
                    + "--- plain reference run ---\n\(plain.summary)")
        }
        let got = try XCTUnwrap(
            Output.hash(in: image.output, line: prefix),
            "no `\(prefix)... hash=` line in dsmrun's output:\n\(image.summary)")
        XCTAssertEqual(
            got, want,
            "\(program) n=\(size) threads=\(Self.threads) with \(n) nodes: dsmrun hash differs from the plain run\n"
                + "--- dsmrun ---\n\(image.summary)\n--- plain ---\n\(plain.summary)")
        XCTAssertEqual(Output.field("n", in: image.output, line: prefix), String(size), image.summary)
        XCTAssertEqual(
            Output.field("threads", in: image.output, line: prefix), String(Self.threads), image.summary)
        let plainTime = Output.field("time", in: plain.stdout, line: prefix) ?? "?"
        let dsmTime = Output.field("time", in: image.output, line: prefix) ?? "?"
        print(
            "\(program) n=\(size) threads=\(Self.threads) nodes=\(n) \(extra.joined(separator: " ")) hash=\(got) plain time=\(plainTime) dsm time=\(dsmTime)"
        )
    }
}
