/// One node's counters as it reports them to dsmrun at exit (`--stats`):
/// the one definition of the report. The runtime fills it and writes it
/// with `json()` (it has no Foundation); dsmrun decodes it with Codable, by
/// the same field names (a test round-trips it).
public struct NodeStatistics: Codable, Equatable, Sendable {
    /// How long faulting threads waited for their page, in nanoseconds.
    public struct Wait: Codable, Equatable, Sendable {
        public var count: UInt64 = 0
        public var p50: UInt64 = 0
        public var p90: UInt64 = 0
        public var p99: UInt64 = 0
        public var max: UInt64 = 0
        public init() {}
    }

    /// One of the node's busiest pages.
    public struct Page: Codable, Equatable, Sendable {
        public var container: UInt32
        public var page: Int
        public var faults: UInt32
        public var writeFaults: UInt32
        /// Times this node lost its copy (invalidated or downgraded).
        public var losses: UInt32

        public init(container: UInt32, page: Int, faults: UInt32, writeFaults: UInt32, losses: UInt32) {
            self.container = container
            self.page = page
            self.faults = faults
            self.writeFaults = writeFaults
            self.losses = losses
        }
    }

    public var node = 0
    public var readFaults = 0
    public var writeFaults = 0
    public var upgrades = 0
    /// Read misses answered with the whole page because it migrates, and
    /// the writes to such pages that needed no message.
    public var handovers = 0
    public var silentUpgrades = 0
    public var coalescedFaults = 0
    public var invalidationsSent = 0
    public var invalidationsReceived = 0
    public var pagesSent: UInt64 = 0
    public var pagesInstalled: UInt64 = 0
    /// Pages asked for ahead of a fault: readahead, the neighbour of a read
    /// miss, the neighbour of an upgrade.
    public var prefetches: UInt64 = 0
    /// Messages that waited for the end of their page's hold window.
    public var heldMessages: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var waitNs = Wait()
    /// Release consistency (nil in a sequentially consistent run).
    public var release: Release?
    public var pages: [Page] = []

    /// Release consistency's work on one node.
    public struct Release: Codable, Equatable, Sendable {
        /// Copies asked of the pages' homes.
        public var fetches: UInt64 = 0
        /// Twins taken: writes to a copy.
        public var twins: UInt64 = 0
        public var diffsSent: UInt64 = 0
        public var diffBytes: UInt64 = 0
        /// Release and acquire points that reached the runtime thread.
        public var releases: UInt64 = 0
        public var acquires: UInt64 = 0
        /// Copies dropped at acquires.
        public var dropped: UInt64 = 0
        /// Notices a home sent that a node's copy is old (one per copy).
        public var staleNotices: UInt64 = 0
        /// Pages whose home moved to their only writer (counted by both ends).
        public var homesMoved: UInt64 = 0
        public init() {}
    }

    public init() {}

    /// The report as one JSON object, keys as Codable names them.
    public func json() -> String {
        func object(_ fields: [(String, String)]) -> String {
            "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        let wait = object([("count", "\(waitNs.count)"), ("p50", "\(waitNs.p50)"), ("p90", "\(waitNs.p90)"),
                           ("p99", "\(waitNs.p99)"), ("max", "\(waitNs.max)")])
        let pageList = pages.map {
            object([("container", "\($0.container)"), ("page", "\($0.page)"), ("faults", "\($0.faults)"),
                    ("writeFaults", "\($0.writeFaults)"), ("losses", "\($0.losses)")])
        }
        let releaseField = release.map {
            object([("fetches", "\($0.fetches)"), ("twins", "\($0.twins)"), ("diffsSent", "\($0.diffsSent)"),
                    ("diffBytes", "\($0.diffBytes)"), ("releases", "\($0.releases)"), ("acquires", "\($0.acquires)"),
                    ("dropped", "\($0.dropped)"), ("staleNotices", "\($0.staleNotices)"),
                    ("homesMoved", "\($0.homesMoved)")])
        }
        return object([
            ("node", "\(node)"), ("readFaults", "\(readFaults)"), ("writeFaults", "\(writeFaults)"),
            ("upgrades", "\(upgrades)"), ("handovers", "\(handovers)"), ("silentUpgrades", "\(silentUpgrades)"),
            ("coalescedFaults", "\(coalescedFaults)"),
            ("invalidationsSent", "\(invalidationsSent)"), ("invalidationsReceived", "\(invalidationsReceived)"),
            ("pagesSent", "\(pagesSent)"), ("pagesInstalled", "\(pagesInstalled)"), ("prefetches", "\(prefetches)"),
            ("heldMessages", "\(heldMessages)"), ("messagesSent", "\(messagesSent)"),
            ("messagesReceived", "\(messagesReceived)"), ("bytesSent", "\(bytesSent)"),
            ("bytesReceived", "\(bytesReceived)"), ("waitNs", wait), ("pages", "[" + pageList.joined(separator: ",") + "]"),
        ] + (releaseField.map { [("release", $0)] } ?? []))
    }
}
