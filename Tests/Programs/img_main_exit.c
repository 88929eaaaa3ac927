// Image mode: main calls pthread_exit after creating its threads. As with
// glibc, the program goes on until its last thread ends, then exits with
// status 0: every worker's line must be printed, and the thread a worker
// creates itself (on another node) must run too.
//
// Usage: img_main_exit [threads]   (exit 0 and every line: pass)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *grandchild(void *arg) {
    usleep(100000);
    printf("grandchild of worker %ld done\n", (long)(intptr_t)arg);
    return NULL;
}

static void *worker(void *arg) {
    long id = (long)(intptr_t)arg;
    if (id == 0) {
        /* A thread created by a thread, detached: it outlives its creator. */
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, grandchild, arg) != 0) printf("FAIL: pthread_create in a worker\n");
        pthread_attr_destroy(&attr);
    }
    usleep(200000 + 50000 * (useconds_t)id);
    printf("worker %ld done\n", id);
    return NULL;
}

int main(int argc, char **argv) {
    alarm(60);
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "usage: img_main_exit [threads 1..64]\n");
        return 2;
    }
    for (long i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)i) != 0) {
            printf("FAIL: pthread_create %ld\n", i);
            return 1;
        }
    }
    printf("main leaves with pthread_exit\n");
    fflush(stdout);
    pthread_exit(NULL);
}
