import DSMLaunch
import Foundation
import XCTest

final class HostListTests: XCTestCase {
    func testHostsOptionWithAndWithoutSlots() throws {
        XCTAssertEqual(try HostList.parse(option: "a:2,b"), [HostSlots(name: "a", slots: 2), HostSlots(name: "b", slots: nil)])
        // A host named twice adds its slots, as mpirun's --host does.
        XCTAssertEqual(try HostList.parse(option: "a,b,a"), [HostSlots(name: "a", slots: 2), HostSlots(name: "b", slots: nil)])
        XCTAssertEqual(try HostList.parse(option: "10.0.0.2:3"), [HostSlots(name: "10.0.0.2", slots: 3)])
    }

    func testBadHostsOptionsAreRefusedWithTheEntry() {
        for (text, mention) in [("a,,b", "empty host"), ("a:0", "a:0"), ("a:x", "a:x"), (":2", ":2"), ("", "empty host")] {
            XCTAssertThrowsError(try HostList.parse(option: text), text) { error in
                let problem = error as! LaunchProblem
                XCTAssertTrue(problem.message.contains(mention), "\(text): \(problem.message)")
                XCTAssertEqual(problem.status, 2)
            }
        }
    }

    func testHostfileInMpirunsFormat() throws {
        let text = """
            # the cluster
            a slots=2 max_slots=4   # first
            b

              c   slots=3
            a slots=1
            """
        XCTAssertEqual(try HostList.parse(hostfile: text, path: "h"),
                       [HostSlots(name: "a", slots: 3), HostSlots(name: "b", slots: 1), HostSlots(name: "c", slots: 3)])
    }

    func testBadHostfilesNameTheLine() {
        XCTAssertThrowsError(try HostList.parse(hostfile: "a slots=2\nb slots=zero\n", path: "hosts.txt")) { error in
            XCTAssertTrue((error as! LaunchProblem).message.hasPrefix("hosts.txt:2:"), "\(error)")
        }
        XCTAssertThrowsError(try HostList.parse(hostfile: "# nothing\n\n", path: "empty")) { error in
            XCTAssertTrue((error as! LaunchProblem).message.contains("no host"), "\(error)")
        }
    }

    func testNodesFillSlotsInOrder() throws {
        let hosts = [HostSlots(name: "a", slots: 2), HostSlots(name: "b", slots: 2)]
        XCTAssertEqual(try HostList.place(nodes: nil, on: hosts), [0, 0, 1, 1])
        XCTAssertEqual(try HostList.place(nodes: 3, on: hosts), [0, 0, 1])
        XCTAssertThrowsError(try HostList.place(nodes: 5, on: hosts)) { error in
            XCTAssertTrue((error as! LaunchProblem).message.contains("more nodes than the hosts have slots (4"), "\(error)")
        }
    }

    func testWithoutSlotsNodesAreSpreadEvenly() throws {
        let hosts = [HostSlots(name: "a", slots: nil), HostSlots(name: "b", slots: nil)]
        XCTAssertEqual(try HostList.place(nodes: 4, on: hosts), [0, 0, 1, 1])
        XCTAssertEqual(try HostList.place(nodes: 5, on: hosts), [0, 0, 0, 1, 1])
        XCTAssertEqual(try HostList.place(nodes: 1, on: hosts), [0])
        XCTAssertEqual(try HostList.place(nodes: nil, on: hosts), [0, 1])
    }

    func testThisHostIsRecognised() {
        XCTAssertTrue(HostList.isThisHost("localhost"))
        XCTAssertTrue(HostList.isThisHost("127.0.0.1"))
        XCTAssertTrue(HostList.isThisHost(ProcessInfo.processInfo.hostName))
        XCTAssertFalse(HostList.isThisHost("192.0.2.77"))
    }

    func testAgentSpecRoundTripKeepsEveryField() {
        let spec = AgentSpec(hostName: "b", hostIndex: 1, coordinator: "10.0.0.1:4000", token: "secret", directory: "/w d",
                             program: "/bin/prog", runtime: "/lib/rt.so", programFingerprint: 7, runtimeFingerprint: .max,
                             arguments: ["a b", "", "x=y\nz"], environment: ["A=1", "B=two=2"], nodes: [2, 3])
        XCTAssertEqual(AgentSpec.decode(spec.encoded()), spec)
        // Without its magic, or with a key it does not know, a spec is refused.
        XCTAssertNil(AgentSpec.decode(Array("host=b\0\0".utf8)))
        XCTAssertNil(AgentSpec.decode(Array("magic=\(AgentSpec.magic)\0what=1\0\0".utf8)))
    }

    func testFingerprintsDifferWithTheBytes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fp-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b"), c = dir.appendingPathComponent("c")
        let bytes = (0..<10_001).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: a)
        try Data(bytes).write(to: b)
        var changed = bytes
        changed[9_999] ^= 1
        try Data(changed).write(to: c)
        XCTAssertEqual(fileFingerprint(a.path), fileFingerprint(b.path))
        XCTAssertNotEqual(fileFingerprint(a.path), fileFingerprint(c.path))
        XCTAssertNil(fileFingerprint(dir.appendingPathComponent("missing").path))
    }
}

final class ProgramKindTests: XCTestCase {
    func testDynamicExecutableAndScript() throws {
        XCTAssertEqual(ProgramKind.inspect(path: "/bin/sh"), .dynamicExecutable)
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("dsm-kind-\(getpid()).sh")
        try "#!/bin/sh\nexit 0\n".write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        XCTAssertEqual(ProgramKind.inspect(path: script.path), .script)
        XCTAssertEqual(ProgramKind.inspect(path: "/nonexistent/program"), .other)
    }
}
