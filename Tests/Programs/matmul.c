/*
 * matmul.c n - C = A x B on n x n doubles in one System V segment.
 *
 * Row-major A, B, C one after the other. Node 0 fills A and B with
 * deterministic pseudo-random values; node i computes the row block
 * [n*i/N, n*(i+1)/N) of C. Every C[i][j] sums its products in ascending k
 * whatever N is, so the result is bit-identical for any node count.
 *
 * Node 0 prints
 *   matmul n=<n> nodes=<N> hash=<FNV-1a 64 of C's bytes, 16 hex>
 *   time=<seconds>
 * and recomputes a sample of entries (exit 1 on a mismatch).
 */
#include "common.h"

int main(int argc, char **argv)
{
    t_init_env("matmul");
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
    if (n < 1 || n > 16384)
        t_die(0, "usage: matmul n (1 <= n <= 16384)");
    t_barrier_init();

    size_t nn = (size_t)n * (size_t)n;
    double *seg = t_shm_open(2, 3 * nn * sizeof(double), NULL);
    double *A = seg, *B = seg + nn, *C = seg + 2 * nn;

    if (t_me == 0) {
        uint64_t s = 0x6d61746d756cULL ^ (uint64_t)n;
        for (size_t i = 0; i < nn; i++)
            A[i] = t_rand_double(&s);
        for (size_t i = 0; i < nn; i++)
            B[i] = t_rand_double(&s);
    }
    t_barrier();
    double t0 = t_now();

    long lo = n * t_me / t_n, hi = n * (t_me + 1) / t_n;
    for (long i = lo; i < hi; i++) {
        double *ci = C + (size_t)i * n;
        for (long j = 0; j < n; j++)
            ci[j] = 0.0;
        for (long k = 0; k < n; k++) {
            double aik = A[(size_t)i * n + k];
            const double *bk = B + (size_t)k * n;
            for (long j = 0; j < n; j++)
                ci[j] += aik * bk[j];
        }
    }
    t_barrier();
    double elapsed = t_now() - t0;

    int rc = 0;
    if (t_me == 0) {
        uint64_t h = t_fnv1a(C, nn * sizeof(double));
        printf("matmul n=%ld nodes=%d hash=%016" PRIx64 "\n", n, t_n, h);
        printf("time=%.6f\n", elapsed);

        uint64_t s = 0xc0ffee;
        for (int t = 0; t < 64; t++) {
            long i = t == 0 ? n - 1 : (long)(t_rand_next(&s) % (uint64_t)n);
            long j = t == 0 ? n - 1 : (long)(t_rand_next(&s) % (uint64_t)n);
            double c = 0.0;
            for (long k = 0; k < n; k++)
                c += A[(size_t)i * n + k] * B[(size_t)k * n + j];
            double got = C[(size_t)i * n + j];
            if (memcmp(&c, &got, sizeof c) != 0) {
                t_msg("FAIL: C[%ld][%ld] = %.17g, expected %.17g", i, j, got, c);
                rc = 1;
                break;
            }
        }
    }
    return t_finish(rc);
}
