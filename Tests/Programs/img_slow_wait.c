// Image mode: waits far longer than the runtime ever needs, made by the
// program itself, are said on stderr (run with a short --peer-timeout, whose
// half is the threshold) and the program goes on:
// - a thread on another node holds a mutex for `seconds` while main waits;
// - with `barrier`, main then calls dsm_barrier() alone, which never
//   returns (a barrier needs one caller per node): the test stops the run.
//
// Usage: img_slow_wait seconds [barrier]   (exit 0: pass)
// Prints `img_slow_wait waited= node=` (the holder's node).
#define _GNU_SOURCE
#include <dsm/dsm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int holding;
static int holder_node = -1;
static double seconds;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    holder_node = dsm_node_id();
    __atomic_store_n(&holding, 1, __ATOMIC_RELEASE);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    seconds = argc > 1 ? atof(argv[1]) : 2;
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    while (!__atomic_load_n(&holding, __ATOMIC_ACQUIRE)) usleep(1000);
    double start = now();
    pthread_mutex_lock(&lock);
    double waited = now() - start;
    pthread_mutex_unlock(&lock);
    pthread_join(t, NULL);
    printf("img_slow_wait waited=%.1f node=%d\n", waited, holder_node);
    fflush(stdout);
    if (argc > 2 && strcmp(argv[2], "barrier") == 0) dsm_barrier();
    return 0;
}
