import DSMCore

// The local role: this node's own mapping of each page.
extension CoherenceNode {
    /// A local thread faulted on `page`. The thread stays blocked until a
    /// `wake` for the page; it then retries and may fault again.
    @inlinable
    public mutating func fault<E: CoherenceEffects>(_ page: PageID, _ access: Access, _ effects: inout E) {
        guard var local = localPage(page) else {
            return violation("fault on a page no container here has", page, &effects)
        }
        switch access {
        case .read: counters.readFaults += 1
        case .write: counters.writeFaults += 1
        }
        if local.state == .exclusiveUnwritten && access == .write {
            // Nobody else holds the page: write access needs no message.
            counters.silentUpgrades += 1
            effects.makeWritable(page)
            local.state = .exclusive
            // The thread writes when woken: its write is what the hold is for.
            if holdsPages { local.holding = true }
            setLocalPage(page, local)
            effects.wake(page)
            return
        }
        if local.state.permits(access) {
            // The mapping arrived between the fault and its handling.
            counters.spuriousFaults += 1
            effects.wake(page)
            return
        }
        local.faultWaiting = true
        switch local.outstanding {
        case .write:
            counters.coalescedFaults += 1
        case .read:
            counters.coalescedFaults += 1
            if access == .write { local.wantWrite = true }
        case .none:
            local.outstanding = access == .read ? .read : .write
            sendRequest(page, access, from: local.state, &effects)
        }
        setLocalPage(page, local)
    }

    /// Asks for `access` to `page` before any thread faults on it
    /// (readahead, or the upgrade of a neighbour). Only a page this node holds
    /// without that access is asked for; a write wanted while a read is on its
    /// way follows once it has arrived. Returns whether a request went out.
    /// Not counted as a fault.
    @inlinable
    @discardableResult
    public mutating func prefetch<E: CoherenceEffects>(_ page: PageID, _ access: Access, _ effects: inout E) -> Bool {
        // A page handed over unwritten gets write access at its first write,
        // without a message: nothing to ask for.
        guard var local = localPage(page), !local.state.permits(access), local.state != .exclusiveUnwritten else {
            return false
        }
        if local.outstanding == .read && access == .write {
            local.wantWrite = true
            setLocalPage(page, local)
            return false
        }
        guard local.outstanding == .none else { return false }
        counters.prefetchRequests += 1
        local.outstanding = access == .read ? .read : .write
        sendRequest(page, access, from: local.state, &effects)
        setLocalPage(page, local)
        return true
    }

    @inlinable
    mutating func sendRequest<E: CoherenceEffects>(
        _ page: PageID, _ access: Access, from state: LocalState, _ effects: inout E
    ) {
        let home = page.home(nodes: nodes)
        switch access {
        case .read:
            counters.readRequestsSent += 1
            effects.send(.readRequest(page, from: node), to: home)
        case .write:
            counters.writeRequestsSent += 1
            if state == .shared { counters.upgradesSent += 1 }
            effects.send(.writeRequest(page, from: node), to: home)
        }
    }

    /// As owner: give a read-only copy to `requester`, keeping ours read-only.
    @inlinable
    mutating func forwardRead<E: CoherenceEffects>(_ page: PageID, requester: NodeID, _ effects: inout E) {
        var local = localPage(page)!
        guard local.state != .invalid else {
            return violation("forwardRead to a node without a copy", page, &effects)
        }
        let unwritten = local.state == .exclusiveUnwritten
        if local.state == .exclusive { effects.writeProtect(page) }
        local.state = .shared
        setLocalPage(page, local)
        counters.dataSent += 1
        answerAsOwner(page, .data(page, writable: false, closed: isHome(of: page)), to: requester, &effects)
        if unwritten { effects.send(.unwritten(page, from: node), to: page.home(nodes: nodes)) }
    }

    /// Sends the owner's answer. When this node is also the page's home, the
    /// answer closes the transaction (the requester sends no `.done`): anything
    /// the home sends the requester later travels behind it. The home role
    /// closes through a `.done` to this node itself, which the runtime
    /// delivers after the answer has gone out.
    @inlinable
    mutating func answerAsOwner<E: CoherenceEffects>(
        _ page: PageID, _ answer: ProtocolMessage, to requester: NodeID, _ effects: inout E
    ) {
        effects.send(answer, to: requester)
        if isHome(of: page) { effects.send(.done(page, from: requester), to: node) }
    }

    /// As owner: hand the page over to `requester` and drop ours. An
    /// outstanding request of this node stays outstanding: the home serves it
    /// later against the directory as it then is.
    @inlinable
    mutating func forwardWrite<E: CoherenceEffects>(
        _ page: PageID, requester: NodeID, sendData: Bool, _ effects: inout E
    ) {
        var local = localPage(page)!
        guard local.state != .invalid else {
            return violation("forwardWrite to a node without a copy", page, &effects)
        }
        let closed = isHome(of: page)
        if sendData {
            // Freeze the contents while the runtime copies them out.
            if local.state == .exclusive { effects.writeProtect(page) }
            counters.dataSent += 1
            answerAsOwner(page, .data(page, writable: true, closed: closed), to: requester, &effects)
        } else {
            answerAsOwner(page, .grant(page, writable: true, zeroFill: false, closed: closed), to: requester, &effects)
        }
        effects.drop(page)
        if local.state == .exclusiveUnwritten {
            effects.send(.unwritten(page, from: node), to: page.home(nodes: nodes))
        }
        local.state = .invalid
        setLocalPage(page, local)
    }

    /// As sharer: drop the copy and acknowledge to home.
    @inlinable
    mutating func invalidate<E: CoherenceEffects>(_ page: PageID, _ effects: inout E) {
        var local = localPage(page)!
        guard local.state == .shared else {
            return violation("invalidate to a node that is not a sharer", page, &effects)
        }
        counters.invalidationsReceived += 1
        effects.drop(page)
        local.state = .invalid
        setLocalPage(page, local)
        effects.send(.invalidateAck(page, from: node), to: page.home(nodes: nodes))
    }

    /// As requester: the answer to our outstanding request, with contents.
    /// Writable data answering a read is a migrating page handed over
    /// whole: it stays write-protected until its first write, unless a
    /// write is already waiting.
    @inlinable
    mutating func receiveData<E: CoherenceEffects>(
        _ page: PageID, writable: Bool, closed: Bool, _ effects: inout E
    ) {
        var local = localPage(page)!
        let expected: OutstandingRequest = writable ? .write : .read
        guard local.outstanding == expected || (writable && local.outstanding == .read), local.state == .invalid else {
            return violation("data that answers no outstanding request", page, &effects)
        }
        let handedOver = writable && local.outstanding == .read
        if handedOver && local.wantWrite { counters.silentUpgrades += 1 }
        let mapWritable = writable && (!handedOver || local.wantWrite)
        effects.install(page, writable: mapWritable)
        local.state = !writable ? .shared : mapWritable ? .exclusive : .exclusiveUnwritten
        local.outstanding = .none
        holdingAfterAnswer(&local)
        effects.wake(page)
        // `.done` first: the home must close this transaction before it sees
        // the follow-up request, which travels on the same FIFO channel. (A
        // closed answer needs none; a follow-up request meeting the home
        // before it closed by itself waits in its queue.)
        if !closed { effects.send(.done(page, from: node), to: page.home(nodes: nodes)) }
        if local.wantWrite {
            local.wantWrite = false
            if !writable {
                local.outstanding = .write
                sendRequest(page, .write, from: local.state, &effects)
            }
        }
        setLocalPage(page, local)
    }

    /// As requester: write permission without contents.
    @inlinable
    mutating func receiveGrant<E: CoherenceEffects>(
        _ page: PageID, writable: Bool, zeroFill: Bool, closed: Bool, _ effects: inout E
    ) {
        var local = localPage(page)!
        guard writable, local.outstanding != .none else {
            return violation("grant that answers no outstanding request", page, &effects)
        }
        if zeroFill {
            guard local.state == .invalid else {
                return violation("zero-fill grant to a node holding a copy", page, &effects)
            }
            effects.installZero(page)
        } else {
            guard local.state == .shared, local.outstanding == .write else {
                return violation("upgrade grant to a node without a read-only copy", page, &effects)
            }
            effects.makeWritable(page)
        }
        local.state = .exclusive
        local.outstanding = .none
        local.wantWrite = false
        holdingAfterAnswer(&local)
        setLocalPage(page, local)
        effects.wake(page)
        if !closed { effects.send(.done(page, from: node), to: page.home(nodes: nodes)) }
    }
}
