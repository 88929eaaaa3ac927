// Image mode's address space: the executable's writable data and bss become
// a container (node 0 keeps the contents it has, the others start with every
// page invalid), and the heap container is mapped at one fixed address on
// every node. The C side (Sources/CDSMPreload/image.c) finds the data,
// serves malloc from the heap and runs main on node 0.

import CDSMKernel
import CDSMPreload
import DSMCoherence
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// One object's writable data in image mode: a container of its own.
struct ImageData {
    var start: UInt64
    var pages: UInt32
}

/// The heap is block-homed: node k is the home of its own arena (the C
/// allocator's 1/N slice, rounded down to 64 KiB as in heap.c), so its first
/// touch of memory it allocated needs no message.
func heapContainerID(_ configuration: Configuration) -> ContainerID {
    let arenaBytes = (configuration.heapBytes / UInt64(configuration.nodes)) & ~UInt64(0xFFFF)
    return PageID.blockHomedContainer(blockPages: Int(arenaBytes) / dsmPageSize)
}
/// Where the heap sits on every node (below the mmap area, which ASLR-less
/// processes fill downwards from just under the stack).
let heapBase: UInt64 = 0x1000_0000_0000

@_cdecl("dsm_swift_image_mode")
public func dsmSwiftImageMode() -> Int32 {
    guard let configuration = processConfiguration, configuration.image else { return 0 }
    // A wrapper dsmrun was asked to run (sh -c, env) is not the program:
    // it runs as itself and the program it executes joins.
    guard let program = configuration.program, let expected = realpath(program, nil) else { return 1 }
    defer { free(expected) }
    guard let actual = realpath("/proc/self/exe", nil) else { return 1 }
    defer { free(actual) }
    return strcmp(expected, actual) == 0 ? 1 : 0
}

@_cdecl("dsm_swift_image_setup")
public func dsmSwiftImageSetup(_ ranges: UnsafePointer<UInt64>, _ count: Int32, _ fingerprint: UInt64,
                               _ heapStart: UnsafeMutablePointer<UInt64>, _ heapSize: UnsafeMutablePointer<UInt64>) -> Int {
    let node = runtimeNode!
    let configuration = node.configuration
    let heapPages = UInt32(configuration.heapBytes / UInt64(dsmPageSize))
    let data = (0..<min(Int(count), PageID.imageDataObjects)).map { i in
        ImageData(start: ranges[2 * i], pages: UInt32((ranges[2 * i + 1] - ranges[2 * i]) / UInt64(dsmPageSize)))
    }
    let mapped = node.calls.perform(.setUpImage(data: data, heapPages: heapPages))
    if mapped.result < 0 { fatal("cannot map the program's image: \(Errno(rawValue: Int32(-mapped.result)))") }
    // Every node has the containers, and has them mapped, before any node
    // may fault on them: a read served by node 0 before its own mapping
    // existed would leave that mapping writable behind the protocol's back.
    // (Until then only the runtime runs here, which never touches them.)
    let met = node.calls.perform(.imageStart(fingerprint: fingerprint))
    if met.result == -Int64(EXDEV) {
        fatal("""
            this node's address-space layout differs from node 0's (the same binary and libraries must load at the \
            same addresses on every node, with address-space randomisation off)
            """)
    }
    heapStart.pointee = heapBase
    heapSize.pointee = UInt64(heapPages) * UInt64(dsmPageSize)
    return 0
}

extension PageEngine {
    /// Runtime thread: creates the image containers and maps them over the
    /// program's address space; node 0 fills each data container with the
    /// program's current data, and owns every page of it.
    func setUpImage(data: [ImageData], heapPages: UInt32) -> ServiceReply {
        for (object, range) in data.enumerated() where range.pages > 0 {
            let id = PageID.imageDataContainer(object: object)
            let c = ensureContainer(id, pages: range.pages, canonical: range.start)
            if self.id == 0 {
                // The program's data is still its private mapping here, and
                // only the runtime runs before main.
                c.view.copyMemory(from: UnsafeRawPointer(bitPattern: UInt(range.start))!, byteCount: c.size)
            }
            coherence.seedOwner(id, owner: 0)
            c.release?.seededHome = 0
        }
        ensureContainer(heapContainerID(configuration), pages: heapPages, canonical: heapBase)
        let uffd: Int32? = nodes > 1 ? self.uffd : nil
        do {
            for (object, range) in data.enumerated() where range.pages > 0 {
                guard let c = containers[PageID.imageDataContainer(object: object)] else { continue }
                let at = try c.attach(at: c.canonicalAddress, fixed: true, readOnly: false, execute: false,
                                      shmid: -1, uffd: uffd, replace: true)
                if id == 0 {
                    // Node 0 owns every page, whose contents are in the memfd
                    // but not yet in its page tables: they are mapped now, so
                    // that the downgrade when another node reads a page
                    // write-protects a mapped page, whatever the kernel does
                    // with empty page tables.
                    if madvise(UnsafeMutableRawPointer(bitPattern: UInt(at)), c.size, CDSM_MADV_POPULATE_WRITE) != 0 {
                        return .error(Errno(rawValue: cdsm_errno()))
                    }
                }
            }
            if let heap = containers[heapContainerID(configuration)] {
                _ = try heap.attach(at: heapBase, fixed: true, readOnly: false, execute: false, shmid: -1, uffd: uffd)
            }
        } catch {
            return .error(error)
        }
        attachmentIndex.rebuild(from: containers)
        return ServiceReply(result: 0)
    }
}
