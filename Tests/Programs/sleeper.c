/*
 * sleeper.c [seconds] - attaches a System V segment, records itself in it
 * and then sleeps for a long time (default 120 s) in short naps, touching the
 * segment now and then. Used by the kill test: the harness SIGKILLs one node
 * and expects dsmrun to stop the others.
 * Prints `sleeper node=<id> ready` on stdout once attached.
 */
#include "common.h"

int main(int argc, char **argv)
{
    t_init_env("sleeper");
    long seconds = argc > 1 ? strtol(argv[1], NULL, 10) : 120;
    volatile long *seg = t_shm_open(2, t_page_size() * 64, NULL);
    seg[(size_t)t_me * 512 / sizeof(long)] = getpid();
    printf("sleeper node=%d ready\n", t_me);
    double end = t_now() + (double)seconds;
    long ticks = 0;
    while (t_now() < end) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        seg[(size_t)t_me * 512 / sizeof(long) + 1] = ++ticks;
    }
    shmdt((const void *)seg);
    /* No barrier here: the sleeper must not depend on other nodes. Node 0
     * marks the segment for removal; the last detach destroys it. */
    if (t_me == 0)
        shmctl(t_shm_ids[0], IPC_RMID, NULL);
    return 0;
}
