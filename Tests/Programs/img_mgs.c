/*
 * img_mgs [n] [threads] - Modified Gram-Schmidt (the Q factor of an n x n
 * matrix) as a plain pthreads program, for image mode (`dsmrun -n N`).
 *
 * The matrix is in the heap (malloc), column-major: column j at a + j*n.
 * The column norms (r_kk) go to a global bss array. Thread t owns the
 * columns j with j % threads == t. Thread arguments are pointers into a
 * struct array in main's stack; every thread returns a heap block through
 * pthread_join (columns normalised, checksum of its columns), which main
 * checks and frees.
 *
 * Column 0 is normalised by its owner, then a barrier. Step k (0..n-2):
 * every thread orthogonalises its columns j > k against q_k; the owner of
 * column k+1 then normalises it (it is its own column, already updated);
 * barrier. Every column sees the same operations in the same order whatever
 * the thread count, so the result is bit-identical for any thread count.
 *
 * Prints
 *   img_mgs n=<n> threads=<t> hash=<FNV-1a 64 of the matrix, 16 hex> time=<s>
 * and checks |q_i . q_j - delta_ij| < 1e-8 on a sample of column pairs.
 * Exit 0: pass, 1: wrong result, 2: bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_N 4096
#define MAX_THREADS 64

static double norms[MAX_N]; /* bss: r_kk of every column */
static pthread_barrier_t barrier;

struct targ {
    int id;
    int threads;
    long n;
    double *a;
};

struct tresult {
    long normalised; /* columns this thread normalised */
    uint64_t checksum; /* FNV-1a 64 of its columns, in increasing order */
};

static uint64_t fnv1a(const void *p, size_t len, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Normalises column k; returns 0 if its norm is not positive. */
static int normalise(double *a, long n, long k)
{
    double *q = a + (size_t)k * (size_t)n;
    double s = 0.0;
    for (long i = 0; i < n; i++)
        s += q[i] * q[i];
    double r = sqrt(s);
    if (!(r > 0.0))
        return 0;
    for (long i = 0; i < n; i++)
        q[i] /= r;
    norms[k] = r;
    return 1;
}

static uint64_t columns_checksum(const double *a, long n, int id, int threads)
{
    uint64_t h = FNV_OFFSET;
    for (long j = id; j < n; j += threads)
        h = fnv1a(a + (size_t)j * (size_t)n, (size_t)n * sizeof(double), h);
    return h;
}

static void *worker(void *p)
{
    const struct targ *arg = p;
    const int me = arg->id, t = arg->threads;
    const long n = arg->n;
    double *a = arg->a;
    long normalised = 0;
    int ok = 1;

    if (me == 0) {
        ok &= normalise(a, n, 0);
        normalised++;
    }
    pthread_barrier_wait(&barrier);

    for (long k = 0; k + 1 < n; k++) {
        const double *qk = a + (size_t)k * (size_t)n;
        /* First own column after k. */
        long j0 = k + 1 + (((me - (k + 1)) % t) + t) % t;
        for (long j = j0; j < n; j += t) {
            double *aj = a + (size_t)j * (size_t)n;
            double d = 0.0;
            for (long i = 0; i < n; i++)
                d += qk[i] * aj[i];
            for (long i = 0; i < n; i++)
                aj[i] -= d * qk[i];
        }
        if ((k + 1) % t == me) {
            ok &= normalise(a, n, k + 1);
            normalised++;
        }
        pthread_barrier_wait(&barrier);
    }

    struct tresult *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    r->normalised = ok ? normalised : -1;
    r->checksum = columns_checksum(a, n, me, t);
    return r;
}

int main(int argc, char **argv)
{
    long n = 256;
    int threads = 4;
    if (argc > 3) {
        fprintf(stderr, "usage: img_mgs [n 2..%d] [threads 1..%d]\n", MAX_N, MAX_THREADS);
        return 2;
    }
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 2 || n > MAX_N) {
            fprintf(stderr, "usage: img_mgs [n 2..%d] [threads 1..%d]\n", MAX_N, MAX_THREADS);
            return 2;
        }
    }
    if (argc > 2) {
        char *end;
        long t = strtol(argv[2], &end, 10);
        if (*end || t < 1 || t > MAX_THREADS) {
            fprintf(stderr, "usage: img_mgs [n 2..%d] [threads 1..%d]\n", MAX_N, MAX_THREADS);
            return 2;
        }
        threads = (int)t;
    }

    size_t count = (size_t)n * (size_t)n;
    double *a = malloc(count * sizeof(double));
    if (!a) {
        printf("FAIL: malloc of %zu bytes\n", count * sizeof(double));
        return 1;
    }
    /* Deterministic values in [-0.5, 0.5), plus n on the diagonal: well
     * conditioned. */
    uint64_t s = 0x696d676d6773ULL ^ (uint64_t)n;
    for (long j = 0; j < n; j++)
        for (long i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            double v = (double)(s >> 11) * 0x1p-53 - 0.5;
            a[(size_t)j * (size_t)n + (size_t)i] = v + (i == j ? (double)n : 0.0);
        }

    if (pthread_barrier_init(&barrier, NULL, (unsigned)threads) != 0) {
        printf("FAIL: pthread_barrier_init\n");
        return 1;
    }
    pthread_t tid[MAX_THREADS];
    struct targ args[MAX_THREADS]; /* in main's stack */
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        args[t] = (struct targ){.id = t, .threads = threads, .n = n, .a = a};
        if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) {
            printf("FAIL: pthread_create %d\n", t);
            return 1;
        }
    }
    int rc = 0;
    struct tresult results[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        void *v = NULL;
        int e = pthread_join(tid[t], &v);
        if (e != 0 || !v) {
            printf("FAIL: pthread_join %d: error %d, result %p\n", t, e, v);
            rc = 1;
            results[t].normalised = -2;
            continue;
        }
        results[t] = *(struct tresult *)v;
        free(v);
    }
    double elapsed = now() - t0;
    pthread_barrier_destroy(&barrier);

    for (int t = 0; t < threads && rc == 0; t++) {
        long want = (n - t + threads - 1) / threads; /* columns t, t+threads, ... < n */
        if (results[t].normalised != want) {
            printf("FAIL: thread %d normalised %ld columns, want %ld\n", t, results[t].normalised, want);
            rc = 1;
        } else if (results[t].checksum != columns_checksum(a, n, t, threads)) {
            printf("FAIL: thread %d: checksum %016" PRIx64 " of its columns differs from main's %016" PRIx64 "\n",
                   t, results[t].checksum, columns_checksum(a, n, t, threads));
            rc = 1;
        }
    }
    for (long k = 0; k < n && rc == 0; k++)
        if (!(norms[k] > 0.0) || !isfinite(norms[k])) {
            printf("FAIL: norm of column %ld is %g\n", k, norms[k]);
            rc = 1;
        }

    /* Orthonormality on a sample of column pairs. */
    uint64_t r = 0x0f7e57ULL;
    for (int p = 0; p < 64 && rc == 0; p++) {
        long i, j;
        switch (p) {
        case 0: i = 0; j = n - 1; break;
        case 1: i = n - 1; j = n - 1; break;
        case 2: i = 0; j = 0; break;
        case 3: i = n - 2; j = n - 1; break;
        default:
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            i = (long)((r >> 33) % (uint64_t)n);
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            j = (p % 4 == 0) ? i : (long)((r >> 33) % (uint64_t)n);
        }
        const double *qi = a + (size_t)i * (size_t)n, *qj = a + (size_t)j * (size_t)n;
        double d = 0.0;
        for (long x = 0; x < n; x++)
            d += qi[x] * qj[x];
        double err = fabs(d - (i == j ? 1.0 : 0.0));
        if (!(err < 1e-8)) { /* also catches NaN */
            printf("FAIL: orthonormality: |q%ld . q%ld - delta| = %g >= 1e-8\n", i, j, err);
            rc = 1;
        }
    }

    uint64_t h = fnv1a(a, count * sizeof(double), FNV_OFFSET);
    printf("img_mgs n=%ld threads=%d hash=%016" PRIx64 " time=%.3f\n", n, threads, h, elapsed);
    free(a);
    return rc;
}
