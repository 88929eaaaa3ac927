import CDSMKernel
import DSMCore
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// Across hosts, lines printed on different nodes reach the terminal by
/// different paths (ssh sessions, an engine's I/O forwarding), so a line a
/// thread printed before `main` joined it could come after `main`'s next
/// line. So every node but node 0 prints into pipes (its standard output and
/// error), and the runtime thread sends what they hold to node 0, which
/// writes it out. The pipes are drained before the runtime thread handles
/// any call or fault, so the text leaves ahead of whatever the program did
/// after printing it, on the same ordered connection to node 0
/// (DSM_FORWARD_OUTPUT=1, set by dsmrun when nodes run on several hosts).
final class OutputForwarding {
    /// The pipes' read ends, for standard output and error.
    var readEnds: [Int32] = [-1, -1]
    /// The original standard output and error, for after the run (set
    /// before the runtime thread starts, read by the exiting thread).
    private(set) var originals: [Int32] = [-1, -1]
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65_536, alignment: 16)

    /// Points standard output and error at new pipes, each only if it is
    /// still the stream the node was started with (`streams`: "dev:inode"
    /// of each, as dsmrun saw them): output a program captures (`$(...)`,
    /// a pipe to another program) is not the run's. nil when neither is.
    static func start(_ streams: String) -> OutputForwarding? {
        let forwarding = OutputForwarding()
        let identities = streams.split(separator: ",").map(String.init)
        var any = false
        for (i, target) in [Int32(1), 2].enumerated() where i < identities.count && streamIdentity(target) == identities[i] {
            any = true
            var ends: [Int32] = [0, 0]
            guard cdsm_pipe(&ends, 65_536) == 0 else { continue }
            forwarding.originals[i] = cdsm_high_fd(fcntl(target, F_DUPFD_CLOEXEC, 0))
            forwarding.readEnds[i] = cdsm_high_fd(ends[0])
            _ = fcntl(forwarding.readEnds[i], F_SETFL, fcntl(forwarding.readEnds[i], F_GETFL) | O_NONBLOCK)
            dup2(ends[1], target)
            close(ends[1])
        }
        guard any else { return nil }
        // The runtime's own messages go straight out, even if the run ends
        // before node 0 could print them.
        if forwarding.originals[1] >= 0 { logDescriptor = forwarding.originals[1] }
        return forwarding
    }

    /// Standard output and error back to what they were (after the exit
    /// rendezvous: node 0 may be gone).
    func restore() {
        for (i, target) in [Int32(1), 2].enumerated() where originals[i] >= 0 { dup2(originals[i], target) }
    }
}

extension Node {
    static let outputTag: UInt64 = 4 << 32

    /// Sends what the pipes hold to node 0.
    func forwardOutput() {
        guard let output else { return }
        for (i, fd) in output.readEnds.enumerated() where fd >= 0 {
            while true {
                let n = read(fd, output.buffer, 65_536)
                if n > 0 {
                    links.sendFrame(FrameHeader(kind: .output, source: id, a: UInt64(i + 1)),
                              payload: UnsafeRawBufferPointer(start: output.buffer, count: n), to: 0)
                    continue
                }
                if n == 0 {
                    // Every writer closed it: nothing more will come.
                    _ = cdsm_epoll_remove(epoll, fd)
                    close(fd)
                    output.readEnds[i] = -1
                }
                break
            }
        }
    }

    /// Node 0: text another node printed.
    func writeForwardedOutput(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) {
        guard header.a == 1 || header.a == 2, var p = payload.baseAddress else { return }
        var left = payload.count
        while left > 0 {
            let n = write(Int32(header.a), p, left)
            if n > 0 {
                p += n
                left -= n
            } else if n < 0 && (cdsm_errno() == EINTR || cdsm_errno() == EAGAIN) {
                var waitFor = pollfd(fd: Int32(header.a), events: Int16(POLLOUT), revents: 0)
                _ = poll(&waitFor, 1, 100)
            } else {
                return
            }
        }
    }
}
