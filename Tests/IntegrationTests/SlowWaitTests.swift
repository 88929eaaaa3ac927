// Waits far longer than the runtime needs are said on stderr (half the peer
// timeout), so that a slow run is not mistaken for a hung one; the program
// goes on. The waits here are the program's own (a lock held for seconds,
// a barrier only main calls), with a 2 s peer timeout (1 s threshold).

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

final class SlowWaitTests: XCTestCase {
    /// A thread on node 1 holds a mutex for 2.5 s while main, on node 0,
    /// waits for it: node 0 says so once, and the program ends well.
    func testALongLockWaitIsSaid() throws {
        let run = try Runner.image("img_slow_wait", nodes: 2, args: ["2.5"], timeout: 60, extra: ["--peer-timeout", "2"])
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertEqual(Output.field("node", in: run.output, line: "img_slow_wait "), "1",
                       "the holder must run on node 1 for the wait to cross nodes:\n\(run.summary)")
        let notices = run.result.stderr.components(separatedBy: "\n").filter { $0.contains("has waited") && $0.contains("lock at 0x") }
        XCTAssertEqual(notices.count, 1, "one notice of the long lock wait expected:\n\(run.summary)")
    }

    /// dsm_barrier() called by main alone never returns (it needs one
    /// caller per node): the run says why within seconds instead of hanging
    /// silently. The test then stops it.
    func testALonelyBarrierIsSaid() throws {
        let dsmrun = try Paths.requireDSMRun()
        let child = try Child(executable: dsmrun.path,
                              arguments: ["-n", "2", "--peer-timeout", "2", try Programs.path("img_slow_wait"), "0.1", "barrier"],
                              environment: childEnvironment([:]), dir: Paths.newRunDir("lonely-barrier"), label: "dsmrun")
        defer { child.killGroup() }
        let deadline = Monotonic.now + 20
        while !child.stderr.contains("dsm_barrier") && !child.poll() && Monotonic.now < deadline { usleep(50_000) }
        XCTAssertTrue(child.stderr.contains("has waited") && child.stderr.contains("dsm_barrier"),
                      "no notice of the barrier wait within 20 s (ended: \(String(describing: child.termination)))\n\(child.stderr)")
        XCTAssertNil(child.termination, "the run ended instead of waiting in the barrier:\n\(child.stderr)")
    }
}
