// The C side of the preloaded runtime: the start-up hook and the
// interposers. Each interposer passes the call through to libc unless the
// runtime is active (the program runs under dsmrun), in which case it calls
// the Swift entry point `dsm_swift_*` defined in DSMRuntime. Entry points
// return a value >= 0 on success or -errno.
#ifndef CDSM_PRELOAD_H
#define CDSM_PRELOAD_H

#include "CDSMLockState.h"
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

// --- image mode (Sources/CDSMPreload/image.c, DSMRuntime/ImageMode.swift) --

/// 1 when dsmrun started this process in image mode and it is the program
/// dsmrun named (not a wrapper that executes it).
int dsm_swift_image_mode(void);
/// Moves the program's writable data into containers (`data` holds
/// `data_count` ranges as start, end pairs: the executable's, which may be
/// empty, then its libraries'), maps the heap container, and meets the
/// other nodes, which must have the same layout (`fingerprint`). Writes
/// where the heap is.
long dsm_swift_image_setup(const uint64_t *data, int data_count, uint64_t fingerprint, uint64_t *heap_base,
                           uint64_t *heap_size);
/// A block of another node's heap arena is freed: tell its node.
void dsm_swift_remote_free(uint64_t address, int node);
/// The usable size of a block of another node's arena.
long dsm_swift_remote_usable_size(uint64_t address, int node);
/// Places a new thread on a node and starts it there; writes its id.
long dsm_swift_thread_create(uint64_t routine, uint64_t argument, uint64_t stack_size, int detached, uint64_t *thread);
/// The host thread started (error 0) or failed to start the thread of spawn `token`.
void dsm_swift_spawned(uint64_t token, uint64_t thread, int error);
/// A thread hosted here has finished with `value`.
void dsm_swift_thread_finished(uint64_t thread, uint64_t value);
/// The host thread has joined a finished thread: its stack may be freed.
void dsm_swift_thread_reaped(uint64_t thread, uint64_t stack);
long dsm_swift_thread_join(uint64_t thread, int node, uint64_t *value);
long dsm_swift_thread_detach(uint64_t thread, int node);
/// exit(status) from a thread of a node other than 0.
void dsm_swift_program_exit(int32_t status);
/// main called pthread_exit: returns once no thread of the program is left.
void dsm_swift_await_threads(void);

/// Synchronisation objects of image mode, served at their home node
/// (Sources/CDSMPreload/sync.c, DSMRuntime/SyncService.swift). The one table
/// of their operation codes: Swift imports it as a closed enum, so a code
/// added here and not to DSMSync's SyncOperation does not compile.
typedef enum __attribute__((enum_extensibility(closed))) dsm_sync_operation {
    DSM_TOKEN_ACQUIRE = 1, /* a mutex's token for this node (notice; granted by message) */
    DSM_TOKEN_TRY,         /* the token if free: 1, or -EBUSY */
    DSM_TOKEN_RELEASE,     /* notice */
    DSM_TOKEN_BUSY,        /* notice: the mutex is locked here (answers a try recall) */
    DSM_COND_ENQUEUE,      /* answered with a ticket */
    DSM_COND_AWAIT,        /* argument: the ticket */
    DSM_COND_SIGNAL,
    DSM_COND_BROADCAST,
    DSM_COND_DESTROY,
    DSM_BARRIER_INIT, /* argument: count */
    DSM_BARRIER_WAIT, /* result 1: the serial thread */
    DSM_BARRIER_DESTROY,
    DSM_RW_READ,
    DSM_RW_TRYREAD,
    DSM_RW_WRITE,
    DSM_RW_TRYWRITE,
    DSM_RW_UNLOCK,
    DSM_RW_DESTROY,
    DSM_SEM_INIT, /* argument: value */
    DSM_SEM_WAIT,
    DSM_SEM_TRYWAIT,
    DSM_SEM_POST,
    DSM_SEM_VALUE,
    DSM_SEM_DESTROY,
    DSM_FUTEX_SEQUENCE,
    DSM_FUTEX_WAIT, /* argument: the sequence */
    DSM_FUTEX_WAKE, /* argument: how many */
    DSM_SYNC_OPERATIONS_END, /* not an operation: one past the last */
} dsm_sync_operation;
/// One synchronisation operation on the object at `object`; timeout_ns < 0:
/// none. Returns >= 0 or -errno (mutex lock: 1 = tell the kind).
long dsm_swift_sync(uint64_t object, int32_t operation, uint64_t argument, int64_t timeout_ns);
/// As dsm_swift_sync, for an operation nobody waits on (unlock of a normal
/// mutex, signal, broadcast, post): sent in order, not answered.
void dsm_swift_sync_notice(uint64_t object, int32_t operation, uint64_t argument);
/// A thread has waited the slow-wait threshold for the lock at `object`,
/// whose token is on another node.
void dsm_swift_slow_lock_wait(uint64_t object);
/// The slow-wait threshold (half the peer timeout), in nanoseconds.
uint64_t dsm_swift_slow_wait_nanoseconds(void);

/// What the host thread is asked to do (dsm_host_post).
enum {
    DSM_HOST_SPAWN = 1, /* a: routine, b: argument, c: stack size, d: token */
    DSM_HOST_REAP = 2,  /* a: thread, b: its start record */
    DSM_HOST_EXIT = 3,  /* a: status (node 0: run exit) */
    DSM_HOST_END = 4,   /* the program ended: flush, leave */
};
void dsm_host_post(int kind, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
/// Runtime thread: the state of the lock token of the mutex at `object`,
/// its entry locked, for DSMSync's NodeLock to decide on a grant or a recall
/// (create: make the entry if absent, as a grant does); NULL when there is
/// none. `dsm_lock_entry_done` unlocks it and wakes `wake` of the node's
/// threads waiting for the mutex (0, 1, or INT_MAX for all).
dsm_lock_state *dsm_lock_entry(uint64_t object, int create);
void dsm_lock_entry_done(dsm_lock_state *state, int wake);

/// NodeLock's decisions for sync.c's program threads, each made with the
/// entry's spin lock held (DSMRuntime/SyncService.swift).
typedef enum __attribute__((enum_extensibility(closed))) dsm_lock_attempt {
    DSM_LOCK_ACQUIRED,
    DSM_LOCK_WAIT,         /* wait on state->seq while it reads *seen */
    DSM_LOCK_ASK_AND_WAIT, /* the same, after asking the home for the token */
    DSM_LOCK_ASK_TRY,      /* ask the home (DSM_TOKEN_TRY), end the wait, and on 1 try again */
    DSM_LOCK_BUSY,
    DSM_LOCK_DEADLOCK,
} dsm_lock_attempt;
dsm_lock_attempt dsm_swift_lock_attempt(dsm_lock_state *state, uint64_t thread, int32_t try_only, uint32_t *seen);
/// A wait ended; 1: the token goes back to the home (send DSM_TOKEN_RELEASE).
int32_t dsm_swift_lock_end_wait(dsm_lock_state *state, int32_t timed_out);
typedef enum __attribute__((enum_extensibility(closed))) dsm_unlock_step {
    DSM_UNLOCK_IGNORED,    /* not held, a normal mutex: 0, as glibc */
    DSM_UNLOCK_NOT_OWNER,  /* EPERM */
    DSM_UNLOCK_STILL_HELD, /* a recursive mutex */
    DSM_UNLOCK_RELEASED,
    DSM_UNLOCK_GIVE_BACK, /* released, and the token goes back to the home */
} dsm_unlock_step;
dsm_unlock_step dsm_swift_lock_unlock(dsm_lock_state *state, uint64_t thread, int64_t now);
/// Frees a block of this node's heap arena (a remote free arriving).
void dsm_heap_free_here(void *p);
/// Frees a thread stack made by the host thread, guard included.
void dsm_image_free_stack(void *stack);
/// Usable size of a block of this node's arena, 0 if none.
size_t dsm_heap_usable_size(const void *p);

// --- release consistency (ReleasePages.swift) ------------------------------

/// Program thread: sends this node's writes to their homes and returns once
/// they are there.
long dsm_swift_release(void);
/// Program thread: drops this node's copies their homes said are old.
long dsm_swift_acquire(void);
/// Runtime thread: how many pages this node has written since its last
/// release, and how many of its copies their homes said are old; lets the
/// points below skip a call that would do nothing.
void dsm_release_publish(int64_t written, int64_t stale);
/// Runtime: the run is release-consistent (called once, before main).
void dsm_release_enable(void);
/// What a synchronisation call does before it lets others see this
/// thread's writes (unlock, post, wake, barrier, thread start and end).
void dsm_release_point(void);
/// What it does after it has learned of others' writes (lock, wait,
/// barrier, join, a thread's start).
void dsm_acquire_point(void);

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
