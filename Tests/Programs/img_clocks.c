// Image mode: the clock-taking thread calls (glibc 2.30+; what C++'s
// condition_variable::wait_for, timed_mutex::try_lock_for and
// shared_timed_mutex use) and conditions on CLOCK_MONOTONIC, with the
// waker or the holder a thread on another node:
// - pthread_cond_clockwait on CLOCK_MONOTONIC and CLOCK_REALTIME: woken by
//   a signal well before a 10 s deadline; a 200 ms deadline with no signal
//   is ETIMEDOUT after about 200 ms; another clock is EINVAL;
// - pthread_cond_timedwait on a condition made with CLOCK_MONOTONIC: its
//   deadline is on that clock;
// - pthread_mutex_clocklock, pthread_rwlock_clockwrlock and
//   pthread_rwlock_clockrdlock against a holder on another node: ETIMEDOUT
//   at a 100 ms deadline, success at a 10 s one;
// - sem_clockwait: posted from another node before a 10 s deadline; -1 and
//   ETIMEDOUT at a 100 ms one.
//
// Usage: img_clocks   (exit 0: pass)
// Prints `img_clocks failures=`.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "img_check.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t monotonic_cond;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static sem_t sem;
static int flag;
static int step;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct timespec deadline_in(clockid_t clock, double seconds) {
    struct timespec t;
    clock_gettime(clock, &t);
    long ns = t.tv_nsec + (long)((seconds - (double)(long)seconds) * 1e9);
    t.tv_sec += (time_t)seconds + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

static void nap(double seconds) {
    struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&t, NULL);
}

/* Sets the flag and signals `c` after 100 ms. */
static void *signaller(void *arg) {
    pthread_cond_t *c = arg;
    nap(0.1);
    pthread_mutex_lock(&lock);
    flag = 1;
    pthread_cond_signal(c);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void wait_woken(pthread_cond_t *c, clockid_t clock, int use_clockwait, const char *what) {
    flag = 0;
    pthread_t t;
    pthread_create(&t, NULL, signaller, c);
    double start = now();
    pthread_mutex_lock(&lock);
    int r = 0;
    struct timespec d = deadline_in(clock, 10);
    while (!flag && r == 0)
        r = use_clockwait ? pthread_cond_clockwait(c, &lock, clock, &d) : pthread_cond_timedwait(c, &lock, &d);
    pthread_mutex_unlock(&lock);
    pthread_join(t, NULL);
    double took = now() - start;
    CHECK(r == 0 && flag, "%s: returned %d (%s), flag %d", what, r, strerror(r), flag);
    CHECK(took < 5, "%s: took %.2f s for a signal sent after 0.1 s", what, took);
}

/* Holds `held` and the write lock for 1 s (the three 100 ms attempts fit). */
static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held);
    pthread_rwlock_wrlock(&rw);
    __atomic_store_n(&step, 1, __ATOMIC_RELEASE);
    nap(1.0);
    pthread_rwlock_unlock(&rw);
    pthread_mutex_unlock(&held);
    return NULL;
}

static void *poster(void *arg) {
    (void)arg;
    nap(0.1);
    sem_post(&sem);
    return NULL;
}

int main(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&monotonic_cond, &attr);
    pthread_condattr_destroy(&attr);

    wait_woken(&cond, CLOCK_MONOTONIC, 1, "pthread_cond_clockwait(CLOCK_MONOTONIC)");
    wait_woken(&cond, CLOCK_REALTIME, 1, "pthread_cond_clockwait(CLOCK_REALTIME)");
    wait_woken(&monotonic_cond, CLOCK_MONOTONIC, 0, "pthread_cond_timedwait on a CLOCK_MONOTONIC condition");

    /* No signal: the deadline. */
    pthread_mutex_lock(&lock);
    struct timespec d = deadline_in(CLOCK_MONOTONIC, 0.2);
    double start = now();
    int r = pthread_cond_clockwait(&cond, &lock, CLOCK_MONOTONIC, &d);
    double took = now() - start;
    CHECK(r == ETIMEDOUT, "pthread_cond_clockwait with no signal: %d (%s)", r, strerror(r));
    CHECK(took > 0.15 && took < 5, "pthread_cond_clockwait with no signal returned after %.2f s (deadline 0.2 s)", took);
    r = pthread_cond_clockwait(&cond, &lock, CLOCK_PROCESS_CPUTIME_ID, &d);
    CHECK(r == EINVAL, "pthread_cond_clockwait on CLOCK_PROCESS_CPUTIME_ID: %d, expected EINVAL", r);
    pthread_mutex_unlock(&lock);

    /* Locks held on another node. */
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    while (!__atomic_load_n(&step, __ATOMIC_ACQUIRE)) nap(0.001);
    d = deadline_in(CLOCK_MONOTONIC, 0.1);
    CHECK((r = pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &d)) == ETIMEDOUT, "pthread_mutex_clocklock, held: %d", r);
    d = deadline_in(CLOCK_MONOTONIC, 0.1);
    CHECK((r = pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &d)) == ETIMEDOUT, "pthread_rwlock_clockwrlock, held: %d", r);
    d = deadline_in(CLOCK_REALTIME, 0.1);
    CHECK((r = pthread_rwlock_clockrdlock(&rw, CLOCK_REALTIME, &d)) == ETIMEDOUT, "pthread_rwlock_clockrdlock, held: %d", r);
    d = deadline_in(CLOCK_MONOTONIC, 10);
    CHECK((r = pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &d)) == 0, "pthread_mutex_clocklock: %d", r);
    if (r == 0) pthread_mutex_unlock(&held);
    d = deadline_in(CLOCK_MONOTONIC, 10);
    CHECK((r = pthread_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &d)) == 0, "pthread_rwlock_clockrdlock: %d", r);
    if (r == 0) pthread_rwlock_unlock(&rw);
    pthread_join(t, NULL);

    /* Semaphores. */
    sem_init(&sem, 0, 0);
    d = deadline_in(CLOCK_MONOTONIC, 0.1);
    errno = 0;
    CHECK(sem_clockwait(&sem, CLOCK_MONOTONIC, &d) == -1 && errno == ETIMEDOUT, "sem_clockwait, nothing posted: errno %d", errno);
    pthread_create(&t, NULL, poster, NULL);
    d = deadline_in(CLOCK_MONOTONIC, 10);
    CHECK(sem_clockwait(&sem, CLOCK_MONOTONIC, &d) == 0, "sem_clockwait, posted from another node: %s", strerror(errno));
    pthread_join(t, NULL);
    sem_destroy(&sem);

    printf("img_clocks failures=%d\n", failures);
    return failures ? 1 : 0;
}
