/* stress/soak.c — `ouro-stress --soak DURATION`: every scenario mixed for a long time, RSS, mapped bytes
 * and live objects sampled every second, and a verdict on their growth after warm-up.
 *
 * The main thread runs slices: rounds of the selected scenarios in an order shuffled from the seed, each
 * for --soak-slice seconds with a seed of its own (derived from the soak's seed and the slice's number),
 * through the runner's run of one scenario (its oracles, its FAIL line). A sampler thread, never attached
 * to ouro (every scenario starts with ouro_fini(), which refuses while a thread is attached, and an
 * attached thread that sleeps online would stall grace periods), takes a sample every second. After each
 * slice the main thread, unattached too (every scenario ends with ouro_fini()), takes a *slice-end*
 * sample: the scenario has returned everything it made, so what stays is what the process keeps.
 *
 * Verdict (docs/stress.md, "Soak"): over the slice-end samples of the second half (the first half is
 * warm-up), the least-squares line of RSS and of live objects may rise at most a bound across that
 * window; otherwise the soak fails with STRESS_SOAK_EXIT_GROWTH. The per-second samples swing with the
 * scenario running (alloc-drain holds 512 MiB for a moment): they go to the CSV and the compact line,
 * and their slope is printed for information only. */
#include "stress/stress.h"

#include <ouro.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SOAK_SAMPLE_EVERY_S 1.0
#define SOAK_PROGRESS_EVERY_S 10.0
#define SOAK_MIN_SLICES 6      /* --soak must hold this many slices: 3 or more slice ends to judge */
#define SOAK_TOP_TYPES 5       /* types named per sample in the CSV */
#define SOAK_MAX_TYPES 256     /* ouro_type_stats_all lists at most 255 */

/* The bounds: how much the fitted line may rise across the judged window. */
#define SOAK_RSS_RISE_FLOOR (16.0 * 1024 * 1024) /* bytes */
#define SOAK_RSS_RISE_FRACTION 0.25                /* of the window's mean RSS */
#define SOAK_LIVE_RISE_FLOOR 1000.0                /* objects */
#define SOAK_LIVE_RISE_FRACTION 0.10               /* of the window's mean live objects */

/* --soak-inject-leak: what the main thread leaks between slices, per second of the slice before. */
#define SOAK_LEAK_BYTES_PER_S (16u << 20)
#define SOAK_LEAK_BLOCK (64u << 10)
#define SOAK_LEAK_OBJECTS_PER_S 5000u

typedef enum soak_kind { SOAK_SAMPLE, SOAK_SLICE_END } soak_kind;

typedef struct soak_sample {
    double t; /* seconds since the soak started */
    soak_kind kind;
    size_t rss, mapped, live;
} soak_sample;

typedef struct soak_state {
    const stress_soak_config *c;
    double start;
    FILE *csv;

    /* Guards everything below: the sampler and the main thread both append samples and CSV rows. */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* signalled when done is set */
    bool done;
    soak_sample *samples;
    size_t nsamples, cap;
    bool out_of_memory;
    size_t slice;                    /* the slice running (its number from 1), 0 before the first */
    const stress_scenario *scenario; /* the scenario it runs */
    double last_progress;
} soak_state;

static ouro_type_stats_entry soak_types_sampler[SOAK_MAX_TYPES]; /* the sampler's (no lock needed) */
static ouro_type_stats_entry soak_types_main[SOAK_MAX_TYPES];    /* the main thread's */

double stress_parse_duration(const char *s) {
    char *end = NULL;
    double d = strtod(s, &end);
    if (end == s || !(d > 0)) return -1;
    double unit = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0                         ? 60
                : strcmp(end, "h") == 0                         ? 3600
                                                                : -1;
    return unit < 0 ? -1 : d * unit;
}

/* Takes one sample of kind at t; writes its CSV row and keeps it. types is the caller's own array. */
static void soak_take(soak_state *st, soak_kind kind, ouro_type_stats_entry *types) {
    soak_sample smp = { .kind = kind, .rss = stress_rss() };
    ouro_alloc_stats_t as;
    if (ouro_alloc_stats(&as) == 0) smp.mapped = as.bytes_mapped;
    size_t ntypes = ouro_type_stats_all(types, SOAK_MAX_TYPES);
    if (ntypes > SOAK_MAX_TYPES) ntypes = SOAK_MAX_TYPES;
    for (size_t i = 0; i < ntypes; i++) smp.live += types[i].stats.live;
    /* the top types by live objects: a partial selection sort of the first SOAK_TOP_TYPES */
    size_t ntop = ntypes < SOAK_TOP_TYPES ? ntypes : SOAK_TOP_TYPES;
    for (size_t i = 0; i < ntop; i++) {
        size_t best = i;
        for (size_t k = i + 1; k < ntypes; k++)
            if (types[k].stats.live > types[best].stats.live) best = k;
        ouro_type_stats_entry tmp = types[i];
        types[i] = types[best];
        types[best] = tmp;
    }
    stress_timeline_add(smp.rss);

    pthread_mutex_lock(&st->lock);
    smp.t = stress_now() - st->start;
    if (st->nsamples == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 1024;
        soak_sample *grown = realloc(st->samples, cap * sizeof *grown);
        if (grown) {
            st->samples = grown;
            st->cap = cap;
        } else {
            st->out_of_memory = true;
        }
    }
    if (st->nsamples < st->cap) st->samples[st->nsamples++] = smp;
    fprintf(st->csv, "%.3f,%s,%zu,%s,%zu,%zu,%zu,%zu,\"", smp.t, kind == SOAK_SAMPLE ? "sample" : "slice-end",
            st->slice, st->scenario ? st->scenario->name : "", smp.rss, smp.mapped, smp.live, ntypes);
    for (size_t i = 0; i < ntop && types[i].stats.live > 0; i++)
        fprintf(st->csv, "%s%s=%zu", i ? " " : "", types[i].name, types[i].stats.live);
    fputs("\"\n", st->csv);
    if (kind == SOAK_SAMPLE && !st->c->quiet && smp.t - st->last_progress >= SOAK_PROGRESS_EVERY_S) {
        char rss[32], mapped[32];
        fprintf(stderr, "  soak: %.0f/%g s, slice %zu (%s), RSS %s, mapped %s, %zu live objects\n", smp.t,
                st->c->duration, st->slice, st->scenario ? st->scenario->name : "-",
                stress_fmt_bytes(rss, sizeof rss, (double)smp.rss), stress_fmt_bytes(mapped, sizeof mapped, (double)smp.mapped),
                smp.live);
        st->last_progress = smp.t;
    }
    pthread_mutex_unlock(&st->lock);
}

/* The sampler thread: a sample every SOAK_SAMPLE_EVERY_S on a fixed schedule until done. */
static void *soak_sampler_main(void *arg) {
    soak_state *st = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&st->lock);
    while (!st->done) {
        next.tv_sec += (time_t)SOAK_SAMPLE_EVERY_S;
        while (!st->done && pthread_cond_timedwait(&st->wake, &st->lock, &next) != ETIMEDOUT) {
        }
        if (st->done) break;
        pthread_mutex_unlock(&st->lock);
        soak_take(st, SOAK_SAMPLE, soak_types_sampler);
        pthread_mutex_lock(&st->lock);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* --soak-inject-leak: the main thread attaches, leaks blocks (touched) and str objects in proportion to
 * the seconds of the slice before, and detaches (the next scenario's ouro_fini() needs it detached). */
static void soak_leak(double seconds) {
    if (ouro_thread_attach() != 0) return;
    size_t blocks = (size_t)(seconds * SOAK_LEAK_BYTES_PER_S / SOAK_LEAK_BLOCK) + 1;
    for (size_t i = 0; i < blocks; i++) {
        void *p = ouro_alloc(SOAK_LEAK_BLOCK);
        if (p) memset(p, 0xa5, SOAK_LEAK_BLOCK);
    }
    size_t objects = (size_t)(seconds * SOAK_LEAK_OBJECTS_PER_S) + 1;
    for (size_t i = 0; i < objects; i++) (void)ouro_str_from_format("soak-leak-%zu", i);
    ouro_thread_detach();
}

/* A least-squares fit of y over t for the chosen samples. */
typedef struct soak_fit {
    size_t n;
    double t0, t1;       /* the window */
    double mean, lo, hi; /* of y */
    double slope;        /* y per second */
} soak_fit;

/* Fits field (an offset into soak_sample) over the samples of kind with t >= from. */
static soak_fit soak_fit_of(const soak_state *st, soak_kind kind, double from, size_t field) {
    soak_fit f = { .lo = 1e300, .hi = -1e300 };
    double st_sum = 0, sy = 0;
    for (size_t i = 0; i < st->nsamples; i++) {
        const soak_sample *s = &st->samples[i];
        if (s->kind != kind || s->t < from) continue;
        double y = (double)*(const size_t *)((const char *)s + field);
        if (f.n == 0) f.t0 = s->t;
        f.t1 = s->t;
        f.n++;
        st_sum += s->t;
        sy += y;
        if (y < f.lo) f.lo = y;
        if (y > f.hi) f.hi = y;
    }
    if (f.n == 0) return f;
    double tm = st_sum / (double)f.n;
    f.mean = sy / (double)f.n;
    double sxy = 0, sxx = 0;
    for (size_t i = 0; i < st->nsamples; i++) {
        const soak_sample *s = &st->samples[i];
        if (s->kind != kind || s->t < from) continue;
        double y = (double)*(const size_t *)((const char *)s + field);
        sxy += (s->t - tm) * (y - f.mean);
        sxx += (s->t - tm) * (s->t - tm);
    }
    f.slope = sxx > 0 ? sxy / sxx : 0;
    return f;
}

/* Prints one metric's verdict; false when its rise is over the bound. */
static bool soak_judge(const stress_soak_config *c, const char *metric, const soak_fit *f, double floor_rise,
                       double fraction, bool bytes) {
    double window = f->t1 - f->t0;
    double rise = f->slope * window;
    double bound = floor_rise > fraction * f->mean ? floor_rise : fraction * f->mean;
    double per_hour = f->slope * 3600, bound_per_hour = window > 0 ? bound / window * 3600 : 0;
    const double mib = 1024.0 * 1024;
    bool ok = rise <= bound;
    if (bytes)
        printf("soak: %s at slice ends %.1f-%.1f MiB (mean %.1f): slope %+.1f MiB/h, rise %+.2f MiB over %.0f s; "
               "bound %.2f MiB (%.1f MiB/h) = max(%.0f MiB, %.0f%% of the mean): %s\n",
               metric, f->lo / mib, f->hi / mib, f->mean / mib, per_hour / mib, rise / mib, window, bound / mib,
               bound_per_hour / mib, floor_rise / mib, fraction * 100, ok ? "ok" : "FAIL");
    else
        printf("soak: %s at slice ends %.0f-%.0f (mean %.0f): slope %+.0f /h, rise %+.1f over %.0f s; "
               "bound %.0f (%.0f /h) = max(%.0f, %.0f%% of the mean): %s\n",
               metric, f->lo, f->hi, f->mean, per_hour, rise, window, bound, bound_per_hour, floor_rise,
               fraction * 100, ok ? "ok" : "FAIL");
    if (!ok)
        fprintf(stderr, "FAIL soak: %s kept growing after warm-up: slope %+.3g %s/h, a rise of %.3g %s over the "
                        "last %.0f s, bound %.3g %s — reproduce: ouro-stress --soak %g --soak-slice %g --seed %llu "
                        "--threads %u%s%s\n",
                metric, bytes ? per_hour / mib : per_hour, bytes ? "MiB" : "objects", bytes ? rise / mib : rise,
                bytes ? "MiB" : "objects", window, bytes ? bound / mib : bound, bytes ? "MiB" : "objects",
                c->duration, c->slice, (unsigned long long)c->seed, c->threads, c->short_run ? " --short" : "",
                c->inject_leak ? " --soak-inject-leak" : "");
    return ok;
}

int stress_soak(const stress_soak_config *c) {
    static soak_state st;
    st.c = c;
    if (c->duration < SOAK_MIN_SLICES * c->slice) {
        fprintf(stderr, "ouro-stress: --soak %g s holds fewer than %d slices of %g s (--soak-slice): too short to judge\n",
                c->duration, SOAK_MIN_SLICES, c->slice);
        return STRESS_SOAK_EXIT_SETUP;
    }
    st.csv = fopen(c->csv, "w");
    if (!st.csv) {
        fprintf(stderr, "ouro-stress: cannot write the soak's samples to %s: %s\n", c->csv, strerror(errno));
        return STRESS_SOAK_EXIT_SETUP;
    }
    fputs("t_s,kind,slice,scenario,rss_bytes,mapped_bytes,live_objects,types,top_types\n", st.csv);
    pthread_mutex_init(&st.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st.wake, &attr);
    pthread_condattr_destroy(&attr);
    printf("soak: %g s of %zu scenarios mixed, slices of %g s, %u threads%s, seed %llu; a sample every %g s to %s%s\n",
           c->duration, c->nscenarios, c->slice, c->threads, c->short_run ? ", short" : "",
           (unsigned long long)c->seed, SOAK_SAMPLE_EVERY_S, c->csv,
           c->inject_leak ? "; LEAKING ON PURPOSE (--soak-inject-leak)" : "");

    st.start = stress_now();
    soak_take(&st, SOAK_SLICE_END, soak_types_main); /* slice 0: before any scenario */
    pthread_t sampler;
    if (pthread_create(&sampler, NULL, soak_sampler_main, &st) != 0) {
        fprintf(stderr, "ouro-stress: cannot start the soak's sampler\n");
        return STRESS_SOAK_EXIT_SETUP;
    }

    /* Rounds of every scenario in a shuffled order, until the time is up. */
    const stress_scenario *order[64];
    size_t n = c->nscenarios < 64 ? c->nscenarios : 64, next = n;
    uint64_t round = 0;
    bool ok = true;
    size_t slice = 0;
    for (;;) {
        double left = c->duration - (stress_now() - st.start);
        if (left < 0.5) break;
        if (next == n) { /* a new round: Fisher-Yates from the round's own stream */
            stress_rng rng;
            stress_rng_seed(&rng, c->seed, "soak", round++);
            memcpy(order, c->scenarios, n * sizeof order[0]);
            for (size_t i = n - 1; i > 0; i--) {
                size_t k = (size_t)stress_rng_below(&rng, i + 1);
                const stress_scenario *tmp = order[i];
                order[i] = order[k];
                order[k] = tmp;
            }
            next = 0;
        }
        const stress_scenario *s = order[next++];
        double d = left < c->slice ? left : c->slice;
        pthread_mutex_lock(&st.lock);
        st.slice = ++slice;
        st.scenario = s;
        pthread_mutex_unlock(&st.lock);
        double t0 = stress_now();
        ok = c->run_slice(s, d, stress_mix64(c->seed ^ (slice * 0x9e3779b97f4a7c15ull)), c->arg);
        if (!ok) {
            fprintf(stderr, "  (slice %zu of the soak: ouro-stress --soak %g --soak-slice %g --seed %llu --threads %u%s)\n",
                    slice, c->duration, c->slice, (unsigned long long)c->seed, c->threads,
                    c->short_run ? " --short" : "");
            break;
        }
        if (c->inject_leak) soak_leak(stress_now() - t0);
        soak_take(&st, SOAK_SLICE_END, soak_types_main);
    }

    pthread_mutex_lock(&st.lock);
    st.done = true;
    pthread_cond_signal(&st.wake);
    pthread_mutex_unlock(&st.lock);
    pthread_join(sampler, NULL);
    double elapsed = stress_now() - st.start;
    bool wrote = fclose(st.csv) == 0;
    if (!ok) return 1;
    if (!wrote || st.out_of_memory) {
        fprintf(stderr, "ouro-stress: %s\n", !wrote ? "cannot finish writing the soak's CSV" : "out of memory for the soak's samples");
        return STRESS_SOAK_EXIT_SETUP;
    }

    /* The verdict: slice ends of the second half. */
    double from = elapsed / 2;
    soak_fit rss = soak_fit_of(&st, SOAK_SLICE_END, from, offsetof(soak_sample, rss));
    soak_fit live = soak_fit_of(&st, SOAK_SLICE_END, from, offsetof(soak_sample, live));
    soak_fit all = soak_fit_of(&st, SOAK_SAMPLE, from, offsetof(soak_sample, rss));
    soak_fit mapped = soak_fit_of(&st, SOAK_SLICE_END, from, offsetof(soak_sample, mapped));
    const double mib = 1024.0 * 1024;
    printf("soak: %.0f s, %zu slices in %llu rounds, %zu samples; judged: the %zu slice ends after %.0f s "
           "(the first half is warm-up)\n",
           elapsed, slice, (unsigned long long)round, st.nsamples, rss.n, from);
    if (rss.n < 3) {
        fprintf(stderr, "FAIL soak: only %zu slice ends in the second half (need 3): a slice overran — reproduce: "
                        "ouro-stress --soak %g --soak-slice %g --seed %llu --threads %u\n",
                rss.n, c->duration, c->slice, (unsigned long long)c->seed, c->threads);
        return STRESS_SOAK_EXIT_GROWTH;
    }
    printf("soak: every second (information, not judged): RSS %.1f-%.1f MiB, slope %+.1f MiB/h; mapped at slice "
           "ends %.1f-%.1f MiB, slope %+.1f MiB/h\n",
           all.lo / mib, all.hi / mib, all.slope * 3600 / mib, mapped.lo / mib, mapped.hi / mib,
           mapped.slope * 3600 / mib);
    bool rss_ok = soak_judge(c, "RSS", &rss, SOAK_RSS_RISE_FLOOR, SOAK_RSS_RISE_FRACTION, true);
    bool live_ok = soak_judge(c, "live objects", &live, SOAK_LIVE_RISE_FLOOR, SOAK_LIVE_RISE_FRACTION, false);
    free(st.samples);
    return rss_ok && live_ok ? 0 : STRESS_SOAK_EXIT_GROWTH;
}
