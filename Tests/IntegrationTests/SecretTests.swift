// The run's secret (DSM_TOKEN) is for the nodes: the process that becomes a
// node takes it out of its environment, so the programs it starts do not
// inherit it; a wrapper that is not the node keeps it for the program it
// runs. Tests/Programs/env_token.c checks its own environment and that of
// `env` run through popen; its system("env") output is checked here too.
//
// These tests need `.build/release/dsmrun` (`swift build -c release`).

import Foundation
import XCTest

final class SecretTests: XCTestCase {
    /// Image mode: the program is node 0 before main.
    func testImageModeProgramAndItsChildrenHaveNoSecret() throws {
        let run = try Runner.image("env_token", nodes: 2, timeout: Config.timeout(default: 60))
        try check(run, nodes: [0], what: "`dsmrun -n 2 env_token`")
    }

    /// A script through --spmd: its interpreter is not a node, so it keeps
    /// the secret and the program it runs (exec'd, or as a child) joins, on
    /// each node. (Image mode refuses a script: LauncherTests.)
    func testThroughAScriptTheProgramStillJoins() throws {
        let program = try Programs.path("env_token")
        let dsmrun = try Paths.requireDSMRun()
        for (name, body) in [("exec", "exec '\(program)' spmd\n"),
                             ("child", "'\(program)' spmd\necho script-after-$DSM_NODE_ID\n")] {
            let script = Paths.newRunDir("secret-\(name)").appendingPathComponent("wrap.sh")
            try "#!/bin/sh\n\(body)".write(to: script, atomically: true, encoding: .utf8)
            chmod(script.path, 0o755)
            let run = try Runner.dsmCommand(dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", script.path], label: "secret-\(name)",
                                            timeout: Config.timeout(default: 60))
            try check(run, nodes: [0, 1], what: "`dsmrun -n 2 --spmd wrap.sh` (\(name))")
            if name == "child" {
                XCTAssertTrue(run.output.contains("script-after-0") && run.output.contains("script-after-1"), run.summary)
            }
        }
    }

    /// --spmd: a process is its node from its first DSM call on.
    func testSPMDNodesAndTheirChildrenHaveNoSecret() throws {
        let run = try Runner.dsm("env_token", nodes: 2, args: ["spmd"], timeout: Config.timeout(default: 60))
        try check(run, nodes: [0, 1], what: "`dsmrun -n 2 --spmd env_token spmd`")
    }

    /// --spmd through a shell that forks the program and goes on: the shell
    /// keeps the secret for the program, which joins.
    func testSPMDThroughAShellTheProgramStillJoins() throws {
        let program = try Programs.path("env_token")
        let dsmrun = try Paths.requireDSMRun()
        let run = try Runner.dsmCommand(
            dsmrun: dsmrun.path, arguments: ["-n", "2", "--spmd", "/bin/sh", "-c", "'\(program)' spmd; echo shell-after-$DSM_NODE_ID"],
            label: "secret-shell", timeout: Config.timeout(default: 60))
        try check(run, nodes: [0, 1], what: "`dsmrun -n 2 --spmd sh -c 'env_token spmd; echo'`")
        XCTAssertTrue(run.output.contains("shell-after-0") && run.output.contains("shell-after-1"), run.summary)
    }

    /// Exit 0, every node's summary with failures=0 (its popen'd `env`
    /// listed the run's variables and no DSM_TOKEN), and no DSM_TOKEN line
    /// in what system("env") printed.
    private func check(_ run: DSMRun, nodes: [Int], what: String) throws {
        XCTAssertEqual(run.result.termination, .exited(0), "\(what) failed:\n\(run.summary)")
        let lines = run.output.split(separator: "\n").map(String.init)
        for node in nodes {
            XCTAssertTrue(lines.contains { $0.hasPrefix("env_token node=\(node) lines=") && $0.hasSuffix(" failures=0") },
                          "\(what): no `env_token node=\(node) ... failures=0` line:\n\(run.summary)")
            XCTAssertTrue(lines.contains("env_token node=\(node) system-env-end"), "\(what): node \(node)'s system(env) did not run:\n\(run.summary)")
        }
        XCTAssertFalse(lines.contains { $0.hasPrefix("DSM_TOKEN=") }, "\(what): a child printed the secret:\n\(run.summary)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("DSM_NODES=") }, "\(what): system(env) printed no run variable:\n\(run.summary)")
        XCTAssertFalse(run.output.contains("FAIL"), "\(what):\n\(run.summary)")
    }
}
