#if canImport(Glibc)
import Glibc
#endif

/// "dev:inode" of what descriptor `fd` is open on: a node forwards its
/// output to node 0 only while its standard output and error are still the
/// streams dsmrun started it with (DSM_FORWARD_OUTPUT).
public func streamIdentity(_ fd: Int32) -> String {
    var st = stat()
    guard fstat(fd, &st) == 0 else { return "-" }
    return "\(st.st_dev):\(st.st_ino)"
}

/// This process's standard output and error, as DSM_FORWARD_OUTPUT names them.
public func standardStreamIdentities() -> String {
    "\(streamIdentity(1)),\(streamIdentity(2))"
}
