import DSMCore
import DSMTransport
import Foundation
import XCTest

typealias SplitMix64 = SeededRandom

/// The decoders of what arrives from the network, fed random and mutated
/// bytes: each must answer with a value or an error, never trap, and never
/// allocate more than its input's size. (A trap would kill the test process:
/// the test "fails" by crashing, which XCTest reports.)
final class DecoderFuzzTests: XCTestCase {
    private func seed() -> UInt64 {
        let s = UInt64.random(in: 1...UInt64.max)
        print("DecoderFuzzTests seed \(s)")
        return s
    }

    /// Field values at and around the bounds, mixed with random ones.
    private func interesting<R: RandomNumberGenerator>(_ rng: inout R) -> UInt64 {
        let bounds: [UInt64] = [0, 1, 2, 63, 64, 65, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, UInt64(FrameHeader.maxPayload),
                                UInt64(FrameHeader.maxPayload) + 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000,
                                UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max - 1, UInt64.max]
        return Bool.random(using: &rng) ? bounds.randomElement(using: &rng)! : UInt64.random(in: 0...UInt64.max, using: &rng)
    }

    /// 32 header bytes: mostly a valid header with mutated fields, sometimes
    /// random bytes, a bad magic byte or an unknown kind.
    private func headerBytes<R: RandomNumberGenerator>(_ rng: inout R) -> [UInt8] {
        var bytes = (0..<FrameHeader.size).map { _ in UInt8.random(in: 0...255, using: &rng) }
        if Int.random(in: 0..<8, using: &rng) == 0 { return bytes }
        bytes[0] = Int.random(in: 0..<10, using: &rng) == 0 ? UInt8.random(in: 0...255, using: &rng) : FrameHeader.magic
        bytes[1] = Int.random(in: 0..<10, using: &rng) == 0 ? UInt8.random(in: 0...255, using: &rng)
                                                           : FrameKind.allCases.randomElement(using: &rng)!.rawValue
        func store<T: FixedWidthInteger>(_ v: T, at offset: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        store(UInt16(truncatingIfNeeded: interesting(&rng)), at: 4)
        store(UInt32(truncatingIfNeeded: interesting(&rng)), at: 8)
        store(UInt32(truncatingIfNeeded: interesting(&rng)), at: 12)
        store(UInt32(truncatingIfNeeded: interesting(&rng)), at: 16)
        store(interesting(&rng), at: 24)
        return bytes
    }

    func testHeaderDecoderIsTotal() {
        var rng = SplitMix64(seed: seed())
        var decoded = 0, badMagic = 0, badKind = 0, tooLarge = 0
        for _ in 0..<120_000 {
            let bytes = headerBytes(&rng)
            do {
                let header = try bytes.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) }
                decoded += 1
                XCTAssertLessThanOrEqual(Int(header.payloadLength), FrameHeader.maxPayload)
                XCTAssertEqual(header.kind.rawValue, bytes[1])
                // What decodes encodes back to the same fields.
                var again = [UInt8](repeating: 0, count: FrameHeader.size)
                again.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
                XCTAssertEqual(try again.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) }, header)
                // The node a header names is one of the run's, or none.
                for nodes in [1, 2, 64] {
                    if let n = header.node(inRunOf: nodes) {
                        XCTAssertTrue(n >= 0 && n < nodes)
                        XCTAssertEqual(UInt64(n), header.a)
                    } else {
                        XCTAssertGreaterThanOrEqual(header.a, UInt64(nodes))
                    }
                }
            } catch let error as FrameHeader.DecodeError {
                switch error {
                case .badMagic: badMagic += 1
                case .badKind: badKind += 1
                case .tooLarge: tooLarge += 1
                }
            } catch {
                XCTFail("unexpected error \(error)")
            }
        }
        // Every outcome happened: the generator reaches every path.
        XCTAssertGreaterThan(decoded, 1000)
        XCTAssertGreaterThan(badMagic, 1000)
        XCTAssertGreaterThan(badKind, 1000)
        XCTAssertGreaterThan(tooLarge, 1000)
    }

    func testNodeFieldIsComparedAsSent() {
        func header(_ a: UInt64) -> FrameHeader { FrameHeader(kind: .readRequest, source: 0, a: a) }
        XCTAssertEqual(header(0).node(inRunOf: 2), 0)
        XCTAssertEqual(header(1).node(inRunOf: 2), 1)
        XCTAssertNil(header(2).node(inRunOf: 2))
        XCTAssertNil(header(1 << 63).node(inRunOf: 2))
        XCTAssertNil(header(UInt64.max).node(inRunOf: 64))
        XCTAssertNil(header(0).node(inRunOf: 0))
    }

    func testWireReaderIsTotalAndAllocatesNoMoreThanItsInput() {
        var rng = SplitMix64(seed: seed())
        var arraysRead = 0, failures = 0
        for round in 0..<100_000 {
            let count = Int.random(in: 0..<48, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Sometimes a count at the bounds where an array's count goes.
            if count >= 4, Bool.random(using: &rng) {
                let n = UInt32(truncatingIfNeeded: interesting(&rng) % 20 == 0 ? interesting(&rng) : interesting(&rng) % 16)
                withUnsafeBytes(of: n.littleEndian) { for (i, b) in $0.enumerated() { bytes[i] = b } }
            }
            func exercise(_ r: inout WireReader) {
                for _ in 0..<6 {
                    switch Int.random(in: 0..<9, using: &rng) {
                    case 0: _ = r.get(UInt8.self)
                    case 1: _ = r.get(Int16.self)
                    case 2: _ = r.get(UInt32.self)
                    case 3: _ = r.get(Int64.self)
                    case 4: _ = r.getBool()
                    case 5:
                        let a: [UInt64] = r.getArray()
                        XCTAssertLessThanOrEqual(a.count * 8, count)
                        arraysRead += a.isEmpty ? 0 : 1
                    case 6:
                        let a: [UInt16] = r.getArray()
                        XCTAssertLessThanOrEqual(a.count * 2, count)
                    case 7:
                        if let n = r.getCount(elementSize: 6) { XCTAssertLessThanOrEqual(n * 6, count) }
                    default:
                        XCTAssertLessThanOrEqual(r.rest().count, count)
                    }
                    XCTAssertGreaterThanOrEqual(r.remaining, 0)
                    XCTAssertLessThanOrEqual(r.offset, count)
                }
                if r.failed { failures += 1 }
            }
            if round % 2 == 0 {
                var r = WireReader(bytes)
                exercise(&r)
            } else {
                bytes.withUnsafeBytes { raw in
                    var r = WireReader(raw)
                    exercise(&r)
                }
            }
        }
        XCTAssertGreaterThan(arraysRead, 100)
        XCTAssertGreaterThan(failures, 1000)
    }

    func testArrayCountsBeyondThePayloadAreRefused() {
        var w = WireWriter()
        w.put(UInt32.max)
        w.put(UInt64(7))
        var r = WireReader(w.bytes)
        let a: [UInt64] = r.getArray()
        XCTAssertTrue(a.isEmpty)
        XCTAssertTrue(r.failed)

        var fits = WireWriter()
        fits.put(array: [UInt16(1), 2, 3])
        var r2 = WireReader(fits.bytes)
        XCTAssertEqual(r2.getArray(UInt16.self), [1, 2, 3])
        XCTAssertFalse(r2.failed)
        XCTAssertEqual(r2.remaining, 0)

        // One element short.
        var short = WireReader(Array(fits.bytes.dropLast()))
        XCTAssertEqual(short.getArray(UInt16.self), [])
        XCTAssertTrue(short.failed)
        var empty = WireReader([])
        XCTAssertNil(empty.getCount(elementSize: 1))
        XCTAssertEqual(empty.get(UInt64.self), 0)
        XCTAssertTrue(empty.failed)
    }

    func testRendezvousRecordDecodersAreTotal() {
        var rng = SplitMix64(seed: seed())
        var tables = 0
        for _ in 0..<50_000 {
            var bytes = (0..<Int.random(in: 0..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !bytes.isEmpty, Bool.random(using: &rng) { bytes[0] = UInt8.random(in: 0...12, using: &rng) }
            if let table = try? RendezvousTable.decode(bytes) {
                tables += 1
                XCTAssertLessThanOrEqual(table.count * 3, bytes.count)
                // What decodes encodes back to bytes that decode the same.
                XCTAssertEqual(try? RendezvousTable.decode(RendezvousTable.encode(table)), table)
            }
            _ = try? RendezvousHello.decode(bytes)
        }
        XCTAssertGreaterThan(tables, 100)
        // A host name too long for the length byte is cut, not a trap.
        let long = Endpoint(host: String(repeating: "h", count: 300), port: 7)
        XCTAssertEqual(try RendezvousTable.decode(RendezvousTable.encode([long])).first?.host.count, 255)
    }

    /// Random streams of mutated frames into a real connection: every frame
    /// that comes out is whole and within bounds; a bad header stops the
    /// stream with an error.
    func testConnectionFramingIsTotalOnRandomStreams() throws {
        var rng = SplitMix64(seed: seed())
        var framesOut = 0, errors = 0
        for _ in 0..<300 {
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            let connection = Connection(fd: fds[0])
            // A stream of frames with mutated headers and payloads of the
            // declared length, a shorter one (a truncated frame), or none.
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1..<40, using: &rng) {
                var header = headerBytes(&rng)
                if Int.random(in: 0..<4, using: &rng) != 0 {
                    let length = UInt32.random(in: 0...300, using: &rng)
                    withUnsafeBytes(of: length.littleEndian) { for (i, b) in $0.enumerated() { header[8 + i] = b } }
                }
                stream += header
                let declared = Int(UInt32(littleEndian: header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }))
                let sent = Int.random(in: 0..<10, using: &rng) == 0 ? Int.random(in: 0...min(declared, 400), using: &rng) : min(declared, 400)
                stream += (0..<sent).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            var at = 0
            loop: while true {
                if at < stream.count {
                    let chunk = min(stream.count - at, Int.random(in: 1...512, using: &rng))
                    let n = stream[at..<(at + chunk)].withUnsafeBytes { write(fds[1], $0.baseAddress, chunk) }
                    XCTAssertEqual(n, chunk)
                    at += chunk
                } else {
                    close(fds[1])
                    fds[1] = -1
                }
                do {
                    let r = try connection.receive()
                    while let (header, payload) = try connection.nextFrame() {
                        framesOut += 1
                        XCTAssertEqual(payload.count, Int(header.payloadLength))
                        XCTAssertLessThanOrEqual(payload.count, FrameHeader.maxPayload)
                    }
                    if r == .endOfStream { break loop }
                } catch {
                    errors += 1
                    break loop
                }
            }
            if fds[1] >= 0 { close(fds[1]) }
        }
        XCTAssertGreaterThan(framesOut, 100)
        XCTAssertGreaterThan(errors, 10)
    }

    /// Strangers presenting random or nearly right preambles are refused;
    /// the one with the run's secret, which comes last, is admitted.
    func testGateRefusesEveryWrongPreamble() throws {
        var rng = SplitMix64(seed: seed())
        let token = "0123456789abcdef0123456789abcdef0123456789abcdef"
        let gate = Gate(listener: try Listener(host: "127.0.0.1"), token: token)
        let right = Preamble.bytes(token: token)
        var wrong: [[UInt8]] = [
            [UInt8](repeating: 0, count: Preamble.size),
            Preamble.bytes(token: String(token.dropLast())),
            Preamble.bytes(token: token + "0"),
            Preamble.bytes(token: String(repeating: "f", count: 48)),
            Array(right.dropLast()) + [1],
            Preamble.bytes(token: ""),
        ]
        for _ in 0..<20 {
            var p = right
            let i = Int.random(in: 0..<Preamble.size, using: &rng)
            p[i] ^= UInt8.random(in: 1...255, using: &rng)
            wrong.append(p)
            wrong.append((0..<Preamble.size).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
        var refusals: [String] = []
        for bytes in wrong + [right] {
            let c = try connect(to: gate.listener.endpoint, timeoutMilliseconds: 2_000)
            try c.sendRawBlocking(bytes, timeoutMilliseconds: 2_000)
            if bytes == right {
                let (admitted, _) = try gate.admit(timeoutMilliseconds: 5_000, refused: { refusals.append($0) })
                // What follows the preamble is the first frame.
                try c.sendBlocking(FrameHeader(kind: .auth, source: 1, a: 1), payload: [], timeoutMilliseconds: 2_000)
                let (header, _) = try admitted.receiveFrameBlocking(timeoutMilliseconds: 2_000)
                XCTAssertEqual(header.kind, .auth)
            } else {
                XCTAssertThrowsError(try gate.admit(timeoutMilliseconds: 50, refused: { refusals.append($0) }))
            }
        }
        // Reported up to a bound, then once that more are not.
        XCTAssertTrue(refusals.contains { $0.contains("secret") }, "\(refusals)")
        XCTAssertTrue(refusals.contains { $0.contains("not reported") }, "\(refusals)")
    }
}
