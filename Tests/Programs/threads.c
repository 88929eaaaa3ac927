/*
 * threads.c [T] [K] - several threads per node faulting on the same pages.
 *
 * Every node runs T threads. Each thread:
 *   - does K __atomic_fetch_add on one shared word (all N*T threads);
 *   - does K plain increments of its own word; the N*T words are packed
 *     into a few pages, so threads of every node write the same pages at
 *     the same time (false sharing: a write lost while a page moves between
 *     nodes would show as a short count).
 * Local threads faulting on one page must be served by one request and all
 * be woken. Node 0 prints `threads failures=<k> nodes=<N> T=<T> K=<K>`.
 */
#include "common.h"

#include <pthread.h>
#include <sched.h>

#define MAX_THREADS 16

static long K;
static int T;
static long *counter;
static long *words;

static void *worker(void *arg)
{
    long me = (long)arg;
    long *mine = &words[(long)t_me * T + me];
    for (long i = 0; i < K; i++) {
        __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
        *(volatile long *)mine += 1;
        /* Let the other threads and nodes in, so the pages keep moving. */
        if (i % 16 == 15)
            sched_yield();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    t_init_env("threads");
    T = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 4;
    K = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    if (T < 1 || T > MAX_THREADS || K < 1)
        t_die(0, "usage: threads [1<=T<=%d] [K>=1]", MAX_THREADS);
    t_barrier_init();
    size_t pg = t_page_size();
    char *seg = t_shm_open(2, 4 * pg, NULL);
    counter = (long *)seg;
    words = (long *)(seg + pg); /* N*T longs: at most 64*16*8 bytes = 2 pages */
    t_barrier();

    pthread_t threads[MAX_THREADS];
    for (long i = 0; i < T; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0)
            t_die(errno, "pthread_create");
    for (int i = 0; i < T; i++)
        pthread_join(threads[i], NULL);
    t_barrier();

    long failures = 0;
    long want = (long)t_n * T * K;
    long got = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
    if (got != want) {
        t_msg("FAIL: shared counter = %ld, expected %ld", got, want);
        failures++;
    }
    for (int i = 0; i < t_n * T; i++) {
        if (words[i] != K) {
            if (failures < 10)
                t_msg("FAIL: word of thread %d of node %d = %ld, expected %ld", i % T, i / T, words[i], K);
            failures++;
        }
    }
    t_barrier();
    if (t_me == 0)
        printf("threads failures=%ld nodes=%d T=%d K=%ld\n", failures, t_n, T, K);
    return t_finish(failures ? 1 : 0);
}
