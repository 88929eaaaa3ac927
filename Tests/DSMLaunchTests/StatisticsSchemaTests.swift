// The --stats report has one schema (DSMCore's NodeStatistics): the runtime
// writes it by hand, without Foundation; dsmrun decodes it with Codable.
// Every field written must come back equal.

import DSMCore
import Foundation
import XCTest

final class StatisticsSchemaTests: XCTestCase {
    func testTheRuntimesJSONDecodesToTheSameReport() throws {
        var r = NodeStatistics()
        r.node = 3
        r.readFaults = 11
        r.writeFaults = 12
        r.upgrades = 13
        r.handovers = 29
        r.silentUpgrades = 30
        r.coalescedFaults = 14
        r.invalidationsSent = 15
        r.invalidationsReceived = 16
        r.pagesSent = 17
        r.pagesInstalled = 18
        r.prefetches = 19
        r.heldMessages = 20
        r.messagesSent = 21
        r.messagesReceived = 22
        r.bytesSent = 1 << 40
        r.bytesReceived = 24
        r.waitNs.count = 25
        r.waitNs.p50 = 26
        r.waitNs.p90 = 27
        r.waitNs.p99 = 28
        r.waitNs.max = UInt64.max
        var release = NodeStatistics.Release()
        release.fetches = 31
        release.twins = 32
        release.diffsSent = 33
        release.diffBytes = 34
        release.releases = 35
        release.acquires = 36
        release.dropped = 37
        release.staleNotices = 39
        release.homesMoved = 38
        r.release = release
        r.pages = [
            NodeStatistics.Page(container: 0xFFFF_FF01, page: 7, faults: 8, writeFaults: 9, losses: 10),
            NodeStatistics.Page(container: 0xA000_0100, page: 1 << 30, faults: .max, writeFaults: 0, losses: 1),
        ]
        let decoded = try JSONDecoder().decode(NodeStatistics.self, from: Data(r.json().utf8))
        XCTAssertEqual(decoded, r)
        XCTAssertEqual(try JSONDecoder().decode(NodeStatistics.self, from: Data(NodeStatistics().json().utf8)), NodeStatistics())
    }
}
