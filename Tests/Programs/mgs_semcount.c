/*
 * mgs_semcount.c n - mgs.c with a barrier as people often build one from
 * System V semaphores: a semaphore used as a mutex around an arrival
 * counter kept in a shared segment, and a gate semaphore per generation
 * parity that the last arrival opens for the others. The matrix, the steps
 * and the output are mgs.c's, so the hash is the same for any node count;
 * only the per-step barrier differs (start and end use common.h's).
 *
 * Node 0 prints
 *   mgs_semcount n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 */
#include "common.h"

#include <math.h>

/* The counter, in a page of its own segment. */
struct counted_barrier {
    int count;
    unsigned generation;
};

enum { MUTEX = 0, GATE0 = 1, GATE1 = 2 };

static void counted_barrier_wait(struct counted_barrier *b, int sems, int nodes)
{
    t_semop1(sems, MUTEX, -1, 0, "lock the counter");
    unsigned generation = b->generation;
    if (++b->count == nodes) {
        b->count = 0;
        b->generation = generation + 1;
        t_semop1(sems, MUTEX, +1, 0, "unlock the counter");
        if (nodes > 1)
            t_semop1(sems, generation % 2 ? GATE1 : GATE0, nodes - 1, 0, "open the gate");
    } else {
        t_semop1(sems, MUTEX, +1, 0, "unlock the counter");
        t_semop1(sems, generation % 2 ? GATE1 : GATE0, -1, 0, "pass the gate");
    }
}

int main(int argc, char **argv)
{
    t_init_env("mgs_semcount");
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
    if (n < 2 || n > 16384)
        t_die(0, "usage: mgs_semcount n (2 <= n <= 16384)");
    t_barrier_init();

    size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    double *a = t_shm_open(2, bytes, NULL);
    struct counted_barrier *bar = t_shm_open(3, 4096, NULL);
    int sems = t_sem_open(4, 3);
    if (t_me == 0)
        t_semop1(sems, MUTEX, +1, 0, "create the counter's mutex");
#define COL(j) (a + (size_t)(j) * (size_t)n)

    if (t_me == 0) {
        uint64_t s = 0x6d67735eedULL ^ (uint64_t)n;
        for (long j = 0; j < n; j++)
            for (long i = 0; i < n; i++)
                COL(j)[i] = t_rand_double(&s);
    }
    t_barrier();
    double t0 = t_now();

    for (long k = 0; k < n; k++) {
        double *qk = COL(k);
        if (k % t_n == t_me) {
            double s = 0.0;
            for (long i = 0; i < n; i++)
                s += qk[i] * qk[i];
            double r = sqrt(s);
            if (!(r > 0.0))
                t_die(0, "column %ld has norm %g", k, r);
            for (long i = 0; i < n; i++)
                qk[i] /= r;
        }
        counted_barrier_wait(bar, sems, t_n);
        /* First own column after k. */
        long j0 = k + 1 + (((t_me - (k + 1)) % t_n) + t_n) % t_n;
        for (long j = j0; j < n; j += t_n) {
            double *aj = COL(j);
            double d = 0.0;
            for (long i = 0; i < n; i++)
                d += qk[i] * aj[i];
            for (long i = 0; i < n; i++)
                aj[i] -= d * qk[i];
        }
        /* No second barrier: the next step's pivot column is written only
         * by its owner, who finished its own updates; q_k is never written
         * again. */
    }
    t_barrier();
    double elapsed = t_now() - t0;

    int rc = 0;
    if (t_me == 0) {
        uint64_t h = t_fnv1a(a, bytes);
        printf("mgs_semcount n=%ld nodes=%d hash=%016" PRIx64 "\n", n, t_n, h);
        printf("time=%.6f\n", elapsed);

        /* Orthogonality on a sample of column pairs, always including the
         * first and last columns and some diagonal entries. */
        uint64_t s = 0x5eed0f0a11ULL;
        double worst = 0.0;
        long wi = 0, wj = 0;
        int samples = 200;
        for (int t = 0; t < samples; t++) {
            long i, j;
            if (t == 0) { i = 0; j = n - 1; }
            else if (t == 1) { i = n - 1; j = n - 1; }
            else if (t == 2) { i = 0; j = 0; }
            else if (t == 3) { i = n - 2; j = n - 1; }
            else {
                i = (long)(t_rand_next(&s) % (uint64_t)n);
                j = (t % 4 == 0) ? i : (long)(t_rand_next(&s) % (uint64_t)n);
            }
            double d = 0.0;
            for (long r = 0; r < n; r++)
                d += COL(i)[r] * COL(j)[r];
            double e = fabs(d - (i == j ? 1.0 : 0.0));
            if (!(e <= worst)) { /* also catches NaN */
                worst = e;
                wi = i;
                wj = j;
            }
        }
        if (!(worst < 1e-8)) {
            t_msg("FAIL: orthogonality: |q%ld . q%ld - delta| = %g >= 1e-8", wi, wj, worst);
            rc = 1;
        }
    }
    return t_finish(rc);
}
