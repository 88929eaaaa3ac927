// The page engine: this node's containers and the coherence protocol that
// keeps their pages. Faults come in through the userfaultfd, coherence
// frames from the peers; both go to the MESI state machine, whose effects
// are carried out here (FaultPath.swift: the fault path in order;
// HoldWindow.swift: how long a page stays; LocalContainers.swift: the
// memory behind a container). The engine answers to the event loop, which
// tells it when to read faults and hands it coherence frames, and sends its
// own frames through the node's `PeerLinks`.

import CDSMKernel
import DSMCoherence
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Counters of the page engine, for --stats.
struct PageStats {
    var pagesSent: UInt64 = 0
    var pagesInstalled: UInt64 = 0
    var prefetches: UInt64 = 0
    /// How long faults waited, from the first fault on a page to its wake.
    var wait = LatencyHistogram()
}

final class PageEngine {
    let configuration: Configuration
    var id: NodeID { configuration.node }
    var nodes: Int { configuration.nodes }
    let uffd: Int32
    unowned(unsafe) let links: PeerLinks

    var coherence: CoherenceNode
    var containers = ContainerTable<LocalContainer>()
    var attachmentIndex = AttachmentIndex()
    /// Messages the state machine sent to this node itself, handled once
    /// the call that made them has returned (`drainSelfMessages`).
    var selfQueue: [ProtocolMessage] = []
    var selfQueueHead = 0
    let faultBatchCapacity = 32
    let faultBatch: UnsafeMutablePointer<cdsm_uffd_fault>
    let zeroPage: UnsafeMutableRawPointer
    var stats = PageStats()
    /// Page counters of destroyed containers, for --stats.
    var retiredPages: [PageRecord] = []
    /// Pages with a fault not yet answered (program threads blocked on them).
    var faultsWaiting = 0
    /// The latest fault that began to wait (SlowWaits.swift).
    var latestWait = LatestWait()
    /// Coherence messages held back by hold windows (HoldWindow.swift), and
    /// the earliest time one of them is due.
    var held: [HeldPage] = []
    var earliestRelease = UInt64.max
    /// Installs waiting to go as one run (FaultPath.swift).
    var staged = StagedRun()
    /// Drops waiting to be punched out as one run (FaultPath.swift).
    var drops = PendingDrops()
    /// Release consistency's copies, twins and releases (ReleasePages.swift).
    var release = ReleaseBook()
    /// What a release waited for, once its diffs are acknowledged: a
    /// program thread to answer, a lock token to give back.
    var releaseDone: ((ReleaseWaiter) -> Void)?
    /// How long a page brought in for a waiting thread stays (DSM_HOLD_US).
    let holdNanoseconds: UInt64
    /// A read miss on an even page also fetches the next one (DSM_PREFETCH_BUDDY=0: off).
    let buddyPrefetch: Bool

    init(configuration: Configuration, uffd: Int32, links: PeerLinks) {
        self.configuration = configuration
        self.uffd = uffd
        self.links = links
        holdNanoseconds = configuration.tunables.holdNanoseconds
        buddyPrefetch = configuration.tunables.buddyPrefetch
        coherence = CoherenceNode(node: configuration.node, nodes: configuration.nodes,
                                  handsOverMigratoryPages: configuration.tunables.migratoryPages,
                                  holdsPages: configuration.tunables.holdNanoseconds > 0)
        faultBatch = .allocate(capacity: faultBatchCapacity)
        zeroPage = UnsafeMutableRawPointer.allocate(byteCount: dsmPageSize, alignment: dsmPageSize)
        zeroPage.initializeMemory(as: UInt8.self, repeating: 0, count: dsmPageSize)
        selfQueue.reserveCapacity(256)
        held.reserveCapacity(256)
    }

    /// What the loop does before it sleeps: the staged run is installed and
    /// the held messages whose time has come are handled.
    func settle() {
        flushStagedRun()
        releaseHeldMessages()
    }

    /// When the engine needs the loop back without any event: a held
    /// message's release (nil: no message is held).
    var nextRelease: UInt64? { held.isEmpty ? nil : earliestRelease }

    // MARK: containers

    @discardableResult
    func ensureContainer(_ container: ContainerID, pages: UInt32, canonical: UInt64) -> LocalContainer {
        if let c = containers[container] { return c }
        do {
            let c = try LocalContainer(id: container, pages: Int(pages), canonicalAddress: canonical)
            if releaseConsistent { c.release = ReleasePageTable(pages: Int(pages)) }
            containers[container] = c
            coherence.addContainer(container, pages: Int(pages))
            return c
        } catch {
            fatal("cannot back container \(container) (\(pages) pages): \(error)")
        }
    }

    func destroyContainer(_ container: ContainerID) {
        guard let c = containers.removeValue(forKey: container) else { return }
        if c.release != nil { forgetReleasePages(of: c) }
        releaseWaiters(c, attachments: c.attachments)
        if configuration.stats { retiredPages += c.busiestPages() }
        coherence.removeContainer(container)
        attachmentIndex.rebuild(from: containers)
    }

    /// Maps a container into the program (shmat, image mode's mappings);
    /// returns the address.
    func mapAttachment(container: ContainerID, pages: UInt32, canonical: UInt64, address: UInt64, fixed: Bool,
                       readOnly: Bool, execute: Bool, shmid: Int32) throws(Errno) -> UInt64 {
        let c = ensureContainer(container, pages: pages, canonical: canonical)
        // One node: nothing to keep coherent, so no fault is trapped and the
        // program runs on plain shared memory.
        let at = try c.attach(at: address, fixed: fixed, readOnly: readOnly, execute: execute, shmid: shmid,
                              uffd: nodes > 1 ? uffd : nil)
        if nodes > 1 { protectNewAttachment(c, at: at) }
        attachmentIndex.rebuild(from: containers)
        return at
    }

    /// shmdt: the shmid of the attachment at `address`, nil if none is.
    func unmapAttachment(at address: UInt64) -> Int32? {
        for (_, c) in containers {
            guard let a = c.detach(at: address, beforeUnmap: { releaseWaiters(c, attachments: [$0]) }) else { continue }
            attachmentIndex.rebuild(from: containers)
            return a.shmid
        }
        return nil
    }

    /// Before attachments go away: threads still blocked on a fault there
    /// are woken (their access then fails as Linux's would, with SIGSEGV on
    /// the unmapped range) and stop counting as waiting.
    private func releaseWaiters(_ c: LocalContainer, attachments: [LocalContainer.Attachment]) {
        for a in attachments { _ = cdsm_uffd_wake(uffd, a.start, a.length) }
        for i in 0..<c.pages where c.counters.waitingSince[i] != 0 {
            c.counters.waitingSince[i] = 0
            faultsWaiting -= 1
        }
    }

    /// A new attachment sees whatever pages this node holds: those it may
    /// not write yet must be write-protected in it too.
    private func protectNewAttachment(_ c: LocalContainer, at start: UInt64) {
        guard let a = c.attachments.last, !a.readOnly else { return }
        if let table = c.release {
            for index in 0..<UInt32(c.pages) where table[index] == .clean {
                uffdCall { cdsm_uffd_writeprotect(uffd, start + UInt64(index) << 12, UInt64(dsmPageSize), 1, 1) }
            }
            return
        }
        for index in 0..<UInt32(c.pages) where coherence.localState(PageID(container: c.id, index: index)).isWriteProtected {
            uffdCall { cdsm_uffd_writeprotect(uffd, start + UInt64(index) << 12, UInt64(dsmPageSize), 1, 1) }
        }
    }

    /// Whether a container is attached here (a peer may not destroy it).
    func isAttached(_ container: ContainerID) -> Bool {
        guard let c = containers[container] else { return false }
        return !c.attachments.isEmpty
    }
}
