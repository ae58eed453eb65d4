/* gc/scan.c — the full collection's mark: CPython's algorithm over every GC pool, with the counts in a
 * side table instead of the objects' headers.
 *
 * Why a second form of the algorithm. A young collection finds its candidates in lists and keeps each
 * one's gc_refs in its header's word 0 (gc.c): it touches few objects. A full collection touches every
 * tracked object, and what it costs is the cache misses: the header form reads and writes the header of
 * every reference's target (random addresses, one miss per reference), walks the graph depth first
 * (another miss per object), and restores every word 0 afterwards. Here:
 *
 * The side table. Every carved block of every GC pool gets one 32-bit entry, pool after pool in the
 * order the pools are listed; the arena header's gc_slot says where a pool's entries start, so a
 * reference's entry is found from its address alone (the address map, the arena header, a multiply):
 * the target object is not read. The entries of 1M objects take 4 MB, which stays in the last-level
 * cache while the objects themselves stream through it.
 *
 * Two workers. With a large heap a helper thread is the second worker (below). The entries are dealt
 * out in chunks of 16k, alternately: each worker reads its chunks' blocks and is the only one to
 * write their entries, so the entries need no atomics, and each gets about half of every part of the
 * heap, so they finish together whatever its shape.
 *
 * Pass 1, sequential over a worker's chunks, fuses CPython's update_refs and subtract_refs: a
 * candidate adds its true count to its own entry and subtracts one from the entry of each reference's
 * target (the entries start at 0, so the order does not matter), and records those targets' entries
 * (edges[]). A subtraction that falls in the other worker's chunks is listed (remote[]) and applied
 * by that worker at the start of pass 2. A block that is no candidate (free, untracked, frozen,
 * immortal, or dead in this stop) sets its entry to NONCAND, which the subtractions cannot bring near
 * zero: it is never garbage and is not traversed, so what it refers to keeps the count it gives (an
 * outside reference, as in CPython). After pass 1 a candidate's entry is its gc_refs >= 0.
 *
 * Pass 2, the sweep mark, reads only the tables: in table order, a candidate with gc_refs > 0 is
 * reachable (marked REACH) and expanded: each of its recorded targets that is a candidate not yet
 * marked is marked REACH. A target ahead of the sweep needs nothing more: the sweep expands it when it
 * gets there. A target behind it is pushed on a stack and expanded at once (its own targets likewise).
 * A target in the other worker's chunks is sent to it. So every REACH entry is expanded exactly once,
 * and the tables are read mostly in order.
 *
 * Pass 3 reads the table once more: an entry neither REACH nor NONCAND is garbage. Pass 1 has moved
 * every candidate to generation 2 already (only those not there yet are written); nothing else of a
 * survivor is written: no header field stands for the collection.
 *
 * The tables are the collector's (it runs one collection at a time) and are kept for the next full
 * collection: allocating and faulting in 12+ bytes per object each time would cost more than the scan.
 * If they cannot be had, or pass 1 records more references than the entries' bounds allow, the
 * collection falls back to the header form. */
#include "gc/internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

/* Entries (32 bits: the table is read and written in every pass, so its size is what they cost): a
 * candidate's gc_refs, NONCAND less what candidates subtracted from it, or REACH. Pass 1 records
 * fewer than EDGES_MAX references in all (past that the collection falls back), so no entry is
 * subtracted from EDGES_MAX times; a count is stored as at most COUNT_MAX. So a stored gc_refs is in
 * (-EDGES_MAX, COUNT_MAX] and > 0 whenever the true one is (a clamped count exceeds every possible
 * subtraction), and NONCAND stays above NONCAND_MIN: nothing overflows. */
#define COUNT_MAX ((int32_t)1 << 29)
#define EDGES_MAX ((size_t)COUNT_MAX)
#define NONCAND (3 * ((int32_t)1 << 29))
#define NONCAND_MIN ((int32_t)1 << 30)
#define REACH INT32_MIN

/* A GC pool in the collection: its first block and the index of its first entry. */
typedef struct {
    char *data;
    size_t base;
    uint32_t block_size, carved;
} scan_pool;

/* The entries are dealt out in chunks of CHUNK: with two workers, chunk c is worker c % 2's. A worker
 * runs pass 1 over its chunks' blocks, writes only its chunks' entries, and marks and lists them in
 * passes 2 and 3. Interleaving small chunks gives each worker about half of every part of the heap, so
 * the two take about as long whatever the heap's shape. */
enum { CHUNK_SHIFT = 14, CHUNK = 1 << CHUNK_SHIFT };

/* Pass 2's messages: entries of the other worker's chunks that a worker found reachable. */
enum { BATCH = 1022 };
typedef struct batch {
    struct batch *next;
    uint32_t n;
    uint32_t v[BATCH];
} batch;

typedef struct {
    uint32_t *v;
    size_t n, cap;
} u32vec;

/* A worker: the references its candidates have (the entries of their targets, source after source in
 * entry order), the subtractions that fall in the other worker's chunks, and its pass 2 state. */
typedef struct {
    unsigned id;
    uint32_t *edges;         /* the targets of its candidates' references */
    size_t nedges, edges_cap;
    uint32_t *remote;        /* entries in the other worker's chunks to subtract one from */
    size_t nremote, remote_cap;
    size_t candidates;
    uintptr_t arenas[64];    /* arenas references led to, direct mapped by arena number (worker_entry_of) */
    bool fail;               /* pass 1 ran out of memory or past EDGES_MAX: the collection falls back */
    u32vec stack;            /* pass 2: reached entries behind the sweep, to expand */
    batch *out;              /* pass 2: the batch being filled for the other worker */
    batch *spare;            /* pass 2: batches to reuse */
    size_t nspare, sent;     /* pass 2: how many; how many it sent */
    objvec garbage;          /* pass 3: its chunks' garbage (the helper's; the collector's goes to its caller) */
} worker;

/* Worker 0 is the collector; worker 1 is the helper thread, when the heap is worth it and the process
 * may run on two CPUs. */
enum { NWORKERS = 2, PARALLEL_MIN = 1 << 16 };

static struct {
    int32_t *side;        /* one entry per carved block of the pools */
    uint32_t *ends;       /* ends[j]: where the references of entry j end in its worker's edges */
    uint32_t *chunk_begin; /* chunk_begin[c]: where the references of chunk c's first entry start */
    size_t side_cap, ends_cap, chunk_cap;
    scan_pool *pools;
    size_t npools, pools_cap;
    size_t nentries;
    unsigned nworkers;    /* 1 or 2 */
    unsigned owner_mask;  /* nworkers - 1: entry k is worker ((k >> CHUNK_SHIFT) & owner_mask)'s */
    bool nomem;
    worker workers[NWORKERS];
    /* pass 2's mail and its end (atomics) */
    batch *inbox[NWORKERS]; /* batches sent to each worker */
    bool swept;             /* the collector's sweep is done: the helper retires */
    bool retired;           /* the helper is done: the collector finishes alone */
    bool solo;              /* (the collector's) it is finishing alone: every entry is its own */
} scan; /* the collector's */

/* Whether entry k is in one of w's chunks. */
static inline bool owns(const worker *w, size_t k) {
    return ((k >> CHUNK_SHIFT) & scan.owner_mask) == w->id;
}

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
            OURO_ASSERT(slot->index == 0); /* each pool is listed once: heap lists and abandoned lists are disjoint */
            slot->index = (uint32_t)p->base + 1;
            slot->magic = (uint32_t)(((uint64_t)1 << 32) / p->block_size + 1);
        } else {
            *slot = (ouro_gc_slot){0};
        }
    }
}

/* Fits an array to n elements of size sz (and some slack): grows it, or shrinks it when it is more than
 * four times that; false when out of memory. */
static bool array_fit(void **v, size_t *cap, size_t n, size_t sz) {
    size_t c = n + n / 8 + 1024;
    if (n <= *cap && *cap <= 4 * c) return true;
    void *nv = realloc(*v, c * sz);
    if (!nv) return false;
    *v = nv;
    *cap = c;
    return true;
}

/* The number of chunks. */
static inline size_t nchunks(void) { return (scan.nentries + CHUNK - 1) >> CHUNK_SHIFT; }

/* Lists the GC pools and sizes the tables; false when out of memory or too many blocks for a 32-bit
 * entry index (the caller falls back). */
static bool tables_prepare(void) {
    scan.npools = scan.nentries = 0;
    scan.nomem = false;
    _ouro_gc_visit_pools(pool_add, NULL);
    if (scan.nomem || scan.nentries >= UINT32_MAX) return false;
    if (!array_fit((void **)&scan.side, &scan.side_cap, scan.nentries, sizeof *scan.side) ||
        !array_fit((void **)&scan.ends, &scan.ends_cap, scan.nentries, sizeof *scan.ends) ||
        !array_fit((void **)&scan.chunk_begin, &scan.chunk_cap, nchunks(), sizeof *scan.chunk_begin))
        return false;
    if (scan.nentries) memset(scan.side, 0, scan.nentries * sizeof *scan.side);
    return true;
}

/* Deals the chunks out to n workers (1 or 2) and resets their pass 1 state. */
static void workers_reset(unsigned n) {
    scan.nworkers = n;
    scan.owner_mask = n - 1;
    for (unsigned w = 0; w < NWORKERS; w++) {
        worker *wk = &scan.workers[w];
        wk->id = w;
        wk->nedges = wk->nremote = wk->candidates = 0;
        for (size_t a = 0; a < 64; a++) wk->arenas[a] = 1; /* never an arena's address (those are ARENA_SIZE-aligned) */
        wk->fail = false;
    }
}

/* The pool holding entry j, at or after pool *p (which moves there). */
static inline const scan_pool *pool_at(size_t *p, size_t j) {
    while (j >= scan.pools[*p].base + scan.pools[*p].carved) (*p)++;
    return &scan.pools[*p];
}

/* ---- pass 1: counts and references ------------------------------------------------------------------ */

/* How far ahead of the block being read pass 1 prefetches: several objects' worth of memory latency
 * (the pools are visited in list order, not address order, so the hardware's stream prefetcher loses
 * the thread at each pool). */
enum { PREFETCH_AHEAD = 1024 };

/* Prefetches the block PREFETCH_AHEAD bytes after b, b being in pool p (into pool p + 1 near its end). */
static inline void prefetch_ahead(size_t p, const char *b) {
    const scan_pool *sp = &scan.pools[p];
    const char *end = sp->data + (size_t)sp->carved * sp->block_size, *t = b + PREFETCH_AHEAD;
    if (t >= end) {
        if (p + 1 == scan.npools) return;
        t = scan.pools[p + 1].data + (t - end);
    }
    for (size_t off = 0; off < sp->block_size; off += 64) __builtin_prefetch(t + off);
}

/* Makes room in a growable uint32 array for `more` elements after n; false when out of memory (or
 * past 2^32 elements). */
static inline bool u32_reserve(uint32_t **v, size_t n, size_t *cap, size_t more) {
    if (__builtin_expect(*cap - n < more, 0)) {
        size_t c = *cap ? *cap * 2 : 1 << 16;
        if (c < n + more) c = n + more;
        uint32_t *nv = c < UINT32_MAX ? realloc(*v, c * sizeof *nv) : NULL;
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    return true;
}

/* Appends x to a growable uint32 array; false when out of memory (or past 2^32 elements). */
static inline bool u32_push(uint32_t **v, size_t *n, size_t *cap, uint32_t x) {
    if (!u32_reserve(v, *n, cap, 1)) return false;
    (*v)[(*n)++] = x;
    return true;
}

/* The entry of the object at o, or SIZE_MAX when o is not in a pool of the collection (a static or
 * immortal object, one in an OBJECT pool, NULL). The address map is asked only when a reference leads
 * to another arena than the last one did. */
static inline size_t worker_entry_of(worker *w, const ouro_object *o) {
    uintptr_t arena = (uintptr_t)o & ~(OURO_ARENA_SIZE - 1);
    uintptr_t *seen = &w->arenas[((uintptr_t)o >> OURO_ARENA_SHIFT) & 63];
    if (arena != *seen) {
        if (_ouro_addrmap_get(o) != OURO_CHUNK_ARENA) return SIZE_MAX;
        *seen = arena;
    }
    ouro_gc_slot slot = ((const ouro_arena_t *)arena)->gc_slot[((uintptr_t)o >> OURO_POOL_SHIFT) & (OURO_POOLS_PER_ARENA - 1)];
    if (slot.index == 0) return SIZE_MAX;
    uint64_t off = (uintptr_t)o & (OURO_POOL_SIZE - 1);
    return (size_t)slot.index - 1 + (size_t)((off * slot.magic) >> 32);
}

static int visit_count(ouro_object *child, void *arg) {
    worker *w = arg;
    size_t k = worker_entry_of(w, child);
    if (k == SIZE_MAX || w->fail) return 0;
    if (w->nedges >= EDGES_MAX / NWORKERS || !u32_reserve(&w->edges, w->nedges, &w->edges_cap, 1) ||
        !u32_reserve(&w->remote, w->nremote, &w->remote_cap, 1)) {
        w->fail = true; /* out of memory, or more references than the entries' bounds allow */
        return 0;
    }
    w->edges[w->nedges++] = (uint32_t)k;
    if (owns(w, k)) scan.side[k]--;
    else w->remote[w->nremote++] = (uint32_t)k;
    return 0;
}

/* Pass 1 over w's chunks: every entry gets its true count (a candidate: tracked, not frozen, mortal,
 * count > 0) or NONCAND; each candidate's references are recorded and subtracted; every candidate
 * moves to generation 2 (where the survivors go; the garbage's generation no longer matters, and a
 * resurrected object goes there too). */
static void pass_counts(worker *w) {
    int32_t *side = scan.side;
    uint32_t *ends = scan.ends;
    size_t p = 0;
    for (size_t c = w->id; c < nchunks(); c += scan.nworkers) {
        size_t j = c << CHUNK_SHIFT, end = j + CHUNK < scan.nentries ? j + CHUNK : scan.nentries;
        scan.chunk_begin[c] = (uint32_t)w->nedges;
        while (j < end) {
            const scan_pool *sp = pool_at(&p, j);
            size_t stop = sp->base + sp->carved < end ? sp->base + sp->carved : end;
            char *b = sp->data + (j - sp->base) * sp->block_size;
            for (; j < stop; j++, b += sp->block_size) {
                prefetch_ahead(p, b);
                ouro_object *o = (ouro_object *)b;
                unsigned bits = gc_bits_of(o); /* 0 in a free block */
                intptr_t count;
                if ((bits & (OURO_GC_TRACKED | OURO_GC_FROZEN)) != OURO_GC_TRACKED || ouro_is_immortal(o) ||
                    (count = gc_true_count(o)) <= 0) {
                    side[j] = NONCAND;
                } else {
                    side[j] += count < COUNT_MAX ? (int32_t)count : COUNT_MAX;
                    w->candidates++;
                    if (gc_gen_of(bits) != 2) gc_bits_set(o, gc_with_gen(bits, 2));
                    const ouro_type *t = o->type;
                    if (t->traverse == _ouro_type_traverse_slots) { /* the common case, without two indirect calls */
                        ouro_object **slot = _ouro_slots_of(o);
                        for (size_t i = 0; i < t->nslots; i++) {
                            ouro_object *v = __atomic_load_n(&slot[i], __ATOMIC_RELAXED);
                            if (v) visit_count(v, w);
                        }
                    } else {
                        gc_traverse(o, visit_count, w);
                    }
                }
                ends[j] = (uint32_t)w->nedges;
            }
        }
    }
}

/* ---- pass 2: the sweep mark ------------------------------------------------------------------------- */

/* Each worker sweeps its own chunks in order, as one worker would sweep the whole table: a candidate
 * with gc_refs > 0 is reachable (marked REACH) and expanded; a target in its own chunks ahead of the
 * sweep is marked and left to the sweep, one behind it is marked and pushed on its stack. A target in
 * the other worker's chunks is sent to that worker in a batch, and the owner marks it as it would its
 * own. Only an entry's owner writes it, so the entries need no atomics; each REACH entry is expanded
 * once.
 *
 * The end. Once both sweeps are done, what is left is a tail of reached entries whose expansion may
 * cross from one worker's chunks to the other's at every step (a long list laid out at random): sent
 * back and forth, it would cost a message's latency per step. So the helper retires when both sweeps
 * are done (having sent what it reached), and the collector finishes alone, owning every entry: it
 * takes both inboxes and marks and expands what they hold, and what that reaches, directly. */

/* A batch to fill: one of w's spares, or a new one. */
static batch *batch_new(worker *w) {
    batch *b = w->spare;
    if (b) {
        w->spare = b->next;
        w->nspare--;
    } else if (!(b = malloc(sizeof *b))) {
        _ouro_fatal("gc: out of memory marking reachable objects");
    }
    b->n = 0;
    return b;
}

/* Keeps a batch w has read as a spare (for this collection and the next: see spares_trim). */
static void batch_free(worker *w, batch *b) {
    b->next = w->spare;
    w->spare = b;
    w->nspare++;
}

/* Sends w's batch to the other worker, and starts another: pushes it on its inbox (lock-free: one
 * producer pushes, one consumer takes the whole list, so there is no ABA). */
static void batch_send(worker *w) {
    batch *b = w->out, **inbox = &scan.inbox[!w->id];
    w->out = batch_new(w);
    w->sent++;
    b->next = __atomic_load_n(inbox, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(inbox, &b->next, b, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    }
}

/* Takes the batches sent to worker id (NULL when none). */
static batch *batch_take(unsigned id) {
    batch **inbox = &scan.inbox[id];
    if (!__atomic_load_n(inbox, __ATOMIC_RELAXED)) return NULL;
    return __atomic_exchange_n(inbox, NULL, __ATOMIC_ACQUIRE);
}

/* After a collection: keeps as many spares as w sent batches in it (the other worker's batches end up
 * as w's spares, and the next collection likely needs as many; their mallocs and page faults would
 * cost more than the messages), and frees the rest. */
static void spares_trim(worker *w) {
    while (w->nspare > w->sent) {
        batch *b = w->spare;
        w->spare = b->next;
        w->nspare--;
        free(b);
    }
    w->sent = 0;
}

static void u32vec_push(u32vec *v, uint32_t x) {
    if (!u32_push(&v->v, &v->n, &v->cap, x)) _ouro_fatal("gc: out of memory marking reachable objects");
}

/* Marks REACH w's entry k when it is an unmarked candidate; pushes it when it is behind cursor (every
 * entry of the other worker's chunks is, once w finishes alone). */
static inline void mark_own(worker *w, uint32_t k, size_t cursor) {
    int32_t v = scan.side[k];
    if (v == REACH || v >= NONCAND_MIN) return;
    scan.side[k] = REACH;
    if (k < cursor || !owns(w, k)) u32vec_push(&w->stack, k);
}

/* Expands the REACH entry x (w's, or any once w finishes alone): marks its targets that are w's, sends
 * the others'. */
static void expand(worker *w, size_t x, size_t cursor) {
    const worker *ew = &scan.workers[(x >> CHUNK_SHIFT) & scan.owner_mask]; /* its references' recorder */
    const uint32_t *e = ew->edges + ((x & (CHUNK - 1)) ? scan.ends[x - 1] : scan.chunk_begin[x >> CHUNK_SHIFT]);
    const uint32_t *end = ew->edges + scan.ends[x];
    for (; e < end; e++) {
        uint32_t k = *e;
        if (scan.solo || owns(w, k)) {
            mark_own(w, k, cursor);
        } else {
            w->out->v[w->out->n++] = k;
            if (w->out->n == BATCH) batch_send(w);
        }
    }
}

/* Expands what w's stack holds, and what that reaches. */
static void drain(worker *w, size_t cursor) {
    while (w->stack.n) expand(w, w->stack.v[--w->stack.n], cursor);
}

/* Marks the entries in the batches b and expands what they reach. */
static void take_mail(worker *w, batch *b, size_t cursor) {
    while (b) {
        batch *next = b->next;
        for (uint32_t i = 0; i < b->n; i++) mark_own(w, b->v[i], cursor);
        batch_free(w, b);
        drain(w, cursor);
        b = next;
    }
}

/* Waits a moment for the other worker (spins, then yields the CPU). */
static void backoff(unsigned *spins) {
    if (++*spins > 64) sched_yield();
    else __builtin_ia32_pause();
}

/* Pass 2 for worker w (the other runs it at the same time): first the other's subtractions in w's
 * chunks (its pass 1 listed them), then the sweep, then the end (see above). */
static void pass_mark(worker *w) {
    bool two = scan.nworkers > 1;
    if (two) {
        const worker *o = &scan.workers[!w->id];
        for (size_t i = 0; i < o->nremote; i++) scan.side[o->remote[i]]--;
    }
    w->out = batch_new(w); /* always there: expand writes every target to it */
    int32_t *side = scan.side;
    for (size_t c = w->id; c < nchunks(); c += scan.nworkers) {
        size_t j = c << CHUNK_SHIFT, end = j + CHUNK < scan.nentries ? j + CHUNK : scan.nentries;
        for (; j < end; j++) {
            if ((j & 1023) == 0 && two) {
                batch *b = batch_take(w->id);
                if (b) take_mail(w, b, j);
            }
            int32_t v = side[j];
            if (v != REACH) {
                if (v <= 0 || v >= NONCAND_MIN) continue; /* garbage unless reached later, or no candidate */
                side[j] = REACH;
            }
            expand(w, j, j);
            drain(w, j);
        }
    }
    if (two) {
        /* Both sweeps done ends the helper's part: until then it expands what it is sent (all of it
         * behind its sweep); then it sends what it holds and retires. The collector likewise until
         * the helper retires. */
        if (w->id == 0) {
            if (w->out->n) batch_send(w);
            __atomic_store_n(&scan.swept, true, __ATOMIC_RELEASE);
        }
        for (unsigned spins = 0;;) {
            if (__atomic_load_n(w->id == 1 ? &scan.swept : &scan.retired, __ATOMIC_ACQUIRE)) break;
            batch *b = batch_take(w->id);
            if (b) {
                take_mail(w, b, SIZE_MAX);
                if (w->out->n) batch_send(w);
                spins = 0;
            } else {
                backoff(&spins);
            }
        }
        if (w->id == 1) {
            if (w->out->n) batch_send(w);
        } else { /* the collector alone: every entry is its own now */
            scan.solo = true;
            for (unsigned id = 0; id < NWORKERS; id++) take_mail(w, batch_take(id), SIZE_MAX);
        }
    }
    OURO_ASSERT(w->out->n == 0);
    batch_free(w, w->out);
    w->out = NULL;
    if (two && w->id == 1) __atomic_store_n(&scan.retired, true, __ATOMIC_RELEASE); /* last: the collector owns everything after it */
}

/* ---- pass 3: the garbage ---------------------------------------------------------------------------- */

/* Pass 3 for worker w: appends its chunks' garbage (neither REACH nor NONCAND) to *garbage. */
static void pass_sort(worker *w, objvec *garbage) {
    size_t p = 0;
    for (size_t c = w->id; c < nchunks(); c += scan.nworkers) {
        size_t j = c << CHUNK_SHIFT, end = j + CHUNK < scan.nentries ? j + CHUNK : scan.nentries;
        for (; j < end; j++) {
            int32_t v = scan.side[j];
            if (v == REACH || v >= NONCAND_MIN) continue;
            const scan_pool *sp = pool_at(&p, j);
            if (!objvec_push(garbage, (ouro_object *)(sp->data + (j - sp->base) * sp->block_size)))
                _ouro_fatal("gc: out of memory listing garbage");
        }
    }
}

/* ---- the helper thread ----------------------------------------------------------------------------- */

/* The helper is worker 1: it runs pass 1, then passes 2 and 3, over its chunks while the collector
 * runs them over worker 0's. It is a plain thread, never attached: it reads objects (headers, and what
 * traverse reads) and writes only worker 1's tables, its chunks' entries and its blocks' gc_bits,
 * while the world is stopped. Handing over and back through the mutex orders its reads after
 * everything the parked threads wrote, and its writes before the rest of the collection. Started at
 * the first full collection that is worth it; a fork child starts anew. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t job, done; /* jobs handed over / finished (lock) */
    int task;           /* the job: TASK_COUNTS, TASK_MARK or TASK_SORT (lock) */
    int state;          /* 0 not started, 1 running, -1 cannot run (one CPU, or no thread) */
} helper = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

enum { TASK_COUNTS = 1, TASK_MARK = 2, TASK_SORT = 3 };

static void *helper_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&helper.lock);
    for (;;) {
        while (helper.done == helper.job) pthread_cond_wait(&helper.cond, &helper.lock);
        uint64_t job = helper.job;
        int task = helper.task;
        pthread_mutex_unlock(&helper.lock);
        worker *w = &scan.workers[1];
        if (task == TASK_COUNTS) pass_counts(w);
        else if (task == TASK_MARK) pass_mark(w);
        else pass_sort(w, &w->garbage);
        pthread_mutex_lock(&helper.lock);
        helper.done = job;
        pthread_cond_broadcast(&helper.cond);
    }
    return NULL;
}

/* Hands the helper a task. */
static void helper_start(int task) {
    pthread_mutex_lock(&helper.lock);
    helper.task = task;
    helper.job++;
    pthread_cond_broadcast(&helper.cond);
    pthread_mutex_unlock(&helper.lock);
}

/* Waits for the helper's task to finish. */
static void helper_wait(void) {
    pthread_mutex_lock(&helper.lock);
    while (helper.done != helper.job) pthread_cond_wait(&helper.cond, &helper.lock);
    pthread_mutex_unlock(&helper.lock);
}

/* true when the helper runs (started now if need be). */
static bool helper_ready(void) {
    if (helper.state == 0) {
        cpu_set_t cpus;
        helper.state = -1;
        if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) < 2) return false;
        pthread_attr_t attr;
        pthread_t t;
        if (pthread_attr_init(&attr) != 0) return false;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The helper blocks every signal: they go to the program's own threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&t, &attr, helper_main, NULL) == 0) helper.state = 1;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    return helper.state == 1;
}

void _ouro_gc_scan_atfork_child(void) {
    pthread_mutex_init(&helper.lock, NULL);
    pthread_cond_init(&helper.cond, NULL);
    helper.job = helper.done = 0;
    helper.state = 0; /* the helper did not survive the fork */
}

bool _ouro_gc_scan_full(objvec *garbage, size_t *candidates) {
    if (!tables_prepare()) return false;
    bool parallel = scan.nentries >= PARALLEL_MIN && helper_ready();
    workers_reset(parallel ? 2 : 1);
    slots_set(true);
    if (parallel) helper_start(TASK_COUNTS);
    pass_counts(&scan.workers[0]);
    if (parallel) helper_wait();
    *candidates = 0;
    bool fail = false;
    for (unsigned w = 0; w < scan.nworkers; w++) {
        *candidates += scan.workers[w].candidates;
        fail |= scan.workers[w].fail;
    }
    if (fail) { /* the header form starts over; pass 1 changed only generations (to 2: harmless) */
        slots_set(false);
        return false;
    }
    scan.swept = scan.retired = scan.solo = false; /* (the helper reads them after the handover) */
    if (parallel) helper_start(TASK_MARK);
    pass_mark(&scan.workers[0]);
    if (parallel) {
        helper_wait(); /* (it retired long ago: this orders its writes before the sort) */
        helper_start(TASK_SORT);
    }
    pass_sort(&scan.workers[0], garbage);
    if (parallel) {
        helper_wait();
        objvec *g = &scan.workers[1].garbage;
        for (size_t i = 0; i < g->n; i++)
            if (!objvec_push(garbage, g->v[i])) _ouro_fatal("gc: out of memory listing garbage");
        g->n = 0;
    }
    for (unsigned w = 0; w < NWORKERS; w++) spares_trim(&scan.workers[w]);
    slots_set(false);
    for (unsigned w = 0; w < NWORKERS; w++) { /* a heap that shrank gives back the arrays it no longer needs */
        worker *wk = &scan.workers[w];
        array_fit((void **)&wk->edges, &wk->edges_cap, wk->nedges, sizeof *wk->edges);
        array_fit((void **)&wk->remote, &wk->remote_cap, wk->nremote, sizeof *wk->remote);
        if (wk->stack.cap > scan.nentries + 1024) { /* kept, but never larger than one slot per entry */
            free(wk->stack.v);
            wk->stack = (u32vec){0};
        }
        if (wk->garbage.cap > 4096) objvec_free(&wk->garbage);
    }
    array_fit((void **)&scan.pools, &scan.pools_cap, scan.npools, sizeof *scan.pools);
    return true;
}
