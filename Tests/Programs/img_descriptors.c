// Image mode: a program that tidies its descriptors as daemons and servers
// do while its threads run on other nodes: closes every descriptor from 3 up
// to the limit, sweeps with close_range and closefrom, dup2s standard output
// onto 512..529. Threads started before and after keep sharing memory: the
// runtime's own descriptors are not the program's to close.
//
// Usage: img_descriptors   (exit 0: pass)
// Prints `img_descriptors threads= failures=`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 2000

static long counter;
#include "img_check.h"

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void round_of_threads(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
}

int main(void) {
    round_of_threads();
    long open_max = sysconf(_SC_OPEN_MAX);
    if (open_max > 65536) open_max = 65536;
    for (long fd = 3; fd < open_max; fd++) close((int)fd);
    CHECK(close_range(3, ~0U, 0) == 0, "close_range(3, ~0U, 0): %s", strerror(errno));
    closefrom(3);
    round_of_threads();
    for (int fd = 512; fd < 530; fd++) {
        CHECK(dup2(1, fd) == fd, "dup2(1, %d): %s", fd, strerror(errno));
        CHECK(write(fd, "", 0) == 0, "write to descriptor %d: %s", fd, strerror(errno));
    }
    round_of_threads();
    for (int fd = 512; fd < 530; fd++) CHECK(close(fd) == 0, "close(%d): %s", fd, strerror(errno));
    CHECK(counter == 3L * THREADS * ROUNDS, "counter %ld, expected %ld", counter, 3L * THREADS * ROUNDS);
    printf("img_descriptors threads=%d failures=%d\n", THREADS, failures);
    return failures ? 1 : 0;
}
