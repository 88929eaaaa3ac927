/*
 * img_mgs_counter [n] [threads] - Modified Gram-Schmidt as people write it
 * with pthreads: the matrix pointer, the size and a progress counter are
 * globals side by side, the counter is bumped under a mutex as each column
 * is finished, and every step ends with pthread_barrier_wait. Nothing is
 * laid out for a DSM: the counter shares its page with the read-mostly
 * globals every thread reads after every barrier.
 *
 * Thread t owns the columns j with j % threads == t. Step k: the owner of
 * column k normalises it and counts it done; barrier; every thread
 * orthogonalises its columns j > k against q_k; barrier. The operations on
 * every column are the same whatever the thread count, so the hash is too.
 *
 * Prints
 *   img_mgs_counter n=<n> threads=<t> hash=<FNV-1a 64 of the matrix> time=<s>
 * and checks columns_done == n and |q_i . q_j - delta_ij| < 1e-8 on a sample.
 * Exit 0: pass, 1: wrong result, 2: bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "img_run.h"

static long n = 256;
static int nthreads = 4;
static double *a;
static long columns_done;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;
static int failed;

static void *worker(void *arg)
{
    long me = (long)arg;
    for (long k = 0; k < n; k++) {
        double *qk = a + k * n;
        if (k % nthreads == me) {
            double s = 0.0;
            for (long i = 0; i < n; i++)
                s += qk[i] * qk[i];
            double r = sqrt(s);
            if (!(r > 0.0))
                failed = 1;
            for (long i = 0; i < n; i++)
                qk[i] /= r;
            pthread_mutex_lock(&done_lock);
            columns_done += 1;
            pthread_mutex_unlock(&done_lock);
        }
        pthread_barrier_wait(&barrier);
        for (long j = k + 1; j < n; j++) {
            if (j % nthreads != me)
                continue;
            double *aj = a + j * n;
            double d = 0.0;
            for (long i = 0; i < n; i++)
                d += qk[i] * aj[i];
            for (long i = 0; i < n; i++)
                aj[i] -= d * qk[i];
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n = strtol(argv[1], NULL, 10);
    if (argc > 2)
        nthreads = (int)strtol(argv[2], NULL, 10);
    if (argc > 3 || n < 2 || n > 4096 || nthreads < 1 || nthreads > 64) {
        fprintf(stderr, "usage: img_mgs_counter [n 2..4096] [threads 1..64]\n");
        return 2;
    }
    a = malloc((size_t)n * (size_t)n * sizeof(double));
    if (!a) {
        printf("FAIL: malloc\n");
        return 1;
    }
    uint64_t s = 0x6d67735eedULL ^ (uint64_t)n;
    for (long j = 0; j < n; j++)
        for (long i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            a[j * n + i] = (double)(s >> 11) * 0x1p-53 - 0.5 + (i == j ? 1.0 : 0.0);
        }
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);

    double elapsed = run_threads(nthreads, worker);
    if (elapsed < 0)
        return 1;

    int rc = 0;
    if (failed) {
        printf("FAIL: a column had a norm that is not positive\n");
        rc = 1;
    }
    if (columns_done != n) {
        printf("FAIL: columns_done = %ld, want %ld\n", columns_done, n);
        rc = 1;
    }
    uint64_t r = 0x0f7e57ULL;
    for (int p = 0; p < 64 && rc == 0; p++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        long i = (long)((r >> 33) % (uint64_t)n);
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        long j = p % 4 == 0 ? i : (long)((r >> 33) % (uint64_t)n);
        double d = 0.0;
        for (long x = 0; x < n; x++)
            d += a[i * n + x] * a[j * n + x];
        if (!(fabs(d - (i == j ? 1.0 : 0.0)) < 1e-8)) {
            printf("FAIL: |q%ld . q%ld - delta| = %g\n", i, j, fabs(d - (i == j ? 1.0 : 0.0)));
            rc = 1;
        }
    }
    uint64_t h = fnv1a64(a, (size_t)n * (size_t)n * sizeof(double));
    printf("img_mgs_counter n=%ld threads=%d hash=%016" PRIx64 " time=%.3f\n", n, nthreads, h, elapsed);
    free(a);
    return rc;
}
