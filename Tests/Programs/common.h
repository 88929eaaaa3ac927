/*
 * common.h - helpers shared by the dsm test programs.
 *
 * Every program runs as N cooperating processes ("nodes"): under
 * `dsmrun -n N --spmd` or as N plain processes started by the test harness.
 * Either way the environment carries
 *   DSM_NODE_ID   this node (default 0)
 *   DSM_NODES     the node count (default 1)
 *   DSM_TEST_KEY  the base of the System V keys the program may use
 *                 (default T_DEFAULT_KEY); the harness draws a fresh one per
 *                 run so that concurrent native runs do not collide.
 * Keys used: base+0 barrier control segment, base+1 barrier semaphore set,
 * base+2 .. base+0xff the program's own objects (t_key(off), off >= 2).
 *
 * The barrier is built from System V semaphores only, so it works both under
 * the runtime and on the real kernel, and no shared word moves between
 * nodes on every barrier: semaphores A (arrivals), G[0], G[1] (gates).
 *   node != 0: V(A); P(G[phase%2])
 *   node 0:    semop(A, -(N-1)); semop(G[phase%2], +(N-1))
 *   phase++
 * Node 0 opens gate p only after the N-1 arrivals of phase p, so an early
 * arrival of phase p+1 is never taken for phase p, and the gates alternate
 * so a fast node cannot take a token of the phase before. All start at 0.
 * M is a mutex the programs use to gather results: node 0 does V(M) once
 * at start-up (after initialising the control segment), so the others'
 * first P(M) waits for it.
 * Tear-down (t_finish = a final barrier + t_leave): nodes other than 0
 * detach and do V(D) as their last use of the set; node 0 waits for D to
 * reach N-1 and then removes every object the program created.
 */
#ifndef DSM_TEST_COMMON_H
#define DSM_TEST_COMMON_H

#define _GNU_SOURCE 1

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define T_DEFAULT_KEY 0x44534d00 /* "DSM\0" */

/* glibc leaves the definition of union semun to the caller. */
union t_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

static int t_me = 0, t_n = 1;
static key_t t_key_base = T_DEFAULT_KEY;
static const char *t_prog = "test";

/* ---------- reporting ---------------------------------------------------- */

static inline void t_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void t_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s[node %d/%d]: ", t_prog, t_me, t_n);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

/* Failure counting for programs that check many things and report a total. */
static int t_failures __attribute__((unused)) = 0;

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            t_failures++;                                                                                             \
            char m_[400];                                                                                             \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                                                     \
            t_msg("FAIL (line %d): %s", __LINE__, m_);                                                                \
        }                                                                                                             \
    } while (0)

/* Fatal error: message (with errno text if errno_val != 0) and exit(2). */
static inline void t_die(int errno_val, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static inline void t_die(int errno_val, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s[node %d/%d]: FATAL: ", t_prog, t_me, t_n);
    vfprintf(stderr, fmt, ap);
    if (errno_val)
        fprintf(stderr, ": %s (errno %d)", strerror(errno_val), errno_val);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
    exit(2);
}

/* ---------- environment -------------------------------------------------- */

static inline long t_env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == 0)
        return dflt;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end)
        t_die(0, "bad value for %s: '%s'", name, s);
    return v;
}

/* Reads DSM_NODE_ID, DSM_NODES and DSM_TEST_KEY. */
static inline void t_init_env(const char *prog)
{
    t_prog = prog;
    t_me = (int)t_env_long("DSM_NODE_ID", 0);
    t_n = (int)t_env_long("DSM_NODES", 1);
    const char *k = getenv("DSM_TEST_KEY");
    if (k && *k) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(k, &end, 0);
        if (errno || *end || v == 0 || v > 0x7fffff00UL)
            t_die(0, "bad DSM_TEST_KEY '%s'", k);
        t_key_base = (key_t)v;
    }
    if (t_n < 1 || t_n > 64 || t_me < 0 || t_me >= t_n)
        t_die(0, "bad DSM_NODE_ID=%d / DSM_NODES=%d", t_me, t_n);
    /* Line-buffered output keeps node 0's report readable when merged. */
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline key_t t_key(int off) { return t_key_base + off; }

/* ---------- hashing and time --------------------------------------------- */

static inline uint64_t t_fnv1a(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Continues a hash over another range. */
static inline uint64_t t_fnv1a_more(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: deterministic pseudo-random numbers. */
static inline uint64_t t_rand_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline double t_rand_double(uint64_t *s)
{
    return (double)(t_rand_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static inline size_t t_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* ---------- objects the program created (removed by t_finish) ----------- */

#define T_MAX_OBJS 32
static int t_shm_ids[T_MAX_OBJS];
static void *t_shm_addrs[T_MAX_OBJS];
static int t_nshm = 0;
static int t_sem_ids[T_MAX_OBJS];
static int t_nsem = 0;

/* Creates (IPC_CREAT, mode 0600) or opens the segment with key t_key(off)
 * and attaches it. Every node calls this; a new segment reads as zeros. */
static inline void *t_shm_open(int off, size_t size, int *id_out)
{
    int id = shmget(t_key(off), size, IPC_CREAT | 0600);
    if (id < 0)
        t_die(errno, "shmget(key 0x%x, %zu, IPC_CREAT)", (unsigned)t_key(off), size);
    void *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        t_die(errno, "shmat(id %d)", id);
    if (t_nshm >= T_MAX_OBJS)
        t_die(0, "too many segments");
    t_shm_ids[t_nshm] = id;
    t_shm_addrs[t_nshm] = p;
    t_nshm++;
    if (id_out)
        *id_out = id;
    return p;
}

/* Creates or opens the semaphore set with key t_key(off) (values start at 0
 * on Linux). Every node calls this; it is removed by t_finish. */
static inline int t_sem_open(int off, int nsems)
{
    int id = semget(t_key(off), nsems, IPC_CREAT | 0600);
    if (id < 0)
        t_die(errno, "semget(key 0x%x, %d, IPC_CREAT)", (unsigned)t_key(off), nsems);
    if (t_nsem >= T_MAX_OBJS)
        t_die(0, "too many semaphore sets");
    t_sem_ids[t_nsem++] = id;
    return id;
}

/* semop on one semaphore, restarted after EINTR; fatal on error. */
static inline void t_semop1(int semid, int num, int op, int flags, const char *what)
{
    struct sembuf b = {.sem_num = (unsigned short)num, .sem_op = (short)op, .sem_flg = (short)flags};
    while (semop(semid, &b, 1) < 0) {
        if (errno != EINTR)
            t_die(errno, "semop(%s: sem %d, op %d)", what, num, op);
    }
}

/* ---------- barrier ------------------------------------------------------ */

enum { T_SEM_M = 0, T_SEM_G0 = 1, T_SEM_G1 = 2, T_SEM_D = 3, T_SEM_A = 4, T_NSEMS = 5 };

struct t_ctl {
    int initialised; /* set by node 0 before its first V(M) */
};

static struct t_ctl *t_ctl;
static int t_bar_sem = -1;
static unsigned long t_phase = 0;

/* Creates or opens the barrier objects; call once, right after t_init_env. */
static inline void t_barrier_init(void)
{
    t_ctl = t_shm_open(0, t_page_size(), NULL);
    t_bar_sem = t_sem_open(1, T_NSEMS);
    if (t_me == 0) {
        t_ctl->initialised = 1;
        t_semop1(t_bar_sem, T_SEM_M, +1, 0, "barrier init V(M)");
    }
}

static inline void t_barrier(void)
{
    if (t_n == 1) {
        t_phase++;
        return;
    }
    int gate = (t_phase % 2) ? T_SEM_G1 : T_SEM_G0;
    if (t_me == 0) {
        t_semop1(t_bar_sem, T_SEM_A, -(t_n - 1), 0, "barrier: wait for the arrivals");
        t_semop1(t_bar_sem, gate, t_n - 1, 0, "barrier: open the gate");
    } else {
        t_semop1(t_bar_sem, T_SEM_A, +1, 0, "barrier: arrive");
        t_semop1(t_bar_sem, gate, -1, 0, "barrier: pass the gate");
        /* Node 0 marked the shared control page before its first barrier. */
        if (t_phase == 0 && !t_ctl->initialised)
            t_die(0, "barrier: the control segment was not initialised by node 0 (not shared?)");
    }
    t_phase++;
}

/* Called on node 0 by t_leave once every other node has left, before the
 * objects are removed (e.g. to read results the others left in a segment). */
static void (*t_before_remove)(void) = NULL;

/* Leaves the run without a barrier: every node detaches its segments; a node
 * other than 0 then does V(D), its last use of the objects; node 0 waits until
 * all N-1 others have done so and removes every object the program created.
 * Returns `status`, for `return t_leave(rc)`. */
static inline int t_leave(int status)
{
    if (t_me == 0 && t_n > 1)
        t_semop1(t_bar_sem, T_SEM_D, -(t_n - 1), 0, "leave: wait for the other nodes (D)");
    if (t_me == 0 && t_before_remove)
        t_before_remove();
    for (int i = 0; i < t_nshm; i++)
        if (t_shm_addrs[i] && shmdt(t_shm_addrs[i]) < 0)
            t_die(errno, "shmdt");
    if (t_me != 0) {
        t_semop1(t_bar_sem, T_SEM_D, +1, 0, "leave: V(D)");
        return status;
    }
    for (int i = 0; i < t_nshm; i++)
        if (shmctl(t_shm_ids[i], IPC_RMID, NULL) < 0)
            t_die(errno, "shmctl(IPC_RMID, id %d)", t_shm_ids[i]);
    for (int i = 0; i < t_nsem; i++)
        if (semctl(t_sem_ids[i], 0, IPC_RMID) < 0)
            t_die(errno, "semctl(IPC_RMID, id %d)", t_sem_ids[i]);
    return status;
}

/* The usual end of a program: a final barrier, then t_leave. */
static inline int t_finish(int status)
{
    t_barrier();
    return t_leave(status);
}

#endif /* DSM_TEST_COMMON_H */
