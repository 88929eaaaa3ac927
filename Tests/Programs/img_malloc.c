// Image mode: the malloc family across nodes. Each round, thread i
// allocates blocks of many sizes (16 B .. 1 MiB, plus posix_memalign and
// aligned_alloc blocks aligned to 64, 4096 and 65536), fills them with a
// pattern of its own and publishes them in a global array. After a barrier,
// thread (i+1) % threads (another node's) checks the pattern, grows two of
// them with realloc (contents kept), and frees everything. The rounds go on
// until 3 GiB were allocated in all, more than the heap holds (2 GiB), so
// the memory freed by other nodes is proven to be reused. Each round also
// checks that calloc returns zeroed memory: a third of the malloc-sized
// blocks are calloc'ed (after the first round: memory another thread freed
// and wrote to first), plus a block just freed dirty by the same thread;
// and malloc_usable_size >= the requested size (also for another thread's
// blocks).
//
// Blocks up to 64 KiB are filled entirely; larger ones in their first and
// last 4 KiB and 64 bytes every 64 KiB (every byte would make the run slow).
//
// Usage: img_malloc [threads [MiB in all]]   (exit 0: pass)
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64
#define DENSE 65536UL

static const size_t sizes[] = {
    16,     24,     40,     64,     100,    128,    200,    256,    500,     1000,    1024,    2000,    3000,
    4000,   4096,   4097,   5000,   8192,   12000,  16383,  16384,  16385,   20000,   32768,   40000,   65536,
    65537,  100000, 131072, 200000, 262144, 500000, 524288, 1048576, 1048576, 1048576, 1048576, 1048576, 1048576,
    1048576, 1048576,
};
#define NSIZES (int)(sizeof sizes / sizeof sizes[0])
/* Aligned blocks after the malloc ones: alignment and size. */
static const size_t aligned[][2] = {{64, 100},     {64, 5000},     {4096, 4096},
                                    {4096, 10000}, {65536, 65536}, {65536, 200000}};
#define NALIGNED (int)(sizeof aligned / sizeof aligned[0])
#define NBLOCKS (NSIZES + NALIGNED)
#define REALLOC_SMALL 9  /* sizes[9] == 1000: grown to 200000 */
#define REALLOC_LARGE 27 /* sizes[27] == 100000: grown to 300000 */

struct block {
    unsigned char *p;
    size_t size;
    uint32_t tag;
};

static struct block blocks[MAX_THREADS][NBLOCKS]; /* bss: published pointers */
static pthread_barrier_t barrier;
static int threads, rounds;
static long failures;

static void fail(const char *format, long a, long b, long c, long d) {
    if (__atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST) < 30) {
        printf("FAIL: ");
        printf(format, a, b, c, d);
        printf("\n");
        fflush(stdout);
    }
}

static inline unsigned char pattern_byte(uint32_t tag, size_t j) {
    uint32_t x = tag * 2654435761u + (uint32_t)j * 40503u + (uint32_t)(j >> 9);
    return (unsigned char)(x ^ (x >> 13) ^ (x >> 24));
}

/* Writes (check == 0) or checks the pattern in [from, to); returns the
 * index of the first wrong byte, or -1. */
static long range(unsigned char *p, size_t from, size_t to, uint32_t tag, int check) {
    for (size_t j = from; j < to; j++) {
        if (check) {
            if (p[j] != pattern_byte(tag, j)) return (long)j;
        } else {
            p[j] = pattern_byte(tag, j);
        }
    }
    return -1;
}

static long pattern(unsigned char *p, size_t size, uint32_t tag, int check) {
    if (size <= DENSE) return range(p, 0, size, tag, check);
    long bad = range(p, 0, 4096, tag, check);
    for (size_t off = DENSE; bad < 0 && off + 64 <= size - 4096; off += DENSE)
        bad = range(p, off, off + 64, tag, check);
    if (bad < 0) bad = range(p, size - 4096, size, tag, check);
    return bad;
}

/* The bytes `pattern` covers are all zero: -1, or the first other one. */
static long zero_check(const unsigned char *p, size_t size) {
    size_t from[3], to[3];
    if (size <= DENSE) {
        from[0] = 0, to[0] = size, from[1] = to[1] = from[2] = to[2] = 0;
    } else {
        from[0] = 0, to[0] = 4096, from[1] = DENSE, to[1] = size - 4096, from[2] = size - 4096, to[2] = size;
    }
    for (int r = 0; r < 3; r++) {
        for (size_t j = from[r]; j < to[r]; j++) {
            if (r == 1 && (j - DENSE) % DENSE >= 64) {
                j += DENSE - 64 - 1; /* to the next 64 KiB mark */
                continue;
            }
            if (p[j] != 0) return (long)j;
        }
    }
    return -1;
}

static uint32_t tag_of(int thread, int round, int index) {
    return (uint32_t)(thread * 1000003 + round * 1009 + index + 1);
}

static long long allocated_by[MAX_THREADS];

static void allocate_round(int me, int round) {
    long long bytes = 0;
    for (int k = 0; k < NBLOCKS; k++) {
        struct block *b = &blocks[me][k];
        size_t size, alignment = 0;
        int zeroed = 0;
        if (k < NSIZES) {
            size = sizes[k];
            zeroed = k % 3 == 1;
            b->p = zeroed ? calloc(1, size) : malloc(size);
        } else {
            alignment = aligned[k - NSIZES][0];
            size = aligned[k - NSIZES][1];
            if (k % 2 == 0) {
                void *q = NULL;
                int r = posix_memalign(&q, alignment, size);
                if (r) fail("thread %ld: posix_memalign(%ld, %ld): error %ld", me, (long)alignment, (long)size, r);
                b->p = r ? NULL : q;
            } else {
                size_t rounded = (size + alignment - 1) / alignment * alignment; /* C11: a multiple */
                b->p = aligned_alloc(alignment, rounded);
            }
        }
        b->size = size;
        b->tag = tag_of(me, round, k);
        if (!b->p) {
            fail("thread %ld round %ld: allocation of %ld bytes (block %ld) failed", me, round, (long)size, k);
            continue;
        }
        bytes += (long long)size;
        if (alignment && (uintptr_t)b->p % alignment != 0)
            fail("thread %ld: block at %#lx not aligned to %ld (block %ld)", me, (long)(uintptr_t)b->p,
                 (long)alignment, k);
        size_t usable = malloc_usable_size(b->p);
        if (usable < size)
            fail("thread %ld: malloc_usable_size %ld < requested %ld (block %ld)", me, (long)usable, (long)size, k);
        if (zeroed) {
            long bad = zero_check(b->p, size);
            if (bad >= 0)
                fail("thread %ld round %ld: calloc(%ld) (memory freed by another thread) byte %ld not zero", me, round,
                     (long)size, bad);
        }
        pattern(b->p, size, b->tag, 0);
    }
    allocated_by[me] += bytes;
}

/* Checks, grows two blocks of, and frees the blocks of thread `owner`. */
static void check_and_free(int me, int owner, int round) {
    for (int k = 0; k < NBLOCKS; k++) {
        struct block *b = &blocks[owner][k];
        if (!b->p) continue;
        long bad = pattern(b->p, b->size, b->tag, 1);
        if (bad >= 0)
            fail("round %ld: block %ld of thread %ld: wrong byte at offset %ld (seen from another thread)", round, k,
                 owner, bad);
        if (k % 8 == 0) { /* a remote look-up on another node: a sample */
            size_t usable = malloc_usable_size(b->p);
            if (usable < b->size)
                fail("block %ld of thread %ld: malloc_usable_size %ld < %ld from another thread", k, owner,
                     (long)usable, (long)b->size);
        }
        /* Dirty it from this node: the owner's calloc may get it back. */
        size_t head = b->size < 256 ? b->size : 256;
        memset(b->p, 0xEE, head);
        memset(b->p + b->size - head, 0xEE, head);
        if (k == REALLOC_SMALL || k == REALLOC_LARGE) {
            pattern(b->p, b->size, b->tag, 0); /* restore what realloc must keep */
            size_t grown = k == REALLOC_SMALL ? 200000 : 300000;
            unsigned char *q = realloc(b->p, grown);
            if (!q) {
                fail("round %ld: realloc of thread %ld's block %ld to %ld failed", round, owner, k, (long)grown);
                free(b->p);
            } else {
                bad = pattern(q, b->size, b->tag, 1);
                if (bad >= 0)
                    fail("round %ld: realloc of thread %ld's block %ld lost its contents (offset %ld)", round, owner,
                         k, bad);
                memset(q + b->size, 0x5A, grown - b->size);
                free(q);
            }
        } else {
            free(b->p);
        }
        b->p = NULL;
    }
}

/* calloc of a block just freed dirty (likely the same memory) is zeroed. */
static void calloc_check(int me, int round) {
    static const size_t csizes[] = {24, 256, 3000, 4096, 20000, 65536, 300000};
    for (int k = 0; k < (int)(sizeof csizes / sizeof csizes[0]); k++) {
        size_t size = csizes[k];
        unsigned char *p = malloc(size);
        if (!p) {
            fail("thread %ld round %ld: malloc(%ld) failed (calloc check %ld)", me, round, (long)size, k);
            continue;
        }
        memset(p, 0xA5, size);
        free(p);
        unsigned char *q = calloc(1, size);
        if (!q) {
            fail("thread %ld round %ld: calloc(%ld) failed (%ld)", me, round, (long)size, k);
            continue;
        }
        for (size_t j = 0; j < size; j++) {
            if (q[j] != 0) {
                fail("thread %ld round %ld: calloc(%ld) byte %ld not zero", me, round, (long)size, (long)j);
                break;
            }
        }
        memset(q, 0x3C, size);
        free(q);
    }
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    int owner = (me + threads - 1) % threads; /* I check the blocks of thread me-1 */
    for (int round = 0; round < rounds; round++) {
        allocate_round(me, round);
        pthread_barrier_wait(&barrier);
        check_and_free(me, owner, round);
        calloc_check(me, round);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv) {
    alarm(240);
    threads = argc > 1 ? atoi(argv[1]) : 4;
    long total_mib = argc > 2 ? atol(argv[2]) : 3072;
    if (threads < 1 || threads > MAX_THREADS || total_mib < 1) {
        fprintf(stderr, "usage: img_malloc [threads 1..%d [MiB in all]]\n", MAX_THREADS);
        return 2;
    }
    long long per_round = 0;
    for (int k = 0; k < NSIZES; k++) per_round += (long long)sizes[k];
    for (int k = 0; k < NALIGNED; k++) per_round += (long long)aligned[k][1];
    per_round *= threads;
    rounds = (int)(((long long)total_mib << 20) / per_round + 1);

    int r = pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    if (r) {
        printf("FAIL: pthread_barrier_init: %s\n", strerror(r));
        return 1;
    }
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            printf("FAIL: pthread_create %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < threads; i++) {
        r = pthread_join(t[i], NULL);
        if (r) fail("pthread_join %ld: error %ld", i, r, 0, 0);
    }
    long long total = 0;
    for (int i = 0; i < threads; i++) total += allocated_by[i];
    if (total <= (2LL << 30) && total_mib >= 3072)
        fail("only %ld MiB allocated in all, not more than the 2 GiB heap", (long)(total >> 20), 0, 0, 0);
    pthread_barrier_destroy(&barrier);
    printf("img_malloc threads=%d rounds=%d allocated_mib=%lld failures=%ld\n", threads, rounds, total >> 20,
           failures);
    return failures ? 1 : 0;
}
