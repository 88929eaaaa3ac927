import DSMCore
import XCTest

/// The diffs release consistency sends home: byte-exact, so two nodes'
/// diffs of one page merge whatever order they arrive in.
final class PageDiffTests: XCTestCase {
    let size = 4096

    private func page(_ fill: UInt8 = 0) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        return p
    }

    private func diff(_ current: UnsafeRawPointer, _ twin: UnsafeRawPointer) -> [UInt8] {
        let out = UnsafeMutableRawPointer.allocate(byteCount: PageDiff.capacity(pageSize: size), alignment: 8)
        defer { out.deallocate() }
        let n = PageDiff.encode(current: current, twin: twin, pageSize: size, into: out)
        return Array(UnsafeRawBufferPointer(start: out, count: n))
    }

    func testUnchangedPageHasEmptyDiff() {
        let a = page(7), b = page(7)
        XCTAssertEqual(diff(a, b), [])
    }

    func testRunsAreByteExact() {
        let twin = page(), current = page()
        // One byte, a run across a word boundary, the last byte, and bytes
        // one apart (the worst case).
        current.storeBytes(of: 1, toByteOffset: 3, as: UInt8.self)
        for i in 6..<19 { current.storeBytes(of: 2, toByteOffset: i, as: UInt8.self) }
        current.storeBytes(of: 3, toByteOffset: size - 1, as: UInt8.self)
        let d = diff(current, twin)
        XCTAssertEqual(d, [3, 0, 1, 0, 1] + [6, 0, 13, 0] + Array(repeating: 2, count: 13) + [0xff, 0x0f, 1, 0, 3])
        let worst = page()
        for i in stride(from: 0, to: size, by: 2) { worst.storeBytes(of: 9, toByteOffset: i, as: UInt8.self) }
        let w = diff(worst, twin)
        XCTAssertEqual(w.count, size / 2 * 5)
        XCTAssertLessThanOrEqual(w.count, PageDiff.capacity(pageSize: size))
    }

    /// Two nodes change disjoint bytes of one page, some in the same word:
    /// both diffs applied at the home, in either order, give both changes.
    func testDisjointWritersMerge() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let home = page(0x55)
            let twin = page(0x55), a = page(0x55), b = page(0x55)
            var expected = [UInt8](repeating: 0x55, count: size)
            for i in 0..<size where Int.random(in: 0..<5, using: &rng) == 0 {
                let value = UInt8.random(in: 0...255, using: &rng)
                if Bool.random(using: &rng) {
                    a.storeBytes(of: value, toByteOffset: i, as: UInt8.self)
                } else {
                    b.storeBytes(of: value, toByteOffset: i, as: UInt8.self)
                }
                expected[i] = value
            }
            let da = diff(a, twin), db = diff(b, twin)
            let first = Bool.random(using: &rng) ? [da, db] : [db, da]
            for d in first {
                XCTAssertTrue(d.withUnsafeBytes { PageDiff.apply($0, to: home, pageSize: size) })
            }
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: home, count: size)), expected)
        }
    }

    func testMalformedDiffIsRefused() {
        let home = page()
        for bad: [UInt8] in [[1, 0], [0xff, 0x0f, 2, 0, 1, 1], [0, 0, 4, 0, 1], [0, 0, 0, 0]] {
            XCTAssertFalse(bad.withUnsafeBytes { PageDiff.apply($0, to: home, pageSize: size) }, "\(bad)")
        }
    }
}
