// Image mode: a program's memory mistakes look as they do natively.
//
// Usage: img_guards stack-thread|stack-main|map-fixed
// - stack-thread: a thread recurses ~9 MiB deep into its 8 MiB stack: the
//   program dies of SIGSEGV (exit 139 from a shell), as natively, instead of
//   writing over the heap block below the stack;
// - stack-main: the same on main's stack;
// - map-fixed: an mmap(MAP_FIXED) over memory from malloc (in the DSM heap
//   under dsmrun) fails with EEXIST and leaves the block intact, while a
//   MAP_FIXED over the program's own mapping still works. Natively the
//   first replaces the block (glibc maps large blocks on their own), so the
//   plain run prints `replaced`.
// Prints `img_guards ... failures=` when it returns.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static volatile long sink;

static long deep(long n) {
    volatile char frame[1024];
    memset((char *)frame, (int)n, sizeof frame);
    if (n == 0) return frame[0];
    return deep(n - 1) + frame[n % 1024];
}

static void *recurse(void *arg) {
    sink = deep((long)arg);
    return NULL;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    size_t size = 1 << 20;
    char *block = malloc(size);
    if (!block) return 2;
    memset(block, 7, size);
    if (strcmp(what, "stack-thread") == 0 || strcmp(what, "stack-main") == 0) {
        long frames = 9 * 1024; /* ~1 KiB each: past an 8 MiB stack */
        if (what[6] == 't') {
            pthread_t t;
            pthread_create(&t, NULL, recurse, (void *)frames);
            pthread_join(t, NULL);
        } else {
            sink = deep(frames);
        }
        long changed = 0;
        for (size_t i = 0; i < size; i++) changed += block[i] != 7;
        printf("FAIL: the overflow returned (%ld bytes of a heap block changed)\n", changed);
        printf("img_guards %s failures=1\n", what);
        return 1;
    }
    if (strcmp(what, "map-fixed") == 0) {
        char *page = (char *)(((unsigned long)block + 8191) & ~4095UL);
        void *r = mmap(page, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        int failures = 0;
        const char *outcome = r == MAP_FAILED ? (errno == EEXIST ? "eexist" : strerror(errno)) : "replaced";
        int intact = page[0] == 7 && page[4095] == 7;
        if (r == MAP_FAILED && !intact) {
            printf("FAIL: the refused mapping changed the block\n");
            failures++;
        }
        char *own = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        void *again = own == MAP_FAILED ? MAP_FAILED : mmap(own + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (again != own + 4096) {
            printf("FAIL: MAP_FIXED over the program's own mapping: %s\n", strerror(errno));
            failures++;
        }
        printf("img_guards map-fixed outcome=%s intact=%d failures=%d\n", outcome, intact, failures);
        return failures ? 1 : 0;
    }
    fprintf(stderr, "usage: img_guards stack-thread|stack-main|map-fixed\n");
    return 2;
}
