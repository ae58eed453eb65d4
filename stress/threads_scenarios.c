/* stress/threads_scenarios.c — the thread runtime's stress scenarios (threads/: stops, attach, RCU).
 *
 *   stw-storm     one thread stops the world in a loop; the others allocate, free and trade blocks
 *   thread-churn  short-lived threads attach, publish blocks, go offline and detach (or exit attached)
 *                 while a thread that is not attached stops the world in a loop
 *   rcu-torture   liburcu's rcutorture on ouro's grace periods: readers, updaters that retire through
 *                 ouro_synchronize() and ouro_defer(), an age histogram
 *
 * The stop oracle (stw-storm, thread-churn, rcu-torture's occasional stops). Every worker that runs
 * online bumps a plain counter of its own (threads_state.online) while it is online, and only then. A
 * stopper reads the watched counters twice while it holds the stop, a random hold apart: they must not
 * move (every other attached thread is parked or offline), and from one of its stops to the next they
 * must never go backwards. The counters are plain on purpose: under ThreadSanitizer, a stop that gives
 * no happens-before edge from a worker's last write to the stopper's reads (or from the start of the
 * world to the worker's next write) is a reported race. Progress (stw-storm, thread-churn): every
 * watched counter must have moved between two consecutive stops at least once, so a run whose stops
 * never overlapped any work fails rather than passing trivially.
 *
 * The block oracle (stw-storm, thread-churn). Blocks are self-describing: a header (size, tag, the
 * allocating thread's index and generation), then a canary pattern over the rest, checked in full by
 * whichever thread frees the block (stress_canary_verify).
 *
 * The end oracle (all three), on the main thread once every worker is joined: ouro_fini() succeeds
 * (no thread is left attached: every detach, explicit or by the thread-exit hook, unregistered its
 * thread; it also stops the reclaimer, which ouro_defer() restarts when needed), and after
 * ouro_alloc_collect() the blocks in use per class, the large blocks and bytes and the live heaps are
 * back at the baseline taken (after the same ouro_fini()) at the start.
 *
 * rcu-torture's oracle is described above its section. */
#include "stress/stress.h"

#include <ouro.h>

#include <stdio.h>
#include <string.h>

/* ---- parameters: every size knob in one place ---------------------------------------------------- */

typedef struct threads_params {
    size_t slots;     /* stw-storm's transfer array, thread-churn's pool */
    size_t live;      /* stw-storm: blocks a mutator keeps */
    size_t batch;     /* thread-churn: most blocks a child allocates per round */
    size_t rounds;    /* thread-churn: most rounds in a child's life */
    size_t min_gens;  /* thread-churn: children each lane runs at least, whatever the time */
    size_t rcu_words; /* rcu-torture: most payload words of an element */
} threads_params;

static const threads_params threads_full = {
    .slots = 1024, .live = 256, .batch = 32, .rounds = 6, .min_gens = 4, .rcu_words = 62,
};

/* --short: sanitizer builds; every path is still taken. */
static const threads_params threads_short = {
    .slots = 64, .live = 32, .batch = 8, .rounds = 3, .min_gens = 4, .rcu_words = 30,
};

#define THREADS_SLOTS_MAX 1024
#define THREADS_BATCH_MAX 32
#define THREADS_HEADER 32          /* bytes of a self-describing block's header */
#define THREADS_RCU_PIPE_LEN 4     /* an element is poisoned and freed when its age reaches this */
#define THREADS_RCU_HELD_MAX 4     /* most elements a reader holds in one read-side section */
#define THREADS_RCU_STOP_ONE_IN 64 /* an updater stops the world after one update in this many */

/* ---- sizes --------------------------------------------------------------------------------------- */

/* Block sizes: mostly small classes, some wide classes, pool runs and now and then a large block. */
typedef struct threads_tier {
    unsigned weight;
    size_t lo, hi;
} threads_tier;

static const threads_tier threads_sizes[] = {
    { 8000, THREADS_HEADER, 512 },
    { 1500, 513, 4096 },
    { 450, 4097, 65536 },
    { 50, 65537, (size_t)256 << 10 },
    { 0, 0, 0 },
};

/* Draws a block size. */
static size_t threads_pick_size(stress_worker *w) {
    unsigned total = 0;
    for (const threads_tier *t = threads_sizes; t->weight; t++) total += t->weight;
    uint64_t r = stress_rng_below(&w->rng, total);
    const threads_tier *t = threads_sizes;
    for (; r >= t->weight; t++) r -= t->weight;
    return stress_rng_range(&w->rng, t->lo, t->hi);
}

/* ---- one run's shared state ---------------------------------------------------------------------- */

/* A worker's online counter, on a cache line of its own. Plain: see the head comment. Written only by
 * the thread(s) of its index while online, one at a time (a lane's children are joined in turn). */
typedef struct threads_online {
    _Alignas(64) uint64_t ops;
} threads_online;

/* An rcu-torture element. Readers reach it through threads_rcu.current and read canary, seq, nwords and
 * words with plain loads (the publish's release orders their writes before; the grace period orders
 * the reads before the poisoning), and age with relaxed loads (the updater and the reclaimer write it
 * while readers may still hold the element). */
typedef struct threads_rcu_elem {
    uint64_t canary;           /* threads_rcu_canary(e, seq) while live, THREADS_RCU_POISON once reclaimed */
    uint64_t seq;              /* publication order: written under update_lock before the publish */
    _Atomic unsigned age;      /* 0 while published, 1 once removed, +1 per grace period since */
    unsigned nwords;           /* payload words */
    unsigned remover;          /* index of the updater that removed it (the remover, after removal) */
    struct threads_state *st;  /* for the deferred callback */
    uint64_t words[];          /* threads_rcu_word(seq, k) */
} threads_rcu_elem;

/* rcu-torture's shared state. */
typedef struct threads_rcu {
    _Atomic(threads_rcu_elem *) current; /* published with release (exchange), read with acquire */
    ouro_lock_t update_lock;             /* serialises publishes: seq order is current's modification order */
    uint64_t seq;                        /* update_lock */
    unsigned updaters;                   /* workers 0..updaters-1 update, the rest read */
    _Atomic uint64_t allocated, freed;   /* elements */
    _Atomic uint64_t pending;            /* elements handed to ouro_defer() and not yet freed */
    _Atomic uint64_t defer_first[STRESS_MAX_THREADS]; /* per remover: deferred callbacks that ran once */
    _Atomic uint64_t sync_updates, defer_updates, grace_periods, barriers, stops;
    /* Ages seen at the end of read-side sections: row i is reader i's (plain; the main thread reads
     * it after the join). The last bucket holds THREADS_RCU_PIPE_LEN and above. */
    uint64_t hist[STRESS_MAX_THREADS][THREADS_RCU_PIPE_LEN + 1];
} threads_rcu;

/* Everything one scenario run shares. The main thread writes the plain fields before starting the
 * workers (pthread_create orders them). */
typedef struct threads_state {
    stress_ctx *ctx;                      /* for failures on ouro's reclaimer thread */
    const threads_params *p;
    unsigned n;                           /* threads: ctx->threads, at least 2 */
    const char *reason;                   /* the stops' reason: the scenario's name */
    ouro_alloc_stats_t base;              /* after ouro_fini() and a collect, at the start */
    unsigned watch_first, watch_n;        /* the online counters a stopper checks */
    threads_online online[STRESS_MAX_THREADS];

    /* stw-storm's transfer array, thread-churn's pool: blocks go in and out with threads_swap(). */
    _Atomic(void *) slots[THREADS_SLOTS_MAX];
    size_t nslots;

    /* thread-churn */
    _Atomic uint64_t lane_done[STRESS_MAX_THREADS]; /* the last generation of each lane joined */
    _Atomic uint64_t attaches, detaches, exits_attached, unattached_frees;
    _Atomic uint64_t exited_frees;   /* blocks of exited children freed by workers */
    _Atomic uint64_t exited_left;    /* ... left in the pool for the main thread */
    _Atomic uint64_t stops, stops_progress;

    threads_rcu rcu;
} threads_state;

/* Worker count: the scenarios need a stopper or updater and at least one other thread. */
static unsigned threads_count(stress_ctx *ctx) {
    return ctx->threads < 2 ? 2 : ctx->threads;
}

/* ---- small helpers -------------------------------------------------------------------------------- */

/* Waits about us microseconds: a spin on the clock below 50 us (a sleep would last longer), a sleep
 * above. */
static void threads_pause_us(double us) {
    if (us <= 0) return;
    if (us >= 50) {
        stress_sleep(us * 1e-6);
        return;
    }
    double until = stress_now() + us * 1e-6;
    while (stress_now() < until) {
    }
}

/* An offline section of a few microseconds (one time in 4 nested): the thread touches nothing of
 * ouro's and bumps no online counter inside. */
static bool threads_offline_pause(stress_worker *w) {
    bool nest = stress_rng_one_in(&w->rng, 4);
    if (ouro_offline_begin() != 0 || (nest && ouro_offline_begin() != 0))
        return stress_fail(w->ctx, "ouro_offline_begin on an attached thread: %s", ouro_err_message());
    threads_pause_us((double)stress_rng_range(&w->rng, 1, stress_rng_one_in(&w->rng, 8) ? 200 : 20));
    if ((nest && ouro_offline_end() != 0) || ouro_offline_end() != 0)
        return stress_fail(w->ctx, "ouro_offline_end after ouro_offline_begin: %s", ouro_err_message());
    stress_count_checks(w, 1);
    return true;
}

/* Attaches the calling thread and names it (naming takes the registry lock, which stops hold); one
 * time in 8 attaches twice (idempotent: 0 again). */
static bool threads_attach(stress_worker *w) {
    if (ouro_thread_attach() != 0)
        return stress_fail(w->ctx, "ouro_thread_attach (worker %u): %s", w->index, ouro_err_message());
    char name[32];
    snprintf(name, sizeof name, "%s-%u", w->ctx->scenario->name, w->index);
    if (ouro_thread_set_name(name) != 0)
        return stress_fail(w->ctx, "ouro_thread_set_name (worker %u): %s", w->index, ouro_err_message());
    if (stress_rng_one_in(&w->rng, 8) && ouro_thread_attach() != 0)
        return stress_fail(w->ctx, "a second ouro_thread_attach on an attached thread: %s", ouro_err_message());
    stress_count_checks(w, 1);
    return true;
}

/* Leaves: detaches, or (one time in 2) returns attached so that the thread-exit hook detaches. */
static void threads_leave(stress_worker *w) {
    if (!stress_rng_one_in(&w->rng, 2) && ouro_thread_detach() != 0)
        stress_fail(w->ctx, "ouro_thread_detach (worker %u): %s", w->index, ouro_err_message());
}

/* ---- self-describing blocks ---------------------------------------------------------------------- */

/* A block's first bytes. */
typedef struct threads_header {
    size_t size;   /* bytes covered by header and pattern */
    uint64_t tag;
    uint64_t lane; /* the allocating thread's index */
    uint64_t gen;  /* its generation (thread-churn's children count from 1) */
} threads_header;

_Static_assert(sizeof(threads_header) == THREADS_HEADER, "header size");

/* Allocates a block of a random size, checks what the API promises (alignment, usable size) and
 * writes its header and pattern. NULL with a failure recorded. */
static void *threads_block_new(stress_worker *w) {
    size_t size = threads_pick_size(w);
    unsigned char *p = ouro_alloc(size);
    if (!p) {
        stress_fail(w->ctx, "ouro_alloc(%zu) returned NULL: %s", size, ouro_err_message());
        return NULL;
    }
    stress_count_ops(w, 1);
    size_t usable = ouro_usable_size(p);
    if ((uintptr_t)p % 16 != 0 || usable < size) {
        stress_fail(w->ctx, "ouro_alloc(%zu) returned %p with usable size %zu", size, p, usable);
        return NULL;
    }
    stress_count_checks(w, 2);
    threads_header h = { .size = size, .tag = stress_rng_next(&w->rng), .lane = w->index, .gen = w->generation };
    memcpy(p, &h, sizeof h);
    stress_canary_fill(p + THREADS_HEADER, size - THREADS_HEADER, stress_canary_key(p, size, h.tag));
    return p;
}

/* Checks and frees a block (NULL is fine): the header must fit the block, the pattern must be whole.
 * A broken block is reported and left allocated. A block of a thread-churn child that has exited
 * (its lane joined it) is counted: in exited_frees when a worker frees it, exited_left when the main
 * thread does. */
static bool threads_block_free(stress_worker *w, threads_state *st, void *p) {
    if (!p) return true;
    threads_header h;
    memcpy(&h, p, sizeof h);
    size_t usable = ouro_usable_size(p);
    if (h.size < THREADS_HEADER || h.size > usable || h.lane >= STRESS_MAX_THREADS)
        return stress_fail(w->ctx, "header of block %p says %zu bytes from worker %llu; usable size %zu", p, h.size,
                           (unsigned long long)h.lane, usable);
    if (!stress_canary_verify(w, "at free", p, THREADS_HEADER, h.size, stress_canary_key(p, h.size, h.tag)))
        return false;
    /* acquire: pairs with the lane's release after the join (threads_churn_lane) */
    if (h.gen != 0 && h.gen <= atomic_load_explicit(&st->lane_done[h.lane], memory_order_acquire))
        atomic_fetch_add_explicit(w->index == STRESS_MAX_THREADS ? &st->exited_left : &st->exited_frees, 1,
                                  memory_order_relaxed);
    ouro_free(p);
    stress_count_ops(w, 1);
    return true;
}

/* Puts p in a shared slot and returns what was there. acq_rel pairs with the same exchange in the
 * thread that put the block there (or takes it out): a block's bytes happen-before its check. */
static void *threads_swap(_Atomic(void *) *slot, void *p) {
    return atomic_exchange_explicit(slot, p, memory_order_acq_rel);
}

/* A random shared slot. */
static _Atomic(void *) *threads_slot(stress_worker *w, threads_state *st) {
    return &st->slots[stress_rng_below(&w->rng, st->nslots)];
}

/* ---- the stop oracle ----------------------------------------------------------------------------- */

/* How a stopper stops: attached and online (it may allocate while it holds the stop), attached from
 * an offline section, or not attached. */
enum { THREADS_STOP_ONLINE, THREADS_STOP_OFFLINE, THREADS_STOP_DETACHED };

/* One stopper's record of its stops, its own (a stop storm adds its totals to the state at the end). */
typedef struct threads_stop_log {
    uint64_t stops;
    uint64_t progress;                  /* stops at which some counter had moved since the last one */
    uint64_t prev[STRESS_MAX_THREADS];  /* the counters at the last stop */
    uint64_t moved[STRESS_MAX_THREADS]; /* stops at which this counter had moved since the last one */
} threads_stop_log;

/* Reads the watched online counters into v. Volatile so that two reads a hold apart both reach memory
 * (nothing between them need be opaque to the compiler); a volatile access is a plain one to TSan. */
static void threads_read_online(const threads_state *st, uint64_t *v) {
    for (unsigned i = st->watch_first; i < st->watch_first + st->watch_n; i++)
        v[i] = *(const volatile uint64_t *)&st->online[i].ops;
}

/* The random hold of a stop: none, a spin of a few microseconds, or (1 in 16) a sleep. */
static void threads_stop_hold(stress_worker *w) {
    uint64_t r = stress_rng_below(&w->rng, 16);
    if (r < 7) return;
    threads_pause_us((double)(r == 15 ? stress_rng_range(&w->rng, 50, 500) : stress_rng_range(&w->rng, 1, 20)));
}

/* The pause between two stops: none one time in 4 (back-to-back stops), else tens to hundreds of
 * microseconds, now and then a millisecond or two. An attached stopper waits offline beyond 50 us
 * (it would hold up nothing here, but an online thread should not sleep) and passes a safepoint. */
static bool threads_stop_gap(stress_worker *w, bool attached) {
    uint64_t r = stress_rng_below(&w->rng, 16);
    uint64_t us = r < 4 ? 0 : r < 15 ? stress_rng_range(&w->rng, 20, 300) : stress_rng_range(&w->rng, 300, 2000);
    if (attached) ouro_safepoint();
    if (attached && us >= 50) {
        if (ouro_offline_begin() != 0) return stress_fail(w->ctx, "ouro_offline_begin: %s", ouro_err_message());
        threads_pause_us((double)us);
        if (ouro_offline_end() != 0) return stress_fail(w->ctx, "ouro_offline_end: %s", ouro_err_message());
        return true;
    }
    threads_pause_us((double)us);
    return true;
}

/* stw-storm's work inside an online stop: frees the block of a random slot (its owner is parked or
 * offline, or gone) and, one time in 2, allocates one into another (the allocator works for the
 * stopper while the world is stopped). */
static bool threads_stop_work(stress_worker *w, threads_state *st) {
    if (!threads_block_free(w, st, threads_swap(threads_slot(w, st), NULL))) return false;
    if (!stress_rng_one_in(&w->rng, 2)) return true;
    void *p = threads_block_new(w);
    return p && threads_block_free(w, st, threads_swap(threads_slot(w, st), p));
}

/* One stop: stops the world (mode: THREADS_STOP_*), reads the watched counters, holds, (online, when
 * work) does stw-storm's work, reads them again and compares; starts the world whatever happened.
 * false with a failure recorded. */
static bool threads_stop_once(stress_worker *w, threads_state *st, threads_stop_log *log, int mode, bool work) {
    stress_ctx *ctx = w->ctx;
    uint64_t first[STRESS_MAX_THREADS], again[STRESS_MAX_THREADS];
    if (mode == THREADS_STOP_OFFLINE && ouro_offline_begin() != 0)
        return stress_fail(ctx, "ouro_offline_begin before a stop: %s", ouro_err_message());
    if (ouro_stop_the_world(st->reason) != 0) {
        stress_fail(ctx, "ouro_stop_the_world: %s", ouro_err_message());
        if (mode == THREADS_STOP_OFFLINE) ouro_offline_end();
        return false;
    }
    threads_read_online(st, first);
    threads_stop_hold(w);
    bool ok = !work || mode != THREADS_STOP_ONLINE || threads_stop_work(w, st);
    threads_read_online(st, again);
    bool moved = false;
    for (unsigned i = st->watch_first; ok && i < st->watch_first + st->watch_n; i++) {
        if (first[i] != again[i])
            ok = stress_fail(ctx, "stop %llu: worker %u's online counter moved while the world was stopped: "
                             "%llu -> %llu", (unsigned long long)log->stops + 1, i, (unsigned long long)first[i],
                             (unsigned long long)again[i]);
        else if (log->stops > 0 && first[i] < log->prev[i])
            ok = stress_fail(ctx, "stop %llu: worker %u's online counter went back from %llu to %llu",
                             (unsigned long long)log->stops + 1, i, (unsigned long long)log->prev[i],
                             (unsigned long long)first[i]);
        else if (log->stops > 0 && first[i] != log->prev[i])
            log->moved[i]++, moved = true;
        log->prev[i] = first[i];
    }
    if (ouro_start_the_world() != 0) ok = stress_fail(ctx, "ouro_start_the_world after a stop: %s", ouro_err_message());
    if (mode == THREADS_STOP_OFFLINE && ouro_offline_end() != 0)
        ok = stress_fail(ctx, "ouro_offline_end after a stop: %s", ouro_err_message());
    log->stops++;
    log->progress += moved;
    stress_count_ops(w, 1);
    if (ok) stress_count_checks(w, 2 * st->watch_n);
    return ok;
}

/* A stopper's loop: stops until the time is up (at least twice), then, with progress, requires every
 * watched counter to have moved between two consecutive stops at least once. */
static void threads_stop_storm(stress_worker *w, threads_state *st, bool attached, bool work) {
    threads_stop_log log;
    memset(&log, 0, sizeof log);
    for (uint64_t n = 0; (n < 2 || stress_running(w->ctx)) && !stress_failed(w->ctx); n++) {
        int mode = !attached ? THREADS_STOP_DETACHED : stress_rng_one_in(&w->rng, 2) ? THREADS_STOP_ONLINE
                                                                                       : THREADS_STOP_OFFLINE;
        if (!threads_stop_gap(w, attached) || !threads_stop_once(w, st, &log, mode, work)) break;
    }
    atomic_fetch_add_explicit(&st->stops, log.stops, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->stops_progress, log.progress, memory_order_relaxed);
    if (stress_failed(w->ctx)) return;
    for (unsigned i = st->watch_first; i < st->watch_first + st->watch_n; i++)
        if (log.moved[i] == 0) {
            stress_fail(w->ctx, "worker %u made no progress between any two of %llu stops (online counter %llu)", i,
                        (unsigned long long)log.stops, (unsigned long long)log.prev[i]);
            return;
        }
    stress_count_checks(w, st->watch_n);
}

/* ---- the baseline oracle ------------------------------------------------------------------------- */

/* ouro_fini(): succeeds only when no thread is attached (it also stops the reclaimer thread). */
static bool threads_fini(stress_worker *mw, const char *when) {
    if (ouro_fini() != 0)
        return stress_fail(mw->ctx, "ouro_fini %s: %s (a thread is still attached)", when, ouro_err_message());
    stress_count_checks(mw, 1);
    return true;
}

/* Takes the baseline: nothing attached, after a collect. */
static bool threads_begin(stress_worker *mw, threads_state *st) {
    if (!threads_fini(mw, "at the start")) return false;
    ouro_alloc_collect();
    if (ouro_alloc_stats(&st->base) != 0) return stress_fail(mw->ctx, "ouro_alloc_stats: %s", ouro_err_message());
    return true;
}

/* The end oracle (see the head comment), on the main thread once every worker is joined. */
static bool threads_expect_baseline(stress_worker *mw, const threads_state *st) {
    if (!threads_fini(mw, "after the join")) return false;
    ouro_alloc_collect();
    if (ouro_alloc_check() != 0) return stress_fail(mw->ctx, "ouro_alloc_check: %s", ouro_err_message());
    stress_count_checks(mw, 1);
    return stress_expect_alloc_baseline(mw, &st->base);
}

/* Runs one scenario: the state, the baseline, body, then the baseline oracle (skipped after a
 * failure, whose leaked blocks would only repeat it). */
static bool threads_run(stress_ctx *ctx, bool (*body)(stress_worker *mw, threads_state *st)) {
    threads_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->ctx = ctx;
    st->p = ctx->short_run ? &threads_short : &threads_full;
    st->n = threads_count(ctx);
    st->reason = ctx->scenario->name;
    if (st->n != ctx->threads) stress_note(ctx, "needs at least 2 threads: running %u", st->n);
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    bool ok = threads_begin(&mw, st) && body(&mw, st) && !stress_failed(ctx) && threads_expect_baseline(&mw, st);
    stress_unmap(st, sizeof *st);
    return ok;
}

/* Empties every shared slot, freeing its block. */
static bool threads_slots_free(stress_worker *w, threads_state *st) {
    bool ok = true;
    for (size_t i = 0; i < st->nslots; i++) ok &= threads_block_free(w, st, threads_swap(&st->slots[i], NULL));
    return ok;
}

/* ---- stw-storm ----------------------------------------------------------------------------------- */

/* A mutator: attached, it allocates into its live set (freeing what was there), frees, trades blocks
 * with the transfer array, takes and frees blocks of others, and now and then spends a moment
 * offline; every operation done online bumps its online counter. A safepoint after each. */
static void threads_storm_mutator(stress_worker *w) {
    threads_state *st = w->arg;
    threads_online *me = &st->online[w->index];
    size_t n = st->p->live;
    void **live = stress_map(w->ctx, n * sizeof *live);
    if (!live) return;
    bool ok = threads_attach(w);
    while (ok && stress_running(w->ctx)) {
        uint64_t r = stress_rng_below(&w->rng, 100);
        void **mine = &live[stress_rng_below(&w->rng, n)];
        if (r < 40) {
            ok = threads_block_free(w, st, *mine);
            *mine = ok ? threads_block_new(w) : NULL;
            ok = ok && *mine;
        } else if (r < 55) {
            ok = threads_block_free(w, st, *mine);
            *mine = NULL;
        } else if (r < 80) {
            *mine = threads_swap(threads_slot(w, st), *mine);
            stress_count_ops(w, 1);
        } else if (r < 98) {
            ok = threads_block_free(w, st, threads_swap(threads_slot(w, st), NULL));
        } else {
            ok = threads_offline_pause(w);
            continue; /* offline: no bump */
        }
        me->ops++;
        ouro_safepoint();
    }
    for (size_t i = 0; i < n; i++) {
        ok = threads_block_free(w, st, live[i]) && ok;
        live[i] = NULL;
    }
    threads_leave(w);
    stress_unmap(live, n * sizeof *live);
}

/* Worker 0 stops the world (attached: online or from an offline section); the others mutate. */
static void threads_storm_worker(stress_worker *w) {
    threads_state *st = w->arg;
    if (w->index != 0) {
        threads_storm_mutator(w);
        return;
    }
    if (!threads_attach(w)) return;
    threads_stop_storm(w, st, true, true);
    threads_leave(w);
}

static bool threads_storm_body(stress_worker *mw, threads_state *st) {
    stress_ctx *ctx = mw->ctx;
    st->nslots = st->p->slots;
    st->watch_first = 1;
    st->watch_n = st->n - 1;
    bool ok = stress_run_threads(ctx, 0, st->n, 0, threads_storm_worker, st);
    ok = threads_slots_free(mw, st) && ok;
    if (!ok || stress_failed(ctx)) return false;
    uint64_t total = 0;
    for (unsigned i = 1; i < st->n; i++) {
        if (st->online[i].ops == 0) return stress_fail(ctx, "mutator %u did no work", i);
        total += st->online[i].ops;
    }
    uint64_t stops = atomic_load_explicit(&st->stops, memory_order_relaxed);
    uint64_t progress = atomic_load_explicit(&st->stops_progress, memory_order_relaxed);
    if (stops == 0 || progress == 0)
        return stress_fail(ctx, "%llu stops, %llu of them after some progress: nothing was tested",
                           (unsigned long long)stops, (unsigned long long)progress);
    stress_count_checks(mw, st->n);
    stress_note(ctx, "%llu stops (%llu after progress), %llu online operations by %u mutators",
                (unsigned long long)stops, (unsigned long long)progress, (unsigned long long)total, st->n - 1);
    return true;
}

/* ---- thread-churn -------------------------------------------------------------------------------- */

/* Publishes p into a random pool slot and frees the block it displaces, whoever allocated it (a live
 * child or one that exited). */
static bool threads_publish(stress_worker *w, threads_state *st, void *p) {
    stress_count_ops(w, 1);
    return threads_block_free(w, st, threads_swap(threads_slot(w, st), p));
}

/* How a thread-churn child leaves, drawn evenly. */
enum {
    THREADS_LEAVE_FREE,          /* frees what it kept, detaches */
    THREADS_LEAVE_EXIT_ATTACHED, /* publishes what it kept, returns attached: the exit hook detaches */
    THREADS_LEAVE_DETACH,        /* publishes what it kept, detaches */
    THREADS_LEAVE_UNATTACHED,    /* the same, then frees a few pool blocks while not attached (the
                                  * allocator serves threads that are not attached) */
    THREADS_LEAVE_WAYS
};

/* A short-lived child: attaches, then for 1..rounds rounds allocates up to a batch (freeing what it
 * kept), publishes about half into the pool, frees some, keeps the rest, takes and frees a pool block
 * or two, and now and then spends a moment offline; then leaves (THREADS_LEAVE_*). Every operation
 * done while attached and online bumps its lane's online counter. */
static void threads_churn_child(stress_worker *w) {
    threads_state *st = w->arg;
    const threads_params *p = st->p;
    threads_online *me = &st->online[w->index];
    void *own[THREADS_BATCH_MAX] = { 0 };
    if (!threads_attach(w)) return;
    atomic_fetch_add_explicit(&st->attaches, 1, memory_order_relaxed);
    bool ok = true;
    size_t rounds = stress_rng_range(&w->rng, 1, p->rounds);
    for (size_t r = 0; ok && r < rounds && !stress_failed(w->ctx); r++) {
        size_t k = stress_rng_range(&w->rng, 1, p->batch);
        for (size_t i = 0; ok && i < k; i++, me->ops++) {
            ok = threads_block_free(w, st, own[i]);
            own[i] = ok ? threads_block_new(w) : NULL;
            ok = ok && own[i];
        }
        for (size_t i = 0; ok && i < k; i++, me->ops++) {
            uint64_t choice = stress_rng_below(&w->rng, 4);
            if (choice < 2) ok = threads_publish(w, st, own[i]);
            else if (choice == 2) ok = threads_block_free(w, st, own[i]);
            if (choice <= 2) own[i] = NULL;
        }
        for (uint64_t t = stress_rng_range(&w->rng, 1, 2); ok && t > 0; t--, me->ops++)
            ok = threads_publish(w, st, NULL);
        ouro_safepoint();
        if (ok && stress_rng_one_in(&w->rng, 4)) ok = threads_offline_pause(w);
    }
    uint64_t how = stress_rng_below(&w->rng, THREADS_LEAVE_WAYS);
    for (size_t i = 0; ok && i < THREADS_BATCH_MAX; i++) {
        if (!own[i]) continue;
        ok = how == THREADS_LEAVE_FREE ? threads_block_free(w, st, own[i]) : threads_publish(w, st, own[i]);
        own[i] = NULL;
        me->ops++;
    }
    if (how == THREADS_LEAVE_EXIT_ATTACHED) {
        atomic_fetch_add_explicit(&st->exits_attached, 1, memory_order_relaxed);
        return;
    }
    if (ouro_thread_detach() != 0) {
        stress_fail(w->ctx, "ouro_thread_detach (child %u/%llu): %s", w->index, (unsigned long long)w->generation,
                    ouro_err_message());
        return;
    }
    atomic_fetch_add_explicit(&st->detaches, 1, memory_order_relaxed);
    if (how == THREADS_LEAVE_UNATTACHED) { /* no online counter: not attached */
        for (uint64_t t = stress_rng_range(&w->rng, 1, 4); ok && t > 0; t--) ok = threads_publish(w, st, NULL);
        atomic_fetch_add_explicit(&st->unattached_frees, 1, memory_order_relaxed);
    }
}

/* A lane: children one after another (at least min_gens, then until the time is up); after joining
 * each it publishes the generation, so that frees of its blocks count as frees of an exited thread's. */
static void threads_churn_lane(stress_worker *w) {
    threads_state *st = w->arg;
    for (uint64_t gen = 1; (gen <= st->p->min_gens || stress_running(w->ctx)) && !stress_failed(w->ctx); gen++) {
        if (!stress_run_threads(w->ctx, w->index, 1, gen, threads_churn_child, st)) return;
        /* release: pairs with the acquire in threads_block_free() */
        atomic_store_explicit(&st->lane_done[w->index], gen, memory_order_release);
    }
}

/* Worker 0 (never attached) stops the world; the others are lanes of children. */
static void threads_churn_worker(stress_worker *w) {
    if (w->index != 0) threads_churn_lane(w);
    else threads_stop_storm(w, w->arg, false, false);
}

static bool threads_churn_body(stress_worker *mw, threads_state *st) {
    stress_ctx *ctx = mw->ctx;
    st->nslots = st->p->slots;
    st->watch_first = 1;
    st->watch_n = st->n - 1;
    bool ok = stress_run_threads(ctx, 0, st->n, 0, threads_churn_worker, st);
    ok = threads_slots_free(mw, st) && ok;
    if (!ok || stress_failed(ctx)) return false;
    uint64_t attaches = atomic_load_explicit(&st->attaches, memory_order_relaxed);
    uint64_t detaches = atomic_load_explicit(&st->detaches, memory_order_relaxed);
    uint64_t exits = atomic_load_explicit(&st->exits_attached, memory_order_relaxed);
    uint64_t exited = atomic_load_explicit(&st->exited_frees, memory_order_relaxed);
    uint64_t stops = atomic_load_explicit(&st->stops, memory_order_relaxed);
    if (attaches == 0 || attaches != detaches + exits)
        return stress_fail(ctx, "%llu attaches, %llu detaches and %llu exits attached", (unsigned long long)attaches,
                           (unsigned long long)detaches, (unsigned long long)exits);
    if (exited == 0) return stress_fail(ctx, "no worker freed a block of an exited thread: nothing was tested");
    if (stops == 0) return stress_fail(ctx, "no stop of the world: nothing was tested");
    stress_count_checks(mw, 3);
    stress_note(ctx, "%llu attaches: %llu detached (%llu then freed unattached), %llu exited attached; %llu blocks "
                "of exited threads freed by workers, %llu at the end; %llu stops (%llu after progress)",
                (unsigned long long)attaches, (unsigned long long)detaches,
                (unsigned long long)atomic_load_explicit(&st->unattached_frees, memory_order_relaxed),
                (unsigned long long)exits, (unsigned long long)exited,
                (unsigned long long)atomic_load_explicit(&st->exited_left, memory_order_relaxed),
                (unsigned long long)stops,
                (unsigned long long)atomic_load_explicit(&st->stops_progress, memory_order_relaxed));
    return true;
}

/* ---- rcu-torture ----------------------------------------------------------------------------------
 *
 * After liburcu's rcutorture. Readers (attached) load `current` with acquire, check the element (its
 * canary, its payload, a seq never lower than the last one they saw: publishes are serialised, so seq
 * order is current's modification order), may load it again and hold up to THREADS_RCU_HELD_MAX
 * elements, linger now and then, check them all again and record each one's age in a histogram; the
 * ouro_safepoint() after that is the quiescent state that ends the read-side section. current is NULL
 * until the first update (the first element is an updater's, so that the main thread never gets a heap
 * that the baseline would count); a reader that has seen an element never sees NULL again.
 *
 * Updaters (attached; one, two from 4 threads) allocate an element, publish it (exchange, release)
 * and set the removed one's age to 1 (readers that got it before may see 1). Then, by a draw: either
 * put it in their own pipeline and call ouro_synchronize(), after which every pipeline element ages by
 * one; or hand it to ouro_defer(), whose callback ages it and defers it again. An element whose age
 * reaches THREADS_RCU_PIPE_LEN is poisoned (canary and payload) and freed. Now and then an updater
 * calls ouro_defer_barrier() and checks that every callback it deferred before has run at least once,
 * or stops the world and checks that the readers' online counters do not move.
 *
 * Oracle: no reader ever sees a poisoned or corrupted element, and no reader sees an age of 2 or
 * more (the element outlived a whole grace period after its removal while the reader held it); at the
 * end every element is freed (deferred ones after at most THREADS_RCU_PIPE_LEN + 1 barriers) and the
 * counts are back at the baseline. The histogram is printed. */

#define THREADS_RCU_POISON 0xdeadbeefdeadbeefull

/* The live canary of element e with sequence number seq. */
static uint64_t threads_rcu_canary(const threads_rcu_elem *e, uint64_t seq) {
    return stress_mix64((uint64_t)(uintptr_t)e ^ stress_mix64(seq ^ 0x2545f4914f6cdd1dull));
}

/* Payload word k of the element with sequence number seq. */
static uint64_t threads_rcu_word(uint64_t seq, unsigned k) {
    return stress_mix64(seq * 0x9e3779b97f4a7c15ull + k);
}

/* Checks element e as a reader: not NULL, not poisoned, canary and payload whole. */
static bool threads_rcu_check(stress_worker *w, const threads_rcu_elem *e, const char *when) {
    stress_ctx *ctx = w->ctx;
    if (!e) return stress_fail(ctx, "reader %u %s: current is NULL", w->index, when);
    uint64_t canary = e->canary, seq = e->seq;
    if (canary == THREADS_RCU_POISON)
        return stress_fail(ctx, "reader %u %s: element %p is poisoned (reclaimed while a reader holds it; age %u)",
                           w->index, when, (const void *)e, atomic_load_explicit(&e->age, memory_order_relaxed));
    if (canary != threads_rcu_canary(e, seq))
        return stress_fail(ctx, "reader %u %s: element %p has canary 0x%016llx, neither live for its seq %llu "
                           "(0x%016llx) nor poisoned: freed (ouro's debug poison) or reused while held? age %u",
                           w->index, when, (const void *)e, (unsigned long long)canary, (unsigned long long)seq,
                           (unsigned long long)threads_rcu_canary(e, seq),
                           atomic_load_explicit(&e->age, memory_order_relaxed));
    unsigned n = e->nwords;
    for (unsigned k = 0; k < n; k++)
        if (e->words[k] != threads_rcu_word(seq, k))
            return stress_fail(ctx, "reader %u %s: element %p (seq %llu): payload word %u of %u is 0x%016llx, expected "
                               "0x%016llx", w->index, when, (const void *)e, (unsigned long long)seq, k, n,
                               (unsigned long long)e->words[k], (unsigned long long)threads_rcu_word(seq, k));
    stress_count_checks(w, 1);
    return true;
}

/* A reader's pause inside a read-side section: mostly none, sometimes a spin of a microsecond or
 * two, rarely (rcutorture's long delay) a sleep of 50..200 us that grace periods have to wait for. */
static void threads_rcu_linger(stress_worker *w) {
    uint64_t r = stress_rng_below(&w->rng, 1024);
    if (r < 960) return;
    threads_pause_us((double)(r == 1023 ? stress_rng_range(&w->rng, 50, 200) : stress_rng_range(&w->rng, 1, 2)));
}

/* A reader: read-side sections until the time is up (see the section's comment). */
static void threads_rcu_reader(stress_worker *w) {
    threads_state *st = w->arg;
    threads_rcu *rcu = &st->rcu;
    threads_online *me = &st->online[w->index];
    uint64_t *hist = rcu->hist[w->index];
    uint64_t last_seq = 0;
    bool ok = threads_attach(w);
    /* until the time is up, and at least until the first element is seen (updaters publish at least
     * once, and the last element stays published until the join) */
    while (ok && (stress_running(w->ctx) || last_seq == 0) && !stress_failed(w->ctx)) {
        const threads_rcu_elem *held[THREADS_RCU_HELD_MAX];
        unsigned n = (unsigned)stress_rng_range(&w->rng, 1, THREADS_RCU_HELD_MAX);
        for (unsigned k = 0; ok && k < n; k++) {
            /* acquire: pairs with the release of the exchange in threads_rcu_publish() */
            const threads_rcu_elem *e = atomic_load_explicit(&rcu->current, memory_order_acquire);
            if (!e && last_seq == 0) { /* no update yet (rcutorture's readers wait for the writer too) */
                n = k;
                break;
            }
            held[k] = e;
            ok = threads_rcu_check(w, e, "after loading current");
            if (ok && e->seq < last_seq)
                ok = stress_fail(w->ctx, "reader %u loaded seq %llu after seq %llu: current went back", w->index,
                                 (unsigned long long)e->seq, (unsigned long long)last_seq);
            if (ok) last_seq = e->seq;
            threads_rcu_linger(w);
        }
        for (unsigned k = 0; ok && k < n; k++) {
            ok = threads_rcu_check(w, held[k], "at the end of its read-side section");
            if (!ok) break;
            unsigned age = atomic_load_explicit(&held[k]->age, memory_order_relaxed);
            hist[age < THREADS_RCU_PIPE_LEN ? age : THREADS_RCU_PIPE_LEN]++;
        }
        if (n > 0) {
            me->ops++;
            stress_count_ops(w, 1);
        }
        ouro_safepoint(); /* the quiescent state: nothing read above is used after it */
        if (ok && stress_rng_one_in(&w->rng, 256)) ok = threads_offline_pause(w);
    }
    threads_leave(w);
}

/* A new element with a payload of 1..rcu_words words; the fields that depend on seq are written by
 * threads_rcu_publish(). NULL with a failure recorded. */
static threads_rcu_elem *threads_rcu_new(stress_worker *w, threads_state *st) {
    unsigned n = (unsigned)stress_rng_range(&w->rng, 1, st->p->rcu_words);
    threads_rcu_elem *e = ouro_alloc(sizeof *e + n * sizeof(uint64_t));
    if (!e) {
        stress_fail(w->ctx, "ouro_alloc of an element: %s", ouro_err_message());
        return NULL;
    }
    e->nwords = n;
    e->st = st;
    e->remover = 0;
    atomic_init(&e->age, 0);
    atomic_fetch_add_explicit(&st->rcu.allocated, 1, memory_order_relaxed);
    stress_count_ops(w, 1);
    return e;
}

/* Gives e its seq, canary and payload and publishes it (under update_lock); *old gets the element it
 * replaced, now the caller's to retire (NULL for the very first publish). false with a failure. */
static bool threads_rcu_publish(stress_worker *w, threads_state *st, threads_rcu_elem *e, threads_rcu_elem **old) {
    threads_rcu *rcu = &st->rcu;
    if (ouro_lock(&rcu->update_lock) != 0) return stress_fail(w->ctx, "ouro_lock: %s", ouro_err_message());
    uint64_t seq = ++rcu->seq;
    e->seq = seq;
    for (unsigned k = 0; k < e->nwords; k++) e->words[k] = threads_rcu_word(seq, k);
    e->canary = threads_rcu_canary(e, seq);
    /* release: pairs with the readers' acquire load; acquire: the replaced element's fields, written by
     * the other updater, happen-before our retiring it */
    *old = atomic_exchange_explicit(&rcu->current, e, memory_order_acq_rel);
    if (ouro_unlock(&rcu->update_lock) != 0) return stress_fail(w->ctx, "ouro_unlock: %s", ouro_err_message());
    return true;
}

/* Poisons e (canary and payload) and frees it. */
static void threads_rcu_reclaim(threads_rcu_elem *e) {
    threads_state *st = e->st;
    e->canary = THREADS_RCU_POISON;
    for (unsigned k = 0; k < e->nwords; k++) e->words[k] = THREADS_RCU_POISON;
    ouro_free(e);
    atomic_fetch_add_explicit(&st->rcu.freed, 1, memory_order_relaxed);
}

/* The deferred callback (on ouro's reclaimer thread, a grace period after it was deferred): ages the
 * element; frees it at THREADS_RCU_PIPE_LEN, else defers it again. */
static void threads_rcu_deferred(void *arg) {
    threads_rcu_elem *e = arg;
    threads_state *st = e->st;
    unsigned age = atomic_load_explicit(&e->age, memory_order_relaxed) + 1;
    atomic_store_explicit(&e->age, age, memory_order_relaxed);
    if (age == 2) /* the first run: release pairs with the acquire after the updater's barrier */
        atomic_fetch_add_explicit(&st->rcu.defer_first[e->remover], 1, memory_order_release);
    if (age < THREADS_RCU_PIPE_LEN) {
        if (ouro_defer(threads_rcu_deferred, e) == 0) return;
        /* A grace period has passed since the removal: reclaiming now is safe, the run has failed. */
        stress_fail(st->ctx, "ouro_defer from a deferred callback: %s", ouro_err_message());
    }
    threads_rcu_reclaim(e);
    atomic_fetch_sub_explicit(&st->rcu.pending, 1, memory_order_relaxed);
}

/* A grace period of the synchronous pipeline: ouro_synchronize(), then every element in pipe ages by
 * one; those that reach THREADS_RCU_PIPE_LEN are reclaimed. */
static bool threads_rcu_grace_period(stress_worker *w, threads_state *st, threads_rcu_elem **pipe, size_t *npipe) {
    if (ouro_synchronize() != 0) return stress_fail(w->ctx, "ouro_synchronize: %s", ouro_err_message());
    atomic_fetch_add_explicit(&st->rcu.grace_periods, 1, memory_order_relaxed);
    size_t kept = 0;
    for (size_t i = 0; i < *npipe; i++) {
        threads_rcu_elem *e = pipe[i];
        unsigned age = atomic_load_explicit(&e->age, memory_order_relaxed) + 1;
        atomic_store_explicit(&e->age, age, memory_order_relaxed);
        if (age >= THREADS_RCU_PIPE_LEN) threads_rcu_reclaim(e);
        else pipe[kept++] = e;
    }
    *npipe = kept;
    return true;
}

/* ouro_defer_barrier(), then every callback this updater deferred before must have run once. */
static bool threads_rcu_barrier(stress_worker *w, threads_state *st, uint64_t deferred) {
    if (ouro_defer_barrier() != 0) return stress_fail(w->ctx, "ouro_defer_barrier: %s", ouro_err_message());
    atomic_fetch_add_explicit(&st->rcu.barriers, 1, memory_order_relaxed);
    /* acquire: pairs with the callbacks' release */
    uint64_t ran = atomic_load_explicit(&st->rcu.defer_first[w->index], memory_order_acquire);
    if (ran < deferred)
        return stress_fail(w->ctx, "after ouro_defer_barrier, %llu of the %llu callbacks updater %u deferred before "
                           "it have run", (unsigned long long)ran, (unsigned long long)deferred, w->index);
    stress_count_checks(w, 1);
    return true;
}

/* An updater: updates until the time is up (at least 3 times: with the first publish's NULL, both
 * ways of retiring are always taken), then empties its pipeline and waits for its deferred callbacks'
 * first runs (see the section's comment). */
static void threads_rcu_updater(stress_worker *w) {
    threads_state *st = w->arg;
    threads_rcu *rcu = &st->rcu;
    threads_rcu_elem *pipe[THREADS_RCU_PIPE_LEN]; /* one enters at age 1 per grace period: at most 3 */
    size_t npipe = 0;
    uint64_t retired = 0, deferred = 0;
    threads_stop_log log;
    memset(&log, 0, sizeof log);
    bool ok = threads_attach(w);
    for (uint64_t u = 0; ok && (u < 3 || stress_running(w->ctx)) && !stress_failed(w->ctx); u++) {
        threads_rcu_elem *e = threads_rcu_new(w, st), *old = NULL;
        ok = e && threads_rcu_publish(w, st, e, &old);
        if (!ok) break;
        if (!old) continue; /* the first publish */
        old->remover = w->index;
        atomic_store_explicit(&old->age, 1, memory_order_relaxed); /* removed: readers that hold it may see 1 */
        /* by a draw; the first two retirements take one way each, so that both are always tested */
        bool sync = retired < 2 ? retired == 0 : stress_rng_one_in(&w->rng, 2);
        retired++;
        if (sync) {
            pipe[npipe++] = old;
            atomic_fetch_add_explicit(&rcu->sync_updates, 1, memory_order_relaxed);
            ok = threads_rcu_grace_period(w, st, pipe, &npipe);
        } else {
            atomic_fetch_add_explicit(&rcu->pending, 1, memory_order_relaxed);
            if (ouro_defer(threads_rcu_deferred, old) != 0) {
                ok = stress_fail(w->ctx, "ouro_defer: %s", ouro_err_message());
                break;
            }
            deferred++;
            atomic_fetch_add_explicit(&rcu->defer_updates, 1, memory_order_relaxed);
            if (stress_rng_one_in(&w->rng, 8)) ok = threads_rcu_barrier(w, st, deferred);
        }
        if (ok && stress_rng_one_in(&w->rng, THREADS_RCU_STOP_ONE_IN)) {
            int mode = stress_rng_one_in(&w->rng, 2) ? THREADS_STOP_ONLINE : THREADS_STOP_OFFLINE;
            ok = threads_stop_once(w, st, &log, mode, false);
            atomic_fetch_add_explicit(&rcu->stops, 1, memory_order_relaxed);
        }
        ouro_safepoint();
        if (stress_rng_one_in(&w->rng, 4)) threads_pause_us((double)stress_rng_range(&w->rng, 1, 5));
    }
    while (npipe > 0 && !stress_failed(w->ctx) && threads_rcu_grace_period(w, st, pipe, &npipe)) {
    }
    if (ok && !stress_failed(w->ctx)) threads_rcu_barrier(w, st, deferred);
    threads_leave(w);
}

/* Workers below rcu.updaters update; the others read. */
static void threads_rcu_worker(stress_worker *w) {
    threads_state *st = w->arg;
    if (w->index < st->rcu.updaters) threads_rcu_updater(w);
    else threads_rcu_reader(w);
}


/* "0: n, 1: n, ..., 4+: n" of the readers' summed histogram, in buf; *late gets the count of ages 2+. */
static const char *threads_rcu_fmt_hist(const threads_state *st, char *buf, size_t len, uint64_t *late) {
    uint64_t sum[THREADS_RCU_PIPE_LEN + 1] = { 0 };
    for (unsigned i = st->rcu.updaters; i < st->n; i++)
        for (unsigned a = 0; a <= THREADS_RCU_PIPE_LEN; a++) sum[a] += st->rcu.hist[i][a];
    size_t at = 0;
    *late = 0;
    for (unsigned a = 0; a <= THREADS_RCU_PIPE_LEN && at < len; a++) {
        if (a >= 2) *late += sum[a];
        at += (size_t)snprintf(buf + at, len - at, "%s%u%s: %llu", a ? ", " : "", a,
                               a == THREADS_RCU_PIPE_LEN ? "+" : "", (unsigned long long)sum[a]);
    }
    return buf;
}

static bool threads_rcu_body(stress_worker *mw, threads_state *st) {
    stress_ctx *ctx = mw->ctx;
    threads_rcu *rcu = &st->rcu;
    rcu->updaters = st->n >= 4 ? 2 : 1;
    st->watch_first = rcu->updaters;
    st->watch_n = st->n - rcu->updaters;
    /* The reclaimer starts on the first deferral, possibly while a stop is in progress; ouro_fini()
     * stops it again at the end, so the baseline's heap count holds. */
    bool ok = stress_run_threads(ctx, 0, st->n, 0, threads_rcu_worker, st);
    /* Every worker is joined: the deferred elements need at most THREADS_RCU_PIPE_LEN barriers more. */
    unsigned barriers = 0;
    for (; barriers <= THREADS_RCU_PIPE_LEN && atomic_load_explicit(&rcu->pending, memory_order_relaxed); barriers++)
        if (ouro_defer_barrier() != 0) return stress_fail(ctx, "ouro_defer_barrier: %s", ouro_err_message());
    threads_rcu_elem *last = atomic_exchange_explicit(&rcu->current, NULL, memory_order_acq_rel);
    if (last) {
        if (last->canary != threads_rcu_canary(last, last->seq))
            return stress_fail(ctx, "the last published element %p (seq %llu) is broken", (void *)last,
                               (unsigned long long)last->seq);
        threads_rcu_reclaim(last);
    }
    char hist[256];
    uint64_t late = 0, reads = 0;
    threads_rcu_fmt_hist(st, hist, sizeof hist, &late);
    for (unsigned i = rcu->updaters; i < st->n; i++) reads += st->online[i].ops;
    uint64_t sync = atomic_load_explicit(&rcu->sync_updates, memory_order_relaxed);
    uint64_t deferred = atomic_load_explicit(&rcu->defer_updates, memory_order_relaxed);
    stress_note(ctx, "ages seen by readers {%s}; %llu read-side sections, %llu updates (%llu synchronous, "
                "%llu deferred), %llu grace periods, %llu barriers, %llu stops", hist, (unsigned long long)reads,
                (unsigned long long)(sync + deferred), (unsigned long long)sync, (unsigned long long)deferred,
                (unsigned long long)atomic_load_explicit(&rcu->grace_periods, memory_order_relaxed),
                (unsigned long long)atomic_load_explicit(&rcu->barriers, memory_order_relaxed),
                (unsigned long long)atomic_load_explicit(&rcu->stops, memory_order_relaxed));
    if (!ok || stress_failed(ctx)) return false;
    uint64_t pending = atomic_load_explicit(&rcu->pending, memory_order_relaxed);
    uint64_t allocated = atomic_load_explicit(&rcu->allocated, memory_order_relaxed);
    uint64_t freed = atomic_load_explicit(&rcu->freed, memory_order_relaxed);
    if (pending != 0)
        return stress_fail(ctx, "%llu deferred elements not freed after %u barriers", (unsigned long long)pending,
                           barriers);
    if (freed != allocated)
        return stress_fail(ctx, "%llu elements allocated, %llu freed", (unsigned long long)allocated,
                           (unsigned long long)freed);
    if (late > 0)
        return stress_fail(ctx, "readers saw %llu elements a whole grace period after their removal: ages {%s}",
                           (unsigned long long)late, hist);
    if (reads == 0 || sync == 0 || deferred == 0)
        return stress_fail(ctx, "%llu read-side sections, %llu synchronous and %llu deferred updates: nothing was "
                           "tested", (unsigned long long)reads, (unsigned long long)sync, (unsigned long long)deferred);
    stress_count_checks(mw, 4);
    return true;
}

/* ---- the table ----------------------------------------------------------------------------------- */

/* Run functions of the table. */
static bool threads_stw_storm(stress_ctx *ctx) { return threads_run(ctx, threads_storm_body); }
static bool threads_thread_churn(stress_ctx *ctx) { return threads_run(ctx, threads_churn_body); }
static bool threads_rcu_torture(stress_ctx *ctx) { return threads_run(ctx, threads_rcu_body); }

const stress_scenario stress_threads_scenarios[] = {
    { "stw-storm", "stops of the world in a loop over mutators trading blocks; counters still while stopped",
      threads_stw_storm },
    { "thread-churn", "threads attach, publish blocks, detach or exit attached under stops; none left attached",
      threads_thread_churn },
    { "rcu-torture", "rcutorture: readers, synchronize/defer updaters; no age >= 2, no poison, all freed",
      threads_rcu_torture },
    { NULL, NULL, NULL },
};
