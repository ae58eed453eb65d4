/* gc/gc.c — the stop-the-world generational cycle collector (CPython's algorithm), with Python's gc
 * module as its API. docs/gc.md has the algorithm, the invariants and the tuning; in short:
 *
 * Tracking. An instance of a GC type is tracked from birth: its gc_bits say TRACKED and generation 0,
 * and its thread appends it to its young list (no lock: the list is the thread's). Nothing is
 * unlinked at free: the free zeroes gc_bits (the allocator never writes that word of a freed GC
 * block), so a list entry is checked at collection time. Entries may be stale, so emptied GC pools
 * are retained (reused by the same class only) until the collector has emptied its lists: every
 * entry points at a block boundary of a GC pool (alloc/internal.h, _ouro_alloc_gc_retain).
 *
 * Where objects are found. Generation 0: the young lists (one per thread, plus the orphans of exited
 * threads). Generation 1: the gen-1 list, survivors of young collections. Generation 2: only a walk
 * of every GC pool finds them (a full collection walks; it also finds everything else). A young
 * collection thus costs the young lists and the gen-1 list (compacted), not the heap.
 *
 * A collection of generations 0..g, with the world stopped: merge every refcount queue (the owners
 * are parked); for each candidate (tracked, not frozen, generation <= g, mortal, count > 0) save its
 * word 0 (tid) and put its true count there (gc_refs); subtract the references candidates hold to
 * candidates (traverse); mark everything reachable from a candidate with gc_refs > 0; restore the
 * tids (the header form, for young and generation-1 collections; a full collection keeps the same
 * counts in a side table instead, gc/scan.c). The unmarked ones are garbage: the collector takes a
 * reference to each and detaches their weak references. Survivors move up a generation (garbage goes
 * to generation 2, where a full collection finds what outlives the collection). Then the world
 * restarts and, with user code
 * allowed: weakref callbacks, finalizers (once per object), a second stop to find objects the
 * finalizers resurrected (they survive, in generation 2), the types' clear on the rest, and the
 * collector's references dropped (which frees them).
 *
 * Which thread collects: an explicit ouro_gc_collect runs on its caller. An automatic one runs on
 * the thread whose new GC instance finds a collection due (ouro_new, before it allocates): finalizers
 * and callbacks run there, inside that ouro_new (as in CPython up to 3.11; ouro never allocates
 * under its own locks). One collection at a time: another thread's request returns 0 at once, and an
 * automatic one that finds another thread collecting may wait for it (pacing, see pace()). */
#include "gc/internal.h"
#include "threads/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ouro/gc.h"
#include "ouro/list.h"

/* ---- state ---------------------------------------------------------------------------------------- */

/* A thread's young list. */
typedef struct young_list {
    objvec list;
    size_t compact_at; /* the length at which the owner compacts it next */
    struct young_list *next, *prev; /* young_lock */
} young_list;

enum { DELTA_FLUSH = 32, MAX_CALLBACKS = 16, COMPACT_MIN = 4096 };

static pthread_mutex_t young_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf: its holders never park */
static young_list *young_all;                                  /* young_lock */
static objvec orphans;  /* young_lock: the young entries of exited threads */
static size_t orphans_compact_at = COMPACT_MIN; /* young_lock */
static objvec gen1;     /* the collector's (gc_running) */
static __thread young_list *tls_young OURO_TLS_FAST;
static __thread long tls_delta OURO_TLS_FAST; /* GC instances this thread made minus freed, not yet in count0 */
static __thread bool tls_in_gc OURO_TLS_FAST; /* this thread runs a collection (its finalizers and callbacks too) */

_Atomic bool _ouro_gc_due;
static _Atomic bool gc_running;
static _Atomic bool gc_enabled = true;
static _Atomic bool young_lost; /* a young list could not grow: the next collection is a full one */
static _Atomic long gc_count0;  /* GC instances made minus freed since the last collection */
static long gc_count[OURO_GC_GENERATIONS]; /* [1], [2]: the collector's (gc_running); [0] unused */
static _Atomic long gc_threshold[OURO_GC_GENERATIONS] = {2000, 10, 10};
static _Atomic unsigned gc_debug;
static size_t long_lived_total, long_lived_pending; /* the collector's */
static _Atomic size_t freeze_count;

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static ouro_gc_gen_stats gc_stats[OURO_GC_GENERATIONS];       /* stats_lock */
typedef struct {
    ouro_gc_callback fn;
    void *arg;
} gc_callback_entry;
static gc_callback_entry gc_callbacks[MAX_CALLBACKS]; /* stats_lock */
static ouro_object *gc_garbage; /* the garbage list, made on first use (stats_lock) */
/* Runs of the callbacks (one collection at a time runs them): started and finished, so that a removal
 * can wait for the run that may still be calling what it removed. */
static uint64_t cb_runs_started, cb_runs_finished; /* stats_lock */
static pthread_cond_t cb_run_done = PTHREAD_COND_INITIALIZER;

static pthread_once_t gc_once = PTHREAD_ONCE_INIT;

/* Pacing (see pace()). */
enum { PACE_FACTOR = 4, PACE_WAIT_MS = 20 };

static pthread_mutex_t pace_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static pthread_cond_t pace_cond;   /* CLOCK_MONOTONIC, made by gc_init */
static uint64_t pace_ended;        /* collections ended (pace_lock) */
static __thread uint64_t tls_paced; /* 1 + the pace_ended this thread last waited at */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}


/* ---- tracking -------------------------------------------------------------------------------------- */

static void gc_thread_exit(void);
static void gc_atfork_child(void);

static void pace_init(void);

static void gc_init(void) {
    pace_init();
    _ouro_alloc_gc_retain(true);
    if (_ouro_thread_exit_hook_add(OURO_EXIT_ORDER_GC, gc_thread_exit) != 0)
        _ouro_fatal("cannot register the collector's exit hook: %s", ouro_err_message());
    if (_ouro_fork_child_hook_add(OURO_FORK_ORDER_GC, gc_atfork_child) != 0)
        _ouro_fatal("cannot register the collector's fork hook: %s", ouro_err_message());
}

/* The calling thread's young list, registered on first use; NULL when out of memory. */
static young_list *young_mine(void) {
    young_list *y = tls_young;
    if (OURO_LIKELY(y != NULL)) return y;
    pthread_once(&gc_once, gc_init);
    if (!(y = _ouro_sys_calloc(1, sizeof *y))) return NULL;
    y->compact_at = COMPACT_MIN;
    pthread_mutex_lock(&young_lock);
    y->next = young_all;
    if (young_all) young_all->prev = y;
    young_all = y;
    pthread_mutex_unlock(&young_lock);
    return tls_young = y;
}

/* Adds the thread's delta to count0, never taking it below 0 (CPython's count stops at 0 too), and
 * asks for a collection past threshold 0. Each thread holds back fewer than DELTA_FLUSH, so count0 is
 * exact to within that per thread. The clamp matters: a collection resets count0 in its stop and frees
 * its garbage afterwards (and owners free what it queued to them later still); counted down from 0,
 * those frees would put off the next collection by as many allocations, and every collection would
 * find a threshold's worth more garbage than the last. */
static void count_flush(void) {
    long d = tls_delta;
    tls_delta = 0;
    long c = atomic_load_explicit(&gc_count0, memory_order_relaxed), next;
    do {
        next = c + d > 0 ? c + d : 0;
    } while (!atomic_compare_exchange_weak_explicit(&gc_count0, &c, next, memory_order_relaxed, memory_order_relaxed));
    c = next;
    long t0 = atomic_load_explicit(&gc_threshold[0], memory_order_relaxed);
    if (t0 > 0 && c > t0 && atomic_load_explicit(&gc_enabled, memory_order_relaxed))
        atomic_store_explicit(&_ouro_gc_due, true, memory_order_relaxed);
}

/* Drops the entries of a young list that no longer name a young tracked object (freed, untracked,
 * frozen) and the duplicates (a block freed and reused by another young object), so that a program
 * that makes and frees objects without ever reaching threshold 0 keeps its list short. Safe outside a
 * stop: every entry points into a GC pool (retention), whose gc_bits byte a free zeroes; an object
 * freed meanwhile leaves a stale entry, which the collection checks like any other. */
static void young_compact(objvec *a) {
    size_t cap = 16;
    while (cap < a->n * 2) cap <<= 1;
    uintptr_t *seen = _ouro_sys_calloc(cap, sizeof *seen); /* open addressing on the addresses */
    if (!seen) return;
    unsigned shift = 64 - (unsigned)__builtin_ctzll(cap);
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        ouro_object *o = a->v[i];
        unsigned b = gc_bits_of(o);
        if ((b & (OURO_GC_TRACKED | OURO_GC_FROZEN)) != OURO_GC_TRACKED || gc_gen_of(b) != 0) continue;
        size_t h = (size_t)(((uint64_t)(uintptr_t)o * 0x9e3779b97f4a7c15ull) >> shift);
        while (seen[h] && seen[h] != (uintptr_t)o) h = (h + 1) & (cap - 1);
        if (seen[h]) continue;
        seen[h] = (uintptr_t)o;
        a->v[k++] = o;
    }
    a->n = k;
    free(seen);
}

/* The next length to compact at: twice what is left, so compaction costs O(1) per entry. */
static size_t compact_next(size_t n) { return n * 2 > COMPACT_MIN ? n * 2 : COMPACT_MIN; }

/* Enters o in generation 0 (its bits set by the caller). */
static void young_add(ouro_object *o) {
    young_list *y = young_mine();
    if (OURO_UNLIKELY(!y || !objvec_push(&y->list, o))) {
        atomic_store(&young_lost, true); /* the next collection walks the pools: it finds o */
        return;
    }
    if (OURO_UNLIKELY(y->list.n >= y->compact_at)) {
        young_compact(&y->list);
        y->compact_at = compact_next(y->list.n);
    }
}

void _ouro_gc_on_new(ouro_object *o) {
    gc_bits_set(o, OURO_GC_TRACKED);
    young_add(o);
    if (++tls_delta >= DELTA_FLUSH) count_flush();
}

void _ouro_gc_on_free(ouro_object *o) {
    if (gc_bits_of(o) & OURO_GC_FROZEN) atomic_fetch_sub_explicit(&freeze_count, 1, memory_order_relaxed);
    gc_bits_set(o, 0);
    young_list *y = tls_young; /* made and freed by this thread since: its entry is the last one */
    if (y && y->list.n && y->list.v[y->list.n - 1] == o) y->list.n--;
    if (--tls_delta <= -DELTA_FLUSH) count_flush();
}

int ouro_gc_track(ouro_object *o) {
    if (!o || !(o->type->flags & OURO_TYPE_GC)) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_track: %s", o ? "not an instance of a GC type" : "object is NULL");
        return -1;
    }
    if (!_ouro_object_thread_ready()) return -1; /* young lists are per attached thread */
    if (!(gc_bits_of(o) & OURO_GC_TRACKED)) {
        gc_bits_set(o, gc_with_gen((gc_bits_of(o) & OURO_GC_FINALIZED) | OURO_GC_TRACKED, 0));
        young_add(o);
    }
    return 0;
}

int ouro_gc_untrack(ouro_object *o) {
    if (!o || !(o->type->flags & OURO_TYPE_GC)) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_untrack: %s", o ? "not an instance of a GC type" : "object is NULL");
        return -1;
    }
    unsigned b = gc_bits_of(o);
    if (b & OURO_GC_TRACKED) {
        if (b & OURO_GC_FROZEN) atomic_fetch_sub_explicit(&freeze_count, 1, memory_order_relaxed);
        gc_bits_set(o, b & OURO_GC_FINALIZED); /* its list entries become stale: checked at collection */
    }
    return 0;
}

int ouro_gc_is_tracked(const ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_is_tracked: object is NULL");
        return -1;
    }
    return (o->type->flags & OURO_TYPE_GC) && (gc_bits_of(o) & OURO_GC_TRACKED);
}

int ouro_gc_is_finalized(const ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_is_finalized: object is NULL");
        return -1;
    }
    return (o->type->flags & OURO_TYPE_GC) && (gc_bits_of(o) & OURO_GC_FINALIZED);
}

/* The exit hook: the thread's young entries go to the orphans, its delta to count0. */
static void gc_thread_exit(void) {
    if (tls_delta) count_flush();
    young_list *y = tls_young;
    if (!y) return;
    pthread_mutex_lock(&young_lock);
    for (size_t i = 0; i < y->list.n; i++)
        if (!objvec_push(&orphans, y->list.v[i])) atomic_store(&young_lost, true);
    if (orphans.n >= orphans_compact_at) {
        young_compact(&orphans);
        orphans_compact_at = compact_next(orphans.n);
    }
    if (y->prev) y->prev->next = y->next; else young_all = y->next;
    if (y->next) y->next->prev = y->prev;
    pthread_mutex_unlock(&young_lock);
    objvec_free(&y->list);
    free(y);
    tls_young = NULL;
}

/* fork(): the child's only thread is the forking one. The vanished threads' lists stay registered
 * (their entries are processed by the next collection like any others); a collection that a vanished
 * thread was running is over. */
static void gc_atfork_child(void) {
    _ouro_gc_scan_atfork_child();
    pthread_mutex_init(&pace_lock, NULL);
    pace_init();
    pthread_mutex_init(&young_lock, NULL);
    pthread_mutex_init(&stats_lock, NULL);
    pthread_cond_init(&cb_run_done, NULL);
    cb_runs_finished = cb_runs_started; /* a run on a vanished thread never finishes */
    if (!tls_in_gc) atomic_store(&gc_running, false);
}

/* ---- the stopped world's walks ------------------------------------------------------------------------ */

typedef void (*block_fn)(ouro_object *o, void *arg);

typedef struct {
    block_fn fn;
    void *arg;
} walk_ctx;

typedef struct {
    ouro_pool_visit_fn fn;
    void *arg;
} pool_filter;

static void visit_gc_pool(ouro_pool_t *pool, void *arg) {
    pool_filter *f = arg;
    if (pool->kind == OURO_KIND_GC) f->fn(pool, f->arg);
}

void _ouro_gc_visit_pools(ouro_pool_visit_fn fn, void *arg) {
    pool_filter f = {fn, arg};
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next) /* the stopper holds the registry lock */
        if (t->heap) _ouro_heap_visit_object_pools(t->heap, visit_gc_pool, &f);
    pthread_mutex_lock(&_ouro_arena_lock); /* no parked thread holds it: it never parks under it */
    _ouro_arena_visit_abandoned_object_pools_locked(visit_gc_pool, &f);
    _ouro_arena_unlock();
}

static void walk_pool(ouro_pool_t *pool, void *arg) {
    walk_ctx *w = arg;
    char *p = ouro_pool_data(pool);
    size_t bs = pool->block_size;
    for (uint32_t i = 0; i < pool->carved; i++, p += bs) {
        ouro_object *o = (ouro_object *)p;
        if (gc_bits_of(o) & OURO_GC_TRACKED) w->fn(o, w->arg); /* free blocks read 0 (zeroed at free) */
    }
}

/* Calls fn on every tracked object (world stopped: every heap's owner is parked or gone). */
static void walk_tracked(block_fn fn, void *arg) {
    walk_ctx w = {fn, arg};
    _ouro_gc_visit_pools(walk_pool, &w);
}

/* Calls fn on every young entry (every thread's and the orphans'), stale ones included; with clear,
 * empties the lists. World stopped. */
static void walk_young(block_fn fn, void *arg, bool clear) {
    pthread_mutex_lock(&young_lock);
    for (young_list *y = young_all; y; y = y->next) {
        for (size_t i = 0; fn && i < y->list.n; i++) fn(y->list.v[i], arg);
        if (clear) y->list.n = 0, y->compact_at = COMPACT_MIN;
    }
    for (size_t i = 0; fn && i < orphans.n; i++) fn(orphans.v[i], arg);
    if (clear) orphans.n = 0, orphans_compact_at = COMPACT_MIN;
    pthread_mutex_unlock(&young_lock);
}

/* ---- the collection --------------------------------------------------------------------------------- */

/* A candidate and the word 0 it had (its owner id) while word 0 holds its gc_refs. */
typedef struct {
    ouro_object *o;
    uintptr_t tid;
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
    unsigned maxgen;  /* candidates: generations 0..maxgen */
    bool nomem;
} cand_set;

static inline intptr_t refs_of(const ouro_object *o) { return (intptr_t)__atomic_load_n(&o->tid, __ATOMIC_RELAXED); }
static inline void refs_set(ouro_object *o, intptr_t r) { __atomic_store_n(&o->tid, (uintptr_t)r, __ATOMIC_RELAXED); }

/* Makes o a candidate when it qualifies (an entry of a list may be stale or a duplicate). */
static void cand_add(ouro_object *o, void *arg) {
    cand_set *s = arg;
    unsigned b = gc_bits_of(o);
    if (!(b & OURO_GC_TRACKED) || (b & (OURO_GC_FROZEN | OURO_GC_CANDIDATE)) || gc_gen_of(b) > s->maxgen) return;
    if (ouro_is_immortal(o)) return;
    intptr_t count = gc_true_count(o);
    if (count <= 0) return; /* merged to zero in this stop: freed once the world runs */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        cand *v = _ouro_sys_realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->nomem = true; /* the collection gives up (collect_candidates) */
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (cand){o, __atomic_load_n(&o->tid, __ATOMIC_RELAXED)};
    gc_bits_set(o, b | OURO_GC_CANDIDATE);
    refs_set(o, count);
}

_Noreturn void _ouro_gc_traverse_freed(const ouro_object *parent, const ouro_object *child) {
    _ouro_fatal("gc: the traverse of %s object %p visited %p, a freed block (a reference the type does not own, "
                "or a decref too many)",
                parent->type && parent->type->name ? parent->type->name : "?", (const void *)parent, (const void *)child);
}

static int visit_decref(ouro_object *child, void *arg) {
    (void)arg;
    if (child && (gc_bits_of(child) & OURO_GC_CANDIDATE)) refs_set(child, refs_of(child) - 1);
    return 0;
}

/* The mark's stack. When it cannot grow, the object is marked but not pushed (overflow): the mark
 * then sweeps the candidates again, traversing every marked one, until a sweep marks nothing new, so
 * a collection never needs memory to finish its mark (a sweep is O(candidates), paid only then). */
typedef struct {
    objvec stack;
    bool overflow;
} mark_ctx;

static int visit_reach(ouro_object *child, void *arg) {
    mark_ctx *m = arg;
    if (!child) return 0;
    unsigned b = gc_bits_of(child);
    if ((b & (OURO_GC_CANDIDATE | OURO_GC_REACHABLE)) != OURO_GC_CANDIDATE) return 0;
    gc_bits_set(child, b | OURO_GC_REACHABLE);
    if (!objvec_push(&m->stack, child)) m->overflow = true;
    return 0;
}

/* The core of CPython's algorithm on the candidates in s (their gc_refs in word 0): subtract internal
 * references, mark what is reachable from outside. Afterwards REACHABLE is set on the survivors. */
static void find_unreachable(cand_set *s) {
    for (size_t i = 0; i < s->n; i++) gc_traverse(s->v[i].o, visit_decref, NULL);
    mark_ctx m = {0};
    for (size_t i = 0; i < s->n; i++) {
        ouro_object *o = s->v[i].o;
        unsigned b = gc_bits_of(o);
        if (refs_of(o) > 0 && !(b & OURO_GC_REACHABLE)) {
            gc_bits_set(o, b | OURO_GC_REACHABLE);
            gc_traverse(o, visit_reach, &m);
        }
        while (m.stack.n) gc_traverse(m.stack.v[--m.stack.n], visit_reach, &m);
    }
    while (m.overflow) { /* some marked objects were never traversed: sweep until nothing changes */
        m.overflow = false;
        for (size_t i = 0; i < s->n; i++) {
            if (!(gc_bits_of(s->v[i].o) & OURO_GC_REACHABLE)) continue;
            gc_traverse(s->v[i].o, visit_reach, &m);
            while (m.stack.n) gc_traverse(m.stack.v[--m.stack.n], visit_reach, &m);
        }
    }
    objvec_free(&m.stack);
}

/* Gives every candidate its word 0 back and clears the marks; compacts the garbage (the candidates
 * not marked REACHABLE) into the front of the candidate array, reusing its memory (a cand is two
 * words, an entry one), and returns it as an objvec: listing the garbage needs no memory. Survivors
 * are handed to keep(o, arg) with their bits cleared. */
static objvec cand_split(cand_set *s, void (*keep)(ouro_object *o, void *arg), void *arg) {
    for (size_t i = 0; i < s->n; i++) __atomic_store_n(&s->v[i].o->tid, s->v[i].tid, __ATOMIC_RELAXED);
    ouro_object **out = (ouro_object **)s->v; /* entry k is written after cand k / 2 <= i was read */
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        ouro_object *o = s->v[i].o;
        unsigned b = gc_bits_of(o);
        gc_bits_set(o, b & ~(OURO_GC_CANDIDATE | OURO_GC_REACHABLE));
        if (b & OURO_GC_REACHABLE) keep(o, arg);
        else out[k++] = o;
    }
    objvec garbage = {.v = out, .n = k, .cap = s->cap * 2};
    if (!garbage.v) garbage.cap = 0;
    return garbage;
}

/* What a collection hands from its stopped world to its running one. */
typedef struct {
    objvec garbage;   /* each with a reference taken by the collector */
    objvec wr_calls;  /* weakref callback lists (_ouro_weakref_detach) */
    ouro_object *dead; /* objects merged to zero (_ouro_refcount_merge_all_stopped) */
    size_t candidates, survivors;
} collect_out;

static void survivor_up(ouro_object *o, void *arg) {
    unsigned up = *(unsigned *)arg;
    gc_bits_set(o, gc_with_gen(gc_bits_of(o), up));
    if (up == 1 && !objvec_push(&gen1, o)) atomic_store(&young_lost, true);
}

/* The header form of the algorithm (cand_add's candidates, gc_refs in word 0): fills out->garbage
 * (unheld) and moves the survivors up a generation. Needs no memory beyond the candidate array; false
 * when that cannot grow (every object is left as it was). */
static bool collect_candidates(int g, collect_out *out) {
    cand_set s = {.maxgen = (unsigned)g};
    /* A full collection walks the pools, and so does one that lost track of young objects (a list
     * that could not grow): the walk finds every object of generations 0..g. */
    bool lost = atomic_exchange(&young_lost, false), walk = g == 2 || lost;
    if (walk) walk_tracked(cand_add, &s);
    walk_young(walk ? NULL : cand_add, &s, false);
    for (size_t i = 0; g >= 1 && !walk && i < gen1.n; i++) cand_add(gen1.v[i], &s);
    if (s.nomem) {
        for (size_t i = 0; i < s.n; i++) {
            __atomic_store_n(&s.v[i].o->tid, s.v[i].tid, __ATOMIC_RELAXED);
            gc_bits_set(s.v[i].o, gc_bits_of(s.v[i].o) & ~OURO_GC_CANDIDATE);
        }
        free(s.v);
        if (lost) atomic_store(&young_lost, true);
        return false;
    }
    if (g >= 1) gen1.n = 0; /* its objects were candidates: survivors move on to generation 2 */
    find_unreachable(&s);
    unsigned up = g < 2 ? (unsigned)g + 1 : 2;
    out->candidates = s.n;
    out->garbage = cand_split(&s, survivor_up, &up);
    /* Garbage goes to generation 2, like the scan's: what outlives the collection (SAVEALL, a type
     * without clear, a collection that gives up) is in no list, and only full collections find it. */
    for (size_t i = 0; i < out->garbage.n; i++) gc_bits_set(out->garbage.v[i], gc_with_gen(gc_bits_of(out->garbage.v[i]), 2));
    return true;
}

/* The stopped part of a collection of generations 0..g. false (OURO_ERR_NOMEM set) when it gives up
 * for want of memory: nothing is collected, every object stays as it was (generations aside). */
static bool collect_stopped(int g, collect_out *out) {
    out->dead = _ouro_refcount_merge_all_stopped();
    scan_result r = g == 2 ? _ouro_gc_scan_full(&out->garbage, &out->candidates) : SCAN_FALLBACK;
    if (r == SCAN_OK) {
        gen1.n = 0;
        atomic_store(&young_lost, false);
    }
    bool ok = r == SCAN_OK || (r == SCAN_FALLBACK && collect_candidates(g, out));
    /* The weakref callback lists need room before any referent is detached: all or nothing. */
    size_t weak = 0;
    for (size_t i = 0; ok && i < out->garbage.n; i++)
        weak += (__atomic_load_n(&out->garbage.v[i]->flags, __ATOMIC_ACQUIRE) & OURO_OBJ_WEAKREFS) != 0;
    if (ok && weak && !(out->wr_calls.v = _ouro_sys_malloc(weak * sizeof *out->wr_calls.v))) ok = false;
    out->wr_calls.cap = ok ? weak : 0;
    if (!ok) { /* the garbage survives as it is, in generation 2; the young lists stay */
        objvec_free(&out->garbage);
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_gc_collect: out of memory for the collection's work space; nothing collected");
        return false;
    }
    walk_young(NULL, NULL, true); /* every young object was a candidate: the lists empty */
    out->survivors = out->candidates - out->garbage.n;
    /* The garbage is held until the end (nothing of it is freed half way), its counts are merged (its
     * owners give it up: the collector's last decrement frees it here, not when an owner sleeping
     * offline next reaches a safepoint), and its weak references are cleared now: no get returns it
     * after. */
    for (size_t i = 0; i < out->garbage.n; i++) {
        ouro_object *o = out->garbage.v[i];
        _ouro_refcount_merge_stopped(o);
        ouro_incref(o);
        if (__atomic_load_n(&o->flags, __ATOMIC_ACQUIRE) & OURO_OBJ_WEAKREFS) {
            ouro_object *calls = _ouro_weakref_detach(o);
            if (calls) out->wr_calls.v[out->wr_calls.n++] = calls;
        }
    }
    if (g == 0) { /* keep the gen-1 list free of stale and duplicate entries */
        size_t k = 0;
        for (size_t i = 0; i < gen1.n; i++) {
            ouro_object *o = gen1.v[i];
            unsigned b = gc_bits_of(o);
            if ((b & (OURO_GC_TRACKED | OURO_GC_CANDIDATE | OURO_GC_FROZEN)) != OURO_GC_TRACKED || gc_gen_of(b) != 1) continue;
            gc_bits_set(o, b | OURO_GC_CANDIDATE);
            gen1.v[k++] = o;
        }
        gen1.n = k;
        for (size_t i = 0; i < k; i++) gc_bits_set(gen1.v[i], gc_bits_of(gen1.v[i]) & ~OURO_GC_CANDIDATE);
    }
    /* Every list entry now names a live object: the retained GC pools can go. */
    _ouro_alloc_gc_release_retained();
    /* The counts (Python's). */
    atomic_store_explicit(&gc_count0, 0, memory_order_relaxed);
    tls_delta = 0; /* other threads' deltas (under DELTA_FLUSH each) arrive later */
    atomic_store_explicit(&_ouro_gc_due, false, memory_order_relaxed);
    if (g < 2) __atomic_store_n(&gc_count[g + 1], __atomic_load_n(&gc_count[g + 1], __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    for (int i = 1; i <= g; i++) __atomic_store_n(&gc_count[i], 0, __ATOMIC_RELAXED);
    if (g == 1) long_lived_pending += out->survivors;
    if (g == 2) {
        long_lived_total = out->survivors;
        long_lived_pending = 0;
    }
    return true;
}

static void resurrected_keep(ouro_object *o, void *arg) {
    objvec *r = arg;
    if (gc_bits_of(o) & OURO_GC_TRACKED) gc_bits_set(o, gc_with_gen(gc_bits_of(o), 2)); /* found by full collections */
    r->v[r->n++] = o; /* room for every garbage object was made */
}

/* With the world stopped: drops from garbage the objects a finalizer resurrected (referenced from
 * outside the garbage, or reachable from one that is) and moves them to *resurrected. Out of memory,
 * it takes every one for resurrected: none is cleared (they are freed by the collector's decrement,
 * or found again by a later collection). */
static void find_resurrected(objvec *garbage, objvec *resurrected) {
    cand_set s = {.maxgen = 2};
    s.v = _ouro_sys_malloc((garbage->n ? garbage->n : 1) * sizeof *s.v);
    resurrected->v = _ouro_sys_malloc((garbage->n ? garbage->n : 1) * sizeof *resurrected->v);
    if (!s.v || !resurrected->v) {
        free(s.v);
        free(resurrected->v);
        *resurrected = *garbage;
        *garbage = (objvec){0};
        return;
    }
    resurrected->cap = garbage->n;
    s.cap = garbage->n;
    for (size_t i = 0; i < garbage->n; i++) {
        ouro_object *o = garbage->v[i];
        s.v[s.n++] = (cand){o, __atomic_load_n(&o->tid, __ATOMIC_RELAXED)};
        gc_bits_set(o, gc_bits_of(o) | OURO_GC_CANDIDATE);
        refs_set(o, gc_true_count(o) - 1); /* less the collector's own reference */
    }
    find_unreachable(&s);
    objvec_free(garbage);
    *garbage = cand_split(&s, resurrected_keep, resurrected);
}

static void stop_world(void) {
    if (ouro_stop_the_world("gc") != 0) _ouro_fatal("gc: cannot stop the world: %s", ouro_err_message());
}

static void start_world(void) {
    if (ouro_start_the_world() != 0) _ouro_fatal("gc: cannot start the world: %s", ouro_err_message());
}

static void run_callbacks(int phase, const ouro_gc_info *info) {
    gc_callback_entry cbs[MAX_CALLBACKS];
    pthread_mutex_lock(&stats_lock);
    memcpy(cbs, gc_callbacks, sizeof cbs);
    cb_runs_started++;
    pthread_mutex_unlock(&stats_lock);
    for (int i = 0; i < MAX_CALLBACKS; i++)
        if (cbs[i].fn) cbs[i].fn(phase, info, cbs[i].arg);
    pthread_mutex_lock(&stats_lock);
    cb_runs_finished++;
    pthread_cond_broadcast(&cb_run_done);
    pthread_mutex_unlock(&stats_lock);
}

static ouro_object *garbage_list(void) {
    pthread_mutex_lock(&stats_lock);
    ouro_object *l = gc_garbage;
    pthread_mutex_unlock(&stats_lock);
    if (l) return l;
    ouro_object *fresh = ouro_list_new(0);
    if (!fresh) return NULL;
    ouro_gc_untrack(fresh); /* the collector's own: never a candidate */
    pthread_mutex_lock(&stats_lock);
    if (!gc_garbage) gc_garbage = fresh, fresh = NULL;
    l = gc_garbage;
    pthread_mutex_unlock(&stats_lock);
    ouro_xdecref(fresh);
    return l;
}

/* A whole collection of generations 0..g on the calling thread (gc_running is ours). */
static long collect(int g) {
    unsigned debug = atomic_load_explicit(&gc_debug, memory_order_relaxed);
    ouro_gc_info info = {.generation = g};
    tls_in_gc = true;
    run_callbacks(OURO_GC_START, &info);
    uint64_t t0 = now_ns();
    collect_out out = {0};
    stop_world();
    bool ok = collect_stopped(g, &out);
    start_world();
    uint64_t pause = now_ns() - t0;
    _ouro_dealloc_list(out.dead);
    if (!ok) {
        ouro_err err = ouro_err_occurred();
        char message[256];
        snprintf(message, sizeof message, "%s", ouro_err_message());
        if (debug & OURO_GC_DEBUG_STATS) fprintf(stderr, "gc: generation %d: %s\n", g, message);
        info.collected = -1;
        info.duration_ns = now_ns() - t0;
        run_callbacks(OURO_GC_STOP, &info);
        tls_in_gc = false;
        _ouro_err_set(err, "%s", message); /* the callbacks may have set another */
        return -1;
    }
    for (size_t i = 0; i < out.wr_calls.n; i++) _ouro_weakref_call(out.wr_calls.v[i]);
    objvec_free(&out.wr_calls);
    /* Finalizers, once per object (PEP 442); then a second look for what they resurrected. */
    bool finalized = false;
    for (size_t i = 0; i < out.garbage.n; i++) {
        ouro_object *o = out.garbage.v[i];
        unsigned b = gc_bits_of(o);
        if (!o->type->finalize || (b & OURO_GC_FINALIZED)) continue;
        gc_bits_set(o, b | OURO_GC_FINALIZED);
        o->type->finalize(o);
        finalized = true;
    }
    objvec resurrected = {0};
    if (finalized) {
        uint64_t t1 = now_ns();
        stop_world();
        /* The queues again: a finalizer's decrement may sit in another thread's queue, and an
         * unmerged count would take a garbage object for a resurrected one. */
        ouro_object *dead = _ouro_refcount_merge_all_stopped();
        find_resurrected(&out.garbage, &resurrected);
        start_world();
        pause += now_ns() - t1;
        _ouro_dealloc_list(dead);
    }
    long collected = 0, uncollectable = 0;
    if (debug & OURO_GC_DEBUG_SAVEALL) {
        ouro_object *l = garbage_list();
        for (size_t i = 0; i < out.garbage.n; i++) {
            ouro_object *o = out.garbage.v[i];
            if (debug & OURO_GC_DEBUG_UNCOLLECTABLE) fprintf(stderr, "gc: uncollectable <%s %p>\n", o->type->name, (void *)o);
            if (l && ouro_list_append(l, o) == 0) uncollectable++;
        }
    } else {
        for (size_t i = 0; i < out.garbage.n; i++) {
            ouro_object *o = out.garbage.v[i];
            if (debug & OURO_GC_DEBUG_COLLECTABLE) fprintf(stderr, "gc: collectable <%s %p>\n", o->type->name, (void *)o);
            if (o->type->clear) o->type->clear(o); /* breaks the cycles; what it drops may free others */
        }
        collected = (long)out.garbage.n;
    }
    for (size_t i = 0; i < out.garbage.n; i++) ouro_decref(out.garbage.v[i]); /* frees them */
    for (size_t i = 0; i < resurrected.n; i++) ouro_decref(resurrected.v[i]);
    objvec_free(&out.garbage);
    objvec_free(&resurrected);
    pthread_mutex_lock(&stats_lock);
    ouro_gc_gen_stats *st = &gc_stats[g];
    st->collections++;
    st->collected += (uint64_t)collected;
    st->uncollectable += (uint64_t)uncollectable;
    st->candidates += out.candidates;
    st->pause_total_ns += pause;
    if (pause > st->pause_max_ns) st->pause_max_ns = pause;
    pthread_mutex_unlock(&stats_lock);
    info.collected = collected;
    info.uncollectable = uncollectable;
    info.duration_ns = now_ns() - t0;
    if (debug & OURO_GC_DEBUG_STATS)
        fprintf(stderr, "gc: generation %d: %zu candidates, %ld collected, %ld uncollectable, pause %.1f us, %.1f us in all\n",
                g, out.candidates, collected, uncollectable, (double)pause / 1e3, (double)info.duration_ns / 1e3);
    run_callbacks(OURO_GC_STOP, &info);
    tls_in_gc = false;
    return collected;
}

/* Claims the collector for the calling thread: false (error set) when it cannot collect now; *busy
 * when another thread is collecting. */
static bool collector_claim(const char *fn, bool *busy) {
    *busy = false;
    if (tls_in_gc) {
        _ouro_err_set(OURO_ERR_STATE, "%s: called from a collection's finalizer or callback", fn);
        return false;
    }
    if (_ouro_tls_holds_stop) {
        _ouro_err_set(OURO_ERR_STATE, "%s: the caller holds a stop of the world", fn);
        return false;
    }
    if (!_ouro_object_thread_ready()) return false;
    pthread_once(&gc_once, gc_init);
    if (atomic_exchange_explicit(&gc_running, true, memory_order_acquire)) {
        *busy = true;
        return false;
    }
    return true;
}

/* ---- pacing ------------------------------------------------------------------------------------------
 * A thread that makes GC objects while another one collects must not outrun it: what it makes while a
 * collection runs (finalizers, clear and frees run after the world restarts) is young in the next one,
 * so a fast allocator would make every collection longer than the last. Once count0 passes
 * PACE_FACTOR thresholds since the running collection's stop, such a thread waits (offline) for that
 * collection to end: at most PACE_WAIT_MS and once per collection, since a finalizer of the running
 * collection may wait for a lock the allocating thread holds. */
static void pace_init(void) {
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0 || pthread_condattr_setclock(&a, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&pace_cond, &a) != 0)
        _ouro_fatal("gc: cannot make the pacing condition variable");
    pthread_condattr_destroy(&a);
}

/* Called by a thread that found another one collecting. */
static void pace(void) {
    long t0 = atomic_load_explicit(&gc_threshold[0], memory_order_relaxed);
    if (t0 <= 0 || atomic_load_explicit(&gc_count0, memory_order_relaxed) <= PACE_FACTOR * t0) return;
    pthread_once(&gc_once, gc_init);
    if (ouro_offline_begin() != 0) return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += PACE_WAIT_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&pace_lock);
    uint64_t seen = pace_ended;
    if (tls_paced != seen + 1) {
        tls_paced = seen + 1;
        while (pace_ended == seen && atomic_load(&gc_running))
            if (pthread_cond_timedwait(&pace_cond, &pace_lock, &until) != 0) break;
    }
    pthread_mutex_unlock(&pace_lock);
    ouro_offline_end();
}

static void collector_release(void) {
    atomic_store(&gc_running, false);
    pthread_mutex_lock(&pace_lock);
    pace_ended++;
    pthread_cond_broadcast(&pace_cond);
    pthread_mutex_unlock(&pace_lock);
}

long ouro_gc_collect(int generation) {
    if (generation == -1) generation = 2;
    if (generation < 0 || generation > 2) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_collect: generation %d is not 0, 1, 2 or -1", generation);
        return -1;
    }
    bool busy;
    if (!collector_claim("ouro_gc_collect", &busy)) return busy ? 0 : -1;
    long n = collect(generation);
    collector_release();
    return n;
}

/* The generation an automatic collection takes (CPython's rule), or -1 for none. */
static int auto_generation(void) {
    for (int i = 2; i >= 1; i--) {
        long t = atomic_load_explicit(&gc_threshold[i], memory_order_relaxed);
        if (t <= 0 || __atomic_load_n(&gc_count[i], __ATOMIC_RELAXED) <= t) continue;
        if (i == 2 && long_lived_pending < long_lived_total / 4) continue; /* a full one is not worth it yet */
        return i;
    }
    long t0 = atomic_load_explicit(&gc_threshold[0], memory_order_relaxed);
    return t0 > 0 && atomic_load_explicit(&gc_count0, memory_order_relaxed) > t0 ? 0 : -1;
}

void _ouro_gc_poll(void) {
    if (tls_in_gc || _ouro_tls_holds_stop || !atomic_load_explicit(&gc_enabled, memory_order_relaxed)) return;
    if (atomic_exchange_explicit(&gc_running, true, memory_order_acquire)) {
        pace();
        return;
    }
    int g = auto_generation();
    if (g >= 0) {
        ouro_err saved = ouro_err_occurred(); /* an automatic collection reports nothing */
        char message[256];
        if (saved) snprintf(message, sizeof message, "%s", ouro_err_message());
        collect(g);
        if (saved) _ouro_err_set(saved, "%s", message);
    } else {
        atomic_store_explicit(&_ouro_gc_due, false, memory_order_relaxed);
    }
    collector_release();
}

/* ---- settings and statistics ------------------------------------------------------------------------- */

void ouro_gc_enable(void) { atomic_store(&gc_enabled, true); }
void ouro_gc_disable(void) { atomic_store(&gc_enabled, false); }
int ouro_gc_is_enabled(void) { return atomic_load(&gc_enabled); }

void ouro_gc_get_count(long count[OURO_GC_GENERATIONS]) {
    if (!count) return;
    count[0] = atomic_load_explicit(&gc_count0, memory_order_relaxed) + tls_delta;
    if (count[0] < 0) count[0] = 0;
    count[1] = __atomic_load_n(&gc_count[1], __ATOMIC_RELAXED);
    count[2] = __atomic_load_n(&gc_count[2], __ATOMIC_RELAXED);
}

void ouro_gc_get_threshold(long threshold[OURO_GC_GENERATIONS]) {
    if (!threshold) return;
    for (int i = 0; i < OURO_GC_GENERATIONS; i++) threshold[i] = atomic_load(&gc_threshold[i]);
}

int ouro_gc_set_threshold(long threshold0, long threshold1, long threshold2) {
    if (threshold0 < 0 || threshold1 < 0 || threshold2 < 0) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_set_threshold: thresholds must not be negative");
        return -1;
    }
    atomic_store(&gc_threshold[0], threshold0);
    atomic_store(&gc_threshold[1], threshold1);
    atomic_store(&gc_threshold[2], threshold2);
    return 0;
}

int ouro_gc_get_stats(ouro_gc_gen_stats out[OURO_GC_GENERATIONS]) {
    if (!out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_get_stats: out is NULL");
        return -1;
    }
    pthread_mutex_lock(&stats_lock);
    memcpy(out, gc_stats, sizeof gc_stats);
    pthread_mutex_unlock(&stats_lock);
    return 0;
}

void ouro_gc_set_debug(unsigned flags) { atomic_store(&gc_debug, flags); }
unsigned ouro_gc_get_debug(void) { return atomic_load(&gc_debug); }

ouro_object *ouro_gc_garbage(void) {
    if (!_ouro_object_thread_ready()) return NULL;
    ouro_object *l = garbage_list();
    return l ? ouro_newref(l) : NULL;
}

int ouro_gc_callback_add(ouro_gc_callback fn, void *arg) {
    if (!fn) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_callback_add: fn is NULL");
        return -1;
    }
    pthread_mutex_lock(&stats_lock);
    for (int i = 0; i < MAX_CALLBACKS; i++)
        if (!gc_callbacks[i].fn) {
            gc_callbacks[i].fn = fn;
            gc_callbacks[i].arg = arg;
            pthread_mutex_unlock(&stats_lock);
            return 0;
        }
    pthread_mutex_unlock(&stats_lock);
    _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_callback_add: %d callbacks registered already", MAX_CALLBACKS);
    return -1;
}

int ouro_gc_callback_remove(ouro_gc_callback fn, void *arg) {
    pthread_mutex_lock(&stats_lock);
    for (int i = 0; i < MAX_CALLBACKS; i++)
        if (gc_callbacks[i].fn == fn && gc_callbacks[i].arg == arg && fn) {
            gc_callbacks[i].fn = NULL;
            gc_callbacks[i].arg = NULL;
            uint64_t running = cb_runs_started;
            bool wait = !tls_in_gc && cb_runs_finished < running; /* from a callback: its own run */
            pthread_mutex_unlock(&stats_lock);
            if (wait) { /* until the run that copied the entry is over; offline, as it may stop the world */
                bool offline = _ouro_tls_thread && ouro_offline_begin() == 0;
                pthread_mutex_lock(&stats_lock);
                while (cb_runs_finished < running) pthread_cond_wait(&cb_run_done, &stats_lock);
                pthread_mutex_unlock(&stats_lock);
                if (offline) ouro_offline_end();
            }
            return 0;
        }
    pthread_mutex_unlock(&stats_lock);
    _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_callback_remove: not registered");
    return -1;
}

/* ---- freeze ---------------------------------------------------------------------------------------------- */

static void freeze_one(ouro_object *o, void *arg) {
    size_t *n = arg;
    unsigned b = gc_bits_of(o);
    if (b & OURO_GC_FROZEN) return;
    gc_bits_set(o, b | OURO_GC_FROZEN);
    (*n)++;
}

static void unfreeze_one(ouro_object *o, void *arg) {
    (void)arg;
    unsigned b = gc_bits_of(o);
    if (b & OURO_GC_FROZEN) gc_bits_set(o, gc_with_gen(b & ~OURO_GC_FROZEN, 2));
}

/* Runs fn over every tracked object with the world stopped, holding the collector. */
static int stopped_walk(const char *fn_name, block_fn fn, void *arg, bool empty_lists) {
    bool busy;
    while (!collector_claim(fn_name, &busy)) {
        if (!busy) return -1;
        ouro_safepoint(); /* another thread collects: wait for it (its stop parks us here) */
        sched_yield();
    }
    stop_world();
    walk_tracked(fn, arg);
    if (empty_lists) {
        walk_young(NULL, NULL, true);
        gen1.n = 0;
        _ouro_alloc_gc_release_retained();
    }
    start_world();
    collector_release();
    return 0;
}

int ouro_gc_freeze(void) {
    size_t n = 0;
    if (stopped_walk("ouro_gc_freeze", freeze_one, &n, true) != 0) return -1;
    atomic_fetch_add(&freeze_count, n);
    return 0;
}

int ouro_gc_unfreeze(void) {
    if (stopped_walk("ouro_gc_unfreeze", unfreeze_one, NULL, false) != 0) return -1;
    atomic_store(&freeze_count, 0);
    return 0;
}

size_t ouro_gc_get_freeze_count(void) { return atomic_load(&freeze_count); }

/* ---- get_objects, get_referrers, get_referents ------------------------------------------------------------- */

typedef struct {
    objvec found;
    int gen;              /* -1: all */
    ouro_object *target;  /* get_referrers */
    ouro_object *holder;  /* get_referrers: the object being traversed */
    bool nomem;
} query;

/* Takes o (a new reference) once: CANDIDATE marks what was taken until the end of the walk. */
static void query_take(query *q, ouro_object *o) {
    unsigned b = gc_bits_of(o);
    if (b & OURO_GC_CANDIDATE) return;
    if (!objvec_push(&q->found, o)) {
        q->nomem = true;
        return;
    }
    gc_bits_set(o, b | OURO_GC_CANDIDATE);
    ouro_incref(o);
}

static void query_objects(ouro_object *o, void *arg) {
    query *q = arg;
    unsigned b = gc_bits_of(o);
    if (!(b & OURO_GC_TRACKED) || (b & OURO_GC_FROZEN)) return;
    if (q->gen >= 0 && gc_gen_of(b) != (unsigned)q->gen) return;
    query_take(q, o);
}

static int visit_is_target(ouro_object *child, void *arg) {
    query *q = arg;
    if (child == q->target) query_take(q, q->holder);
    return 0;
}

static void query_referrers(ouro_object *o, void *arg) {
    query *q = arg;
    if (gc_bits_of(o) & OURO_GC_FROZEN) return; /* as CPython, which does not search the permanent generation */
    q->holder = o;
    gc_traverse(o, visit_is_target, q);
}

static int visit_collect(ouro_object *child, void *arg) {
    query *q = arg;
    if (!child) return 0;
    if (!objvec_push(&q->found, child)) q->nomem = true;
    else ouro_incref(child);
    return 0;
}

/* Runs the query's walk with the world stopped and returns its objects as a new list. */
static ouro_object *query_run(const char *fn, query *q, void (*walk)(query *)) {
    bool busy;
    while (!collector_claim(fn, &busy)) {
        if (!busy) return NULL;
        ouro_safepoint();
        sched_yield();
    }
    stop_world();
    walk(q);
    for (size_t i = 0; i < q->found.n; i++) { /* the marks go; the references stay */
        unsigned b = gc_bits_of(q->found.v[i]);
        if (b & OURO_GC_CANDIDATE) gc_bits_set(q->found.v[i], b & ~OURO_GC_CANDIDATE);
    }
    start_world();
    collector_release();
    ouro_object *l = q->nomem ? NULL : ouro_list_new(q->found.n);
    for (size_t i = 0; i < q->found.n; i++) {
        if (l && ouro_list_append(l, q->found.v[i]) != 0) {
            ouro_decref(l);
            l = NULL;
        }
        ouro_decref(q->found.v[i]);
    }
    objvec_free(&q->found);
    if (!l && q->nomem) _ouro_err_set(OURO_ERR_NOMEM, "%s: out of memory", fn);
    return l;
}

static void walk_objects(query *q) {
    if (q->gen == 0) {
        walk_young(query_objects, q, false);
    } else if (q->gen == 1) {
        for (size_t i = 0; i < gen1.n; i++) query_objects(gen1.v[i], q);
    } else {
        walk_tracked(query_objects, q);
    }
}

static void walk_referrers(query *q) { walk_tracked(query_referrers, q); }

static void walk_referents(query *q) { gc_traverse(q->target, visit_collect, q); }

ouro_object *ouro_gc_get_objects(int generation) {
    if (generation < -1 || generation > 2) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_get_objects: generation %d is not 0, 1, 2 or -1", generation);
        return NULL;
    }
    query q = {.gen = generation};
    return query_run("ouro_gc_get_objects", &q, walk_objects);
}

ouro_object *ouro_gc_get_referrers(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_get_referrers: object is NULL");
        return NULL;
    }
    query q = {.gen = -1, .target = o};
    return query_run("ouro_gc_get_referrers", &q, walk_referrers);
}

ouro_object *ouro_gc_get_referents(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_gc_get_referents: object is NULL");
        return NULL;
    }
    query q = {.gen = -1, .target = o};
    return query_run("ouro_gc_get_referents", &q, walk_referents);
}
