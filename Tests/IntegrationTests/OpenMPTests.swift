// OpenMP and futexes outside libc in image mode. libgomp issues futex(2)
// with its own `syscall` instructions and keeps the locks of unnamed
// criticals and atomics in its own data: these programs hung (passive
// waits across nodes) or lost updates (an unnamed critical) before the
// futex filter and the shared library data. Each runs as a plain process
// (it must pass natively) and under dsmrun with each wait policy, with as
// many threads as nodes and with more.
//
// These tests need `.build/release/dsmrun` (`swift build -c release`).

import Foundation
import XCTest

final class OpenMPTests: XCTestCase {
    static let timeout = 120.0

    // MARK: futex_inline: the program's own syscall instruction

    func testFutexInlinePlain() throws {
        let run = try Runner.plain("futex_inline", timeout: Self.timeout)
        try passed(run.termination, run.stdout, line: "futex_inline failures=", summary: run.summary, what: "plain futex_inline")
    }

    func testFutexInlineNodes1() throws { try futexInline(nodes: 1) }
    func testFutexInlineNodes2() throws { try futexInline(nodes: 2) }
    func testFutexInlineNodes4() throws { try futexInline(nodes: 4) }

    private func futexInline(nodes n: Int) throws {
        let run = try Runner.image("futex_inline", nodes: n, timeout: Self.timeout)
        try passed(run.result.termination, run.output, line: "futex_inline failures=", summary: run.summary,
                   what: "dsmrun -n \(n) futex_inline")
        if let line = run.output.split(separator: "\n").first(where: { $0.contains("wake_ns") }) { print("n=\(n) \(line)") }
    }

    // MARK: omp_constructs under every wait policy

    func testConstructsPlain() throws {
        for policy in ["passive", "active"] {
            let run = try Runner.plain("omp_constructs", args: ["2", "150"], timeout: Self.timeout,
                                       environment: ["OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": policy])
            try passed(run.termination, run.stdout, line: "omp_constructs threads=", summary: run.summary,
                       what: "plain omp_constructs, \(policy)")
        }
    }

    func testConstructsNodes1Passive() throws { try constructs(nodes: 1, threads: 3, policy: "passive") }
    func testConstructsNodes2Passive() throws { try constructs(nodes: 2, threads: 2, policy: "passive") }
    func testConstructsNodes2Active() throws { try constructs(nodes: 2, threads: 2, policy: "active") }
    /// More threads than nodes, libgomp's own default wait (spin 300,000
    /// times, then sleep), which dsmrun replaces unless asked.
    func testConstructsNodes2SpinThenSleep() throws {
        try constructs(nodes: 2, threads: 3, policy: nil, extra: ["GOMP_SPINCOUNT": "300000"], expectPolicy: "unset")
    }
    /// With no choice made, dsmrun asks for passive waits on several nodes,
    /// not on one.
    func testConstructsDefaultPolicy() throws {
        try constructs(nodes: 2, threads: 3, policy: nil, expectPolicy: "passive")
        try constructs(nodes: 1, threads: 2, policy: nil, expectPolicy: "unset")
    }
    func testConstructsNodes4Passive() throws { try constructs(nodes: 4, threads: 4, policy: "passive") }
    func testConstructsNodes4Active() throws { try constructs(nodes: 4, threads: 5, policy: "active") }

    private func constructs(nodes n: Int, threads: Int, policy: String?, extra: [String: String] = [:],
                            expectPolicy: String? = nil) throws {
        var environment = extra.merging(["OMP_NUM_THREADS": String(threads)]) { $1 }
        if let policy { environment["OMP_WAIT_POLICY"] = policy }
        let run = try Runner.image("omp_constructs", nodes: n, args: ["2", "150"], timeout: Self.timeout,
                                   environment: environment)
        let what = "OMP_NUM_THREADS=\(threads) OMP_WAIT_POLICY=\(policy ?? "(default)") dsmrun -n \(n) omp_constructs"
        try passed(run.result.termination, run.output, line: "omp_constructs threads=", summary: run.summary, what: what)
        XCTAssertEqual(Output.field("threads", in: run.output, line: "omp_constructs threads="), String(threads), run.summary)
        XCTAssertEqual(Output.field("wait_policy", in: run.output, line: "omp_constructs threads="),
                       expectPolicy ?? policy, run.summary)
        print("\(what): \(String(format: "%.2f", run.result.elapsed)) s")
    }

    private func passed(_ termination: Termination, _ stdout: String, line: String, summary: String, what: String) throws {
        XCTAssertEqual(termination, .exited(0), "\(what) failed:\n\(summary)")
        XCTAssertEqual(Output.field("failures", in: stdout, line: line), "0",
                       "\(what): no `\(line)... failures=0` line:\n\(summary)")
        XCTAssertFalse(stdout.contains("FAIL"), "\(what) reported failures:\n\(summary)")
    }
}
