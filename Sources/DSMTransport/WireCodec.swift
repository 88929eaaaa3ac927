/// Little-endian encoding of service calls and replies (not the fault path:
/// pages travel in coherence frames with no encoding step).
public struct WireWriter {
    public var bytes: [UInt8] = []

    @inlinable
    public init() {}

    @inlinable
    public mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func put(_ flag: Bool) { put(UInt8(flag ? 1 : 0)) }

    @inlinable
    public mutating func put<T: FixedWidthInteger>(array: [T]) {
        put(UInt32(truncatingIfNeeded: array.count))
        for v in array { put(v) }
    }
}

/// Reads what WireWriter wrote, from a frame's payload or from an array.
/// Total on any input: a short or malformed input sets `failed` and reads
/// zeros (and empty arrays); a count is believed only as far as the bytes
/// left can hold that many elements, so nothing read allocates more than
/// the input's own size.
public struct WireReader {
    @usableFromInline let raw: UnsafeRawBufferPointer?
    @usableFromInline let array: [UInt8]
    @usableFromInline var position = 0
    /// Set once a read went past the end or a count did not fit.
    public var failed = false

    /// Bytes read so far.
    @inlinable
    public var offset: Int { position }

    public init(_ bytes: UnsafeRawBufferPointer) {
        raw = bytes
        array = []
    }

    public init(_ bytes: [UInt8]) {
        raw = nil
        array = bytes
    }

    @inlinable
    var count: Int { raw?.count ?? array.count }

    /// Bytes not read yet.
    @inlinable
    public var remaining: Int { count - position }

    @inlinable
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let raw { return body(raw) }
        return array.withUnsafeBytes(body)
    }

    @inlinable
    public mutating func get<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else {
            failed = true
            return 0
        }
        let at = position
        let v = withBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
        position += size
        return T(littleEndian: v)
    }

    @inlinable
    public mutating func getBool() -> Bool { get(UInt8.self) != 0 }

    /// A UInt32 count of elements of `elementSize` bytes each that follow:
    /// nil (and `failed`) when the bytes left cannot hold that many.
    @inlinable
    public mutating func getCount(elementSize: Int) -> Int? {
        let n = get(UInt32.self)
        guard !failed, elementSize > 0, UInt64(n) <= UInt64(remaining / elementSize) else {
            failed = true
            return nil
        }
        return Int(n)
    }

    @inlinable
    public mutating func getArray<T: FixedWidthInteger>(_: T.Type = T.self) -> [T] {
        guard let n = getCount(elementSize: MemoryLayout<T>.size) else { return [] }
        var result: [T] = []
        result.reserveCapacity(n)
        for _ in 0..<n { result.append(get(T.self)) }
        return result
    }

    /// What is left, as an array.
    @inlinable
    public func rest() -> [UInt8] {
        let at = position
        return withBytes { Array($0[at...]) }
    }
}
