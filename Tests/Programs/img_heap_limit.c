// Image mode: running out of the DSM heap is malloc returning NULL with
// ENOMEM, as glibc does, never a crash; memory freed after that is usable
// again, on the main thread and on a thread of another node.
//
// Usage: img_heap_limit [cap_mib]   (exit 0: pass)
// Allocates 16 MiB blocks (touching one byte of each) until malloc fails or
// `cap_mib` MiB are taken (default 1024). Prints `img_heap_limit mib=
// enomem= failures=`: under `DSM_HEAP_MB=256 dsmrun` the heap runs out
// before the cap (enomem=1); in a plain run the cap is reached (enomem=0).
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK (16UL << 20)
#define MAX_BLOCKS 4096

static void *blocks[MAX_BLOCKS];
static int failures;

static void *allocate_after(void *arg) {
    (void)arg;
    char *p = malloc(BLOCK);
    if (!p) return (void *)1;
    memset(p, 0x5a, 4096);
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    long cap = argc > 1 ? atol(argv[1]) : 1024;
    if (cap < 16 || cap > 65536) {
        fprintf(stderr, "usage: img_heap_limit [cap_mib 16..65536]\n");
        return 2;
    }
    int n = 0, enomem = 0;
    while ((long)(n + 1) * 16 <= cap && n < MAX_BLOCKS) {
        errno = 0;
        char *p = malloc(BLOCK);
        if (!p) {
            if (errno != ENOMEM) {
                printf("FAIL: malloc returned NULL with errno %d (%s), want ENOMEM\n", errno, strerror(errno));
                failures++;
            }
            enomem = 1;
            break;
        }
        p[0] = 1;
        p[BLOCK - 1] = 2;
        blocks[n++] = p;
    }
    long mib = (long)n * 16;
    errno = 0;
    if (enomem && calloc(1, BLOCK) != NULL) {
        printf("FAIL: calloc succeeded right after malloc ran out\n");
        failures++;
    }
    for (int i = 0; i < n; i++) free(blocks[i]);
    /* Freed memory serves again, here and on another node. */
    char *again = malloc(BLOCK);
    if (!again) {
        printf("FAIL: malloc after freeing everything: %s\n", strerror(errno));
        failures++;
    } else {
        again[0] = 3;
        free(again);
    }
    pthread_t t;
    void *r = (void *)1;
    if (pthread_create(&t, NULL, allocate_after, NULL) != 0 || pthread_join(t, &r) != 0 || r != NULL) {
        printf("FAIL: a thread could not allocate after the heap was freed\n");
        failures++;
    }
    printf("img_heap_limit mib=%ld enomem=%d failures=%d\n", mib, enomem, failures);
    return failures ? 1 : 0;
}
