import CDSMKernel
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 host and port, as `host:port` in DSM_COORD.
public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        host = String(text[..<colon])
        self.port = port
        if host.isEmpty { return nil }
    }

    public var description: String { "\(host):\(port)" }

    func socketAddress() throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let host = self.host == "localhost" ? "127.0.0.1" : self.host
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw TransportError.protocolViolation("not an IPv4 address: \(host)")
        }
        return address
    }
}

private func lastErrno() -> Errno { Errno(rawValue: cdsm_errno()) }

/// A listening TCP socket.
public final class Listener {
    public let fd: Int32
    public let endpoint: Endpoint

    /// Listens on `host`, port chosen by the kernel unless given.
    public init(host: String, port: UInt16 = 0) throws {
        let fd = cdsm_high_fd(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        guard fd >= 0 else { throw TransportError.system(lastErrno()) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try Endpoint(host: host, port: port).socketAddress()
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let e = lastErrno()
            close(fd)
            throw TransportError.system(e)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.endpoint = Endpoint(host: host, port: UInt16(bigEndian: actual.sin_port))
    }

    deinit { close(fd) }

    /// Accepts one connection within the timeout. The connection is
    /// non-blocking with TCP_NODELAY.
    public func accept(timeoutMilliseconds: Int32) throws -> (Connection, String) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let r = poll(&p, 1, timeoutMilliseconds)
            if r == 0 { throw TransportError.timedOut }
            if r < 0 {
                if cdsm_errno() == EINTR { continue }
                throw TransportError.system(lastErrno())
            }
            if let (client, name) = try acceptRaw() { return (Connection(fd: client), name) }
        }
    }

    /// Accepts a connection that is waiting, as a bare non-blocking socket
    /// with TCP_NODELAY and the run's keepalive settings; nil when none is.
    public func acceptRaw() throws -> (Int32, String)? {
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let client = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                cdsm_accept(fd, $0, &length)
            }
        }
        if client < 0 {
            if cdsm_errno() == EINTR || cdsm_errno() == EAGAIN || cdsm_errno() == ECONNABORTED { return nil }
            throw TransportError.system(lastErrno())
        }
        _ = cdsm_tcp_nodelay(client)
        return (client, "\(ipv4Text(peer.sin_addr)):\(UInt16(bigEndian: peer.sin_port))")
    }
}

func ipv4Text(_ address: in_addr) -> String {
    var address = address
    var text = [CChar](repeating: 0, count: 32)
    inet_ntop(AF_INET, &address, &text, 32)
    return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Connects to `endpoint`, retrying while it refuses, until the deadline. A
/// peer that does not answer at all (a host cut off) times out too.
public func connect(to endpoint: Endpoint, timeoutMilliseconds: Int32) throws -> Connection {
    let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
    var address = try endpoint.socketAddress()
    while true {
        let fd = cdsm_high_fd(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0))
        guard fd >= 0 else { throw TransportError.system(lastErrno()) }
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var e: Errno = r == 0 ? Errno(rawValue: 0) : lastErrno()
        if r != 0 && e == .nowInProgress {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat {
                let left = Int32(clamping: max(1, deadline - monotonicMilliseconds()))
                ready = poll(&p, 1, left)
            } while ready < 0 && cdsm_errno() == EINTR && monotonicMilliseconds() < deadline
            if ready <= 0 {
                close(fd)
                throw TransportError.timedOut
            }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            e = Errno(rawValue: error)
        }
        if e.rawValue == 0 {
            _ = cdsm_tcp_nodelay(fd)
            return Connection(fd: fd)
        }
        close(fd)
        if e != .connectionRefused && e != .interrupted { throw TransportError.system(e) }
        if monotonicMilliseconds() > deadline { throw TransportError.timedOut }
        usleep(20_000)
    }
}
