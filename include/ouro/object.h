/* ouro/object.h — the object header, types, and biased reference counting.
 *
 * Every object starts with an ouro_object header of 32 bytes (CPython 3.13t's layout):
 *
 *   word 0  tid         the owner thread (its thread pointer), 0 once the counts are merged. After the
 *                       object is freed this word holds the allocator's free-list link, which is never
 *                       a thread pointer, so a racing reader never takes the owner's path on it.
 *   word 1  ref_local   the owner's count (only the owner writes it; UINT32_MAX: immortal),
 *           lock        the 1-byte object lock (ouro/lock.h), gc_bits, flags
 *   word 2  ref_shared  everyone else's count, shifted left by 2, with two flags in the low bits:
 *                       QUEUED (queued to its owner for a merge) and MERGED (no owner any more)
 *   word 3  type
 *
 * Words 1..3 survive a free (the allocator never writes them) and read zero counts, so a lock-free
 * reader's try-incref on a just-freed object fails safely. The state machine: docs/objects.md. */
#ifndef OURO_OBJECT_H
#define OURO_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "ouro/config.h"
#include "ouro/lock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ouro_type ouro_type;

typedef struct ouro_object {
    uintptr_t tid;       /* owner thread, 0 when merged; relaxed atomics */
    uint32_t ref_local;  /* the owner's count; relaxed atomics (others only read it) */
    ouro_lock_t lock;    /* the object lock */
    uint8_t gc_bits;     /* the collector's */
    uint16_t flags;      /* OURO_OBJ_* */
    intptr_t ref_shared; /* other threads' count << OURO_SHARED_SHIFT | OURO_SHARED_* flags; atomics */
    const ouro_type *type;
} ouro_object;

#define OURO_IMMORTAL_LOCAL UINT32_MAX /* ref_local of an immortal object */
#define OURO_SHARED_QUEUED 1           /* queued to the owner for a merge */
#define OURO_SHARED_MERGED 2           /* counts merged into ref_shared; no owner */
#define OURO_SHARED_SHIFT 2

/* Types. A type describes its instances: basic size (header included), item size (0: fixed size),
 * flags, and the callbacks. dealloc releases what the object holds (decref of its references) and
 * must not free the object itself; the others are used by later modules (gc, containers). */
typedef int (*ouro_visitproc)(ouro_object *child, void *arg);
struct ouro_type {
    const char *name;
    size_t basic_size; /* bytes, header included; >= sizeof(ouro_object) */
    size_t item_size;  /* bytes per item of a variable-size instance; 0 for now */
    unsigned flags;    /* OURO_TYPE_* */
    void (*dealloc)(ouro_object *self);                                 /* may be NULL */
    int (*traverse)(ouro_object *self, ouro_visitproc visit, void *arg); /* may be NULL */
    void (*clear)(ouro_object *self);                                   /* may be NULL */
    void (*finalize)(ouro_object *self);                                /* may be NULL */
    /* Statistics, kept by ouro (relaxed atomics): instances made and freed. */
    size_t stat_allocs, stat_frees;
};

#define OURO_TYPE_GC 1u /* instances live in GC pools and may be collected */

/* The calling thread's id as the header records it (its thread pointer). */
static inline uintptr_t ouro_thread_id(void) { return (uintptr_t)__builtin_thread_pointer(); }

/* The slow paths of the inline functions below. */
void ouro_decref_shared(ouro_object *o);
void ouro_merge_zero_local(ouro_object *o);
void ouro_refcount_underflow(ouro_object *o);

/* Creates an instance of type (attaching the calling thread when it is not): header set, the calling
 * thread the owner with one reference, the rest of basic_size zeroed. NULL with OURO_ERR_INVALID (type
 * NULL, basic_size too small or above OURO_OBJECT_MAX_SIZE) or OURO_ERR_NOMEM. */
ouro_object *ouro_new(const ouro_type *type);

/* The largest basic_size ouro_new accepts for now. */
#define OURO_OBJECT_MAX_SIZE 4000u

/* Makes o immortal: its counts are never changed again and it is never freed. For objects shared
 * read-mostly by many threads (their counts would bounce between CPUs). Call it from o's owner, or
 * before o is shared: a concurrent count by the owner could be lost. -1 / OURO_ERR_INVALID for NULL. */
int ouro_immortalize(ouro_object *o);

/* 1 when o is immortal. */
static inline int ouro_is_immortal(const ouro_object *o) {
    return __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED) == OURO_IMMORTAL_LOCAL;
}

/* The reference count, local + shared (a queued object's queue holds the reference its queuer dropped,
 * as in CPython; a snapshot while other threads count), or (size_t)-1 for an immortal object (and for
 * NULL, with OURO_ERR_INVALID). */
size_t ouro_refcount(const ouro_object *o);

/* Adds a reference. The owner adds to its local count (no atomic read-modify-write); another thread
 * adds to the shared count atomically. Immortal objects are not counted. */
static inline void ouro_incref(ouro_object *o) {
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (local == OURO_IMMORTAL_LOCAL) return;
    if (__atomic_load_n(&o->tid, __ATOMIC_RELAXED) == ouro_thread_id())
        __atomic_store_n(&o->ref_local, local + 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&o->ref_shared, (intptr_t)1 << OURO_SHARED_SHIFT, __ATOMIC_RELAXED);
}

/* Drops a reference; the object is freed when its true count reaches zero (its type's dealloc runs
 * first). A non-owner's decrement that would take the shared count below zero queues the object to
 * its owner, which merges the counts at its next safepoint or at its exit. */
static inline void ouro_decref(ouro_object *o) {
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (local == OURO_IMMORTAL_LOCAL) return;
    if (__atomic_load_n(&o->tid, __ATOMIC_RELAXED) == ouro_thread_id()) {
        if (__builtin_expect(local == 0, 0)) {
            ouro_refcount_underflow(o);
            return;
        }
        /* The merge's CAS on ref_shared orders the owner's writes before any dealloc elsewhere. */
        __atomic_store_n(&o->ref_local, local - 1, __ATOMIC_RELAXED);
        if (local == 1) ouro_merge_zero_local(o);
    } else {
        ouro_decref_shared(o);
    }
}

/* NULL-tolerant variants, and incref-and-return. */
static inline void ouro_xincref(ouro_object *o) { if (o) ouro_incref(o); }
static inline void ouro_xdecref(ouro_object *o) { if (o) ouro_decref(o); }
static inline ouro_object *ouro_newref(ouro_object *o) { ouro_incref(o); return o; }

/* Merges the objects other threads queued to the calling thread (their counts went below zero in the
 * shared field) and frees those whose count reached zero. Called by the owner's safepoints and at its
 * exit; callable directly. Returns how many objects were merged. */
size_t ouro_refcount_merge_queued(void);

#ifdef __cplusplus
}
#endif
#endif /* OURO_OBJECT_H */
