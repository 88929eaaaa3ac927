/// Sequential- and strided-miss detection for one container, in the manner of
/// the kernel's file readahead: it decides which pages to ask for before the
/// program touches them, and nothing else (the runtime sends the requests).
///
/// - A stream starts on any miss. Misses each on the page right after those
///   asked for before (the neighbour fetched with a miss counts as asked
///   for) make it sequential: three in quick succession, or `slowRun` at any
///   pace (matmul's rows of A, one per row of C computed). It then asks for
///   a first window of `initialWindow` pages after them.
/// - Misses a constant stride apart (up to `maxStride` pages), four in quick
///   succession, make it strided: MGS's first step, where a node reads and
///   then rewrites every N-th column. Its windows are of blocks (the pages
///   asked for with each miss) a stride apart.
/// - From then on, a miss on a page at or after the latest window's first
///   (the program caught up with pages still on their way) asks for the next
///   window, twice as large, up to `maxWindow` pages. The program's pace
///   does not matter then: it has shown it consumes the pages.
/// - A few misses a compute phase apart (more than `detectionGap`) do not
///   start a stream: in MGS on N nodes a node misses up to N-1 neighbouring
///   columns in a row, each a step apart, and the next ones are being
///   written by their owners: fetching them early would only have them
///   invalidated and slow their writers.
/// - Reads, write misses and upgrades (writes to read-only pages) are
///   separate streams, and a few streams are followed at once (matmul reads a
///   row of A and all of B in the same segment). A miss that belongs to no
///   stream replaces the stream idle the longest.
///
/// Fixed size, no allocation: it is consulted on the fault path.
public struct Readahead: Sendable {
    /// What kind of miss a stream follows.
    public enum Kind: UInt8, Sendable {
        case read, write, upgrade
    }

    /// Pages to ask for: `blocks` blocks of `block` pages, `stride` pages apart.
    public struct Window: Equatable, Sendable, CustomStringConvertible {
        public var first: Int
        public var blocks: Int
        public var block: Int
        public var stride: Int
        public static let none = Window(first: 0, blocks: 0, block: 1, stride: 1)

        public var isEmpty: Bool { blocks == 0 }

        /// Calls `body` with each page, in ascending order.
        @inlinable
        public func forEachPage(_ body: (Int) -> Void) {
            for b in 0..<blocks {
                let start = first + b * stride
                for p in start..<start + block { body(p) }
            }
        }

        public var description: String {
            isEmpty ? "none" : "\(blocks)x\(block) from \(first) every \(stride)"
        }
    }

    public struct Stream: Sendable, Equatable {
        /// The lowest page a miss may hit to belong to this stream.
        var low = Int.min
        /// The first page after every page this stream has asked for; in a
        /// strided stream, the first page of the next block to ask for.
        var next = Int.min
        /// The first page of the latest window: a miss at or after it asks for
        /// the next one. `Int.max` while still detecting.
        var marker = Int.max
        /// The latest window's size in blocks; 0 while still detecting.
        var window = 0
        /// Sequential misses seen while detecting, and how many of the
        /// latest came in quick succession.
        var run = 0
        var quickRun = 0
        /// The latest miss, the distance from the one before, and how many
        /// quick misses in a row kept that distance.
        var lastMiss = Int.min
        var delta = 0
        var strideRun = 0
        /// Pages per block and pages between blocks (1 and 1: sequential).
        var block = 1
        var stride = 1
        var kind = Kind.read
        var lastMissTime: UInt64 = 0
    }

    public static let initialWindow = 8
    /// Sequential misses that make a stream whatever their pace.
    public static let slowRun = 8
    /// Equal strides in a row after the first (4 misses) that make a strided stream.
    public static let stridedRun = 2
    public static let maxStride = 64
    public static let detectionGap: UInt64 = 250_000

    /// The largest window, in pages; 0 turns readahead off.
    public let maxWindow: Int
    /// The streams followed at once.
    private var streams: InlineArray<4, Stream>

    public init(maxWindow: Int) {
        self.maxWindow = maxWindow
        streams = InlineArray(repeating: Stream())
    }

    /// A miss of `kind` on `page`, for which this node has just asked for
    /// pages `page...last` (`last` > `page` when a neighbour came along).
    /// Returns the pages to ask for ahead, which may be none. `pages` is the
    /// container's size.
    public mutating func miss(_ page: Int, through last: Int, kind: Kind, now: UInt64, pages: Int) -> Window {
        guard maxWindow > 0 else { return .none }
        var found = -1
        var idlest = 0
        for s in streams.indices {
            let stream = streams[s]
            if stream.kind == kind && page >= stream.low && page <= stream.next + Readahead.maxStride {
                found = s
                break
            }
            if stream.lastMissTime < streams[idlest].lastMissTime { idlest = s }
        }
        guard found >= 0 else {
            streams[idlest] = Stream(low: page, next: last + 1, lastMiss: page, kind: kind, lastMissTime: now)
            return .none
        }
        var stream = streams[found]
        defer { streams[found] = stream }
        let quick = now &- stream.lastMissTime < Readahead.detectionGap
        stream.lastMissTime = now
        let window: Int
        if stream.window == 0 {
            // Detecting. A miss below `next` is a fault on a neighbour still
            // on its way: nothing new.
            guard page >= stream.next else { return .none }
            let delta = page - stream.lastMiss
            if page == stream.next {
                stream.run += 1
                stream.quickRun = quick ? stream.quickRun + 1 : 0
            } else {
                stream.run = 0
                stream.quickRun = 0
            }
            stream.strideRun = quick && delta == stream.delta ? stream.strideRun + 1 : 0
            stream.delta = delta
            stream.lastMiss = page
            stream.low = page
            stream.next = last + 1
            if stream.quickRun >= 2 || stream.run >= Readahead.slowRun - 1 {
                stream.block = 1
                stream.stride = 1
            } else if stream.strideRun >= Readahead.stridedRun && delta > last - page + 1 {
                stream.block = last - page + 1
                stream.stride = delta
                stream.next = page + delta
            } else {
                return .none
            }
            window = max(min(Readahead.initialWindow, maxWindow / stream.block), 1)
        } else {
            // Streaming. A miss in the window before the latest one is a
            // fault on a page still on its way, already followed by a window.
            guard page >= stream.marker else { return .none }
            window = max(min(stream.window * 2, maxWindow / stream.block), 1)
        }
        // The next block to ask for; a sequential stream also skips what the
        // miss itself brought.
        let first = stream.stride == 1 ? max(stream.next, last + 1) : stream.next
        let fits = pages - first >= stream.block ? (pages - first - stream.block) / stream.stride + 1 : 0
        let blocks = min(window, fits)
        guard blocks > 0 else { return .none }
        stream.low = stream.window == 0 ? page : stream.marker
        stream.marker = first
        stream.next = first + blocks * stream.stride
        stream.window = window
        return Window(first: first, blocks: blocks, block: stream.block, stride: stream.stride)
    }
}
