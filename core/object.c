/* core/object.c — objects: creation, deallocation, and the slow paths of biased reference counting.
 *
 * Biased reference counting (CPython 3.13t, after Choi et al.): the owner counts in ref_local without
 * atomic read-modify-writes; other threads count in ref_shared atomically. The true count is
 * ref_local + (ref_shared >> 2). docs/objects.md has the state machine; in short:
 *   owner's local reaches 0:  if ref_shared == 0 the object is dead (nobody else holds it): free it;
 *                             else give up ownership (tid = 0) and set MERGED; free when that CAS finds
 *                             a zero count.
 *   non-owner decrement:      CAS ref_shared down by one; but when it is exactly 0 (no flags), set
 *                             QUEUED instead (the queue keeps the reference being dropped) and queue the
 *                             object to its owner, which merges it (adding its local count, dropping
 *                             the queue's reference) at its next safepoint or exit. When the CAS leaves
 *                             exactly MERGED (merged, count 0), free it.
 * The queue: per-thread, found through buckets keyed by the owner's tid (bucket mutexes are leaves).
 * An owner that exited is no longer in its bucket: the queuer merges directly, under the bucket mutex,
 * so a new thread that reuses the tid registers either before (and gets the object queued) or after
 * (and sees tid 0). */
#include "core/debug.h"
#include "threads/internal.h"
#include "alloc/internal.h"
#include "core/defer.h"

#include <stdlib.h>
#include <string.h>

#include "ouro/object.h"

/* ---- deallocation -------------------------------------------------------------------------------------- */

static void object_dealloc(ouro_object *o) {
    const ouro_type *t = o->type;
    if (t->dealloc) t->dealloc(o);
    /* Zero counts in the words the allocator keeps: a racing try-incref reads a dead object. */
    __atomic_store_n(&o->ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->ref_shared, 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&((ouro_type *)t)->stat_frees, 1, __ATOMIC_RELAXED);
    ouro_free(o);
}

/* Merges o's counts into ref_shared (its owner gives it up), adding extra; returns the true count. The
 * caller is the owner, or holds the bucket mutex of an owner that exited. */
static intptr_t object_merge(ouro_object *o, intptr_t extra) {
    intptr_t local = (intptr_t)__atomic_load_n(&o->ref_local, __ATOMIC_RELAXED);
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
    intptr_t count, merged;
    do {
        count = (shared >> OURO_SHARED_SHIFT) + local + extra;
        merged = (count << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED;
    } while (!__atomic_compare_exchange_n(&o->ref_shared, &shared, merged, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    __atomic_store_n(&o->ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&o->tid, 0, __ATOMIC_RELAXED);
    return count;
}

void ouro_merge_zero_local(ouro_object *o) {
    /* acquire: pairs with the non-owners' acq_rel decrements, whose writes happen before the free */
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_ACQUIRE);
    if (shared == 0) { /* nobody else ever counted it: dead */
        object_dealloc(o);
        return;
    }
    __atomic_store_n(&o->tid, 0, __ATOMIC_RELAXED); /* others now count in ref_shared only */
    intptr_t merged;
    do merged = shared | OURO_SHARED_MERGED;
    while (!__atomic_compare_exchange_n(&o->ref_shared, &shared, merged, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    if (merged == OURO_SHARED_MERGED) object_dealloc(o); /* merged with a zero count */
}

void ouro_refcount_underflow(ouro_object *o) {
    _ouro_fatal("ouro_decref: object %p (%s) has no reference left to drop (decref without incref?)", (void *)o,
                o->type && o->type->name ? o->type->name : "?");
}

/* ---- the queues ------------------------------------------------------------------------------------------ */

enum { BRC_BUCKETS = 64, BRC_CHUNK = 62 };

typedef struct brc_chunk brc_chunk;
struct brc_chunk {
    brc_chunk *next;
    size_t n;
    ouro_object *obj[BRC_CHUNK];
};

typedef struct brc_thread brc_thread;
struct brc_thread {
    uintptr_t tid;
    brc_thread *next; /* in its bucket */
    brc_chunk *queue; /* objects queued to this thread (bucket mutex) */
};

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

static __thread brc_thread *tls_brc; /* the calling thread's record, NULL until its first object */
static __thread bool tls_merging;    /* a merge is running on this thread (deallocs may poll) */

static unsigned brc_bucket_of(uintptr_t tid) { return (unsigned)((tid >> 12) ^ (tid >> 20)) % BRC_BUCKETS; }

static brc_thread *brc_find_locked(unsigned b, uintptr_t tid) {
    for (brc_thread *t = brc_bucket[b].threads; t; t = t->next)
        if (t->tid == tid) return t;
    return NULL;
}

/* Queues o (QUEUED set, the queue holding the dropped reference) to its owner tid, or merges it when
 * the owner has exited. */
static void brc_queue(ouro_object *o, uintptr_t tid) {
    unsigned b = brc_bucket_of(tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    brc_thread *owner = brc_find_locked(b, tid);
    if (!owner) {
        intptr_t count = object_merge(o, -1);
        pthread_mutex_unlock(&brc_bucket[b].mutex);
        if (count == 0) object_dealloc(o);
        return;
    }
    brc_chunk *c = owner->queue;
    bool was_empty = c == NULL;
    if (!c || c->n == BRC_CHUNK) {
        /* malloc, not ouro_alloc: ouro's slow path runs a safepoint, whose poll would take this mutex */
        brc_chunk *fresh = malloc(sizeof *fresh);
        if (!fresh) _ouro_fatal("out of memory queueing object %p to its owner", (void *)o);
        fresh->next = c;
        fresh->n = 0;
        owner->queue = c = fresh;
    }
    c->obj[c->n++] = o;
    if (was_empty) atomic_fetch_add_explicit(&brc_nonempty, 1, memory_order_release);
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    if (was_empty) brc_request_grace_period();
}

void ouro_decref_shared(ouro_object *o) {
    intptr_t shared = __atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED);
    intptr_t next;
    bool queue;
    do {
        queue = shared == 0; /* the count would go negative, not yet queued nor merged */
        next = queue ? OURO_SHARED_QUEUED : shared - ((intptr_t)1 << OURO_SHARED_SHIFT);
        /* acq_rel: our writes to the object happen before its free, wherever it happens */
    } while (!__atomic_compare_exchange_n(&o->ref_shared, &shared, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    if (queue) brc_queue(o, __atomic_load_n(&o->tid, __ATOMIC_RELAXED));
    else if (next == OURO_SHARED_MERGED) object_dealloc(o);
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
            if (object_merge(q->obj[i], -1) == 0) object_dealloc(q->obj[i]);
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

/* The exit hook: leave the bucket (later queuers merge directly), then merge what was queued. */
static void brc_thread_exit(void) {
    brc_thread *me = tls_brc;
    if (!me) return;
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
    tls_brc = NULL;
    free(me);
}

static pthread_once_t brc_once = PTHREAD_ONCE_INIT;

static void brc_init(void) {
    for (int i = 0; i < BRC_BUCKETS; i++) pthread_mutex_init(&brc_bucket[i].mutex, NULL);
    if (_ouro_thread_exit_hook_add(OURO_EXIT_ORDER_REFCOUNT, brc_thread_exit) != 0)
        _ouro_fatal("cannot register the refcount exit hook: %s", ouro_err_message());
    _ouro_thread_set_poll_hook(ouro_refcount_merge_queued);
}

/* Registers the calling thread as an owner (attaching it first). false with an error set. */
static bool brc_register(void) {
    if (tls_brc) return true;
    if (ouro_thread_attach() != 0) return false;
    pthread_once(&brc_once, brc_init);
    brc_thread *me = calloc(1, sizeof *me);
    if (!me) {
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_new: out of memory");
        return false;
    }
    me->tid = ouro_thread_id();
    unsigned b = brc_bucket_of(me->tid);
    pthread_mutex_lock(&brc_bucket[b].mutex);
    me->next = brc_bucket[b].threads;
    brc_bucket[b].threads = me;
    pthread_mutex_unlock(&brc_bucket[b].mutex);
    tls_brc = me;
    return true;
}

/* ---- public API --------------------------------------------------------------------------------------------- */

ouro_object *ouro_new(const ouro_type *type) {
    if (!type || type->basic_size < sizeof(ouro_object) || type->basic_size > OURO_OBJECT_MAX_SIZE) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_new: %s", !type ? "type is NULL" : "the type's basic_size is out of range");
        return NULL;
    }
    if (!brc_register()) return NULL;
    unsigned kind = type->flags & OURO_TYPE_GC ? OURO_KIND_GC : OURO_KIND_OBJECT;
    ouro_object *o = _ouro_alloc_kind(kind, type->basic_size);
    if (!o) return NULL;
    memset(o, 0, type->basic_size);
    o->tid = ouro_thread_id();
    o->ref_local = 1;
    o->type = type;
    __atomic_fetch_add(&((ouro_type *)type)->stat_allocs, 1, __ATOMIC_RELAXED);
    return o;
}

int ouro_immortalize(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_immortalize: object is NULL");
        return -1;
    }
    __atomic_store_n(&o->ref_local, OURO_IMMORTAL_LOCAL, __ATOMIC_RELAXED);
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
