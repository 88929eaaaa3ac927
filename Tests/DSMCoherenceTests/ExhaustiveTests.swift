import DSMCoherence
import XCTest

final class ExhaustiveTests: XCTestCase {
    func testMeasure() {
        let configs: [ModelConfiguration] = [
            .init(nodes: 2, pages: 1, accessesPerThread: 4),
            .init(nodes: 2, pages: 2, accessesPerThread: 3),
            .init(nodes: 3, pages: 1, accessesPerThread: 3),
            .init(nodes: 3, pages: 2, threads: [(0, 2), (1, 1), (2, 1)]),
            .init(nodes: 3, pages: 2, threads: [(0, 1), (1, 1), (2, 2)]),
            .init(nodes: 2, pages: 1, threads: [(0, 2), (1, 2), (1, 2)]),
            .init(nodes: 2, pages: 2, threads: [(0, 2), (1, 2), (1, 2)]),
            .init(nodes: 3, pages: 1, threads: [(0, 1), (1, 1), (2, 1), (2, 1)]),
        ]
        for c in configs {
            let start = ContinuousClock.now
            let r = ModelExplorer(config: c).run()
            print("\(c): states \(r.states) transitions \(r.transitions) terminal \(r.terminalStates) depth \(r.maxDepth) violation \(String(describing: r.violation)) \(ContinuousClock.now - start)")
            if let v = r.violation { print(r.trace.joined(separator: "\n")); print(v) }
        }
    }
}
