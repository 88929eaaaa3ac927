/*
 * img_keys.c - thread-specific data as libraries use it: a per-thread
 * scratch buffer behind pthread_once and a key with a destructor, made by
 * whichever thread gets there first; a key made by a worker and used by
 * threads started later; a deleted key refused.
 *
 * Checks (a FAIL line each):
 *   - a thread's buffer is its own, the same at every call, and keeps what
 *     the thread wrote while the other threads write theirs;
 *   - a new thread starts with NULL under every key;
 *   - the destructor runs once for each thread that had a buffer, when the
 *     thread ends (counted before join returns);
 *   - a key made in a worker works in threads started after it;
 *   - pthread_setspecific on a deleted key is EINVAL, as glibc says.
 *
 *   img_keys [threads]   (default 6)
 * Prints: img_keys threads=T buffers=B freed=F failures=N
 */
#include "img_check.h"
#include <stdlib.h>

#define MAX_THREADS 64
#define BUFFER_BYTES 256
#define ROUNDS 200

static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;
static pthread_key_t buffer_key;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static int buffers, freed;

static pthread_key_t late_key;

static void free_buffer(void *p) {
    pthread_mutex_lock(&count_lock);
    freed++;
    pthread_mutex_unlock(&count_lock);
    free(p);
}

static void make_buffer_key(void) {
    int r = pthread_key_create(&buffer_key, free_buffer);
    CHECK(r == 0, "pthread_key_create: %s", err_name(r));
}

/* What a library does for per-thread scratch space. */
static char *scratch(void) {
    pthread_once(&buffer_once, make_buffer_key);
    char *p = pthread_getspecific(buffer_key);
    if (!p) {
        p = calloc(1, BUFFER_BYTES);
        int r = pthread_setspecific(buffer_key, p);
        CHECK(r == 0, "pthread_setspecific: %s", err_name(r));
        pthread_mutex_lock(&count_lock);
        buffers++;
        pthread_mutex_unlock(&count_lock);
    }
    return p;
}

static void *worker(void *arg) {
    long id = (long)arg;
    char *first = scratch();
    for (int round = 0; round < ROUNDS; round++) {
        char *p = scratch();
        CHECK(p == first, "thread %ld: scratch buffer changed at round %d", id, round);
        if (round > 0)
            CHECK(p[0] == (char)id && p[1] == (char)(round - 1), "thread %ld: buffer holds %d/%d at round %d", id, p[0],
                  p[1], round);
        p[0] = (char)id;
        p[1] = (char)round;
        sched_yield();
    }
    if (id == 0) {
        /* A key made here (wherever this thread runs), used by later threads. */
        int r = pthread_key_create(&late_key, NULL);
        CHECK(r == 0, "pthread_key_create in a thread: %s", err_name(r));
    }
    return NULL;
}

static void *late_worker(void *arg) {
    long id = (long)arg;
    CHECK(pthread_getspecific(late_key) == NULL, "thread %ld: a new thread's value is not NULL", id);
    CHECK(pthread_getspecific(buffer_key) == NULL, "thread %ld: a new thread's buffer is not NULL", id);
    int r = pthread_setspecific(late_key, arg);
    CHECK(r == 0, "thread %ld: pthread_setspecific on the worker's key: %s", id, err_name(r));
    sched_yield();
    CHECK(pthread_getspecific(late_key) == arg, "thread %ld: the worker's key gives %p", id, pthread_getspecific(late_key));
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 6;
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "img_keys: threads must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    pthread_mutex_lock(&count_lock);
    CHECK(buffers == threads, "%d buffers made for %d threads", buffers, threads);
    CHECK(freed == buffers, "%d buffers freed of %d: destructors missing", freed, buffers);
    pthread_mutex_unlock(&count_lock);

    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, late_worker, (void *)(i + 1));
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);

    int r = pthread_key_delete(late_key);
    CHECK(r == 0, "pthread_key_delete: %s", err_name(r));
    r = pthread_setspecific(late_key, &r);
    CHECK(r == EINVAL, "pthread_setspecific on a deleted key: %s, not EINVAL", err_name(r));

    printf("img_keys threads=%d buffers=%d freed=%d failures=%d\n", threads, buffers, freed, failures);
    return failures ? 1 : 0;
}
