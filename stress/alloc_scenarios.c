/* stress/alloc_scenarios.c — the allocator's stress scenarios.
 *
 *   alloc-churn         random sizes on every path, bounded live sets, realloc and calloc
 *   alloc-transfer      mimalloc's test-stress pattern: re-created threads trading blocks
 *   alloc-thread-churn  threads exit holding published blocks; later threads free them
 *   alloc-drain         a large live set freed (partly cross-thread): RSS must come back by itself
 *
 * Oracles shared by all four: every block carries a canary pattern over all the bytes it was given
 * (its requested size, now and then its whole usable size) checked in full when it is freed; every
 * allocation is checked for alignment, usable size and (calloc) zeroes; at the end, with every
 * worker joined, ouro_alloc_collect() must bring the counts back to the baseline taken at the start:
 * blocks in use per class, large blocks and bytes, live heaps, and abandoned pools (none).
 *
 * Blocks are tracked two ways. A record (alloc_block: pointer, patterned bytes, tag) when the owner
 * keeps a table anyway (churn, drain). A self-describing block when blocks travel between threads
 * through single atomic slots (transfer, thread-churn): its first ALLOC_HEADER bytes hold its size
 * and tag, the pattern covers the rest, so whoever frees it can check it. */
#include "stress/stress.h"

#include <ouro.h>

#include <stdio.h>
#include <string.h>

/* ---- parameters: every size knob in one place ---------------------------------------------------- */

typedef struct alloc_params {
    size_t churn_slots;      /* alloc-churn: live-set slots per thread (about half are in use) */
    size_t transfer_data;    /* alloc-transfer: short-lived slots per thread */
    size_t transfer_kept;    /* alloc-transfer: long-lived slots per thread (freed at thread exit) */
    size_t transfer_steps;   /* alloc-transfer: operations per thread per iteration (x 1..4) */
    size_t pool_slots;       /* alloc-thread-churn: slots of the global pool */
    size_t batch;            /* alloc-thread-churn: blocks a thread allocates per round */
    size_t max_rounds;       /* alloc-thread-churn: rounds in a thread's life, 1..max */
    size_t drain_total;      /* alloc-drain: requested bytes of the live set, all threads together */
    size_t drain_warmup;     /* alloc-drain: the warm-up round's live set */
} alloc_params;

static const alloc_params alloc_full = {
    .churn_slots = 4096,
    .transfer_data = 512, .transfer_kept = 128, .transfer_steps = 20000,
    .pool_slots = 4096, .batch = 256, .max_rounds = 8,
    .drain_total = (size_t)512 << 20, .drain_warmup = (size_t)8 << 20,
};

/* --short: sanitizer builds (TSan is ~10x slower); every path is still taken. */
static const alloc_params alloc_short = {
    .churn_slots = 256,
    .transfer_data = 64, .transfer_kept = 16, .transfer_steps = 2000,
    .pool_slots = 256, .batch = 32, .max_rounds = 4,
    .drain_total = (size_t)32 << 20, .drain_warmup = (size_t)2 << 20,
};

#define ALLOC_TRANSFER_SLOTS 1000 /* mimalloc test-stress's TRANSFERS */
#define ALLOC_SLOTS_MAX 4096      /* room for the transfer array or the thread-churn pool */
#define ALLOC_EDGES_MAX 512
#define ALLOC_HEADER 16           /* bytes of a self-describing block's header */
#define ALLOC_DRAIN_POLL_S 1.0    /* how long RSS may take to come back */
#define ALLOC_DRAIN_SLACK ((size_t)1 << 20) /* fixed RSS allowance on top of 10% of the baseline */
/* Under ThreadSanitizer, RSS also holds the shadow and sync metadata TSan keeps for memory that ouro
 * purged with madvise (TSan drops them on munmap only): 2-4 MiB per 32 MiB round that are not the
 * allocator's, measured at seeds 1-3. There the RSS figures are reported but not enforced; the
 * bytes-mapped oracle, which is ouro's own count, is enforced in every build. */
/* Under AddressSanitizer likewise: ouro poisons freed blocks and free pools in ASan's shadow
 * (alloc/sanitize.h), and that shadow (an eighth of the live set, 4 MiB per 32 MiB round) stays
 * resident after the pools are purged. */
#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_DRAIN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_DRAIN_ASAN 1
#endif
#endif
#ifndef ALLOC_DRAIN_ASAN
#define ALLOC_DRAIN_ASAN 0
#endif
#define ALLOC_DRAIN_ENFORCE_RSS (!OURO_TSAN && !ALLOC_DRAIN_ASAN)

/* ---- sizes --------------------------------------------------------------------------------------- */

/* A size distribution: tiers drawn by weight; an edge tier draws one of the class and pool boundary
 * sizes (alloc_state.edges) that lies in [lo, hi]. A table ends with a zero weight. */
typedef struct alloc_tier {
    unsigned weight;
    size_t lo, hi;
    bool edge;
} alloc_tier;

/* alloc-churn: every path, size 0 and own mappings included. */
static const alloc_tier alloc_churn_sizes[] = {
    { 500, 0, 65536, true },
    { 50, 0, 0, false },
    { 8600, 1, 512, false },
    { 700, 513, 4096, false },
    { 145, 4097, 65536, false },
    { 5, 65537, (size_t)2 << 20, false },
    { 0, 0, 0, false },
};

/* alloc-transfer and alloc-thread-churn: self-describing blocks, so at least ALLOC_HEADER bytes. */
static const alloc_tier alloc_travel_sizes[] = {
    { 500, ALLOC_HEADER, 65536, true },
    { 8500, ALLOC_HEADER, 512, false },
    { 800, 513, 4096, false },
    { 190, 4097, 65536, false },
    { 10, 65537, (size_t)256 << 10, false },
    { 0, 0, 0, false },
};

/* alloc-drain: the pool-backed classes only. */
static const alloc_tier alloc_drain_sizes[] = {
    { 9000, 1, 512, false },
    { 1000, 513, 4096, false },
    { 0, 0, 0, false },
};

/* ---- one run's shared state ---------------------------------------------------------------------- */

/* A block known by record. */
typedef struct alloc_block {
    void *p;
    size_t size; /* bytes covered by the pattern (the requested size or the usable size) */
    uint64_t tag;
} alloc_block;

/* A self-describing block's first bytes. */
typedef struct alloc_header {
    size_t size; /* bytes of the block covered by header and pattern */
    uint64_t tag;
} alloc_header;

_Static_assert(sizeof(alloc_header) == ALLOC_HEADER, "header size");

/* Everything one scenario run shares between its threads. The main thread writes the plain fields
 * before starting workers (pthread_create orders them); drain's per-round fields are also written
 * between rounds only, and drain's peak fields by worker 0 between two barriers. */
typedef struct alloc_state {
    const alloc_params *p;
    ouro_alloc_stats_t base; /* after a collect at the start */
    size_t edges[ALLOC_EDGES_MAX];
    size_t nedges;

    /* alloc-transfer's transfer array / alloc-thread-churn's pool. Blocks are published and taken
     * with alloc_swap() (acq_rel), so a block's pattern is visible to whoever takes it. */
    _Atomic(void *) slots[ALLOC_SLOTS_MAX];
    size_t nslots;

    /* alloc-drain, one round */
    stress_barrier *barrier;
    size_t share;                            /* requested bytes per worker */
    size_t cap;                              /* records per worker */
    alloc_block *recs[STRESS_MAX_THREADS];
    size_t nrecs[STRESS_MAX_THREADS];        /* written before the first barrier */
    size_t peak_rss, peak_mapped;            /* written by worker 0 at the peak */
} alloc_state;

/* Adds the sizes around a boundary: the debug build's usable size (8 less), the size itself, and
 * their neighbours. */
static void alloc_add_edges(alloc_state *st, size_t size) {
    static const long deltas[] = { -9, -8, -7, -1, 0, 1 };
    for (size_t i = 0; i < sizeof deltas / sizeof deltas[0] && st->nedges < ALLOC_EDGES_MAX; i++) {
        if (deltas[i] < 0 && size < (size_t)-deltas[i]) continue;
        st->edges[st->nedges++] = size + (size_t)deltas[i];
    }
}

/* Draws a size from tiers. */
static size_t alloc_pick_size(stress_worker *w, const alloc_tier *tiers) {
    const alloc_state *st = w->arg;
    unsigned total = 0;
    for (const alloc_tier *t = tiers; t->weight; t++) total += t->weight;
    uint64_t r = stress_rng_below(&w->rng, total);
    const alloc_tier *t = tiers;
    for (; r >= t->weight; t++) r -= t->weight;
    if (t->edge && st->nedges) {
        for (int tries = 0; tries < 8; tries++) {
            size_t e = st->edges[stress_rng_below(&w->rng, st->nedges)];
            if (e >= t->lo && e <= t->hi) return e;
        }
    }
    return stress_rng_range(&w->rng, t->lo, t->hi);
}

/* ---- checked allocation and free ----------------------------------------------------------------- */

/* Checks what the API promises of a new block: 16-byte alignment and usable size >= size. */
static bool alloc_check_new(stress_worker *w, const char *fn, void *p, size_t size, size_t *usable) {
    if ((uintptr_t)p % 16 != 0)
        return stress_fail(w->ctx, "%s(%zu) returned %p: not 16-byte aligned", fn, size, p);
    *usable = ouro_usable_size(p);
    if (*usable < size)
        return stress_fail(w->ctx, "%s(%zu) returned %p with usable size %zu", fn, size, p, *usable);
    stress_count_checks(w, 2);
    return true;
}

/* The bytes a new block's pattern covers: its size, or one time in 8 its whole usable size (which
 * the API says may be written in full; ouro's own debug canary sits right after it). */
static size_t alloc_fill_size(stress_worker *w, size_t size, size_t usable) {
    return stress_rng_one_in(&w->rng, 8) ? usable : size;
}

/* Allocates size bytes with ouro_alloc or, one time in 16, ouro_calloc (then checks the zeroes),
 * checks the block and returns it with *fill set (alloc_fill_size). NULL with a failure recorded. */
static void *alloc_checked(stress_worker *w, size_t size, size_t *fill) {
    bool zeroed = stress_rng_one_in(&w->rng, 16);
    size_t n = 1, each = size;
    if (zeroed && size % 16 == 0 && size > 0 && stress_rng_one_in(&w->rng, 2)) n = size / 16, each = 16;
    unsigned char *p = zeroed ? ouro_calloc(n, each) : ouro_alloc(size);
    const char *fn = zeroed ? "ouro_calloc" : "ouro_alloc";
    if (!p) {
        stress_fail(w->ctx, "%s(%zu) returned NULL: %s", fn, size, ouro_err_message());
        return NULL;
    }
    stress_count_ops(w, 1);
    size_t usable = 0;
    bool ok = alloc_check_new(w, fn, p, size, &usable);
    for (size_t i = 0; ok && zeroed && i < size; i++)
        if (p[i] != 0) ok = stress_fail(w->ctx, "ouro_calloc(%zu, %zu) = %p: byte %zu is 0x%02x", n, each, p, i, p[i]);
    if (!ok) {
        ouro_free(p);
        return NULL;
    }
    if (zeroed) stress_count_checks(w, 1);
    *fill = alloc_fill_size(w, size, usable);
    return p;
}

/* The pattern key of a block. */
static uint64_t alloc_key(const alloc_block *b) {
    return stress_canary_key(b->p, b->size, b->tag);
}

/* Writes a new block's pattern over b's bytes from offset off. */
static void alloc_fill(alloc_block *b, size_t off) {
    stress_canary_fill((unsigned char *)b->p + off, b->size - off, alloc_key(b));
}

/* Allocates a block of size bytes into *b and writes its pattern; self_describing writes the header
 * first (size >= ALLOC_HEADER). false with a failure recorded. */
static bool alloc_block_new(stress_worker *w, alloc_block *b, size_t size, bool self_describing) {
    size_t fill = 0;
    void *p = alloc_checked(w, size, &fill);
    if (!p) return false;
    *b = (alloc_block){ .p = p, .size = fill, .tag = stress_rng_next(&w->rng) };
    if (self_describing) memcpy(p, &(alloc_header){ .size = b->size, .tag = b->tag }, ALLOC_HEADER);
    alloc_fill(b, self_describing ? ALLOC_HEADER : 0);
    return true;
}

/* Verifies b's pattern from offset off and frees it. A broken block is recorded and left allocated
 * (freeing it could crash before the report); b is cleared either way. */
static bool alloc_block_free(stress_worker *w, alloc_block *b, size_t off) {
    void *p = b->p;
    bool ok = stress_canary_verify(w, "at free", p, off, b->size, alloc_key(b));
    b->p = NULL;
    if (!ok) return false;
    ouro_free(p);
    stress_count_ops(w, 1);
    return true;
}

/* Resizes b: verifies it, reallocs, checks the new block and that its first min(old, new) bytes
 * kept the old pattern, then writes a new one. false with a failure recorded (b stays freeable). */
static bool alloc_block_realloc(stress_worker *w, alloc_block *b, size_t size) {
    if (!stress_canary_verify(w, "before realloc", b->p, 0, b->size, alloc_key(b))) return false;
    uint64_t old_key = alloc_key(b);
    size_t keep = b->size < size ? b->size : size;
    void *q = ouro_realloc(b->p, size);
    if (!q) return stress_fail(w->ctx, "ouro_realloc(%p, %zu) returned NULL: %s", b->p, size, ouro_err_message());
    stress_count_ops(w, 1);
    *b = (alloc_block){ .p = q, .size = 0, .tag = stress_rng_next(&w->rng) };
    size_t usable = 0;
    if (!alloc_check_new(w, "ouro_realloc", q, size, &usable) ||
        !stress_canary_verify(w, "after realloc (kept prefix)", q, 0, keep, old_key))
        return false;
    b->size = alloc_fill_size(w, size, usable);
    alloc_fill(b, 0);
    return true;
}

/* Frees records [from, to) that hold a block. false when a pattern was broken. */
static bool alloc_blocks_free(stress_worker *w, alloc_block *v, size_t from, size_t to) {
    bool ok = true;
    for (size_t i = from; i < to; i++)
        if (v[i].p) ok &= alloc_block_free(w, &v[i], 0);
    return ok;
}

/* A new self-describing block of size >= ALLOC_HEADER bytes; NULL with a failure recorded. */
static void *alloc_travel_new(stress_worker *w, size_t size) {
    alloc_block b;
    return alloc_block_new(w, &b, size, true) ? b.p : NULL;
}

/* Checks and frees a self-describing block (NULL is fine): the header must fit the block's usable
 * size, the pattern must be whole. */
static bool alloc_travel_free(stress_worker *w, void *p) {
    if (!p) return true;
    alloc_header h;
    memcpy(&h, p, sizeof h);
    size_t usable = ouro_usable_size(p);
    if (h.size < ALLOC_HEADER || h.size > usable)
        return stress_fail(w->ctx, "header of block %p says %zu bytes; usable size %zu", p, h.size, usable);
    return alloc_block_free(w, &(alloc_block){ .p = p, .size = h.size, .tag = h.tag }, ALLOC_HEADER);
}

/* Frees every block of a plain array of self-describing blocks. */
static bool alloc_travel_free_all(stress_worker *w, void **v, size_t n) {
    bool ok = true;
    for (size_t i = 0; i < n; i++, v++) {
        ok &= alloc_travel_free(w, *v);
        *v = NULL;
    }
    return ok;
}

/* Puts p in a shared slot and returns what was there. acq_rel pairs with the same exchange in the
 * thread that took the block out (or put it in): the block's pattern happens-before its check. */
static void *alloc_swap(_Atomic(void *) *slot, void *p) {
    return atomic_exchange_explicit(slot, p, memory_order_acq_rel);
}

/* Empties shared slots, each with probability 1/one_in, freeing their blocks. */
static bool alloc_slots_free(stress_worker *w, alloc_state *st, uint64_t one_in) {
    bool ok = true;
    for (size_t i = 0; i < st->nslots; i++)
        if (stress_rng_one_in(&w->rng, one_in)) ok &= alloc_travel_free(w, alloc_swap(&st->slots[i], NULL));
    return ok;
}

/* Runs ouro_alloc_check() on the calling thread's heap. */
static bool alloc_check_heap(stress_worker *w) {
    if (ouro_alloc_check() != 0) return stress_fail(w->ctx, "ouro_alloc_check: %s", ouro_err_message());
    stress_count_checks(w, 1);
    return true;
}

/* ---- the baseline oracle ------------------------------------------------------------------------- */

/* Takes the baseline (after a collect) and the boundary sizes. */
static bool alloc_begin(stress_worker *mw, alloc_state *st) {
    ouro_alloc_collect();
    if (ouro_alloc_stats(&st->base) != 0)
        return stress_fail(mw->ctx, "ouro_alloc_stats: %s", ouro_err_message());
    alloc_add_edges(st, 0);
    for (size_t i = 0; i < st->base.nclasses; i++) alloc_add_edges(st, st->base.classes[i].block_size);
    for (size_t k = 1; k <= 4; k++) alloc_add_edges(st, k * st->base.pool_size);
    return true;
}

/* The end oracle, on the main thread once every worker is joined: after ouro_alloc_collect(), every
 * class's blocks in use, the large blocks and bytes, the live heaps and the abandoned pools are back at
 * the baseline (whose abandoned pools are 0 unless an earlier scenario failed and leaked). */
static bool alloc_expect_baseline(stress_worker *mw, const alloc_state *st) {
    ouro_alloc_collect();
    if (!alloc_check_heap(mw)) return false;
    return stress_expect_alloc_baseline(mw, &st->base);
}

/* Runs one allocator scenario: baseline, body, then the baseline oracle (skipped after a failure,
 * whose leaked blocks would only repeat it). */
static bool alloc_run(stress_ctx *ctx, bool (*body)(stress_worker *mw, alloc_state *st)) {
    alloc_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->p = ctx->short_run ? &alloc_short : &alloc_full;
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    bool ok = alloc_begin(&mw, st) && body(&mw, st) && !stress_failed(ctx) && alloc_expect_baseline(&mw, st);
    stress_unmap(st, sizeof *st);
    return ok;
}

/* ---- alloc-churn --------------------------------------------------------------------------------- */

/* A worker: picks a random slot of its live set; allocates into an empty one, else reallocs (1 in 8)
 * or frees. Now and then empties the whole set (pools go back to the arena) or checks its heap. */
static void alloc_churn_worker(stress_worker *w) {
    const alloc_state *st = w->arg;
    size_t n = st->p->churn_slots;
    alloc_block *live = stress_map(w->ctx, n * sizeof *live);
    if (!live) return;
    bool ok = true;
    while (ok && stress_running(w->ctx)) {
        alloc_block *b = &live[stress_rng_below(&w->rng, n)];
        if (!b->p) ok = alloc_block_new(w, b, alloc_pick_size(w, alloc_churn_sizes), false);
        else if (stress_rng_one_in(&w->rng, 8)) ok = alloc_block_realloc(w, b, alloc_pick_size(w, alloc_churn_sizes));
        else ok = alloc_block_free(w, b, 0);
        if (ok && stress_rng_one_in(&w->rng, n * 16)) ok = alloc_blocks_free(w, live, 0, n);
        if (ok && stress_rng_one_in(&w->rng, 1 << 16)) ok = alloc_check_heap(w);
    }
    if (alloc_blocks_free(w, live, 0, n) && ok) alloc_check_heap(w);
    stress_unmap(live, n * sizeof *live);
}

static bool alloc_churn_body(stress_worker *mw, alloc_state *st) {
    return stress_run_threads(mw->ctx, 0, mw->ctx->threads, 0, alloc_churn_worker, st);
}

/* ---- alloc-transfer ------------------------------------------------------------------------------ */

/* A worker of one iteration (after mimalloc's test-stress): each step allocates into a long-lived
 * or a short-lived slot (freeing what was there), trades a short-lived block with a random slot of
 * the global transfer array, or frees one. Frees what it still holds when done. */
static void alloc_transfer_worker(stress_worker *w) {
    alloc_state *st = w->arg;
    const alloc_params *p = st->p;
    size_t steps = p->transfer_steps * (1 + w->index % 4);
    size_t bytes = (p->transfer_data + p->transfer_kept) * sizeof(void *);
    void **data = stress_map(w->ctx, bytes);
    if (!data) return;
    void **kept = data + p->transfer_data;
    bool ok = true;
    for (size_t s = 0; ok && s < steps && stress_running(w->ctx); s++) {
        uint64_t r = stress_rng_below(&w->rng, 100);
        void **slot = r < 10 ? &kept[stress_rng_below(&w->rng, p->transfer_kept)]
                             : &data[stress_rng_below(&w->rng, p->transfer_data)];
        if (r < 50) {
            ok = alloc_travel_free(w, *slot);
            *slot = ok ? alloc_travel_new(w, alloc_pick_size(w, alloc_travel_sizes)) : NULL;
            ok = ok && *slot;
        } else if (r < 75) {
            *slot = alloc_swap(&st->slots[stress_rng_below(&w->rng, st->nslots)], *slot);
            stress_count_ops(w, 1);
        } else {
            ok = alloc_travel_free(w, *slot);
            *slot = NULL;
        }
    }
    alloc_travel_free_all(w, data, p->transfer_data + p->transfer_kept);
    stress_unmap(data, bytes);
}

/* Iterations of fresh threads until the time is up; between iterations the main thread frees about
 * half of the transfer array (blocks of exited threads), and all of it at the end. */
static bool alloc_transfer_body(stress_worker *mw, alloc_state *st) {
    stress_ctx *ctx = mw->ctx;
    st->nslots = ALLOC_TRANSFER_SLOTS;
    bool ok = true;
    for (uint64_t gen = 0; ok && (gen == 0 || stress_running(ctx)); gen++)
        ok = stress_run_threads(ctx, 0, ctx->threads, gen, alloc_transfer_worker, st) && alloc_slots_free(mw, st, 2);
    return alloc_slots_free(mw, st, 1) && ok;
}

/* ---- alloc-thread-churn -------------------------------------------------------------------------- */

/* Publishes p into a random pool slot and frees the block it displaces, whoever allocated it (a
 * live thread or an exited one). */
static bool alloc_publish(stress_worker *w, alloc_state *st, void *p) {
    stress_count_ops(w, 1);
    return alloc_travel_free(w, alloc_swap(&st->slots[stress_rng_below(&w->rng, st->nslots)], p));
}

/* A short-lived thread: for 1..max rounds allocates a batch (freeing what it kept from the last
 * round), publishes half of it into the pool, frees a quarter, keeps the rest, and takes and frees a
 * few pool blocks. Exits publishing what it kept: it dies holding live blocks. */
static void alloc_thread_churn_child(stress_worker *w) {
    alloc_state *st = w->arg;
    const alloc_params *p = st->p;
    void **own = stress_map(w->ctx, p->batch * sizeof *own);
    if (!own) return;
    size_t rounds = stress_rng_range(&w->rng, 1, p->max_rounds);
    bool ok = true;
    for (size_t r = 0; ok && r < rounds && stress_running(w->ctx); r++) {
        for (size_t k = 0; ok && k < p->batch; k++) {
            ok = alloc_travel_free(w, own[k]);
            own[k] = ok ? alloc_travel_new(w, alloc_pick_size(w, alloc_travel_sizes)) : NULL;
            ok = ok && own[k];
        }
        for (size_t k = 0; ok && k < p->batch; k++) {
            uint64_t choice = stress_rng_below(&w->rng, 4);
            if (choice < 2) ok = alloc_publish(w, st, own[k]);
            else if (choice == 2) ok = alloc_travel_free(w, own[k]);
            if (choice <= 2) own[k] = NULL;
        }
        for (size_t k = 0; ok && k < p->batch / 4; k++) ok = alloc_publish(w, st, NULL);
    }
    for (size_t k = 0; ok && k < p->batch; k++) {
        ok = alloc_publish(w, st, own[k]);
        own[k] = NULL;
    }
    alloc_travel_free_all(w, own, p->batch);
    stress_unmap(own, p->batch * sizeof *own);
}

/* A lane: runs short-lived children one after another until the time is up. Lanes overlap, so
 * children exit while others live, and free each other's blocks both ways. */
static void alloc_thread_churn_lane(stress_worker *w) {
    for (uint64_t gen = 1; stress_running(w->ctx); gen++)
        if (!stress_run_threads(w->ctx, w->index, 1, gen, alloc_thread_churn_child, w->arg)) return;
}

/* Lanes of thread generations, then the main thread frees what is left in the pool. */
static bool alloc_thread_churn_body(stress_worker *mw, alloc_state *st) {
    st->nslots = st->p->pool_slots;
    bool ok = stress_run_threads(mw->ctx, 0, mw->ctx->threads, 0, alloc_thread_churn_lane, st);
    return alloc_slots_free(mw, st, 1) && ok;
}

/* ---- alloc-drain --------------------------------------------------------------------------------- */

/* A worker of one round: builds its share of the live set (touching every byte), waits for the
 * others; worker 0 notes the peak; then each frees the first quarter of its neighbour's blocks
 * (cross-thread, while the owner lives), waits, frees the rest of its own and exits. Keeps to the
 * barriers even after a failure. */
static void alloc_drain_worker(stress_worker *w) {
    alloc_state *st = w->arg;
    unsigned i = w->index, next = (w->index + 1) % w->ctx->threads;
    alloc_block *mine = st->recs[i];
    size_t k = 0, bytes = 0;
    while (bytes < st->share && k < st->cap && !stress_failed(w->ctx)) {
        size_t size = alloc_pick_size(w, alloc_drain_sizes);
        if (!alloc_block_new(w, &mine[k], size, false)) break;
        bytes += size;
        k++;
    }
    st->nrecs[i] = k;
    stress_barrier_wait(st->barrier);
    if (i == 0) {
        ouro_alloc_stats_t s;
        st->peak_rss = stress_rss_sample(w->ctx);
        st->peak_mapped = ouro_alloc_stats(&s) == 0 ? s.bytes_mapped : 0;
    }
    stress_barrier_wait(st->barrier);
    alloc_blocks_free(w, st->recs[next], 0, st->nrecs[next] / 4);
    stress_barrier_wait(st->barrier);
    alloc_blocks_free(w, mine, st->nrecs[i] / 4, st->nrecs[i]);
}

/* One round with a live set of total requested bytes; the records live in mappings of their own,
 * unmapped before returning so they leave RSS. */
static bool alloc_drain_round(stress_worker *mw, alloc_state *st, size_t total) {
    stress_ctx *ctx = mw->ctx;
    unsigned n = ctx->threads;
    st->share = total / n;
    st->cap = st->share / 256 + 1024;
    size_t bytes = st->cap * sizeof(alloc_block);
    bool ok = (st->barrier = stress_barrier_new(ctx, n)) != NULL;
    for (unsigned i = 0; ok && i < n; i++) ok = (st->recs[i] = stress_map(ctx, bytes)) != NULL;
    ok = ok && stress_run_threads(ctx, 0, n, 0, alloc_drain_worker, st);
    for (unsigned i = 0; i < n; i++) {
        stress_unmap(st->recs[i], bytes);
        st->recs[i] = NULL;
    }
    stress_barrier_free(st->barrier);
    st->barrier = NULL;
    return ok;
}

/* Waits up to ALLOC_DRAIN_POLL_S for RSS to fall to limit and the bytes mapped to mapped_limit (the
 * decay unmaps an empty arena up to one epoch after its pages went back: alloc/arena.c); returns the
 * last RSS reading, *waited the seconds it took. */
static size_t alloc_drain_settle(stress_ctx *ctx, size_t limit, size_t mapped_limit, double *waited) {
    double start = stress_now();
    size_t rss = stress_rss_sample(ctx);
    ouro_alloc_stats_t s;
    while ((rss > limit || (ouro_alloc_stats(&s) == 0 && s.bytes_mapped > mapped_limit)) &&
           stress_now() - start < ALLOC_DRAIN_POLL_S) {
        stress_sleep(0.005);
        rss = stress_rss_sample(ctx);
    }
    *waited = stress_now() - start;
    return rss;
}

/* "baseline X, peak Y, after Z" of one measure, in buf. */
static const char *alloc_fmt_levels(char *buf, size_t len, size_t base, size_t peak, size_t after) {
    char a[32], b[32], c[32];
    snprintf(buf, len, "baseline %s, peak %s, after %s", stress_fmt_bytes(a, sizeof a, (double)base),
             stress_fmt_bytes(b, sizeof b, (double)peak), stress_fmt_bytes(c, sizeof c, (double)after));
    return buf;
}

/* A warm-up round, then the RSS and mapped-bytes baselines; then rounds until the time is up (at
 * least one), each required to give its memory back without ouro_alloc_collect(): RSS within 10% of
 * the baseline plus ALLOC_DRAIN_SLACK within ALLOC_DRAIN_POLL_S, and bytes mapped back to the
 * baseline plus at most one empty arena. */
static bool alloc_drain_body(stress_worker *mw, alloc_state *st) {
    stress_ctx *ctx = mw->ctx;
    char total[32], lim[32], arena[32], rss_levels[128], map_levels[128];
    ouro_alloc_stats_t s;
    if (!alloc_drain_round(mw, st, st->p->drain_warmup)) return false;
    size_t base_rss = stress_rss_sample(ctx);
    if (ouro_alloc_stats(&s) != 0) return stress_fail(ctx, "ouro_alloc_stats: %s", ouro_err_message());
    size_t base_mapped = s.bytes_mapped, limit = base_rss + base_rss / 10 + ALLOC_DRAIN_SLACK;
    size_t worst_rss = 0, worst_mapped = 0, peak_rss = 0, peak_mapped = 0;
    double worst_wait = 0;
    unsigned rounds = 0;
    stress_fmt_bytes(total, sizeof total, (double)st->p->drain_total);
    stress_fmt_bytes(lim, sizeof lim, (double)limit);
    stress_fmt_bytes(arena, sizeof arena, (double)s.arena_size);
    do {
        if (!alloc_drain_round(mw, st, st->p->drain_total)) return false;
        double waited = 0;
        size_t rss = alloc_drain_settle(ctx, limit, base_mapped + s.arena_size, &waited);
        if (ouro_alloc_stats(&s) != 0) return stress_fail(ctx, "ouro_alloc_stats: %s", ouro_err_message());
        rounds++;
        alloc_fmt_levels(rss_levels, sizeof rss_levels, base_rss, st->peak_rss, rss);
        alloc_fmt_levels(map_levels, sizeof map_levels, base_mapped, st->peak_mapped, s.bytes_mapped);
        if (ALLOC_DRAIN_ENFORCE_RSS && rss > limit)
            return stress_fail(ctx, "round %u: RSS not back %.2f s after freeing a %s live set: %s (limit %s)",
                               rounds, waited, total, rss_levels, lim);
        if (s.bytes_mapped > base_mapped + s.arena_size)
            return stress_fail(ctx, "round %u: bytes mapped not back after freeing a %s live set: %s (one "
                               "empty arena of %s may stay)", rounds, total, map_levels, arena);
        stress_count_checks(mw, 2);
        if (rss >= worst_rss) {
            worst_rss = rss;
            worst_wait = waited;
        }
        worst_mapped = s.bytes_mapped > worst_mapped ? s.bytes_mapped : worst_mapped;
        peak_rss = st->peak_rss > peak_rss ? st->peak_rss : peak_rss;
        peak_mapped = st->peak_mapped > peak_mapped ? st->peak_mapped : peak_mapped;
    } while (stress_running(ctx));
    stress_note(ctx, "%s live set, %u round%s: RSS %s in %.3f s (limit %s%s); mapped %s", total, rounds,
                rounds == 1 ? "" : "s", alloc_fmt_levels(rss_levels, sizeof rss_levels, base_rss, peak_rss, worst_rss),
                worst_wait, lim, ALLOC_DRAIN_ENFORCE_RSS ? "" : ", not enforced under TSan",
                alloc_fmt_levels(map_levels, sizeof map_levels, base_mapped, peak_mapped, worst_mapped));
    return true;
}

/* ---- the table ----------------------------------------------------------------------------------- */

/* Run functions of the table. */
static bool alloc_churn(stress_ctx *ctx) { return alloc_run(ctx, alloc_churn_body); }
static bool alloc_transfer(stress_ctx *ctx) { return alloc_run(ctx, alloc_transfer_body); }
static bool alloc_thread_churn(stress_ctx *ctx) { return alloc_run(ctx, alloc_thread_churn_body); }
static bool alloc_drain(stress_ctx *ctx) { return alloc_run(ctx, alloc_drain_body); }

const stress_scenario stress_alloc_scenarios[] = {
    { "alloc-churn", "random sizes on every path, bounded live sets, realloc/calloc; canaries, counts back", alloc_churn },
    { "alloc-transfer", "re-created threads trade blocks through a 1000-slot array (mimalloc test-stress)", alloc_transfer },
    { "alloc-thread-churn", "threads exit holding published blocks that later threads free; heaps reclaimed", alloc_thread_churn },
    { "alloc-drain", "a large live set freed, partly cross-thread: RSS back near baseline within 1 s", alloc_drain },
    { NULL, NULL, NULL },
};
