// Release consistency (`--consistency release`): what happens to a page
// when nodes may write it side by side between synchronisations.
//
// Every page has a home (at first the MESI protocol's, or node 0 for the
// program's data it seeded), which holds the page's master copy and writes
// it in place. Another node:
//
// 1. on a miss asks the home for a copy (`releaseFetch`) and installs the
//    answer (`releaseData`) read-only, or writable with a twin (a copy of
//    the page as it came) when the miss was a write;
// 2. on a write to a read-only copy takes a twin and makes the page
//    writable: no message, and no other node loses its copy;
// 3. at a release (a lock token leaving the node, a barrier, a semop, a
//    futex wake, a new thread, a thread's end: the calls sync.c and
//    friends pass through `dsm_release_point`) write-protects each page it
//    wrote, sends the home the bytes that differ from the twin
//    (`releaseDiff`, DSMCore's PageDiff: byte-exact, so diffs of one page
//    from several nodes merge) and lets the releasing thread go once every
//    home has acknowledged (`releaseDiffAck`). A page written with the
//    values it had stays writable with its twin and sends an empty diff;
// 4. at an acquire (a lock token arriving, the end of a barrier, a semop
//    or futex wait, a join, a thread's start) drops the copies their homes
//    said are old, so later reads fetch what the releases before made. It
//    asks nobody: a home that changes a page (a diff applied, or its own
//    writes at its release; it tracks those by write-protection only while
//    another node may hold a copy, `served`) tells every node it served a
//    copy to (`releaseStale`) and waits for each to note it
//    (`releaseStaleSeen`) before it acknowledges the diff or ends its own
//    release. The release an acquire follows has ended, so the acquirer
//    has noted its old copies already; a copy still on its way when its
//    notice comes is fetched again. Once told, a node is no longer served:
//    the page's next change tells it nothing, and a home whose every copy
//    is told writes on untracked.
//
// Homes move (`releaseMove`): a home that applies a node's second diff in a
// row to a page nobody else changed meanwhile (the diff's base version is
// the page's) and nobody else holds hands the page to that node, whose copy
// is then the page (the move carries no data) and whose writes stay local:
// a node's own rows or columns stop travelling. A page that bounces between
// nodes taking turns needs a run twice as long at each bounce. A former home
// passes requests on; a copy's server becomes the node's hint of where the
// home is.
//
// This is home-based lazy release consistency (HLRC, as in ArgoDSM or
// JIAJIA's home migration, without page classification). A program that
// synchronises through anything else (C11 atomics, spin flags, OpenMP's
// barriers) is not data-race-free as dsm sees it and may read stale data:
// the model is opt-in and sequential consistency stays the default.

import CDSMKernel
import CDSMPreload
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Where a page of a release-consistent container stands on a node that
/// is not its home (the home's copy is always valid and writable).
enum ReleasePageState: UInt8 {
    case invalid = 0
    case fetchingRead, fetchingWrite
    /// A copy fetched before an acquire: fetched again when it comes, since
    /// the home may have served it before a release the acquire follows.
    case fetchingReadStale, fetchingWriteStale
    /// Read-only copy.
    case clean
    /// Writable copy with a twin.
    case dirty
}

/// A release-consistent container's per-page state on this node. On the
/// home, `.invalid` is a page no other node has had a copy of: the home
/// writes it freely. Once a copy is served the page is tracked: `.clean`
/// while write-protected since the home's last release, `.dirty` once the
/// home has written it since (no twin), so that its version goes up at the
/// home's next release.
struct ReleasePageTable {
    var state: ZeroTable<UInt8>
    /// Twin slot + 1 of a dirty page (0: none).
    var twin: ZeroTable<Int32>
    /// The home: the page's version; elsewhere: the version of the copy.
    var version: ZeroTable<UInt32>
    /// Where this node believes the page's home is now, node + 1 (0: where
    /// it started). Homes move to a page's only writer; a node that was
    /// home once knows where it went and passes requests on.
    var homeHint: ZeroTable<UInt8>
    /// The home: the node + 1 whose diff it applied last (0: none since the
    /// home's own writes).
    var lastDiffer: ZeroTable<UInt8>
    /// The home: how many diffs in a row `lastDiffer` sent on a page nobody
    /// else changed meanwhile. The home moves there at `2 << movePenalty`.
    var moveRun: ZeroTable<UInt8>
    /// Doubles the run a move needs each time a page that came by a move
    /// leaves again soon (nodes that take turns writing a page, each a few
    /// times); travels with the page.
    var movePenalty: ZeroTable<UInt8>
    /// The home: this node's release count + 1 when the page came by a move
    /// (0: it did not).
    var arrivedAt: ZeroTable<UInt32>
    /// The home: the nodes it has served a copy to (they may hold one).
    var served: ZeroTable<UInt64>
    /// Every page's home when the container was seeded at one node (image
    /// mode's data, filled on node 0); nil: the protocol's home.
    var seededHome: NodeID?

    init(pages: Int) {
        state = ZeroTable(count: pages)
        twin = ZeroTable(count: pages)
        version = ZeroTable(count: pages)
        homeHint = ZeroTable(count: pages)
        lastDiffer = ZeroTable(count: pages)
        moveRun = ZeroTable(count: pages)
        movePenalty = ZeroTable(count: pages)
        arrivedAt = ZeroTable(count: pages)
        served = ZeroTable(count: pages)
    }

    subscript(_ index: UInt32) -> ReleasePageState {
        get { ReleasePageState(rawValue: state[Int(index)])! }
        set { state[Int(index)] = newValue.rawValue }
    }
}

/// What waits for a release's acknowledgements.
enum ReleaseWaiter {
    /// A program thread at a release point.
    case call(LocalCall)
    /// A lock token this node gives back to its home.
    case token(UInt64)
}

/// A home's change of a page waiting for the nodes it told their copies
/// are old: then the diff is acknowledged, or (`asker` the home itself)
/// its release goes on.
struct StaleNotices {
    var id: UInt64
    var asker: NodeID
    var page: PageID
    var version: UInt32
    var due: Int
}

/// The node-wide side: which pages have copies, which are written, the
/// twins, and the releases waiting for their acknowledgements.
struct ReleaseBook {
    static let twinsPerChunk = 256
    /// Copies their homes said are old since the last acquire (it drops them).
    var stale: [PageID] = []
    /// Pages written since the last release.
    var dirty: [PageID] = []
    var twinChunks: [UnsafeMutableRawPointer] = []
    var freeTwins: [Int32] = []
    let diffBuffer = UnsafeMutableRawPointer.allocate(byteCount: PageDiff.capacity(pageSize: dsmPageSize), alignment: 8)
    var acknowledgementsDue = 0
    var releasesWaiting: [ReleaseWaiter] = []
    /// Pages the home wrote since its last release (their versions go up then).
    var homeWritten: [PageID] = []
    /// The home's changes whose stale notices are not all noted yet.
    var notices: [StaleNotices] = []
    var nextNotices: UInt64 = 1
    /// A page that came by a move and leaves again within this many of the
    /// node's releases bounced: its next move needs a run twice as long.
    static let settledReleases: UInt32 = 64
    /// Runs of at most 2 << 6 = 128 diffs.
    static let maximumMovePenalty: UInt8 = 6
    // --stats
    var readFaults = 0
    var writeFaults = 0
    var counts = NodeStatistics.Release()

    init() {
        stale.reserveCapacity(1024)
        dirty.reserveCapacity(1024)
        notices.reserveCapacity(256)
    }

    mutating func takeTwin() -> Int32 {
        if freeTwins.isEmpty {
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: ReleaseBook.twinsPerChunk * dsmPageSize, alignment: dsmPageSize)
            let base = Int32(twinChunks.count * ReleaseBook.twinsPerChunk)
            twinChunks.append(chunk)
            freeTwins.reserveCapacity(twinChunks.count * ReleaseBook.twinsPerChunk)
            for i in (0..<Int32(ReleaseBook.twinsPerChunk)).reversed() { freeTwins.append(base + i) }
        }
        counts.twins &+= 1
        return freeTwins.removeLast()
    }

    func twin(_ slot: Int32) -> UnsafeMutableRawPointer {
        twinChunks[Int(slot) / ReleaseBook.twinsPerChunk] + Int(slot) % ReleaseBook.twinsPerChunk * dsmPageSize
    }
}

@_cdecl("dsm_swift_release")
public func dsmSwiftRelease() -> Int {
    Int(runtimeNode.calls.perform(.releaseWrites).result)
}

@_cdecl("dsm_swift_acquire")
public func dsmSwiftAcquire() -> Int {
    Int(runtimeNode.calls.perform(.acquireWrites).result)
}

extension PageEngine {
    var releaseConsistent: Bool { configuration.tunables.consistency == .release && nodes > 1 }

    func releaseHome(_ page: PageID, _ table: ReleasePageTable) -> NodeID {
        let hint = table.homeHint[Int(page.index)]
        if hint != 0 { return Int(hint) - 1 }
        return table.seededHome ?? page.home(nodes: nodes)
    }

    /// Whether this node holds `page` as a copy (not as its home).
    func isCopy(_ page: PageID, _ c: LocalContainer) -> Bool {
        releaseHome(page, c.release!) != id
    }

    /// Tells the program threads' side (dsm_release_point,
    /// dsm_acquire_point) whether a release or an acquire has anything to do.
    func publishReleaseCounts() {
        dsm_release_publish(Int64(release.dirty.count + release.homeWritten.count),
                            Int64(release.stale.count))
    }

    // MARK: faults

    /// A fault on a release-consistent container's page.
    func releaseFault(_ page: PageID, _ c: LocalContainer, write: Bool, missing: Bool) {
        let index = page.index
        if write { release.writeFaults += 1 } else { release.readFaults += 1 }
        if releaseHome(page, c.release!) == id {
            homeFault(page, c, write: write, missing: missing)
            return
        }
        switch c.release![index] {
        case .invalid:
            c.release![index] = write ? .fetchingWrite : .fetchingRead
            requestCopy(page, c)
            publishReleaseCounts()
        case .fetchingRead:
            if write { c.release![index] = .fetchingWrite }
        case .fetchingReadStale:
            if write { c.release![index] = .fetchingWriteStale }
        case .fetchingWrite, .fetchingWriteStale:
            break
        case .clean:
            if write && !missing {
                makeDirty(page, c, twinOf: c.pageInView(index))
                publishReleaseCounts()
                setWriteProtection(c, index, false)
            }
            releaseWake(c, index)
        case .dirty:
            releaseWake(c, index)
        }
    }

    /// The home's own access: its copy is the master, but a write must be
    /// known, so that the version goes up at the home's next release.
    private func homeFault(_ page: PageID, _ c: LocalContainer, write: Bool, missing: Bool) {
        let index = page.index
        switch c.release![index] {
        case .invalid:
            // Untracked (no copy out): present from now on, writable.
            if missing {
                // EEXIST (benign): a diff or a fetch made the page meanwhile.
                uffdCall("copy") {
                    cdsm_uffd_copy(uffd, c.attachments[0].start + UInt64(index) << 12, zeroPage, UInt64(dsmPageSize), 0, 1)
                }
            } else {
                setWriteProtection(c, index, false)
            }
        case .clean:
            if write { markHomeWritten(page, c) }
        default:
            break
        }
        releaseWake(c, index)
    }

    /// Fetches a copy of `page` from its home (as this node believes it is).
    private func requestCopy(_ page: PageID, _ c: LocalContainer) {
        release.counts.fetches &+= 1
        links.sendFrame(FrameHeader(kind: .releaseFetch, source: id, container: page.container, index: page.index, a: UInt64(id)),
                        payload: nil, to: releaseHome(page, c.release!))
    }

    /// A copy about to be written: its twin is `base` (the page as it is,
    /// or as it came), and it is counted among the pages the next release
    /// sends a diff of.
    private func makeDirty(_ page: PageID, _ c: LocalContainer, twinOf base: UnsafeRawPointer) {
        let slot = release.takeTwin()
        release.twin(slot).copyMemory(from: base, byteCount: dsmPageSize)
        c.release!.twin[Int(page.index)] = slot + 1
        c.release![page.index] = .dirty
        release.dirty.append(page)
    }

    /// A page's twin goes back to the pool.
    private func returnTwin(_ c: LocalContainer, _ index: UInt32) {
        release.freeTwins.append(c.release!.twin[Int(index)] - 1)
        c.release!.twin[Int(index)] = 0
    }

    /// Puts contents that came from another node into this node's copy of
    /// an absent page (UFFDIO_COPY through the first attachment, waking
    /// nobody: the caller wakes the waiting threads), or into the view
    /// when the program has no attachment.
    private func install(_ page: PageID, _ c: LocalContainer, _ contents: UnsafeRawPointer, writable: Bool, what: String) {
        if c.attachments.isEmpty {
            c.pageInView(page.index).copyMemory(from: contents, byteCount: dsmPageSize)
        } else {
            let offset = UInt64(page.index) << 12
            let r = uffdCall("copy") {
                cdsm_uffd_copy(uffd, c.attachments[0].start + offset, contents, UInt64(dsmPageSize), writable ? 0 : 1, 1)
            }
            if -r == EEXIST { fatal("page \(page) was already present when \(what) came") }
            for a in c.attachments.dropFirst() where !writable && !a.readOnly {
                uffdCall("write-protect") { cdsm_uffd_writeprotect(uffd, a.start + offset, UInt64(dsmPageSize), 1, 1) }
            }
        }
        stats.pagesInstalled &+= 1
    }

    private func markHomeWritten(_ page: PageID, _ c: LocalContainer) {
        c.release![page.index] = .dirty
        release.homeWritten.append(page)
        setWriteProtection(c, page.index, false)
        publishReleaseCounts()
    }

    /// A home page another node gets a copy of: from now on its home's
    /// writes are tracked. Write-protected first (on a page the home
    /// program has not mapped, the kernel keeps the protection for when it
    /// does), then copied.
    private func trackHomePage(_ c: LocalContainer, _ index: UInt32) {
        guard c.release![index] == .invalid else { return }
        c.release![index] = .clean
        setWriteProtection(c, index, true)
    }

    private func releaseWake(_ c: LocalContainer, _ index: UInt32) {
        endWait(c, Int(index))
        wakeThreads(c, index)
    }

    // MARK: frames

    func handleReleaseFrame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        guard releaseConsistent else {
            fatal("node \(peer) broke the protocol: it sent a \(header.kind) frame in a sequentially consistent run")
        }
        if header.kind == .releaseStaleSeen {
            staleNoticeSeen(header.a, from: peer)
            return
        }
        guard let c = containers[header.container] else {
            // A container gone since: nothing here to be old.
            if header.kind == .releaseStale { seeStale(header, from: peer) }
            return
        }
        guard Int(header.index) < c.pages, c.release != nil else {
            fatal("node \(peer) broke the protocol: \(header.kind) for page \(header.index) of container \(header.container)")
        }
        let page = PageID(container: header.container, index: header.index)
        let index = Int(page.index)
        let home = releaseHome(page, c.release!) == id
        // The node a fetch or a diff is for (it may come through a former home).
        let asker = Int(header.a & 0xFFFF)
        switch header.kind {
        case .releaseFetch, .releaseDiff:
            guard asker < nodes else {
                fatal("node \(peer) broke the protocol: a \(header.kind) for node \(asker)")
            }
            if !home {
                // The home moved on: pass it there.
                links.sendFrame(header, payload: payload.count > 0 ? payload : nil, to: releaseHome(page, c.release!))
                return
            }
        default: break
        }
        switch header.kind {
        case .releaseFetch:
            // This node's own request, passed back after its home came here.
            guard asker != id else { return }
            trackHomePage(c, page.index)
            c.release!.served[index] |= 1 << UInt64(asker)
            links.sendFrame(FrameHeader(kind: .releaseData, source: id, container: page.container, index: page.index,
                                        a: UInt64(c.release!.version[index])),
                            payload: UnsafeRawBufferPointer(start: c.pageInView(page.index), count: dsmPageSize), to: asker)
            stats.pagesSent &+= 1
        case .releaseDiff:
            guard asker != id else {
                // A diff of this node's, sent before its home came here:
                // this copy is the page already.
                diffAcknowledged(page, c, version: nil)
                return
            }
            let base = UInt32(truncatingIfNeeded: header.a >> 32)
            let unchanged = base == c.release!.version[index]
            let sameWriter = c.release!.lastDiffer[index] == UInt8(asker + 1)
            guard PageDiff.apply(payload, to: c.pageInView(page.index), pageSize: dsmPageSize) else {
                fatal("node \(peer) broke the protocol: a malformed diff of page \(page)")
            }
            // An empty diff (a write of the values the page had) changes nothing.
            let changed = payload.count > 0
            if changed { c.release!.version[index] &+= 1 }
            c.release!.lastDiffer[index] = UInt8(asker + 1)
            let run = unchanged && sameWriter ? min(c.release!.moveRun[index], UInt8.max - 1) + 1 : 1
            c.release!.moveRun[index] = run
            // The other copies are old now: acknowledged once their nodes
            // have noted it.
            let told = changed && tellStale(page, c, changedBy: asker)
            if !told { acknowledgeDiff(page, to: asker, version: c.release!.version[index], emptyDiff: !changed) }
            // The second diff in a row from one node (more after moves that
            // did not last), on a page nobody else changed meanwhile (its
            // copy was the page, and no other copy is out): its home moves
            // there, and its writes stop travelling.
            if unchanged && !told && run >= 2 << c.release!.movePenalty[index] && c.release![page.index] != .dirty {
                moveHome(page, c, to: asker)
            }
        case .releaseData where !home && payload.count == dsmPageSize:
            releaseDataArrived(page, c, payload, version: UInt32(truncatingIfNeeded: header.a), from: peer)
        case .releaseDiffAck where release.acknowledgementsDue > 0:
            diffAcknowledged(page, c, version: header.flags & 1 != 0 ? nil : UInt32(truncatingIfNeeded: header.a))
        case .releaseStale:
            seeStale(header, from: peer)
        case .releaseMove where payload.count == 8:
            homeArrived(page, c, payload, version: UInt32(truncatingIfNeeded: header.a),
                        penalty: UInt8(truncatingIfNeeded: header.a >> 32), from: peer)
        default:
            fatal("node \(peer) broke the protocol: an unexpected \(header.kind) for page \(page)")
        }
    }

    /// flags 1: an empty diff's acknowledgement, whose version is not the
    /// asker's doing (it must not take it for its copy's).
    private func acknowledgeDiff(_ page: PageID, to asker: NodeID, version: UInt32, emptyDiff: Bool) {
        links.sendFrame(FrameHeader(kind: .releaseDiffAck, flags: emptyDiff ? 1 : 0, source: id,
                                    container: page.container, index: page.index, a: UInt64(version)),
                        payload: nil, to: asker)
    }

    private func diffAcknowledged(_ page: PageID, _ c: LocalContainer, version: UInt32?) {
        // The copy is still current if this diff is all that changed the
        // home's page since the copy came (another change would have told
        // this node its copy is old).
        if let v = version, isCopy(page, c), c.release![page.index] == .clean || c.release![page.index] == .dirty,
           c.release!.version[Int(page.index)] &+ 1 == v {
            c.release!.version[Int(page.index)] = v
        }
        releaseStepDone()
    }

    /// One of the release's diffs or stale notices is done with.
    private func releaseStepDone() {
        release.acknowledgementsDue -= 1
        if release.acknowledgementsDue == 0 {
            let waiters = release.releasesWaiting
            release.releasesWaiting.removeAll(keepingCapacity: true)
            for waiter in waiters { releaseDone?(waiter) }
        }
    }

    // MARK: homes that move

    /// The home side: the page, its version and who may hold copies go to
    /// `node`; this node keeps no copy (its threads fetch one if they need it).
    private func moveHome(_ page: PageID, _ c: LocalContainer, to node: NodeID) {
        let index = Int(page.index)
        // A page that came here by a move and leaves within a few releases
        // bounces between writers taking turns: the next move needs twice
        // the run. One that stayed long is forgiven a step.
        var penalty = c.release!.movePenalty[index]
        if c.release!.arrivedAt[index] != 0 {
            let held = UInt32(truncatingIfNeeded: release.counts.releases) &- (c.release!.arrivedAt[index] - 1)
            if held < ReleaseBook.settledReleases {
                penalty = min(penalty + 1, ReleaseBook.maximumMovePenalty)
            } else if penalty > 0 {
                penalty -= 1
            }
        }
        // The page itself stays: the new home's copy is current (its diff
        // was the last change, and nobody else holds one that is newer).
        var served = c.release!.served[index] & ~(1 << UInt64(node))
        withUnsafeBytes(of: &served) {
            links.sendFrame(FrameHeader(kind: .releaseMove, source: id, container: page.container, index: page.index,
                                        a: UInt64(c.release!.version[index]) | UInt64(penalty) << 32),
                             payload: $0, to: node)
        }
        c.release!.homeHint[index] = UInt8(node + 1)
        c.release![page.index] = .invalid
        c.release!.lastDiffer[index] = 0
        c.release!.moveRun[index] = 0
        c.release!.arrivedAt[index] = 0
        c.release!.movePenalty[index] = penalty
        c.release!.served[index] = 0
        c.counters.losses[index] &+= 1
        pendDrop(page)
        punchPendingDrops()
        release.counts.homesMoved &+= 1
    }

    /// The new home's side: its copy is the page (the mover checked that
    /// nothing else changed it since the diff that made this node's copy).
    private func homeArrived(_ page: PageID, _ c: LocalContainer, _ payload: UnsafeRawBufferPointer, version: UInt32,
                             penalty: UInt8, from peer: NodeID) {
        let index = page.index
        let served = payload.loadUnaligned(as: UInt64.self)
        let tracked = served != 0
        var written = false
        switch c.release![index] {
        case .clean, .dirty:
            guard c.release!.version[Int(index)] == version else {
                fatal("node \(peer) broke the protocol: it moved page \(page)'s home here at version \(version), this copy has \(c.release!.version[Int(index)])")
            }
            if c.release![index] == .dirty {
                returnTwin(c, index)
                written = true
            }
        case .invalid, .fetchingRead, .fetchingWrite, .fetchingReadStale, .fetchingWriteStale:
            // Its diff came from a copy that nothing made old since, and a
            // copy goes only when a change makes it old.
            fatal("node \(peer) broke the protocol: it moved page \(page)'s home here, where no copy of it is")
        }
        c.release!.homeHint[Int(index)] = UInt8(id + 1)
        c.release!.version[Int(index)] = version
        c.release!.lastDiffer[Int(index)] = 0
        c.release!.moveRun[Int(index)] = 0
        c.release!.movePenalty[Int(index)] = min(penalty, ReleaseBook.maximumMovePenalty)
        c.release!.arrivedAt[Int(index)] = UInt32(truncatingIfNeeded: release.counts.releases) &+ 1
        c.release!.served[Int(index)] = served
        if !tracked {
            c.release![index] = .invalid
            setWriteProtection(c, index, false)
        } else if written {
            c.release![index] = .dirty
            release.homeWritten.append(page)
            setWriteProtection(c, index, false)
        } else {
            c.release![index] = .clean
            setWriteProtection(c, index, true)
        }
        release.counts.homesMoved &+= 1
        publishReleaseCounts()
        releaseWake(c, index)
    }

    private func releaseDataArrived(_ page: PageID, _ c: LocalContainer, _ payload: UnsafeRawBufferPointer, version: UInt32,
                                    from peer: NodeID) {
        let index = page.index
        let write: Bool
        switch c.release![index] {
        case .fetchingRead: write = false
        case .fetchingWrite: write = true
        case .fetchingReadStale, .fetchingWriteStale:
            c.release![index] = c.release![index] == .fetchingReadStale ? .fetchingRead : .fetchingWrite
            requestCopy(page, c)
            return
        default:
            fatal("node \(peer) broke the protocol: a copy of page \(page), which this node did not ask for")
        }
        if write {
            makeDirty(page, c, twinOf: payload.baseAddress!)
        } else {
            c.release![index] = .clean
        }
        c.release!.version[Int(index)] = version
        c.release!.homeHint[Int(index)] = UInt8(peer + 1)
        install(page, c, payload.baseAddress!, writable: write, what: "its copy")
        publishReleaseCounts()
        releaseWake(c, index)
    }

    // MARK: release

    /// Sends every written page's diff home (and, on a home, numbers the
    /// versions of the pages it wrote); true when nothing is left to
    /// acknowledge, else `waiter` is told once all are (`releaseDone`).
    @discardableResult
    func releaseWrites(then waiter: ReleaseWaiter?) -> Bool {
        release.counts.releases &+= 1
        for page in release.homeWritten {
            guard let c = containers[page.container], !isCopy(page, c), c.release![page.index] == .dirty else { continue }
            c.release!.version[Int(page.index)] &+= 1
            // The home wrote it: no other node is its only writer now.
            c.release!.lastDiffer[Int(page.index)] = 0
            // Every copy out is told it is old (the release waits for
            // that); the home writes on untracked.
            c.release![page.index] = .invalid
            if tellStale(page, c, changedBy: id) { release.acknowledgementsDue += 1 }
        }
        release.homeWritten.removeAll(keepingCapacity: true)
        var kept = 0
        for i in release.dirty.indices {
            let page = release.dirty[i]
            guard let c = containers[page.container], isCopy(page, c), c.release![page.index] == .dirty else { continue }
            if sendDiff(page, c, keepUnchanged: true) {
                release.dirty[kept] = page
                kept += 1
            }
        }
        release.dirty.removeLast(release.dirty.count - kept)
        publishReleaseCounts()
        if release.acknowledgementsDue == 0 { return true }
        if let waiter { release.releasesWaiting.append(waiter) }
        return false
    }

    /// A written copy's diff goes home; the copy is clean (write-protected
    /// first: a write from now on takes a new twin). With `keepUnchanged`,
    /// a copy written with the values it had (a stencil's settled cells)
    /// stays writable with its twin, and true says so: no fault and no copy
    /// at each step for it.
    @discardableResult
    private func sendDiff(_ page: PageID, _ c: LocalContainer, keepUnchanged: Bool) -> Bool {
        let index = page.index
        let slot = c.release!.twin[Int(index)] - 1
        if keepUnchanged && PageDiff.encode(current: c.pageInView(index), twin: release.twin(slot), pageSize: dsmPageSize,
                                            into: release.diffBuffer) == 0 {
            // An empty diff still says who writes the page: its home moves
            // here after two, and the comparisons stop.
            shipDiff(page, c, nil)
            return true
        }
        setWriteProtection(c, index, true)
        let length = PageDiff.encode(current: c.pageInView(index), twin: release.twin(slot), pageSize: dsmPageSize,
                                     into: release.diffBuffer)
        returnTwin(c, index)
        c.release![index] = .clean
        guard length > 0 else { return false }
        shipDiff(page, c, UnsafeRawBufferPointer(start: release.diffBuffer, count: length))
        release.counts.diffsSent &+= 1
        release.counts.diffBytes &+= UInt64(length)
        return false
    }

    /// A diff frame to the page's home, naming this node and the version
    /// its copy started from (the home moves to a sole writer by it).
    private func shipDiff(_ page: PageID, _ c: LocalContainer, _ diff: UnsafeRawBufferPointer?) {
        let base = UInt64(c.release!.version[Int(page.index)])
        links.sendFrame(FrameHeader(kind: .releaseDiff, source: id, container: page.container, index: page.index,
                                    a: UInt64(id) | base << 32),
                        payload: diff, to: releaseHome(page, c.release!))
        release.acknowledgementsDue += 1
    }

    /// A container going away: the twins of its written copies return to
    /// the pool, and its pages leave the node's lists.
    func forgetReleasePages(of c: LocalContainer) {
        for page in release.dirty where page.container == c.id && c.release!.twin[Int(page.index)] != 0 {
            returnTwin(c, page.index)
        }
        release.dirty.removeAll { $0.container == c.id }
        release.stale.removeAll { $0.container == c.id }
        release.homeWritten.removeAll { $0.container == c.id }
        publishReleaseCounts()
    }

    // MARK: acquire

    /// Drops the copies their homes said are old (after sending what this
    /// node wrote to them), so that what others released before this
    /// acquire is read from the homes. Those releases have ended, and they
    /// end only once this node has noted every notice they caused: nothing
    /// to ask, and done at once.
    func acquireWrites() {
        release.counts.acquires &+= 1
        for page in release.stale {
            guard let c = containers[page.container], isCopy(page, c) else { continue }
            // Written meanwhile by a thread of this node: what it wrote
            // goes home (before any fetch of it again), then the copy goes.
            if c.release![page.index] == .dirty { sendDiff(page, c, keepUnchanged: false) }
            guard c.release![page.index] == .clean else { continue }
            c.release![page.index] = .invalid
            c.counters.losses[Int(page.index)] &+= 1
            pendDrop(page)
            release.counts.dropped &+= 1
        }
        release.stale.removeAll(keepingCapacity: true)
        punchPendingDrops()
        publishReleaseCounts()
    }

    // MARK: stale notices

    /// The home's side of a change to `page` by `writer` (a diff's sender,
    /// or the home at its own release): every other node served a copy is
    /// told its copy is old, and served no longer. True when any was: the
    /// writer hears once all have noted it.
    private func tellStale(_ page: PageID, _ c: LocalContainer, changedBy writer: NodeID) -> Bool {
        let index = Int(page.index)
        let holders = c.release!.served[index] & ~(1 << UInt64(writer)) & ~(1 << UInt64(id))
        c.release!.served[index] &= ~holders
        if c.release!.served[index] == 0 && c.release![page.index] == .clean {
            // No copy out any more: the home writes on untracked.
            c.release![page.index] = .invalid
            setWriteProtection(c, page.index, false)
        }
        guard holders != 0 else { return false }
        let notices = release.nextNotices
        release.nextNotices &+= 1
        var bits = holders
        while bits != 0 {
            let node = bits.trailingZeroBitCount
            bits &= bits - 1
            links.sendFrame(FrameHeader(kind: .releaseStale, source: id, container: page.container, index: page.index,
                                        a: notices), payload: nil, to: node)
        }
        release.notices.append(StaleNotices(id: notices, asker: writer, page: page, version: c.release!.version[index],
                                            due: holders.nonzeroBitCount))
        release.counts.staleNotices &+= UInt64(holders.nonzeroBitCount)
        return true
    }

    /// A holder's side: its copy goes at its next acquire (one on its way is
    /// fetched again when it comes); noted at once.
    private func seeStale(_ header: FrameHeader, from peer: NodeID) {
        let page = PageID(container: header.container, index: header.index)
        if let c = releaseContainer(of: page), isCopy(page, c) {
            switch c.release![page.index] {
            case .clean, .dirty: release.stale.append(page)
            case .fetchingRead: c.release![page.index] = .fetchingReadStale
            case .fetchingWrite: c.release![page.index] = .fetchingWriteStale
            default: break
            }
            // Published before the note leaves: an acquire that follows the
            // release waiting for it sees there is something to drop.
            publishReleaseCounts()
        }
        links.sendFrame(FrameHeader(kind: .releaseStaleSeen, source: id, a: header.a), payload: nil, to: peer)
    }

    /// The home's side: once every holder told of a change has noted it, the
    /// diff is acknowledged (or the home's own release goes on).
    private func staleNoticeSeen(_ notices: UInt64, from peer: NodeID) {
        guard let i = release.notices.firstIndex(where: { $0.id == notices }) else {
            fatal("node \(peer) broke the protocol: it noted stale notices \(notices), which this node did not send")
        }
        release.notices[i].due -= 1
        guard release.notices[i].due == 0 else { return }
        let done = release.notices.remove(at: i)
        if done.asker == id {
            releaseStepDone()
        } else {
            acknowledgeDiff(done.page, to: done.asker, version: done.version, emptyDiff: false)
        }
    }

    /// The release-consistent container `page` belongs to, if it still
    /// exists and has that page.
    private func releaseContainer(of page: PageID) -> LocalContainer? {
        guard let c = containers[page.container], Int(page.index) < c.pages, c.release != nil else { return nil }
        return c
    }
}
