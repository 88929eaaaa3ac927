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
        var length = 0
        var i = 0
        while i < pageSize {
            // Whole words where aligned: most of a page is usually unchanged.
            if i & 7 == 0 && current.load(fromByteOffset: i, as: UInt64.self) == twin.load(fromByteOffset: i, as: UInt64.self) {
                i += 8
                continue
            }
            if current.load(fromByteOffset: i, as: UInt8.self) == twin.load(fromByteOffset: i, as: UInt8.self) {
                i += 1
                continue
            }
            let start = i
            while i < pageSize && current.load(fromByteOffset: i, as: UInt8.self) != twin.load(fromByteOffset: i, as: UInt8.self) {
                i += 1
            }
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
