/*
 * mgs_semcount.c n - mgs.c with a barrier as people often build one from
 * System V semaphores: a semaphore used as a mutex around an arrival
 * counter kept in a shared segment, and a gate semaphore per generation
 * parity that the last arrival opens for the others. The matrix, the steps
 * and the output are mgs.c's (mgs_kernel.h), so the hash is the same for
 * any node count; only the per-step barrier differs (start and end use
 * common.h's).
 *
 * Node 0 prints
 *   mgs_semcount n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 */
#include "mgs_kernel.h"

/* The counter, in a page of its own segment. */
struct counted_barrier {
    int count;
    unsigned generation;
};

enum { MUTEX = 0, GATE0 = 1, GATE1 = 2 };

static struct counted_barrier *bar;
static int sems;

static void open_barrier(void)
{
    bar = t_shm_open(3, 4096, NULL);
    sems = t_sem_open(4, 3);
    if (t_me == 0)
        t_semop1(sems, MUTEX, +1, 0, "create the counter's mutex");
}

static void counted_barrier_wait(void)
{
    t_semop1(sems, MUTEX, -1, 0, "lock the counter");
    unsigned generation = bar->generation;
    if (++bar->count == t_n) {
        bar->count = 0;
        bar->generation = generation + 1;
        t_semop1(sems, MUTEX, +1, 0, "unlock the counter");
        if (t_n > 1)
            t_semop1(sems, generation % 2 ? GATE1 : GATE0, t_n - 1, 0, "open the gate");
    } else {
        t_semop1(sems, MUTEX, +1, 0, "unlock the counter");
        t_semop1(sems, generation % 2 ? GATE1 : GATE0, -1, 0, "pass the gate");
    }
}

int main(int argc, char **argv) { return mgs_main("mgs_semcount", argc, argv, open_barrier, counted_barrier_wait); }
