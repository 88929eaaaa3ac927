import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// A host of the run and how many nodes it takes (nil: not said).
public struct HostSlots: Equatable, Sendable {
    public var name: String
    public var slots: Int?

    public init(name: String, slots: Int?) {
        self.name = name
        self.slots = slots
    }
}

/// A launch that cannot go on: the message for the user and the exit status.
public struct LaunchProblem: Error {
    public var message: String
    public var status: Int32

    public init(message: String, status: Int32) {
        self.message = message
        self.status = status
    }
}

/// `--hosts` and `--hostfile`, and which host each node runs on.
public enum HostList {
    /// `a:2,b,c:1` (mpirun's `--host`). A host named twice adds its slots.
    public static func parse(option text: String) throws -> [HostSlots] {
        var hosts: [HostSlots] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let entry = item.trimmingWhitespace()
            guard !entry.isEmpty else { throw LaunchProblem(message: "--hosts: empty host name in '\(text)'", status: 2) }
            if let colon = entry.lastIndex(of: ":") {
                let name = String(entry[..<colon])
                guard !name.isEmpty, let slots = Int(entry[entry.index(after: colon)...]), slots >= 1 else {
                    throw LaunchProblem(message: "--hosts: '\(entry)' is not host or host:slots (slots a number from 1)", status: 2)
                }
                add(HostSlots(name: name, slots: slots), to: &hosts)
            } else {
                add(HostSlots(name: String(entry), slots: nil), to: &hosts)
            }
        }
        return hosts
    }

    /// mpirun's hostfile: one host a line, `host [slots=N] [max_slots=M]`,
    /// `#` starting a comment; a host without `slots=` has one.
    public static func parse(hostfile text: String, path: String) throws -> [HostSlots] {
        var hosts: [HostSlots] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let first = words.first else { continue }
            var slots = 1
            for word in words.dropFirst() {
                let parts = word.split(separator: "=", maxSplits: 1)
                let key = parts.first.map(String.init) ?? ""
                if parts.count == 2, key == "slots" || key == "cpu" || key == "count", let n = Int(parts[1]), n >= 1 {
                    slots = n
                } else if parts.count == 2, key == "max_slots" || key == "max-slots", Int(parts[1]) != nil {
                    continue
                } else {
                    throw LaunchProblem(message: "\(path):\(number + 1): '\(word)' is not slots=N (in '\(rawLine)')", status: 2)
                }
            }
            add(HostSlots(name: String(first), slots: slots), to: &hosts)
        }
        guard !hosts.isEmpty else { throw LaunchProblem(message: "\(path): no host in the hostfile", status: 2) }
        return hosts
    }

    private static func add(_ host: HostSlots, to hosts: inout [HostSlots]) {
        if let i = hosts.firstIndex(where: { $0.name == host.name }) {
            hosts[i].slots = (hosts[i].slots ?? 1) + (host.slots ?? 1)
        } else {
            hosts.append(host)
        }
    }

    /// The host index of each node. With slots, nodes fill each host's slots
    /// in order (`nodes` nil: as many nodes as slots); with no slots given
    /// at all, the nodes are spread evenly, in blocks, first hosts first.
    public static func place(nodes: Int?, on hosts: [HostSlots]) throws -> [Int] {
        if hosts.allSatisfy({ $0.slots == nil }) {
            let n = nodes ?? hosts.count
            var placement: [Int] = []
            for (index, _) in hosts.enumerated() {
                let share = n / hosts.count + (index < n % hosts.count ? 1 : 0)
                placement += [Int](repeating: index, count: share)
            }
            return placement
        }
        let total = hosts.reduce(0) { $0 + ($1.slots ?? 1) }
        let n = nodes ?? total
        guard n <= total else {
            throw LaunchProblem(message: "-n \(n) asks for more nodes than the hosts have slots (\(total): "
                                + hosts.map { "\($0.name):\($0.slots ?? 1)" }.joined(separator: ",") + ")", status: 2)
        }
        var placement: [Int] = []
        for (index, host) in hosts.enumerated() where placement.count < n {
            placement += [Int](repeating: index, count: min(host.slots ?? 1, n - placement.count))
        }
        return placement
    }

    /// Whether `name` is this host: nodes there are started directly.
    public static func isThisHost(_ name: String) -> Bool {
        if name == "localhost" { return true }
        var buffer = [CChar](repeating: 0, count: 256)
        if gethostname(&buffer, buffer.count - 1) == 0,
           String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == name { return true }
        guard let address = Addresses.resolve(name) else { return false }
        return Addresses.isLocal(address)
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
