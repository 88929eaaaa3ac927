// dsmrun --stats: the counters every node reports at exit.

import Foundation
import XCTest

final class StatisticsTests: XCTestCase {
    /// Both nodes write the same page in every round of sem_barrier (its
    /// packed slots), with a barrier between rounds, so the page must move
    /// to each writer every round: the report must show the faults, the
    /// pages moved and that page as ping-ponging.
    func testJSONReportShowsFaultsAndThePingPongPage() throws {
        let dsmrun = try Paths.requireDSMRun()
        let exe = try Programs.path("sem_barrier")
        let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--stats=json", "--spmd", exe, "100"],
                                        label: "stats-json", timeout: Config.timeout(default: 120))
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        let line = try XCTUnwrap(run.result.stderr.split(separator: "\n").first { $0.hasPrefix("dsm-stats ") },
                                 "no dsm-stats line on stderr:\n\(run.summary)")
        let json = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(line.dropFirst("dsm-stats ".count).utf8)) as? [String: Any])
        let nodes = try XCTUnwrap(json["nodes"] as? [[String: Any]])
        XCTAssertEqual(nodes.count, 2, "\(json)")
        for node in nodes {
            let faults = (node["readFaults"] as? Int ?? 0) + (node["writeFaults"] as? Int ?? 0)
            XCTAssertGreaterThan(faults, 0, "node without faults: \(node)")
            XCTAssertGreaterThan(node["messagesSent"] as? Int ?? 0, 0, "\(node)")
            XCTAssertGreaterThan(node["bytesSent"] as? Int ?? 0, 4096, "\(node)")
            let wait = try XCTUnwrap(node["waitNs"] as? [String: Any])
            XCTAssertGreaterThan(wait["count"] as? Int ?? 0, 0, "\(node)")
            XCTAssertLessThanOrEqual(wait["p50"] as? Int ?? 0, wait["p99"] as? Int ?? 0, "\(node)")
        }
        let pingPong = try XCTUnwrap(json["pingPongPages"] as? [[String: Any]])
        XCTAssertFalse(pingPong.isEmpty, "the shared counter page should ping-pong between the nodes: \(json)")
        XCTAssertEqual((pingPong.first?["writers"] as? [Int])?.sorted(), [0, 1], "\(json)")
        // Named as the table names it (the benchmark runner prints this).
        let first = try XCTUnwrap(pingPong.first)
        XCTAssertEqual(first["name"] as? String, "segment \(first["container"] as? Int ?? -1):\(first["page"] as? Int ?? -1)", "\(json)")
    }

    func testTableReport() throws {
        let dsmrun = try Paths.requireDSMRun()
        let exe = try Programs.path("threads")
        let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--stats", "--spmd", exe, "2", "500"],
                                        label: "stats-table", timeout: Config.timeout(default: 120))
        XCTAssertEqual(run.result.termination, .exited(0), run.summary)
        XCTAssertTrue(run.result.stderr.contains("dsm stats: 2 node(s) reported"), run.summary)
        XCTAssertTrue(run.result.stderr.contains("wait-p99"), run.summary)
        // The program's own arguments are not taken for dsmrun's.
        XCTAssertTrue(run.result.stdout.contains("threads failures=0 nodes=2 T=2 K=500"), run.summary)
    }
}
