/*
 * late_join sleep SECONDS | stop - node 1 makes its first DSM call late: it
 * sleeps SECONDS first (a program reading its input, say), or stops itself
 * with SIGSTOP (a node frozen before it joined). Then every node meets in
 * dsm_barrier() and exits 0. Prints `late_join node= ok` on each node.
 */
#include <dsm/dsm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    const char *env = getenv("DSM_NODE_ID");
    int me = env ? atoi(env) : 0;
    if (argc < 2) {
        fprintf(stderr, "usage: late_join sleep SECONDS | stop\n");
        return 2;
    }
    if (me == 1 && strcmp(argv[1], "stop") == 0) raise(SIGSTOP);
    if (me == 1 && strcmp(argv[1], "sleep") == 0 && argc > 2) {
        double s = atof(argv[2]);
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    if (dsm_barrier() != 0) {
        perror("dsm_barrier");
        return 1;
    }
    printf("late_join node=%d ok\n", dsm_node_id());
    return 0;
}
