// Image mode: a bounded buffer (16 slots, in the heap) guarded by one mutex
// and two condition variables (not_full / not_empty). Producers put the
// items 1..items (producer p: p+1, p+1+P, ...); consumers take them with
// pthread_cond_timedwait and a generous deadline (a timeout is a failure:
// a lost wake-up). Every item must be consumed exactly once: per-item
// counters in the heap, plus count and sum.
//
// Usage: img_prodcons [producers consumers items]   (exit 0: pass)
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16
#define MAX_THREADS 64
#define WAIT_SECONDS 30

struct buffer {
    pthread_mutex_t lock;
    pthread_cond_t not_full;
    pthread_cond_t not_empty;
    long slots[SLOTS];
    int head, tail, count;
    long taken;     /* items removed so far (all consumers) */
    long items;
    int producers;
    unsigned *seen; /* per item, in the heap */
};

struct consumer_result {
    long count;
    long long sum;
};

static struct buffer *buf;

static struct timespec deadline_in(int seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return ts;
}

static void fatal(const char *who, int index, const char *what, int error) {
    printf("FAIL: %s %d: %s: %s\n", who, index, what, strerror(error));
    fflush(stdout);
    exit(1);
}

static void *producer(void *arg) {
    int p = (int)(intptr_t)arg;
    for (long item = p + 1; item <= buf->items; item += buf->producers) {
        int r = pthread_mutex_lock(&buf->lock);
        if (r) fatal("producer", p, "pthread_mutex_lock", r);
        while (buf->count == SLOTS) {
            struct timespec ts = deadline_in(WAIT_SECONDS);
            r = pthread_cond_timedwait(&buf->not_full, &buf->lock, &ts);
            if (r) fatal("producer", p, "pthread_cond_timedwait(not_full)", r);
        }
        buf->slots[buf->tail] = item;
        buf->tail = (buf->tail + 1) % SLOTS;
        buf->count++;
        r = pthread_cond_signal(&buf->not_empty);
        if (r) fatal("producer", p, "pthread_cond_signal", r);
        pthread_mutex_unlock(&buf->lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    int c = (int)(intptr_t)arg;
    struct consumer_result *res = calloc(1, sizeof *res);
    if (!res) fatal("consumer", c, "calloc", ENOMEM);
    for (;;) {
        int r = pthread_mutex_lock(&buf->lock);
        if (r) fatal("consumer", c, "pthread_mutex_lock", r);
        while (buf->count == 0 && buf->taken < buf->items) {
            struct timespec ts = deadline_in(WAIT_SECONDS);
            r = pthread_cond_timedwait(&buf->not_empty, &buf->lock, &ts);
            if (r) fatal("consumer", c, "pthread_cond_timedwait(not_empty)", r);
        }
        if (buf->count == 0) { /* everything has been taken */
            pthread_mutex_unlock(&buf->lock);
            break;
        }
        long item = buf->slots[buf->head];
        buf->head = (buf->head + 1) % SLOTS;
        buf->count--;
        buf->taken++;
        if (item >= 1 && item <= buf->items) buf->seen[item]++;
        else printf("FAIL: consumer %d: took item %ld out of range\n", c, item);
        if (buf->taken == buf->items) pthread_cond_broadcast(&buf->not_empty); /* wake the idle ones */
        pthread_cond_signal(&buf->not_full);
        pthread_mutex_unlock(&buf->lock);
        res->count++;
        res->sum += item;
    }
    return res;
}

int main(int argc, char **argv) {
    alarm(120);
    int producers = argc > 1 ? atoi(argv[1]) : 2;
    int consumers = argc > 2 ? atoi(argv[2]) : 2;
    long items = argc > 3 ? atol(argv[3]) : 20000;
    if (producers < 1 || consumers < 1 || producers + consumers > MAX_THREADS || items < 1) {
        fprintf(stderr, "usage: img_prodcons [producers consumers items] (threads <= %d)\n", MAX_THREADS);
        return 2;
    }
    buf = calloc(1, sizeof *buf);
    if (!buf) return 1;
    buf->seen = calloc((size_t)items + 1, sizeof *buf->seen);
    if (!buf->seen) return 1;
    buf->items = items;
    buf->producers = producers;
    pthread_mutex_init(&buf->lock, NULL);
    pthread_cond_init(&buf->not_full, NULL);
    pthread_cond_init(&buf->not_empty, NULL);

    pthread_t t[MAX_THREADS];
    int n = 0;
    /* Interleave creation so producers and consumers spread over the nodes. */
    for (int i = 0; i < producers || i < consumers; i++) {
        if (i < consumers && pthread_create(&t[n++], NULL, consumer, (void *)(intptr_t)i) != 0) {
            printf("FAIL: pthread_create consumer %d\n", i);
            return 1;
        }
        if (i < producers && pthread_create(&t[n++], NULL, producer, (void *)(intptr_t)i) != 0) {
            printf("FAIL: pthread_create producer %d\n", i);
            return 1;
        }
    }
    long count = 0;
    long long sum = 0;
    int failures = 0;
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        int r = pthread_join(t[i], &v);
        if (r) {
            printf("FAIL: pthread_join %d: %s\n", i, strerror(r));
            failures++;
        }
        if (v) {
            struct consumer_result *res = v;
            count += res->count;
            sum += res->sum;
            free(res);
        }
    }
    long missing = 0, duplicated = 0;
    for (long item = 1; item <= items; item++) {
        if (buf->seen[item] == 0) {
            if (missing++ < 10) printf("FAIL: item %ld never consumed\n", item);
        } else if (buf->seen[item] > 1) {
            if (duplicated++ < 10) printf("FAIL: item %ld consumed %u times\n", item, buf->seen[item]);
        }
    }
    long long want_sum = (long long)items * (items + 1) / 2;
    if (count != items) {
        printf("FAIL: consumed %ld items, want %ld\n", count, items);
        failures++;
    }
    if (sum != want_sum) {
        printf("FAIL: sum of consumed items %lld, want %lld\n", sum, want_sum);
        failures++;
    }
    if (buf->count != 0 || buf->taken != items) {
        printf("FAIL: buffer left with count=%d taken=%ld\n", buf->count, buf->taken);
        failures++;
    }
    failures += (int)(missing + duplicated);
    printf("img_prodcons producers=%d consumers=%d items=%ld consumed=%ld sum=%lld missing=%ld duplicated=%ld "
           "failures=%d\n",
           producers, consumers, items, count, sum, missing, duplicated, failures);
    pthread_cond_destroy(&buf->not_full);
    pthread_cond_destroy(&buf->not_empty);
    pthread_mutex_destroy(&buf->lock);
    free(buf->seen);
    free(buf);
    return failures ? 1 : 0;
}
