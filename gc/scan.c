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
 * entries start at 0, so the order does not matter), and records those targets' entries (edges[]).
 * A block that is no candidate (free, untracked, frozen, immortal, or dead in this stop) sets its
 * entry to NONCAND, which the subtractions cannot bring near zero: it is never garbage and is not
 * traversed, so what it refers to keeps the count it gives (an outside reference, as in CPython).
 * An object of a type made by ouro_type_new without a traverse of its own has its slots read inline
 * (no indirect calls). After pass 1 a candidate's entry is its gc_refs >= 0. With a large heap a
 * helper thread takes the second half of the pools; a subtraction that falls in the other half is
 * listed (remote[]) and applied by the other worker afterwards, so the two never write the same entry.
 *
 * Pass 2, the sweep mark, reads only the tables: in table order, a candidate with gc_refs > 0 is
 * reachable (marked REACH) and expanded: each of its recorded targets that is a candidate not yet
 * marked is marked REACH. A target ahead of the sweep needs nothing more: the sweep expands it when it
 * gets there. A target behind it is pushed on a stack and expanded at once (its own targets likewise).
 * So every REACH entry is expanded exactly once, and the tables are read mostly in order.
 *
 * Pass 3 reads the table once more: an entry neither REACH nor NONCAND is garbage. Pass 1 has moved every
 * candidate to generation 2 already (only those not there yet are written); nothing else of a survivor
 * is written: no header field stands for the collection.
 *
 * The tables are the collector's (it runs one collection at a time) and are kept for the next full
 * collection: allocating and faulting in 12+ bytes per object each time would cost more than the scan. */
#include "gc/internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

/* The arena cache's size (see worker_entry_of). */
enum { ARENA_CACHE = 64 };

/* Pass 1 over a range of pools: the references it found (the entries of their targets, per source in
 * entry order) and the subtractions that fall outside its range (another worker's entries). On cache
 * lines of its own: a worker writes its counters at every reference. */
typedef struct __attribute__((aligned(64))) {
    size_t pool_lo, pool_hi; /* its pools */
    size_t lo, hi;           /* its entries */
    uint32_t *edges;         /* the targets of its candidates' references, source after source */
    size_t nedges, edges_cap;
    uint32_t *remote;        /* entries outside [lo, hi) to subtract one from */
    size_t nremote, remote_cap;
    size_t candidates;
    uintptr_t arenas[ARENA_CACHE]; /* arenas references led to, by arena number (worker_entry_of) */
    bool nomem;
} worker;

/* Worker 0 is the collector; worker 1 is the helper thread, when the heap is worth it and the process
 * may run on two CPUs. */
enum { NWORKERS = 2, PARALLEL_MIN = 1 << 16 };

static struct {
    int64_t *side;  /* one entry per carved block of the pools */
    uint32_t *ends; /* ends[j]: where the references of entry j end in its worker's edges */
    size_t side_cap, ends_cap;
    scan_pool *pools;
    size_t npools, pools_cap;
    size_t nentries;
    bool nomem;
    worker workers[NWORKERS];
} scan; /* the collector's */

/* ---- the tables ------------------------------------------------------------------------------------- */

static void pool_add(ouro_pool_t *pool, void *arg) {
    (void)arg;
    if (pool->kind != OURO_KIND_GC || pool->carved == 0 || scan.nomem) return;
    if (scan.npools == scan.pools_cap) {
        size_t cap = scan.pools_cap ? scan.pools_cap * 2 : 256;
        scan_pool *v = _ouro_sys_realloc(scan.pools, cap * sizeof *v);
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
    void *nv = _ouro_sys_realloc(*v, c * sz);
    if (!nv) return false;
    *v = nv;
    *cap = c;
    return true;
}

/* Lists the GC pools and sizes the tables; false when out of memory or too many blocks for a 32-bit
 * entry index (the caller falls back). */
static bool tables_prepare(void) {
    scan.npools = scan.nentries = 0;
    scan.nomem = false;
    _ouro_gc_visit_pools(pool_add, NULL);
    if (scan.nomem || scan.nentries >= UINT32_MAX) return false;
    if (!array_fit((void **)&scan.side, &scan.side_cap, scan.nentries, sizeof *scan.side) ||
        !array_fit((void **)&scan.ends, &scan.ends_cap, scan.nentries, sizeof *scan.ends))
        return false;
    if (scan.nentries) memset(scan.side, 0, scan.nentries * sizeof *scan.side);
    return true;
}

/* Splits the pools among the first n workers (the others get none): consecutive pools, about as many
 * entries each. */
static void workers_split(size_t n) {
    size_t p = 0;
    for (size_t w = 0; w < NWORKERS; w++) {
        worker *wk = &scan.workers[w];
        wk->pool_lo = p;
        wk->lo = p < scan.npools ? scan.pools[p].base : scan.nentries;
        size_t until = w < n ? scan.nentries / n * (w + 1) : 0;
        while (p < scan.npools && (w == n - 1 || scan.pools[p].base < until)) p++;
        wk->pool_hi = p;
        wk->hi = p < scan.npools ? scan.pools[p].base : scan.nentries;
        wk->nedges = wk->nremote = wk->candidates = 0;
        for (size_t a = 0; a < ARENA_CACHE; a++) wk->arenas[a] = 1; /* no arena's address (those are ARENA_SIZE-aligned) */
        wk->nomem = false;
    }
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

/* Appends x to a growable uint32 array; false when out of memory (or past 2^32 elements). */
static inline bool u32_push(uint32_t **v, size_t *n, size_t *cap, uint32_t x) {
    if (__builtin_expect(*n == *cap, 0)) {
        size_t c = *cap ? *cap * 2 : 1 << 16;
        uint32_t *nv = c < UINT32_MAX ? _ouro_sys_realloc(*v, c * sizeof *nv) : NULL;
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return true;
}

/* The entry of the object at o, or SIZE_MAX when o is not in a pool of the collection (a static or
 * immortal object, one in an OBJECT pool, NULL). The address map is asked only when a reference leads
 * to an arena the worker's arena cache does not hold: one slot per arena number modulo ARENA_CACHE, so
 * a heap of up to ARENA_CACHE arenas (64 MiB of 1 MiB arenas) asks it once per arena, however its
 * references jump between arenas. */
static inline size_t worker_entry_of(worker *w, const ouro_object *o) {
    uintptr_t arena = (uintptr_t)o & ~(OURO_ARENA_SIZE - 1);
    uintptr_t *seen = &w->arenas[((uintptr_t)o >> OURO_ARENA_SHIFT) & (ARENA_CACHE - 1)];
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
    if (k == SIZE_MAX) return 0;
    if (!u32_push(&w->edges, &w->nedges, &w->edges_cap, (uint32_t)k)) w->nomem = true;
    if (k - w->lo < w->hi - w->lo) scan.side[k]--;
    else if (!u32_push(&w->remote, &w->nremote, &w->remote_cap, (uint32_t)k)) w->nomem = true;
    return 0;
}

/* Pass 1 over w's pools: every entry gets its true count (a candidate: tracked, not frozen, mortal,
 * count > 0) or NONCAND; each candidate's references are recorded and subtracted; every candidate
 * moves to generation 2 (where the survivors go; the garbage's generation no longer matters, and a
 * resurrected object goes there too). */
static void pass_counts(worker *w) {
    int64_t *side = scan.side;
    uint32_t *ends = scan.ends;
    for (size_t p = w->pool_lo; p < w->pool_hi; p++) {
        scan_pool *sp = &scan.pools[p];
        char *b = sp->data;
        for (size_t i = 0, j = sp->base; i < sp->carved; i++, j++, b += sp->block_size) {
            prefetch_ahead(p, b);
            ouro_object *o = (ouro_object *)b;
            unsigned bits = gc_bits_of(o); /* 0 in a free block */
            intptr_t count;
            if ((bits & (OURO_GC_TRACKED | OURO_GC_FROZEN)) != OURO_GC_TRACKED || ouro_is_immortal(o) ||
                (count = gc_true_count(o)) <= 0) {
                side[j] = NONCAND;
                ends[j] = (uint32_t)w->nedges;
                continue;
            }
            side[j] += count;
            w->candidates++;
            if (gc_gen_of(bits) != 2) gc_bits_set(o, gc_with_gen(bits, 2));
            if (o->type->traverse == _ouro_type_traverse_slots) _ouro_slots_traverse(o, visit_count, w); /* inline */
            else gc_traverse(o, visit_count, w);
            ends[j] = (uint32_t)w->nedges;
        }
    }
}

/* ---- pass 2: the sweep mark ------------------------------------------------------------------------- */

typedef struct {
    uint32_t *v;
    size_t n, cap;
} u32vec;

/* Marks REACH the unmarked candidate targets of entry x's references; pushes those behind cursor
 * (the sweep reaches the others itself). A push that finds no memory sets overflow: that entry is
 * marked but its references are not followed until pass_mark sweeps again. */
static void mark_refs(size_t x, size_t cursor, u32vec *stack, bool *overflow) {
    const worker *w = &scan.workers[0];
    while (x >= w->hi) w++;
    if (!w->edges) return; /* a worker without references */
    int64_t *side = scan.side;
    const uint32_t *e = w->edges + (x == w->lo ? 0 : scan.ends[x - 1]), *end = w->edges + scan.ends[x];
    for (; e < end; e++) {
        uint32_t k = *e;
        int64_t v = side[k];
        if (v == REACH || v >= NONCAND_MIN) continue;
        side[k] = REACH;
        if (k < cursor && !u32_push(&stack->v, &stack->n, &stack->cap, k)) *overflow = true;
    }
}

/* Pass 2: marks REACH every candidate reachable from one with gc_refs > 0. Reads only the tables.
 * Needs no memory to finish: after a stack overflow it sweeps every REACH entry again until a sweep
 * overflows no more (each overflowing sweep marks something new). */
static void pass_mark(void) {
    int64_t *side = scan.side;
    u32vec stack = {0};
    bool overflow = false;
    for (size_t j = 0; j < scan.nentries; j++) {
        int64_t v = side[j];
        if (v != REACH) {
            if (v <= 0 || v >= NONCAND_MIN) continue; /* garbage unless reached later, or no candidate */
            side[j] = REACH;
        }
        mark_refs(j, j, &stack, &overflow);
        while (stack.n) mark_refs(stack.v[--stack.n], j, &stack, &overflow);
    }
    while (overflow) {
        overflow = false;
        for (size_t j = 0; j < scan.nentries; j++) {
            if (side[j] != REACH) continue;
            mark_refs(j, scan.nentries, &stack, &overflow);
            while (stack.n) mark_refs(stack.v[--stack.n], scan.nentries, &stack, &overflow);
        }
    }
    free(stack.v);
}

/* ---- pass 3: the garbage ---------------------------------------------------------------------------- */

/* Lists the garbage (room for all of it is made first); false when there is no memory for the list. */
static bool pass_sort(objvec *garbage) {
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t p = 0; p < scan.npools; p++) {
            scan_pool *sp = &scan.pools[p];
            const int64_t *e = scan.side + sp->base;
            for (size_t i = 0; i < sp->carved; i++) {
                if (e[i] == REACH || e[i] >= NONCAND_MIN) continue;
                if (pass == 0) n++;
                else garbage->v[garbage->n++] = (ouro_object *)(sp->data + i * sp->block_size);
            }
        }
        if (pass == 0 && n > garbage->cap) {
            ouro_object **v = _ouro_sys_realloc(garbage->v, n * sizeof *v);
            if (!v) return false;
            garbage->v = v;
            garbage->cap = n;
        }
    }
    return true;
}

/* ---- the helper thread ----------------------------------------------------------------------------- */

/* The helper runs pass 1 over worker 1's pools while the collector runs worker 0's. It is a plain
 * thread, never attached: it reads objects (headers, and what traverse reads) and writes only worker
 * 1's tables and its pools' gc_bits, while the world is stopped. Handing over and back through the
 * mutex orders its reads after everything the parked threads wrote, and its writes before the rest of
 * the collection. Started at the first full collection that is worth it; a fork child starts anew. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t job, done; /* jobs handed over / finished (lock) */
    int task;           /* the job: TASK_COUNTS or TASK_REMOTE (lock) */
    int state;          /* 0 not started, 1 running, -1 cannot run (one CPU, or no thread) */
} helper = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

enum { TASK_COUNTS = 1, TASK_REMOTE = 2 };

/* Applies the subtractions worker `from` found for the other worker's entries (two workers). */
static void remote_apply(const worker *from) {
    for (size_t i = 0; i < from->nremote; i++) scan.side[from->remote[i]]--;
}

static void *helper_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&helper.lock);
    for (;;) {
        while (helper.done == helper.job) pthread_cond_wait(&helper.cond, &helper.lock);
        uint64_t job = helper.job;
        int task = helper.task;
        pthread_mutex_unlock(&helper.lock);
        if (task == TASK_COUNTS) pass_counts(&scan.workers[1]); /* pass 1 over the second half */
        else remote_apply(&scan.workers[0]);                   /* the first half's subtractions into the second */
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
        int rc = _ouro_sys_thread_create(&t, &attr, helper_main, NULL);
        if (rc == 0) helper.state = 1;
        else if (rc == EINTR) helper.state = 0; /* a fork() was under way: the next collection tries again */
        /* else it scans alone */
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

scan_result _ouro_gc_scan_full(objvec *garbage, size_t *candidates) {
    if (!tables_prepare()) return SCAN_FALLBACK;
    bool parallel = scan.nentries >= PARALLEL_MIN && helper_ready();
    workers_split(parallel ? 2 : 1);
    slots_set(true);
    if (parallel) helper_start(TASK_COUNTS);
    pass_counts(&scan.workers[0]);
    if (parallel) helper_wait();
    *candidates = 0;
    for (size_t w = 0; w < NWORKERS; w++) *candidates += scan.workers[w].candidates;
    bool nomem = false;
    for (size_t w = 0; w < NWORKERS; w++) nomem |= scan.workers[w].nomem;
    if (nomem) { /* the header form starts over; pass 1 changed only generations (to 2: harmless) */
        slots_set(false);
        return SCAN_FALLBACK;
    }
    if (parallel) { /* each half takes the other's subtractions: the two write disjoint entries */
        helper_start(TASK_REMOTE);
        remote_apply(&scan.workers[1]);
        helper_wait();
    }
    pass_mark();
    bool listed = pass_sort(garbage);
    slots_set(false);
    for (size_t w = 0; w < NWORKERS; w++) { /* a heap that shrank gives back the arrays it no longer needs */
        worker *wk = &scan.workers[w];
        array_fit((void **)&wk->edges, &wk->edges_cap, wk->nedges, sizeof *wk->edges);
        array_fit((void **)&wk->remote, &wk->remote_cap, wk->nremote, sizeof *wk->remote);
    }
    array_fit((void **)&scan.pools, &scan.pools_cap, scan.npools, sizeof *scan.pools);
    return listed ? SCAN_OK : SCAN_NOMEM;
}
