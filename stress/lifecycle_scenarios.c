/* stress/lifecycle_scenarios.c — the runtime's lifecycle under load: fork, fini, exits, foreign stoppers.
 *
 *   lifecycle  rounds until the time is up; each round, drawn from the seed, runs N attached workers
 *              that share a list, a dict and a table of GC nodes, make cycles (rings), count each
 *              other's objects, defer callbacks and collect, and mixes in:
 *                fork      the main thread forks 1..6 times while they run (attached or not, now and then
 *                          holding a stop across the fork); each child runs a short program and _exit()s
 *                          with a status that encodes its own oracle; the parent waits with a timeout;
 *                stopper   a thread that never attached stops and starts the world in a loop;
 *                leavers   a lane of short-lived threads that make nodes, share them (table, list, dict,
 *                          cycles with other threads' nodes), wait until a collection has started, drop
 *                          their own references and exit (mostly attached) while it runs;
 *                fini-busy ouro_fini() while the workers are attached: refused (-1, OURO_ERR_STATE);
 *                fini      after the round, 1..3 cycles of ouro_fini() (which must succeed: nothing else
 *                          is attached) and using the runtime again (attach, defer + barrier, objects,
 *                          a collection).
 *
 * The node oracle. Nodes are instances of one GC type made for the run ("stress-lc-node": slots next and
 * aux, a finalizer that counts its calls) carrying a serial, their ring, place and ring length, and a
 * canary derived from those and their address (poisoned by the dealloc). A ring's nodes link through next
 * (directly, or through a list holding the next node); next is never changed once the ring is closed, so
 * a ring node ("cyclic") can only be freed by the collector, after its finalizer: its dealloc fails when
 * it was not finalized. Every node reached (held, taken from the table, the list or the dict, walked in
 * a ring) is checked: type, canary, place, and not finalized (it is reachable). A finalizer runs at most
 * once per node; the dealloc sees an intact canary (a double free shows the poison).
 *
 * The deferral oracle. Every ouro_defer() of the round takes a record (an id, its state 1 "being
 * deferred" then 2 "deferred") and its callback counts its runs; after the round's ouro_defer_barrier()
 * every record in state 2 ran exactly once, and no callback ran after its round's barrier.
 *
 * The stop oracle (stopper). Each worker bumps a plain counter of its own while online, only then; the
 * unattached stopper reads them all twice while it holds the stop, a hold apart: they must not move,
 * and they never go back from one stop to the next. Under TSan a missing edge in the stop protocol is a
 * reported race on them. A stop that never returns trips the hang watchdog.
 *
 * The fork oracle. A child (only the forking thread survives) starts a fresh thread that attaches, makes
 * and drops rings, takes and checks everything the vanished workers left reachable (their held objects,
 * the table, the list's items, the dict's values) and drops it, collects, defers batches of its own
 * callbacks, each waited for with ouro_defer_barrier(): its own ran exactly once, and every record the parent had
 * fully deferred before the fork ran exactly once in the child (never twice: a batch carried over the
 * fork), then ouro_alloc_check() == 0. The child's main thread drops the containers, collects until
 * nothing is found, checks that every node made in the child was freed, ouro_alloc_check() == 0, and
 * that ouro_fini() succeeds. The status is 0 or 10 + the phase of the first failure; the message and the
 * phase reached are in a shared page, so a crash, an abort (ouro's fatal message) or a hang (killed
 * after LC_CHILD_TIMEOUT_S) is reported with where it happened. Nodes the vanished threads held only in
 * local variables or in a collection in flight cannot be reached by the child: they are counted
 * ("stranded"), not failed.
 *
 * The round oracle, on the main thread once every thread of the round is joined: it drops everything
 * (checking each object) and collects until nothing is found; then the node type's live count is 0
 * (ouro_type_get_stats), nodes made == freed, finalizer calls == finalized nodes freed, the collections'
 * freed count (ouro_gc_get_stats) covers every finalized node, the list, dict and str live counts are at
 * their start, the deferral oracle holds, ouro_alloc_check() == 0, every child exited with status 0. At
 * the end ouro_fini() succeeds and the allocator is back at the baseline taken at the start.
 *
 * Hangs. A watchdog thread fails the run (FAIL line with the reproduce command, exit status 1) when the
 * main thread makes no progress for LC_HANG_S, naming the main thread's phase and each worker's last
 * operation: a stop or a barrier that never returns is a failure with a message, not a stuck test. */
#include "stress/stress.h"

#include <ouro.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- parameters ---------------------------------------------------------------------------------- */

typedef struct lc_params {
    size_t held;          /* objects a worker holds */
    size_t table;         /* shared node slots */
    size_t keys;          /* the shared dict's keys */
    size_t list_max;      /* the shared list is emptied past this */
    uint32_t ring_max;    /* the longest ring */
    unsigned forks;       /* most forks in a round */
    unsigned leaver_objs; /* most nodes a leaver makes and shares */
    double round_min_s, round_max_s;
    size_t defers;        /* deferral records per round */
    unsigned child_batches; /* most batches of deferrals (each waited for) in a fork child */
} lc_params;

static const lc_params lc_full = { .held = 16, .table = 64, .keys = 32, .list_max = 256, .ring_max = 16,
                                   .forks = 6, .leaver_objs = 16, .round_min_s = 0.3, .round_max_s = 1.5,
                                   .defers = 8192, .child_batches = 32 };
static const lc_params lc_short = { .held = 8, .table = 16, .keys = 8, .list_max = 64, .ring_max = 8,
                                    .forks = 2, .leaver_objs = 8, .round_min_s = 0.1, .round_max_s = 0.35,
                                    .defers = 2048, .child_batches = 8 };

#define LC_RING_MAX 16
#define LC_LEAVER_MAX 16
#define LC_WORKERS_MAX (STRESS_MAX_THREADS - 2) /* the two indexes after the workers: stopper, leaver lane */
#define LC_POISON 0xdeadbeefdeadbeefull
#define LC_CHILD_TIMEOUT_S 20.0 /* a fork child that has not exited by then is killed: a hang */
#define LC_HANG_S 30.0          /* the main thread without progress this long: a hang */
#define LC_CHILD_DEFERS 1024
#define LC_CHILD_TAG 0xffffffffu /* the round tag of a fork child's own deferrals */
#define LC_WAIT_GC_S 0.02        /* a leaver waits this long at most for a collection to start */

enum { LC_NEXT, LC_AUX }; /* the node's slots */

/* What a round mixes in (drawn per round; workers share and collect in every round). */
enum {
    LC_FORK = 1,
    LC_STOPPER = 2,
    LC_LEAVERS = 4,
    LC_FINI_BUSY = 8,
    LC_FINI_CYCLES = 16,
    LC_ALL_FEATURES = 31,
};

/* ---- the node and the run's state ---------------------------------------------------------------- */

typedef struct lnode {
    ouro_object head;
    uint64_t serial;
    uint64_t ring;              /* its ring's serial; 0 for a loose node */
    uint32_t pos, len;          /* its place in the ring and the ring's length (0 when loose) */
    uint32_t cyclic;            /* its ring is closed: only the collector may free it, after finalizing.
                                 * Written before the ring is shared; read by the dealloc, ordered by the
                                 * maker's drop or by the stop of the collection that frees it */
    _Atomic uint32_t finalized; /* set by the finalizer */
    uint64_t canary;            /* lnode_canary() while alive, LC_POISON after its dealloc */
} lnode;

/* Where a fork child is: the parent names the phase of a crash or a hang. */
enum {
    LC_PH_FORKED = 1,
    LC_PH_START_WORLD,
    LC_PH_THREAD,
    LC_PH_ATTACH,
    LC_PH_MAKE,
    LC_PH_PREFORK,
    LC_PH_COLLECT,
    LC_PH_DEFER,
    LC_PH_CHECK,
    LC_PH_THREAD_EXIT,
    LC_PH_JOIN,
    LC_PH_CLEANUP,
    LC_PH_FINAL_CHECK,
    LC_PH_FINI,
    LC_PH_DONE,
    LC_PH_COUNT,
};

static const char *const lc_phase_names[LC_PH_COUNT] = {
    "(not started)",
    "after fork, before anything",
    "ouro_start_the_world of the stop held across the fork",
    "pthread_create of its fresh thread",
    "fresh thread: ouro_thread_attach",
    "fresh thread: making and dropping rings",
    "fresh thread: taking the pre-fork objects (held, table, list, dict)",
    "fresh thread: ouro_gc_collect",
    "fresh thread: ouro_defer + ouro_defer_barrier",
    "fresh thread: ouro_alloc_check",
    "fresh thread: exiting (exit hooks)",
    "main thread: joining the fresh thread",
    "main thread: dropping the containers and collecting",
    "main thread: final checks",
    "main thread: ouro_fini",
    "done",
};

/* A fork child's report: a MAP_SHARED page written by the child, read by the parent after waitpid. */
typedef struct lc_report {
    _Atomic int phase;
    _Atomic int failed;   /* the first failure's phase, 0 when none */
    char message[STRESS_MESSAGE_MAX];
    uint64_t prefork_taken;    /* pre-fork nodes the child reached and dropped */
    uint64_t prefork_deferred; /* pre-fork deferral records found run exactly once in the child */
    uint64_t prefork_in_flight; /* records being deferred at the fork (state 1) */
    uint64_t stranded;         /* pre-fork nodes still alive after the child's cleanup */
    uint64_t child_nodes;      /* nodes made in the child */
} lc_report;

/* A worker's online counter (plain: see the stop oracle), on a cache line of its own. */
typedef struct lc_online {
    _Alignas(64) uint64_t ops;
} lc_online;

typedef struct lc_state {
    stress_ctx *ctx;
    const lc_params *p;
    unsigned n; /* workers */
    ouro_type *type;

    /* One round's. The plain fields are written by the main thread before the round's threads start
     * (pthread_create orders them) and after they are joined. */
    uint64_t round;
    unsigned features;
    unsigned allowed;            /* the mixes a round may draw (LIFECYCLE_MIX, default all) */
    bool fini_refused_now;       /* this round's ouro_fini was refused while workers were attached */
    _Atomic bool round_stop;
    ouro_object *list, *dict, **keys;
    _Atomic(ouro_object *) *table; /* one reference each */
    ouro_object **held;            /* worker i's at [i * p->held], one reference each */
    lc_online online[STRESS_MAX_THREADS];
    _Atomic unsigned attached;     /* workers attached now */
    _Atomic(const char *) doing[STRESS_MAX_THREADS]; /* each thread's current operation, for the watchdog */

    /* Deferral records of the round (see the head comment). */
    _Atomic uint32_t round_tag;
    _Atomic uint64_t defer_next;
    _Atomic uint32_t *defer_state, *defer_runs;
    _Atomic uint64_t defer_late;

    /* Collections in progress (the collector's callbacks), for the leavers. */
    _Atomic int in_gc;

    /* Over the run. */
    _Atomic uint64_t made, freed, finalized, freed_finalized;
    _Atomic uint64_t bad_canary, refinalized, cyclic_unfinalized;
    _Atomic uint64_t stops, stops_after_progress, leavers, exits_mid_gc, deferred, waits, collects, cross;
    uint64_t rounds, by_feature[5], forks, children_ok, fini_ok, fini_refused, stranded, prefork_taken,
             prefork_deferred, child_nodes;

    /* In a fork child only (st is the child's copy). */
    bool in_child;
    uint64_t child_serial0;
    _Atomic uint64_t child_freed;
    _Atomic uint32_t child_runs[LC_CHILD_DEFERS];
    lc_report *report; /* MAP_SHARED */

    /* The watchdog. */
    _Atomic uint64_t progress;
    _Atomic(const char *) phase;
    _Atomic bool watchdog_done;

    ouro_alloc_stats_t base;
} lc_state;

static lc_state *lc_current; /* the type's hooks and the deferred callbacks reach the run through it */

/* ---- failures: the runner's in the parent, the shared report in a fork child ---------------------- */

static bool lc_fail(lc_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool lc_fail(lc_state *st, const char *fmt, ...) {
    char buf[STRESS_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (st->in_child) {
        lc_report *rep = st->report;
        int phase = atomic_load(&rep->phase);
        int none = 0;
        if (atomic_compare_exchange_strong(&rep->failed, &none, phase ? phase : LC_PH_FORKED))
            memcpy(rep->message, buf, sizeof buf);
        return false;
    }
    return stress_fail(st->ctx, "%s", buf);
}

static bool lc_failed(lc_state *st) {
    return st->in_child ? atomic_load(&st->report->failed) != 0 : stress_failed(st->ctx);
}

static bool lc_round_running(lc_state *st) {
    return !atomic_load_explicit(&st->round_stop, memory_order_relaxed) && stress_running(st->ctx);
}

static void lc_doing(lc_state *st, unsigned index, const char *what) {
    atomic_store_explicit(&st->doing[index], what, memory_order_relaxed);
}

/* The main thread's phase (for the watchdog); every call is progress. */
static void lc_phase(lc_state *st, const char *what) {
    atomic_store_explicit(&st->phase, what, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->progress, 1, memory_order_relaxed);
}

static bool lc_attach(lc_state *st) {
    if (ouro_thread_attach() == 0) return true;
    return lc_fail(st, "ouro_thread_attach: %s", ouro_err_message());
}

/* ---- nodes --------------------------------------------------------------------------------------- */

static uint64_t lnode_canary(const lnode *n) {
    return stress_mix64((uint64_t)(uintptr_t)n ^ (n->serial * 0x9e3779b97f4a7c15ull) ^
                        stress_mix64(n->ring ^ ((uint64_t)n->pos << 32) ^ n->len));
}

static void lnode_dealloc(ouro_object *self) {
    lc_state *st = lc_current;
    lnode *n = (lnode *)self;
    if (n->canary != lnode_canary(n)) {
        atomic_fetch_add(&st->bad_canary, 1);
        lc_fail(st, "dealloc of node %p (serial %llu): canary %#llx%s", (void *)n, (unsigned long long)n->serial,
                (unsigned long long)n->canary, n->canary == LC_POISON ? " (poisoned: freed twice)" : " (corrupted)");
    }
    bool fin = atomic_load_explicit(&n->finalized, memory_order_relaxed);
    if (n->cyclic && !fin) {
        atomic_fetch_add(&st->cyclic_unfinalized, 1);
        lc_fail(st, "node %p (ring %llu, place %u of %u) freed without its finalizer while its ring was unbroken "
                "(freed by reference counting while still referenced, or a collection skipped the finalizer)",
                (void *)n, (unsigned long long)n->ring, n->pos, n->len);
    }
    if (fin) atomic_fetch_add_explicit(&st->freed_finalized, 1, memory_order_relaxed);
    if (st->in_child && n->serial >= st->child_serial0) atomic_fetch_add(&st->child_freed, 1);
    n->canary = LC_POISON;
    atomic_fetch_add_explicit(&st->freed, 1, memory_order_relaxed);
}

/* The finalizer: runs with the world running, on the collecting thread; counts its calls. */
static void lnode_finalize(ouro_object *self) {
    lc_state *st = lc_current;
    lnode *n = (lnode *)self;
    atomic_fetch_add_explicit(&st->finalized, 1, memory_order_relaxed);
    if (n->canary != lnode_canary(n)) {
        atomic_fetch_add(&st->bad_canary, 1);
        lc_fail(st, "finalizer of node %p (serial %llu): canary %#llx", (void *)n, (unsigned long long)n->serial,
                (unsigned long long)n->canary);
    }
    if (atomic_exchange(&n->finalized, 1)) {
        atomic_fetch_add(&st->refinalized, 1);
        lc_fail(st, "node %p (serial %llu) finalized twice", (void *)n, (unsigned long long)n->serial);
    }
}

/* A new node (one reference); NULL with a failure recorded. */
static ouro_object *lnode_new(lc_state *st, uint64_t ring, uint32_t pos, uint32_t len) {
    lnode *n = (lnode *)ouro_new(st->type);
    if (!n) return lc_fail(st, "ouro_new: %s", ouro_err_message()), NULL;
    n->serial = atomic_fetch_add_explicit(&st->made, 1, memory_order_relaxed);
    n->ring = ring;
    n->pos = pos;
    n->len = len;
    n->canary = lnode_canary(n);
    return &n->head;
}

/* Checks a node the caller holds a reference to: type, canary, place (ring != 0), not finalized. */
static bool lnode_check(lc_state *st, ouro_object *o, uint64_t ring, uint32_t pos, const char *when) {
    if (o->type != st->type)
        return lc_fail(st, "%s: a %s where a node should be (freed and reused?)", when, ouro_type_name(o));
    lnode *n = (lnode *)o;
    if (n->canary != lnode_canary(n))
        return lc_fail(st, "%s: node %p (serial %llu) canary %#llx%s", when, (void *)n, (unsigned long long)n->serial,
                       (unsigned long long)n->canary, n->canary == LC_POISON ? ": freed while referenced" : ": corrupted");
    if (ring && (n->ring != ring || n->pos != pos))
        return lc_fail(st, "%s: node %p is place %u of ring %llu, expected place %u of ring %llu (freed and reused?)",
                       when, (void *)n, n->pos, (unsigned long long)n->ring, pos, (unsigned long long)ring);
    if (atomic_load_explicit(&n->finalized, memory_order_relaxed) || ouro_gc_is_finalized(o) == 1)
        return lc_fail(st, "%s: node %p (serial %llu, ring %llu) finalized while reachable", when, (void *)n,
                       (unsigned long long)n->serial, (unsigned long long)n->ring);
    return true;
}

/* A new reference to the node after ring node n (its next, through a link list when there is one). */
static ouro_object *lc_ring_next(lc_state *st, ouro_object *n) {
    ouro_object *v = ouro_slot_get(n, LC_NEXT), *next = NULL;
    if (!v) return lc_fail(st, "ring node %p has no next: cleared while reachable?", (void *)n), NULL;
    if (v->type == st->type) return v;
    if (ouro_is_type(v, &ouro_list_type)) {
        next = ouro_list_get(v, 0);
        if (!next) lc_fail(st, "ring node %p's link list %p lost its item: cleared while reachable? (%s)", (void *)n,
                           (void *)v, ouro_err_message());
    } else {
        lc_fail(st, "ring node %p's next is a %s: freed and reused?", (void *)n, ouro_type_name(v));
    }
    ouro_decref(v);
    return next;
}

/* Walks once around the ring of from (which the caller holds): every node checked, closing after its
 * length. A loose node is checked alone. */
static bool lc_walk(lc_state *st, ouro_object *from, const char *when) {
    if (!lnode_check(st, from, 0, 0, when)) return false;
    lnode *f = (lnode *)from;
    if (f->len == 0) return true;
    if (f->len > LC_RING_MAX || f->pos >= f->len)
        return lc_fail(st, "%s: node %p claims place %u of a ring of %u", when, (void *)f, f->pos, f->len);
    ouro_object *cur = ouro_newref(from);
    for (uint32_t i = 0; i < f->len; i++) {
        if (!lnode_check(st, cur, f->ring, (f->pos + i) % f->len, when)) {
            ouro_decref(cur);
            return false;
        }
        ouro_object *next = lc_ring_next(st, cur);
        ouro_decref(cur);
        if (!next) return false;
        cur = next;
    }
    bool closed = cur == from;
    ouro_decref(cur);
    if (!closed) return lc_fail(st, "%s: ring %llu of %u nodes does not close", when, (unsigned long long)f->ring, f->len);
    return true;
}

/* Checks a reference taken from somewhere (NULL: nothing) and drops it. */
static bool lc_check_drop(lc_state *st, ouro_object *o, const char *when) {
    if (!o) return true;
    bool ok = lc_walk(st, o, when);
    ouro_decref(o);
    return ok;
}

/* A ring of len nodes (1: a node that is its own next), linked directly or through a list; returns its
 * first node (one reference) or NULL with a failure recorded. */
static ouro_object *lc_ring_new(lc_state *st, stress_rng *rng, uint32_t len) {
    static _Atomic uint64_t rings;
    ouro_object *nodes[LC_RING_MAX] = { 0 };
    uint64_t ring = atomic_fetch_add_explicit(&rings, 1, memory_order_relaxed) + 1;
    bool ok = true;
    for (uint32_t i = 0; ok && i < len; i++) ok = (nodes[i] = lnode_new(st, ring, i, len)) != NULL;
    for (uint32_t i = 0; ok && i < len; i++) {
        ouro_object *to = nodes[(i + 1) % len];
        if (!stress_rng_one_in(rng, 4)) {
            ok = ouro_slot_set(nodes[i], LC_NEXT, to) == 0;
        } else {
            ouro_object *link = ouro_list_new(0);
            ok = link && ouro_list_append(link, to) == 0 && ouro_slot_set(nodes[i], LC_NEXT, link) == 0;
            ouro_xdecref(link);
        }
        if (!ok) lc_fail(st, "linking a ring: %s", ouro_err_message());
    }
    if (ok)
        for (uint32_t i = 0; i < len; i++) ((lnode *)nodes[i])->cyclic = 1; /* closed: see lnode.cyclic */
    for (uint32_t i = 1; i < len; i++) ouro_xdecref(nodes[i]);
    if (!ok) {
        ouro_xdecref(nodes[0]);
        return NULL;
    }
    return nodes[0];
}

/* ---- deferred callbacks --------------------------------------------------------------------------- */

/* arg: the round's tag << 32 | the record's id (LC_CHILD_TAG: a fork child's own). Runs on ouro's
 * reclaimer thread. */
static void lc_deferred(void *arg) {
    lc_state *st = lc_current;
    uint32_t tag = (uint32_t)((uintptr_t)arg >> 32), id = (uint32_t)(uintptr_t)arg;
    if (tag == LC_CHILD_TAG) {
        if (id < LC_CHILD_DEFERS) atomic_fetch_add(&st->child_runs[id], 1);
        return;
    }
    if (tag != atomic_load(&st->round_tag) || id >= st->p->defers) {
        atomic_fetch_add(&st->defer_late, 1);
        return;
    }
    atomic_fetch_add(&st->defer_runs[id], 1);
}

/* Defers one counted callback (nothing when the round's records are used up); *last (may be NULL) gets
 * its record's id. */
static bool lc_defer_one(lc_state *st, uint64_t *last) {
    uint64_t id = atomic_fetch_add(&st->defer_next, 1);
    if (id >= st->p->defers) return true;
    if (last) *last = id;
    atomic_store(&st->defer_state[id], 1);
    uintptr_t arg = ((uintptr_t)atomic_load(&st->round_tag) << 32) | (uintptr_t)id;
    if (ouro_defer(lc_deferred, (void *)arg) != 0) return lc_fail(st, "ouro_defer: %s", ouro_err_message());
    atomic_store(&st->defer_state[id], 2);
    atomic_fetch_add_explicit(&st->deferred, 1, memory_order_relaxed);
    return true;
}

/* After a barrier: every record deferred (state 2) ran exactly once. */
static bool lc_check_defers(lc_state *st, const char *when) {
    uint64_t next = atomic_load(&st->defer_next);
    if (next > st->p->defers) next = st->p->defers;
    for (uint64_t id = 0; id < next; id++) {
        uint32_t state = atomic_load(&st->defer_state[id]), runs = atomic_load(&st->defer_runs[id]);
        if (state != 2 || runs != 1)
            return lc_fail(st, "%s: deferred callback %llu of round %llu ran %u times after ouro_defer_barrier%s",
                           when, (unsigned long long)id, (unsigned long long)st->round, runs,
                           state == 2 ? " (expected exactly once)" : " (its ouro_defer never returned)");
    }
    if (atomic_load(&st->defer_late))
        return lc_fail(st, "%s: %llu deferred callbacks ran after their round's ouro_defer_barrier", when,
                       (unsigned long long)atomic_load(&st->defer_late));
    return true;
}

/* The collector's callback: counts the collections in progress (for the leavers). */
static void lc_gc_callback(int phase, const ouro_gc_info *info, void *arg) {
    (void)info;
    lc_state *st = arg;
    if (phase == OURO_GC_START) atomic_fetch_add(&st->in_gc, 1);
    else atomic_fetch_sub(&st->in_gc, 1);
}

/* ---- workers ------------------------------------------------------------------------------------- */

/* A node to share: the one held (a new reference) or a new loose one. */
static ouro_object *lc_value(lc_state *st, ouro_object *mine) {
    return mine ? ouro_newref(mine) : lnode_new(st, 0, 0, 0);
}

/* One operation on the shared list or dict. */
static bool lc_container_op(stress_worker *w, lc_state *st, ouro_object *mine) {
    uint64_t r = stress_rng_below(&w->rng, 100);
    if (r < 50) {
        ouro_object *l = st->list;
        size_t size = ouro_list_size(l);
        if (r < 20) {
            if (size > st->p->list_max) { /* emptied by pops */
                ouro_object *v;
                while ((v = ouro_list_pop(l, -1)))
                    if (!lc_check_drop(st, v, "popped from the shared list")) return false;
                ouro_err_clear();
                return true;
            }
            ouro_object *v = lc_value(st, mine);
            if (!v) return false;
            int rc = ouro_list_append(l, v);
            ouro_decref(v);
            if (rc != 0) return lc_fail(st, "ouro_list_append: %s", ouro_err_message());
            return true;
        }
        ptrdiff_t i = size ? (ptrdiff_t)stress_rng_below(&w->rng, size) : 0;
        ouro_object *v = r < 40 ? ouro_list_get(l, i) : ouro_list_pop(l, i);
        if (!v) ouro_err_clear(); /* shrank meanwhile */
        return lc_check_drop(st, v, r < 40 ? "got from the shared list" : "popped from the shared list");
    }
    ouro_object *d = st->dict, *key = st->keys[stress_rng_below(&w->rng, st->p->keys)];
    if (r < 70) {
        ouro_object *v = lc_value(st, mine);
        if (!v) return false;
        int rc = ouro_dict_set(d, key, v);
        ouro_decref(v);
        if (rc != 0) return lc_fail(st, "ouro_dict_set: %s", ouro_err_message());
    } else if (r < 90) {
        ouro_object *v = NULL;
        if (ouro_dict_get_ref(d, key, &v) < 0) return lc_fail(st, "ouro_dict_get_ref: %s", ouro_err_message());
        return lc_check_drop(st, v, "got from the shared dict");
    } else {
        ouro_object *v = ouro_dict_pop(d, key, NULL);
        if (!v && ouro_err_occurred() != OURO_ERR_KEY) return lc_fail(st, "ouro_dict_pop: %s", ouro_err_message());
        ouro_err_clear();
        return lc_check_drop(st, v, "popped from the shared dict");
    }
    return true;
}

/* A cycle across threads: takes x out of the table (often another thread's), makes a loose node n with
 * n.next = x and x.aux = n, and puts x back; n is held or dropped. */
static bool lc_cross_cycle(stress_worker *w, lc_state *st, ouro_object **mine) {
    _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
    ouro_object *x = atomic_exchange(slot, NULL);
    if (!x) return true;
    bool ok = lnode_check(st, x, 0, 0, "taken for a cross-thread cycle");
    ouro_object *n = ok ? lnode_new(st, 0, 0, 0) : NULL;
    if (n && (ouro_slot_set(n, LC_NEXT, x) != 0 || ouro_slot_set(x, LC_AUX, n) != 0))
        ok = lc_fail(st, "a cross-thread cycle: %s", ouro_err_message());
    if (!lc_check_drop(st, atomic_exchange(slot, x), "displaced from the table")) ok = false;
    if (n && mine && stress_rng_one_in(&w->rng, 2)) ouro_setref(mine, n);
    else ouro_xdecref(n);
    atomic_fetch_add_explicit(&st->cross, 1, memory_order_relaxed);
    return ok;
}

static bool lc_collect(stress_worker *w, lc_state *st) {
    uint64_t r = stress_rng_below(&w->rng, 10);
    int g = r < 6 ? 0 : r < 9 ? 1 : 2;
    lc_doing(st, w->index, g == 0 ? "ouro_gc_collect(0)" : g == 1 ? "ouro_gc_collect(1)" : "ouro_gc_collect(2)");
    if (ouro_gc_collect(g) < 0) return lc_fail(st, "ouro_gc_collect(%d): %s", g, ouro_err_message());
    atomic_fetch_add_explicit(&st->collects, 1, memory_order_relaxed);
    return true;
}

/* Waits offline for the callbacks deferred so far (then this worker's latest one has run, once) or for
 * a grace period. A fork meanwhile leaves a waiter's node on a vanished thread's stack. */
static bool lc_wait_step(stress_worker *w, lc_state *st, uint64_t *last_deferred) {
    bool barrier = stress_rng_one_in(&w->rng, 2);
    if (stress_rng_one_in(&w->rng, 2) && !lc_defer_one(st, last_deferred)) return false;
    uint64_t id = *last_deferred;
    lc_doing(st, w->index, barrier ? "ouro_defer_barrier" : "ouro_synchronize");
    if ((barrier ? ouro_defer_barrier() : ouro_synchronize()) != 0)
        return lc_fail(st, "%s: %s", barrier ? "ouro_defer_barrier" : "ouro_synchronize", ouro_err_message());
    atomic_fetch_add_explicit(&st->waits, 1, memory_order_relaxed);
    if (barrier && id != UINT64_MAX && atomic_load(&st->defer_runs[id]) != 1)
        return lc_fail(st, "worker %u's deferred callback %llu ran %u times when its later ouro_defer_barrier "
                       "returned (expected exactly once)", w->index, (unsigned long long)id,
                       atomic_load(&st->defer_runs[id]));
    return true;
}

/* A quiet worker's step: garbage of its own only (strings and rings made and dropped), a collection,
 * then a nap offline: its object pools are often empty when the main thread forks, and the fork child's
 * handler abandons them (releasing an empty object pool defers its free). */
static bool lc_quiet_step(stress_worker *w, lc_state *st) {
    lc_doing(st, w->index, "quiet: private garbage");
    for (unsigned i = (unsigned)stress_rng_range(&w->rng, 1, 8); i > 0; i--) { /* plain objects: object pools */
        ouro_object *s = ouro_str_from_format("lifecycle-quiet-%u-%u", w->index, i);
        if (!s) return lc_fail(st, "ouro_str_from_format: %s", ouro_err_message());
        ouro_decref(s);
    }
    for (unsigned i = (unsigned)stress_rng_range(&w->rng, 1, 8); i > 0; i--) {
        ouro_object *o = lc_ring_new(st, &w->rng, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
        if (!o) return false;
        ouro_decref(o);
    }
    if (!lc_collect(w, st)) return false;
    lc_doing(st, w->index, "quiet: napping offline");
    ouro_offline_begin();
    stress_sleep((double)stress_rng_range(&w->rng, 100, 2000) * 1e-6);
    ouro_offline_end();
    return true;
}

/* One random operation of a worker. */
static bool lc_worker_step(stress_worker *w, lc_state *st, ouro_object **held, uint64_t *last_deferred) {
    uint64_t r = stress_rng_below(&w->rng, 1000);
    ouro_object **mine = &held[stress_rng_below(&w->rng, st->p->held)];
    lc_doing(st, w->index, "objects");
    if (r < 150) { /* a ring: garbage at once (walked first now and then), or held */
        ouro_object *o = lc_ring_new(st, &w->rng, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
        if (!o) return false;
        if (stress_rng_one_in(&w->rng, 2)) {
            bool ok = !stress_rng_one_in(&w->rng, 4) || lc_walk(st, o, "a new ring");
            ouro_decref(o);
            return ok;
        }
        if (*mine && !lc_walk(st, *mine, "a held object let go")) {
            ouro_decref(o);
            return false;
        }
        ouro_setref(mine, o);
    } else if (r < 230) { /* a loose node, held or hung off a held node's aux */
        ouro_object *n = lnode_new(st, 0, 0, 0);
        if (!n) return false;
        if (*mine && stress_rng_one_in(&w->rng, 2)) {
            int rc = ouro_slot_set(*mine, LC_AUX, n);
            ouro_decref(n);
            if (rc != 0) return lc_fail(st, "ouro_slot_set: %s", ouro_err_message());
        } else {
            ouro_setref(mine, n);
        }
    } else if (r < 430) {
        return lc_container_op(w, st, *mine);
    } else if (r < 560) { /* the table: swap, or share a new reference */
        _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
        if (stress_rng_one_in(&w->rng, 2)) {
            if (*mine && !lnode_check(st, *mine, 0, 0, "put in the table")) return false;
            *mine = atomic_exchange(slot, *mine);
            if (*mine) return lc_walk(st, *mine, "taken from the table");
        } else if (*mine) {
            return lc_check_drop(st, atomic_exchange(slot, ouro_newref(*mine)), "displaced from the table");
        }
    } else if (r < 620) {
        return lc_cross_cycle(w, st, mine);
    } else if (r < 640) {
        return lc_collect(w, st);
    } else if (r < 700) {
        lc_doing(st, w->index, "ouro_defer");
        return lc_defer_one(st, last_deferred);
    } else if (r < 702) {
        return lc_wait_step(w, st, last_deferred);
    } else if (r < 740) { /* offline a moment: no online count meanwhile */
        lc_doing(st, w->index, "offline section");
        ouro_offline_begin();
        if (stress_rng_one_in(&w->rng, 2)) sched_yield();
        ouro_offline_end();
    } else if (r < 900) {
        if (*mine) return lc_walk(st, *mine, "held");
    } else if (*mine) { /* counts by a non-owner (the held object is often another thread's) */
        unsigned k = (unsigned)stress_rng_range(&w->rng, 1, 8);
        for (unsigned i = 0; i < k; i++) ouro_incref(*mine);
        bool ok = lnode_check(st, *mine, 0, 0, "counted up");
        for (unsigned i = 0; i < k; i++) ouro_decref(*mine);
        return ok;
    }
    return true;
}

/* A worker: attached for the round (twice now and then: idempotent), of one of three styles drawn per
 * round: mixed (every operation), quiet (private garbage, collections, naps offline) or waiter (mixed, and
 * one step in 8 waits in a barrier or a grace period). In a round with leavers worker 0 is mixed and
 * collects every 16 steps, so that they exit during collections. Its held objects stay in st->held for
 * the main thread (or a fork child). Exits attached or detached. */
static void lc_worker(stress_worker *w) {
    lc_state *st = w->arg;
    ouro_object **held = &st->held[(size_t)w->index * st->p->held];
    uint64_t *online = &st->online[w->index].ops;
    lc_doing(st, w->index, "ouro_thread_attach");
    if (!lc_attach(st) || (stress_rng_one_in(&w->rng, 4) && !lc_attach(st))) return;
    atomic_fetch_add(&st->attached, 1);
    bool collector = (st->features & LC_LEAVERS) && w->index == 0, ok = true;
    uint64_t style = collector ? 0 : stress_rng_below(&w->rng, 5); /* 0-2 mixed, 3 quiet, 4 waiter */
    uint64_t last_deferred = UINT64_MAX; /* the record of this worker's latest deferral */
    for (uint64_t step = 0; ok && lc_round_running(st); step++) {
        (*online)++; /* plain, online: the stop oracle */
        if (collector && step % 16 == 0) ok = lc_collect(w, st);
        else if (style == 3) ok = lc_quiet_step(w, st);
        else if (style == 4 && stress_rng_one_in(&w->rng, 8)) ok = lc_wait_step(w, st, &last_deferred);
        else ok = lc_worker_step(w, st, held, &last_deferred);
        stress_count_ops(w, 1);
        ouro_safepoint();
    }
    atomic_fetch_sub(&st->attached, 1);
    lc_doing(st, w->index, "exiting");
    if (stress_rng_one_in(&w->rng, 2)) ouro_thread_detach(); /* the others exit attached */
    lc_doing(st, w->index, "done");
}

/* The unattached stopper: never attaches (and never touches an object); stops and starts the world in a
 * loop, checking the workers' online counters while it holds the stop. */
static void lc_stopper(stress_worker *w) {
    lc_state *st = w->arg;
    uint64_t before[LC_WORKERS_MAX] = { 0 }, seen[LC_WORKERS_MAX];
    bool first = true;
    while (lc_round_running(st)) {
        lc_doing(st, w->index, "ouro_stop_the_world (not attached)");
        if (ouro_stop_the_world("lifecycle: unattached stopper") != 0) {
            lc_fail(st, "ouro_stop_the_world from a thread that never attached: %s", ouro_err_message());
            return;
        }
        lc_doing(st, w->index, "holding a stop (not attached)");
        for (unsigned i = 0; i < st->n; i++) seen[i] = st->online[i].ops;
        if (stress_rng_one_in(&w->rng, 8)) stress_sleep((double)stress_rng_range(&w->rng, 20, 200) * 1e-6);
        else for (volatile unsigned spin = (unsigned)stress_rng_below(&w->rng, 2000); spin; spin--) {
        }
        bool ok = true, progress = false;
        for (unsigned i = 0; ok && i < st->n; i++) {
            uint64_t now = st->online[i].ops;
            if (now != seen[i])
                ok = lc_fail(st, "worker %u's online counter moved from %llu to %llu while a thread that never "
                             "attached held the world stopped", i, (unsigned long long)seen[i], (unsigned long long)now);
            else if (seen[i] < before[i])
                ok = lc_fail(st, "worker %u's online counter went back from %llu to %llu between two stops", i,
                             (unsigned long long)before[i], (unsigned long long)seen[i]);
            progress |= seen[i] != before[i];
            before[i] = seen[i];
        }
        stress_count_checks(w, st->n);
        lc_doing(st, w->index, "ouro_start_the_world (not attached)");
        if (ouro_start_the_world() != 0) ok = lc_fail(st, "ouro_start_the_world: %s", ouro_err_message());
        if (!ok) return;
        atomic_fetch_add_explicit(&st->stops, 1, memory_order_relaxed);
        if (progress && !first) atomic_fetch_add_explicit(&st->stops_after_progress, 1, memory_order_relaxed);
        first = false;
        stress_count_ops(w, 1);
        lc_doing(st, w->index, "between stops");
        if (!stress_rng_one_in(&w->rng, 4)) stress_sleep((double)stress_rng_range(&w->rng, 10, 500) * 1e-6);
    }
    lc_doing(st, w->index, "done");
}

/* A leaver: attaches, makes nodes it owns and shares them (the table, the list, the dict, cycles with
 * the table's nodes), leaves young cyclic garbage, waits (polling safepoints) until a collection has
 * started, drops its own references and exits while it runs: attached (3 in 4; the exit hooks merge its
 * objects) or detached. The nodes others still reference must stay valid and be freed once. */
static void lc_leaver(stress_worker *w) {
    lc_state *st = w->arg;
    unsigned me = w->index;
    lc_doing(st, me, "leaver: attaching");
    if (!lc_attach(st)) return;
    atomic_fetch_add_explicit(&st->leavers, 1, memory_order_relaxed);
    ouro_object *own[LC_LEAVER_MAX] = { 0 };
    unsigned k = (unsigned)stress_rng_range(&w->rng, 2, st->p->leaver_objs);
    bool ok = true;
    lc_doing(st, me, "leaver: making and sharing");
    for (unsigned i = 0; ok && i < k; i++) {
        bool ring = stress_rng_one_in(&w->rng, 3);
        own[i] = ring ? lc_ring_new(st, &w->rng, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max))
                      : lnode_new(st, 0, 0, 0);
        if (!(ok = own[i] != NULL)) break;
        uint64_t how = stress_rng_below(&w->rng, 4);
        if (how == 0) {
            _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
            ok = lc_check_drop(st, atomic_exchange(slot, ouro_newref(own[i])), "displaced from the table by a leaver");
        } else if (how == 1) {
            ok = ouro_list_size(st->list) > st->p->list_max || ouro_list_append(st->list, own[i]) == 0 ||
                 lc_fail(st, "ouro_list_append: %s", ouro_err_message());
        } else if (how == 2) {
            ok = ouro_dict_set(st->dict, st->keys[stress_rng_below(&w->rng, st->p->keys)], own[i]) == 0 ||
                 lc_fail(st, "ouro_dict_set: %s", ouro_err_message());
        } else if (!ring) { /* own.next = x, x.aux = own: a cycle with another thread's node */
            _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
            ouro_object *x = atomic_exchange(slot, NULL);
            if (x) {
                ok = lnode_check(st, x, 0, 0, "taken by a leaver") &&
                     ((ouro_slot_set(own[i], LC_NEXT, x) == 0 && ouro_slot_set(x, LC_AUX, own[i]) == 0) ||
                      lc_fail(st, "a leaver's cycle: %s", ouro_err_message()));
                if (!lc_check_drop(st, atomic_exchange(slot, x), "displaced from the table by a leaver")) ok = false;
            }
        }
    }
    for (unsigned i = (unsigned)stress_rng_range(&w->rng, 0, 2); ok && i > 0; i--) { /* young garbage */
        ouro_object *g = lc_ring_new(st, &w->rng, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
        ok = g != NULL;
        ouro_xdecref(g);
    }
    lc_doing(st, me, "leaver: waiting for a collection");
    if (ok && !stress_rng_one_in(&w->rng, 4)) {
        double until = stress_now() + LC_WAIT_GC_S;
        while (atomic_load(&st->in_gc) == 0 && stress_now() < until && lc_round_running(st)) {
            ouro_safepoint();
            sched_yield();
        }
    }
    lc_doing(st, me, "leaver: dropping and exiting");
    for (unsigned i = 0; i < k; i++) ouro_xdecref(own[i]); /* the owner's drops: shared ones live on */
    if (atomic_load(&st->in_gc) > 0) atomic_fetch_add_explicit(&st->exits_mid_gc, 1, memory_order_relaxed);
    stress_count_ops(w, k + 1);
    if (stress_rng_one_in(&w->rng, 4)) ouro_thread_detach(); /* the others exit attached */
}

/* The leaver lane (not attached): one leaver after another until the round ends. */
static void lc_lane(stress_worker *w) {
    lc_state *st = w->arg;
    for (uint64_t k = 1; lc_round_running(st); k++) {
        lc_doing(st, w->index, "leaver lane: joining a leaver");
        if (!stress_run_threads(st->ctx, w->index, 1, (st->round << 20) | k, lc_leaver, st)) break;
    }
    lc_doing(st, w->index, "done");
}

/* Every thread of a round: workers 0..n-1, then the stopper's and the leaver lane's indexes (which return
 * at once when the round has none). */
static void lc_role(stress_worker *w) {
    lc_state *st = w->arg;
    if (w->index < st->n) lc_worker(w);
    else if (w->index == st->n && (st->features & LC_STOPPER)) lc_stopper(w);
    else if (w->index == st->n + 1 && (st->features & LC_LEAVERS)) lc_lane(w);
}

/* The launcher: a plain thread that runs the round's threads and joins them, so that the main thread
 * can fork meanwhile. */
static void *lc_launcher(void *arg) {
    lc_state *st = arg;
    stress_run_threads(st->ctx, 0, st->n + 2, st->round, lc_role, st);
    return NULL;
}

/* ---- fork children --------------------------------------------------------------------------------- */

static void lc_child_phase(lc_state *st, int phase) {
    atomic_store(&st->report->phase, phase);
}

/* ouro's fatal handler in a child: keeps the message for the parent (no allocation; ouro aborts after). */
static void lc_child_fatal(const char *message, void *arg) {
    lc_report *rep = arg;
    int none = 0;
    if (!atomic_compare_exchange_strong(&rep->failed, &none, atomic_load(&rep->phase))) return;
    static const char prefix[] = "ouro fatal: ";
    size_t at = sizeof prefix - 1;
    memcpy(rep->message, prefix, at);
    for (; *message && at + 1 < sizeof rep->message; message++) rep->message[at++] = *message;
    rep->message[at] = '\0';
}

typedef struct lc_child_args {
    lc_state *st;
    stress_rng rng;
} lc_child_args;

/* The child's fresh thread: see the fork oracle in the head comment. */
static void *lc_child_thread(void *arg) {
    lc_child_args *a = arg;
    lc_state *st = a->st;
    stress_rng *rng = &a->rng;
    lc_report *rep = st->report;
    lc_child_phase(st, LC_PH_ATTACH);
    if (!lc_attach(st)) return NULL;
    ouro_thread_set_name("lifecycle-child");
    lc_child_phase(st, LC_PH_MAKE);
    ouro_object *kept[8] = { 0 };
    bool ok = true;
    for (unsigned i = 0; ok && i < 16; i++) {
        ouro_object *o = lc_ring_new(st, rng, (uint32_t)stress_rng_range(rng, 1, st->p->ring_max));
        if (!(ok = o != NULL)) break;
        if (stress_rng_one_in(rng, 2)) ouro_setref(&kept[stress_rng_below(rng, 8)], o);
        else ouro_decref(o); /* garbage */
    }
    /* Everything the vanished workers left reachable: checked, dropped. */
    lc_child_phase(st, LC_PH_PREFORK);
    for (size_t i = 0; ok && i < (size_t)st->n * st->p->held; i++) {
        ouro_object *o = st->held[i];
        st->held[i] = NULL;
        if (o) rep->prefork_taken++;
        ok = lc_check_drop(st, o, "a vanished worker's held object, in a fork child");
    }
    for (size_t i = 0; ok && i < st->p->table; i++) {
        ouro_object *o = atomic_exchange(&st->table[i], NULL);
        if (o) rep->prefork_taken++;
        ok = lc_check_drop(st, o, "the table, in a fork child");
    }
    ouro_object *v;
    while (ok && (v = ouro_list_pop(st->list, -1))) {
        rep->prefork_taken++;
        ok = lc_check_drop(st, v, "popped from the shared list in a fork child");
    }
    ouro_err_clear();
    for (size_t i = 0; ok && i < st->p->keys; i++) {
        if (!(v = ouro_dict_pop(st->dict, st->keys[i], NULL))) {
            if (ouro_err_occurred() != OURO_ERR_KEY) ok = lc_fail(st, "ouro_dict_pop in a fork child: %s", ouro_err_message());
            ouro_err_clear();
            continue;
        }
        rep->prefork_taken++;
        ok = lc_check_drop(st, v, "popped from the shared dict in a fork child");
    }
    for (unsigned i = 0; i < 8; i++) {
        if (ok && kept[i]) ok = lc_walk(st, kept[i], "a ring made in a fork child");
        ouro_xdecref(kept[i]);
    }
    lc_child_phase(st, LC_PH_COLLECT);
    for (int i = 0; ok && i < 2; i++)
        if (ouro_gc_collect(2) < 0) ok = lc_fail(st, "ouro_gc_collect(2) in a fork child: %s", ouro_err_message());
    lc_child_phase(st, LC_PH_DEFER);
    unsigned m = 0, batches = (unsigned)stress_rng_range(rng, st->p->child_batches / 4, st->p->child_batches);
    for (unsigned b = 1; ok && b <= batches; b++) { /* batches of callbacks, each waited for */
        for (unsigned i = (unsigned)stress_rng_range(rng, 1, 32); ok && i > 0 && m < LC_CHILD_DEFERS; i--, m++)
            if (ouro_defer(lc_deferred, (void *)(((uintptr_t)LC_CHILD_TAG << 32) | m)) != 0)
                ok = lc_fail(st, "ouro_defer in a fork child: %s", ouro_err_message());
        if (ok && ouro_defer_barrier() != 0) ok = lc_fail(st, "ouro_defer_barrier in a fork child: %s", ouro_err_message());
        for (unsigned i = 0; ok && i < LC_CHILD_DEFERS; i++) {
            uint32_t runs = atomic_load(&st->child_runs[i]);
            if (runs != (i < m ? 1u : 0u))
                ok = lc_fail(st, "the fork child's deferred callback %u (of %u, batch %u of %u) ran %u times after "
                             "ouro_defer_barrier (expected %u)", i, m, b, batches, runs, i < m ? 1u : 0u);
        }
    }
    uint64_t next = atomic_load(&st->defer_next);
    if (next > st->p->defers) next = st->p->defers;
    for (uint64_t id = 0; ok && id < next; id++) {
        uint32_t state = atomic_load(&st->defer_state[id]), runs = atomic_load(&st->defer_runs[id]);
        if (state == 2 && runs != 1)
            ok = lc_fail(st, "deferred callback %llu (deferred before the fork) ran %u times in the child after its "
                         "ouro_defer_barrier (expected exactly once, in the parent or the child)", (unsigned long long)id, runs);
        else if (runs > 1)
            ok = lc_fail(st, "deferred callback %llu (being deferred at the fork) ran %u times in the child",
                         (unsigned long long)id, runs);
        else if (state == 2) rep->prefork_deferred++;
        else rep->prefork_in_flight++;
    }
    if (ok && atomic_load(&st->defer_late))
        ok = lc_fail(st, "%llu deferred callbacks of the parent's earlier rounds ran in a fork child",
                     (unsigned long long)atomic_load(&st->defer_late));
    lc_child_phase(st, LC_PH_CHECK);
    if (ok && ouro_alloc_check() != 0) lc_fail(st, "ouro_alloc_check on a fork child's fresh thread: %s", ouro_err_message());
    lc_child_phase(st, LC_PH_THREAD_EXIT);
    if (stress_rng_one_in(rng, 2)) ouro_thread_detach(); /* or exit attached */
    return NULL;
}

/* The child's program; never returns. attached / held_stop: the main thread's state at the fork. */
static _Noreturn void lc_child_main(lc_state *st, bool attached, bool held_stop, unsigned index) {
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL); /* the parent reports */
    lc_report *rep = st->report;
    ouro_set_fatal_handler(lc_child_fatal, rep);
    st->in_child = true;
    st->child_serial0 = atomic_load(&st->made);
    lc_child_phase(st, LC_PH_FORKED);
    lc_child_args a = { .st = st };
    stress_rng_seed(&a.rng, st->ctx->seed, st->ctx->scenario->name, ((uint64_t)1 << 62) ^ (st->round << 8) ^ index);
    bool offline = false, ok = true;
    if (held_stop) {
        lc_child_phase(st, LC_PH_START_WORLD);
        if (ouro_start_the_world() != 0) ok = lc_fail(st, "ouro_start_the_world in a fork child: %s", ouro_err_message());
    }
    if (ok) {
        lc_child_phase(st, LC_PH_THREAD);
        pthread_t t;
        if (pthread_create(&t, NULL, lc_child_thread, &a) != 0) {
            ok = lc_fail(st, "pthread_create in a fork child failed");
        } else {
            if (attached) { /* a blocked attached thread would stall the fresh thread's stops */
                if (stress_rng_one_in(&a.rng, 2)) ouro_thread_detach();
                else offline = ouro_offline_begin() == 0;
            }
            lc_child_phase(st, LC_PH_JOIN);
            pthread_join(t, NULL);
            if (offline) ouro_offline_end();
            ok = !lc_failed(st);
        }
    }
    if (ok) {
        lc_child_phase(st, LC_PH_CLEANUP);
        ok = lc_attach(st);
        ouro_xdecref(st->list);
        ouro_xdecref(st->dict);
        for (size_t i = 0; i < st->p->keys; i++) ouro_xdecref(st->keys[i]);
        long got = 0;
        for (int i = 0; ok && i < 4 && (got = ouro_gc_collect(2)) > 0; i++) {
        }
        if (ok && got < 0) ok = lc_fail(st, "ouro_gc_collect(2) in a fork child: %s", ouro_err_message());
    }
    if (ok) {
        lc_child_phase(st, LC_PH_FINAL_CHECK);
        uint64_t made = atomic_load(&st->made) - st->child_serial0, freed = atomic_load(&st->child_freed);
        rep->child_nodes = made;
        ouro_type_stats s;
        ouro_type_get_stats(st->type, &s);
        rep->stranded = s.live;
        if (freed != made)
            ok = lc_fail(st, "%llu nodes made in the fork child, %llu freed after dropping them and collecting",
                         (unsigned long long)made, (unsigned long long)freed);
        else if (ouro_alloc_check() != 0)
            ok = lc_fail(st, "ouro_alloc_check on a fork child's main thread: %s", ouro_err_message());
    }
    if (ok) {
        ouro_thread_detach();
        lc_child_phase(st, LC_PH_FINI);
        if (ouro_fini() != 0) ok = lc_fail(st, "ouro_fini in a fork child (nothing else attached): %s", ouro_err_message());
    }
    if (ok) lc_child_phase(st, LC_PH_DONE);
    int failed = atomic_load(&rep->failed);
    _exit(failed ? 10 + failed : 0);
}

/* Waits for a child (polling, so that a hang is caught): false with a failure naming what happened. */
static bool lc_wait_child(lc_state *st, pid_t pid, unsigned index) {
    lc_report *rep = st->report;
    double deadline = stress_now() + LC_CHILD_TIMEOUT_S;
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        if (stress_now() > deadline) {
            int phase = atomic_load(&rep->phase);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return lc_fail(st, "fork child %u of round %llu hung for %g s in \"%s\" (killed)%s%s", index,
                           (unsigned long long)st->round, LC_CHILD_TIMEOUT_S,
                           lc_phase_names[phase > 0 && phase < LC_PH_COUNT ? phase : 0],
                           rep->message[0] ? "; it said: " : "", rep->message);
        }
        atomic_fetch_add_explicit(&st->progress, 1, memory_order_relaxed); /* the child's own timeout rules */
        stress_sleep(0.001);
    }
    if (r < 0) return lc_fail(st, "waitpid: %s", strerror(errno));
    int phase = atomic_load(&rep->failed);
    if (!phase) phase = atomic_load(&rep->phase);
    const char *where = lc_phase_names[phase > 0 && phase < LC_PH_COUNT ? phase : 0];
    if (WIFSIGNALED(status))
        return lc_fail(st, "fork child %u of round %llu killed by signal %d (%s) in \"%s\"%s%s", index,
                       (unsigned long long)st->round, WTERMSIG(status), strsignal(WTERMSIG(status)), where,
                       rep->message[0] ? ": " : "", rep->message);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return lc_fail(st, "fork child %u of round %llu exited with status %d in \"%s\": %s", index,
                       (unsigned long long)st->round, WIFEXITED(status) ? WEXITSTATUS(status) : -1, where,
                       rep->message[0] ? rep->message : "(no message)");
    st->children_ok++;
    st->stranded += rep->stranded;
    st->prefork_taken += rep->prefork_taken;
    st->prefork_deferred += rep->prefork_deferred;
    st->child_nodes += rep->child_nodes;
    return true;
}

/* One fork of the storm, from the main thread: attached or not, now and then holding a stop across it. */
static bool lc_fork_one(stress_worker *mw, lc_state *st, unsigned index) {
    bool attached = stress_rng_one_in(&mw->rng, 2), hold = stress_rng_one_in(&mw->rng, 4);
    memset(st->report, 0, sizeof *st->report);
    if (attached && !lc_attach(st)) return false;
    if (hold && ouro_stop_the_world("lifecycle: fork") != 0) return lc_fail(st, "ouro_stop_the_world: %s", ouro_err_message());
    lc_phase(st, "fork()");
    pid_t pid = fork();
    if (pid == 0) lc_child_main(st, attached, hold, index);
    int err = errno;
    bool ok = true;
    if (hold && ouro_start_the_world() != 0) ok = lc_fail(st, "ouro_start_the_world after fork: %s", ouro_err_message());
    if (pid < 0) ok = lc_fail(st, "fork: %s", strerror(err));
    if (attached) ouro_offline_begin(); /* waiting: a blocked attached thread stalls stops */
    st->forks++;
    lc_phase(st, "waiting for a fork child");
    if (pid > 0 && !lc_wait_child(st, pid, index)) ok = false;
    if (attached) {
        ouro_offline_end();
        ouro_thread_detach();
    }
    return ok;
}

/* ouro_fini() while the workers are attached: refused with OURO_ERR_STATE. */
static bool lc_fini_busy(stress_worker *mw, lc_state *st) {
    lc_phase(st, "waiting for the workers to attach");
    double until = stress_now() + 5.0;
    while (atomic_load(&st->attached) < st->n && lc_round_running(st) && stress_now() < until) stress_sleep(0.0005);
    unsigned attached = atomic_load(&st->attached);
    if (attached == 0 || !lc_round_running(st)) return true; /* nothing to check against */
    bool me = stress_rng_one_in(&mw->rng, 2);
    if (me && !lc_attach(st)) return false;
    lc_phase(st, "ouro_fini while workers are attached");
    ouro_err_clear();
    int rc = ouro_fini();
    ouro_err rc_err = ouro_err_occurred();
    bool ok = true;
    if (rc == 0)
        ok = lc_fail(st, "ouro_fini returned 0 while %u workers were attached (round %llu)", attached,
                     (unsigned long long)st->round);
    else if (rc_err != OURO_ERR_STATE)
        ok = lc_fail(st, "ouro_fini while %u workers were attached: -1 with error %d (%s), OURO_ERR_STATE expected",
                     attached, (int)rc_err, ouro_err_message());
    ouro_err_clear();
    if (me && rc != 0) ouro_thread_detach();
    st->fini_refused += ok;
    st->fini_refused_now = true;
    return ok;
}

/* ---- a round ------------------------------------------------------------------------------------- */

#define LC_WATCHED 3 /* list, dict, str */

typedef struct lc_round_base {
    ouro_type_stats watched[LC_WATCHED];
    uint64_t made, freed, finalized, freed_finalized, collected;
} lc_round_base;

static uint64_t lc_collected_total(void) {
    ouro_gc_gen_stats s[OURO_GC_GENERATIONS];
    ouro_gc_get_stats(s);
    uint64_t c = 0;
    for (int g = 0; g < OURO_GC_GENERATIONS; g++) c += s[g].collected;
    return c;
}

static const ouro_type *const lc_watched[LC_WATCHED] = { &ouro_list_type, &ouro_dict_type, &ouro_str_type };

/* Collects fully until nothing is found (4 at most); false with a failure. */
static bool lc_collect_all(lc_state *st, const char *when) {
    long got = 0;
    for (int i = 0; i < 4 && (got = ouro_gc_collect(2)) > 0; i++) {
    }
    if (got < 0) return lc_fail(st, "ouro_gc_collect(2) %s: %s", when, ouro_err_message());
    if (got > 0) return lc_fail(st, "full collections %s still find garbage after 4 (%ld)", when, got);
    return true;
}

/* The node type's live count must be 0 and the watched types' at their start. */
static bool lc_check_live(stress_worker *mw, lc_state *st, const lc_round_base *b, const char *when) {
    ouro_type_stats s;
    ouro_type_get_stats(st->type, &s);
    if (s.live != 0)
        return lc_fail(st, "%s: %zu stress-lc-node objects alive, 0 expected (%llu made, %llu freed so far)", when, s.live,
                       (unsigned long long)atomic_load(&st->made), (unsigned long long)atomic_load(&st->freed));
    for (int i = 0; i < LC_WATCHED; i++) {
        ouro_type_get_stats(lc_watched[i], &s);
        if (s.live != b->watched[i].live)
            return lc_fail(st, "%s: %zu %s objects alive, %zu at the start", when, s.live, lc_watched[i]->name,
                           b->watched[i].live);
    }
    stress_count_checks(mw, 1 + LC_WATCHED);
    return true;
}

/* The counts of nodes and finalizers since b. */
static bool lc_check_counts(stress_worker *mw, lc_state *st, const lc_round_base *b, const char *when) {
    uint64_t made = atomic_load(&st->made) - b->made, freed = atomic_load(&st->freed) - b->freed;
    uint64_t fin = atomic_load(&st->finalized) - b->finalized, fin_freed = atomic_load(&st->freed_finalized) - b->freed_finalized;
    uint64_t collected = lc_collected_total() - b->collected;
    if (made != freed)
        return lc_fail(st, "%s: %llu nodes made, %llu freed", when, (unsigned long long)made, (unsigned long long)freed);
    if (fin != fin_freed)
        return lc_fail(st, "%s: %llu finalizer calls, %llu finalized nodes freed", when, (unsigned long long)fin,
                       (unsigned long long)fin_freed);
    if (collected < fin)
        return lc_fail(st, "%s: the collections freed %llu objects, fewer than the %llu nodes finalized", when,
                       (unsigned long long)collected, (unsigned long long)fin);
    if (atomic_load(&st->bad_canary) || atomic_load(&st->refinalized) || atomic_load(&st->cyclic_unfinalized))
        return lc_fail(st, "%s: %llu bad canaries, %llu nodes finalized twice, %llu ring nodes freed unfinalized", when,
                       (unsigned long long)atomic_load(&st->bad_canary), (unsigned long long)atomic_load(&st->refinalized),
                       (unsigned long long)atomic_load(&st->cyclic_unfinalized));
    stress_count_checks(mw, 4);
    return true;
}

/* Takes the round's base counts (the main thread, attached, after a full collection). */
static void lc_take_base(lc_state *st, lc_round_base *b) {
    for (int i = 0; i < LC_WATCHED; i++) ouro_type_get_stats(lc_watched[i], &b->watched[i]);
    b->made = atomic_load(&st->made);
    b->freed = atomic_load(&st->freed);
    b->finalized = atomic_load(&st->finalized);
    b->freed_finalized = atomic_load(&st->freed_finalized);
    b->collected = lc_collected_total();
}

/* The round's containers and records (main thread, attached). */
static bool lc_round_setup(lc_state *st) {
    memset(st->online, 0, sizeof st->online);
    memset((void *)st->table, 0, st->p->table * sizeof *st->table);
    memset(st->held, 0, (size_t)st->n * st->p->held * sizeof *st->held);
    memset((void *)st->defer_state, 0, st->p->defers * sizeof *st->defer_state);
    memset((void *)st->defer_runs, 0, st->p->defers * sizeof *st->defer_runs);
    atomic_store(&st->defer_next, 0);
    atomic_store(&st->round_tag, (uint32_t)st->round);
    atomic_store(&st->round_stop, false);
    atomic_store(&st->attached, 0);
    st->list = ouro_list_new(0);
    st->dict = ouro_dict_new();
    if (!st->list || !st->dict) return lc_fail(st, "round set-up: %s", ouro_err_message());
    for (size_t i = 0; i < st->p->keys; i++)
        if (!(st->keys[i] = ouro_str_from_format("lifecycle-key-%zu", i)))
            return lc_fail(st, "ouro_str_from_format: %s", ouro_err_message());
    return true;
}

/* Drops everything the round left (main thread, attached, the round's threads joined), checking it. */
static bool lc_round_drop(lc_state *st) {
    bool ok = true;
    for (size_t i = 0; i < (size_t)st->n * st->p->held; i++) {
        ouro_object *o = st->held[i];
        st->held[i] = NULL;
        if (ok) ok = lc_check_drop(st, o, "left held by a worker");
        else ouro_xdecref(o);
    }
    for (size_t i = 0; i < st->p->table; i++) {
        ouro_object *o = atomic_exchange(&st->table[i], NULL);
        if (ok) ok = lc_check_drop(st, o, "left in the table");
        else ouro_xdecref(o);
    }
    if (st->list) {
        size_t pos = 0;
        ouro_object *v;
        while (ok && ouro_list_iter_next(st->list, &pos, &v) == 1) ok = lc_check_drop(st, v, "left in the shared list");
        ouro_decref(st->list);
        st->list = NULL;
    }
    if (st->dict) {
        for (size_t i = 0; ok && i < st->p->keys; i++) {
            ouro_object *v = NULL;
            if (ouro_dict_get_ref(st->dict, st->keys[i], &v) < 0) ok = lc_fail(st, "ouro_dict_get_ref: %s", ouro_err_message());
            else ok = lc_check_drop(st, v, "left in the shared dict");
        }
        ouro_decref(st->dict);
        st->dict = NULL;
    }
    for (size_t i = 0; i < st->p->keys; i++) {
        ouro_xdecref(st->keys[i]);
        st->keys[i] = NULL;
    }
    return ok;
}

/* One fini/init cycle: ouro_fini() succeeds with nothing else attached, then the runtime is used again:
 * attach (or not: the first object attaches), deferrals waited for, a ring and a list made, dropped and
 * collected, counts back. */
static bool lc_fini_cycle(stress_worker *mw, lc_state *st, const lc_round_base *b, unsigned cycle) {
    char when[96];
    snprintf(when, sizeof when, "fini/init cycle %u after round %llu", cycle, (unsigned long long)st->round);
    lc_phase(st, "ouro_fini with nothing else attached");
    if (ouro_fini() != 0) return lc_fail(st, "%s: ouro_fini with no other thread attached: %s", when, ouro_err_message());
    st->fini_ok++;
    if (stress_rng_one_in(&mw->rng, 2) && !lc_attach(st)) return false;
    lc_phase(st, "ouro_defer + ouro_defer_barrier after ouro_fini");
    unsigned k = (unsigned)stress_rng_range(&mw->rng, 1, 16);
    for (unsigned i = 0; i < k; i++)
        if (!lc_defer_one(st, NULL)) return false;
    if (ouro_defer_barrier() != 0) return lc_fail(st, "%s: ouro_defer_barrier: %s", when, ouro_err_message());
    if (!lc_check_defers(st, when)) return false;
    lc_phase(st, "objects and a collection after ouro_fini");
    ouro_object *ring = lc_ring_new(st, &mw->rng, (uint32_t)stress_rng_range(&mw->rng, 1, st->p->ring_max));
    if (!ring) return false;
    bool ok = lc_walk(st, ring, when);
    ouro_object *l = ouro_list_new(0);
    if (!l || ouro_list_append(l, ring) != 0 || ouro_list_append(l, l) != 0) ok = lc_fail(st, "%s: a list: %s", when, ouro_err_message());
    ouro_xdecref(l);
    ouro_decref(ring);
    if (ok) ok = lc_collect_all(st, when);
    if (ok) ok = lc_check_live(mw, st, b, when) && lc_check_counts(mw, st, b, when);
    stress_count_checks(mw, 1);
    return ok;
}

static const char *const lc_mix_names[] = { "fork", "stopper", "leavers", "fini-busy", "fini" };

static const char *lc_feature_names(unsigned f, char *buf, size_t len) {
    const char *const *names = lc_mix_names;
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < 5; i++)
        if (f & (1u << i)) at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%s", at ? "+" : "", names[i]);
    if (!at) snprintf(buf, len, "workers only");
    return buf;
}

static bool lc_round(stress_worker *mw, lc_state *st) {
    stress_ctx *ctx = mw->ctx;
    stress_rng *rng = &mw->rng;
    st->round++;
    st->features = (unsigned)stress_rng_below(rng, LC_ALL_FEATURES + 1);
    if (!st->features) st->features = 1u << stress_rng_below(rng, 5);
    st->features &= st->allowed;
    st->fini_refused_now = false;
    for (int i = 0; i < 5; i++) st->by_feature[i] += (st->features >> i) & 1;
    char fbuf[64];
    lc_feature_names(st->features, fbuf, sizeof fbuf);
    lc_phase(st, "round set-up");
    if (!lc_attach(st)) return false;
    lc_round_base b;
    lc_take_base(st, &b);
    bool ok = lc_round_setup(st);
    ouro_thread_detach(); /* not attached while the round runs: a sleeping attached thread stalls stops */
    if (!ok) return false;

    double length = st->p->round_min_s + (st->p->round_max_s - st->p->round_min_s) * (double)stress_rng_below(rng, 1001) / 1000.0;
    double deadline = stress_now() + length;
    unsigned forks = st->features & LC_FORK ? (unsigned)stress_rng_range(rng, 1, st->p->forks) : 0;
    unsigned busy_at = st->features & LC_FINI_BUSY ? (unsigned)stress_rng_range(rng, 0, forks) : ~0u;
    pthread_t launcher;
    if (pthread_create(&launcher, NULL, lc_launcher, st) != 0) return lc_fail(st, "pthread_create of the launcher failed");
    for (unsigned e = 0; ok && e <= forks && lc_round_running(st); e++) {
        lc_phase(st, "round: sleeping between events");
        double gap = (deadline - stress_now()) / (double)(forks + 1 - e) * (double)stress_rng_range(rng, 20, 100) / 100.0;
        if (gap > 0) stress_sleep(gap);
        if (e == busy_at) ok = lc_fini_busy(mw, st);
        if (ok && e < forks) ok = lc_fork_one(mw, st, e);
    }
    lc_phase(st, "round: waiting for its end");
    while (ok && stress_now() < deadline && lc_round_running(st)) stress_sleep(0.002);
    atomic_store(&st->round_stop, true);
    lc_phase(st, "joining the round's threads");
    pthread_join(launcher, NULL);
    if (stress_failed(ctx)) return false;

    char when[128];
    snprintf(when, sizeof when, "after round %llu (%s)", (unsigned long long)st->round, fbuf);
    lc_phase(st, "round end: dropping what the round left");
    if (!lc_attach(st)) return false;
    ok = lc_round_drop(st);
    lc_phase(st, "round end: collecting");
    if (ok) ok = lc_collect_all(st, when);
    lc_phase(st, "round end: ouro_defer_barrier");
    if (ok && ouro_defer_barrier() != 0) ok = lc_fail(st, "%s: ouro_defer_barrier: %s", when, ouro_err_message());
    lc_phase(st, "round end: checks");
    if (ok) ok = lc_check_defers(st, when);
    if (ok) ok = lc_check_live(mw, st, &b, when) && lc_check_counts(mw, st, &b, when);
    if (ok && ouro_alloc_check() != 0) ok = lc_fail(st, "%s: ouro_alloc_check: %s", when, ouro_err_message());
    stress_count_checks(mw, 2);
    if (ok && (st->features & LC_FINI_CYCLES)) {
        unsigned cycles = (unsigned)stress_rng_range(rng, 1, 3);
        for (unsigned c = 1; ok && c <= cycles; c++) ok = lc_fini_cycle(mw, st, &b, c);
    }
    ouro_thread_detach();
    st->rounds++;
    stress_count_ops(mw, 1);
    return ok;
}

/* ---- the watchdog and the run --------------------------------------------------------------------- */

/* Fails the whole run (a FAIL line with the reproduce command, exit status 1) when the main thread makes
 * no progress for LC_HANG_S: a stop, a barrier or a join that never returns. */
static void *lc_watchdog(void *arg) {
    lc_state *st = arg;
    uint64_t last = atomic_load(&st->progress);
    double since = stress_now();
    while (!atomic_load(&st->watchdog_done)) {
        stress_sleep(0.05);
        uint64_t p = atomic_load(&st->progress);
        double now = stress_now();
        if (p != last) {
            last = p;
            since = now;
            continue;
        }
        if (now - since < LC_HANG_S) continue;
        char buf[2048];
        char fbuf[64];
        int at = snprintf(buf, sizeof buf, "\nFAIL lifecycle: no progress for %.0f s: the main thread is in \"%s\" "
                          "(round %llu: %s%s); threads:", LC_HANG_S, atomic_load(&st->phase), (unsigned long long)st->round,
                          lc_feature_names(st->features, fbuf, sizeof fbuf),
                          st->fini_refused_now ? "; ouro_fini was refused while workers were attached" : "");
        for (unsigned i = 0; i < st->n + 2 && at < (int)sizeof buf; i++) {
            const char *d = atomic_load_explicit(&st->doing[i], memory_order_relaxed);
            if (d) at += snprintf(buf + at, sizeof buf - (size_t)at, " [%u] %s;", i, d);
        }
        if (at < (int)sizeof buf) snprintf(buf + at, sizeof buf - (size_t)at, " — reproduce: %s\n", st->ctx->repro);
        ssize_t unused = write(STDERR_FILENO, buf, strlen(buf));
        (void)unused;
        _exit(1);
    }
    return NULL;
}

/* LIFECYCLE_MIX (environment): a comma-separated subset of lc_mix_names that rounds may draw from, to
 * isolate one defect; unset or empty: all. */
static bool lc_parse_mix(lc_state *st) {
    const char *mix = getenv("LIFECYCLE_MIX");
    st->allowed = LC_ALL_FEATURES;
    if (!mix || !*mix) return true;
    st->allowed = 0;
    for (const char *s = mix; *s;) {
        size_t len = strcspn(s, ",");
        unsigned bit = 0;
        for (unsigned i = 0; i < 5; i++)
            if (strlen(lc_mix_names[i]) == len && strncmp(s, lc_mix_names[i], len) == 0) bit = 1u << i;
        if (!bit)
            return stress_fail(st->ctx, "LIFECYCLE_MIX=%s: unknown mix '%.*s' (fork, stopper, leavers, fini-busy, fini)",
                               mix, (int)len, s);
        st->allowed |= bit;
        s += len + (s[len] == ',');
    }
    stress_note(st->ctx, "LIFECYCLE_MIX=%s: rounds draw from these mixes only", mix);
    return true;
}

static bool lifecycle(stress_ctx *ctx) {
    lc_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->ctx = ctx;
    st->p = ctx->short_run ? &lc_short : &lc_full;
    st->n = ctx->threads < 2 ? 2 : ctx->threads > LC_WORKERS_MAX ? LC_WORKERS_MAX : ctx->threads;
    if (ctx->threads < 2) stress_note(ctx, "--threads %u: running 2 workers", ctx->threads);
    lc_current = st;
    if (!lc_parse_mix(st)) {
        stress_unmap(st, sizeof *st);
        return false;
    }
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    size_t held_bytes = (size_t)st->n * st->p->held * sizeof *st->held;
    st->keys = stress_map(ctx, st->p->keys * sizeof *st->keys);
    st->table = stress_map(ctx, st->p->table * sizeof *st->table);
    st->held = stress_map(ctx, held_bytes);
    st->defer_state = stress_map(ctx, st->p->defers * sizeof *st->defer_state);
    st->defer_runs = stress_map(ctx, st->p->defers * sizeof *st->defer_runs);
    st->report = mmap(NULL, sizeof *st->report, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (st->report == MAP_FAILED) {
        st->report = NULL;
        stress_fail(ctx, "mmap of the fork children's report page: %s", strerror(errno));
    }
    bool ok = false, cb = false, watchdog = false, was_enabled = ouro_gc_is_enabled();
    pthread_t wd;
    static const char *const slots[] = { "next", "aux", NULL };
    ouro_type_spec spec = { .name = "stress-lc-node", .basic_size = sizeof(lnode), .flags = OURO_TYPE_GC,
                            .slots = slots, .dealloc = lnode_dealloc, .finalize = lnode_finalize };
    if (!st->keys || !st->table || !st->held || !st->defer_state || !st->defer_runs || !st->report) goto out;
    if (!(watchdog = pthread_create(&wd, NULL, lc_watchdog, st) == 0)) {
        stress_fail(ctx, "pthread_create of the watchdog failed");
        goto out;
    }
    ouro_gc_enable(); /* automatic collections too, at the default thresholds */
    /* The baseline: a clean heap, nothing attached, the reclaimer stopped. */
    lc_phase(st, "start: baseline");
    if (ouro_gc_collect(2) < 0) {
        stress_fail(ctx, "ouro_gc_collect at the start: %s", ouro_err_message());
        goto out;
    }
    if (!stress_start_baseline(ctx, &st->base, &spec, &st->type)) goto out;
    if (!(cb = ouro_gc_callback_add(lc_gc_callback, st) == 0)) {
        stress_fail(ctx, "ouro_gc_callback_add: %s", ouro_err_message());
        goto out;
    }
    ouro_thread_detach();
    ok = true;
    do ok = lc_round(&mw, st);
    while (ok && stress_running(ctx));
    ok = ok && !stress_failed(ctx);
    stress_note(ctx, "%llu rounds (fork %llu, stopper %llu, leavers %llu, fini-busy %llu, fini %llu); %llu forks, "
                "%llu children ok (they took %llu pre-fork nodes, checked %llu pre-fork deferrals, made %llu nodes; "
                "%llu pre-fork nodes stranded); %llu ouro_fini refused while attached, %llu fini/init cycles; %llu "
                "unattached stops (%llu after progress); %llu leavers (%llu exited during a collection); %llu nodes "
                "(%llu finalized), %llu cross-thread cycles, %llu deferrals, %llu barriers and grace periods in workers, %llu "
                "explicit collections",
                (unsigned long long)st->rounds, (unsigned long long)st->by_feature[0], (unsigned long long)st->by_feature[1],
                (unsigned long long)st->by_feature[2], (unsigned long long)st->by_feature[3],
                (unsigned long long)st->by_feature[4], (unsigned long long)st->forks, (unsigned long long)st->children_ok,
                (unsigned long long)st->prefork_taken, (unsigned long long)st->prefork_deferred,
                (unsigned long long)st->child_nodes, (unsigned long long)st->stranded,
                (unsigned long long)st->fini_refused, (unsigned long long)st->fini_ok,
                (unsigned long long)atomic_load(&st->stops), (unsigned long long)atomic_load(&st->stops_after_progress),
                (unsigned long long)atomic_load(&st->leavers), (unsigned long long)atomic_load(&st->exits_mid_gc),
                (unsigned long long)atomic_load(&st->made), (unsigned long long)atomic_load(&st->finalized),
                (unsigned long long)atomic_load(&st->cross), (unsigned long long)atomic_load(&st->deferred),
                (unsigned long long)atomic_load(&st->waits),
                (unsigned long long)atomic_load(&st->collects));
    if (ok && atomic_load(&st->stops) >= 8 && atomic_load(&st->stops_after_progress) == 0)
        ok = stress_fail(ctx, "%llu unattached stops, none after any worker progressed: nothing was tested",
                         (unsigned long long)atomic_load(&st->stops));
out:
    lc_phase(st, "the end: ouro_fini and the allocator baseline");
    if (st->type) {
        ouro_thread_attach();
        if (cb) ouro_gc_callback_remove(lc_gc_callback, st);
        ouro_gc_collect(2);
        ouro_thread_detach();
        if (ok && ouro_type_free(st->type) != 0) ok = stress_fail(ctx, "ouro_type_free: %s", ouro_err_message());
        if (ok && ouro_fini() != 0) ok = stress_fail(ctx, "ouro_fini at the end: %s", ouro_err_message());
        if (ok) {
            ouro_alloc_collect();
            ok = stress_expect_alloc_baseline(&mw, &st->base);
        }
    }
    if (!was_enabled) ouro_gc_disable();
    ouro_defer_barrier(); /* no callback of ours may run once st is unmapped */
    if (watchdog) {
        atomic_store(&st->watchdog_done, true);
        pthread_join(wd, NULL);
    }
    if (st->report) munmap(st->report, sizeof *st->report);
    stress_unmap(st->keys, st->p->keys * sizeof *st->keys);
    stress_unmap((void *)st->table, st->p->table * sizeof *st->table);
    stress_unmap(st->held, held_bytes);
    stress_unmap((void *)st->defer_state, st->p->defers * sizeof *st->defer_state);
    stress_unmap((void *)st->defer_runs, st->p->defers * sizeof *st->defer_runs);
    stress_unmap(st, sizeof *st);
    return ok && !stress_failed(ctx);
}

const stress_scenario stress_lifecycle_scenarios[] = {
    { "lifecycle", "fork storms while threads share and collect, fini/init cycles, unattached stoppers, exits "
                   "during collections, deferred callbacks counted", lifecycle },
    { NULL, NULL, NULL },
};
