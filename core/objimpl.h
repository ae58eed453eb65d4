/* core/objimpl.h — what the built-in types share inside libouro: try-incref for lock-free readers,
 * the MAYBE_SHARED mark, deferred frees of arrays readers may still be reading, per-type statistics.
 *
 * The lock-free read protocol (CPython 3.13t's, docs/objects.md "Containers"): a reader (attached and
 * online, so a grace period cannot end under it) loads the array with acquire order, loads the slot,
 * try-increfs the object it found, then checks that the slot (and the array) still hold it. When the
 * check fails it drops what it got and retries; when the try-incref fails it takes the container's
 * lock and reads again (the locked path marks the object MAYBE_SHARED, so the next read is lock-free).
 * Why it is safe: an object's memory stays an object (object pools keep words 1..3, and return to the
 * arena only after a grace period), so try-incref on a freed object reads zero counts and fails; when
 * it succeeds on an object that was freed and reused meanwhile, the re-check sees the slot changed. */
#ifndef OURO_CORE_OBJIMPL_H
#define OURO_CORE_OBJIMPL_H

#include "core/debug.h"
#include "core/defer.h"
#include "threads/internal.h"

/* Takes a reference to o if it is alive as far as its counts tell, for a reader that does not hold
 * one: o's memory must be an object's (see above). Returns false when o may be dead, or when only its
 * owner could tell (a non-owner and state INIT): the caller then takes the container's lock. */
static inline bool _ouro_try_incref(ouro_object *o) {
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (local == OURO_IMMORTAL_LOCAL) return true;
#if !OURO_REFCOUNT_ATOMIC
    if (__atomic_load_n(&o->tid, __ATOMIC_RELAXED) == ouro_thread_id()) {
        if (local == 0) return false;
        __atomic_store_n(&o->ref_local, local + 1, __ATOMIC_RELAXED);
        return true;
    }
#endif
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
    for (;;) {
        /* INIT: the owner frees without a CAS when its count ends; MERGED with no count: dead. */
        if (shared == OURO_SHARED_INIT || shared == OURO_SHARED_MERGED) return false;
        if (__atomic_compare_exchange_n(&o->ref_shared, &shared, shared + ((intptr_t)1 << OURO_SHARED_SHIFT), 1,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
    }
}

/* Marks o MAYBE_SHARED (readers' try-incref may succeed on it from now on). The caller holds a
 * reference to o (or a lock under which a container holds one). */
static inline void _ouro_set_maybe_shared(ouro_object *o) {
#if !OURO_REFCOUNT_ATOMIC
    if (ouro_is_immortal(o)) return;
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
    while ((shared & OURO_SHARED_STATE) == OURO_SHARED_INIT)
        if (__atomic_compare_exchange_n(&o->ref_shared, &shared, shared | OURO_SHARED_MAYBE_SHARED, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            break;
#else
    (void)o;
#endif
}

/* Loads and stores of slots read lock-free. */
#define _ouro_slot_load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define _ouro_slot_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* A block whose free waits for a grace period (an array lock-free readers may still be reading). The
 * header is caller storage at the start of the block (ouro_alloc'd). */
typedef struct ouro_deferred_block {
    ouro_defer_node node;
} ouro_deferred_block;

/* Frees b (allocated with ouro_alloc) after a grace period. */
OURO_INTERNAL void _ouro_free_deferred(ouro_deferred_block *b);

/* The calling thread attached and registered for objects (ouro_new's set-up); false with an error.
 * Debug builds (level >= 1) stop when the thread is inside an offline section, naming fn and o (the
 * object the call is about, when there is one). */
OURO_INTERNAL bool _ouro_object_thread_ready_on(const char *fn, const ouro_object *o);
#define _ouro_object_thread_ready() _ouro_object_thread_ready_on(__func__, NULL)
OURO_INTERNAL _Noreturn void _ouro_object_offline_misuse(const char *fn, const ouro_object *o) __attribute__((cold));


/* Header flags (ouro_object.flags, atomic bit operations). */
#define OURO_OBJ_WEAKREFS 1u /* weak references to the object exist (core/weakref.c) */

/* Clears the weak references to o, which is dying (count zero, not yet torn down), and runs their
 * callbacks. Called by the free of an object with OURO_OBJ_WEAKREFS set. */
OURO_INTERNAL void _ouro_weakref_clear(ouro_object *o);
/* Its two halves, for the collector: detach clears them and returns the ones to call back (a list the
 * weakref module links, each holding a reference; NULL: none), with no user code and only o's bucket
 * mutex (safe with the world stopped); call runs those callbacks later and drops the references. */
OURO_INTERNAL ouro_object *_ouro_weakref_detach(ouro_object *o);
OURO_INTERNAL void _ouro_weakref_call(ouro_object *calls);

/* ---- the collector's hooks (gc/gc.c) ------------------------------------------------------------------- */
/* gc_bits (the header byte the collector owns; one writer at a time: the thread that tracks or frees
 * the object, or the collector with the world stopped; relaxed atomic stores). */
#define OURO_GC_TRACKED 0x01u
#define OURO_GC_FINALIZED 0x02u
#define OURO_GC_GEN_SHIFT 2
#define OURO_GC_GEN_MASK 0x0cu /* 0 young, 1, 2 old */
#define OURO_GC_FROZEN 0x10u
#define OURO_GC_CANDIDATE 0x20u /* world stopped: in the collection's candidate set (or seen by a walk) */
#define OURO_GC_REACHABLE 0x40u /* world stopped: reachable from outside the candidates */

/* A new instance of a GC type (its block zeroed, its header set): tracks it in generation 0. */
OURO_INTERNAL void _ouro_gc_on_new(ouro_object *o);
/* An instance of a GC type is being freed: it leaves the counts; its gc_bits are zeroed. */
OURO_INTERNAL void _ouro_gc_on_free(ouro_object *o);
/* Runs an automatic collection when one is due (before a GC instance is made). */
OURO_INTERNAL void _ouro_gc_poll(void);
OURO_INTERNAL extern _Atomic bool _ouro_gc_due;

/* With the world stopped: merges every object queued to any thread (the refcount queues). Objects
 * whose count reaches zero are not freed (no user code while stopped): they are returned, linked
 * through word 0 (see ouro_dealloc's waiting list), for _ouro_dealloc_list once the world runs. */
OURO_INTERNAL ouro_object *_ouro_refcount_merge_all_stopped(void);
/* With the world stopped and every queue merged: o's owner (parked or offline) gives it up; its counts
 * become one shared count (MERGED), so whichever thread drops the last reference frees it. */
OURO_INTERNAL void _ouro_refcount_merge_stopped(ouro_object *o);
OURO_INTERNAL void _ouro_dealloc_list(ouro_object *list);

/* A heap type is being freed: ouro_type_stats_all no longer lists it. */
OURO_INTERNAL void _ouro_type_forget(const ouro_type *t);
/* Debug builds: a heap type freed by ouro_type_free keeps its memory, its header's type set to this
 * marker, so a later use is reported (core/type.c). */
OURO_INTERNAL extern ouro_type _ouro_type_freed;

/* Runs the type's teardown and frees o without the dealloc depth guard (ouro_dealloc's worker). */
OURO_INTERNAL void _ouro_object_free(ouro_object *o);

/* o when it is an instance of exactly t; else NULL with OURO_ERR_INVALID ("fn: <t> is NULL") or
 * OURO_ERR_TYPE ("fn: expected a <t>, got <type>"). The argument check of every built-in type. */
OURO_INTERNAL void *_ouro_arg_error(const ouro_object *o, const ouro_type *t, const char *fn);
/* Debug builds (level >= 1): fatal, naming fn, when o is a freed object (its block's canary is gone). */
OURO_INTERNAL void _ouro_arg_check_live(const ouro_object *o, const char *fn);
static inline void *_ouro_arg(ouro_object *o, const ouro_type *t, const char *fn) {
    if (OURO_DEBUG_LEVEL >= 1 && o) _ouro_arg_check_live(o, fn);
    if (OURO_LIKELY(o && o->type == t)) return o;
    return _ouro_arg_error(o, t, fn);
}

/* The hash of key for a table operation: -1 with OURO_ERR_INVALID ("fn: key is NULL") or the hash's
 * error (OURO_ERR_TYPE for an unhashable key). */
OURO_INTERNAL int64_t _ouro_key_hash(ouro_object *key, const char *fn);

/* Sets OURO_ERR_TYPE "fn: expected a T, got a U" and returns NULL / -1. */
OURO_INTERNAL void *_ouro_err_type(const char *fn, const char *expected, const ouro_object *got);
OURO_INTERNAL int _ouro_err_type_int(const char *fn, const char *expected, const ouro_object *got);

/* The slots' storage of an instance of a type made by ouro_type_new. */
static inline ouro_object **_ouro_slots_of(ouro_object *o) {
    return (ouro_object **)((char *)o + o->type->slot_offset);
}

/* Visits the non-NULL slots of o (an instance of a type made by ouro_type_new); stops at the first
 * nonzero return and returns it. Inline for the full collection's scan, whose visit is known. */
static inline int _ouro_slots_traverse(ouro_object *o, ouro_visitproc visit, void *arg) {
    ouro_object **slot = _ouro_slots_of(o);
    for (size_t i = 0; i < o->type->nslots; i++) {
        ouro_object *v = __atomic_load_n(&slot[i], __ATOMIC_RELAXED);
        if (v) {
            int r = visit(v, arg);
            if (r) return r;
        }
    }
    return 0;
}

/* The traverse of a type made by ouro_type_new without a traverse of its own (_ouro_slots_traverse).
 * The full collection's scan (gc/scan.c) knows it and visits such an object's slots inline. */
OURO_INTERNAL int _ouro_type_traverse_slots(ouro_object *self, ouro_visitproc visit, void *arg);

#endif /* OURO_CORE_OBJIMPL_H */
