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
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <time.h>

#define REAL(name)                                                                                                \
    static __typeof__(name) *real_##name;                                                                         \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static long sync_call(const volatile void *object, int operation, uint64_t argument, int64_t timeout_ns) {
    return IN_RUNTIME(dsm_swift_sync((uint64_t)(uintptr_t)object, operation, argument, timeout_ns));
}

/* pthread functions return the error number; the service answers -errno. */
static int as_error(long r) { return r < 0 ? (int)-r : 0; }

/* An absolute CLOCK_REALTIME deadline as a timeout from now: -EINVAL for a
 * malformed one, 0 when it has passed. */
static int64_t timeout_until(const struct timespec *deadline) {
    if (deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L) return -EINVAL;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000LL + (deadline->tv_nsec - now.tv_nsec);
    return ns < 0 ? 0 : ns;
}

// --- mutexes ----------------------------------------------------------------

/* glibc keeps the type in __data.__kind (PTHREAD_MUTEX_KIND_MASK_NP = 3);
 * a statically initialised recursive or error-checking mutex has it there. */
static uint64_t kind_in_object(const pthread_mutex_t *m) { return (uint64_t)(m->__data.__kind & 3); }

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *attr) {
    REAL(pthread_mutex_init);
    if (!dsm_sync_object(m)) return real_pthread_mutex_init(m, attr);
    int type = PTHREAD_MUTEX_NORMAL;
    if (attr) pthread_mutexattr_gettype(attr, &type);
    uint64_t kind = type == PTHREAD_MUTEX_RECURSIVE ? 1 : type == PTHREAD_MUTEX_ERRORCHECK ? 2 : 0;
    /* The object too, for a program that looks at it (and a static-style
     * reader of __kind). */
    real_pthread_mutex_init(m, attr);
    return as_error(sync_call(m, DSM_MUTEX_INIT, kind, -1));
}

static int mutex_lock(pthread_mutex_t *m, int operation, int64_t timeout) {
    long r = sync_call(m, operation, 0, timeout);
    if (r == 1) r = sync_call(m, operation, kind_in_object(m) + 1, timeout);
    return as_error(r);
}

int pthread_mutex_lock(pthread_mutex_t *m) {
    REAL(pthread_mutex_lock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_lock(m);
    return mutex_lock(m, DSM_MUTEX_LOCK, -1);
}

int pthread_mutex_trylock(pthread_mutex_t *m) {
    REAL(pthread_mutex_trylock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_trylock(m);
    return mutex_lock(m, DSM_MUTEX_TRYLOCK, -1);
}

int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *deadline) {
    REAL(pthread_mutex_timedlock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_timedlock(m, deadline);
    int64_t timeout = timeout_until(deadline);
    if (timeout < 0) return EINVAL;
    return mutex_lock(m, DSM_MUTEX_LOCK, timeout);
}

int pthread_mutex_unlock(pthread_mutex_t *m) {
    REAL(pthread_mutex_unlock);
    if (!dsm_sync_object(m)) return real_pthread_mutex_unlock(m);
    return as_error(sync_call(m, DSM_MUTEX_UNLOCK, 0, -1));
}

int pthread_mutex_destroy(pthread_mutex_t *m) {
    REAL(pthread_mutex_destroy);
    if (!dsm_sync_object(m)) return real_pthread_mutex_destroy(m);
    return as_error(sync_call(m, DSM_MUTEX_DESTROY, 0, -1));
}

// --- condition variables ------------------------------------------------------

int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *attr) {
    REAL(pthread_cond_init);
    if (!dsm_sync_object(c)) return real_pthread_cond_init(c, attr);
    return 0;
}

/* The condition's home queues the thread, then releases the mutex for it:
 * a signal sent by whoever takes the mutex next cannot be missed. */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t timeout) {
    int r = as_error(sync_call(c, DSM_COND_WAIT, (uint64_t)(uintptr_t)m, timeout));
    int relock = mutex_lock(m, DSM_MUTEX_LOCK, -1);
    return r ? r : relock;
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    REAL(pthread_cond_wait);
    if (!dsm_sync_object(c)) return real_pthread_cond_wait(c, m);
    return cond_wait(c, m, -1);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *deadline) {
    REAL(pthread_cond_timedwait);
    if (!dsm_sync_object(c)) return real_pthread_cond_timedwait(c, m, deadline);
    int64_t timeout = timeout_until(deadline);
    if (timeout < 0) return EINVAL;
    return cond_wait(c, m, timeout);
}

int pthread_cond_signal(pthread_cond_t *c) {
    REAL(pthread_cond_signal);
    if (!dsm_sync_object(c)) return real_pthread_cond_signal(c);
    return as_error(sync_call(c, DSM_COND_SIGNAL, 0, -1));
}

int pthread_cond_broadcast(pthread_cond_t *c) {
    REAL(pthread_cond_broadcast);
    if (!dsm_sync_object(c)) return real_pthread_cond_broadcast(c);
    return as_error(sync_call(c, DSM_COND_BROADCAST, 0, -1));
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
    long r = sync_call(b, DSM_BARRIER_WAIT, 0, -1);
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

#define RWLOCK_OP(name, operation)                                                                                \
    int name(pthread_rwlock_t *l) {                                                                               \
        REAL(name);                                                                                               \
        if (!dsm_sync_object(l)) return real_##name(l);                                                           \
        return as_error(sync_call(l, operation, 0, -1));                                                          \
    }
RWLOCK_OP(pthread_rwlock_rdlock, DSM_RW_READ)
RWLOCK_OP(pthread_rwlock_tryrdlock, DSM_RW_TRYREAD)
RWLOCK_OP(pthread_rwlock_wrlock, DSM_RW_WRITE)
RWLOCK_OP(pthread_rwlock_trywrlock, DSM_RW_TRYWRITE)
RWLOCK_OP(pthread_rwlock_unlock, DSM_RW_UNLOCK)
RWLOCK_OP(pthread_rwlock_destroy, DSM_RW_DESTROY)

int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *deadline) {
    REAL(pthread_rwlock_timedrdlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_timedrdlock(l, deadline);
    int64_t timeout = timeout_until(deadline);
    if (timeout < 0) return EINVAL;
    return as_error(sync_call(l, DSM_RW_READ, 0, timeout));
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *deadline) {
    REAL(pthread_rwlock_timedwrlock);
    if (!dsm_sync_object(l)) return real_pthread_rwlock_timedwrlock(l, deadline);
    int64_t timeout = timeout_until(deadline);
    if (timeout < 0) return EINVAL;
    return as_error(sync_call(l, DSM_RW_WRITE, 0, timeout));
}

// --- spin locks: served as plain mutexes (nobody spins across nodes) ---------

int pthread_spin_init(pthread_spinlock_t *s, int shared) {
    REAL(pthread_spin_init);
    if (!dsm_sync_object(s)) return real_pthread_spin_init(s, shared);
    return as_error(sync_call(s, DSM_MUTEX_INIT, 0, -1));
}

int pthread_spin_lock(pthread_spinlock_t *s) {
    REAL(pthread_spin_lock);
    if (!dsm_sync_object(s)) return real_pthread_spin_lock(s);
    return as_error(sync_call(s, DSM_MUTEX_LOCK, 1, -1));
}

int pthread_spin_trylock(pthread_spinlock_t *s) {
    REAL(pthread_spin_trylock);
    if (!dsm_sync_object(s)) return real_pthread_spin_trylock(s);
    return as_error(sync_call(s, DSM_MUTEX_TRYLOCK, 1, -1));
}

int pthread_spin_unlock(pthread_spinlock_t *s) {
    REAL(pthread_spin_unlock);
    if (!dsm_sync_object(s)) return real_pthread_spin_unlock(s);
    return as_error(sync_call(s, DSM_MUTEX_UNLOCK, 0, -1));
}

int pthread_spin_destroy(pthread_spinlock_t *s) {
    REAL(pthread_spin_destroy);
    if (!dsm_sync_object(s)) return real_pthread_spin_destroy(s);
    return as_error(sync_call(s, DSM_MUTEX_DESTROY, 0, -1));
}

// --- pthread_once -----------------------------------------------------------

/* glibc's pthread_once waits on a futex in the control word, which cannot
 * wake a thread of another node: the distributed mutex of the control's
 * address orders the callers instead. 2 = done, as in glibc. */
int pthread_once(pthread_once_t *once, void (*init)(void)) {
    REAL(pthread_once);
    if (!dsm_sync_object(once)) return real_pthread_once(once, init);
    if (__atomic_load_n(once, __ATOMIC_ACQUIRE) == 2) return 0;
    sync_call(once, DSM_MUTEX_LOCK, 1, -1);
    if (__atomic_load_n(once, __ATOMIC_ACQUIRE) != 2) {
        init();
        __atomic_store_n(once, 2, __ATOMIC_RELEASE);
    }
    sync_call(once, DSM_MUTEX_UNLOCK, 0, -1);
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
    return sem_result(sync_call(s, DSM_SEM_WAIT, 0, -1));
}

int sem_trywait(sem_t *s) {
    REAL(sem_trywait);
    if (!dsm_sync_object(s)) return real_sem_trywait(s);
    return sem_result(sync_call(s, DSM_SEM_TRYWAIT, 0, -1));
}

int sem_timedwait(sem_t *s, const struct timespec *deadline) {
    REAL(sem_timedwait);
    if (!dsm_sync_object(s)) return real_sem_timedwait(s, deadline);
    int64_t timeout = timeout_until(deadline);
    if (timeout < 0) return sem_result(timeout);
    return sem_result(sync_call(s, DSM_SEM_WAIT, 0, timeout));
}

int sem_post(sem_t *s) {
    REAL(sem_post);
    if (!dsm_sync_object(s)) return real_sem_post(s);
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
 * wake between the check and the wait is not lost. */
static long futex_call(uint32_t *word, int op, uint32_t value, const struct timespec *timeout, uint32_t bitset) {
    int command = op & FUTEX_CMD_MASK;
    if ((command == FUTEX_WAIT_BITSET || command == FUTEX_WAKE_BITSET) && bitset != FUTEX_BITSET_MATCH_ANY) {
        errno = ENOSYS;
        return -1;
    }
    if (command == FUTEX_WAKE || command == FUTEX_WAKE_BITSET) {
        long r = sync_call(word, DSM_FUTEX_WAKE, value > INT32_MAX ? INT32_MAX : value, -1);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
        return r;
    }
    int64_t ns = -1;
    if (timeout) {
        if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L) {
            errno = EINVAL;
            return -1;
        }
        if (command == FUTEX_WAIT_BITSET) {
            /* Absolute, on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME. */
            struct timespec now;
            clock_gettime(op & FUTEX_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
            ns = (int64_t)(timeout->tv_sec - now.tv_sec) * 1000000000LL + (timeout->tv_nsec - now.tv_nsec);
            if (ns < 0) ns = 0;
        } else {
            ns = (int64_t)timeout->tv_sec * 1000000000LL + timeout->tv_nsec;
        }
    }
    long sequence = sync_call(word, DSM_FUTEX_SEQUENCE, 0, -1);
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != value) {
        errno = EAGAIN;
        return -1;
    }
    long r = sync_call(word, DSM_FUTEX_WAIT, (uint64_t)sequence, ns);
    if (r == -EAGAIN) return 0; /* woken before it slept: a spurious wake-up */
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return 0;
}

long syscall(long number, ...) {
    REAL(syscall);
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_futex && dsm_sync_object((void *)a[0])) {
        int command = (int)a[1] & FUTEX_CMD_MASK;
        if (command == FUTEX_WAIT || command == FUTEX_WAKE || command == FUTEX_WAIT_BITSET ||
            command == FUTEX_WAKE_BITSET)
            return futex_call((uint32_t *)a[0], (int)a[1], (uint32_t)a[2], (const struct timespec *)a[3],
                              (uint32_t)a[5]);
        errno = ENOSYS;
        return -1;
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
