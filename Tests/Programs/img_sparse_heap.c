// A sparse allocation far larger than what it touches, as programs sized
// for the worst case make (a grid allocated for the largest input): Linux's
// overcommit grants it and charges only the pages written.
//
// Usage: img_sparse_heap [gib]   (exit 0: pass; default 16 GiB)
// mallocs `gib` GiB at once, has 4 threads write one int in each of 64
// pages spread over the whole block, checks every value from main, and
// prints `img_sparse_heap gib= rss_mib= failures=` where rss_mib is main's
// node's resident memory at the end (/proc/self/status VmRSS): a few MiB
// over the program's own, not a share of the block.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define PAGES_PER_THREAD 64

static char *block;
static size_t block_bytes;

static size_t offset_of(int thread, int k) {
    size_t slots = (size_t)THREADS * PAGES_PER_THREAD;
    size_t slot = (size_t)k * THREADS + (size_t)thread;
    return (block_bytes / slots) * slot / 4096 * 4096;
}

static void *writer(void *arg) {
    int t = (int)(long)arg;
    for (int k = 0; k < PAGES_PER_THREAD; k++) *(int *)(block + offset_of(t, k)) = 1000 * t + k + 1;
    return NULL;
}

static long resident_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

int main(int argc, char **argv) {
    long gib = argc > 1 ? atol(argv[1]) : 16;
    if (gib < 1 || gib > 256) {
        fprintf(stderr, "usage: img_sparse_heap [gib 1..256]\n");
        return 2;
    }
    block_bytes = (size_t)gib << 30;
    block = malloc(block_bytes);
    if (!block) {
        printf("FAIL: malloc(%ld GiB) returned NULL\n", gib);
        printf("img_sparse_heap gib=%ld rss_mib=%ld failures=1\n", gib, resident_mib());
        return 1;
    }
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, writer, (void *)t);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    int failures = 0;
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < PAGES_PER_THREAD; k++) {
            int v = *(int *)(block + offset_of(t, k));
            if (v != 1000 * t + k + 1) {
                if (failures++ < 5) printf("FAIL: thread %d page %d holds %d\n", t, k, v);
            }
        }
    long rss = resident_mib();
    free(block);
    printf("img_sparse_heap gib=%ld rss_mib=%ld failures=%d\n", gib, rss, failures);
    return failures ? 1 : 0;
}
