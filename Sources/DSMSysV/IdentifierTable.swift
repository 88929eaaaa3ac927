import DSMCore

/// An object the namespace hands out identifiers for.
protocol IPCObject {
    var permissions: IPCPermissions { get set }
}

/// One kind's identifiers (ipc_ids in Linux's ipc/util.c): slots found by
/// index, keys found by hash, identifiers shaped `seq * 32768 + index`.
///
/// Allocation reproduces ipc_idr_alloc(): a cyclic search over the first
/// max(in_use * 3/2, 64) slots starting after the last slot handed out, and
/// the sequence number bumped whenever the search wrapped. So a removed id
/// stays invalid for a good while, and ids match a fresh kernel namespace's.
struct IdentifierTable<Object: IPCObject>: Sendable where Object: Sendable {
    static var indexBits: Int { 15 }
    /// ipc_mni: slots that exist.
    static var slotCount: Int { 1 << indexBits }
    /// ipc_min_cycle (RADIX_TREE_MAP_SIZE): slots always cycled through.
    static var minimumCycle: Int { 64 }
    /// ipcid_seq_max(): the sequence number wraps to 0 here.
    static var sequenceLimit: Int { Int(Int32.max) >> indexBits }

    private var objects: [Int: Object] = [:]
    private var indexByKey: [Int32: Int] = [:]
    private var sequence = 0
    private var lastIndex = -1
    /// idr_next: where the next cyclic search starts.
    private var searchStart = 0

    var inUse: Int { objects.count }

    var indices: Dictionary<Int, Object>.Keys { objects.keys }

    /// ipc_get_maxidx(): -1 when empty.
    var highestIndex: Int {
        if objects.isEmpty { return -1 }
        if objects.count == Self.slotCount { return Self.slotCount - 1 }
        return objects.keys.max() ?? -1
    }

    static func slot(of id: Int32) -> Int { Int(id) & (slotCount - 1) }

    static func identifier(slot: Int, sequence: Int) -> Int32 { Int32(sequence << indexBits + slot) }

    func identifier(ofSlot slot: Int) -> Int32 {
        Self.identifier(slot: slot, sequence: Int(objects[slot]!.permissions.seq))
    }

    /// ipc_findkey()
    func slot(forKey key: Int32) -> Int? { indexByKey[key] }

    /// ipc_obtain_object_check(): the slot must hold an object of the id's
    /// sequence; a stale or unknown id is EINVAL.
    func slot(forIdentifier id: Int32) -> Int? {
        guard id >= 0 else { return nil }
        let slot = Self.slot(of: id)
        guard let object = objects[slot], Int(object.permissions.seq) == Int(id) >> Self.indexBits else { return nil }
        return slot
    }

    /// ipc_obtain_object_idr(): only the index bits count (SHM_STAT, SEM_STAT).
    func slot(forIndex id: Int32) -> Int? {
        guard id >= 0 else { return nil }
        let slot = Self.slot(of: id)
        return objects[slot] == nil ? nil : slot
    }

    subscript(slot: Int) -> Object {
        get { objects[slot]! }
        _modify { yield &objects[slot]! }
    }

    /// ipc_addid(): ENOSPC past `limit` objects or when no slot is free in
    /// the cycle. `make` receives the sequence number to record.
    mutating func add(key: Int32, limit: Int, _ make: (_ sequence: UInt16) -> Object) -> Result<Int32, Errno> {
        guard objects.count < min(limit, Self.slotCount) else { return .failure(.noSpace) }
        let cycleEnd = min(max(objects.count * 3 / 2, Self.minimumCycle), Self.slotCount)
        func firstFree(from start: Int) -> Int? {
            var slot = start
            while slot < cycleEnd {
                if objects[slot] == nil { return slot }
                slot += 1
            }
            return nil
        }
        // idr_alloc_cyclic(): from idr_next to the end, then from 0.
        guard let slot = firstFree(from: searchStart) ?? (searchStart > 0 ? firstFree(from: 0) : nil) else {
            return .failure(.noSpace)
        }
        searchStart = slot + 1
        if slot <= lastIndex {
            sequence += 1
            if sequence >= Self.sequenceLimit { sequence = 0 }
        }
        lastIndex = slot
        var object = make(UInt16(sequence))
        object.permissions.seq = UInt16(sequence)
        object.permissions.key = key
        objects[slot] = object
        if key != SysV.IPC_PRIVATE { indexByKey[key] = slot }
        return .success(Self.identifier(slot: slot, sequence: sequence))
    }

    /// ipc_rmid()
    @discardableResult
    mutating func remove(slot: Int) -> Object {
        let object = objects.removeValue(forKey: slot)!
        if object.permissions.key != SysV.IPC_PRIVATE { indexByKey[object.permissions.key] = nil }
        return object
    }

    /// ipc_set_key_private(): the object stays, its key is free again.
    mutating func makePrivate(slot: Int) {
        let key = objects[slot]!.permissions.key
        if key != SysV.IPC_PRIVATE { indexByKey[key] = nil }
        objects[slot]!.permissions.key = SysV.IPC_PRIVATE
    }
}
