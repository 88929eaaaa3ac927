// Image mode: fork, exec, system and popen from a program whose threads run
// on other nodes. The child of fork() is an ordinary process with a private
// copy of the parent's memory: it sees the results threads on other nodes
// wrote into an array main allocated, and a global one of them set; what
// it writes does not reach the parent; its exit status and output are its
// own. fork+exec, system and popen run their commands.
//
// Usage: img_fork   (exit 0: pass)
// Prints `img_fork failures=`.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 3
#define PER_THREAD (64 * 1024) /* longs: 512 KiB each, many pages */

#include "img_check.h"

static long *results;
static long set_by_thread;

static void *fill(void *arg) {
    long t = (long)arg;
    for (long i = 0; i < PER_THREAD; i++) results[t * PER_THREAD + i] = t * 1000003 + i;
    if (t == 1) set_by_thread = 4242;
    return NULL;
}

static long expected_sum(void) {
    long sum = 0;
    for (long t = 0; t < THREADS; t++)
        for (long i = 0; i < PER_THREAD; i++) sum += t * 1000003 + i;
    return sum;
}

int main(void) {
    results = malloc(sizeof(long) * THREADS * PER_THREAD);
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, fill, (void *)t);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    fflush(stdout);

    pid_t child = fork();
    if (child == 0) {
        /* The child reads what the threads wrote, then writes its own. */
        long sum = 0;
        for (long i = 0; i < THREADS * PER_THREAD; i++) sum += results[i];
        int ok = sum == expected_sum() && set_by_thread == 4242;
        if (!ok) printf("FAIL: the child sees sum %ld (expected %ld), global %ld\n", sum, expected_sum(), set_by_thread);
        results[0] = -1;
        set_by_thread = -1;
        char *own = malloc(1 << 20);
        memset(own, 1, 1 << 20);
        free(own);
        printf("child done\n");
        fflush(stdout);
        _exit(ok ? 7 : 1);
    }
    int status = 0;
    CHECK(child > 0, "fork failed");
    CHECK(waitpid(child, &status, 0) == child, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7, "the child ended with status 0x%x, expected exit 7", status);
    CHECK(results[0] == 0 && set_by_thread == 4242, "the child's writes reached the parent: %ld %ld", results[0], set_by_thread);

    /* fork + exec */
    child = fork();
    if (child == 0) {
        execl("/bin/sh", "sh", "-c", "echo exec-ran; exit 5", (char *)NULL);
        _exit(127);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 5,
          "fork+exec: status 0x%x, expected exit 5", status);

    status = system("exit 3");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3, "system: status 0x%x, expected exit 3", status);

    FILE *p = popen("echo from-popen", "r");
    char line[64] = {0};
    CHECK(p && fgets(line, sizeof line, p) && strcmp(line, "from-popen\n") == 0, "popen read '%s'", line);
    if (p) CHECK(pclose(p) == 0, "pclose");

    printf("img_fork failures=%d\n", failures);
    return failures ? 1 : 0;
}
