import Dispatch
import DSMCoherence
import Synchronization
import XCTest

/// Every interleaving of small worlds (see `ModelWorld`), checked at every
/// state for single-writer/multiple-readers, fresh reads and copies, agreement
/// of node states with mappings, no deadlock, no protocol violation, and that
/// every reachable state can still finish.
///
/// Programs are bounded so the whole suite stays well under a minute on two
/// cores in a debug build. Full 3-node, 2-page programs of 2 accesses per
/// thread (9.7 million states, ~3.5 minutes, 3.5 GB) were explored once with
/// no violation; they are too big for the suite.
final class ExhaustiveTests: XCTestCase {
    func testTwoNodes() {
        let results = explore([
            ModelConfiguration(nodes: 2, pages: 2, accessesPerThread: 3),
            ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 4),
        ])
        assertCovered(results, [.zeroFillGrant, .forwardRead, .forwardWriteWithData, .forwardWriteWithGrant,
                                .invalidate, .upgradeGrant])
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.requestsQueued }, 0)
    }

    func testThreeNodes() {
        let results = explore([
            ModelConfiguration(nodes: 3, pages: 1, accessesPerThread: 3),
            // Two accesses for the home of page 0, then for the node that homes nothing.
            ModelConfiguration(nodes: 3, pages: 2, threads: [(0, 2), (1, 1), (2, 1)]),
            ModelConfiguration(nodes: 3, pages: 2, threads: [(0, 1), (1, 1), (2, 2)]),
        ])
        assertCovered(results, MessageKind.allCases)
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.requestsQueued }, 0)
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.upgradesSent }, 0)
    }

    /// Several threads on one node: faults coalesce onto one request (and a
    /// write fault waits for an outstanding read), and a fault handled after
    /// its page arrived is spurious.
    func testSeveralThreadsOnANode() {
        let results = explore([
            ModelConfiguration(nodes: 2, pages: 2, threads: [(0, 1), (1, 2), (1, 1)]),
            ModelConfiguration(nodes: 3, pages: 1, threads: [(0, 1), (1, 1), (2, 1), (2, 1)]),
            ModelConfiguration(nodes: 2, pages: 1, threads: [(0, 2), (1, 2), (1, 2)]),
        ])
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.coalescedFaults }, 0)
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.spuriousFaults }, 0)
    }

    /// Requests sent ahead of any fault (readahead, the neighbour of a miss,
    /// a wanted write while a read is on its way) at any moment, for any page
    /// and access, keep every check true.
    func testPrefetchesAnywhere() {
        var onePage = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 2)
        onePage.prefetchesPerNode = 2
        var twoPages = ModelConfiguration(nodes: 2, pages: 2, threads: [(0, 1), (1, 2)])
        twoPages.prefetchesPerNode = 1
        var threeNodes = ModelConfiguration(nodes: 3, pages: 1, threads: [(0, 1), (1, 1), (2, 0)])
        threeNodes.prefetchesPerNode = 1
        let results = explore([onePage, twoPages, threeNodes])
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.stats.prefetchRequests }, 0)
    }

    /// Migratory pages: a node that writes a page it has just read from the
    /// last writer makes the home hand the page over whole on later read
    /// misses; the new holder writes it without a message, or gives it away
    /// unwritten and the home stops. Every check holds in every interleaving,
    /// and each of these paths is taken.
    func testMigratoryHandover() {
        let results = explore([
            ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 5),
            ModelConfiguration(nodes: 3, pages: 1, threads: [(0, 2), (1, 2), (2, 2)]),
            ModelConfiguration(nodes: 2, pages: 1, threads: [(0, 2), (1, 2), (1, 1)]),
        ])
        var total = CoherenceStats()
        for result in results { total.accumulate(result.stats) }
        XCTAssertGreaterThan(total.migrationsFound, 0)
        XCTAssertGreaterThan(total.handovers, 0)
        XCTAssertGreaterThan(total.silentUpgrades, 0)
        XCTAssertGreaterThan(total.migrationsEnded, 0)
        assertCovered(results, [.unwritten])
    }

    /// Hold windows: a page brought in for a waiting thread keeps the
    /// message that would take it away until its window closes, which may
    /// happen at any moment. Every check holds in every interleaving, with
    /// each kind of message held, including on a page handed over whole.
    func testHoldWindows() {
        var twoNodes = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 3)
        twoNodes.holdWindows = true
        var threeNodes = ModelConfiguration(nodes: 3, pages: 1, threads: [(0, 2), (1, 2), (2, 1)])
        threeNodes.holdWindows = true
        var twoThreads = ModelConfiguration(nodes: 2, pages: 1, threads: [(0, 2), (1, 2), (1, 1)])
        twoThreads.holdWindows = true
        var prefetching = ModelConfiguration(nodes: 2, pages: 1, threads: [(0, 2), (1, 2)])
        prefetching.holdWindows = true
        prefetching.prefetchesPerNode = 1
        let results = explore([twoNodes, threeNodes, twoThreads, prefetching])
        var total = CoherenceStats()
        for result in results { total.accumulate(result.stats) }
        XCTAssertGreaterThan(total.heldMessages, 0)
        XCTAssertGreaterThan(total.handovers, 0)
        for kind in [HeldKind.forwardRead, .forwardWrite, .invalidate] {
            XCTAssertGreaterThan(results.reduce(0) { $0 + $1.heldDeliveries(kind) }, 0, "\(kind) never held")
        }
    }

    /// Deferred drops: a sharer's copy stays mapped, read-only, after the
    /// protocol dropped it, until the node's frames next leave (punched
    /// just before them, its acknowledgement among them); an owner's
    /// answer leaves before its drop. Threads may read the copy meanwhile;
    /// every check holds in every interleaving.
    func testDeferredDrops() {
        var twoNodes = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 3)
        twoNodes.deferredDrops = true
        var threeNodes = ModelConfiguration(nodes: 3, pages: 1, threads: [(0, 2), (1, 2), (2, 1)])
        threeNodes.deferredDrops = true
        var twoThreads = ModelConfiguration(nodes: 2, pages: 1, threads: [(0, 2), (1, 2), (1, 1)])
        twoThreads.deferredDrops = true
        var withHolds = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 3)
        withHolds.deferredDrops = true
        withHolds.holdWindows = true
        let results = explore([twoNodes, threeNodes, twoThreads, withHolds])
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.deliveries(.invalidate) }, 0)
        XCTAssertGreaterThan(results.reduce(0) { $0 + $1.flushesWithPendingDrops }, 0, "no drop ever waited")
    }

    // MARK: The checker can fail

    func testSharerKeepingItsCopyIsCaughtByEachDataCheck() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 2)
        config.mutation = .sharerKeepsCopyOnInvalidate
        expectViolation(config, only: .singleWriter, kind: .twoWriters)
        expectViolation(config, only: .freshCopies, kind: .staleCopy)
        expectViolation(config, only: .freshReads, kind: .staleRead)
        expectViolation(config, only: .mappingsMatchStates, kind: .mappingMismatch)
    }

    func testOwnerKeepingWriteAccessIsCaught() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 2)
        config.mutation = .ownerSkipsWriteProtect
        expectViolation(config, only: .singleWriter, kind: .twoWriters)
        expectViolation(config, only: .freshReads, kind: .staleRead)
    }

    /// A page handed over whole must stay write-protected until its first
    /// write: mapped writable, it is given away later as unwritten, and so
    /// without write-protecting it.
    func testHandedOverPageMappedWritableIsCaught() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 4)
        config.mutation = .handedOverPageMappedWritable
        expectViolation(config, only: .singleWriter, kind: .twoWriters)
        expectViolation(config, only: .freshReads, kind: .staleRead)
        expectViolation(config, only: .mappingsMatchStates, kind: .mappingMismatch)
    }

    /// A hold window that ends without handing its message to the protocol,
    /// or never ends, leaves the page's transaction open for ever.
    func testBrokenHoldWindowsAreCaught() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 2)
        config.holdWindows = true
        config.mutation = .heldMessageForgotten
        expectViolation(config, only: .noDeadlock, kind: .deadlock)
        expectViolation(config, only: .canAlwaysFinish, kind: .cannotFinish)
        config.mutation = .holdNeverEnds
        expectViolation(config, only: .noDeadlock, kind: .deadlock)
        expectViolation(config, only: .canAlwaysFinish, kind: .cannotFinish)
    }

    /// An acknowledgement that leaves before its drop is punched lets the
    /// writer in while the sharer still maps the page.
    func testAcknowledgementOvertakingItsDropIsCaught() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 3)
        config.deferredDrops = true
        config.mutation = .ackLeavesBeforeThePunch
        expectViolation(config, only: .singleWriter, kind: .twoWriters)
        expectViolation(config, only: .freshReads, kind: .staleRead)
    }

    func testLostDoneIsCaughtAsDeadlock() {
        // Three nodes: with two, answers from the home close the transaction
        // without a `.done` on the wire, and a lost self-sent `.done` can go
        // unnoticed when nobody asks for the page afterwards. One access each,
        // so no requester asks again (which a home still waiting for its
        // `.done` would report as a protocol violation instead).
        var config = ModelConfiguration(nodes: 3, pages: 1, accessesPerThread: 1)
        config.mutation = .doneIsLost
        expectViolation(config, only: .noDeadlock, kind: .deadlock)
        expectViolation(config, only: .canAlwaysFinish, kind: .cannotFinish)
    }

    /// The protocol relies on FIFO channels: without them it breaks.
    func testReorderingChannelsBreaksTheProtocol() {
        var config = ModelConfiguration(nodes: 2, pages: 1, accessesPerThread: 2)
        config.mutation = .channelsReorder
        let result = ModelExplorer(config: config).run()
        XCTAssertNotNil(result.violation)
        report(config, result)
    }

    // MARK: Helpers

    /// Explores the configurations concurrently, one per core, reports each,
    /// and fails on any violation.
    @discardableResult
    func explore(
        _ configs: [ModelConfiguration], file: StaticString = #filePath, line: UInt = #line
    ) -> [ModelExplorer.Result] {
        let results = Mutex<[Int: (result: ModelExplorer.Result, seconds: Double)]>([:])
        DispatchQueue.concurrentPerform(iterations: configs.count) { index in
            let clock = ContinuousClock()
            let start = clock.now
            let result = ModelExplorer(config: configs[index]).run()
            let elapsed = clock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            results.withLock { $0[index] = (result, seconds) }
        }
        let all = results.withLock { $0 }
        return configs.indices.map { index in
            let (result, seconds) = all[index]!
            report(configs[index], result, seconds: seconds)
            XCTAssertNil(result.violation, "\(configs[index])", file: file, line: line)
            return result
        }
    }

    func expectViolation(
        _ config: ModelConfiguration, only check: ModelChecks, kind: ViolationKind,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var config = config
        config.checks = check
        let result = ModelExplorer(config: config).run()
        XCTAssertEqual(result.violation?.kind, kind, "\(config.mutation)", file: file, line: line)
        report(config, result)
    }

    func assertCovered(
        _ results: [ModelExplorer.Result], _ kinds: [MessageKind], file: StaticString = #filePath, line: UInt = #line
    ) {
        for kind in kinds {
            XCTAssertGreaterThan(results.reduce(0) { $0 + $1.deliveries(kind) }, 0, "\(kind) never delivered",
                                 file: file, line: line)
        }
    }

    func report(_ config: ModelConfiguration, _ result: ModelExplorer.Result, seconds: Double? = nil) {
        let time = seconds.map { "in \(($0 * 10).rounded() / 10) s" } ?? ""
        let mutation = config.mutation == .none ? "" : " [\(config.mutation), checks \(config.checks.rawValue)]"
        print("exhaustive: \(config)\(mutation): \(result.summary) \(time)")
        if let violation = result.violation {
            print("  \(violation.kind): \(violation.detail)")
            for (number, step) in result.trace.enumerated() { print("  \(number + 1). \(step)") }
        }
    }
}
