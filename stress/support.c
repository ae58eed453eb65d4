/* stress/support.c — what every scenario shares: the PRNG seeding, failure recording, threads and
 * barriers, canary patterns, bookkeeping memory, RSS and time, and the progress monitor. */
#include "stress/stress.h"

#include <ouro.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- PRNG --------------------------------------------------------------------------------------- */

/* FNV-1a of a scenario name, so a scenario's streams do not depend on its place in the table. */
static uint64_t support_hash_name(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

void stress_rng_seed(stress_rng *r, uint64_t seed, const char *scenario, uint64_t stream) {
    /* splitmix64 over a state that mixes the three inputs; xoshiro must not start all-zero, and
     * splitmix64's outputs never are four zeros in a row. */
    uint64_t x = stress_mix64(seed) ^ stress_mix64(support_hash_name(scenario) + stream * 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ull;
        r->s[i] = stress_mix64(x);
    }
}

/* ---- failures and notes ------------------------------------------------------------------------- */

/* Serialises writes to stderr between the progress monitor and notes; display_live says a progress
 * line is on screen (a note erases it first; the monitor redraws it on its next tick). */
static pthread_mutex_t support_display_lock = PTHREAD_MUTEX_INITIALIZER;
static bool support_display_live;

bool stress_fail(stress_ctx *ctx, const char *fmt, ...) {
    /* Only the first caller writes message; the runner reads it after joining every worker. */
    if (!atomic_exchange_explicit(&ctx->failed, true, memory_order_relaxed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
        va_end(ap);
    }
    atomic_store_explicit(&ctx->stop, true, memory_order_relaxed);
    return false;
}

bool stress_failed(const stress_ctx *ctx) {
    return atomic_load_explicit(&ctx->failed, memory_order_relaxed);
}

void stress_note(stress_ctx *ctx, const char *fmt, ...) {
    if (ctx->quiet) return;
    char line[STRESS_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&support_display_lock);
    fprintf(stderr, "%s  %s: %s\n", support_display_live ? "\r\033[K" : "", ctx->scenario->name, line);
    support_display_live = false;
    pthread_mutex_unlock(&support_display_lock);
}

/* ---- threads ------------------------------------------------------------------------------------ */

typedef struct support_thread {
    pthread_t tid;
    stress_thread_fn fn;
    stress_worker w;
} support_thread;

/* Sets up w for thread index of a generation: the PRNG stream (generation, index) of this scenario
 * and the counter slot of index. */
static void support_worker_init(stress_ctx *ctx, stress_worker *w, unsigned index, uint64_t generation,
                                void *arg) {
    w->ctx = ctx;
    w->index = index;
    w->generation = generation;
    stress_rng_seed(&w->rng, ctx->seed, ctx->scenario->name, (generation << 8) ^ index);
    w->counter = &ctx->counters[index];
    w->arg = arg;
}

/* pthread start routine: runs the scenario's function on the thread's worker. */
static void *support_thread_main(void *arg) {
    support_thread *t = arg;
    t->fn(&t->w);
    return NULL;
}

bool stress_run_threads(stress_ctx *ctx, unsigned first, unsigned n, uint64_t generation,
                        stress_thread_fn fn, void *arg) {
    support_thread *ts = calloc(n, sizeof *ts);
    if (!ts) return stress_fail(ctx, "out of memory for %u thread records", n);
    unsigned started = 0;
    bool ok = true;
    for (; started < n; started++) {
        support_thread *t = &ts[started];
        t->fn = fn;
        support_worker_init(ctx, &t->w, first + started, generation, arg);
        int rc = pthread_create(&t->tid, NULL, support_thread_main, t);
        if (rc != 0) {
            ok = stress_fail(ctx, "pthread_create: %s", strerror(rc));
            break;
        }
    }
    for (unsigned i = 0; i < started; i++) pthread_join(ts[i].tid, NULL);
    free(ts);
    return ok;
}

void stress_main_worker(stress_ctx *ctx, stress_worker *w, void *arg) {
    /* A generation no stress_run_threads() caller reaches, so the main stream is its own. */
    support_worker_init(ctx, w, STRESS_MAX_THREADS, ~(uint64_t)0 >> 8, arg);
}

struct stress_barrier {
    pthread_barrier_t b;
};

stress_barrier *stress_barrier_new(stress_ctx *ctx, unsigned n) {
    stress_barrier *b = malloc(sizeof *b);
    if (!b || pthread_barrier_init(&b->b, NULL, n) != 0) {
        free(b);
        stress_fail(ctx, "cannot create a barrier for %u threads", n);
        return NULL;
    }
    return b;
}

void stress_barrier_wait(stress_barrier *b) {
    pthread_barrier_wait(&b->b);
}

void stress_barrier_free(stress_barrier *b) {
    if (!b) return;
    pthread_barrier_destroy(&b->b);
    free(b);
}

/* ---- canaries ----------------------------------------------------------------------------------- */

/* The pattern is the word sequence key, key + STEP, key + 2 STEP, ... stored little-endian byte by
 * byte, so a block shifted by any number of bytes, or another block's pattern, does not match. */
#define SUPPORT_CANARY_STEP 0x9e3779b97f4a7c15ull

uint64_t stress_canary_key(const void *p, size_t size, uint64_t tag) {
    return stress_mix64((uint64_t)(uintptr_t)p ^ stress_mix64(size ^ 0x5bd1e995u) ^ tag);
}

void stress_canary_fill(void *p, size_t n, uint64_t key) {
    unsigned char *b = p;
    uint64_t w = key;
    size_t i = 0;
    for (; i + 8 <= n; i += 8, w += SUPPORT_CANARY_STEP) memcpy(b + i, &w, 8);
    if (i < n) memcpy(b + i, &w, n - i);
}

/* Offset of the first byte at p that differs from the pattern of key, n when all n bytes match. */
static size_t support_canary_mismatch(const unsigned char *b, size_t n, uint64_t key, unsigned char *want) {
    uint64_t w = key;
    size_t i = 0;
    for (; i + 8 <= n; i += 8, w += SUPPORT_CANARY_STEP) {
        uint64_t got;
        memcpy(&got, b + i, 8);
        if (got != w) break;
    }
    unsigned char expect[8];
    memcpy(expect, &w, 8);
    for (size_t k = 0; i + k < n && k < 8; k++) {
        if (b[i + k] != expect[k]) {
            *want = expect[k];
            return i + k;
        }
    }
    return n;
}

bool stress_canary_verify(stress_worker *w, const char *what, const void *block, size_t from, size_t to,
                          uint64_t key) {
    const unsigned char *b = (const unsigned char *)block + from;
    unsigned char want = 0;
    size_t bad = support_canary_mismatch(b, to - from, key, &want);
    if (bad == to - from) {
        stress_count_checks(w, 1);
        return true;
    }
    return stress_fail(w->ctx, "%s: block at %p: pattern over bytes [%zu, %zu) broken at byte %zu "
                       "(found 0x%02x, expected 0x%02x)", what, block, from, to, from + bad, b[bad], want);
}

/* ---- memory and time ---------------------------------------------------------------------------- */

void *stress_map(stress_ctx *ctx, size_t bytes) {
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        stress_fail(ctx, "mmap of %zu bookkeeping bytes: %s", bytes, strerror(errno));
        return NULL;
    }
    return p;
}

void stress_unmap(void *p, size_t bytes) {
    if (p) munmap(p, bytes ? bytes : 1);
}

size_t stress_rss(void) {
    /* open/read rather than stdio: no allocation, safe to call from any thread at any time. */
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) return 0;
    buf[len] = '\0';
    unsigned long size = 0, resident = 0;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t stress_rss_sample(stress_ctx *ctx) {
    size_t now = stress_rss();
    size_t peak = atomic_load_explicit(&ctx->peak_rss, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&ctx->peak_rss, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    return now;
}

double stress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void stress_sleep(double seconds) {
    struct timespec ts = { .tv_sec = (time_t)seconds,
                           .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *stress_fmt_bytes(char *buf, size_t len, double bytes) {
    if (bytes >= 1024.0 * 1024 * 1024) snprintf(buf, len, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024) snprintf(buf, len, "%.1f MiB", bytes / (1024.0 * 1024));
    else snprintf(buf, len, "%.1f KiB", bytes / 1024.0);
    return buf;
}

/* A count as a short human string ("1.23M"). */
static const char *support_fmt_count(char *buf, size_t len, double n) {
    if (n >= 1e9) snprintf(buf, len, "%.2fG", n / 1e9);
    else if (n >= 1e6) snprintf(buf, len, "%.2fM", n / 1e6);
    else if (n >= 1e3) snprintf(buf, len, "%.1fk", n / 1e3);
    else snprintf(buf, len, "%.0f", n);
    return buf;
}

/* ---- RSS timeline ------------------------------------------------------------------------------- */

#define SUPPORT_LINE_VALUES 40 /* most values on the compact line */

/* The records: rss[i] is the most resident bytes seen in the i-th period of width seconds since start.
 * Guarded by timeline_lock; any thread records. */
static struct {
    pthread_mutex_t lock;
    double start, last, width, end;
    size_t n;
    size_t rss[STRESS_TIMELINE_MAX];
} support_timeline = { .lock = PTHREAD_MUTEX_INITIALIZER, .width = 1.0 };

void stress_timeline_add(size_t rss) {
    double now = stress_now();
    pthread_mutex_lock(&support_timeline.lock);
    if (support_timeline.n == 0 && support_timeline.start == 0) {
        support_timeline.start = now;
    } else if (now - support_timeline.last < 1.0) {
        pthread_mutex_unlock(&support_timeline.lock);
        return;
    }
    support_timeline.last = now;
    support_timeline.end = now - support_timeline.start;
    size_t i = (size_t)(support_timeline.end / support_timeline.width);
    while (i >= STRESS_TIMELINE_MAX) { /* full: merge neighbours, each record now twice as long */
        for (size_t k = 0; k < STRESS_TIMELINE_MAX / 2; k++) {
            size_t a = support_timeline.rss[2 * k], b = support_timeline.rss[2 * k + 1];
            support_timeline.rss[k] = a > b ? a : b;
        }
        memset(&support_timeline.rss[STRESS_TIMELINE_MAX / 2], 0, STRESS_TIMELINE_MAX / 2 * sizeof(size_t));
        support_timeline.n = (support_timeline.n + 1) / 2;
        support_timeline.width *= 2;
        i = (size_t)(support_timeline.end / support_timeline.width);
    }
    if (rss > support_timeline.rss[i]) support_timeline.rss[i] = rss;
    if (i + 1 > support_timeline.n) support_timeline.n = i + 1;
    pthread_mutex_unlock(&support_timeline.lock);
}

void stress_timeline_print(FILE *f) {
    pthread_mutex_lock(&support_timeline.lock);
    size_t n = support_timeline.n;
    if (n == 0) {
        pthread_mutex_unlock(&support_timeline.lock);
        return;
    }
    size_t per = (n + SUPPORT_LINE_VALUES - 1) / SUPPORT_LINE_VALUES; /* records per value */
    fprintf(f, "RSS MiB over %.0f s, the most of each %g s:", support_timeline.end, per * support_timeline.width);
    for (size_t i = 0; i < n; i += per) {
        size_t most = 0;
        for (size_t k = i; k < i + per && k < n; k++)
            if (support_timeline.rss[k] > most) most = support_timeline.rss[k];
        double mib = (double)most / (1024.0 * 1024);
        fprintf(f, mib < 10 ? " %.1f" : " %.0f", mib);
    }
    fputc('\n', f);
    pthread_mutex_unlock(&support_timeline.lock);
}

/* ---- progress monitor --------------------------------------------------------------------------- */

#define SUPPORT_TICK_S 0.2        /* live line redraw and deadline precision */
#define SUPPORT_PLAIN_EVERY_S 3.0 /* plain progress line period when stderr is not a terminal */
#define SUPPORT_BAR_WIDTH 24

struct stress_monitor {
    stress_ctx *ctx;
    pthread_t tid;
    pthread_mutex_t lock; /* guards done */
    pthread_cond_t wake;  /* signalled by stress_monitor_stop() */
    bool done;
    bool tty;
    double start;
};

void stress_totals(stress_ctx *ctx, uint64_t *ops, uint64_t *checks) {
    uint64_t o = 0, c = 0;
    for (size_t i = 0; i <= STRESS_MAX_THREADS; i++) {
        o += atomic_load_explicit(&ctx->counters[i].ops, memory_order_relaxed);
        c += atomic_load_explicit(&ctx->counters[i].checks, memory_order_relaxed);
    }
    *ops = o;
    if (checks) *checks = c;
}

/* Draws one progress report: the live line (tty) or a plain line. */
static void support_monitor_draw(stress_monitor *m, double elapsed) {
    stress_ctx *ctx = m->ctx;
    uint64_t ops = 0;
    stress_totals(ctx, &ops, NULL);
    char nops[32], rate[32];
    support_fmt_count(nops, sizeof nops, (double)ops);
    support_fmt_count(rate, sizeof rate, elapsed > 0 ? (double)ops / elapsed : 0);
    pthread_mutex_lock(&support_display_lock);
    if (m->tty) {
        char bar[SUPPORT_BAR_WIDTH + 1];
        double frac = ctx->duration > 0 ? elapsed / ctx->duration : 1;
        int filled = frac >= 1 ? SUPPORT_BAR_WIDTH : (int)(frac * SUPPORT_BAR_WIDTH);
        for (int i = 0; i < SUPPORT_BAR_WIDTH; i++) bar[i] = i < filled ? '#' : '.';
        bar[SUPPORT_BAR_WIDTH] = '\0';
        fprintf(stderr, "\r\033[K%-20s [%s] %5.1f/%g s  %s ops  %s ops/s", ctx->scenario->name, bar,
                elapsed, ctx->duration, nops, rate);
        support_display_live = true;
    } else {
        fprintf(stderr, "  %s: %.1f/%g s, %s ops, %s ops/s\n", ctx->scenario->name, elapsed, ctx->duration,
                nops, rate);
    }
    pthread_mutex_unlock(&support_display_lock);
}

/* The monitor thread: each tick stops the scenario once its time is up, samples RSS and redraws. */
static void *support_monitor_main(void *arg) {
    stress_monitor *m = arg;
    stress_ctx *ctx = m->ctx;
    double last_plain = m->start;
    pthread_mutex_lock(&m->lock);
    while (!m->done) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(SUPPORT_TICK_S * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->wake, &m->lock, &until);
        if (m->done) break;
        double now = stress_now(), elapsed = now - m->start;
        if (elapsed >= ctx->duration) atomic_store_explicit(&ctx->stop, true, memory_order_relaxed);
        stress_timeline_add(stress_rss_sample(ctx));
        if (ctx->quiet) continue;
        if (m->tty || now - last_plain >= SUPPORT_PLAIN_EVERY_S) {
            support_monitor_draw(m, elapsed);
            last_plain = now;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

stress_monitor *stress_monitor_start(stress_ctx *ctx) {
    stress_monitor *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->ctx = ctx;
    m->tty = isatty(STDERR_FILENO);
    m->start = stress_now();
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&m->lock, NULL);
    stress_rss_sample(ctx);
    if (pthread_create(&m->tid, NULL, support_monitor_main, m) != 0) {
        pthread_cond_destroy(&m->wake);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
    }
    return m;
}

void stress_monitor_stop(stress_monitor *m) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->done = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->tid, NULL);
    stress_rss_sample(m->ctx);
    pthread_mutex_lock(&support_display_lock);
    if (support_display_live) fputs("\r\033[K", stderr);
    support_display_live = false;
    pthread_mutex_unlock(&support_display_lock);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

bool stress_start_baseline(stress_ctx *ctx, ouro_alloc_stats_t *base, const ouro_type_spec *spec, ouro_type **type) {
    if (ouro_fini() != 0) return stress_fail(ctx, "ouro_fini at the start: %s", ouro_err_message());
    ouro_alloc_collect();
    if (ouro_alloc_stats(base) != 0 || !(*type = ouro_type_new(spec)))
        return stress_fail(ctx, "set-up: %s", ouro_err_message());
    return true;
}

bool stress_expect_alloc_baseline(stress_worker *w, const ouro_alloc_stats_t *b) {
    stress_ctx *ctx = w->ctx;
    ouro_alloc_stats_t now;
    if (ouro_alloc_stats(&now) != 0) return stress_fail(ctx, "ouro_alloc_stats: %s", ouro_err_message());
    if (now.nclasses != b->nclasses)
        return stress_fail(ctx, "stats: %zu classes, %zu at the start", now.nclasses, b->nclasses);
    for (size_t i = 0; i < now.nclasses; i++)
        if (now.classes[i].blocks_in_use != b->classes[i].blocks_in_use)
            return stress_fail(ctx, "after collect: %zu blocks of %zu bytes in use, %zu at the start",
                               now.classes[i].blocks_in_use, now.classes[i].block_size, b->classes[i].blocks_in_use);
    if (now.large_blocks != b->large_blocks || now.large_bytes != b->large_bytes)
        return stress_fail(ctx, "after collect: %zu large blocks (%zu bytes), %zu (%zu bytes) at the start",
                           now.large_blocks, now.large_bytes, b->large_blocks, b->large_bytes);
    if (now.heaps != b->heaps)
        return stress_fail(ctx, "after collect: %zu live heaps, %zu at the start (%zu cached)", now.heaps,
                           b->heaps, now.heaps_cached);
    if (now.pools_abandoned > b->pools_abandoned)
        return stress_fail(ctx, "after collect: %zu pools still abandoned, %zu at the start", now.pools_abandoned,
                           b->pools_abandoned);
    stress_count_checks(w, now.nclasses + 3);
    return true;
}
