// Sources/DSMRuntime/EntryPointTypes.swift makes the compiler compare each
// @_cdecl entry point with its C prototype; this checks that none is left
// out of it.

import Foundation
import XCTest

final class EntryPointTests: XCTestCase {
    func testEveryEntryPointIsTypeChecked() throws {
        let runtime = Paths.root.appendingPathComponent("Sources/DSMRuntime")
        let checks = try String(contentsOf: runtime.appendingPathComponent("EntryPointTypes.swift"), encoding: .utf8)
        var names: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: runtime.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: runtime.appendingPathComponent(file), encoding: .utf8)
            var rest = Substring(text)
            while let r = rest.range(of: "@_cdecl(\"") {
                rest = rest[r.upperBound...]
                if let end = rest.firstIndex(of: "\"") { names.append(String(rest[..<end])) }
            }
        }
        XCTAssertGreaterThan(names.count, 20)
        for name in names {
            XCTAssertTrue(checks.contains("sameType(\(name),"), "\(name) is not compared with its prototype in EntryPointTypes.swift")
        }
    }
}
