/* ouro/object.h — the object header, types, and reference counting.
 *
 * Every object starts with an ouro_object header of 32 bytes (CPython 3.13t's layout):
 *
 *   word 0  tid         the owner thread's id (its thread pointer), 0 once the counts are merged. A
 *                       thread merges every object it owns when it detaches or exits, so no object
 *                       names a thread pointer that a new thread could inherit. After the object is
 *                       freed this word holds the allocator's free-list link, which is never a thread
 *                       pointer, so a racing reader never takes the owner's path on it.
 *   word 1  ref_local   the owner's count (only the owner writes it; UINT32_MAX: immortal),
 *           lock        the 1-byte object lock (ouro/lock.h), gc_bits, flags
 *   word 2  ref_shared  everyone else's count, shifted left by 2, with a 2-bit state in the low bits:
 *                       INIT, MAYBE_SHARED (lock-free readers may try-incref it), QUEUED (queued to its
 *                       owner for a merge), MERGED (no owner any more)
 *   word 3  type
 *
 * Words 1..3 survive a free (the allocator never writes them) and read zero counts, so a lock-free
 * reader's try-incref on a just-freed object fails safely. The state machine: docs/objects.md.
 *
 * Built with -Drefcount=atomic (OURO_REFCOUNT_ATOMIC), every object is born MERGED and every count is
 * one atomic add/subtract on ref_shared: the baseline the biased scheme is measured against. */
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
    uintptr_t tid;       /* owner thread's id (ouro_thread_id), 0 when merged; relaxed atomics */
    uint32_t ref_local;  /* the owner's count; relaxed atomics (others only read it) */
    ouro_lock_t lock;    /* the object lock */
    uint8_t gc_bits;     /* the collector's */
    uint16_t flags;      /* reserved for ouro (0) */
    intptr_t ref_shared; /* other threads' count << OURO_SHARED_SHIFT | OURO_SHARED_* state; atomics */
    const ouro_type *type;
} ouro_object;

/* The header of a variable-size object (a type with item_size > 0): the item count and where the
 * items are (right after basic_size, or a separate block when the object would not fit a pool). */
typedef struct ouro_varobject {
    ouro_object head;
    size_t size;  /* number of items */
    void *items;  /* the items */
} ouro_varobject;

#define OURO_IMMORTAL_LOCAL UINT32_MAX /* ref_local of an immortal object */
#define OURO_SHARED_INIT 0             /* states of ref_shared's low 2 bits */
#define OURO_SHARED_MAYBE_SHARED 1     /* read lock-free by other threads: try-incref allowed */
#define OURO_SHARED_QUEUED 2           /* queued to the owner for a merge */
#define OURO_SHARED_MERGED 3           /* counts merged into ref_shared; no owner */
#define OURO_SHARED_STATE 3
#define OURO_SHARED_SHIFT 2

/* ---- types ----------------------------------------------------------------------------------------- */

typedef int (*ouro_visitproc)(ouro_object *child, void *arg);

/* A type describes its instances. Types are immortal objects themselves (type "type"). Static types
 * start with OURO_TYPE_HEAD; ouro_type_new() makes one from a spec. Callbacks may be NULL:
 *   dealloc   releases what the object holds (decref of its references, free of its buffers); it must
 *             not free the object itself (ouro does, after it; chains are freed iteratively).
 *   traverse  calls visit on each reference the object holds (the collector; types with OURO_TYPE_GC).
 *   clear     drops the references the object holds (the collector breaks cycles with it).
 *   finalize  runs once before an object in a cycle is cleared (the collector).
 *   hash      the hash (-1: error set); NULL: by identity. ouro_unhashable makes a type unhashable.
 *   eq        1 equal, 0 not, -1 error set; NULL: by identity. Called with any right-hand type.
 *   repr      a new str object describing self; NULL: "<name object at 0x...>". */
struct ouro_type {
    ouro_object head;
    const char *name;
    size_t basic_size; /* bytes, header included (ouro_varobject for variable-size types) */
    size_t item_size;  /* bytes per item of a variable-size instance; 0: fixed size */
    unsigned flags;    /* OURO_TYPE_* */
    uint32_t index;    /* ouro's: the type's statistics slot (0: not yet assigned) */
    size_t nslots;     /* object-reference slots (ouro_type_new), stored at slot_offset */
    size_t slot_offset;
    void (*dealloc)(ouro_object *self);
    int (*traverse)(ouro_object *self, ouro_visitproc visit, void *arg);
    void (*clear)(ouro_object *self);
    void (*finalize)(ouro_object *self);
    int64_t (*hash)(ouro_object *self);
    int (*eq)(ouro_object *self, ouro_object *other);
    ouro_object *(*repr)(ouro_object *self);
    const char *const *slot_names; /* nslots names (ouro_type_new) */
    size_t (*extra_size)(ouro_object *self); /* bytes of separate buffers self owns (ouro_sizeof) */
    /* Statistics of types beyond ouro's per-thread slots (relaxed atomics). */
    size_t stat_allocs_shared, stat_frees_shared;
};

#define OURO_TYPE_GC 1u         /* instances live in GC pools and may be collected */
#define OURO_TYPE_HEAP 2u       /* made by ouro_type_new (ouro's; set by it) */

extern ouro_type ouro_type_type; /* the type of types */

/* The header of a static type: an immortal object of type "type". */
#define OURO_TYPE_HEAD {.ref_local = OURO_IMMORTAL_LOCAL, .ref_shared = OURO_SHARED_MERGED, .type = &ouro_type_type}

/* A type's spec for ouro_type_new (like CPython's PyType_Spec). slots is a NULL-terminated list of
 * names of object-reference slots (like __slots__): each holds one reference (or NULL), read with
 * ouro_slot_get and written with ouro_slot_set, visited and cleared by the type's generated traverse
 * and clear, dropped at dealloc. basic_size is the C payload's size, header included (0: just the
 * header); the slots follow it. */
typedef struct ouro_type_spec {
    const char *name;
    size_t basic_size;
    size_t item_size;
    unsigned flags;
    const char *const *slots;
    void (*dealloc)(ouro_object *self); /* runs before the slots are dropped */
    int (*traverse)(ouro_object *self, ouro_visitproc visit, void *arg); /* besides the slots */
    void (*clear)(ouro_object *self);                                    /* besides the slots */
    void (*finalize)(ouro_object *self);
    int64_t (*hash)(ouro_object *self);
    int (*eq)(ouro_object *self, ouro_object *other);
    ouro_object *(*repr)(ouro_object *self);
} ouro_type_spec;

/* Makes a type from spec (the name is copied). The type is immortal until ouro_type_free. NULL with
 * OURO_ERR_INVALID (no name, sizes out of range, duplicate slot names) or OURO_ERR_NOMEM. */
ouro_type *ouro_type_new(const ouro_type_spec *spec);

/* Frees a type made by ouro_type_new. -1 with OURO_ERR_STATE while instances of it are alive, or
 * OURO_ERR_INVALID for NULL or a static type. Debug builds (-Ddebug-level >= 1) keep a freed type's
 * memory, marked: freeing it again, or ouro_new on it, is then OURO_ERR_INVALID naming it, not a use
 * of freed memory. */
int ouro_type_free(ouro_type *type);

/* The slot index of name in type (-1 with OURO_ERR_INVALID when it has none of that name). */
long ouro_slot_index(const ouro_type *type, const char *name);

/* A new reference to the object in slot i of o (NULL, no error, when the slot is empty; NULL with
 * OURO_ERR_INDEX when o's type has no slot i). Lock-free. */
ouro_object *ouro_slot_get(ouro_object *o, size_t i);

/* Stores value (a new reference is taken; NULL empties the slot) in slot i of o, dropping the old one.
 * 0, or -1 with OURO_ERR_INDEX / OURO_ERR_INVALID. */
int ouro_slot_set(ouro_object *o, size_t i, ouro_object *value);

/* ---- creating objects ------------------------------------------------------------------------------- */

/* The largest instance (basic_size + items) kept in one block; bigger variable-size objects keep
 * their items in a separate block. Fixed-size types may not be bigger. */
#define OURO_OBJECT_MAX_SIZE 4000u

/* Creates an instance of a fixed-size type (attaching the calling thread when it is not): header set,
 * the calling thread the owner with one reference, the rest zeroed. NULL with OURO_ERR_INVALID (type
 * NULL, a variable-size type, basic_size out of range) or OURO_ERR_NOMEM. */
ouro_object *ouro_new(const ouro_type *type);

/* Creates an instance of a variable-size type with n items (zeroed). NULL with OURO_ERR_INVALID,
 * OURO_ERR_OVERFLOW (n * item_size overflows) or OURO_ERR_NOMEM. */
ouro_object *ouro_new_var(const ouro_type *type, size_t n);

/* ---- reference counting --------------------------------------------------------------------------- */

/* The calling thread's owner id as headers record it: its thread pointer (one register read the
 * compiler may hoist out of loops; a thread pointer is even and never 0). An object names a thread as
 * its owner only between the thread's first object and its detach or exit, which merges them all. */
static inline uintptr_t ouro_thread_id(void) {
#if defined(__clang__)
    return (uintptr_t)__builtin_thread_pointer();
#else
    uintptr_t tp;
#if defined(__x86_64__)
    __asm__("movq %%fs:0, %0" : "=r"(tp)); /* the TCB's self pointer (x86-64 TLS ABI); not volatile: CSE-able */
#elif defined(__aarch64__)
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#else
#error "ouro_thread_id: no thread pointer for this target"
#endif
    return tp;
#endif
}

/* The slow paths of the inline functions below. */
void ouro_decref_shared(ouro_object *o);
void ouro_decref_local_slow(ouro_object *o, uint32_t local);
__attribute__((noreturn, cold)) void ouro_refcount_underflow(ouro_object *o);
void ouro_dealloc(ouro_object *o);

/* 1 when o is immortal. */
static inline int ouro_is_immortal(const ouro_object *o) {
    return __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED) == OURO_IMMORTAL_LOCAL;
}

/* Adds a reference. The owner adds to its local count (no atomic read-modify-write); another thread
 * adds to the shared count atomically. Immortal objects are not counted (they have no owner: tid 0).
 * An owner's count that reaches UINT32_MAX makes the object immortal (4 billion references). */
static inline void ouro_incref(ouro_object *o) {
#if OURO_REFCOUNT_ATOMIC
    if (__atomic_load_n(&o->ref_local, __ATOMIC_RELAXED) == OURO_IMMORTAL_LOCAL) return;
    __atomic_fetch_add(&o->ref_shared, (intptr_t)1 << OURO_SHARED_SHIFT, __ATOMIC_RELAXED);
#else
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (__builtin_expect(__atomic_load_n(&o->tid, __ATOMIC_RELAXED) == ouro_thread_id(), 1))
        __atomic_store_n(&o->ref_local, local + 1, __ATOMIC_RELAXED);
    else if (local != OURO_IMMORTAL_LOCAL)
        __atomic_fetch_add(&o->ref_shared, (intptr_t)1 << OURO_SHARED_SHIFT, __ATOMIC_RELAXED);
#endif
}

/* Drops a reference; the object is freed when its true count reaches zero (its type's dealloc runs
 * first). A non-owner's decrement that would take the shared count below zero queues the object to
 * its owner, which merges the counts at its next safepoint or at its exit (when no memory is left to
 * queue it, it is merged with the world stopped). A decref too many is fatal ("has no reference left to
 * drop"), and so is a decref of a freed object ("decref of a freed object", with its address and
 * type: in debug builds always, in release builds when its block's link word is set). */
static inline void ouro_decref(ouro_object *o) {
#if OURO_REFCOUNT_ATOMIC
    if (__atomic_load_n(&o->ref_local, __ATOMIC_RELAXED) == OURO_IMMORTAL_LOCAL) return;
    /* acq_rel: every thread's writes to the object happen before its free */
    intptr_t left = __atomic_sub_fetch(&o->ref_shared, (intptr_t)1 << OURO_SHARED_SHIFT, __ATOMIC_ACQ_REL);
    if (__builtin_expect(left <= OURO_SHARED_MERGED, 0)) {
        if (left == OURO_SHARED_MERGED) ouro_dealloc(o);
        else ouro_refcount_underflow(o);
    }
#else
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (__builtin_expect(__atomic_load_n(&o->tid, __ATOMIC_RELAXED) == ouro_thread_id(), 1)) {
        /* One test for the rare cases: the last local reference (merge or free), an underflow, and a
         * count above 2^31. */
        if (__builtin_expect((int32_t)(local - 1) <= 0, 0)) {
            ouro_decref_local_slow(o, local);
            return;
        }
        __atomic_store_n(&o->ref_local, local - 1, __ATOMIC_RELAXED);
    } else {
        /* Another thread's reference: one CAS unless the count would leave the shared field (queue
         * the object to its owner: states INIT or MAYBE_SHARED with no count), end (MERGED, one) or
         * go below zero (MERGED, none: fatal), or the state is QUEUED with no count. */
        if (local == OURO_IMMORTAL_LOCAL) return;
        intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
        if (__builtin_expect((uintptr_t)shared > OURO_SHARED_MERGED &&
                                 shared != (((intptr_t)1 << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED),
                             1) &&
            __atomic_compare_exchange_n(&o->ref_shared, &shared, shared - ((intptr_t)1 << OURO_SHARED_SHIFT), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return;
        ouro_decref_shared(o); /* the rare cases and a lost race */
    }
#endif
}

/* NULL-tolerant variants, and incref-and-return. */
static inline void ouro_xincref(ouro_object *o) { if (o) ouro_incref(o); }
static inline void ouro_xdecref(ouro_object *o) { if (o) ouro_decref(o); }
static inline ouro_object *ouro_newref(ouro_object *o) { ouro_incref(o); return o; }
static inline ouro_object *ouro_xnewref(ouro_object *o) { ouro_xincref(o); return o; }

/* Stores value in *slot and drops the reference *slot held (NULL-tolerant both ways); steals value's
 * reference. Not for slots other threads read lock-free (use the containers' setters). */
static inline void ouro_setref(ouro_object **slot, ouro_object *value) {
    ouro_object *old = *slot;
    *slot = value;
    ouro_xdecref(old);
}

/* Merges the objects other threads queued to the calling thread (their counts went below zero in the
 * shared field) and frees those whose count reached zero. Called by the owner's safepoints and at its
 * exit; callable directly. Returns how many objects were merged. */
size_t ouro_refcount_merge_queued(void);

/* ---- immortality and introspection ----------------------------------------------------------------- */

/* Makes o immortal: its counts are never changed again and it is never freed (what it holds stays
 * alive too); it has no owner from then on. The remedy for an object shared read-mostly by many threads, whose counts would bounce
 * its cache line between CPUs. Call it from o's owner, or before o is shared: a concurrent count by the
 * owner could be lost. -1 / OURO_ERR_INVALID for NULL. */
int ouro_immortalize(ouro_object *o);

/* The reference count, local + shared (a queued object's queue holds the reference its queuer dropped,
 * as in CPython; a snapshot while other threads count), or (size_t)-1 for an immortal object (and for
 * NULL, with OURO_ERR_INVALID). */
size_t ouro_refcount(const ouro_object *o);

/* The bytes o occupies: the block holding it (header and payload, with the allocator's rounding) plus
 * the separate buffers it owns (a list's or dict's arrays, over-allocation included); for a static
 * object (None, the bools, the small ints) its type's size. (size_t)-1 with OURO_ERR_INVALID for NULL. */
size_t ouro_sizeof(ouro_object *o);

/* o's type name ("NULL" for NULL). */
const char *ouro_type_name(const ouro_object *o);

/* 1 when o's type is type (exactly), else 0. */
static inline int ouro_is_type(const ouro_object *o, const ouro_type *type) { return o && o->type == type; }

/* Instances of a type: made and freed since the start, and alive now (made - freed). */
typedef struct ouro_type_stats {
    size_t allocs, frees, live;
} ouro_type_stats;

/* Fills *out with type's counts (summed over threads; a snapshot while they run). -1 / OURO_ERR_INVALID
 * for NULL. */
int ouro_type_get_stats(const ouro_type *type, ouro_type_stats *out);

#define OURO_TYPE_STATS_NAME_MAX 32

/* One type's counts, as ouro_type_stats_all lists them. type is only a handle: another thread may free
 * the type (ouro_type_free) as soon as the call returns; name is a copy (truncated to
 * OURO_TYPE_STATS_NAME_MAX - 1 bytes) that stays readable. */
typedef struct ouro_type_stats_entry {
    const ouro_type *type;
    ouro_type_stats stats;
    char name[OURO_TYPE_STATS_NAME_MAX];
} ouro_type_stats_entry;

/* Lists every type that has made instances (the first 255 such types; later ones have counts through
 * ouro_type_get_stats only) with its counts, into out[0..max). Returns how many there are (which may
 * exceed max: call again with a bigger array), or (size_t)-1 with OURO_ERR_INVALID for out NULL with
 * max > 0. Like sys.getobjects' summary: which types hold live objects. Safe from any thread, attached
 * or not, while other threads make, free and ouro_type_free types (a monitor thread may sample it). */
size_t ouro_type_stats_all(ouro_type_stats_entry *out, size_t max);

/* ---- generic operations ----------------------------------------------------------------------------- */

/* The hash of o through its type (by identity when the type has none). -1 with OURO_ERR_TYPE for an
 * unhashable object (or the type's own error). Never -1 otherwise. */
int64_t ouro_hash(ouro_object *o);

/* Equality: 1, 0, or -1 with an error. Identical objects are equal; else a's type decides, then b's. */
int ouro_eq(ouro_object *a, ouro_object *b);

/* A new str object describing o (like repr()); NULL with an error. */
ouro_object *ouro_repr(ouro_object *o);

/* A hash callback for unhashable types: sets OURO_ERR_TYPE "unhashable type: '<name>'" and returns -1. */
int64_t ouro_unhashable(ouro_object *self);

/* The hash of a pointer-sized value (identity hashes; never -1). */
int64_t ouro_hash_pointer(const void *p);

#ifdef __cplusplus
}
#endif
#endif /* OURO_OBJECT_H */
