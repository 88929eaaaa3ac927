import DSMCore

/// What a frame carries. Coherence messages first, then services.
public enum FrameKind: UInt8, Sendable, CaseIterable {
    // MESI protocol (DSMCoherence.ProtocolMessage), see CoherenceWire in the runtime.
    case readRequest = 1, writeRequest, forwardRead, forwardWrite, invalidate, invalidateAck, data, grant, done, unwritten
    // Release consistency's pages (ReleasePages.swift in the runtime): a copy
    // asked of the home and sent, a diff sent home and acknowledged, a
    // holder told its copy is old and noting it, a home moving.
    case releaseFetch = 12, releaseData, releaseDiff, releaseDiffAck, releaseStale, releaseStaleSeen, releaseMove
    // Remote procedure calls to a service on another node (SysV namespace, barrier).
    case call = 20, reply
    // Cluster control.
    case exiting = 30, abort
    /// Node -> node: nothing else to say lately; I am alive (Liveness).
    case heartbeat = 32
    /// Node -> node 0: text printed on the node, for descriptor `a` (1 or 2).
    case output = 33
    /// Node -> launcher at exit: the node's counters, as JSON (dsmrun --stats).
    case stats = 35
    // Connection set-up.
    case hello = 40, table, auth
    /// Agent -> launcher, first frame of its control connection: `a` is the host index.
    case agentHello
    /// Agent -> launcher: node `a` ended; `index` is its wait status.
    case nodeEnded
    /// Launcher -> agent: send signal `a` to every node of the host, or to
    /// node `index` - 1 only when `index` > 0.
    case signalNodes
    /// Launcher -> agent of node 0's host: the launcher's standard input
    /// for node 0 (an empty payload: its end).
    case stdinData
}

/// The fixed 32-byte header in front of every message. Little-endian, as
/// every node runs on the same kind of machine; the `magic` byte catches a
/// stream that lost its framing.
public struct FrameHeader: Equatable, Sendable {
    public static let size = 32
    public static let magic: UInt8 = 0xD5
    /// Frames larger than this are a protocol error (a page is 4 KiB; the
    /// largest call is a SETALL of a big semaphore set).
    public static let maxPayload = 1 << 20

    public var kind: FrameKind
    public var flags: UInt8
    public var source: UInt16
    public var payloadLength: UInt32
    public var container: UInt32
    public var index: UInt32
    /// A node id, a request id or an operation, depending on the kind.
    public var a: UInt64

    @inlinable
    public init(kind: FrameKind, flags: UInt8 = 0, source: Int, payloadLength: Int = 0,
                container: UInt32 = 0, index: UInt32 = 0, a: UInt64 = 0) {
        self.kind = kind
        self.flags = flags
        self.source = UInt16(source)
        self.payloadLength = UInt32(payloadLength)
        self.container = container
        self.index = index
        self.a = a
    }

    @inlinable
    public func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: FrameHeader.magic, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: kind.rawValue, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: flags, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: source.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: payloadLength.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: container.littleEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: index.littleEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: a.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// The fields as they came off the wire, no conversion.
    @inlinable
    init(kind: FrameKind, flags: UInt8, rawSource: UInt16, payloadLength: UInt32, container: UInt32, index: UInt32,
         a: UInt64) {
        self.kind = kind
        self.flags = flags
        self.source = rawSource
        self.payloadLength = payloadLength
        self.container = container
        self.index = index
        self.a = a
    }

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case badMagic(UInt8), badKind(UInt8), tooLarge(UInt32)

        public var description: String {
            switch self {
            case .badMagic(let m): return "a frame without the magic byte (0x\(String(m, radix: 16)) instead of 0xd5)"
            case .badKind(let k): return "a frame of unknown kind \(k)"
            case .tooLarge(let n): return "a frame of \(n) bytes (at most \(FrameHeader.maxPayload))"
            }
        }
    }

    /// Decodes the 32 bytes at `p`. Total: any bytes give a header or an
    /// error, never a trap; the reserved bytes are ignored.
    @inlinable
    public static func decode(_ p: UnsafeRawPointer) throws(DecodeError) -> FrameHeader {
        let magic = p.load(fromByteOffset: 0, as: UInt8.self)
        guard magic == FrameHeader.magic else { throw DecodeError.badMagic(magic) }
        let rawKind = p.load(fromByteOffset: 1, as: UInt8.self)
        guard let kind = FrameKind(rawValue: rawKind) else { throw DecodeError.badKind(rawKind) }
        let length = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard length <= UInt32(FrameHeader.maxPayload) else { throw DecodeError.tooLarge(length) }
        return FrameHeader(
            kind: kind,
            flags: p.load(fromByteOffset: 2, as: UInt8.self),
            rawSource: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)),
            payloadLength: length,
            container: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
            index: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt32.self)),
            a: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }

    /// `a` as a node of a run of `nodes`: nil when it names none (a value
    /// from the wire is compared as sent, all 64 bits, before it becomes an Int).
    @inlinable
    public func node(inRunOf nodes: Int) -> NodeID? {
        guard nodes > 0, a < UInt64(nodes) else { return nil }
        return Int(a)
    }
}
