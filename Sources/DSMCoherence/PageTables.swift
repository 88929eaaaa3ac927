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
    /// A thread faulted on the page and waits for its answer (a prefetch
    /// alone does not set it): the answer starts a hold window.
    @usableFromInline var faultWaiting = false
    /// The page came for a waiting thread and is in its hold window (see
    /// `CoherenceNode.holdsPages`) until `endHold`.
    @usableFromInline var holding = false
    /// The message that would take the page or its write access away, held
    /// until the hold ends. One at most: the home serves one transaction
    /// per page at a time, and this one cannot finish while it is held.
    @usableFromInline var held: HeldTakeaway = .none
    @usableFromInline var heldRequester: Int8 = 0

    @inlinable init() {}
}

/// A message held back by a page's hold window.
@usableFromInline
enum HeldTakeaway: UInt8, Hashable, Sendable {
    case none, forwardRead, forwardWriteWithData, forwardWrite, invalidate
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

/// The home role's directory entry for one page. All-zero bytes are the
/// entry of a page never touched (the tables are `ZeroTable`s): node fields
/// are stored complemented, so `noNode` (-1) is stored as 0.
@usableFromInline
struct HomeEntry: Hashable, Sendable {
    @usableFromInline var storedOwner: Int8 = 0
    @usableFromInline var storedRequester: Int8 = 0
    @usableFromInline var storedLastServed: Int8 = 0
    @usableFromInline var phase: HomePhase = .idle
    /// Every node with a valid mapping, owner included once there is one.
    @usableFromInline var copyset = NodeSet()
    @usableFromInline var awaitingAcks = NodeSet()
    /// Requests that met a busy page. A node has at most one request per page
    /// in flight, so two masks are a complete, allocation-free queue.
    @usableFromInline var waitingReaders = NodeSet()
    @usableFromInline var waitingWriters = NodeSet()
    /// Writes seen in a row that made the page look migratory: each by a
    /// node that had just read it from the last writer. At
    /// `migrationThreshold` the page migrates, and a read miss takes it
    /// whole (see `CoherenceNode.serve`).
    @usableFromInline var migrationEvidence: UInt8 = 0
    /// Handovers of this page that went unwritten (`.unwritten`), up to
    /// `CoherenceNode.maxMigrationPenalty`: each doubles the evidence
    /// needed next time.
    @usableFromInline var migrationPenalty: UInt8 = 0

    /// Node with the authoritative copy; `noNode` while the page was never touched.
    @inlinable var owner: Int8 {
        get { ~storedOwner }
        set { storedOwner = ~newValue }
    }
    /// The node being served while `phase != .idle`.
    @inlinable var requester: Int8 {
        get { ~storedRequester }
        set { storedRequester = ~newValue }
    }
    /// Round-robin cursor over waiting requesters, so none starves.
    @inlinable var lastServed: Int8 {
        get { ~storedLastServed }
        set { storedLastServed = ~newValue }
    }

    @usableFromInline static let noNode: Int8 = -1
    /// Two writes in a row at first, not one: a page filled by one node and
    /// then read and updated once by another (a matrix column, an array
    /// handed to a worker) looks migratory once and is then read by others;
    /// handing it over would take it away from the node that still reads it
    /// (every column page of MGS paid one more transfer). A page that looks
    /// migratory but is also read by the others in between (a counter next
    /// to read-mostly globals: img_mgs_counter) has its handovers go
    /// unwritten; after each, twice the evidence is needed, up to 64 writes
    /// in a row (`CoherenceNode.maxMigrationPenalty`), so such a page
    /// wastes one handover in 64 steps, not one in three.
    @inlinable var migrationThreshold: UInt8 { 2 << migrationPenalty }
    @inlinable var migratory: Bool { migrationEvidence >= migrationThreshold }

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
    @usableFromInline var local: ZeroTable<LocalPage>
    /// Directory entries of the pages homed on this node only, numbered
    /// densely by `CoherenceNode.homeSlot`.
    @usableFromInline var home: ZeroTable<HomeEntry>

    /// Every entry starts as all-zero bytes, the state of a page never
    /// touched: a large container costs memory only where it is used.
    @inlinable
    init(pages: Int, homeSlots: Int) {
        local = ZeroTable(count: pages)
        home = ZeroTable(count: homeSlots)
    }
}
