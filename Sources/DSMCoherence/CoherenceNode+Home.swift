import DSMCore

extension CoherenceNode {
    /// A protocol message arrived for this node (possibly sent by itself).
    @inlinable
    public mutating func receive<E: CoherenceEffects>(_ message: ProtocolMessage, _ effects: inout E) {
        let page = message.page
        guard localPage(page) != nil else {
            return violation("message about a page no container here has", page, &effects)
        }
        switch message {
        case .readRequest(_, let requester):
            request(page, .read, from: requester, &effects)
        case .writeRequest(_, let requester):
            request(page, .write, from: requester, &effects)
        case .invalidateAck(_, let sharer):
            invalidateAck(page, from: sharer, &effects)
        case .done(_, let requester):
            done(page, from: requester, &effects)
        case .unwritten:
            migrationEnded(page, &effects)
        case .forwardRead(_, let requester):
            if holdsBack(page, .forwardRead, requester: requester, &effects) { return }
            forwardRead(page, requester: requester, &effects)
        case .forwardWrite(_, let requester, let sendData):
            if holdsBack(page, sendData ? .forwardWriteWithData : .forwardWrite, requester: requester, &effects) { return }
            forwardWrite(page, requester: requester, sendData: sendData, &effects)
        case .invalidate:
            if holdsBack(page, .invalidate, requester: node, &effects) { return }
            invalidate(page, &effects)
        case .data(_, let writable, let closed):
            receiveData(page, writable: writable, closed: closed, &effects)
        case .grant(_, let writable, let zeroFill, let closed):
            receiveGrant(page, writable: writable, zeroFill: zeroFill, closed: closed, &effects)
        }
    }
}

// The home role: the directory entry of each page homed on this node.
extension CoherenceNode {
    @inlinable
    mutating func request<E: CoherenceEffects>(
        _ page: PageID, _ access: Access, from requester: NodeID, _ effects: inout E
    ) {
        guard var entry = homeEntry(page) else {
            return violation("request sent to a node that is not the page's home", page, &effects)
        }
        guard requester >= 0, requester < nodes,
              !entry.waitingReaders.contains(requester), !entry.waitingWriters.contains(requester),
              !(entry.phase != .idle && entry.phase != .awaitingSelfDone && Int(entry.requester) == requester)
        else {
            return violation("second outstanding request from one node", page, &effects)
        }
        if entry.isBusy {
            counters.requestsQueued += 1
            switch access {
            case .read: entry.waitingReaders.insert(requester)
            case .write: entry.waitingWriters.insert(requester)
            }
        } else {
            serve(page, &entry, access, from: requester, &effects)
        }
        setHomeEntry(page, entry)
    }

    /// Starts the transaction of `requester`, deciding on the directory as it
    /// is now (a queued request may have lost or gained a copy since it was sent).
    @inlinable
    mutating func serve<E: CoherenceEffects>(
        _ page: PageID, _ entry: inout HomeEntry, _ access: Access, from requester: NodeID, _ effects: inout E
    ) {
        entry.lastServed = Int8(requester)
        entry.requester = Int8(requester)
        switch access {
        case .read:
            if entry.copyset.contains(requester) {
                // The requester holds a copy already: it cannot have faulted
                // for a read. Nothing to do but close the transaction.
                violation("read request from a node holding a copy", page, &effects)
                return closeAndServeNext(page, &entry, &effects)
            }
            if entry.owner == HomeEntry.noNode {
                grantFirstTouch(page, &entry, to: requester, &effects)
                return closeAndServeNext(page, &entry, &effects)
            }
            let owner = NodeID(entry.owner)
            let ownerAlone = entry.copyset.bits == 1 << UInt64(owner)
            if entry.migratory && ownerAlone {
                // The reader will write next: hand the page over whole
                // (as for a write; the requester maps it read-only until
                // its first write), saving the upgrade's round trip.
                counters.handovers += 1
                effects.send(.forwardWrite(page, requester: requester, sendData: true), to: owner)
                entry.owner = Int8(requester)
                entry.copyset = NodeSet(bits: 1 << UInt64(requester))
                entry.phase = owner == node ? .awaitingSelfDone : .awaitingDone
                return
            }
            if !ownerAlone {
                // Several nodes read it: it is shared, not migrating.
                if entry.migratory { counters.migrationsEnded += 1 }
                entry.migrationEvidence = 0
            }
            effects.send(.forwardRead(page, requester: requester), to: owner)
            entry.copyset.insert(requester)
            entry.phase = owner == node ? .awaitingSelfDone : .awaitingDone
        case .write:
            // Migratory sharing (Cox & Fowler; Stenstrom et al., 1993): a
            // node writes a page it has just read from the last writer, and
            // nobody else holds it. Seen twice in a row (more once handovers
            // of the page went unwritten), the next read miss takes the page
            // whole.
            if handsOverMigratoryPages, entry.owner != HomeEntry.noNode, Int(entry.owner) != requester,
               entry.copyset.bits == (1 << UInt64(requester) | 1 << UInt64(entry.owner)), !entry.migratory {
                entry.migrationEvidence += 1
                if entry.migratory { counters.migrationsFound += 1 }
            }
            var sharers = entry.copyset.removing(requester)
            if entry.owner != HomeEntry.noNode { sharers.remove(NodeID(entry.owner)) }
            if sharers.isEmpty {
                finishWrite(page, &entry, &effects)
            } else {
                // Nobody may keep reading the old contents once the writer has
                // write access, so the write waits for every acknowledgement.
                for sharer in sharers {
                    counters.invalidationsSent += 1
                    effects.send(.invalidate(page), to: sharer)
                }
                entry.copyset.bits &= ~sharers.bits
                entry.awaitingAcks = sharers
                entry.phase = .collectingAcks
            }
        }
    }

    /// The write of `entry.requester`, once no sharer but the owner and the
    /// requester remain.
    @inlinable
    mutating func finishWrite<E: CoherenceEffects>(_ page: PageID, _ entry: inout HomeEntry, _ effects: inout E) {
        let requester = NodeID(entry.requester)
        if entry.owner == HomeEntry.noNode {
            grantFirstTouch(page, &entry, to: requester, &effects)
            return closeAndServeNext(page, &entry, &effects)
        }
        let owner = NodeID(entry.owner)
        let sendData = !entry.copyset.contains(requester)
        entry.owner = Int8(requester)
        entry.copyset = NodeSet(bits: 1 << UInt64(requester))
        if owner == requester {
            // Sent by the home itself: anything it sends the requester later
            // travels behind the grant, so there is nothing to wait for.
            effects.send(.grant(page, writable: true, zeroFill: false, closed: true), to: requester)
            return closeAndServeNext(page, &entry, &effects)
        }
        // The owner rather than the home answers: it is the one that must
        // drop its copy before the requester may write.
        effects.send(.forwardWrite(page, requester: requester, sendData: sendData), to: owner)
        entry.phase = owner == node ? .awaitingSelfDone : .awaitingDone
    }

    /// Nobody ever touched the page: no contents exist, the requester makes a
    /// zero page and owns it read-write. The home sends the grant itself, so
    /// the caller closes the transaction at once.
    @inlinable
    mutating func grantFirstTouch<E: CoherenceEffects>(
        _ page: PageID, _ entry: inout HomeEntry, to requester: NodeID, _ effects: inout E
    ) {
        effects.send(.grant(page, writable: true, zeroFill: true, closed: true), to: requester)
        entry.owner = Int8(requester)
        entry.copyset = NodeSet(bits: 1 << UInt64(requester))
    }

    @inlinable
    mutating func invalidateAck<E: CoherenceEffects>(_ page: PageID, from sharer: NodeID, _ effects: inout E) {
        guard var entry = homeEntry(page) else {
            return violation("invalidateAck sent to a node that is not the page's home", page, &effects)
        }
        guard entry.phase == .collectingAcks, entry.awaitingAcks.contains(sharer) else {
            return violation("unexpected invalidateAck", page, &effects)
        }
        entry.awaitingAcks.remove(sharer)
        if entry.awaitingAcks.isEmpty { finishWrite(page, &entry, &effects) }
        setHomeEntry(page, entry)
    }

    @inlinable
    mutating func done<E: CoherenceEffects>(_ page: PageID, from requester: NodeID, _ effects: inout E) {
        guard var entry = homeEntry(page) else {
            return violation("done sent to a node that is not the page's home", page, &effects)
        }
        guard entry.phase == .awaitingDone || entry.phase == .awaitingSelfDone,
              Int(entry.requester) == requester else {
            return violation("done for a transaction that is not in progress", page, &effects)
        }
        closeAndServeNext(page, &entry, &effects)
        setHomeEntry(page, entry)
    }

    /// The owner of a page handed over whole gave it up unwritten: reads of
    /// it are served shared again until it is seen migrating anew.
    @inlinable
    mutating func migrationEnded<E: CoherenceEffects>(_ page: PageID, _ effects: inout E) {
        guard var entry = homeEntry(page) else {
            return violation("unwritten sent to a node that is not the page's home", page, &effects)
        }
        if entry.migratory { counters.migrationsEnded += 1 }
        entry.migrationEvidence = 0
        entry.migrationPenalty = min(entry.migrationPenalty + 1, maxMigrationPenalty)
        setHomeEntry(page, entry)
    }

    /// Ends the current transaction and starts the next waiting one, if any.
    @inlinable
    mutating func closeAndServeNext<E: CoherenceEffects>(
        _ page: PageID, _ entry: inout HomeEntry, _ effects: inout E
    ) {
        entry.phase = .idle
        entry.requester = HomeEntry.noNode
        serveNext(page, &entry, &effects)
    }

    @inlinable
    mutating func serveNext<E: CoherenceEffects>(_ page: PageID, _ entry: inout HomeEntry, _ effects: inout E) {
        if let next = entry.dequeueNext() {
            serve(page, &entry, next.access, from: next.node, &effects)
        }
    }
}
