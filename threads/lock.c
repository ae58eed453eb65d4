/* threads/lock.c — the slow paths of the one-byte object lock (ouro/lock.h): a parking lot.
 *
 * Waiters park in one of LOT_BUCKETS buckets chosen by the lock's address; a bucket is a mutex, a
 * condition variable and a count of its waiters (for every lock that hashes there). Protocol:
 *   waiter:   under the bucket mutex, takes the lock if it is free (setting PARKED when other waiters
 *             remain in the bucket), else sets PARKED and waits on the condition variable;
 *   unlocker: the fast path's CAS LOCKED -> 0 fails only when PARKED is set; it then clears the byte
 *             under the bucket mutex and wakes the bucket's waiters.
 * A waiter sets PARKED under the bucket mutex before it waits, and an unlocker that sees PARKED takes
 * that mutex before it wakes, so a wake-up is never lost. PARKED may stay set with nobody parked (the
 * bucket is shared); that costs one slow unlock. Attached waiters are offline while they wait, and take
 * the lock only after they come online again (so no thread parks for a stop holding a lock it waited
 * for: see ouro_lock_slow); a waiter that then loses the race to another taker waits again. */
#include "threads/internal.h"
#include "core/objimpl.h"

#include <sched.h>

#include "ouro/lock.h"

/* ---- debug builds: the locks each thread holds ------------------------------------------------------ */

enum { HELD_MAX = 32 }; /* beyond it, the extra locks are not tracked (no false report, a missed one) */
static __thread const ouro_lock_t *held[HELD_MAX];
static __thread unsigned nheld, held_untracked;

/* "lock 0x... (the lock of a list object at 0x...)" or "lock 0x...". */
static const char *lock_describe(const ouro_lock_t *l, char *buf, size_t n) {
    const void *obj = (const char *)l - offsetof(ouro_object, lock);
    const char *type = _ouro_object_type_name_at(obj);
    if (type) snprintf(buf, n, "lock %p (the lock of %s object %p)", (const void *)l, type, obj);
    else snprintf(buf, n, "lock %p", (const void *)l);
    return buf;
}

void ouro_lock_debug_taking_(const ouro_lock_t *l) {
    for (unsigned i = 0; i < nheld; i++)
        if (held[i] == l) {
            char d[160];
            _ouro_fatal("ouro_lock: the calling thread already holds %s: object locks are not recursive (a deadlock)",
                        lock_describe(l, d, sizeof d));
        }
}

void ouro_lock_debug_held_(const ouro_lock_t *l, int now_held) {
    if (now_held) {
        if (nheld < HELD_MAX) held[nheld++] = l;
        else held_untracked++;
        return;
    }
    for (unsigned i = nheld; i-- > 0;)
        if (held[i] == l) {
            held[i] = held[--nheld];
            return;
        }
    if (held_untracked) {
        held_untracked--; /* maybe one of the untracked: a miss, not a report */
        return;
    }
    if (!(__atomic_load_n(&l->bits, __ATOMIC_RELAXED) & OURO_LOCK_LOCKED)) return; /* not locked: an error return */
    char d[160];
    _ouro_fatal("ouro_unlock: the calling thread does not hold %s: another thread does (a lock is released by its holder)",
                lock_describe(l, d, sizeof d));
}

void _ouro_lock_debug_check_released(const char *what) {
    if (OURO_DEBUG_LEVEL < 1 || nheld + held_untracked == 0) return;
    char d[160];
    if (nheld) lock_describe(held[0], d, sizeof d);
    else snprintf(d, sizeof d, "%u object locks", held_untracked);
    _ouro_fatal("%s while holding %s: a thread that takes it next waits forever (unlock it first)", what, d);
}

enum { LOT_BUCKETS = 256, LOT_SPINS = 64 };

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    unsigned waiters; /* mutex */
} __attribute__((aligned(128))) lot_bucket;

static lot_bucket lot[LOT_BUCKETS];
static pthread_once_t lot_once = PTHREAD_ONCE_INIT;

static void lot_init(void) {
    _ouro_runtime_init(); /* fork handlers: a child resets the parking lot */
    for (int i = 0; i < LOT_BUCKETS; i++) {
        pthread_mutex_init(&lot[i].mutex, NULL);
        pthread_cond_init(&lot[i].cond, NULL);
        lot[i].waiters = 0;
    }
}

static lot_bucket *lot_bucket_of(const ouro_lock_t *l) {
    uintptr_t a = (uintptr_t)l;
    a ^= a >> 17;
    a *= 0x9e3779b97f4a7c15ULL;
    return &lot[(a >> 56) % LOT_BUCKETS];
}

int ouro_lock_slow(ouro_lock_t *l) {
    if (!l) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_lock: lock is NULL");
        return -1;
    }
    for (int i = 0; i < LOT_SPINS; i++) {
        if (ouro_lock_try(l)) return 0;
        if (i > LOT_SPINS / 2) sched_yield();
        else __builtin_ia32_pause();
    }
    if (OURO_DEBUG_LEVEL >= 1 && _ouro_tls_holds_stop) { /* its holder is parked: it waits for us */
        char d[160];
        _ouro_fatal("ouro_lock: the holder of a stop of the world waits for %s, held by a thread the stop has "
                    "parked: a deadlock (take object locks before stopping the world, or ouro_lock_try)",
                    lock_describe(l, d, sizeof d));
    }
    pthread_once(&lot_once, lot_init);
    ouro_thread_t *me = _ouro_tls_thread;
    bool online = me && me->offline_depth == 0 && !me->stopper;
    lot_bucket *b = lot_bucket_of(l);
    /* An attached waiter waits offline and takes the lock only once it is online again: were it to take
     * the lock offline and then come online, it could park for a stop holding the lock, and a fork
     * taken during that stop would leave the lock held in the child by a thread that does not exist
     * there (a library operation's lock, not the program's). Others take it under the bucket mutex. */
    for (;;) {
        if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
        pthread_mutex_lock(&b->mutex);
        b->waiters++;
        bool taken = false;
        for (;;) {
            uint8_t v = __atomic_load_n(&l->bits, __ATOMIC_RELAXED);
            if (!(v & OURO_LOCK_LOCKED)) {
                if (online) break; /* free: take it once online */
                uint8_t want = OURO_LOCK_LOCKED | (b->waiters > 1 ? OURO_LOCK_PARKED : 0);
                if (__atomic_compare_exchange_n(&l->bits, &v, want, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                    taken = true;
                    OURO_LOCK_DEBUG_HELD_(l, 1);
                    break;
                }
                continue;
            }
            if (!(v & OURO_LOCK_PARKED) &&
                !__atomic_compare_exchange_n(&l->bits, &v, (uint8_t)(v | OURO_LOCK_PARKED), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                continue;
            pthread_cond_wait(&b->cond, &b->mutex);
        }
        b->waiters--;
        pthread_mutex_unlock(&b->mutex);
        if (taken) return 0;
        _ouro_thread_come_online(me); /* may park for a stop: it holds nothing */
        for (int i = 0; i < LOT_SPINS; i++) {
            if (ouro_lock_try(l)) return 0; /* acquire (ouro/lock.h): pairs with the unlocker's release */
            __builtin_ia32_pause();
        }
    }
}

int ouro_unlock_slow(ouro_lock_t *l) {
    if (!l) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_unlock: lock is NULL");
        return -1;
    }
    uint8_t v = __atomic_load_n(&l->bits, __ATOMIC_RELAXED);
    if (!(v & OURO_LOCK_LOCKED)) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_unlock: lock %p is not locked", (void *)l);
        return -1;
    }
    if (!(v & OURO_LOCK_PARKED)) { /* the fast path lost a race with nobody: retry it */
        if (__atomic_compare_exchange_n(&l->bits, &v, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) return 0;
    }
    /* PARKED is set and only the bucket's waiters (under its mutex) or we can change the byte now. */
    pthread_once(&lot_once, lot_init);
    lot_bucket *b = lot_bucket_of(l);
    pthread_mutex_lock(&b->mutex);
    __atomic_store_n(&l->bits, 0, __ATOMIC_RELEASE); /* pairs with the waiters' acquire CAS */
    if (b->waiters) pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mutex);
    return 0;
}

/* fork() child: the waiters are gone, and so may be a thread that held a bucket's mutex. A lock held by
 * a vanished thread stays held (as with any mutex across fork). */
void _ouro_lock_after_fork_child(void) {
    lot_init();
}
