/*
 * shm_errors.c - Linux semantics and errno values of shmget/shmat/shmdt/
 * shmctl, checked on node 0 (the other nodes join the cross-node part).
 *
 * Node 0 alone:
 *   shmget size 0 -> EINVAL; IPC_CREAT|IPC_EXCL on an existing key ->
 *   EEXIST; missing key -> ENOENT; bigger size than the existing segment ->
 *   EINVAL (smaller is fine, same id); EACCES for a non-root caller
 *   (seteuid(65534) on a 0600 segment, then restored); shmat on bad ids ->
 *   EINVAL; shmdt of a non-attached address -> EINVAL; SHM_RDONLY attach:
 *   reads work, a write raises SIGSEGV (caught with a handler + siglongjmp,
 *   si_addr must be the written address); IPC_STAT fields (segsz, nattch,
 *   cpid, lpid, mode, uid); IPC_SET of the mode; IPC_RMID while attached
 *   (the attachment keeps working, the key is released, the same key then
 *   creates a new, zeroed segment, and the old id goes away at the last
 *   detach).
 * Cross-node (N >= 2): node 0 creates a segment with IPC_EXCL; the others
 *   must get EEXIST with IPC_EXCL and the same id without it, attach it and
 *   write to it; node 0 sees nattch = N and their data; after node 0's
 *   IPC_RMID the others get ENOENT for the key.
 * Exit 0 when everything holds; every mismatch is reported on stderr.
 */
#include "common.h"

#include <sys/mman.h>

#include <setjmp.h>
#include <signal.h>



/* Expects a call returning `bad` on failure to fail with errno `want`. */
#define EXPECT_ERR(call, bad, want)                                                                                   \
    do {                                                                                                              \
        errno = 0;                                                                                                    \
        long r_ = (long)(call);                                                                                       \
        int e_ = errno;                                                                                               \
        CHECK(r_ == (long)(bad) && e_ == (want), "%s: returned %ld errno %d (%s), expected errno %d (%s)", #call,  \
              r_, e_, strerror(e_), (want), strerror(want));                                                          \
    } while (0)

static sigjmp_buf segv_jmp;
static volatile sig_atomic_t segv_hit = 0;
static void *volatile segv_addr = NULL;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    segv_hit = 1;
    segv_addr = si->si_addr;
    siglongjmp(segv_jmp, 1);
}

static void check_rdonly(int id, size_t size)
{
    char *ro = shmat(id, NULL, SHM_RDONLY);
    CHECK(ro != (void *)-1, "shmat(SHM_RDONLY): %s", strerror(errno));
    if (ro == (void *)-1)
        return;
    /* Reading works and sees what was written through the rw attachment. */
    CHECK(ro[0] == 'A' && ro[size - 1] == 'Z', "SHM_RDONLY view reads '%c'/'%c', expected 'A'/'Z'", ro[0],
          ro[size - 1]);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old) < 0)
        t_die(errno, "sigaction");
    volatile char *target = ro + 100;
    segv_hit = 0;
    segv_addr = NULL;
    if (sigsetjmp(segv_jmp, 1) == 0) {
        *target = 'x';
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    }
    sigaction(SIGSEGV, &old, NULL);
    CHECK(segv_hit, "a write through a SHM_RDONLY attachment did not raise SIGSEGV");
    if (segv_hit)
        CHECK(segv_addr == (void *)target, "SIGSEGV si_addr = %p, expected %p", segv_addr, (void *)target);
    CHECK(ro[100] != 'x', "a write through a SHM_RDONLY attachment changed the segment");
    CHECK(shmdt(ro) == 0, "shmdt(read-only attachment): %s", strerror(errno));
}

static void single_node(void)
{
    size_t pg = t_page_size();
    key_t k1 = t_key(10), kmissing = t_key(11), kacc = t_key(12);

    /* Make sure the keys are free (a previous crashed run). */
    int stale;
    if ((stale = shmget(k1, 0, 0)) >= 0) shmctl(stale, IPC_RMID, NULL);
    if ((stale = shmget(kmissing, 0, 0)) >= 0) shmctl(stale, IPC_RMID, NULL);
    if ((stale = shmget(kacc, 0, 0)) >= 0) shmctl(stale, IPC_RMID, NULL);

    EXPECT_ERR(shmget(k1, 0, IPC_CREAT | 0600), -1, EINVAL);
    EXPECT_ERR(shmget(k1, 0, IPC_CREAT | IPC_EXCL | 0600), -1, EINVAL);
    EXPECT_ERR(shmget(kmissing, pg, 0600), -1, ENOENT);
    EXPECT_ERR(shmget(kmissing, 0, 0), -1, ENOENT);

    size_t size = 2 * pg + 100; /* not a page multiple on purpose */
    int id = shmget(k1, size, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        t_die(errno, "shmget(create k1)");
    EXPECT_ERR(shmget(k1, size, IPC_CREAT | IPC_EXCL | 0600), -1, EEXIST);
    EXPECT_ERR(shmget(k1, pg, IPC_CREAT | IPC_EXCL | 0600), -1, EEXIST);
    EXPECT_ERR(shmget(k1, size + 1, 0600), -1, EINVAL);
    EXPECT_ERR(shmget(k1, 16 * pg, IPC_CREAT | 0600), -1, EINVAL);
    int same = shmget(k1, pg, 0600);
    CHECK(same == id, "shmget(existing key, smaller size) = %d (%s), expected %d", same, strerror(errno), id);
    same = shmget(k1, 0, 0);
    CHECK(same == id, "shmget(existing key, size 0) = %d (%s), expected %d", same, strerror(errno), id);
    same = shmget(k1, size, IPC_CREAT | 0600);
    CHECK(same == id, "shmget(existing key, IPC_CREAT) = %d (%s), expected %d", same, strerror(errno), id);

    /* Bad ids and addresses. */
    EXPECT_ERR(shmat(-1, NULL, 0), (void *)-1, EINVAL);
    EXPECT_ERR(shmat(0x7ffffff0, NULL, 0), (void *)-1, EINVAL);
    EXPECT_ERR(shmctl(-1, IPC_STAT, &(struct shmid_ds){0}), -1, EINVAL);
    EXPECT_ERR(shmctl(id, 0x7777, NULL), -1, EINVAL);

    /* IPC_STAT before any attach. */
    struct shmid_ds ds;
    memset(&ds, 0, sizeof ds);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0, "IPC_STAT: %s", strerror(errno));
    CHECK(ds.shm_segsz == size, "shm_segsz = %zu, expected %zu", (size_t)ds.shm_segsz, size);
    CHECK(ds.shm_nattch == 0, "shm_nattch = %lu before attach, expected 0", (unsigned long)ds.shm_nattch);
    CHECK(ds.shm_cpid == getpid(), "shm_cpid = %d, expected %d", (int)ds.shm_cpid, (int)getpid());
    CHECK((ds.shm_perm.mode & 0777) == 0600, "mode = %o, expected 600", (unsigned)ds.shm_perm.mode & 0777);
    CHECK(ds.shm_perm.uid == geteuid() && ds.shm_perm.cuid == geteuid(), "uid/cuid = %d/%d, expected %d",
          (int)ds.shm_perm.uid, (int)ds.shm_perm.cuid, (int)geteuid());
    CHECK(ds.shm_perm.__key == k1, "key = %#x, expected %#x", (unsigned)ds.shm_perm.__key, (unsigned)k1);

    /* Attach twice: nattch 2, both views see the same memory, zero-filled. */
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        t_die(errno, "shmat");
    char *p2 = shmat(id, NULL, 0);
    if (p2 == (void *)-1)
        t_die(errno, "shmat (second)");
    CHECK(p != p2, "two attaches at one address");
    int zero = 1;
    for (size_t i = 0; i < size; i++)
        if (p[i]) { zero = 0; break; }
    CHECK(zero, "a new segment is not zero-filled");
    p[0] = 'A';
    p[size - 1] = 'Z';
    p[pg] = 'M';
    CHECK(p2[0] == 'A' && p2[size - 1] == 'Z' && p2[pg] == 'M', "two attachments of one segment disagree");
    memset(&ds, 0, sizeof ds);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0, "IPC_STAT: %s", strerror(errno));
    CHECK(ds.shm_nattch == 2, "shm_nattch = %lu with two attaches, expected 2", (unsigned long)ds.shm_nattch);
    CHECK(ds.shm_lpid == getpid(), "shm_lpid = %d, expected %d", (int)ds.shm_lpid, (int)getpid());
    CHECK(shmdt(p2) == 0, "shmdt: %s", strerror(errno));
    EXPECT_ERR(shmdt(p2), -1, EINVAL);
    EXPECT_ERR(shmdt(p + 1), -1, EINVAL);
    memset(&ds, 0, sizeof ds);
    shmctl(id, IPC_STAT, &ds);
    CHECK(ds.shm_nattch == 1, "shm_nattch = %lu after one detach, expected 1", (unsigned long)ds.shm_nattch);

    /* Read-only attachment. */
    check_rdonly(id, size);

    /* IPC_SET changes the mode. */
    memset(&ds, 0, sizeof ds);
    shmctl(id, IPC_STAT, &ds);
    ds.shm_perm.mode = 0640;
    CHECK(shmctl(id, IPC_SET, &ds) == 0, "IPC_SET: %s", strerror(errno));
    memset(&ds, 0, sizeof ds);
    shmctl(id, IPC_STAT, &ds);
    CHECK((ds.shm_perm.mode & 0777) == 0640, "mode after IPC_SET = %o, expected 640",
          (unsigned)ds.shm_perm.mode & 0777);

    /* EACCES for an unprivileged caller on a 0600 segment. */
    int acc = shmget(kacc, pg, IPC_CREAT | IPC_EXCL | 0600);
    if (acc < 0)
        t_die(errno, "shmget(create kacc)");
    if (geteuid() == 0) {
        if (seteuid(65534) == 0) {
            errno = 0;
            int r1 = shmget(kacc, pg, 0600);
            int e1 = errno;
            errno = 0;
            void *r2 = shmat(acc, NULL, 0);
            int e2 = errno;
            errno = 0;
            struct shmid_ds d2;
            int r3 = shmctl(acc, IPC_STAT, &d2);
            int e3 = errno;
            errno = 0;
            int r4 = shmctl(acc, IPC_RMID, NULL);
            int e4 = errno;
            if (seteuid(0) < 0)
                t_die(errno, "seteuid(0) (restore)");
            CHECK(r1 == -1 && e1 == EACCES, "shmget as uid 65534 on a 0600 segment: %d errno %d (%s), expected EACCES",
                  r1, e1, strerror(e1));
            CHECK(r2 == (void *)-1 && e2 == EACCES, "shmat as uid 65534 on a 0600 segment: errno %d (%s), expected EACCES",
                  e2, strerror(e2));
            if (r2 != (void *)-1)
                shmdt(r2);
            CHECK(r3 == -1 && e3 == EACCES, "IPC_STAT as uid 65534 on a 0600 segment: %d errno %d (%s), expected EACCES",
                  r3, e3, strerror(e3));
            CHECK(r4 == -1 && e4 == EPERM, "IPC_RMID as uid 65534 (not owner): %d errno %d (%s), expected EPERM", r4,
                  e4, strerror(e4));
        } else {
            t_msg("note: seteuid(65534) failed (%s); EACCES check skipped", strerror(errno));
        }
    } else {
        t_msg("note: not root; EACCES check skipped");
    }
    CHECK(shmctl(acc, IPC_RMID, NULL) == 0, "IPC_RMID(kacc): %s", strerror(errno));

    /* IPC_RMID while attached. */
    CHECK(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID while attached: %s", strerror(errno));
    p[1] = 'B';
    CHECK(p[0] == 'A' && p[1] == 'B', "attachment unusable after IPC_RMID");
    memset(&ds, 0, sizeof ds);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0, "IPC_STAT after IPC_RMID while attached: %s", strerror(errno));
    CHECK(ds.shm_perm.mode & SHM_DEST, "SHM_DEST not set after IPC_RMID while attached (mode %o)",
          (unsigned)ds.shm_perm.mode);
    CHECK(ds.shm_perm.__key == IPC_PRIVATE, "key after IPC_RMID = %#x, expected IPC_PRIVATE",
          (unsigned)ds.shm_perm.__key);
    EXPECT_ERR(shmget(k1, size, 0600), -1, ENOENT);
    int id2 = shmget(k1, size, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id2 >= 0, "shmget(IPC_CREAT|IPC_EXCL) after IPC_RMID: %s", strerror(errno));
    if (id2 >= 0) {
        CHECK(id2 != id, "the new segment reuses the old id %d", id);
        char *q = shmat(id2, NULL, 0);
        CHECK(q != (void *)-1, "shmat(new): %s", strerror(errno));
        if (q != (void *)-1) {
            CHECK(q[0] == 0 && q[1] == 0 && q[size - 1] == 0, "the new segment is not zero-filled");
            q[0] = 'N';
            CHECK(p[0] == 'A', "a write to the new segment shows in the old one");
            CHECK(shmdt(q) == 0, "shmdt(new): %s", strerror(errno));
        }
    }
    CHECK(shmdt(p) == 0, "shmdt(old): %s", strerror(errno));
    /* The last detach destroyed the old segment. */
    errno = 0;
    int r = shmctl(id, IPC_STAT, &ds);
    CHECK(r == -1 && (errno == EINVAL || errno == EIDRM), "IPC_STAT on a destroyed segment: %d errno %d (%s)", r,
          errno, strerror(errno));
    EXPECT_ERR(shmat(id, NULL, 0), (void *)-1, EINVAL);
    if (id2 >= 0)
        CHECK(shmctl(id2, IPC_RMID, NULL) == 0, "IPC_RMID(new): %s", strerror(errno));
    EXPECT_ERR(shmctl(id2, IPC_RMID, NULL), -1, EINVAL);
}

static void cross_node(void)
{
    size_t pg = t_page_size();
    key_t kx = t_key(20);
    /* Shared word area of the program (created by every node). */
    volatile int *box = t_shm_open(2, pg, NULL);
    int id = -1;
    if (t_me == 0) {
        id = shmget(kx, 4 * pg, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0)
            t_die(errno, "shmget(kx, IPC_EXCL)");
        box[0] = id;
    }
    t_barrier();
    char *p;
    if (t_me != 0) {
        EXPECT_ERR(shmget(kx, 4 * pg, IPC_CREAT | IPC_EXCL | 0600), -1, EEXIST);
        EXPECT_ERR(shmget(kx, 8 * pg, 0600), -1, EINVAL);
        id = shmget(kx, 4 * pg, 0600);
        CHECK(id == box[0], "shmget(existing key) on node %d = %d (%s), node 0 created id %d", t_me, id,
              strerror(errno), box[0]);
        if (id < 0)
            id = box[0];
    }
    p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        t_die(errno, "shmat(cross-node segment %d)", id);
    p[(size_t)t_me * pg / 2 + 7] = (char)('a' + t_me);
    t_barrier();
    if (t_me == 0) {
        struct shmid_ds ds;
        memset(&ds, 0, sizeof ds);
        CHECK(shmctl(id, IPC_STAT, &ds) == 0, "IPC_STAT: %s", strerror(errno));
        CHECK(ds.shm_nattch == (shmatt_t)t_n, "shm_nattch = %lu with every node attached, expected %d",
              (unsigned long)ds.shm_nattch, t_n);
        CHECK(ds.shm_segsz == 4 * pg, "shm_segsz = %zu, expected %zu", (size_t)ds.shm_segsz, 4 * pg);
        for (int i = 0; i < t_n; i++)
            CHECK(p[(size_t)i * pg / 2 + 7] == (char)('a' + i), "node %d's byte reads %d", i,
                  p[(size_t)i * pg / 2 + 7]);
        CHECK(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID(cross-node, attached everywhere): %s", strerror(errno));
    }
    t_barrier();
    /* Marked for removal: the key is gone everywhere, attachments still work. */
    EXPECT_ERR(shmget(kx, 4 * pg, 0600), -1, ENOENT);
    p[(size_t)t_me * pg / 2 + 8] = 1;
    CHECK(p[(size_t)t_me * pg / 2 + 7] == (char)('a' + t_me), "attachment lost its data after IPC_RMID");
    CHECK(shmdt(p) == 0, "shmdt: %s", strerror(errno));
    t_barrier();
    if (t_me == 0) {
        struct shmid_ds ds;
        errno = 0;
        int r = shmctl(id, IPC_STAT, &ds);
        CHECK(r == -1 && (errno == EINVAL || errno == EIDRM),
              "IPC_STAT after every node detached a removed segment: %d errno %d (%s)", r, errno, strerror(errno));
    }
}

/* Whether the mapping that holds `p` is executable, per /proc/self/maps. */
static int mapping_is_executable(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return 0;
    char line[512];
    int exec = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && (unsigned long)p >= lo && (unsigned long)p < hi) {
            exec = perms[2] == 'x';
            break;
        }
    }
    fclose(f);
    return exec;
}

/* shmat at a given address: page-aligned works and returns it; a misaligned
 * address is EINVAL without SHM_RND and rounded down with it; an address
 * overlapping an existing mapping is EINVAL. */
static void given_address(void)
{
    size_t pg = t_page_size();
    size_t size = 3 * pg;
    int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
    if (id < 0)
        t_die(errno, "shmget(IPC_PRIVATE)");
    /* Find a free range, then give it back so the segment can go there. */
    char *hole = mmap(NULL, 8 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hole == MAP_FAILED)
        t_die(errno, "mmap");
    munmap(hole, 8 * pg);
    char *want = hole + 2 * pg;
    char *p = shmat(id, want, 0);
    CHECK(p == want, "shmat(given %p) returned %p", (void *)want, (void *)p);
    if (p != (void *)-1) {
        p[0] = 'g';
        p[size - 1] = 'h';
        CHECK(p[0] == 'g' && p[size - 1] == 'h', "a segment attached at a given address does not keep writes");
        /* The same segment again over the first attachment: the range is taken. */
        EXPECT_ERR(shmat(id, want, 0), (void *)-1, EINVAL);
        CHECK(shmdt(p) == 0, "shmdt(given): %s", strerror(errno));
    }
    EXPECT_ERR(shmat(id, want + 1, 0), (void *)-1, EINVAL);
    char *r = shmat(id, want + 1, SHM_RND);
    CHECK(r == want, "shmat(%p, SHM_RND) returned %p, expected %p", (void *)(want + 1), (void *)r, (void *)want);
    if (r != (void *)-1) {
        CHECK(r[0] == 'g' && r[size - 1] == 'h', "a second attachment does not see the first one's writes");
        CHECK(shmdt(r) == 0, "shmdt(rounded): %s", strerror(errno));
    }
    /* SHM_EXEC maps the segment executable. */
    char *x = shmat(id, NULL, SHM_EXEC);
    CHECK(x != (void *)-1, "shmat(SHM_EXEC): %s", strerror(errno));
    if (x != (void *)-1) {
        CHECK(x[0] == 'g', "a SHM_EXEC attachment does not see the segment");
        CHECK(mapping_is_executable(x), "a SHM_EXEC attachment is not executable in /proc/self/maps");
        CHECK(shmdt(x) == 0, "shmdt(exec): %s", strerror(errno));
    }
    CHECK(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID(private): %s", strerror(errno));
}

int main(void)
{
    t_init_env("shm_errors");
    t_barrier_init();
    if (t_me == 0) {
        single_node();
        given_address();
    }
    t_barrier();
    if (t_n >= 2)
        cross_node();

    /* Gather the failure counts on node 0. */
    volatile int *box = t_n >= 2 ? (volatile int *)t_shm_addrs[1] : NULL;
    if (box) {
        t_semop1(t_bar_sem, T_SEM_M, -1, 0, "P(M)");
        box[1] += t_failures;
        t_semop1(t_bar_sem, T_SEM_M, +1, 0, "V(M)");
    }
    t_barrier();
    int total = box ? box[1] : t_failures;
    if (t_me == 0)
        printf("shm_errors nodes=%d failures=%d\n", t_n, total);
    return t_finish(t_failures > 0 || (t_me == 0 && total > 0));
}
