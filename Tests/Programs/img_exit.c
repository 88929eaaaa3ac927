// Image mode: exit() from a thread ends the whole program with its status.
// main creates two threads: the first sleeps a little, prints
// "exiting-from-thread" and calls exit(3); the second blocks forever on a
// condition variable, and main blocks in pthread_join of the second. The
// program must end with status 3 (under dsmrun: the first thread runs on
// node 1, the blocked one on node 2 % N, main on node 0).
//
// Usage: img_exit   (exit status 3: pass; anything else: fail)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int released; /* never set */
static volatile int blocker_waiting;

static void *exiter(void *arg) {
    (void)arg;
    /* Give main time to block in pthread_join and the other thread time
     * to block in its wait (at most ~5 s). */
    for (int i = 0; i < 500 && !blocker_waiting; i++) usleep(10000);
    usleep(200000);
    printf("exiting-from-thread\n");
    fflush(stdout);
    exit(3);
}

static void *blocker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    blocker_waiting = 1;
    while (!released) pthread_cond_wait(&never, &lock);
    pthread_mutex_unlock(&lock);
    printf("FAIL: the blocked thread was released\n");
    return NULL;
}

int main(void) {
    alarm(30); /* a runtime that does not end the program dies of SIGALRM */
    pthread_t a, b;
    if (pthread_create(&a, NULL, exiter, NULL) != 0 || pthread_create(&b, NULL, blocker, NULL) != 0) {
        printf("FAIL: pthread_create\n");
        return 1;
    }
    int r = pthread_join(b, NULL);
    printf("FAIL: pthread_join of the blocked thread returned %d (%s)\n", r, strerror(r));
    return 1;
}
