/// Sequential-miss detection for one container, in the manner of the kernel's
/// file readahead: it decides which pages to ask for before the program
/// touches them, and nothing else (the runtime sends the requests).
///
/// - A stream starts on any miss. Misses each on the page right after those
///   asked for before (the neighbour fetched with a miss counts as asked
///   for) make it sequential: three in quick succession, or `slowRun` at any
///   pace (matmul's rows of A, one per row of C computed). It then asks for
///   a first window of `initialWindow` pages after them.
/// - From then on, a miss on a page of the latest window (the program caught
///   up with pages still on their way) or just past it asks for the next
///   window, twice as large, up to `maxWindow`. The program's pace does not
///   matter then: it has shown it consumes the pages.
/// - A few misses a compute phase apart (more than `detectionGap`) do not
///   start a stream: in MGS on N nodes a node misses up to N-1 neighbouring
///   columns in a row, each a step apart, and the next ones are being
///   written by their owners: fetching them early would only have them
///   invalidated and slow their writers.
/// - Reads and writes are separate streams, and a few streams are followed at
///   once (matmul reads a row of A and all of B in the same segment). A miss
///   that belongs to no stream replaces the stream idle the longest.
///
/// Fixed size, no allocation: it is consulted on the fault path.
public struct Readahead: Sendable {
    public struct Stream: Sendable, Equatable {
        /// The lowest page a miss may hit to belong to this stream.
        var low = Int.min
        /// The first page after every page this stream has asked for.
        var next = Int.min
        /// The first page of the latest window: a miss at or after it asks for
        /// the next one. `Int.max` while still detecting.
        var marker = Int.max
        /// The latest window's size; 0 while still detecting.
        var window = 0
        /// Sequential misses seen while detecting, and how many of the
        /// latest came in quick succession.
        var run = 0
        var quickRun = 0
        var writing = false
        var lastMissTime: UInt64 = 0
    }

    public static let initialWindow = 8
    /// Sequential misses that make a stream whatever their pace.
    public static let slowRun = 8
    public static let detectionGap: UInt64 = 250_000
    public static let streamCount = 4

    /// The largest window, in pages; 0 turns readahead off.
    public let maxWindow: Int
    public private(set) var streams: InlineArray<4, Stream>

    public init(maxWindow: Int) {
        self.maxWindow = maxWindow
        streams = InlineArray(repeating: Stream())
    }

    /// A miss on `page`, for which this node has just asked for pages
    /// `page...last` (`last` > `page` when a neighbour came along). Returns the
    /// pages to ask for ahead, which may be empty. `pages` is the container's size.
    public mutating func miss(_ page: Int, through last: Int, write: Bool, now: UInt64, pages: Int) -> Range<Int> {
        let none = 0..<0
        guard maxWindow > 0 else { return none }
        var found = -1
        var idlest = 0
        for s in 0..<Readahead.streamCount {
            let stream = streams[s]
            if stream.writing == write && page >= stream.low && page <= stream.next {
                found = s
                break
            }
            if stream.lastMissTime < streams[idlest].lastMissTime { idlest = s }
        }
        guard found >= 0 else {
            streams[idlest] = Stream(low: page, next: last + 1, writing: write, lastMissTime: now)
            return none
        }
        var stream = streams[found]
        defer { streams[found] = stream }
        let quick = now &- stream.lastMissTime < Readahead.detectionGap
        stream.lastMissTime = now
        let window: Int
        if stream.window == 0 {
            // Detecting. A miss below `next` is a fault on a neighbour still
            // on its way: nothing new.
            guard page == stream.next else { return none }
            stream.run += 1
            stream.quickRun = quick ? stream.quickRun + 1 : 0
            stream.low = page
            stream.next = last + 1
            guard stream.quickRun >= 2 || stream.run >= Readahead.slowRun - 1 else { return none }
            window = min(Readahead.initialWindow, maxWindow)
        } else {
            // Streaming. A miss in the window before the latest one is a
            // fault on a page still on its way, already followed by a window.
            guard page >= stream.marker else { return none }
            window = min(stream.window * 2, maxWindow)
        }
        let first = max(stream.next, last + 1)
        let end = min(first + window, pages)
        guard first < end else { return none }
        stream.low = stream.window == 0 ? page : stream.marker
        stream.marker = first
        stream.next = end
        stream.window = window
        return first..<end
    }
}
