/*
 * sem_barrier.c [rounds] - many rounds of the System V semaphore barrier of
 * common.h; in each round every node writes the round number into its slot
 * (slots of even and odd rounds apart, one array on a shared page and one
 * slot per page), and after the barrier checks every node's slot.
 * A slot of parity r%2 cannot be rewritten before every node has passed the
 * barrier of round r+1, so the check is exact.
 * Node 0 prints `sem_barrier rounds=<r> nodes=<N> failures=<k>` and
 * `time=<seconds>`; exit 1 on any failure.
 */
#include "common.h"

int main(int argc, char **argv)
{
    t_init_env("sem_barrier");
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 500;
    if (rounds < 1)
        t_die(0, "usage: sem_barrier [rounds>=1]");
    t_barrier_init();

    size_t pg = t_page_size();
    /* page 0: packed slots [2][64]; pages 1..: one page per (parity, node). */
    char *seg = t_shm_open(2, (1 + 2 * (size_t)t_n) * pg, NULL);
    volatile long *packed = (volatile long *)seg;
#define SPREAD(par, node) (*(volatile long *)(seg + (1 + (size_t)(par) * t_n + (node)) * pg))

    long failures = 0;
    t_barrier();
    double t0 = t_now();
    for (long r = 1; r <= rounds; r++) {
        int par = (int)(r % 2);
        packed[par * 64 + t_me] = r;
        SPREAD(par, t_me) = r;
        t_barrier();
        for (int i = 0; i < t_n; i++) {
            long a = packed[par * 64 + i], b = SPREAD(par, i);
            if (a != r || b != r) {
                if (failures++ < 20)
                    t_msg("FAIL: round %ld: node %d's slots hold %ld (packed) / %ld (own page)", r, i, a, b);
            }
        }
    }
    double elapsed = t_now() - t0;

    /* Sum the failures on node 0 (page 0, past the packed slots). */
    volatile long *total = (volatile long *)(seg + 2 * 64 * sizeof(long));
    t_semop1(t_bar_sem, T_SEM_M, -1, 0, "P(M)");
    *total += failures;
    t_semop1(t_bar_sem, T_SEM_M, +1, 0, "V(M)");
    t_barrier();
    int rc = failures > 0;
    if (t_me == 0) {
        printf("sem_barrier rounds=%ld nodes=%d failures=%ld\n", rounds, t_n, *total);
        printf("time=%.6f\n", elapsed);
        rc = *total > 0;
    }
    return t_finish(rc);
}
