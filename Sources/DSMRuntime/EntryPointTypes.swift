// The C side calls each @_cdecl entry point through its prototype in
// CDSMPreload.h, and nothing else compares the two: a parameter added on
// one side only would compile and misbehave. Naming both here makes any
// difference a compile error (a new entry point gets a line).

import CDSMPreload

private func sameType<T>(_: T, _: T) {}

private func entryPointsMatchTheirPrototypes() {
    sameType(dsm_swift_thread_create, dsmSwiftThreadCreate)
    sameType(dsm_swift_spawned, dsmSwiftSpawned)
    sameType(dsm_swift_thread_finished, dsmSwiftThreadFinished)
    sameType(dsm_swift_thread_reaped, dsmSwiftThreadReaped)
    sameType(dsm_swift_thread_join, dsmSwiftThreadJoin)
    sameType(dsm_swift_thread_detach, dsmSwiftThreadDetach)
    sameType(dsm_swift_remote_free, dsmSwiftRemoteFree)
    sameType(dsm_swift_remote_usable_size, dsmSwiftRemoteUsableSize)
    sameType(dsm_swift_await_threads, dsmSwiftAwaitThreads)
    sameType(dsm_swift_program_exit, dsmSwiftProgramExit)
    sameType(dsm_swift_configured, dsmSwiftConfigured)
    sameType(dsm_swift_start, dsmSwiftStart)
    sameType(dsm_swift_exit, dsmSwiftExit)
    sameType(dsm_swift_node_id, dsmSwiftNodeID)
    sameType(dsm_swift_nodes, dsmSwiftNodes)
    sameType(dsm_swift_barrier, dsmSwiftBarrier)
    sameType(dsm_swift_shmget, dsmSwiftShmget)
    sameType(dsm_swift_shmat, dsmSwiftShmat)
    sameType(dsm_swift_shmdt, dsmSwiftShmdt)
    sameType(dsm_swift_shmctl, dsmSwiftShmctl)
    sameType(dsm_swift_semget, dsmSwiftSemget)
    sameType(dsm_swift_semop, dsmSwiftSemop)
    sameType(dsm_swift_semctl, dsmSwiftSemctl)
    sameType(dsm_swift_slow_lock_wait, dsmSwiftSlowLockWait)
    sameType(dsm_swift_slow_wait_nanoseconds, dsmSwiftSlowWaitNanoseconds)
    sameType(dsm_swift_image_mode, dsmSwiftImageMode)
    sameType(dsm_swift_image_setup, dsmSwiftImageSetup)
    sameType(dsm_swift_sync, dsmSwiftSync)
    sameType(dsm_swift_sync_notice, dsmSwiftSyncNotice)
    sameType(dsm_swift_lock_attempt, dsmSwiftLockAttempt)
    sameType(dsm_swift_lock_end_wait, dsmSwiftLockEndWait)
    sameType(dsm_swift_lock_unlock, dsmSwiftLockUnlock)
    sameType(dsm_swift_release, dsmSwiftRelease)
    sameType(dsm_swift_acquire, dsmSwiftAcquire)
}
