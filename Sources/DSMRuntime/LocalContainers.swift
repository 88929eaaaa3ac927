import CDSMKernel
import DSMCoherence
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// This node's copy of a container: a memfd holding the pages this node has
/// valid, a private view of it for the runtime (to read a page it sends and
/// never registered with userfaultfd), and the program's attachments, each
/// registered with userfaultfd for MISSING and WP faults.
///
/// Pages absent from the memfd are invalid here; the runtime never touches
/// them through its view (that would allocate a page behind the protocol's
/// back). Invalidation punches the page out of the memfd, which removes it
/// from every attachment at once.
final class LocalContainer {
    let id: ContainerID
    let size: Int
    let pages: Int
    let memfd: Int32
    let view: UnsafeMutableRawPointer
    /// Where node 0 placed the container so it sits at one address everywhere.
    var canonicalAddress: UInt64
    var attachments: [Attachment] = []
    var counters: PageCounters
    /// Release consistency's page states (nil: the container is kept by MESI).
    var release: ReleasePageTable?
    /// The sequential-miss detector of the prefetcher.
    var readahead: Readahead

    struct Attachment {
        var start: UInt64
        var length: UInt64
        var readOnly: Bool
        var shmid: Int32
    }

    init(id: ContainerID, pages: Int, canonicalAddress: UInt64) throws(Errno) {
        self.id = id
        self.pages = pages
        self.size = pages * dsmPageSize
        self.canonicalAddress = canonicalAddress
        self.counters = PageCounters(pages: pages)
        self.readahead = Readahead(maxWindow: readaheadWindow)
        let fd = cdsm_memfd("dsm-container-\(id)")
        guard fd >= 0 else { throw Errno(rawValue: -fd) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = Errno(rawValue: cdsm_errno())
            close(fd)
            throw e
        }
        guard let view = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), view != MAP_FAILED else {
            let e = Errno(rawValue: cdsm_errno())
            close(fd)
            throw e
        }
        // A forked child would inherit the mapping but not the coherence
        // (userfaultfd registrations are not inherited): keep it out.
        madvise(view, size, MADV_DONTFORK)
        self.memfd = fd
        self.view = view
    }

    deinit {
        for a in attachments {
            cdsm_mapping_remove(a.start)
            munmap(UnsafeMutableRawPointer(bitPattern: UInt(a.start)), Int(a.length))
        }
        munmap(view, size)
        close(memfd)
    }

    @inline(__always)
    func pageInView(_ index: UInt32) -> UnsafeMutableRawPointer {
        view + Int(index) * dsmPageSize
    }

    /// Maps the container for the program at `address` (0: the canonical
    /// address, or anywhere if that is taken) and registers it.
    /// `uffd` nil: a run of one node, where no page ever needs fetching and
    /// the attachment is plain shared memory.
    /// `replace`: the range is the program's own (its data image) and the
    /// container takes its place.
    func attach(at address: UInt64, fixed: Bool, readOnly: Bool, execute: Bool, shmid: Int32,
                uffd: Int32?, replace: Bool = false) throws(Errno) -> UInt64 {
        let protection = (readOnly ? PROT_READ : (PROT_READ | PROT_WRITE)) | (execute ? PROT_EXEC : 0)
        var hint = address != 0 ? address : canonicalAddress
        var mapped = mmap(UnsafeMutableRawPointer(bitPattern: UInt(hint)), size, protection,
                          MAP_SHARED | (replace ? MAP_FIXED : MAP_FIXED_NOREPLACE), memfd, 0)
        if mapped == MAP_FAILED {
            let e = cdsm_errno()
            // shmat at a given address fails if it overlaps a mapping; with
            // no address, any free place will do (a second attachment).
            if fixed || e != EEXIST { throw Errno(rawValue: e == EEXIST ? EINVAL : e) }
            mapped = mmap(nil, size, protection, MAP_SHARED, memfd, 0)
            guard mapped != MAP_FAILED else { throw Errno(rawValue: cdsm_errno()) }
        }
        hint = UInt64(UInt(bitPattern: mapped))
        madvise(mapped, size, MADV_DONTFORK)
        if let uffd {
            let r = cdsm_uffd_register(uffd, hint, UInt64(size))
            if r < 0 {
                // shmat has no errno for "cannot trap faults there": the
                // mapping could not be set up, which Linux reports as ENOMEM.
                munmap(mapped, size)
                throw Errno.noMemory
            }
        }
        attachments.append(Attachment(start: hint, length: UInt64(size), readOnly: readOnly, shmid: shmid))
        cdsm_mapping_add(hint, UInt64(size), memfd, readOnly ? 1 : 0)
        return hint
    }

    /// Removes the attachment starting at `address` (nil if there is none),
    /// calling `beforeUnmap` while its range is still mapped.
    func detach(at address: UInt64, beforeUnmap: (Attachment) -> Void) -> Attachment? {
        guard let i = attachments.firstIndex(where: { $0.start == address }) else { return nil }
        let a = attachments.remove(at: i)
        cdsm_mapping_remove(a.start)
        beforeUnmap(a)
        munmap(UnsafeMutableRawPointer(bitPattern: UInt(a.start)), Int(a.length))
        return a
    }
}

/// Finds the container and page of a faulting address. Few attachments
/// exist, so a linear scan over a flat array beats any tree here.
struct AttachmentIndex {
    struct Entry {
        var start: UInt64
        var end: UInt64
        var container: ContainerID
    }

    private(set) var entries: [Entry] = []

    mutating func rebuild(from containers: ContainerTable<LocalContainer>) {
        entries.removeAll(keepingCapacity: true)
        for (id, c) in containers {
            for a in c.attachments { entries.append(Entry(start: a.start, end: a.start + a.length, container: id)) }
        }
    }

    @inline(__always)
    func lookup(_ address: UInt64) -> PageID? {
        for e in entries where address >= e.start && address < e.end {
            return PageID(container: e.container, index: UInt32((address - e.start) >> 12))
        }
        return nil
    }
}

/// Why a container another node names (in an announcement or an attach's
/// answer) cannot be a System V segment of this run: the image's ids are
/// never sent, and no segment is larger than SHMMAX. nil when it can.
func wireContainerProblem(_ container: ContainerID, pages: UInt32) -> String? {
    if PageID.blockPages(of: container) != nil || PageID.imageDataObject(of: container) != nil {
        return "container id 0x\(String(container, radix: 16)) is not a System V segment's"
    }
    let most = ClusterService.limits.shmmax / UInt64(dsmPageSize)
    if pages == 0 || UInt64(pages) > most { return "a segment of \(pages) pages (1 to \(most))" }
    return nil
}
