import CDSMKernel
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// One framed TCP stream. Buffers are allocated once per connection; sending
/// and receiving a frame allocate nothing unless a backlog outgrows them.
public final class Connection {
    public let fd: Int32
    /// Which node is at the other end (set once authenticated).
    public var peer: NodeID = -1

    private var input: UnsafeMutableRawPointer
    private var inputCapacity: Int
    private var inputStart = 0
    private var inputEnd = 0

    private var output: UnsafeMutableRawPointer
    private var outputCapacity: Int
    private var outputStart = 0
    private var outputEnd = 0

    /// Emulated distance (DSM_DELAY_US): bytes leave at the earliest this
    /// long after the `flush` that first saw them, as if the link took that
    /// long one way. 0 (the default) costs nothing.
    public var delayNanoseconds: UInt64 = 0
    /// Bytes ever queued and ever written, and when each flushed batch may
    /// leave (a ring of (end, due) stamps; only used with a delay).
    private var queuedTotal: UInt64 = 0
    private var writtenTotal: UInt64 = 0
    /// Bytes whose delay has passed (written, or waiting for the socket).
    private var releasedTotal: UInt64 = 0
    private var stamps: UnsafeMutablePointer<(end: UInt64, due: UInt64)>?
    private var stampHead = 0
    private var stampCount = 0
    private static let stampCapacity = 4096

    public init(fd: Int32) {
        self.fd = fd
        inputCapacity = 256 << 10
        input = UnsafeMutableRawPointer.allocate(byteCount: inputCapacity, alignment: 16)
        // Room for a readahead burst of the default window (128 pages) to a
        // peer that reads slowly, several times over: the queue grows (an
        // allocation on the fault path) only past that. Pages of it never
        // used are never touched.
        outputCapacity = 2 << 20
        output = UnsafeMutableRawPointer.allocate(byteCount: outputCapacity, alignment: 16)
    }

    deinit {
        input.deallocate()
        output.deallocate()
        stamps?.deallocate()
        close(fd)
    }

    public var hasPendingOutput: Bool { outputEnd > outputStart }
    /// The last flush stopped because the socket was full (not because of
    /// the delay): the caller waits for writability.
    public private(set) var waitingForSocket = false

    // MARK: sending

    /// Queues one frame and writes as much as the socket takes now. The
    /// caller watches for writability while `hasPendingOutput`.
    public func send(_ header: FrameHeader, payload: UnsafeRawBufferPointer? = nil) throws {
        queue(header, payload: payload)
        try flush()
    }

    /// Queues one frame without writing: frames queued together leave in one
    /// `send` at the next `flush`.
    public func queue(_ header: FrameHeader, payload: UnsafeRawBufferPointer? = nil) {
        var header = header
        header.payloadLength = UInt32(payload?.count ?? 0)
        let total = FrameHeader.size + (payload?.count ?? 0)
        reserveOutput(total)
        header.encode(into: output + outputEnd)
        if let payload, payload.count > 0 {
            (output + outputEnd + FrameHeader.size).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        outputEnd += total
        queuedTotal &+= UInt64(total)
    }

    /// Writes queued bytes until done or the socket would block (with a
    /// delay: those whose time has come).
    public func flush() throws {
        var limit = outputEnd
        if delayNanoseconds > 0 { limit = outputStart + delayedBytesDue() }
        waitingForSocket = false
        while limit > outputStart {
            let n = Glibc.send(fd, output + outputStart, limit - outputStart, Int32(MSG_NOSIGNAL))
            if n > 0 {
                outputStart += n
                writtenTotal &+= UInt64(n)
            } else {
                let e = cdsm_errno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK {
                    waitingForSocket = true
                    return
                }
                throw Errno(rawValue: e)
            }
        }
        if outputStart == outputEnd {
            outputStart = 0
            outputEnd = 0
        }
    }

    /// With a delay: stamps the bytes queued since the last flush with their
    /// time to leave, and returns how many queued bytes may leave now.
    private func delayedBytesDue() -> Int {
        if stamps == nil { stamps = .allocate(capacity: Connection.stampCapacity) }
        let now = monotonicNanoseconds()
        let lastEnd = stampCount > 0 ? stamps![(stampHead + stampCount - 1) % Connection.stampCapacity].end
                                     : max(releasedTotal, writtenTotal)
        if queuedTotal > lastEnd {
            if stampCount == Connection.stampCapacity {
                // Full: the newest batch joins the last one (and its time).
                stamps![(stampHead + stampCount - 1) % Connection.stampCapacity] = (queuedTotal, now &+ delayNanoseconds)
            } else {
                stamps![(stampHead + stampCount) % Connection.stampCapacity] = (queuedTotal, now &+ delayNanoseconds)
                stampCount += 1
            }
        }
        while stampCount > 0 {
            let stamp = stamps![stampHead]
            guard stamp.due <= now else { break }
            releasedTotal = max(releasedTotal, stamp.end)
            stampHead = (stampHead + 1) % Connection.stampCapacity
            stampCount -= 1
        }
        // Released bytes the socket did not take last time go as soon as it
        // takes them, without a second delay.
        return Int(releasedTotal > writtenTotal ? releasedTotal - writtenTotal : 0)
    }

    /// With a delay: when the next delayed bytes may leave (monotonic ns).
    public var nextDelayedSend: UInt64? {
        guard delayNanoseconds > 0, stampCount > 0, let stamps else { return nil }
        return stamps[stampHead].due
    }

    private func reserveOutput(_ bytes: Int) {
        if outputEnd + bytes <= outputCapacity { return }
        let live = outputEnd - outputStart
        if live + bytes <= outputCapacity {
            (output).copyMemory(from: output + outputStart, byteCount: live)
        } else {
            var capacity = outputCapacity * 2
            while live + bytes > capacity { capacity *= 2 }
            let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            grown.copyMemory(from: output + outputStart, byteCount: live)
            output.deallocate()
            output = grown
            outputCapacity = capacity
        }
        outputStart = 0
        outputEnd = live
    }

    // MARK: receiving

    public enum ReadResult { case data, wouldBlock, endOfStream }

    /// Reads what the socket has into the input buffer.
    public func receive() throws -> ReadResult {
        if inputStart == inputEnd {
            inputStart = 0
            inputEnd = 0
        } else if inputCapacity - inputEnd < 64 << 10 {
            let live = inputEnd - inputStart
            input.copyMemory(from: input + inputStart, byteCount: live)
            inputStart = 0
            inputEnd = live
        }
        if inputCapacity - inputEnd < FrameHeader.size + dsmPageSize {
            growInput(minimum: inputEnd + FrameHeader.size + FrameHeader.maxPayload)
        }
        while true {
            let n = recv(fd, input + inputEnd, inputCapacity - inputEnd, 0)
            if n > 0 {
                inputEnd += n
                return .data
            }
            if n == 0 { return .endOfStream }
            let e = cdsm_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw TransportError.system(Errno(rawValue: e))
        }
    }

    private func growInput(minimum: Int) {
        var capacity = inputCapacity
        while capacity < minimum { capacity *= 2 }
        if capacity == inputCapacity { return }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        grown.copyMemory(from: input + inputStart, byteCount: inputEnd - inputStart)
        input.deallocate()
        input = grown
        inputEnd -= inputStart
        inputStart = 0
        inputCapacity = capacity
    }

    /// The next complete frame in the input buffer, if any. The payload stays
    /// valid until the next call to `receive()`.
    public func nextFrame() throws -> (FrameHeader, UnsafeRawBufferPointer)? {
        let available = inputEnd - inputStart
        guard available >= FrameHeader.size else { return nil }
        let header = try FrameHeader.decode(input + inputStart)
        let total = FrameHeader.size + Int(header.payloadLength)
        if available < total {
            if inputCapacity - inputStart < total { growInput(minimum: total) }
            return nil
        }
        let payload = UnsafeRawBufferPointer(start: input + inputStart + FrameHeader.size, count: Int(header.payloadLength))
        inputStart += total
        return (header, payload)
    }

    // MARK: blocking use during set-up

    /// Waits for one frame, up to `timeoutMilliseconds`. The payload is copied out.
    public func receiveFrameBlocking(timeoutMilliseconds: Int32) throws -> (FrameHeader, [UInt8]) {
        var remaining = timeoutMilliseconds
        while true {
            do {
                if let (header, payload) = try nextFrame() { return (header, Array(payload)) }
            } catch {
                throw TransportError.protocolViolation("\(error)")
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let started = monotonicMilliseconds()
            let r = poll(&p, 1, remaining)
            if r == 0 { throw TransportError.timedOut }
            if r < 0 {
                if cdsm_errno() == EINTR { continue }
                throw TransportError.system(Errno(rawValue: cdsm_errno()))
            }
            remaining -= Int32(clamping: monotonicMilliseconds() - started)
            if remaining <= 0 { remaining = 1 }
            switch try receive() {
            case .data, .wouldBlock: continue
            case .endOfStream: throw TransportError.closed
            }
        }
    }

    /// Sends bytes outside any frame (the preamble) and waits until they are
    /// written (set-up only).
    public func sendRawBlocking(_ bytes: [UInt8], timeoutMilliseconds: Int32) throws {
        reserveOutput(bytes.count)
        bytes.withUnsafeBytes { (output + outputEnd).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        outputEnd += bytes.count
        queuedTotal &+= UInt64(bytes.count)
        try flushBlocking(timeoutMilliseconds: timeoutMilliseconds)
    }

    private func flushBlocking(timeoutMilliseconds: Int32) throws {
        try flush()
        while hasPendingOutput {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, timeoutMilliseconds) == 0 { throw TransportError.timedOut }
            try flush()
        }
    }

    /// Sends a frame and waits until it is written (set-up only).
    public func sendBlocking(_ header: FrameHeader, payload: [UInt8], timeoutMilliseconds: Int32) throws {
        payload.withUnsafeBytes { queue(header, payload: $0) }
        try flushBlocking(timeoutMilliseconds: timeoutMilliseconds)
    }
}

public enum TransportError: Error, CustomStringConvertible {
    case system(Errno)
    case timedOut
    case closed
    case refused(String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .system(let e): return "\(e)"
        case .timedOut: return "timed out"
        case .closed: return "connection closed by peer"
        case .refused(let why): return "refused: \(why)"
        case .protocolViolation(let why): return "protocol violation: \(why)"
        }
    }
}

public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
