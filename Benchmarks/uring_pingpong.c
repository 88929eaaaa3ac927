/*
 * Does io_uring shorten the transport's round trip? Two processes ping-pong
 * over loopback TCP (TCP_NODELAY), a 32-byte request and a 4 KiB + 32-byte
 * answer, as a remote read miss does, in the same run:
 *   epoll : epoll_wait + recv + send, what the runtime thread does today;
 *   uring : io_uring (liburing), the answer's send and the next receive
 *           submitted together, one io_uring_enter per step.
 * Prints `pingpong epoll_us=.. uring_us=.. ratio=..` (best of 5 rounds).
 * Build: cc -O2 uring_pingpong.c -o uring_pingpong -luring
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ 32
#define ANS (4096 + 32)
#define COUNT 4000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pair(int *a, int *b) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(l, (struct sockaddr *)&addr, sizeof addr) || listen(l, 1)) { perror("listen"); exit(1); }
    getsockname(l, (struct sockaddr *)&addr, &len);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&addr, sizeof addr)) { perror("connect"); exit(1); }
    *b = accept(l, NULL, NULL);
    int one = 1;
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(l);
}

/* Reads exactly n bytes, waiting with epoll. */
static void epoll_read(int ep, int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct epoll_event e;
        if (epoll_wait(ep, &e, 1, -1) < 1) continue;
        ssize_t k = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (k > 0) got += (size_t)k;
        else if (k == 0) exit(0);
    }
}

static void send_all(int fd, const char *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = send(fd, buf + done, n - done, 0);
        if (k <= 0) { perror("send"); exit(1); }
        done += (size_t)k;
    }
}

static double run_epoll(void) {
    int a, b;
    pair(&a, &b);
    pid_t child = fork();
    if (child == 0) {
        close(a);
        int ep = epoll_create1(0);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = b};
        epoll_ctl(ep, EPOLL_CTL_ADD, b, &e);
        char req[REQ], ans[ANS];
        memset(ans, 1, sizeof ans);
        for (;;) {
            epoll_read(ep, b, req, REQ);
            send_all(b, ans, ANS);
        }
    }
    close(b);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = a};
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &e);
    char req[REQ] = {0}, ans[ANS];
    double t0 = 0;
    for (int i = 0; i < COUNT + 200; i++) {
        if (i == 200) t0 = now();
        send_all(a, req, REQ);
        epoll_read(ep, a, ans, ANS);
    }
    double per = (now() - t0) / COUNT * 1e6;
    close(a);
    waitpid(child, NULL, 0);
    return per;
}

/* Receives exactly n bytes through the ring. */
static void ring_read(struct io_uring *ring, int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_recv(sqe, fd, buf + got, n - got, 0);
        io_uring_submit_and_wait(ring, 1);
        struct io_uring_cqe *cqe;
        io_uring_wait_cqe(ring, &cqe);
        int r = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        if (r <= 0) exit(0);
        got += (size_t)r;
    }
}

/* Sends n bytes and waits for the next request in one submission. */
static void ring_send_then_read(struct io_uring *ring, int fd, const char *out, size_t n, char *in, size_t m) {
    struct io_uring_sqe *s = io_uring_get_sqe(ring);
    io_uring_prep_send(s, fd, out, n, 0);
    s->user_data = 1;
    struct io_uring_sqe *r = io_uring_get_sqe(ring);
    io_uring_prep_recv(r, fd, in, m, MSG_WAITALL);
    r->user_data = 2;
    io_uring_submit_and_wait(ring, 2);
    for (int done = 0; done < 2;) {
        struct io_uring_cqe *cqe;
        io_uring_wait_cqe(ring, &cqe);
        if (cqe->user_data == 2 && cqe->res <= 0) exit(0);
        if (cqe->user_data == 1 && cqe->res != (int)n) { fprintf(stderr, "short send\n"); exit(1); }
        io_uring_cqe_seen(ring, cqe);
        done++;
    }
}

static double run_uring(void) {
    int a, b;
    pair(&a, &b);
    pid_t child = fork();
    if (child == 0) {
        close(a);
        struct io_uring ring;
        io_uring_queue_init(8, &ring, 0);
        char req[REQ], ans[ANS];
        memset(ans, 1, sizeof ans);
        ring_read(&ring, b, req, REQ);
        for (;;) ring_send_then_read(&ring, b, ans, ANS, req, REQ);
    }
    close(b);
    struct io_uring ring;
    io_uring_queue_init(8, &ring, 0);
    char req[REQ] = {0}, ans[ANS];
    double t0 = 0;
    for (int i = 0; i < COUNT + 200; i++) {
        if (i == 200) t0 = now();
        ring_send_then_read(&ring, a, req, REQ, ans, ANS);
    }
    double per = (now() - t0) / COUNT * 1e6;
    io_uring_queue_exit(&ring);
    close(a);
    waitpid(child, NULL, 0);
    return per;
}

int main(void) {
    double best_e = 1e9, best_u = 1e9;
    for (int round = 0; round < 5; round++) {
        double e = run_epoll(), u = run_uring();
        if (e < best_e) best_e = e;
        if (u < best_u) best_u = u;
    }
    printf("pingpong epoll_us=%.1f uring_us=%.1f ratio=%.2f\n", best_e, best_u, best_u / best_e);
    return 0;
}
