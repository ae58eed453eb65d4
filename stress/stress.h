/* stress/stress.h — the stress runner's scenario registry and the helpers every scenario shares.
 *
 * A scenario is a name, a one-line description and a run function. Each module adds one file of
 * scenarios (alloc_scenarios.c, threads_scenarios.c, ..., gc_scenarios.c) exporting an array
 * terminated by an entry with a NULL name; main.c lists those arrays in one place. A run function
 * gets a stress_ctx (threads, duration, seed, short flag, counters) and returns true when every oracle
 * held.
 *
 * Determinism: every random choice comes from a stress_rng seeded from (seed, scenario name, stream),
 * where the stream names one thread of one generation (stress_run_threads) or the main thread
 * (stress_main_worker). Re-running with the same --seed, --threads and --short draws the same choices;
 * only the interleaving differs.
 *
 * Failure: stress_fail() records the first failure (any thread), asks every worker to stop, and
 * returns false so a scenario can `return stress_fail(...)`. The runner reports the message with a
 * reproduce line after the scenario's threads are joined.
 *
 * Counters: one slot per thread index, each written by the thread(s) of that index one at a time
 * and read by the progress display with relaxed loads. ops counts operations (an allocation, a
 * free, ...); checks counts oracle checks that passed (a canary verified, a count compared). */
#ifndef OURO_STRESS_H
#define OURO_STRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* --threads may not exceed this; slot STRESS_MAX_THREADS is the main thread's. */
#define STRESS_MAX_THREADS 64
#define STRESS_MESSAGE_MAX 512

typedef struct stress_ctx stress_ctx;

typedef struct stress_scenario {
    const char *name;        /* NULL ends a module's array */
    const char *description; /* one line */
    bool (*run)(stress_ctx *ctx);
} stress_scenario;

/* The modules' scenario arrays, each ending with an entry whose name is NULL. */
extern const stress_scenario stress_alloc_scenarios[];
extern const stress_scenario stress_threads_scenarios[];
extern const stress_scenario stress_object_scenarios[];
extern const stress_scenario stress_container_scenarios[];
extern const stress_scenario stress_gc_scenarios[];
extern const stress_scenario stress_lifecycle_scenarios[];

/* ---- PRNG: xoshiro256** seeded through splitmix64 ------------------------------------------------ */

typedef struct stress_rng {
    uint64_t s[4];
} stress_rng;

/* Seeds r for one stream of one scenario: the same (seed, scenario, stream) gives the same draws. */
void stress_rng_seed(stress_rng *r, uint64_t seed, const char *scenario, uint64_t stream);

/* Mixes x into a well-spread 64-bit value (splitmix64's finaliser). */
static inline uint64_t stress_mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The next 64 random bits (xoshiro256**). */
static inline uint64_t stress_rng_next(stress_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* A uniform draw in [0, n); n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for our n). */
static inline uint64_t stress_rng_below(stress_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)stress_rng_next(r) * n) >> 64);
}

/* A uniform draw in [lo, hi]; lo <= hi. */
static inline uint64_t stress_rng_range(stress_rng *r, uint64_t lo, uint64_t hi) {
    return lo + stress_rng_below(r, hi - lo + 1);
}

/* True with probability 1/n. */
static inline bool stress_rng_one_in(stress_rng *r, uint64_t n) {
    return stress_rng_below(r, n) == 0;
}

/* ---- the context of one scenario run ------------------------------------------------------------ */

/* One thread index's counters, on a cache line of its own. */
typedef struct stress_counter {
    _Alignas(64) _Atomic uint64_t ops;
    _Atomic uint64_t checks;
} stress_counter;

struct stress_ctx {
    /* Set by the runner before the run, read-only afterwards. */
    const stress_scenario *scenario;
    unsigned threads;  /* worker threads to run at once */
    double duration;   /* seconds the scenario should take (phases may overrun a little) */
    uint64_t seed;
    bool short_run;    /* --short: small live sets for sanitizer builds */
    bool quiet;        /* --quiet: no progress and no notes */
    char repro[256];   /* "ouro-stress --scenario ... --duration ..." */

    /* stop: set by the progress monitor at the deadline and by stress_fail(); workers poll it. */
    _Atomic bool stop;
    /* failed: the first stress_fail() wins the exchange and writes message; the runner reads message
     * after every worker is joined (pthread_join orders the write before the read). */
    _Atomic bool failed;
    char message[STRESS_MESSAGE_MAX];
    _Atomic size_t peak_rss; /* most resident bytes seen (stress_rss_sample) */
    stress_counter counters[STRESS_MAX_THREADS + 1];
};

/* One thread's view: its index, its PRNG stream, its counter slot and the scenario's shared state. */
typedef struct stress_worker {
    stress_ctx *ctx;
    unsigned index;      /* 0..threads-1 for workers, STRESS_MAX_THREADS for the main thread */
    uint64_t generation; /* which batch of threads this one belongs to (scenario-defined) */
    stress_rng rng;
    stress_counter *counter;
    void *arg;           /* the scenario's shared state */
} stress_worker;

/* True until the deadline passes or a failure is recorded. Workers poll it between operations. */
static inline bool stress_running(const stress_ctx *ctx) {
    return !atomic_load_explicit(&ctx->stop, memory_order_relaxed);
}

/* Adds n operations to w's counter (relaxed: the display only sums them). */
static inline void stress_count_ops(stress_worker *w, uint64_t n) {
    atomic_fetch_add_explicit(&w->counter->ops, n, memory_order_relaxed);
}

/* Adds n passed oracle checks to w's counter. */
static inline void stress_count_checks(stress_worker *w, uint64_t n) {
    atomic_fetch_add_explicit(&w->counter->checks, n, memory_order_relaxed);
}

/* Records a failure (the first one's message is kept), asks every worker to stop, returns false. */
bool stress_fail(stress_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when a failure was recorded. */
bool stress_failed(const stress_ctx *ctx);

/* Prints a note line on stderr (unless --quiet), without garbling the progress line. */
void stress_note(stress_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- threads ------------------------------------------------------------------------------------ */

typedef void (*stress_thread_fn)(stress_worker *w);

/* Runs fn on n new threads with indexes first..first+n-1 (each with its own PRNG stream of this
 * generation and the counter slot of its index) and joins them all. Returns false, with a failure
 * recorded, when a thread cannot be created (the ones created are still joined). */
bool stress_run_threads(stress_ctx *ctx, unsigned first, unsigned n, uint64_t generation,
                        stress_thread_fn fn, void *arg);

/* Sets up w as the main thread's worker (its own stream and counter slot). */
void stress_main_worker(stress_ctx *ctx, stress_worker *w, void *arg);

/* A barrier for the n threads of one stress_run_threads() call. */
typedef struct stress_barrier stress_barrier;
stress_barrier *stress_barrier_new(stress_ctx *ctx, unsigned n);
void stress_barrier_wait(stress_barrier *b);
void stress_barrier_free(stress_barrier *b);

/* ---- canaries ----------------------------------------------------------------------------------- */

/* The key of a block's pattern, from its address, its size and a per-block tag. The pattern depends
 * on the key only, so a moved block (realloc) is checked with its old key. */
uint64_t stress_canary_key(const void *p, size_t size, uint64_t tag);

/* Writes the pattern of key over n bytes at p. */
void stress_canary_fill(void *p, size_t n, uint64_t key);

/* Checks that bytes [from, to) of block hold the pattern of key (as written by stress_canary_fill at
 * block + from). On a mismatch records a failure naming what, the block and the first bad byte, and
 * returns false; otherwise counts a check. */
bool stress_canary_verify(stress_worker *w, const char *what, const void *block, size_t from, size_t to,
                          uint64_t key);

/* The allocator's end-of-scenario oracle: after the caller collected, every class's blocks in use, the
 * large blocks and bytes and the live heaps equal base's, and no more pools are abandoned than in base
 * (0 there unless an earlier scenario failed and leaked). Fails the scenario naming the first
 * difference; counts its checks on w. */
struct ouro_alloc_stats_t;
bool stress_expect_alloc_baseline(stress_worker *w, const struct ouro_alloc_stats_t *base);

/* Its start: stops the runtime (ouro_fini: nothing attached, the reclaimer idle), returns the calling
 * thread's pools, records the allocator's baseline in *base and makes the scenario's type from spec.
 * false (the scenario failed, naming the step) when one of them fails. */
struct ouro_type;
struct ouro_type_spec;
bool stress_start_baseline(stress_ctx *ctx, struct ouro_alloc_stats_t *base, const struct ouro_type_spec *spec,
                           struct ouro_type **type);

/* ---- memory and time ---------------------------------------------------------------------------- */

/* Zeroed bookkeeping memory straight from the OS (mmap), so it never mixes with the allocator under
 * test and leaves RSS exactly when unmapped. NULL, with a failure recorded, when mmap fails. */
void *stress_map(stress_ctx *ctx, size_t bytes);
void stress_unmap(void *p, size_t bytes);

/* Resident bytes of this process now (/proc/self/statm), 0 when unreadable. */
size_t stress_rss(void);

/* Reads the resident bytes, folds them into ctx->peak_rss and returns them. */
size_t stress_rss_sample(stress_ctx *ctx);

/* Monotonic seconds. */
double stress_now(void);

/* Sleeps for the given seconds. */
void stress_sleep(double seconds);

/* Bytes as a short human string ("12.3 MiB") in buf; returns buf. */
const char *stress_fmt_bytes(char *buf, size_t len, double bytes);

/* ---- the runner's side (support.c) -------------------------------------------------------------- */

/* The progress monitor: a thread that stops the scenario at its deadline, samples RSS and draws the
 * progress line (live on a terminal, a plain line every few seconds otherwise, nothing with quiet). */
typedef struct stress_monitor stress_monitor;
stress_monitor *stress_monitor_start(stress_ctx *ctx);
void stress_monitor_stop(stress_monitor *m);

/* Sums every slot's ops and checks (checks may be NULL). */
void stress_totals(stress_ctx *ctx, uint64_t *ops, uint64_t *checks);

/* ---- the run's RSS timeline (support.c) --------------------------------------------------------- */

/* Records rss at the time of the call when a second or more has passed since the last record (the
 * first call starts the clock). The progress monitor calls it every tick, the soak's sampler every
 * sample; any thread may. At most STRESS_TIMELINE_MAX records are kept: when full, neighbours merge
 * (the larger RSS stays) and a record stands for twice as long. */
#define STRESS_TIMELINE_MAX 4096
void stress_timeline_add(size_t rss);

/* Prints the timeline as one compact line: "RSS MiB over <s> s, the most of each <w> s: 3 29 9 ...",
 * at most 40 values. Nothing when there is no record. */
void stress_timeline_print(FILE *f);

/* ---- the soak (soak.c) -------------------------------------------------------------------------- */

/* Runs scenario s for duration seconds with seed (the runner's run of one scenario: progress monitor,
 * fatal handlers, FAIL line); false when it failed. */
typedef bool (*stress_slice_fn)(const stress_scenario *s, double duration, uint64_t seed, void *arg);

typedef struct stress_soak_config {
    const stress_scenario *const *scenarios; /* the scenarios to mix, at least one */
    size_t nscenarios;
    double duration;  /* --soak: seconds in all */
    double slice;     /* --soak-slice: seconds per scenario run */
    uint64_t seed;
    unsigned threads;
    bool short_run;
    bool quiet;       /* no progress lines (the verdict is always printed) */
    bool inject_leak; /* --soak-inject-leak: leak on purpose between slices, to prove the detector */
    const char *csv;  /* where the samples go */
    stress_slice_fn run_slice;
    void *arg;
} stress_soak_config;

/* Exit statuses of a soak besides 0 (passed) and 1 (a scenario failed). */
#define STRESS_SOAK_EXIT_SETUP 2  /* the CSV or the sampler could not be set up */
#define STRESS_SOAK_EXIT_GROWTH 3 /* RSS or live objects grew beyond their bound after warm-up */

/* Runs the soak described by c (docs/stress.md, "Soak"); returns 0 or one of the statuses above. */
int stress_soak(const stress_soak_config *c);

/* Parses a soak duration: plain seconds or a number followed by s, m or h ("90s", "2m", "1.5h").
 * -1 when s is not one. */
double stress_parse_duration(const char *s);

#endif /* OURO_STRESS_H */
