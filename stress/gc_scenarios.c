/* stress/gc_scenarios.c — the cycle collector's stress scenarios (gc/).
 *
 *   gc-churn  threads build rings (cycles through a user GC type's slots, lists and dicts, with
 *             self-cycles hanging off them), keep some and drop the others as cyclic garbage; only the
 *             automatic collections (default thresholds) free them. Some finalizers resurrect their ring
 *             into a shared slot, from which threads take it back, check it whole and drop it again.
 *   gc-mixed  everything at once: self-describing allocations traded between threads, objects shared
 *             through a table and counted by non-owners, shared and private lists and dicts mutated,
 *             rings made and dropped, cycles across threads (one thread's object referring to another's
 *             and back), lanes whose short-lived children attach, work and exit leaving young objects
 *             behind (handed on through the table or dropped), explicit collections of every generation
 *             and stops of the world from random threads.
 *
 * The node oracle. Nodes are instances of two GC types made for the run (one with a finalizer), with
 * slots "next" and "aux". Each carries a serial, its ring's serial, its place in the ring and the
 * ring's length, and a canary derived from those and its address. A ring is walked from any of its
 * nodes through "next" (directly, or through a link list's item 0 or a link dict's "next" key) and must
 * close after exactly its length, every node showing the ring and place expected: a node freed early
 * (poisoned or reused canary), a ring cleared while reachable (a missing link), or a block reused by
 * another node shows up. Reachable nodes must never be finalized: gc-churn marks every node of a ring
 * a thread holds (held = 1 until the thread lets it go) and the finalizer and dealloc fail on a held
 * node; gc-mixed checks, at every visit of a node it reached, that neither its finalizer's flag nor the
 * collector's FINALIZED bit is set. A finalizer runs at most once per node; the dealloc checks the
 * canary (a double free) and poisons it.
 *
 * The end oracle. After the join the main thread takes back everything (held rings, the table, the
 * shared containers and blocks), checking each, and collects fully until nothing is left: nodes made
 * == nodes freed, both node types and the list, dict and str types at their starting live counts,
 * ouro_gc_get_objects(-1) as long as at the start, every block freed, automatic (gc-churn) or any
 * (gc-mixed) collections of generation 0 did happen and freed objects, ouro_fini() succeeds and the
 * allocator is back at its baseline. */
#include "stress/stress.h"

#include <ouro.h>

#include <sched.h>
#include <stdio.h>
#include <string.h>

/* ---- parameters ---------------------------------------------------------------------------------- */

typedef struct gc_params {
    size_t held;      /* rings (gc-churn) or objects (gc-mixed) a thread holds at once */
    size_t ring_max;  /* the longest ring */
    size_t table;     /* gc-mixed: shared object slots */
    size_t blocks;    /* gc-mixed: blocks a thread holds, and shared block slots */
    size_t block_max; /* gc-mixed: the largest block */
    size_t list_max;  /* gc-mixed: the shared list, or a shared container, is emptied past this */
    size_t keys;      /* gc-mixed: the shared dict's keys */
    unsigned stint;   /* gc-mixed: steps a lane runs between two children */
    double child_s;   /* gc-mixed: the longest a child runs */
} gc_params;

static const gc_params gc_full = { .held = 32, .ring_max = 24, .table = 256, .blocks = 64, .block_max = 65536,
                                   .list_max = 1024, .keys = 64, .stint = 2000, .child_s = 0.05 };
static const gc_params gc_short = { .held = 8, .ring_max = 8, .table = 32, .blocks = 16, .block_max = 4096,
                                    .list_max = 128, .keys = 16, .stint = 400, .child_s = 0.02 };

#define GC_HELD_MAX 32
#define GC_RING_MAX 24
#define GC_BLOCKS_MAX 64
#define GC_RESURRECT_SLOTS 8
#define GC_RESURRECT_ONE_IN 64 /* gc-churn: finalizable nodes that resurrect their ring */
#define GC_POISON 0xdeadbeefdeadbeefull
#define GC_BLOCK_HEAD 16 /* a block's size and serial; its pattern follows */
#define GC_BLOCK_MIN 24

enum { GC_NEXT, GC_AUX }; /* the nodes' slots */

/* ---- the node ------------------------------------------------------------------------------------ */

typedef struct gnode {
    ouro_object head;
    uint64_t serial;
    uint64_t ring;              /* its ring's serial; 0 for a loose node */
    uint32_t pos, len;          /* its place in the ring, the ring's length (0 for a loose node) */
    uint8_t resurrect;          /* gc-churn: its finalizer resurrects it */
    _Atomic uint32_t held;      /* gc-churn: 1 while a thread holds its ring (written by that thread;
                                 * the main thread after the join). Read by the finalizer and dealloc,
                                 * on whichever thread collects: a thread's clear is ordered before its
                                 * last reference goes (the release in gc_ring_walk, the acquire in the
                                 * hooks; the stop of the collection that finds the ring orders it too) */
    _Atomic uint32_t finalized; /* set by its finalizer */
    uint64_t canary;            /* gnode_canary() while alive, GC_POISON after its dealloc */
} gnode;

typedef struct gc_state {
    stress_ctx *ctx;
    const gc_params *p;
    unsigned n;
    bool mixed;
    ouro_type *node_type, *fnode_type; /* fnode: with a finalizer */
    ouro_object *key_next, *key_self;  /* the link dicts' keys */
    ouro_object **keys;                /* gc-mixed: the shared dict's keys */
    ouro_object *list, *dict;          /* gc-mixed: shared containers */
    _Atomic(ouro_object *) *table;     /* gc-mixed: shared objects, one reference each */
    _Atomic(void *) *blocks;           /* gc-mixed: shared blocks */
    ouro_object **leftover;            /* gc-churn: each worker's held rings, p->held per worker */
    _Atomic(ouro_object *) resurrected[GC_RESURRECT_SLOTS]; /* gc-churn: one reference each */
    _Atomic bool ending;               /* no more resurrections: the main thread collects it all */
    _Atomic uint64_t made, freed, finalized, resurrections, retaken;
    _Atomic uint64_t held_finalized, held_freed, bad_dealloc, bad_finalize, refinalized;
    _Atomic uint64_t rings, kept, garbage;
    _Atomic uint64_t blocks_made, blocks_freed, shared_counts, cross, container_ops;
    _Atomic uint64_t children, exits[3], collects, stops;
    ouro_alloc_stats_t base;
} gc_state;

static gc_state *gc_current; /* the hooks reach the run's state through it */

static uint64_t gnode_canary(const gnode *n) {
    return stress_mix64((uint64_t)(uintptr_t)n ^ (n->serial * 0x9e3779b97f4a7c15ull) ^
                        stress_mix64(n->ring ^ ((uint64_t)n->pos << 32) ^ n->len));
}

static bool gc_is_node(const gc_state *st, const ouro_object *o) {
    return o->type == st->node_type || o->type == st->fnode_type;
}

static void gnode_dealloc(ouro_object *self) {
    gc_state *st = gc_current;
    gnode *n = (gnode *)self;
    if (n->canary != gnode_canary(n)) {
        atomic_fetch_add(&st->bad_dealloc, 1);
        stress_fail(st->ctx, "dealloc of node %p (serial %llu): canary %#llx%s", (void *)n,
                    (unsigned long long)n->serial, (unsigned long long)n->canary,
                    n->canary == GC_POISON ? " (poisoned: freed twice)" : " (corrupted)");
    }
    if (atomic_load_explicit(&n->held, memory_order_acquire)) { /* pairs with the release in gc_ring_walk */
        atomic_fetch_add(&st->held_freed, 1);
        stress_fail(st->ctx, "node %p (ring %llu, place %u of %u) freed while a thread holds its ring", (void *)n,
                    (unsigned long long)n->ring, n->pos, n->len);
    }
    n->canary = GC_POISON;
    atomic_fetch_add_explicit(&st->freed, 1, memory_order_relaxed);
}

/* The finalizer (fnode only): runs with the world running, on the collecting thread. */
static void gnode_finalize(ouro_object *self) {
    gc_state *st = gc_current;
    gnode *n = (gnode *)self;
    atomic_fetch_add_explicit(&st->finalized, 1, memory_order_relaxed);
    if (n->canary != gnode_canary(n)) {
        atomic_fetch_add(&st->bad_finalize, 1);
        stress_fail(st->ctx, "finalizer of node %p (serial %llu): canary %#llx", (void *)n,
                    (unsigned long long)n->serial, (unsigned long long)n->canary);
    }
    if (atomic_load_explicit(&n->held, memory_order_acquire)) { /* pairs with the release in gc_ring_walk */
        atomic_fetch_add(&st->held_finalized, 1);
        stress_fail(st->ctx, "node %p (ring %llu, place %u of %u) finalized while a thread holds its ring",
                    (void *)n, (unsigned long long)n->ring, n->pos, n->len);
    }
    if (atomic_exchange(&n->finalized, 1)) {
        atomic_fetch_add(&st->refinalized, 1);
        stress_fail(st->ctx, "node %p (serial %llu) finalized twice", (void *)n, (unsigned long long)n->serial);
    }
    if (n->resurrect && !atomic_load(&st->ending)) {
        /* Resurrect the ring: one reference in a slot (its other nodes are reachable from it). */
        ouro_object *old = atomic_exchange(&st->resurrected[n->serial % GC_RESURRECT_SLOTS], ouro_newref(self));
        atomic_fetch_add_explicit(&st->resurrections, 1, memory_order_relaxed);
        ouro_xdecref(old); /* garbage again: its finalizers have run */
    }
}

/* A new node of a random type (one reference). */
static ouro_object *gnode_new(stress_worker *w, gc_state *st, uint64_t ring, uint32_t pos, uint32_t len) {
    bool fin = stress_rng_one_in(&w->rng, 3);
    gnode *n = (gnode *)ouro_new(fin ? st->fnode_type : st->node_type);
    if (!n) {
        stress_fail(w->ctx, "ouro_new: %s", ouro_err_message());
        return NULL;
    }
    n->serial = atomic_fetch_add_explicit(&st->made, 1, memory_order_relaxed);
    n->ring = ring;
    n->pos = pos;
    n->len = len;
    n->resurrect = fin && !st->mixed && stress_rng_one_in(&w->rng, GC_RESURRECT_ONE_IN);
    n->canary = gnode_canary(n);
    stress_count_ops(w, 1);
    return &n->head;
}

/* Checks a node the caller holds a reference to: its canary, and (when ring is not 0) that it is at
 * place pos of that ring. With live, also that nothing finalized it: it is reachable. */
static bool gnode_check(stress_worker *w, gc_state *st, ouro_object *o, uint64_t ring, uint32_t pos, bool live,
                        const char *when) {
    if (!gc_is_node(st, o))
        return stress_fail(w->ctx, "%s: a %s where a node should be (freed and reused?)", when, ouro_type_name(o));
    gnode *n = (gnode *)o;
    if (n->canary != gnode_canary(n))
        return stress_fail(w->ctx, "%s: node %p (serial %llu) canary %#llx%s", when, (void *)n,
                           (unsigned long long)n->serial, (unsigned long long)n->canary,
                           n->canary == GC_POISON ? ": freed while referenced" : ": corrupted");
    if (ring && (n->ring != ring || n->pos != pos))
        return stress_fail(w->ctx, "%s: node %p is place %u of ring %llu, expected place %u of ring %llu "
                           "(freed and reused?)", when, (void *)n, n->pos, (unsigned long long)n->ring, pos,
                           (unsigned long long)ring);
    if (live && (atomic_load_explicit(&n->finalized, memory_order_relaxed) || ouro_gc_is_finalized(o) == 1))
        return stress_fail(w->ctx, "%s: node %p (ring %llu, place %u of %u) finalized while reachable", when,
                           (void *)n, (unsigned long long)n->ring, n->pos, n->len);
    if (ouro_gc_is_tracked(o) != 1) return stress_fail(w->ctx, "%s: node %p is not tracked", when, (void *)n);
    stress_count_checks(w, 1);
    return true;
}

/* ---- rings ---------------------------------------------------------------------------------------- */

/* from.next = to: directly, or through a link list (item 0; it may contain itself too) or a link dict
 * (key "next"; it may hold itself under "self"). */
static bool gc_link(stress_worker *w, gc_state *st, ouro_object *from, ouro_object *to) {
    uint64_t kind = stress_rng_below(&w->rng, 4);
    if (kind < 2) {
        if (ouro_slot_set(from, GC_NEXT, to) != 0) return stress_fail(w->ctx, "ouro_slot_set: %s", ouro_err_message());
        return true;
    }
    ouro_object *c = kind == 2 ? ouro_list_new(0) : ouro_dict_new();
    if (!c) return stress_fail(w->ctx, "a link container: %s", ouro_err_message());
    int rc = kind == 2 ? ouro_list_append(c, to) : ouro_dict_set(c, st->key_next, to);
    if (rc == 0 && stress_rng_one_in(&w->rng, 2)) /* a self-cycle through the link too */
        rc = kind == 2 ? ouro_list_append(c, c) : ouro_dict_set(c, st->key_self, c);
    if (rc == 0) rc = ouro_slot_set(from, GC_NEXT, c);
    ouro_decref(c);
    stress_count_ops(w, 1);
    if (rc != 0) return stress_fail(w->ctx, "building a link: %s", ouro_err_message());
    return true;
}

/* A self-cycle to hang off a node's aux slot (one reference): a list holding itself, or a loose node
 * whose next is itself. */
static ouro_object *gc_self_cycle(stress_worker *w, gc_state *st) {
    ouro_object *o;
    if (stress_rng_one_in(&w->rng, 2)) {
        if (!(o = ouro_list_new(0))) return stress_fail(w->ctx, "ouro_list_new: %s", ouro_err_message()), NULL;
        if (ouro_list_append(o, o) != 0) {
            ouro_decref(o);
            return stress_fail(w->ctx, "ouro_list_append: %s", ouro_err_message()), NULL;
        }
    } else {
        if (!(o = gnode_new(w, st, 0, 0, 0))) return NULL;
        if (ouro_slot_set(o, GC_NEXT, o) != 0) {
            ouro_decref(o);
            return stress_fail(w->ctx, "ouro_slot_set: %s", ouro_err_message()), NULL;
        }
    }
    stress_count_ops(w, 1);
    return o;
}

/* Builds a ring of len nodes (1: a node whose next leads back to itself) and returns its first node
 * (one reference); NULL with a failure recorded. */
static ouro_object *gc_ring_new(stress_worker *w, gc_state *st, uint32_t len) {
    ouro_object *nodes[GC_RING_MAX] = { 0 };
    uint64_t ring = atomic_fetch_add_explicit(&st->rings, 1, memory_order_relaxed) + 1;
    bool ok = true;
    for (uint32_t i = 0; ok && i < len; i++) ok = (nodes[i] = gnode_new(w, st, ring, i, len)) != NULL;
    for (uint32_t i = 0; ok && i < len; i++) ok = gc_link(w, st, nodes[i], nodes[(i + 1) % len]);
    for (uint32_t i = 0; ok && i < len; i++) {
        if (!stress_rng_one_in(&w->rng, 8)) continue;
        ouro_object *aux = gc_self_cycle(w, st);
        ok = aux && ouro_slot_set(nodes[i], GC_AUX, aux) == 0;
        ouro_xdecref(aux);
    }
    for (uint32_t i = 1; i < len; i++) ouro_xdecref(nodes[i]);
    if (!ok) {
        ouro_xdecref(nodes[0]);
        return NULL;
    }
    return nodes[0];
}

/* A new reference to the node after n (n.next, through a link container when there is one); NULL with
 * a failure recorded. */
static ouro_object *gc_ring_next(stress_worker *w, gc_state *st, ouro_object *n) {
    ouro_object *v = ouro_slot_get(n, GC_NEXT), *next = NULL;
    if (!v) return stress_fail(w->ctx, "node %p (ring %llu, place %u) has no next: cleared while reachable?",
                               (void *)n, (unsigned long long)((gnode *)n)->ring, ((gnode *)n)->pos), NULL;
    if (gc_is_node(st, v)) return v;
    if (ouro_is_type(v, &ouro_list_type)) {
        next = ouro_list_get(v, 0);
    } else if (ouro_is_type(v, &ouro_dict_type)) {
        if (ouro_dict_get_ref(v, st->key_next, &next) != 1) next = NULL;
    } else {
        stress_fail(w->ctx, "node %p's next is a %s: freed and reused?", (void *)n, ouro_type_name(v));
        ouro_decref(v);
        return NULL;
    }
    if (!next)
        stress_fail(w->ctx, "node %p's link %s %p lost its next (%s): cleared while reachable?", (void *)n,
                    ouro_type_name(v), (void *)v, ouro_err_message());
    ouro_decref(v);
    return next;
}

/* Walks the ring of node from (which the caller holds) once around, checking every node (with live,
 * that none was finalized) and that the ring closes after its length; held >= 0 sets every node's held
 * mark to it. */
static bool gc_ring_walk(stress_worker *w, gc_state *st, ouro_object *from, int held, bool live, const char *when) {
    gnode *f = (gnode *)from;
    if (!gnode_check(w, st, from, 0, 0, live, when)) return false;
    uint64_t ring = f->ring;
    uint32_t len = f->len, pos = f->pos;
    if (len == 0 || len > GC_RING_MAX || pos >= len)
        return stress_fail(w->ctx, "%s: node %p claims place %u of a ring of %u", when, (void *)f, pos, len);
    ouro_object *cur = ouro_newref(from);
    for (uint32_t i = 0; i < len; i++) {
        if (!gnode_check(w, st, cur, ring, (pos + i) % len, live, when)) {
            ouro_decref(cur);
            return false;
        }
        /* release: pairs with the acquire in gnode_finalize / gnode_dealloc (see gnode.held) */
        if (held >= 0) atomic_store_explicit(&((gnode *)cur)->held, (uint32_t)held, memory_order_release);
        ouro_object *next = gc_ring_next(w, st, cur);
        ouro_decref(cur);
        if (!next) return false;
        cur = next;
    }
    bool closed = cur == from;
    ouro_decref(cur);
    if (!closed) return stress_fail(w->ctx, "%s: ring %llu of %u nodes does not close", when, (unsigned long long)ring, len);
    stress_count_ops(w, len);
    return true;
}

static bool gc_attach(stress_worker *w) {
    if (ouro_thread_attach() == 0) return true;
    return stress_fail(w->ctx, "ouro_thread_attach: %s", ouro_err_message());
}

/* ---- gc-churn ------------------------------------------------------------------------------------- */

/* Takes a resurrected node out of its slot, checks it and its ring whole (a finalizer's resurrection
 * must keep what the object reaches uncleared) and drops it: garbage again, freed without a second
 * finalization. */
static bool churn_retake(stress_worker *w, gc_state *st) {
    ouro_object *o = atomic_exchange(&st->resurrected[stress_rng_below(&w->rng, GC_RESURRECT_SLOTS)], NULL);
    if (!o) return true;
    atomic_fetch_add_explicit(&st->retaken, 1, memory_order_relaxed);
    bool ok = ((gnode *)o)->len ? gc_ring_walk(w, st, o, -1, false, "a resurrected ring")
                                : gnode_check(w, st, o, 0, 0, false, "a resurrected node");
    if (ok && !atomic_load(&((gnode *)o)->finalized))
        ok = stress_fail(w->ctx, "a resurrected node %p was never finalized", (void *)o);
    ouro_decref(o);
    return ok;
}

/* A worker: each step builds a ring and drops it (garbage), or keeps it in place of a held one (the
 * one let go becomes garbage, often an old one), walks a held ring, hangs a new self-cycle off a held
 * ring (the old one becomes garbage), or retakes a resurrected ring. Automatic collections, run by
 * whichever worker's ouro_new finds one due, free the garbage. At the end the held rings stay where
 * the main thread finds them. */
static void churn_worker(stress_worker *w) {
    gc_state *st = w->arg;
    ouro_object **held = &st->leftover[(size_t)w->index * st->p->held];
    bool ok = gc_attach(w);
    while (ok && stress_running(w->ctx)) {
        uint64_t r = stress_rng_below(&w->rng, 100);
        ouro_object **mine = &held[stress_rng_below(&w->rng, st->p->held)];
        if (r < 70) {
            ouro_object *ring = gc_ring_new(w, st, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
            ok = ring != NULL;
            if (ok && r < 45) { /* garbage at once (walked first, now and then) */
                if (stress_rng_one_in(&w->rng, 4)) ok = gc_ring_walk(w, st, ring, -1, true, "a new ring");
                atomic_fetch_add_explicit(&st->garbage, 1, memory_order_relaxed);
                ouro_decref(ring);
            } else if (ok) { /* kept: marked held before anything can collect the one it replaces */
                ok = gc_ring_walk(w, st, ring, 1, true, "a ring being kept");
                if (ok && *mine) ok = gc_ring_walk(w, st, *mine, 0, true, "a ring let go");
                ouro_xdecref(*mine);
                *mine = ring;
                atomic_fetch_add_explicit(&st->kept, 1, memory_order_relaxed);
            }
        } else if (r < 85) {
            if (*mine) ok = gc_ring_walk(w, st, *mine, -1, true, "a held ring");
        } else if (r < 97) {
            if (*mine) {
                ouro_object *aux = gc_self_cycle(w, st);
                ok = aux && ouro_slot_set(*mine, GC_AUX, aux) == 0;
                ouro_xdecref(aux);
                if (!ok && !stress_failed(w->ctx)) stress_fail(w->ctx, "ouro_slot_set: %s", ouro_err_message());
            }
        } else {
            ok = churn_retake(w, st);
        }
        stress_count_ops(w, 1);
        ouro_safepoint();
    }
    if (w->index % 2) ouro_thread_detach(); /* the others exit attached */
}

/* What the collections did while a scenario's workers ran. */
typedef struct {
    uint64_t collections[OURO_GC_GENERATIONS], all, collected;
} gc_delta;

/* Runs st->n workers of fn and fills *d from the collector's statistics before and after (read before
 * anything the main thread does afterwards). false when the threads could not run. */
static bool gc_run_workers(stress_ctx *ctx, gc_state *st, stress_thread_fn fn, gc_delta *d) {
    ouro_gc_gen_stats s0[OURO_GC_GENERATIONS], s1[OURO_GC_GENERATIONS];
    ouro_gc_get_stats(s0);
    if (!stress_run_threads(ctx, 0, st->n, 0, fn, st)) return false;
    ouro_gc_get_stats(s1);
    *d = (gc_delta){0};
    for (int g = 0; g < OURO_GC_GENERATIONS; g++) {
        d->collections[g] = s1[g].collections - s0[g].collections;
        d->all += d->collections[g];
        d->collected += s1[g].collected - s0[g].collected;
    }
    return true;
}

static bool churn_body(stress_worker *mw, gc_state *st) {
    stress_ctx *ctx = mw->ctx;
    gc_delta d; /* the workers' automatic collections */
    if (!gc_run_workers(ctx, st, churn_worker, &d)) return false;
    bool ok = !stress_failed(ctx);
    if (ok && d.collections[0] == 0)
        ok = stress_fail(ctx, "no automatic collection of generation 0 ran (%llu nodes made)",
                         (unsigned long long)atomic_load(&st->made));
    if (ok && d.collected == 0) ok = stress_fail(ctx, "the automatic collections freed nothing");
    stress_count_checks(mw, 2);
    /* Drop what the workers held: each ring checked (owner gone: counted as a non-owner) and unmarked. */
    for (size_t i = 0; i < (size_t)st->n * st->p->held; i++) {
        ouro_object *o = st->leftover[i];
        st->leftover[i] = NULL;
        if (!o) continue;
        if (ok) ok = gc_ring_walk(mw, st, o, 0, true, "a ring left by a worker");
        ouro_decref(o);
    }
    stress_note(ctx, "%llu rings (%llu kept, %llu dropped at once), %llu nodes; %llu automatic collections "
                "(%llu, %llu, %llu by generation) freed %llu; %llu finalized, %llu resurrected, %llu retaken",
                (unsigned long long)atomic_load(&st->rings), (unsigned long long)atomic_load(&st->kept),
                (unsigned long long)atomic_load(&st->garbage), (unsigned long long)atomic_load(&st->made),
                (unsigned long long)d.all, (unsigned long long)d.collections[0],
                (unsigned long long)d.collections[1], (unsigned long long)d.collections[2],
                (unsigned long long)d.collected,
                (unsigned long long)atomic_load(&st->finalized), (unsigned long long)atomic_load(&st->resurrections),
                (unsigned long long)atomic_load(&st->retaken));
    return ok;
}

/* ---- gc-mixed ------------------------------------------------------------------------------------- */

/* What one thread (a lane or a child) holds: objects and blocks. */
typedef struct gc_actor {
    ouro_object *held[GC_HELD_MAX];
    void *blocks[GC_BLOCKS_MAX];
} gc_actor;

/* A self-describing block: its size and serial, then the pattern of (address, size, serial). */
static void *gc_block_new(stress_worker *w, gc_state *st) {
    uint64_t r = stress_rng_below(&w->rng, 100);
    size_t size = r < 70 ? (size_t)stress_rng_range(&w->rng, GC_BLOCK_MIN, 512)
                : r < 95 ? (size_t)stress_rng_range(&w->rng, 513, 8192 < st->p->block_max ? 8192 : st->p->block_max)
                         : (size_t)stress_rng_range(&w->rng, 513, st->p->block_max);
    unsigned char *p = ouro_alloc(size);
    if (!p) return stress_fail(w->ctx, "ouro_alloc(%zu): %s", size, ouro_err_message()), NULL;
    uint64_t head[2] = { size, atomic_fetch_add_explicit(&st->blocks_made, 1, memory_order_relaxed) };
    memcpy(p, head, sizeof head);
    stress_canary_fill(p + GC_BLOCK_HEAD, size - GC_BLOCK_HEAD, stress_canary_key(p, size, head[1]));
    stress_count_ops(w, 1);
    return p;
}

/* Verifies a block in full and frees it. */
static bool gc_block_free(stress_worker *w, gc_state *st, void *p, const char *what) {
    uint64_t head[2];
    memcpy(head, p, sizeof head);
    if (head[0] < GC_BLOCK_MIN || head[0] > st->p->block_max || ouro_usable_size(p) < head[0])
        return stress_fail(w->ctx, "%s: block %p claims %llu bytes (usable %zu): header overwritten", what, p,
                           (unsigned long long)head[0], ouro_usable_size(p));
    if (!stress_canary_verify(w, what, p, GC_BLOCK_HEAD, (size_t)head[0], stress_canary_key(p, (size_t)head[0], head[1])))
        return false;
    ouro_free(p);
    atomic_fetch_add_explicit(&st->blocks_freed, 1, memory_order_relaxed);
    stress_count_ops(w, 1);
    return true;
}

/* Checks an object of the run the caller holds a reference to: a node (and with deep, its whole ring),
 * or a list or dict (with deep, one of its items too). */
static bool gc_check_object(stress_worker *w, gc_state *st, ouro_object *o, bool deep, const char *when) {
    if (gc_is_node(st, o)) {
        gnode *n = (gnode *)o;
        if (deep && n->len) return gc_ring_walk(w, st, o, -1, true, when);
        return gnode_check(w, st, o, 0, 0, true, when);
    }
    ouro_object *item = NULL;
    if (ouro_is_type(o, &ouro_list_type)) {
        size_t size = ouro_list_size(o);
        if (!deep || size == 0) goto counted;
        if (!(item = ouro_list_get(o, (ptrdiff_t)stress_rng_below(&w->rng, size)))) ouro_err_clear(); /* shrank */
    } else if (ouro_is_type(o, &ouro_dict_type)) {
        if (!deep) goto counted;
        int rc = ouro_dict_get_ref(o, st->keys[stress_rng_below(&w->rng, st->p->keys)], &item);
        if (rc < 0) return stress_fail(w->ctx, "%s: ouro_dict_get_ref: %s", when, ouro_err_message());
    } else {
        return stress_fail(w->ctx, "%s: an object of type %s (freed and reused?)", when, ouro_type_name(o));
    }
    if (item) {
        bool ok = gc_check_object(w, st, item, false, when);
        ouro_decref(item);
        return ok;
    }
counted:
    stress_count_checks(w, 1);
    return true;
}

/* Checks a reference taken from somewhere and drops it. */
static bool gc_check_drop(stress_worker *w, gc_state *st, ouro_object *o, const char *when) {
    if (!o) return true;
    bool ok = gc_check_object(w, st, o, false, when);
    ouro_decref(o);
    return ok;
}

/* A new thing to hold (one reference): a ring, a list or a dict of loose nodes (holding itself now
 * and then), or a loose node. */
static ouro_object *gc_make(stress_worker *w, gc_state *st) {
    uint64_t kind = stress_rng_below(&w->rng, 4);
    if (kind == 0) return gc_ring_new(w, st, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
    if (kind == 3) return gnode_new(w, st, 0, 0, 0);
    ouro_object *c = kind == 1 ? ouro_list_new(0) : ouro_dict_new();
    if (!c) return stress_fail(w->ctx, "a container: %s", ouro_err_message()), NULL;
    unsigned items = (unsigned)stress_rng_range(&w->rng, 1, 4);
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < items; i++) {
        ouro_object *v = gnode_new(w, st, 0, 0, 0);
        if (!v) rc = -1;
        else rc = kind == 1 ? ouro_list_append(c, v) : ouro_dict_set(c, st->keys[stress_rng_below(&w->rng, st->p->keys)], v);
        ouro_xdecref(v);
    }
    if (rc == 0 && stress_rng_one_in(&w->rng, 4))
        rc = kind == 1 ? ouro_list_append(c, c) : ouro_dict_set(c, st->key_self, c);
    if (rc != 0) {
        ouro_decref(c);
        if (!stress_failed(w->ctx)) stress_fail(w->ctx, "filling a container: %s", ouro_err_message());
        return NULL;
    }
    return c;
}

/* One operation on the shared list or dict (values: loose nodes, or what the actor holds). */
static bool gc_container_op(stress_worker *w, gc_state *st, gc_actor *a) {
    uint64_t r = stress_rng_below(&w->rng, 100);
    ouro_object *mine = a->held[stress_rng_below(&w->rng, st->p->held)];
    atomic_fetch_add_explicit(&st->container_ops, 1, memory_order_relaxed);
    if (r < 50) {
        ouro_object *l = st->list;
        size_t size = ouro_list_size(l);
        ptrdiff_t i = size ? (ptrdiff_t)stress_rng_below(&w->rng, size) : 0;
        if (r < 20) {
            if (size > st->p->list_max) { /* empty it by pops */
                ouro_object *v;
                while ((v = ouro_list_pop(l, -1)))
                    if (!gc_check_drop(w, st, v, "popped from the shared list")) return false;
                ouro_err_clear();
                return true;
            }
            ouro_object *v = mine ? ouro_newref(mine) : gnode_new(w, st, 0, 0, 0);
            if (!v) return false;
            int rc = ouro_list_append(l, v);
            ouro_decref(v);
            if (rc != 0) return stress_fail(w->ctx, "ouro_list_append: %s", ouro_err_message());
        } else if (r < 40) { /* lock-free get */
            ouro_object *v = ouro_list_get(l, i);
            if (!v) ouro_err_clear();
            return gc_check_drop(w, st, v, "got from the shared list");
        } else {
            ouro_object *v = ouro_list_pop(l, i);
            if (!v) ouro_err_clear();
            return gc_check_drop(w, st, v, "popped from the shared list");
        }
    } else {
        ouro_object *d = st->dict, *key = st->keys[stress_rng_below(&w->rng, st->p->keys)];
        if (r < 70) {
            ouro_object *v = mine ? ouro_newref(mine) : gnode_new(w, st, 0, 0, 0);
            if (!v) return false;
            int rc = ouro_dict_set(d, key, v);
            ouro_decref(v);
            if (rc != 0) return stress_fail(w->ctx, "ouro_dict_set: %s", ouro_err_message());
        } else if (r < 90) {
            ouro_object *v = NULL;
            if (ouro_dict_get_ref(d, key, &v) < 0) return stress_fail(w->ctx, "ouro_dict_get_ref: %s", ouro_err_message());
            return gc_check_drop(w, st, v, "got from the shared dict");
        } else if (ouro_dict_del(d, key) != 0) {
            if (ouro_err_occurred() != OURO_ERR_KEY) return stress_fail(w->ctx, "ouro_dict_del: %s", ouro_err_message());
            ouro_err_clear();
        }
    }
    return true;
}

/* A cycle across threads: takes x out of the table (often another thread's, maybe one that exited),
 * makes node n with n.next = x and x -> n (x's aux, an item of x, or x[key]), and puts x back. Once the
 * table lets go of x, the two are garbage owned by two threads. */
static bool gc_cross_cycle(stress_worker *w, gc_state *st, gc_actor *a) {
    _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
    ouro_object *x = atomic_exchange(slot, NULL);
    if (!x) return true;
    bool ok = gc_check_object(w, st, x, false, "taken for a cross-thread cycle");
    ouro_object *n = ok ? gnode_new(w, st, 0, 0, 0) : NULL;
    int rc = -1;
    if (n) {
        rc = ouro_slot_set(n, GC_NEXT, x);
        if (rc == 0 && gc_is_node(st, x)) {
            rc = ouro_slot_set(x, GC_AUX, n);
        } else if (rc == 0 && ouro_is_type(x, &ouro_list_type)) {
            if (ouro_list_size(x) > st->p->list_max) rc = ouro_list_clear(x);
            if (rc == 0) rc = ouro_list_append(x, n);
        } else if (rc == 0) {
            rc = ouro_dict_set(x, st->keys[stress_rng_below(&w->rng, st->p->keys)], n);
        }
        if (rc != 0) ok = stress_fail(w->ctx, "a cross-thread cycle: %s", ouro_err_message());
    }
    ouro_object *old = atomic_exchange(slot, x);
    if (!gc_check_drop(w, st, old, "displaced from the table")) ok = false;
    if (n) {
        ouro_object **mine = &a->held[stress_rng_below(&w->rng, st->p->held)];
        if (stress_rng_one_in(&w->rng, 2)) ouro_setref(mine, n);
        else ouro_decref(n);
    }
    atomic_fetch_add_explicit(&st->cross, 1, memory_order_relaxed);
    return ok;
}

/* An explicit collection of a random generation. */
static bool gc_collect_op(stress_worker *w, gc_state *st) {
    uint64_t r = stress_rng_below(&w->rng, 10);
    int g = r < 6 ? 0 : r < 9 ? 1 : 2;
    if (ouro_gc_collect(g) < 0) return stress_fail(w->ctx, "ouro_gc_collect(%d): %s", g, ouro_err_message());
    atomic_fetch_add_explicit(&st->collects, 1, memory_order_relaxed);
    stress_count_ops(w, 1);
    return true;
}

/* Stops the world, online (then checking every object of the table while nobody can change it, and
 * trading a block) or from an offline section; a short hold; starts it. */
static bool gc_stop_op(stress_worker *w, gc_state *st, gc_actor *a) {
    bool online = stress_rng_one_in(&w->rng, 2), ok = true;
    if (!online) ouro_offline_begin();
    if (ouro_stop_the_world("gc-mixed") != 0) {
        ok = stress_fail(w->ctx, "ouro_stop_the_world: %s", ouro_err_message());
        if (!online) ouro_offline_end();
        return ok;
    }
    if (online) {
        for (size_t j = 0; ok && j < st->p->table; j++) {
            ouro_object *o = atomic_load(&st->table[j]);
            if (o && gc_is_node(st, o)) ok = gnode_check(w, st, o, 0, 0, true, "in the table during a stop");
            else if (o && !ouro_is_type(o, &ouro_list_type) && !ouro_is_type(o, &ouro_dict_type))
                ok = stress_fail(w->ctx, "a %s in the table during a stop", ouro_type_name(o));
        }
        void **b = &a->blocks[stress_rng_below(&w->rng, st->p->blocks)];
        if (ok && *b) ok = gc_block_free(w, st, *b, "freed during a stop");
        if (ok) ok = (*b = gc_block_new(w, st)) != NULL;
    } else {
        for (volatile unsigned spin = (unsigned)stress_rng_below(&w->rng, 2000); spin; spin--) {
        }
    }
    if (ouro_start_the_world() != 0) ok = stress_fail(w->ctx, "ouro_start_the_world: %s", ouro_err_message());
    if (!online) ouro_offline_end();
    atomic_fetch_add_explicit(&st->stops, 1, memory_order_relaxed);
    stress_count_ops(w, 1);
    return ok;
}

/* One random operation of gc-mixed. */
static bool gc_mixed_step(stress_worker *w, gc_state *st, gc_actor *a) {
    uint64_t r = stress_rng_below(&w->rng, 1000);
    ouro_object **mine = &a->held[stress_rng_below(&w->rng, st->p->held)];
    _Atomic(ouro_object *) *slot = &st->table[stress_rng_below(&w->rng, st->p->table)];
    void **block = &a->blocks[stress_rng_below(&w->rng, st->p->blocks)];
    bool ok = true;
    if (r < 120) { /* allocation */
        if (*block) ok = gc_block_free(w, st, *block, "freed by its holder");
        *block = ok && !stress_rng_one_in(&w->rng, 4) ? gc_block_new(w, st) : NULL;
    } else if (r < 170) { /* a block traded with the shared slots: what comes out was another thread's */
        *block = atomic_exchange(&st->blocks[stress_rng_below(&w->rng, st->p->blocks)], *block);
    } else if (r < 270) { /* swap with the table */
        if (*mine) ok = gc_check_object(w, st, *mine, false, "put in the table");
        *mine = atomic_exchange(slot, *mine);
        if (ok && *mine) ok = gc_check_object(w, st, *mine, false, "taken from the table");
    } else if (r < 340) { /* share: the table gets a new reference, we keep ours */
        if (*mine) ok = gc_check_drop(w, st, atomic_exchange(slot, ouro_newref(*mine)), "displaced from the table");
    } else if (r < 400) { /* counts from a non-owner, often: a burst up, a check, as many down */
        if (*mine) {
            unsigned k = (unsigned)stress_rng_range(&w->rng, 1, 8);
            for (unsigned i = 0; i < k; i++) ouro_incref(*mine);
            ok = gc_check_object(w, st, *mine, false, "counted up");
            for (unsigned i = 0; i < k; i++) ouro_decref(*mine);
            atomic_fetch_add_explicit(&st->shared_counts, 2 * k, memory_order_relaxed);
            stress_count_ops(w, 2 * k);
        }
    } else if (r < 520) {
        ok = gc_container_op(w, st, a);
    } else if (r < 640) { /* something new to hold; the old one may become garbage */
        ouro_object *o = gc_make(w, st);
        ok = o != NULL;
        ouro_setref(mine, o);
    } else if (r < 760) { /* cyclic garbage at once */
        ouro_object *o = stress_rng_one_in(&w->rng, 2) ? gc_ring_new(w, st, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max))
                                                       : gc_self_cycle(w, st);
        ok = o != NULL;
        ouro_xdecref(o);
    } else if (r < 850) {
        ok = gc_cross_cycle(w, st, a);
    } else if (r < 930) {
        if (*mine) ok = gc_check_object(w, st, *mine, true, "held");
    } else if (r < 933) {
        ok = gc_collect_op(w, st);
    } else if (r < 935) {
        ok = gc_stop_op(w, st, a);
    } else if (r < 945) { /* offline a moment: counts queued to us wait for the collector or our return */
        ouro_offline_begin();
        if (stress_rng_one_in(&w->rng, 2)) sched_yield();
        ouro_offline_end();
    }
    stress_count_ops(w, 1);
    ouro_safepoint();
    return ok;
}

/* Lets go of what an actor holds: each object handed on through the table or dropped, each block
 * left in the shared slots or freed. */
static bool gc_actor_leave(stress_worker *w, gc_state *st, gc_actor *a) {
    bool ok = true;
    for (size_t i = 0; i < st->p->held; i++) {
        ouro_object *o = a->held[i];
        a->held[i] = NULL;
        if (!o) continue;
        if (stress_rng_one_in(&w->rng, 2)) o = atomic_exchange(&st->table[stress_rng_below(&w->rng, st->p->table)], o);
        if (!gc_check_drop(w, st, o, "let go at a thread's end")) ok = false;
    }
    for (size_t i = 0; i < st->p->blocks; i++) {
        void *b = a->blocks[i];
        a->blocks[i] = NULL;
        if (b && stress_rng_one_in(&w->rng, 2)) b = atomic_exchange(&st->blocks[stress_rng_below(&w->rng, st->p->blocks)], b);
        if (b && ok) ok = gc_block_free(w, st, b, "freed at a thread's end");
        else if (b) ouro_free(b);
    }
    return ok;
}

/* A short-lived child of a lane: attaches (twice now and then: idempotent), works until its own
 * deadline, leaves cyclic garbage in its young list, hands on or drops what it holds, and ends one of
 * three ways: detached; exiting attached (the exit hook detaches it); or detached and then freeing
 * shared blocks while not attached. */
static void gc_child(stress_worker *w) {
    gc_state *st = w->arg;
    atomic_fetch_add_explicit(&st->children, 1, memory_order_relaxed);
    if (!gc_attach(w) || (stress_rng_one_in(&w->rng, 4) && !gc_attach(w))) return;
    gc_actor a;
    memset(&a, 0, sizeof a);
    double until = stress_now() + st->p->child_s * (double)stress_rng_range(&w->rng, 1, 8) / 8.0;
    bool ok = true;
    for (uint64_t step = 0; ok && stress_running(w->ctx) && (step % 32 || stress_now() < until); step++)
        ok = gc_mixed_step(w, st, &a);
    for (unsigned i = (unsigned)stress_rng_range(&w->rng, 1, 3); ok && i > 0; i--) { /* young garbage at exit */
        ouro_object *ring = gc_ring_new(w, st, (uint32_t)stress_rng_range(&w->rng, 1, st->p->ring_max));
        ok = ring != NULL;
        ouro_xdecref(ring);
    }
    if (ok) ok = gc_actor_leave(w, st, &a);
    unsigned how = (unsigned)stress_rng_below(&w->rng, 3);
    atomic_fetch_add_explicit(&st->exits[how], 1, memory_order_relaxed);
    if (how == 1) return; /* exits attached */
    ouro_thread_detach();
    if (how == 2) {
        for (unsigned i = 0; ok && i < 4; i++) {
            void *b = atomic_exchange(&st->blocks[stress_rng_below(&w->rng, st->p->blocks)], NULL);
            if (b) ok = gc_block_free(w, st, b, "freed by a detached thread");
        }
    }
}

/* A lane: attached for the whole run; alternates a stint of its own work (starting with a collection
 * or a stop) with a child thread, which it waits for offline. */
static void gc_lane(stress_worker *w) {
    gc_state *st = w->arg;
    gc_actor a;
    memset(&a, 0, sizeof a);
    bool ok = gc_attach(w);
    for (uint64_t gen = 1; ok && stress_running(w->ctx); gen++) {
        ok = stress_rng_one_in(&w->rng, 2) ? gc_collect_op(w, st) : gc_stop_op(w, st, &a);
        for (unsigned i = 0; ok && i < st->p->stint && stress_running(w->ctx); i++) ok = gc_mixed_step(w, st, &a);
        if (!ok || !stress_running(w->ctx)) break;
        ouro_offline_begin(); /* blocked in the join: the world may stop meanwhile */
        ok = stress_run_threads(w->ctx, w->index, 1, gen, gc_child, st);
        ouro_offline_end();
    }
    gc_actor_leave(w, st, &a);
    if (w->index % 2) ouro_thread_detach(); /* the others exit attached */
}

static bool mixed_body(stress_worker *mw, gc_state *st) {
    stress_ctx *ctx = mw->ctx;
    gc_delta d;
    if (!gc_run_workers(ctx, st, gc_lane, &d)) return false;
    bool ok = !stress_failed(ctx);
    if (ok && (d.collections[0] == 0 || d.collected == 0))
        ok = stress_fail(ctx, "%llu collections of generation 0 freed %llu objects: nothing was tested",
                         (unsigned long long)d.collections[0], (unsigned long long)d.collected);
    if (ok && (atomic_load(&st->children) == 0 || atomic_load(&st->stops) == 0 || atomic_load(&st->collects) == 0))
        ok = stress_fail(ctx, "%llu children, %llu stops, %llu explicit collections: nothing was tested",
                         (unsigned long long)atomic_load(&st->children), (unsigned long long)atomic_load(&st->stops),
                         (unsigned long long)atomic_load(&st->collects));
    stress_count_checks(mw, 2);
    /* Take everything back, checking it: the table, the shared blocks, the shared containers' items. */
    for (size_t j = 0; j < st->p->table; j++) {
        ouro_object *o = atomic_exchange(&st->table[j], NULL);
        if (o && ok) ok = gc_check_object(mw, st, o, true, "left in the table");
        ouro_xdecref(o);
    }
    for (size_t j = 0; j < st->p->blocks; j++) {
        void *b = atomic_exchange(&st->blocks[j], NULL);
        if (b && ok) ok = gc_block_free(mw, st, b, "left in the shared slots");
        else if (b) ouro_free(b);
    }
    size_t pos = 0, items = ouro_list_size(st->list);
    ouro_object *v;
    while (ok && ouro_list_iter_next(st->list, &pos, &v) == 1) ok = gc_check_drop(mw, st, v, "left in the shared list");
    stress_note(ctx, "%llu nodes, %llu rings, %llu blocks, %llu counts by non-owners, %llu container ops, "
                "%llu cross-thread cycles; %llu children (exits: %llu detached, %llu attached, %llu detached "
                "then freeing); %llu explicit collections, %llu stops; %llu collections (%llu, %llu, %llu) freed "
                "%llu; list %zu, dict %zu at the end",
                (unsigned long long)atomic_load(&st->made), (unsigned long long)atomic_load(&st->rings),
                (unsigned long long)atomic_load(&st->blocks_made), (unsigned long long)atomic_load(&st->shared_counts),
                (unsigned long long)atomic_load(&st->container_ops), (unsigned long long)atomic_load(&st->cross),
                (unsigned long long)atomic_load(&st->children), (unsigned long long)atomic_load(&st->exits[0]),
                (unsigned long long)atomic_load(&st->exits[1]), (unsigned long long)atomic_load(&st->exits[2]),
                (unsigned long long)atomic_load(&st->collects), (unsigned long long)atomic_load(&st->stops),
                (unsigned long long)d.all, (unsigned long long)d.collections[0],
                (unsigned long long)d.collections[1], (unsigned long long)d.collections[2],
                (unsigned long long)d.collected,
                items, ouro_dict_size(st->dict));
    return ok;
}

/* ---- the run: set-up and the end oracle ------------------------------------------------------------ */

#define GC_WATCHED 3

static bool gc_type_live(stress_worker *w, const ouro_type *t, size_t want, const char *when) {
    ouro_type_stats s;
    ouro_type_get_stats(t, &s);
    if (s.live != want) return stress_fail(w->ctx, "%s: %zu %s objects alive, %zu expected", when, s.live, t->name, want);
    stress_count_checks(w, 1);
    return true;
}

/* The number of tracked objects (ouro_gc_get_objects(-1)), or -1 with a failure recorded. */
static long gc_tracked_count(stress_ctx *ctx) {
    ouro_object *all = ouro_gc_get_objects(-1);
    if (!all) return stress_fail(ctx, "ouro_gc_get_objects: %s", ouro_err_message()), -1;
    long n = (long)ouro_list_size(all);
    ouro_decref(all);
    return n;
}

static bool gc_run(stress_ctx *ctx, bool mixed, bool (*body)(stress_worker *mw, gc_state *st)) {
    gc_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->ctx = ctx;
    st->p = ctx->short_run ? &gc_short : &gc_full;
    st->n = ctx->threads;
    st->mixed = mixed;
    gc_current = st;
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    bool ok = false;
    const ouro_type *watched[GC_WATCHED] = { &ouro_list_type, &ouro_dict_type, &ouro_str_type };
    ouro_type_stats before[GC_WATCHED];
    static const char *const slots[] = { "next", "aux", NULL };
    ouro_type_spec spec = { .name = "stress-gc-node", .basic_size = sizeof(gnode), .flags = OURO_TYPE_GC,
                            .slots = slots, .dealloc = gnode_dealloc };
    bool was_enabled = ouro_gc_is_enabled();
    size_t leftover_bytes = (size_t)st->n * st->p->held * sizeof *st->leftover;
    long tracked0 = -1;
    ouro_gc_enable(); /* automatic collections, at the default thresholds */
    /* The baseline: a clean heap (and no retained GC pools), nothing attached. */
    if (ouro_gc_collect(2) < 0 || (tracked0 = gc_tracked_count(ctx)) < 0) {
        if (!stress_failed(ctx)) stress_fail(ctx, "ouro_gc_collect at the start: %s", ouro_err_message());
        goto out;
    }
    for (int i = 0; i < GC_WATCHED; i++) ouro_type_get_stats(watched[i], &before[i]);
    if (ouro_fini() != 0) {
        stress_fail(ctx, "ouro_fini at the start: %s", ouro_err_message());
        goto out;
    }
    ouro_alloc_collect();
    if (ouro_alloc_stats(&st->base) != 0 || !(st->node_type = ouro_type_new(&spec))) {
        stress_fail(ctx, "set-up: %s", ouro_err_message());
        goto out;
    }
    spec.name = "stress-gc-fnode";
    spec.finalize = gnode_finalize;
    if (!(st->fnode_type = ouro_type_new(&spec))) {
        stress_fail(ctx, "ouro_type_new: %s", ouro_err_message());
        goto out;
    }
    st->key_next = ouro_str_from_cstr("next");
    st->key_self = ouro_str_from_cstr("self");
    if (!st->key_next || !st->key_self) {
        stress_fail(ctx, "set-up: %s", ouro_err_message());
        goto out;
    }
    if (mixed) {
        st->keys = stress_map(ctx, st->p->keys * sizeof *st->keys);
        st->table = stress_map(ctx, st->p->table * sizeof *st->table);
        st->blocks = stress_map(ctx, st->p->blocks * sizeof *st->blocks);
        st->list = ouro_list_new(0);
        st->dict = ouro_dict_new();
        if (!st->keys || !st->table || !st->blocks || !st->list || !st->dict) {
            if (!stress_failed(ctx)) stress_fail(ctx, "set-up: %s", ouro_err_message());
            goto out;
        }
        for (size_t i = 0; i < st->p->keys; i++)
            if (!(st->keys[i] = ouro_str_from_format("key-%zu", i))) {
                stress_fail(ctx, "ouro_str_from_format: %s", ouro_err_message());
                goto out;
            }
    } else if (!(st->leftover = stress_map(ctx, leftover_bytes))) {
        goto out;
    }
    ouro_thread_detach(); /* not attached while the workers run: a blocked attached thread stalls stops */
    ok = body(&mw, st) && !stress_failed(ctx);
out:
    if (st->list) ouro_decref(st->list);
    if (st->dict) ouro_decref(st->dict);
    for (size_t i = 0; st->keys && i < st->p->keys; i++) ouro_xdecref(st->keys[i]);
    for (size_t i = 0; st->leftover && i < (size_t)st->n * st->p->held; i++) ouro_xdecref(st->leftover[i]);
    ouro_xdecref(st->key_next);
    ouro_xdecref(st->key_self);
    atomic_store(&st->ending, true); /* the finalizers below resurrect nothing */
    for (int i = 0; i < GC_RESURRECT_SLOTS; i++) ouro_xdecref(atomic_exchange(&st->resurrected[i], NULL));
    /* Collect until nothing is left (what a finalizer dropped during one may need the next). */
    long got = 0;
    for (int round = 0; round < 4 && (got = ouro_gc_collect(2)) > 0; round++) {
    }
    if (ok && got != 0) ok = stress_fail(ctx, "full collections still find garbage after 4 rounds (%ld)", got);
    uint64_t made = atomic_load(&st->made), freed = atomic_load(&st->freed);
    if (ok && made != freed)
        ok = stress_fail(ctx, "%llu nodes made, %llu freed after the final collections (%llu lost)",
                         (unsigned long long)made, (unsigned long long)freed, (unsigned long long)(made - freed));
    if (ok && (atomic_load(&st->held_finalized) || atomic_load(&st->held_freed) || atomic_load(&st->bad_dealloc) ||
               atomic_load(&st->bad_finalize) || atomic_load(&st->refinalized)))
        ok = stress_fail(ctx, "held nodes finalized %llu, freed %llu; bad canary at dealloc %llu, at finalize %llu; "
                         "finalized twice %llu", (unsigned long long)atomic_load(&st->held_finalized),
                         (unsigned long long)atomic_load(&st->held_freed), (unsigned long long)atomic_load(&st->bad_dealloc),
                         (unsigned long long)atomic_load(&st->bad_finalize), (unsigned long long)atomic_load(&st->refinalized));
    if (ok && atomic_load(&st->blocks_made) != atomic_load(&st->blocks_freed))
        ok = stress_fail(ctx, "%llu blocks made, %llu freed", (unsigned long long)atomic_load(&st->blocks_made),
                         (unsigned long long)atomic_load(&st->blocks_freed));
    if (ok && made == 0) ok = stress_fail(ctx, "no node was made: nothing was tested");
    stress_count_checks(&mw, 4);
    for (int i = 0; ok && i < GC_WATCHED; i++) ok = gc_type_live(&mw, watched[i], before[i].live, "after the end");
    if (ok) ok = gc_type_live(&mw, st->node_type, 0, "after the end") && gc_type_live(&mw, st->fnode_type, 0, "after the end");
    if (ok) {
        long tracked = gc_tracked_count(ctx);
        if (tracked != tracked0 && !stress_failed(ctx))
            ok = stress_fail(ctx, "%ld tracked objects after the end, %ld at the start", tracked, tracked0);
        stress_count_checks(&mw, 1);
    }
    ouro_thread_detach();
    if (ok && ouro_type_free(st->node_type) != 0) ok = stress_fail(ctx, "ouro_type_free: %s", ouro_err_message());
    if (ok && ouro_type_free(st->fnode_type) != 0) ok = stress_fail(ctx, "ouro_type_free: %s", ouro_err_message());
    if (ok && ouro_fini() != 0) ok = stress_fail(ctx, "ouro_fini after the join: %s", ouro_err_message());
    if (ok) {
        ouro_alloc_collect();
        ok = stress_expect_alloc_baseline(&mw, &st->base);
    }
    if (!was_enabled) ouro_gc_disable();
    if (st->keys) stress_unmap(st->keys, st->p->keys * sizeof *st->keys);
    if (st->table) stress_unmap(st->table, st->p->table * sizeof *st->table);
    if (st->blocks) stress_unmap(st->blocks, st->p->blocks * sizeof *st->blocks);
    if (st->leftover) stress_unmap(st->leftover, leftover_bytes);
    stress_unmap(st, sizeof *st);
    return ok && !stress_failed(ctx);
}

static bool gc_churn(stress_ctx *ctx) { return gc_run(ctx, false, churn_body); }
static bool gc_mixed(stress_ctx *ctx) { return gc_run(ctx, true, mixed_body); }

const stress_scenario stress_gc_scenarios[] = {
    { "gc-churn", "rings of nodes, lists and dicts dropped as garbage; automatic collections free them, held ones never",
      gc_churn },
    { "gc-mixed", "allocation, shared counts, containers, cross-thread cycles, thread churn, collections and stops at once",
      gc_mixed },
    { NULL, NULL, NULL },
};
