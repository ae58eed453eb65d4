/* bench/main.c — ouro-bench, the side-by-side benchmark driver.
 *
 *     ouro-bench [--suite NAME]... [--case NAME]... [--quick] [--reps N] [--json FILE] [--list]
 *
 * Every suite runs by default. For each case the driver measures ouro and each other subject of the
 * suite that the case runs for (bench_case.subjects) in turns — rep 1 of every subject, then rep 2, … —
 * so that a drift of the machine (clock, other load) falls on all subjects alike, then prints the
 * medians and the ratios ouro/peer and appends one JSON record per (suite, case, subject, metric). A
 * sized case (bench_case.sized) is first timed in ouro's child to choose one op count for every subject.
 *
 * Each (case, subject, rep) runs in a child process of its own, so that peers never mix and peak RSS
 * is one subject's: fork, then exec of /proc/self/exe in the hidden mode
 *
 *     ouro-bench --child SUITE CASE SUBJECT (--ops N | --calibrate) [--quick]
 *
 * with LD_PRELOAD naming the peer's library (cleared for ouro and glibc). The child first checks that
 * malloc really is the subject's, then answers on its stdout, a pipe, in lines:
 *
 *     metric NAME VALUE    one of the case's metrics (bench_report)
 *     note TEXT            a remark for the table (bench_note)
 *     ops N                --calibrate: the op count for one measurement of the target time
 *
 * and ends with status 0. Any other line, a missing metric, a signal or a status other than 0 fails
 * that subject for that case (the run goes on; ouro-bench then exits 1). */
#include "stress/json.h"
#include "bench.h"

#include <ouro.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    DEFAULT_REPS = 7,
    QUICK_REPS = 3,
    MAX_NAMES = 64,        /* --suite and --case arguments */
    MAX_NOTES = 4,         /* notes kept per child */
    NOTE_LEN = 160,
    WHY_LEN = 256,
    CHILD_TIMEOUT_S = 300, /* a child still running after this is killed (SIGALRM) */
};

/* The time one measurement of a sized case should take, in seconds. */
#define TARGET_S 0.2
#define QUICK_TARGET_S 0.05

/* Where peer libraries are looked for, in order. */
static const char *const lib_dirs[] = {
#if defined(__x86_64__)
    "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
#elif defined(__aarch64__)
    "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
#endif
    "/usr/local/lib", "/usr/lib64", "/usr/lib",
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

#define BENCH_SUITE_ENTRY(name) &bench_suite_##name,
static const bench_suite *const all_suites[] = { BENCH_SUITES(BENCH_SUITE_ENTRY) };
#undef BENCH_SUITE_ENTRY
#define NSUITES COUNT_OF(all_suites)

/* ==== services to the cases (bench.h) ============================================================ */

/* The measurement this child process runs; set by child_main() before the case runs. */
static const bench_run *child_current;

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The last ns_per_op reported while silent: what child_calibrate() sizes a case by. */
static double child_silent_ns_per_op;

void bench_report(const bench_run *r, const char *metric, double value)
{
    if (r->silent) {
        if (strcmp(metric, "ns_per_op") == 0) child_silent_ns_per_op = value;
        return;
    }
    printf("metric %s %.17g\n", metric, value);
    fflush(stdout);
}

void bench_note(const bench_run *r, const char *fmt, ...)
{
    if (r->silent) return;
    char text[NOTE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\n') *p = ' ';
    printf("note %s\n", text);
    fflush(stdout);
}

_Noreturn void bench_fail(const char *fmt, ...)
{
    const bench_run *r = child_current;
    fprintf(stderr, "ouro-bench: %s/%s/%s: ", r ? r->suite->name : "?", r ? r->bcase->name : "?",
            r ? r->subject->name : "?");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* Reads a small /proc file into buf (NUL-terminated) without allocating. Returns its length. */
static size_t proc_read(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) bench_fail("cannot open %s: %s", path, strerror(errno));
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return got;
}

size_t bench_rss_bytes(void)
{
    char buf[128];
    proc_read("/proc/self/statm", buf, sizeof buf);
    unsigned long size = 0, resident = 0;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2) bench_fail("cannot parse /proc/self/statm");
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t bench_peak_rss_bytes(void)
{
    char buf[8192];
    proc_read("/proc/self/status", buf, sizeof buf);
    const char *line = strstr(buf, "\nVmHWM:");
    unsigned long kib = 0;
    if (!line || sscanf(line + 7, "%lu", &kib) != 1) bench_fail("no VmHWM in /proc/self/status");
    return (size_t)kib * 1024u;
}

pthread_t bench_thread_start(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int err = pthread_create(&t, NULL, fn, arg);
    if (err) bench_fail("pthread_create: %s", strerror(err));
    return t;
}

void bench_thread_join(pthread_t thread)
{
    int err = pthread_join(thread, NULL);
    if (err) bench_fail("pthread_join: %s", strerror(err));
}

/* Copies src into dst[0..len), cut short to fit (always NUL-terminated). */
static void text_copy(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ==== lookup ====================================================================================== */

static const bench_suite *suite_find(const char *name)
{
    for (size_t i = 0; i < NSUITES; i++)
        if (strcmp(all_suites[i]->name, name) == 0) return all_suites[i];
    return NULL;
}

static const bench_case *case_find(const bench_suite *s, const char *name)
{
    for (size_t i = 0; i < s->ncases; i++)
        if (strcmp(s->cases[i].name, name) == 0) return &s->cases[i];
    return NULL;
}

static size_t case_nmetrics(const bench_case *c)
{
    size_t n = 0;
    while (n < BENCH_MAX_METRICS && c->metrics[n]) n++;
    return n;
}

/* 1 when case c of suite s runs for s->subjects[i] (bench_case.subjects, bench_subject.only). */
static int case_runs_subject(const bench_suite *s, const bench_case *c, size_t i)
{
    if (c->subjects != 0 && (c->subjects & BENCH_SUBJECT_BIT(i)) == 0) return 0;
    const char *only = s->subjects[i].only;
    if (!only) return 1;
    size_t n = strlen(c->name);
    for (const char *w = strstr(only, c->name); w; w = strstr(w + 1, c->name))
        if ((w == only || w[-1] == ' ') && (w[n] == ' ' || w[n] == '\0')) return 1;
    return 0;
}

/* ==== child mode ================================================================================== */

/* Fails unless malloc in this process is the subject's: a peer's library must define both the probe
 * symbol and the malloc that the program binds to; for the others malloc must be glibc's own. */
static void child_check_malloc(const bench_subject *s)
{
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    const char *from = m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "(unknown)";
    if (s->preload) {
        const char *base = strrchr(s->preload, '/') ? strrchr(s->preload, '/') + 1 : s->preload;
        if (s->probe && !dlsym(RTLD_DEFAULT, s->probe))
            bench_fail("LD_PRELOAD did not take effect: no symbol %s (LD_PRELOAD=%s)", s->probe,
                       getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
        if (!strstr(from, base)) bench_fail("malloc comes from %s, not from %s", from, base);
    } else if (!strstr(from, "libc.so")) {
        bench_fail("malloc comes from %s, not from glibc (a stray LD_PRELOAD?)", from);
    }
}

/* Runs the sized case (silently) at growing op counts until its timed part — ops x its ns_per_op, or
 * the whole run when it reports none — takes an eighth of the target, then scales the count to the
 * target, rounded to thousands. */
static uint64_t child_calibrate(bench_run *r, double target_s)
{
    r->silent = 1;
    uint64_t ops = r->bcase->sized;
    for (;;) {
        r->ops = ops;
        child_silent_ns_per_op = 0;
        uint64_t t0 = bench_now_ns();
        r->bcase->run(r);
        double secs = child_silent_ns_per_op > 0 ? child_silent_ns_per_op * (double)ops * 1e-9
                                                 : (double)(bench_now_ns() - t0) * 1e-9;
        if (secs >= target_s / 8 || ops > (UINT64_MAX >> 8)) {
            double want = (double)ops * target_s / (secs > 1e-9 ? secs : 1e-9);
            uint64_t n = (uint64_t)(want / 1000.0 + 0.5) * 1000u;
            return n < 1000 ? 1000 : n;
        }
        ops *= 4;
    }
}

/* The hidden --child mode: argv = ouro-bench --child SUITE CASE SUBJECT (--ops N | --calibrate)
 * [--quick]. Returns the exit status. */
static int child_main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "ouro-bench: --child needs SUITE CASE SUBJECT\n");
        return 2;
    }
    const bench_suite *s = suite_find(argv[2]);
    const bench_case *c = s ? case_find(s, argv[3]) : NULL;
    size_t si = 0;
    while (s && si < s->nsubjects && strcmp(s->subjects[si].name, argv[4]) != 0) si++;
    if (!c || si == s->nsubjects || !case_runs_subject(s, c, si)) {
        fprintf(stderr, "ouro-bench: --child: no %s/%s/%s\n", argv[2], argv[3], argv[4]);
        return 2;
    }
    bench_run r = { .suite = s, .bcase = c, .subject = &s->subjects[si], .subject_index = si };
    int calibrate = 0;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) r.quick = 1;
        else if (strcmp(argv[i], "--calibrate") == 0) calibrate = 1;
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) r.ops = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "ouro-bench: --child: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    child_current = &r;
    child_check_malloc(r.subject);
    alarm(CHILD_TIMEOUT_S);
    if (calibrate) {
        uint64_t ops = child_calibrate(&r, r.quick ? QUICK_TARGET_S : TARGET_S);
        printf("ops %llu\n", (unsigned long long)ops);
    } else {
        c->run(&r);
    }
    fflush(stdout);
    return 0;
}

/* ==== parent: subjects and child processes ======================================================== */

/* A subject of the suite being run, as the parent sees it. */
typedef struct subject_slot {
    const bench_subject *subject;
    char exe[PATH_MAX];     /* the executable that runs its children */
    char preload[PATH_MAX]; /* the library's path; "" when nothing is preloaded */
    int available;          /* 0: its library is missing, the subject is skipped */
} subject_slot;

/* Finds the subject's library in lib_dirs. */
static void subject_resolve(const bench_subject *s, subject_slot *slot)
{
    slot->subject = s;
    slot->preload[0] = '\0';
    slot->available = 1;
    snprintf(slot->exe, sizeof slot->exe, "/proc/self/exe");
    char self[PATH_MAX]; /* the driver's folder */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    if (s->exe) {
        snprintf(slot->exe, sizeof slot->exe, "%s/%s", self, s->exe);
        slot->available = access(slot->exe, X_OK) == 0;
    }
    if (!s->preload) return;
    if (strchr(s->preload, '/')) { /* relative to the driver's folder */
        snprintf(slot->preload, sizeof slot->preload, "%s/%s", self, s->preload);
        if (access(slot->preload, R_OK) == 0) return;
        slot->preload[0] = '\0';
        slot->available = 0;
        return;
    }
    for (size_t i = 0; i < COUNT_OF(lib_dirs); i++) {
        snprintf(slot->preload, sizeof slot->preload, "%s/%s", lib_dirs[i], s->preload);
        if (access(slot->preload, R_OK) == 0) return;
    }
    slot->preload[0] = '\0';
    slot->available = 0;
}

/* What one child reported. */
typedef struct child_result {
    double value[BENCH_MAX_METRICS]; /* in the order of the case's metrics */
    uint64_t ops;                    /* --calibrate's answer */
    char note[MAX_NOTES][NOTE_LEN];
    size_t nnotes;
} child_result;

/* Parses one line of a child's output into out. Returns 0, or -1 with why set. */
static int child_parse_line(const bench_case *c, char *line, unsigned *have, child_result *out, char *why)
{
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "note ", 5) == 0) {
        if (out->nnotes < MAX_NOTES) text_copy(out->note[out->nnotes++], NOTE_LEN, line + 5);
        return 0;
    }
    if (strncmp(line, "ops ", 4) == 0) {
        out->ops = strtoull(line + 4, NULL, 10);
        return 0;
    }
    char name[64];
    double v;
    if (sscanf(line, "metric %63s %lf", name, &v) == 2) {
        for (size_t m = 0; m < case_nmetrics(c); m++) {
            if (strcmp(c->metrics[m], name) != 0) continue;
            if (*have & (1u << m)) break;
            *have |= 1u << m;
            out->value[m] = v;
            return 0;
        }
        snprintf(why, WHY_LEN, "unexpected or repeated metric '%s'", name);
        return -1;
    }
    snprintf(why, WHY_LEN, "unexpected output: '%.80s'", line);
    return -1;
}

/* Runs case c of suite s for one subject in a child process and collects what it reports: with
 * calibrate set, the op count for one measurement (out->ops); otherwise every metric of the case for
 * `ops` ops. Returns 0, or -1 with why set (the child's own stderr has gone to ours). */
static int child_spawn(const bench_suite *s, const bench_case *c, const subject_slot *slot, uint64_t ops,
                       int calibrate, int quick, child_result *out, char *why)
{
    char ops_arg[32];
    snprintf(ops_arg, sizeof ops_arg, "%llu", (unsigned long long)ops);
    char *argv[10];
    size_t argc = 0;
    argv[argc++] = "ouro-bench";
    argv[argc++] = "--child";
    argv[argc++] = (char *)s->name;
    argv[argc++] = (char *)c->name;
    argv[argc++] = (char *)slot->subject->name;
    if (calibrate) argv[argc++] = "--calibrate";
    else {
        argv[argc++] = "--ops";
        argv[argc++] = ops_arg;
    }
    if (quick) argv[argc++] = "--quick";
    argv[argc] = NULL;

    memset(out, 0, sizeof *out);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(why, WHY_LEN, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, WHY_LEN, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(127);
        if (slot->preload[0]) setenv("LD_PRELOAD", slot->preload, 1);
        else unsetenv("LD_PRELOAD");
        execv(slot->exe, argv);
        fprintf(stderr, "ouro-bench: exec %s: %s\n", slot->exe, strerror(errno));
        _exit(127);
    }
    close(fds[1]);

    FILE *in = fdopen(fds[0], "r");
    char line[512];
    unsigned have = 0;
    int bad = 0;
    while (in && fgets(line, sizeof line, in))
        if (!bad && child_parse_line(c, line, &have, out, why) != 0) bad = 1;
    if (in) fclose(in);
    else close(fds[0]);

    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            snprintf(why, WHY_LEN, "wait4: %s", strerror(errno));
            return -1;
        }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(why, WHY_LEN, "killed by signal %d (%s)%s", sig, strsignal(sig),
                 sig == SIGALRM ? ": timed out" : "");
        return -1;
    }
    if (WEXITSTATUS(status) != 0) {
        snprintf(why, WHY_LEN, "exited with status %d", WEXITSTATUS(status));
        return -1;
    }
    if (bad) return -1;
    if (calibrate ? out->ops == 0 : have != (1u << case_nmetrics(c)) - 1) {
        snprintf(why, WHY_LEN, calibrate ? "no op count reported" : "not every metric reported");
        return -1;
    }
    return 0;
}

/* ==== parent: what the run collects for the JSON file ============================================= */

/* One median. */
typedef struct record {
    const char *suite, *bcase, *subject, *metric;
    double value;
} record;

/* Everything the run produced, and whether anything failed. */
typedef struct collected {
    record *records;
    size_t nrecords, cap;
    char **problems; /* "skipped: ..." and "failed: ..." lines */
    size_t nproblems;
    int failed;
} collected;

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (!p) {
        fprintf(stderr, "ouro-bench: out of memory\n");
        exit(1);
    }
    return p;
}

static void collect_record(collected *col, record rec)
{
    if (col->nrecords == col->cap) {
        col->cap = col->cap ? 2 * col->cap : 64;
        col->records = xrealloc(col->records, col->cap * sizeof *col->records);
    }
    col->records[col->nrecords++] = rec;
}

/* Keeps a line for the JSON file's "problems" and prints it on echo unless that is NULL. */
__attribute__((format(printf, 3, 4))) static void collect_problem(collected *col, FILE *echo, const char *fmt,
                                                                  ...)
{
    char text[WHY_LEN + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (echo) {
        fflush(stdout);
        fprintf(echo, "ouro-bench: %s\n", text);
    }
    col->problems = xrealloc(col->problems, (col->nproblems + 1) * sizeof *col->problems);
    col->problems[col->nproblems] = xrealloc(NULL, strlen(text) + 1);
    strcpy(col->problems[col->nproblems++], text);
}

/* ==== parent: the table =========================================================================== */

/* Formats a metric's value for the table by its unit suffix: _bytes in MiB, _s in seconds. */
static const char *fmt_value(char *buf, size_t len, const char *metric, double v)
{
    size_t n = strlen(metric);
    if (n > 6 && strcmp(metric + n - 6, "_bytes") == 0) snprintf(buf, len, "%.1fM", v / 1048576.0);
    else if (n > 2 && strcmp(metric + n - 2, "_s") == 0) snprintf(buf, len, "%.3fs", v);
    else if (v >= 100) snprintf(buf, len, "%.0f", v);
    else if (v >= 10) snprintf(buf, len, "%.1f", v);
    else snprintf(buf, len, "%.2f", v);
    return buf;
}

/* Formats an op count: 21000000 -> "21.0M". */
static const char *fmt_count(char *buf, size_t len, uint64_t n)
{
    if (n >= 1000000) snprintf(buf, len, "%.1fM", (double)n / 1e6);
    else if (n >= 1000) snprintf(buf, len, "%.1fk", (double)n / 1e3);
    else snprintf(buf, len, "%llu", (unsigned long long)n);
    return buf;
}

/* Formats a ratio ouro/peer and the peer: "0.74x glibc" (three decimals below 0.1). */
static const char *fmt_ratio(char *buf, size_t len, double ratio, const char *peer)
{
    snprintf(buf, len, ratio < 0.095 ? "%.3fx %s" : "%.2fx %s", ratio, peer);
    return buf;
}

#define CASE_W 16
#define METRIC_W 24
#define VALUE_W 10
#define RATIO_W 17

/* Prints the suite's heading and the column titles. */
static void table_header(const bench_suite *s, const subject_slot *slots, int reps, int quick)
{
    printf("\n== suite %s: %s\n", s->name, s->about);
    printf("   median of %d reps%s; subjects alternate within each rep, each measurement in a process "
           "of its own;\n   ratio = ouro/peer, every metric lower-is-better: below 1.00x ouro is ahead\n",
           reps, quick ? " (--quick)" : "");
    for (size_t i = 0; i < s->nsubjects; i++)
        if (!slots[i].available)
            printf("   skipped: %s (%s not found; %s%s)\n", slots[i].subject->name, slots[i].subject->preload,
                   slots[i].subject->ouro ? "" : "Debian package ", slots[i].subject->package);
    printf("\n%-*s %-*s", CASE_W, "case", METRIC_W, "metric");
    for (size_t i = 0; i < s->nsubjects; i++) printf(" %*s", VALUE_W, slots[i].subject->name);
    printf("   %-*s best peer\n", (int)(RATIO_W * (s->nsubjects - 1)), "ouro/peer");
}

/* Prints one case's rows: per metric each subject's median (ok[i] says it has one; "n/a" for a subject
 * the case does not run), the ratios ouro/peer and the best peer; then the case's description and notes. */
static void table_case(const bench_suite *s, const bench_case *c, const subject_slot *slots,
                       const double *med, const int *ok, char notes[][NOTE_LEN], size_t nnotes)
{
    size_t nmet = case_nmetrics(c);
    char buf[32];
    for (size_t m = 0; m < nmet; m++) {
        printf("%-*s %-*s", CASE_W, m == 0 ? c->name : "", METRIC_W, c->metrics[m]);
        for (size_t i = 0; i < s->nsubjects; i++)
            printf(" %*s", VALUE_W,
                   ok[i]                      ? fmt_value(buf, sizeof buf, c->metrics[m], med[i * nmet + m])
                   : !case_runs_subject(s, c, i) ? "n/a"
                   : slots[i].available       ? "failed"
                                              : "-");
        printf("  ");
        /* ratios against ouro, or against the case's first subject when it does not run ouro */
        size_t base = 0, best = 0;
        while (base + 1 < s->nsubjects && !case_runs_subject(s, c, base)) base++;
        for (size_t i = 0; i < s->nsubjects; i++) {
            if (i == base) continue;
            if (!ok[base] || !ok[i] || med[i * nmet + m] <= 0) {
                if (i > base) printf(" %*s", RATIO_W - 1, "");
                continue;
            }
            fmt_ratio(buf, sizeof buf, med[base * nmet + m] / med[i * nmet + m], slots[i].subject->name);
            printf(" %-*s", RATIO_W - 1, buf);
            if (slots[i].subject->ouro) continue; /* a variant of ouro is not a peer */
            if (best == 0 || med[i * nmet + m] < med[best * nmet + m]) best = i;
        }
        if (best) {
            fmt_ratio(buf, sizeof buf, med[base * nmet + m] / med[best * nmet + m], slots[best].subject->name);
            printf(" %s", buf);
        }
        printf("\n");
    }
    printf("%*s %s\n", CASE_W, "", c->about);
    for (size_t i = 0; i < nnotes; i++) printf("%*s %s\n", CASE_W, "", notes[i]);
    fflush(stdout);
}

/* ==== parent: running cases ======================================================================= */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v). */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* 1 when text is one of notes[0..n). */
static int note_known(char notes[][NOTE_LEN], size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(notes[i], text, NOTE_LEN - 1) == 0) return 1;
    return 0;
}

/* Records that a subject failed case c (when: "sizing" or "rep N"); it is not run again for c. */
static void case_failed(collected *col, const bench_suite *s, const bench_case *c, const subject_slot *slot,
                        const char *when, const char *why)
{
    col->failed = 1;
    collect_problem(col, stderr, "failed: %s/%s/%s (%s): %s", s->name, c->name, slot->subject->name, when,
                    why);
}

/* Measures case c for every available subject, reps times in alternation, then prints its rows and
 * collects its medians. */
static void case_run(const bench_suite *s, const bench_case *c, const subject_slot *slots, int reps,
                     int quick, collected *col)
{
    size_t nsub = s->nsubjects, nmet = case_nmetrics(c);
    char why[WHY_LEN];
    char notes[MAX_NOTES * 2 + 2][NOTE_LEN]; /* the sizing, the subjects' first notes, the spread */
    size_t nnotes = 0;
    int ok[BENCH_MAX_SUBJECTS];
    child_result res;
    for (size_t i = 0; i < nsub; i++) ok[i] = slots[i].available && case_runs_subject(s, c, i);

    uint64_t ops = 0;
    for (size_t i = 0; c->sized && ops == 0 && i < nsub; i++) {
        if (!ok[i]) continue;
        if (child_spawn(s, c, &slots[i], 0, 1, quick, &res, why) == 0) {
            char n[32];
            ops = res.ops;
            snprintf(notes[nnotes++], NOTE_LEN, "%s ops per measurement (sized on %s for ~%.2f s)",
                     fmt_count(n, sizeof n, ops), slots[i].subject->name, quick ? QUICK_TARGET_S : TARGET_S);
        } else {
            case_failed(col, s, c, &slots[i], "sizing", why);
            ok[i] = 0;
        }
    }

    double *samples = xrealloc(NULL, nsub * nmet * (size_t)reps * sizeof *samples);
    for (int rep = 0; rep < reps; rep++) {
        for (size_t i = 0; i < nsub; i++) {
            if (!ok[i]) continue;
            if (child_spawn(s, c, &slots[i], ops, 0, quick, &res, why) != 0) {
                char when[32];
                snprintf(when, sizeof when, "rep %d", rep + 1);
                case_failed(col, s, c, &slots[i], when, why);
                ok[i] = 0;
                continue;
            }
            for (size_t m = 0; m < nmet; m++)
                samples[(i * nmet + m) * (size_t)reps + (size_t)rep] = res.value[m];
            /* each subject's first measurement adds the notes no subject made before it (a peer's
             * notes may say what only it knows: its version, its settings); the last slot is the spread's */
            for (size_t k = 0; rep == 0 && k < res.nnotes && nnotes + 1 < COUNT_OF(notes); k++)
                if (!note_known(notes, nnotes, res.note[k])) text_copy(notes[nnotes++], NOTE_LEN, res.note[k]);
        }
    }

    double med[BENCH_MAX_SUBJECTS * BENCH_MAX_METRICS];
    char spread[NOTE_LEN] = "spread of the reps, (max-min)/median:";
    for (size_t i = 0; i < nsub; i++) {
        double worst = 0;
        for (size_t m = 0; ok[i] && m < nmet; m++) {
            double *v = &samples[(i * nmet + m) * (size_t)reps];
            med[i * nmet + m] = median(v, (size_t)reps); /* sorted v: v[0] min, v[reps - 1] max */
            if (med[i * nmet + m] > 0 && (v[reps - 1] - v[0]) / med[i * nmet + m] > worst)
                worst = (v[reps - 1] - v[0]) / med[i * nmet + m];
            record rec = { s->name, c->name, slots[i].subject->name, c->metrics[m], med[i * nmet + m] };
            collect_record(col, rec);
        }
        size_t len = strlen(spread);
        if (ok[i])
            snprintf(spread + len, sizeof spread - len, " %s %.0f%%", slots[i].subject->name, 100 * worst);
    }
    if (reps > 1 && nnotes < COUNT_OF(notes)) text_copy(notes[nnotes++], NOTE_LEN, spread);
    free(samples);
    table_case(s, c, slots, med, ok, notes, nnotes);
}

/* ==== parent: options, listing, JSON ============================================================== */

typedef struct options {
    const char *suites[MAX_NAMES];
    size_t nsuites;
    const char *cases[MAX_NAMES];
    size_t ncases;
    int quick, list, reps;
    const char *json;
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: ouro-bench [--suite NAME]... [--case NAME]... [--quick] [--reps N] [--json FILE]\n"
               "                  [--list]\n"
               "  --suite NAME  run this suite (repeatable; default: every suite)\n"
               "  --case NAME   run this case (repeatable; default: every case of the suites)\n"
               "  --quick       smaller work, %d reps, ~%.2f s per measurement (about a minute in all)\n"
               "  --reps N      repetitions per subject (default %d; the median is reported)\n"
               "  --json FILE   write the medians as JSON (its folder is created)\n"
               "  --list        list suites, cases and subjects, then exit\n",
            QUICK_REPS, QUICK_TARGET_S, DEFAULT_REPS);
}

/* 1 when name is in names[0..n), or n is 0 (no filter). */
static int name_selected(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return 1;
    return n == 0;
}

/* Parses argv into o. Returns 0, or -1 after saying why. */
static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--list") == 0) {
            o->list = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--suite") == 0 && v && o->nsuites < MAX_NAMES) {
            o->suites[o->nsuites++] = argv[++i];
        } else if (strcmp(a, "--case") == 0 && v && o->ncases < MAX_NAMES) {
            o->cases[o->ncases++] = argv[++i];
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json = argv[++i];
        } else if (strcmp(a, "--reps") == 0 && v) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1000) {
                fprintf(stderr, "ouro-bench: --reps wants 1..1000, not '%s'\n", v);
                return -1;
            }
            o->reps = (int)n;
        } else {
            fprintf(stderr, "ouro-bench: bad or incomplete option '%s'\n", a);
            return -1;
        }
    }
    if (o->reps == 0) o->reps = o->quick ? QUICK_REPS : DEFAULT_REPS;
    for (size_t i = 0; i < o->nsuites; i++)
        if (!suite_find(o->suites[i])) {
            fprintf(stderr, "ouro-bench: no suite '%s' (--list shows them)\n", o->suites[i]);
            return -1;
        }
    for (size_t i = 0; i < o->ncases; i++) {
        size_t k = 0;
        while (k < NSUITES && !case_find(all_suites[k], o->cases[i])) k++;
        if (k == NSUITES) {
            fprintf(stderr, "ouro-bench: no case '%s' (--list shows them)\n", o->cases[i]);
            return -1;
        }
    }
    return 0;
}

/* Prints every suite with its subjects (and whether each is available) and cases. */
static void list_all(void)
{
    for (size_t k = 0; k < NSUITES; k++) {
        const bench_suite *s = all_suites[k];
        printf("suite %s: %s\n  subjects:", s->name, s->about);
        for (size_t i = 0; i < s->nsubjects; i++) {
            subject_slot slot;
            subject_resolve(&s->subjects[i], &slot);
            printf(" %s%s", s->subjects[i].name, slot.available ? "" : " (missing)");
        }
        printf("\n");
        for (size_t i = 0; i < s->ncases; i++) {
            const bench_case *c = &s->cases[i];
            printf("  %-*s %s [", CASE_W, c->name, c->about);
            for (size_t m = 0; m < case_nmetrics(c); m++) printf("%s%s", m ? ", " : "", c->metrics[m]);
            printf("]");
            int some = 0; /* list the subjects when not every one runs it */
            for (size_t k = 0; k < s->nsubjects; k++) some |= !case_runs_subject(s, c, k);
            for (size_t k = 0, n = 0; some && k < s->nsubjects; k++)
                if (case_runs_subject(s, c, k)) printf("%s%s", n++ ? ", " : " for ", s->subjects[k].name);
            printf("\n");
        }
    }
}

/* The CPU model from /proc/cpuinfo ("unknown" when it says none). */
static void machine_cpu(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = '\0';
        text_copy(buf, len, colon);
        break;
    }
    if (f) fclose(f);
}


/* Creates the folders leading to path (mkdir -p of its dirname). */
static void make_parent_dirs(const char *path)
{
    char dir[PATH_MAX];
    text_copy(dir, sizeof dir, path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) return;
        *p = '/';
    }
}

/* Writes the JSON file: machine, reps, one record per median, and the problems. Returns 0 or -1. */
static int json_write(const char *path, const collected *col, const options *o, const char *cpu, long nproc)
{
    make_parent_dirs(path);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ouro-bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", nproc);
    json_write_string(f, cpu);
    fprintf(f, "},\n  \"reps\": %d,\n  \"quick\": %s,\n  \"results\": [", o->reps,
            o->quick ? "true" : "false");
    for (size_t i = 0; i < col->nrecords; i++) {
        const record *r = &col->records[i];
        const char *fields[] = { r->suite, r->bcase, r->subject, r->metric };
        const char *keys[] = { "suite", "case", "subject", "metric" };
        fprintf(f, "%s\n    {", i ? "," : "");
        for (size_t k = 0; k < COUNT_OF(keys); k++) {
            fprintf(f, "\"%s\": ", keys[k]);
            json_write_string(f, fields[k]);
            fprintf(f, ", ");
        }
        fprintf(f, "\"value\": %.10g}", r->value);
    }
    fprintf(f, "\n  ],\n  \"problems\": [");
    for (size_t i = 0; i < col->nproblems; i++) {
        fprintf(f, "%s\n    ", i ? "," : "");
        json_write_string(f, col->problems[i]);
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "ouro-bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child_main(argc, argv);

    options o;
    if (parse_options(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.list) {
        list_all();
        return 0;
    }
    if (ouro_config_check() != 0) {
        fprintf(stderr, "ouro-bench: %s\n", ouro_err_message());
        return 1;
    }

    char cpu[256];
    machine_cpu(cpu, sizeof cpu);
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("ouro-bench: %s, %ld CPUs; %d reps%s\n", cpu, nproc, o.reps, o.quick ? ", --quick" : "");

    collected col = { 0 };
    for (size_t k = 0; k < NSUITES; k++) {
        const bench_suite *s = all_suites[k];
        size_t ncases = 0;
        for (size_t i = 0; i < s->ncases; i++) ncases += name_selected(o.cases, o.ncases, s->cases[i].name);
        if (!name_selected(o.suites, o.nsuites, s->name) || ncases == 0) continue;

        subject_slot slots[BENCH_MAX_SUBJECTS];
        for (size_t i = 0; i < s->nsubjects; i++) subject_resolve(&s->subjects[i], &slots[i]);
        table_header(s, slots, o.reps, o.quick);
        for (size_t i = 0; i < s->nsubjects; i++)
            if (!slots[i].available)
                collect_problem(&col, NULL, "skipped: %s/%s: %s not found (%s%s)", s->name, s->subjects[i].name,
                                s->subjects[i].preload, s->subjects[i].ouro ? "" : "Debian package ",
                                s->subjects[i].package);
        for (size_t i = 0; i < s->ncases; i++)
            if (name_selected(o.cases, o.ncases, s->cases[i].name))
                case_run(s, &s->cases[i], slots, o.reps, o.quick, &col);
    }

    int rc = col.failed ? 1 : 0;
    if (o.json) {
        if (json_write(o.json, &col, &o, cpu, nproc) == 0) printf("\nwrote %s\n", o.json);
        else rc = 1;
    }
    if (col.failed) fprintf(stderr, "ouro-bench: some measurements failed (see above)\n");
    return rc;
}
