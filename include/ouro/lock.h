/* ouro/lock.h — a one-byte lock for objects, with parking.
 *
 * Uncontended, ouro_lock and ouro_unlock are one compare-and-swap each. A contended lock spins briefly,
 * then parks the thread in a parking lot keyed by the lock's address; an attached thread goes offline
 * while it waits, so a lock never stalls a stop of the world, and takes the lock once it is online
 * again. Locks may be held across safepoints (a thread can park for a stop while holding one, and a
 * fork made during that stop leaves it held in the child, as with any mutex); a thread that holds a
 * stop of the world must not wait for an object lock (its holder may be parked). Not recursive.
 * docs/threads.md has the lock order. */
#ifndef OURO_LOCK_H
#define OURO_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "ouro/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zero-initialised means unlocked (OURO_LOCK_INIT). */
typedef struct ouro_lock_s {
    uint8_t bits; /* OURO_LOCK_LOCKED | OURO_LOCK_PARKED: accessed only with atomic builtins */
} ouro_lock_t;

#define OURO_LOCK_INIT {0}
#define OURO_LOCK_LOCKED 1u /* held */
#define OURO_LOCK_PARKED 2u /* a thread may be parked on it: unlock must wake */

/* The slow paths (contention, errors). */
int ouro_lock_slow(ouro_lock_t *l);
int ouro_unlock_slow(ouro_lock_t *l);

/* Debug builds (OURO_DEBUG_LEVEL >= 1) track the locks each thread holds (not API: called by the inline
 * functions below): taking one the thread holds already stops the program naming the lock and its
 * object's type (the lock is not recursive). */
void ouro_lock_debug_taking_(const ouro_lock_t *l);
void ouro_lock_debug_held_(const ouro_lock_t *l, int held);
#if OURO_DEBUG_LEVEL >= 1
#define OURO_LOCK_DEBUG_TAKING_(l) ouro_lock_debug_taking_(l)
#define OURO_LOCK_DEBUG_HELD_(l, held) ouro_lock_debug_held_((l), (held))
#else
#define OURO_LOCK_DEBUG_TAKING_(l) ((void)0)
#define OURO_LOCK_DEBUG_HELD_(l, held) ((void)0)
#endif

/* Takes l, waiting (offline) while another thread holds it. Returns 0, or -1 / OURO_ERR_INVALID when
 * l is NULL. */
static inline int ouro_lock(ouro_lock_t *l) {
    uint8_t expected = 0;
    if (l) OURO_LOCK_DEBUG_TAKING_(l);
    if (__builtin_expect(!!l, 1) &&
        __atomic_compare_exchange_n(&l->bits, &expected, OURO_LOCK_LOCKED, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        OURO_LOCK_DEBUG_HELD_(l, 1);
        return 0;
    }
    return ouro_lock_slow(l); /* records the lock itself */
}

/* Takes l if it is free: true when taken. false for NULL. */
static inline bool ouro_lock_try(ouro_lock_t *l) {
    if (!l) return false;
    uint8_t v = __atomic_load_n(&l->bits, __ATOMIC_RELAXED);
    bool taken = !(v & OURO_LOCK_LOCKED) &&
                 __atomic_compare_exchange_n(&l->bits, &v, (uint8_t)(v | OURO_LOCK_LOCKED), 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    if (taken) OURO_LOCK_DEBUG_HELD_(l, 1);
    return taken;
}

/* Releases l, waking a parked waiter. Returns 0, or -1 / OURO_ERR_STATE when l is not locked
 * (OURO_ERR_INVALID when NULL). Only its holder may release it: debug builds stop a thread that
 * releases a lock another thread holds, and one that detaches or exits holding a lock. */
static inline int ouro_unlock(ouro_lock_t *l) {
    uint8_t expected = OURO_LOCK_LOCKED;
    if (l) OURO_LOCK_DEBUG_HELD_(l, 0);
    if (__builtin_expect(!!l, 1) &&
        __atomic_compare_exchange_n(&l->bits, &expected, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        return 0;
    return ouro_unlock_slow(l);
}

/* Whether l is held by some thread (a snapshot: for assertions). */
static inline bool ouro_lock_is_held(const ouro_lock_t *l) {
    return l && (__atomic_load_n(&l->bits, __ATOMIC_RELAXED) & OURO_LOCK_LOCKED);
}

#ifdef __cplusplus
}
#endif
#endif /* OURO_LOCK_H */
