import DSMTransport
import XCTest

final class FrameTests: XCTestCase {
    func testHeaderRoundTrip() throws {
        let header = FrameHeader(kind: .data, flags: 3, source: 7, payloadLength: 4096,
                                 container: 0xDEAD_BEEF, index: 123_456, a: 0x0102_0304_0506_0708)
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        let decoded = try bytes.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) }
        XCTAssertEqual(decoded, header)
    }

    func testCorruptHeadersAreRejected() {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
        bytes[0] = 0x00
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) })
        bytes[0] = FrameHeader.magic
        bytes[1] = 200
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) })
        bytes[1] = FrameKind.data.rawValue
        bytes[8] = 0xff; bytes[9] = 0xff; bytes[10] = 0xff; bytes[11] = 0x7f
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0.baseAddress!) })
    }

    func testEndpointParsing() {
        XCTAssertEqual(Endpoint(parsing: "127.0.0.1:4242"), Endpoint(host: "127.0.0.1", port: 4242))
        XCTAssertNil(Endpoint(parsing: "127.0.0.1"))
        XCTAssertNil(Endpoint(parsing: ":12"))
        XCTAssertNil(Endpoint(parsing: "host:99999"))
    }

    func testRendezvousRecordsRoundTrip() throws {
        let hello = RendezvousHello(endpoint: Endpoint(host: "127.0.0.1", port: 9))
        XCTAssertEqual(try RendezvousHello.decode(hello.encoded()), hello)
        let table = [Endpoint(host: "127.0.0.1", port: 1), Endpoint(host: "10.1.2.3", port: 65535)]
        XCTAssertEqual(try RendezvousTable.decode(RendezvousTable.encode(table)), table)
    }
}
