/// A node of the cluster: 0 ..< nodes. Node 0 runs `main` in image mode and
/// holds the System V key registry.
public typealias NodeID = Int

/// The most nodes a run may have: copysets are 64-bit masks.
public let maxNodes = 64

/// A container is a set of pages with one identity cluster-wide (a SysV
/// segment, later the heap, the data image, the stacks).
public typealias ContainerID = UInt32

/// A page is named by its container and its index there, never by its virtual
/// address, so one segment attached at different addresses stays one object.
public struct PageID: Hashable, Sendable, CustomStringConvertible {
    public var container: ContainerID
    public var index: UInt32

    @inlinable
    public init(container: ContainerID, index: UInt32) {
        self.container = container
        self.index = index
    }

    /// The node that serialises requests for this page and keeps its
    /// directory entry. Spread over the nodes so no node is everyone's home;
    /// for a block-homed container (image mode's heap), node k is the home
    /// of the k-th block of pages: the arena it allocates from, so its first
    /// touch of its own memory needs no other node.
    @inlinable
    public func home(nodes: Int) -> NodeID {
        if let block = PageID.blockPages(of: container) {
            return min(Int(index) / block, nodes - 1)
        }
        return Int((UInt64(container) &* 0x9E37_79B9 &+ UInt64(index)) % UInt64(nodes))
    }

    /// Image mode's data containers: the writable data and bss of the
    /// executable (object 0) and of each library of the program (1, 2, ...).
    public static let imageDataObjects = 64
    @inlinable
    public static func imageDataContainer(object: Int) -> ContainerID {
        precondition(object >= 0 && object < imageDataObjects)
        return 0xFFFF_FF01 + ContainerID(object)
    }

    /// The object of an image data container, nil for the others.
    @inlinable
    public static func imageDataObject(of container: ContainerID) -> Int? {
        container >= 0xFFFF_FF01 && container < 0xFFFF_FF01 + ContainerID(imageDataObjects)
            ? Int(container - 0xFFFF_FF01) : nil
    }

    /// A container id whose pages are homed in blocks of `blockPages` pages
    /// (a multiple of 16, below 2^32): 0xA in the top four bits, the block
    /// size in sixteens of pages in the rest.
    @inlinable
    public static func blockHomedContainer(blockPages: Int) -> ContainerID {
        precondition(blockPages > 0 && blockPages % 16 == 0 && blockPages / 16 < 1 << 28, "block of \(blockPages) pages")
        return 0xA000_0000 | ContainerID(blockPages / 16)
    }

    /// The block size of a block-homed container, nil for the others.
    @inlinable
    public static func blockPages(of container: ContainerID) -> Int? {
        container >> 28 == 0xA ? Int(container & 0x0FFF_FFFF) * 16 : nil
    }

    public var description: String { "\(container):\(index)" }
}

/// A set of nodes as a bit mask (node i is bit i).
public struct NodeSet: Hashable, Sendable, Sequence, CustomStringConvertible {
    public var bits: UInt64

    @inlinable public init() { bits = 0 }
    @inlinable public init(bits: UInt64) { self.bits = bits }
    @inlinable public init(_ nodes: [NodeID]) {
        bits = 0
        for n in nodes { insert(n) }
    }

    @inlinable public var isEmpty: Bool { bits == 0 }
    @inlinable public var count: Int { bits.nonzeroBitCount }
    @inlinable public func contains(_ n: NodeID) -> Bool { bits & (1 << UInt64(n)) != 0 }
    @inlinable public mutating func insert(_ n: NodeID) { bits |= 1 << UInt64(n) }
    @inlinable public mutating func remove(_ n: NodeID) { bits &= ~(1 << UInt64(n)) }
    @inlinable public func removing(_ n: NodeID) -> NodeSet { NodeSet(bits: bits & ~(1 << UInt64(n))) }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var rest: UInt64
        @inlinable init(rest: UInt64) { self.rest = rest }
        @inlinable public mutating func next() -> NodeID? {
            if rest == 0 { return nil }
            let n = rest.trailingZeroBitCount
            rest &= rest &- 1
            return n
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(rest: bits) }

    public var description: String { "{" + map(String.init).joined(separator: ",") + "}" }
}

/// Page size of the DSM: the machine's base page.
public let dsmPageSize = 4096
