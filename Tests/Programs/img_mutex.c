// Image mode: pthread mutexes across nodes.
//  1. `threads` threads each increment a global counter `iterations` times
//     under a PTHREAD_MUTEX_INITIALIZER mutex: the total is exact.
//  2. A recursive mutex (pthread_mutexattr_settype) locked 3 times by one
//     thread stays busy for another thread's trylock until unlocked 3 times;
//     the same for a static PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP.
//  3. An error-checking mutex: relock by its owner gives EDEADLK, unlock by
//     another thread EPERM, unlock of an unlocked one EPERM.
//  4. pthread_mutex_timedlock on a mutex another thread holds times out
//     with ETIMEDOUT at a ~100 ms deadline (not before ~80 ms), and succeeds
//     once the holder unlocks.
//  5. A mutex and its counter in main's stack, used by all threads; 20000
//     mutexes in the heap (a lock per object), each locked and unlocked by
//     a thread on another node.
// The two threads of each pair test are created one after the other, so
// with 2 or more nodes they run on different nodes.
//
// Usage: img_mutex [threads iterations]   (exit 0: pass)
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

#include "img_check.h"

// --- step hand-shake between the two threads of a pair test -------------------

static pthread_mutex_t step_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t step_cond = PTHREAD_COND_INITIALIZER;
static int step;

static void set_step(int s) {
    pthread_mutex_lock(&step_lock);
    step = s;
    pthread_cond_broadcast(&step_cond);
    pthread_mutex_unlock(&step_lock);
}

/* Waits (at most 30 s) until the step is at least s. */
static int wait_step(int s) {
    int ok = 1;
    pthread_mutex_lock(&step_lock);
    while (step < s) {
        struct timespec ts = realtime_in(30000);
        int r = pthread_cond_timedwait(&step_cond, &step_lock, &ts);
        if (r == ETIMEDOUT && step < s) {
            ok = 0;
            break;
        }
        if (r && r != ETIMEDOUT) {
            ok = 0;
            break;
        }
    }
    pthread_mutex_unlock(&step_lock);
    CHECK(ok, "timed out (or error) waiting for step %d (at %d)", s, step);
    return ok;
}

static void run_pair(void *(*a)(void *), void *(*b)(void *), void *arg, const char *name) {
    step = 0;
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, a, arg) != 0 || pthread_create(&tb, NULL, b, arg) != 0) {
        CHECK(0, "%s: pthread_create", name);
        exit(1);
    }
    int ra = pthread_join(ta, NULL), rb = pthread_join(tb, NULL);
    CHECK(ra == 0 && rb == 0, "%s: pthread_join %s %s", name, err_name(ra), err_name(rb));
}

// --- 1. counter ----------------------------------------------------------------

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static long iterations;

static void *count_worker(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++) {
        int r = pthread_mutex_lock(&counter_lock);
        if (r) {
            CHECK(0, "counter: pthread_mutex_lock: %s", err_name(r));
            return NULL;
        }
        counter++;
        pthread_mutex_unlock(&counter_lock);
    }
    return NULL;
}

// --- 2. recursive mutexes ---------------------------------------------------------

static pthread_mutex_t recursive_attr_mutex; /* initialised with the attribute */
static pthread_mutex_t recursive_static_mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

/* Owner: lock 3 times, then unlock one level per step. */
static void *recursive_owner(void *arg) {
    pthread_mutex_t *m = arg;
    for (int i = 0; i < 3; i++) {
        int r = pthread_mutex_lock(m);
        CHECK(r == 0, "recursive: lock %d by owner: %s", i + 1, err_name(r));
    }
    set_step(1);
    for (int i = 0; i < 3; i++) {
        if (!wait_step(2 + 2 * i)) return NULL;
        int r = pthread_mutex_unlock(m);
        CHECK(r == 0, "recursive: unlock %d by owner: %s", i + 1, err_name(r));
        set_step(3 + 2 * i);
    }
    return NULL;
}

/* Other thread: trylock is EBUSY until the third unlock, then succeeds. */
static void *recursive_other(void *arg) {
    pthread_mutex_t *m = arg;
    for (int i = 0; i < 3; i++) {
        if (!wait_step(1 + 2 * i)) return NULL;
        int r = pthread_mutex_trylock(m);
        CHECK(r == EBUSY, "recursive: trylock by another thread with %d lock(s) held: %s, want EBUSY", 3 - i,
              err_name(r));
        if (r == 0) pthread_mutex_unlock(m);
        /* Its unlock must not release the owner's lock either. */
        r = pthread_mutex_unlock(m);
        CHECK(r == EPERM, "recursive: unlock by a non-owner: %s, want EPERM", err_name(r));
        set_step(2 + 2 * i);
    }
    if (!wait_step(7)) return NULL;
    int r = pthread_mutex_trylock(m);
    CHECK(r == 0, "recursive: trylock after the owner's 3 unlocks: %s, want 0", err_name(r));
    if (r == 0) {
        r = pthread_mutex_trylock(m); /* recursive for this owner too */
        CHECK(r == 0, "recursive: second trylock by the new owner: %s, want 0", err_name(r));
        if (r == 0) pthread_mutex_unlock(m);
        r = pthread_mutex_unlock(m);
        CHECK(r == 0, "recursive: unlock by the new owner: %s", err_name(r));
    }
    return NULL;
}

// --- 3. error-checking mutex -----------------------------------------------------------

static pthread_mutex_t errorcheck_mutex;

static void *errorcheck_owner(void *arg) {
    (void)arg;
    int r = pthread_mutex_lock(&errorcheck_mutex);
    CHECK(r == 0, "errorcheck: lock: %s", err_name(r));
    r = pthread_mutex_lock(&errorcheck_mutex);
    CHECK(r == EDEADLK, "errorcheck: relock by the owner: %s, want EDEADLK", err_name(r));
    r = pthread_mutex_trylock(&errorcheck_mutex);
    CHECK(r == EBUSY, "errorcheck: trylock by the owner: %s, want EBUSY", err_name(r));
    set_step(1);
    if (!wait_step(2)) return NULL;
    r = pthread_mutex_unlock(&errorcheck_mutex);
    CHECK(r == 0, "errorcheck: unlock by the owner: %s", err_name(r));
    r = pthread_mutex_unlock(&errorcheck_mutex);
    CHECK(r == EPERM, "errorcheck: unlock of an unlocked mutex: %s, want EPERM", err_name(r));
    set_step(3);
    return NULL;
}

static void *errorcheck_other(void *arg) {
    (void)arg;
    if (!wait_step(1)) return NULL;
    int r = pthread_mutex_unlock(&errorcheck_mutex);
    CHECK(r == EPERM, "errorcheck: unlock by a non-owner: %s, want EPERM", err_name(r));
    r = pthread_mutex_trylock(&errorcheck_mutex);
    CHECK(r == EBUSY, "errorcheck: trylock by a non-owner: %s, want EBUSY", err_name(r));
    set_step(2);
    if (!wait_step(3)) return NULL;
    r = pthread_mutex_trylock(&errorcheck_mutex);
    CHECK(r == 0, "errorcheck: trylock after the owner's unlock: %s", err_name(r));
    if (r == 0) {
        r = pthread_mutex_unlock(&errorcheck_mutex);
        CHECK(r == 0, "errorcheck: unlock by the new owner: %s", err_name(r));
    }
    return NULL;
}

// --- 4. timedlock --------------------------------------------------------------------

static pthread_mutex_t timed_mutex = PTHREAD_MUTEX_INITIALIZER;

static void *timed_holder(void *arg) {
    (void)arg;
    int r = pthread_mutex_lock(&timed_mutex);
    CHECK(r == 0, "timedlock: holder's lock: %s", err_name(r));
    set_step(1);
    if (!wait_step(2)) return NULL;
    pthread_mutex_unlock(&timed_mutex);
    return NULL;
}

static void *timed_waiter(void *arg) {
    (void)arg;
    if (!wait_step(1)) return NULL;
    double t0 = now_seconds();
    struct timespec ts = realtime_in(100);
    int r = pthread_mutex_timedlock(&timed_mutex, &ts);
    double ms = (now_seconds() - t0) * 1000;
    CHECK(r == ETIMEDOUT, "timedlock: on a held mutex: %s, want ETIMEDOUT", err_name(r));
    CHECK(ms >= 80, "timedlock: returned after %.1f ms, before the 100 ms deadline", ms);
    CHECK(ms < 10000, "timedlock: returned after %.1f ms for a 100 ms deadline", ms);
    if (r == 0) pthread_mutex_unlock(&timed_mutex);
    /* A deadline in the past on a held mutex: at once. */
    struct timespec past = realtime_in(-1000);
    r = pthread_mutex_timedlock(&timed_mutex, &past);
    CHECK(r == ETIMEDOUT, "timedlock: past deadline on a held mutex: %s, want ETIMEDOUT", err_name(r));
    if (r == 0) pthread_mutex_unlock(&timed_mutex);
    set_step(2);
    ts = realtime_in(30000);
    r = pthread_mutex_timedlock(&timed_mutex, &ts);
    CHECK(r == 0, "timedlock: after the holder's unlock: %s, want 0", err_name(r));
    if (r == 0) pthread_mutex_unlock(&timed_mutex);
    return NULL;
}

// --- 5. a mutex and counter in main's stack; many mutexes in the heap ----------------

struct stack_shared {
    pthread_mutex_t *lock;
    long *counter;
};

static void *stack_worker(void *arg) {
    struct stack_shared *sh = arg;
    for (int i = 0; i < 1000; i++) {
        int r = pthread_mutex_lock(sh->lock);
        if (r) {
            CHECK(0, "stack mutex: pthread_mutex_lock: %s", err_name(r));
            return NULL;
        }
        (*sh->counter)++;
        pthread_mutex_unlock(sh->lock);
    }
    return NULL;
}

static void test_stack_mutex(int threads) {
    pthread_mutex_t lock; /* main's stack: shared like the rest of it */
    long counter = 0;
    pthread_mutex_init(&lock, NULL);
    struct stack_shared sh = {&lock, &counter};
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, stack_worker, &sh) != 0) {
            CHECK(0, "stack mutex: pthread_create");
            exit(1);
        }
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    pthread_mutex_lock(&lock);
    CHECK(counter == threads * 1000L, "stack mutex: counter %ld, want %ld", counter, threads * 1000L);
    pthread_mutex_unlock(&lock);
    int r = pthread_mutex_destroy(&lock);
    CHECK(r == 0, "stack mutex: pthread_mutex_destroy: %s", err_name(r));
}

/* A program may have many mutexes (a lock per bucket or per object). */
#define MANY_MUTEXES 20000
static pthread_mutex_t *many;

static void *many_worker(void *arg) {
    (void)arg;
    int bad = 0;
    for (int i = 0; i < MANY_MUTEXES; i++) {
        int r = pthread_mutex_lock(&many[i]);
        if (r) {
            if (bad++ < 3)
                CHECK(0, "many mutexes: pthread_mutex_lock of mutex %d of %d: %s", i, MANY_MUTEXES, err_name(r));
            continue;
        }
        r = pthread_mutex_unlock(&many[i]);
        if (r && bad++ < 3) CHECK(0, "many mutexes: pthread_mutex_unlock of mutex %d: %s", i, err_name(r));
    }
    CHECK(bad == 0, "many mutexes: %d lock/unlock errors", bad);
    return NULL;
}

static void test_many_mutexes(void) {
    many = malloc(MANY_MUTEXES * sizeof *many);
    if (!many) {
        CHECK(0, "many mutexes: malloc");
        return;
    }
    for (int i = 0; i < MANY_MUTEXES; i++) pthread_mutex_init(&many[i], NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, many_worker, NULL) != 0) {
        CHECK(0, "many mutexes: pthread_create");
        exit(1);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < MANY_MUTEXES; i++) {
        int r = pthread_mutex_destroy(&many[i]);
        if (r) {
            CHECK(0, "many mutexes: pthread_mutex_destroy of mutex %d: %s", i, err_name(r));
            break;
        }
    }
    free(many);
}

/* A line per part, so that a run killed half-way shows how far it got. */
static void progress(const char *part, int before, double since) {
    printf("img_mutex %s: %s (%.2f s)\n", part, failures == before ? "ok" : "FAILED", now_seconds() - since);
    fflush(stdout);
}

int main(int argc, char **argv) {
    alarm(240);
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    iterations = argc > 2 ? atol(argv[2]) : 100000;
    if (threads < 1 || threads > MAX_THREADS || iterations < 0) {
        fprintf(stderr, "usage: img_mutex [threads 1..%d] [iterations]\n", MAX_THREADS);
        return 2;
    }

    double t0 = now_seconds();
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, count_worker, NULL) != 0) {
            printf("FAIL: pthread_create %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double counter_time = now_seconds() - t0;
    CHECK(counter == threads * iterations, "counter: %ld, want %ld", counter, threads * iterations);
    progress("counter", 0, t0);

    int before = failures;
    double t1 = now_seconds();
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int r = pthread_mutex_init(&recursive_attr_mutex, &attr);
    CHECK(r == 0, "pthread_mutex_init(recursive): %s", err_name(r));
    run_pair(recursive_owner, recursive_other, &recursive_attr_mutex, "recursive (attribute)");
    run_pair(recursive_owner, recursive_other, &recursive_static_mutex, "recursive (static initialiser)");
    progress("recursive", before, t1);
    before = failures, t1 = now_seconds();

    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    r = pthread_mutex_init(&errorcheck_mutex, &attr);
    CHECK(r == 0, "pthread_mutex_init(errorcheck): %s", err_name(r));
    pthread_mutexattr_destroy(&attr);
    run_pair(errorcheck_owner, errorcheck_other, NULL, "errorcheck");
    progress("errorcheck", before, t1);
    before = failures, t1 = now_seconds();

    run_pair(timed_holder, timed_waiter, NULL, "timedlock");
    progress("timedlock", before, t1);
    before = failures, t1 = now_seconds();

    test_stack_mutex(threads);
    progress("stack mutex", before, t1);
    before = failures, t1 = now_seconds();

    test_many_mutexes();
    progress("many mutexes", before, t1);

    r = pthread_mutex_destroy(&recursive_attr_mutex);
    CHECK(r == 0, "pthread_mutex_destroy(recursive): %s", err_name(r));
    r = pthread_mutex_destroy(&errorcheck_mutex);
    CHECK(r == 0, "pthread_mutex_destroy(errorcheck): %s", err_name(r));

    printf("img_mutex threads=%d iterations=%ld counter=%ld counter_time=%.2f failures=%d\n", threads, iterations,
           counter, counter_time, failures);
    return failures ? 1 : 0;
}
