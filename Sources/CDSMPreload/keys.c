// Thread-specific data keys (pthread_key_create and friends) in image mode.
//
// glibc keeps its key table in libc's own data, which is per node here: a
// key made by main on node 0 would be unknown to a thread on node 1, whose
// pthread_setspecific would fail with EINVAL. So the program's keys are
// served here instead:
//   - each node makes keys from its own table of PTHREAD_KEYS_MAX slots,
//     kept on the first pages of its arena of the DSM heap (heap.c reserves
//     them), so every node can read any key's destructor and sequence
//     number, and two nodes never hand out one key;
//   - a key names its node and slot: PTHREAD_KEYS_MAX + node *
//     PTHREAD_KEYS_MAX + slot, above every key glibc gives, so the runtime's
//     own keys (made before start-up, or inside the runtime) still go to
//     glibc and calls on them pass straight through;
//   - the values are the thread's own (a thread runs on one node), in
//     per-thread tables allocated on first use;
//   - a thread's destructors run when it ends (hosted_finish in image.c,
//     or pthread_exit of main), up to PTHREAD_DESTRUCTOR_ITERATIONS rounds,
//     as glibc runs them.
// A slot's sequence number is odd while its key exists, as in glibc: a value
// set under a deleted key reads as NULL once the slot is reused.
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <limits.h>

extern void *__libc_calloc(size_t, size_t);
extern void __libc_free(void *);
/* glibc's own entry points, exported for libstdc++ (no lookup on the
 * getspecific path). */
extern int __pthread_key_create(pthread_key_t *, void (*)(void *));
extern void *__pthread_getspecific(pthread_key_t);
extern int __pthread_setspecific(pthread_key_t, const void *);

#define SLOTS PTHREAD_KEYS_MAX
#define KEY_BASE PTHREAD_KEYS_MAX

typedef struct {
    uint64_t sequence;
    void (*destructor)(void *);
} key_slot;

typedef struct {
    uint64_t sequence;
    void *value;
} key_value;

/* The thread's values, one table per node whose keys it has used. */
static TLS key_value **thread_values;

size_t dsm_key_table_bytes(void) { return SLOTS * sizeof(key_slot); }

static key_slot *table_of(int node) { return (key_slot *)dsm_heap_reserved(node); }

/* Ours: image mode is up and a program thread asks. */
static int program_call(void) { return dsm_image && dsm_heap_ready() && !dsm_runtime_thread && !dsm_in_runtime; }

static int decode(pthread_key_t key, int *node, int *slot) {
    if (key < KEY_BASE) return 0;
    unsigned k = key - KEY_BASE;
    if (k / SLOTS >= (unsigned)dsm_nodes_count) return 0;
    *node = (int)(k / SLOTS);
    *slot = (int)(k % SLOTS);
    return 1;
}

int pthread_key_create(pthread_key_t *key, void (*destructor)(void *)) {
    if (!program_call()) return __pthread_key_create(key, destructor);
    key_slot *table = table_of(dsm_node);
    for (int slot = 0; slot < SLOTS; slot++) {
        uint64_t sequence = __atomic_load_n(&table[slot].sequence, __ATOMIC_ACQUIRE);
        if (sequence & 1) continue;
        /* Claimed, then its destructor: the key is not handed out before. */
        if (!__atomic_compare_exchange_n(&table[slot].sequence, &sequence, sequence + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        __atomic_store_n(&table[slot].destructor, destructor, __ATOMIC_RELEASE);
        *key = (pthread_key_t)(KEY_BASE + dsm_node * SLOTS + slot);
        return 0;
    }
    return EAGAIN;
}

int pthread_key_delete(pthread_key_t key) {
    REAL(pthread_key_delete);
    int node, slot;
    if (!decode(key, &node, &slot)) return real_pthread_key_delete(key);
    key_slot *table = table_of(node);
    uint64_t sequence = __atomic_load_n(&table[slot].sequence, __ATOMIC_ACQUIRE);
    if (!(sequence & 1)) return EINVAL;
    return __atomic_compare_exchange_n(&table[slot].sequence, &sequence, sequence + 1, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE)
               ? 0
               : EINVAL;
}

void *pthread_getspecific(pthread_key_t key) {
    int node, slot;
    if (!decode(key, &node, &slot)) return __pthread_getspecific(key);
    if (!thread_values || !thread_values[node]) return NULL;
    key_value *v = &thread_values[node][slot];
    if (v->value && v->sequence != __atomic_load_n(&table_of(node)[slot].sequence, __ATOMIC_RELAXED)) {
        /* Set under a key deleted since. */
        v->value = NULL;
    }
    return v->value;
}

int pthread_setspecific(pthread_key_t key, const void *value) {
    int node, slot;
    if (!decode(key, &node, &slot)) return __pthread_setspecific(key, value);
    uint64_t sequence = __atomic_load_n(&table_of(node)[slot].sequence, __ATOMIC_ACQUIRE);
    if (!(sequence & 1)) return EINVAL;
    if (!thread_values) {
        thread_values = __libc_calloc((size_t)dsm_nodes_count, sizeof *thread_values);
        if (!thread_values) return ENOMEM;
    }
    if (!thread_values[node]) {
        thread_values[node] = __libc_calloc(SLOTS, sizeof(key_value));
        if (!thread_values[node]) return ENOMEM;
    }
    thread_values[node][slot] = (key_value){sequence, (void *)value};
    return 0;
}

/* A thread of the program ends: its non-NULL values whose keys have a
 * destructor are cleared and passed to it, again while destructors set new
 * ones, at most PTHREAD_DESTRUCTOR_ITERATIONS times; then its tables go. */
void dsm_key_destructors(void) {
    if (!thread_values) return;
    for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS; round++) {
        int called = 0;
        for (int node = 0; node < dsm_nodes_count; node++) {
            if (!thread_values[node]) continue;
            key_slot *table = table_of(node);
            for (int slot = 0; slot < SLOTS; slot++) {
                key_value *v = &thread_values[node][slot];
                if (!v->value) continue;
                void *value = v->value;
                v->value = NULL;
                if (v->sequence != __atomic_load_n(&table[slot].sequence, __ATOMIC_ACQUIRE)) continue;
                void (*destructor)(void *) = __atomic_load_n(&table[slot].destructor, __ATOMIC_ACQUIRE);
                if (!destructor) continue;
                destructor(value);
                called = 1;
            }
        }
        if (!called) break;
    }
    key_value **values = thread_values;
    thread_values = NULL;
    for (int node = 0; node < dsm_nodes_count; node++) __libc_free(values[node]);
    __libc_free(values);
}
