/*
 * syscall_fault.c - the kernel and libc access System V segment pages that
 * are not (yet) mapped on the calling node.
 *
 * The segment is created by every node; node 0 fills some regions first, then
 * every node reads them (shared copies). Then the worker (node 1, or node 0
 * when alone) does, each on pages it has never touched:
 *   read(2) from a pipe into never-touched pages (no node touched them),
 *   pread(2) from a file over pages written by node 0 and cached elsewhere,
 *   readv(2) from a file into two never-touched pages,
 *   recv(2) from a socketpair into never-touched pages,
 *   fstat(2) into a struct stat on a never-touched page,
 *   write(2) from pages written by node 0 to a pipe (the kernel reads them),
 *   memset and memcpy by libc at unaligned offsets over several pages.
 * After a barrier every node checks every byte (and that the bytes around
 * each region are untouched). Exit 1 on any mismatch; node 0 prints
 * `syscall_fault nodes=<N> failures=<k>`.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

static int failures = 0;
static size_t pg;
static unsigned char *seg;

#define NPAGES 48
/* Regions: page index, offset in the page, length. */
#define R_PIPE_P 4
#define R_PIPE_OFF 100
#define R_PIPE_LEN (3 * pg)
#define R_FILE_P 10
#define R_FILE_LEN (4 * pg)
#define R_WRITE_P 16
#define R_WRITE_LEN (2 * pg)
#define R_MEMSET_P 20
#define R_MEMSET_OFF 7
#define R_MEMSET_LEN (4 * pg)
#define R_MEMCPY_P 26
#define R_MEMCPY_OFF 13
#define R_MEMCPY_LEN (5 * pg)
#define R_FSTAT_P 33
#define R_READV_P 36 /* iov 1: page 36 + 50, 1000 bytes; iov 2: page 38, whole */
#define R_RECV_P 41
#define R_RECV_OFF 3
#define R_RECV_LEN (2 * pg)
#define FILE_LEN (R_FILE_LEN + 1000 + pg)

static unsigned char pat(int tag, size_t i) { return (unsigned char)(tag * 31 + i * 7 + (i >> 9) + 1); }

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[400];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (failures++ < 30)
        t_msg("FAIL: %s", buf);
}

/* Checks seg[off, off+len) against pat(tag, i) (tag < 0: the byte -tag). */
static void expect(const char *what, size_t off, size_t len, int tag)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char want = tag < 0 ? (unsigned char)-tag : pat(tag, i);
        if (seg[off + i] != want) {
            failf("%s: byte %zu (segment offset %zu) = %#x, expected %#x", what, i, off + i, seg[off + i], want);
            return;
        }
    }
}

static void expect_zero(const char *what, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (seg[off + i] != 0) {
            failf("%s: byte at segment offset %zu = %#x, expected 0 (outside the written range)", what, off + i,
                  seg[off + i]);
            return;
        }
}

static void syscall_check(const char *what, ssize_t got, size_t want)
{
    if (got != (ssize_t)want)
        failf("%s returned %zd (%s), expected %zu: kernel-mode accesses to segment pages must work", what, got,
              got < 0 ? strerror(errno) : "short", want);
}

static void worker(void)
{
    unsigned char *buf = malloc(FILE_LEN > R_MEMCPY_LEN ? FILE_LEN : R_MEMCPY_LEN);
    if (!buf)
        t_die(errno, "malloc");

    /* read(2) from a pipe into never-touched pages. */
    int pfd[2];
    if (pipe(pfd) < 0)
        t_die(errno, "pipe");
    for (size_t i = 0; i < R_PIPE_LEN; i++)
        buf[i] = pat(1, i);
    if (write(pfd[1], buf, R_PIPE_LEN) != (ssize_t)R_PIPE_LEN)
        t_die(errno, "write(pipe)");
    syscall_check("read(pipe -> segment)", read(pfd[0], seg + R_PIPE_P * pg + R_PIPE_OFF, R_PIPE_LEN), R_PIPE_LEN);

    /* A file for pread/readv/fstat. */
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dsm_syscall_fault.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        t_die(errno, "mkstemp(%s)", path);
    unlink(path);
    for (size_t i = 0; i < FILE_LEN; i++)
        buf[i] = pat(2, i);
    if (write(fd, buf, FILE_LEN) != (ssize_t)FILE_LEN)
        t_die(errno, "write(file)");

    /* pread(2) over pages node 0 wrote and every node has read. */
    syscall_check("pread(file -> segment)", pread(fd, seg + R_FILE_P * pg, R_FILE_LEN, 0), R_FILE_LEN);

    /* readv(2) into two never-touched pages. */
    struct iovec iov[2] = {
        {.iov_base = seg + R_READV_P * pg + 50, .iov_len = 1000},
        {.iov_base = seg + (R_READV_P + 2) * pg, .iov_len = pg},
    };
    syscall_check("preadv(file -> segment)", preadv(fd, iov, 2, R_FILE_LEN), 1000 + pg);

    /* fstat(2) into a never-touched page. */
    struct stat *st = (struct stat *)(seg + R_FSTAT_P * pg);
    if (fstat(fd, st) < 0)
        failf("fstat(file -> segment) failed: %s", strerror(errno));
    else if (st->st_size != (off_t)FILE_LEN)
        failf("fstat into the segment: st_size %lld, expected %zu", (long long)st->st_size, (size_t)FILE_LEN);
    close(fd);

    /* recv(2) from a socketpair into never-touched pages. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        t_die(errno, "socketpair");
    for (size_t i = 0; i < R_RECV_LEN; i++)
        buf[i] = pat(3, i);
    if (send(sv[0], buf, R_RECV_LEN, 0) != (ssize_t)R_RECV_LEN)
        t_die(errno, "send");
    syscall_check("recv(socket -> segment)",
                  recv(sv[1], seg + R_RECV_P * pg + R_RECV_OFF, R_RECV_LEN, MSG_WAITALL), R_RECV_LEN);
    close(sv[0]);
    close(sv[1]);

    /* write(2) from pages node 0 wrote: the kernel reads the segment. */
    ssize_t w = write(pfd[1], seg + R_WRITE_P * pg, R_WRITE_LEN);
    syscall_check("write(segment -> pipe)", w, R_WRITE_LEN);
    if (w == (ssize_t)R_WRITE_LEN) {
        ssize_t r = read(pfd[0], buf, R_WRITE_LEN);
        if (r != (ssize_t)R_WRITE_LEN)
            failf("read back from the pipe: %zd", r);
        else
            for (size_t i = 0; i < R_WRITE_LEN; i++)
                if (buf[i] != pat(4, i)) {
                    failf("write(segment -> pipe): byte %zu = %#x, expected %#x", i, buf[i], pat(4, i));
                    break;
                }
    }
    close(pfd[0]);
    close(pfd[1]);

    /* libc memset / memcpy at unaligned offsets across pages. */
    memset(seg + R_MEMSET_P * pg + R_MEMSET_OFF, 0xAB, R_MEMSET_LEN);
    for (size_t i = 0; i < R_MEMCPY_LEN; i++)
        buf[i] = pat(5, i);
    memcpy(seg + R_MEMCPY_P * pg + R_MEMCPY_OFF, buf, R_MEMCPY_LEN);
    free(buf);
}

int main(void)
{
    t_init_env("syscall_fault");
    t_barrier_init();
    pg = t_page_size();
    seg = t_shm_open(2, NPAGES * pg, NULL);
    int wk = t_n > 1 ? 1 : 0;

    /* Node 0 writes the regions that must come from it. */
    if (t_me == 0) {
        for (size_t i = 0; i < R_FILE_LEN; i++)
            seg[R_FILE_P * pg + i] = 0x11;
        for (size_t i = 0; i < R_WRITE_LEN; i++)
            seg[R_WRITE_P * pg + i] = pat(4, i);
    }
    t_barrier();
    /* Everybody caches them (shared copies the worker's writes must invalidate). */
    expect("node 0's fill before pread", R_FILE_P * pg, R_FILE_LEN, -0x11);
    expect("node 0's fill for write(2)", R_WRITE_P * pg, R_WRITE_LEN, 4);
    t_barrier();

    if (t_me == wk)
        worker();
    t_barrier();

    expect("read(pipe)", R_PIPE_P * pg + R_PIPE_OFF, R_PIPE_LEN, 1);
    expect_zero("read(pipe) before", R_PIPE_P * pg, R_PIPE_OFF);
    expect_zero("read(pipe) after", R_PIPE_P * pg + R_PIPE_OFF + R_PIPE_LEN, pg - R_PIPE_OFF);
    expect("pread(file)", R_FILE_P * pg, R_FILE_LEN, 2);
    {
        /* preadv read file bytes [R_FILE_LEN, R_FILE_LEN + 1000 + pg). */
        size_t o1 = R_READV_P * pg + 50, o2 = (R_READV_P + 2) * pg;
        for (size_t i = 0; i < 1000; i++)
            if (seg[o1 + i] != pat(2, R_FILE_LEN + i)) {
                failf("preadv iov 1: byte %zu = %#x, expected %#x", i, seg[o1 + i], pat(2, R_FILE_LEN + i));
                break;
            }
        for (size_t i = 0; i < pg; i++)
            if (seg[o2 + i] != pat(2, R_FILE_LEN + 1000 + i)) {
                failf("preadv iov 2: byte %zu = %#x, expected %#x", i, seg[o2 + i], pat(2, R_FILE_LEN + 1000 + i));
                break;
            }
        expect_zero("preadv around iov 1", R_READV_P * pg, 50);
        expect_zero("preadv page between the iovs", (R_READV_P + 1) * pg, pg);
    }
    {
        struct stat *st = (struct stat *)(seg + R_FSTAT_P * pg);
        if (st->st_size != (off_t)FILE_LEN || !S_ISREG(st->st_mode))
            failf("fstat result read on node %d: st_size %lld mode %o", t_me, (long long)st->st_size,
                  (unsigned)st->st_mode);
    }
    expect("recv(socket)", R_RECV_P * pg + R_RECV_OFF, R_RECV_LEN, 3);
    expect_zero("recv(socket) before", R_RECV_P * pg, R_RECV_OFF);
    expect("memset", R_MEMSET_P * pg + R_MEMSET_OFF, R_MEMSET_LEN, -0xAB);
    expect_zero("memset before", R_MEMSET_P * pg, R_MEMSET_OFF);
    expect_zero("memset after", R_MEMSET_P * pg + R_MEMSET_OFF + R_MEMSET_LEN, pg - R_MEMSET_OFF);
    expect("memcpy", R_MEMCPY_P * pg + R_MEMCPY_OFF, R_MEMCPY_LEN, 5);
    expect_zero("memcpy before", R_MEMCPY_P * pg, R_MEMCPY_OFF);
    expect_zero("memcpy after", R_MEMCPY_P * pg + R_MEMCPY_OFF + R_MEMCPY_LEN, pg - R_MEMCPY_OFF);

    /* Total on node 0: a counter word on the last page. */
    int *total = (int *)(seg + (NPAGES - 1) * pg);
    __atomic_fetch_add(total, failures, __ATOMIC_SEQ_CST);
    t_barrier();
    int rc = failures > 0;
    if (t_me == 0) {
        int all = __atomic_load_n(total, __ATOMIC_SEQ_CST);
        printf("syscall_fault nodes=%d worker=%d failures=%d\n", t_n, wk, all);
        rc = all > 0;
    }
    return t_finish(rc);
}
