/*
 * sem_errors.c - Linux semantics and errno values of semget/semop/
 * semtimedop/semctl.
 *
 * Node 0 alone:
 *   semget with a bad nsems (0, negative, > SEMMSL; more than the existing
 *   set) -> EINVAL; IPC_CREAT|IPC_EXCL on an existing key -> EEXIST; missing
 *   key -> ENOENT; EACCES for a non-root caller (seteuid(65534), restored);
 *   semop: sem_num out of range -> EFBIG, nsops 0 -> EINVAL, IPC_NOWAIT ->
 *   EAGAIN, all-or-nothing multi-op, overflow past SEMVMX -> ERANGE;
 *   semtimedop timeout -> EAGAIN within the timeout; semctl GETVAL/SETVAL/
 *   GETALL/SETALL/GETNCNT/GETZCNT/GETPID/IPC_STAT, SETVAL/SETALL out of
 *   range -> ERANGE; IPC_RMID then any use -> EINVAL/EIDRM.
 * Cross-node (N >= 2, between nodes 0 and 1):
 *   node 1 blocks in semop, node 0 sees GETNCNT = 1 and releases it;
 *   the same for wait-for-zero and GETZCNT;
 *   node 1 blocks, node 0 removes the set: node 1 gets EIDRM;
 *   SEM_UNDO: node 1 does +1 with SEM_UNDO and exits; node 0 waits for zero
 *   (semtimedop with a timeout): the undo at node 1's exit brings it back.
 * Node 0 prints `sem_errors nodes=<N> failures=<k>` (all nodes' failures);
 * exit 1 on any failure.
 */
#include "common.h"

#include <grp.h>



#define EXPECT_ERR(call, want)                                                                                        \
    do {                                                                                                              \
        errno = 0;                                                                                                    \
        long r_ = (long)(call);                                                                                       \
        int e_ = errno;                                                                                               \
        CHECK(r_ == -1 && e_ == (want), "%s: returned %ld errno %d (%s), expected errno %d (%s)", #call, r_, e_,    \
              strerror(e_), (want), strerror(want));                                                                  \
    } while (0)

/* Either of two errno values (e.g. EINVAL or EIDRM for a removed id). */
#define EXPECT_ERR2(call, want1, want2)                                                                               \
    do {                                                                                                              \
        errno = 0;                                                                                                    \
        long r_ = (long)(call);                                                                                       \
        int e_ = errno;                                                                                               \
        CHECK(r_ == -1 && (e_ == (want1) || e_ == (want2)), "%s: returned %ld errno %d (%s), expected %s or %s",    \
              #call, r_, e_, strerror(e_), strerror(want1), strerror(want2));                                         \
    } while (0)

#define OK(call) CHECK((call) >= 0, "%s failed: %s", #call, strerror(errno))

static int op1(int id, int num, int op, int flg)
{
    struct sembuf b = {.sem_num = (unsigned short)num, .sem_op = (short)op, .sem_flg = (short)flg};
    return semop(id, &b, 1);
}

static int timed1(int id, int num, int op, int flg, double seconds)
{
    struct sembuf b = {.sem_num = (unsigned short)num, .sem_op = (short)op, .sem_flg = (short)flg};
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    int r;
    while ((r = semtimedop(id, &b, 1, &ts)) < 0 && errno == EINTR)
        ;
    return r;
}

static int getval(int id, int num) { return semctl(id, num, GETVAL); }

/* Polls semctl(cmd) until it returns `want` or `seconds` pass; returns the
 * last value. */
static int poll_ctl(int id, int num, int cmd, int want, double seconds)
{
    double end = t_now() + seconds;
    int v;
    while ((v = semctl(id, num, cmd)) != want && t_now() < end) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return v;
}

static int semmsl(void)
{
    int v[4] = {32000, 0, 0, 0};
    FILE *f = fopen("/proc/sys/kernel/sem", "r");
    if (f) {
        if (fscanf(f, "%d %d %d %d", &v[0], &v[1], &v[2], &v[3]) != 4)
            v[0] = 32000;
        fclose(f);
    }
    return v[0];
}

static void single_node(void)
{
    key_t ks = t_key(30), kmiss = t_key(31), kacc = t_key(32);
    int stale;
    if ((stale = semget(ks, 0, 0)) >= 0) semctl(stale, 0, IPC_RMID);
    if ((stale = semget(kmiss, 0, 0)) >= 0) semctl(stale, 0, IPC_RMID);
    if ((stale = semget(kacc, 0, 0)) >= 0) semctl(stale, 0, IPC_RMID);

    EXPECT_ERR(semget(ks, 0, IPC_CREAT | 0600), EINVAL);
    EXPECT_ERR(semget(ks, -1, IPC_CREAT | 0600), EINVAL);
    EXPECT_ERR(semget(ks, semmsl() + 1, IPC_CREAT | 0600), EINVAL);
    EXPECT_ERR(semget(kmiss, 1, 0600), ENOENT);
    EXPECT_ERR(semget(kmiss, 0, 0), ENOENT);

    int id = semget(ks, 3, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        t_die(errno, "semget(create)");
    EXPECT_ERR(semget(ks, 3, IPC_CREAT | IPC_EXCL | 0600), EEXIST);
    EXPECT_ERR(semget(ks, 4, 0600), EINVAL);
    int same = semget(ks, 2, 0600);
    CHECK(same == id, "semget(existing, fewer sems) = %d (%s), expected %d", same, strerror(errno), id);
    same = semget(ks, 0, 0);
    CHECK(same == id, "semget(existing, 0) = %d (%s), expected %d", same, strerror(errno), id);
    same = semget(ks, 3, IPC_CREAT | 0600);
    CHECK(same == id, "semget(existing, IPC_CREAT) = %d (%s), expected %d", same, strerror(errno), id);

    /* Fresh set: all zero. */
    unsigned short all[3] = {9, 9, 9};
    OK(semctl(id, 0, GETALL, (union t_semun){.array = all}));
    CHECK(all[0] == 0 && all[1] == 0 && all[2] == 0, "new set values %u %u %u, expected 0 0 0", all[0], all[1],
          all[2]);

    struct semid_ds ds;
    memset(&ds, 0, sizeof ds);
    OK(semctl(id, 0, IPC_STAT, (union t_semun){.buf = &ds}));
    CHECK(ds.sem_nsems == 3, "sem_nsems = %lu, expected 3", (unsigned long)ds.sem_nsems);
    CHECK((ds.sem_perm.mode & 0777) == 0600, "mode = %o, expected 600", (unsigned)ds.sem_perm.mode & 0777);
    CHECK(ds.sem_perm.uid == geteuid() && ds.sem_perm.cuid == geteuid(), "uid/cuid = %d/%d, expected %d",
          (int)ds.sem_perm.uid, (int)ds.sem_perm.cuid, (int)geteuid());
    CHECK(ds.sem_perm.__key == ks, "key = %#x, expected %#x", (unsigned)ds.sem_perm.__key, (unsigned)ks);
    CHECK(ds.sem_otime == 0, "sem_otime = %ld before any semop, expected 0", (long)ds.sem_otime);

    /* semop errors. */
    EXPECT_ERR(op1(id, 3, 1, 0), EFBIG);
    EXPECT_ERR(op1(id, 1000, -1, IPC_NOWAIT), EFBIG);
    {
        struct sembuf none[1];
        EXPECT_ERR(semop(id, none, 0), EINVAL);
    }
    EXPECT_ERR(op1(id, 0, -1, IPC_NOWAIT), EAGAIN);
    EXPECT_ERR(op1(-1, 0, 1, 0), EINVAL);

    /* All or nothing: the +1 on sem 0 must not happen when sem 1 would block. */
    {
        struct sembuf two[2] = {{0, +1, 0}, {1, -1, IPC_NOWAIT}};
        EXPECT_ERR(semop(id, two, 2), EAGAIN);
        CHECK(getval(id, 0) == 0, "a failed multi-op semop changed sem 0 to %d", getval(id, 0));
    }

    /* semtimedop times out with EAGAIN, after about the timeout. */
    {
        double t0 = t_now();
        int r = timed1(id, 0, -1, 0, 0.2);
        int e = errno;
        double dt = t_now() - t0;
        CHECK(r == -1 && e == EAGAIN, "semtimedop(0.2 s) on a zero semaphore: %d errno %d (%s), expected EAGAIN", r,
              e, strerror(e));
        CHECK(dt >= 0.15 && dt < 3.0, "semtimedop(0.2 s) returned after %.3f s", dt);
        struct timespec bad = {0, 2000000000L};
        struct sembuf b = {0, -1, 0};
        EXPECT_ERR(semtimedop(id, &b, 1, &bad), EINVAL);
    }

    /* Wait for zero on a zero semaphore succeeds at once. */
    OK(op1(id, 2, 0, IPC_NOWAIT));

    /* SETVAL / GETVAL / SETALL / GETALL / GETNCNT / GETZCNT / GETPID. */
    OK(semctl(id, 0, SETVAL, (union t_semun){.val = 5}));
    CHECK(getval(id, 0) == 5, "GETVAL after SETVAL 5 = %d", getval(id, 0));
    unsigned short set3[3] = {1, 2, 3};
    OK(semctl(id, 0, SETALL, (union t_semun){.array = set3}));
    memset(all, 0, sizeof all);
    OK(semctl(id, 0, GETALL, (union t_semun){.array = all}));
    CHECK(all[0] == 1 && all[1] == 2 && all[2] == 3, "GETALL after SETALL 1 2 3 = %u %u %u", all[0], all[1], all[2]);
    CHECK(semctl(id, 1, GETNCNT) == 0, "GETNCNT without waiters = %d", semctl(id, 1, GETNCNT));
    CHECK(semctl(id, 1, GETZCNT) == 0, "GETZCNT without waiters = %d", semctl(id, 1, GETZCNT));
    EXPECT_ERR(op1(id, 2, 0, IPC_NOWAIT), EAGAIN); /* wait for zero on 3 */
    OK(op1(id, 2, -1, 0));
    CHECK(getval(id, 2) == 2, "GETVAL after -1 on 3 = %d", getval(id, 2));
    CHECK(semctl(id, 2, GETPID) == getpid(), "GETPID = %d, expected %d", semctl(id, 2, GETPID), (int)getpid());
    memset(&ds, 0, sizeof ds);
    OK(semctl(id, 0, IPC_STAT, (union t_semun){.buf = &ds}));
    CHECK(ds.sem_otime != 0, "sem_otime not set by semop");

    /* Range errors. */
    EXPECT_ERR(semctl(id, 0, SETVAL, (union t_semun){.val = 32768}), ERANGE);
    EXPECT_ERR(semctl(id, 0, SETVAL, (union t_semun){.val = -1}), ERANGE);
    CHECK(getval(id, 0) == 1, "a failed SETVAL changed the value to %d", getval(id, 0));
    unsigned short big[3] = {1, 40000, 3};
    EXPECT_ERR(semctl(id, 0, SETALL, (union t_semun){.array = big}), ERANGE);
    OK(semctl(id, 0, SETVAL, (union t_semun){.val = 32767}));
    EXPECT_ERR(op1(id, 0, 1, 0), ERANGE);
    CHECK(getval(id, 0) == 32767, "GETVAL after an overflowing semop = %d", getval(id, 0));
    EXPECT_ERR(semctl(id, 3, GETVAL), EINVAL);
    EXPECT_ERR(semctl(id, -1, SETVAL, (union t_semun){.val = 1}), EINVAL);
    EXPECT_ERR(semctl(id, 0, 0x7777), EINVAL);

    /* IPC_SET of the mode. */
    memset(&ds, 0, sizeof ds);
    OK(semctl(id, 0, IPC_STAT, (union t_semun){.buf = &ds}));
    ds.sem_perm.mode = 0640;
    OK(semctl(id, 0, IPC_SET, (union t_semun){.buf = &ds}));
    memset(&ds, 0, sizeof ds);
    OK(semctl(id, 0, IPC_STAT, (union t_semun){.buf = &ds}));
    CHECK((ds.sem_perm.mode & 0777) == 0640, "mode after IPC_SET = %o", (unsigned)ds.sem_perm.mode & 0777);

    /* EACCES / EPERM for an unprivileged caller on a 0600 set. */
    int acc = semget(kacc, 1, IPC_CREAT | IPC_EXCL | 0600);
    if (acc < 0)
        t_die(errno, "semget(kacc)");
    if (geteuid() == 0) {
        if (seteuid(65534) == 0) {
            errno = 0;
            int r1 = semget(kacc, 1, 0600);
            int e1 = errno;
            errno = 0;
            int r2 = op1(acc, 0, 1, IPC_NOWAIT);
            int e2 = errno;
            errno = 0;
            int r3 = semctl(acc, 0, GETVAL);
            int e3 = errno;
            errno = 0;
            int r4 = semctl(acc, 0, IPC_RMID);
            int e4 = errno;
            if (seteuid(0) < 0)
                t_die(errno, "seteuid(0) (restore)");
            CHECK(r1 == -1 && e1 == EACCES, "semget as uid 65534 on a 0600 set: %d errno %d (%s), expected EACCES", r1,
                  e1, strerror(e1));
            CHECK(r2 == -1 && e2 == EACCES, "semop as uid 65534 on a 0600 set: %d errno %d (%s), expected EACCES", r2,
                  e2, strerror(e2));
            CHECK(r3 == -1 && e3 == EACCES, "GETVAL as uid 65534 on a 0600 set: %d errno %d (%s), expected EACCES",
                  r3, e3, strerror(e3));
            CHECK(r4 == -1 && e4 == EPERM, "IPC_RMID as uid 65534 (not owner): %d errno %d (%s), expected EPERM", r4,
                  e4, strerror(e4));
        } else {
            t_msg("note: seteuid(65534) failed (%s); EACCES check skipped", strerror(errno));
        }
    } else {
        t_msg("note: not root; EACCES check skipped");
    }
    OK(semctl(acc, 0, IPC_RMID));

    /* Supplementary groups count, as Linux's in_group_p() makes them. */
    int grp = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (grp < 0)
        t_die(errno, "semget(group set)");
    struct semid_ds gds;
    memset(&gds, 0, sizeof gds);
    OK(semctl(grp, 0, IPC_STAT, (union t_semun){.buf = &gds}));
    gds.sem_perm.gid = 4321;
    gds.sem_perm.mode = 0060;
    OK(semctl(grp, 0, IPC_SET, (union t_semun){.buf = &gds}));
    gid_t extra = 4321;
    /* The creator's group (cgid 0) counts too: leave it with setegid. */
    if (geteuid() == 0 && setgroups(1, &extra) == 0) {
        if (setegid(65534) < 0 || seteuid(65534) < 0)
            t_die(errno, "setegid/seteuid(65534)");
        errno = 0;
        int with = semctl(grp, 0, GETVAL);
        int e_with = errno;
        if (seteuid(0) < 0 || setgroups(0, NULL) < 0)
            t_die(errno, "restore uid and groups");
        if (seteuid(65534) < 0)
            t_die(errno, "seteuid(65534)");
        errno = 0;
        int without = semctl(grp, 0, GETVAL);
        int e_without = errno;
        if (seteuid(0) < 0 || setegid(0) < 0)
            t_die(errno, "seteuid/setegid(0) (restore)");
        CHECK(with == 0, "GETVAL through a supplementary group: %d errno %d (%s), expected 0", with, e_with,
              strerror(e_with));
        CHECK(without == -1 && e_without == EACCES, "GETVAL without the group: %d errno %d (%s), expected EACCES",
              without, e_without, strerror(e_without));
    }
    OK(semctl(grp, 0, IPC_RMID));

    /* SETALL needs alter permission only, GETALL read permission. */
    int wo = semget(IPC_PRIVATE, 2, IPC_CREAT | 0620); /* egid stays 0: the group bits apply */
    if (wo < 0)
        t_die(errno, "semget(0620 set)");
    if (geteuid() == 0 && seteuid(65534) == 0) {
        unsigned short put[2] = {3, 4}, got[2] = {0, 0};
        errno = 0;
        int r5 = semctl(wo, 0, SETALL, (union t_semun){.array = put});
        int e5 = errno;
        errno = 0;
        int r6 = semctl(wo, 0, GETALL, (union t_semun){.array = got});
        int e6 = errno;
        if (seteuid(0) < 0)
            t_die(errno, "seteuid(0) (restore)");
        CHECK(r5 == 0, "SETALL as uid 65534 on a 0620 set: %d errno %d (%s), expected success", r5, e5, strerror(e5));
        CHECK(r6 == -1 && e6 == EACCES, "GETALL as uid 65534 on a 0620 set: %d errno %d (%s), expected EACCES", r6, e6,
              strerror(e6));
        CHECK(semctl(wo, 1, GETVAL) == 4, "SETALL by uid 65534 did not set the values");
    }
    OK(semctl(wo, 0, IPC_RMID));

    /* IPC_RMID, then every use fails. */
    OK(semctl(id, 0, IPC_RMID));
    EXPECT_ERR2(op1(id, 0, -1, IPC_NOWAIT), EINVAL, EIDRM);
    EXPECT_ERR2(semctl(id, 0, GETVAL), EINVAL, EIDRM);
    EXPECT_ERR2(semctl(id, 0, IPC_RMID), EINVAL, EIDRM);
    EXPECT_ERR(semget(ks, 1, 0600), ENOENT);
    int id2 = semget(ks, 1, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id2 >= 0 && id2 != id, "re-creating a removed key: id %d (%s), old id %d", id2, strerror(errno), id);
    if (id2 >= 0) {
        CHECK(getval(id2, 0) == 0, "re-created set starts at %d", getval(id2, 0));
        OK(semctl(id2, 0, IPC_RMID));
    }
}

/* Communication area for the cross-node part (segment t_key(2)). */
struct box {
    int sy_id;
    int t_failures;
};
static volatile struct box *box;

enum { X_BLOCK = 0, X_DONE = 1, X_UNDO = 2, X_ZERO = 3, X_ACK = 4, X_NSEMS = 5 };

/* Adds this node's failures to the shared total (under the barrier mutex). */
static void publish(void)
{
    if (t_n > 1)
        t_semop1(t_bar_sem, T_SEM_M, -1, 0, "P(M)");
    box->t_failures += t_failures;
    if (t_n > 1)
        t_semop1(t_bar_sem, T_SEM_M, +1, 0, "V(M)");
}

/* Node 0, once every other node has left. */
static void report_total(void)
{
    publish();
    printf("sem_errors nodes=%d failures=%d\n", t_n, box->t_failures);
}

static void cross_node(int sx)
{
    const double wait = 20.0; /* every blocking call has a timeout */

    /* 1. A node blocks in semop, another releases it; GETNCNT seen remotely. */
    t_barrier();
    if (t_me == 1) {
        double t0 = t_now();
        int r = timed1(sx, X_BLOCK, -1, 0, wait);
        CHECK(r == 0, "blocked semop(-1) was not released by node 0 (%s after %.1f s)", strerror(errno),
              t_now() - t0);
        OK(op1(sx, X_DONE, +1, 0));
    } else if (t_me == 0) {
        int nc = poll_ctl(sx, X_BLOCK, GETNCNT, 1, 10.0);
        CHECK(nc == 1, "GETNCNT on node 0 while node 1 is blocked = %d, expected 1", nc);
        CHECK(getval(sx, X_BLOCK) == 0, "value while node 1 is blocked = %d", getval(sx, X_BLOCK));
        OK(op1(sx, X_BLOCK, +1, 0));
        int r = timed1(sx, X_DONE, -1, 0, wait);
        CHECK(r == 0, "node 1 did not report its release (%s)", strerror(errno));
        CHECK(semctl(sx, X_BLOCK, GETNCNT) == 0, "GETNCNT after the release = %d", semctl(sx, X_BLOCK, GETNCNT));
        CHECK(getval(sx, X_BLOCK) == 0, "value after the release = %d, expected 0", getval(sx, X_BLOCK));
    }

    /* 1b. Wait-for-zero across nodes; GETZCNT seen remotely. */
    if (t_me == 0)
        OK(semctl(sx, X_ZERO, SETVAL, (union t_semun){.val = 1}));
    t_barrier();
    if (t_me == 1) {
        int r = timed1(sx, X_ZERO, 0, 0, wait);
        CHECK(r == 0, "wait-for-zero was not released by node 0 (%s)", strerror(errno));
        OK(op1(sx, X_DONE, +1, 0));
    } else if (t_me == 0) {
        int zc = poll_ctl(sx, X_ZERO, GETZCNT, 1, 10.0);
        CHECK(zc == 1, "GETZCNT on node 0 while node 1 waits for zero = %d, expected 1", zc);
        OK(op1(sx, X_ZERO, -1, 0));
        int r = timed1(sx, X_DONE, -1, 0, wait);
        CHECK(r == 0, "node 1 did not report its wait-for-zero release (%s)", strerror(errno));
        CHECK(semctl(sx, X_ZERO, GETZCNT) == 0, "GETZCNT after the release = %d", semctl(sx, X_ZERO, GETZCNT));
    }

    /* 2. Removing a set wakes a remote waiter with EIDRM. */
    if (t_me == 0) {
        key_t ky = t_key(41);
        int stale = semget(ky, 0, 0);
        if (stale >= 0)
            semctl(stale, 0, IPC_RMID);
        box->sy_id = semget(ky, 1, IPC_CREAT | IPC_EXCL | 0600);
        if (box->sy_id < 0)
            t_die(errno, "semget(SY)");
    }
    t_barrier();
    if (t_me == 1) {
        int sy = semget(t_key(41), 1, 0600);
        CHECK(sy == box->sy_id, "semget(SY) on node 1 = %d (%s), node 0 created %d", sy, strerror(errno), box->sy_id);
        errno = 0;
        int r = timed1(box->sy_id, 0, -1, 0, wait);
        int e = errno;
        CHECK(r == -1 && e == EIDRM, "waiter on a set removed by node 0: %d errno %d (%s), expected EIDRM", r, e,
              strerror(e));
    } else if (t_me == 0) {
        int nc = poll_ctl(box->sy_id, 0, GETNCNT, 1, 10.0);
        CHECK(nc == 1, "GETNCNT on SY while node 1 is blocked = %d, expected 1", nc);
        OK(semctl(box->sy_id, 0, IPC_RMID));
    }
    t_barrier();
    if (t_me != 0)
        EXPECT_ERR(semget(t_key(41), 1, 0600), ENOENT);

    /* 3. SEM_UNDO: node 1's +1 is undone when it exits. */
    t_barrier();
    if (t_me == 1) {
        OK(op1(sx, X_UNDO, +1, SEM_UNDO));
        OK(op1(sx, X_DONE, +1, 0));
        /* Do not exit before node 0 has seen the +1. */
        int r = timed1(sx, X_ACK, -1, 0, wait);
        CHECK(r == 0, "no acknowledgement from node 0 (%s)", strerror(errno));
        /* Then leave and exit: the kernel (or the runtime) undoes the +1. */
    } else if (t_me == 0) {
        int r = timed1(sx, X_DONE, -1, 0, wait);
        CHECK(r == 0, "node 1 did not report its SEM_UNDO operation (%s)", strerror(errno));
        CHECK(getval(sx, X_UNDO) == 1, "value after node 1's +1 (SEM_UNDO) = %d, expected 1", getval(sx, X_UNDO));
        OK(op1(sx, X_ACK, +1, 0));
        double t0 = t_now();
        r = timed1(sx, X_UNDO, 0, 0, 15.0);
        int e = errno;
        CHECK(r == 0, "wait-for-zero after node 1's exit: %s after %.1f s (value %d): SEM_UNDO not applied at exit",
              strerror(e), t_now() - t0, getval(sx, X_UNDO));
    }
}

int main(void)
{
    t_init_env("sem_errors");
    t_barrier_init();
    box = t_shm_open(2, t_page_size(), NULL);
    int sx = t_sem_open(40, X_NSEMS);
    if (t_me == 0)
        single_node();
    if (t_n >= 2)
        cross_node(sx);
    if (t_me != 0)
        publish();
    t_before_remove = report_total;
    return t_leave(t_failures > 0);
}
