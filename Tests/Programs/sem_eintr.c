/*
 * sem_eintr.c - a semop blocked when a signal handler runs fails with EINTR
 * (System V IPC calls are never restarted, even with SA_RESTART), and the
 * interrupted waiter is gone from GETNCNT. Every node blocks on its own
 * semaphore of one set (the set lives on node 0: the others' semops wait
 * remotely). Node 0 prints `sem_eintr failures=<k> nodes=<N>`.
 */
#include "common.h"

#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms = 0;
static void on_alarm(int sig) { (void)sig; alarms++; }

static int failures = 0;

static void blocked_semop_is_interrupted(int set, int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 150000}}; /* 150 ms */
    setitimer(ITIMER_REAL, &it, NULL);
    int before = alarms;
    struct sembuf p = {.sem_num = (unsigned short)t_me, .sem_op = -1, .sem_flg = 0};
    double t0 = t_now();
    errno = 0;
    int r = semop(set, &p, 1);
    int e = errno;
    double waited = t_now() - t0;
    if (r != -1 || e != EINTR) {
        t_msg("FAIL (SA_RESTART=%d): semop returned %d errno %d (%s), expected EINTR", restart, r, e, strerror(e));
        failures++;
    }
    if (alarms == before) {
        t_msg("FAIL (SA_RESTART=%d): the handler did not run", restart);
        failures++;
    }
    if (waited > 5.0) {
        t_msg("FAIL (SA_RESTART=%d): EINTR came after %.1f s", restart, waited);
        failures++;
    }
    int waiting = semctl(set, t_me, GETNCNT);
    if (waiting != 0) {
        t_msg("FAIL (SA_RESTART=%d): GETNCNT = %d after the interruption, expected 0", restart, waiting);
        failures++;
    }
}

int main(void)
{
    t_init_env("sem_eintr");
    t_barrier_init();
    int set = t_sem_open(2, t_n);
    int *box = t_shm_open(3, t_page_size(), NULL);
    t_barrier();
    blocked_semop_is_interrupted(set, 0);
    blocked_semop_is_interrupted(set, 1);
    t_semop1(t_bar_sem, T_SEM_M, -1, 0, "P(M)");
    box[0] += failures;
    t_semop1(t_bar_sem, T_SEM_M, +1, 0, "V(M)");
    t_barrier();
    if (t_me == 0)
        printf("sem_eintr failures=%d nodes=%d\n", box[0], t_n);
    int total = box[0];
    return t_finish(total ? 1 : 0);
}
