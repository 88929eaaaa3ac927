// What happens on a fault, in one place:
//
// 1. A program thread touches a page of an attachment: the kernel blocks it
//    and queues a message on the userfaultfd (MISSING: page absent here;
//    WP: page present read-only, the thread writes).
// 2. The runtime thread reads faults in batches (`drainFaults`), maps each
//    address to (container, index) and hands it to the MESI state machine
//    (`CoherenceNode.fault`), which decides: wake at once (another thread
//    already brought the page), coalesce with a request in flight, or send a
//    read/write request to the page's home. A miss may also ask for pages
//    ahead (`readAhead`, `upgradeAhead`: the neighbour, and the windows of
//    a sequential or strided stream found by `Readahead`).
// 3. Replies arrive as frames (`handleCoherenceFrame`) and come back to the
//    state machine, whose effects are carried out by `RuntimeEffects`
//    below: UFFDIO_COPY (with WP for a shared copy), UFFDIO_WRITEPROTECT to
//    grant or withdraw write access, a punched hole to drop a page,
//    UFFDIO_WAKE to resume the blocked threads. Pages arriving one after
//    another are installed as one run (`StagedRun`); a sharer's drops are
//    punched as runs before its acknowledgements leave (`PendingDrops`);
//    what takes a page away right after it came for a waiting thread waits
//    for the page's hold window (HoldWindow.swift).
// 4. Frames are queued and leave once per round of the event loop
//    (`PeerLinks.flushQueued`).
//
// No heap allocation happens on this path in steady state: frames are
// written into per-connection buffers, pages are copied from the runtime's
// own view of the memfd, the fault batch lives in a preallocated buffer.

import CDSMKernel
import DSMCoherence
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// ioctl errors of the fault path: which ones are part of normal life.
enum UffdOutcome {
    /// EEXIST: already there (a wake or protect that raced nothing harmful;
    /// an install that finds its page present is caught by the caller as a
    /// protocol bug); ENOENT: the attachment vanished under a shmdt.
    case benign
    /// EAGAIN: the address space was changing; try again.
    case retry
    case fatal(Errno)

    init(_ result: Int32) {
        switch -result {
        case EEXIST, ENOENT: self = .benign
        case EAGAIN: self = .retry
        default: self = .fatal(Errno(rawValue: -result))
        }
    }
}

extension PageEngine {
    /// Reads every queued fault and feeds it to the protocol.
    func drainFaults() {
        while true {
            let n = cdsm_uffd_read(uffd, faultBatch, Int32(faultBatchCapacity))
            if n <= 0 {
                if n < 0 { fatal("reading userfaultfd failed: \(Errno(rawValue: -n))") }
                return
            }
            for i in 0..<Int(n) {
                let fault = faultBatch[i]
                guard fault.event == CDSM_UFFD_EVENT_PAGEFAULT else { continue }
                let address = fault.address & ~UInt64(dsmPageSize - 1)
                guard let page = attachmentIndex.lookup(address) else {
                    // Detached under the thread's feet: let it retry and fail as Linux would.
                    _ = cdsm_uffd_wake(uffd, address, UInt64(dsmPageSize))
                    continue
                }
                let write = fault.flags & (CDSM_UFFD_PAGEFAULT_FLAG_WRITE | CDSM_UFFD_PAGEFAULT_FLAG_WP) != 0
                let missing = fault.flags & CDSM_UFFD_PAGEFAULT_FLAG_WP == 0
                if let container = containers[page.container] {
                    let i = Int(page.index)
                    container.counters.faults[i] &+= 1
                    if write { container.counters.writeFaults[i] &+= 1 }
                    if container.counters.waitingSince[i] == 0 {
                        let now = monotonicNanoseconds()
                        container.counters.waitingSince[i] = now
                        faultsWaiting += 1
                        latestWait = LatestWait(container: page.container, index: i, since: now)
                    }
                    // Release consistency: its own path (ReleasePages.swift).
                    if container.release != nil {
                        releaseFault(page, container, write: write, missing: missing)
                        continue
                    }
                }
                var effects = RuntimeEffects(engine: self)
                coherence.fault(page, write ? .write : .read, &effects)
                if missing {
                    readAhead(after: page, write: write)
                } else {
                    upgradeAhead(after: page)
                }
            }
            drainSelfMessages()
        }
    }

    /// Asks for pages the program is likely to touch next, after a miss on
    /// `page`: on a read miss on an even page, the odd page after it, so that
    /// 8 KiB blocks (a column, a row) arrive in one round trip's time
    /// (DSM_PREFETCH_BUDDY=0 turns it off); and the windows of a sequential
    /// or strided stream (`Readahead`; DSM_PREFETCH sets the largest window,
    /// 0 turns it off).
    func readAhead(after page: PageID, write: Bool) {
        guard let container = containers[page.container] else { return }
        let access: Access = write ? .write : .read
        var last = Int(page.index)
        if !write && buddyPrefetch && last & 1 == 0 && last + 1 < container.pages {
            last += 1
            prefetch(PageID(container: page.container, index: UInt32(last)), access)
        }
        let ahead = container.readahead.miss(Int(page.index), through: last, kind: write ? .write : .read,
                                             now: monotonicNanoseconds(), pages: container.pages)
        ahead.forEachPage { prefetch(PageID(container: page.container, index: UInt32($0)), access) }
    }

    /// After a write on a read-only page: a block read and then rewritten (an
    /// MGS column updated in place) is upgraded in one round trip's time
    /// instead of two, and a run of such upgrades (MGS's first step, every
    /// N-th column) asks for the next ones ahead. On an even page, the odd
    /// page after it is upgraded too when it is read-only here
    /// (DSM_PREFETCH_BUDDY=0: not). Pages ahead that are not here yet are
    /// asked for with write access (or get it once their read arrives).
    func upgradeAhead(after page: PageID) {
        guard let container = containers[page.container] else { return }
        var last = Int(page.index)
        if buddyPrefetch && last & 1 == 0 && last + 1 < container.pages {
            last += 1
            upgrade(PageID(container: page.container, index: UInt32(last)))
        }
        let ahead = container.readahead.miss(Int(page.index), through: last, kind: .upgrade,
                                             now: monotonicNanoseconds(), pages: container.pages)
        ahead.forEachPage { prefetch(PageID(container: page.container, index: UInt32($0)), .write) }
    }

    private func upgrade(_ page: PageID) {
        if coherence.localState(page) == .shared { prefetch(page, .write) }
    }

    private func prefetch(_ page: PageID, _ access: Access) {
        var effects = RuntimeEffects(engine: self)
        if coherence.prefetch(page, access, &effects) { stats.prefetches &+= 1 }
    }

    /// A coherence frame from a peer.
    func handleCoherenceFrame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: NodeID) {
        let message: ProtocolMessage
        switch ProtocolMessage.decode(header, from: peer, to: id, nodes: nodes) {
        case .success(let m): message = m
        case .failure(let problem): fatal("node \(peer) broke the protocol: \(problem)")
        }
        // A late message about a destroyed container (a `.done` still in
        // flight when the last detach destroyed it) concerns nobody now.
        guard let container = containers[header.container] else { return }
        // Before anything indexes a page table with it.
        guard Int(header.index) < container.pages else {
            fatal("node \(peer) broke the protocol: \(header.kind) for page \(header.index) of container \(header.container), which has \(container.pages)")
        }
        if case .data = message, payload.count != dsmPageSize {
            fatal("node \(peer) broke the protocol: it sent a page of \(payload.count) bytes")
        }
        closeExpiredHold(before: message)
        var effects = RuntimeEffects(engine: self, payload: payload)
        coherence.receive(message, &effects)
        drainSelfMessages()
    }

    /// Messages the state machine sent to this node itself, in order.
    func drainSelfMessages() {
        while selfQueueHead < selfQueue.count {
            let message = selfQueue[selfQueueHead]
            selfQueueHead += 1
            closeExpiredHold(before: message)
            var effects = RuntimeEffects(engine: self)
            coherence.receive(message, &effects)
        }
        selfQueue.removeAll(keepingCapacity: true)
        selfQueueHead = 0
    }
}

/// Carries out the state machine's decisions on this node.
struct RuntimeEffects: CoherenceEffects {
    unowned(unsafe) let engine: PageEngine
    /// The contents that came with the `.data` message being handled.
    var payload: UnsafeRawBufferPointer?
    /// The page of the answer (`.data`, `.grant`) this handler last sent.
    private var answered: PageID?

    init(engine: PageEngine, payload: UnsafeRawBufferPointer? = nil) {
        self.engine = engine
        self.payload = payload
    }

    mutating func send(_ message: ProtocolMessage, to destination: NodeID) {
        switch message {
        case .data(let p, _, _), .grant(let p, _, _, _): answered = p
        default: break
        }
        if destination == engine.id {
            precondition(message.carriesPage == false, "a page is never sent to its own node")
            engine.selfQueue.append(message)
            return
        }
        let header = message.frame(source: engine.id)
        if message.carriesPage {
            engine.flushStagedRun()
            guard let container = engine.containers[header.container] else {
                fatal("asked to send page \(header.container):\(header.index) of an unknown container")
            }
            let page = UnsafeRawBufferPointer(start: container.pageInView(header.index), count: dsmPageSize)
            engine.links.sendFrame(header, payload: page, to: destination)
            engine.stats.pagesSent &+= 1
        } else {
            engine.links.sendFrame(header, payload: nil, to: destination)
        }
    }

    mutating func writeProtect(_ page: PageID) {
        guard let container = engine.containers[page.container] else { return }
        engine.flushStagedRun()
        engine.setWriteProtection(container, page.index, true)
    }

    /// A sharer's drop comes before its acknowledgement: drops are gathered
    /// into runs of pages and punched out at once just before the queued
    /// frames leave (`punchPendingDrops`): an invalidation storm costs one
    /// fallocate and one send per run (node 0 rewriting 4096 pages node 1
    /// read: 11.6 -> 8.7 us per page). An owner's hand-over answers first
    /// and drops after, as the protocol orders it: the answer leaves at once
    /// and the hole is punched while it travels (the S->M upgrade would wait
    /// 7 us longer for the punch).
    mutating func drop(_ page: PageID) {
        guard let container = engine.containers[page.container] else { return }
        engine.flushStagedRun()
        container.counters.losses[Int(page.index)] &+= 1
        if answered == page {
            engine.links.flushQueued()
            let r = cdsm_punch_hole(container.memfd, UInt64(page.index) << 12, UInt64(dsmPageSize))
            if r != 0 { fatal("dropping page \(page) failed: \(Errno(rawValue: -r))") }
        } else {
            engine.pendDrop(page)
        }
    }

    mutating func install(_ page: PageID, writable: Bool) {
        guard let payload else { fatal("page \(page) installed without contents") }
        place(page, contents: payload.baseAddress!, writable: writable)
    }

    mutating func installZero(_ page: PageID) {
        place(page, contents: UnsafeRawPointer(engine.zeroPage), writable: true)
    }

    /// Puts a page into this node's copy: through the first attachment
    /// (UFFDIO_COPY, atomic with respect to the waiting threads), or through
    /// the runtime's view when the program has no attachment here. With one
    /// attachment, pages that follow each other are staged and installed as
    /// a run with one ioctl (`flushStagedRun`).
    private func place(_ page: PageID, contents: UnsafeRawPointer, writable: Bool) {
        guard let container = engine.containers[page.container] else { return }
        if container.attachments.count == 1 {
            let protect: Int32 = (writable && !container.attachments[0].readOnly) ? 0 : 1
            engine.stage(page, contents: contents, protect: protect, container: container)
            engine.stats.pagesInstalled &+= 1
            return
        }
        engine.flushStagedRun()
        let offset = UInt64(page.index) << 12
        var placed = false
        for a in container.attachments {
            if !placed {
                let protect: Int32 = (writable && !a.readOnly) ? 0 : 1
                let r = engine.uffdCall("copy") { cdsm_uffd_copy(engine.uffd, a.start + offset, contents, UInt64(dsmPageSize), protect, 1) }
                // An invalid page is absent from the memfd: finding one is a protocol bug.
                if -r == EEXIST { fatal("page \(page) was already present when installed") }
                placed = r == 0
            } else if !writable && !a.readOnly {
                engine.uffdCall("write-protect") { cdsm_uffd_writeprotect(engine.uffd, a.start + offset, UInt64(dsmPageSize), 1, 1) }
            }
        }
        if !placed {
            container.pageInView(page.index).copyMemory(from: contents, byteCount: dsmPageSize)
        }
        engine.stats.pagesInstalled &+= 1
    }

    mutating func makeWritable(_ page: PageID) {
        guard let container = engine.containers[page.container] else { return }
        engine.flushStagedRun()
        engine.setWriteProtection(container, page.index, false)
    }

    func held(_ page: PageID) {
        engine.heldBack(page)
    }

    func protocolViolation(_ reason: StaticString, page: PageID) {
        fatal("coherence protocol violation on page \(page): \(reason)")
    }

    mutating func wake(_ page: PageID) {
        guard let container = engine.containers[page.container] else { return }
        if let now = engine.endWait(container, Int(page.index)) {
            engine.startHold(container, Int(page.index), now: now)
        }
        // A staged page's threads are woken by the run's install.
        if engine.isStaged(page) { return }
        engine.wakeThreads(container, page.index)
    }
}

extension PageEngine {
    /// Grants (false) or withdraws (true) write access to a page in every
    /// writable attachment of the program.
    func setWriteProtection(_ c: LocalContainer, _ index: UInt32, _ on: Bool) {
        for a in c.attachments where !a.readOnly {
            uffdCall(on ? "write-protect" : "unprotect") {
                cdsm_uffd_writeprotect(uffd, a.start + UInt64(index) << 12, UInt64(dsmPageSize), on ? 1 : 0, 1)
            }
        }
    }

    /// The page's faulting threads stop counting as waiting; their wait
    /// goes into the histogram. Returns when, nil if nobody waited.
    @discardableResult
    func endWait(_ c: LocalContainer, _ index: Int) -> UInt64? {
        let since = c.counters.waitingSince[index]
        guard since != 0 else { return nil }
        let now = monotonicNanoseconds()
        stats.wait.record(now &- since)
        c.counters.waitingSince[index] = 0
        faultsWaiting -= 1
        return now
    }

    /// Resumes the threads blocked on a page, in every attachment.
    func wakeThreads(_ c: LocalContainer, _ index: UInt32) {
        for a in c.attachments {
            uffdCall("wake") { cdsm_uffd_wake(uffd, a.start + UInt64(index) << 12, UInt64(dsmPageSize)) }
        }
    }

    /// Runs a uffd ioctl, retrying EAGAIN; benign errors are returned, the
    /// rest end the node (the page state would no longer be trustworthy).
    @discardableResult @inline(__always)
    func uffdCall(_ what: StaticString = "ioctl", _ call: () -> Int32) -> Int32 {
        while true {
            let r = call()
            if r == 0 { return 0 }
            switch UffdOutcome(r) {
            case .benign: return r
            case .retry: continue
            case .fatal(let e): fatal("userfaultfd \(what) failed: \(e)")
            }
        }
    }
}

// MARK: - Coherence messages on the wire

extension ProtocolMessage {
    var carriesPage: Bool {
        if case .data = self { return true }
        return false
    }

    func frame(source: NodeID) -> FrameHeader {
        func header(_ kind: FrameKind, _ page: PageID, a: Int = 0, flags: UInt8 = 0) -> FrameHeader {
            FrameHeader(kind: kind, flags: flags, source: source, container: page.container, index: page.index, a: UInt64(a))
        }
        switch self {
        case .readRequest(let p, let from): return header(.readRequest, p, a: from)
        case .writeRequest(let p, let from): return header(.writeRequest, p, a: from)
        case .forwardRead(let p, let requester): return header(.forwardRead, p, a: requester)
        case .forwardWrite(let p, let requester, let sendData): return header(.forwardWrite, p, a: requester, flags: sendData ? 1 : 0)
        case .invalidate(let p): return header(.invalidate, p)
        case .invalidateAck(let p, let from): return header(.invalidateAck, p, a: from)
        case .data(let p, let writable, let closed):
            return header(.data, p, flags: (writable ? 1 : 0) | (closed ? 4 : 0))
        case .grant(let p, let writable, let zeroFill, let closed):
            return header(.grant, p, flags: (writable ? 1 : 0) | (zeroFill ? 2 : 0) | (closed ? 4 : 0))
        case .done(let p, let from): return header(.done, p, a: from)
        case .unwritten(let p, let from): return header(.unwritten, p, a: from)
        }
    }

    /// The message a coherence frame from `peer` carries. The node it names
    /// (`a`) is checked before it becomes an Int: a request, an
    /// acknowledgement and a `.done` name their sender (only the home sends
    /// itself a `.done`, never over the wire); a forward names another node
    /// of the run, which the page then goes to.
    static func decode(_ h: FrameHeader, from peer: NodeID, to me: NodeID, nodes: Int) -> Result<ProtocolMessage, MalformedFrame> {
        let p = PageID(container: h.container, index: h.index)
        func sender() -> NodeID? { h.a == UInt64(peer) ? peer : nil }
        func named() -> NodeID? {
            guard let n = h.node(inRunOf: nodes), n != me else { return nil }
            return n
        }
        let message: ProtocolMessage?
        switch h.kind {
        case .readRequest: message = sender().map { .readRequest(p, from: $0) }
        case .writeRequest: message = sender().map { .writeRequest(p, from: $0) }
        case .forwardRead: message = named().map { .forwardRead(p, requester: $0) }
        case .forwardWrite: message = named().map { .forwardWrite(p, requester: $0, sendData: h.flags & 1 != 0) }
        case .invalidate: message = .invalidate(p)
        case .invalidateAck: message = sender().map { .invalidateAck(p, from: $0) }
        case .data: message = .data(p, writable: h.flags & 1 != 0, closed: h.flags & 4 != 0)
        case .grant: message = .grant(p, writable: h.flags & 1 != 0, zeroFill: h.flags & 2 != 0, closed: h.flags & 4 != 0)
        case .done: message = sender().map { .done(p, from: $0) }
        case .unwritten: message = sender().map { .unwritten(p, from: $0) }
        default: return .failure(MalformedFrame("a \(h.kind) frame is no coherence message"))
        }
        guard let message else {
            return .failure(MalformedFrame("\(h.kind) for page \(p) names node \(h.a)"))
        }
        return .success(message)
    }
}

// MARK: - Runs of installs

/// Pages that arrived one after another (a readahead window) staged for one
/// UFFDIO_COPY: one ioctl and one wake-up for the run instead of one each
/// per page. Anything else that touches pages, or sends one, installs the
/// run first; so does the end of each peer's batch of frames.
struct StagedRun {
    static let capacity = 64
    let buffer: UnsafeMutableRawPointer
    var container: ContainerID = 0
    var first: UInt32 = 0
    var count = 0
    var protect: Int32 = 0
    var address: UInt64 = 0

    init() {
        buffer = .allocate(byteCount: StagedRun.capacity * dsmPageSize, alignment: dsmPageSize)
    }
}

extension PageEngine {
    func stage(_ page: PageID, contents: UnsafeRawPointer, protect: Int32, container: LocalContainer) {
        if staged.count > 0 && !(staged.container == page.container && page.index == staged.first &+ UInt32(staged.count)
                                 && staged.protect == protect && staged.count < StagedRun.capacity) {
            flushStagedRun()
        }
        if staged.count == 0 {
            staged.container = page.container
            staged.first = page.index
            staged.protect = protect
            staged.address = container.attachments[0].start + UInt64(page.index) << 12
        }
        (staged.buffer + staged.count * dsmPageSize).copyMemory(from: contents, byteCount: dsmPageSize)
        staged.count += 1
    }

    @inline(__always)
    func isStaged(_ page: PageID) -> Bool {
        staged.count > 0 && page.container == staged.container && page.index >= staged.first
            && page.index < staged.first &+ UInt32(staged.count)
    }

    /// Installs the staged run, waking the threads that wait on its pages.
    func flushStagedRun() {
        guard staged.count > 0 else { return }
        let run = staged
        staged.count = 0
        guard let container = containers[run.container] else { return }
        let r = cdsm_uffd_copy_run(uffd, run.address, run.buffer, UInt64(run.count * dsmPageSize), run.protect)
        if r == 0 { return }
        switch -r {
        // An invalid page is absent from the memfd: finding one is a protocol bug.
        case EEXIST: fatal("a page of \(run.container):\(run.first)+\(run.count) was already present when installed")
        case ENOENT:
            // One copy must land in one mapping (VMA): the run crosses a
            // boundary (the program changed the protection of part of it,
            // a thread stack's guard), or the attachment went away under
            // it. Page by page: what is still attached gets its copy (and
            // its waiting threads), the rest stays in the view.
            for i in 0..<run.count {
                let contents = run.buffer + i * dsmPageSize
                let one = run.count == 1 ? r
                    : cdsm_uffd_copy_run(uffd, run.address + UInt64(i * dsmPageSize), contents, UInt64(dsmPageSize), run.protect)
                switch -one {
                case 0: continue
                case ENOENT: container.pageInView(run.first + UInt32(i)).copyMemory(from: contents, byteCount: dsmPageSize)
                case EEXIST: fatal("page \(run.container):\(run.first + UInt32(i)) was already present when installed")
                default: fatal("userfaultfd copy failed: \(Errno(rawValue: -one))")
                }
            }
        default: fatal("userfaultfd copy failed: \(Errno(rawValue: -r))")
        }
    }
}

// MARK: - Runs of drops

/// Pages dropped in this round that follow each other, punched out of the
/// memfd with one fallocate (an invalidation storm, a writer streaming
/// through pages others read).
struct PendingDrops {
    var container: ContainerID = 0
    var first: UInt32 = 0
    var count: UInt32 = 0
}

extension PageEngine {
    func pendDrop(_ page: PageID) {
        if drops.count > 0 && !(drops.container == page.container && page.index == drops.first &+ drops.count) {
            punchPendingDrops()
        }
        if drops.count == 0 {
            drops.container = page.container
            drops.first = page.index
        }
        drops.count += 1
    }

    /// Punches the pending drops out: before any frame leaves, since the
    /// frame may tell another node it may now write the page.
    func punchPendingDrops() {
        guard drops.count > 0 else { return }
        let run = drops
        drops.count = 0
        guard let container = containers[run.container] else { return }
        let r = cdsm_punch_hole(container.memfd, UInt64(run.first) << 12, UInt64(run.count) << 12)
        if r != 0 { fatal("dropping pages \(run.container):\(run.first)+\(run.count) failed: \(Errno(rawValue: -r))") }
    }
}
