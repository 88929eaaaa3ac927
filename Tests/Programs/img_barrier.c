// Image mode: pthread barriers across nodes. Each round every thread writes
// the round number into its slot of a global array, waits at the barrier,
// checks that every slot holds the round (the writes before the barrier
// are visible after it on every node), and waits again before the next
// round overwrites the slots. Exactly one thread per barrier wait gets
// PTHREAD_BARRIER_SERIAL_THREAD: counted per round.
//
// Usage: img_barrier [threads rounds]   (exit 0: pass)
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64

static pthread_barrier_t barrier;
static volatile long slots[MAX_THREADS]; /* bss */
static int threads, rounds;
static int *serial_first;  /* per round: serial returns of the first wait (heap) */
static int *serial_second; /* per round: serial returns of the second wait */
static long failures;

static void fail(long *local, const char *format, long a, long b, long c) {
    if (__atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST) < 20) {
        printf("FAIL: ");
        printf(format, a, b, c);
        printf("\n");
        fflush(stdout);
    }
    (*local)++;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    long local = 0;
    for (int round = 1; round <= rounds; round++) {
        slots[me] = round;
        int r = pthread_barrier_wait(&barrier);
        if (r == PTHREAD_BARRIER_SERIAL_THREAD) __atomic_fetch_add(&serial_first[round - 1], 1, __ATOMIC_SEQ_CST);
        else if (r != 0) fail(&local, "thread %ld: pthread_barrier_wait returned %ld in round %ld", me, r, round);
        for (int i = 0; i < threads; i++) {
            long v = slots[i];
            if (v != round) fail(&local, "round %ld: slot %ld holds %ld after the barrier", round, i, v);
        }
        r = pthread_barrier_wait(&barrier);
        if (r == PTHREAD_BARRIER_SERIAL_THREAD) __atomic_fetch_add(&serial_second[round - 1], 1, __ATOMIC_SEQ_CST);
        else if (r != 0)
            fail(&local, "thread %ld: second pthread_barrier_wait returned %ld in round %ld", me, r, round);
    }
    return (void *)(intptr_t)local;
}

int main(int argc, char **argv) {
    alarm(120);
    threads = argc > 1 ? atoi(argv[1]) : 4;
    rounds = argc > 2 ? atoi(argv[2]) : 200;
    if (threads < 1 || threads > MAX_THREADS || rounds < 1) {
        fprintf(stderr, "usage: img_barrier [threads 1..%d] [rounds]\n", MAX_THREADS);
        return 2;
    }
    serial_first = calloc((size_t)rounds, sizeof *serial_first);
    serial_second = calloc((size_t)rounds, sizeof *serial_second);
    if (!serial_first || !serial_second) return 1;
    int r = pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    if (r) {
        printf("FAIL: pthread_barrier_init: %s\n", strerror(r));
        return 1;
    }
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            printf("FAIL: pthread_create %d\n", i);
            return 1;
        }
    }
    long thread_failures = 0;
    for (int i = 0; i < threads; i++) {
        void *v = NULL;
        r = pthread_join(t[i], &v);
        if (r) {
            printf("FAIL: pthread_join %d: %s\n", i, strerror(r));
            failures++;
        }
        thread_failures += (long)(intptr_t)v;
    }
    long serial_total = 0;
    for (int i = 0; i < rounds; i++) {
        serial_total += serial_first[i];
        if (serial_first[i] != 1 || serial_second[i] != 1) {
            if (failures++ < 40)
                printf("FAIL: round %d: %d and %d PTHREAD_BARRIER_SERIAL_THREAD returns, want 1 and 1\n", i + 1,
                       serial_first[i], serial_second[i]);
        }
    }
    if (serial_total != rounds) printf("FAIL: %ld serial returns of the first wait, want %d\n", serial_total, rounds);
    r = pthread_barrier_destroy(&barrier);
    if (r) {
        printf("FAIL: pthread_barrier_destroy: %s\n", strerror(r));
        failures++;
    }
    printf("img_barrier threads=%d rounds=%d serial=%ld thread_failures=%ld failures=%ld\n", threads, rounds,
           serial_total, thread_failures, failures);
    free(serial_first);
    free(serial_second);
    return failures ? 1 : 0;
}
