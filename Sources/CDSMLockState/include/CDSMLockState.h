#ifndef CDSM_LOCK_STATE_H
#define CDSM_LOCK_STATE_H
#include <stdint.h>

/// What a node knows of one mutex's lock token. sync.c keeps one per mutex
/// the node has used, under the entry's spin lock, and waits on `seq`;
/// DSMSync's `NodeLock` decides every change (pure Swift, explored with the
/// lock service at the mutex's home). Shared by both languages through this
/// one declaration.
typedef struct {
    uint32_t seq;        /* futex word: bumped at every change a waiter may need */
    uint32_t waiters;    /* this node's threads waiting for the mutex */
    uint32_t count;      /* recursion depth of the holder */
    uint32_t uses;       /* locks since the token came */
    uint64_t owner;      /* pthread_t of the holder */
    int64_t last_unlock; /* monotonic ns */
    uint8_t kind;        /* 0 normal, 1 recursive, 2 error-checking */
    uint8_t token;       /* the token is here */
    uint8_t requesting;  /* a thread asked the home for it */
    uint8_t recall;      /* the home wants it back */
    uint8_t locked;
} dsm_lock_state;

#endif
