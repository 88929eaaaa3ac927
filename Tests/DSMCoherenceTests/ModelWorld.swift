@testable import DSMCoherence
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// A closed world for exhaustive exploration: N `CoherenceNode`s, one FIFO
/// channel per ordered pair of nodes (self included), each node's mapping of
/// each page with the contents it holds, and threads running bounded
/// nondeterministic programs. Page contents are modelled by a version number:
/// every write stores `lastWritten + 1`.
///
/// Pages are `PageID(container: 0, index: i)`, homed on node `i % nodes`.
struct ModelConfiguration: CustomStringConvertible {
    var nodes: Int
    var pages: Int
    /// The node each thread runs on.
    var threadNodes: [NodeID]
    /// How many accesses each thread makes; each is a read or a write of any page.
    var threadAccesses: [Int]
    var checks: ModelChecks = .all
    var mutation: ModelMutation = .none
    /// Requests each node may send ahead of any fault (readahead), for any
    /// page and either access, at any moment.
    var prefetchesPerNode = 0
    /// Pages brought in for a waiting thread hold (`CoherenceNode.holdsPages`):
    /// a message taking one away waits until its window closes, which may
    /// happen at any moment after it opened.
    var holdWindows = false
    /// A sharer's drop waits, still mapped read-only, until the node's
    /// frames next leave (the runtime's pending drops, punched just before
    /// them); frames to other nodes wait in an outbox meanwhile. An owner's
    /// drop after its answer (answer-before-drop) goes at once, its answer
    /// and everything queued before it leaving first.
    var deferredDrops = false

    /// One thread per node, each making `accessesPerThread` accesses.
    init(nodes: Int, pages: Int, accessesPerThread: Int) {
        self.init(nodes: nodes, pages: pages,
                  threads: (0..<nodes).map { (node: $0, accesses: accessesPerThread) })
    }

    init(nodes: Int, pages: Int, threads: [(node: NodeID, accesses: Int)]) {
        self.nodes = nodes
        self.pages = pages
        threadNodes = threads.map(\.node)
        threadAccesses = threads.map(\.accesses)
    }

    var description: String {
        let threads = zip(threadNodes, threadAccesses).map { "n\($0.0):\($0.1)" }.joined(separator: " ")
        return "\(nodes) nodes, \(pages) page\(pages == 1 ? "" : "s"), threads [\(threads)]" + (holdWindows ? ", hold windows" : "")
            + (deferredDrops ? ", deferred drops" : "")
    }
}

struct ModelChecks: OptionSet {
    let rawValue: Int
    // Plain flags: OptionSet.contains is generic and slow in debug builds,
    // and the checks run on every state.
    var singleWriterOn: Bool { rawValue & Self.singleWriter.rawValue != 0 }
    var freshReadsOn: Bool { rawValue & Self.freshReads.rawValue != 0 }
    var freshCopiesOn: Bool { rawValue & Self.freshCopies.rawValue != 0 }
    var noDeadlockOn: Bool { rawValue & Self.noDeadlock.rawValue != 0 }
    var mappingsMatchStatesOn: Bool { rawValue & Self.mappingsMatchStates.rawValue != 0 }
    var canAlwaysFinishOn: Bool { rawValue & Self.canAlwaysFinish.rawValue != 0 }
    /// At most one node maps a page read-write, and then nobody else maps it.
    static let singleWriter = ModelChecks(rawValue: 1 << 0)
    /// Every read returns the last value written.
    static let freshReads = ModelChecks(rawValue: 1 << 1)
    /// Every mapping holds the last value written.
    static let freshCopies = ModelChecks(rawValue: 1 << 2)
    /// A state with nothing left to do has no blocked thread and no message in flight.
    static let noDeadlock = ModelChecks(rawValue: 1 << 3)
    /// Every node's `localState` agrees with what it has mapped, and effects
    /// only act on mappings that exist (writeProtect a RW page, ...).
    static let mappingsMatchStates = ModelChecks(rawValue: 1 << 4)
    /// From every reachable state some run still finishes every thread (no
    /// livelock trap; programs are bounded, so this is checkable).
    static let canAlwaysFinish = ModelChecks(rawValue: 1 << 5)
    static let all: ModelChecks = [
        .singleWriter, .freshReads, .freshCopies, .noDeadlock, .mappingsMatchStates, .canAlwaysFinish,
    ]
}

/// Deliberately broken runtimes, to show the checker catches real bugs.
enum ModelMutation {
    case none
    /// A sharer acknowledges an invalidation but keeps its mapping.
    case sharerKeepsCopyOnInvalidate
    /// An owner answering a read keeps its read-write mapping.
    case ownerSkipsWriteProtect
    /// The runtime loses every `.done` message.
    case doneIsLost
    /// Channels deliver their messages in any order, not FIFO.
    case channelsReorder
    /// A page handed over whole on a read miss is mapped read-write at
    /// once: its first write goes unseen, and the node later gives it away
    /// as unwritten without write-protecting it.
    case handedOverPageMappedWritable
    /// The runtime ends a hold window but loses the message it held.
    case heldMessageForgotten
    /// The runtime never ends a hold window that holds a message.
    case holdNeverEnds
    /// Frames leave while a drop is still pending: the acknowledgement of
    /// an invalidation overtakes the punch.
    case ackLeavesBeforeThePunch
}

enum ViolationKind: Equatable {
    case twoWriters, staleRead, staleCopy, deadlock, cannotFinish, mappingMismatch, protocolViolation
}

struct ModelViolation: Error {
    var kind: ViolationKind
    var detail: String
}

/// Where a mapped page stands in the model's "MMU".
enum Mapping: UInt8, Hashable {
    case none, readOnly, readWrite

    func permits(_ access: Access) -> Bool {
        switch self {
        case .none: false
        case .readOnly: access == .read
        case .readWrite: true
        }
    }
}

struct MappedCopy: Hashable {
    var mapping: Mapping = .none
    var version: UInt8 = 0
}

struct InFlightMessage: Equatable {
    var message: ProtocolMessage
    /// For `.data`: the version of the sender's copy when it was sent.
    var version: UInt8
}

enum ThreadPhase: UInt8, Hashable {
    /// Between accesses (or finished when `remaining == 0`).
    case idle
    /// Faulted; the node's fault handler has not seen it yet. A separate
    /// step so the page can arrive in between (for another thread of the
    /// node): the handler then finds the access permitted and only wakes.
    case faultPending
    /// The node handled the fault; waiting for `wake`.
    case blocked
    /// Woken: will retry the access.
    case ready
}

struct ModelThread: Hashable {
    var remaining: UInt8
    var phase: ThreadPhase = .idle
    var page: UInt8 = 0
    var access: Access = .read
}

enum ModelStep: CustomStringConvertible {
    /// An idle thread starts its next access.
    case begin(thread: Int, page: Int, access: Access)
    /// A woken thread retries its access.
    case retry(thread: Int)
    /// The node's fault handler takes the thread's fault.
    case handleFault(thread: Int)
    /// The message at `position` (0: the oldest) from `from` to `to` is delivered.
    case deliver(from: NodeID, to: NodeID, position: Int)
    /// The node's runtime asks for a page ahead of any fault.
    case prefetch(node: NodeID, page: Int, access: Access)
    /// The hold window of the page on the node closes.
    case endHold(node: NodeID, page: Int)
    /// The node's pending drops are punched and its queued frames leave.
    case flush(node: NodeID)

    var description: String {
        switch self {
        case .begin(let thread, let page, let access): "thread \(thread) \(access)s page \(page)"
        case .retry(let thread): "thread \(thread) retries"
        case .handleFault(let thread): "thread \(thread)'s fault is handled"
        case .deliver(let from, let to, let position):
            "deliver \(from) -> \(to)" + (position == 0 ? "" : " (message \(position) in the channel)")
        case .prefetch(let node, let page, let access): "node \(node) prefetches page \(page) for \(access)"
        case .endHold(let node, let page): "node \(node)'s hold window on page \(page) closes"
        case .flush(let node): "node \(node) punches its drops and sends its frames"
        }
    }
}

struct ModelWorld {
    var nodes: [CoherenceNode]
    /// Channel from `a` to `b` is `channels[a * nodeCount + b]`.
    var channels: [[InFlightMessage]]
    /// Copy of page `p` on node `n` is `copies[n * pageCount + p]`.
    var copies: [MappedCopy]
    var threads: [ModelThread]
    var lastWritten: [UInt8]
    var prefetchesLeft: [UInt8]
    /// Deferred drops: copies dropped by the protocol but still mapped, and
    /// each node's frames for other nodes waiting for them to be punched.
    var pendingDrops: [Bool]
    var outbox: [[(message: InFlightMessage, to: NodeID)]]

    init(_ config: ModelConfiguration) {
        // The smallest penalty cap that still takes every path (a penalty
        // raised, a cap reached): the real cap multiplies states, not paths.
        nodes = (0..<config.nodes).map {
            CoherenceNode(node: $0, nodes: config.nodes, maxMigrationPenalty: 1, holdsPages: config.holdWindows)
        }
        for index in nodes.indices { nodes[index].addContainer(0, pages: config.pages) }
        channels = Array(repeating: [], count: config.nodes * config.nodes)
        copies = Array(repeating: MappedCopy(), count: config.nodes * config.pages)
        threads = config.threadAccesses.map { ModelThread(remaining: UInt8($0)) }
        lastWritten = Array(repeating: 0, count: config.pages)
        prefetchesLeft = Array(repeating: UInt8(config.prefetchesPerNode), count: config.nodes)
        pendingDrops = Array(repeating: false, count: config.nodes * config.pages)
        outbox = Array(repeating: [], count: config.nodes)
    }

    static func page(_ index: Int) -> PageID { PageID(container: 0, index: UInt32(index)) }

    // MARK: Steps

    func enabledSteps(_ config: ModelConfiguration) -> [ModelStep] {
        var steps: [ModelStep] = []
        for (index, thread) in threads.enumerated() {
            switch thread.phase {
            case .idle where thread.remaining > 0:
                for page in 0..<config.pages {
                    steps.append(.begin(thread: index, page: page, access: .read))
                    steps.append(.begin(thread: index, page: page, access: .write))
                }
            case .ready: steps.append(.retry(thread: index))
            case .faultPending: steps.append(.handleFault(thread: index))
            case .idle, .blocked: break
            }
        }
        for node in 0..<config.nodes where prefetchesLeft[node] > 0 {
            for page in 0..<config.pages {
                steps.append(.prefetch(node: node, page: page, access: .read))
                steps.append(.prefetch(node: node, page: page, access: .write))
            }
        }
        if config.deferredDrops {
            for node in 0..<config.nodes where !outbox[node].isEmpty || hasPendingDrop(node, config) {
                steps.append(.flush(node: node))
            }
        }
        if config.holdWindows {
            for node in 0..<config.nodes {
                for page in 0..<config.pages where nodes[node].isHolding(Self.page(page)) {
                    if config.mutation == .holdNeverEnds, nodes[node].containers[0]!.local[page].held != .none { continue }
                    steps.append(.endHold(node: node, page: page))
                }
            }
        }
        for from in 0..<config.nodes {
            for to in 0..<config.nodes {
                let waiting = channels[from * config.nodes + to].count
                let deliverable = config.mutation == .channelsReorder ? waiting : min(waiting, 1)
                for position in 0..<deliverable { steps.append(.deliver(from: from, to: to, position: position)) }
            }
        }
        return steps
    }

    mutating func apply(_ step: ModelStep, _ config: ModelConfiguration) throws(ModelViolation) {
        switch step {
        case .begin(let index, let page, let access):
            threads[index].page = UInt8(page)
            threads[index].access = access
            try attempt(index, config)
        case .retry(let index):
            try attempt(index, config)
        case .handleFault(let index):
            let node = config.threadNodes[index]
            let thread = threads[index]
            threads[index].phase = .blocked  // before effects: a spurious fault wakes it at once
            var sink = RecordingEffects()
            nodes[node].fault(Self.page(Int(thread.page)), thread.access, &sink)
            try perform(sink.effects, on: node, handling: nil, config)
        case .prefetch(let node, let page, let access):
            prefetchesLeft[node] -= 1
            var sink = RecordingEffects()
            nodes[node].prefetch(Self.page(page), access, &sink)
            try perform(sink.effects, on: node, handling: nil, config)
        case .endHold(let node, let page):
            if config.mutation == .heldMessageForgotten {
                var local = nodes[node].containers[0]!.local[page]
                local.holding = false
                local.held = .none
                nodes[node].setLocalPage(Self.page(page), local)
                return
            }
            var sink = RecordingEffects()
            nodes[node].endHold(Self.page(page), &sink)
            try perform(sink.effects, on: node, handling: nil, config)
        case .flush(let node):
            flush(node, config)
        case .deliver(let from, let to, let position):
            let delivered = channels[from * config.nodes + to].remove(at: position)
            var sink = RecordingEffects()
            nodes[to].receive(delivered.message, &sink)
            try perform(sink.effects, on: to, handling: delivered, config)
        }
    }

    /// The thread touches its page: the access happens if the mapping allows
    /// it, otherwise the thread faults (as under userfaultfd / write protection).
    private mutating func attempt(_ index: Int, _ config: ModelConfiguration) throws(ModelViolation) {
        let thread = threads[index]
        let page = Int(thread.page)
        let copyIndex = config.threadNodes[index] * config.pages + page
        guard copies[copyIndex].mapping.permits(thread.access) else {
            threads[index].phase = .faultPending
            return
        }
        switch thread.access {
        case .read:
            if config.checks.freshReadsOn, copies[copyIndex].version != lastWritten[page] {
                throw ModelViolation(kind: .staleRead, detail:
                    "thread \(index) read version \(copies[copyIndex].version) of page \(page), last written \(lastWritten[page])")
            }
        case .write:
            lastWritten[page] += 1
            copies[copyIndex].version = lastWritten[page]
        }
        threads[index].phase = .idle
        threads[index].remaining -= 1
    }

    private func hasPendingDrop(_ node: NodeID, _ config: ModelConfiguration) -> Bool {
        var page = 0
        while page < config.pages {
            if pendingDrops[node * config.pages + page] { return true }
            page += 1
        }
        return false
    }

    /// The runtime's `flushQueued`: pending drops are punched, then the
    /// queued frames leave, in order.
    private mutating func flush(_ node: NodeID, _ config: ModelConfiguration) {
        for page in 0..<config.pages where pendingDrops[node * config.pages + page] {
            pendingDrops[node * config.pages + page] = false
            copies[node * config.pages + page] = MappedCopy()
        }
        for queued in outbox[node] { channels[node * config.nodes + queued.to].append(queued.message) }
        outbox[node] = []
    }

    /// Carries out a node's effects, in order, as the runtime would.
    private mutating func perform(
        _ effects: [Effect], on node: NodeID, handling delivered: InFlightMessage?, _ config: ModelConfiguration
    ) throws(ModelViolation) {
        let strict = config.checks.mappingsMatchStatesOn
        func mismatch(_ detail: String) -> ModelViolation {
            ModelViolation(kind: .mappingMismatch, detail: "node \(node): \(detail)")
        }
        // The page of the answer this handler last sent (RuntimeEffects).
        var answered: Int?
        for effect in effects {
            switch effect {
            case .send(let message, let to):
                if config.mutation == .doneIsLost, case .done = message { continue }
                var version: UInt8 = 0
                if case .data(let page, _, _) = message {
                    let copy = copies[node * config.pages + Int(page.index)]
                    if strict, copy.mapping == .none || pendingDrops[node * config.pages + Int(page.index)] {
                        throw mismatch("sends data of unmapped page \(page)")
                    }
                    version = copy.version
                }
                switch message {
                case .data(let p, _, _), .grant(let p, _, _, _): answered = Int(p.index)
                default: break
                }
                let inFlight = InFlightMessage(message: message, version: version)
                // Frames to other nodes wait behind a pending drop, and
                // behind what waits already; a node's own go at once.
                if config.deferredDrops, to != node, config.mutation != .ackLeavesBeforeThePunch,
                   !outbox[node].isEmpty || hasPendingDrop(node, config) {
                    outbox[node].append((inFlight, to))
                } else {
                    channels[node * config.nodes + to].append(inFlight)
                }
            case .writeProtect(let page):
                if config.mutation == .ownerSkipsWriteProtect { continue }
                let index = node * config.pages + Int(page.index)
                if strict, copies[index].mapping != .readWrite || pendingDrops[index] { throw mismatch("writeProtect of non-RW page \(page)") }
                copies[index].mapping = .readOnly
            case .drop(let page):
                if config.mutation == .sharerKeepsCopyOnInvalidate, case .invalidate = delivered?.message { continue }
                let index = node * config.pages + Int(page.index)
                if strict, copies[index].mapping == .none || pendingDrops[index] { throw mismatch("drop of unmapped page \(page)") }
                if config.deferredDrops {
                    if answered == Int(page.index) {
                        // Answer-before-drop: the answer leaves now, with
                        // everything queued (pending drops punched first).
                        flush(node, config)
                    } else {
                        if strict, copies[index].mapping == .readWrite { throw mismatch("pending drop of a writable page \(page)") }
                        pendingDrops[index] = true
                        continue
                    }
                }
                copies[index] = MappedCopy()
            case .install(let page, let writable):
                let index = node * config.pages + Int(page.index)
                guard let delivered, case .data = delivered.message else {
                    throw mismatch("install without a .data message")
                }
                if strict, copies[index].mapping != .none || pendingDrops[index] { throw mismatch("install over a mapped page \(page)") }
                var writable = writable
                if config.mutation == .handedOverPageMappedWritable, case .data(_, true, _) = delivered.message {
                    writable = true
                }
                copies[index] = MappedCopy(mapping: writable ? .readWrite : .readOnly, version: delivered.version)
            case .installZero(let page):
                let index = node * config.pages + Int(page.index)
                if strict, copies[index].mapping != .none { throw mismatch("installZero over a mapped page \(page)") }
                copies[index] = MappedCopy(mapping: .readWrite, version: 0)
            case .makeWritable(let page):
                let index = node * config.pages + Int(page.index)
                if strict, copies[index].mapping != .readOnly || pendingDrops[index] { throw mismatch("makeWritable of non-RO page \(page)") }
                copies[index].mapping = .readWrite
            case .wake(let page):
                for thread in threads.indices
                where config.threadNodes[thread] == node && threads[thread].phase == .blocked
                    && Int(threads[thread].page) == Int(page.index) {
                    threads[thread].phase = .ready
                }
            case .held:
                // The window may close at any moment (`.endHold`).
                break
            case .violation(let reason, let page):
                throw ModelViolation(kind: .protocolViolation, detail: "node \(node), page \(page): \(reason)")
            }
        }
    }

    // MARK: Invariants

    /// Every thread has made all its accesses and no message is in flight.
    var isFinished: Bool {
        threads.allSatisfy { $0.phase == .idle && $0.remaining == 0 } && channels.allSatisfy(\.isEmpty)
            && nodes.allSatisfy { node in node.containers[0]!.local.allSatisfy { $0.held == .none } }
            && outbox.allSatisfy(\.isEmpty) && !pendingDrops.contains(true)
    }

    func checkInvariants(_ config: ModelConfiguration, terminal: Bool) throws(ModelViolation) {
        for page in 0..<config.pages {
            var writers = 0, mapped = 0
            for node in 0..<config.nodes {
                let copy = copies[node * config.pages + page]
                if copy.mapping != .none { mapped += 1 }
                if copy.mapping == .readWrite { writers += 1 }
                if config.checks.freshCopiesOn, copy.mapping != .none, copy.version != lastWritten[page] {
                    throw ModelViolation(kind: .staleCopy, detail:
                        "node \(node) maps version \(copy.version) of page \(page), last written \(lastWritten[page])")
                }
                if config.checks.mappingsMatchStatesOn {
                    let state = nodes[node].localState(Self.page(page))
                    let expected: Mapping = switch state {
                    case .invalid: .none
                    case .shared, .exclusiveUnwritten: .readOnly
                    case .exclusive: .readWrite
                    }
                    // A pending drop is still mapped read-only.
                    let pending = pendingDrops[node * config.pages + page] && copy.mapping == .readOnly && expected == .none
                    if copy.mapping != expected && !pending {
                        throw ModelViolation(kind: .mappingMismatch, detail:
                            "node \(node) page \(page): state \(state) but mapping \(copy.mapping)")
                    }
                }
            }
            if config.checks.singleWriterOn, writers > 1 || (writers == 1 && mapped > 1) {
                throw ModelViolation(kind: .twoWriters, detail:
                    "page \(page): \(writers) read-write and \(mapped) mappings in all")
            }
        }
        if terminal, config.checks.noDeadlockOn, !isFinished {
            let stuck = threads.indices.filter { threads[$0].phase != .idle || threads[$0].remaining != 0 }
            let inFlight = channels.reduce(0) { $0 + $1.count }
            throw ModelViolation(kind: .deadlock, detail:
                "no step enabled; threads \(stuck) unfinished, \(inFlight) messages in flight")
        }
    }

    // MARK: State key

    /// Everything that determines the future, packed into bytes (statistics
    /// counters are left out, they never influence the protocol).
    // Written with while loops and no tuples: in a debug build, ranges,
    // `indices` and tuples cost generic metadata lookups on every state.
    func key(_ config: ModelConfiguration) -> StateKey {
        var key = StateKey()
        var writer = StateKey.Writer()
        withUnsafeMutableBytes(of: &key.words) { raw in
            writer.raw = raw
            var n = 0
            while n < config.nodes {
                let pages = nodes[n].containers[0]!
                var page = 0
                while page < config.pages {
                    let local = pages.local[page]
                    writer.put(local.state.rawValue | local.outstanding.rawValue << 2 | (local.wantWrite ? 16 : 0))
                    if config.holdWindows {
                        writer.put((local.faultWaiting ? 1 : 0) | (local.holding ? 2 : 0) | local.held.rawValue << 2
                                   | UInt8(bitPattern: local.heldRequester) << 5)
                    }
                    if page % config.nodes == n {
                        let entry = pages.home[page / config.nodes]
                        writer.put(UInt8(bitPattern: entry.owner &+ 1) | entry.phase.rawValue << 4)
                        writer.put(entry.migrationEvidence)
                        writer.put(entry.migrationPenalty)
                        writer.put(UInt8(bitPattern: entry.requester &+ 1) | UInt8(bitPattern: entry.lastServed &+ 1) << 4)
                        writer.put(UInt8(entry.copyset.bits))
                        writer.put(UInt8(entry.awaitingAcks.bits))
                        writer.put(UInt8(entry.waitingReaders.bits))
                        writer.put(UInt8(entry.waitingWriters.bits))
                    }
                    page += 1
                }
                n += 1
            }
            var index = 0
            while index < copies.count {
                writer.put(copies[index].mapping.rawValue | copies[index].version << 2)
                index += 1
            }
            index = 0
            while index < threads.count {
                let thread = threads[index]
                writer.put(thread.remaining | thread.phase.rawValue << 4)
                writer.put(thread.page | thread.access.rawValue << 4)
                index += 1
            }
            index = 0
            while index < lastWritten.count {
                writer.put(lastWritten[index])
                index += 1
            }
            index = 0
            while index < prefetchesLeft.count {
                writer.put(prefetchesLeft[index])
                index += 1
            }
            if config.deferredDrops {
                index = 0
                while index < pendingDrops.count {
                    writer.put(pendingDrops[index] ? 1 : 0)
                    index += 1
                }
                index = 0
                while index < outbox.count {
                    let queued = outbox[index]
                    writer.put(UInt8(queued.count))
                    var position = 0
                    while position < queued.count {
                        writer.put(UInt8(queued[position].to))
                        Self.encode(queued[position].message, &writer)
                        position += 1
                    }
                    index += 1
                }
            }
            index = 0
            while index < channels.count {
                let channel = channels[index]
                writer.put(UInt8(channel.count))
                var position = 0
                while position < channel.count {
                    Self.encode(channel[position], &writer)
                    position += 1
                }
                index += 1
            }
        }
        return key
    }

    private static func encode(_ inFlight: InFlightMessage, _ writer: inout StateKey.Writer) {
        var kind: UInt8 = 0, other = 0, flags: UInt8 = 0
        let page = inFlight.message.page
        switch inFlight.message {
        case .readRequest(_, let from): kind = 0; other = from
        case .writeRequest(_, let from): kind = 1; other = from
        case .forwardRead(_, let requester): kind = 2; other = requester
        case .forwardWrite(_, let requester, let sendData): kind = 3; other = requester; flags = sendData ? 1 : 0
        case .invalidate: kind = 4
        case .invalidateAck(_, let from): kind = 5; other = from
        case .data(_, let writable, let closed): kind = 6; flags = (writable ? 1 : 0) | (closed ? 4 : 0)
        case .grant(_, let writable, let zeroFill, let closed):
            kind = 7; flags = (writable ? 1 : 0) | (zeroFill ? 2 : 0) | (closed ? 4 : 0)
        case .done(_, let from): kind = 8; other = from
        case .unwritten(_, let from): kind = 9; other = from
        }
        writer.put(kind | UInt8(page.index) << 4)
        writer.put(UInt8(other) | flags << 4)
        writer.put(inFlight.version)
    }
}

/// A world state as a fixed 128-byte string: cheap to hash and compare,
/// which matters with millions of states in a debug build.
struct StateKey: Hashable {
    static let capacity = 128
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    struct Writer {
        var count = 0
        var raw = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        mutating func put(_ byte: UInt8) {
            precondition(count < StateKey.capacity, "world state exceeds StateKey.capacity bytes")
            raw[count] = byte
            count += 1
        }
    }

    static func == (a: StateKey, b: StateKey) -> Bool {
        withUnsafeBytes(of: a.words) { x in withUnsafeBytes(of: b.words) { y in memcmp(x.baseAddress!, y.baseAddress!, capacity) == 0 } }
    }

    func hash(into hasher: inout Hasher) {
        withUnsafeBytes(of: words) { hasher.combine(bytes: $0) }
    }
}

/// Depth-first search over every interleaving, with a visited set of full
/// state keys, then a backward search from the finished states for liveness.
struct ModelExplorer {
    struct Result {
        var states = 0
        var transitions = 0
        var terminalStates = 0
        var maxDepth = 0
        /// Totals over all explored transitions: which protocol paths were exercised.
        var stats = CoherenceStats()
        /// Deliveries per message kind (indexed by `MessageKind`).
        var delivered = Array(repeating: 0, count: MessageKind.allCases.count)
        /// Hold windows that closed on a held message, per kind (`HeldKind`).
        var heldReleased = Array(repeating: 0, count: HeldKind.allCases.count)
        /// Flush steps that punched at least one pending drop.
        var flushesWithPendingDrops = 0
        var violation: ModelViolation?
        /// The steps from the initial state to the violation.
        var trace: [String] = []

        func deliveries(_ kind: MessageKind) -> Int { delivered[kind.rawValue] }
        func heldDeliveries(_ kind: HeldKind) -> Int { heldReleased[kind.rawValue] }

        var summary: String {
            "\(states) states, \(transitions) transitions, \(terminalStates) terminal states, depth \(maxDepth)"
        }
    }

    let config: ModelConfiguration

    func run() -> Result {
        var result = Result()
        // State ids, and every transition as (from << 32 | to), for the liveness pass.
        var ids: [StateKey: UInt32] = [:]
        var edges: [UInt64] = []
        var finished: [UInt32] = []
        let recordEdges = config.checks.canAlwaysFinishOn
        struct Frame {
            var world: ModelWorld
            var id: UInt32
            var steps: [ModelStep]
            var next = 0
        }
        let initial = ModelWorld(config)
        ids[initial.key(config)] = 0
        result.states = 1
        var stack = [Frame(world: initial, id: 0, steps: initial.enabledSteps(config))]

        // Each frame's last taken step leads to the next frame; the top
        // frame's leads to the violation.
        func fail(_ violation: ModelViolation, _ stack: [Frame]) -> Result {
            var failed = result
            failed.violation = violation
            failed.trace = stack.map { frame in
                let step = frame.steps[frame.next - 1]
                guard case .deliver(let from, let to, let position) = step else { return "\(step)" }
                let message = frame.world.channels[from * config.nodes + to][position].message
                return "\(step): \(message)"
            }
            return failed
        }

        while !stack.isEmpty {
            let top = stack.count - 1
            guard stack[top].next < stack[top].steps.count else {
                stack.removeLast()
                continue
            }
            let step = stack[top].steps[stack[top].next]
            stack[top].next += 1
            var world = stack[top].world
            for node in 0..<config.nodes { world.nodes[node].resetStats() }
            if case .deliver(let from, let to, let position) = step {
                let message = world.channels[from * config.nodes + to][position].message
                result.delivered[MessageKind(message).rawValue] += 1
            }
            if case .flush(let node) = step,
               world.pendingDrops[(node * config.pages)..<((node + 1) * config.pages)].contains(true) {
                result.flushesWithPendingDrops += 1
            }
            if case .endHold(let node, let page) = step, let kind = HeldKind(world.nodes[node].containers[0]!.local[page].held) {
                result.heldReleased[kind.rawValue] += 1
            }
            do throws(ModelViolation) {
                try world.apply(step, config)
            } catch {
                return fail(error, stack)
            }
            result.transitions += 1
            for node in 0..<config.nodes { result.stats.accumulate(world.nodes[node].stats) }
            let key = world.key(config)
            if let known = ids[key] {
                if recordEdges { edges.append(UInt64(stack[top].id) << 32 | UInt64(known)) }
                continue
            }
            let id = UInt32(result.states)
            ids[key] = id
            if recordEdges { edges.append(UInt64(stack[top].id) << 32 | UInt64(id)) }
            result.states += 1
            let steps = world.enabledSteps(config)
            do throws(ModelViolation) {
                try world.checkInvariants(config, terminal: steps.isEmpty)
            } catch {
                return fail(error, stack)
            }
            if steps.isEmpty {
                result.terminalStates += 1
                if world.isFinished { finished.append(id) }
            }
            stack.append(Frame(world: world, id: id, steps: steps))
            result.maxDepth = max(result.maxDepth, stack.count - 1)
        }
        if recordEdges {
            let trapped = Self.statesThatCannotFinish(states: result.states, edges: edges, finished: finished)
            if trapped > 0 {
                result.violation = ModelViolation(kind: .cannotFinish, detail:
                    "\(trapped) reachable states from which no run finishes")
            }
        }
        return result
    }

    /// Counts states with no path to a finished state: a backward search
    /// from the finished states over the reversed transitions.
    static func statesThatCannotFinish(states: Int, edges: [UInt64], finished: [UInt32]) -> Int {
        // Reversed adjacency in compressed rows: predecessors of state s are
        // sources[firstSource[s] ..< firstSource[s + 1]].
        var firstSource = Array(repeating: 0, count: states + 1)
        for edge in edges { firstSource[Int(edge & 0xFFFF_FFFF) + 1] += 1 }
        for state in 0..<states { firstSource[state + 1] += firstSource[state] }
        var fill = firstSource
        var sources = Array(repeating: UInt32(0), count: edges.count)
        for edge in edges {
            let target = Int(edge & 0xFFFF_FFFF)
            sources[fill[target]] = UInt32(edge >> 32)
            fill[target] += 1
        }
        var canFinish = Array(repeating: false, count: states)
        var work = finished
        for state in finished { canFinish[Int(state)] = true }
        while let state = work.popLast() {
            for index in firstSource[Int(state)]..<firstSource[Int(state) + 1] {
                let source = Int(sources[index])
                if !canFinish[source] {
                    canFinish[source] = true
                    work.append(UInt32(source))
                }
            }
        }
        return canFinish.reduce(0) { $1 ? $0 : $0 + 1 }
    }
}

/// Message kinds as the coverage counters name them.
enum MessageKind: Int, CaseIterable {
    case readRequest, writeRequest, forwardRead, forwardWriteWithData, forwardWriteWithGrant
    case invalidate, invalidateAck, data, zeroFillGrant, upgradeGrant, done, unwritten

    init(_ message: ProtocolMessage) {
        switch message {
        case .readRequest: self = .readRequest
        case .writeRequest: self = .writeRequest
        case .forwardRead: self = .forwardRead
        case .forwardWrite(_, _, let sendData): self = sendData ? .forwardWriteWithData : .forwardWriteWithGrant
        case .invalidate: self = .invalidate
        case .invalidateAck: self = .invalidateAck
        case .data: self = .data
        case .grant(_, _, let zeroFill, _): self = zeroFill ? .zeroFillGrant : .upgradeGrant
        case .done: self = .done
        case .unwritten: self = .unwritten
        }
    }
}

/// Kinds of messages a hold window can hold.
enum HeldKind: Int, CaseIterable {
    case forwardRead, forwardWrite, invalidate

    init?(_ held: HeldTakeaway) {
        switch held {
        case .none: return nil
        case .forwardRead: self = .forwardRead
        case .forwardWrite, .forwardWriteWithData: self = .forwardWrite
        case .invalidate: self = .invalidate
        }
    }
}

extension CoherenceStats {
    mutating func accumulate(_ other: CoherenceStats) {
        readFaults += other.readFaults
        writeFaults += other.writeFaults
        spuriousFaults += other.spuriousFaults
        coalescedFaults += other.coalescedFaults
        readRequestsSent += other.readRequestsSent
        writeRequestsSent += other.writeRequestsSent
        upgradesSent += other.upgradesSent
        invalidationsSent += other.invalidationsSent
        invalidationsReceived += other.invalidationsReceived
        requestsQueued += other.requestsQueued
        dataSent += other.dataSent
        prefetchRequests += other.prefetchRequests
        protocolViolations += other.protocolViolations
        migrationsFound += other.migrationsFound
        handovers += other.handovers
        migrationsEnded += other.migrationsEnded
        silentUpgrades += other.silentUpgrades
        heldMessages += other.heldMessages
    }
}
