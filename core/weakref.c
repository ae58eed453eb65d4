/* core/weakref.c — weak references: a table from referent to its weakrefs, striped by address, and
 * the clear that runs in the referent's free.
 *
 * The table: WR_BUCKETS buckets, each a pthread mutex and a chain of lists, one list per referent
 * (its weakrefs, doubly linked, newest first). The lists are intrusive: a list's first weakref (its
 * head) also links the bucket's chain, so registering a weakref allocates nothing under the mutex.
 *
 * Invariants (the bucket mutex of the referent's address guards them all):
 *   - w is in the list of r  <=>  w->referent == r  (w registered and neither w dead nor r cleared);
 *   - r has a list  =>  OURO_OBJ_WEAKREFS is set in r->flags (the bit may outlive the list);
 *   - a list is never empty; only its head has a meaningful chain link.
 * A weakref to an immortal referent is not registered (tracked false): it can never be cleared.
 *
 * Lock order: the bucket mutexes are leaves. Nothing under one takes another lock, allocates from
 * ouro (whose slow path may park at a safepoint), drops a reference (a free may clear weakrefs and
 * take a bucket mutex) or calls user code. Try-increfs are the only count operations under them.
 *
 * Why get, the referent's death and the weakref's own death do not race (docs/objects-number.md has
 * the long form):
 *   1. A get reads w->referent under the bucket mutex. The referent's free calls _ouro_weakref_clear
 *      before tearing anything down, and the clear nulls w->referent under the same mutex. So a
 *      non-NULL referent seen under the mutex is memory that is still an object, not yet freed.
 *   2. The free starts only after the count reached zero, and at that point a try-incref fails: the
 *      referent is MAYBE_SHARED (set at weakref creation), so its count hits zero only by a CAS on
 *      ref_shared that leaves MERGED with count 0 (or the owner's local count reaching zero, which a
 *      non-owner's try-incref never increments), and try-incref refuses exactly that state. Before the
 *      zero, the try-incref and the final decrement are CASes on the same word: whichever comes first
 *      wins, and a try-incref that wins keeps the referent alive (the decrement then sees count 1).
 *      So get either returns a live referent with a reference taken, or NULL — never a dying one.
 *   3. The clear calls back only weakrefs it could try-incref under the mutex (weakrefs are
 *      MAYBE_SHARED from birth, so try-incref fails only on a weakref whose count reached zero). A
 *      weakref dying meanwhile runs its dealloc, which takes the mutex and finds its referent NULL:
 *      it does nothing, and the clear never touches it after unlocking. A weakref it could incref
 *      stays alive across its callback, and the clear drops that reference after.
 *   4. The free sees the OURO_OBJ_WEAKREFS bit: weakref_new sets it while the caller holds a
 *      reference, and that reference's release happens before the free (the count's release
 *      sequence), which loads the flags with acquire. */
#include "core/objimpl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ouro/str.h"
#include "ouro/weakref.h"

typedef struct weakref_object weakref_object;
struct weakref_object {
    ouro_object head;
    ouro_object *referent;       /* bucket mutex; NULL once cleared or when the referent was freed */
    weakref_object *prev, *next; /* in the referent's list (bucket mutex) */
    weakref_object *chain;       /* on a list's head: the bucket's next list (bucket mutex) */
    ouro_weakref_callback callback; /* constant */
    void *arg;                      /* constant */
    uint32_t bucket;                /* constant: the bucket of the referent's address */
    bool tracked;                   /* constant: registered (false: an immortal referent) */
    int64_t hash;                   /* the referent's hash, -1 until computed; relaxed atomics */
};

enum { WR_BUCKETS = 256 };

typedef struct {
    pthread_mutex_t mutex;  /* a leaf */
    weakref_object *lists;  /* the heads of the referents' lists */
} __attribute__((aligned(64))) wr_bucket;

static wr_bucket wr_table[WR_BUCKETS] = {[0 ... WR_BUCKETS - 1] = {.mutex = PTHREAD_MUTEX_INITIALIZER}};

static void weakref_dealloc(ouro_object *self);
static int64_t weakref_hash(ouro_object *self);
static int weakref_eq(ouro_object *self, ouro_object *other);
static ouro_object *weakref_repr(ouro_object *self);

ouro_type ouro_weakref_type = {
    .head = OURO_TYPE_HEAD,
    .name = "weakref",
    .basic_size = sizeof(weakref_object),
    .dealloc = weakref_dealloc,
    .hash = weakref_hash,
    .eq = weakref_eq,
    .repr = weakref_repr,
};

static uint32_t wr_bucket_of(const ouro_object *o) {
    return (uint32_t)(((uint64_t)(uintptr_t)o * 0x9E3779B97F4A7C15ull) >> 56) % WR_BUCKETS; /* Fibonacci hashing */
}

/* fork(): the child's only thread is the forking one; a vanished thread may have held a mutex. The
 * critical sections are a few pointer writes long (a list torn by a vanished thread is the gap). */
static void wr_atfork_child(void) {
    for (int i = 0; i < WR_BUCKETS; i++) pthread_mutex_init(&wr_table[i].mutex, NULL);
}

static pthread_once_t wr_once = PTHREAD_ONCE_INIT;
static void wr_init(void) {
    if (_ouro_fork_child_hook_add(OURO_FORK_ORDER_WEAKREF, wr_atfork_child) != 0)
        _ouro_fatal("cannot register the weakref fork hook: %s", ouro_err_message());
}

/* The link that points at r's list head in bucket b (the chain's end when r has none). Mutex held. */
static weakref_object **wr_find_locked(wr_bucket *b, const ouro_object *r) {
    weakref_object **pp = &b->lists;
    while (*pp && (*pp)->referent != r) pp = &(*pp)->chain;
    return pp;
}

/* Removes live weakref w from its referent's list (w->referent set). Mutex held. */
static void wr_unlink_locked(wr_bucket *b, weakref_object *w) {
    if (w->prev) {
        w->prev->next = w->next;
        if (w->next) w->next->prev = w->prev;
    } else { /* w heads the list: its successor takes its place in the chain, or the list is gone */
        weakref_object **pp = wr_find_locked(b, w->referent);
        OURO_ASSERT(*pp == w);
        if (w->next) {
            w->next->prev = NULL;
            w->next->chain = w->chain;
            *pp = w->next;
        } else {
            *pp = w->chain;
        }
    }
    w->prev = w->next = w->chain = NULL;
    w->referent = NULL;
}

ouro_object *ouro_weakref_new(ouro_object *referent, ouro_weakref_callback callback, void *arg) {
    if (!referent) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_weakref_new: referent is NULL");
        return NULL;
    }
    weakref_object *w = (weakref_object *)ouro_new(&ouro_weakref_type); /* attaches the thread */
    if (!w) return NULL;
    w->callback = callback;
    w->arg = arg;
    w->hash = -1;
    w->bucket = wr_bucket_of(referent);
    if (ouro_is_immortal(referent)) {
        w->referent = referent; /* never cleared */
        return &w->head;
    }
    pthread_once(&wr_once, wr_init);
    w->tracked = true;
    /* A clearing thread that does not own w try-increfs it (3. above); a getter that does not own the
     * referent try-increfs it (2.): neither may find state INIT, which only the owner can judge. */
    _ouro_set_maybe_shared(&w->head);
    _ouro_set_maybe_shared(referent);
    wr_bucket *b = &wr_table[w->bucket];
    pthread_mutex_lock(&b->mutex);
    /* release: pairs with the acquire load of the flags in _ouro_object_free (4. above) */
    __atomic_fetch_or(&referent->flags, (uint16_t)OURO_OBJ_WEAKREFS, __ATOMIC_RELEASE);
    weakref_object **pp = wr_find_locked(b, referent);
    weakref_object *old = *pp;
    w->referent = referent;
    w->next = old;
    if (old) { /* w becomes the head */
        w->chain = old->chain;
        old->chain = NULL;
        old->prev = w;
    } else {
        w->chain = NULL;
    }
    *pp = w;
    pthread_mutex_unlock(&b->mutex);
    return &w->head;
}

static void weakref_dealloc(ouro_object *self) {
    weakref_object *w = (weakref_object *)self;
    if (!w->tracked) return;
    wr_bucket *b = &wr_table[w->bucket];
    pthread_mutex_lock(&b->mutex);
    if (w->referent) wr_unlink_locked(b, w); /* else cleared: the clear no longer touches w (3.) */
    pthread_mutex_unlock(&b->mutex);
}

/* The referent of wr as a new reference, or NULL (dead); NULL with an error for a bad wr (*bad set). */
static ouro_object *weakref_get(ouro_object *wr, const char *fn, bool *bad) {
    *bad = true;
    if (!_ouro_arg(wr, &ouro_weakref_type, fn)) return NULL;
    /* The owner test of the try-incref compares thread ids: the caller must be registered. */
    if (!_ouro_object_thread_ready()) return NULL;
    *bad = false;
    weakref_object *w = (weakref_object *)wr;
    if (!w->tracked) return w->referent; /* immortal: not counted */
    wr_bucket *b = &wr_table[w->bucket];
    pthread_mutex_lock(&b->mutex);
    ouro_object *r = w->referent;          /* non-NULL: not yet freed (1.) */
    if (r && !_ouro_try_incref(r)) r = NULL; /* count zero: dying, its clear is on the way (2.) */
    pthread_mutex_unlock(&b->mutex);
    return r;
}

ouro_object *ouro_weakref_get(ouro_object *wr) {
    bool bad;
    return weakref_get(wr, "ouro_weakref_get", &bad);
}

int ouro_weakref_alive(ouro_object *wr) {
    bool bad;
    ouro_object *r = weakref_get(wr, "ouro_weakref_alive", &bad);
    if (bad) return -1;
    if (!r) return 0;
    ouro_decref(r); /* may be the last reference now: the free (and callbacks) then run here */
    return 1;
}

long ouro_weakref_count(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_weakref_count: object is NULL");
        return -1;
    }
    wr_bucket *b = &wr_table[wr_bucket_of(o)];
    long n = 0;
    pthread_mutex_lock(&b->mutex);
    for (weakref_object *w = *wr_find_locked(b, o); w; w = w->next) n++;
    pthread_mutex_unlock(&b->mutex);
    return n;
}

/* Clears every weakref to o (their referent becomes NULL) and returns those with a callback to call,
 * each with a reference taken, linked through next (NULL: none). Takes only o's bucket mutex and runs
 * no user code: the collector calls it with the world stopped. */
ouro_object *_ouro_weakref_detach(ouro_object *o) {
    wr_bucket *b = &wr_table[wr_bucket_of(o)];
    weakref_object *calls = NULL, **calls_end = &calls;
    pthread_mutex_lock(&b->mutex);
    weakref_object **pp = wr_find_locked(b, o);
    weakref_object *w = *pp;
    if (w) *pp = w->chain; /* the whole list leaves the table */
    while (w) {
        weakref_object *next = w->next;
        w->referent = NULL;
        w->prev = w->next = w->chain = NULL;
        /* Keep w alive across its callback; a w whose count reached zero is dying: no callback, and
         * its dealloc (waiting for this mutex, or to come) finds it cleared (3.). */
        if (w->callback && _ouro_try_incref(&w->head)) {
            *calls_end = w;
            calls_end = &w->next;
        }
        w = next;
    }
    pthread_mutex_unlock(&b->mutex);
    return calls ? &calls->head : NULL;
}

/* Calls the callbacks _ouro_weakref_detach returned and drops their references. The caller's error
 * survives them (they run inside some decref or collection, which report no errors). */
void _ouro_weakref_call(ouro_object *calls) {
    if (!calls) return;
    ouro_err saved = ouro_err_occurred();
    char message[256];
    if (saved) snprintf(message, sizeof message, "%s", ouro_err_message());
    for (weakref_object *w = (weakref_object *)calls; w;) {
        weakref_object *next = w->next; /* written by the detach; nobody else touches it */
        w->next = NULL;
        w->callback(&w->head, w->arg);
        ouro_decref(&w->head); /* may free w (its dealloc sees it cleared) */
        w = next;
    }
    if (saved) _ouro_err_set(saved, "%s", message);
    else ouro_err_clear();
}

/* Called by the free of o (count zero, OURO_OBJ_WEAKREFS set), before its type's dealloc. */
void _ouro_weakref_clear(ouro_object *o) { _ouro_weakref_call(_ouro_weakref_detach(o)); }

/* ---- the weakref object's hash, eq, repr ----------------------------------------------------------------- */

/* The referent's hash, computed while it lives and kept after (Python's rule). */
static int64_t weakref_hash(ouro_object *self) {
    weakref_object *w = (weakref_object *)self;
    int64_t h = __atomic_load_n(&w->hash, __ATOMIC_RELAXED);
    if (h != -1) return h;
    ouro_object *r = ouro_weakref_get(self);
    if (!r) {
        _ouro_err_set(OURO_ERR_TYPE, "weakref hash: the referent is gone and its hash was never taken");
        return -1;
    }
    h = ouro_hash(r);
    ouro_decref(r);
    if (h != -1) __atomic_store_n(&w->hash, h, __ATOMIC_RELAXED); /* racing writers store the same value */
    return h;
}

/* Two weakrefs are equal when both referents live and are equal; else only when identical. */
static int weakref_eq(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_weakref_type)) return 0;
    ouro_object *a = ouro_weakref_get(self), *b = ouro_weakref_get(other);
    int r = a && b ? ouro_eq(a, b) : self == other;
    ouro_xdecref(a);
    ouro_xdecref(b);
    return r;
}

static ouro_object *weakref_repr(ouro_object *self) {
    ouro_object *r = ouro_weakref_get(self);
    if (!r) return ouro_str_from_format("<weakref at %p; dead>", (void *)self);
    ouro_object *s = ouro_str_from_format("<weakref at %p; to '%s' at %p>", (void *)self, r->type->name, (void *)r);
    ouro_decref(r);
    return s;
}
