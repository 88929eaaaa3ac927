/*
 * mgs_spin.c n - mgs.c with the barrier people write by hand: a
 * sense-reversing spin barrier on two words of a shared segment (an atomic
 * counter, and a sense flag in the same page that the others spin on with
 * sched_yield). The matrix, the steps and the output are mgs.c's
 * (mgs_kernel.h), so the hash is the same for any node count; only the
 * per-step barrier differs (start and end use common.h's semaphore
 * barrier).
 *
 * Node 0 prints
 *   mgs_spin n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 */
#include "mgs_kernel.h"

#include <sched.h>

/* The barrier's words, in a page of their own segment. */
struct spin_barrier {
    int count;
    int sense;
};

static struct spin_barrier *bar;
static int local_sense;

static void open_barrier(void) { bar = t_shm_open(3, 4096, NULL); }

static void spin_barrier_wait(void)
{
    local_sense = !local_sense;
    if (__atomic_add_fetch(&bar->count, 1, __ATOMIC_ACQ_REL) == t_n) {
        __atomic_store_n(&bar->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->sense, local_sense, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) != local_sense)
            sched_yield();
    }
}

int main(int argc, char **argv) { return mgs_main("mgs_spin", argc, argv, open_barrier, spin_barrier_wait); }
