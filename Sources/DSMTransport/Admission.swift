import CDSMKernel
import DSMCore
#if canImport(Glibc)
import Glibc
#endif

/// The first bytes on every connection of a run (rendezvous, mesh, agent
/// control): a magic word and the run's secret, fixed length. A listener
/// reads exactly these bytes into a small buffer and compares them before it
/// parses any frame or gives the connection a frame buffer, so a stranger
/// costs one file descriptor and 64 bytes for at most `Gate.patience`.
public enum Preamble {
    public static let size = 64
    static let magic: [UInt8] = Array("dsm-run1".utf8)
    /// The longest secret a preamble carries.
    public static let maxToken = size - 8

    public static func bytes(token: String) -> [UInt8] {
        var out = magic
        let secret = Array(token.utf8)
        precondition(secret.count <= maxToken, "the run's secret is longer than \(maxToken) bytes")
        out.append(contentsOf: secret)
        out.append(contentsOf: [UInt8](repeating: 0, count: size - out.count))
        return out
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}

/// Connects to `endpoint` (retrying while it refuses, until the timeout) and
/// presents the run's secret.
public func connectPresenting(token: String, to endpoint: Endpoint, timeoutMilliseconds: Int32) throws -> Connection {
    let connection = try connect(to: endpoint, timeoutMilliseconds: timeoutMilliseconds)
    try connection.sendRawBlocking(Preamble.bytes(token: token), timeoutMilliseconds: timeoutMilliseconds)
    return connection
}

/// Admits connections to a listener: only those whose first bytes are this
/// run's preamble become `Connection`s. Connections still presenting are
/// kept side by side (at most `maxPending`, the oldest closed first), so
/// idle strangers neither block the run's own connections nor cost more than
/// a descriptor each, and each is closed after `patience`.
public final class Gate {
    public let listener: Listener
    private let expected: [UInt8]
    public static let maxPending = 16
    public static let patience: Int64 = 3_000

    private struct Pending {
        var fd: Int32
        var name: String
        var received: [UInt8]
        var accepted: Int64
        var deadline: Int64
    }
    private var pending: [Pending] = []
    /// A connection accepted this recently may be one of the run's whose
    /// preamble is on its way: it is not evicted to make room.
    static let youth: Int64 = 200
    /// Refusals reported so far: a flood is reported once, not per connection.
    private var refusals = 0
    static let refusalsReported = 8

    public init(listener: Listener, token: String) {
        self.listener = listener
        self.expected = Preamble.bytes(token: token)
    }

    deinit { for p in pending { close(p.fd) } }

    /// The next admitted connection, within `timeoutMilliseconds`; strangers
    /// are reported through `refused` and closed.
    public func admit(timeoutMilliseconds: Int32, refused log: (String) -> Void) throws -> (Connection, String) {
        func refused(_ message: String) {
            refusals += 1
            if refusals <= Gate.refusalsReported { log(message) }
            if refusals == Gate.refusalsReported { log("further refused connections are not reported") }
        }
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while true {
            let now = monotonicMilliseconds()
            pending.removeAll { p in
                if p.deadline > now { return false }
                refused("refused a connection from \(p.name): it did not present this run's secret in time")
                close(p.fd)
                return true
            }
            if now >= deadline { throw TransportError.timedOut }
            // Full of connections too young to evict: new ones wait in the
            // listen backlog until one is decided.
            let full = pending.count == Gate.maxPending && now - pending[0].accepted < Gate.youth
            var fds = [pollfd(fd: listener.fd, events: full ? 0 : Int16(POLLIN), revents: 0)]
            var wake = full ? min(deadline, pending[0].accepted + Gate.youth) : deadline
            for p in pending {
                fds.append(pollfd(fd: p.fd, events: Int16(POLLIN), revents: 0))
                wake = min(wake, p.deadline)
            }
            let r = poll(&fds, nfds_t(fds.count), Int32(clamping: max(0, wake - now)))
            if r < 0 {
                if cdsm_errno() == EINTR { continue }
                throw TransportError.system(Errno(rawValue: cdsm_errno()))
            }
            if r == 0 { continue }
            // Presenting connections first: each one's bytes decide it.
            var i = fds.count - 1
            while i >= 1 {
                if fds[i].revents != 0, let admitted = progress(at: i - 1, refused: refused) { return admitted }
                i -= 1
            }
            if !full, fds[0].revents & Int16(POLLIN) != 0, let (fd, name) = try listener.acceptRaw() {
                if pending.count == Gate.maxPending {
                    refused("refused a connection from \(pending[0].name): too many connections presenting at once")
                    close(pending[0].fd)
                    pending.removeFirst()
                }
                let at = monotonicMilliseconds()
                pending.append(Pending(fd: fd, name: name, received: [], accepted: at, deadline: at + Gate.patience))
            }
        }
    }

    /// Reads what pending connection `index` has sent; returns it once its
    /// preamble is complete and right.
    private func progress(at index: Int, refused: (String) -> Void) -> (Connection, String)? {
        var p = pending[index]
        var buffer = [UInt8](repeating: 0, count: Preamble.size - p.received.count)
        // Exactly the preamble's bytes: whatever follows is the first frame.
        let n = recv(p.fd, &buffer, buffer.count, 0)
        if n < 0 && (cdsm_errno() == EAGAIN || cdsm_errno() == EINTR) { return nil }
        if n <= 0 {
            close(p.fd)
            pending.remove(at: index)
            return nil
        }
        p.received.append(contentsOf: buffer[0..<n])
        if p.received.count < Preamble.size {
            pending[index] = p
            return nil
        }
        pending.remove(at: index)
        // Compared whole, once: a partial answer must not tell how much of
        // the secret was right.
        guard constantTimeEqual(p.received, expected) else {
            refused("refused a connection from \(p.name): it did not present this run's secret")
            close(p.fd)
            return nil
        }
        return (Connection(fd: p.fd), p.name)
    }
}
