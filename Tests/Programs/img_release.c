/*
 * img_release [threads] [rounds] - what a data-race-free pthreads program
 * may rely on, written the ordinary way; under dsmrun it must hold with
 * either memory model (--consistency sequential or release).
 *
 *  1. false sharing: in each round every thread writes its own bytes of
 *     two pages (bytes i with i % threads == t: neighbours in every word),
 *     one array a global, one from malloc; after a barrier every thread
 *     sees every thread's bytes of that round;
 *  2. a mutex: a reader reads a block (its node now holds a copy) and says
 *     so under the mutex; a writer waits for that, fills the block and sets
 *     `ready` under the mutex; the reader polls `ready` under the mutex and
 *     reads the block again outside it: the new values, not its copy's;
 *  3. a condition variable, 4. a POSIX semaphore, 5. a raw futex: each
 *     hands a block of data from one thread to another;
 *  6. pthread_join: what a thread wrote is seen by its joiner.
 *
 * Exit 0: pass, 1: a check failed (FAIL lines say which), 2: bad usage.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "img_check.h"

#define SHARED_BYTES 65536 /* 16 pages each: more than a node drops without asking */
#define BLOCK 3000 /* ints: spans pages */

static int nthreads = 4;
static int rounds = 20;
static unsigned char side_by_side[SHARED_BYTES];
static unsigned char *heap_side_by_side;
static pthread_barrier_t round_barrier;

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static int ready, warmed;
static int block[BLOCK];

static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int cond_generation;
static int cond_block[BLOCK];

static sem_t sem;
static int sem_block[BLOCK];

static uint32_t futex_word;
static int futex_block[BLOCK];

static unsigned char expected(int round, int i) { return (unsigned char)(round * 7 + i % nthreads + 1); }

static void *false_sharing(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int r = 0; r < rounds; r++) {
        for (int i = t; i < SHARED_BYTES; i += nthreads) {
            side_by_side[i] = expected(r, i);
            heap_side_by_side[i] = expected(r, i);
        }
        pthread_barrier_wait(&round_barrier);
        int wrong = 0;
        for (int i = 0; i < SHARED_BYTES; i++)
            wrong += side_by_side[i] != expected(r, i) || heap_side_by_side[i] != expected(r, i);
        CHECK(wrong == 0, "false sharing: thread %d round %d saw %d bytes not written that round", t, r, wrong);
        pthread_barrier_wait(&round_barrier);
    }
    return NULL;
}

/* Polls `flag` under the mutex until it is set. */
static void await_under_lock(int *flag) {
    for (;;) {
        pthread_mutex_lock(&ready_lock);
        int r = *flag;
        pthread_mutex_unlock(&ready_lock);
        if (r) return;
        sched_yield();
    }
}

static void *mutex_writer(void *arg) {
    (void)arg;
    await_under_lock(&warmed);
    for (int i = 0; i < BLOCK; i++) block[i] = i * 3 + 1;
    pthread_mutex_lock(&ready_lock);
    ready = 1;
    pthread_mutex_unlock(&ready_lock);
    return NULL;
}

static void *mutex_reader(void *arg) {
    (void)arg;
    long before = 0;
    for (int i = 0; i < BLOCK; i++) before += block[i];
    CHECK(before == 0, "mutex: the block was not zero before it was written");
    pthread_mutex_lock(&ready_lock);
    warmed = 1;
    pthread_mutex_unlock(&ready_lock);
    await_under_lock(&ready);
    int wrong = 0;
    for (int i = 0; i < BLOCK; i++) wrong += block[i] != i * 3 + 1;
    CHECK(wrong == 0, "mutex: %d ints of the block were stale after `ready`", wrong);
    return NULL;
}

static void *cond_producer(void *arg) {
    (void)arg;
    for (int i = 0; i < BLOCK; i++) cond_block[i] = i ^ 0x5a5a;
    pthread_mutex_lock(&cond_lock);
    cond_generation = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&cond_lock);
    return NULL;
}

static void *cond_consumer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cond_lock);
    while (cond_generation == 0) pthread_cond_wait(&cond, &cond_lock);
    pthread_mutex_unlock(&cond_lock);
    int wrong = 0;
    for (int i = 0; i < BLOCK; i++) wrong += cond_block[i] != (i ^ 0x5a5a);
    CHECK(wrong == 0, "condition variable: %d ints stale after the wait", wrong);
    return NULL;
}

static void *sem_producer(void *arg) {
    (void)arg;
    for (int i = 0; i < BLOCK; i++) sem_block[i] = i * 11;
    sem_post(&sem);
    return NULL;
}

static void *sem_consumer(void *arg) {
    (void)arg;
    while (sem_wait(&sem) != 0) {}
    int wrong = 0;
    for (int i = 0; i < BLOCK; i++) wrong += sem_block[i] != i * 11;
    CHECK(wrong == 0, "semaphore: %d ints stale after sem_wait", wrong);
    return NULL;
}

static void *futex_producer(void *arg) {
    (void)arg;
    for (int i = 0; i < BLOCK; i++) futex_block[i] = i + 77;
    __atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE, 1, NULL, NULL, 0);
    return NULL;
}

static void *futex_consumer(void *arg) {
    (void)arg;
    while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
        syscall(SYS_futex, &futex_word, FUTEX_WAIT, 0, NULL, NULL, 0);
    int wrong = 0;
    for (int i = 0; i < BLOCK; i++) wrong += futex_block[i] != i + 77;
    CHECK(wrong == 0, "futex: %d ints stale after the wake", wrong);
    return NULL;
}

static void *joined(void *arg) {
    int *out = arg;
    for (int i = 0; i < BLOCK; i++) out[i] = -i;
    return NULL;
}

/* Consumers start first, so that they wait on the other node. */
static void pair(const char *what, void *(*consumer)(void *), void *(*producer)(void *)) {
    pthread_t c, p;
    if (pthread_create(&c, NULL, consumer, NULL) != 0 || pthread_create(&p, NULL, producer, NULL) != 0) {
        CHECK(0, "%s: pthread_create", what);
        return;
    }
    pthread_join(c, NULL);
    pthread_join(p, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1) nthreads = atoi(argv[1]);
    if (argc > 2) rounds = atoi(argv[2]);
    if (argc > 3 || nthreads < 1 || nthreads > 64 || rounds < 1) {
        fprintf(stderr, "usage: img_release [threads 1..64] [rounds >= 1]\n");
        return 2;
    }
    heap_side_by_side = malloc(SHARED_BYTES);
    if (!heap_side_by_side || pthread_barrier_init(&round_barrier, NULL, (unsigned)nthreads) != 0 ||
        sem_init(&sem, 0, 0) != 0) {
        printf("FAIL: set-up\n");
        return 1;
    }
    double start = now_seconds();
    pthread_t tid[64];
    for (long t = 0; t < nthreads; t++)
        if (pthread_create(&tid[t], NULL, false_sharing, (void *)t) != 0) CHECK(0, "pthread_create %ld", t);
    for (int t = 0; t < nthreads; t++) pthread_join(tid[t], NULL);

    pair("mutex", mutex_reader, mutex_writer);
    pair("condition variable", cond_consumer, cond_producer);
    pair("semaphore", sem_consumer, sem_producer);
    pair("futex", futex_consumer, futex_producer);

    int *out = malloc(BLOCK * sizeof *out);
    pthread_t j;
    if (!out || pthread_create(&j, NULL, joined, out) != 0) {
        CHECK(0, "join: set-up");
    } else {
        pthread_join(j, NULL);
        int wrong = 0;
        for (int i = 0; i < BLOCK; i++) wrong += out[i] != -i;
        CHECK(wrong == 0, "join: %d ints stale after pthread_join", wrong);
    }
    printf("img_release threads=%d rounds=%d failures=%d time=%.3f\n", nthreads, rounds, failures, now_seconds() - start);
    free(out);
    free(heap_side_by_side);
    return failures ? 1 : 0;
}
