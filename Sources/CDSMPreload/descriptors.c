// The runtime's descriptors (its userfaultfd, epoll, sockets, memfds, bells)
// are its own: for the program they are not open. A close-all loop, a
// close_range or closefrom sweep, or a dup2 onto a number of the program's
// choosing skips them and behaves as on a process where they do not exist.
// The runtime places them at the top of the descriptor range and marks them
// (CDSMKernel's cdsm_high_fd), so programs rarely even meet them.
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

int cdsm_is_runtime_fd(int fd);
void cdsm_release_fd(int fd);
int cdsm_next_runtime_fd(int from);

static int runtime_context(void) { return dsm_runtime_thread || dsm_in_runtime; }

/* Said once per process: a program that dup2s onto a runtime descriptor
 * gets EBADF (as for a number out of range) and is told why. */
static int told_dup2;
static void tell_dup2(int fd) {
    if (__atomic_exchange_n(&told_dup2, 1, __ATOMIC_RELAXED)) return;
    char line[200];
    int n = snprintf(line, sizeof line,
                     "dsm: dup2 onto descriptor %d refused (EBADF): the dsm runtime uses it; "
                     "the runtime's descriptors are the highest below `ulimit -n`\n",
                     fd);
    if (n > 0) (void)!write(2, line, (size_t)n);
}

int close(int fd) {
    REAL(close);
    if (cdsm_is_runtime_fd(fd)) {
        if (!runtime_context()) {
            errno = EBADF;
            return -1;
        }
        cdsm_release_fd(fd);
    }
    return real_close(fd);
}

int close_range(unsigned int first, unsigned int last, int flags) {
    REAL(close_range);
    if (runtime_context() || first > last) return real_close_range(first, last, flags);
    /* The sweep in pieces, around the runtime's descriptors. */
    unsigned int from = first;
    for (;;) {
        int skip = from > INT_MAX ? -1 : cdsm_next_runtime_fd((int)from);
        if (skip < 0 || (unsigned int)skip > last) break;
        if ((unsigned int)skip > from && real_close_range(from, (unsigned int)skip - 1, flags) != 0) return -1;
        if ((unsigned int)skip == UINT_MAX) return 0;
        from = (unsigned int)skip + 1;
    }
    return from <= last ? real_close_range(from, last, flags) : 0;
}

void closefrom(int lowfd) {
    if (lowfd < 0) lowfd = 0;
    close_range((unsigned int)lowfd, ~0U, 0);
}

int dup2(int oldfd, int newfd) {
    REAL(dup2);
    if (!runtime_context() && (cdsm_is_runtime_fd(oldfd) || cdsm_is_runtime_fd(newfd))) {
        if (cdsm_is_runtime_fd(newfd)) tell_dup2(newfd);
        errno = EBADF;
        return -1;
    }
    return real_dup2(oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags) {
    REAL(dup3);
    if (!runtime_context() && (cdsm_is_runtime_fd(oldfd) || cdsm_is_runtime_fd(newfd))) {
        if (cdsm_is_runtime_fd(newfd)) tell_dup2(newfd);
        errno = EBADF;
        return -1;
    }
    return real_dup3(oldfd, newfd, flags);
}
