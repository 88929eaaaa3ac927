// The runtime thread's own allocator.
//
// The runtime thread serves every page fault of its node, so it must never
// wait for a lock that a faulting thread may hold. glibc's malloc arenas
// are such locks: a program thread inside a runtime call (a futex trapped
// from libgomp, a pthread call) allocates with glibc, and its stack and TLS
// are in the DSM heap, where another node's write can invalidate them; if
// it faults inside malloc, holding its arena's lock, while the runtime
// thread frees a block of that arena, neither moves (seen with OpenMP
// tasks: node 1 silent until the peer timeout).
//
// So everything the runtime thread allocates comes from here, a region
// only it carves (power-of-two classes, free lists, no lock), and it never
// calls glibc's free in image mode: blocks of glibc's it lets go are handed
// to the node's host thread (image.c), whose stack is private, to free.
// Other threads free blocks of this region by pushing them on a lock-free
// stack the runtime thread takes back at its next allocation.
#define _GNU_SOURCE
#include "internal.h"
#include <string.h>
#include <sys/mman.h>

/* A reservation: pages cost memory once used. */
#define REGION_BYTES (64UL << 30)
#define MIN_SHIFT 5 /* 32 bytes, header included */
#define CLASSES 36  /* up to 2^40 bytes: more than the region */
#define HEADER 16
#define MAGIC 0x52544850u /* "RTHP" */

typedef struct {
    uint64_t back;  /* from the user pointer back to the block's start */
    uint32_t klass; /* size class: the block is 1 << (klass + MIN_SHIFT) bytes */
    uint32_t magic;
} header;

typedef struct free_block {
    struct free_block *next;
} free_block;

static char *region, *bump, *region_end;
static free_block *free_lists[CLASSES];
/* Blocks other threads freed, for the runtime thread to take back. */
static free_block *remote_frees;

int dsm_runtime_heap_contains(const void *p) {
    return region && (const char *)p >= region && (const char *)p < region_end;
}

static int reserve_region(void) {
    void *r = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return -1;
    region = bump = r;
    region_end = region + REGION_BYTES;
    return 0;
}

static header *header_of(void *p) { return (header *)((char *)p - HEADER); }

static void *block_start(void *p) { return (char *)p - header_of(p)->back; }

static void push_local(void *block, uint32_t klass) {
    free_block *f = block;
    f->next = free_lists[klass];
    free_lists[klass] = f;
}

/* Blocks freed by other threads come back (each remembers its class). */
static void take_back_remote_frees(void) {
    free_block *f = __atomic_exchange_n(&remote_frees, NULL, __ATOMIC_ACQUIRE);
    while (f) {
        free_block *next = f->next;
        /* The header sits at the start of every block freed remotely. */
        header *h = (header *)f;
        push_local(f, h->klass);
        f = next;
    }
}

static uint32_t class_for(size_t bytes) {
    uint32_t k = 0;
    while (((size_t)1 << (k + MIN_SHIFT)) < bytes) k++;
    return k;
}

void *dsm_runtime_alloc(size_t size, size_t alignment) {
    if (!region && reserve_region() != 0) return NULL;
    if (__atomic_load_n(&remote_frees, __ATOMIC_RELAXED)) take_back_remote_frees();
    if (alignment < 16) alignment = 16;
    if (size > REGION_BYTES / 2 || alignment > (1UL << 20)) return NULL;
    size_t need = size + HEADER + (alignment > 16 ? alignment : 0);
    uint32_t klass = class_for(need);
    if (klass >= CLASSES) return NULL;
    size_t bytes = (size_t)1 << (klass + MIN_SHIFT);
    char *block;
    if (free_lists[klass]) {
        block = (char *)free_lists[klass];
        free_lists[klass] = free_lists[klass]->next;
    } else {
        /* Blocks of a page or more start on a page. */
        char *start = bytes >= 4096 ? (char *)(((uintptr_t)bump + 4095) & ~4095UL) : bump;
        if (start + bytes > region_end) return NULL;
        block = start;
        bump = start + bytes;
    }
    char *user = (char *)(((uintptr_t)block + HEADER + alignment - 1) & ~(uintptr_t)(alignment - 1));
    /* A copy of the header at the block's start, for a remote free. */
    *(header *)block = (header){(uint64_t)(user - block), klass, MAGIC};
    *header_of(user) = (header){(uint64_t)(user - block), klass, MAGIC};
    return user;
}

size_t dsm_runtime_usable_size(void *p) {
    header *h = header_of(p);
    return ((size_t)1 << (h->klass + MIN_SHIFT)) - h->back;
}

void dsm_runtime_free(void *p) {
    header *h = header_of(p);
    if (h->magic != MAGIC) return; /* not a block of ours: never corrupt the lists */
    uint32_t klass = h->klass;
    char *block = block_start(p);
    if (dsm_runtime_thread) {
        push_local(block, klass);
        return;
    }
    /* Another thread: onto the stack the runtime thread takes back. */
    *(header *)block = (header){0, klass, MAGIC};
    free_block *f = (free_block *)block;
    /* `next` overlays the header's first word: the class stays readable. */
    free_block *head = __atomic_load_n(&remote_frees, __ATOMIC_RELAXED);
    do f->next = head;
    while (!__atomic_compare_exchange_n(&remote_frees, &head, f, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}
