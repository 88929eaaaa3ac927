/*
 * A tiny malloc-counting preload for the allocation benchmark: counts calls
 * to malloc, calloc, realloc, aligned_alloc and posix_memalign made by any
 * thread of the process (the runtime's included). `alloc_counter_get()` reads
 * the count. Passes every call on to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

static uint64_t count;
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

uint64_t alloc_counter_get(void) { return __atomic_load_n(&count, __ATOMIC_SEQ_CST); }

void *malloc(size_t n) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    void *p = __libc_memalign(al, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
