#if canImport(Glibc)
import Glibc
#endif

/// What dsmrun is asked to run, as far as its runtime cares: the runtime
/// enters through the dynamic loader (LD_PRELOAD), so a statically linked
/// executable would run as N unrelated copies, sharing nothing.
public enum ProgramKind: Equatable, Sendable {
    case dynamicExecutable
    case staticExecutable
    /// A `#!` script: its interpreter is the process that runs.
    case script
    /// Anything else the kernel may run (binfmt_misc): left to it.
    case other

    /// Reads the file's ELF header and program headers (a PT_INTERP entry
    /// means the dynamic loader runs it).
    public static func inspect(path: String) -> ProgramKind {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .other }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 64)
        guard pread(fd, &header, 64, 0) == 64 else {
            return header.starts(with: [0x23, 0x21]) ? .script : .other
        }
        if header.starts(with: [0x23, 0x21]) { return .script }
        // ELF, 64-bit, little-endian: what this runtime is built for.
        guard header.starts(with: [0x7F, 0x45, 0x4C, 0x46]), header[4] == 2, header[5] == 1 else { return .other }
        func field<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, _: T.Type) -> T {
            var value: T = 0
            for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
            return value
        }
        let tableOffset = field(header, 32, UInt64.self)
        let entrySize = Int(field(header, 54, UInt16.self))
        let entries = Int(field(header, 56, UInt16.self))
        guard entrySize >= 4, entries > 0, entries <= 4096, tableOffset < UInt64(Int.max / 2) else { return .other }
        var table = [UInt8](repeating: 0, count: entrySize * entries)
        guard pread(fd, &table, table.count, off_t(tableOffset)) == table.count else { return .other }
        let PT_INTERP: UInt32 = 3
        for i in 0..<entries where field(table, i * entrySize, UInt32.self) == PT_INTERP { return .dynamicExecutable }
        return .staticExecutable
    }
}
