/*
 * ipc_info.c - IPC_INFO, SHM_INFO and SEM_INFO fill the caller's buffer.
 * Only values that are Linux constants (or follow from what the program
 * does) are checked, so the program passes on the real kernel and under
 * dsmrun alike; node 0 does the checks. Prints `ipc_info failures=<k> nodes=<N>`.
 */
#define _GNU_SOURCE 1
#include "common.h"

int main(void)
{
    t_init_env("ipc_info");
    t_barrier_init();
    if (t_me == 0) {
        struct shminfo si;
        memset(&si, 0xab, sizeof si);
        int r = shmctl(0, IPC_INFO, (struct shmid_ds *)&si);
        CHECK(r >= 0, "shmctl(IPC_INFO): %s", strerror(errno));
        CHECK(si.shmmin == 1, "shminfo.shmmin = %lu, expected 1", (unsigned long)si.shmmin);
        CHECK(si.shmmni == 4096, "shminfo.shmmni = %lu, expected 4096", (unsigned long)si.shmmni);
        CHECK(si.shmmax >= (1UL << 30), "shminfo.shmmax = %lu, expected at least 1 GiB", (unsigned long)si.shmmax);

        int id = shmget(IPC_PRIVATE, 3 * t_page_size(), IPC_CREAT | 0600);
        if (id < 0)
            t_die(errno, "shmget");
        struct shm_info su;
        memset(&su, 0xab, sizeof su);
        r = shmctl(0, SHM_INFO, (struct shmid_ds *)&su);
        CHECK(r >= 0, "shmctl(SHM_INFO): %s", strerror(errno));
        CHECK(su.used_ids >= 2, "shm_info.used_ids = %d, expected the control segment and ours", su.used_ids);
        CHECK(su.shm_tot >= 4 && su.shm_tot < (1UL << 40), "shm_info.shm_tot = %lu pages", (unsigned long)su.shm_tot);
        CHECK(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID: %s", strerror(errno));

        struct seminfo mi;
        memset(&mi, 0xab, sizeof mi);
        r = semctl(0, 0, IPC_INFO, (union t_semun){.__buf = &mi});
        CHECK(r >= 0, "semctl(IPC_INFO): %s", strerror(errno));
        CHECK(mi.semmsl == 32000, "seminfo.semmsl = %d, expected 32000", mi.semmsl);
        CHECK(mi.semvmx == 32767, "seminfo.semvmx = %d, expected 32767", mi.semvmx);
        CHECK(mi.semopm == 500, "seminfo.semopm = %d, expected 500", mi.semopm);
        memset(&mi, 0xab, sizeof mi);
        r = semctl(0, 0, SEM_INFO, (union t_semun){.__buf = &mi});
        CHECK(r >= 0, "semctl(SEM_INFO): %s", strerror(errno));
        CHECK(mi.semusz >= 1, "SEM_INFO semusz (sets in use) = %d, expected at least the barrier's", mi.semusz);
        CHECK(mi.semaem >= T_NSEMS, "SEM_INFO semaem (semaphores in use) = %d, expected at least %d", mi.semaem,
              T_NSEMS);
        printf("ipc_info failures=%d nodes=%d\n", t_failures, t_n);
    }
    return t_finish(t_failures ? 1 : 0);
}
