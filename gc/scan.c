/* gc/scan.c — the full collection's mark: CPython's algorithm over every GC pool, with the counts in a
 * side table instead of the objects' headers.
 *
 * Why a second form of the algorithm. A young collection finds its candidates in lists and keeps each
 * one's gc_refs in its header's word 0 (gc.c): it touches few objects. A full collection touches every
 * tracked object, and what it costs is the cache misses: the header form reads and writes the header of
 * every reference's target (random addresses, one miss per reference), walks the graph depth first
 * (another miss per object), and restores every word 0 afterwards. Here:
 *
 * The side table. Every carved block of every GC pool gets one int64 entry, pool after pool in the
 * order the pools are visited (the sweep order); the arena header's gc_slot says where a pool's entries
 * start, so a reference's entry is found from its address alone (the address map, the arena header, a
 * multiply): the target object is not read. The entries of 1M objects take 8 MB, which stays in the
 * last-level cache while the objects themselves stream through it.
 *
 * Pass 1, sequential over the pools, fuses CPython's update_refs and subtract_refs: a candidate adds
 * its true count to its own entry and subtracts one from the entry of each reference's target (the
 * entries start at 0, so the order does not matter). A block that is no candidate (free, untracked,
 * frozen, immortal, or dead in this stop) sets its entry to NONCAND, which the subtractions cannot
 * bring near zero: it is never garbage and is not traversed, so what it refers to keeps the count it
 * gives (an outside reference, as in CPython). After pass 1 a candidate's entry is its gc_refs >= 0.
 *
 * Pass 2, the sweep mark: in table order, a candidate with gc_refs > 0 is reachable (marked REACH) and
 * traversed; each candidate target not yet marked is marked REACH. A target ahead of the sweep needs
 * nothing more: the sweep traverses it when it gets there. A target behind it is pushed on a stack and
 * traversed at once (its own targets likewise). So every REACH entry is traversed exactly once, and
 * objects are mostly read in address order. A heap built in allocation order (a tree, a list of
 * records) has few references backwards.
 *
 * Pass 3 reads the table once more: an entry neither REACH nor NONCAND is garbage. Pass 1 has moved every
 * candidate to generation 2 already (only those not there yet are written); nothing else of a survivor
 * is written: no header field stands for the collection.
 *
 * The tables are the collector's (it runs one collection at a time) and are kept for the next full
 * collection: allocating and faulting in 8 bytes per object each time would cost more than the scan. */
#include "gc/internal.h"

#include <string.h>

/* Entries: a candidate's gc_refs (0 <= gc_refs < NONCAND_MIN), NONCAND less what candidates subtracted
 * from it, or REACH. */
#define NONCAND ((int64_t)1 << 62)
#define NONCAND_MIN ((int64_t)1 << 61)
#define REACH INT64_MIN

/* A GC pool in the collection: its first block and the index of its first entry. */
typedef struct {
    char *data;
    size_t base;
    uint32_t block_size, carved;
} scan_pool;

static struct {
    int64_t *side; /* one entry per carved block of the pools */
    size_t side_cap;
    scan_pool *pools;
    size_t npools, pools_cap;
    size_t nentries;
    bool nomem;
} scan; /* the collector's */

typedef struct {
    size_t cursor;  /* the sweep's entry */
    objvec *stack;  /* REACH objects behind the cursor, not yet traversed */
} mark_ctx;

/* ---- the tables ------------------------------------------------------------------------------------- */

static void pool_add(ouro_pool_t *pool, void *arg) {
    (void)arg;
    if (pool->kind != OURO_KIND_GC || pool->carved == 0 || scan.nomem) return;
    if (scan.npools == scan.pools_cap) {
        size_t cap = scan.pools_cap ? scan.pools_cap * 2 : 256;
        scan_pool *v = realloc(scan.pools, cap * sizeof *v);
        if (!v) {
            scan.nomem = true;
            return;
        }
        scan.pools = v;
        scan.pools_cap = cap;
    }
    scan.pools[scan.npools++] =
        (scan_pool){ouro_pool_data(pool), scan.nentries, pool->block_size, pool->carved};
    scan.nentries += pool->carved;
}

/* Points each listed pool's gc_slot at its entries (set) or clears it. */
static void slots_set(bool set) {
    for (size_t i = 0; i < scan.npools; i++) {
        scan_pool *p = &scan.pools[i];
        ouro_pool_t *pool = ouro_pool_of(p->data);
        ouro_gc_slot *slot = &ouro_arena_of(p->data)->gc_slot[ouro_pool_index(pool)];
        if (set) {
            slot->index = (uint32_t)p->base + 1;
            slot->magic = (uint32_t)(((uint64_t)1 << 32) / p->block_size + 1);
        } else {
            *slot = (ouro_gc_slot){0};
        }
    }
}

/* Lists the GC pools and sizes the side table; false when out of memory or too many blocks for a
 * 32-bit index (the caller falls back). */
static bool tables_prepare(void) {
    scan.npools = scan.nentries = 0;
    scan.nomem = false;
    _ouro_gc_visit_pools(pool_add, NULL);
    if (scan.nomem || scan.nentries >= UINT32_MAX) return false;
    if (scan.nentries > scan.side_cap || scan.nentries * 4 < scan.side_cap) { /* grow, or give back 3/4 */
        size_t cap = scan.nentries + scan.nentries / 8 + 1024;
        int64_t *side = realloc(scan.side, cap * sizeof *side);
        if (!side) return false;
        scan.side = side;
        scan.side_cap = cap;
    }
    if (scan.nentries) memset(scan.side, 0, scan.nentries * sizeof *scan.side);
    slots_set(true);
    return true;
}

/* The entry of the object at o, or SIZE_MAX when o is not in a pool of the collection (a static or
 * immortal object, one in an OBJECT pool, NULL). */
static inline size_t entry_of(const ouro_object *o) {
    if (_ouro_addrmap_get(o) != OURO_CHUNK_ARENA) return SIZE_MAX; /* NULL lands in chunk 0: NONE */
    ouro_gc_slot slot = ouro_arena_of(o)->gc_slot[((uintptr_t)o >> OURO_POOL_SHIFT) & (OURO_POOLS_PER_ARENA - 1)];
    if (slot.index == 0) return SIZE_MAX;
    uint64_t off = (uintptr_t)o & (OURO_POOL_SIZE - 1);
    return (size_t)slot.index - 1 + (size_t)((off * slot.magic) >> 32);
}

/* ---- the passes ------------------------------------------------------------------------------------- */

static int visit_subtract(ouro_object *child, void *arg) {
    (void)arg;
    size_t k = entry_of(child);
    if (k != SIZE_MAX) scan.side[k]--;
    return 0;
}

/* Pass 1: every entry gets its gc_refs or NONCAND; every candidate moves to generation 2 (where the
 * survivors go; the garbage's generation no longer matters, and a resurrected object goes there too). */
static size_t pass_counts(void) {
    int64_t *side = scan.side;
    size_t candidates = 0;
    for (size_t p = 0; p < scan.npools; p++) {
        scan_pool *sp = &scan.pools[p];
        char *b = sp->data;
        for (size_t i = 0, j = sp->base; i < sp->carved; i++, j++, b += sp->block_size) {
            ouro_object *o = (ouro_object *)b;
            unsigned bits = gc_bits_of(o); /* 0 in a free block */
            intptr_t count;
            if ((bits & (OURO_GC_TRACKED | OURO_GC_FROZEN)) != OURO_GC_TRACKED || ouro_is_immortal(o) ||
                (count = gc_true_count(o)) <= 0) {
                side[j] = NONCAND;
                continue;
            }
            side[j] += count;
            candidates++;
            if (gc_gen_of(bits) != 2) gc_bits_set(o, gc_with_gen(bits, 2)); /* survivor or garbage, gen 2 is right */
            gc_traverse(o, visit_subtract, NULL);
        }
    }
    return candidates;
}

static int visit_mark(ouro_object *child, void *arg) {
    mark_ctx *m = arg;
    size_t k = entry_of(child);
    if (k == SIZE_MAX) return 0;
    int64_t v = scan.side[k];
    if (v == REACH || v >= NONCAND_MIN) return 0;
    scan.side[k] = REACH;
    if (k < m->cursor && !objvec_push(m->stack, child)) _ouro_fatal("gc: out of memory marking reachable objects");
    return 0;
}

/* Pass 2: marks REACH every candidate reachable from one with gc_refs > 0. */
static void pass_mark(void) {
    int64_t *side = scan.side;
    objvec stack = {0};
    mark_ctx m = {.stack = &stack};
    for (size_t p = 0; p < scan.npools; p++) {
        scan_pool *sp = &scan.pools[p];
        char *b = sp->data;
        for (size_t i = 0, j = sp->base; i < sp->carved; i++, j++, b += sp->block_size) {
            int64_t v = side[j];
            if (v != REACH) {
                if (v <= 0 || v >= NONCAND_MIN) continue; /* garbage unless reached later, or no candidate */
                side[j] = REACH;
            }
            m.cursor = j;
            gc_traverse((ouro_object *)b, visit_mark, &m);
            while (stack.n) gc_traverse(stack.v[--stack.n], visit_mark, &m);
        }
    }
    objvec_free(&stack);
}

/* Pass 3: the garbage. */
static void pass_sort(objvec *garbage) {
    for (size_t p = 0; p < scan.npools; p++) {
        scan_pool *sp = &scan.pools[p];
        const int64_t *e = scan.side + sp->base;
        for (size_t i = 0; i < sp->carved; i++) {
            if (e[i] == REACH || e[i] >= NONCAND_MIN) continue;
            if (!objvec_push(garbage, (ouro_object *)(sp->data + i * sp->block_size)))
                _ouro_fatal("gc: out of memory listing garbage");
        }
    }
}

bool _ouro_gc_scan_full(objvec *garbage, size_t *candidates) {
    if (!tables_prepare()) {
        slots_set(false);
        return false;
    }
    *candidates = pass_counts();
    pass_mark();
    pass_sort(garbage);
    slots_set(false);
    return true;
}
