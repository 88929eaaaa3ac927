// When the runtime thread runs real-time: the decisions of DSMCore's
// RuntimeScheduling, without the system calls.

import DSMCore
import XCTest

final class RuntimeSchedulingTests: XCTestCase {
    private func adaptiveRealtime() -> RuntimeScheduling {
        var s = RuntimeScheduling()
        XCTAssertEqual(RuntimeScheduling.initial(wantRealtime: true), .becomeRealtime)
        s.changed(.becomeRealtime, took: true, adaptive: true)
        XCTAssertTrue(s.realtime)
        return s
    }

    func testSparseSynchronisationKeepsItRealtime() {
        var s = adaptiveRealtime()
        // 15 events in one window, then, once it has passed, one every
        // millisecond for a second (img_mgs_counter makes 1.6).
        var now: UInt64 = 1_000_000_000
        for _ in 0..<(RuntimeScheduling.denseEvents - 1) {
            XCTAssertEqual(s.syncEvent(now: now), .none)
            now += 1_000
        }
        now += RuntimeScheduling.window
        for _ in 0..<1000 {
            now += 1_000_000
            XCTAssertEqual(s.syncEvent(now: now), .none)
        }
        XCTAssertTrue(s.realtime)
        XCTAssertFalse(s.mayResume)
    }

    func testDenseSynchronisationTurnsItOrdinaryUntilQuiet() {
        var s = adaptiveRealtime()
        var now: UInt64 = 1_000_000_000
        var change = RuntimeScheduling.Change.none
        var events = 0
        while change == .none {
            change = s.syncEvent(now: now)
            events += 1
            now += 100_000  // 10 a millisecond
        }
        XCTAssertEqual(change, .becomeOrdinary)
        XCTAssertEqual(events, RuntimeScheduling.denseEvents)
        s.changed(change, took: true)
        XCTAssertFalse(s.realtime)
        XCTAssertTrue(s.mayResume)
        // Still dense: stays ordinary, and the quiet spell starts again.
        for _ in 0..<100 {
            XCTAssertEqual(s.syncEvent(now: now), .none)
            now += 100_000
        }
        XCTAssertEqual(s.idle(now: now + RuntimeScheduling.quietBeforeRealtime / 2), .none)
        XCTAssertEqual(s.idle(now: now + RuntimeScheduling.quietBeforeRealtime + 1), .becomeRealtime)
    }

    func testWithoutTheRightOrOutsideImageModeNothingAdapts() {
        var refused = RuntimeScheduling()
        refused.changed(.becomeRealtime, took: false, adaptive: true)
        XCTAssertFalse(refused.realtime)
        XCTAssertFalse(refused.mayResume, "a thread that never got real-time does not keep asking")
        var spmd = RuntimeScheduling()
        spmd.changed(.becomeRealtime, took: true, adaptive: false)
        for i in 0..<100 { XCTAssertEqual(spmd.syncEvent(now: UInt64(i) * 1_000), .none) }
        XCTAssertTrue(spmd.realtime)
        XCTAssertEqual(RuntimeScheduling.initial(wantRealtime: false), .none)
    }
}
