#define _GNU_SOURCE
#include "CDSMKernel.h"
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

const uint64_t CDSM_UFFD_PAGEFAULT_FLAG_WRITE = UFFD_PAGEFAULT_FLAG_WRITE;
const uint64_t CDSM_UFFD_PAGEFAULT_FLAG_WP = UFFD_PAGEFAULT_FLAG_WP;
const uint8_t CDSM_UFFD_EVENT_PAGEFAULT = UFFD_EVENT_PAGEFAULT;

#include <sys/resource.h>

/* The runtime's descriptors sit at the top of the descriptor range (below
 * RLIMIT_NOFILE, at most 65536), each marked in a bitmap:
 * - in image mode a thread on another node may use a descriptor number main
 *   opened on node 0, and it must meet EBADF there, never the runtime's
 *   userfaultfd or a socket;
 * - a program that closes every descriptor (daemons do), or dup2s onto
 *   numbers of its choosing, must not take them away: the interposers in
 *   CDSMPreload treat marked descriptors as not open for the program. */
#define FD_LIMIT 65536
static uint64_t runtime_fds[FD_LIMIT / 64];
static int fd_bottom;          /* lowest number of the region so far; 0: not yet known */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;

static void mark_fd(int fd, int on) {
    if (fd < 0 || fd >= FD_LIMIT) return;
    uint64_t bit = 1ULL << (fd & 63);
    if (on) __atomic_fetch_or(&runtime_fds[fd >> 6], bit, __ATOMIC_RELAXED);
    else __atomic_fetch_and(&runtime_fds[fd >> 6], ~bit, __ATOMIC_RELAXED);
}

int cdsm_is_runtime_fd(int fd) {
    return fd >= 0 && fd < FD_LIMIT && (__atomic_load_n(&runtime_fds[fd >> 6], __ATOMIC_RELAXED) >> (fd & 63)) & 1;
}

void cdsm_release_fd(int fd) { mark_fd(fd, 0); }

void cdsm_forget_runtime_fds(void) { memset(runtime_fds, 0, sizeof runtime_fds); }

int cdsm_next_runtime_fd(int from) {
    for (int fd = from < 0 ? 0 : from; fd < FD_LIMIT; fd++) {
        uint64_t word = __atomic_load_n(&runtime_fds[fd >> 6], __ATOMIC_RELAXED) >> (fd & 63);
        if (word) return fd + __builtin_ctzll(word);
        fd |= 63;
    }
    return -1;
}

int cdsm_high_fd(int fd) {
    if (fd < 0 || cdsm_is_runtime_fd(fd)) return fd;
    pthread_mutex_lock(&fd_lock);
    if (fd_bottom == 0) {
        struct rlimit limit;
        fd_bottom = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < FD_LIMIT ? (int)limit.rlim_cur : FD_LIMIT;
    }
    int moved = -1;
    /* A hole in the region first (a descriptor the runtime closed), else
     * one number lower. Never below 64: a tiny limit keeps numbers as
     * they are (the program's own then run out first). */
    for (int from = fd_bottom; from >= 64; from--) {
        moved = fcntl(fd, F_DUPFD_CLOEXEC, from);
        if (moved >= 0) {
            fd_bottom = from;
            break;
        }
        if (errno != EMFILE && errno != EINVAL) break;
    }
    pthread_mutex_unlock(&fd_lock);
    if (moved < 0) {
        mark_fd(fd, 1);
        return fd;
    }
    close(fd);
    mark_fd(moved, 1);
    return moved;
}

int cdsm_uffd_open(void) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        // Without CAP_SYS_PTRACE the syscall refuses kernel-mode faults;
        // /dev/userfaultfd grants them to whoever may open the device.
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev < 0) return -errno;
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        int saved = errno;
        close(dev);
        if (fd < 0) return -saved;
    }
    struct uffdio_api api;
    memset(&api, 0, sizeof api);
    api.api = UFFD_API;
    // Pages live in memfds (shmem): write protection there needs WP_HUGETLBFS_SHMEM (Linux 5.19+).
    api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_THREAD_ID;
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return cdsm_high_fd(fd);
}

int cdsm_uffd_register(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_register reg;
    memset(&reg, 0, sizeof reg);
    reg.range.start = start;
    reg.range.len = len;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) return -errno;
    return 0;
}

int cdsm_uffd_unregister(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_range range = { .start = start, .len = len };
    if (ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0) return -errno;
    return 0;
}

int cdsm_uffd_read(int uffd, cdsm_uffd_fault *out, int max) {
    struct uffd_msg msgs[32];
    if (max > 32) max = 32;
    ssize_t n = read(uffd, msgs, sizeof(struct uffd_msg) * (size_t)max);
    if (n < 0) return (errno == EAGAIN) ? 0 : -errno;
    int count = (int)(n / (ssize_t)sizeof(struct uffd_msg));
    for (int i = 0; i < count; i++) {
        out[i].event = msgs[i].event;
        out[i].flags = msgs[i].arg.pagefault.flags;
        out[i].address = msgs[i].arg.pagefault.address;
        out[i].thread_id = msgs[i].arg.pagefault.feat.ptid;
    }
    return count;
}

int cdsm_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, int wp, int dontwake) {
    struct uffdio_copy copy;
    memset(&copy, 0, sizeof copy);
    copy.dst = dst;
    copy.src = (uint64_t)(uintptr_t)src;
    copy.len = len;
    copy.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) | (dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0);
    if (ioctl(uffd, UFFDIO_COPY, &copy) < 0) return -errno;
    return 0;
}

int cdsm_uffd_copy_run(int uffd, uint64_t dst, const void *src, uint64_t len, int wp) {
    uint64_t done = 0;
    while (done < len) {
        struct uffdio_copy copy;
        memset(&copy, 0, sizeof copy);
        copy.dst = dst + done;
        copy.src = (uint64_t)(uintptr_t)src + done;
        copy.len = len - done;
        copy.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
        if (ioctl(uffd, UFFDIO_COPY, &copy) == 0) return 0;
        int e = errno;
        /* EAGAIN: the address space changed under the copy; what was copied
         * stays copied, go on after it. */
        if (e != EAGAIN) return -e;
        if (copy.copy > 0) done += (uint64_t)copy.copy;
    }
    return 0;
}

int cdsm_uffd_zeropage(int uffd, uint64_t dst, uint64_t len, int dontwake) {
    struct uffdio_zeropage zp;
    memset(&zp, 0, sizeof zp);
    zp.range.start = dst;
    zp.range.len = len;
    zp.mode = dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
    if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) < 0) return -errno;
    return 0;
}

int cdsm_uffd_writeprotect(int uffd, uint64_t start, uint64_t len, int wp, int dontwake) {
    struct uffdio_writeprotect w;
    memset(&w, 0, sizeof w);
    w.range.start = start;
    w.range.len = len;
    // The kernel refuses WP together with DONTWAKE (protecting wakes nobody anyway).
    w.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : (dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0) return -errno;
    return 0;
}

int cdsm_uffd_wake(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_range range = { .start = start, .len = len };
    if (ioctl(uffd, UFFDIO_WAKE, &range) < 0) return -errno;
    return 0;
}

pid_t cdsm_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int cdsm_errno(void) { return errno; }
void cdsm_set_errno(int value) { errno = value; }

void cdsm_futex_wait(uint32_t *word, uint32_t expected) {
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) {
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
    }
}

#include <sys/uio.h>

/* The program's memory read or written as the kernel's copy_from_user and
 * copy_to_user do: through the kernel (process_vm_readv on this very
 * process), so a bad address is EFAULT, never a crash of the runtime, and a
 * DSM page not here is faulted in as for any access. */
int cdsm_copy_in(void *to, const void *from, size_t length) {
    if (length == 0) return 0;
    struct iovec local = {to, length}, remote = {(void *)from, length};
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return n == (ssize_t)length ? 0 : -EFAULT;
}

int cdsm_copy_out(void *to, const void *from, size_t length) {
    if (length == 0) return 0;
    struct iovec local = {(void *)from, length}, remote = {to, length};
    ssize_t n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
    return n == (ssize_t)length ? 0 : -EFAULT;
}

int cdsm_futex_wait_for(uint32_t *word, uint32_t expected, uint64_t nanoseconds) {
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &now);
    end.tv_sec = now.tv_sec + (time_t)(nanoseconds / 1000000000ULL);
    end.tv_nsec = now.tv_nsec + (long)(nanoseconds % 1000000000ULL);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) {
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
        long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, expected, &end, NULL, FUTEX_BITSET_MATCH_ANY);
        if (r != 0 && errno == ETIMEDOUT) return __atomic_load_n(word, __ATOMIC_ACQUIRE) != expected;
    }
    return 1;
}

static pthread_key_t thread_eventfd_key;
static pthread_once_t thread_eventfd_once = PTHREAD_ONCE_INIT;
static __thread int thread_eventfd = -1;

static void close_thread_eventfd(void *value) {
    /* On a program thread at its exit: released first, so the close
     * interposer lets it through. */
    cdsm_release_fd((int)(intptr_t)value - 1);
    close((int)(intptr_t)value - 1);
}
static void make_thread_eventfd_key(void) { pthread_key_create(&thread_eventfd_key, close_thread_eventfd); }

int cdsm_thread_eventfd(void) {
    if (thread_eventfd < 0) {
        pthread_once(&thread_eventfd_once, make_thread_eventfd_key);
        int fd = cdsm_high_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (fd < 0) return -errno;
        thread_eventfd = fd;
        pthread_setspecific(thread_eventfd_key, (void *)(intptr_t)(fd + 1));
    }
    return thread_eventfd;
}

/* The mask saved by cdsm_block_signals, per thread. */
static __thread sigset_t saved_mask;

void cdsm_block_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved_mask);
}

void cdsm_unblock_signals(void) { pthread_sigmask(SIG_SETMASK, &saved_mask, NULL); }

int cdsm_wait_interruptible(uint32_t *word, uint32_t expected, int fd) {
    int result = 0;
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = ppoll(&p, 1, NULL, &saved_mask);
        if (r < 0 && errno == EINTR) {
            if (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) result = -EINTR;
            break;
        }
        uint64_t count;
        if (r > 0) (void)!read(fd, &count, sizeof count);
    }
    cdsm_unblock_signals();
    return result;
}

void cdsm_ring(int fd) {
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
}

void cdsm_block_all_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

void cdsm_futex_wake(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void cdsm_exit_now(int status) {
    for (;;) syscall(SYS_exit_group, status);
}

int cdsm_tcp_nodelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -errno;
    return 0;
}

int cdsm_tcp_user_timeout(int fd, unsigned int milliseconds) {
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &milliseconds, sizeof milliseconds) < 0) return -errno;
    return 0;
}

int cdsm_disable_aslr(void) {
    int current = personality(0xffffffff);
    if (current < 0) return -errno;
    if (personality((unsigned long)current | ADDR_NO_RANDOMIZE) < 0) return -errno;
    return 0;
}

int cdsm_accept(int fd, struct sockaddr *address, unsigned int *length) {
    socklen_t l = *length;
    int r = cdsm_high_fd(accept4(fd, address, &l, SOCK_CLOEXEC | SOCK_NONBLOCK));
    *length = l;
    return r;
}

#include <signal.h>
#include <spawn.h>

static const pid_t *forward_groups;
static volatile int forward_count;
static volatile sig_atomic_t last_forwarded;
static volatile sig_atomic_t forwarded_mask;

static volatile sig_atomic_t forwarded_count;

static void forward_handler(int sig) {
    last_forwarded = sig;
    forwarded_mask |= 1 << sig;
    forwarded_count++;
    for (int i = 0; i < forward_count; i++) {
        if (forward_groups[i] > 0) kill(-forward_groups[i], sig);
    }
}

/* The signals a user sends a job to ask something of it (as mpirun and
 * srun pass them on). SIGQUIT included: it would otherwise end dsmrun with
 * the Swift runtime's crash report. */
static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

/* Signals that mean a crash when the kernel raises them, and are passed on
 * like the others when someone sends them (kill -SEGV): without this the
 * Swift runtime prints a crash report for a signal that was only sent. */
static const int fault_signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
static struct sigaction crash_handlers[32];

static void fault_or_forward(int sig, siginfo_t *info, void *context) {
    if (info && (info->si_code == SI_USER || info->si_code == SI_QUEUE || info->si_code == SI_TKILL) &&
        info->si_pid != getpid()) {
        forward_handler(sig);
        return;
    }
    /* A real fault (or abort()): the crash report, as before. */
    struct sigaction *previous = &crash_handlers[sig];
    if (previous->sa_flags & SA_SIGINFO && previous->sa_sigaction) {
        previous->sa_sigaction(sig, info, context);
    } else if (previous->sa_handler != SIG_IGN && previous->sa_handler != SIG_DFL && previous->sa_handler) {
        previous->sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

void cdsm_forward_signals(const pid_t *groups, int count) {
    forward_groups = groups;
    forward_count = count;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
        sigaction(forwarded_signals[i], &sa, NULL);
    struct sigaction fault;
    memset(&fault, 0, sizeof fault);
    fault.sa_sigaction = fault_or_forward;
    sigemptyset(&fault.sa_mask);
    fault.sa_flags = SA_RESTART | SA_SIGINFO | SA_ONSTACK;
    for (size_t i = 0; i < sizeof fault_signals / sizeof fault_signals[0]; i++)
        sigaction(fault_signals[i], &fault, &crash_handlers[fault_signals[i]]);
}

int cdsm_forwarded_signal(void) { return last_forwarded; }
int cdsm_was_forwarded(int sig) { return sig > 0 && sig < 32 && (forwarded_mask & (1 << sig)) != 0; }
int cdsm_forwarded_count(void) { return forwarded_count; }

int cdsm_pipe(int fds[2], int size) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    fds[0] = cdsm_high_fd(fds[0]);
    fds[1] = cdsm_high_fd(fds[1]);
    if (fcntl(fds[1], F_GETPIPE_SZ) < size && fcntl(fds[1], F_SETPIPE_SZ, size) < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    return 0;
}

pid_t cdsm_spawn(const char *path, char *const argv[], char *const envp[]) {
    return cdsm_spawn_stdin(path, argv, envp, -1);
}

pid_t cdsm_spawn_stdin(const char *path, char *const argv[], char *const envp[], int stdin_fd) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (stdin_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    pid_t pid;
    int r = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return r == 0 ? pid : -r;
}

#include <sys/mman.h>

const int CDSM_MADV_POPULATE_WRITE = MADV_POPULATE_WRITE;

int cdsm_punch_hole(int fd, uint64_t offset, uint64_t length) {
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) != 0) return -errno;
    return 0;
}

int cdsm_memfd(const char *name) {
    int fd = cdsm_high_fd(memfd_create(name, MFD_CLOEXEC));
    return fd < 0 ? -errno : fd;
}

#include <sys/epoll.h>
#include <sys/eventfd.h>

const uint32_t CDSM_EPOLLIN = EPOLLIN, CDSM_EPOLLOUT = EPOLLOUT, CDSM_EPOLLHUP = EPOLLHUP, CDSM_EPOLLERR = EPOLLERR;

int cdsm_epoll_create(void) {
    int fd = cdsm_high_fd(epoll_create1(EPOLL_CLOEXEC));
    return fd < 0 ? -errno : fd;
}

static int epoll_change(int epoll, int op, int fd, uint32_t events, uint64_t tag) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = events;
    e.data.u64 = tag;
    return epoll_ctl(epoll, op, fd, &e) < 0 ? -errno : 0;
}

int cdsm_epoll_add(int epoll, int fd, uint32_t events, uint64_t tag) { return epoll_change(epoll, EPOLL_CTL_ADD, fd, events, tag); }
int cdsm_epoll_modify(int epoll, int fd, uint32_t events, uint64_t tag) { return epoll_change(epoll, EPOLL_CTL_MOD, fd, events, tag); }
int cdsm_epoll_remove(int epoll, int fd) { return epoll_change(epoll, EPOLL_CTL_DEL, fd, 0, 0); }

int cdsm_epoll_wait(int epoll, uint64_t *tags, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event e[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epoll, e, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        tags[i] = e[i].data.u64;
        events[i] = e[i].events;
    }
    return n;
}

int cdsm_epoll_wait_us(int epoll, uint64_t *tags, uint32_t *events, int max, int64_t timeout_us) {
    struct epoll_event e[64];
    if (max > 64) max = 64;
    struct timespec t = {.tv_sec = timeout_us / 1000000, .tv_nsec = (timeout_us % 1000000) * 1000};
    int n = epoll_pwait2(epoll, e, max, &t, NULL);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        tags[i] = e[i].data.u64;
        events[i] = e[i].events;
    }
    return n;
}

int cdsm_eventfd(void) {
    int fd = cdsm_high_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    return fd < 0 ? -errno : fd;
}

#include <sched.h>

int cdsm_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : -errno;
}

int cdsm_online_cpus(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }


#include <dlfcn.h>

static void *libnuma(void) {
    static void *handle;
    static int tried;
    if (!tried) {
        tried = 1;
        handle = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);
        if (handle) {
            int (*available)(void) = (int (*)(void))dlsym(handle, "numa_available");
            if (!available || available() < 0) handle = NULL;
        }
    }
    return handle;
}

int cdsm_numa_node_of_cpu(int cpu) {
    void *h = libnuma();
    int (*f)(int) = h ? (int (*)(int))dlsym(h, "numa_node_of_cpu") : NULL;
    return f ? f(cpu) : -1;
}

int cdsm_numa_nodes(void) {
    void *h = libnuma();
    int (*f)(void) = h ? (int (*)(void))dlsym(h, "numa_num_configured_nodes") : NULL;
    return f ? f() : 1;
}

int cdsm_numa_prefer(int node) {
    void *h = libnuma();
    void (*f)(int) = h ? (void (*)(int))dlsym(h, "numa_set_preferred") : NULL;
    if (!f) return -1;
    f(node);
    return 0;
}

// --- the program's DSM mappings, for fork --------------------------------------

/* Every mapping of a container the program sees (image data, heap, System V
 * attachments), kept here so that a forked child, which has no runtime,
 * can turn each into a private copy without calling into Swift. */
#define MAPPINGS_MAX 4096
static struct {
    uint64_t start, length;
    int fd, read_only;
} mappings[MAPPINGS_MAX];
static int mapping_count;
static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;

void cdsm_mapping_add(uint64_t start, uint64_t length, int fd, int read_only) {
    pthread_mutex_lock(&mappings_lock);
    if (mapping_count < MAPPINGS_MAX) {
        mappings[mapping_count].start = start;
        mappings[mapping_count].length = length;
        mappings[mapping_count].fd = fd;
        mappings[mapping_count].read_only = read_only;
        mapping_count++;
    }
    pthread_mutex_unlock(&mappings_lock);
}

void cdsm_mapping_remove(uint64_t start) {
    pthread_mutex_lock(&mappings_lock);
    for (int i = 0; i < mapping_count; i++) {
        if (mappings[i].start == start) {
            mappings[i] = mappings[--mapping_count];
            break;
        }
    }
    pthread_mutex_unlock(&mappings_lock);
}

int cdsm_mapping_at(int i, uint64_t *start, uint64_t *length) {
    if (i < 0 || i >= mapping_count) return 0;
    *start = mappings[i].start;
    *length = mappings[i].length;
    return 1;
}

/* Forked child only (one thread, no runtime): the mappings were not
 * inherited (MADV_DONTFORK: a child must never reach the parent's memfds
 * through them); each range becomes private anonymous memory holding what
 * this node's memfd holds (the pages valid here; the others read as
 * zeros), at the same address. 0 or -errno. */
int cdsm_privatize_mappings(void) {
    for (int i = 0; i < mapping_count; i++) {
        uint64_t start = mappings[i].start, length = mappings[i].length;
        int fd = mappings[i].fd;
        char *copy = mmap((void *)(uintptr_t)start, length, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        if (copy == MAP_FAILED) return -errno;
        off_t at = 0;
        for (;;) {
            off_t data = lseek(fd, at, SEEK_DATA);
            if (data < 0 || (uint64_t)data >= length) break;
            off_t hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0 || (uint64_t)hole > length) hole = (off_t)length;
            for (off_t done = data; done < hole;) {
                ssize_t n = pread(fd, copy + done, (size_t)(hole - done), done);
                if (n <= 0) return n < 0 ? -errno : -EIO;
                done += n;
            }
            at = hole;
        }
        if (mappings[i].read_only) mprotect(copy, length, PROT_READ);
    }
    return 0;
}
