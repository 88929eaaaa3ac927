// Kernel constants and thin syscall wrappers that Swift cannot import
// (UFFDIO_* request codes are function-like macros). Installed headers are
// Linux 6.1; newer bits get #ifndef fallbacks.
#ifndef CDSM_KERNEL_H
#define CDSM_KERNEL_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

// --- userfaultfd ----------------------------------------------------------

/// One fault as read from the uffd, flattened (the kernel's uffd_msg is a union).
typedef struct {
    uint8_t  event;        // 0x12 = pagefault; others are ignored by the runtime
    uint64_t flags;        // CDSM_UFFD_PAGEFAULT_FLAG_WRITE / _WP
    uint64_t address;
    uint32_t thread_id;
} cdsm_uffd_fault;

extern const uint64_t CDSM_UFFD_PAGEFAULT_FLAG_WRITE;
extern const uint64_t CDSM_UFFD_PAGEFAULT_FLAG_WP;
extern const uint8_t  CDSM_UFFD_EVENT_PAGEFAULT;

/// Opens a userfaultfd that also sees kernel-mode faults (no
/// UFFD_USER_MODE_ONLY), non-blocking, close-on-exec, and negotiates the
/// API with WP support. Returns the fd or -errno.
int cdsm_uffd_open(void);
/// Moves a descriptor to the top of the descriptor range (closing the
/// original) and marks it the runtime's; returns it.
int cdsm_high_fd(int fd);
/// Whether `fd` is one of the runtime's (made by cdsm_high_fd, not released).
int cdsm_is_runtime_fd(int fd);
/// The runtime no longer owns `fd` (about to close it off the runtime's paths).
void cdsm_release_fd(int fd);
/// A forked child: the runtime's descriptors are plain inherited ones there.
void cdsm_forget_runtime_fds(void);
/// The first runtime descriptor at or above `from`, or -1.
int cdsm_next_runtime_fd(int from);

/// Registers [start, start+len) for MISSING and WP faults. 0 or -errno.
int cdsm_uffd_register(int uffd, uint64_t start, uint64_t len);
int cdsm_uffd_unregister(int uffd, uint64_t start, uint64_t len);

/// Reads up to `max` faults without blocking. Returns count, 0 if none, -errno.
int cdsm_uffd_read(int uffd, cdsm_uffd_fault *out, int max);

/// UFFDIO_COPY of one page; write-protected when `wp`; wakes waiters unless dontwake.
/// Returns 0 or -errno (-EEXIST when already mapped, -EAGAIN on a racing change).
int cdsm_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, int wp, int dontwake);
/// UFFDIO_COPY of a run of pages (retried past EAGAIN from where it stopped),
/// waking the threads waiting on them. Returns 0 or -errno.
int cdsm_uffd_copy_run(int uffd, uint64_t dst, const void *src, uint64_t len, int wp);
/// UFFDIO_ZEROPAGE. 0 or -errno.
int cdsm_uffd_zeropage(int uffd, uint64_t dst, uint64_t len, int dontwake);
/// UFFDIO_WRITEPROTECT: wp=1 protects, wp=0 unprotects (and wakes unless dontwake).
int cdsm_uffd_writeprotect(int uffd, uint64_t start, uint64_t len, int wp, int dontwake);
/// UFFDIO_WAKE.
int cdsm_uffd_wake(int uffd, uint64_t start, uint64_t len);

// --- small syscall helpers -------------------------------------------------

/// The calling thread's kernel id.
pid_t cdsm_gettid(void);
/// errno of the calling thread (Swift reads it through this, in one place).
int cdsm_errno(void);
void cdsm_set_errno(int value);

/// A futex-based one-shot event a blocked application thread waits on while
/// the runtime thread works for it. Allocation free.
void cdsm_futex_wait(uint32_t *word, uint32_t expected);
/// Copies from / to the program's memory as the kernel does for a system
/// call: 0, or -EFAULT for an address the program cannot read / write.
int cdsm_copy_in(void *to, const void *from, size_t length);
int cdsm_copy_out(void *to, const void *from, size_t length);
/// As cdsm_futex_wait, for at most `nanoseconds`: 1 once the word changed,
/// 0 when the time ran out first.
int cdsm_futex_wait_for(uint32_t *word, uint32_t expected, uint64_t nanoseconds);
void cdsm_futex_wake(uint32_t *word);
/// The calling thread's eventfd for interruptible waits (created on first
/// use, closed when the thread ends), or -errno.
int cdsm_thread_eventfd(void);
/// Blocks every signal in the calling thread until cdsm_wait_interruptible
/// (which waits with the saved mask) or cdsm_unblock_signals: a signal that
/// comes while a semop is being handed over is then seen by the wait, as
/// the kernel sees one that arrives during the call. The mask is saved per
/// thread.
void cdsm_block_signals(void);
void cdsm_unblock_signals(void);
/// Waits until *word != expected, ringing through `eventfd`, with the
/// signal mask saved by cdsm_block_signals (ppoll swaps it in atomically);
/// returns -EINTR when a signal handler ran first, whatever its SA_RESTART
/// (ppoll is never restarted, as System V semop is not). 0 once the word
/// changed. Restores the saved mask before returning.
int cdsm_wait_interruptible(uint32_t *word, uint32_t expected, int eventfd);
/// Rings an eventfd.
void cdsm_ring(int eventfd);
/// Blocks every signal in the calling thread (the runtime's own threads), so
/// that signals meant for the program reach the program's threads.
void cdsm_block_all_signals(void);

/// Direct exit_group, bypassing atexit handlers (used for cluster aborts).
__attribute__((noreturn)) void cdsm_exit_now(int status);

/// Sets TCP_NODELAY, and SO_KEEPALIVE-free plain options. 0 or -errno.
int cdsm_tcp_nodelay(int fd);

/// Disables address-space randomisation for exec'd children (personality).
int cdsm_disable_aslr(void);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
struct sockaddr;
/// accept4 with SOCK_CLOEXEC | SOCK_NONBLOCK (accept4 needs _GNU_SOURCE).
int cdsm_accept(int fd, struct sockaddr *address, unsigned int *length);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
static inline void cdsm_store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Launcher: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received
/// by dsmrun are sent on to the process group of every node in `groups`
/// (read at signal time).
void cdsm_forward_signals(const pid_t *groups, int count);
/// The last signal forwarded, or 0.
int cdsm_forwarded_signal(void);
/// Whether `sig` has been forwarded.
int cdsm_was_forwarded(int sig);
/// A close-on-exec pipe whose buffer holds at least `size` bytes. 0 or -errno.
int cdsm_pipe(int fds[2], int size);
/// TCP_USER_TIMEOUT: unacknowledged data older than this fails the socket. 0 or -errno.
int cdsm_tcp_user_timeout(int fd, unsigned int milliseconds);
/// How many signals have been forwarded so far.
int cdsm_forwarded_count(void);
/// posix_spawn of `path` in its own process group. Returns pid or -errno.
pid_t cdsm_spawn(const char *path, char *const argv[], char *const envp[]);
/// The same, with `stdin_fd` as the child's standard input (-1: inherited).
pid_t cdsm_spawn_stdin(const char *path, char *const argv[], char *const envp[], int stdin_fd);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Drops [offset, offset+length) from a memfd (FALLOC_FL_PUNCH_HOLE): the
/// pages vanish from every mapping. 0 or -errno.
int cdsm_punch_hole(int fd, uint64_t offset, uint64_t length);
/// memfd_create with MFD_CLOEXEC. fd or -errno.
int cdsm_memfd(const char *name);
/// MADV_POPULATE_WRITE (Linux 5.14), which Swift cannot import.
extern const int CDSM_MADV_POPULATE_WRITE;
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
// epoll and eventfd, flattened (epoll_event is packed on x86-64).
extern const uint32_t CDSM_EPOLLIN, CDSM_EPOLLOUT, CDSM_EPOLLHUP, CDSM_EPOLLERR;
int cdsm_epoll_create(void);
int cdsm_epoll_add(int epoll, int fd, uint32_t events, uint64_t tag);
int cdsm_epoll_modify(int epoll, int fd, uint32_t events, uint64_t tag);
int cdsm_epoll_remove(int epoll, int fd);
/// Returns the number of ready entries (tags[i], events[i]) or -errno.
int cdsm_epoll_wait(int epoll, uint64_t *tags, uint32_t *events, int max, int timeout_ms);
/// A non-blocking, close-on-exec eventfd, or -errno.
int cdsm_eventfd(void);
/// epoll_wait with a timeout in microseconds (epoll_pwait2).
int cdsm_epoll_wait_us(int epoll, uint64_t *tags, uint32_t *events, int max, int64_t timeout_us);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Pins the calling process (all its future threads) to one CPU. 0 or -errno.
int cdsm_pin_to_cpu(int cpu);
/// Online CPUs.
int cdsm_online_cpus(void);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// NUMA through libnuma, loaded at run time (libnuma.so.1) so that machines
/// without it still run: the NUMA node of `cpu`, or -1 without libnuma.
int cdsm_numa_node_of_cpu(int cpu);
/// NUMA nodes configured (1 without libnuma).
int cdsm_numa_nodes(void);
/// Prefer allocating this process's memory on `node`. 0, or -1 without libnuma.
int cdsm_numa_prefer(int node);
/// The program's mappings of containers (for a forked child, which turns
/// each into a private copy: cdsm_privatize_mappings).
void cdsm_mapping_add(uint64_t start, uint64_t length, int fd, int read_only);
void cdsm_mapping_remove(uint64_t start);
/// Mapping `i`: 1 and its range, or 0 past the last.
int cdsm_mapping_at(int i, uint64_t *start, uint64_t *length);
int cdsm_privatize_mappings(void);
#ifdef __cplusplus
}
#endif
