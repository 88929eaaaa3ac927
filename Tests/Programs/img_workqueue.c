/*
 * img_workqueue [n] [threads] - a work queue as people write one: threads
 * take the next row of an n x n Mandelbrot image from a shared index under
 * a mutex until none is left, and write their row of the image (bytes, so
 * several rows share a page). The index, the mutex and the image pointer
 * are globals side by side.
 *
 * Prints
 *   img_workqueue n=<n> threads=<t> hash=<FNV-1a 64 of the image> time=<s>
 * and checks that every row was taken exactly once. Exit 0: pass, 1: wrong
 * result, 2: bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "img_run.h"

static int n = 512;
static int nthreads = 4;
static unsigned char *image;
static int next_row;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static int *taken; /* times each row was handed out */

static void render_row(int y)
{
    double ci = -1.25 + 2.5 * y / n;
    for (int x = 0; x < n; x++) {
        double cr = -2.0 + 2.5 * x / n, zr = 0, zi = 0;
        int it = 0;
        while (it < 255 && zr * zr + zi * zi < 4.0) {
            double t = zr * zr - zi * zi + cr;
            zi = 2 * zr * zi + ci;
            zr = t;
            it++;
        }
        image[(size_t)y * n + x] = (unsigned char)it;
    }
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        int y = next_row < n ? next_row++ : -1;
        if (y >= 0)
            taken[y]++;
        pthread_mutex_unlock(&queue_lock);
        if (y < 0)
            return NULL;
        render_row(y);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n = (int)strtol(argv[1], NULL, 10);
    if (argc > 2)
        nthreads = (int)strtol(argv[2], NULL, 10);
    if (argc > 3 || n < 2 || n > 16384 || nthreads < 1 || nthreads > 64) {
        fprintf(stderr, "usage: img_workqueue [n 2..16384] [threads 1..64]\n");
        return 2;
    }
    image = malloc((size_t)n * n);
    taken = calloc((size_t)n, sizeof *taken);
    if (!image || !taken) {
        printf("FAIL: malloc\n");
        return 1;
    }
    double elapsed = run_threads(nthreads, worker);
    if (elapsed < 0)
        return 1;

    int rc = 0;
    for (int y = 0; y < n; y++)
        if (taken[y] != 1) {
            printf("FAIL: row %d was taken %d times\n", y, taken[y]);
            rc = 1;
            break;
        }
    uint64_t h = fnv1a64(image, (size_t)n * n);
    printf("img_workqueue n=%d threads=%d hash=%016" PRIx64 " time=%.3f\n", n, nthreads, h, elapsed);
    free(image);
    free(taken);
    return rc;
}
