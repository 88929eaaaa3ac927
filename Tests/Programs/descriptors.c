/*
 * descriptors [mode] - a program that tidies its descriptors as daemons and
 * servers do, in the middle of a run: closes every descriptor from 3 up to
 * the limit, sweeps again with close_range(3, ~0U, 0), dup2s standard output
 * onto 512..529 and writes through each, F_DUPFDs onto 1000. Then it keeps
 * using shared memory and semaphores (a barrier, every node's slot read by
 * node 0), which must still work: the runtime's own descriptors are not the
 * program's to close. Works the same as N plain processes.
 * Prints `descriptors nodes= failures=` on node 0.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/resource.h>

int main(void)
{
    t_init_env("descriptors");
    volatile long *slots = t_shm_open(2, t_page_size(), NULL);
    t_barrier_init();
    t_barrier();

    long open_max = sysconf(_SC_OPEN_MAX);
    if (open_max > 65536) open_max = 65536;
    for (long fd = 3; fd < open_max; fd++) close((int)fd);
    CHECK(close_range(3, ~0U, 0) == 0, "close_range(3, ~0U, 0): %s", strerror(errno));
    for (int fd = 512; fd < 530; fd++) {
        CHECK(dup2(1, fd) == fd, "dup2(1, %d): %s", fd, strerror(errno));
        CHECK(write(fd, "", 0) == 0, "write to descriptor %d: %s", fd, strerror(errno));
    }
    for (int fd = 512; fd < 530; fd++) CHECK(close(fd) == 0, "close(%d): %s", fd, strerror(errno));
    int high = fcntl(1, F_DUPFD, 1000);
    CHECK(high >= 1000, "fcntl(1, F_DUPFD, 1000) = %d: %s", high, strerror(errno));
    if (high >= 0) close(high);

    slots[t_me] = 1000 + t_me;
    t_barrier();
    if (t_me == 0)
        for (int i = 0; i < t_n; i++) CHECK(slots[i] == 1000 + i, "slot %d holds %ld", i, slots[i]);
    t_barrier();
    if (t_me == 0) printf("descriptors nodes=%d failures=%d\n", t_n, t_failures);
    return t_finish(t_failures ? 1 : 0);
}
