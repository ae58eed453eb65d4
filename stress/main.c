/* stress/main.c — ouro-stress, the scenario runner.
 *
 *   ouro-stress [--list] [--scenario NAME]... [--threads N] [--duration SECONDS] [--seed N]
 *               [--json FILE] [--short] [--quiet]
 *               [--soak DURATION [--soak-slice SECONDS] [--soak-csv FILE] [--soak-inject-leak]]
 *
 * Runs each selected scenario (all by default) for --duration seconds with a progress line on stderr,
 * then prints a summary table and the RSS-over-time line on stdout (the table also as JSON with --json).
 * A failed oracle prints
 *   FAIL <scenario>: <what> — reproduce: ouro-stress --scenario <name> --seed <seed> ...
 * on stderr and makes the exit status 1. A fatal event inside ouro (a corrupted canary, a double free)
 * or a crash prints the same line, without the summary, before the process dies.
 *
 * Durations: a --duration given is what every selected scenario runs, however long the run gets. Without
 * it, a run of every scenario takes RUNNER_BUDGET_S in all (each scenario budget / scenarios, at most
 * RUNNER_DEFAULT_DURATION), and a chosen one (--scenario) RUNNER_DEFAULT_DURATION; the first line says
 * what each scenario gets and the planned total.
 *
 * --soak mixes the selected scenarios in slices for DURATION and judges the growth of RSS and live
 * objects after warm-up (stress/soak.c). */
#include "stress/json.h"
#include "stress/stress.h"

#include <ouro.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The modules' scenario arrays, in the order a full run takes them. */
static const stress_scenario *const runner_modules[] = {
    stress_alloc_scenarios,
    stress_threads_scenarios,
    stress_object_scenarios,
    stress_container_scenarios,
    stress_gc_scenarios,
    stress_lifecycle_scenarios,
};

#define RUNNER_BUDGET_S 120.0      /* seconds a run of every scenario takes without --duration */
#define RUNNER_DEFAULT_THREADS 4
#define RUNNER_SHORT_THREADS 2
#define RUNNER_DEFAULT_DURATION 20.0
#define RUNNER_MAX_SCENARIOS 64
#define RUNNER_SOAK_SLICE 4.0      /* seconds per slice of a soak */
#define RUNNER_SOAK_CSV "ouro-soak.csv"

typedef struct runner_options {
    const stress_scenario *selected[RUNNER_MAX_SCENARIOS];
    size_t nselected;
    bool explicit_selection; /* --scenario given: durations are taken as they are */
    bool list;
    unsigned threads;
    double duration;
    bool duration_given; /* --duration: honoured as given */
    double soak;         /* --soak: seconds, 0 for a plain run */
    double soak_slice;
    const char *soak_csv;
    bool soak_inject_leak;
    uint64_t seed;
    const char *json;
    bool short_run;
    bool quiet;
} runner_options;

/* One summary row. */
typedef struct runner_row {
    const stress_scenario *scenario;
    unsigned threads;
    uint64_t seed;
    unsigned runs; /* slices of a soak; 1 otherwise */
    uint64_t ops;
    double seconds;
    size_t peak_rss;
    uint64_t checks;
    bool ok;
    char message[STRESS_MESSAGE_MAX];
} runner_row;

/* ---- fatal events: print the reproduce line before dying ---------------------------------------- */

/* The scenario running now, for the fatal and signal handlers; set before its threads start
 * (pthread_create orders the store before any worker can fail), cleared after they are joined. */
static stress_ctx *_Atomic runner_current;
/* Whether a handler already printed the reproduce line (an ouro fatal event then aborts). */
static atomic_flag runner_fatal_printed = ATOMIC_FLAG_INIT;

/* Writes s to stderr with write(2): safe in a signal handler and inside ouro's fatal path. */
static void runner_write(const char *s) {
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n <= 0) return;
        s += n;
        len -= (size_t)n;
    }
}

/* Prints "FAIL <scenario>: <what><detail> — reproduce: ..." once, without allocating. */
static void runner_print_fatal(const char *what, const char *detail) {
    stress_ctx *ctx = atomic_load_explicit(&runner_current, memory_order_relaxed);
    if (atomic_flag_test_and_set(&runner_fatal_printed)) return;
    runner_write("\nFAIL ");
    runner_write(ctx ? ctx->scenario->name : "(between scenarios)");
    runner_write(": ");
    runner_write(what);
    runner_write(detail);
    if (ctx) {
        runner_write(" — reproduce: ");
        runner_write(ctx->repro);
    }
    runner_write("\n");
}

/* ouro's fatal handler: ouro aborts when it returns. */
static void runner_on_ouro_fatal(const char *message, void *arg) {
    runner_print_fatal("ouro fatal: ", message);
}

static const int runner_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
static struct sigaction runner_old_actions[sizeof runner_signals / sizeof runner_signals[0]];

/* Crash handler: prints the reproduce line, puts back the previous handler (a sanitizer's, or the
 * default) and returns, so a fault re-executes into it and abort() re-raises into it. */
static void runner_on_signal(int sig) {
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGILL ? "SIGILL"
                     : sig == SIGFPE ? "SIGFPE" : "SIGABRT";
    runner_print_fatal("killed by ", name);
    for (size_t i = 0; i < sizeof runner_signals / sizeof runner_signals[0]; i++)
        if (runner_signals[i] == sig) sigaction(sig, &runner_old_actions[i], NULL);
}

/* Installs ouro's fatal handler and the crash handlers. */
static void runner_install_handlers(void) {
    ouro_set_fatal_handler(runner_on_ouro_fatal, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = runner_on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof runner_signals / sizeof runner_signals[0]; i++)
        sigaction(runner_signals[i], &sa, &runner_old_actions[i]);
}

/* ---- options ------------------------------------------------------------------------------------ */

/* Prints the usage on f. */
static void runner_usage(FILE *f) {
    fprintf(f, "usage: ouro-stress [--list] [--scenario NAME]... [--threads N] [--duration SECONDS]\n"
               "                   [--seed N] [--json FILE] [--short] [--quiet]\n"
               "                   [--soak DURATION [--soak-slice SECONDS] [--soak-csv FILE] [--soak-inject-leak]]\n"
               "  defaults: every scenario, %d threads (%d with --short), seed from the clock (always printed);\n"
               "  without --duration a run of every scenario takes %g s in all (%g s each at most), a chosen\n"
               "  scenario %g s; a --duration given is what each scenario runs, however long the total.\n"
               "  --soak DURATION (90s, 2m, 1h or seconds): the scenarios mixed in slices of --soak-slice s\n"
               "  (default %g), RSS, mapped bytes and live objects sampled every second to --soak-csv (default\n"
               "  %s); fails (status %d) when RSS or live objects keep growing after warm-up.\n"
               "  --soak-inject-leak leaks on purpose between slices: the soak must fail (the detector's test)\n",
            RUNNER_DEFAULT_THREADS, RUNNER_SHORT_THREADS, RUNNER_BUDGET_S, RUNNER_DEFAULT_DURATION,
            RUNNER_DEFAULT_DURATION, RUNNER_SOAK_SLICE, RUNNER_SOAK_CSV, STRESS_SOAK_EXIT_GROWTH);
}

/* Every registered scenario, module by module, in a full run's order. */
static const stress_scenario *runner_all[RUNNER_MAX_SCENARIOS];
static size_t runner_nall;

/* Fills runner_all from runner_modules. */
static void runner_register(void) {
    for (size_t m = 0; m < sizeof runner_modules / sizeof runner_modules[0]; m++)
        for (const stress_scenario *s = runner_modules[m]; s->name && runner_nall < RUNNER_MAX_SCENARIOS; s++)
            runner_all[runner_nall++] = s;
}

/* The scenario called name, NULL when none is. */
static const stress_scenario *runner_find(const char *name) {
    for (size_t i = 0; i < runner_nall; i++)
        if (strcmp(runner_all[i]->name, name) == 0) return runner_all[i];
    return NULL;
}

/* The value after argv[*i], or exits with a usage error. */
static const char *runner_arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "ouro-stress: %s needs a value\n", argv[*i]);
        runner_usage(stderr);
        exit(2);
    }
    return argv[++*i];
}

/* Exits with a usage error naming opt and the bad value s. */
static void runner_bad_number(const char *opt, const char *s) {
    fprintf(stderr, "ouro-stress: %s: not a valid number: %s\n", opt, s);
    exit(2);
}

/* An unsigned integer (base 0: 0x… works), or exits with a usage error. */
static uint64_t runner_parse_u64(const char *opt, const char *s) {
    char *end = NULL;
    uint64_t u = strtoull(s, &end, 0);
    if (end == s || *end != '\0' || s[0] == '-') runner_bad_number(opt, s);
    return u;
}

/* A positive number of seconds, or exits with a usage error. */
static double runner_parse_seconds(const char *opt, const char *s) {
    char *end = NULL;
    double d = strtod(s, &end);
    if (end == s || *end != '\0' || !(d > 0)) runner_bad_number(opt, s);
    return d;
}

/* Parses argv into o; exits on --help and on errors. */
static void runner_parse(int argc, char **argv, runner_options *o) {
    bool threads_given = false, seed_given = false;
    o->duration = RUNNER_DEFAULT_DURATION;
    o->soak_slice = RUNNER_SOAK_SLICE;
    o->soak_csv = RUNNER_SOAK_CSV;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--list") == 0) {
            o->list = true;
        } else if (strcmp(a, "--short") == 0) {
            o->short_run = true;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "--scenario") == 0) {
            const char *name = runner_arg_value(argc, argv, &i);
            const stress_scenario *s = runner_find(name);
            if (!s) {
                fprintf(stderr, "ouro-stress: no scenario named %s; --list shows them\n", name);
                exit(2);
            }
            bool dup = false;
            for (size_t k = 0; k < o->nselected; k++) dup |= o->selected[k] == s;
            if (!dup && o->nselected < RUNNER_MAX_SCENARIOS) o->selected[o->nselected++] = s;
            o->explicit_selection = true;
        } else if (strcmp(a, "--threads") == 0) {
            uint64_t u = runner_parse_u64(a, runner_arg_value(argc, argv, &i));
            if (u < 1 || u > STRESS_MAX_THREADS) {
                fprintf(stderr, "ouro-stress: --threads must be 1..%d\n", STRESS_MAX_THREADS);
                exit(2);
            }
            o->threads = (unsigned)u;
            threads_given = true;
        } else if (strcmp(a, "--duration") == 0) {
            o->duration = runner_parse_seconds(a, runner_arg_value(argc, argv, &i));
            o->duration_given = true;
        } else if (strcmp(a, "--soak") == 0) {
            const char *v = runner_arg_value(argc, argv, &i);
            o->soak = stress_parse_duration(v);
            if (o->soak < 0) {
                fprintf(stderr, "ouro-stress: --soak: not a duration (90s, 2m, 1h or seconds): %s\n", v);
                exit(2);
            }
        } else if (strcmp(a, "--soak-slice") == 0) {
            o->soak_slice = runner_parse_seconds(a, runner_arg_value(argc, argv, &i));
        } else if (strcmp(a, "--soak-csv") == 0) {
            o->soak_csv = runner_arg_value(argc, argv, &i);
        } else if (strcmp(a, "--soak-inject-leak") == 0) {
            o->soak_inject_leak = true;
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = runner_parse_u64(a, runner_arg_value(argc, argv, &i));
            seed_given = true;
        } else if (strcmp(a, "--json") == 0) {
            o->json = runner_arg_value(argc, argv, &i);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            runner_usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "ouro-stress: unknown option %s\n", a);
            runner_usage(stderr);
            exit(2);
        }
    }
    if (!threads_given) o->threads = o->short_run ? RUNNER_SHORT_THREADS : RUNNER_DEFAULT_THREADS;
    if (!seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = stress_mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
    }
    if (!o->explicit_selection) {
        memcpy(o->selected, runner_all, runner_nall * sizeof runner_all[0]);
        o->nselected = runner_nall;
    }
    if (!o->duration_given && !o->explicit_selection && RUNNER_BUDGET_S / (double)o->nselected < o->duration)
        o->duration = RUNNER_BUDGET_S / (double)o->nselected;
    if (o->soak > 0 && o->duration_given) {
        fprintf(stderr, "ouro-stress: --soak and --duration: a soak's scenarios run in slices of --soak-slice\n");
        exit(2);
    }
}

/* ---- running ------------------------------------------------------------------------------------ */

/* Runs one scenario for duration seconds with seed and fills row; prints the FAIL line when an oracle
 * failed. */
static void runner_run_one(const runner_options *o, const stress_scenario *s, double duration, uint64_t seed,
                           runner_row *row) {
    stress_ctx *ctx = aligned_alloc(_Alignof(stress_ctx), (sizeof(stress_ctx) + 63) / 64 * 64);
    if (!ctx) {
        fprintf(stderr, "ouro-stress: out of memory\n");
        exit(2);
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->scenario = s;
    ctx->threads = o->threads;
    ctx->duration = duration;
    ctx->seed = seed;
    ctx->short_run = o->short_run;
    ctx->quiet = o->quiet || o->soak > 0; /* a soak prints its own progress */
    atomic_init(&ctx->stop, false);
    atomic_init(&ctx->failed, false);
    atomic_init(&ctx->peak_rss, 0);
    snprintf(ctx->repro, sizeof ctx->repro, "ouro-stress --scenario %s --seed %llu --threads %u --duration %g%s",
             s->name, (unsigned long long)seed, o->threads, duration, o->short_run ? " --short" : "");

    atomic_store_explicit(&runner_current, ctx, memory_order_relaxed);
    stress_monitor *m = stress_monitor_start(ctx);
    if (!m) {
        fprintf(stderr, "ouro-stress: cannot start the progress monitor\n");
        exit(2);
    }
    double start = stress_now();
    bool ok = s->run(ctx);
    double seconds = stress_now() - start;
    stress_monitor_stop(m);
    atomic_store_explicit(&runner_current, NULL, memory_order_relaxed);

    if (!ok && !stress_failed(ctx)) stress_fail(ctx, "scenario returned failure without a message");
    *row = (runner_row){
        .scenario = s,
        .threads = o->threads,
        .seed = seed,
        .runs = 1,
        .seconds = seconds,
        .peak_rss = atomic_load_explicit(&ctx->peak_rss, memory_order_relaxed),
        .ok = !stress_failed(ctx),
    };
    stress_totals(ctx, &row->ops, &row->checks);
    if (!row->ok) {
        snprintf(row->message, sizeof row->message, "%s", ctx->message);
        fprintf(stderr, "FAIL %s: %s — reproduce: %s\n", s->name, ctx->message, ctx->repro);
    }
    free(ctx);
}

/* Prints the summary table on stdout; a soak's has a column of slices (runs) and its seed is the soak's. */
static void runner_print_summary(const runner_row *rows, size_t n, bool soak) {
    printf("\n%-20s %7s%s %20s %12s %12s %10s %12s  %s\n", "scenario", "threads", soak ? "  runs" : "", "seed", "ops",
           "ops/s", "peak RSS", "checks", "result");
    for (size_t i = 0; i < n; i++) {
        const runner_row *r = &rows[i];
        char rss[32], runs[16] = "";
        if (soak) snprintf(runs, sizeof runs, " %5u", r->runs);
        printf("%-20s %7u%s %20llu %12llu %12.0f %10s %12llu  %s\n", r->scenario->name, r->threads, runs,
               (unsigned long long)r->seed, (unsigned long long)r->ops,
               r->seconds > 0 ? (double)r->ops / r->seconds : 0.0,
               stress_fmt_bytes(rss, sizeof rss, (double)r->peak_rss), (unsigned long long)r->checks,
               r->ok ? "ok" : "FAIL");
    }
}


/* Writes the summary rows to path as JSON; false when the file cannot be written. */
static bool runner_write_json(const char *path, const runner_options *o, const runner_row *rows, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "{\"seed\": %llu, \"threads\": %u, \"duration\": %g, \"soak\": %g, \"short\": %s, \"rows\": [\n",
            (unsigned long long)o->seed, o->threads, o->soak > 0 ? o->soak_slice : o->duration, o->soak,
            o->short_run ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        const runner_row *r = &rows[i];
        fputs("  {\"scenario\": ", f);
        json_write_string(f, r->scenario->name);
        fprintf(f, ", \"threads\": %u, \"seed\": %llu, \"runs\": %u, \"ops\": %llu, \"seconds\": %.3f, \"ops_per_s\": %.1f, "
                   "\"peak_rss_bytes\": %zu, \"checks\": %llu, \"result\": \"%s\", \"message\": ",
                r->threads, (unsigned long long)r->seed, r->runs, (unsigned long long)r->ops, r->seconds,
                r->seconds > 0 ? (double)r->ops / r->seconds : 0.0, r->peak_rss, (unsigned long long)r->checks,
                r->ok ? "ok" : "FAIL");
        json_write_string(f, r->message);
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fputs("]}\n", f);
    return fclose(f) == 0;
}

/* ---- soak --------------------------------------------------------------------------------------- */

typedef struct runner_soak_arg {
    const runner_options *o;
    runner_row *rows; /* one per selected scenario, summed over its slices */
} runner_soak_arg;

/* A soak's slice: runs s and adds its row to s's. */
static bool runner_soak_slice(const stress_scenario *s, double duration, uint64_t seed, void *arg) {
    runner_soak_arg *a = arg;
    size_t i = 0;
    while (a->o->selected[i] != s) i++;
    runner_row one, *r = &a->rows[i];
    runner_run_one(a->o, s, duration, seed, &one);
    if (r->runs == 0) {
        *r = one;
        r->seed = a->o->seed;
        return one.ok;
    }
    r->runs++;
    r->ops += one.ops;
    r->checks += one.checks;
    r->seconds += one.seconds;
    if (one.peak_rss > r->peak_rss) r->peak_rss = one.peak_rss;
    if (!one.ok) {
        r->ok = false;
        memcpy(r->message, one.message, sizeof r->message);
    }
    return one.ok;
}

/* Runs the soak of o's scenarios; fills rows (scenarios that got no slice keep runs 0). */
static int runner_soak(const runner_options *o, runner_row *rows) {
    runner_soak_arg arg = { .o = o, .rows = rows };
    for (size_t i = 0; i < o->nselected; i++)
        rows[i] = (runner_row){ .scenario = o->selected[i], .threads = o->threads, .seed = o->seed, .ok = true };
    stress_soak_config c = {
        .scenarios = o->selected,
        .nscenarios = o->nselected,
        .duration = o->soak,
        .slice = o->soak_slice,
        .seed = o->seed,
        .threads = o->threads,
        .short_run = o->short_run,
        .quiet = o->quiet,
        .inject_leak = o->soak_inject_leak,
        .csv = o->soak_csv,
        .run_slice = runner_soak_slice,
        .arg = &arg,
    };
    return stress_soak(&c);
}

int main(int argc, char **argv) {
    static runner_options o;
    runner_register();
    runner_parse(argc, argv, &o);
    if (o.list) {
        for (size_t i = 0; i < runner_nall; i++) printf("%-20s %s\n", runner_all[i]->name, runner_all[i]->description);
        return 0;
    }
    if (ouro_config_check() != 0) {
        fprintf(stderr, "ouro-stress: %s\n", ouro_err_message());
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    runner_install_handlers();
    static runner_row rows[RUNNER_MAX_SCENARIOS];
    int status;
    if (o.soak > 0) {
        status = runner_soak(&o, rows);
    } else {
        printf("ouro-stress: %zu scenario%s, %u threads, %g s each (%s), about %.0f s in all%s, seed %llu\n",
               o.nselected, o.nselected == 1 ? "" : "s", o.threads, o.duration,
               o.duration_given ? "--duration" : o.explicit_selection ? "the default" : "the default: 120 s in all",
               o.duration * (double)o.nselected, o.short_run ? ", short" : "", (unsigned long long)o.seed);
        bool all_ok = true;
        for (size_t i = 0; i < o.nselected; i++) {
            runner_run_one(&o, o.selected[i], o.duration, o.seed, &rows[i]);
            all_ok &= rows[i].ok;
        }
        status = all_ok ? 0 : 1;
    }
    runner_print_summary(rows, o.nselected, o.soak > 0);
    stress_timeline_print(stdout);
    if (o.json && !runner_write_json(o.json, &o, rows, o.nselected)) {
        fprintf(stderr, "ouro-stress: cannot write %s\n", o.json);
        return 2;
    }
    return status;
}
