/*
 * omp_constructs.c - OpenMP as people write it: worksharing loops with
 * reductions of one and several variables, criticals (unnamed and named),
 * atomics, an omp lock, barriers, single, tasks, ordered, sections, dynamic
 * schedules, and serial phases long enough for the threads to go to sleep
 * between parallel regions (OMP_WAIT_POLICY=passive, or past the spin
 * count). Arguments: rounds, serial phase in ms.
 */
#include "img_check.h"
#include <omp.h>
#include <stdlib.h>

/* A serial phase: main computes alone for `ms` milliseconds. */
static double serial_phase(int ms) {
    struct timespec start, now;
    double x = 1.0;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 1000; i++) x = x * 1.0000001 + 1e-9;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
    return x;
}

static long fib(int n) {
    if (n < 2) return n;
    long a, b;
#pragma omp task shared(a)
    a = fib(n - 1);
#pragma omp task shared(b)
    b = fib(n - 2);
#pragma omp taskwait
    return a + b;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 200;
    const long n = 20000;
    double *v = malloc(n * sizeof *v);
    for (long i = 0; i < n; i++) v[i] = (double)(i % 100);
    int threads = 0;
    for (int round = 0; round < rounds; round++) {
        /* One reduction variable, and several. */
        double sum = 0;
#pragma omp parallel for reduction(+ : sum)
        for (long i = 0; i < n; i++) sum += v[i];
        CHECK(sum == 990000.0, "reduction of one variable: %.0f", sum);
        double s1 = 0, s2 = 0;
        long count = 0;
#pragma omp parallel for reduction(+ : s1, s2, count)
        for (long i = 0; i < n; i++) {
            s1 += v[i];
            s2 += 2 * v[i];
            count++;
        }
        CHECK(s1 == 990000.0 && s2 == 1980000.0 && count == n, "reduction of three: %.0f %.0f %ld", s1, s2, count);

        /* Criticals, atomics, a lock. */
        long unnamed = 0, named = 0, atomic = 0, locked = 0;
        omp_lock_t lock;
        omp_init_lock(&lock);
#pragma omp parallel for schedule(dynamic, 64)
        for (long i = 0; i < n; i++) {
#pragma omp critical
            unnamed++;
#pragma omp critical(other)
            named++;
#pragma omp atomic
            atomic++;
            if (i % 8 == 0) {
                omp_set_lock(&lock);
                locked++;
                omp_unset_lock(&lock);
            }
        }
        omp_destroy_lock(&lock);
        CHECK(unnamed == n && named == n && atomic == n && locked == n / 8, "critical %ld named %ld atomic %ld lock %ld",
              unnamed, named, atomic, locked);

        /* Barriers and single: every thread sees every other's phase. */
        int team = 0, phases_ok = 1;
        int *phase = calloc(64, sizeof *phase);
#pragma omp parallel
        {
            int me = omp_get_thread_num();
#pragma omp single
            team = omp_get_num_threads();
            for (int p = 1; p <= 5; p++) {
                phase[me] = p;
#pragma omp barrier
                for (int t = 0; t < team; t++)
                    if (phase[t] < p) {
#pragma omp atomic write
                        phases_ok = 0;
                    }
#pragma omp barrier
            }
        }
        CHECK(phases_ok, "a thread passed a barrier before another reached it");
        free(phase);
        threads = team;

        /* Tasks. */
        long f = 0;
#pragma omp parallel
#pragma omp single
        f = fib(18);
        CHECK(f == 2584, "fib(18) = %ld", f);

        /* Ordered: the iterations' records come out in order. */
        long *order = malloc(200 * sizeof *order);
        int next = 0;
#pragma omp parallel for ordered schedule(dynamic, 3)
        for (long i = 0; i < 200; i++) {
#pragma omp ordered
            order[next++] = i;
        }
        int in_order = next == 200;
        for (int i = 0; i < next; i++) in_order &= order[i] == i;
        CHECK(in_order, "ordered loop out of order");
        free(order);

        /* Sections. */
        int a = 0, b = 0;
#pragma omp parallel sections
        {
#pragma omp section
            a = 1;
#pragma omp section
            b = 2;
        }
        CHECK(a == 1 && b == 2, "sections %d %d", a, b);

        /* A serial phase: the threads go to sleep (passive, or past
         * GOMP_SPINCOUNT) and must be woken by the next region. */
        serial_phase(pause_ms);
    }
    free(v);
    const char *policy = getenv("OMP_WAIT_POLICY");
    printf("omp_constructs threads=%d rounds=%d wait_policy=%s failures=%d\n", threads, rounds, policy ? policy : "unset",
           failures);
    return failures == 0 ? 0 : 1;
}
