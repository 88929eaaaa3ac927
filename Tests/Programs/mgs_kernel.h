/*
 * mgs_kernel.h - the Modified Gram-Schmidt program of mgs.c, with its
 * per-step barrier as a parameter: mgs.c uses common.h's semaphore barrier,
 * mgs_spin.c and mgs_semcount.c the barriers people write by hand. Same
 * matrix, steps, output and checks in all three, so the hash is the same.
 *
 * The matrix lives in one System V segment, column-major; column j belongs
 * to node j % N. Node 0 fills it with deterministic pseudo-random values.
 * Step k: the owner of column k normalises it; barrier; every node
 * orthogonalises its own columns j > k against q_k (one barrier per step:
 * see the loop).
 * Every column sees the same operations in the same order whatever N is, so
 * the result is bit-identical for any node count and any correct runtime.
 *
 * Node 0 prints
 *   <name> n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 * and checks max |Q^T Q - I| < 1e-8 on a sample of column pairs (exit 1 if
 * not). `setup` (may be NULL) runs on every node once the matrix segment is
 * open, before the start barrier.
 */
#ifndef DSM_MGS_KERNEL_H
#define DSM_MGS_KERNEL_H

#include "common.h"

#include <math.h>

static int mgs_main(const char *name, int argc, char **argv, void (*setup)(void), void (*step_barrier)(void))
{
    t_init_env(name);
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
    if (n < 2 || n > 16384)
        t_die(0, "usage: %s n (2 <= n <= 16384)", name);
    t_barrier_init();

    size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    double *a = t_shm_open(2, bytes, NULL);
#define COL(j) (a + (size_t)(j) * (size_t)n)
    if (setup)
        setup();

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
        step_barrier();
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
        printf("%s n=%ld nodes=%d hash=%016" PRIx64 "\n", name, n, t_n, h);
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

#endif /* DSM_MGS_KERNEL_H */
