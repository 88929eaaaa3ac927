import DSMCore

/// What a faulting thread tried to do to a page.
public enum Access: UInt8, Sendable {
    case read, write
}

/// A node's own mapping of a page. `exclusive`: mapped read-write, no other
/// node has it mapped (MESI E or M). `exclusiveUnwritten`: no other node has
/// it mapped either, but it came whole on a read miss (a migratory page,
/// handed over) and stays mapped read-only until its first write, which
/// makes it `exclusive` without asking anyone: whether that write came is
/// what tells the home the page still migrates.
public enum LocalState: UInt8, Sendable {
    case invalid, shared, exclusive, exclusiveUnwritten

    /// Whether a thread can perform `access` on a page mapped this way without faulting.
    @inlinable
    public func permits(_ access: Access) -> Bool {
        switch self {
        case .invalid: false
        case .shared, .exclusiveUnwritten: access == .read
        case .exclusive: true
        }
    }

    /// Whether the page is mapped here but write-protected.
    @inlinable
    public var isWriteProtected: Bool { self == .shared || self == .exclusiveUnwritten }
}

/// Everything nodes say to each other about pages. Page contents travel with
/// `.data` only, attached by the runtime.
public enum ProtocolMessage: Equatable, Sendable {
    /// requester -> home
    case readRequest(PageID, from: NodeID)
    /// requester -> home (also the S->M upgrade)
    case writeRequest(PageID, from: NodeID)
    /// home -> owner: downgrade to S and send `.data(writable: false)` to requester.
    case forwardRead(PageID, requester: NodeID)
    /// home -> owner: send `.data(writable: true)` (or `.grant` when the
    /// requester already holds a copy) to requester, then drop the page.
    case forwardWrite(PageID, requester: NodeID, sendData: Bool)
    /// home -> sharer: drop the page and acknowledge to home.
    case invalidate(PageID)
    /// sharer -> home
    case invalidateAck(PageID, from: NodeID)
    /// owner -> requester; the runtime attaches the page contents.
    /// `closed`: sent by the page's home itself, which closes the transaction
    /// on its own (every later message from the home to the requester travels
    /// behind this one on the same FIFO channel): the requester sends no `.done`.
    case data(PageID, writable: Bool, closed: Bool)
    /// Permission without contents. `zeroFill`: first touch of the page
    /// anywhere, install a zero page read-write. Otherwise the requester
    /// already holds the current contents and only gains write access.
    /// `closed` as for `.data`.
    case grant(PageID, writable: Bool, zeroFill: Bool, closed: Bool)
    /// requester -> home: the requester has installed the page; home may serve
    /// the next request for it. Also home -> home, sent by the home acting as
    /// owner right after a `closed` answer.
    case done(PageID, from: NodeID)
    /// owner -> home: a page handed over whole to this node on a read miss
    /// was taken away again before anything wrote it: it no longer migrates,
    /// and the home stops handing it over. A hint: it may arrive at any
    /// moment and only ever changes how a later read is served.
    case unwritten(PageID, from: NodeID)

    /// The page the message is about.
    @inlinable
    public var page: PageID {
        switch self {
        case .readRequest(let page, _), .writeRequest(let page, _),
             .forwardRead(let page, _), .forwardWrite(let page, _, _),
             .invalidate(let page), .invalidateAck(let page, _),
             .data(let page, _, _), .grant(let page, _, _, _), .done(let page, _), .unwritten(let page, _):
            page
        }
    }
}

/// What the state machine asks the runtime to do. Effects are reported in the
/// order they must happen (e.g. `writeProtect` before the `.data` send that
/// copies the page, `drop` after it).
public protocol CoherenceEffects {
    /// Queue a message. It may be addressed to this node itself: the runtime
    /// delivers self-messages later, in FIFO order, never re-entrantly.
    mutating func send(_ message: ProtocolMessage, to node: NodeID)
    /// Read-write mapping -> read-only, keeping the contents.
    mutating func writeProtect(_ page: PageID)
    /// Unmap (MADV_DONTNEED); the page becomes invalid here.
    mutating func drop(_ page: PageID)
    /// Map the contents carried by the `.data` message being handled.
    mutating func install(_ page: PageID, writable: Bool)
    /// Map a zero page read-write (first touch cluster-wide).
    mutating func installZero(_ page: PageID)
    /// Read-only -> read-write, keeping the contents (upgrade).
    mutating func makeWritable(_ page: PageID)
    /// Resume the local threads blocked on this page; they retry the access
    /// and fault again if it is still not permitted.
    mutating func wake(_ page: PageID)
    /// A message that would take `page` (or its write access) away waits
    /// for the page's hold window: the runtime calls `endHold` when the
    /// window closes. Defaults to nothing (a caller that ends holds on its
    /// own schedule).
    mutating func held(_ page: PageID)
    /// An event that cannot happen in a correct run (a bug in the runtime or
    /// in this protocol). The event has been ignored. Defaults to
    /// `assertionFailure`.
    mutating func protocolViolation(_ reason: StaticString, page: PageID)
}

extension CoherenceEffects {
    @inlinable
    public mutating func held(_ page: PageID) {}

    @inlinable
    public mutating func protocolViolation(_ reason: StaticString, page: PageID) {
        assertionFailure("DSM coherence protocol violation on page \(page): \(reason)")
    }
}

/// Counters for observing the protocol; they never influence it.
public struct CoherenceStats: Hashable, Sendable {
    /// Faults reported by local threads, by access.
    public var readFaults = 0
    public var writeFaults = 0
    /// Faults on a page whose mapping already permitted the access (raced with
    /// an install): answered with `wake` only.
    public var spuriousFaults = 0
    /// Faults absorbed by a request already outstanding for the page.
    public var coalescedFaults = 0
    /// Requests sent ahead of any fault (readahead, the neighbour of a miss).
    public var prefetchRequests = 0
    /// Requests this node sent as requester.
    public var readRequestsSent = 0
    public var writeRequestsSent = 0
    /// Write requests for a page held shared (S -> M, no data needed unless
    /// the copy is lost meanwhile).
    public var upgradesSent = 0
    /// As home: invalidations sent; as sharer: invalidations received.
    public var invalidationsSent = 0
    public var invalidationsReceived = 0
    /// As home: requests that found their page busy and waited in the queue.
    public var requestsQueued = 0
    /// As owner: pages sent with contents.
    public var dataSent = 0
    /// Events reported through `protocolViolation`.
    public var protocolViolations = 0
    /// Messages that waited for a page's hold window.
    public var heldMessages = 0
    /// As home: pages found migrating (written in turn, each time by a node
    /// that had just read them), read misses served by handing a migrating
    /// page over whole, and `.unwritten` hints that ended a migration.
    public var migrationsFound = 0
    public var handovers = 0
    public var migrationsEnded = 0
    /// Writes to a page handed over whole: write access without a message.
    public var silentUpgrades = 0

    public init() {}
}
