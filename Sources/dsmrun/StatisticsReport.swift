import Foundation
import DSMCore

/// One node's counters as the runtime reports them (DSMCore's schema).
typealias NodeReport = NodeStatistics

/// A page across the cluster: who faults on it and how often it moved.
struct PageSummary: Codable {
    var container: UInt32
    var page: Int
    /// As the report names it (`containerName`:page), for tools reading the
    /// JSON (Benchmarks/run.py) to print as the table does.
    var name: String
    // Sums over at most 64 nodes' 32-bit counters: they fit.
    var faults: UInt64
    var writeFaults: UInt64
    var losses: UInt64
    var writers: [Int]
}

struct ClusterReport: Codable {
    var nodes: [NodeReport]
    var hottestPages: [PageSummary]
    /// Pages written by several nodes that kept moving between them: false
    /// sharing, or true sharing worth a look.
    var pingPongPages: [PageSummary]
}

func printStatistics(_ reports: [String], format: StatsFormat) {
    let decoder = JSONDecoder()
    let nodes = reports.compactMap { try? decoder.decode(NodeReport.self, from: Data($0.utf8)) }.sorted { $0.node < $1.node }
    var pages: [String: PageSummary] = [:]
    for n in nodes {
        for p in n.pages {
            let key = "\(p.container):\(p.page)"
            var s = pages[key] ?? PageSummary(container: p.container, page: p.page,
                                                       name: "\(containerName(p.container)):\(p.page)", faults: 0, writeFaults: 0, losses: 0, writers: [])
            s.faults &+= UInt64(p.faults)
            s.writeFaults &+= UInt64(p.writeFaults)
            s.losses &+= UInt64(p.losses)
            if p.writeFaults > 0 { s.writers.append(n.node) }
            pages[key] = s
        }
    }
    let hottest = pages.values.sorted { ($0.faults, $0.losses) > ($1.faults, $1.losses) }.prefix(5)
    let pingPong = pages.values.filter { $0.writers.count >= 2 && $0.losses >= 8 }.sorted { $0.losses > $1.losses }.prefix(5)
    let report = ClusterReport(nodes: nodes, hottestPages: Array(hottest), pingPongPages: Array(pingPong))

    switch format {
    case .json:
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if let data = try? encoder.encode(report) {
            FileHandle.standardError.write(Data("dsm-stats ".utf8) + data + Data("\n".utf8))
        }
    case .table:
        var out = "dsm stats: \(nodes.count) node(s) reported\n"
        out += pad(["node", "rd-flt", "wr-flt", "upgr", "handover", "silent-up", "inv-sent", "inv-recv", "pg-sent", "msgs-out", "msgs-in",
                    "MB-out", "MB-in", "wait-p50", "wait-p90", "wait-p99"]) + "\n"
        for n in nodes {
            out += pad([String(n.node), String(n.readFaults), String(n.writeFaults), String(n.upgrades),
                        String(n.handovers), String(n.silentUpgrades),
                        String(n.invalidationsSent), String(n.invalidationsReceived), String(n.pagesSent),
                        String(n.messagesSent), String(n.messagesReceived), megabytes(n.bytesSent), megabytes(n.bytesReceived),
                        microseconds(n.waitNs.p50), microseconds(n.waitNs.p90), microseconds(n.waitNs.p99)]) + "\n"
        }
        if nodes.contains(where: { $0.release != nil }) {
            out += "release consistency:\n"
            out += pad(["node", "fetches", "twins", "diffs", "diff-KB", "releases", "acquires", "dropped", "stale-told",
                        "homes-moved"]) + "\n"
            for n in nodes {
                guard let r = n.release else { continue }
                out += pad([String(n.node), String(r.fetches), String(r.twins), String(r.diffsSent),
                            String(format: "%.1f", Double(r.diffBytes) / 1e3), String(r.releases), String(r.acquires),
                            String(r.dropped), String(r.staleNotices), String(r.homesMoved)]) + "\n"
            }
        }
        if !hottest.isEmpty {
            out += "hottest pages (container:page, faults on all nodes, times a copy was lost):\n"
            for p in hottest { out += "  \(p.name)  faults \(p.faults)  writes \(p.writeFaults)  lost \(p.losses)\n" }
        }
        if pingPong.isEmpty {
            out += "no page ping-pongs between writers\n"
        } else {
            out += "pages ping-ponging between writers (false sharing?):\n"
            for p in pingPong {
                out += "  \(p.name)  written by nodes \(p.writers.map(String.init).joined(separator: ","))  moved \(p.losses) times\n"
            }
        }
        FileHandle.standardError.write(Data(out.utf8))
    }
}

private func pad(_ columns: [String]) -> String {
    columns.map { $0.count >= 9 ? $0 : String(repeating: " ", count: 9 - $0.count) + $0 }.joined(separator: " ")
}

private func megabytes(_ bytes: UInt64) -> String { String(format: "%.2f", Double(bytes) / 1e6) }
private func microseconds(_ ns: UInt64) -> String { String(format: "%.1fus", Double(ns) / 1e3) }

/// A container as the report names it: image mode's data (the executable's
/// data and bss; libN for its N-th library's) and heap, or a System V
/// segment's container number.
func containerName(_ container: UInt32) -> String {
    if let object = PageID.imageDataObject(of: container) { return object == 0 ? "data" : "lib\(object)" }
    if container >> 28 == 0xA { return "heap" } // block-homed (ImageMode.swift)
    return "segment \(container)"
}
