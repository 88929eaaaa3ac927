// futex(2) calls that never pass through libc's syscall().
//
// libgomp, and any code with its own `syscall` instruction, calls futex
// directly. On a word in shared memory a kernel futex reaches only the
// threads of one node: a thread on node 1 sleeps through node 0's wake
// (OpenMP's passive waits hung). So in image mode on more than one node, a
// seccomp filter traps futex calls on the shared ranges (the DSM heap and
// the program's data) with SECCOMP_RET_TRAP: the kernel does not run the
// call, it sends SIGSYS to the calling thread, whose handler here makes the
// call through the lock service (sync.c: dsm_futex) and leaves the result
// in the register the kernel would have.
//
// Calls from the runtime's own code are not trapped (the filter compares
// the calling instruction with the code of libc, the dynamic linker, this
// library and the libraries it needs): glibc waits on words the kernel
// wakes itself (a thread's tid at exit), and this library's interposers
// already route what they must. The handler passes every other trapped
// call to the kernel from this library's code, which the filter lets
// through: futex_waitv (its words are not in the call's registers) with no
// shared word, and any call in a forked child, which keeps the filter but
// is an ordinary process.
//
// The filter is inherited by forked children and survives exec. So that a
// program a node executes cannot meet the shared ranges by chance, nodes
// turn address-space randomisation back on for what they execute
// (image.c), and only calls from outside the runtime's code are trapped.
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

/* The only `syscall` instruction the handler uses: in this library's code,
 * so the filter lets it through. */
static long kernel_call(long n, long a, long b, long c, long d, long e, long f) {
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

struct futex_waiter {
    uint64_t value, address;
    uint32_t flags, reserved;
};

static void on_sigsys(int signal, siginfo_t *info, void *context) {
    (void)signal;
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    if (info->si_code != SYS_SECCOMP) return;
    int saved = errno;
    long a0 = r[REG_RDI], a1 = r[REG_RSI], a2 = r[REG_RDX], a3 = r[REG_R10], a4 = r[REG_R8], a5 = r[REG_R9];
    long result;
    if (info->si_syscall == SYS_futex && dsm_sync_object((void *)a0)) {
        result = dsm_futex((uint32_t *)a0, (int)a1, (uint32_t)a2, (const struct timespec *)a3, (uint32_t)a5);
    } else if (info->si_syscall == SYS_futex_waitv && dsm_image) {
        /* Waiting on several words at once is not served across nodes. */
        struct futex_waiter w;
        int shared = 0;
        for (long i = 0; i < a1 && i < 128; i++)
            if (cdsm_copy_in(&w, (const struct futex_waiter *)a0 + i, sizeof w) == 0 &&
                dsm_sync_object((void *)(uintptr_t)w.address))
                shared = 1;
        if (shared) {
            static int told;
            dsm_tell_once(&told, "dsm: futex_waitv on shared memory is not supported across nodes (ENOSYS)");
            result = -ENOSYS;
        } else {
            result = kernel_call(info->si_syscall, a0, a1, a2, a3, a4, a5);
        }
    } else {
        result = kernel_call(info->si_syscall, a0, a1, a2, a3, a4, a5);
    }
    r[REG_RAX] = result;
    errno = saved;
}

// --- SIGSYS stays deliverable -------------------------------------------------

/* A trapped call made while SIGSYS is blocked kills the process: the kernel
 * forces the signal and resets it to its default action. Programs block
 * every signal in their threads (sigfillset, for a thread that waits for
 * signals with sigwait) and in their handlers (sa_mask), so once the
 * filter is in, SIGSYS is taken out of every mask they set. */
static int trapping;

static const sigset_t *without_sigsys(const sigset_t *set, sigset_t *copy) {
    if (!__atomic_load_n(&trapping, __ATOMIC_RELAXED) || !set || !sigismember(set, SIGSYS)) return set;
    *copy = *set;
    sigdelset(copy, SIGSYS);
    return copy;
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    REAL(sigprocmask);
    sigset_t copy;
    return real_sigprocmask(how, how == SIG_UNBLOCK ? set : without_sigsys(set, &copy), old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    REAL(pthread_sigmask);
    sigset_t copy;
    return real_pthread_sigmask(how, how == SIG_UNBLOCK ? set : without_sigsys(set, &copy), old);
}

int sigaction(int signal, const struct sigaction *action, struct sigaction *old) {
    REAL(sigaction);
    struct sigaction copy;
    if (action && __atomic_load_n(&trapping, __ATOMIC_RELAXED) && sigismember(&action->sa_mask, SIGSYS)) {
        copy = *action;
        sigdelset(&copy.sa_mask, SIGSYS);
        action = &copy;
    }
    return real_sigaction(signal, action, old);
}

// --- the filter ---------------------------------------------------------------

#define MAX_RANGES 96
#define RANGE_TEST 11
#define MAX_FILTER (8 + MAX_RANGES * RANGE_TEST)

#define LOAD(offset) (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (offset))
#define JUMP(op, k, yes, no) (struct sock_filter)BPF_JUMP(BPF_JMP | (op) | BPF_K, (k), (yes), (no))
#define RETURN(action) (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (action))

/* Returns `action` if the 64-bit field at `offset` is in [start, end);
 * falls through to the next instruction otherwise (11 instructions). */
static struct sock_filter *in_range(struct sock_filter *p, uint32_t offset, dsm_range range, uint32_t action) {
    uint32_t low = (uint32_t)range.start, high = (uint32_t)(range.start >> 32);
    uint32_t end_low = (uint32_t)range.end, end_high = (uint32_t)(range.end >> 32);
    struct sock_filter test[RANGE_TEST] = {
        /* 0 */ LOAD(offset + 4),
        /* 1 */ JUMP(BPF_JGT, high, 3, 0),     /* above start's high word: check the end */
        /* 2 */ JUMP(BPF_JEQ, high, 0, 8),     /* below it: out */
        /* 3 */ LOAD(offset),
        /* 4 */ JUMP(BPF_JGE, low, 0, 6),      /* below start: out */
        /* 5 */ LOAD(offset + 4),
        /* 6 */ JUMP(BPF_JGT, end_high, 4, 0), /* above the end's high word: out */
        /* 7 */ JUMP(BPF_JEQ, end_high, 0, 2), /* below it: in */
        /* 8 */ LOAD(offset),
        /* 9 */ JUMP(BPF_JGE, end_low, 1, 0),  /* at or past the end: out */
        /* 10 */ RETURN(action),
    };
    memcpy(p, test, sizeof test);
    return p + RANGE_TEST;
}

void dsm_trap_futexes(const dsm_range *shared, int count) {
    static dsm_range runtime[MAX_RANGES];
    int code = dsm_runtime_text(runtime, MAX_RANGES);
    if (code + count > MAX_RANGES) {
        static int told;
        dsm_tell_once(&told, "dsm: too many loaded objects to route futex calls; OpenMP waits may not cross nodes");
        return;
    }
    static struct sock_filter program[MAX_FILTER];
    struct sock_filter *p = program;
    const uint32_t allow = SECCOMP_RET_ALLOW, trap = SECCOMP_RET_TRAP;
    *p++ = LOAD(offsetof(struct seccomp_data, arch));
    *p++ = JUMP(BPF_JEQ, AUDIT_ARCH_X86_64, 1, 0);
    *p++ = RETURN(allow);
    *p++ = LOAD(offsetof(struct seccomp_data, nr));
    *p++ = JUMP(BPF_JEQ, SYS_futex, 2, 0);
    *p++ = JUMP(BPF_JEQ, SYS_futex_waitv, 1, 0);
    *p++ = RETURN(allow);
    for (int i = 0; i < code; i++) p = in_range(p, offsetof(struct seccomp_data, instruction_pointer), runtime[i], allow);
    /* futex_waitv's words are behind a pointer: the handler looks. */
    *p++ = LOAD(offsetof(struct seccomp_data, nr));
    *p++ = JUMP(BPF_JEQ, SYS_futex_waitv, 0, 1);
    *p++ = RETURN(trap);
    for (int i = 0; i < count; i++)
        if (shared[i].start < shared[i].end) p = in_range(p, offsetof(struct seccomp_data, args[0]), shared[i], trap);
    *p++ = RETURN(allow);

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigsys;
    /* SA_NODEFER: a trapped call in a handler that interrupted this one
     * must not find SIGSYS blocked. */
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, NULL) != 0) return;
    __atomic_store_n(&trapping, 1, __ATOMIC_RELAXED);
    sigset_t sigsys;
    sigemptyset(&sigsys);
    sigaddset(&sigsys, SIGSYS);
    pthread_sigmask(SIG_UNBLOCK, &sigsys, NULL);
    struct sock_fprog fprog = {(unsigned short)(p - program), program};
    /* Without CAP_SYS_ADMIN a filter needs no_new_privs (then a set-user-ID
     * program the run executes does not gain its privileges). */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0 &&
        (errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
         syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)) {
        static int told;
        dsm_tell_once(&told, "dsm: cannot install the futex filter (%s); futex calls outside libc stay on one node",
                      strerror(errno));
    }
}
