// Shared by the C files of the preload (not part of its module interface).
#ifndef CDSM_PRELOAD_INTERNAL_H
#define CDSM_PRELOAD_INTERNAL_H

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>

#define TLS __thread __attribute__((tls_model("initial-exec")))

/* The libc function an interposer stands in front of, looked up once. */
#define REAL(name)                                                                                                \
    static __typeof__(name) *real_##name;                                                                         \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* The runtime's own short locks (heap metadata, the host queue, lock-table
 * entries): never held across a fault or a call into the runtime, so the
 * runtime thread may take them too; a waiter yields after a few spins (the
 * holder may share its CPU). The runtime thread runs SCHED_FIFO, and a
 * FIFO thread's sched_yield never lets an ordinary holder on its CPU run:
 * after a while the waiter sleeps instead. */
static inline void spin(volatile int *word) {
    for (int n = 0; __atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE); n++) {
        if (n > 256) {
            struct timespec pause = {0, 1000};
            nanosleep(&pause, NULL);
        } else if (n > 32) {
            sched_yield();
        }
    }
}

static inline void unspin(volatile int *word) { __atomic_store_n(word, 0, __ATOMIC_RELEASE); }

/* CDSMKernel's, linked into the same library (see CDSMKernel.h):
 * - the runtime's descriptors, at the top of the descriptor range and
 *   marked, stay out of the program's way (resources.c);
 * - the program's memory read and written as the kernel does (EFAULT);
 * - the program's DSM mappings, rebuilt as private copies in a forked
 *   child (image.c, preload.c). */
int cdsm_high_fd(int fd);
int cdsm_is_runtime_fd(int fd);
void cdsm_release_fd(int fd);
void cdsm_forget_runtime_fds(void);
int cdsm_next_runtime_fd(int from);
int cdsm_copy_in(void *to, const void *from, size_t length);
int cdsm_copy_out(void *to, const void *from, size_t length);
int cdsm_mapping_at(int i, uint64_t *start, uint64_t *length);
int cdsm_privatize_mappings(void);

/* Set on threads the runtime owns (the runtime thread): every interposer
 * passes their calls straight through. */
extern TLS int dsm_runtime_thread;
/* > 0 while a program thread runs inside the runtime (a Swift entry point):
 * what the runtime allocates there is private memory, never the DSM heap. */
extern TLS int dsm_in_runtime;

#define IN_RUNTIME(expr)                                                                                          \
    ({                                                                                                            \
        dsm_in_runtime++;                                                                                         \
        __typeof__(expr) in_runtime_result_ = (expr);                                                             \
        dsm_in_runtime--;                                                                                         \
        in_runtime_result_;                                                                                       \
    })
#define IN_RUNTIME_VOID(expr)                                                                                     \
    do {                                                                                                          \
        dsm_in_runtime++;                                                                                         \
        expr;                                                                                                     \
        dsm_in_runtime--;                                                                                         \
    } while (0)

/* The first pages of each node's arena of the DSM heap, kept out of
 * allocation for the node's table of thread-specific data keys (keys.c). */
void *dsm_heap_reserved(int node);
size_t dsm_key_table_bytes(void);
/* A program thread ends: its keys' destructors run (keys.c). */
void dsm_key_destructors(void);

/* Image mode is on in this process (main runs on node 0, threads spread). */
extern int dsm_image;
extern int dsm_node;
extern int dsm_nodes_count;

/* How many allocations the runtime has made in this process (image.c):
 * read by Tests/Programs/alloc_per_fault.c through dlsym. */
uint64_t dsm_runtime_allocations(void);

/* The runtime thread's own allocator (runtime_heap.c): no lock another
 * thread could hold; other threads' frees are handed back lock-free. */
void *dsm_runtime_alloc(size_t size, size_t alignment);
void dsm_runtime_free(void *p);
size_t dsm_runtime_usable_size(void *p);
int dsm_runtime_heap_contains(const void *p);

/* The DSM heap (heap.c). */
void *dsm_heap_alloc(size_t size, size_t alignment, int zero);
void dsm_heap_free(void *p);
/* Writes one line (printf format) to stderr the first time `*told` is
 * found 0 in this process: what the runtime refuses or runs out of is said
 * once, not at every call (resources.c). */
void dsm_tell_once(int *told, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* fork() in image mode: the child writes a byte here once it has copied
 * the program's memory (image.c), then closes it. */
extern int dsm_fork_sync_fd;
/* Reads every handed-out page of this node's arena (before a fork). */
void dsm_heap_touch_used(void);
/* A forked child: the heap serves no more blocks and frees nothing. */
void dsm_heap_forked(void);
/* Whether [start, start + length) meets the heap's reservation. */
int dsm_heap_overlaps(uintptr_t start, size_t length);
int dsm_heap_contains(const void *p);
int dsm_heap_arena_of(const void *p);
size_t dsm_heap_usable_size(const void *p);
/* Frees a block of another node's arena (image.c: a message to its node). */
void dsm_remote_free(void *p);

/* Whether `p` is in memory every node shares in image mode (heap, data). */
int dsm_shared_address(const void *p);

/* A range of addresses, [start, end). */
typedef struct {
    uintptr_t start, end;
} dsm_range;
/* Loaded objects (objects.c): the writable data of the program's objects
 * (the executable first, {0, 0} if it has none, then its libraries), and
 * the code of the runtime's own (libc, the dynamic linker, this library
 * and what it needs). Each returns how many ranges it wrote. */
int dsm_program_data(dsm_range *out, int max);
int dsm_runtime_text(dsm_range *out, int max);

/* futex(2) on shared memory through the lock service (sync.c): the raw
 * result, >= 0 or -errno, as the kernel's call would return it. */
long dsm_futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout, uint32_t bitset);
/* Routes futex calls that bypass libc's syscall() (futex_trap.c). */
void dsm_trap_futexes(const dsm_range *shared, int count);

/* Whether synchronisation objects at `p` go to the distributed service. */
static inline int dsm_sync_object(const volatile void *p) {
    /* One node: every thread is in one process, glibc's objects just work. */
    return dsm_image && dsm_nodes_count > 1 && !dsm_runtime_thread && !dsm_in_runtime &&
           dsm_shared_address((const void *)p);
}

/* Image mode start-up on every node (image.c): node 0 returns main's
 * status, the other nodes never return. */
int dsm_image_main(int (*real_main)(int, char **, char **), int argc, char **argv, char **envp);
/* Image mode: maps the image and meets the other nodes (once). */
void dsm_image_setup(int (*real_main)(int, char **, char **));
/* exit() on a node other than 0. */
void dsm_image_exit_elsewhere(int status) __attribute__((noreturn));
int dsm_heap_ready(void);

#endif
