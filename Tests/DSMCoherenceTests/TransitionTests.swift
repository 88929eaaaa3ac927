@testable import DSMCoherence
import DSMCore
import XCTest

/// One transition at a time, checked against the exact effects it must emit.
/// In container 0, page i is homed on node i % nodes.
final class TransitionTests: XCTestCase {
    let page0 = PageID(container: 0, index: 0)  // homed on node 0
    let page1 = PageID(container: 0, index: 1)  // homed on node 1

    func testHomesRotateWithIndexInContainerZero() {
        XCTAssertEqual(page0.home(nodes: 3), 0)
        XCTAssertEqual(page1.home(nodes: 3), 1)
        XCTAssertEqual(PageID(container: 0, index: 2).home(nodes: 3), 2)
    }

    /// Image mode's heap: node k is the home of the k-th block of pages (its
    /// allocator's arena); the last node also takes the pages past the blocks.
    func testBlockHomedContainerHomesEachBlockOnItsNode() {
        let heap = PageID.blockHomedContainer(blockPages: 16)
        XCTAssertEqual(PageID.blockPages(of: heap), 16)
        XCTAssertNil(PageID.blockPages(of: 0))
        XCTAssertNil(PageID.blockPages(of: 0xFFFF_FF01), "the data container stays hashed")
        XCTAssertEqual(PageID(container: heap, index: 0).home(nodes: 3), 0)
        XCTAssertEqual(PageID(container: heap, index: 15).home(nodes: 3), 0)
        XCTAssertEqual(PageID(container: heap, index: 16).home(nodes: 3), 1)
        XCTAssertEqual(PageID(container: heap, index: 47).home(nodes: 3), 2)
        XCTAssertEqual(PageID(container: heap, index: 50).home(nodes: 3), 2)
    }

    /// A first touch in the node's own block is served by itself: the
    /// request and the zero grant are self-messages.
    func testFirstTouchInTheNodesOwnBlockNeedsNoOtherNode() {
        let heap = PageID.blockHomedContainer(blockPages: 16)
        var cluster = TestCluster(nodes: 3, container: heap, pages: 52)
        for node in 0..<3 {
            for index: UInt32 in [UInt32(node * 16), UInt32(node * 16 + 15)] + (node == 2 ? [51] : []) {
                let page = PageID(container: heap, index: index)
                let messages = cluster.access(node, page, .write)
                XCTAssertEqual(messages.map(\.message), [
                    .writeRequest(page, from: node), .grant(page, writable: true, zeroFill: true, closed: true),
                ])
                XCTAssertTrue(messages.allSatisfy { $0.from == node && $0.to == node }, "\(page) from node \(node)")
            }
        }
        // And another node's page in the block still goes to its home.
        let page = PageID(container: heap, index: 20)
        XCTAssertEqual(cluster.fault(0, page, .read), [.send(.readRequest(page, from: 0), to: 1)])
    }

    /// A counter under a lock: each node reads the page and then writes it,
    /// in turn. After two such writes in a row the page migrates: a read
    /// miss takes it whole (mapped read-only), and the write that follows
    /// needs no message. Given away unwritten, it stops migrating.
    func testMigratingPageIsHandedOverWholeOnAReadMiss() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        for node in [2, 1] {  // read, then write: twice in a row
            cluster.access(node, page0, .read)
            cluster.access(node, page0, .write)
        }
        XCTAssertEqual(cluster.nodes[0].stats.migrationsFound, 1)

        let messages = cluster.access(2, page0, .read)
        XCTAssertEqual(messages.map(\.message), [
            .readRequest(page0, from: 2), .forwardWrite(page0, requester: 2, sendData: true),
            .data(page0, writable: true, closed: false), .done(page0, from: 2),
        ])
        XCTAssertEqual(cluster.nodes[2].localState(page0), .exclusiveUnwritten)
        XCTAssertEqual(cluster.nodes[1].localState(page0), .invalid)
        XCTAssertEqual(cluster.fault(2, page0, .write), [.makeWritable(page0), .wake(page0)])
        XCTAssertTrue(cluster.inFlight.isEmpty)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .exclusive)

        // Handed over to node 1, which only reads it: node 2's read takes
        // it back and node 1 says it went unwritten.
        cluster.access(1, page0, .read)
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusiveUnwritten)
        let back = cluster.access(2, page0, .read)
        XCTAssertTrue(back.map(\.message).contains(.unwritten(page0, from: 1)), "\(back)")
        XCTAssertEqual(cluster.nodes[0].stats.migrationsEnded, 1)
        cluster.access(1, page0, .read)
        XCTAssertEqual(cluster.nodes[1].localState(page0), .shared, "no longer handed over")
    }

    /// DSM_MIGRATORY=0: the same turns never make the page migrate.
    func testWithoutMigratoryPagesReadsStayShared() {
        var cluster = TestCluster(nodes: 3, handsOverMigratoryPages: false)
        cluster.access(1, page0, .write)
        for node in [2, 1, 2, 1] {
            cluster.access(node, page0, .read)
            cluster.access(node, page0, .write)
        }
        cluster.access(2, page0, .read)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .shared)
        XCTAssertEqual(cluster.nodes[0].stats.migrationsFound, 0)
        XCTAssertEqual(cluster.nodes[0].stats.handovers, 0)
    }

    /// A page that came for a waiting thread holds: the request that would
    /// take it away waits for the window to close, then is served as
    /// usual. A prefetched page nobody waited for does not hold, and the
    /// home's own requests are never held.
    func testHoldWindowKeepsTheTakeawayUntilItCloses() {
        var cluster = TestCluster(nodes: 2, holdsPages: true)
        cluster.access(1, page0, .write)
        XCTAssertTrue(cluster.nodes[1].isHolding(page0))
        cluster.fault(0, page0, .write)
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardWrite(page0, requester: 0, sendData: true), to: 1)])
        XCTAssertEqual(cluster.deliverNext().1, [.held(page0)], "node 1 keeps the forward")
        XCTAssertTrue(cluster.inFlight.isEmpty)
        XCTAssertEqual(cluster.nodes[1].stats.heldMessages, 1)
        XCTAssertEqual(cluster.endHold(1, page0), [
            .writeProtect(page0), .send(.data(page0, writable: true, closed: false), to: 0), .drop(page0),
        ])
        XCTAssertFalse(cluster.nodes[1].isHolding(page0))
        cluster.settle()
        XCTAssertEqual(cluster.nodes[0].localState(page0), .exclusive)
        XCTAssertTrue(cluster.nodes[0].isHolding(page0), "the writer waited: its page holds")
        XCTAssertEqual(cluster.endHold(0, page0), [], "a window that held nothing closes quietly")

        var prefetched = TestCluster(nodes: 2, holdsPages: true)
        var sink = RecordingEffects()
        prefetched.nodes[1].prefetch(page1, .read, &sink)
        XCTAssertEqual(sink.effects, [.send(.readRequest(page1, from: 1), to: 1)])
        prefetched.inFlight.append(.init(from: 1, to: 1, message: .readRequest(page1, from: 1)))
        prefetched.settle()
        XCTAssertEqual(prefetched.nodes[1].localState(page1), .exclusive)
        XCTAssertFalse(prefetched.nodes[1].isHolding(page1), "nobody waited for it")
    }

    func testFirstTouchReadIsAZeroGrantWithoutData() {
        var cluster = TestCluster(nodes: 2)
        XCTAssertEqual(cluster.fault(1, page0, .read), [.send(.readRequest(page0, from: 1), to: 0)])

        let (_, homeEffects) = cluster.deliverNext()
        // Sent by the home itself: the transaction is closed at once.
        XCTAssertEqual(homeEffects, [.send(.grant(page0, writable: true, zeroFill: true, closed: true), to: 1)])

        let (_, requesterEffects) = cluster.deliverNext()
        XCTAssertEqual(requesterEffects, [.installZero(page0), .wake(page0)])
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusive)
        XCTAssertTrue(cluster.inFlight.isEmpty)
    }

    func testFirstTouchWriteOnTheHomeGoesThroughSelfMessages() {
        var cluster = TestCluster(nodes: 2)
        let messages = cluster.access(0, page0, .write)
        XCTAssertEqual(messages.map(\.message), [
            .writeRequest(page0, from: 0),
            .grant(page0, writable: true, zeroFill: true, closed: true),
        ])
        XCTAssertTrue(messages.allSatisfy { $0.from == 0 && $0.to == 0 })
        XCTAssertEqual(cluster.nodes[0].localState(page0), .exclusive)
    }

    func testRemoteReadMissTakesThreeHopsAndDowngradesTheOwner() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)  // node 1 owns page0 exclusively

        XCTAssertEqual(cluster.fault(2, page0, .read), [.send(.readRequest(page0, from: 2), to: 0)])
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardRead(page0, requester: 2), to: 1)])
        XCTAssertEqual(cluster.deliverNext().1, [
            .writeProtect(page0), .send(.data(page0, writable: false, closed: false), to: 2),
        ])
        XCTAssertEqual(cluster.deliverNext().1, [
            .install(page0, writable: false), .wake(page0), .send(.done(page0, from: 2), to: 0),
        ])
        cluster.settle()
        XCTAssertEqual(cluster.nodes[1].localState(page0), .shared)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .shared)
    }

    func testReadFromASharedOwnerNeedsNoWriteProtect() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        cluster.access(2, page0, .read)  // owner 1 now shared
        cluster.fault(0, page0, .read)
        cluster.deliverNext()
        XCTAssertEqual(cluster.deliverNext().1, [.send(.data(page0, writable: false, closed: false), to: 0)])
    }

    func testWriteWithSharersInvalidatesEachAndWaitsForAllAcks() {
        var cluster = TestCluster(nodes: 5)
        cluster.access(1, page0, .write)  // owner 1
        for reader in [2, 3, 4] { cluster.access(reader, page0, .read) }

        cluster.fault(0, page0, .write)
        let (_, homeEffects) = cluster.deliverNext()
        XCTAssertEqual(homeEffects, [
            .send(.invalidate(page0), to: 2), .send(.invalidate(page0), to: 3), .send(.invalidate(page0), to: 4),
        ])
        XCTAssertEqual(cluster.nodes[0].stats.invalidationsSent, 3)

        // Each sharer drops and acknowledges; the home waits for the last ack.
        for sharer in [2, 3, 4] {
            XCTAssertEqual(cluster.deliverNext().1, [.drop(page0), .send(.invalidateAck(page0, from: sharer), to: 0)])
        }
        XCTAssertEqual(cluster.deliverNext().1, [])
        XCTAssertEqual(cluster.deliverNext().1, [])
        XCTAssertEqual(cluster.deliverNext().1, [
            .send(.forwardWrite(page0, requester: 0, sendData: true), to: 1),
        ])
        // The owner is shared (it served the readers), so no writeProtect.
        XCTAssertEqual(cluster.deliverNext().1, [.send(.data(page0, writable: true, closed: false), to: 0), .drop(page0)])
        XCTAssertEqual(cluster.deliverNext().1, [
            .install(page0, writable: true), .wake(page0), .send(.done(page0, from: 0), to: 0),
        ])
        cluster.settle()
        XCTAssertEqual((0..<5).map { cluster.nodes[$0].localState(page0) },
                       [.exclusive, .invalid, .invalid, .invalid, .invalid])
    }

    func testWriteMissOnAnExclusiveOwnerWriteProtectsBeforeSendingThenDrops() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        cluster.fault(2, page0, .write)
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardWrite(page0, requester: 2, sendData: true), to: 1)])
        XCTAssertEqual(cluster.deliverNext().1, [
            .writeProtect(page0), .send(.data(page0, writable: true, closed: false), to: 2), .drop(page0),
        ])
    }

    func testOwnerUpgradeIsAGrantWithoutData() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        cluster.access(2, page0, .read)  // owner 1 and sharer 2, both shared

        XCTAssertEqual(cluster.fault(1, page0, .write), [.send(.writeRequest(page0, from: 1), to: 0)])
        XCTAssertEqual(cluster.nodes[1].stats.upgradesSent, 1)
        let messages = cluster.settle().map(\.message)
        XCTAssertEqual(messages, [
            .writeRequest(page0, from: 1),
            .invalidate(page0),
            .invalidateAck(page0, from: 2),
            .grant(page0, writable: true, zeroFill: false, closed: true),
        ])
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusive)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .invalid)
    }

    func testSharerUpgradeIsGrantedByTheOwnerWithoutData() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        cluster.access(2, page0, .read)

        cluster.fault(2, page0, .write)
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardWrite(page0, requester: 2, sendData: false), to: 1)])
        XCTAssertEqual(cluster.deliverNext().1, [
            .send(.grant(page0, writable: true, zeroFill: false, closed: false), to: 2), .drop(page0),
        ])
        XCTAssertEqual(cluster.deliverNext().1, [
            .makeWritable(page0), .wake(page0), .send(.done(page0, from: 2), to: 0),
        ])
        XCTAssertFalse(cluster.settle().contains { if case .data = $0.message { true } else { false } })
    }

    func testTwoLocalReadFaultsSendOneRequest() {
        var cluster = TestCluster(nodes: 2)
        XCTAssertEqual(cluster.fault(1, page0, .read).count, 1)
        XCTAssertEqual(cluster.fault(1, page0, .read), [])
        XCTAssertEqual(cluster.fault(1, page0, .write), [])  // waiting for a read: remembered, not sent
        XCTAssertEqual(cluster.nodes[1].stats.coalescedFaults, 2)
        XCTAssertEqual(cluster.inFlight.count, 1)
    }

    func testWriteFaultDuringAReadIsSentAfterTheReadCompletes() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(2, page0, .write)  // owner elsewhere, so the read answer is read-only data
        cluster.fault(1, page0, .read)
        cluster.fault(1, page0, .write)
        cluster.deliverNext()  // readRequest at home
        cluster.deliverNext()  // forwardRead at owner
        XCTAssertEqual(cluster.deliverNext().1, [
            .install(page0, writable: false), .wake(page0),
            .send(.done(page0, from: 1), to: 0), .send(.writeRequest(page0, from: 1), to: 0),
        ])
        cluster.settle()
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusive)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .invalid)
    }

    func testWriteFaultDuringAFirstTouchReadNeedsNoSecondRequest() {
        var cluster = TestCluster(nodes: 2)
        cluster.fault(1, page0, .read)
        cluster.fault(1, page0, .write)
        let messages = cluster.settle().map(\.message)
        XCTAssertEqual(messages.count, 2)  // request, zero grant (closed by the home)
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusive)
    }

    func testFaultOnAnAlreadyPermittedPageOnlyWakes() {
        var cluster = TestCluster(nodes: 2)
        cluster.access(1, page0, .write)
        XCTAssertEqual(cluster.fault(1, page0, .read), [.wake(page0)])
        XCTAssertEqual(cluster.fault(1, page0, .write), [.wake(page0)])
        XCTAssertEqual(cluster.nodes[1].stats.spuriousFaults, 2)
    }

    func testRequestsMeetingABusyPageAreQueuedAndServedInTurn() {
        var cluster = TestCluster(nodes: 4)
        cluster.access(1, page0, .write)
        cluster.fault(2, page0, .write)
        cluster.fault(3, page0, .read)
        cluster.fault(0, page0, .read)
        cluster.deliverNext()  // 2's write served: forwardWrite to 1
        XCTAssertEqual(cluster.deliverNext().1, [])  // 3 queued
        XCTAssertEqual(cluster.deliverNext().1, [])  // 0 queued
        XCTAssertEqual(cluster.nodes[0].stats.requestsQueued, 2)

        let messages = cluster.settle().map(\.message)
        // After 2 is done, round-robin from 2 serves 3 before 0.
        XCTAssertEqual(messages, [
            .forwardWrite(page0, requester: 2, sendData: true),
            .data(page0, writable: true, closed: false),
            .done(page0, from: 2),
            .forwardRead(page0, requester: 3),
            .data(page0, writable: false, closed: false),
            .done(page0, from: 3),
            .forwardRead(page0, requester: 0),
            .data(page0, writable: false, closed: false),
            .done(page0, from: 0),
        ])
        XCTAssertEqual((0..<4).map { cluster.nodes[$0].localState(page0) }, [.shared, .invalid, .shared, .shared])
    }

    func testSharerInvalidatedWhileUpgradingGetsDataWhenServed() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)
        cluster.access(2, page0, .read)  // 1 owner, 2 sharer

        cluster.fault(1, page0, .write)  // 1's upgrade is served first...
        cluster.fault(2, page0, .write)  // ...and 2's upgrade waits
        cluster.deliverNext()
        cluster.deliverNext()
        XCTAssertEqual(cluster.nodes[0].stats.requestsQueued, 1)
        let messages = cluster.settle().map(\.message)
        // 2 lost its copy to 1's invalidation, so the home now asks for data.
        XCTAssertTrue(messages.contains(.invalidate(page0)))
        XCTAssertTrue(messages.contains(.forwardWrite(page0, requester: 2, sendData: true)))
        XCTAssertEqual(cluster.nodes[1].localState(page0), .invalid)
        XCTAssertEqual(cluster.nodes[2].localState(page0), .exclusive)
    }

    // MARK: Answers sent by the home close the transaction themselves

    /// With two nodes the home is always the requester or the owner: a read
    /// miss and a write miss on a remote page cost no `.done` on the wire
    /// (the home-owner closes through a `.done` to itself).
    func testTwoNodeMissesSendNoDoneToAnotherNode() {
        for (page, home, other) in [(page0, 0, 1), (page1, 1, 0)] {
            var cluster = TestCluster(nodes: 2)
            cluster.access(home, page, .write)  // the home owns the page

            let read = cluster.access(other, page, .read)
            XCTAssertEqual(read.map(\.message), [
                .readRequest(page, from: other),
                .forwardRead(page, requester: other),
                .data(page, writable: false, closed: true),
                .done(page, from: other),
            ])
            XCTAssertEqual(read.last.map { [$0.from, $0.to] }, [home, home])  // self-sent

            // The home gets it back, then the other node write-misses on it.
            cluster.access(home, page, .write)
            let write = cluster.access(other, page, .write)
            XCTAssertEqual(write.map(\.message), [
                .writeRequest(page, from: other),
                .forwardWrite(page, requester: other, sendData: true),
                .data(page, writable: true, closed: true),
                .done(page, from: other),
            ])
            for delivered in read + write {
                if case .done = delivered.message { XCTAssertEqual(delivered.from, delivered.to, "\(delivered)") }
            }
            XCTAssertEqual(cluster.nodes[other].localState(page), .exclusive)
            XCTAssertEqual(cluster.nodes[home].localState(page), .invalid)

            // Misses the other way round: the home is the requester, the
            // answer comes from the owner, and the home sends `.done` to itself.
            let back = cluster.access(home, page, .read)
            for delivered in back {
                if case .done = delivered.message { XCTAssertEqual(delivered.from, delivered.to, "\(delivered)") }
            }
            XCTAssertEqual(cluster.nodes[home].localState(page), .shared)
            XCTAssertEqual(cluster.nodes[other].localState(page), .shared)
            XCTAssertEqual(cluster.nodes[0].stats.protocolViolations + cluster.nodes[1].stats.protocolViolations, 0)
        }
    }

    /// Home, owner and requester all different: the owner's answer is not
    /// closed, and the requester still sends `.done` to the home.
    func testThreeHopAnswerStillNeedsDoneFromTheRequester() {
        var cluster = TestCluster(nodes: 3)
        cluster.access(1, page0, .write)  // home 0, owner 1
        cluster.fault(2, page0, .write)
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardWrite(page0, requester: 2, sendData: true), to: 1)])
        XCTAssertEqual(cluster.deliverNext().1, [
            .writeProtect(page0), .send(.data(page0, writable: true, closed: false), to: 2), .drop(page0),
        ])
        XCTAssertEqual(cluster.deliverNext().1, [
            .install(page0, writable: true), .wake(page0), .send(.done(page0, from: 2), to: 0),
        ])
        let (done, effects) = cluster.deliverNext()
        XCTAssertEqual([done.from, done.to], [2, 0])
        XCTAssertEqual(effects, [])
        XCTAssertTrue(cluster.inFlight.isEmpty)
    }

    /// The requester may get a closed answer and ask again before the home,
    /// as owner, has taken its own `.done`: the new request waits its turn.
    func testRequestOvertakingTheHomesSelfDoneIsQueued() {
        var cluster = TestCluster(nodes: 2)
        cluster.access(0, page0, .write)  // home 0 owns page0
        cluster.fault(1, page0, .read)
        cluster.fault(1, page0, .write)  // remembered, sent after the read
        cluster.deliverNext()  // readRequest: forwardRead to itself
        XCTAssertEqual(cluster.deliverNext().1, [
            .writeProtect(page0), .send(.data(page0, writable: false, closed: true), to: 1),
            .send(.done(page0, from: 1), to: 0),
        ])
        XCTAssertEqual(cluster.deliverNext().1, [
            .install(page0, writable: false), .wake(page0), .send(.writeRequest(page0, from: 1), to: 0),
        ])
        // Deliver the write request before the home's self-sent done.
        XCTAssertEqual(cluster.inFlight.map(\.message), [.done(page0, from: 1), .writeRequest(page0, from: 1)])
        cluster.inFlight.swapAt(0, 1)
        XCTAssertEqual(cluster.deliverNext().1, [])
        XCTAssertEqual(cluster.nodes[0].stats.requestsQueued, 1)
        XCTAssertEqual(cluster.deliverNext().1, [.send(.forwardWrite(page0, requester: 1, sendData: false), to: 0)])
        XCTAssertEqual(cluster.settle().map(\.message), [
            .forwardWrite(page0, requester: 1, sendData: false),
            .grant(page0, writable: true, zeroFill: false, closed: true),
            .done(page0, from: 1),
        ])
        XCTAssertEqual(cluster.nodes[1].localState(page0), .exclusive)
        XCTAssertEqual(cluster.nodes[0].localState(page0), .invalid)
        XCTAssertEqual(cluster.nodes[0].stats.protocolViolations + cluster.nodes[1].stats.protocolViolations, 0)
    }

    func testRoundRobinQueueStartsAfterTheLastServedNode() {
        var entry = HomeEntryProbe()
        entry.wait(readers: [0, 1, 5], writers: [3])
        entry.lastServed = 3
        XCTAssertEqual(entry.drain(), [5, 0, 1, 3])
        entry.wait(readers: [2], writers: [0, 4])
        entry.lastServed = 63
        XCTAssertEqual(entry.drain(), [0, 2, 4])
    }

    func testUnexpectedMessagesAreReportedNotObeyed() {
        var node = CoherenceNode(node: 0, nodes: 2)
        node.addContainer(0, pages: 2)
        var sink = RecordingEffects()
        node.receive(.done(page0, from: 1), &sink)
        node.receive(.readRequest(page1, from: 1), &sink)  // page1's home is node 1
        node.receive(.data(page0, writable: true, closed: false), &sink)
        node.receive(.invalidate(page0), &sink)
        XCTAssertEqual(sink.effects.count, 4)
        XCTAssertTrue(sink.effects.allSatisfy { if case .violation = $0 { true } else { false } })
        XCTAssertEqual(node.stats.protocolViolations, 4)
    }

    func testRemovedContainerForgetsItsPages() {
        var node = CoherenceNode(node: 0, nodes: 1)
        node.addContainer(7, pages: 1)
        let page = PageID(container: 7, index: 0)
        var sink = RecordingEffects()
        node.fault(page, .write, &sink)
        node.receive(.writeRequest(page, from: 0), &sink)
        node.receive(.grant(page, writable: true, zeroFill: true, closed: true), &sink)
        XCTAssertEqual(node.localState(page), .exclusive)
        node.removeContainer(7)
        XCTAssertEqual(node.localState(page), .invalid)
        sink.effects = []
        node.receive(.done(page, from: 0), &sink)
        XCTAssertEqual(sink.effects, [.violation("message about a page no container here has", page)])
    }
}

/// Drives the home's waiting queue directly.
struct HomeEntryProbe {
    var entry = HomeEntry()

    var lastServed: Int {
        get { Int(entry.lastServed) }
        set { entry.lastServed = Int8(newValue) }
    }

    mutating func wait(readers: [NodeID], writers: [NodeID]) {
        for node in readers { entry.waitingReaders.insert(node) }
        for node in writers { entry.waitingWriters.insert(node) }
    }

    /// Dequeues everything, as if each request finished at once.
    mutating func drain() -> [NodeID] {
        var order: [NodeID] = []
        while let next = entry.dequeueNext() {
            order.append(next.node)
            entry.lastServed = Int8(next.node)
        }
        return order
    }
}

final class PageTableStorageTests: XCTestCase {
    /// Page tables are zero tables: all-zero bytes must be the state of a
    /// page never touched, on both roles.
    func testAllZeroEntriesAreFreshPages() {
        let pages = ContainerPages(pages: 3, homeSlots: 2)
        XCTAssertEqual(pages.local[2], LocalPage())
        XCTAssertEqual(pages.home[1], HomeEntry())
        XCTAssertEqual(pages.home[1].owner, HomeEntry.noNode)
        XCTAssertEqual(pages.home[1].requester, HomeEntry.noNode)
        XCTAssertEqual(pages.home[1].phase, .idle)
    }

    /// A copy is independent, as an array's is (the model explores copies).
    func testCopiesAreValues() {
        var a = ZeroTable<UInt32>(count: 4)
        a[1] = 7
        var b = a
        b[1] = 9
        XCTAssertEqual(a[1], 7)
        XCTAssertEqual(b[1], 9)
        XCTAssertNotEqual(a, b)
        b[1] = 7
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
        // Large tables are mappings; they read zero and copy the same way.
        var big = ZeroTable<UInt64>(count: 1 << 20)
        XCTAssertEqual(big[(1 << 20) - 1], 0)
        big[12345] = 1
        let copy = big
        big[12345] = 2
        XCTAssertEqual(copy[12345], 1)
    }
}
