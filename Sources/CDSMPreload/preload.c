// Start-up hook and System V interposers. Kept in C: the Swift runtime is
// linked statically into this library, and an ELF constructor runs before it
// is ready, so the runtime starts from an interposed __libc_start_main, just
// before the program's main.
#define _GNU_SOURCE
#include "CDSMPreload.h"
#include "internal.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

/* Under dsmrun (the DSM_* environment is there). */
static int configured;
/* Joined the run: the runtime thread serves this process. */
static int active;
/* Another process is this node already (this one is a wrapper that ran the
 * program, or a forked child): calls pass through to the kernel. */
static int declined;
static pthread_mutex_t join_lock = PTHREAD_MUTEX_INITIALIZER;
TLS int dsm_runtime_thread;
TLS int dsm_in_runtime;
static int (*real_main)(int, char **, char **);
static int exit_status_seen;

int dsm_preload_active(void) { return active; }
void dsm_preload_enter_runtime_thread(void) { dsm_runtime_thread = 1; }

/* The process joins the run at its first DSM call, not at start-up, so a
 * wrapper that only executes the program (sh -c, time, env) never joins and
 * the program it runs does. */
static int join(void) {
    pthread_mutex_lock(&join_lock);
    if (!active && !declined) {
        if (IN_RUNTIME(dsm_swift_start())) __atomic_store_n(&active, 1, __ATOMIC_RELEASE);
        else __atomic_store_n(&declined, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&join_lock);
    return active;
}

/* Read without the lock by every interposed call: atomic loads, paired
 * with the release stores in join(). */
static int use_dsm(void) {
    if (!configured || dsm_runtime_thread || dsm_in_runtime) return 0;
    if (__atomic_load_n(&active, __ATOMIC_ACQUIRE)) return 1;
    if (__atomic_load_n(&declined, __ATOMIC_ACQUIRE)) return 0;
    return join();
}

/* A forked child has no runtime thread: it uses the kernel's objects. */
static void forked_child(void) {
    active = 0;
    declined = 1;
    /* The runtime's descriptors are plain inherited ones in the child. */
    cdsm_forget_runtime_fds();
    if (dsm_image) {
        /* fork() in image mode (image.c): on a private stack still, before
         * any other handler may touch the program's memory, the DSM
         * mappings come back as private copies; then the child is an
         * ordinary process. */
        dsm_heap_forked(); /* first: the heap's range is the child's to map now */
        int r = cdsm_privatize_mappings();
        if (r != 0) {
            static int told;
            dsm_tell_once(&told, "dsm: a forked child could not copy the program's memory: %s", strerror(-r));
            _exit(127);
        }
        dsm_image = 0;
        if (dsm_fork_sync_fd >= 0) {
            (void)!write(dsm_fork_sync_fd, "", 1);
            close(dsm_fork_sync_fd);
            dsm_fork_sync_fd = -1;
        }
    }
}


static long as_result(long r) {
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

// --- start and exit -----------------------------------------------------

static void leave_cluster(void) {
    if (!configured || declined) return;
    /* A node that made no DSM call still takes part in the exit rendezvous
     * (it may be the home of pages), unless it failed. */
    if (!active && exit_status_seen == 0) join();
    if (!active) return;
    /* Image mode: node 0 leaves from this library's destructor, below. */
    if (dsm_image) return;
    IN_RUNTIME_VOID(dsm_swift_exit(exit_status_seen));
}

/* Image mode, node 0: the program's exit has run its atexit handlers and
 * every object's destructors (which may touch shared pages: the other nodes
 * still serve them; libgomp's writes its GOT in shared data). The streams
 * are flushed here, while their buffers in the DSM heap can still be
 * reached, then every node leaves together. A handler registered with no
 * object before __libc_start_main registers the dynamic linker's
 * destructor pass runs after that pass (a destructor of this library would
 * run before those of libraries initialised earlier). */
static void leave_image(void *unused) {
    (void)unused;
    if (!dsm_image || !active || declined) return;
    fflush(NULL);
    IN_RUNTIME_VOID(dsm_swift_exit(exit_status_seen));
}

extern int __cxa_atexit(void (*)(void *), void *, void *);

__attribute__((constructor)) static void leave_image_last(void) { __cxa_atexit(leave_image, NULL, NULL); }

/* A node dies with the process that started it (dsmrun here, its agent on
 * another host), whether or not it has joined: SIGKILL to dsmrun leaves
 * nothing running. The death signal survives exec, so a wrapper's program
 * keeps it; a parent that died before it was asked for ends us now. */
static void die_with_starter(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    const char *text = getenv("DSM_STARTER_PID");
    pid_t starter = text ? (pid_t)atoi(text) : 0;
    /* 250: NodeExitStatus.abortedByPeer, as for a node whose launcher left. */
    if (starter > 0 && getppid() != starter && kill(starter, 0) != 0 && errno == ESRCH) _exit(250);
}

/* Whether dsmrun started this process; the first call sets the node up. */
static int configure(void) {
    static int done;
    if (done) return configured;
    done = 1;
    if (dsm_swift_configured()) {
        configured = 1;
        die_with_starter();
        pthread_atfork(NULL, NULL, forked_child);
        atexit(leave_cluster);
    }
    return configured;
}

static int main_under_dsm(int argc, char **argv, char **envp) {
    if (configure()) {
        if (dsm_swift_image_mode()) {
            /* Image mode always joins: every node hosts pages and threads. */
            if (!join()) return real_main(argc, argv, envp);
            int status = dsm_image_main(real_main, argc, argv, envp);
            exit_status_seen = status;
            return status;
        }
    }
    int status = real_main(argc, argv, envp);
    exit_status_seen = status;
    return status;
}

typedef int (*libc_start_main_t)(int (*)(int, char **, char **), int, char **, void (*)(void), void (*)(void),
                                 void (*)(void), void *);

int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
    libc_start_main_t real = (libc_start_main_t)dlsym(RTLD_NEXT, "__libc_start_main");
    real_main = main;
    /* Image mode: node 0 sets the image up before the executable's
     * constructors, which the real __libc_start_main runs (image.c). */
    if (configure() && dsm_swift_image_mode() && join() && dsm_swift_node_id() == 0) dsm_image_setup(main);
    return real(main_under_dsm, argc, argv, init, fini, rtld_fini, stack_end);
}

void exit(int status) {
    REAL(exit);
    exit_status_seen = status;
    if (dsm_image && dsm_node != 0 && !dsm_runtime_thread) dsm_image_exit_elsewhere(status);
    real_exit(status);
    __builtin_unreachable();
}

// --- dsm.h entry points -----------------------------------------------------

int dsm_rt_node_id(void) { return configured && !declined ? dsm_swift_node_id() : 0; }
int dsm_rt_nodes(void) { return configured && !declined ? dsm_swift_nodes() : 1; }
int dsm_rt_barrier(void) { return use_dsm() ? (int)as_result(IN_RUNTIME(dsm_swift_barrier())) : 0; }

// --- shared memory ---------------------------------------------------------

int shmget(key_t key, size_t size, int flags) {
    REAL(shmget);
    if (!use_dsm()) return real_shmget(key, size, flags);
    return (int)as_result(IN_RUNTIME(dsm_swift_shmget(key, size, flags)));
}

void *shmat(int id, const void *address, int flags) {
    REAL(shmat);
    if (!use_dsm()) return real_shmat(id, address, flags);
    long r = IN_RUNTIME(dsm_swift_shmat(id, (uint64_t)(uintptr_t)address, flags));
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return (void *)-1;
    }
    return (void *)(uintptr_t)r;
}

int shmdt(const void *address) {
    REAL(shmdt);
    if (!use_dsm()) return real_shmdt(address);
    return (int)as_result(IN_RUNTIME(dsm_swift_shmdt((uint64_t)(uintptr_t)address)));
}

static void perm_to_c(const dsm_ipc_perm *in, struct ipc_perm *out) {
    out->__key = in->key;
    out->uid = in->uid;
    out->gid = in->gid;
    out->cuid = in->cuid;
    out->cgid = in->cgid;
    out->mode = (unsigned short)in->mode;
    out->__seq = (unsigned short)in->seq;
}

static void perm_from_c(const struct ipc_perm *in, dsm_ipc_perm *out) {
    out->key = in->__key;
    out->uid = in->uid;
    out->gid = in->gid;
    out->cuid = in->cuid;
    out->cgid = in->cgid;
    out->mode = in->mode;
    out->seq = in->__seq;
}

/* The caller's buffers are read and written as the kernel does (EFAULT for
 * a bad address): the result is built here, then copied out. */
static int fail_efault(void) {
    errno = EFAULT;
    return -1;
}

int shmctl(int id, int command, struct shmid_ds *buffer) {
    REAL(shmctl);
    if (!use_dsm()) return real_shmctl(id, command, buffer);
    dsm_shm_status status;
    memset(&status, 0, sizeof status);
    if (command == IPC_SET) {
        struct shmid_ds in;
        if (cdsm_copy_in(&in, buffer, sizeof in) != 0) return fail_efault();
        perm_from_c(&in.shm_perm, &status.perm);
    }
    dsm_ipc_info info;
    memset(&info, 0, sizeof info);
    long r = IN_RUNTIME(dsm_swift_shmctl(id, command, &status, &info));
    if (r >= 0 && command == IPC_INFO) {
        struct shminfo out;
        memset(&out, 0, sizeof out);
        out.shmmax = (unsigned long)info.values[0];
        out.shmmin = (unsigned long)info.values[1];
        out.shmmni = (unsigned long)info.values[2];
        out.shmseg = (unsigned long)info.values[3];
        out.shmall = (unsigned long)info.values[4];
        if (cdsm_copy_out(buffer, &out, sizeof out) != 0) return fail_efault();
    } else if (r >= 0 && command == SHM_INFO) {
        struct shm_info out;
        memset(&out, 0, sizeof out);
        out.used_ids = (int)info.values[0];
        out.shm_tot = (unsigned long)info.values[1];
        out.shm_rss = (unsigned long)info.values[2];
        out.shm_swp = (unsigned long)info.values[3];
        if (cdsm_copy_out(buffer, &out, sizeof out) != 0) return fail_efault();
    }
    if (r >= 0 && (command == IPC_STAT || command == SHM_STAT || command == SHM_STAT_ANY)) {
        struct shmid_ds out;
        memset(&out, 0, sizeof out);
        perm_to_c(&status.perm, &out.shm_perm);
        out.shm_segsz = status.segsz;
        out.shm_atime = status.atime;
        out.shm_dtime = status.dtime;
        out.shm_ctime = status.ctime;
        out.shm_cpid = status.cpid;
        out.shm_lpid = status.lpid;
        out.shm_nattch = status.nattch;
        if (cdsm_copy_out(buffer, &out, sizeof out) != 0) return fail_efault();
    }
    return (int)as_result(r);
}

// --- semaphores ------------------------------------------------------------

int semget(key_t key, int count, int flags) {
    REAL(semget);
    if (!use_dsm()) return real_semget(key, count, flags);
    return (int)as_result(IN_RUNTIME(dsm_swift_semget(key, count, flags)));
}

static int dsm_semop(int id, struct sembuf *operations, size_t count, const struct timespec *timeout) {
    if (count > 4096) {
        errno = E2BIG;
        return -1;
    }
    struct sembuf given[count ? count : 1];
    if (cdsm_copy_in(given, operations, count * sizeof given[0]) != 0) return fail_efault();
    int64_t timeout_ns = -1;
    if (timeout) {
        struct timespec t;
        if (cdsm_copy_in(&t, timeout, sizeof t) != 0) return fail_efault();
        if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000L) {
            errno = EINVAL;
            return -1;
        }
        /* Clamped: a timeout past ~292 years is no timeout to speak of. */
        if (t.tv_sec > (INT64_MAX - 999999999LL) / 1000000000LL)
            timeout_ns = INT64_MAX;
        else
            timeout_ns = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
    }
    dsm_sem_operation ops[count ? count : 1];
    for (size_t i = 0; i < count; i++) {
        ops[i].num = given[i].sem_num;
        ops[i].op = given[i].sem_op;
        ops[i].flags = given[i].sem_flg;
    }
    /* A semop may post or wait: it releases before and acquires after. */
    dsm_release_point();
    int r = (int)as_result(IN_RUNTIME(dsm_swift_semop(id, ops, count, timeout_ns)));
    dsm_acquire_point();
    return r;
}

int semop(int id, struct sembuf *operations, size_t count) {
    REAL(semop);
    if (!use_dsm()) return real_semop(id, operations, count);
    return dsm_semop(id, operations, count, NULL);
}

int semtimedop(int id, struct sembuf *operations, size_t count, const struct timespec *timeout) {
    REAL(semtimedop);
    if (!use_dsm()) return real_semtimedop(id, operations, count, timeout);
    return dsm_semop(id, operations, count, timeout);
}

union dsm_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

int semctl(int id, int number, int command, ...) {
    REAL(semctl);
    union dsm_semun arg;
    arg.buf = NULL;
    switch (command) {
    case SETVAL: case GETALL: case SETALL: case IPC_STAT: case IPC_SET: case IPC_INFO: case SEM_INFO:
    case SEM_STAT: case SEM_STAT_ANY: {
        va_list ap;
        va_start(ap, command);
        arg = va_arg(ap, union dsm_semun);
        va_end(ap);
        break;
    }
    default:
        break;
    }
    if (!use_dsm()) return real_semctl(id, number, command, arg);

    dsm_sem_status status;
    memset(&status, 0, sizeof status);
    if (command == IPC_SET) {
        struct semid_ds in;
        if (cdsm_copy_in(&in, arg.buf, sizeof in) != 0) return fail_efault();
        perm_from_c(&in.sem_perm, &status.perm);
    }
    /* GETALL and SETALL copy the array in Swift, knowing the set's size. */
    dsm_ipc_info info;
    memset(&info, 0, sizeof info);
    long r = IN_RUNTIME(dsm_swift_semctl(id, number, command, command == SETVAL ? arg.val : 0,
                                         (command == GETALL || command == SETALL) ? arg.array : NULL, &status, &info));
    if (r >= 0 && (command == IPC_INFO || command == SEM_INFO)) {
        struct seminfo out;
        out.semmap = (int)info.values[0];
        out.semmni = (int)info.values[1];
        out.semmns = (int)info.values[2];
        out.semmnu = (int)info.values[3];
        out.semmsl = (int)info.values[4];
        out.semopm = (int)info.values[5];
        out.semume = (int)info.values[6];
        out.semusz = (int)info.values[7];
        out.semvmx = (int)info.values[8];
        out.semaem = (int)info.values[9];
        if (cdsm_copy_out(arg.__buf, &out, sizeof out) != 0) return fail_efault();
    }
    if (r >= 0 && (command == IPC_STAT || command == SEM_STAT || command == SEM_STAT_ANY)) {
        struct semid_ds out;
        memset(&out, 0, sizeof out);
        perm_to_c(&status.perm, &out.sem_perm);
        out.sem_otime = status.otime;
        out.sem_ctime = status.ctime;
        out.sem_nsems = status.nsems;
        if (cdsm_copy_out(arg.buf, &out, sizeof out) != 0) return fail_efault();
    }
    return (int)as_result(r);
}
