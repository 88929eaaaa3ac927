import DSMCore

/// A request this node has sent for a page and not yet seen answered.
@usableFromInline
enum OutstandingRequest: UInt8, Hashable, Sendable {
    case none, read, write
}

/// The local role's view of one page.
@usableFromInline
struct LocalPage: Hashable, Sendable {
    @usableFromInline var state: LocalState = .invalid
    @usableFromInline var outstanding: OutstandingRequest = .none
    /// A write fault arrived while a read request was outstanding: ask for
    /// write access as soon as the read is answered.
    @usableFromInline var wantWrite = false

    @inlinable init() {}
}

/// Where the home is in serving the current request of a page.
@usableFromInline
enum HomePhase: UInt8, Hashable, Sendable {
    /// No transaction: the next request is served at once.
    case idle
    /// Serving a write: waiting for `invalidateAck` from `awaitingAcks`.
    case collectingAcks
    /// Answer sent (or to be sent) by an owner on another node; waiting for
    /// `done` from the requester.
    case awaitingDone
    /// This node, as owner, answers (or has answered) the requester with a
    /// `closed` answer; waiting for the `done` it sends itself right after.
    /// The requester may already have its answer and send a new request,
    /// which then waits in the queue.
    case awaitingSelfDone
}

/// The home role's directory entry for one page.
@usableFromInline
struct HomeEntry: Hashable, Sendable {
    /// Node with the authoritative copy; `noNode` while the page was never touched.
    @usableFromInline var owner: Int8 = HomeEntry.noNode
    @usableFromInline var phase: HomePhase = .idle
    /// The node being served while `phase != .idle`.
    @usableFromInline var requester: Int8 = HomeEntry.noNode
    /// Round-robin cursor over waiting requesters, so none starves.
    @usableFromInline var lastServed: Int8 = HomeEntry.noNode
    /// Every node with a valid mapping, owner included once there is one.
    @usableFromInline var copyset = NodeSet()
    @usableFromInline var awaitingAcks = NodeSet()
    /// Requests that met a busy page. A node has at most one request per page
    /// in flight, so two masks are a complete, allocation-free queue.
    @usableFromInline var waitingReaders = NodeSet()
    @usableFromInline var waitingWriters = NodeSet()

    @usableFromInline static let noNode: Int8 = -1

    @inlinable init() {}

    @inlinable var isBusy: Bool { phase != .idle }

    /// Takes the next waiting requester after `lastServed`, cyclically.
    @inlinable
    mutating func dequeueNext() -> (node: NodeID, access: Access)? {
        let waiting = waitingReaders.bits | waitingWriters.bits
        if waiting == 0 { return nil }
        let start = Int(lastServed) + 1
        let atOrAfterStart = start >= 64 ? 0 : waiting & (~0 << UInt64(start))
        let node = (atOrAfterStart != 0 ? atOrAfterStart : waiting).trailingZeroBitCount
        if waitingWriters.contains(node) {
            waitingWriters.remove(node)
            return (node, .write)
        }
        waitingReaders.remove(node)
        return (node, .read)
    }
}

/// The pages of one container as seen by one node.
@usableFromInline
struct ContainerPages: Hashable, Sendable {
    /// Indexed by page index.
    @usableFromInline var local: [LocalPage]
    /// Directory entries of the pages homed on this node only, numbered
    /// densely by `CoherenceNode.homeSlot`.
    @usableFromInline var home: [HomeEntry]

    @inlinable
    init(pages: Int, homeSlots: Int) {
        local = Array(repeating: LocalPage(), count: pages)
        home = Array(repeating: HomeEntry(), count: homeSlots)
    }
}
