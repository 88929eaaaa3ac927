/*
 * env_token.c [spmd] - the run's secret (DSM_TOKEN) is neither in the
 * program's environment nor in that of the programs it starts.
 *
 * In image mode the program is its node before main. Under --spmd a process
 * becomes its node at its first DSM call (until then it may be a wrapper
 * whose child is the node): with `spmd` the program makes one
 * (dsm_barrier) first.
 * Then: getenv("DSM_TOKEN") is NULL; `env` run through popen lists the
 * run's other variables (DSM_NODES) but no DSM_TOKEN, and exits 0 (the
 * preloaded shell and env run as plain processes); system("env") prints the
 * child's environment on stdout, where the harness looks for DSM_TOKEN too.
 * Prints `env_token node=<id> lines=<k> failures=<f>`; exit 0 means pass.
 */
#define _GNU_SOURCE 1
#include <dsm/dsm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int failures = 0;

static void fail(const char *what)
{
    printf("FAIL: %s\n", what);
    failures++;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "spmd") == 0 && dsm_barrier() != 0)
        fail("dsm_barrier");
    int id = dsm_node_id();
    if (getenv("DSM_TOKEN"))
        fail("DSM_TOKEN is in the program's own environment");

    FILE *p = popen("env", "r");
    if (!p) {
        fail("popen(env)");
    } else {
        char line[8192];
        int lines = 0, tokens = 0, run = 0;
        while (fgets(line, sizeof line, p)) {
            lines++;
            if (strncmp(line, "DSM_TOKEN=", 10) == 0)
                tokens++;
            if (strncmp(line, "DSM_NODES=", 10) == 0)
                run++;
        }
        int status = pclose(p);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail("env through popen did not exit 0");
        if (tokens)
            fail("DSM_TOKEN is in the environment of a child (popen)");
        if (!run)
            fail("the child's environment lacks DSM_NODES: not the run's environment");
        fflush(stdout);
        /* The child's lines go straight to stdout, between markers. */
        printf("env_token node=%d system-env-begin\n", id);
        int rc = system("env");
        printf("env_token node=%d system-env-end\n", id);
        if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
            fail("system(env) did not exit 0");
        printf("env_token node=%d lines=%d failures=%d\n", id, lines, failures);
    }
    if (argc > 1 && strcmp(argv[1], "spmd") == 0 && dsm_barrier() != 0)
        fail("final dsm_barrier");
    return failures ? 1 : 0;
}
