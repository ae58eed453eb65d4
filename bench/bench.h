/* bench/bench.h — the benchmark driver's interface to its suites.
 *
 * A suite is one file, bench/<name>_suite.c, that defines `const bench_suite bench_suite_<name>`: the
 * subjects it compares (subjects[0] is always ouro, the others are its peers, or variants of ouro and
 * references measured in-process, which have bench_subject.ouro set) and its cases. The driver
 * (bench/main.c) runs every (case, subject, rep) in a child process of its own, with the peer's library
 * in LD_PRELOAD, alternating the subjects within each rep, and prints per case and metric the median of
 * each subject and the ratios ouro/peer.
 *
 * A case runs for every subject of its suite unless its `subjects` mask names some (bit i for
 * subjects[i]): the others are not run for it, show "n/a" in the table, get no ratio and no JSON record.
 * The stw suite uses it to compare `ouro` with one reference per case (`baseline` for the bare loop of
 * `poll`, `ouro-nopoll` for `pair-32-polled`) and to run its stop-the-world cases for `ouro` only. A case
 * that does not run `ouro` prints its ratios against the first subject it runs (the rc suite's scaling
 * cases: "ouro-1t/ouro-2t" is the 2-thread speed-up).
 *
 * In the child the driver calls the case's run() once with a bench_run naming the subject; the case
 * does its work with that subject's API and reports each of its metrics with bench_report(). Every
 * metric is lower-is-better (times, bytes, ratios of bytes), so a ratio ouro/peer below 1 means ouro is
 * ahead. A case writes nothing to stdout (it is the pipe to the driver): bench_note() for remarks,
 * stderr for diagnostics, bench_fail() when a check fails.
 *
 * Adding a suite: write bench/<name>_suite.c, add X(<name>) to BENCH_SUITES below and the file to
 * bench_sources in build.zig. */
#ifndef OURO_BENCH_H
#define OURO_BENCH_H

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

/* Every suite, in the order they run: X(name) stands for the object bench_suite_<name>. */
#define BENCH_SUITES(X) X(alloc) X(stw) X(rc) X(gc) X(real)

enum {
    BENCH_MAX_SUBJECTS = 8, /* subjects of one suite, ouro included */
    BENCH_MAX_METRICS = 4,  /* metrics of one case */
};

/* One thing measured: ouro, or a peer reached through malloc/free. */
typedef struct bench_subject {
    const char *name;    /* in the table and the JSON: "ouro", "glibc", "mimalloc", ... */
    const char *preload; /* library file put in the child's LD_PRELOAD (looked up in the multiarch
                            library folders; a name with a '/' is relative to the driver's folder:
                            "../lib/libouro-malloc.so"); NULL: nothing preloaded */
    const char *probe;   /* a symbol only that library defines: the child refuses to run without it
                            (NULL: malloc's origin is checked alone) */
    const char *package; /* the Debian package that provides the library, named when it is missing */
    const char *exe;     /* a sibling executable (same directory) that runs this subject's children
                            instead of this one: ouro built with other options; NULL: this one */
    int ouro;            /* nonzero: ouro, a variant of it or an in-process reference (the child calls
                            ouro's API or none); never a peer, never the "best peer" */
    const char *only;    /* the cases it runs for, separated by spaces; NULL: every case */
} bench_subject;

/* The subjects every allocator-facing suite can list (initialisers for a bench_subject array). */
#define BENCH_SUBJECT_OURO { "ouro", NULL, NULL, NULL, NULL, 1, NULL }
/* The same library built with -Dhardened=true (encoded free lists, double-free detection): its ratio
 * to `ouro` is hardening's measured cost. Not a peer: never the "best peer". */
#define BENCH_SUBJECT_OURO_HARDENED { "ouro-hardened", NULL, NULL, NULL, "ouro-bench-hardened", 1, NULL }
/* ouro through the shared library (the bench's cases linked against libouro-bench.so: calls through
 * the PLT, thread-locals through the GOT) for the cases named: its ratio to `ouro` is the cost of
 * linking libouro.so rather than libouro.a. */
#define BENCH_SUBJECT_OURO_SO(cases) { "ouro-so", NULL, NULL, NULL, "ouro-bench-so", 1, cases }
#define BENCH_PEER_GLIBC { "glibc", NULL, NULL, NULL, NULL, 0, NULL }
#define BENCH_PEER_MIMALLOC { "mimalloc", "libmimalloc.so.2", "mi_version", "libmimalloc2.0", NULL, 0, NULL }
#define BENCH_PEER_JEMALLOC { "jemalloc", "libjemalloc.so.2", "mallctl", "libjemalloc2", NULL, 0, NULL }
#define BENCH_PEER_TCMALLOC { "tcmalloc", "libtcmalloc_minimal.so.4", "tc_malloc", "libtcmalloc-minimal4", NULL, 0, NULL }

typedef struct bench_suite bench_suite;
typedef struct bench_case bench_case;

/* One measurement as the child sees it. */
typedef struct bench_run {
    const bench_suite *suite;
    const bench_case *bcase;
    const bench_subject *subject;
    size_t subject_index; /* into suite->subjects; 0 is ouro */
    uint64_t ops;         /* sized cases: the op count the driver chose; fixed-work cases: 0 */
    int quick;            /* --quick: smaller fixed work */
    int silent;           /* set while the driver sizes the case: reports and notes are dropped */
} bench_run;

/* One case of a suite. */
struct bench_case {
    const char *name;  /* unique within the suite: "pair-32" */
    const char *about; /* one line for the table: what one op is, or what the case does */
    const char *metrics[BENCH_MAX_METRICS + 1]; /* what run() reports, in table order; NULL-ended */
    uint64_t sized;    /* nonzero: run() does r->ops ops and reports ns_per_op; the driver first runs
                          it in ouro's child from this op count upwards and picks the ops whose timed
                          part takes ~0.2 s (0.05 s under --quick), the same for every subject; 0:
                          run() does fixed work and ignores ops */
    void (*run)(const bench_run *r); /* in the child; must free all it allocates (it may run again) */
    unsigned subjects; /* BENCH_SUBJECT_BIT(i) for each suite->subjects[i] the case runs for; 0: all */
};

/* The bit of suite->subjects[i] in bench_case.subjects. */
#define BENCH_SUBJECT_BIT(i) (1u << (i))

/* A suite: subjects[0] is ouro, the rest its peers. */
struct bench_suite {
    const char *name;
    const char *about;
    const bench_subject *subjects;
    size_t nsubjects;
    const bench_case *cases;
    size_t ncases;
};

#define BENCH_DECLARE_SUITE(name) extern const bench_suite bench_suite_##name;
BENCH_SUITES(BENCH_DECLARE_SUITE)
#undef BENCH_DECLARE_SUITE

/* ---- services of the driver to the cases (bench/main.c) ------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds: the one clock every case times with. */
uint64_t bench_now_ns(void);

/* Reports one of the case's metrics. Each metric the case lists must be reported exactly once. */
void bench_report(const bench_run *r, const char *metric, double value);

/* Adds a remark printed under the case's rows: those of each subject's first measurement, each text
 * once (a remark every subject makes is printed once; a peer's own, e.g. its version, is added). */
void bench_note(const bench_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ends the child with a message naming the suite, case and subject: a check failed. */
_Noreturn void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Resident bytes now (/proc/self/statm). Reads without allocating. */
size_t bench_rss_bytes(void);

/* Most resident bytes so far (VmHWM in /proc/self/status). Reads without allocating. */
size_t bench_peak_rss_bytes(void);

/* Starts a joinable thread running fn(arg), or fails the run. */
pthread_t bench_thread_start(void *(*fn)(void *), void *arg);

/* Joins a thread started by bench_thread_start(), or fails the run. */
void bench_thread_join(pthread_t thread);

/* 1 in ouro's child: subjects[0] is ouro. */
static inline int bench_is_ouro(const bench_run *r) { return r->subject->ouro; }

/* ---- inline helpers for the loops -------------------------------------------------------------- */

/* Makes p escape to the compiler and orders memory around it: the allocation it came from and the
 * stores into it cannot be optimised away. */
static inline void bench_escape(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/* One turn of a spin-wait loop; *spins counts the turns of this wait (start it at 0). The first
 * turns PAUSE (on x86); later ones yield the CPU, so that a wait still makes progress when the thread
 * it waits for shares this CPU (2 cores, or a scheduler that packs threads). */
static inline void bench_spin_wait(unsigned *spins)
{
    if (++*spins > 64) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A small fast PRNG (xorshift64*): deterministic from its seed, one per thread. */
typedef struct bench_rng {
    uint64_t state;
} bench_rng;

/* A generator from any seed (0 included), its state mixed by one splitmix64 step. */
static inline bench_rng bench_rng_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    bench_rng rng = { (z ^ (z >> 31)) | 1 };
    return rng;
}

/* The next 64 random bits. */
static inline uint64_t bench_rand(bench_rng *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Du;
}

/* A uniform integer in [0, n), n >= 1 (multiply-shift, no division). */
static inline uint32_t bench_rand_below(bench_rng *rng, uint32_t n)
{
    return (uint32_t)(((bench_rand(rng) >> 32) * (uint64_t)n) >> 32);
}

/* A uniform integer in [lo, hi]. */
static inline uint32_t bench_rand_range(bench_rng *rng, uint32_t lo, uint32_t hi)
{
    return lo + bench_rand_below(rng, hi - lo + 1);
}

#endif /* OURO_BENCH_H */
