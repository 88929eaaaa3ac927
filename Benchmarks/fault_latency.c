/*
 * Fault-path latencies under `dsmrun -n N --spmd` (N >= 2), per operation:
 *   read_miss     node 1 reads pages last written by node 0
 *   upgrade       node 1 writes the pages it now holds read-only (S -> M)
 *   write_miss_kK node N-1 writes pages read by nodes 0..N-2 (K = N-1 sharers)
 *   first_touch   node 1 writes pages nobody touched (zero page, no data)
 *   lock_handoff  a SysV semaphore passed back and forth between nodes 0 and 1
 * Prints one line: `latency nodes=N read_miss_us=.. ...`.
 */
#define _GNU_SOURCE
#include <dsm/dsm.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>

#define PAGES 2000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void sem_add(int set, int num, int op) {
    struct sembuf b = {(unsigned short)num, (short)op, 0};
    if (semop(set, &b, 1) != 0) { perror("semop"); exit(1); }
}

int main(void) {
    int me = dsm_node_id(), n = dsm_nodes();
    if (n < 2) { fprintf(stderr, "fault_latency needs at least 2 nodes\n"); return 2; }
    int shm = shmget(0x4c41540, (size_t)PAGES * 4 * 4096, IPC_CREAT | 0600);
    int sem = semget(0x4c41541, 2, IPC_CREAT | 0600);
    if (shm < 0 || sem < 0) { perror("shmget/semget"); return 1; }
    volatile char *base = shmat(shm, NULL, 0);
    if (base == (void *)-1) { perror("shmat"); return 1; }
    volatile char *a = base, *b = base + (size_t)PAGES * 4096, *c = base + (size_t)2 * PAGES * 4096;
    double read_miss = 0, upgrade = 0, first_touch = 0, write_miss = 0, handoff = 0;

    dsm_barrier();
    if (me == 0) for (int i = 0; i < PAGES; i++) a[(size_t)i * 4096] = 1;
    dsm_barrier();
    if (me == 1) {
        double t0 = now();
        int sum = 0;
        for (int i = 0; i < PAGES; i++) sum += a[(size_t)i * 4096];
        read_miss = (now() - t0) / PAGES * 1e6;
        if (sum != PAGES) { fprintf(stderr, "read_miss: wrong data\n"); return 1; }
        t0 = now();
        for (int i = 0; i < PAGES; i++) a[(size_t)i * 4096] = 2;
        upgrade = (now() - t0) / PAGES * 1e6;
        t0 = now();
        for (int i = 0; i < PAGES; i++) c[(size_t)i * 4096] = 3;
        first_touch = (now() - t0) / PAGES * 1e6;
    }
    dsm_barrier();
    // Every node but the last reads b's pages, then the last node writes them.
    if (me == 0) for (int i = 0; i < PAGES; i++) b[(size_t)i * 4096] = 4;
    dsm_barrier();
    if (me != n - 1) for (int i = 0; i < PAGES; i++) (void)b[(size_t)i * 4096];
    dsm_barrier();
    if (me == n - 1) {
        double t0 = now();
        for (int i = 0; i < PAGES; i++) b[(size_t)i * 4096] = 5;
        write_miss = (now() - t0) / PAGES * 1e6;
    }
    dsm_barrier();
    int rounds = 2000;
    double t0 = now();
    for (int i = 0; i < rounds; i++) {
        if (me == 0) { sem_add(sem, 0, 1); sem_add(sem, 1, -1); }
        else if (me == 1) { sem_add(sem, 0, -1); sem_add(sem, 1, 1); }
    }
    handoff = (now() - t0) / (2 * rounds) * 1e6;
    dsm_barrier();
    if (me == 1) {
        printf("latency nodes=%d read_miss_us=%.1f upgrade_us=%.1f first_touch_us=%.1f "
               "lock_handoff_us=%.1f\n", n, read_miss, upgrade, first_touch, handoff);
        fflush(stdout);
    }
    dsm_barrier();
    if (me == n - 1) { printf("latency nodes=%d write_miss_k%d_us=%.1f\n", n, n - 1, write_miss); fflush(stdout); }
    dsm_barrier();
    shmdt((void *)base);
    dsm_barrier();
    if (me == 0) { shmctl(shm, IPC_RMID, NULL); semctl(sem, 0, IPC_RMID); }
    return 0;
}
