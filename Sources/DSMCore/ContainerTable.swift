/// The containers a node knows, by id. There are a handful at most, so a
/// scan of a small array beats hashing, which showed in profiles of the
/// fault path (a lookup or two per message). Values are reachable by index
/// for in-place mutation (`values[i].pages[j] = ...`).
public struct ContainerTable<Value> {
    /// The ids, in the order the containers were added (set through the subscript).
    public internal(set) var ids: [ContainerID] = []
    public var values: [Value] = []

    public init() {}

    @inlinable
    public func index(of id: ContainerID) -> Int? {
        var i = 0
        let n = ids.count
        while i < n {
            if ids[i] == id { return i }
            i += 1
        }
        return nil
    }

    public subscript(id: ContainerID) -> Value? {
        @inlinable get {
            guard let i = index(of: id) else { return nil }
            return values[i]
        }
        set {
            guard let newValue else {
                removeValue(forKey: id)
                return
            }
            if let i = index(of: id) {
                values[i] = newValue
            } else {
                ids.append(id)
                values.append(newValue)
            }
        }
    }

    @discardableResult
    public mutating func removeValue(forKey id: ContainerID) -> Value? {
        guard let i = index(of: id) else { return nil }
        ids.remove(at: i)
        return values.remove(at: i)
    }

    public var count: Int { ids.count }
    public var isEmpty: Bool { ids.isEmpty }
}

extension ContainerTable: Sequence {
    public func makeIterator() -> Zip2Sequence<[ContainerID], [Value]>.Iterator {
        zip(ids, values).makeIterator()
    }
}

extension ContainerTable: Sendable where Value: Sendable {}
