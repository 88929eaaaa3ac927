/*
 * The floor a remote fault cannot beat, measured on this machine at its
 * best: each side on a CPU of its own, polling instead of sleeping (as a
 * bound dsm node does while its program waits).
 *   uffd_copy_us : a missing fault on a memfd-backed page resolved by
 *                  UFFDIO_COPY from a handler thread polling the uffd on
 *                  another CPU (what a node pays to install a page);
 *   tcp_rtt_us   : a loopback TCP round trip (TCP_NODELAY) between two
 *                  processes on two CPUs polling their sockets, a 32-byte
 *                  request and a 4 KiB + 32-byte answer (what a read miss
 *                  sends).
 * Prints `floor uffd_copy_us=.. tcp_rtt_us=.. sum_us=..`. With one CPU the
 * two sides share it and the figures include the switches between them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int uffd;
static volatile int stop;
static char page[4096] __attribute__((aligned(4096)));

static void *handler(void *arg) {
    (void)arg;
    pin(1);
    while (!stop) {
        struct uffd_msg m;
        if (read(uffd, &m, sizeof m) != sizeof m) continue; /* non-blocking: poll */
        if (m.event != UFFD_EVENT_PAGEFAULT) continue;
        struct uffdio_copy c = {m.arg.pagefault.address & ~4095UL, (unsigned long)page, 4096, 0, 0};
        if (ioctl(uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST) { perror("UFFDIO_COPY"); exit(1); }
    }
    return NULL;
}

static double uffd_copy_us(int pages, int rounds) {
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) { perror("userfaultfd"); exit(1); }
    struct uffdio_api api = {UFFD_API, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM, 0};
    if (ioctl(uffd, UFFDIO_API, &api)) { perror("UFFDIO_API"); exit(1); }
    size_t size = (size_t)pages * 4096;
    int fd = memfd_create("floor", MFD_CLOEXEC);
    if (ftruncate(fd, (off_t)size)) { perror("ftruncate"); exit(1); }
    volatile char *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    struct uffdio_register r = {{(unsigned long)area, size}, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0};
    if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("UFFDIO_REGISTER"); exit(1); }
    pin(0);
    pthread_t t;
    pthread_create(&t, NULL, handler, NULL);
    double best = 1e9;
    for (int round = 0; round < rounds; round++) {
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
        double t0 = now();
        for (int i = 0; i < pages; i++) (void)area[(size_t)i * 4096];
        double per = (now() - t0) / pages * 1e6;
        if (per < best) best = per;
    }
    stop = 1;
    pthread_join(t, NULL);
    return best;
}

/* Moves exactly n bytes, polling the non-blocking socket. */
static void full(int fd, void *buf, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = writing ? send(fd, (char *)buf + done, n - done, MSG_DONTWAIT)
                            : recv(fd, (char *)buf + done, n - done, MSG_DONTWAIT);
        if (k > 0) done += (size_t)k;
        else if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) { perror("socket"); exit(1); }
    }
}

static double tcp_rtt_us(int count) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 1)) { perror("listen"); exit(1); }
    getsockname(listener, (struct sockaddr *)&a, &len);
    int one = 1;
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        int s = accept(listener, NULL, NULL);
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char req[32], reply[4096 + 32];
        memset(reply, 7, sizeof reply);
        for (int i = 0; i < count; i++) {
            full(s, req, sizeof req, 0);
            full(s, reply, sizeof reply, 1);
        }
        _exit(0);
    }
    pin(0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[32] = {0}, reply[4096 + 32];
    for (int i = 0; i < 100; i++) { full(s, req, sizeof req, 1); full(s, reply, sizeof reply, 0); }
    double t0 = now();
    for (int i = 100; i < count; i++) { full(s, req, sizeof req, 1); full(s, reply, sizeof reply, 0); }
    double per = (now() - t0) / (count - 100) * 1e6;
    waitpid(child, NULL, 0);
    close(s);
    close(listener);
    return per;
}

int main(void) {
    double tcp = tcp_rtt_us(5100);
    double copy = uffd_copy_us(1000, 5);
    printf("floor uffd_copy_us=%.1f tcp_rtt_us=%.1f sum_us=%.1f\n", copy, tcp, copy + tcp);
    return 0;
}
