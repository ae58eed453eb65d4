/* bench/alloc_suite.c — the `alloc` suite: ouro's allocator against glibc, mimalloc, jemalloc and
 * tcmalloc.
 *
 * Each loop is written once, as an ALLOC_INLINE body whose first two parameters are the allocator's
 * alloc and free. ALLOC_WITH_API() instantiates the body twice — with ouro_alloc/ouro_free for ouro's
 * child, with malloc/free for the others, where LD_PRELOAD has put the peer behind malloc (glibc: no
 * preload) — and runs the subject's copy. The bodies are always inlined with constant pointers, so
 * every allocator call is a direct call, as in a program written against that API.
 *
 * Every block is made real: one byte written, its pointer escaped (alloc_touch). Sizes are drawn by
 * fixed-seed generators, so every subject sees the same sequence. */
#include "bench.h"

#include <ouro.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

typedef void *(*alloc_fn)(size_t size);
typedef void (*free_fn)(void *p);

#define ALLOC_INLINE static inline __attribute__((always_inline))

/* Runs body(alloc, free, ...) with the subject's allocator bound at compile time (see the top). */
#define ALLOC_WITH_API(r, body, ...)                                                                     \
    (bench_is_ouro(r) ? body(ouro_alloc, ouro_free, __VA_ARGS__) : body(malloc, free, __VA_ARGS__))

/* Defines the thread entry `static void *name(void *arg)`: arg is a type * with a field r (the
 * bench_run), and the thread runs body(alloc, free, arg) with r's subject's allocator. */
#define ALLOC_THREAD_ENTRY(name, type, body)                                                             \
    static void *name(void *arg)                                                                         \
    {                                                                                                    \
        type *a = arg;                                                                                   \
        ALLOC_WITH_API(a->r, body, a);                                                                   \
        return NULL;                                                                                     \
    }

/* Allocates size bytes and makes the block real: its first byte written, its pointer escaped. */
ALLOC_INLINE void *alloc_touch(alloc_fn alloc, size_t size, uint64_t tag)
{
    char *p = alloc(size);
    p[0] = (char)tag;
    bench_escape(p);
    return p;
}

/* Frees slots[0..n) (NULL entries are a no-op for every subject) and clears them. */
ALLOC_INLINE void alloc_free_slots(alloc_fn alloc, free_fn dealloc, void **slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dealloc(slots[i]);
        slots[i] = NULL;
    }
}

/* ---- sized cases: a warm-up, then a timed run reported as ns_per_op ----------------------------- */

/* Runs n ops of a case with the subject's allocator; state persists between the calls of one run. */
typedef void alloc_kernel(const bench_run *r, void *state, uint64_t n);

/* Runs kernel for warm ops (untimed: the heap reaches its working set), then for ops, timed, and
 * reports ns_per_op. */
static void alloc_measure(const bench_run *r, alloc_kernel *kernel, void *state, uint64_t warm, uint64_t ops)
{
    if (warm) kernel(r, state, warm);
    uint64_t t0 = bench_now_ns();
    kernel(r, state, ops);
    bench_report(r, "ns_per_op", (double)(bench_now_ns() - t0) / (double)ops);
}

enum { SIZE_TABLE = 4096 }; /* entries of a precomputed size table (a power of two) */

/* Fills table[0..SIZE_TABLE) with uniform sizes in [lo, hi] from a fixed seed. */
static void size_table_fill(uint16_t *table, uint32_t lo, uint32_t hi, uint64_t seed)
{
    bench_rng rng = bench_rng_seed(seed);
    for (size_t i = 0; i < SIZE_TABLE; i++) table[i] = (uint16_t)bench_rand_range(&rng, lo, hi);
}

/* pair-32, pair-mixed: alloc + free of sizes[i & mask]. */
typedef struct pair_state {
    const uint16_t *sizes;
    size_t mask;
} pair_state;

ALLOC_INLINE void pair_body(alloc_fn alloc, free_fn dealloc, const pair_state *st, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) dealloc(alloc_touch(alloc, st->sizes[i & st->mask], i));
}

static void pair_kernel(const bench_run *r, void *state, uint64_t n)
{
    ALLOC_WITH_API(r, pair_body, state, n);
}

static void case_pair_32(const bench_run *r)
{
    static const uint16_t size32[1] = { 32 };
    pair_state st = { size32, 0 };
    alloc_measure(r, pair_kernel, &st, r->ops / 16, r->ops);
}

static uint16_t sizes_16_512[SIZE_TABLE];

static void case_pair_mixed(const bench_run *r)
{
    size_table_fill(sizes_16_512, 16, 512, 1);
    pair_state st = { sizes_16_512, SIZE_TABLE - 1 };
    alloc_measure(r, pair_kernel, &st, r->ops / 16, r->ops);
}

/* batch-lifo-1000: BATCH blocks of 32 bytes allocated, then freed newest first. */
enum { BATCH = 1000 };

ALLOC_INLINE void batch_body(alloc_fn alloc, free_fn dealloc, void **slots, uint64_t n)
{
    for (uint64_t done = 0; done < n; done += BATCH) {
        for (size_t i = 0; i < BATCH; i++) slots[i] = alloc_touch(alloc, 32, i);
        for (size_t i = BATCH; i-- > 0;) dealloc(slots[i]);
    }
}

static void batch_kernel(const bench_run *r, void *state, uint64_t n)
{
    ALLOC_WITH_API(r, batch_body, state, n);
}

static void case_batch_lifo(const bench_run *r)
{
    static void *slots[BATCH];
    uint64_t ops = (r->ops + BATCH - 1) / BATCH * BATCH;
    alloc_measure(r, batch_kernel, slots, ops / 16, ops);
}

/* fifo-64k: FIFO_LIVE blocks of 32..128 bytes live in a ring; an op frees the oldest and allocates
 * its replacement. The warm-up fills the ring (freeing its NULLs) and turns it over once. */
enum { FIFO_LIVE = 65536 };

typedef struct fifo_state {
    void *ring[FIFO_LIVE];
    uint64_t next; /* ops done: ring[next % FIFO_LIVE] is the oldest block */
    uint16_t sizes[SIZE_TABLE];
} fifo_state;

ALLOC_INLINE void fifo_body(alloc_fn alloc, free_fn dealloc, fifo_state *f, uint64_t n)
{
    uint64_t k = f->next;
    for (uint64_t end = k + n; k < end; k++) {
        void **slot = &f->ring[k & (FIFO_LIVE - 1)];
        dealloc(*slot);
        *slot = alloc_touch(alloc, f->sizes[k & (SIZE_TABLE - 1)], k);
    }
    f->next = k;
}

static void fifo_kernel(const bench_run *r, void *state, uint64_t n)
{
    ALLOC_WITH_API(r, fifo_body, state, n);
}

static void case_fifo_64k(const bench_run *r)
{
    static fifo_state f;
    f.next = 0;
    size_table_fill(f.sizes, 32, 128, 2);
    alloc_measure(r, fifo_kernel, &f, 2 * FIFO_LIVE, r->ops);
    ALLOC_WITH_API(r, alloc_free_slots, f.ring, FIFO_LIVE);
}

/* xthread-32: a producer thread allocates 32-byte blocks and hands them through a single-producer
 * single-consumer ring to a consumer thread, which frees them. An op is one block; its time is the
 * wall time of both threads over the blocks. */
enum { XQ_SLOTS = 1024 };

/* The ring. tail: blocks published, written by the producer only; head: blocks taken, written by the
 * consumer only; slot[i % XQ_SLOTS] holds block i while head <= i < tail. */
typedef struct xthread_queue {
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) void *slot[XQ_SLOTS];
    const bench_run *r;
    uint64_t n; /* blocks to pass */
} xthread_queue;

ALLOC_INLINE void xthread_produce(alloc_fn alloc, free_fn dealloc, xthread_queue *q)
{
    uint64_t head_seen = 0;
    for (uint64_t t = 0; t < q->n; t++) {
        void *p = alloc_touch(alloc, 32, t);
        for (unsigned spins = 0; t - head_seen == XQ_SLOTS;) {
            /* Pairs with the release store of head in xthread_consume(): the consumer is done with
             * the slot this will overwrite. */
            head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
            if (t - head_seen == XQ_SLOTS) bench_spin_wait(&spins);
        }
        q->slot[t % XQ_SLOTS] = p;
        /* Pairs with the acquire load of tail in xthread_consume(): publishes the slot and the
         * block's contents. */
        atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    }
}

ALLOC_INLINE void xthread_consume(alloc_fn alloc, free_fn dealloc, xthread_queue *q)
{
    uint64_t tail_seen = 0;
    for (uint64_t h = 0; h < q->n; h++) {
        for (unsigned spins = 0; h == tail_seen;) {
            /* Pairs with the release store of tail in xthread_produce(). */
            tail_seen = atomic_load_explicit(&q->tail, memory_order_acquire);
            if (h == tail_seen) bench_spin_wait(&spins);
        }
        void *p = q->slot[h % XQ_SLOTS];
        /* Pairs with the acquire load of head in xthread_produce(): the slot may be reused. */
        atomic_store_explicit(&q->head, h + 1, memory_order_release);
        dealloc(p);
    }
}

ALLOC_THREAD_ENTRY(xthread_producer, xthread_queue, xthread_produce)
ALLOC_THREAD_ENTRY(xthread_consumer, xthread_queue, xthread_consume)

static void xthread_kernel(const bench_run *r, void *state, uint64_t n)
{
    xthread_queue *q = state;
    atomic_init(&q->tail, 0);
    atomic_init(&q->head, 0);
    q->r = r;
    q->n = n;
    pthread_t consumer = bench_thread_start(xthread_consumer, q);
    pthread_t producer = bench_thread_start(xthread_producer, q);
    bench_thread_join(producer);
    bench_thread_join(consumer);
}

static void case_xthread_32(const bench_run *r)
{
    static xthread_queue q;
    alloc_measure(r, xthread_kernel, &q, r->ops / 16, r->ops);
}

/* larson: LARSON_THREADS lineages of threads, each owning LARSON_SLOTS blocks. An op frees a random
 * slot's block and puts a new block of 16..512 bytes there. After LARSON_ROUND ops a thread starts its
 * successor on the same slots and exits, so successors free what their predecessors allocated (the
 * main thread fills the slots first and frees what is left at the end). */
enum { LARSON_THREADS = 2, LARSON_SLOTS = 1000, LARSON_ROUND = 10000 };

/* One lineage. Only its current thread touches slot, rng, left and cur. gen[g] is the thread of
 * generation g: written by generation g - 1 (the main thread for g = 0) before that one exits, read by
 * the main thread after joining generation g - 1. */
typedef struct larson_lineage {
    const bench_run *r;
    void *slot[LARSON_SLOTS];
    bench_rng rng;
    uint64_t left; /* ops still to do */
    size_t cur;    /* generation of the running thread */
    pthread_t *gen;
} larson_lineage;

ALLOC_INLINE void larson_fill(alloc_fn alloc, free_fn dealloc, larson_lineage *l)
{
    for (size_t j = 0; j < LARSON_SLOTS; j++)
        l->slot[j] = alloc_touch(alloc, bench_rand_range(&l->rng, 16, 512), j);
}

ALLOC_INLINE void larson_round(alloc_fn alloc, free_fn dealloc, larson_lineage *l)
{
    uint64_t k = l->left < LARSON_ROUND ? l->left : LARSON_ROUND;
    bench_rng rng = l->rng;
    for (uint64_t i = 0; i < k; i++) {
        uint32_t j = bench_rand_below(&rng, LARSON_SLOTS);
        dealloc(l->slot[j]);
        l->slot[j] = alloc_touch(alloc, bench_rand_range(&rng, 16, 512), i);
    }
    l->rng = rng;
    l->left -= k;
}

static void *larson_thread(void *arg)
{
    larson_lineage *l = arg;
    ALLOC_WITH_API(l->r, larson_round, l);
    if (l->left > 0) {
        size_t next = ++l->cur;
        l->gen[next] = bench_thread_start(larson_thread, l);
    }
    return NULL;
}

static void larson_kernel(const bench_run *r, void *state, uint64_t n)
{
    larson_lineage *lin = state;
    uint64_t per = (n + LARSON_THREADS - 1) / LARSON_THREADS;
    size_t ngen = (size_t)((per + LARSON_ROUND - 1) / LARSON_ROUND);
    for (size_t t = 0; t < LARSON_THREADS; t++) {
        larson_lineage *l = &lin[t];
        l->r = r;
        l->rng = bench_rng_seed(100 + t);
        l->left = per;
        l->cur = 0;
        l->gen = calloc(ngen, sizeof *l->gen);
        if (!l->gen) bench_fail("out of memory");
        ALLOC_WITH_API(r, larson_fill, l);
    }
    for (size_t t = 0; t < LARSON_THREADS; t++) lin[t].gen[0] = bench_thread_start(larson_thread, &lin[t]);
    for (size_t t = 0; t < LARSON_THREADS; t++) {
        for (size_t g = 0; g < ngen; g++) bench_thread_join(lin[t].gen[g]);
        ALLOC_WITH_API(r, alloc_free_slots, lin[t].slot, LARSON_SLOTS);
        free(lin[t].gen);
    }
}

static void case_larson(const bench_run *r)
{
    static larson_lineage lin[LARSON_THREADS];
    alloc_measure(r, larson_kernel, lin, r->ops / 16, r->ops);
}

/* ---- test-stress-small -----------------------------------------------------------------------------
 * A light variant of mimalloc's test-stress (the published shape is `test-stress` below): a much
 * smaller live set. Parameters: THREADS=32, SCALE=50, ITER=50 (--quick: SCALE=10, ITER=10). Each of ITER iterations starts THREADS fresh threads and joins them.
 * A thread takes SCALE*100 steps; each allocates a block — 99% of 8..256 bytes, 1% of up to 64 KiB —
 * that either stays for the thread's life (1 in 10, in its retained array) or replaces, and frees, a
 * random one of STRESS_LOCAL short-lived blocks; in 1 step of 4 a random short-lived block is swapped
 * with a random slot of the STRESS_TRANSFERS-slot global transfer array (atomic exchange), so blocks
 * move between threads and outlive the iteration that allocated them. Every block is filled with a
 * pattern of its address at allocation, checked before it is freed (abort on a mismatch). */
enum {
    STRESS_THREADS = 32,
    STRESS_TRANSFERS = 1000,
    STRESS_LOCAL = 128,      /* short-lived blocks per thread */
    STRESS_MAX_WORDS = 8192, /* 64 KiB, the largest block */
};

static _Atomic(void *) stress_transfer[STRESS_TRANSFERS];

/* A thread's parameters. */
typedef struct stress_thread {
    const bench_run *r;
    uint64_t seed;
    size_t steps;
} stress_thread;

/* Word i of a stress block at w (word 0 holds the number of words). */
static inline uint64_t stress_pattern(const uint64_t *w, size_t i)
{
    return ((uint64_t)(uintptr_t)w + i) * 0x9E3779B97F4A7C15u;
}

ALLOC_INLINE uint64_t *stress_new(alloc_fn alloc, bench_rng *rng)
{
    size_t words = bench_rand_below(rng, 100) == 0 ? bench_rand_range(rng, 1, STRESS_MAX_WORDS)
                                                   : bench_rand_range(rng, 1, 32);
    uint64_t *w = alloc(words * sizeof *w);
    w[0] = words;
    for (size_t i = 1; i < words; i++) w[i] = stress_pattern(w, i);
    bench_escape(w);
    return w;
}

ALLOC_INLINE void stress_free(free_fn dealloc, uint64_t *w)
{
    if (!w) return;
    size_t words = (size_t)w[0];
    if (words < 1 || words > STRESS_MAX_WORDS) bench_fail("block %p: size word overwritten", (void *)w);
    for (size_t i = 1; i < words; i++)
        if (w[i] != stress_pattern(w, i))
            bench_fail("block %p of %zu bytes: word %zu overwritten", (void *)w, 8 * words, i);
    dealloc(w);
}

ALLOC_INLINE void stress_body(alloc_fn alloc, free_fn dealloc, const stress_thread *t)
{
    bench_rng rng = bench_rng_seed(t->seed);
    size_t cap = t->steps / 10 + 1, nretained = 0;
    uint64_t **local = alloc(STRESS_LOCAL * sizeof *local);
    uint64_t **retained = alloc(cap * sizeof *retained);
    memset(local, 0, STRESS_LOCAL * sizeof *local);
    for (size_t s = 0; s < t->steps; s++) {
        uint64_t *w = stress_new(alloc, &rng);
        if (bench_rand_below(&rng, 10) == 0 && nretained < cap) {
            retained[nretained++] = w;
        } else {
            size_t i = bench_rand_below(&rng, STRESS_LOCAL);
            stress_free(dealloc, local[i]);
            local[i] = w;
        }
        if (bench_rand_below(&rng, 4) == 0) {
            size_t i = bench_rand_below(&rng, STRESS_LOCAL), j = bench_rand_below(&rng, STRESS_TRANSFERS);
            /* acq_rel pairs with the same exchange in other threads: the release publishes the
             * pattern of the block put in, the acquire sees the pattern of the block taken out. */
            local[i] = atomic_exchange_explicit(&stress_transfer[j], local[i], memory_order_acq_rel);
        }
    }
    for (size_t i = 0; i < STRESS_LOCAL; i++) stress_free(dealloc, local[i]);
    for (size_t i = 0; i < nretained; i++) stress_free(dealloc, retained[i]);
    dealloc(local);
    dealloc(retained);
}

/* Frees what the threads left in the transfer array (its blocks were published by exchanges that the
 * joins order before this). */
ALLOC_INLINE void stress_drain(alloc_fn alloc, free_fn dealloc, _Atomic(void *) *transfer)
{
    for (size_t j = 0; j < STRESS_TRANSFERS; j++)
        stress_free(dealloc, atomic_exchange_explicit(&transfer[j], NULL, memory_order_relaxed));
}

ALLOC_THREAD_ENTRY(stress_thread_main, stress_thread, stress_body)

static void case_test_stress_small(const bench_run *r)
{
    size_t scale = r->quick ? 10 : 50, iters = r->quick ? 10 : 50;
    bench_note(r, "THREADS=%d SCALE=%zu ITER=%zu (small live set; blocks checked at free)",
               STRESS_THREADS, scale, iters);
    stress_thread t[STRESS_THREADS];
    pthread_t th[STRESS_THREADS];
    uint64_t t0 = bench_now_ns();
    for (size_t it = 0; it < iters; it++) {
        for (size_t i = 0; i < STRESS_THREADS; i++) {
            t[i] = (stress_thread){ r, it * STRESS_THREADS + i, scale * 100 };
            th[i] = bench_thread_start(stress_thread_main, &t[i]);
        }
        for (size_t i = 0; i < STRESS_THREADS; i++) bench_thread_join(th[i]);
    }
    ALLOC_WITH_API(r, stress_drain, stress_transfer);
    bench_report(r, "wall_s", (double)(bench_now_ns() - t0) * 1e-9);
    bench_report(r, "peak_rss_bytes", (double)bench_peak_rss_bytes());
}

/* ---- test-stress ---------------------------------------------------------------------------------
 * mimalloc's test/test-stress.c at its published shape, written from its description: THREADS=32,
 * SCALE=50, ITER=50 (--quick: ITER=10; SCALE and THREADS stay). Each iteration starts THREADS threads
 * and joins them. Thread tid makes 100 * SCALE * (tid % 8 + 1) allocations into a `data` array that
 * grows by realloc in steps of 100000 entries, plus half as many into a `retained` array (calloc'ed)
 * that lives until the thread ends. Each step allocates — a data block of 1..16 words, or a retained
 * one of 1..64 words, powers of two — then with chance 66 frees a random data entry and with chance 25
 * swaps a random data entry with a random slot of the TRANSFERS-slot global transfer array. A chance
 * p is `rand % 100 <= p` as published, so "1" is 2%: 2% of requests are 100x larger, and of those 2%
 * are 10000x and 11% 1000x (blocks of up to 5 MiB). Every block comes from calloc and is filled with
 * (n - i) ^ cookie, checked at free. After each join, each transfer slot is emptied with chance 50
 * (all of them after the last iteration). Metrics cover the iterations: wall time, peak RSS, and
 * (getrusage) system time and minor page faults. */
enum {
    TS_THREADS = 32,
    TS_SCALE = 50,
    TS_TRANSFERS = 1000,
    TS_DATA_STEP = 100000, /* data array growth, entries */
};
#define TS_COOKIE ((uint64_t)0xbf58476d1ce4e5b9u)

static _Atomic(void *) ts_transfer[TS_TRANSFERS];

typedef void *(*calloc_fn)(size_t n, size_t size);
typedef void *(*realloc_fn)(void *p, size_t size);

/* Runs body(calloc, realloc, free, ...) with the subject's allocator bound at compile time. */
#define TS_WITH_API(r, body, ...)                                                                        \
    (bench_is_ouro(r) ? body(ouro_calloc, ouro_realloc, ouro_free, __VA_ARGS__)                          \
                      : body(calloc, realloc, free, __VA_ARGS__))

typedef struct ts_thread {
    const bench_run *r;
    size_t tid;
} ts_thread;

/* true with the published odds: rand % 100 <= perc. */
static inline bool ts_chance(bench_rng *rng, uint32_t perc) { return bench_rand(rng) % 100 <= perc; }

ALLOC_INLINE uint64_t *ts_alloc_items(calloc_fn xcalloc, realloc_fn xrealloc, free_fn xfree, size_t n,
                                      bench_rng *rng)
{
    if (ts_chance(rng, 1)) {
        if (ts_chance(rng, 1)) n *= 10000;
        else if (ts_chance(rng, 10)) n *= 1000;
        else n *= 100;
    }
    if (n == 40) n++; /* as published (a size pthreads uses for its stacks) */
    uint64_t *p = xcalloc(n, sizeof *p);
    if (!p) bench_fail("calloc(%zu, 8) failed", n);
    /* Not in the published test: a cheap check of calloc's zeroing (its first and last words). */
    if (p[0] != 0 || p[n - 1] != 0) bench_fail("calloc: block %p of %zu words is not zeroed", (void *)p, n);
    for (size_t i = 0; i < n; i++) p[i] = (n - i) ^ TS_COOKIE;
    return p;
}

ALLOC_INLINE void ts_free_items(calloc_fn xcalloc, realloc_fn xrealloc, free_fn xfree, uint64_t *p)
{
    if (p) {
        size_t n = (size_t)(p[0] ^ TS_COOKIE);
        for (size_t i = 0; i < n; i++)
            if ((p[i] ^ TS_COOKIE) != n - i) bench_fail("block %p of %zu words: word %zu overwritten", (void *)p, n, i);
    }
    xfree(p);
}

ALLOC_INLINE void ts_body(calloc_fn xcalloc, realloc_fn xrealloc, free_fn xfree, const ts_thread *t)
{
    bench_rng rng = bench_rng_seed(t->tid * 43);
    size_t allocs = 100 * (size_t)TS_SCALE * (t->tid % 8 + 1), retain = allocs / 2;
    uint64_t **data = NULL, **retained = xcalloc(retain, sizeof *retained);
    size_t data_size = 0, data_top = 0, retain_top = 0;
    if (!retained) bench_fail("calloc of the retained array failed");
    while (allocs > 0 || retain > 0) {
        if (retain == 0 || (ts_chance(&rng, 50) && allocs > 0)) {
            allocs--;
            if (data_top >= data_size) {
                data_size += TS_DATA_STEP;
                data = xrealloc(data, data_size * sizeof *data);
                if (!data) bench_fail("realloc of the data array failed");
            }
            data[data_top++] = ts_alloc_items(xcalloc, xrealloc, xfree, (size_t)1 << (bench_rand(&rng) % 5), &rng);
        } else {
            retained[retain_top++] = ts_alloc_items(xcalloc, xrealloc, xfree, (size_t)1 << (bench_rand(&rng) % 7), &rng);
            retain--;
        }
        if (ts_chance(&rng, 66) && data_top > 0) {
            size_t i = bench_rand(&rng) % data_top;
            ts_free_items(xcalloc, xrealloc, xfree, data[i]);
            data[i] = NULL;
        }
        if (ts_chance(&rng, 25) && data_top > 0) {
            size_t i = bench_rand(&rng) % data_top, j = bench_rand(&rng) % TS_TRANSFERS;
            /* acq_rel pairs with the same exchange in other threads (and the main thread's): the release
             * publishes the pattern of the block put in, the acquire sees that of the block taken out. */
            data[i] = atomic_exchange_explicit(&ts_transfer[j], data[i], memory_order_acq_rel);
        }
    }
    for (size_t i = 0; i < retain_top; i++) ts_free_items(xcalloc, xrealloc, xfree, retained[i]);
    for (size_t i = 0; i < data_top; i++) ts_free_items(xcalloc, xrealloc, xfree, data[i]);
    xfree(retained);
    xfree(data);
}

/* Empties each transfer slot with chance 50, or every slot when all is set. */
ALLOC_INLINE void ts_drain(calloc_fn xcalloc, realloc_fn xrealloc, free_fn xfree, bench_rng *rng, bool all)
{
    for (size_t j = 0; j < TS_TRANSFERS; j++)
        if (ts_chance(rng, 50) || all)
            ts_free_items(xcalloc, xrealloc, xfree, atomic_exchange_explicit(&ts_transfer[j], NULL, memory_order_acq_rel));
}

static void *ts_thread_main(void *arg)
{
    ts_thread *t = arg;
    TS_WITH_API(t->r, ts_body, t);
    return NULL;
}

static double ts_seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6; }

static void case_test_stress(const bench_run *r)
{
    size_t iters = r->quick ? 10 : 50;
    bench_note(r, "THREADS=%d SCALE=%d ITER=%zu TRANSFERS=%d (mimalloc test-stress; calloc'ed blocks checked at free)",
               TS_THREADS, TS_SCALE, iters, TS_TRANSFERS);
    ts_thread t[TS_THREADS];
    pthread_t th[TS_THREADS];
    bench_rng rng = bench_rng_seed(0x7feb352d);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = bench_now_ns();
    for (size_t it = 0; it < iters; it++) {
        for (size_t i = 0; i < TS_THREADS; i++) {
            t[i] = (ts_thread){ r, i };
            th[i] = bench_thread_start(ts_thread_main, &t[i]);
        }
        for (size_t i = 0; i < TS_THREADS; i++) bench_thread_join(th[i]);
        TS_WITH_API(r, ts_drain, &rng, it + 1 == iters);
    }
    uint64_t t1 = bench_now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    bench_report(r, "wall_s", (double)(t1 - t0) * 1e-9);
    bench_report(r, "peak_rss_bytes", (double)bench_peak_rss_bytes());
    bench_report(r, "sys_s", ts_seconds(ru1.ru_stime) - ts_seconds(ru0.ru_stime));
    bench_report(r, "minor_faults", (double)(ru1.ru_minflt - ru0.ru_minflt));
}

/* ---- drain-rss -------------------------------------------------------------------------------- */

/* Allocates blocks of 16..512 bytes into blocks[] until they add up to live bytes. Returns the count. */
ALLOC_INLINE size_t drain_fill(alloc_fn alloc, free_fn dealloc, void **blocks, size_t live, bench_rng *rng)
{
    size_t n = 0;
    for (size_t total = 0; total < live; n++) {
        size_t size = bench_rand_range(rng, 16, 512);
        blocks[n] = alloc_touch(alloc, size, n);
        total += size;
    }
    return n;
}

static void case_drain_rss(const bench_run *r)
{
    size_t live = (size_t)(r->quick ? 256 : 1024) << 20, cap = live / 16 + 1;
    pair_state warm = { sizes_16_512, SIZE_TABLE - 1 };
    size_table_fill(sizes_16_512, 16, 512, 1);
    ALLOC_WITH_API(r, pair_body, &warm, 10000);
    size_t baseline = bench_rss_bytes();

    /* The block array comes from the OS, not from the subject; it is resident at the peak (the same
     * for every subject) and unmapped before RSS is polled. */
    void **blocks = mmap(NULL, cap * sizeof *blocks, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (blocks == MAP_FAILED) bench_fail("mmap of the block array failed");
    bench_rng rng = bench_rng_seed(4);
    size_t n = ALLOC_WITH_API(r, drain_fill, blocks, live, &rng);
    size_t peak = bench_peak_rss_bytes();
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = bench_rand_below(&rng, (uint32_t)(i + 1));
        void *tmp = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = tmp;
    }
    ALLOC_WITH_API(r, alloc_free_slots, blocks, n);
    munmap(blocks, cap * sizeof *blocks);

    size_t after = bench_rss_bytes();
    for (int i = 0; i < 100 && after > baseline; i++) {
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
        size_t now = bench_rss_bytes();
        if (now < after) after = now;
    }
    bench_note(r, "live set %zu MiB in %zu blocks of 16..512 B, freed shuffled; the peak includes the %zu "
               "MiB block array", live >> 20, n, (n * sizeof *blocks) >> 20);
    bench_report(r, "peak_rss_bytes", (double)peak);
    bench_report(r, "after_free_rss_bytes", (double)after);
    bench_report(r, "after_free_over_baseline", (double)after / (double)baseline);
}

/* ---- the suite ---------------------------------------------------------------------------------- */

static const bench_subject alloc_subjects[] = {
    BENCH_SUBJECT_OURO, BENCH_SUBJECT_OURO_HARDENED, BENCH_PEER_GLIBC, BENCH_PEER_MIMALLOC, BENCH_PEER_JEMALLOC, BENCH_PEER_TCMALLOC,
    BENCH_SUBJECT_OURO_SO("pair-32 pair-mixed"),
};

/* A sized case: it reports ns_per_op, and the driver sizes it from 100000 ops up. */
#define ALLOC_SIZED_CASE(name_, about_, run_)                                                            \
    { .name = name_, .about = about_, .metrics = { "ns_per_op" }, .sized = 100000, .run = run_ }

static const bench_case alloc_cases[] = {
    ALLOC_SIZED_CASE("pair-32", "op = alloc(32) + free", case_pair_32),
    ALLOC_SIZED_CASE("pair-mixed", "op = alloc + free of 16..512 B (fixed-seed table of 4096 sizes)",
                     case_pair_mixed),
    ALLOC_SIZED_CASE("batch-lifo-1000", "op = one of 1000 x 32 B allocated, then freed newest first",
                     case_batch_lifo),
    ALLOC_SIZED_CASE("fifo-64k",
                     "op = free the oldest of 65536 live 32..128 B blocks + allocate its successor",
                     case_fifo_64k),
    ALLOC_SIZED_CASE("xthread-32",
                     "op = one 32 B block allocated by a thread, passed by an SPSC ring, freed by another",
                     case_xthread_32),
    ALLOC_SIZED_CASE("larson",
                     "op = free a random slot of 1000 + allocate 16..512 B; 2 threads, successor per 10k",
                     case_larson),
    { .name = "test-stress",
      .about = "mimalloc's test-stress as published: 32 threads x 50 iterations, calloc/realloc, checked",
      .metrics = { "wall_s", "peak_rss_bytes", "sys_s", "minor_faults" },
      .run = case_test_stress },
    { .name = "test-stress-small",
      .about = "test-stress with a small live set: 32 threads per iteration, blocks exchanged, checked",
      .metrics = { "wall_s", "peak_rss_bytes" },
      .run = case_test_stress_small },
    { .name = "drain-rss",
      .about = "1 GiB (--quick: 256 MiB) live of 16..512 B, all freed, lowest RSS within 1 s; no trim calls",
      .metrics = { "peak_rss_bytes", "after_free_rss_bytes", "after_free_over_baseline" },
      .run = case_drain_rss },
};

const bench_suite bench_suite_alloc = {
    .name = "alloc",
    .about = "ouro_alloc/ouro_free against glibc, mimalloc, jemalloc, tcmalloc (malloc/free, LD_PRELOAD)",
    .subjects = alloc_subjects,
    .nsubjects = sizeof alloc_subjects / sizeof alloc_subjects[0],
    .cases = alloc_cases,
    .ncases = sizeof alloc_cases / sizeof alloc_cases[0],
};
