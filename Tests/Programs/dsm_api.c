/*
 * dsm_api.c [rounds] - the public API of <dsm/dsm.h>.
 *
 * Under dsmrun: dsm_node_id() and dsm_nodes() must match DSM_NODE_ID /
 * DSM_NODES; in each round node r % N writes a value into a System V
 * segment, dsm_barrier(), and every node must read it.
 * In a plain run (no runtime preloaded) the API reports node 0 of 1 and
 * dsm_barrier() returns 0 at once, whatever the environment says.
 * Prints `dsm_api node=<id> nodes=<n> runtime=<yes|no>` on node 0.
 */
#define _GNU_SOURCE 1
#include <dsm/dsm.h>

#include "common.h"

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
    int runtime = dlsym(RTLD_DEFAULT, "dsm_rt_barrier") != NULL;
    int id = dsm_node_id(), nodes = dsm_nodes();
    /* Use the API's view; the environment is only cross-checked. */
    t_prog = "dsm_api";
    t_me = id;
    t_n = nodes;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *k = getenv("DSM_TEST_KEY");
    if (k && *k)
        t_key_base = (key_t)strtoul(k, NULL, 0);

    int rc = 0;
    if (nodes < 1 || nodes > 64 || id < 0 || id >= nodes) {
        t_msg("FAIL: dsm_node_id()=%d dsm_nodes()=%d", id, nodes);
        return 1;
    }
    if (!runtime) {
        if (id != 0 || nodes != 1) {
            t_msg("FAIL: plain run: dsm_node_id()=%d dsm_nodes()=%d, expected 0/1", id, nodes);
            return 1;
        }
        for (int i = 0; i < 10; i++)
            if (dsm_barrier() != 0) {
                t_msg("FAIL: plain run: dsm_barrier() != 0");
                return 1;
            }
        printf("dsm_api node=0 nodes=1 runtime=no\n");
        return 0;
    }

    const char *env_id = getenv("DSM_NODE_ID"), *env_n = getenv("DSM_NODES");
    if (env_id && atoi(env_id) != id) {
        t_msg("FAIL: dsm_node_id()=%d but DSM_NODE_ID=%s", id, env_id);
        rc = 1;
    }
    if (env_n && atoi(env_n) != nodes) {
        t_msg("FAIL: dsm_nodes()=%d but DSM_NODES=%s", nodes, env_n);
        rc = 1;
    }

    /* Segment created by everyone (IPC_CREAT); reads as zeros until written. */
    int shmid;
    volatile long *v = t_shm_open(2, 2 * t_page_size(), &shmid);
    if (dsm_barrier() != 0)
        t_die(errno, "dsm_barrier");
    for (long r = 1; r <= rounds; r++) {
        if (r % nodes == id) {
            v[0] = r * 7919 + id;
            v[t_page_size() / sizeof(long)] = r; /* second page */
        }
        if (dsm_barrier() != 0)
            t_die(errno, "dsm_barrier (round %ld)", r);
        long want = r * 7919 + r % nodes;
        if (v[0] != want || v[t_page_size() / sizeof(long)] != r) {
            t_msg("FAIL: round %ld: read %ld/%ld, expected %ld/%ld", r, v[0], v[t_page_size() / sizeof(long)], want, r);
            rc = 1;
        }
        if (dsm_barrier() != 0)
            t_die(errno, "dsm_barrier (round %ld)", r);
    }
    if (id == 0)
        printf("dsm_api node=%d nodes=%d runtime=yes rounds=%ld\n", id, nodes, rounds);

    /* Tear-down with dsm_barrier only: detach, barrier, node 0 removes. */
    if (shmdt((const void *)v) < 0)
        t_die(errno, "shmdt");
    if (dsm_barrier() != 0)
        t_die(errno, "dsm_barrier (final)");
    if (id == 0 && shmctl(shmid, IPC_RMID, NULL) < 0)
        t_die(errno, "shmctl(IPC_RMID)");
    return rc;
}
