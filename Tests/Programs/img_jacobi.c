/*
 * img_jacobi [n] [threads] [steps] - a Jacobi stencil as people write it
 * with pthreads: two n x n grids in the heap, each thread relaxing a block
 * of rows, and after every step each thread folds its largest change into
 * a shared global under a mutex; a barrier, thread 0 records and resets
 * the global and swaps the grids, a barrier.
 *
 * The edges are fixed (top 1.0, the rest 0.0). Each point's update is the
 * same whatever the thread count, and max is order-independent, so the
 * hash and the change history are too.
 *
 * Prints
 *   img_jacobi n=<n> threads=<t> steps=<s> hash=<FNV-1a 64 of the grid>
 *     change=<last step's largest change> time=<s>
 * and checks that the largest change never grows. Exit 0: pass, 1: wrong
 * result, 2: bad usage.
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

#include "img_run.h"

static int n = 256, nthreads = 4, steps = 200;
static double *grid, *next;
static double max_change;
static pthread_mutex_t change_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;
static double *history;

static void *worker(void *arg)
{
    long me = (long)arg;
    int first = 1 + (int)((long)(n - 2) * me / nthreads);
    int last = 1 + (int)((long)(n - 2) * (me + 1) / nthreads);
    for (int s = 0; s < steps; s++) {
        double mine = 0.0;
        for (int i = first; i < last; i++)
            for (int j = 1; j < n - 1; j++) {
                double v = 0.25 * (grid[(i - 1) * n + j] + grid[(i + 1) * n + j] + grid[i * n + j - 1] +
                                   grid[i * n + j + 1]);
                double d = fabs(v - grid[i * n + j]);
                if (d > mine)
                    mine = d;
                next[i * n + j] = v;
            }
        pthread_mutex_lock(&change_lock);
        if (mine > max_change)
            max_change = mine;
        pthread_mutex_unlock(&change_lock);
        pthread_barrier_wait(&barrier);
        if (me == 0) {
            history[s] = max_change;
            max_change = 0.0;
            double *t = grid;
            grid = next;
            next = t;
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n = (int)strtol(argv[1], NULL, 10);
    if (argc > 2)
        nthreads = (int)strtol(argv[2], NULL, 10);
    if (argc > 3)
        steps = (int)strtol(argv[3], NULL, 10);
    if (argc > 4 || n < 3 || n > 8192 || nthreads < 1 || nthreads > 64 || steps < 1 || steps > 100000) {
        fprintf(stderr, "usage: img_jacobi [n 3..8192] [threads 1..64] [steps 1..100000]\n");
        return 2;
    }
    grid = calloc((size_t)n * n, sizeof(double));
    next = calloc((size_t)n * n, sizeof(double));
    history = calloc((size_t)steps, sizeof(double));
    if (!grid || !next || !history) {
        printf("FAIL: malloc\n");
        return 1;
    }
    for (int j = 0; j < n; j++)
        grid[j] = next[j] = 1.0;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);

    double elapsed = run_threads(nthreads, worker);
    if (elapsed < 0)
        return 1;

    int rc = 0;
    for (int s = 1; s < steps; s++)
        if (!(history[s] <= history[s - 1]) || !(history[s] > 0.0)) {
            printf("FAIL: largest change %g at step %d after %g\n", history[s], s, history[s - 1]);
            rc = 1;
            break;
        }
    uint64_t h = fnv1a64(grid, (size_t)n * n * sizeof(double));
    printf("img_jacobi n=%d threads=%d steps=%d hash=%016" PRIx64 " change=%.6g time=%.3f\n", n, nthreads, steps, h,
           history[steps - 1], elapsed);
    free(grid);
    free(next);
    free(history);
    return rc;
}
