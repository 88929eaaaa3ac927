import CDSMLockState
@testable import DSMSync
import XCTest

// Every interleaving of small worlds of one mutex: the lock service at its
// home (SyncObjects) and each node's side of the token (NodeLock), joined by
// FIFO channels, with threads that lock and unlock it as sync.c does: each
// decision under the entry's spin lock, a notice sent after it, futex waits
// that sleep until a wake (a wake for one thread, or for all on a grant).
// Checked in every state: mutual exclusion, the token on one node at most;
// at the end: every thread done, nothing in flight; and that every state
// can still finish. Time is the recall rule's only clock: a step lets
// `NodeLock.idleNanoseconds` pass for every node.

/// What travels between a node and the home.
enum TokenMessage: Hashable {
    // node -> home
    case acquire, release, busy
    case tryRequest(thread: Int)
    // home -> node
    case grant, recall, tryRecall
    case tryReply(thread: Int, result: Int64)
}

enum TokenThreadPhase: Hashable {
    /// Between locks; `lock` takes the next.
    case idle
    /// About to ask NodeLock (again, after a wait or a try token).
    case locking
    /// Sends the acquire notice, then waits.
    case asking(seen: UInt32)
    /// Calls futex_wait: returns at once if `seq` moved, else sleeps.
    case waiting(seen: UInt32)
    case asleep(seen: UInt32)
    /// Back from the wait (woken, or out of time).
    case woken(timedOut: Bool)
    /// Waits for the home's answer to a try-lock.
    case tryCall
    /// Has the answer, not yet acted on.
    case tryAnswered(gotToken: Bool)
    case inCriticalSection
    /// After the unlock's decision: the release notice, the wake.
    case unlocked(giveBack: Bool, wakeOne: Bool)
}

struct TokenThread: Hashable {
    var node: Int
    var remaining: Int
    var tryOnly: Bool
    /// A timed lock, which may run out of time while it sleeps.
    var timed: Bool
    var phase: TokenThreadPhase = .idle
}

enum TokenMutation {
    case none
    /// The grant forgets to wake the node's sleeping threads.
    case grantWakesNobody
    /// A recall gives the token back even while the mutex is locked.
    case recallIgnoresTheHolder
    /// A try-lock's thread records the token the home said yes with, once
    /// it runs, instead of the runtime thread as the answer comes (how
    /// sync.c did it until this exploration).
    case tryTokenRecordedByTheThread
}

struct TokenWorldConfiguration: CustomStringConvertible {
    var nodes: Int
    var threads: [(node: Int, locks: Int, tryOnly: Bool, timed: Bool)]
    var mutation: TokenMutation = .none

    var description: String {
        let t = threads.map { "n\($0.node):\($0.locks)\($0.tryOnly ? "try" : "")\($0.timed ? "timed" : "")" }
        return "\(nodes) nodes, threads [\(t.joined(separator: " "))]"
    }
}

enum TokenStep: CustomStringConvertible {
    case thread(Int)
    /// Futex wake of a sleeping thread by a grant or an unlock is part of
    /// those steps; a timed sleeper may also run out of time.
    case timeout(Int)
    case toHome(from: Int)
    case toNode(Int)
    case recallDue(Int)
    case timePasses

    var description: String {
        switch self {
        case .thread(let t): "thread \(t) steps"
        case .timeout(let t): "thread \(t) runs out of time"
        case .toHome(let n): "home takes node \(n)'s message"
        case .toNode(let n): "node \(n) takes the home's message"
        case .recallDue(let n): "node \(n) looks at its deferred recall"
        case .timePasses: "50 µs pass"
        }
    }
}

struct TokenViolation: Error {
    var detail: String
}

struct TokenWorld {
    static let object: UInt64 = 0x1000
    /// Now, for every node: a last unlock at `now` is recent, one at
    /// `now - idleNanoseconds` (or earlier) is long ago.
    static let now: Int64 = 1_000_000

    var home = SyncObjects<Int>()
    var locks: [dsm_lock_state]
    var deferredRecall: [Bool]
    var toHome: [[TokenMessage]]
    var toNode: [[TokenMessage]]
    var threads: [TokenThread]
    /// Successors of the last step beyond the first (a wake of one
    /// sleeper among several branches).
    var branches: [TokenWorld] = []

    init(_ config: TokenWorldConfiguration) {
        locks = Array(repeating: dsm_lock_state(), count: config.nodes)
        deferredRecall = Array(repeating: false, count: config.nodes)
        toHome = Array(repeating: [], count: config.nodes)
        toNode = Array(repeating: [], count: config.nodes)
        threads = config.threads.map { TokenThread(node: $0.node, remaining: $0.locks, tryOnly: $0.tryOnly, timed: $0.timed) }
    }

    func enabledSteps() -> [TokenStep] {
        var steps: [TokenStep] = []
        for (index, thread) in threads.enumerated() {
            switch thread.phase {
            case .idle where thread.remaining == 0, .asleep, .tryCall: break
            default: steps.append(.thread(index))
            }
            if thread.timed, case .asleep = thread.phase { steps.append(.timeout(index)) }
        }
        for node in locks.indices {
            if !toHome[node].isEmpty { steps.append(.toHome(from: node)) }
            if !toNode[node].isEmpty { steps.append(.toNode(node)) }
            if deferredRecall[node] { steps.append(.recallDue(node)) }
        }
        if locks.contains(where: { $0.last_unlock > Self.now - NodeLock.idleNanoseconds }) { steps.append(.timePasses) }
        return steps
    }

    /// Applies `step`; a step with several outcomes leaves the others in
    /// `branches`.
    mutating func apply(_ step: TokenStep, _ config: TokenWorldConfiguration) throws(TokenViolation) {
        branches = []
        switch step {
        case .thread(let index): try threadStep(index, config)
        case .timeout(let index): threads[index].phase = .woken(timedOut: true)
        case .toHome(let node):
            let message = toHome[node].removeFirst()
            let operation: SyncOperation
            var waiter: Int?
            switch message {
            case .acquire: operation = .tokenAcquire
            case .release: operation = .tokenRelease
            case .busy: operation = .tokenBusy
            case .tryRequest(let thread):
                operation = .tokenTry
                waiter = thread
            default: throw TokenViolation(detail: "node \(node) sent the home \(message)")
            }
            var effects = HomeEffects(threadNodes: threads.map(\.node))
            home.handle(Self.object, operation, thread: UInt64(node), deadline: nil, waiter: waiter, &effects)
            for (target, message) in effects.sent { toNode[target].append(message) }
        case .toNode(let node):
            let message = toNode[node].removeFirst()
            switch message {
            case .grant:
                let giveBack = NodeLock.granted(&locks[node])
                if giveBack { toHome[node].append(.release) }
                if config.mutation != .grantWakesNobody { wakeAll(on: node) }
            case .recall:
                var recall = NodeLock.recalled(&locks[node], now: Self.now)
                if config.mutation == .recallIgnoresTheHolder, recall == .later {
                    locks[node].token = 0
                    locks[node].recall = 0
                    locks[node].seq &+= 1
                    recall = .giveBack
                }
                if recall == .later { deferredRecall[node] = true }
                if recall == .giveBack { toHome[node].append(.release) }
            case .tryRecall:
                toHome[node].append(NodeLock.tryRecalled(&locks[node]) ? .release : .busy)
            case .tryReply(let thread, let result):
                guard case .tryCall = threads[thread].phase else {
                    throw TokenViolation(detail: "a try-lock answer for thread \(thread), which asked none")
                }
                // The runtime thread records a yes and answers the call; the
                // thread goes on when it runs.
                if result == 1 && config.mutation != .tryTokenRecordedByTheThread { NodeLock.tryTokenArrived(&locks[node]) }
                threads[thread].phase = .tryAnswered(gotToken: result == 1)
            default: throw TokenViolation(detail: "the home sent node \(node) \(message)")
            }
        case .recallDue(let node):
            switch NodeLock.recallDue(&locks[node], now: Self.now) {
            case .giveBack:
                deferredRecall[node] = false
                toHome[node].append(.release)
            case .settled: deferredRecall[node] = false
            case .notYet: break
            }
        case .timePasses:
            for node in locks.indices { locks[node].last_unlock = min(locks[node].last_unlock, Self.now - NodeLock.idleNanoseconds) }
        }
    }

    private mutating func threadStep(_ index: Int, _ config: TokenWorldConfiguration) throws(TokenViolation) {
        let thread = threads[index]
        let node = thread.node
        let self_ = UInt64(index + 1)
        switch thread.phase {
        case .idle, .locking:
            switch NodeLock.lock(&locks[node], thread: self_, tryOnly: thread.tryOnly) {
            case .acquired: threads[index].phase = .inCriticalSection
            case .refused(.busy): finishIteration(index)
            case .refused(.deadlock): throw TokenViolation(detail: "thread \(index) deadlocked a normal mutex")
            case .askTry:
                toHome[node].append(.tryRequest(thread: index))
                threads[index].phase = .tryCall
            case .wait(let ask, let seen): threads[index].phase = ask ? .asking(seen: seen) : .waiting(seen: seen)
            }
        case .asking(let seen):
            toHome[node].append(.acquire)
            threads[index].phase = .waiting(seen: seen)
        case .waiting(let seen):
            threads[index].phase = locks[node].seq != seen ? .woken(timedOut: false) : .asleep(seen: seen)
        case .woken(let timedOut):
            if NodeLock.endWait(&locks[node], timedOut: timedOut) { toHome[node].append(.release) }
            if timedOut {
                finishIteration(index)
            } else {
                // The next attempt in the same step: sync.c keeps the
                // entry locked from the end of the wait to it.
                threads[index].phase = .locking
                try threadStep(index, config)
            }
        case .inCriticalSection:
            switch NodeLock.unlock(&locks[node], thread: self_, now: Self.now) {
            case .released(let giveBack, let wakeOne): threads[index].phase = .unlocked(giveBack: giveBack, wakeOne: wakeOne)
            case .notHeld, .stillHeld:
                // The mutex is not this thread's any more (only a broken
                // variant gets here): unlock returns 0, the thread goes on.
                finishIteration(index)
            }
        case .tryAnswered(let gotToken):
            // The end of its wait, then the attempt, in one locked section.
            if gotToken && config.mutation == .tryTokenRecordedByTheThread { NodeLock.tryTokenArrived(&locks[node]) }
            _ = NodeLock.endWait(&locks[node], timedOut: false)
            if gotToken {
                threads[index].phase = .locking
                try threadStep(index, config)
            } else {
                finishIteration(index)
            }
        case .unlocked(let giveBack, let wakeOne):
            if giveBack { toHome[node].append(.release) }
            finishIteration(index)
            if wakeOne { wakeOneSleeper(on: node) }
        case .asleep, .tryCall:
            throw TokenViolation(detail: "thread \(index) stepped while blocked")
        }
    }

    private mutating func finishIteration(_ index: Int) {
        threads[index].remaining -= 1
        threads[index].phase = .idle
    }

    private mutating func wakeAll(on node: Int) {
        for index in threads.indices where threads[index].node == node {
            if case .asleep = threads[index].phase { threads[index].phase = .woken(timedOut: false) }
        }
    }

    /// futex_wake(1): any one sleeper; each choice is a successor.
    private mutating func wakeOneSleeper(on node: Int) {
        let sleepers = threads.indices.filter {
            if threads[$0].node == node, case .asleep = threads[$0].phase { return true }
            return false
        }
        guard let first = sleepers.first else { return }
        for other in sleepers.dropFirst() {
            var branch = self
            branch.branches = []
            branch.threads[other].phase = .woken(timedOut: false)
            branches.append(branch)
        }
        threads[first].phase = .woken(timedOut: false)
    }

    var isFinished: Bool {
        threads.allSatisfy { $0.remaining == 0 && $0.phase == .idle }
            && toHome.allSatisfy(\.isEmpty) && toNode.allSatisfy(\.isEmpty)
    }

    func checkInvariants() throws(TokenViolation) {
        let inside = threads.indices.filter { threads[$0].phase == .inCriticalSection }
        if inside.count > 1 { throw TokenViolation(detail: "threads \(inside) hold the mutex at once") }
        let holders = locks.indices.filter { locks[$0].token != 0 }
        if holders.count > 1 { throw TokenViolation(detail: "nodes \(holders) hold the token at once") }
    }

    /// Everything that decides the future.
    var key: TokenWorldKey {
        var k = TokenWorldKey()
        for s in locks {
            k.locks.append([Int64(s.waiters), Int64(s.count), Int64(s.uses), Int64(s.owner),
                            Self.now - s.last_unlock >= NodeLock.idleNanoseconds ? 1 : 0,
                            Int64(s.token), Int64(s.requesting), Int64(s.recall), Int64(s.locked)])
        }
        k.deferred = deferredRecall
        k.toHome = toHome
        k.toNode = toNode
        // Only whether a thread's `seen` is the node's `seq` decides
        // anything: the key keeps that, not the count.
        k.threads = threads.map { thread in
            var t = thread
            let seq = locks[thread.node].seq
            switch t.phase {
            case .asking(let seen): t.phase = .asking(seen: seen == seq ? 0 : 1)
            case .waiting(let seen): t.phase = .waiting(seen: seen == seq ? 0 : 1)
            case .asleep(let seen): t.phase = .asleep(seen: seen == seq ? 0 : 1)
            default: break
            }
            return t
        }
        if let t = home.tokens[Self.object] {
            k.home = [t.holder ?? -1, t.recalled ? 1 : 0, t.trying?.node ?? -1, t.trying?.waiter ?? -1] + t.queue
        }
        return k
    }
}

struct TokenWorldKey: Hashable {
    var locks: [[Int64]] = []
    var deferred: [Bool] = []
    var toHome: [[TokenMessage]] = []
    var toNode: [[TokenMessage]] = []
    var threads: [TokenThread] = []
    var home: [Int] = []
}

/// The home's effects in the order it made them: the runtime sends them so,
/// on one FIFO stream per node.
struct HomeEffects: SyncEffects {
    /// (node, message); a reply goes to the node of the thread that waits.
    var sent: [(Int, TokenMessage)] = []
    let threadNodes: [Int]
    mutating func reply(_ waiter: Int, _ result: Int64) {
        sent.append((threadNodes[waiter], .tryReply(thread: waiter, result: result)))
    }
    mutating func grant(_ object: UInt64, to node: Int) { sent.append((node, .grant)) }
    mutating func recall(_ object: UInt64, from node: Int) { sent.append((node, .recall)) }
    mutating func tryRecall(_ object: UInt64, from node: Int) { sent.append((node, .tryRecall)) }
}

struct TokenExplorer {
    struct Result {
        var states = 0
        var transitions = 0
        var violation: String?
        var trace: [String] = []
        /// How often each kind of event happened, over all transitions.
        var recalls = 0, deferredRecalls = 0, tryRecalls = 0, timeouts = 0, grantsGivenBack = 0
    }

    let config: TokenWorldConfiguration
    /// A world bigger than this is a mistake in the model, or too big to
    /// explore in the suite: it fails instead of exhausting memory.
    static let stateLimit = 2_000_000

    func run() -> Result {
        var result = Result()
        var ids: [TokenWorldKey: Int] = [:]
        var edges: [(Int, Int)] = []
        var finished: [Int] = []
        struct Frame {
            var world: TokenWorld
            var id: Int
            var steps: [TokenStep]
            var next = 0
            var pending: [TokenWorld] = []
            var label = ""
        }
        let initial = TokenWorld(config)
        ids[initial.key] = 0
        result.states = 1
        var stack = [Frame(world: initial, id: 0, steps: initial.enabledSteps())]
        func fail(_ detail: String) -> Result {
            var failed = result
            failed.violation = detail
            failed.trace = stack.map(\.label).filter { !$0.isEmpty }
            return failed
        }
        // Visits a successor: a new state gets a frame.
        func visit(_ world: TokenWorld, from id: Int, label: String) -> Result? {
            if let known = ids[world.key] {
                edges.append((id, known))
                return nil
            }
            let newID = result.states
            if newID >= TokenExplorer.stateLimit { return fail("more than \(TokenExplorer.stateLimit) states") }
            ids[world.key] = newID
            edges.append((id, newID))
            result.states += 1
            do throws(TokenViolation) { try world.checkInvariants() } catch {
                stack[stack.count - 1].label = label
                return fail(error.detail)
            }
            let steps = world.enabledSteps()
            if steps.isEmpty {
                if world.isFinished {
                    finished.append(newID)
                } else {
                    stack[stack.count - 1].label = label
                    return fail("stuck: nothing can happen, yet threads \(world.threads.indices.filter { world.threads[$0].remaining > 0 }) are unfinished")
                }
            }
            stack.append(Frame(world: world, id: newID, steps: steps))
            return nil
        }
        while !stack.isEmpty {
            let top = stack.count - 1
            if let branch = stack[top].pending.popLast() {
                if let failed = visit(branch, from: stack[top].id, label: stack[top].label + " (another sleeper woken)") { return failed }
                continue
            }
            guard stack[top].next < stack[top].steps.count else {
                stack.removeLast()
                continue
            }
            let step = stack[top].steps[stack[top].next]
            stack[top].next += 1
            var world = stack[top].world
            let before = world
            do throws(TokenViolation) { try world.apply(step, config) } catch {
                stack[top].label = "\(step)"
                return fail(error.detail)
            }
            result.transitions += 1
            count(step, before, world, &result)
            stack[top].label = "\(step)"
            stack[top].pending = world.branches
            world.branches = []
            if let failed = visit(world, from: stack[top].id, label: "\(step)") { return failed }
        }
        let trapped = Self.statesThatCannotFinish(states: result.states, edges: edges, finished: finished)
        if trapped > 0 { result.violation = "\(trapped) reachable states from which no run finishes" }
        return result
    }

    private func count(_ step: TokenStep, _ before: TokenWorld, _ after: TokenWorld, _ result: inout Result) {
        switch step {
        case .toNode(let node):
            switch before.toNode[node].first {
            case .recall?:
                result.recalls += 1
                if after.deferredRecall[node] && !before.deferredRecall[node] { result.deferredRecalls += 1 }
            case .tryRecall?: result.tryRecalls += 1
            case .grant?: if after.toHome[node].last == .release && before.toHome[node].count < after.toHome[node].count { result.grantsGivenBack += 1 }
            default: break
            }
        case .timeout: result.timeouts += 1
        default: break
        }
    }

    static func statesThatCannotFinish(states: Int, edges: [(Int, Int)], finished: [Int]) -> Int {
        var predecessors = Array(repeating: [Int](), count: states)
        for (from, to) in edges { predecessors[to].append(from) }
        var canFinish = Array(repeating: false, count: states)
        var work = finished
        for state in finished { canFinish[state] = true }
        while let state = work.popLast() {
            for source in predecessors[state] where !canFinish[source] {
                canFinish[source] = true
                work.append(source)
            }
        }
        return canFinish.reduce(0) { $1 ? $0 : $0 + 1 }
    }
}

final class TokenExplorationTests: XCTestCase {
    /// Two nodes competing for one mutex, with two threads on one of them;
    /// try-locks; a timed lock that may give up.
    func testLockTokensKeepMutualExclusionAndAlwaysFinish() {
        let configs = [
            TokenWorldConfiguration(nodes: 2, threads: [(0, 2, false, false), (1, 2, false, false)]),
            TokenWorldConfiguration(nodes: 2, threads: [(0, 2, false, false), (0, 1, false, false), (1, 2, false, false)]),
            TokenWorldConfiguration(nodes: 2, threads: [(0, 2, false, false), (1, 1, true, false), (1, 1, false, false)]),
            TokenWorldConfiguration(nodes: 2, threads: [(0, 2, false, false), (1, 1, false, true), (1, 1, false, false)]),
            TokenWorldConfiguration(nodes: 3, threads: [(0, 1, false, false), (1, 1, false, false), (2, 1, true, false)]),
        ]
        var total = TokenExplorer.Result()
        for config in configs {
            let result = TokenExplorer(config: config).run()
            report(config, result)
            XCTAssertNil(result.violation, "\(config)")
            total.recalls += result.recalls
            total.deferredRecalls += result.deferredRecalls
            total.tryRecalls += result.tryRecalls
            total.timeouts += result.timeouts
            total.grantsGivenBack += result.grantsGivenBack
        }
        XCTAssertGreaterThan(total.recalls, 0)
        XCTAssertGreaterThan(total.deferredRecalls, 0)
        XCTAssertGreaterThan(total.tryRecalls, 0)
        XCTAssertGreaterThan(total.timeouts, 0)
        XCTAssertGreaterThan(total.grantsGivenBack, 0, "a timed lock gave up before its grant came")
    }

    /// The checker can fail: a grant that wakes nobody strands the node's
    /// sleeping threads; a recall obeyed while the mutex is held lets two
    /// nodes in at once; a try-lock's token recorded by its thread misses
    /// the recall that follows the answer, and the other node waits for
    /// ever.
    func testBrokenTokenHandlingIsCaught() {
        var stranded = TokenWorldConfiguration(nodes: 2, threads: [(0, 1, false, false), (1, 1, false, false)])
        stranded.mutation = .grantWakesNobody
        let lost = TokenExplorer(config: stranded).run()
        report(stranded, lost)
        XCTAssertNotNil(lost.violation)

        var eager = TokenWorldConfiguration(nodes: 2, threads: [(0, 1, false, false), (1, 1, false, false)])
        eager.mutation = .recallIgnoresTheHolder
        let twoInside = TokenExplorer(config: eager).run()
        report(eager, twoInside)
        XCTAssertTrue(twoInside.violation?.contains("at once") == true, twoInside.violation ?? "no violation")

        var late = TokenWorldConfiguration(nodes: 2, threads: [(0, 2, false, false), (1, 1, true, false), (1, 1, false, false)])
        late.mutation = .tryTokenRecordedByTheThread
        let kept = TokenExplorer(config: late).run()
        report(late, kept)
        XCTAssertTrue(kept.violation?.contains("stuck") == true, kept.violation ?? "no violation")
    }

    private func report(_ config: TokenWorldConfiguration, _ result: TokenExplorer.Result) {
        let mutation = config.mutation == .none ? "" : " [\(config.mutation)]"
        print("token exploration: \(config)\(mutation): \(result.states) states, \(result.transitions) transitions")
        if let violation = result.violation {
            print("  \(violation)")
            for (number, step) in result.trace.enumerated() { print("  \(number + 1). \(step)") }
        }
    }
}
