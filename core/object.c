/* core/object.c — objects: creation, deallocation, and the slow paths of biased reference counting.
 *
 * Biased reference counting (CPython 3.13t, after Choi et al.): the owner counts in ref_local without
 * atomic read-modify-writes; other threads count in ref_shared atomically. The true count is
 * ref_local + (ref_shared >> 2). docs/objects.md has the state machine; in short:
 *   owner's local reaches 0:  if ref_shared == 0 the object is dead (nobody else holds it): free it;
 *                             else give up ownership (tid = 0) and set MERGED; free when that CAS finds
 *                             a zero count.
 *   non-owner decrement:      CAS ref_shared down by one; but when the count is 0 in state INIT or
 *                             MAYBE_SHARED, set QUEUED instead (the queue keeps the reference being
 *                             dropped) and queue the object to its owner, which merges it (adding its
 *                             local count, dropping the queue's reference) at its next safepoint or
 *                             exit. When the CAS leaves exactly MERGED (merged, count 0), free it.
 * Owner ids are thread pointers (ouro_thread_id), which glibc hands to a new thread once the old one
 * has exited. So a thread merges every object it owns when it detaches or exits (it walks its heap's
 * object pools for blocks whose word 0 is its id), and objects it makes after that walk are born
 * merged: no object names a thread pointer whose thread has gone, and no new thread takes the owner's
 * path on an old thread's objects. A fork child does the same for the threads that did not survive.
 * The queue: per-thread, found through buckets keyed by the owner's id (bucket mutexes are leaves).
 * An owner that exited is no longer in its bucket: the queuer merges directly, under the bucket mutex;
 * the owner left the bucket only after it stopped owning objects. */
#include "core/objimpl.h"
#include "alloc/internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ouro/object.h"

/* ---- statistics per type ----------------------------------------------------------------------------
 * Each registered thread counts the instances it makes and frees of the first TYPE_SLOTS types in its
 * own array (relaxed loads and stores: one writer); a sum walks the threads and the counts of those that
 * exited (stats_lock). Other threads, and types beyond the slots, count in shared atomics. */
enum { TYPE_SLOTS = 256 };

typedef struct { size_t allocs, frees; } type_counts;

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static _Atomic uint32_t type_next_index = 1;
static type_counts stats_retired[TYPE_SLOTS]; /* relaxed atomics */
static const ouro_type *type_by_index[TYPE_SLOTS]; /* the type of each slot (atomics; NULL: none, freed) */

/* The type's slot, assigning one at first use (UINT32_MAX: none left). */
static uint32_t type_index(const ouro_type *t) {
    uint32_t i = __atomic_load_n(&t->index, __ATOMIC_RELAXED);
    if (OURO_LIKELY(i != 0)) return i;
    uint32_t fresh = atomic_fetch_add_explicit(&type_next_index, 1, memory_order_relaxed);
    if (fresh >= TYPE_SLOTS) fresh = UINT32_MAX;
    uint32_t expected = 0;
    if (!__atomic_compare_exchange_n(&((ouro_type *)t)->index, &expected, fresh, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return expected; /* another thread assigned one (the slot drawn here stays unused) */
    if (fresh < TYPE_SLOTS) __atomic_store_n(&type_by_index[fresh], t, __ATOMIC_RELEASE);
    return fresh;
}

static inline void counts_bump(size_t *c) { __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED); }

/* ---- deallocation -------------------------------------------------------------------------------------- */

typedef struct brc_thread brc_thread;
static __thread brc_thread *tls_brc OURO_TLS_FAST; /* the calling thread's record, NULL until its first object */
static void type_count(const ouro_type *t, bool alloc);

/* o's count reached zero: it leaves the collector's view at once, before its free runs (which may
 * wait on the pending list below): no walk or query returns an object whose free is under way, and a
 * collection never sees one half torn down. */
static inline void object_dying(ouro_object *o) {
    if (o->type->flags & OURO_TYPE_GC) _ouro_gc_on_free(o);
}

void _ouro_object_free(ouro_object *o) {
    const ouro_type *t = o->type;
    if (__atomic_load_n(&o->flags, __ATOMIC_ACQUIRE) & OURO_OBJ_WEAKREFS) _ouro_weakref_clear(o);
    if (t->dealloc) t->dealloc(o);
    if (t->nslots) {
        ouro_object **slot = _ouro_slots_of(o);
        for (size_t i = 0; i < t->nslots; i++) ouro_xdecref(slot[i]);
    }
    if (t->item_size) {
        ouro_varobject *v = (ouro_varobject *)o;
        if (v->items != (char *)o + t->basic_size) ouro_free(v->items);
    }
    /* Zero counts in the words the allocator keeps: a racing try-incref reads a dead object. */
    __atomic_store_n(&o->ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->ref_shared, 0, __ATOMIC_RELAXED);
    type_count(t, false);
    _ouro_free_object(o);
}

/* Freeing an object drops its references, which may free more: a chain 10 million deep must not take
 * 10 million frames. Past DEALLOC_DEPTH nested frees, an object waits on a thread-local list (linked
 * through word 0: an object's address is even, never an owner id, so racing readers still see a
 * non-owner) and the outermost free drains it. */
enum { DEALLOC_DEPTH = 48 };
static __thread unsigned tls_dealloc_depth OURO_TLS_FAST;
static __thread ouro_object *tls_dealloc_later OURO_TLS_FAST;

static void dealloc_later(ouro_object *o) {
    __atomic_store_n(&o->tid, (uintptr_t)tls_dealloc_later, __ATOMIC_RELAXED);
    tls_dealloc_later = o;
}

/* Frees the waiting objects (the outermost free, depth 1, does it). */
static void dealloc_drain(void) {
    while (tls_dealloc_later) {
        ouro_object *next = tls_dealloc_later;
        tls_dealloc_later = (ouro_object *)__atomic_load_n(&next->tid, __ATOMIC_RELAXED);
        _ouro_object_free(next);
    }
}

/* Debug builds (level >= 1): stops a thread inside an offline section that calls fn on o. */
static inline void object_check_online(const char *fn, const ouro_object *o) {
    if (OURO_DEBUG_LEVEL < 1) return;
    ouro_thread_t *t = _ouro_tls_thread;
    if (t && t->offline_depth > 0) _ouro_object_offline_misuse(fn, o);
}

void ouro_dealloc(ouro_object *o) {
    object_check_online("ouro_decref (of the last reference)", o); /* a free races with collections while offline */
    object_dying(o);
    if (tls_dealloc_depth >= DEALLOC_DEPTH) {
        dealloc_later(o);
        return;
    }
    tls_dealloc_depth++;
    _ouro_object_free(o);
    if (tls_dealloc_depth == 1) dealloc_drain();
    tls_dealloc_depth--;
}

/* Frees what dealloc_later() put aside, unless an outer free will. */
static void dealloc_pending(void) {
    if (tls_dealloc_depth || !tls_dealloc_later) return;
    tls_dealloc_depth++;
    dealloc_drain();
    tls_dealloc_depth--;
}

/* Merges o's counts into ref_shared (its owner gives it up), adding extra; returns the true count. The
 * caller is the owner, or holds the bucket mutex of an owner that exited, or holds a stop of the world
 * (the owner is parked or offline, between two of its count updates), or is a fork child's only
 * thread. Merging a merged object adds extra to its count. */
static intptr_t object_merge(ouro_object *o, intptr_t extra) {
    if (ouro_is_immortal(o)) return 1; /* immortalized while queued: stays immortal, never freed */
    intptr_t local = (intptr_t)__atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    /* Before the CAS, not after: once it publishes MERGED another thread may drop the last reference
     * and free the block (and reuse it), so a later store would land on the free-list link or on a new
     * object. Only the owner (busy here) or nobody (an exited owner) uses them meanwhile. */
    __atomic_store_n(&o->ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->tid, 0, __ATOMIC_RELAXED);
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
    intptr_t count, merged;
    do {
        count = (shared >> OURO_SHARED_SHIFT) + local + extra;
        merged = (count << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED;
    } while (!__atomic_compare_exchange_n(&o->ref_shared, &shared, merged, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return count;
}

static void merge_zero_local(ouro_object *o) {
    /* acquire: pairs with the non-owners' acq_rel decrements, whose writes happen before the free */
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_ACQUIRE);
    if (shared == OURO_SHARED_INIT) { /* nobody else ever counted it: dead */
        ouro_dealloc(o);
        return;
    }
    __atomic_store_n(&o->tid, 0, __ATOMIC_RELAXED); /* others now count in ref_shared only */
    intptr_t merged;
    do merged = (shared & ~(intptr_t)OURO_SHARED_STATE) | OURO_SHARED_MERGED;
    while (!__atomic_compare_exchange_n(&o->ref_shared, &shared, merged, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    if (merged == OURO_SHARED_MERGED) ouro_dealloc(o); /* merged with a zero count */
}

/* The owner's decrement from local: the last local reference, an underflow, or a count above 2^31. */
void ouro_decref_local_slow(ouro_object *o, uint32_t local) {
    if (local == 0) ouro_refcount_underflow(o);
    __atomic_store_n(&o->ref_local, local - 1, __ATOMIC_RELAXED);
    /* The merge's CAS on ref_shared orders the owner's writes before any dealloc elsewhere. */
    if (local == 1) merge_zero_local(o);
}

static const char *object_type_name(const ouro_object *o) {
    return o->type && o->type->name ? o->type->name : "?";
}

const char *_ouro_object_type_name_at(const void *p) {
    if (_ouro_addrmap_get(p) != OURO_CHUNK_ARENA) return NULL;
    ouro_pool_t *pool = ouro_pool_of(p);
    if (pool->magic != OURO_POOL_MAGIC || pool->type != OURO_PT_BLOCKS || (pool->kind != OURO_KIND_OBJECT && pool->kind != OURO_KIND_GC) || !pool->block_size)
        return NULL;
    if ((size_t)((const char *)p - ouro_pool_data(pool)) % pool->block_size != 0) return NULL;
    return object_type_name(p);
}

/* Misuse (debug level >= 1): an object API called by a thread inside an offline section. */
_Noreturn void _ouro_object_offline_misuse(const char *fn, const ouro_object *o) {
    ouro_thread_t *me = _ouro_tls_thread;
    char what[96] = "";
    if (o) snprintf(what, sizeof what, " on %s object %p", object_type_name(o), (const void *)o);
    _ouro_fatal("%s: called inside an offline section%s (thread %d%s%s): object APIs need an online thread "
                "(end the section with ouro_offline_end first)",
                fn, what, me ? (int)me->os_tid : 0, me && me->name[0] ? ", " : "", me && me->name[0] ? me->name : "");
}

/* A decref of a block that the allocator has back: stop with its address and type (words 1..3, the
 * type among them, survive a free). */
static OURO_COLD _Noreturn void object_freed_decref(ouro_object *o) {
    _ouro_fatal("ouro_decref: decref of a freed object %p (%s)", (void *)o, object_type_name(o));
}

/* Debug builds (level >= 1): a decref's slow path checks that o is not a freed block (its canary). */
static inline void object_check_not_freed(ouro_object *o) {
    if (OURO_DEBUG_LEVEL >= 1 && OURO_UNLIKELY(_ouro_block_freed(o))) object_freed_decref(o);
}

void _ouro_arg_check_live(const ouro_object *o, const char *fn) {
    if (OURO_UNLIKELY(_ouro_block_freed(o)))
        _ouro_fatal("%s: %p is a freed object (%s): used after its last reference was dropped", fn, (const void *)o,
                    object_type_name(o));
}

void ouro_refcount_underflow(ouro_object *o) {
    object_check_not_freed(o);
    _ouro_fatal("ouro_decref: object %p (%s) has no reference left to drop (decref without incref?)", (void *)o,
                object_type_name(o));
}

/* ---- the queues ------------------------------------------------------------------------------------------ */

enum { BRC_BUCKETS = 64, BRC_CHUNK = 62 };

typedef struct brc_chunk brc_chunk;
struct brc_chunk {
    brc_chunk *next;
    size_t n;
    ouro_object *obj[BRC_CHUNK];
};

struct brc_thread {
    uintptr_t tid;
    brc_thread *next; /* in its bucket */
    brc_chunk *queue; /* objects queued to this thread (bucket mutex) */
    brc_thread *stats_next, *stats_prev; /* every registered thread (stats_lock) */
    type_counts counts[TYPE_SLOTS];      /* written by the thread (relaxed), summed by anyone */
};

static brc_thread *stats_threads; /* stats_lock */

static void type_count(const ouro_type *t, bool alloc) {
    uint32_t i = type_index(t);
    brc_thread *me = tls_brc;
    if (OURO_LIKELY(i < TYPE_SLOTS && me)) {
        counts_bump(alloc ? &me->counts[i].allocs : &me->counts[i].frees);
    } else if (i < TYPE_SLOTS) {
        __atomic_fetch_add(alloc ? &stats_retired[i].allocs : &stats_retired[i].frees, 1, __ATOMIC_RELAXED);
    } else {
        ouro_type *w = (ouro_type *)t;
        __atomic_fetch_add(alloc ? &w->stat_allocs_shared : &w->stat_frees_shared, 1, __ATOMIC_RELAXED);
    }
}

static struct {
    pthread_mutex_t mutex;
    brc_thread *threads;
} __attribute__((aligned(64))) brc_bucket[BRC_BUCKETS];

/* Owners learn of their queues at safepoints, whose slow path runs while a grace period waits for
 * them. A queue that turns non-empty therefore asks for a grace period: a deferral node (one in flight
 * at a time) whose callback asks again while some queue is still non-empty. */
static _Atomic int brc_nonempty;      /* queues with objects in them */
static _Atomic bool brc_kick_pending; /* brc_kick is queued to the reclaimer */
static ouro_defer_node brc_kick;

static void brc_kick_run(void *arg);

static void brc_request_grace_period(void) {
    if (!atomic_exchange_explicit(&brc_kick_pending, true, memory_order_acq_rel)) {
        brc_kick.fn = brc_kick_run;
        brc_kick.arg = NULL;
        _ouro_defer_push(&brc_kick);
    }
}

static void brc_kick_run(void *arg) {
    (void)arg;
    atomic_store_explicit(&brc_kick_pending, false, memory_order_release);
    if (atomic_load_explicit(&brc_nonempty, memory_order_acquire) > 0) brc_request_grace_period();
}

static __thread bool tls_merging OURO_TLS_FAST;    /* a merge is running on this thread (deallocs may poll) */

/* The owner id that object_make records: the thread pointer from the thread's registration until its
 * detach or exit begins, then 0 (objects are born merged: the walk that merged the others is over). */
static __thread uintptr_t tls_owner_id OURO_TLS_FAST;

static unsigned brc_bucket_of(uintptr_t tid) { return (unsigned)((tid * 0x9e3779b97f4a7c15ull) >> 58) % BRC_BUCKETS; }

static brc_thread *brc_find_locked(unsigned b, uintptr_t tid) {
    for (brc_thread *t = brc_bucket[b].threads; t; t = t->next)
        if (t->tid == tid) return t;
    return NULL;
}

/* No memory to queue o (QUEUED set, holding the dropped reference) to its owner: merge it with the world
 * stopped instead, as CPython does. Its owner is then parked at a safepoint or offline, between two of
 * its own count updates, so the merge may write its local count (the collector merges queues the same
 * way). A caller that holds the stop merges at once. */
static void brc_merge_stopping(ouro_object *o) {
    bool stopped = !_ouro_tls_holds_stop;
    if (stopped && ouro_stop_the_world("refcount merge (out of memory)") != 0)
        _ouro_fatal("ouro_decref: cannot stop the world to merge object %p: %s", (void *)o, ouro_err_message());
    intptr_t count = object_merge(o, -1);
    if (stopped) ouro_start_the_world();
    if (count == 0) ouro_dealloc(o);
}

/* Queues o (QUEUED set, the queue holding the dropped reference) to its owner tid, or merges it when
 * the owner has left its bucket: its exit walk merged o first (the walk ends before the record leaves,
 * and merges add up), so this merge drops the queue's reference from the merged count. */
static void brc_queue(ouro_object *o, uintptr_t tid) {
    unsigned b = brc_bucket_of(tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    brc_thread *owner = brc_find_locked(b, tid);
    if (!owner) {
        /* Its owner's exit walk merged it (tid 0) before the owner left the bucket. A nonzero tid is
         * no owner's: a free-list link, so o is a freed block. */
        if (__atomic_load_n(&o->tid, __ATOMIC_RELAXED) != 0) {
            pthread_mutex_unlock(&brc_bucket[b].mutex);
            object_freed_decref(o);
        }
        intptr_t count = object_merge(o, -1);
        pthread_mutex_unlock(&brc_bucket[b].mutex);
        if (count == 0) ouro_dealloc(o);
        return;
    }
    brc_chunk *c = owner->queue;
    bool was_empty = c == NULL;
    if (!c || c->n == BRC_CHUNK) {
        /* malloc, not ouro_alloc: ouro's slow path runs a safepoint, whose poll would take this mutex */
        brc_chunk *fresh = _ouro_sys_malloc(sizeof *fresh);
        if (!fresh) {
            pthread_mutex_unlock(&brc_bucket[b].mutex);
            brc_merge_stopping(o);
            return;
        }
        fresh->next = c;
        fresh->n = 0;
        owner->queue = c = fresh;
    }
    c->obj[c->n++] = o;
    if (was_empty) atomic_fetch_add_explicit(&brc_nonempty, 1, memory_order_release);
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    if (was_empty) brc_request_grace_period();
}

/* How long a decref waits for an owner's merge before it takes the object for a freed one. */
enum { MERGE_WAIT_S = 5 };

void ouro_decref_shared(ouro_object *o) {
    object_check_not_freed(o);
    if (OURO_DEBUG_LEVEL >= 1 && OURO_UNLIKELY(atomic_load_explicit(&_ouro_runtime_finished, memory_order_relaxed)) &&
        !ouro_is_immortal(o))
        _ouro_fatal("ouro_decref: %s object %p dropped after ouro_fini (drop objects before shutting the runtime "
                    "down, or start it again with ouro_init)",
                    object_type_name(o), (void *)o);
    time_t waited_since = 0;
    for (unsigned spins = 0;; spins++) {
        if (ouro_is_immortal(o)) return;
        /* The owner before the state: a queuer queues to the owner it read while the state was still
         * INIT or MAYBE_SHARED. */
        uintptr_t tid = __atomic_load_n(&o->tid, __ATOMIC_RELAXED);
        intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
        /* the count would go negative, not yet queued nor merged */
        bool queue = shared == OURO_SHARED_INIT || shared == OURO_SHARED_MAYBE_SHARED;
        if (queue && tid == 0) {
            /* The owner is merging it (its exit walk: tid is cleared just before the merge's CAS). A
             * direct merge now could free it before the owner's count is added: wait for the CAS. A
             * merge takes nanoseconds; a state that stays is a freed block whose link word is 0. */
            if (spins > 64) sched_yield();
            if ((spins & 1023) == 1023) {
                time_t now = time(NULL);
                if (!waited_since) waited_since = now;
                else if (now - waited_since > MERGE_WAIT_S) object_freed_decref(o);
            }
            continue;
        }
        if ((shared & OURO_SHARED_STATE) == OURO_SHARED_MERGED && shared < ((intptr_t)1 << OURO_SHARED_SHIFT))
            ouro_refcount_underflow(o); /* merged, no count left: one decref too many */
        intptr_t next = queue ? OURO_SHARED_QUEUED : shared - ((intptr_t)1 << OURO_SHARED_SHIFT);
        /* acq_rel: our writes to the object happen before its free, wherever it happens */
        if (!__atomic_compare_exchange_n(&o->ref_shared, &shared, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        if (queue) brc_queue(o, tid);
        else if (next == OURO_SHARED_MERGED) ouro_dealloc(o);
        return;
    }
}

/* Takes the calling thread's queue (its record registered). */
static brc_chunk *brc_take_queue(brc_thread *me) {
    unsigned b = brc_bucket_of(me->tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    brc_chunk *q = me->queue;
    me->queue = NULL;
    if (q) atomic_fetch_sub_explicit(&brc_nonempty, 1, memory_order_relaxed);
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    return q;
}

static size_t brc_merge_chunks(brc_chunk *q) {
    size_t n = 0;
    while (q) {
        for (size_t i = 0; i < q->n; i++, n++)
            if (object_merge(q->obj[i], -1) == 0) ouro_dealloc(q->obj[i]);
        brc_chunk *next = q->next;
        free(q);
        q = next;
    }
    return n;
}

size_t ouro_refcount_merge_queued(void) {
    brc_thread *me = tls_brc;
    if (!me || tls_merging) return 0;
    tls_merging = true;
    size_t n = 0;
    for (brc_chunk *q; (q = brc_take_queue(me));) n += brc_merge_chunks(q); /* deallocs may queue more */
    tls_merging = false;
    return n;
}

/* ---- merging every object of a thread ----------------------------------------------------------------
 * Before its id can go to another thread, every object a thread owns is merged: the exit hook walks the
 * thread's own object pools (it is their only allocator, so its objects are all there), and a fork child
 * walks the abandoned ones for the threads that vanished. A visited block is a live object or a free
 * block, whose link word is never a thread pointer; a block another thread frees meanwhile was not
 * owned by an owner being merged (non-owners free only merged objects). */
typedef struct {
    const uintptr_t *ids; /* sorted */
    size_t n;
    size_t merged;
} owned_walk;

static bool owned_by(const owned_walk *w, uintptr_t tid) {
    if (tid == 0) return false;
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->ids[mid] == tid) return true;
        if (w->ids[mid] < tid) lo = mid + 1; else hi = mid;
    }
    return false;
}

static void merge_owned_in_pool(ouro_pool_t *pool, void *arg) {
    owned_walk *w = arg;
    for (uint32_t i = 0; i < pool->carved; i++) {
        ouro_object *o = ouro_pool_block(pool, i);
        if (!owned_by(w, __atomic_load_n(&o->tid, __ATOMIC_RELAXED))) continue;
        w->merged++;
        /* The count is not zero: the owner's local count is (its last reference merges at once), and
         * a non-owner's decrement queues instead of taking it below zero. If it were, freeing here
         * would change the pools under the walk: the free waits for the walk's end. */
        if (object_merge(o, 0) == 0) {
            object_dying(o);
            dealloc_later(o);
        }
    }
}

ouro_object *_ouro_refcount_merge_all_stopped(void) {
    ouro_object *dead = NULL;
    for (int b = 0; b < BRC_BUCKETS; b++) {
        pthread_mutex_lock(&brc_bucket[b].mutex); /* free: its holders never park */
        for (brc_thread *t = brc_bucket[b].threads; t; t = t->next) {
            brc_chunk *q = t->queue;
            if (!q) continue;
            t->queue = NULL;
            atomic_fetch_sub_explicit(&brc_nonempty, 1, memory_order_relaxed);
            while (q) {
                for (size_t i = 0; i < q->n; i++) {
                    ouro_object *o = q->obj[i];
                    if (object_merge(o, -1) != 0) continue;
                    __atomic_store_n(&o->tid, (uintptr_t)dead, __ATOMIC_RELAXED); /* tid 0 after the merge */
                    dead = o;
                }
                brc_chunk *next = q->next;
                free(q);
                q = next;
            }
        }
        pthread_mutex_unlock(&brc_bucket[b].mutex);
    }
    return dead;
}

void _ouro_refcount_merge_stopped(ouro_object *o) { (void)object_merge(o, 0); }

void _ouro_dealloc_list(ouro_object *list) {
    while (list) {
        ouro_object *next = (ouro_object *)__atomic_load_n(&list->tid, __ATOMIC_RELAXED);
        __atomic_store_n(&list->tid, 0, __ATOMIC_RELAXED);
        ouro_dealloc(list);
        list = next;
    }
}

/* The exit hook: merge every object the thread owns, leave the bucket (later queuers merge directly),
 * then merge what was queued. */
static void brc_thread_exit(void) {
    brc_thread *me = tls_brc;
    if (!me) return;
    /* From here on the thread owns nothing: what it makes is born merged, what it made is merged now.
     * Queuers still find the record until it leaves its bucket below; their objects wait in the queue
     * (a merged object's queued reference is dropped by the second merge). The thread may go on
     * running (a detach): it owns objects again once it makes one after the hook. */
    tls_owner_id = 0;
    tls_merging = true;
    owned_walk w = {.ids = &me->tid, .n = 1};
    _ouro_heap_visit_object_pools(_ouro_tls_heap, merge_owned_in_pool, &w);
    dealloc_pending();
    tls_merging = false;
    unsigned b = brc_bucket_of(me->tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    brc_thread **p = &brc_bucket[b].threads;
    while (*p != me) p = &(*p)->next;
    *p = me->next;
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    brc_chunk *q = brc_take_queue(me);
    tls_merging = true;
    brc_merge_chunks(q);
    tls_merging = false;
    pthread_mutex_lock(&stats_lock); /* its counts move to the retired ones: sums stay exact */
    for (int i = 0; i < TYPE_SLOTS; i++) {
        __atomic_fetch_add(&stats_retired[i].allocs, me->counts[i].allocs, __ATOMIC_RELAXED);
        __atomic_fetch_add(&stats_retired[i].frees, me->counts[i].frees, __ATOMIC_RELAXED);
    }
    if (me->stats_prev) me->stats_prev->stats_next = me->stats_next; else stats_threads = me->stats_next;
    if (me->stats_next) me->stats_next->stats_prev = me->stats_prev;
    tls_brc = NULL;
    pthread_mutex_unlock(&stats_lock);
    free(me);
}

static pthread_once_t brc_once = PTHREAD_ONCE_INIT;
static void brc_atfork_child(void);

static void brc_init(void) {
    for (int i = 0; i < BRC_BUCKETS; i++) pthread_mutex_init(&brc_bucket[i].mutex, NULL);
    if (_ouro_thread_exit_hook_add(OURO_EXIT_ORDER_REFCOUNT, brc_thread_exit) != 0 ||
        _ouro_fork_child_hook_add(OURO_FORK_ORDER_REFCOUNT, brc_atfork_child) != 0)
        _ouro_fatal("cannot register the refcount module's hooks: %s", ouro_err_message());
    _ouro_thread_set_poll_hook(ouro_refcount_merge_queued);
}

/* Registers the calling thread as an owner (attaching it first). false with an error set. */
bool _ouro_object_thread_ready_on(const char *fn, const ouro_object *o) {
    object_check_online(fn, o);
    if (tls_brc) return true;
    if (ouro_thread_attach() != 0) return false;
    pthread_once(&brc_once, brc_init);
    brc_thread *me = _ouro_sys_calloc(1, sizeof *me);
    if (!me) {
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_new: out of memory");
        return false;
    }
    me->tid = ouro_thread_id();
    if (me->tid == 0 || (me->tid & 1)) _ouro_fatal("thread pointer %p cannot be an owner id", (void *)me->tid);
    pthread_mutex_lock(&stats_lock);
    me->stats_next = stats_threads;
    if (stats_threads) stats_threads->stats_prev = me;
    stats_threads = me;
    pthread_mutex_unlock(&stats_lock);
    unsigned b = brc_bucket_of(me->tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    me->next = brc_bucket[b].threads;
    brc_bucket[b].threads = me;
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    tls_brc = me;
    tls_owner_id = me->tid; /* registered first: a queuer finds the record of any object we own */
    return true;
}

/* Merges every object the threads of ids (sorted) owned, in the abandoned pools, and frees those whose
 * count is 0. A fork child's only thread. */
static void brc_merge_vanished(const uintptr_t *ids, size_t n) {
    tls_merging = true;
    owned_walk w = {.ids = ids, .n = n};
    pthread_mutex_lock(&_ouro_arena_lock);
    _ouro_arena_visit_abandoned_object_pools_locked(merge_owned_in_pool, &w);
    _ouro_arena_unlock();
    dealloc_pending();
    tls_merging = false;
}

static int id_cmp(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* fork(): the child's only thread is the forking one, and new threads may get the thread pointers of
 * the vanished ones. Their objects are merged (their heaps were abandoned by threads/fork.c's child
 * handler, registered before this one, so the objects sit in abandoned pools), their records leave the
 * buckets (else their queues would fill forever), their queued objects are merged, and the leaf
 * mutexes, which a vanished thread may have held, are made anew. */
static void brc_atfork_child(void) {
    pthread_mutex_init(&stats_lock, NULL);
    brc_thread *gone = NULL; /* the vanished threads' records, linked through next */
    size_t nvanished = 0;
    brc_chunk *orphans = NULL;
    for (int b = 0; b < BRC_BUCKETS; b++) {
        pthread_mutex_init(&brc_bucket[b].mutex, NULL);
        for (brc_thread **p = &brc_bucket[b].threads; *p;) {
            brc_thread *t = *p;
            if (t == tls_brc) {
                p = &t->next;
                continue;
            }
            *p = t->next;
            t->next = gone;
            gone = t;
            nvanished++;
            for (brc_chunk *c = t->queue, *next; c; c = next) {
                next = c->next;
                c->next = orphans;
                orphans = c;
            }
            for (int i = 0; i < TYPE_SLOTS; i++) {
                __atomic_fetch_add(&stats_retired[i].allocs, t->counts[i].allocs, __ATOMIC_RELAXED);
                __atomic_fetch_add(&stats_retired[i].frees, t->counts[i].frees, __ATOMIC_RELAXED);
            }
        }
    }
    stats_threads = tls_brc;
    if (tls_brc) tls_brc->stats_next = tls_brc->stats_prev = NULL;
    int queued = 0;
    for (int b = 0; b < BRC_BUCKETS; b++)
        for (brc_thread *t = brc_bucket[b].threads; t; t = t->next) queued += t->queue != NULL;
    atomic_store_explicit(&brc_nonempty, queued, memory_order_relaxed);
    /* The kick node came over with the reclaimer's queue when it was pushed and had not run: it runs in
     * the child, and pushing it again before would link it twice. */
    atomic_store_explicit(&brc_kick_pending, _ouro_defer_child_queued(&brc_kick), memory_order_relaxed);
    /* One walk of the abandoned pools for every vanished id; out of memory, one walk per id. */
    uintptr_t *ids = nvanished ? _ouro_sys_malloc(nvanished * sizeof *ids) : NULL;
    size_t n = 0;
    for (brc_thread *t = gone; t; t = t->next) {
        if (ids) ids[n++] = t->tid;
        else brc_merge_vanished(&t->tid, 1);
    }
    if (ids) {
        qsort(ids, n, sizeof *ids, id_cmp);
        brc_merge_vanished(ids, n);
        free(ids);
    }
    for (brc_thread *t = gone, *next; t; t = next) {
        next = t->next;
        free(t);
    }
    tls_merging = true;
    brc_merge_chunks(orphans); /* after the walk: each drops its queued reference from a merged count */
    tls_merging = false;
}

/* ---- public API --------------------------------------------------------------------------------------------- */

static bool object_check_type(const ouro_type *type, const char *fn, bool var) {
    const char *why = NULL;
    if (!type) why = "type is NULL";
    else if (type->head.type == &_ouro_type_freed) why = "the type was freed (ouro_type_free)";
    else if (type->head.type != &ouro_type_type) why = "not a type (its header does not say type; use OURO_TYPE_HEAD)";
    else if (type->basic_size < (type->item_size ? sizeof(ouro_varobject) : sizeof(ouro_object)) ||
             type->basic_size > OURO_OBJECT_MAX_SIZE)
        why = "the type's basic_size is out of range";
    else if (!var && type->item_size) why = "a variable-size type (use ouro_new_var)";
    else if (var && !type->item_size) why = "a fixed-size type (use ouro_new)";
    if (!why) return true;
    _ouro_err_set(OURO_ERR_INVALID, "%s: %s", fn, why);
    return false;
}

/* A zeroed object block of size bytes with its header set (one reference, the caller the owner). */
static ouro_object *object_make(const ouro_type *type, size_t size) {
    if (!_ouro_object_thread_ready_on("ouro_new", NULL)) return NULL;
    bool gc = type->flags & OURO_TYPE_GC;
    if (gc && atomic_load_explicit(&_ouro_gc_due, memory_order_relaxed)) _ouro_gc_poll();
    unsigned kind = gc ? OURO_KIND_GC : OURO_KIND_OBJECT;
    ouro_object *o = _ouro_alloc_kind(kind, size);
    if (!o) return NULL;
    /* The header's counts by atomic stores: a lock-free reader's try-incref may still load a dead
     * object's words 1..2 here until a grace period ends (core/objimpl.h). The payload is plain. */
    __atomic_store_n(&o->ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->lock.bits, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->gc_bits, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->flags, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->ref_shared, 0, __ATOMIC_RELAXED);
    memset((char *)o + sizeof(ouro_object), 0, size - sizeof(ouro_object));
    /* Born owned by the caller, or merged: with -Drefcount=atomic, and while the caller's exit hook runs */
    uintptr_t owner = OURO_REFCOUNT_ATOMIC ? 0 : tls_owner_id;
    __atomic_store_n(&o->tid, owner, __ATOMIC_RELAXED);
    if (owner) __atomic_store_n(&o->ref_local, 1, __ATOMIC_RELAXED);
    else __atomic_store_n(&o->ref_shared, ((intptr_t)1 << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED, __ATOMIC_RELAXED);
    o->type = type;
    type_count(type, true);
    if (gc) _ouro_gc_on_new(o);
    return o;
}

ouro_object *ouro_new(const ouro_type *type) {
    if (!object_check_type(type, "ouro_new", false)) return NULL;
    return object_make(type, type->basic_size);
}

ouro_object *ouro_new_var(const ouro_type *type, size_t n) {
    if (!object_check_type(type, "ouro_new_var", true)) return NULL;
    size_t bytes;
    if (__builtin_mul_overflow(n, type->item_size, &bytes) || bytes > PTRDIFF_MAX) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_new_var: %zu items of %zu bytes overflow", n, type->item_size);
        return NULL;
    }
    bool inline_items = bytes <= OURO_OBJECT_MAX_SIZE - type->basic_size;
    void *items = NULL;
    if (!inline_items && !(items = ouro_calloc(1, bytes))) return NULL;
    ouro_varobject *v = (ouro_varobject *)object_make(type, type->basic_size + (inline_items ? bytes : 0));
    if (!v) {
        ouro_free(items);
        return NULL;
    }
    v->size = n;
    v->items = inline_items ? (char *)v + type->basic_size : items;
    return &v->head;
}

int ouro_immortalize(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_immortalize: object is NULL");
        return -1;
    }
    __atomic_store_n(&o->ref_local, OURO_IMMORTAL_LOCAL, __ATOMIC_RELAXED);
    __atomic_store_n(&o->tid, 0, __ATOMIC_RELAXED); /* no owner: the owner's paths test tid first */
    return 0;
}

size_t ouro_refcount(const ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_refcount: object is NULL");
        return (size_t)-1;
    }
    uint32_t local = __atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    if (local == OURO_IMMORTAL_LOCAL) return (size_t)-1;
    /* A queued object's queue holds the reference its queuer dropped (CPython counts it too). */
    intptr_t count = (intptr_t)local + (__atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED) >> OURO_SHARED_SHIFT);
    return count < 0 ? 0 : (size_t)count;
}

size_t ouro_sizeof(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_sizeof: object is NULL");
        return (size_t)-1;
    }
    const ouro_type *t = o->type;
    if (t == &ouro_type_type) return sizeof(ouro_type); /* static or made by ouro_type_new */
    /* A static object (None, the bools, the small ints, static singletons) is no block of ouro's: its
     * size is its type's, with its items when they follow it. */
    bool block = _ouro_addrmap_get(o) != OURO_CHUNK_NONE;
    size_t n = block ? ouro_usable_size(o) : t->basic_size;
    if (t->item_size) {
        ouro_varobject *v = (ouro_varobject *)o;
        if (v->items != (char *)o + t->basic_size) n += ouro_usable_size(v->items);
        else if (!block) n += v->size * t->item_size;
    }
    if (t->extra_size) n += t->extra_size(o);
    return n;
}

const char *ouro_type_name(const ouro_object *o) { return o ? o->type->name : "NULL"; }

/* Fills *out with type's counts: its shared atomics plus, for a type with a slot, the retired counts and
 * every registered thread's. stats_lock held. */
static void type_stats_locked(const ouro_type *type, ouro_type_stats *out) {
    uint32_t i = __atomic_load_n(&type->index, __ATOMIC_RELAXED);
    size_t allocs = __atomic_load_n(&type->stat_allocs_shared, __ATOMIC_RELAXED);
    size_t frees = __atomic_load_n(&type->stat_frees_shared, __ATOMIC_RELAXED);
    if (i != 0 && i < TYPE_SLOTS) {
        allocs += __atomic_load_n(&stats_retired[i].allocs, __ATOMIC_RELAXED);
        frees += __atomic_load_n(&stats_retired[i].frees, __ATOMIC_RELAXED);
        for (brc_thread *t = stats_threads; t; t = t->stats_next) {
            allocs += __atomic_load_n(&t->counts[i].allocs, __ATOMIC_RELAXED);
            frees += __atomic_load_n(&t->counts[i].frees, __ATOMIC_RELAXED);
        }
    }
    out->allocs = allocs;
    out->frees = frees;
    out->live = allocs >= frees ? allocs - frees : 0; /* a snapshot: a free may be seen before its alloc */
}

int ouro_type_get_stats(const ouro_type *type, ouro_type_stats *out) {
    if (!type || !out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_type_get_stats: %s is NULL", !type ? "type" : "out");
        return -1;
    }
    pthread_mutex_lock(&stats_lock);
    type_stats_locked(type, out);
    pthread_mutex_unlock(&stats_lock);
    return 0;
}

size_t ouro_type_stats_all(ouro_type_stats_entry *out, size_t max) {
    if (!out && max) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_type_stats_all: out is NULL");
        return (size_t)-1;
    }
    size_t n = 0;
    uint32_t last = atomic_load_explicit(&type_next_index, memory_order_relaxed);
    /* Under stats_lock a listed type cannot be freed before its counts and name are read: ouro_type_free
     * unlists it (_ouro_type_forget) under the same lock before it frees it. */
    pthread_mutex_lock(&stats_lock);
    for (uint32_t i = 1; i < TYPE_SLOTS && i < last; i++) {
        /* pairs with the release store in type_index() (the type is built) and in _ouro_type_forget() */
        const ouro_type *t = __atomic_load_n(&type_by_index[i], __ATOMIC_ACQUIRE);
        if (!t) continue;
        if (n < max) {
            out[n].type = t;
            snprintf(out[n].name, sizeof out[n].name, "%s", t->name);
            type_stats_locked(t, &out[n].stats);
        }
        n++;
    }
    pthread_mutex_unlock(&stats_lock);
    return n;
}

void _ouro_type_forget(const ouro_type *t) {
    uint32_t i = __atomic_load_n(&t->index, __ATOMIC_RELAXED);
    if (i == 0 || i >= TYPE_SLOTS) return;
    pthread_mutex_lock(&stats_lock); /* waits out an ouro_type_stats_all() that may be reading t */
    __atomic_store_n(&type_by_index[i], NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&stats_lock);
    /* the slot is not handed out again; its counts stay with it */
}

static void free_deferred_run(void *arg) { ouro_free(arg); }

void _ouro_free_deferred(ouro_deferred_block *b) {
    b->node.fn = free_deferred_run;
    b->node.arg = b;
    _ouro_defer_push(&b->node);
}
