import DSMCoherence
import DSMCore
import DSMTransport

/// A latency histogram with fixed buckets: 8 per power of two of
/// nanoseconds, so recording never allocates and a percentile is within
/// 1/8 of an octave.
struct LatencyHistogram {
    static let subBuckets = 8
    private(set) var buckets = [UInt64](repeating: 0, count: 64 * LatencyHistogram.subBuckets)
    private(set) var count: UInt64 = 0
    private(set) var maximum: UInt64 = 0

    @inline(__always)
    static func bucket(_ value: UInt64) -> Int {
        if value < UInt64(subBuckets) { return Int(value) }
        let octave = 63 - value.leadingZeroBitCount          // value in [2^octave, 2^(octave+1))
        let fraction = Int((value >> UInt64(octave - 3)) & 7)  // next 3 bits
        return octave * subBuckets + fraction
    }

    /// The smallest value that falls in `bucket`.
    static func lowerBound(_ bucket: Int) -> UInt64 {
        if bucket < subBuckets { return UInt64(bucket) }
        let octave = bucket / subBuckets
        let fraction = UInt64(bucket % subBuckets)
        return (1 << UInt64(octave)) + fraction << UInt64(octave - 3)
    }

    @inline(__always)
    mutating func record(_ value: UInt64) {
        buckets[LatencyHistogram.bucket(value)] &+= 1
        count &+= 1
        if value > maximum { maximum = value }
    }

    func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = UInt64((Double(count) * p).rounded(.up))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen += n
            if seen >= rank { return LatencyHistogram.lowerBound(i) }
        }
        return maximum
    }
}

/// What one node counts for `dsmrun --stats`.
struct PageCounters {
    var faults: ZeroTable<UInt32>
    var writeFaults: ZeroTable<UInt32>
    /// Times this node lost its copy (invalidated or handed to a writer).
    var losses: ZeroTable<UInt32>
    /// When the first still-unanswered fault on the page arrived (0: none).
    var waitingSince: ZeroTable<UInt64>
    /// When the page's hold window closes (HoldWindow.swift; 0: none open).
    var holdUntil: ZeroTable<UInt64>

    init(pages: Int) {
        faults = ZeroTable(count: pages)
        writeFaults = ZeroTable(count: pages)
        losses = ZeroTable(count: pages)
        waitingSince = ZeroTable(count: pages)
        holdUntil = ZeroTable(count: pages)
    }
}

extension Node {
    /// This node's statistics (sent to dsmrun at exit; DSMCore's schema).
    func statisticsReport() -> NodeStatistics {
        let c = pages.coherence.stats
        let stats = pages.stats
        let traffic = links.traffic
        var r = NodeStatistics()
        r.node = id
        r.readFaults = c.readFaults + pages.release.readFaults
        r.writeFaults = c.writeFaults + pages.release.writeFaults
        r.upgrades = c.upgradesSent
        r.handovers = c.handovers
        r.silentUpgrades = c.silentUpgrades
        r.coalescedFaults = c.coalescedFaults
        r.invalidationsSent = c.invalidationsSent
        r.invalidationsReceived = c.invalidationsReceived
        r.pagesSent = stats.pagesSent
        r.pagesInstalled = stats.pagesInstalled
        r.prefetches = stats.prefetches
        r.heldMessages = UInt64(c.heldMessages)
        r.messagesSent = traffic.messagesSent
        r.messagesReceived = traffic.messagesReceived
        r.bytesSent = traffic.bytesSent
        r.bytesReceived = traffic.bytesReceived
        let w = stats.wait
        r.waitNs.count = w.count
        r.waitNs.p50 = w.percentile(0.5)
        r.waitNs.p90 = w.percentile(0.9)
        r.waitNs.p99 = w.percentile(0.99)
        r.waitNs.max = w.maximum
        if pages.releaseConsistent { r.release = pages.release.counts }
        var busiest = pages.retiredPages
        for container in pages.containers.values { busiest += container.busiestPages() }
        busiest.sort { ($0.faults, $0.losses) > ($1.faults, $1.losses) }
        r.pages = busiest.prefix(32).map {
            NodeStatistics.Page(container: $0.container, page: Int($0.index), faults: $0.faults, writeFaults: $0.writes,
                                losses: $0.losses)
        }
        return r
    }

    /// Sends the statistics to the launcher (when it asked for them).
    func reportStatistics() {
        guard configuration.stats else { return }
        let json = Array(statisticsReport().json().utf8)
        try? links.mesh.coordinator.sendBlocking(FrameHeader(kind: .stats, source: id), payload: json, timeoutMilliseconds: 5_000)
    }
}

/// A page's counters, kept after its container is gone.
struct PageRecord {
    var container: ContainerID
    var index: Int
    var faults: UInt32
    var writes: UInt32
    var losses: UInt32
}

extension LocalContainer {
    /// The pages with the most faults or losses here, at most 32.
    func busiestPages() -> [PageRecord] {
        var pages: [PageRecord] = []
        for i in 0..<self.pages where counters.faults[i] > 0 || counters.losses[i] > 0 {
            pages.append(PageRecord(container: id, index: i, faults: counters.faults[i], writes: counters.writeFaults[i],
                                    losses: counters.losses[i]))
        }
        pages.sort { ($0.faults, $0.losses) > ($1.faults, $1.losses) }
        return Array(pages.prefix(32))
    }
}
