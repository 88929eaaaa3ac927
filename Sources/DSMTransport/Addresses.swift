#if canImport(Glibc)
import Glibc
#endif

/// Where a run listens: the address of the interface that reaches the other
/// hosts, never every interface.
public enum Addresses {
    /// The IPv4 address `host` names (a dotted quad, or a name resolved
    /// through the system's resolver); nil when it names none.
    public static func resolve(_ host: String) -> String? {
        if host == "localhost" { return "127.0.0.1" }
        var probe = in_addr()
        if inet_pton(AF_INET, host, &probe) == 1 { return host }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        guard let address = first.pointee.ai_addr else { return nil }
        let inet = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        return ipv4Text(inet)
    }

    /// The local address the kernel would send from to reach `ipv4`: the
    /// interface on the route towards it. No packet leaves (a UDP socket
    /// is only connected, never written).
    public static func routeSource(towards ipv4: String) -> String? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(9).bigEndian
        guard inet_pton(AF_INET, ipv4, &address.sin_addr) == 1 else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return ipv4Text(local.sin_addr)
    }

    /// The IPv4 address of this host on `spec`: an interface name (`eth1`)
    /// or a network in CIDR notation (`10.1.0.0/16`), as mpirun's
    /// `if_include` takes them.
    public static func interfaceAddress(_ spec: String) -> String? {
        var network: (address: UInt32, mask: UInt32)?
        if let slash = spec.firstIndex(of: "/") {
            var base = in_addr()
            guard inet_pton(AF_INET, String(spec[..<slash]), &base) == 1,
                  let bits = Int(spec[spec.index(after: slash)...]), bits >= 0, bits <= 32 else { return nil }
            let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
            network = (UInt32(bigEndian: base.s_addr) & mask, mask)
        }
        return firstIPv4 { name, address in
            if let network { return UInt32(bigEndian: address.s_addr) & network.mask == network.address }
            return name == spec
        }
    }

    /// The first of this host's IPv4 addresses (interface name, address)
    /// that `matches`, as text.
    private static func firstIPv4(where matches: (String, in_addr) -> Bool) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var entry = list
        while let e = entry {
            defer { entry = e.pointee.ifa_next }
            guard let address = e.pointee.ifa_addr, Int32(address.pointee.sa_family) == AF_INET else { continue }
            let inet = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            if matches(String(cString: e.pointee.ifa_name), inet) { return ipv4Text(inet) }
        }
        return nil
    }

    /// Whether `ipv4` is one of this host's own addresses (loopback included).
    public static func isLocal(_ ipv4: String) -> Bool {
        if ipv4.hasPrefix("127.") { return true }
        return firstIPv4 { _, address in ipv4Text(address) == ipv4 } != nil
    }
}
