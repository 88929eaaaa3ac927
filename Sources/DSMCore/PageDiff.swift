#if canImport(Glibc)
import Glibc
#endif

/// The bytes a node changed in a page since it took its twin, as runs:
/// little-endian UInt16 offset, UInt16 length, then the bytes. Byte-exact:
/// a byte equal to the twin's is never part of a run, so a diff applied at
/// the home never writes over a byte another node changed in the same
/// page (release consistency's multiple writers).
public enum PageDiff {
    /// The most a page's diff can take: every other byte changed.
    public static func capacity(pageSize: Int) -> Int { (pageSize / 2 + 1) * 5 }

    /// Writes the diff of `current` against `twin` (both `pageSize` bytes)
    /// into `out` (at least `capacity(pageSize:)` bytes); returns its length,
    /// 0 when nothing changed.
    public static func encode(current: UnsafeRawPointer, twin: UnsafeRawPointer, pageSize: Int,
                              into out: UnsafeMutableRawPointer) -> Int {
        precondition(pageSize % 8 == 0 && pageSize <= 1 << 16)
        // Most pages of a release are unchanged, or changed in a few places:
        // memcmp first, then whole words, bytes only where a word differs.
        if memcmp(current, twin, pageSize) == 0 { return 0 }
        let now = current.assumingMemoryBound(to: UInt8.self)
        let was = twin.assumingMemoryBound(to: UInt8.self)
        let nowWords = current.assumingMemoryBound(to: UInt64.self)
        let wasWords = twin.assumingMemoryBound(to: UInt64.self)
        var length = 0
        var i = 0
        while i < pageSize {
            if i & 7 == 0 {
                var w = i >> 3
                let words = pageSize >> 3
                while w < words && nowWords[w] == wasWords[w] { w += 1 }
                i = w << 3
                if i >= pageSize { break }
            }
            if now[i] == was[i] {
                i += 1
                continue
            }
            let start = i
            while i < pageSize && now[i] != was[i] { i += 1 }
            out.storeBytes(of: UInt16(start).littleEndian, toByteOffset: length, as: UInt16.self)
            out.storeBytes(of: UInt16(i - start).littleEndian, toByteOffset: length + 2, as: UInt16.self)
            (out + length + 4).copyMemory(from: current + start, byteCount: i - start)
            length += 4 + i - start
        }
        return length
    }

    /// Writes a diff's runs into `page`. False (and possibly some runs
    /// written) when the diff is malformed: a run past the page or cut short.
    @discardableResult
    public static func apply(_ diff: UnsafeRawBufferPointer, to page: UnsafeMutableRawPointer, pageSize: Int) -> Bool {
        var at = 0
        while at < diff.count {
            guard diff.count - at >= 4 else { return false }
            let offset = Int(UInt16(littleEndian: diff.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
            let count = Int(UInt16(littleEndian: diff.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self)))
            guard count > 0, offset + count <= pageSize, diff.count - at - 4 >= count else { return false }
            (page + offset).copyMemory(from: diff.baseAddress! + at + 4, byteCount: count)
            at += 4 + count
        }
        return true
    }
}
