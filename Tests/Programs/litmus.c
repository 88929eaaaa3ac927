/*
 * litmus.c [K] [rounds] - memory-model litmus tests on a System V segment.
 *
 * (a) atomic counter: every node does K __atomic_fetch_add on one word;
 *     after a barrier it must be N*K. (Also a second word on another page
 *     updated with compare-and-swap loops.)
 * (b) message passing: in each round every node i writes a payload on its
 *     own payload pages and then sets a flag on another page (release store);
 *     node (i+1) % N spins on the flag (acquire loads, sched_yield) and must
 *     then see the whole payload.
 * (c) freshness: a writer stores a value into each of 256 pages; barrier;
 *     every node checks all of them; barrier; repeated with every node as
 *     the writer, several times.
 * Node 0 prints `litmus failures=<k> nodes=<N> K=<K> rounds=<r>` (k summed
 * over all nodes) and exits 1 if k > 0; another node with failures exits 1.
 */
#include "common.h"

#include <sched.h>

#define FRESH_PAGES 256
#define MP_PAYLOAD_PAGES 2

static long failures = 0;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (failures++ < 20) {
        va_list ap;
        va_start(ap, fmt);
        char buf[512];
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        t_msg("FAIL: %s", buf);
    }
}

int main(int argc, char **argv)
{
    t_init_env("litmus");
    long K = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
    long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 20;
    if (K < 1 || rounds < 1)
        t_die(0, "usage: litmus [K>=1] [rounds>=1]");
    t_barrier_init();

    size_t pg = t_page_size();
    /* Layout (in pages): 0 counter, 1 CAS counter, then per node
     * MP_PAYLOAD_PAGES payload + 1 flag, then FRESH_PAGES. */
    size_t mp_base = 2;
    size_t per_node = MP_PAYLOAD_PAGES + 1;
    size_t fresh_base = mp_base + per_node * (size_t)t_n;
    size_t npages = fresh_base + FRESH_PAGES;
    char *seg = t_shm_open(2, npages * pg, NULL);
#define PAGE(i) (seg + (size_t)(i) * pg)

    /* (a) atomic counters */
    t_barrier();
    {
        long *ctr = (long *)PAGE(0);
        long *cas = (long *)PAGE(1);
        for (long i = 0; i < K; i++) {
            __atomic_fetch_add(ctr, 1, __ATOMIC_SEQ_CST);
            if (i % 4 == 0) {
                long old = __atomic_load_n(cas, __ATOMIC_RELAXED);
                while (!__atomic_compare_exchange_n(cas, &old, old + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
                    ;
            }
        }
        t_barrier();
        long got = __atomic_load_n(ctr, __ATOMIC_SEQ_CST);
        if (got != (long)t_n * K)
            fail("(a) atomic counter = %ld, expected %ld", got, (long)t_n * K);
        long cas_expect = (long)t_n * ((K + 3) / 4);
        long cas_got = __atomic_load_n(cas, __ATOMIC_SEQ_CST);
        if (cas_got != cas_expect)
            fail("(a) CAS counter = %ld, expected %ld", cas_got, cas_expect);
        t_barrier();
    }

    /* (b) message passing */
    {
        size_t words = MP_PAYLOAD_PAGES * pg / sizeof(uint64_t);
        int from = (t_me + t_n - 1) % t_n; /* whose messages I read */
        uint64_t *mine = (uint64_t *)PAGE(mp_base + per_node * t_me);
        long *my_flag = (long *)PAGE(mp_base + per_node * t_me + MP_PAYLOAD_PAGES);
        uint64_t *theirs = (uint64_t *)PAGE(mp_base + per_node * from);
        long *their_flag = (long *)PAGE(mp_base + per_node * from + MP_PAYLOAD_PAGES);
        for (long r = 1; r <= rounds; r++) {
            for (size_t w = 0; w < words; w++)
                mine[w] = ((uint64_t)r << 48) ^ ((uint64_t)t_me << 32) ^ w;
            __atomic_store_n(my_flag, r, __ATOMIC_RELEASE);

            double deadline = t_now() + 30.0;
            long seen;
            while ((seen = __atomic_load_n(their_flag, __ATOMIC_ACQUIRE)) < r) {
                if (t_now() > deadline) {
                    fail("(b) round %ld: flag of node %d stuck at %ld", r, from, seen);
                    break;
                }
                sched_yield();
            }
            if (seen >= r) {
                if (seen != r)
                    fail("(b) round %ld: flag of node %d is %ld", r, from, seen);
                for (size_t w = 0; w < words; w++) {
                    uint64_t want = ((uint64_t)r << 48) ^ ((uint64_t)from << 32) ^ w;
                    if (theirs[w] != want) {
                        fail("(b) round %ld: payload word %zu of node %d = %#" PRIx64 ", expected %#" PRIx64,
                             r, w, from, theirs[w], want);
                        break;
                    }
                }
            }
            /* Nobody rewrites its payload before its reader has checked it. */
            t_barrier();
        }
    }

    /* (c) freshness */
    {
        long reps = rounds / 5 + 1;
        for (long rep = 0; rep < reps; rep++) {
            for (int writer = 0; writer < t_n; writer++) {
                long val = (rep + 1) * 1000003L + writer * 1009L;
                if (t_me == writer)
                    for (int p = 0; p < FRESH_PAGES; p++) {
                        long *w = (long *)PAGE(fresh_base + p);
                        w[p % (pg / sizeof(long))] = val + p;
                        w[0] = val + p;
                    }
                t_barrier();
                for (int p = 0; p < FRESH_PAGES; p++) {
                    long *w = (long *)PAGE(fresh_base + p);
                    if (w[0] != val + p || w[p % (pg / sizeof(long))] != val + p) {
                        fail("(c) rep %ld writer %d: page %d holds %ld/%ld, expected %ld", rep, writer, p, w[0],
                             w[p % (pg / sizeof(long))], val + p);
                        break;
                    }
                }
                t_barrier();
            }
        }
    }

    /* Report: every node prints its own count; node 0 prints the total. */
    long *fail_slots = (long *)PAGE(1) + 8; /* past the CAS word */
    __atomic_fetch_add(fail_slots, failures, __ATOMIC_SEQ_CST);
    t_barrier();
    int rc = 0;
    if (t_me == 0) {
        long total = __atomic_load_n(fail_slots, __ATOMIC_SEQ_CST);
        printf("litmus failures=%ld nodes=%d K=%ld rounds=%ld\n", total, t_n, K, rounds);
        rc = total > 0;
    } else if (failures > 0) {
        rc = 1;
    }
    return t_finish(rc);
}
