import DSMCore

/// The MESI home-directory protocol of one node, as a pure state machine.
///
/// The node plays two roles for every page: the *local* role (its own mapping
/// of the page and the request it has outstanding) and, for the pages whose
/// `home(nodes:)` is this node, the *home* role (the directory entry that
/// serialises requests). Events go in through `fault` and `receive`; effects
/// come out through the caller's `CoherenceEffects` sink, in order. Nothing
/// here allocates after `addContainer`.
///
/// The home serves one request per page at a time, from arrival to the
/// requester's `.done`; requests meeting a busy page wait in a round-robin
/// queue. An answer the home sends itself (as home, or as owner) is marked
/// `closed` and needs no `.done` from the requester: everything the home sends
/// the requester later follows it on the same FIFO channel. (As owner, the
/// home closes through a `.done` to itself, after the answer has gone out.)
/// Because the requester installs the page before sending `.done`, the
/// directory the home consults when it serves a request is exact: every node
/// in the copyset holds a valid mapping, and the owner holds the current
/// contents. That is what makes single-writer / multiple-readers and
/// sequential consistency hold with only pairwise FIFO channels.
public struct CoherenceNode: Sendable {
    public let node: NodeID
    public let nodes: Int
    /// How many unwritten handovers of a page double the evidence it needs
    /// to migrate again (5: up to 64 writes in a row). The exhaustive
    /// exploration uses 1, which takes the same paths in far fewer states.
    public let maxMigrationPenalty: UInt8
    /// Whether this node, as home, hands migrating pages over whole
    /// (DSM_MIGRATORY=0: never; reads are always served shared).
    public let handsOverMigratoryPages: Bool
    /// Whether a page brought in for a waiting thread stays a moment before
    /// this node gives it up (Mirage's time window): a message that would
    /// take it away waits until the runtime says the window has closed
    /// (`endHold`). Without it two nodes writing one page can hand it back
    /// and forth without either thread making progress: the runtime thread
    /// can serve the other node's request in the same breath as it
    /// installed the page, before the woken thread touched it.
    public let holdsPages: Bool
    @usableFromInline var counters = CoherenceStats()
    @usableFromInline var containers = ContainerTable<ContainerPages>()

    public init(node: NodeID, nodes: Int, maxMigrationPenalty: UInt8 = 5, handsOverMigratoryPages: Bool = true,
                holdsPages: Bool = false) {
        precondition(nodes > 0 && nodes <= maxNodes, "1 ... \(maxNodes) nodes")
        precondition(node >= 0 && node < nodes, "node \(node) out of 0..<\(nodes)")
        precondition(maxMigrationPenalty <= 6, "the evidence needed must fit a byte")
        self.node = node
        self.nodes = nodes
        self.maxMigrationPenalty = maxMigrationPenalty
        self.handsOverMigratoryPages = handsOverMigratoryPages
        self.holdsPages = holdsPages
    }

    public var stats: CoherenceStats { counters }

    public mutating func resetStats() { counters = CoherenceStats() }

    /// Registers a container on this node. All of its page state is allocated
    /// here, once, so the fault path never allocates.
    public mutating func addContainer(_ id: ContainerID, pages: Int) {
        precondition(pages >= 0 && pages <= Int(UInt32.max), "page count \(pages)")
        precondition(containers[id] == nil, "container \(id) added twice")
        if let block = PageID.blockPages(of: id) {
            // This node's block; the last node also takes what lies past
            // the blocks of the others.
            let first = node * block
            let count = node == nodes - 1 ? max(0, pages - first) : max(0, min(block, pages - first))
            containers[id] = ContainerPages(pages: pages, homeSlots: count)
        } else {
            assert(homesRotateWithIndex(id, pages: pages), "home(nodes:) must be (base + index) % nodes")
            containers[id] = ContainerPages(pages: pages, homeSlots: (pages + nodes - 1) / nodes)
        }
    }

    /// Every page of the container starts valid at `owner` with contents
    /// that exist there (image mode's data, copied from the program on node
    /// 0): homes name it owner, and `owner` holds each page exclusive. Every
    /// node calls this with the same owner right after `addContainer`,
    /// before any fault on the container.
    public mutating func seedOwner(_ id: ContainerID, owner: NodeID) {
        guard var pages = containers[id] else { return }
        for i in pages.home.indices {
            pages.home[i].owner = Int8(owner)
            pages.home[i].copyset = NodeSet(bits: 1 << UInt64(owner))
        }
        if owner == node {
            for i in pages.local.indices { pages.local[i].state = .exclusive }
        }
        containers[id] = pages
    }

    /// Forgets a container. The runtime must have quiesced it cluster-wide
    /// first: a later message about its pages is reported as a violation.
    public mutating func removeContainer(_ id: ContainerID) {
        containers[id] = nil
    }

    public func localState(_ page: PageID) -> LocalState {
        localPage(page)?.state ?? .invalid
    }

    /// Whether this node is the home of `page`.
    @inlinable
    public func isHome(of page: PageID) -> Bool {
        page.home(nodes: nodes) == node
    }

    /// Where a page homed here sits in its container's home entries: homes
    /// rotate with the index (or come in blocks), so the entries are dense.
    @inlinable
    func homeSlot(_ page: PageID) -> Int {
        if let block = PageID.blockPages(of: page.container) { return Int(page.index) - node * block }
        return Int(page.index) / nodes
    }

    // The dense home numbering relies on homes cycling through all nodes as
    // the index grows; checked once per container in debug builds.
    private func homesRotateWithIndex(_ id: ContainerID, pages: Int) -> Bool {
        guard pages > 0 else { return true }
        let base = PageID(container: id, index: 0).home(nodes: nodes)
        for index in 0..<pages
        where PageID(container: id, index: UInt32(index)).home(nodes: nodes) != (base + index) % nodes {
            return false
        }
        return true
    }

    // MARK: Page table access

    @inlinable
    func localPage(_ page: PageID) -> LocalPage? {
        guard let c = containers.index(of: page.container), Int(page.index) < containers.values[c].local.count else {
            return nil
        }
        return containers.values[c].local[Int(page.index)]
    }

    @inlinable
    mutating func setLocalPage(_ page: PageID, _ value: LocalPage) {
        containers.values[containers.index(of: page.container)!].local[Int(page.index)] = value
    }

    /// Nil when the page is unknown or not homed here.
    @inlinable
    func homeEntry(_ page: PageID) -> HomeEntry? {
        guard isHome(of: page), let c = containers.index(of: page.container),
              Int(page.index) < containers.values[c].local.count else { return nil }
        return containers.values[c].home[homeSlot(page)]
    }

    @inlinable
    mutating func setHomeEntry(_ page: PageID, _ value: HomeEntry) {
        containers.values[containers.index(of: page.container)!].home[homeSlot(page)] = value
    }

    @inlinable
    mutating func violation<E: CoherenceEffects>(_ reason: StaticString, _ page: PageID, _ effects: inout E) {
        counters.protocolViolations += 1
        effects.protocolViolation(reason, page: page)
    }
}
