/*
 * img_check.h - what the image-mode test programs share: a thread-safe
 * CHECK that counts failures and prints `FAIL: ...`, errno names, clocks.
 */
#ifndef DSM_IMG_CHECK_H
#define DSM_IMG_CHECK_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures;
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond, ...)                                                                                          \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            pthread_mutex_lock(&failure_lock);                                                                    \
            failures++;                                                                                           \
            printf("FAIL: " __VA_ARGS__);                                                                         \
            printf("\n");                                                                                         \
            fflush(stdout);                                                                                       \
            pthread_mutex_unlock(&failure_lock);                                                                  \
        }                                                                                                         \
    } while (0)

__attribute__((unused)) static const char *err_name(int e) {
    switch (e) {
    case 0: return "0";
    case EBUSY: return "EBUSY";
    case EDEADLK: return "EDEADLK";
    case EPERM: return "EPERM";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EINVAL: return "EINVAL";
    case EAGAIN: return "EAGAIN";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    default: return strerror(e);
    }
}

__attribute__((unused)) static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((unused)) static struct timespec realtime_in(long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
