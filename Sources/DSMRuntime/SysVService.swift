import DSMCore

extension ClusterService {
    func handleSysV(_ request: ServiceRequest, caller: Caller, reply: ReplyDestination, node: Node) {
        node.answer(reply, .error(.noFunction))
    }

    func processExited(_ caller: Caller, node: Node) {}

    func expireDeadlines(node: Node) {}
}
