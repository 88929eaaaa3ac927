import CDSMKernel
import CDSMPMIx
import DSMCore
import DSMLaunch
import DSMTransport
#if canImport(Glibc)
import Glibc
#endif

/// dsmrun started as one task of a parallel job by Slurm (`srun
/// --mpi=pmix`) or Open MPI (`mpirun`): the engine starts and kills the
/// processes, each dsmrun runs one node (its rank), and the nodes find each
/// other through the engine's PMIx server: put, commit, fence, get. No
/// coordinator process, no shared file.
struct EngineWireUp {
    var rank: Int
    var size: Int
    /// How many of the job's tasks run on this host.
    var localSize: Int
    var token: String
    /// The address this rank's node listens on.
    var listenAddress: String

    /// Whether an engine started this process with a PMIx server.
    static var present: Bool { cdsm_pmix_present() != 0 }

    private static func check(_ result: Int32, _ error: [CChar]) throws {
        if result != 0 { throw LaunchProblem(message: "PMIx: \(cString(error))", status: 1) }
    }

    /// Joins the job: rank and size, the run's secret (rank 0's), and a
    /// check that every rank runs the same program and runtime.
    static func join(iface: String?, program: String, runtime: String, makeToken: () -> String) throws -> EngineWireUp {
        do {
            return try joinOrThrow(iface: iface, program: program, runtime: runtime, makeToken: makeToken)
        } catch {
            // Leave the job cleanly: the engine then sees an ordinary failed task.
            cdsm_pmix_finalize()
            throw error
        }
    }

    private static func joinOrThrow(iface: String?, program: String, runtime: String, makeToken: () -> String) throws -> EngineWireUp {
        var error = [CChar](repeating: 0, count: 512)
        var rank: UInt32 = 0, size: UInt32 = 0, localSize: UInt32 = 0
        try check(cdsm_pmix_init(&error, error.count, &rank, &size, &localSize), error)
        guard size >= 1 && Int(size) <= maxNodes else {
            throw LaunchProblem(message: "the job has \(size) tasks; a run has 1 to \(maxNodes) nodes", status: 2)
        }
        let fingerprints = "\(fileFingerprint(program) ?? 0):\(fileFingerprint(runtime) ?? 0)"
        try check(cdsm_pmix_put("dsm.fingerprints", fingerprints, &error, error.count), error)
        if rank == 0 { try check(cdsm_pmix_put("dsm.token", makeToken(), &error, error.count), error) }
        try check(cdsm_pmix_fence(&error, error.count), error)
        let token = try get(0, "dsm.token")
        guard !token.isEmpty, token.utf8.count <= Preamble.maxToken else {
            throw LaunchProblem(message: "PMIx: rank 0 published a secret of \(token.utf8.count) bytes (1 to \(Preamble.maxToken))", status: 1)
        }
        // Every rank compares every rank with rank 0, so all of them stop
        // on a difference (none is left waiting in the next fence).
        let reference = try get(0, "dsm.fingerprints")
        for other in 1..<Int(size) where try get(UInt32(other), "dsm.fingerprints") != reference {
            throw LaunchProblem(message: """
                rank \(other) (host \(hostName(UInt32(other)))) runs another build of \(program) or \(runtime) than rank 0 \
                (host \(hostName(0))): every host must run the same program and runtime
                """, status: 2)
        }
        let address: String
        if let iface {
            guard let found = Addresses.interfaceAddress(iface) else {
                throw LaunchProblem(message: "--iface \(iface): host \(hostName(rank)) has no IPv4 address on that interface or network",
                                    status: 2)
            }
            address = found
        } else if localSize == size {
            address = "127.0.0.1"
        } else if let found = routeTowardsOtherHosts(size: Int(size)) {
            address = found
        } else {
            throw LaunchProblem(message: """
                cannot tell which interface reaches the other hosts of the job (their names do not resolve to another \
                host's address): pass --iface NAME or --iface NETWORK/BITS
                """, status: 2)
        }
        return EngineWireUp(rank: Int(rank), size: Int(size), localSize: Int(localSize == 0 ? 1 : localSize), token: token,
                            listenAddress: address)
    }

    private static func get(_ rank: UInt32, _ key: String) throws -> String {
        var error = [CChar](repeating: 0, count: 512)
        var out = [CChar](repeating: 0, count: 4096)
        try check(cdsm_pmix_get(rank, key, &out, out.count, &error, error.count), error)
        return cString(out)
    }

    static func hostName(_ rank: UInt32) -> String {
        var out = [CChar](repeating: 0, count: 256)
        return cdsm_pmix_hostname(rank, &out, out.count) == 0 ? cString(out) : "?"
    }

    /// The route towards the first other rank whose host name resolves to
    /// an address that is not this host's.
    private static func routeTowardsOtherHosts(size: Int) -> String? {
        for other in 0..<size {
            let name = hostName(UInt32(other))
            guard name != "?", let address = Addresses.resolve(name), !Addresses.isLocal(address) else { continue }
            if let source = Addresses.routeSource(towards: address) { return source }
        }
        return nil
    }

    /// The rendezvous's completion: this rank's node endpoint out, every
    /// other rank's in.
    func exchange(_ here: [NodeID: Endpoint]) throws -> [Endpoint] {
        var error = [CChar](repeating: 0, count: 512)
        guard let mine = here[rank] else { throw LaunchProblem(message: "PMIx: node \(rank) did not register", status: 1) }
        try EngineWireUp.check(cdsm_pmix_put("dsm.endpoint", "\(mine)", &error, error.count), error)
        try EngineWireUp.check(cdsm_pmix_fence(&error, error.count), error)
        return try (0..<size).map { other in
            if other == rank { return mine }
            let text = try EngineWireUp.get(UInt32(other), "dsm.endpoint")
            guard let endpoint = Endpoint(parsing: text) else {
                throw LaunchProblem(message: "PMIx: rank \(other) published a bad endpoint '\(text)'", status: 1)
            }
            return endpoint
        }
    }

    func finish() { cdsm_pmix_finalize() }
}

/// Inside a Slurm allocation (salloc, sbatch) but not one of its tasks:
/// the nodes are placed on the allocation's hosts by srun, one task each.
enum SlurmAllocation {
    static var present: Bool {
        environment("SLURM_JOB_ID") != nil && environment("SLURM_JOB_NODELIST") != nil && environment("SLURM_PROCID") == nil
    }

    /// Runs `srun --mpi=pmix` with this dsmrun and its own arguments as the
    /// task; returns srun's status.
    static func run(nodes: Int?, arguments: [String]) -> Int32 {
        guard case .success(let srun) = resolveProgram("srun") else {
            warn("inside a Slurm allocation (SLURM_JOB_ID=\(environment("SLURM_JOB_ID") ?? "")) but srun is not in PATH")
            return 127
        }
        var argv = [srun, "--mpi=pmix", "--kill-on-bad-exit=1"]
        if let nodes { argv.append("--ntasks=\(nodes)") }
        argv += [defaultExecutablePath()] + arguments
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = currentEnvironment().map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        // srun takes the terminal's signals and forwards them to the tasks.
        execve(srun, &cArgs, &cEnv)
        warn("cannot run \(srun): \(Errno(rawValue: cdsm_errno()))")
        return 127
    }
}

func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
