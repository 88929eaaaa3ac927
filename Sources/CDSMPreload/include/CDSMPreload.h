// The C side of the preloaded runtime: the start-up hook and the
// interposers. Each interposer passes the call through to libc unless the
// runtime is active (the program runs under dsmrun), in which case it calls
// the Swift entry point `dsm_swift_*` defined in DSMRuntime. Entry points
// return a value >= 0 on success or -errno.
#ifndef CDSM_PRELOAD_H
#define CDSM_PRELOAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ipc_perm, flattened so Swift and C agree on one layout.
typedef struct {
    int32_t key;
    uint32_t uid, gid, cuid, cgid;
    uint32_t mode;
    uint32_t seq;
} dsm_ipc_perm;

typedef struct {
    dsm_ipc_perm perm;
    uint64_t segsz;
    int64_t atime, dtime, ctime;
    int32_t cpid, lpid;
    uint64_t nattch;
} dsm_shm_status;

typedef struct {
    dsm_ipc_perm perm;
    int64_t otime, ctime;
    uint64_t nsems;
} dsm_sem_status;

/// IPC_INFO / SHM_INFO / SEM_INFO records, as up to 10 numbers in the
/// order of the C struct's fields (shminfo, shm_info, seminfo).
typedef struct {
    int64_t values[10];
} dsm_ipc_info;

typedef struct {
    uint16_t num;
    int16_t op;
    int16_t flags;
} dsm_sem_operation;

// --- entry points implemented in Swift (DSMRuntime) ------------------------

/// 1 when the process runs under dsmrun (its DSM_* environment is valid).
int dsm_swift_configured(void);
/// Joins the run and starts the runtime thread: 1 when joined, 0 when
/// another process already is this node (a wrapper that executed the
/// program). Fatal set-up errors end the process with a message.
int dsm_swift_start(void);
/// The program is exiting with `status`: leave the cluster cleanly.
void dsm_swift_exit(int status);

long dsm_swift_shmget(int32_t key, uint64_t size, int32_t flags);
long dsm_swift_shmat(int32_t id, uint64_t address, int32_t flags);
long dsm_swift_shmdt(uint64_t address);
/// `status` is read for IPC_SET and written for IPC_STAT / SHM_STAT;
/// `info` is written for IPC_INFO / SHM_INFO.
long dsm_swift_shmctl(int32_t id, int32_t command, dsm_shm_status *status, dsm_ipc_info *info);
long dsm_swift_semget(int32_t key, int32_t count, int32_t flags);
/// timeout_ns < 0: no timeout.
long dsm_swift_semop(int32_t id, const dsm_sem_operation *operations, uint64_t count, int64_t timeout_ns);
/// `values` for GETALL/SETALL, `status` for IPC_STAT/IPC_SET, `info` for
/// IPC_INFO/SEM_INFO.
long dsm_swift_semctl(int32_t id, int32_t number, int32_t command, int32_t value, uint16_t *values,
                      dsm_sem_status *status, dsm_ipc_info *info);
int dsm_swift_node_id(void);
int dsm_swift_nodes(void);
int dsm_swift_barrier(void);

// --- helpers the Swift side calls ---------------------------------------

/// True once the runtime is started in this process.
int dsm_preload_active(void);
/// Marks the calling thread as one of the runtime's own (interposers pass
/// its calls straight through).
void dsm_preload_enter_runtime_thread(void);

#ifdef __cplusplus
}
#endif
#endif
