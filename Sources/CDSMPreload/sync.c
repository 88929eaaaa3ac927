// pthread synchronisation and POSIX semaphores in image mode. An object in
// shared memory (the DSM heap, the program's data, a thread's stack) is
// served by its home node's lock service (DSMRuntime/SyncService.swift):
// its own bytes are never used as a lock word, so a contended lock never
// drags its page from node to node. Objects in private memory (the
// runtime's, a main-thread TLS variable) and every call outside image mode
// go to glibc as usual.
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long sync_call(const volatile void *object, int operation, uint64_t argument, int64_t timeout_ns) {
    return IN_RUNTIME(dsm_swift_sync((uint64_t)(uintptr_t)object, operation, argument, timeout_ns));
}

static void sync_notice(const volatile void *object, int operation, uint64_t argument) {
    IN_RUNTIME_VOID(dsm_swift_sync_notice((uint64_t)(uintptr_t)object, operation, argument));
}

// --- release consistency -----------------------------------------------------

/* Set once before main; the counts by the runtime thread as pages change. */
static int release_enabled;
static int64_t release_written, release_stale;

void dsm_release_enable(void) { release_enabled = 1; }

void dsm_release_publish(int64_t written, int64_t stale) {
    __atomic_store_n(&release_written, written, __ATOMIC_RELEASE);
    __atomic_store_n(&release_stale, stale, __ATOMIC_RELEASE);
}

/* A thread's own writes are counted before it resumes from their fault, so
 * a zero here means it wrote nothing since the node's last release. */
void dsm_release_point(void) {
    if (!release_enabled || dsm_runtime_thread || dsm_in_runtime) return;
    if (__atomic_load_n(&release_written, __ATOMIC_ACQUIRE) == 0) return;
    int saved = errno;
    IN_RUNTIME_VOID(dsm_swift_release());
    errno = saved;
}

/* The homes tell this node of its old copies before the releases that made
 * them old end (ReleasePages.swift): a zero here, read after synchronising
 * with such a release, means there is nothing to drop. */
void dsm_acquire_point(void) {
    if (!release_enabled || dsm_runtime_thread || dsm_in_runtime) return;
    if (__atomic_load_n(&release_stale, __ATOMIC_ACQUIRE) == 0) return;
    int saved = errno;
    IN_RUNTIME_VOID(dsm_swift_acquire());
    errno = saved;
}

/* pthread functions return the error number; the service answers -errno. */
static int as_error(long r) { return r < 0 ? (int)-r : 0; }

/* An absolute deadline on `clock` (CLOCK_REALTIME or CLOCK_MONOTONIC, as
 * glibc's *_clock* calls accept) as a timeout from now: -EINVAL for a
 * malformed one or another clock, 0 when it has passed. */
static int64_t timeout_until_on(clockid_t clock, const struct timespec *deadline) {
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return -EINVAL;
    if (deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L) return -EINVAL;
    struct timespec now;
    clock_gettime(clock, &now);
    int64_t ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000LL + (deadline->tv_nsec - now.tv_nsec);
    return ns < 0 ? 0 : ns;
}

// --- mutexes: node-cached lock tokens -----------------------------------------

/* A mutex is owned by a node, not a thread: DSMSync's NodeLock decides what
 * its lock token does here (kept for a batch of locks, given back when
 * recalled, ...), on the state sync.c keeps per mutex. Here: the table of
 * entries, the spin lock around each decision, and the waits. Threads wait
 * on the private futex word `seq` of the entry's state; the runtime thread
 * changes the state when grants and recalls come (dsm_lock_entry).
 *
 * Entries live in a private table, never in DSM memory: neither a program
 * thread holding an entry's spin lock nor the runtime thread can fault. */
typedef struct {
    uint64_t object; /* 0: free slot */
    volatile int lock;
    dsm_lock_state state;
} lock_entry;

/* Entries are never freed (a mutex's kind and token outlive a destroy);
 * they are taken in order from one large reserved region, so the memory
 * used grows with the number of mutexes this node has used, and found
 * through a chained hash of their address. */
#define LOCK_BUCKETS 65536
#define LOCK_ENTRIES_MAX (4u << 20)
static int32_t *lock_buckets; /* index + 1 of the first entry, 0: none */
static int32_t *lock_next;    /* per entry: index + 1 of the next in its chain */
static lock_entry *lock_table;
static uint32_t lock_used;
static volatile int table_lock;

static void *reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The entry of `object`, created with `kind` when absent (kind < 0: only
 * look). NULL when absent and not created, or out of entries. */
static lock_entry *lock_entry_of(const volatile void *object, int kind) {
    uint64_t key = (uint64_t)(uintptr_t)object;
    spin(&table_lock);
    if (!lock_table) {
        lock_buckets = reserve(LOCK_BUCKETS * sizeof(int32_t));
        lock_next = reserve(LOCK_ENTRIES_MAX * sizeof(int32_t));
        lock_table = reserve(LOCK_ENTRIES_MAX * sizeof(lock_entry));
    }
    lock_entry *found = NULL;
    if (lock_table && lock_buckets && lock_next) {
        size_t bucket = (size_t)(((key >> 3) * 0x9E3779B97F4A7C15ULL) >> 48) % LOCK_BUCKETS;
        for (int32_t i = lock_buckets[bucket]; i; i = lock_next[i - 1]) {
            if (lock_table[i - 1].object == key) {
                found = &lock_table[i - 1];
                break;
            }
        }
        if (!found && kind >= 0 && lock_used < LOCK_ENTRIES_MAX) {
            uint32_t i = lock_used++;
            found = &lock_table[i];
            found->object = key;
            found->state.kind = (uint8_t)kind;
            lock_next[i] = lock_buckets[bucket];
            lock_buckets[bucket] = (int32_t)(i + 1);
        }
    }
    unspin(&table_lock);
    return found;
}

static void futex_wait_private(uint32_t *word, uint32_t expected, const struct timespec *timeout) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, timeout, NULL, 0);
}

static void futex_wake_private(uint32_t *word, int count) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static int64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* glibc keeps the type in __data.__kind (PTHREAD_MUTEX_KIND_MASK_NP = 3),
 * for a statically initialised mutex as for one set up by
 * pthread_mutex_init: read once per node, before any lock is held (it may
 * fault). */
static int kind_in_object(const pthread_mutex_t *m) { return m->__data.__kind & 3; }

/* SlowWaits.swift's threshold, read once. */
static int64_t slow_wait_ns;

/* `e`: the object's entry (NULL: the table is full). timeout_ns < 0: none.
 * `try`: never wait. */
static int token_lock(lock_entry *e, const volatile void *object, int try, int64_t timeout_ns) {
    if (!e) return EAGAIN;
    uint64_t self = (uint64_t)pthread_self();
    int64_t deadline = timeout_ns >= 0 ? monotonic_ns() + timeout_ns : -1;
    int64_t waiting_since = -1;
    int noticed = 0;
    /* Each attempt is made in the same spin-locked section as what led to
     * it (the end of a wait, a try token's arrival): between the two, the
     * runtime thread could hand a just-granted token back as idle before
     * the woken thread took it, over and over (found by exploring every
     * interleaving, DSMSyncTests). */
    spin(&e->lock);
    for (;;) {
        uint32_t seen = 0;
        dsm_lock_attempt step = dsm_swift_lock_attempt(&e->state, self, try, &seen);
        unspin(&e->lock);
        switch (step) {
        case DSM_LOCK_ACQUIRED: return 0;
        case DSM_LOCK_BUSY: return EBUSY;
        case DSM_LOCK_DEADLOCK: return EDEADLK;
        case DSM_LOCK_ASK_TRY: {
            /* A yes has put the token in the state already (the runtime
             * thread, SyncService.swift). */
            long r = sync_call(object, DSM_TOKEN_TRY, 0, -1);
            spin(&e->lock);
            dsm_swift_lock_end_wait(&e->state, 0);
            if (r == 1) continue;
            unspin(&e->lock);
            return EBUSY;
        }
        case DSM_LOCK_ASK_AND_WAIT: sync_notice(object, DSM_TOKEN_ACQUIRE, 0); break;
        case DSM_LOCK_WAIT: break;
        }
        /* A wait far longer than a token takes to move is said once
         * (SlowWaits.swift), and the wait goes on. */
        if (waiting_since < 0) {
            waiting_since = monotonic_ns();
            if (!slow_wait_ns) slow_wait_ns = (int64_t)IN_RUNTIME(dsm_swift_slow_wait_nanoseconds());
        }
        int64_t until = deadline;
        if (!noticed && slow_wait_ns > 0 && (until < 0 || waiting_since + slow_wait_ns < until))
            until = waiting_since + slow_wait_ns;
        struct timespec left, *wait_for = NULL;
        if (until >= 0) {
            int64_t ns = until - monotonic_ns();
            if (ns < 0) ns = 0;
            left.tv_sec = ns / 1000000000LL;
            left.tv_nsec = ns % 1000000000LL;
            wait_for = &left;
        }
        if (!wait_for || left.tv_sec || left.tv_nsec) futex_wait_private(&e->state.seq, seen, wait_for);
        if (!noticed && slow_wait_ns > 0 && monotonic_ns() - waiting_since >= slow_wait_ns) {
            noticed = 1;
            /* A holder on this node is the program's own affair, as natively. */
            if (!__atomic_load_n(&e->state.token, __ATOMIC_RELAXED))
                IN_RUNTIME_VOID(dsm_swift_slow_lock_wait((uint64_t)(uintptr_t)object));
        }
        int timed_out = deadline >= 0 && monotonic_ns() >= deadline;
        spin(&e->lock);
        int give_back = dsm_swift_lock_end_wait(&e->state, timed_out);
        if (timed_out) {
            unspin(&e->lock);
            if (give_back) {
                dsm_release_point();
                sync_notice(object, DSM_TOKEN_RELEASE, 0);
            }
            return ETIMEDOUT;
        }
    }
}

static int token_unlock(const volatile void *object) {
    lock_entry *e = lock_entry_of(object, -1);
    if (!e) return EPERM;
    spin(&e->lock);
    dsm_unlock_step step = dsm_swift_lock_unlock(&e->state, (uint64_t)pthread_self(), monotonic_ns());
    uint32_t waiters = e->state.waiters;
    unspin(&e->lock);
    switch (step) {
    case DSM_UNLOCK_IGNORED: return 0;
    case DSM_UNLOCK_NOT_OWNER: return EPERM;
    case DSM_UNLOCK_STILL_HELD: return 0;
    case DSM_UNLOCK_GIVE_BACK:
        /* Release consistency: a lock releases when its token leaves the
         * node, not at every unlock; what the node wrote goes home first
         * (the runtime thread does the same for a recalled token), and
         * the token's arrival elsewhere is that node's acquire. */
        dsm_release_point();
        sync_notice(object, DSM_TOKEN_RELEASE, 0);
        break;
    case DSM_UNLOCK_RELEASED: break;
    }
    if (waiters) futex_wake_private(&e->state.seq, 1);
    return 0;
}

/* Runtime thread (SyncService.swift): the state of `object`'s token with
 * its entry locked, for NodeLock to decide on a grant or a recall; NULL
 * when the node has no entry for it (create: make one, as a grant does). */
dsm_lock_state *dsm_lock_entry(uint64_t object, int create) {
    lock_entry *e = lock_entry_of((void *)(uintptr_t)object, create ? 0 : -1);
    if (!e) return NULL;
    spin(&e->lock);
    return &e->state;
}

/* Unlocks the entry dsm_lock_entry returned, waking `wake` of its threads. */
void dsm_lock_entry_done(dsm_lock_state *state, int wake) {
    lock_entry *e = (lock_entry *)((char *)state - offsetof(lock_entry, state));
    unspin(&e->lock);
    if (wake) futex_wake_private(&e->state.seq, wake);
}


int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *attr) {
    REAL(pthread_mutex_init);
    int r = real_pthread_mutex_init(m, attr);
    if (r != 0 || !dsm_sync_object(m)) return r;
    int kind = kind_in_object(m);
    lock_entry *e = lock_entry_of(m, kind);
    if (e) {
        spin(&e->lock);
        e->state.kind = (uint8_t)kind;
        unspin(&e->lock);
    }
    return 0;
}

/* The entry is looked up first: only a mutex new to this node has its
 * kind read from the object. */
static int mutex_lock(pthread_mutex_t *m, int try, int64_t timeout) {
    lock_entry *e = lock_entry_of(m, -1);
    if (!e) e = lock_entry_of(m, kind_in_object(m));
    return token_lock(e, m, try, timeout);
}

int pthread_mutex_lock(pthread_mutex_t *m) {
    REAL(pthread_mutex_lock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_lock(m);
    return mutex_lock(m, 0, -1);
}

int pthread_mutex_trylock(pthread_mutex_t *m) {
    REAL(pthread_mutex_trylock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_trylock(m);
    return mutex_lock(m, 1, -1);
}

/* The timed forms below share one body each: the deadline on its clock
 * (CLOCK_REALTIME for the *timed* calls) as a timeout. */
static int mutex_lock_until(pthread_mutex_t *m, clockid_t clock, const struct timespec *deadline) {
    int64_t timeout = timeout_until_on(clock, deadline);
    if (timeout < 0) return EINVAL;
    return mutex_lock(m, 0, timeout);
}

int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *deadline) {
    REAL(pthread_mutex_timedlock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_timedlock(m, deadline);
    return mutex_lock_until(m, CLOCK_REALTIME, deadline);
}

int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clock, const struct timespec *deadline) {
    REAL(pthread_mutex_clocklock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_clocklock(m, clock, deadline);
    return mutex_lock_until(m, clock, deadline);
}

int pthread_mutex_unlock(pthread_mutex_t *m) {
    REAL(pthread_mutex_unlock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_unlock(m);
    return token_unlock(m);
}

int pthread_mutex_destroy(pthread_mutex_t *m) {
    REAL(pthread_mutex_destroy);
    if (!dsm_sync_object(m)) return real_pthread_mutex_destroy(m);
    lock_entry *e = lock_entry_of(m, -1);
    if (e) {
        spin(&e->lock);
        int busy = e->state.locked || e->state.waiters;
        unspin(&e->lock);
        if (busy) return EBUSY;
    }
    return 0;
}

// --- condition variables ------------------------------------------------------

/* A condition's clock lives where glibc keeps it, bit 1 of __wrefs (set by
 * pthread_cond_init from the attribute; 0, CLOCK_REALTIME, for
 * PTHREAD_COND_INITIALIZER): pthread_cond_timedwait's deadline is on it. */
#define COND_CLOCK_MONOTONIC 2u

int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *attr) {
    REAL(pthread_cond_init);
    if (!dsm_sync_object(c)) return real_pthread_cond_init(c, attr);
    clockid_t clock = CLOCK_REALTIME;
    if (attr && pthread_condattr_getclock(attr, &clock) != 0) return EINVAL;
    memset(c, 0, sizeof *c);
    if (clock == CLOCK_MONOTONIC) c->__data.__wrefs = COND_CLOCK_MONOTONIC;
    return 0;
}

static clockid_t cond_clock(const pthread_cond_t *c) {
    return __atomic_load_n(&c->__data.__wrefs, __ATOMIC_RELAXED) & COND_CLOCK_MONOTONIC ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

/* The condition's home gives the thread a ticket before it releases the
 * mutex: a signal sent by whoever takes the mutex next reaches the ticket. */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t timeout) {
    long ticket = sync_call(c, DSM_COND_ENQUEUE, 0, -1);
    if (ticket < 0) return (int)-ticket;
    int unlocked = token_unlock(m);
    if (unlocked) return unlocked;
    int r = as_error(sync_call(c, DSM_COND_AWAIT, (uint64_t)ticket, timeout));
    int relock = mutex_lock(m, 0, -1);
    dsm_acquire_point();
    return r ? r : relock;
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    REAL(pthread_cond_wait);
    if (!dsm_sync_object(c)) return real_pthread_cond_wait(c, m);
    return cond_wait(c, m, -1);
}

static int cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock, const struct timespec *deadline) {
    int64_t timeout = timeout_until_on(clock, deadline);
    if (timeout < 0) return EINVAL;
    return cond_wait(c, m, timeout);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *deadline) {
    REAL(pthread_cond_timedwait);
    if (!dsm_sync_object(c)) return real_pthread_cond_timedwait(c, m, deadline);
    return cond_wait_until(c, m, cond_clock(c), deadline);
}

/* What libstdc++'s condition_variable::wait_for and wait_until use. */
int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock, const struct timespec *deadline) {
    REAL(pthread_cond_clockwait);
    if (!dsm_sync_object(c)) return real_pthread_cond_clockwait(c, m, clock, deadline);
    return cond_wait_until(c, m, clock, deadline);
}

int pthread_cond_signal(pthread_cond_t *c) {
    REAL(pthread_cond_signal);
    if (!dsm_sync_object(c)) return real_pthread_cond_signal(c);
    dsm_release_point();
    sync_notice(c, DSM_COND_SIGNAL, 0);
    return 0;
}

int pthread_cond_broadcast(pthread_cond_t *c) {
    REAL(pthread_cond_broadcast);
    if (!dsm_sync_object(c)) return real_pthread_cond_broadcast(c);
    dsm_release_point();
    sync_notice(c, DSM_COND_BROADCAST, 0);
    return 0;
}

int pthread_cond_destroy(pthread_cond_t *c) {
    REAL(pthread_cond_destroy);
    if (!dsm_sync_object(c)) return real_pthread_cond_destroy(c);
    return as_error(sync_call(c, DSM_COND_DESTROY, 0, -1));
}

// --- barriers ---------------------------------------------------------------

int pthread_barrier_init(pthread_barrier_t *b, const pthread_barrierattr_t *attr, unsigned count) {
    REAL(pthread_barrier_init);
    if (!dsm_sync_object(b)) return real_pthread_barrier_init(b, attr, count);
    return as_error(sync_call(b, DSM_BARRIER_INIT, count, -1));
}

int pthread_barrier_wait(pthread_barrier_t *b) {
    REAL(pthread_barrier_wait);
    if (!dsm_sync_object(b)) return real_pthread_barrier_wait(b);
    dsm_release_point();
    long r = sync_call(b, DSM_BARRIER_WAIT, 0, -1);
    dsm_acquire_point();
    if (r == 1) return PTHREAD_BARRIER_SERIAL_THREAD;
    return as_error(r);
}

int pthread_barrier_destroy(pthread_barrier_t *b) {
    REAL(pthread_barrier_destroy);
    if (!dsm_sync_object(b)) return real_pthread_barrier_destroy(b);
    return as_error(sync_call(b, DSM_BARRIER_DESTROY, 0, -1));
}

// --- read-write locks -----------------------------------------------------------

int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *attr) {
    REAL(pthread_rwlock_init);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_init(l, attr);
    return 0;
}

/* An unlock releases; a lock (or a refusal) acquires. */
static int rwlock_call(pthread_rwlock_t *l, int operation, int64_t timeout) {
    if (operation == DSM_RW_UNLOCK) dsm_release_point();
    int r = as_error(sync_call(l, operation, 0, timeout));
    if (operation != DSM_RW_UNLOCK && operation != DSM_RW_DESTROY) dsm_acquire_point();
    return r;
}

#define RWLOCK_OP(name, operation)                                                                                \
    int name(pthread_rwlock_t *l) {                                                                               \
        REAL(name);                                                                                               \
        if (!dsm_sync_object(l)) return real_##name(l);                                                           \
        return rwlock_call(l, operation, -1);                                                                     \
    }
RWLOCK_OP(pthread_rwlock_rdlock, DSM_RW_READ)
RWLOCK_OP(pthread_rwlock_tryrdlock, DSM_RW_TRYREAD)
RWLOCK_OP(pthread_rwlock_wrlock, DSM_RW_WRITE)
RWLOCK_OP(pthread_rwlock_trywrlock, DSM_RW_TRYWRITE)
RWLOCK_OP(pthread_rwlock_unlock, DSM_RW_UNLOCK)
RWLOCK_OP(pthread_rwlock_destroy, DSM_RW_DESTROY)

static int rwlock_until(pthread_rwlock_t *l, int operation, clockid_t clock, const struct timespec *deadline) {
    int64_t timeout = timeout_until_on(clock, deadline);
    if (timeout < 0) return EINVAL;
    return rwlock_call(l, operation, timeout);
}

int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *deadline) {
    REAL(pthread_rwlock_timedrdlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_timedrdlock(l, deadline);
    return rwlock_until(l, DSM_RW_READ, CLOCK_REALTIME, deadline);
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *deadline) {
    REAL(pthread_rwlock_timedwrlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_timedwrlock(l, deadline);
    return rwlock_until(l, DSM_RW_WRITE, CLOCK_REALTIME, deadline);
}

int pthread_rwlock_clockrdlock(pthread_rwlock_t *l, clockid_t clock, const struct timespec *deadline) {
    REAL(pthread_rwlock_clockrdlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_clockrdlock(l, clock, deadline);
    return rwlock_until(l, DSM_RW_READ, clock, deadline);
}

int pthread_rwlock_clockwrlock(pthread_rwlock_t *l, clockid_t clock, const struct timespec *deadline) {
    REAL(pthread_rwlock_clockwrlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_clockwrlock(l, clock, deadline);
    return rwlock_until(l, DSM_RW_WRITE, clock, deadline);
}

// --- spin locks: token mutexes (nobody spins across nodes) -------------------

int pthread_spin_init(pthread_spinlock_t *s, int shared) {
    REAL(pthread_spin_init);
    if (!dsm_sync_object(s)) return real_pthread_spin_init(s, shared);
    return 0;
}

int pthread_spin_lock(pthread_spinlock_t *s) {
    REAL(pthread_spin_lock);
    if (!dsm_sync_object(s)) return real_pthread_spin_lock(s);
    return token_lock(lock_entry_of(s, 0), s, 0, -1);
}

int pthread_spin_trylock(pthread_spinlock_t *s) {
    REAL(pthread_spin_trylock);
    if (!dsm_sync_object(s)) return real_pthread_spin_trylock(s);
    return token_lock(lock_entry_of(s, 0), s, 1, -1);
}

int pthread_spin_unlock(pthread_spinlock_t *s) {
    REAL(pthread_spin_unlock);
    if (!dsm_sync_object(s)) return real_pthread_spin_unlock(s);
    return token_unlock(s);
}

int pthread_spin_destroy(pthread_spinlock_t *s) {
    REAL(pthread_spin_destroy);
    if (!dsm_sync_object(s)) return real_pthread_spin_destroy(s);
    return 0;
}

// --- pthread_once -----------------------------------------------------------

/* glibc's pthread_once waits on a futex in the control word, which cannot
 * wake a thread of another node: the distributed mutex of the control's
 * address orders the callers instead. 2 = done, as in glibc. */
int pthread_once(pthread_once_t *once, void (*init)(void)) {
    REAL(pthread_once);
    if (!dsm_sync_object(once)) return real_pthread_once(once, init);
    if (__atomic_load_n(once, __ATOMIC_ACQUIRE) == 2) return 0;
    token_lock(lock_entry_of(once, 0), once, 0, -1);
    if (__atomic_load_n(once, __ATOMIC_ACQUIRE) != 2) {
        init();
        __atomic_store_n(once, 2, __ATOMIC_RELEASE);
    }
    token_unlock(once);
    return 0;
}

// --- POSIX semaphores ---------------------------------------------------------

static int sem_result(long r) {
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return 0;
}

int sem_init(sem_t *s, int shared, unsigned value) {
    REAL(sem_init);
    if (!dsm_sync_object(s)) return real_sem_init(s, shared, value);
    if (value > SEM_VALUE_MAX) {
        errno = EINVAL;
        return -1;
    }
    return sem_result(sync_call(s, DSM_SEM_INIT, value, -1));
}

int sem_wait(sem_t *s) {
    REAL(sem_wait);
    if (!dsm_sync_object(s)) return real_sem_wait(s);
    long r = sync_call(s, DSM_SEM_WAIT, 0, -1);
    dsm_acquire_point();
    return sem_result(r);
}

int sem_trywait(sem_t *s) {
    REAL(sem_trywait);
    if (!dsm_sync_object(s)) return real_sem_trywait(s);
    long r = sync_call(s, DSM_SEM_TRYWAIT, 0, -1);
    dsm_acquire_point();
    return sem_result(r);
}

static int sem_wait_until(sem_t *s, clockid_t clock, const struct timespec *deadline) {
    int64_t timeout = timeout_until_on(clock, deadline);
    if (timeout < 0) return sem_result(timeout);
    long r = sync_call(s, DSM_SEM_WAIT, 0, timeout);
    dsm_acquire_point();
    return sem_result(r);
}

int sem_timedwait(sem_t *s, const struct timespec *deadline) {
    REAL(sem_timedwait);
    if (!dsm_sync_object(s)) return real_sem_timedwait(s, deadline);
    return sem_wait_until(s, CLOCK_REALTIME, deadline);
}

int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *deadline) {
    REAL(sem_clockwait);
    if (!dsm_sync_object(s)) return real_sem_clockwait(s, clock, deadline);
    return sem_wait_until(s, clock, deadline);
}

/* Named semaphores live in /dev/shm files, mapped privately per node: in
 * image mode on several nodes they would not exclude threads on different
 * nodes. Refused, said once, rather than silently wrong. */
sem_t *sem_open(const char *name, int flags, ...) {
    REAL(sem_open);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & O_CREAT) ? (mode_t)va_arg(ap, unsigned int) : 0;
    unsigned value = (flags & O_CREAT) ? va_arg(ap, unsigned) : 0;
    va_end(ap);
    if (dsm_image && dsm_nodes_count > 1 && !dsm_runtime_thread && !dsm_in_runtime) {
        static int told;
        dsm_tell_once(&told, "dsm: sem_open: named POSIX semaphores are not shared between nodes; "
                             "use sem_init on a sem_t in a global or the heap (ENOSYS)");
        errno = ENOSYS;
        return SEM_FAILED;
    }
    return (flags & O_CREAT) ? real_sem_open(name, flags, mode, value) : real_sem_open(name, flags);
}

int sem_post(sem_t *s) {
    REAL(sem_post);
    if (!dsm_sync_object(s)) return real_sem_post(s);
    dsm_release_point();
    return sem_result(sync_call(s, DSM_SEM_POST, 0, -1));
}

int sem_getvalue(sem_t *s, int *value) {
    REAL(sem_getvalue);
    if (!dsm_sync_object(s)) return real_sem_getvalue(s, value);
    long r = sync_call(s, DSM_SEM_VALUE, 0, -1);
    if (r < 0) return sem_result(r);
    *value = (int)r;
    return 0;
}

int sem_destroy(sem_t *s) {
    REAL(sem_destroy);
    if (!dsm_sync_object(s)) return real_sem_destroy(s);
    return sem_result(sync_call(s, DSM_SEM_DESTROY, 0, -1));
}

// --- futex(2) through syscall() -------------------------------------------------

/* FUTEX_WAIT / FUTEX_WAKE on a shared word: a kernel futex would only see
 * the threads of one node. The wait checks the word after learning the
 * word's wake count, and the home refuses a wait whose count is stale, so a
 * wake between the check and the wait is not lost. Other commands on shared
 * words (requeue, wake-op, priority inheritance) are ENOSYS. */
long dsm_futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout, uint32_t bitset) {
    int command = op & FUTEX_CMD_MASK;
    if (command != FUTEX_WAIT && command != FUTEX_WAKE && command != FUTEX_WAIT_BITSET &&
        command != FUTEX_WAKE_BITSET)
        return -ENOSYS;
    if ((command == FUTEX_WAIT_BITSET || command == FUTEX_WAKE_BITSET) && bitset != FUTEX_BITSET_MATCH_ANY)
        return -ENOSYS;
    if (command == FUTEX_WAKE || command == FUTEX_WAKE_BITSET) {
        dsm_release_point();
        return sync_call(word, DSM_FUTEX_WAKE, value > INT32_MAX ? INT32_MAX : value, -1);
    }
    int64_t ns = -1;
    if (timeout) {
        struct timespec t;
        if (cdsm_copy_in(&t, timeout, sizeof t) != 0) return -EFAULT;
        if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000L) return -EINVAL;
        if (command == FUTEX_WAIT_BITSET) {
            /* Absolute, on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME. */
            struct timespec now;
            clock_gettime(op & FUTEX_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
            ns = (int64_t)(t.tv_sec - now.tv_sec) * 1000000000LL + (t.tv_nsec - now.tv_nsec);
            if (ns < 0) ns = 0;
        } else {
            ns = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
        }
    }
    dsm_release_point();
    long sequence = sync_call(word, DSM_FUTEX_SEQUENCE, 0, -1);
    if (sequence < 0) return sequence;
    /* The word as the last waker released it, not a stale copy. */
    dsm_acquire_point();
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != value) return -EAGAIN;
    long r = sync_call(word, DSM_FUTEX_WAIT, (uint64_t)sequence, ns);
    dsm_acquire_point();
    if (r == -EAGAIN) return 0; /* woken before it slept: a spurious wake-up */
    return r < 0 ? r : 0;
}

long syscall(long number, ...) {
    REAL(syscall);
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_futex && dsm_sync_object((void *)a[0])) {
        long r = dsm_futex((uint32_t *)a[0], (int)a[1], (uint32_t)a[2], (const struct timespec *)a[3], (uint32_t)a[5]);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
        return r;
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
