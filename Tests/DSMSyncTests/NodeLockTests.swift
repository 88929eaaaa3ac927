import CDSMLockState
import DSMSync
import XCTest

/// The node side of a lock token, one decision at a time.
final class NodeLockTests: XCTestCase {
    let a: UInt64 = 0xA
    let b: UInt64 = 0xB

    func testFirstLockAsksOnceAndTheGrantLetsItIn() {
        var s = dsm_lock_state()
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .wait(ask: true, seen: 0))
        XCTAssertEqual(NodeLock.lock(&s, thread: b, tryOnly: false), .wait(ask: false, seen: 0),
                       "a second thread waits without asking again")
        XCTAssertFalse(NodeLock.granted(&s), "threads wait: the token stays")
        XCTAssertEqual(s.seq, 1, "the grant changes the word the waiters sleep on")
        XCTAssertFalse(NodeLock.endWait(&s, timedOut: false))
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .acquired)
        XCTAssertFalse(NodeLock.endWait(&s, timedOut: false))
        XCTAssertEqual(NodeLock.lock(&s, thread: b, tryOnly: false), .wait(ask: false, seen: 1), "held here: no message")
        XCTAssertEqual(NodeLock.unlock(&s, thread: a, now: 10), .released(giveBack: false, wakeOne: true))
    }

    func testARecalledTokenStaysForABatchThenGoesAtUnlock() {
        var s = dsm_lock_state()
        s.token = 1
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .acquired)
        XCTAssertEqual(NodeLock.recalled(&s, now: 0), .later, "locked: kept")
        XCTAssertEqual(NodeLock.unlock(&s, thread: a, now: 1), .released(giveBack: false, wakeOne: false),
                       "one use of the batch")
        for _ in 1..<NodeLock.batch {
            XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .acquired)
            _ = NodeLock.unlock(&s, thread: a, now: 2)
        }
        XCTAssertEqual(s.token, 0, "the batch's last unlock gave it back")
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .wait(ask: true, seen: s.seq))
    }

    func testADeferredRecallGoesOnceTheMutexIdles() {
        var s = dsm_lock_state()
        s.token = 1
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .acquired)
        _ = NodeLock.unlock(&s, thread: a, now: 1_000)
        XCTAssertEqual(NodeLock.recalled(&s, now: 1_000 + NodeLock.idleNanoseconds - 1), .later)
        XCTAssertEqual(NodeLock.recallDue(&s, now: 1_000 + NodeLock.idleNanoseconds - 1), .notYet)
        XCTAssertEqual(NodeLock.recallDue(&s, now: 1_000 + NodeLock.idleNanoseconds), .giveBack)
        XCTAssertEqual(NodeLock.recallDue(&s, now: 1_000 + NodeLock.idleNanoseconds), .settled)
    }

    func testKindsAndOwnership() {
        var recursive = dsm_lock_state()
        recursive.token = 1
        recursive.kind = 1
        XCTAssertEqual(NodeLock.lock(&recursive, thread: a, tryOnly: false), .acquired)
        XCTAssertEqual(NodeLock.lock(&recursive, thread: a, tryOnly: true), .acquired)
        XCTAssertEqual(NodeLock.unlock(&recursive, thread: b, now: 0), .notHeld(permitted: false))
        XCTAssertEqual(NodeLock.unlock(&recursive, thread: a, now: 0), .stillHeld)
        XCTAssertEqual(NodeLock.unlock(&recursive, thread: a, now: 0), .released(giveBack: false, wakeOne: false))

        var checking = dsm_lock_state()
        checking.token = 1
        checking.kind = 2
        XCTAssertEqual(NodeLock.lock(&checking, thread: a, tryOnly: false), .acquired)
        XCTAssertEqual(NodeLock.lock(&checking, thread: a, tryOnly: false), .refused(.deadlock))
        XCTAssertEqual(NodeLock.lock(&checking, thread: b, tryOnly: true), .refused(.busy))

        var normal = dsm_lock_state()
        XCTAssertEqual(NodeLock.unlock(&normal, thread: a, now: 0), .notHeld(permitted: true), "glibc does not check")
    }

    func testTryLocksAndTryRecalls() {
        var s = dsm_lock_state()
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: true), .askTry)
        XCTAssertEqual(s.waiters, 1, "counted while it asks: a recall meanwhile finds the mutex wanted")
        NodeLock.tryTokenArrived(&s)  // the runtime thread, as the yes comes
        XCTAssertEqual(NodeLock.recalled(&s, now: 1 << 40), .later, "a recall right behind the yes waits")
        XCTAssertFalse(NodeLock.endWait(&s, timedOut: false))
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: true), .acquired)
        XCTAssertFalse(NodeLock.tryRecalled(&s), "locked here: busy")
        XCTAssertEqual(NodeLock.unlock(&s, thread: a, now: 0), .released(giveBack: false, wakeOne: false))
        XCTAssertTrue(NodeLock.tryRecalled(&s))
        XCTAssertEqual(s.token, 0)
    }

    /// A timed lock that gives up on a recalled token nobody else here
    /// wants sends it back; a grant nobody waits for any more goes back too.
    func testGivingUpReturnsTheToken() {
        var s = dsm_lock_state()
        XCTAssertEqual(NodeLock.lock(&s, thread: a, tryOnly: false), .wait(ask: true, seen: 0))
        XCTAssertFalse(NodeLock.endWait(&s, timedOut: true), "the token is not here yet")
        XCTAssertTrue(NodeLock.granted(&s), "nobody waits: straight back")
        XCTAssertEqual(s.token, 0)
    }
}
