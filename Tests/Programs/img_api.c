// Image mode: the rest of the pthreads API across nodes (4 threads per test
// by default, so they land on every node of a 4-node run):
//   - pthread_join: self-join gives EDEADLK; join of a detached thread
//     (attribute, or pthread_detach while it runs) gives EINVAL;
//     pthread_exit(value) hands value to the joiner;
//   - pthread_self() in a thread equals the handle its creator got;
//   - conditions: a timed wait times out with the mutex held again; one
//     broadcast wakes waiters on every node;
//   - POSIX semaphores: sem_trywait EAGAIN, sem_timedwait ETIMEDOUT,
//     sem_getvalue, posts and waits across threads, a ping-pong;
//   - rwlocks: readers hold it together, trywrlock is EBUSY meanwhile, a
//     writer excludes readers and writers, a mixed run;
//   - spin locks protect a counter; pthread_once runs its routine once;
//   - futex(2) through syscall(): EAGAIN, ETIMEDOUT, a wait/wake hand-shake
//     and a ping-pong;
//   - __atomic operations on a shared counter give the exact total.
//
// Usage: img_api [threads]   (exit 0: pass)
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 32

static int threads = 4;
#include "img_check.h"

static void start(pthread_t *t, const pthread_attr_t *attr, void *(*f)(void *), void *arg, const char *what) {
    int r = pthread_create(t, attr, f, arg);
    if (r) {
        printf("FAIL: pthread_create (%s): %s\n", what, err_name(r));
        exit(1);
    }
}

static void *join(pthread_t t, const char *what) {
    void *v = NULL;
    int r = pthread_join(t, &v);
    CHECK(r == 0, "pthread_join (%s): %s", what, err_name(r));
    return v;
}

/* A flag under a mutex and condition, waited for at most 30 s. */
static pthread_mutex_t flag_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flag_cond = PTHREAD_COND_INITIALIZER;

static void flag_set(volatile int *flag, int value) {
    pthread_mutex_lock(&flag_lock);
    *flag = value;
    pthread_cond_broadcast(&flag_cond);
    pthread_mutex_unlock(&flag_lock);
}

static int flag_wait(volatile int *flag, int value, const char *what) {
    int ok = 1;
    pthread_mutex_lock(&flag_lock);
    while (*flag < value) {
        struct timespec ts = realtime_in(30000);
        int r = pthread_cond_timedwait(&flag_cond, &flag_lock, &ts);
        if (r && *flag < value) {
            ok = 0;
            break;
        }
    }
    pthread_mutex_unlock(&flag_lock);
    CHECK(ok, "timed out waiting for %s", what);
    return ok;
}

// --- join, detach, exit, self ---------------------------------------------------------

static void *self_join(void *arg) {
    (void)arg;
    int r = pthread_join(pthread_self(), NULL);
    CHECK(r == EDEADLK, "self-join in a thread: %s, want EDEADLK", err_name(r));
    return NULL;
}

static sem_t detach_go, detach_done;

static void *detached_worker(void *arg) {
    (void)arg;
    struct timespec ts = realtime_in(30000);
    int r = sem_timedwait(&detach_go, &ts);
    CHECK(r == 0, "detached thread: sem_timedwait: %s", err_name(errno));
    sem_post(&detach_done);
    return NULL;
}

static void finish_detached(const char *what) {
    sem_post(&detach_go);
    struct timespec ts = realtime_in(30000);
    int r = sem_timedwait(&detach_done, &ts);
    CHECK(r == 0, "%s: the detached thread did not finish: %s", what, err_name(errno));
}

static volatile int after_exit_ran;

static void leave_with(intptr_t value) {
    pthread_exit((void *)value);
}

static void *exiting_worker(void *arg) {
    leave_with(0x5eed00 + (intptr_t)arg);
    after_exit_ran = 1;
    return NULL;
}

static pthread_t published[MAX_THREADS];
static volatile int published_ready[MAX_THREADS];
static pthread_t main_thread;

static void *self_worker(void *arg) {
    int i = (int)(intptr_t)arg;
    if (!flag_wait(&published_ready[i], 1, "the creator's handle")) return NULL;
    pthread_t me = pthread_self();
    CHECK(pthread_equal(me, published[i]), "thread %d: pthread_self() differs from the creator's handle", i);
    CHECK(!pthread_equal(me, main_thread), "thread %d: pthread_self() equals main's", i);
    for (int j = 0; j < threads; j++)
        if (j != i) CHECK(!pthread_equal(me, published[j]), "thread %d: pthread_self() equals thread %d's", i, j);
    return (void *)me;
}

static void test_threads(void) {
    main_thread = pthread_self();
    int r = pthread_join(pthread_self(), NULL);
    CHECK(r == EDEADLK, "self-join in main: %s, want EDEADLK", err_name(r));
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) start(&t[i], NULL, self_join, NULL, "self-join");
    for (int i = 0; i < threads; i++) join(t[i], "self-join");

    /* Detached by attribute: join gives EINVAL (while it still runs). */
    sem_init(&detach_go, 0, 0);
    sem_init(&detach_done, 0, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < threads; i++) {
        pthread_t d;
        start(&d, &attr, detached_worker, NULL, "detached");
        r = pthread_join(d, NULL);
        CHECK(r == EINVAL, "join of a thread created detached: %s, want EINVAL", err_name(r));
        finish_detached("created detached");
    }
    pthread_attr_destroy(&attr);
    /* Detached while it runs. */
    for (int i = 0; i < threads; i++) {
        pthread_t d;
        start(&d, NULL, detached_worker, NULL, "to detach");
        r = pthread_detach(d);
        CHECK(r == 0, "pthread_detach of a running thread: %s", err_name(r));
        r = pthread_join(d, NULL);
        CHECK(r == EINVAL, "join of a thread detached while running: %s, want EINVAL", err_name(r));
        r = pthread_detach(d);
        CHECK(r == EINVAL, "second pthread_detach: %s, want EINVAL", err_name(r));
        finish_detached("detached while running");
    }

    /* pthread_exit's value reaches the joiner. */
    for (int i = 0; i < threads; i++) start(&t[i], NULL, exiting_worker, (void *)(intptr_t)i, "pthread_exit");
    for (int i = 0; i < threads; i++) {
        void *v = join(t[i], "pthread_exit");
        CHECK(v == (void *)(0x5eed00 + (intptr_t)i), "pthread_exit value of thread %d: %p, want %p", i, v,
              (void *)(0x5eed00 + (intptr_t)i));
    }
    CHECK(!after_exit_ran, "code after pthread_exit ran");

    /* pthread_self() == the creator's handle. */
    for (int i = 0; i < threads; i++) {
        pthread_t h;
        start(&h, NULL, self_worker, (void *)(intptr_t)i, "pthread_self");
        pthread_mutex_lock(&flag_lock);
        published[i] = h;
        pthread_mutex_unlock(&flag_lock);
    }
    for (int i = 0; i < threads; i++) flag_set(&published_ready[i], 1);
    for (int i = 0; i < threads; i++) {
        void *v = join(published[i], "pthread_self");
        CHECK(v == (void *)published[i], "thread %d returned its pthread_self() %p, creator's handle %p", i, v,
              (void *)published[i]);
    }
}

// --- condition variables ---------------------------------------------------------

static pthread_mutex_t cond_lock;   /* error-checking: shows who holds it */
static pthread_cond_t cond_never = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cond_go = PTHREAD_COND_INITIALIZER;
static int cond_waiting, cond_go_flag, cond_woken;

static void *cond_timeout_worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cond_lock);
    double t0 = now_seconds();
    struct timespec ts = realtime_in(100);
    int r = pthread_cond_timedwait(&cond_never, &cond_lock, &ts);
    double ms = (now_seconds() - t0) * 1000;
    CHECK(r == ETIMEDOUT, "cond_timedwait without a signal: %s, want ETIMEDOUT", err_name(r));
    CHECK(ms >= 80 && ms < 10000, "cond_timedwait with a 100 ms deadline returned after %.1f ms", ms);
    /* The mutex is held again after the timeout. */
    r = pthread_mutex_unlock(&cond_lock);
    CHECK(r == 0, "unlock after cond_timedwait's timeout: %s, want 0 (the mutex must be held)", err_name(r));
    r = pthread_mutex_unlock(&cond_lock);
    CHECK(r == EPERM, "second unlock after cond_timedwait's timeout: %s, want EPERM", err_name(r));
    return NULL;
}

static void *cond_broadcast_worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cond_lock);
    cond_waiting++; /* main polls it */
    while (!cond_go_flag) {
        struct timespec ts = realtime_in(30000);
        int r = pthread_cond_timedwait(&cond_go, &cond_lock, &ts);
        if (r == ETIMEDOUT && !cond_go_flag) {
            CHECK(0, "a waiter was not woken by pthread_cond_broadcast within 30 s");
            break;
        }
        CHECK(r == 0 || r == ETIMEDOUT, "cond_timedwait: %s", err_name(r));
    }
    cond_woken++;
    pthread_mutex_unlock(&cond_lock);
    return NULL;
}

static void test_conditions(void) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&cond_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) start(&t[i], NULL, cond_timeout_worker, NULL, "cond timeout");
    for (int i = 0; i < threads; i++) join(t[i], "cond timeout");

    /* Every waiter, on every node, wakes at one broadcast. */
    for (int i = 0; i < threads; i++) start(&t[i], NULL, cond_broadcast_worker, NULL, "cond broadcast");
    int all = 1;
    pthread_mutex_lock(&cond_lock);
    for (int polls = 0; cond_waiting < threads; polls++) {
        pthread_mutex_unlock(&cond_lock);
        usleep(1000);
        pthread_mutex_lock(&cond_lock);
        if (polls > 30000) { /* ~30 s */
            all = 0;
            break;
        }
    }
    CHECK(all, "only %d of %d threads reached the condition wait", cond_waiting, threads);
    cond_go_flag = 1;
    int r = pthread_cond_broadcast(&cond_go);
    CHECK(r == 0, "pthread_cond_broadcast: %s", err_name(r));
    pthread_mutex_unlock(&cond_lock);
    for (int i = 0; i < threads; i++) join(t[i], "cond broadcast");
    CHECK(cond_woken == threads, "%d of %d waiters woke", cond_woken, threads);
    r = pthread_cond_destroy(&cond_go);
    CHECK(r == 0, "pthread_cond_destroy: %s", err_name(r));
    r = pthread_mutex_destroy(&cond_lock);
    CHECK(r == 0, "pthread_mutex_destroy: %s", err_name(r));
}

// --- semaphores -----------------------------------------------------------------

#define SEM_POSTS 250
#define SEM_WAITS 100
#define PINGS 100

static sem_t sem, ping, pong;

static void *sem_poster(void *arg) {
    (void)arg;
    for (int i = 0; i < SEM_POSTS; i++) {
        int r = sem_post(&sem);
        CHECK(r == 0, "sem_post: %s", err_name(errno));
    }
    return NULL;
}

static void *sem_waiter(void *arg) {
    (void)arg;
    for (int i = 0; i < SEM_WAITS; i++) {
        struct timespec ts = realtime_in(30000);
        int r = sem_timedwait(&sem, &ts);
        if (r != 0) {
            CHECK(0, "sem_timedwait in a waiter (wait %d): %s", i, err_name(errno));
            return NULL;
        }
    }
    return NULL;
}

static void *sem_ponger(void *arg) {
    (void)arg;
    for (int i = 0; i < PINGS; i++) {
        struct timespec ts = realtime_in(30000);
        if (sem_timedwait(&ping, &ts) != 0) {
            CHECK(0, "ping %d: sem_timedwait: %s", i, err_name(errno));
            return NULL;
        }
        sem_post(&pong);
    }
    return NULL;
}

static void test_semaphores(void) {
    int r = sem_init(&sem, 0, 0);
    CHECK(r == 0, "sem_init: %s", err_name(errno));
    errno = 0;
    r = sem_trywait(&sem);
    CHECK(r == -1 && errno == EAGAIN, "sem_trywait on 0: %d %s, want -1 EAGAIN", r, err_name(errno));
    double t0 = now_seconds();
    struct timespec ts = realtime_in(100);
    errno = 0;
    r = sem_timedwait(&sem, &ts);
    double ms = (now_seconds() - t0) * 1000;
    CHECK(r == -1 && errno == ETIMEDOUT, "sem_timedwait on 0: %d %s, want -1 ETIMEDOUT", r, err_name(errno));
    CHECK(ms >= 80 && ms < 10000, "sem_timedwait with a 100 ms deadline returned after %.1f ms", ms);
    int value = -1;
    sem_getvalue(&sem, &value);
    CHECK(value == 0, "sem_getvalue: %d, want 0", value);

    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) start(&t[i], NULL, sem_poster, NULL, "sem_post");
    for (int i = 0; i < threads; i++) join(t[i], "sem_post");
    value = -1;
    sem_getvalue(&sem, &value);
    CHECK(value == threads * SEM_POSTS, "sem_getvalue after the posts: %d, want %d", value, threads * SEM_POSTS);
    for (int i = 0; i < threads * SEM_POSTS; i++) {
        r = sem_trywait(&sem);
        if (r != 0) {
            CHECK(0, "sem_trywait %d of %d: %s", i, threads * SEM_POSTS, err_name(errno));
            break;
        }
    }
    errno = 0;
    r = sem_trywait(&sem);
    CHECK(r == -1 && errno == EAGAIN, "sem_trywait after taking all: %d %s, want -1 EAGAIN", r, err_name(errno));

    /* Waiters on other nodes block until main posts. */
    for (int i = 0; i < threads; i++) start(&t[i], NULL, sem_waiter, NULL, "sem_wait");
    for (int i = 0; i < threads * SEM_WAITS; i++) {
        r = sem_post(&sem);
        CHECK(r == 0, "sem_post by main: %s", err_name(errno));
        if (i % 50 == 0) usleep(1000);
    }
    for (int i = 0; i < threads; i++) join(t[i], "sem_wait");
    value = -1;
    sem_getvalue(&sem, &value);
    CHECK(value == 0, "sem_getvalue after the waiters: %d, want 0", value);

    /* Ping-pong with a thread on another node. */
    sem_init(&ping, 0, 0);
    sem_init(&pong, 0, 0);
    pthread_t p;
    start(&p, NULL, sem_ponger, NULL, "ponger");
    for (int i = 0; i < PINGS; i++) {
        sem_post(&ping);
        ts = realtime_in(30000);
        if (sem_timedwait(&pong, &ts) != 0) {
            CHECK(0, "pong %d: sem_timedwait: %s", i, err_name(errno));
            break;
        }
    }
    join(p, "ponger");
    CHECK(sem_destroy(&ping) == 0 && sem_destroy(&pong) == 0 && sem_destroy(&sem) == 0, "sem_destroy: %s",
          err_name(errno));
}

// --- rwlocks ------------------------------------------------------------------------

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t rw_state = PTHREAD_MUTEX_INITIALIZER;
static volatile int readers_in, readers_release, writer_in, writer_release, late_reader_in;
static int readers_active, writers_active;
static long rw_data[64];

static void *concurrent_reader(void *arg) {
    (void)arg;
    int r = pthread_rwlock_rdlock(&rw);
    CHECK(r == 0, "rdlock: %s", err_name(r));
    pthread_mutex_lock(&flag_lock);
    readers_in++;
    pthread_cond_broadcast(&flag_cond);
    pthread_mutex_unlock(&flag_lock);
    flag_wait(&readers_release, 1, "the readers' release");
    if (r == 0) pthread_rwlock_unlock(&rw);
    return NULL;
}

static void *holding_writer(void *arg) {
    (void)arg;
    int r = pthread_rwlock_wrlock(&rw);
    CHECK(r == 0, "wrlock: %s", err_name(r));
    flag_set(&writer_in, 1);
    flag_wait(&writer_release, 1, "the writer's release");
    flag_set(&writer_in, 2); /* leaving */
    if (r == 0) pthread_rwlock_unlock(&rw);
    return NULL;
}

static void *late_reader(void *arg) {
    (void)arg;
    int r = pthread_rwlock_rdlock(&rw);
    CHECK(r == 0, "late rdlock: %s", err_name(r));
    CHECK(writer_in == 2, "a reader got the lock while the writer held it (writer state %d)", writer_in);
    flag_set(&late_reader_in, 1);
    if (r == 0) pthread_rwlock_unlock(&rw);
    return NULL;
}

static pthread_barrier_t start_barrier; /* the workers of a test start together */

static void *mixed_worker(void *arg) {
    int me = (int)(intptr_t)arg;
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < 200; i++) {
        if ((i + me) % 4 == 0) {
            pthread_rwlock_wrlock(&rw);
            pthread_mutex_lock(&rw_state);
            CHECK(readers_active == 0 && writers_active == 0, "writer in with %d readers and %d writers",
                  readers_active, writers_active);
            writers_active++;
            pthread_mutex_unlock(&rw_state);
            for (int k = 0; k < 64; k++) rw_data[k] = me * 1000 + i;
            pthread_mutex_lock(&rw_state);
            writers_active--;
            pthread_mutex_unlock(&rw_state);
            pthread_rwlock_unlock(&rw);
        } else {
            pthread_rwlock_rdlock(&rw);
            pthread_mutex_lock(&rw_state);
            CHECK(writers_active == 0, "reader in with %d writers", writers_active);
            readers_active++;
            pthread_mutex_unlock(&rw_state);
            long first = rw_data[0];
            for (int k = 1; k < 64; k++) {
                if (rw_data[k] != first) {
                    CHECK(0, "reader saw a half-written array: [0]=%ld [%d]=%ld", first, k, rw_data[k]);
                    break;
                }
            }
            pthread_mutex_lock(&rw_state);
            readers_active--;
            pthread_mutex_unlock(&rw_state);
            pthread_rwlock_unlock(&rw);
        }
    }
    return NULL;
}

static void test_rwlocks(void) {
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) start(&t[i], NULL, concurrent_reader, NULL, "reader");
    int all_in = flag_wait(&readers_in, threads, "all readers inside the read lock at once");
    if (all_in) {
        int r = pthread_rwlock_trywrlock(&rw);
        CHECK(r == EBUSY, "trywrlock while read-locked: %s, want EBUSY", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
        struct timespec ts = realtime_in(100);
        r = pthread_rwlock_timedwrlock(&rw, &ts);
        CHECK(r == ETIMEDOUT, "timedwrlock while read-locked: %s, want ETIMEDOUT", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
        r = pthread_rwlock_tryrdlock(&rw);
        CHECK(r == 0, "tryrdlock while read-locked: %s, want 0", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
    }
    flag_set(&readers_release, 1);
    for (int i = 0; i < threads; i++) join(t[i], "reader");

    pthread_t w, lr;
    start(&w, NULL, holding_writer, NULL, "writer");
    if (flag_wait(&writer_in, 1, "the writer in")) {
        int r = pthread_rwlock_tryrdlock(&rw);
        CHECK(r == EBUSY, "tryrdlock while write-locked: %s, want EBUSY", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
        r = pthread_rwlock_trywrlock(&rw);
        CHECK(r == EBUSY, "trywrlock while write-locked: %s, want EBUSY", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
        struct timespec ts = realtime_in(100);
        r = pthread_rwlock_timedrdlock(&rw, &ts);
        CHECK(r == ETIMEDOUT, "timedrdlock while write-locked: %s, want ETIMEDOUT", err_name(r));
        if (r == 0) pthread_rwlock_unlock(&rw);
        start(&lr, NULL, late_reader, NULL, "late reader");
        usleep(200000);
        CHECK(late_reader_in == 0, "a reader got in while the writer held the lock");
        flag_set(&writer_release, 1);
        flag_wait(&late_reader_in, 1, "the reader after the writer");
        join(lr, "late reader");
    } else {
        flag_set(&writer_release, 1);
    }
    join(w, "writer");

    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) start(&t[i], NULL, mixed_worker, (void *)(intptr_t)i, "mixed");
    for (int i = 0; i < threads; i++) join(t[i], "mixed");
    pthread_barrier_destroy(&start_barrier);
    int r = pthread_rwlock_destroy(&rw);
    CHECK(r == 0, "pthread_rwlock_destroy: %s", err_name(r));
}

// --- spin lock, once --------------------------------------------------------------------

#define SPINS 5000
static pthread_spinlock_t spin;
static long spin_counter;

static void *spin_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < SPINS; i++) {
        pthread_spin_lock(&spin);
        spin_counter++;
        pthread_spin_unlock(&spin);
    }
    return NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_barrier_t once_barrier;
static int once_calls;
static volatile int once_done;

static void once_init(void) {
    __atomic_fetch_add(&once_calls, 1, __ATOMIC_SEQ_CST);
    usleep(100000); /* the others must wait for it */
    once_done = 1;
}

static void *once_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&once_barrier);
    int r = pthread_once(&once, once_init);
    CHECK(r == 0, "pthread_once: %s", err_name(r));
    CHECK(once_done == 1, "pthread_once returned before the routine finished");
    return NULL;
}

static void test_spin_once(void) {
    int r = pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    CHECK(r == 0, "pthread_spin_init: %s", err_name(r));
    pthread_t t[MAX_THREADS];
    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) start(&t[i], NULL, spin_worker, NULL, "spin");
    for (int i = 0; i < threads; i++) join(t[i], "spin");
    pthread_barrier_destroy(&start_barrier);
    CHECK(spin_counter == (long)threads * SPINS, "spin lock counter: %ld, want %ld", spin_counter,
          (long)threads * SPINS);
    r = pthread_spin_trylock(&spin);
    CHECK(r == 0, "pthread_spin_trylock on a free lock: %s", err_name(r));
    if (r == 0) pthread_spin_unlock(&spin);
    pthread_spin_destroy(&spin);

    pthread_barrier_init(&once_barrier, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) start(&t[i], NULL, once_worker, NULL, "once");
    once_worker(NULL);
    for (int i = 0; i < threads; i++) join(t[i], "once");
    CHECK(once_calls == 1, "pthread_once ran its routine %d times", once_calls);
    pthread_barrier_destroy(&once_barrier);
}

// --- futex --------------------------------------------------------------------------------

static int futex_word;
static int futex_turn;
static volatile int futex_waiter_ready;
#define FUTEX_ROUNDS 100

static long futex(int *addr, int op, int value, const struct timespec *timeout) {
    return syscall(SYS_futex, addr, op, value, timeout, NULL, 0);
}

static void *futex_waiter(void *arg) {
    (void)arg;
    flag_set(&futex_waiter_ready, 1);
    double t0 = now_seconds();
    while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0) {
        struct timespec timeout = {10, 0};
        long r = futex(&futex_word, FUTEX_WAIT, 0, &timeout);
        if (r == -1 && errno == ETIMEDOUT) {
            CHECK(0, "futex wait: no wake-up within 10 s (word %d)", __atomic_load_n(&futex_word, __ATOMIC_SEQ_CST));
            break;
        }
        CHECK(r == 0 || errno == EAGAIN || errno == EINTR, "futex wait: %ld %s", r, err_name(errno));
        if (now_seconds() - t0 > 30) {
            CHECK(0, "futex wait: the word is still 0 after 30 s");
            break;
        }
    }
    return NULL;
}

static void *futex_player(void *arg) {
    int parity = (int)(intptr_t)arg;
    for (int i = 0; i < FUTEX_ROUNDS; i++) {
        int want = 2 * i + parity;
        double t0 = now_seconds();
        int v;
        while ((v = __atomic_load_n(&futex_turn, __ATOMIC_SEQ_CST)) != want) {
            struct timespec timeout = {10, 0};
            long r = futex(&futex_turn, FUTEX_WAIT, v, &timeout);
            if ((r == -1 && errno == ETIMEDOUT) || now_seconds() - t0 > 30) {
                CHECK(0, "futex ping-pong: player %d waiting for turn %d, turn is %d: lost wake-up", parity, want,
                      __atomic_load_n(&futex_turn, __ATOMIC_SEQ_CST));
                return NULL;
            }
        }
        __atomic_store_n(&futex_turn, want + 1, __ATOMIC_SEQ_CST);
        futex(&futex_turn, FUTEX_WAKE, INT_MAX, NULL);
    }
    return NULL;
}

static void test_futex(void) {
    futex_word = 5;
    errno = 0;
    long r = futex(&futex_word, FUTEX_WAIT, 4, NULL);
    CHECK(r == -1 && errno == EAGAIN, "FUTEX_WAIT with a stale value: %ld %s, want -1 EAGAIN", r, err_name(errno));
    struct timespec timeout = {0, 50000000};
    double t0 = now_seconds();
    errno = 0;
    r = futex(&futex_word, FUTEX_WAIT, 5, &timeout);
    double ms = (now_seconds() - t0) * 1000;
    CHECK(r == -1 && errno == ETIMEDOUT, "FUTEX_WAIT 50 ms: %ld %s, want -1 ETIMEDOUT", r, err_name(errno));
    CHECK(ms >= 40 && ms < 10000, "FUTEX_WAIT with a 50 ms timeout returned after %.1f ms", ms);
    r = futex(&futex_word, FUTEX_WAKE, 1, NULL);
    CHECK(r == 0, "FUTEX_WAKE without waiters: %ld, want 0", r);

    __atomic_store_n(&futex_word, 0, __ATOMIC_SEQ_CST);
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) start(&t[i], NULL, futex_waiter, NULL, "futex waiter");
    flag_wait(&futex_waiter_ready, 1, "a futex waiter");
    usleep(200000); /* let them sleep in FUTEX_WAIT */
    __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
    r = futex(&futex_word, FUTEX_WAKE, INT_MAX, NULL);
    CHECK(r >= 0 && r <= threads, "FUTEX_WAKE: %ld woken, want 0..%d", r, threads);
    for (int i = 0; i < threads; i++) join(t[i], "futex waiter");

    pthread_t a, b;
    start(&a, NULL, futex_player, (void *)0, "futex player 0");
    start(&b, NULL, futex_player, (void *)1, "futex player 1");
    join(a, "futex player 0");
    join(b, "futex player 1");
    CHECK(futex_turn == 2 * FUTEX_ROUNDS, "futex ping-pong ended at turn %d, want %d", futex_turn, 2 * FUTEX_ROUNDS);
}

// --- atomics ------------------------------------------------------------------------------

#define ADDS 20000
#define CASES 5000
static long atomic_counter;
static long cas_counter;

static void *atomic_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < ADDS; i++) {
        __atomic_fetch_add(&atomic_counter, 1, __ATOMIC_SEQ_CST);
        for (volatile int k = 0; k < 5000; k++) {
        } /* spread the adds over time: the threads overlap */
    }
    for (int i = 0; i < CASES; i++) {
        long old = __atomic_load_n(&cas_counter, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(&cas_counter, &old, old + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
        }
    }
    return NULL;
}

static void test_atomics(void) {
    pthread_t t[MAX_THREADS];
    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) start(&t[i], NULL, atomic_worker, NULL, "atomics");
    for (int i = 0; i < threads; i++) join(t[i], "atomics");
    pthread_barrier_destroy(&start_barrier);
    CHECK(atomic_counter == (long)threads * ADDS, "__atomic_fetch_add counter: %ld, want %ld", atomic_counter,
          (long)threads * ADDS);
    CHECK(cas_counter == (long)threads * CASES, "compare-exchange counter: %ld, want %ld", cas_counter,
          (long)threads * CASES);
}

int main(int argc, char **argv) {
    alarm(120);
    threads = argc > 1 ? atoi(argv[1]) : 4;
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: img_api [threads 1..%d]\n", MAX_THREADS);
        return 2;
    }
    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {{"threads", test_threads},       {"conditions", test_conditions}, {"semaphores", test_semaphores},
                 {"rwlocks", test_rwlocks},       {"spin+once", test_spin_once},   {"futex", test_futex},
                 {"atomics", test_atomics}};
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = failures;
        double t0 = now_seconds();
        tests[i].run();
        printf("img_api %s: %s (%.2f s)\n", tests[i].name, failures == before ? "ok" : "FAILED", now_seconds() - t0);
        fflush(stdout);
    }
    printf("img_api threads=%d failures=%d\n", threads, failures);
    return failures ? 1 : 0;
}
