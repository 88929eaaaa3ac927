// dsmrun --bind: node i runs on CPU i mod CPUs.

import Foundation
import XCTest

final class BindTests: XCTestCase {
    private func affinities(_ extra: [String], nodes: Int) throws -> (online: Int, cpus: [Int: String]) {
        let dsmrun = try Paths.requireDSMRun()
        let exe = try Programs.path("affinity")
        let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", String(nodes)] + extra + ["--spmd", exe],
                                        label: "bind", timeout: Config.timeout(default: 60))
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        var cpus: [Int: String] = [:]
        var online = 0
        for line in run.output.split(separator: "\n") where line.hasPrefix("affinity ") {
            let fields = Dictionary(uniqueKeysWithValues: line.split(separator: " ").dropFirst().compactMap { field -> (String, String)? in
                let kv = field.split(separator: "=", maxSplits: 1)
                return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
            })
            cpus[Int(fields["node"] ?? "") ?? -1] = fields["cpus"]
            online = Int(fields["online"] ?? "") ?? 0
        }
        XCTAssertEqual(cpus.count, nodes, run.summary)
        return (online, cpus)
    }

    /// More nodes than CPUs: not bound unless asked.
    func testMoreNodesThanCPUsAreNotBoundByDefault() throws {
        let (online, _) = try affinities([], nodes: 1)
        let (_, cpus) = try affinities([], nodes: online + 1)
        if online > 1 {
            for node in 0...online { XCTAssertTrue(cpus[node]?.contains(",") ?? false, "node \(node) bound: \(cpus)") }
        }
    }

    /// As many nodes as CPUs: bound by default, like --bind.
    func testNodesAreBoundByDefaultWhenEachHasACPU() throws {
        let (online, _) = try affinities(["--no-bind"], nodes: 1)
        let nodes = min(online, 4)
        guard nodes >= 2 else { return }
        let (_, cpus) = try affinities([], nodes: nodes)
        for node in 0..<nodes { XCTAssertEqual(cpus[node], String(node % online), "node \(node): \(cpus)") }
    }

    func testBindPinsEachNodeToOneCPU() throws {
        let (online, cpus) = try affinities(["--bind"], nodes: 3)
        XCTAssertGreaterThan(online, 0)
        for node in 0..<3 {
            XCTAssertEqual(cpus[node], String(node % online), "node \(node) under --bind: \(cpus)")
        }
    }

    func testNoBindLeavesNodesWhereTheyWere() throws {
        // Unbound nodes keep the launcher's CPU set (whatever it is here).
        let (online, cpus) = try affinities(["--no-bind"], nodes: 2)
        XCTAssertEqual(cpus[0], cpus[1], "\(cpus)")
        if online > 1 { XCTAssertTrue(cpus[0]?.contains(",") ?? false, "an unbound node is pinned: \(cpus)") }
    }
}
