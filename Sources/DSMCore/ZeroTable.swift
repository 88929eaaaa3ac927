#if canImport(Glibc)
import Glibc
#endif

/// A fixed-length table of plain values whose default is all-zero bytes,
/// kept in memory that costs nothing until written: an entry per page of a
/// container stays cheap when the container is huge and mostly untouched
/// (a 1 TiB heap reservation has 2^28 pages, of which a program may touch a
/// few). Tables of 1 MiB and more are anonymous mappings reserved without
/// swap accounting (Linux's overcommit); smaller ones come from calloc.
///
/// A value type, as `Array` is: a copy shares the storage until one of them
/// is written (the protocol model explores copies of whole node states).
public struct ZeroTable<Element>: RandomAccessCollection, MutableCollection, @unchecked Sendable {
    @usableFromInline
    final class Storage {
        @usableFromInline let base: UnsafeMutablePointer<Element>
        @usableFromInline let count: Int
        /// Bytes mapped with mmap; 0 when the table came from calloc.
        let mapped: Int

        static var mappingThreshold: Int { 1 << 20 }

        init(count: Int) {
            precondition(_isPOD(Element.self), "ZeroTable holds plain values only")
            precondition(count >= 0)
            self.count = count
            let bytes = Swift.max(count, 1) * MemoryLayout<Element>.stride
            if bytes >= Storage.mappingThreshold {
                let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                guard let p, p != MAP_FAILED else {
                    fatalError("cannot reserve \(bytes) bytes for a table of \(count) entries: \(Errno(rawValue: errno))")
                }
                base = p.bindMemory(to: Element.self, capacity: Swift.max(count, 1))
                mapped = bytes
            } else {
                guard let p = calloc(Swift.max(count, 1), MemoryLayout<Element>.stride) else {
                    fatalError("out of memory for a table of \(count) entries")
                }
                base = p.bindMemory(to: Element.self, capacity: Swift.max(count, 1))
                mapped = 0
            }
        }

        deinit {
            if mapped > 0 { munmap(base, mapped) } else { free(base) }
        }

        @usableFromInline
        func copy() -> Storage {
            let c = Storage(count: count)
            c.base.update(from: base, count: count)
            return c
        }
    }

    @usableFromInline var storage: Storage

    /// `count` entries, each all-zero bytes.
    public init(count: Int) { storage = Storage(count: count) }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { storage.count }

    @inlinable
    public subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < storage.count, "ZeroTable index out of range")
            return storage.base[index]
        }
        _modify {
            precondition(index >= 0 && index < storage.count, "ZeroTable index out of range")
            if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
            yield &storage.base[index]
        }
    }
}

extension ZeroTable: Equatable where Element: Equatable {
    public static func == (a: ZeroTable, b: ZeroTable) -> Bool {
        a.storage === b.storage || a.elementsEqual(b)
    }
}

extension ZeroTable: Hashable where Element: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for e in self { hasher.combine(e) }
    }
}
