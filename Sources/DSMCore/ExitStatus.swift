/// Exit statuses a node (or the launcher, for it) ends with that say why,
/// read by dsmrun to name the node that failed first rather than those
/// that followed it.
public enum NodeExitStatus {
    /// The node stopped because another node failed, or its launcher is gone.
    public static let abortedByPeer: Int32 = 250
    /// The run was stopped because a node went silent for --peer-timeout.
    public static let peerSilent: Int32 = 251
}
