/*
 * signals [seconds] - installs a handler for SIGINT, SIGTERM, SIGQUIT,
 * SIGUSR1 and SIGUSR2, prints `ready`, and waits (at most `seconds`, default
 * 20) for one of them. Prints `handled <signal number>` from main once the
 * handler has run and exits 0; exits 2 if no signal came. A program that
 * handles Ctrl-C by finishing cleanly, as many do. Runs unchanged in both
 * modes (in image mode, main runs on node 0 and a worker thread on another
 * node waits too, so the signal must reach the process, not a thread).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static volatile sig_atomic_t calls;

static void on_signal(int sig)
{
    handled = sig;
    calls++;
}

static void *worker(void *arg)
{
    double seconds = *(double *)arg;
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (double t = 0; t < seconds && !handled; t += 0.01)
        nanosleep(&ts, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 20;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, worker, &seconds);
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (double t = 0; t < seconds && !handled; t += 0.01)
        nanosleep(&ts, NULL);
    pthread_join(t, NULL);
    if (!handled) {
        printf("no signal came\n");
        return 2;
    }
    printf("handled %d calls %d\n", (int)handled, (int)calls);
    return 0;
}
