/*
 * img_print_order.c [rounds] - output order across nodes, as a pthreads
 * program expects it: in each round main starts a thread (placed on another
 * node in image mode), the thread prints a line and ends, main joins it and
 * prints its own line; a SPMD-free program, no DSM API. The lines must come
 * out strictly alternating, thread line first, in every round.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *worker(void *arg) {
    printf("thread %ld\n", (long)arg);
    return NULL;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
    for (long i = 0; i < rounds; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0) return 1;
        pthread_join(t, NULL);
        printf("main %ld\n", i);
    }
    printf("print_order rounds=%ld done\n", rounds);
    return 0;
}
