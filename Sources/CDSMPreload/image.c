// Image mode: one program, main on node 0, its threads spread over the nodes.
//
// Start-up (image_main, from the __libc_start_main hook in preload.c): every
// node joins the run, moves the executable's writable data and bss into a
// container and maps the heap container (Swift: ImageMode.swift), then
//   - node 0 copies argv into the DSM heap and runs main on a stack taken
//     from the DSM heap, so a pointer to main's locals works on any node;
//   - the other nodes run the host loop on their main thread and wait.
// Each node has one host thread (node 0: a helper; others: the main thread).
// It does what the runtime thread must not (anything that touches DSM
// memory): it creates the program's threads with stacks in the DSM heap,
// joins them when they end and frees their stacks, runs exit() on node 0
// for a thread of another node, and ends its node when the program ends.
//
// The malloc family is interposed here too: program threads allocate from
// the DSM heap (heap.c); the runtime, the host's own bookkeeping and anything
// before start-up use glibc's malloc.
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

int dsm_image;
int dsm_node;
int dsm_nodes_count = 1;
/* The program's writable data (objects.c): the executable's, then its
 * libraries'. Each is a container every node maps. */
#define MAX_DATA 64
static dsm_range program_data[MAX_DATA];
static int program_data_count;

int dsm_shared_address(const void *p) {
    if (dsm_heap_contains(p)) return 1;
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < program_data_count; i++)
        if (a >= program_data[i].start && a < program_data[i].end) return 1;
    return 0;
}

static void die(const char *message) {
    char line[512];
    int n = snprintf(line, sizeof line, "dsm[node %d]: %s\n", dsm_node, message);
    if (n > 0) write(2, line, (size_t)n);
    _exit(1);
}

// --- the malloc family ------------------------------------------------------

static inline int use_heap(void) {
    return !dsm_runtime_thread && !dsm_in_runtime && dsm_heap_ready();
}

/* Every allocation the runtime makes passes here (its Swift and C++ code
 * call this malloc, the first in the process), on its own thread or on a
 * program thread inside a call: counted, so that a test can hold the fault
 * path to none (Tests/Programs/alloc_per_fault.c). */
static uint64_t runtime_allocations;

static inline void count_allocation(void) {
    if (dsm_runtime_thread || dsm_in_runtime) __atomic_fetch_add(&runtime_allocations, 1, __ATOMIC_RELAXED);
}

uint64_t dsm_runtime_allocations(void) { return __atomic_load_n(&runtime_allocations, __ATOMIC_RELAXED); }

/* The host thread's bell (an eventfd): work in its queue, or frees. */
static int host_bell = -1;

/* The runtime thread allocates from its own region (runtime_heap.c); a
 * block of glibc's it frees in image mode goes to the host thread. */
static void *deferred_frees;

static void free_later(void *p) {
    void *head = __atomic_load_n(&deferred_frees, __ATOMIC_RELAXED);
    do *(void **)p = head;
    while (!__atomic_compare_exchange_n(&deferred_frees, &head, p, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (!head) {
        uint64_t one = 1;
        ssize_t w = write(host_bell, &one, sizeof one);
        (void)w;
    }
}

/* Host thread: frees what the runtime thread handed over. */
static void free_deferred(void) {
    void *p = __atomic_exchange_n(&deferred_frees, NULL, __ATOMIC_ACQUIRE);
    while (p) {
        void *next = *(void **)p;
        __libc_free(p);
        p = next;
    }
}

static void *runtime_alloc(size_t size, size_t alignment) {
    count_allocation();
    void *p = dsm_runtime_alloc(size, alignment);
    if (!p) errno = ENOMEM;
    return p;
}

/* Every allocation: program threads from the DSM heap, the runtime thread
 * from its region, anything else (a program thread inside a runtime call,
 * a process before start-up) from glibc. */
static void *allocate(size_t size, size_t alignment, int zero) {
    if (use_heap()) return dsm_heap_alloc(size, alignment, zero);
    if (dsm_runtime_thread) {
        void *p = runtime_alloc(size, alignment);
        if (p && zero) memset(p, 0, size);
        return p;
    }
    count_allocation();
    if (zero) return __libc_calloc(1, size);
    return alignment > 16 ? __libc_memalign(alignment, size) : __libc_malloc(size);
}

void *malloc(size_t size) { return allocate(size, 16, 0); }

void free(void *p) {
    if (!p) return;
    if (dsm_heap_contains(p)) dsm_heap_free(p);
    else if (dsm_runtime_heap_contains(p)) dsm_runtime_free(p);
    else if (dsm_runtime_thread && dsm_image && host_bell >= 0) free_later(p);
    else __libc_free(p);
}

void *calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return allocate(total, 16, 1);
}

void *realloc(void *p, size_t size) {
    if (!p) return malloc(size);
    int in_dsm_heap = dsm_heap_contains(p), in_runtime_heap = dsm_runtime_heap_contains(p);
    /* A glibc block for a caller that allocates from glibc: glibc's realloc. */
    if (!in_dsm_heap && !in_runtime_heap && !use_heap() && !dsm_runtime_thread) {
        count_allocation();
        return __libc_realloc(p, size);
    }
    /* Size 0 frees, as glibc's realloc does, whichever heap the block is in. */
    if (size == 0) {
        free(p);
        return NULL;
    }
    size_t old = malloc_usable_size(p);
    /* Kept where it is: a DSM heap block that shrinks by less than half, a
     * block of the caller's own allocator that still holds `size`. Any
     * other block moves to the caller's allocator (a glibc block of a
     * program thread grows into the DSM heap; the runtime thread keeps no
     * glibc block; another thread takes none of the runtime's). */
    int keep = in_dsm_heap ? size <= old && size >= old / 2
             : in_runtime_heap ? dsm_runtime_thread && size <= old
             : !dsm_runtime_thread && size <= old;
    if (keep) return p;
    void *q = malloc(size);
    if (!q) return NULL;
    memcpy(q, p, old < size ? old : size);
    free(p);
    return q;
}

void *reallocarray(void *p, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

static int power_of_two(size_t n) { return n && !(n & (n - 1)); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    void *p = allocate(size, alignment, 0);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (!power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return allocate(size, alignment, 0);
}

void *memalign(size_t alignment, size_t size) { return aligned_alloc(power_of_two(alignment) ? alignment : 16, size); }

void *valloc(size_t size) { return aligned_alloc(4096, size); }

void *pvalloc(size_t size) { return aligned_alloc(4096, (size + 4095) & ~4095UL); }

size_t malloc_usable_size(void *p) {
    static size_t (*real)(void *);
    if (!p) return 0;
    if (dsm_runtime_heap_contains(p)) return dsm_runtime_usable_size(p);
    if (!dsm_heap_contains(p)) {
        if (!real) real = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
        return real(p);
    }
    size_t n = dsm_heap_usable_size(p);
    if (n == 0) n = (size_t)IN_RUNTIME(dsm_swift_remote_usable_size((uint64_t)(uintptr_t)p, dsm_heap_arena_of(p)));
    return n;
}

void dsm_remote_free(void *p) {
    /* The runtime thread allocates privately; it never frees program
     * memory, and could not wait on itself to send the message. */
    if (dsm_runtime_thread) return;
    IN_RUNTIME_VOID(dsm_swift_remote_free((uint64_t)(uintptr_t)p, dsm_heap_arena_of(p)));
}

// --- the host thread's queue -------------------------------------------------

typedef struct host_item {
    int kind;
    uint64_t a, b, c, d;
    struct host_item *next;
} host_item;

static host_item *host_head, *host_tail;
static volatile int host_lock_word;

void dsm_host_post(int kind, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    /* From the runtime's region on the runtime thread (free() routes it). */
    host_item *item = dsm_runtime_thread ? runtime_alloc(sizeof *item, 16) : __libc_malloc(sizeof *item);
    if (!item) die("out of memory in the host queue");
    *item = (host_item){kind, a, b, c, d, NULL};
    spin(&host_lock_word);
    if (host_tail) host_tail->next = item;
    else host_head = item;
    host_tail = item;
    unspin(&host_lock_word);
    uint64_t one = 1;
    ssize_t w = write(host_bell, &one, sizeof one);
    (void)w;
}

static host_item *host_take(void) {
    uint64_t count;
    for (;;) {
        spin(&host_lock_word);
        host_item *item = host_head;
        if (item) {
            host_head = item->next;
            if (!host_head) host_tail = NULL;
        }
        unspin(&host_lock_word);
        free_deferred();
        if (item) return item;
        ssize_t r = read(host_bell, &count, sizeof count);
        (void)r;
    }
}

// --- the program's threads ---------------------------------------------------

typedef struct {
    void *(*start)(void *);
    void *arg;
    void *stack;
    size_t stack_size;
} hosted_start;

static TLS hosted_start *hosted_self;
static TLS int hosted_finished;

static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static int (*real_pthread_join)(pthread_t, void **);
static int (*real_pthread_detach)(pthread_t);
typedef void (*pthread_exit_fn)(void *) __attribute__((noreturn));
static pthread_exit_fn real_pthread_exit;

static void resolve_thread_functions(void) {
    if (real_pthread_create) return;
    real_pthread_join = (int (*)(pthread_t, void **))dlsym(RTLD_NEXT, "pthread_join");
    real_pthread_detach = (int (*)(pthread_t))dlsym(RTLD_NEXT, "pthread_detach");
    real_pthread_exit = (pthread_exit_fn)dlsym(RTLD_NEXT, "pthread_exit");
    __atomic_store_n(&real_pthread_create,
                     (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create"),
                     __ATOMIC_RELEASE);
}

/* The thread's value is handed to whoever joins it; its stack is freed by
 * the host once the thread is really gone. */
static void hosted_finish(void *value) {
    if (hosted_finished) return;
    hosted_finished = 1;
    dsm_key_destructors();
    dsm_release_point();
    IN_RUNTIME_VOID(dsm_swift_thread_finished((uint64_t)pthread_self(), (uint64_t)(uintptr_t)value));
    dsm_host_post(DSM_HOST_REAP, (uint64_t)pthread_self(), (uint64_t)(uintptr_t)hosted_self, 0, 0);
}

static void *hosted_trampoline(void *p) {
    hosted_start *start = p;
    hosted_self = start;
    dsm_acquire_point();
    void *value = start->start(start->arg);
    hosted_finish(value);
    return value;
}

#define DEFAULT_STACK (8UL << 20)
/* Below every stack in the DSM heap, a guard the program cannot touch, so
 * an overflow is SIGSEGV as natively rather than a write into the next
 * heap block. Threads: 64 KiB (glibc's is a page, but a native stack has
 * unmapped space around it too); main: the kernel's stack guard gap, 1 MiB.
 * Only the node the thread runs on needs it: nobody else runs there. */
#define THREAD_GUARD (64UL << 10)
#define MAIN_GUARD (1UL << 20)

static void *guarded_stack(size_t size, size_t guard) {
    char *block = dsm_heap_alloc(size + guard, 4096, 0);
    if (!block) return NULL;
    if (mprotect(block, guard, PROT_NONE) != 0) {
        dsm_heap_free(block);
        return NULL;
    }
    return block + guard;
}

/* Before the stack goes back to the heap. */
static void unguard_stack(void *stack, size_t guard) {
    mprotect((char *)stack - guard, guard, PROT_READ | PROT_WRITE);
}

/* A thread stack of this node's arena (the host allocated it). */
void dsm_image_free_stack(void *stack) {
    unguard_stack(stack, THREAD_GUARD);
    dsm_heap_free_here((char *)stack - THREAD_GUARD);
}

static void host_spawn(uint64_t routine, uint64_t arg, uint64_t stack_size, uint64_t token) {
    size_t size = stack_size ? (size_t)stack_size : DEFAULT_STACK;
    if (size < PTHREAD_STACK_MIN) size = PTHREAD_STACK_MIN;
    size = (size + 4095) & ~4095UL;
    void *stack = guarded_stack(size, THREAD_GUARD);
    hosted_start *start = __libc_malloc(sizeof *start);
    if (!stack || !start) {
        if (stack) dsm_image_free_stack(stack);
        __libc_free(start);
        IN_RUNTIME_VOID(dsm_swift_spawned(token, 0, EAGAIN));
        return;
    }
    start->start = (void *(*)(void *))(uintptr_t)routine;
    start->arg = (void *)(uintptr_t)arg;
    start->stack = stack;
    start->stack_size = size;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack, size);
    pthread_t thread;
    /* What glibc allocates for the thread (its DTV, read by every TLS access
     * of the runtime's code) must be private: in the DSM heap it could share
     * a page with program data another node writes, and a TLS access would
     * then fault while the runtime waits on that very thread. */
    dsm_in_runtime++;
    int r = real_pthread_create(&thread, &attr, hosted_trampoline, start);
    dsm_in_runtime--;
    pthread_attr_destroy(&attr);
    if (r != 0) {
        dsm_image_free_stack(stack);
        __libc_free(start);
    }
    IN_RUNTIME_VOID(dsm_swift_spawned(token, r == 0 ? (uint64_t)thread : 0, r));
}

/* The stack is freed by the runtime once the thread is also joined or
 * detached: until then its id (an address in that stack) stays taken. */
static void host_reap(uint64_t thread, uint64_t record) {
    hosted_start *start = (hosted_start *)(uintptr_t)record;
    real_pthread_join((pthread_t)thread, NULL);
    IN_RUNTIME_VOID(dsm_swift_thread_reaped(thread, (uint64_t)(uintptr_t)start->stack));
    __libc_free(start);
}

/* The program ended on node 0: flush this node's streams, take part in the
 * exit rendezvous (pages stay served until every node is there), leave. */
static void host_end(void) {
    fflush(NULL);
    IN_RUNTIME_VOID(dsm_swift_exit(0));
    _exit(0);
}

static void host_loop(void) {
    for (;;) {
        host_item *item = host_take();
        switch (item->kind) {
        case DSM_HOST_SPAWN: host_spawn(item->a, item->b, item->c, item->d); break;
        case DSM_HOST_REAP: host_reap(item->a, item->b); break;
        case DSM_HOST_EXIT: exit((int)item->a); break;
        case DSM_HOST_END: host_end(); break;
        }
        free(item);
    }
}

static void *host_thread_main(void *unused) {
    (void)unused;
    host_loop();
    return NULL;
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
    resolve_thread_functions();
    if (!dsm_image || !dsm_heap_ready() || dsm_runtime_thread || dsm_in_runtime)
        return real_pthread_create(thread, attr, start, arg);
    size_t stack_size = 0;
    int detach_state = PTHREAD_CREATE_JOINABLE;
    if (attr) {
        pthread_attr_getstacksize(attr, &stack_size);
        pthread_attr_getdetachstate(attr, &detach_state);
    }
    uint64_t id = 0;
    dsm_release_point();
    long r = IN_RUNTIME(dsm_swift_thread_create((uint64_t)(uintptr_t)start, (uint64_t)(uintptr_t)arg, stack_size,
                                                detach_state == PTHREAD_CREATE_DETACHED, &id));
    if (r < 0) return (int)-r;
    *thread = (pthread_t)id;
    return 0;
}

int pthread_join(pthread_t thread, void **value) {
    resolve_thread_functions();
    int node = dsm_image ? dsm_heap_arena_of((void *)thread) : -1;
    if (node < 0 || dsm_runtime_thread || dsm_in_runtime) return real_pthread_join(thread, value);
    if (pthread_equal(thread, pthread_self())) return EDEADLK;
    uint64_t v = 0;
    long r = IN_RUNTIME(dsm_swift_thread_join((uint64_t)thread, node, &v));
    if (r < 0) return (int)-r;
    dsm_acquire_point();
    if (value) *value = (void *)(uintptr_t)v;
    return 0;
}

int pthread_detach(pthread_t thread) {
    resolve_thread_functions();
    int node = dsm_image ? dsm_heap_arena_of((void *)thread) : -1;
    if (node < 0 || dsm_runtime_thread || dsm_in_runtime) return real_pthread_detach(thread);
    long r = IN_RUNTIME(dsm_swift_thread_detach((uint64_t)thread, node));
    return r < 0 ? (int)-r : 0;
}

static TLS int image_main_thread;

void pthread_exit(void *value) {
    resolve_thread_functions();
    if (hosted_self) hosted_finish(value);
    if (dsm_image && image_main_thread) {
        /* main leaves: as with glibc, the program lives on while its threads
         * do (on every node), and then exits with status 0. */
        dsm_key_destructors();
        IN_RUNTIME_VOID(dsm_swift_await_threads());
        exit(0);
    }
    real_pthread_exit(value);
}

// --- start-up ---------------------------------------------------------------

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h;
}

static int (*image_real_main)(int, char **, char **);
static int image_argc;
static char **image_argv, **image_envp;
static int image_status;
static ucontext_t main_context, start_context;
static void *main_stack;
static size_t main_stack_size;

/* Runs `body` on [stack, stack + size) and comes back here when it
 * returns: `caller` keeps this context, `callee` the new one (both must
 * outlive the call). Main runs on its stack in the DSM heap this way, and
 * fork on a private one. */
static void run_on_stack(ucontext_t *caller, ucontext_t *callee, void *stack, size_t size, void (*body)(void)) {
    getcontext(callee);
    callee->uc_stack.ss_sp = stack;
    callee->uc_stack.ss_size = size;
    callee->uc_link = caller;
    makecontext(callee, body, 0);
    swapcontext(caller, callee);
}

static void main_on_dsm_stack(void) { image_status = image_real_main(image_argc, image_argv, image_envp); }

/* argv in the DSM heap: a thread on another node may read it. */
static char **shared_argv(int argc, char **argv) {
    size_t bytes = (size_t)(argc + 1) * sizeof(char *);
    for (int i = 0; i < argc; i++) bytes += strlen(argv[i]) + 1;
    char **copy = dsm_heap_alloc(bytes, 16, 0);
    if (!copy) return argv;
    char *text = (char *)(copy + argc + 1);
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]) + 1;
        memcpy(text, argv[i], n);
        copy[i] = text;
        text += n;
    }
    copy[argc] = NULL;
    return copy;
}

/* Every node maps the image and meets the others. Node 0 does it before
 * the executable's constructors run (preload.c), so what they allocate
 * comes from the DSM heap and what they write is in the shared data: a
 * global container filled before main is the program's, not node 0's. The
 * other nodes do it when their main would start, after their own
 * constructors, whose writes to the data the container then replaces
 * (their effects on per-node state, such as libstdc++'s streams, remain). */
void dsm_image_setup(int (*real_main)(int, char **, char **)) {
    if (dsm_image) return;
    resolve_thread_functions();
    int persona = personality(0xffffffff);
    if (persona < 0 || !(persona & ADDR_NO_RANDOMIZE))
        die("image mode needs address-space randomisation off (dsmrun turns it off; was the program started by dsmrun?)");
    /* What this node executes gets a randomised layout again: its futex
     * calls then cannot meet the ranges the filter traps (futex_trap.c). */
    personality((unsigned long)persona & ~(unsigned long)ADDR_NO_RANDOMIZE);
    program_data_count = dsm_program_data(program_data, MAX_DATA);
    /* Same binary, same libraries, same places: checked against node 0. */
    uint64_t fingerprint = mix(mix(0, (uint64_t)(uintptr_t)real_main), (uint64_t)(uintptr_t)dlsym(RTLD_NEXT, "printf"));
    fingerprint = mix(fingerprint, (uint64_t)(uintptr_t)&dsm_image_main);
    for (int i = 0; i < program_data_count; i++)
        fingerprint = mix(mix(fingerprint, program_data[i].start), program_data[i].end);
    uint64_t heap_base = 0, heap_size = 0;
    long r = IN_RUNTIME(dsm_swift_image_setup((const uint64_t *)program_data, program_data_count, fingerprint,
                                              &heap_base, &heap_size));
    if (r < 0) die("image set-up failed");
    dsm_node = dsm_swift_node_id();
    dsm_nodes_count = dsm_swift_nodes();
    host_bell = cdsm_high_fd(eventfd(0, EFD_CLOEXEC));
    if (host_bell < 0) die("cannot create the host's eventfd");
    extern int dsm_heap_setup(uint64_t, uint64_t, int, int);
    if (dsm_heap_setup(heap_base, heap_size, dsm_node, dsm_nodes_count) != 0) die("cannot set up the DSM heap");
    dsm_image = 1;
    if (dsm_nodes_count > 1) {
        dsm_range shared[MAX_DATA + 1];
        memcpy(shared, program_data, sizeof(dsm_range) * (size_t)program_data_count);
        shared[program_data_count] = (dsm_range){(uintptr_t)heap_base, (uintptr_t)(heap_base + heap_size)};
        dsm_trap_futexes(shared, program_data_count + 1);
    }
    /* Every node writes to the same stdout: line by line, the lines of all
     * nodes come out in the order they were written (a thread's line printed
     * before main prints after joining it stays before), not when each
     * node's buffer happens to fill. */
    if (dsm_nodes_count > 1) setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
    if (dsm_node == 0) {
        /* A constructor may already create threads. */
        pthread_t host;
        dsm_in_runtime++;
        if (real_pthread_create(&host, NULL, host_thread_main, NULL) != 0) die("cannot start the host thread");
        dsm_in_runtime--;
    }
}

int dsm_image_main(int (*real_main)(int, char **, char **), int argc, char **argv, char **envp) {
    dsm_image_setup(real_main);
    if (dsm_node != 0) {
        host_loop();
        _exit(0);
    }

    struct rlimit limit;
    size_t stack_size = DEFAULT_STACK;
    if (getrlimit(RLIMIT_STACK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur > 65536)
        stack_size = limit.rlim_cur > (256UL << 20) ? (256UL << 20) : (size_t)limit.rlim_cur;
    stack_size = (stack_size + 4095) & ~4095UL;
    void *stack = guarded_stack(stack_size, MAIN_GUARD);
    if (!stack) die("cannot allocate main's stack in the DSM heap");
    main_stack = stack;
    main_stack_size = stack_size;
    image_real_main = real_main;
    image_argc = argc;
    image_argv = shared_argv(argc, argv);
    image_envp = envp;
    image_main_thread = 1;
    run_on_stack(&start_context, &main_context, stack, stack_size, main_on_dsm_stack);
    return image_status;
}

/* exit() on a node other than 0: the program's exit happens on node 0. */
void dsm_image_exit_elsewhere(int status) {
    fflush(NULL);
    IN_RUNTIME_VOID(dsm_swift_program_exit(status));
    for (;;) pause();
}

// --- fork ----------------------------------------------------------------------

/* fork() in image mode gives an ordinary process: a private copy of the
 * program's memory as this node holds it, with no runtime (calls go to the
 * kernel and glibc, as in any process), so fork-exec, system-like helpers
 * and worker children run as natively.
 *
 * The DSM mappings are not inherited (MADV_DONTFORK: the child must never
 * write the parent's memfds), and the calling thread's stack is one of
 * them: the real fork runs on a private stack, the child rebuilds each
 * mapping as private memory from the memfd (preload.c's atfork handler)
 * and then returns to the caller's frame on its now private stack. Before
 * that, the parent makes valid here the pages the child can be expected to
 * touch: the program's data and bss, the System V attachments, every
 * block this node's arena has handed out (what this node allocated,
 * wherever it was written since) and the calling thread's stack. A block
 * another node allocated is in the child only if its pages are valid here
 * (this node read them since they were last written); otherwise it reads
 * as zeros there. See the README. */

#define FORK_STACK (256UL << 10)

static volatile int fork_lock;
static ucontext_t fork_caller, fork_callee;
static pid_t (*fork_real)(void);
static pid_t fork_pid;
static int fork_errno;

static void touch_range(uintptr_t lo, uintptr_t hi) {
    for (uintptr_t p = lo & ~4095UL; p < hi; p += 4096) (void)*(volatile const char *)p;
}

static void fetch_for_child(void) {
    uint64_t start, length;
    for (int i = 0; cdsm_mapping_at(i, &start, &length); i++) {
        if (dsm_heap_contains((void *)(uintptr_t)start)) continue;
        touch_range((uintptr_t)start, (uintptr_t)(start + length));
    }
    dsm_heap_touch_used();
    /* The calling thread's stack, from where it is now to its top. */
    volatile char here = 0;
    uintptr_t sp = (uintptr_t)&here;
    if (hosted_self) touch_range(sp, (uintptr_t)hosted_self->stack + hosted_self->stack_size);
    else if (image_main_thread && main_stack) touch_range(sp, (uintptr_t)main_stack + main_stack_size);
}

/* The child copies the mappings from the memfds, which the parent keeps
 * writing once it leaves this private stack (its own frames first): the
 * parent waits here until the child has its copy. */
int dsm_fork_sync_fd = -1;

static void fork_on_private_stack(void) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) != 0) {
        fork_pid = -1;
        fork_errno = errno;
        return;
    }
    dsm_fork_sync_fd = sync[1];
    fork_pid = fork_real();
    fork_errno = errno;
    if (fork_pid == 0) {
        close(sync[0]);
        return;
    }
    dsm_fork_sync_fd = -1;
    close(sync[1]);
    if (fork_pid > 0) {
        char byte;
        while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {}
    }
    close(sync[0]);
}

pid_t fork(void) {
    REAL(fork);
    if (!dsm_image || !dsm_heap_ready() || dsm_runtime_thread || dsm_in_runtime) return real_fork();
    fetch_for_child();
    char *stack = mmap(NULL, FORK_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    spin(&fork_lock);
    fork_real = real_fork;
    run_on_stack(&fork_caller, &fork_callee, stack, FORK_STACK, fork_on_private_stack);
    pid_t pid = fork_pid;
    int e = fork_errno;
    unspin(&fork_lock);
    munmap(stack, FORK_STACK);
    if (pid < 0) errno = e;
    return pid;
}
