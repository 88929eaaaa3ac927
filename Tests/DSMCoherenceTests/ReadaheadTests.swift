@testable import DSMCoherence
import XCTest

extension Readahead.Window {
    /// Every page of the window, in order.
    var pages: [Int] {
        var all: [Int] = []
        forEachPage { all.append($0) }
        return all
    }
}

/// The readahead detector alone: which pages it asks for after which misses.
final class ReadaheadTests: XCTestCase {
    let pages = 100_000
    let us: UInt64 = 1_000

    /// A read miss on an even page comes with its odd neighbour, as the
    /// runtime asks for it (`through` = the neighbour).
    func read(_ r: inout Readahead, _ page: Int, at time: UInt64) -> [Int] {
        r.miss(page, through: page | 1, kind: .read, now: time, pages: pages).pages
    }

    func testThreeQuickSequentialMissesOpenAWindowThatDoublesAsTheProgramCatchesUp() {
        var r = Readahead(maxWindow: 64)
        XCTAssertEqual(read(&r, 0, at: 10 * us), [])
        XCTAssertEqual(read(&r, 2, at: 40 * us), [])
        XCTAssertEqual(read(&r, 4, at: 70 * us), Array(6..<14), "third sequential miss: a first window of 8")
        // A fault on a page of that window still on its way asks for the next, twice as large.
        XCTAssertEqual(read(&r, 6, at: 80 * us), Array(14..<30))
        // More faults on pages of the older window ask for nothing new.
        XCTAssertEqual(r.miss(7, through: 7, kind: .read, now: 81 * us, pages: pages).pages, [])
        XCTAssertEqual(read(&r, 12, at: 82 * us), [])
        // The program reaches the latest window: the next one, capped at 64.
        XCTAssertEqual(read(&r, 14, at: 90 * us), Array(30..<62))
        XCTAssertEqual(read(&r, 30, at: 95 * us), Array(62..<126))
        XCTAssertEqual(read(&r, 62, at: 99 * us), Array(126..<190))
    }

    func testOnceStreamingThePaceNoLongerMatters() {
        var r = Readahead(maxWindow: 64)
        _ = read(&r, 0, at: 0)
        _ = read(&r, 2, at: 10 * us)
        XCTAssertEqual(read(&r, 4, at: 20 * us), Array(6..<14))
        XCTAssertEqual(read(&r, 14, at: 20_000 * us), Array(16..<32),
                       "the program reached the window's end slowly: the stream goes on after the pages just asked for")
    }

    func testAFewMissesAComputePhaseApartAreNoStream() {
        // MGS on 8 nodes: a node misses the 7 columns after its own, a step apart.
        var r = Readahead(maxWindow: 64)
        for k in 0..<7 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * 600 * us), [])
        }
    }

    func testEightSequentialMissesAtAnyPaceAreAStream() {
        // matmul: a row of A (2 pages) per row of C, 350 us apart.
        var r = Readahead(maxWindow: 64)
        for k in 0..<7 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * 350 * us), [])
        }
        XCTAssertEqual(read(&r, 14, at: 7 * 350 * us), Array(16..<24))
        XCTAssertEqual(read(&r, 16, at: 8 * 350 * us), Array(24..<40))
    }

    func testInterleavedStreamsAreFollowedApart() {
        // matmul: a row of A at page 5000 read along with all of B from page 0.
        var r = Readahead(maxWindow: 64)
        var asked: [[Int]] = []
        var t: UInt64 = 0
        for k in 0..<3 {
            t += us
            asked.append(read(&r, 2 * k, at: t))
            t += us
            asked.append(read(&r, 5000 + 2 * k, at: t))
        }
        XCTAssertEqual(asked.filter { !$0.isEmpty }, [Array(6..<14), Array(5006..<5014)])
    }

    func testReadsAndWritesAreSeparateStreams() {
        var r = Readahead(maxWindow: 64)
        XCTAssertEqual(r.miss(0, through: 0, kind: .write, now: 1 * us, pages: pages).pages, [])
        XCTAssertEqual(read(&r, 1, at: 2 * us), [], "a read is not the write stream's next page")
        XCTAssertEqual(r.miss(1, through: 1, kind: .write, now: 3 * us, pages: pages).pages, [])
        XCTAssertEqual(r.miss(2, through: 2, kind: .write, now: 4 * us, pages: pages).pages, Array(3..<11))
    }

    func testWindowsStopAtTheContainersEnd() {
        var r = Readahead(maxWindow: 64)
        _ = r.miss(0, through: 1, kind: .read, now: 1 * us, pages: 12).pages
        _ = r.miss(2, through: 3, kind: .read, now: 2 * us, pages: 12).pages
        XCTAssertEqual(r.miss(4, through: 5, kind: .read, now: 3 * us, pages: 12).pages, Array(6..<12))
        XCTAssertEqual(r.miss(6, through: 7, kind: .read, now: 4 * us, pages: 12).pages, [])
    }

    func testFourQuickMissesAConstantStrideApartAreAStridedStream() {
        // MGS's first step on 2 nodes at n = 1024: node 1 reads (and then
        // rewrites) every other 2-page column, each in a few microseconds.
        var r = Readahead(maxWindow: 64)
        for k in 0..<3 {
            XCTAssertEqual(read(&r, 2 + 4 * k, at: UInt64(k) * 30 * us), [])
        }
        XCTAssertEqual(r.miss(14, through: 15, kind: .read, now: 90 * us, pages: pages),
                       Readahead.Window(first: 18, blocks: 8, block: 2, stride: 4))
        // Catching up with that window asks for the next 16 columns.
        XCTAssertEqual(r.miss(18, through: 19, kind: .read, now: 95 * us, pages: pages),
                       Readahead.Window(first: 50, blocks: 16, block: 2, stride: 4))
        // The rewrites follow as a stream of upgrades of their own.
        for k in 0..<3 {
            XCTAssertTrue(r.miss(2 + 4 * k, through: 3 + 4 * k, kind: .upgrade, now: (100 + UInt64(k)) * us,
                                 pages: pages).isEmpty)
        }
        XCTAssertEqual(r.miss(14, through: 15, kind: .upgrade, now: 104 * us, pages: pages).pages,
                       [18, 19, 22, 23, 26, 27, 30, 31, 34, 35, 38, 39, 42, 43, 46, 47])
    }

    func testStridedMissesAStepApartAreNoStream() {
        // MGS's later steps: one column every other step, 600 us apart.
        var r = Readahead(maxWindow: 64)
        for k in 0..<10 {
            XCTAssertEqual(read(&r, 4 * k, at: UInt64(k) * 600 * us), [])
        }
    }

    func testAZeroWindowTurnsReadaheadOff() {
        var r = Readahead(maxWindow: 0)
        for k in 0..<10 {
            XCTAssertEqual(read(&r, 2 * k, at: UInt64(k) * us), [])
        }
    }
}
