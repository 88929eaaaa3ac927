import DSMSync
import XCTest

/// The model's effects as values, in the order it emitted them.
enum SyncAction<Waiter> {
    case reply(Waiter, Int64)
    case grant(UInt64, to: Int)
    case recall(UInt64, from: Int)
    case tryRecall(UInt64, from: Int)
}

struct RecordingSyncEffects<Waiter>: SyncEffects {
    var actions: [SyncAction<Waiter>] = []
    mutating func reply(_ waiter: Waiter, _ result: Int64) { actions.append(.reply(waiter, result)) }
    mutating func grant(_ object: UInt64, to node: Int) { actions.append(.grant(object, to: node)) }
    mutating func recall(_ object: UInt64, from node: Int) { actions.append(.recall(object, from: node)) }
    mutating func tryRecall(_ object: UInt64, from node: Int) { actions.append(.tryRecall(object, from: node)) }
}

extension SyncObjects {
    /// One request, its effects recorded.
    mutating func handle(_ object: UInt64, _ operation: SyncOperation, thread: UInt64, deadline: UInt64?,
                         waiter: Waiter?) -> [SyncAction<Waiter>] {
        var sink = RecordingSyncEffects<Waiter>()
        handle(object, operation, thread: thread, deadline: deadline, waiter: waiter, &sink)
        return sink.actions
    }

    mutating func expire(now: UInt64) -> [SyncAction<Waiter>] {
        var sink = RecordingSyncEffects<Waiter>()
        expire(now: now, &sink)
        return sink.actions
    }
}

/// The lock service's model alone: waiters are numbers, replies are checked
/// in the order the model gives them.
final class SyncObjectsTests: XCTestCase {
    typealias Model = SyncObjects<Int>
    let m: UInt64 = 0x1000
    let c: UInt64 = 0x2000

    private func replies(_ actions: [SyncAction<Int>]) -> [(Int, Int64)] {
        actions.compactMap { if case .reply(let w, let r) = $0 { return (w, r) } else { return nil } }
    }

    private func grants(_ actions: [SyncAction<Int>]) -> [String] {
        actions.compactMap {
            switch $0 {
            case .grant(_, let node): return "grant \(node)"
            case .recall(_, let node): return "recall \(node)"
            case .tryRecall(_, let node): return "try \(node)"
            case .reply: return nil
            }
        }
    }

    func testTokenGoesToTheFirstAskerAndIsRecalledOnceForTheOthers() {
        var s = Model()
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 0, deadline: nil, waiter: nil)), ["grant 0"])
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 1, deadline: nil, waiter: nil)), ["recall 0"])
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 2, deadline: nil, waiter: nil)), [],
                       "one recall is enough while it is pending")
        XCTAssertEqual(grants(s.handle(m, .tokenRelease, thread: 0, deadline: nil, waiter: nil)), ["grant 1", "recall 1"],
                       "node 2 still waits: the new holder is recalled at once")
        XCTAssertEqual(grants(s.handle(m, .tokenRelease, thread: 1, deadline: nil, waiter: nil)), ["grant 2"])
        XCTAssertEqual(grants(s.handle(m, .tokenRelease, thread: 0, deadline: nil, waiter: nil)), [],
                       "a release from a node that does not hold it is ignored")
        XCTAssertEqual(grants(s.handle(m, .tokenRelease, thread: 2, deadline: nil, waiter: nil)), [])
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 3, deadline: nil, waiter: nil)), ["grant 3"],
                       "free again")
    }

    /// A node's release and its next request come from two threads and may
    /// arrive in either order: a request from the holder waits behind the
    /// release instead of being dropped.
    func testRequestOvertakingTheSameNodesReleaseIsKept() {
        var s = Model()
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 1, deadline: nil, waiter: nil)), ["grant 1"])
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 1, deadline: nil, waiter: nil)), [])
        XCTAssertEqual(replies(s.handle(m, .tokenTry, thread: 1, deadline: nil, waiter: 5)).map(\.1), [-SyncErrno.EBUSY])
        XCTAssertEqual(grants(s.handle(m, .tokenRelease, thread: 1, deadline: nil, waiter: nil)), ["grant 1"])
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 0, deadline: nil, waiter: nil)), ["recall 1"])
    }

    func testTryLockAsksTheHolderToGiveUpAFreeMutex() {
        var s = Model()
        XCTAssertEqual(replies(s.handle(m, .tokenTry, thread: 0, deadline: nil, waiter: 10)).map(\.1), [1])
        XCTAssertEqual(grants(s.handle(m, .tokenTry, thread: 1, deadline: nil, waiter: 11)), ["try 0"])
        XCTAssertEqual(replies(s.handle(m, .tokenTry, thread: 2, deadline: nil, waiter: 12)).map(\.1), [-SyncErrno.EBUSY],
                       "one try at a time")
        XCTAssertEqual(replies(s.handle(m, .tokenBusy, thread: 0, deadline: nil, waiter: nil)).map { [$0.0, Int($0.1)] },
                       [[11, -Int(SyncErrno.EBUSY)]])
        XCTAssertEqual(grants(s.handle(m, .tokenTry, thread: 1, deadline: nil, waiter: 11)), ["try 0"])
        let released = s.handle(m, .tokenRelease, thread: 0, deadline: nil, waiter: nil)
        XCTAssertEqual(replies(released).map { [$0.0, Int($0.1)] }, [[11, 1]], "the free mutex goes to the trier")
        XCTAssertEqual(grants(s.handle(m, .tokenAcquire, thread: 0, deadline: nil, waiter: nil)), ["recall 1"])
    }

    func testConditionTicketsAreNotMissedBeforeTheWait() {
        var s = Model()
        let t1 = replies(s.handle(c, .condEnqueue, thread: 1, deadline: nil, waiter: 1))[0].1
        let t2 = replies(s.handle(c, .condEnqueue, thread: 2, deadline: nil, waiter: 2))[0].1
        XCTAssertNotEqual(t1, t2)
        // A signal between the enqueue and the wait (the waiter has released
        // its mutex, the signaller took it) marks the first ticket.
        XCTAssertEqual(replies(s.handle(c, .condSignal, thread: 3, deadline: nil, waiter: 3)).map(\.0), [3])
        XCTAssertEqual(replies(s.handle(c, .condAwait(ticket: UInt64(t1)), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
        XCTAssertTrue(s.handle(c, .condAwait(ticket: UInt64(t2)), thread: 2, deadline: nil, waiter: 2).isEmpty)
        XCTAssertEqual(replies(s.handle(c, .condBroadcast, thread: 3, deadline: nil, waiter: 3)).map(\.0), [2, 3])
    }

    func testTimedWaitsExpire() {
        var s = Model()
        let ticket = replies(s.handle(c, .condEnqueue, thread: 1, deadline: nil, waiter: 1))[0].1
        XCTAssertTrue(s.handle(c, .condAwait(ticket: UInt64(ticket)), thread: 1, deadline: 200, waiter: 1).isEmpty)
        let sem: UInt64 = 0x5000
        XCTAssertTrue(s.handle(sem, .semWait(tryOnly: false), thread: 2, deadline: 100, waiter: 2).isEmpty)
        XCTAssertEqual(s.nextDeadline, 100)
        XCTAssertTrue(s.expire(now: 99).isEmpty)
        XCTAssertEqual(replies(s.expire(now: 150)).map { [$0.0, Int($0.1)] }, [[2, -Int(SyncErrno.ETIMEDOUT)]])
        XCTAssertEqual(s.nextDeadline, 200)
        XCTAssertEqual(replies(s.expire(now: 250)).map(\.0), [1])
        XCTAssertNil(s.nextDeadline)
        // Gone from the queues: a post and a signal find nobody.
        XCTAssertEqual(replies(s.handle(c, .condSignal, thread: 3, deadline: nil, waiter: 3)).map(\.0), [3])
        XCTAssertEqual(replies(s.handle(sem, .semPost, thread: 3, deadline: nil, waiter: 3)).map(\.0), [3])
        XCTAssertEqual(replies(s.handle(sem, .semValue, thread: 3, deadline: nil, waiter: 3)).map(\.1), [1])
    }

    func testBarrierReleasesAllWithOneSerialThread() {
        var s = Model()
        let b: UInt64 = 0x3000
        XCTAssertEqual(replies(s.handle(b, .barrierInit(count: 0), thread: 1, deadline: nil, waiter: 1)).map(\.1), [-SyncErrno.EINVAL])
        _ = s.handle(b, .barrierInit(count: 3), thread: 1, deadline: nil, waiter: 1)
        for round in 0..<2 {
            XCTAssertTrue(s.handle(b, .barrierWait, thread: 1, deadline: nil, waiter: 1).isEmpty)
            XCTAssertTrue(s.handle(b, .barrierWait, thread: 2, deadline: nil, waiter: 2).isEmpty)
            let r = replies(s.handle(b, .barrierWait, thread: 3, deadline: nil, waiter: 3))
            XCTAssertEqual(r.map(\.0), [1, 2, 3], "round \(round)")
            XCTAssertEqual(r.filter { $0.1 == Model.serialThread }.count, 1)
        }
    }

    func testReadersShareWritersExclude() {
        var s = Model()
        let l: UInt64 = 0x4000
        XCTAssertEqual(replies(s.handle(l, .readLock(tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
        XCTAssertEqual(replies(s.handle(l, .readLock(tryOnly: false), thread: 2, deadline: nil, waiter: 2)).map(\.1), [0])
        XCTAssertEqual(replies(s.handle(l, .writeLock(tryOnly: true), thread: 3, deadline: nil, waiter: 3)).map(\.1), [-SyncErrno.EBUSY])
        XCTAssertTrue(s.handle(l, .writeLock(tryOnly: false), thread: 3, deadline: nil, waiter: 3).isEmpty)
        XCTAssertEqual(replies(s.handle(l, .rwUnlock, thread: 1, deadline: nil, waiter: 1)).map(\.0), [1])
        XCTAssertEqual(replies(s.handle(l, .rwUnlock, thread: 2, deadline: nil, waiter: 2)).map(\.0), [3, 2], "the writer goes in last")
    }

    func testSemaphoreCountsAndWakes() {
        var s = Model()
        let sem: UInt64 = 0x5000
        _ = s.handle(sem, .semInit(value: 1), thread: 1, deadline: nil, waiter: 1)
        XCTAssertEqual(replies(s.handle(sem, .semWait(tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
        XCTAssertEqual(replies(s.handle(sem, .semWait(tryOnly: true), thread: 1, deadline: nil, waiter: 1)).map(\.1), [-SyncErrno.EAGAIN])
        XCTAssertTrue(s.handle(sem, .semWait(tryOnly: false), thread: 2, deadline: nil, waiter: 2).isEmpty)
        XCTAssertEqual(replies(s.handle(sem, .semPost, thread: 1, deadline: nil, waiter: 1)).map(\.0), [2, 1])
        XCTAssertEqual(replies(s.handle(sem, .semValue, thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
    }

    func testFutexWaitWithAStaleSequenceIsRefused() {
        var s = Model()
        let f: UInt64 = 0x6000
        let seq = replies(s.handle(f, .futexSequence, thread: 1, deadline: nil, waiter: 1))[0].1
        XCTAssertEqual(replies(s.handle(f, .futexWake(count: 1), thread: 2, deadline: nil, waiter: 2)).map(\.1), [0])
        XCTAssertEqual(replies(s.handle(f, .futexWait(sequence: UInt64(seq)), thread: 1, deadline: nil, waiter: 1)).map(\.1),
                       [-SyncErrno.EAGAIN], "a wake came between the look at the word and the wait")
        let now = replies(s.handle(f, .futexSequence, thread: 1, deadline: nil, waiter: 1))[0].1
        XCTAssertTrue(s.handle(f, .futexWait(sequence: UInt64(now)), thread: 1, deadline: nil, waiter: 1).isEmpty)
        XCTAssertEqual(replies(s.handle(f, .futexWake(count: 5), thread: 2, deadline: nil, waiter: 2)).map { $0.0 }, [1, 2])
    }
}
