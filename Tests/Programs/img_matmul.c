/*
 * img_matmul [n] [threads] - C = A x B (n x n, row-major) as a plain pthreads
 * program, for image mode (`dsmrun -n N`).
 *
 * A and B are in the heap (malloc); C is a global bss array. The rows of C
 * are split in contiguous blocks among the threads. Thread arguments are
 * pointers into a struct array in main's stack; every thread returns a heap
 * block through pthread_join with a checksum of its rows, which main frees;
 * the sum of these checksums must equal the checksum main computes over C.
 * Main also recomputes a sample of entries (same operations, same order:
 * equal bits expected). Every entry is sum_k A[i][k]*B[k][j] in increasing
 * k whatever the thread count, so the result is bit-identical for any
 * thread count.
 *
 * Prints
 *   img_matmul n=<n> threads=<t> hash=<FNV-1a 64 of C, 16 hex> time=<s>
 * Exit 0: pass, 1: wrong result, 2: bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_N 1024
#define MAX_THREADS 64

static double C[MAX_N * MAX_N]; /* bss */

struct targ {
    int id;
    long n;
    long row0, row1; /* rows [row0, row1) */
    const double *a, *b;
};

struct tresult {
    long rows;
    uint64_t checksum;
};

/* An order-independent checksum of entries [from, to) of C: the wrapping
 * sum of a mix of each entry's bits and index. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t checksum(size_t from, size_t to)
{
    uint64_t s = 0;
    for (size_t i = from; i < to; i++) {
        uint64_t bits;
        memcpy(&bits, &C[i], sizeof bits);
        s += mix(bits ^ (i * 0x9e3779b97f4a7c15ULL));
    }
    return s;
}

static uint64_t fnv1a(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker(void *p)
{
    const struct targ *arg = p;
    const long n = arg->n;
    const double *a = arg->a, *b = arg->b;
    for (long i = arg->row0; i < arg->row1; i++) {
        double *c = C + (size_t)i * (size_t)n;
        for (long j = 0; j < n; j++)
            c[j] = 0.0;
        for (long k = 0; k < n; k++) {
            const double aik = a[(size_t)i * (size_t)n + (size_t)k];
            const double *bk = b + (size_t)k * (size_t)n;
            for (long j = 0; j < n; j++)
                c[j] += aik * bk[j];
        }
    }
    struct tresult *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    r->rows = arg->row1 - arg->row0;
    r->checksum = checksum((size_t)arg->row0 * (size_t)n, (size_t)arg->row1 * (size_t)n);
    return r;
}

static int usage(void)
{
    fprintf(stderr, "usage: img_matmul [n 1..%d] [threads 1..%d]\n", MAX_N, MAX_THREADS);
    return 2;
}

int main(int argc, char **argv)
{
    long n = 256;
    int threads = 4;
    if (argc > 3)
        return usage();
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 1 || n > MAX_N)
            return usage();
    }
    if (argc > 2) {
        char *end;
        long t = strtol(argv[2], &end, 10);
        if (*end || t < 1 || t > MAX_THREADS)
            return usage();
        threads = (int)t;
    }

    size_t count = (size_t)n * (size_t)n;
    double *a = malloc(count * sizeof(double));
    double *b = malloc(count * sizeof(double));
    if (!a || !b) {
        printf("FAIL: malloc of 2 x %zu bytes\n", count * sizeof(double));
        return 1;
    }
    uint64_t s = 0x696d676d6d756cULL ^ (uint64_t)n;
    for (size_t i = 0; i < count; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        a[i] = (double)(s >> 11) * 0x1p-52 - 1.0;
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        b[i] = (double)(s >> 11) * 0x1p-52 - 1.0;
    }

    pthread_t tid[MAX_THREADS];
    struct targ args[MAX_THREADS]; /* in main's stack */
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        args[t] = (struct targ){
            .id = t, .n = n, .row0 = n * t / threads, .row1 = n * (t + 1) / threads, .a = a, .b = b};
        if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) {
            printf("FAIL: pthread_create %d\n", t);
            return 1;
        }
    }
    int rc = 0;
    long rows = 0;
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        void *v = NULL;
        int e = pthread_join(tid[t], &v);
        if (e != 0 || !v) {
            printf("FAIL: pthread_join %d: error %d, result %p\n", t, e, v);
            rc = 1;
            continue;
        }
        const struct tresult *r = v;
        if (r->rows != args[t].row1 - args[t].row0) {
            printf("FAIL: thread %d did %ld rows, want %ld\n", t, r->rows, args[t].row1 - args[t].row0);
            rc = 1;
        }
        rows += r->rows;
        sum += r->checksum;
        free(v);
    }
    double elapsed = now() - t0;

    if (rc == 0 && rows != n) {
        printf("FAIL: %ld rows computed, want %ld\n", rows, n);
        rc = 1;
    }
    uint64_t mine = checksum(0, count);
    if (rc == 0 && sum != mine) {
        printf("FAIL: sum of the threads' checksums %016" PRIx64 " != checksum of C %016" PRIx64 "\n", sum, mine);
        rc = 1;
    }
    /* Recompute a sample of entries, always including the corners. */
    uint64_t r = 0x5a3b1eULL;
    for (int p = 0; p < 64 && rc == 0; p++) {
        long i, j;
        if (p < 4) {
            i = (p & 1) ? n - 1 : 0;
            j = (p & 2) ? n - 1 : 0;
        } else {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            i = (long)((r >> 33) % (uint64_t)n);
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            j = (long)((r >> 33) % (uint64_t)n);
        }
        double want = 0.0;
        for (long k = 0; k < n; k++)
            want += a[(size_t)i * (size_t)n + (size_t)k] * b[(size_t)k * (size_t)n + (size_t)j];
        double got = C[(size_t)i * (size_t)n + (size_t)j];
        if (memcmp(&got, &want, sizeof got) != 0) {
            printf("FAIL: C[%ld][%ld] = %.17g, want %.17g\n", i, j, got, want);
            rc = 1;
        }
    }

    uint64_t h = fnv1a(C, count * sizeof(double));
    printf("img_matmul n=%ld threads=%d hash=%016" PRIx64 " time=%.3f\n", n, threads, h, elapsed);
    free(a);
    free(b);
    return rc;
}
