@_exported import SystemPackage

extension Errno {
    /// The value a C caller sees in `errno`.
    @inlinable public var code: Int32 { rawValue }
}
