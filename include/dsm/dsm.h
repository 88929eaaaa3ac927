/*
 * dsm.h - public C API of the dsm distributed shared memory runtime.
 *
 * Header only. A program that includes it runs unchanged in two settings:
 *
 *   - under `dsmrun -n N --spmd ./prog`, where the preloaded runtime defines
 *     the entry points `dsm_rt_node_id`, `dsm_rt_nodes` and `dsm_rt_barrier`
 *     (each `int (void)`), and these functions forward to it;
 *   - as a plain process (no runtime loaded), where they behave as a cluster
 *     of one node: id 0, 1 node, and a barrier that returns 0 at once.
 *
 * The entry points are looked up once per translation unit with
 * dlsym(RTLD_DEFAULT, ...). On glibc >= 2.34 dlsym is in libc; on older
 * systems link with -ldl.
 */
#ifndef DSM_DSM_H
#define DSM_DSM_H

#include <dlfcn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* RTLD_DEFAULT is only declared by <dlfcn.h> with _GNU_SOURCE; its value is
 * a null handle on glibc and musl. */
#ifdef RTLD_DEFAULT
#define DSM_H_RTLD_DEFAULT_ RTLD_DEFAULT
#else
#define DSM_H_RTLD_DEFAULT_ ((void *)0)
#endif

typedef int (*dsm_h_entry_fn_)(void);

enum { DSM_H_NODE_ID_ = 0, DSM_H_NODES_ = 1, DSM_H_BARRIER_ = 2 };

/* Marker stored in the cache for an entry point that was looked up and is
 * absent (plain run). */
#define DSM_H_ABSENT_ ((void *)1)

/* Returns the runtime's entry point `which`, or NULL when no runtime is
 * loaded. The lookup happens once; concurrent first calls are harmless (they
 * store the same value). */
static inline dsm_h_entry_fn_ dsm_h_entry_(int which)
{
    static void *cache[3];
    static const char *const names[3] = {
        "dsm_rt_node_id", "dsm_rt_nodes", "dsm_rt_barrier",
    };
    void *p = __atomic_load_n(&cache[which], __ATOMIC_ACQUIRE);
    if (p == 0) {
        p = dlsym(DSM_H_RTLD_DEFAULT_, names[which]);
        if (p == 0)
            p = DSM_H_ABSENT_;
        __atomic_store_n(&cache[which], p, __ATOMIC_RELEASE);
    }
    if (p == DSM_H_ABSENT_)
        return 0;
    dsm_h_entry_fn_ fn;
    /* Object-to-function pointer conversion, as POSIX requires of dlsym. */
    __builtin_memcpy(&fn, &p, sizeof fn);
    return fn;
}

/* This process's node number, 0 .. dsm_nodes()-1. 0 in a plain run. */
static inline int dsm_node_id(void)
{
    dsm_h_entry_fn_ fn = dsm_h_entry_(DSM_H_NODE_ID_);
    return fn ? fn() : 0;
}

/* The number of nodes of the run (>= 1). 1 in a plain run. */
static inline int dsm_nodes(void)
{
    dsm_h_entry_fn_ fn = dsm_h_entry_(DSM_H_NODES_);
    return fn ? fn() : 1;
}

/* Blocks until every node of the run has called dsm_barrier() the same
 * number of times; memory written by any node before its call is visible to
 * every node after the barrier returns. Returns 0 on success, -1 with errno
 * set on failure. In a plain run it returns 0 immediately. It is a barrier
 * between nodes: call it from one thread of each node at a time (two threads
 * of one node count as two arrivals). */
static inline int dsm_barrier(void)
{
    dsm_h_entry_fn_ fn = dsm_h_entry_(DSM_H_BARRIER_);
    return fn ? fn() : 0;
}

#undef DSM_H_ABSENT_

#ifdef __cplusplus
}
#endif

#endif /* DSM_DSM_H */
