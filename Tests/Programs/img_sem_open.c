// Image mode: sem_open (a named POSIX semaphore) either works as natively
// or, on several nodes, where it could not exclude threads of different
// nodes, fails with ENOSYS (said on stderr) instead of being silently
// per node.
//
// Usage: img_sem_open   (exit 0 either way: the test reads the outcome)
// Prints `img_sem_open outcome=ok|enosys|<error>`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "/dsm-test-%d", (int)getpid());
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
    if (s == SEM_FAILED) {
        printf("img_sem_open outcome=%s\n", errno == ENOSYS ? "enosys" : strerror(errno));
        return 0;
    }
    int ok = sem_wait(s) == 0 && sem_post(s) == 0;
    sem_close(s);
    sem_unlink(name);
    printf("img_sem_open outcome=%s\n", ok ? "ok" : "broken");
    return 0;
}
