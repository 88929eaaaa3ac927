/// Little-endian encoding of service calls and replies (not the fault path:
/// pages travel in coherence frames with no encoding step).
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func put(_ flag: Bool) { put(UInt8(flag ? 1 : 0)) }

    mutating func put<T: FixedWidthInteger>(array: [T]) {
        put(UInt32(array.count))
        for v in array { put(v) }
    }
}

/// Reads what WireWriter wrote, from a frame's payload or from an array.
/// A short or malformed input sets `failed` and reads zeros.
struct WireReader {
    private let raw: UnsafeRawBufferPointer?
    private let array: [UInt8]
    var offset = 0
    var failed = false

    init(_ bytes: UnsafeRawBufferPointer) {
        raw = bytes
        array = []
    }

    init(_ bytes: [UInt8]) {
        raw = nil
        array = bytes
    }

    private var count: Int { raw?.count ?? array.count }

    private func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let raw { return body(raw) }
        return array.withUnsafeBytes(body)
    }

    mutating func get<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= count else {
            failed = true
            return 0
        }
        let at = offset
        let v = withBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
        offset += size
        return T(littleEndian: v)
    }

    mutating func getBool() -> Bool { get(UInt8.self) != 0 }

    mutating func getArray<T: FixedWidthInteger>(_: T.Type = T.self) -> [T] {
        let n = Int(get(UInt32.self))
        guard n <= (count - offset) / MemoryLayout<T>.size else {
            failed = true
            return []
        }
        var result: [T] = []
        result.reserveCapacity(n)
        for _ in 0..<n { result.append(get(T.self)) }
        return result
    }

    /// What is left, as an array.
    func rest() -> [UInt8] {
        let at = offset
        return withBytes { Array($0[at...]) }
    }
}
