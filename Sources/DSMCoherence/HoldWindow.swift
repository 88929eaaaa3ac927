import DSMCore

// The hold window (see `CoherenceNode.holdsPages`). A page that arrives for
// a waiting thread starts holding; while it holds, a message that would take
// it or its write access away (`forwardRead`, `forwardWrite`, `invalidate`)
// is kept, and handled when the runtime ends the hold (`endHold`, once the
// window's time has passed). Nothing else waits: requests to this node as
// home, answers and acknowledgements go on. Time stays outside: here a hold
// is a state that ends when told, so the exploration tries every moment a
// window can close.
extension CoherenceNode {
    /// Whether `page` is in its hold window here.
    public func isHolding(_ page: PageID) -> Bool {
        localPage(page)?.holding ?? false
    }

    /// The hold window of `page` closes: the message it held, if any, is
    /// handled now.
    @inlinable
    public mutating func endHold<E: CoherenceEffects>(_ page: PageID, _ effects: inout E) {
        guard var local = localPage(page), local.holding else { return }
        let held = local.held
        let requester = NodeID(local.heldRequester)
        local.holding = false
        local.held = .none
        local.heldRequester = 0
        setLocalPage(page, local)
        switch held {
        case .none: break
        case .forwardRead: forwardRead(page, requester: requester, &effects)
        case .forwardWriteWithData: forwardWrite(page, requester: requester, sendData: true, &effects)
        case .forwardWrite: forwardWrite(page, requester: requester, sendData: false, &effects)
        case .invalidate: invalidate(page, &effects)
        }
    }

    /// A message taking `page` away: kept if the page holds. Returns whether
    /// it was.
    @inlinable
    mutating func holdsBack<E: CoherenceEffects>(
        _ page: PageID, _ takeaway: HeldTakeaway, requester: NodeID, _ effects: inout E
    ) -> Bool {
        guard var local = localPage(page), local.holding else { return false }
        guard local.held == .none else {
            violation("a second message taking away a page that holds one already", page, &effects)
            return true
        }
        local.held = takeaway
        local.heldRequester = Int8(requester)
        setLocalPage(page, local)
        counters.heldMessages += 1
        effects.held(page)
        return true
    }

    /// The answer for a waiting thread has arrived (its wake follows): the
    /// page holds.
    @inlinable
    func holdingAfterAnswer(_ local: inout LocalPage) {
        guard local.faultWaiting else { return }
        local.faultWaiting = false
        if holdsPages { local.holding = true }
    }
}
