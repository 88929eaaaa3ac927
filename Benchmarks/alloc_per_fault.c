/*
 * Heap allocations per fault in steady state, counted on every node (the
 * runtime thread included) with alloc_counter.so preloaded:
 *   LD_PRELOAD=.../alloc_counter.so dsmrun -n 2 --spmd ./alloc_per_fault
 * Each measured round is barrier; node 1 read-misses then upgrades PAGES
 * pages owned by node 0; barrier. An identical round without faults is
 * counted too, and its allocations (the barrier's own calls) are subtracted.
 * Prints `allocations node=K faults=F with_faults=A without=B per_fault=X`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dsm/dsm.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#define PAGES 1000

static uint64_t (*get)(void);

/* One round: returns the allocations this process made during it. */
static uint64_t round_of(volatile char *a, int me, int fault) {
    if (me == 0) for (int i = 0; i < PAGES; i++) a[(size_t)i * 4096] = 1;
    dsm_barrier();
    uint64_t before = get();
    dsm_barrier();
    if (me == 1 && fault) {
        for (int i = 0; i < PAGES; i++) (void)a[(size_t)i * 4096];
        for (int i = 0; i < PAGES; i++) a[(size_t)i * 4096] = 2;
    }
    dsm_barrier();
    return get() - before;
}

int main(void) {
    get = (uint64_t(*)(void))dlsym(RTLD_DEFAULT, "alloc_counter_get");
    if (!get) { fprintf(stderr, "preload alloc_counter.so\n"); return 2; }
    int me = dsm_node_id();
    int shm = shmget(0x414c43, (size_t)PAGES * 3 * 4096, IPC_CREAT | 0600);
    volatile char *p = shmat(shm, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    round_of(p, me, 1); /* warm-up: first use of the container and buffers */
    uint64_t with = round_of(p + (size_t)PAGES * 4096, me, 1);
    uint64_t without = round_of(p + (size_t)2 * PAGES * 4096, me, 0);
    printf("allocations node=%d faults=%d with_faults=%llu without=%llu per_fault=%.3f\n", me, 2 * PAGES,
           (unsigned long long)with, (unsigned long long)without,
           ((double)with - (double)without) / (2 * PAGES));
    fflush(stdout);
    dsm_barrier();
    shmdt((void *)p);
    dsm_barrier();
    if (me == 0) shmctl(shm, IPC_RMID, NULL);
    return 0;
}
