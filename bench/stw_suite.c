/* bench/stw_suite.c — the `stw` suite: what safepoint polls, offline sections and stops of the world
 * cost.
 *
 * The subjects are ouro and two in-process references, never peers: `baseline` runs `poll`'s loop
 * without the poll, `ouro-nopoll` runs `pair-32-polled`'s loop without the poll. Each case runs for
 * ouro and at most one of them (bench_case.subjects), so a ratio is the cost of the one thing the two
 * loops differ by; the stop cases run for ouro alone.
 *
 * The unit of work (stw_unit) stands for the mutator code between two polls: a dependent chain of
 * xor-shift-multiply steps, about 50 ns, that the compiler can neither fold (each unit starts from the
 * last one's result) nor vectorise (each step needs the one before).
 *
 * The stop cases run busy mutators — attached threads looping over the unit and a poll — and stop the
 * world from the child's main thread, which is not attached (as a collector thread would be). Oracles:
 * every mutator has run again between two stops, so that a stop never counts as stopped a thread that
 * is still on its way out of the previous park; and no mutator runs while the world is stopped. */
#include "bench.h"

#include <ouro.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define STW_INLINE static inline __attribute__((always_inline))

/* The subjects, in the order of stw_subjects[]. */
enum { STW_OURO, STW_BASELINE, STW_NOPOLL };

enum {
    STW_UNIT_STEPS = 36, /* steps of the unit: 5 cycles each (shift, xor, multiply), ~50 ns at 3.6 GHz */
    STW_MAX_MUTATORS = 4,
    STW_STOPS = 3000,      /* timed stops per measurement */
    STW_QUICK_STOPS = 500, /* under --quick */
    STW_WARM_STOPS = 20,   /* untimed first stops; the world is held STW_HOLD_NS in each */
    STW_HOLD_NS = 50000,
    STW_GAP_MIN_US = 100, /* the stopper sleeps a random gap of this range between two stops */
    STW_GAP_MAX_US = 300,
};

/* One unit of work: STW_UNIT_STEPS dependent xor-shift-multiply steps on x. */
STW_INLINE uint64_t stw_unit(uint64_t x)
{
    for (int i = 0; i < STW_UNIT_STEPS; i++) x = (x ^ (x >> 29)) * 0xBF58476D1CE4E5B9u;
    return x;
}

/* Hides x's value from the compiler: the chain that made it cannot be dropped. */
STW_INLINE void stw_keep(uint64_t x) { __asm__ volatile("" : : "r"(x) : "memory"); }

/* Attaches the calling thread (idempotent), or fails the run. */
static void stw_attach(void)
{
    if (ouro_thread_attach() != 0) bench_fail("ouro_thread_attach: %s", ouro_err_message());
}

/* Reports ns_per_op for ops ops that began at t0. */
static void stw_report_ns_per_op(const bench_run *r, uint64_t t0, uint64_t ops)
{
    bench_report(r, "ns_per_op", (double)(bench_now_ns() - t0) / (double)ops);
}

/* ---- poll: the unit, with and without a poll ------------------------------------------------------ */

STW_INLINE uint64_t poll_body(uint64_t x, uint64_t n, int poll)
{
    for (uint64_t i = 0; i < n; i++) {
        x = stw_unit(x);
        if (poll) ouro_safepoint();
    }
    return x;
}

/* Runs n ops for r's subject: ouro polls, baseline does not (two copies of the loop, compiled apart). */
static uint64_t poll_kernel(const bench_run *r, uint64_t x, uint64_t n)
{
    return r->subject_index == STW_OURO ? poll_body(x, n, 1) : poll_body(x, n, 0);
}

static void case_poll(const bench_run *r)
{
    stw_attach(); /* both subjects: the poll's fast path needs an attached, online thread */
    uint64_t x = poll_kernel(r, r->ops, r->ops / 16);
    uint64_t t0 = bench_now_ns();
    x = poll_kernel(r, x, r->ops);
    stw_report_ns_per_op(r, t0, r->ops);
    stw_keep(x);
    bench_note(r, "unit = %d dependent xor-shift-multiply steps; baseline's ns_per_op is its length",
               STW_UNIT_STEPS);
    ouro_thread_detach();
}

/* ---- pair-32-polled: alloc's pair-32 loop, with and without a poll --------------------------------- */

STW_INLINE void pair_polled_body(uint64_t n, int poll)
{
    for (uint64_t i = 0; i < n; i++) {
        char *p = ouro_alloc(32);
        p[0] = (char)i; /* as alloc_touch() in alloc's pair-32 */
        bench_escape(p);
        ouro_free(p);
        if (poll) ouro_safepoint();
    }
}

static void pair_polled_kernel(const bench_run *r, uint64_t n)
{
    if (r->subject_index == STW_OURO) pair_polled_body(n, 1);
    else pair_polled_body(n, 0);
}

static void case_pair_32_polled(const bench_run *r)
{
    stw_attach();
    pair_polled_kernel(r, r->ops / 16);
    uint64_t t0 = bench_now_ns();
    pair_polled_kernel(r, r->ops);
    stw_report_ns_per_op(r, t0, r->ops);
    ouro_thread_detach();
}

/* ---- offline-online ------------------------------------------------------------------------------- */

static void case_offline_online(const bench_run *r)
{
    stw_attach();
    uint64_t t0 = 0;
    for (uint64_t i = 0, warm = r->ops / 16; i < warm + r->ops; i++) {
        if (i == warm) t0 = bench_now_ns();
        if (ouro_offline_begin() != 0 || ouro_offline_end() != 0)
            bench_fail("offline section: %s", ouro_err_message());
    }
    stw_report_ns_per_op(r, t0, r->ops);
    ouro_thread_detach();
}

/* ---- stops: ttsp-N, stw-roundtrip ----------------------------------------------------------------- */

/* A busy mutator. units: units done; the mutator stores it (relaxed) after each unit and its poll; the
 * stopper reads it relaxed, between stops (only to see it move) and inside a stop, where
 * ouro_stop_the_world() has loaded the mutator's PARKED state with acquire order (stw_all_stopped()
 * in threads/stw.c, pairing with the mutator's store of PARKED when it parks): the mutator's last store
 * before it parked is visible, and none can follow until the start. */
typedef struct stw_mutator {
    _Alignas(64) _Atomic uint64_t units;
    uint64_t x; /* the chain's result: written by the mutator before it exits, read after the join */
} stw_mutator;

static _Atomic int stw_quit; /* set (relaxed) by the stopper after its last stop; joins order the rest */

static void *stw_mutator_main(void *arg)
{
    stw_mutator *m = arg;
    stw_attach();
    uint64_t x = (uintptr_t)m, k = 0;
    while (!atomic_load_explicit(&stw_quit, memory_order_relaxed)) {
        x = stw_unit(x);
        ouro_safepoint();
        atomic_store_explicit(&m->units, ++k, memory_order_relaxed);
    }
    m->x = x;
    ouro_thread_detach();
    return NULL;
}

/* Waits until every mutator has done a unit since seen[] was read (they have all come back online).
 * Returns 1 when it had to wait. */
static int stw_wait_resumed(stw_mutator *m, size_t n, const uint64_t *seen)
{
    int waited = 0;
    for (size_t i = 0; i < n; i++)
        for (unsigned spins = 0; atomic_load_explicit(&m[i].units, memory_order_relaxed) == seen[i];) {
            bench_spin_wait(&spins);
            waited = 1;
        }
    return waited;
}

/* Fails the run when a mutator did a unit since seen[] was read inside the current stop. */
static void stw_check_still(stw_mutator *m, size_t n, const uint64_t *seen)
{
    for (size_t i = 0; i < n; i++)
        if (atomic_load_explicit(&m[i].units, memory_order_relaxed) != seen[i])
            bench_fail("mutator %zu ran while the world was stopped", i);
}

/* Sleeps a random gap between two stops: the mutators run meanwhile. */
static void stw_gap(bench_rng *rng)
{
    long us = (long)bench_rand_range(rng, STW_GAP_MIN_US, STW_GAP_MAX_US);
    nanosleep(&(struct timespec){ 0, us * 1000 }, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The value of sorted v[0..n) at quantile q (nearest rank), in microseconds. */
static double stw_quantile_us(const uint64_t *v, size_t n, double q)
{
    size_t k = (size_t)(q * (double)n + 0.999999);
    return (double)v[k ? k - 1 : 0] * 1e-3;
}

/* Context switches of the whole process so far (voluntary + involuntary). */
static void stw_switches(long *vol, long *invol)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *vol = ru.ru_nvcsw;
    *invol = ru.ru_nivcsw;
}

/* Starts nmut busy mutators and stops the world from this (unattached) thread, over and over; times
 * each stop from the request to ouro_stop_the_world()'s return (roundtrip 0) or to
 * ouro_start_the_world()'s return (roundtrip 1), and reports the quantiles. */
static void stw_stops(const bench_run *r, size_t nmut, int roundtrip)
{
    size_t nstops = r->quick ? STW_QUICK_STOPS : STW_STOPS, waited = 0;
    uint64_t *ns = malloc(nstops * sizeof *ns), seen[STW_MAX_MUTATORS] = { 0 };
    static stw_mutator m[STW_MAX_MUTATORS];
    pthread_t th[STW_MAX_MUTATORS];
    if (!ns) bench_fail("out of memory");
    atomic_store_explicit(&stw_quit, 0, memory_order_relaxed);
    for (size_t i = 0; i < nmut; i++) {
        atomic_store_explicit(&m[i].units, 0, memory_order_relaxed);
        th[i] = bench_thread_start(stw_mutator_main, &m[i]);
    }
    stw_wait_resumed(m, nmut, seen);

    bench_rng rng = bench_rng_seed(nmut);
    long vol0 = 0, invol0 = 0, vol1, invol1;
    for (size_t s = 0; s < STW_WARM_STOPS + nstops; s++) {
        if (s == STW_WARM_STOPS) stw_switches(&vol0, &invol0);
        stw_gap(&rng);
        if (stw_wait_resumed(m, nmut, seen) && s >= STW_WARM_STOPS) waited++;
        uint64_t t0 = bench_now_ns();
        if (ouro_stop_the_world("bench") != 0) bench_fail("ouro_stop_the_world: %s", ouro_err_message());
        uint64_t t1 = bench_now_ns();
        for (size_t i = 0; i < nmut; i++) seen[i] = atomic_load_explicit(&m[i].units, memory_order_relaxed);
        while (s < STW_WARM_STOPS && bench_now_ns() < t1 + STW_HOLD_NS) {
            /* hold the world a while: a mutator that runs now is a bug */
        }
        stw_check_still(m, nmut, seen);
        if (ouro_start_the_world() != 0) bench_fail("ouro_start_the_world: %s", ouro_err_message());
        uint64_t t2 = bench_now_ns();
        if (s >= STW_WARM_STOPS) ns[s - STW_WARM_STOPS] = (roundtrip ? t2 : t1) - t0;
    }
    stw_switches(&vol1, &invol1);
    atomic_store_explicit(&stw_quit, 1, memory_order_relaxed);
    for (size_t i = 0; i < nmut; i++) {
        bench_thread_join(th[i]);
        stw_keep(m[i].x);
    }

    qsort(ns, nstops, sizeof *ns, cmp_u64);
    bench_report(r, "us_p50", stw_quantile_us(ns, nstops, 0.50));
    bench_report(r, "us_p99", stw_quantile_us(ns, nstops, 0.99));
    if (!roundtrip) bench_report(r, "us_max", stw_quantile_us(ns, nstops, 1.0));
    bench_note(r, "%zu stops, %d..%d us apart; %zu waited for a mutator to resume; per stop %.1f voluntary, "
               "%.1f involuntary context switches (process)", nstops, STW_GAP_MIN_US, STW_GAP_MAX_US, waited,
               (double)(vol1 - vol0) / (double)nstops, (double)(invol1 - invol0) / (double)nstops);
    free(ns);
}

static void case_ttsp_1(const bench_run *r) { stw_stops(r, 1, 0); }
static void case_ttsp_2(const bench_run *r) { stw_stops(r, 2, 0); }
static void case_ttsp_4(const bench_run *r) { stw_stops(r, 4, 0); }
static void case_stw_roundtrip(const bench_run *r) { stw_stops(r, 1, 1); }

/* ---- the suite ---------------------------------------------------------------------------------- */

static const bench_subject stw_subjects[] = {
    [STW_OURO] = BENCH_SUBJECT_OURO,
    [STW_BASELINE] = { "baseline", NULL, NULL, NULL, NULL, 1, NULL },
    [STW_NOPOLL] = { "ouro-nopoll", NULL, NULL, NULL, NULL, 1, NULL },
};

#define STW_ONLY_OURO BENCH_SUBJECT_BIT(STW_OURO)

/* A ttsp case: n busy mutators besides the stopper. */
#define STW_TTSP_CASE(name_, n_, run_)                                                                   \
    { .name = name_,                                                                                     \
      .about = "time to safepoint (request -> world stopped); busy mutators: " #n_ "; stopper unattached", \
      .metrics = { "us_p50", "us_p99", "us_max" },                                                       \
      .run = run_,                                                                                       \
      .subjects = STW_ONLY_OURO }

static const bench_case stw_cases[] = {
    { .name = "poll",
      .about = "op = ~50 ns unit of dependent integer work + ouro_safepoint() (baseline: no poll)",
      .metrics = { "ns_per_op" },
      .sized = 100000,
      .run = case_poll,
      .subjects = STW_ONLY_OURO | BENCH_SUBJECT_BIT(STW_BASELINE) },
    { .name = "pair-32-polled",
      .about = "op = ouro_alloc(32) + ouro_free + ouro_safepoint() (ouro-nopoll: no poll)",
      .metrics = { "ns_per_op" },
      .sized = 100000,
      .run = case_pair_32_polled,
      .subjects = STW_ONLY_OURO | BENCH_SUBJECT_BIT(STW_NOPOLL) },
    STW_TTSP_CASE("ttsp-1", 1, case_ttsp_1),
    STW_TTSP_CASE("ttsp-2", 2, case_ttsp_2),
    STW_TTSP_CASE("ttsp-4", 4, case_ttsp_4),
    { .name = "stw-roundtrip",
      .about = "ouro_stop_the_world + ouro_start_the_world from an unattached thread, 1 busy mutator",
      .metrics = { "us_p50", "us_p99" },
      .run = case_stw_roundtrip,
      .subjects = STW_ONLY_OURO },
    { .name = "offline-online",
      .about = "op = ouro_offline_begin + ouro_offline_end on an attached thread, no other threads",
      .metrics = { "ns_per_op" },
      .sized = 100000,
      .run = case_offline_online,
      .subjects = STW_ONLY_OURO },
};

const bench_suite bench_suite_stw = {
    .name = "stw",
    .about = "safepoint polls, time to safepoint, stop-the-world round trips, offline sections",
    .subjects = stw_subjects,
    .nsubjects = sizeof stw_subjects / sizeof stw_subjects[0],
    .cases = stw_cases,
    .ncases = sizeof stw_cases / sizeof stw_cases[0],
};
