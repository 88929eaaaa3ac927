// The DSM heap of image mode: the malloc family served from the heap
// container, which sits at one address on every node, so a block allocated
// on one node is valid, and can be freed, on any other.
//
// Each node allocates from its own arena (a 1/N slice of the container), so
// two nodes never hand out blocks on one page (no false sharing between
// nodes' allocations) and a free goes back to the node that owns the block:
// directly when it is this one, as a message otherwise.
//
// All metadata is private to the node (page bitmap, run lengths, per-span
// slot bitmaps in anonymous memory): the allocator never touches DSM memory
// while it holds its lock, so it never faults there, and the runtime thread
// may call it (to take a remote free, to give a thread a stack) without any
// risk of waiting on itself.
//
// Blocks up to 16 KiB come from 64 KiB spans of one size class; larger ones
// are runs of whole pages. Memory the runtime itself uses (Swift, the runtime
// thread, anything called from inside an entry point) comes from glibc's
// malloc as before: see dsm_private_allocation().
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define SPAN_PAGES 16UL
#define SPAN_BYTES (SPAN_PAGES * PAGE)
#define SLOT_WORDS (SPAN_BYTES / 16 / 64)

static const uint32_t class_size[] = {16,   32,   48,   64,   80,   96,   128,  160,  192,  256,   320,   384,
                                      512,  640,  768,  1024, 1280, 1536, 2048, 2560, 3072, 4096,  5120,  6144,
                                      8192, 10240, 12288, 16384};
#define CLASSES (int)(sizeof class_size / sizeof class_size[0])
#define SMALL_MAX 16384UL

static uintptr_t heap_start, heap_end;
static uintptr_t arena_start;
static uintptr_t arena_pages;
static uint64_t arena_bytes;
static int heap_on;

/* Private metadata, indexed by page or span of this node's arena. */
static uint64_t *page_used;      /* bit per page: part of a run or span */
static uint64_t *page_dirty;     /* bit per page: handed out before (calloc must clear it) */
static uint32_t *run_pages;      /* at a large run's first page: its length in pages */
static uint8_t *span_class;      /* per span: size class + 1, 0 when not a span */
static uint16_t *span_free;      /* per span: free slots */
static int32_t *span_next, *span_prev;
static uint64_t (*span_slots)[SLOT_WORDS]; /* per span: bit set = slot free */
static int32_t partial[CLASSES];  /* per class: spans with free slots */
static uintptr_t next_fit;        /* where the page search starts */

static volatile int heap_lock_word;

static void *private_table(size_t bytes) {
    void *p = mmap(NULL, bytes ? bytes : PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void set_bits(uint64_t *bits, uintptr_t from, uintptr_t count, int on);

int dsm_heap_setup(uint64_t start, uint64_t size, int node, int nodes) {
    uint64_t per_node = (size / (uint64_t)nodes) & ~(SPAN_BYTES - 1);
    if (per_node < SPAN_BYTES) return -EINVAL;
    heap_start = (uintptr_t)start;
    heap_end = (uintptr_t)(start + size);
    arena_bytes = per_node;
    arena_start = (uintptr_t)(start + per_node * (uint64_t)node);
    arena_pages = per_node / PAGE;
    size_t spans = arena_pages / SPAN_PAGES;
    page_used = private_table(arena_pages / 8 + 8);
    page_dirty = private_table(arena_pages / 8 + 8);
    run_pages = private_table(arena_pages * sizeof(uint32_t));
    span_class = private_table(spans);
    span_free = private_table(spans * sizeof(uint16_t));
    span_next = private_table(spans * sizeof(int32_t));
    span_prev = private_table(spans * sizeof(int32_t));
    span_slots = private_table(spans * sizeof *span_slots);
    if (!page_used || !page_dirty || !run_pages || !span_class || !span_free || !span_next || !span_prev || !span_slots)
        return -ENOMEM;
    for (int c = 0; c < CLASSES; c++) partial[c] = -1;
    /* Every arena starts with its node's key table (keys.c), never handed out. */
    set_bits(page_used, 0, (dsm_key_table_bytes() + PAGE - 1) / PAGE, 1);
    __atomic_store_n(&heap_on, 1, __ATOMIC_RELEASE);
    return 0;
}

int dsm_heap_ready(void) { return __atomic_load_n(&heap_on, __ATOMIC_ACQUIRE); }

int dsm_heap_overlaps(uintptr_t start, size_t length) {
    return dsm_heap_ready() && start < heap_end && start + length > heap_start;
}

int dsm_heap_contains(const void *p) {
    uintptr_t a = (uintptr_t)p;
    return a >= heap_start && a < heap_end;
}

void *dsm_heap_reserved(int node) { return (void *)(heap_start + arena_bytes * (uint64_t)node); }

int dsm_heap_arena_of(const void *p) {
    if (!dsm_heap_contains(p)) return -1;
    return (int)(((uintptr_t)p - heap_start) / arena_bytes);
}

static int test_bit(const uint64_t *bits, uintptr_t i) { return (bits[i >> 6] >> (i & 63)) & 1; }

static void set_bits(uint64_t *bits, uintptr_t from, uintptr_t count, int on) {
    for (uintptr_t i = from; i < from + count; i++) {
        if (on) bits[i >> 6] |= 1UL << (i & 63);
        else bits[i >> 6] &= ~(1UL << (i & 63));
    }
}

/* First fit from next_fit, wrapping once. `align` in pages (power of two).
 * Returns the first page index or -1. Called with the lock held. */
static intptr_t find_pages(uintptr_t count, uintptr_t align) {
    for (int pass = 0; pass < 2; pass++) {
        uintptr_t from = pass == 0 ? next_fit : 0;
        uintptr_t limit = pass == 0 ? arena_pages : next_fit + count;
        if (limit > arena_pages) limit = arena_pages;
        uintptr_t i = (from + align - 1) & ~(align - 1);
        while (i + count <= limit) {
            /* Skip whole used words quickly. */
            if ((i & 63) == 0 && page_used[i >> 6] == ~0UL) {
                i += 64;
                continue;
            }
            uintptr_t j = 0;
            while (j < count && !test_bit(page_used, i + j)) j++;
            if (j == count) return (intptr_t)i;
            i = (i + j + 1 + align - 1) & ~(align - 1);
        }
    }
    return -1;
}

/* Takes `count` pages; returns the first page index and whether any was
 * handed out before. */
static intptr_t take_pages(uintptr_t count, uintptr_t align, int *dirty) {
    intptr_t first = find_pages(count, align);
    if (first < 0) return -1;
    *dirty = 0;
    for (uintptr_t i = (uintptr_t)first; i < (uintptr_t)first + count; i++) {
        if (test_bit(page_dirty, i)) {
            *dirty = 1;
            break;
        }
    }
    set_bits(page_used, (uintptr_t)first, count, 1);
    set_bits(page_dirty, (uintptr_t)first, count, 1);
    next_fit = (uintptr_t)first + count;
    if (next_fit >= arena_pages) next_fit = 0;
    return first;
}

static void give_pages(uintptr_t first, uintptr_t count) {
    set_bits(page_used, first, count, 0);
    if (first < next_fit) next_fit = first;
}

static int class_of(size_t size) {
    for (int c = 0; c < CLASSES; c++)
        if (class_size[c] >= size) return c;
    return -1;
}

static void unlink_partial(int c, int32_t s) {
    if (span_prev[s] >= 0) span_next[span_prev[s]] = span_next[s];
    else partial[c] = span_next[s];
    if (span_next[s] >= 0) span_prev[span_next[s]] = span_prev[s];
}

static void push_partial(int c, int32_t s) {
    span_prev[s] = -1;
    span_next[s] = partial[c];
    if (partial[c] >= 0) span_prev[partial[c]] = s;
    partial[c] = s;
}

static uint32_t slots_of(int c) { return (uint32_t)(SPAN_BYTES / class_size[c]); }

/* A block of class c, and whether its memory may hold old contents. */
static void *small_alloc(int c, int *dirty) {
    int32_t s = partial[c];
    if (s < 0) {
        intptr_t first = take_pages(SPAN_PAGES, SPAN_PAGES, dirty);
        if (first < 0) return NULL;
        s = (int32_t)((uintptr_t)first / SPAN_PAGES);
        span_class[s] = (uint8_t)(c + 1);
        uint32_t n = slots_of(c);
        span_free[s] = (uint16_t)n;
        memset(span_slots[s], 0, sizeof span_slots[s]);
        for (uint32_t i = 0; i < n; i++) span_slots[s][i >> 6] |= 1UL << (i & 63);
        push_partial(c, s);
    }
    *dirty = 1; /* slots are reused; only fresh spans could say otherwise */
    for (uint32_t w = 0; w < SLOT_WORDS; w++) {
        uint64_t bits = span_slots[s][w];
        if (!bits) continue;
        uint32_t i = w * 64 + (uint32_t)__builtin_ctzl(bits);
        span_slots[s][w] &= ~(1UL << (i & 63));
        if (--span_free[s] == 0) unlink_partial(c, s);
        return (void *)(arena_start + (uintptr_t)s * SPAN_BYTES + (uintptr_t)i * class_size[c]);
    }
    return NULL; /* not reached: a partial span has a free slot */
}

static void *large_alloc(size_t size, size_t alignment, int *dirty) {
    uintptr_t count = (size + PAGE - 1) / PAGE;
    uintptr_t align = alignment > PAGE ? alignment / PAGE : 1;
    intptr_t first = take_pages(count, align, dirty);
    if (first < 0) return NULL;
    run_pages[first] = (uint32_t)count;
    return (void *)(arena_start + (uintptr_t)first * PAGE);
}

/* `alignment`: a power of two. */
static void *arena_alloc(size_t size, size_t alignment, int *dirty) {
    if (size == 0) size = 1;
    if (size > arena_bytes) return NULL;
    void *p = NULL;
    spin(&heap_lock_word);
    if (size <= SMALL_MAX && alignment <= PAGE) {
        /* A power-of-two class is aligned to its size within a span. */
        size_t want = size < alignment ? alignment : size;
        int c = class_of(want);
        while (c >= 0 && c < CLASSES && alignment > 16 && (class_size[c] & (class_size[c] - 1)) != 0) c++;
        if (c >= 0 && c < CLASSES) p = small_alloc(c, dirty);
    } else {
        p = large_alloc(size, alignment, dirty);
    }
    unspin(&heap_lock_word);
    return p;
}

/* Frees a block of this node's arena. */
void dsm_heap_free_here(void *p) {
    uintptr_t offset = (uintptr_t)p - arena_start;
    if (offset >= arena_bytes) return;
    uintptr_t page = offset / PAGE;
    uintptr_t s = page / SPAN_PAGES;
    spin(&heap_lock_word);
    if (span_class[s]) {
        int c = span_class[s] - 1;
        uintptr_t i = (offset - s * SPAN_BYTES) / class_size[c];
        if (!((span_slots[s][i >> 6] >> (i & 63)) & 1)) {
            span_slots[s][i >> 6] |= 1UL << (i & 63);
            if (span_free[s]++ == 0) push_partial(c, (int32_t)s);
            if (span_free[s] == slots_of(c) && !(partial[c] == (int32_t)s && span_next[s] < 0)) {
                /* Empty and not the class's only span: the pages go back. */
                unlink_partial(c, (int32_t)s);
                span_class[s] = 0;
                give_pages(s * SPAN_PAGES, SPAN_PAGES);
            }
        }
    } else if (run_pages[page]) {
        uintptr_t count = run_pages[page];
        run_pages[page] = 0;
        give_pages(page, count);
    }
    unspin(&heap_lock_word);
}

size_t dsm_heap_usable_size(const void *p) {
    uintptr_t offset = (uintptr_t)p - heap_start;
    if (offset >= heap_end - heap_start) return 0;
    /* Blocks of other arenas: their size is in that node's tables; only
     * this node's are known here. */
    if ((uintptr_t)p < arena_start || (uintptr_t)p >= arena_start + arena_bytes) return 0;
    uintptr_t local = (uintptr_t)p - arena_start;
    uintptr_t page = local / PAGE;
    uintptr_t s = page / SPAN_PAGES;
    size_t n = 0;
    spin(&heap_lock_word);
    if (span_class[s]) {
        uint32_t size = class_size[span_class[s] - 1];
        n = size - (local - s * SPAN_BYTES) % size;
    } else if (run_pages[page]) {
        n = run_pages[page] * PAGE;
    }
    unspin(&heap_lock_word);
    return n;
}

// --- the malloc family ------------------------------------------------------

/* Said once: a program that runs out of the DSM heap may not print why. */
static int told_full;

static void tell_full(size_t size) {
    dsm_tell_once(&told_full,
                  "dsm[node %d]: the DSM heap cannot give %zu bytes (this node's arena is %llu MiB of DSM_HEAP_MB, "
                  "shared by the nodes): malloc returns NULL (ENOMEM); set DSM_HEAP_MB higher (at most 1048576)",
                  dsm_node, size, (unsigned long long)(arena_bytes >> 20));
}

void *dsm_heap_alloc(size_t size, size_t alignment, int zero) {
    int dirty = 1;
    void *p = arena_alloc(size, alignment < 16 ? 16 : alignment, &dirty);
    if (!p) {
        tell_full(size);
        errno = ENOMEM;
        return NULL;
    }
    /* Pages never handed out are zero: their first touch maps a zero page. */
    if (zero && dirty) memset(p, 0, size);
    return p;
}

/* Before a fork (image.c): every page of this node's arena that is handed
 * out is read, so that it is valid here and the child's copy has it. Read
 * without the lock (a fault must never happen under it): a page freed
 * meanwhile is read for nothing. */
void dsm_heap_touch_used(void) {
    if (!heap_on) return;
    for (uintptr_t w = 0; w < (arena_pages + 63) / 64; w++) {
        uint64_t word = __atomic_load_n(&page_used[w], __ATOMIC_RELAXED);
        while (word) {
            uintptr_t page = w * 64 + (uintptr_t)__builtin_ctzll(word);
            word &= word - 1;
            /* Through the kernel: a thread stack's guard page is handed
             * out too, and reading it directly would be SIGSEGV. */
            char byte;
            (void)cdsm_copy_in(&byte, (const void *)(arena_start + page * PAGE), 1);
        }
    }
}

/* A child forked in image mode (image.c): the heap is a private copy;
 * new blocks come from glibc, and its blocks are never freed (a free of a
 * block of another node's arena would need the runtime). */
static int heap_forked;

void dsm_heap_forked(void) {
    heap_forked = 1;
    __atomic_store_n(&heap_on, 0, __ATOMIC_RELEASE);
}

void dsm_heap_free(void *p) {
    if (heap_forked) return;
    if ((uintptr_t)p >= arena_start && (uintptr_t)p < arena_start + arena_bytes) {
        dsm_heap_free_here(p);
        return;
    }
    dsm_remote_free(p);
}

