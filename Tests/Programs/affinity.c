/*
 * affinity.c - prints the CPUs this node may run on, for `dsmrun --bind`:
 *   affinity node=<i> cpus=<c1,c2,...> online=<n>
 * Under --bind node i must be on exactly CPU i mod n.
 */
#define _GNU_SOURCE 1
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    const char *id = getenv("DSM_NODE_ID");
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        perror("sched_getaffinity");
        return 1;
    }
    printf("affinity node=%s cpus=", id ? id : "0");
    int first = 1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) {
            printf(first ? "%d" : ",%d", c);
            first = 0;
        }
    printf(" online=%ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    return 0;
}
