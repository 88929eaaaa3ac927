/*
 * img_run.h - what img_mgs_counter, img_workqueue and img_jacobi share
 * apart from their kernels: starting and timing their threads, and the
 * FNV-1a 64 hash of the result they print.
 */
#ifndef DSM_IMG_RUN_H
#define DSM_IMG_RUN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Runs worker((void *)t) for t = 0 .. threads-1 (at most 64) on threads of
 * their own and joins them. Returns the seconds they took, or -1 after
 * printing FAIL when one could not be started. */
__attribute__((unused)) static double run_threads(int threads, void *(*worker)(void *))
{
    pthread_t tid[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)t) != 0) {
            printf("FAIL: pthread_create %ld\n", t);
            return -1;
        }
    for (int t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

__attribute__((unused)) static uint64_t fnv1a64(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

#endif
