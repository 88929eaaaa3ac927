// The runtime's own resources are not the program's to take:
// - its descriptors (userfaultfd, epoll, sockets, memfds, bells) are, for the
//   program, not open: a close-all loop, a close_range or closefrom sweep, or
//   a dup2 onto a number of the program's choosing skips them and behaves as
//   on a process where they do not exist. The runtime places them at the top
//   of the descriptor range and marks them (CDSMKernel's cdsm_high_fd), so
//   programs rarely even meet them;
// - its address ranges (image mode's heap) cannot be mapped over.
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int runtime_context(void) { return dsm_runtime_thread || dsm_in_runtime; }

void dsm_tell_once(int *told, const char *format, ...) {
    if (__atomic_exchange_n(told, 1, __ATOMIC_RELAXED)) return;
    char line[400];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(line, sizeof line - 1, format, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)!write(2, line, (size_t)n);
}

/* A program that dup2s onto a runtime descriptor gets EBADF (as for a
 * number out of range) and is told why, once. */
static int told_dup2;
static void tell_dup2(int fd) {
    dsm_tell_once(&told_dup2,
                  "dsm: dup2 onto descriptor %d refused (EBADF): the dsm runtime uses it; "
                  "the runtime's descriptors are the highest below `ulimit -n`",
                  fd);
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

// --- the runtime's address ranges -------------------------------------------

#include <sys/mman.h>

/* A fixed mapping over the DSM heap (image mode) would silently replace
 * heap pages every thread relies on: it fails as a mapping that conflicts
 * with an existing one does (MAP_FIXED_NOREPLACE's EEXIST). A hint there is
 * a hint, placed elsewhere by the kernel as for any occupied range. */
static int over_runtime_ranges(void *address, size_t length, int flags) {
    return (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && !runtime_context() &&
           dsm_heap_overlaps((uintptr_t)address, length);
}

void *mmap(void *address, size_t length, int prot, int flags, int fd, off_t offset) {
    REAL(mmap);
    if (over_runtime_ranges(address, length, flags)) {
        errno = EEXIST;
        return MAP_FAILED;
    }
    return real_mmap(address, length, prot, flags, fd, offset);
}

void *mmap64(void *address, size_t length, int prot, int flags, int fd, off_t offset) {
    return mmap(address, length, prot, flags, fd, offset);
}
