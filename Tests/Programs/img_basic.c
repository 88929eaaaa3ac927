// Image mode basics: threads placed over the nodes see main's globals (data
// and bss), main's stack (arguments passed as pointers to its locals) and
// the heap at the same addresses; each returns a heap block through
// pthread_join, which main frees.
//
// Usage: img_basic [threads]   (exit 0: pass)
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 64

static long global_sum[MAX_THREADS]; /* bss */
static int data_value = 42;          /* data */

struct job {
    int index;
    long *out; /* into main's stack */
};

static long expected(int index) {
    long s = 0;
    for (int k = 0; k < 1000; k++) s += (long)k * (index + 1) + 42;
    return s;
}

static void *work(void *p) {
    struct job *job = p;
    long s = 0;
    for (int i = 0; i < 1000; i++) s += (long)i * (job->index + 1) + data_value;
    global_sum[job->index] = s;
    *job->out = s * 2;
    long *r = malloc(sizeof *r);
    if (!r) return NULL;
    *r = s + 1;
    return r;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: img_basic [threads 1..%d]\n", MAX_THREADS);
        return 2;
    }
    pthread_t t[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    long outs[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        jobs[i].index = i;
        jobs[i].out = &outs[i];
        if (pthread_create(&t[i], NULL, work, &jobs[i]) != 0) {
            printf("FAIL: pthread_create %d\n", i);
            return 1;
        }
    }
    int failures = 0;
    for (int i = 0; i < threads; i++) {
        void *v = NULL;
        int r = pthread_join(t[i], &v);
        long want = expected(i);
        if (r != 0 || !v || *(long *)v != want + 1 || global_sum[i] != want || outs[i] != want * 2) {
            printf("FAIL: thread %d: join=%d value=%ld global=%ld out=%ld want %ld\n", i, r, v ? *(long *)v : -1,
                   global_sum[i], outs[i], want);
            failures++;
        }
        free(v);
    }
    printf("img_basic threads=%d failures=%d\n", threads, failures);
    return failures ? 1 : 0;
}
