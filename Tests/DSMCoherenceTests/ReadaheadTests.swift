@testable import DSMCoherence
import XCTest

/// The readahead detector alone: which pages it asks for after which misses.
final class ReadaheadTests: XCTestCase {
    let pages = 100_000
    let us: UInt64 = 1_000

    /// A read miss on an even page comes with its odd neighbour, as the
    /// runtime asks for it (`through` = the neighbour).
    func read(_ r: inout Readahead, _ page: Int, at time: UInt64) -> Range<Int> {
        r.miss(page, through: page | 1, write: false, now: time, pages: pages)
    }

    func testThreeQuickSequentialMissesOpenAWindowThatDoublesAsTheProgramCatchesUp() {
        var r = Readahead(maxWindow: 64)
        XCTAssertEqual(read(&r, 0, at: 10 * us), 0..<0)
        XCTAssertEqual(read(&r, 2, at: 40 * us), 0..<0)
        XCTAssertEqual(read(&r, 4, at: 70 * us), 6..<14, "third sequential miss: a first window of 8")
        // A fault on a page of that window still on its way asks for the next, twice as large.
        XCTAssertEqual(read(&r, 6, at: 80 * us), 14..<30)
        // More faults on pages of the older window ask for nothing new.
        XCTAssertEqual(r.miss(7, through: 7, write: false, now: 81 * us, pages: pages), 0..<0)
        XCTAssertEqual(read(&r, 12, at: 82 * us), 0..<0)
        // The program reaches the latest window: the next one, capped at 64.
        XCTAssertEqual(read(&r, 14, at: 90 * us), 30..<62)
        XCTAssertEqual(read(&r, 30, at: 95 * us), 62..<126)
        XCTAssertEqual(read(&r, 62, at: 99 * us), 126..<190)
    }

    func testOnceStreamingThePaceNoLongerMatters() {
        var r = Readahead(maxWindow: 64)
        _ = read(&r, 0, at: 0)
        _ = read(&r, 2, at: 10 * us)
        XCTAssertEqual(read(&r, 4, at: 20 * us), 6..<14)
        XCTAssertEqual(read(&r, 14, at: 20_000 * us), 16..<32,
                       "the program reached the window's end slowly: the stream goes on after the pages just asked for")
    }

    func testAFewMissesAComputePhaseApartAreNoStream() {
        // MGS on 8 nodes: a node misses the 7 columns after its own, a step apart.
        var r = Readahead(maxWindow: 64)
        for k in 0..<7 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * 600 * us), 0..<0)
        }
    }

    func testEightSequentialMissesAtAnyPaceAreAStream() {
        // matmul: a row of A (2 pages) per row of C, 350 us apart.
        var r = Readahead(maxWindow: 64)
        for k in 0..<7 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * 350 * us), 0..<0)
        }
        XCTAssertEqual(read(&r, 14, at: 7 * 350 * us), 16..<24)
        XCTAssertEqual(read(&r, 16, at: 8 * 350 * us), 24..<40)
    }

    func testStridedMissesAreNoStream() {
        // MGS on 2 nodes at n = 1024: a node misses every other 2-page column.
        var r = Readahead(maxWindow: 64)
        for k in 0..<10 {
            XCTAssertEqual(read(&r, 4 * k, at: UInt64(k) * us), 0..<0)
        }
    }

    func testInterleavedStreamsAreFollowedApart() {
        // matmul: a row of A at page 5000 read along with all of B from page 0.
        var r = Readahead(maxWindow: 64)
        var asked: [Range<Int>] = []
        var t: UInt64 = 0
        for k in 0..<3 {
            t += us
            asked.append(read(&r, 2 * k, at: t))
            t += us
            asked.append(read(&r, 5000 + 2 * k, at: t))
        }
        XCTAssertEqual(asked.filter { !$0.isEmpty }, [6..<14, 5006..<5014])
    }

    func testReadsAndWritesAreSeparateStreams() {
        var r = Readahead(maxWindow: 64)
        XCTAssertEqual(r.miss(0, through: 0, write: true, now: 1 * us, pages: pages), 0..<0)
        XCTAssertEqual(read(&r, 1, at: 2 * us), 0..<0, "a read is not the write stream's next page")
        XCTAssertEqual(r.miss(1, through: 1, write: true, now: 3 * us, pages: pages), 0..<0)
        XCTAssertEqual(r.miss(2, through: 2, write: true, now: 4 * us, pages: pages), 3..<11)
    }

    func testWindowsStopAtTheContainersEnd() {
        var r = Readahead(maxWindow: 64)
        _ = r.miss(0, through: 1, write: false, now: 1 * us, pages: 12)
        _ = r.miss(2, through: 3, write: false, now: 2 * us, pages: 12)
        XCTAssertEqual(r.miss(4, through: 5, write: false, now: 3 * us, pages: 12), 6..<12)
        XCTAssertEqual(r.miss(6, through: 7, write: false, now: 4 * us, pages: 12), 0..<0)
    }

    func testAZeroWindowTurnsReadaheadOff() {
        var r = Readahead(maxWindow: 0)
        for k in 0..<10 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * us), 0..<0)
        }
    }
}
