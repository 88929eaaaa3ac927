/*
 * futex_inline.c - futex(2) issued with the program's own `syscall`
 * instruction, as libgomp and other runtimes do, not through libc's
 * syscall(): a thread (on another node under dsmrun -n 2) waits on a word
 * in the program's data and in the heap, main wakes it. A wake that does
 * not reach the waiter shows as a timeout; one waiter blocks every signal
 * first, as threads that leave signals to a sigwait thread do. Also times FUTEX_WAKE with no
 * waiter both ways (the inline one and libc's syscall()), for comparison.
 */
#define _GNU_SOURCE
#include "img_check.h"
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static long inline_futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout) {
    long result;
    register long r10 __asm__("r10") = (long)timeout;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"((long)SYS_futex), "D"(word), "S"((long)op), "d"((long)value), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

static uint32_t data_word;
static uint32_t *heap_word;
static volatile int waiting;

typedef struct {
    uint32_t *word;
    int private_op;
    int block_signals; /* as a thread that leaves signals to a sigwait thread */
    long result;
    double waited;
} wait_job;

static void *waiter(void *p) {
    wait_job *job = p;
    struct timespec limit = {10, 0};
    if (job->block_signals) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    }
    double start = now_seconds();
    __atomic_store_n(&waiting, 1, __ATOMIC_SEQ_CST);
    long r;
    /* Woken (0) or the word already changed (-EAGAIN); -EINTR retries. */
    do r = inline_futex(job->word, job->private_op ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT, 0, &limit);
    while (r == -EINTR);
    job->result = r;
    job->waited = now_seconds() - start;
    return NULL;
}

static void wait_and_wake(uint32_t *word, int private_op, int block_signals, const char *what) {
    __atomic_store_n(word, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&waiting, 0, __ATOMIC_SEQ_CST);
    wait_job *job = calloc(1, sizeof *job);
    job->word = word;
    job->private_op = private_op;
    job->block_signals = block_signals;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter, job) == 0, "pthread_create");
    while (!__atomic_load_n(&waiting, __ATOMIC_SEQ_CST)) usleep(1000);
    usleep(200000); /* let it fall asleep */
    __atomic_store_n(word, 1, __ATOMIC_SEQ_CST);
    long woke = 0;
    for (int i = 0; i < 100 && woke == 0; i++) {
        woke = inline_futex(word, private_op ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE, 1, NULL);
        if (woke == 0) usleep(10000); /* not asleep yet: it will see the 1 */
    }
    pthread_join(t, NULL);
    CHECK(job->result == 0 || job->result == -EAGAIN, "%s: the waiter got %ld after %.2f s (a wake that never came?)",
          what, job->result, job->waited);
    CHECK(job->waited < 5.0, "%s: the waiter slept %.2f s", what, job->waited);
    printf("futex_inline %s result=%ld waited=%.3f woke=%ld\n", what, job->result, job->waited, woke);
    free(job);
}

int main(void) {
    heap_word = calloc(1, 64);
    wait_and_wake(&data_word, 1, 0, "data-private");
    wait_and_wake(heap_word, 0, 0, "heap-shared");
    wait_and_wake(heap_word, 1, 0, "heap-private");
    wait_and_wake(heap_word, 1, 1, "signals-blocked");

    /* A value that differs: EAGAIN at once, as from the kernel. */
    __atomic_store_n(heap_word, 7, __ATOMIC_SEQ_CST);
    struct timespec limit = {2, 0};
    long r = inline_futex(heap_word, FUTEX_WAIT_PRIVATE, 0, &limit);
    CHECK(r == -EAGAIN, "a wait on a changed word returned %ld, not -EAGAIN", r);
    /* A bad timeout: EINVAL. */
    struct timespec bad = {0, 2000000000L};
    r = inline_futex(heap_word, FUTEX_WAIT_PRIVATE, 7, &bad);
    CHECK(r == -EINVAL, "a wait with tv_nsec out of range returned %ld, not -EINVAL", r);

    /* The cost of a wake with nobody waiting, each way. */
    enum { rounds = 2000 };
    double start = now_seconds();
    for (int i = 0; i < rounds; i++) inline_futex(heap_word, FUTEX_WAKE_PRIVATE, 1, NULL);
    double inline_ns = (now_seconds() - start) / rounds * 1e9;
    start = now_seconds();
    for (int i = 0; i < rounds; i++) syscall(SYS_futex, heap_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    double libc_ns = (now_seconds() - start) / rounds * 1e9;
    printf("futex_inline wake_ns inline=%.0f libc=%.0f\n", inline_ns, libc_ns);
    free(heap_word);
    printf("futex_inline failures=%d\n", failures);
    return failures == 0 ? 0 : 1;
}
