/*
 * alloc_per_fault.c - the runtime's heap allocations on the fault path in
 * steady state, on every node, as the runtime counts them itself (every
 * malloc family call made on its thread or inside a call into it; read
 * through dlsym of dsm_runtime_allocations):
 *   dsmrun -n 3 --spmd ./alloc_per_fault
 * In each measured round node 0 has written PAGES pages of a segment (it
 * owns them); node 1 read-misses then upgrades every page (node 0 answers
 * as owner, the pages' homes are spread over the nodes, so each node is a
 * requester, an owner or a home). Inside a round the nodes wait for each
 * other through flags in the segment, not through dsm_barrier (whose calls
 * allocate): what happens in the window is page faults only, and each node
 * counts its allocations there. Two warm-up rounds come first. Prints
 *   `alloc_per_fault node=K faults=F allocations=A rounds=R`
 * with A the allocations over R measured rounds.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dsm/dsm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define PAGES 1000
#define ROUNDS 3

static uint64_t (*allocations)(void);

/* One round on `data` (PAGES pages); `flags` is a page of its own: the
 * round's go and done words. Returns this node's allocations inside. */
static uint64_t round_of(volatile char *data, volatile int *flags, int round, int me) {
    if (me == 0)
        for (int i = 0; i < PAGES; i++) data[(size_t)i * 4096] = 1;
    dsm_barrier();
    /* The barrier's own work (its replies) is over before the window. */
    usleep(50000);
    uint64_t before = allocations();
    if (me == 0) __atomic_store_n(&flags[0], round, __ATOMIC_SEQ_CST);
    if (me == 1) {
        while (__atomic_load_n(&flags[0], __ATOMIC_SEQ_CST) != round) {}
        for (int i = 0; i < PAGES; i++) (void)data[(size_t)i * 4096];
        for (int i = 0; i < PAGES; i++) data[(size_t)i * 4096] = 2;
        __atomic_store_n(&flags[1], round, __ATOMIC_SEQ_CST);
    } else {
        while (__atomic_load_n(&flags[1], __ATOMIC_SEQ_CST) != round) usleep(100);
    }
    uint64_t inside = allocations() - before;
    dsm_barrier();
    return inside;
}

int main(void) {
    allocations = (uint64_t(*)(void))dlsym(RTLD_DEFAULT, "dsm_runtime_allocations");
    if (!allocations) {
        fprintf(stderr, "alloc_per_fault: run it under dsmrun (no dsm_runtime_allocations)\n");
        return 2;
    }
    int me = dsm_node_id();
    /* The test harness gives each run its own System V keys. */
    const char *base = getenv("DSM_TEST_KEY");
    key_t key = base && *base ? (key_t)strtol(base, NULL, 0) + 2 : 0x414c43;
    int shm = shmget(key, (size_t)(PAGES * (2 + ROUNDS) + 1) * 4096, IPC_CREAT | 0600);
    volatile char *p = shmat(shm, NULL, 0);
    if (p == (void *)-1) {
        perror("shmat");
        return 1;
    }
    volatile int *flags = (volatile int *)p;
    volatile char *data = p + 4096;
    /* Warm-up: the container, the buffers and the tables reach their size. */
    round_of(data, flags, 1, me);
    round_of(data + (size_t)PAGES * 4096, flags, 2, me);
    uint64_t total = 0;
    for (int r = 0; r < ROUNDS; r++) total += round_of(data + (size_t)(2 + r) * PAGES * 4096, flags, 3 + r, me);
    printf("alloc_per_fault node=%d faults=%d allocations=%llu rounds=%d\n", me, me == 1 ? 2 * PAGES * ROUNDS : 0,
           (unsigned long long)total, ROUNDS);
    fflush(stdout);
    dsm_barrier();
    shmdt((void *)p);
    dsm_barrier();
    if (me == 0) shmctl(shm, IPC_RMID, NULL);
    return 0;
}
