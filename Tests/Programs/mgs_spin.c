/*
 * mgs_spin.c n - mgs.c with the barrier people write by hand: a
 * sense-reversing spin barrier on two words of a shared segment (an atomic
 * counter, and a sense flag in the same page that the others spin on with
 * sched_yield). The matrix, the steps and the output are mgs.c's, so the
 * hash is the same for any node count; only the per-step barrier differs
 * (start and end use common.h's semaphore barrier).
 *
 * Node 0 prints
 *   mgs_spin n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 */
#include "common.h"

#include <math.h>
#include <sched.h>

/* The barrier's words, in a page of their own segment. */
struct spin_barrier {
    int count;
    int sense;
};

static void spin_barrier_wait(struct spin_barrier *b, int *local_sense, int nodes)
{
    *local_sense = !*local_sense;
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == nodes) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, *local_sense, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != *local_sense)
            sched_yield();
    }
}

int main(int argc, char **argv)
{
    t_init_env("mgs_spin");
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
    if (n < 2 || n > 16384)
        t_die(0, "usage: mgs_spin n (2 <= n <= 16384)");
    t_barrier_init();

    size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    double *a = t_shm_open(2, bytes, NULL);
    struct spin_barrier *bar = t_shm_open(3, 4096, NULL);
    int local_sense = 0;
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
        spin_barrier_wait(bar, &local_sense, t_n);
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
        printf("mgs_spin n=%ld nodes=%d hash=%016" PRIx64 "\n", n, t_n, h);
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
