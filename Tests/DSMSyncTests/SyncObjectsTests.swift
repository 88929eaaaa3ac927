import DSMSync
import XCTest

/// The lock service's model alone: waiters are numbers, replies are checked
/// in the order the model gives them.
final class SyncObjectsTests: XCTestCase {
    typealias Model = SyncObjects<Int>
    let m: UInt64 = 0x1000
    let c: UInt64 = 0x2000

    private func replies(_ actions: [Model.Action]) -> [(Int, Int64)] {
        actions.compactMap { if case .reply(let w, let r) = $0 { return (w, r) } else { return nil } }
    }

    func testMutexQueuesAndHandsOverInOrder() {
        var s = Model()
        XCTAssertEqual(replies(s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
        XCTAssertTrue(s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 2, deadline: nil, waiter: 2).isEmpty)
        XCTAssertTrue(s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 3, deadline: nil, waiter: 3).isEmpty)
        XCTAssertEqual(replies(s.handle(m, .mutexTryLockProbe, thread: 4, deadline: nil, waiter: 4)).map(\.1), [-SyncErrno.EBUSY])
        let r = replies(s.handle(m, .mutexUnlock, thread: 1, deadline: nil, waiter: 1))
        XCTAssertEqual(r.map(\.0), [2, 1], "the next in line gets the mutex, then the unlocker its answer")
        let r2 = replies(s.handle(m, .mutexUnlock, thread: 2, deadline: nil, waiter: 2))
        XCTAssertEqual(r2.map(\.0), [3, 2])
    }

    func testStaticMutexAsksForItsKindOnce() {
        var s = Model()
        XCTAssertEqual(replies(s.handle(m, .mutexLock(kind: nil, tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1),
                       [Model.kindNeeded])
        XCTAssertEqual(replies(s.handle(m, .mutexLock(kind: .recursive, tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
        XCTAssertEqual(replies(s.handle(m, .mutexLock(kind: nil, tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1), [0],
                       "known now: recursive relock by its owner")
    }

    func testErrorCheckingMutex() {
        var s = Model()
        _ = s.handle(m, .mutexInit(.errorCheck), thread: 1, deadline: nil, waiter: 1)
        _ = s.handle(m, .mutexLock(kind: nil, tryOnly: false), thread: 1, deadline: nil, waiter: 1)
        XCTAssertEqual(replies(s.handle(m, .mutexLock(kind: nil, tryOnly: false), thread: 1, deadline: nil, waiter: 1)).map(\.1),
                       [-SyncErrno.EDEADLK])
        XCTAssertEqual(replies(s.handle(m, .mutexUnlock, thread: 2, deadline: nil, waiter: 2)).map(\.1), [-SyncErrno.EPERM])
        XCTAssertEqual(replies(s.handle(m, .mutexUnlock, thread: 1, deadline: nil, waiter: 1)).map(\.1), [0])
    }

    func testConditionWaitReleasesTheMutexAndSignalWakesOne() {
        var s = Model()
        _ = s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 1, deadline: nil, waiter: 1)
        let wait = s.handle(c, .condWait(mutex: m), thread: 1, deadline: nil, waiter: 1)
        guard case .unlockMutex(let mutex, let thread)? = wait.first else { return XCTFail("no unlock: \(wait)") }
        XCTAssertEqual(mutex, m)
        XCTAssertEqual(thread, 1)
        _ = s.handle(c, .condWait(mutex: m), thread: 2, deadline: nil, waiter: 2)
        XCTAssertEqual(replies(s.handle(c, .condSignal, thread: 3, deadline: nil, waiter: 3)).map(\.0), [1, 3])
        XCTAssertEqual(replies(s.handle(c, .condBroadcast, thread: 3, deadline: nil, waiter: 3)).map(\.0), [2, 3])
    }

    func testTimedWaitsExpire() {
        var s = Model()
        _ = s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 1, deadline: nil, waiter: 1)
        _ = s.handle(m, .mutexLock(kind: .normal, tryOnly: false), thread: 2, deadline: 100, waiter: 2)
        _ = s.handle(c, .condWait(mutex: m), thread: 3, deadline: 200, waiter: 3)
        XCTAssertEqual(s.nextDeadline, 100)
        XCTAssertTrue(s.expire(now: 99).isEmpty)
        XCTAssertEqual(replies(s.expire(now: 150)).map { [$0.0, Int($0.1)] }, [[2, -Int(SyncErrno.ETIMEDOUT)]])
        XCTAssertEqual(s.nextDeadline, 200)
        XCTAssertEqual(replies(s.expire(now: 250)).map(\.0), [3])
        XCTAssertNil(s.nextDeadline)
        // The timed-out locker is gone from the queue: unlock frees the mutex.
        XCTAssertEqual(replies(s.handle(m, .mutexUnlock, thread: 1, deadline: nil, waiter: 1)).map(\.0), [1])
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

extension SyncOperation {
    static var mutexTryLockProbe: SyncOperation { .mutexLock(kind: .normal, tryOnly: true) }
}
