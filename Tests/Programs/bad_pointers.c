/*
 * bad_pointers - System V calls given pointers the caller cannot read or
 * write (an unmapped address, a read-only page for an output) fail with
 * EFAULT and change nothing, as the kernel's do; the calls then still work
 * with good pointers. Every node checks on the shared objects.
 * Prints `bad_pointers nodes= failures=` on node 0.
 */
#include "common.h"
#include <sys/mman.h>

#define EXPECT_EFAULT(call, what)                                                                           \
    do {                                                                                                    \
        errno = 0;                                                                                          \
        long r_ = (long)(call);                                                                             \
        CHECK(r_ == -1 && errno == EFAULT, "%s: returned %ld, errno %d (%s), expected EFAULT", what, r_,    \
              errno, strerror(errno));                                                                      \
    } while (0)

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

int main(void)
{
    t_init_env("bad_pointers");
    int shmid;
    volatile long *seg = t_shm_open(2, t_page_size(), &shmid);
    int semid = t_sem_open(3, 4);
    t_barrier_init();
    t_barrier();

    /* An unmapped page and a read-only one. */
    size_t page = t_page_size();
    char *hole = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *read_only = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hole == MAP_FAILED || read_only == MAP_FAILED) t_die(errno, "mmap");
    munmap(hole, page);
    void *bad = hole;

    EXPECT_EFAULT(shmctl(shmid, IPC_STAT, bad), "shmctl(IPC_STAT, unmapped)");
    EXPECT_EFAULT(shmctl(shmid, IPC_STAT, (struct shmid_ds *)read_only), "shmctl(IPC_STAT, read-only)");
    EXPECT_EFAULT(shmctl(shmid, IPC_SET, bad), "shmctl(IPC_SET, unmapped)");
    EXPECT_EFAULT(shmctl(0, IPC_INFO, bad), "shmctl(IPC_INFO, unmapped)");
    EXPECT_EFAULT(semop(semid, bad, 1), "semop(unmapped operations)");
    struct sembuf up = {.sem_num = 3, .sem_op = 1, .sem_flg = 0};
    EXPECT_EFAULT(semtimedop(semid, &up, 1, bad), "semtimedop(unmapped timeout)");
    union semun arg;
    arg.array = bad;
    EXPECT_EFAULT(semctl(semid, 0, GETALL, arg), "semctl(GETALL, unmapped)");
    EXPECT_EFAULT(semctl(semid, 0, SETALL, arg), "semctl(SETALL, unmapped)");
    arg.array = (unsigned short *)read_only;
    EXPECT_EFAULT(semctl(semid, 0, GETALL, arg), "semctl(GETALL, read-only)");
    arg.buf = bad;
    EXPECT_EFAULT(semctl(semid, 0, IPC_STAT, arg), "semctl(IPC_STAT, unmapped)");
    EXPECT_EFAULT(semctl(semid, 0, IPC_SET, arg), "semctl(IPC_SET, unmapped)");

    /* Nothing changed, and good pointers still work. */
    struct shmid_ds ds;
    CHECK(shmctl(shmid, IPC_STAT, &ds) == 0 && ds.shm_segsz == page, "shmctl(IPC_STAT) after: %s", strerror(errno));
    CHECK(semctl(semid, 3, GETVAL) == 0, "semaphore 3 changed by a failed semtimedop: %d", semctl(semid, 3, GETVAL));
    unsigned short values[4];
    arg.array = values;
    CHECK(semctl(semid, 0, GETALL, arg) == 0, "semctl(GETALL) after: %s", strerror(errno));
    seg[t_me] = 1 + t_me;

    t_barrier();
    if (t_me == 0) {
        for (int i = 0; i < t_n; i++) CHECK(seg[i] == 1 + i, "slot %d holds %ld", i, seg[i]);
        printf("bad_pointers nodes=%d failures=%d\n", t_n, t_failures);
    }
    return t_finish(t_failures ? 1 : 0);
}
