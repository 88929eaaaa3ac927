// Image mode: process-wide state that libc keeps, as the runtime treats it
// (a documented limitation, shown here): the environment and rand()'s seed
// are per node. A thread on another node does not see a setenv made by
// main after start-up, nor continue rand()'s sequence from main's srand;
// a thread on main's node does, as natively. What the program had at
// start-up (its environment) every node has.
//
// Usage: img_process_state   (exit 0; the test reads the lines)
// Prints `img_process_state node= env= start_env= rand_matches=` for a
// thread on each node it runs on.
#define _GNU_SOURCE
#include <dsm/dsm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int expected_rand;

static void *report(void *arg) {
    (void)arg;
    const char *env = getenv("DSM_TEST_SET_IN_MAIN");
    const char *start = getenv("PATH") ? "yes" : "no";
    int matches = rand() == expected_rand;
    printf("img_process_state node=%d env=%s start_env=%s rand_matches=%d\n", dsm_node_id(), env ? env : "(unset)", start,
           matches);
    return NULL;
}

int main(void) {
    /* The value rand() gives first after srand(7), computed before the
     * real seeding so that a thread's first rand() can be compared. */
    srand(7);
    expected_rand = rand();
    srand(7);
    setenv("DSM_TEST_SET_IN_MAIN", "main", 1);
    pthread_t t;
    pthread_create(&t, NULL, report, NULL);
    pthread_join(t, NULL);
    srand(7);
    report(NULL);
    return 0;
}
