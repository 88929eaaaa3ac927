// The runtime's tunable settings (DSMCore's Tunables): each DSM_* variable
// is checked, and a malformed or out-of-range one is an error naming it;
// dsmrun checks them before any node starts (LauncherTests runs that).

import DSMCore
import XCTest

final class TunablesTests: XCTestCase {
    private func parse(_ values: [String: String]) throws(TunableError) -> Tunables {
        try Tunables { values[$0] }
    }

    func testDefaultsWhenNothingIsSet() throws {
        XCTAssertEqual(try parse([:]), Tunables())
        let t = Tunables()
        XCTAssertEqual(t.heapBytes, 1 << 40)
        XCTAssertEqual(t.readaheadPages, 128)
        XCTAssertEqual(t.holdNanoseconds, 50_000)
        XCTAssertNil(t.spinNanoseconds)
        XCTAssertTrue(t.buddyPrefetch && t.realtimeRuntime && t.adaptiveRealtime && t.migratoryPages)
        XCTAssertEqual(t.consistency, .sequential)
        XCTAssertFalse(t.traceLocks)
        XCTAssertEqual(t.peerTimeoutNanoseconds, 10_000_000_000)
    }

    func testEveryVariableIsRead() throws {
        let t = try parse([
            "DSM_HEAP_MB": "256", "DSM_PREFETCH": "0", "DSM_PREFETCH_BUDDY": "0", "DSM_MIGRATORY": "0", "DSM_CONSISTENCY": "release", "DSM_HOLD_US": "80", "DSM_SPIN_US": "0",
            "DSM_RUNTIME_FIFO": "0", "DSM_ADAPTIVE": "0", "DSM_TRACE_LOCKS": "1", "DSM_DELAY_US": "100",
            "DSM_PEER_TIMEOUT": "2.5",
        ])
        XCTAssertEqual(t.heapBytes, 256 << 20)
        XCTAssertEqual(t.readaheadPages, 0)
        XCTAssertFalse(t.buddyPrefetch)
        XCTAssertFalse(t.migratoryPages)
        XCTAssertEqual(t.consistency, .release)
        XCTAssertEqual(t.holdNanoseconds, 80_000)
        XCTAssertEqual(t.spinNanoseconds, 0)
        XCTAssertFalse(t.realtimeRuntime)
        XCTAssertFalse(t.adaptiveRealtime)
        XCTAssertTrue(t.traceLocks)
        XCTAssertEqual(t.delayNanoseconds, 100_000)
        XCTAssertEqual(t.peerTimeoutNanoseconds, 2_500_000_000)
        XCTAssertEqual(Tunables.variables.count, 12, "a new variable needs a line here and in README")
    }

    func testMalformedAndOutOfRangeValuesAreErrorsNamingTheVariable() {
        let bad: [(String, String)] = [
            ("DSM_HEAP_MB", "8"), ("DSM_HEAP_MB", "2097152"), ("DSM_HEAP_MB", "lots"), ("DSM_PREFETCH", "-1"),
            ("DSM_PREFETCH", "5000"), ("DSM_PREFETCH_BUDDY", "yes"), ("DSM_MIGRATORY", "2"), ("DSM_CONSISTENCY", "weak"), ("DSM_HOLD_US", "0"), ("DSM_HOLD_US", "1e3"),
            ("DSM_SPIN_US", "20000"), ("DSM_RUNTIME_FIFO", "2"), ("DSM_ADAPTIVE", ""), ("DSM_TRACE_LOCKS", "on"),
            ("DSM_DELAY_US", "2000000"), ("DSM_PEER_TIMEOUT", "0.1"), ("DSM_PEER_TIMEOUT", "soon"),
        ]
        for (name, value) in bad {
            XCTAssertThrowsError(try parse([name: value]), "\(name)=\(value) was accepted") { error in
                let e = error as? TunableError
                XCTAssertEqual(e?.name, name)
                XCTAssertTrue(e?.description.contains(name) ?? false, "\(String(describing: e))")
                XCTAssertTrue(e?.description.contains("'\(value)'") ?? false, "\(String(describing: e))")
            }
        }
    }

    /// The hold window cannot be turned off: two writers of one page would
    /// take it from each other forever.
    func testNoHoldIsRefused() {
        XCTAssertThrowsError(try parse(["DSM_HOLD_US": "0"]))
        XCTAssertNoThrow(try parse(["DSM_HOLD_US": "1"]))
    }

    func testADelayLongerThanATenthOfThePeerTimeoutIsRefused() {
        XCTAssertThrowsError(try parse(["DSM_DELAY_US": "300000", "DSM_PEER_TIMEOUT": "2"])) { error in
            XCTAssertTrue("\(error)".contains("tenth"), "\(error)")
        }
        XCTAssertNoThrow(try parse(["DSM_DELAY_US": "200000", "DSM_PEER_TIMEOUT": "2"]))
    }
}
