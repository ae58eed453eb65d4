/* stress/object_scenarios.c — the object model's stress scenarios (core/: refcounts, freeing).
 *
 *   rc-share      objects handed between threads through shared slots, counted up and down by every
 *                 thread (owners, non-owners, owners that exited); threads come and go in generations,
 *                 and detach mid-run (merging every object they own while others count them)
 *   deep-dealloc  chains of objects tens of thousands deep, built by one thread and often dropped by
 *                 another (after the builder exited, too), freed without deep recursion
 *
 * The object oracle. Objects are of types made for the run (ouro_type_new): each carries a canary
 * derived from its address and a serial number. Every thread checks the canary of each object it holds
 * a reference to before and after counting it, and the type's dealloc checks it once more and poisons
 * it: an object freed early (a count that lost a reference) shows up as a poisoned or foreign canary in
 * a later check, a double free as a poisoned canary in dealloc. At the end, with every slot emptied and
 * every thread joined, the main thread merges its queue and then: objects made == objects freed (the
 * dealloc's own count), the type's statistics show none alive, ouro_type_free succeeds, and the
 * allocator is back at its baseline. */
#include "stress/stress.h"

#include <ouro.h>

#include <stdio.h>
#include <string.h>

/* ---- parameters ---------------------------------------------------------------------------------- */

typedef struct object_params {
    size_t slots;       /* rc-share's shared slots */
    size_t held;        /* rc-share: most references a worker holds at once */
    unsigned gens;      /* rc-share: generations of workers over the run */
    size_t chain_max;   /* deep-dealloc: the deepest chain */
} object_params;

static const object_params object_full = { .slots = 512, .held = 64, .gens = 8, .chain_max = 200000 };
static const object_params object_short = { .slots = 32, .held = 16, .gens = 4, .chain_max = 20000 };

#define OBJECT_HELD_MAX 64
#define OBJECT_POISON 0xdeadbeefdeadbeefull

/* ---- the counted object -------------------------------------------------------------------------- */

typedef struct sobj {
    ouro_object head;
    uint64_t serial;
    uint64_t canary; /* object_canary(self, serial) while alive, OBJECT_POISON after dealloc */
} sobj;

typedef struct object_state {
    stress_ctx *ctx;
    const object_params *p;
    unsigned n;
    ouro_type *type;                /* sobj with one slot "next" */
    _Atomic(ouro_object *) *slots;  /* each holds one reference or NULL */
    _Atomic uint64_t made, freed, bad_dealloc;
    _Atomic uint64_t detaches; /* rc-share: workers that detached and attached again mid-run */
    double gen_end; /* rc-share: the current generation's end (stress_now), set before it starts */
    _Atomic uint64_t chains, chain_links, handed_chains;
    _Atomic(ouro_object *) handoff[STRESS_MAX_THREADS]; /* deep-dealloc: chains waiting for another thread */
    ouro_alloc_stats_t base;
} object_state;

static object_state *object_current; /* the dealloc reaches the run's state through it */

static uint64_t object_canary(const void *o, uint64_t serial) {
    return stress_mix64((uint64_t)(uintptr_t)o ^ (serial * 0x9e3779b97f4a7c15ull));
}

static void sobj_dealloc(ouro_object *self) {
    sobj *o = (sobj *)self;
    if (o->canary != object_canary(o, o->serial)) atomic_fetch_add(&object_current->bad_dealloc, 1);
    o->canary = OBJECT_POISON;
    atomic_fetch_add_explicit(&object_current->freed, 1, memory_order_relaxed);
}

static ouro_object *sobj_new(stress_worker *w, object_state *st) {
    sobj *o = (sobj *)ouro_new(st->type);
    if (!o) {
        stress_fail(w->ctx, "ouro_new: %s", ouro_err_message());
        return NULL;
    }
    o->serial = atomic_fetch_add_explicit(&st->made, 1, memory_order_relaxed);
    o->canary = object_canary(o, o->serial);
    stress_count_ops(w, 1);
    return &o->head;
}

/* Checks the canary of an object the caller holds a reference to. */
static bool sobj_check(stress_worker *w, ouro_object *obj, const char *when) {
    sobj *o = (sobj *)obj;
    if (o->canary != object_canary(o, o->serial))
        return stress_fail(w->ctx, "object %p (serial %llu) %s: canary %#llx%s: freed while referenced",
                           (void *)o, (unsigned long long)o->serial, when, (unsigned long long)o->canary,
                           o->canary == OBJECT_POISON ? " (poisoned by its dealloc)" : "");
    stress_count_checks(w, 1);
    return true;
}

static bool object_attach(stress_worker *w) {
    if (ouro_thread_attach() == 0) return true;
    return stress_fail(w->ctx, "ouro_thread_attach: %s", ouro_err_message());
}

/* ---- rc-share ------------------------------------------------------------------------------------ */

/* A worker: holds up to `held` references; each step makes an object, swaps one with a shared slot,
 * counts one up and down (a burst of increfs, then as many decrefs), hands one to a slot, or drops
 * one. References taken from a slot were counted by other threads (often the owner is another thread,
 * or one that has exited), so every path of the counts is taken. */
static void rc_share_worker(stress_worker *w) {
    object_state *st = w->arg;
    ouro_object *held[OBJECT_HELD_MAX] = { 0 };
    size_t nheld = st->p->held;
    bool ok = object_attach(w);
    for (uint64_t step = 0; ok && stress_running(w->ctx); step++) {
        if (step % 64 == 0 && stress_now() > st->gen_end) break;
        ouro_object **mine = &held[stress_rng_below(&w->rng, nheld)];
        _Atomic(ouro_object *) *slot = &st->slots[stress_rng_below(&w->rng, st->p->slots)];
        uint64_t r = stress_rng_below(&w->rng, 100);
        if (*mine && !(ok = sobj_check(w, *mine, "held"))) break;
        if (r < 20) { /* make */
            ouro_object *o = sobj_new(w, st);
            ok = o != NULL;
            ouro_xdecref(*mine);
            *mine = o;
        } else if (r < 50) { /* swap with a slot: what comes out was counted by its last holder */
            *mine = atomic_exchange_explicit(slot, *mine, memory_order_acq_rel);
        } else if (r < 75) { /* count up and down */
            if (*mine) {
                unsigned k = (unsigned)stress_rng_range(&w->rng, 1, 8);
                for (unsigned i = 0; i < k; i++) ouro_incref(*mine);
                ok = sobj_check(w, *mine, "after increfs");
                for (unsigned i = 0; i < k; i++) ouro_decref(*mine);
                stress_count_ops(w, 2 * k);
            }
        } else if (r < 90) { /* share: the slot gets a new reference, we keep ours */
            if (*mine) {
                ouro_object *old = atomic_exchange_explicit(slot, ouro_newref(*mine), memory_order_acq_rel);
                if (old && (ok = sobj_check(w, old, "taken from a slot"))) ouro_decref(old);
            }
        } else { /* drop */
            ouro_xdecref(*mine);
            *mine = NULL;
        }
        stress_count_ops(w, 1);
        if (stress_rng_one_in(&w->rng, 16)) ouro_safepoint(); /* merges what others queued to us */
        if (stress_rng_one_in(&w->rng, 4096)) {
            /* Detach and go on: the detach merges every object we own while the other threads count
             * and queue them; we keep our references and count them as a non-owner from now on. */
            ouro_thread_detach();
            atomic_fetch_add_explicit(&st->detaches, 1, memory_order_relaxed);
            ok = object_attach(w);
        }
    }
    for (size_t i = 0; i < nheld; i++) ouro_xdecref(held[i]);
    /* Half the workers exit attached: their queues are merged by the exit hook; the others detach. */
    if (w->index % 2 == 0) ouro_thread_detach();
}

static bool rc_share_body(stress_worker *mw, object_state *st) {
    stress_ctx *ctx = mw->ctx;
    double gen_s = ctx->duration / st->p->gens;
    unsigned gens = 0;
    /* Generations: each runs gen_s (the run's deadline stops the last); the slots keep objects whose
     * owners exited, which the next generation counts and frees. */
    while (!stress_failed(ctx) && stress_running(ctx) && gens < st->p->gens) {
        st->gen_end = stress_now() + gen_s; /* before the threads start: they read it after creation */
        if (!stress_run_threads(ctx, 0, st->n, gens, rc_share_worker, st)) return false;
        gens++;
    }
    for (size_t i = 0; i < st->p->slots; i++) {
        ouro_object *o = atomic_exchange_explicit(&st->slots[i], NULL, memory_order_acq_rel);
        if (o && sobj_check(mw, o, "left in a slot")) ouro_decref(o);
    }
    stress_note(ctx, "%llu objects made over %u generations of %u threads, %llu detaches mid-run",
                (unsigned long long)atomic_load(&st->made), gens, st->n, (unsigned long long)atomic_load(&st->detaches));
    return !stress_failed(ctx);
}

/* ---- deep-dealloc -------------------------------------------------------------------------------- */

/* Builds a chain of depth objects linked through slot 0 and returns its head (one reference). */
static ouro_object *chain_build(stress_worker *w, object_state *st, size_t depth) {
    ouro_object *head = NULL;
    for (size_t i = 0; i < depth && !stress_failed(w->ctx); i++) {
        ouro_object *n = sobj_new(w, st);
        if (!n) break;
        if (head) {
            ouro_slot_set(n, 0, head);
            ouro_decref(head);
        }
        head = n;
    }
    return head;
}

/* Walks a chain checking every canary; returns its length. */
static size_t chain_check(stress_worker *w, ouro_object *head) {
    size_t n = 0;
    ouro_object *cur = ouro_newref(head);
    while (cur && sobj_check(w, cur, "in a chain")) {
        ouro_object *next = ouro_slot_get(cur, 0);
        ouro_decref(cur);
        cur = next;
        n++;
    }
    ouro_xdecref(cur);
    return n;
}

/* A worker: builds chains of random depth; drops each itself, or leaves it for another thread (which
 * takes it from the handoff slot, checks it and drops it: a deep free of objects it does not own, their
 * owner maybe gone). */
static void deep_worker(stress_worker *w) {
    object_state *st = w->arg;
    if (!object_attach(w)) return;
    while (stress_running(w->ctx)) {
        size_t depth = (size_t)stress_rng_range(&w->rng, 1, st->p->chain_max);
        ouro_object *head = chain_build(w, st, depth);
        if (!head) break;
        atomic_fetch_add_explicit(&st->chains, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->chain_links, depth, memory_order_relaxed);
        if (stress_rng_one_in(&w->rng, 2)) {
            unsigned to = (unsigned)stress_rng_below(&w->rng, st->n);
            head = atomic_exchange_explicit(&st->handoff[to], head, memory_order_acq_rel);
            if (!head) continue;
            atomic_fetch_add_explicit(&st->handed_chains, 1, memory_order_relaxed);
        }
        size_t got = chain_check(w, head);
        ouro_decref(head); /* the whole chain, iteratively */
        if (stress_failed(w->ctx)) break;
        if (got == 0) {
            stress_fail(w->ctx, "an empty chain");
            break;
        }
        ouro_safepoint();
    }
    if (w->index % 2) ouro_thread_detach(); /* the others exit attached */
}

static bool deep_body(stress_worker *mw, object_state *st) {
    stress_ctx *ctx = mw->ctx;
    if (!stress_run_threads(ctx, 0, st->n, 0, deep_worker, st)) return false;
    for (unsigned i = 0; i < st->n; i++) { /* chains left for threads that have gone */
        ouro_object *o = atomic_exchange_explicit(&st->handoff[i], NULL, memory_order_acq_rel);
        if (o) {
            chain_check(mw, o);
            ouro_decref(o);
        }
    }
    stress_note(ctx, "%llu chains, %llu objects (mean depth %.0f), %llu freed by another thread",
                (unsigned long long)atomic_load(&st->chains), (unsigned long long)atomic_load(&st->chain_links),
                atomic_load(&st->chains) ? (double)atomic_load(&st->chain_links) / (double)atomic_load(&st->chains) : 0.0,
                (unsigned long long)atomic_load(&st->handed_chains));
    return !stress_failed(ctx);
}

/* ---- the run: set-up and the end oracle ------------------------------------------------------------ */

static bool object_run(stress_ctx *ctx, bool (*body)(stress_worker *mw, object_state *st)) {
    object_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->ctx = ctx;
    st->p = ctx->short_run ? &object_short : &object_full;
    st->n = ctx->threads;
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    bool ok = false;
    st->slots = stress_map(ctx, st->p->slots * sizeof *st->slots);
    static const char *const slots[] = { "next", NULL };
    ouro_type_spec spec = { .name = "stress-object", .basic_size = sizeof(sobj), .slots = slots, .dealloc = sobj_dealloc };
    if (!st->slots) goto out;
    object_current = st;
    /* The baseline: nothing attached (ouro_fini also stops the reclaimer, which the run restarts). */
    if (ouro_fini() != 0) {
        stress_fail(ctx, "ouro_fini at the start: %s", ouro_err_message());
        goto out;
    }
    ouro_alloc_collect();
    if (ouro_alloc_stats(&st->base) != 0) {
        stress_fail(ctx, "ouro_alloc_stats: %s", ouro_err_message());
        goto out;
    }
    st->type = ouro_type_new(&spec);
    if (!st->type) {
        stress_fail(ctx, "ouro_type_new: %s", ouro_err_message());
        goto out;
    }
    /* The main thread is not attached while the workers run (a blocked attached thread would hold up
     * every grace period); it may attach afterwards (lock-free reads do) and detaches, merging its
     * queue, before the oracle. */
    ok = body(&mw, st);
    ouro_thread_detach();
    uint64_t made = atomic_load(&st->made), freed = atomic_load(&st->freed);
    ouro_type_stats ts;
    ouro_type_get_stats(st->type, &ts);
    if (ok && atomic_load(&st->bad_dealloc))
        ok = stress_fail(ctx, "%llu objects had a broken canary when freed (freed twice?)",
                         (unsigned long long)atomic_load(&st->bad_dealloc));
    if (ok && made != freed)
        ok = stress_fail(ctx, "%llu objects made, %llu freed", (unsigned long long)made, (unsigned long long)freed);
    if (ok && (ts.allocs != made || ts.live != 0))
        ok = stress_fail(ctx, "type statistics: %zu made, %zu alive; the run made %llu", ts.allocs, ts.live,
                         (unsigned long long)made);
    if (ok && made == 0) ok = stress_fail(ctx, "no object was made: nothing was tested");
    if (ok && ouro_type_free(st->type) != 0) ok = stress_fail(ctx, "ouro_type_free: %s", ouro_err_message());
    stress_count_checks(&mw, 4);
    if (ok && ouro_fini() != 0) ok = stress_fail(ctx, "ouro_fini after the join: %s (a thread is still attached)", ouro_err_message());
    if (ok) {
        ouro_alloc_collect();
        ok = stress_expect_alloc_baseline(&mw, &st->base);
    }
out:
    if (st->slots) stress_unmap(st->slots, st->p->slots * sizeof *st->slots);
    stress_unmap(st, sizeof *st);
    return ok && !stress_failed(ctx);
}

static bool object_rc_share(stress_ctx *ctx) { return object_run(ctx, rc_share_body); }
static bool object_deep_dealloc(stress_ctx *ctx) { return object_run(ctx, deep_body); }

const stress_scenario stress_object_scenarios[] = {
    { "rc-share", "objects handed between threads and counted by all; canaries intact, all freed once",
      object_rc_share },
    { "deep-dealloc", "chains 10^5 deep freed by their builder or another thread; no deep recursion, all freed",
      object_deep_dealloc },
    { NULL, NULL, NULL },
};
