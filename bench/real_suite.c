/* bench/real_suite.c — the `real` suite: real programs from Debian on each allocator.
 *
 * Every case runs one program (CPython, redis-server, lua5.4, z3, sqlite3, gs) on a workload shipped
 * in bench/real/ (installed to share/ouro-bench/real next to the driver's bin/), with the subject's
 * malloc preloaded: `ouro` is libouro-malloc.so (the drop-in malloc `./zigw build` installs into lib/
 * next to bin/), the peers Debian's mimalloc, jemalloc and tcmalloc, and `glibc` preloads glibc's own
 * libc.so.6 — a no-op for programs that take malloc from libc, and what makes redis-server (which
 * Debian links with libjemalloc) use glibc's malloc rather than jemalloc's.
 *
 * The driver's child (ouro-bench --child, started with LD_PRELOAD already set and checked) forks the
 * program, which inherits LD_PRELOAD, and waits for it with wait4(): wall_s is from fork to the end of
 * wait4, peak_rss_bytes the program's ru_maxrss. Linux carries a process's high-water RSS over exec,
 * so ru_maxrss counts the forked child's pages before exec too: the driver's child is ~2 MiB, far
 * below every program's own. redis is a client and a server: redis-server runs with the subject's
 * preload on a unix socket in a fresh folder (no TCP port to collide with, no persistence), wall_s
 * is the time redis-benchmark (run without a preload) takes, peak_rss_bytes the server's.
 *
 * Oracles: each program must exit 0 (redis-server: 0 after SIGTERM; redis-benchmark must report every
 * test it ran in its CSV), and its output is noted under the case (the first line, or redis's test
 * count): the workloads print checksums, so a subject whose output differs adds a second note. The
 * programs run with PDEATHSIG set, so a timed-out child (SIGALRM) takes its program with it. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const bench_subject real_subjects[] = {
    /* the preload is relative to the driver's folder: bin/../lib (bench.h, bench_subject.preload) */
    { "ouro", "../lib/libouro-malloc.so", "ouro_malloc_stats", "built by ./zigw build into zig-out/lib", NULL, 1, NULL },
    { "glibc", "libc.so.6", "gnu_get_libc_version", "libc6", NULL, 0, NULL },
    BENCH_PEER_MIMALLOC,
    BENCH_PEER_JEMALLOC,
    BENCH_PEER_TCMALLOC,
};

enum {
    REAL_OUTPUT_MAX = 4096,   /* bytes of a program's stdout kept */
    REAL_READY_TIMEOUT_MS = 10000, /* redis-server must accept connections within this */
};

/* What one run of a program gave. */
typedef struct real_result {
    double wall_s;
    double peak_rss_bytes;
    char output[REAL_OUTPUT_MAX]; /* its stdout (cut short), NUL-terminated */
} real_result;

/* How to start a program. */
typedef struct real_spawn {
    const char *package;    /* the Debian package of argv[0], named when it is missing */
    const char *stdin_path; /* a file for its stdin; NULL: /dev/null */
    int capture;            /* 1: stdout into real_result.output; 0: /dev/null */
    int no_preload;         /* 1: LD_PRELOAD removed (a client that is not the subject) */
} real_spawn;

/* The folder of the shipped workloads: $OURO_BENCH_REAL_DIR, else share/ouro-bench/real next to the
 * driver's bin/. */
static void real_dir(char *buf, size_t len)
{
    const char *env = getenv("OURO_BENCH_REAL_DIR");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) bench_fail("readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(buf, len, "%s/../share/ouro-bench/real", self);
}

/* The path of a shipped workload file, which must exist. */
static void real_file(char *buf, size_t len, const char *name)
{
    char dir[PATH_MAX];
    real_dir(dir, sizeof dir);
    snprintf(buf, len, "%s/%s", dir, name);
    if (access(buf, R_OK) != 0) bench_fail("workload %s: %s (set OURO_BENCH_REAL_DIR?)", buf, strerror(errno));
}

/* Forks and execs argv (argv[0] an absolute path) as sp says. Returns the pid; *out_fd is the read end
 * of its stdout when sp->capture, else -1. */
static pid_t real_start(char *const argv[], const real_spawn *sp, int *out_fd)
{
    if (access(argv[0], X_OK) != 0) bench_fail("%s not found (Debian package %s)", argv[0], sp->package);
    int fds[2] = { -1, -1 };
    if (sp->capture && pipe2(fds, O_CLOEXEC) != 0) bench_fail("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* the program dies with the driver's child (a timed-out child must not leave it running) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int in = open(sp->stdin_path ? sp->stdin_path : "/dev/null", O_RDONLY);
        int out = sp->capture ? fds[1] : open("/dev/null", O_WRONLY);
        if (in < 0 || out < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0) _exit(127);
        if (sp->no_preload) unsetenv("LD_PRELOAD");
        execv(argv[0], argv);
        fprintf(stderr, "ouro-bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (sp->capture) close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

/* Reads fd to its end into out->output (keeping the first REAL_OUTPUT_MAX - 1 bytes), then closes it. */
static void real_drain(int fd, real_result *out)
{
    size_t got = 0;
    char sink[4096];
    for (;;) {
        char *dst = got < sizeof out->output - 1 ? out->output + got : sink;
        size_t room = got < sizeof out->output - 1 ? sizeof out->output - 1 - got : sizeof sink;
        ssize_t n = read(fd, dst, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (dst != sink) got += (size_t)n;
    }
    out->output[got] = '\0';
    close(fd);
}

/* Waits for pid; fails unless it exited with status 0. *ru gets its resource usage. */
static void real_wait(pid_t pid, const char *what, struct rusage *ru)
{
    int status;
    while (wait4(pid, &status, 0, ru) < 0)
        if (errno != EINTR) bench_fail("wait4 %s: %s", what, strerror(errno));
    if (WIFSIGNALED(status)) bench_fail("%s killed by signal %d (%s)", what, WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0) bench_fail("%s exited with status %d", what, WEXITSTATUS(status));
}

/* Runs argv to its end with the subject's preload: wall time, peak RSS and its stdout. */
static void real_run(char *const argv[], const real_spawn *sp, real_result *out)
{
    int fd;
    uint64_t t0 = bench_now_ns();
    pid_t pid = real_start(argv, sp, &fd);
    if (fd >= 0) real_drain(fd, out);
    else out->output[0] = '\0';
    struct rusage ru;
    real_wait(pid, argv[0], &ru);
    out->wall_s = (double)(bench_now_ns() - t0) * 1e-9;
    out->peak_rss_bytes = (double)ru.ru_maxrss * 1024.0;
}

/* Reports the two metrics and notes the output's first line (the workload's checksum). */
static void real_report(const bench_run *r, const char *program, const real_result *res)
{
    bench_report(r, "wall_s", res->wall_s);
    bench_report(r, "peak_rss_bytes", res->peak_rss_bytes);
    size_t n = strcspn(res->output, "\n");
    bench_note(r, "%s printed: %.*s", program, (int)(n > 60 ? 60 : n), res->output);
}

/* ---- CPython ---------------------------------------------------------------------------------- */

/* Debian's interpreter (python3 in PATH may be another one, e.g. pyenv's), with PYTHONMALLOC=malloc:
 * every object through malloc, none through pymalloc's arenas. A fixed hash seed keeps the dicts'
 * layouts, and so the allocations, the same from run to run. */
static void real_python(const bench_run *r, const char *script)
{
    char path[PATH_MAX];
    real_file(path, sizeof path, script);
    setenv("PYTHONMALLOC", "malloc", 1);
    setenv("PYTHONHASHSEED", "0", 1);
    char *argv[] = { "/usr/bin/python3", "-s", path, r->quick ? "0.3" : "1", NULL };
    real_spawn sp = { .package = "python3", .capture = 1 };
    real_result res;
    real_run(argv, &sp, &res);
    real_report(r, "python3", &res);
}

static void real_python_churn(const bench_run *r) { real_python(r, "py_churn.py"); }
static void real_python_dictstr(const bench_run *r) { real_python(r, "py_dictstr.py"); }
static void real_python_threads(const bench_run *r) { real_python(r, "py_threads.py"); }

/* ---- redis -------------------------------------------------------------------------------------- */

/* Waits until the server accepts a connection on its unix socket. Returns 0, or -1 on timeout. */
static int real_redis_ready(const char *sock, pid_t server)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    for (int waited = 0; waited < REAL_READY_TIMEOUT_MS; waited += 5) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) bench_fail("socket: %s", strerror(errno));
        int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
        close(fd);
        if (ok) return 0;
        int status;
        if (waitpid(server, &status, WNOHANG) == server) bench_fail("redis-server ended before it was ready");
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* redis-server with the subject's malloc, driven by redis-benchmark with `tests` over a unix socket:
 * requests requests, random keys from 1M, 16 commands per pipeline (mimalloc-bench's case, fewer
 * requests). wall_s is redis-benchmark's run, peak_rss_bytes the server's. */
static void real_redis(const bench_run *r, const char *tests, int ntests, const char *requests)
{
    char dir[] = "/tmp/ouro-bench-redis-XXXXXX";
    if (!mkdtemp(dir)) bench_fail("mkdtemp: %s", strerror(errno));
    char sock[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    char *server_argv[] = { "/usr/bin/redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                            "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
                            "--loglevel", "warning", "--logfile", "", NULL };
    real_spawn server_sp = { .package = "redis-server" };
    int fd;
    pid_t server = real_start(server_argv, &server_sp, &fd);
    if (real_redis_ready(sock, server) != 0) {
        kill(server, SIGKILL);
        bench_fail("redis-server did not accept connections on %s within %d ms", sock, REAL_READY_TIMEOUT_MS);
    }

    char *bench_argv[] = { "/usr/bin/redis-benchmark", "-s", sock, "-r", "1000000", "-n", (char *)requests,
                           "-P", "16", "-t", (char *)tests, "--csv", NULL };
    real_spawn client_sp = { .package = "redis-tools", .capture = 1, .no_preload = 1 };
    real_result res;
    real_run(bench_argv, &client_sp, &res);

    if (kill(server, SIGTERM) != 0) bench_fail("kill redis-server: %s", strerror(errno));
    struct rusage ru;
    real_wait(server, "redis-server", &ru);
    res.peak_rss_bytes = (double)ru.ru_maxrss * 1024.0;
    unlink(sock);
    if (rmdir(dir) != 0) bench_fail("rmdir %s: %s", dir, strerror(errno));

    /* --csv: a header line, then one "TEST","rps",... line per test run */
    int lines = 0;
    for (const char *p = res.output; (p = strchr(p, '\n')) != NULL; p++) lines++;
    if (lines - 1 < ntests) bench_fail("redis-benchmark reported %d of %d tests:\n%s", lines - 1, ntests, res.output);
    bench_report(r, "wall_s", res.wall_s);
    bench_report(r, "peak_rss_bytes", res.peak_rss_bytes);
    bench_note(r, "redis-benchmark -n %s: %d tests reported", requests, lines - 1);
}

/* -t lpush,lrange runs LPUSH, the LPUSH that fills the list, and LRANGE_100/300/500/600 */
static void real_redis_lists(const bench_run *r) { real_redis(r, "lpush,lrange", 6, r->quick ? "3000" : "10000"); }
static void real_redis_getset(const bench_run *r) { real_redis(r, "get,set", 2, r->quick ? "50000" : "200000"); }

/* ---- lua5.4, z3, sqlite3, gs ---------------------------------------------------------------------- */

static void real_lua(const bench_run *r)
{
    char path[PATH_MAX];
    real_file(path, sizeof path, "lua_bench.lua");
    char *argv[] = { "/usr/bin/lua5.4", path, r->quick ? "0.3" : "1", NULL };
    real_spawn sp = { .package = "lua5.4", .capture = 1 };
    real_result res;
    real_run(argv, &sp, &res);
    real_report(r, "lua5.4", &res);
}

static void real_z3(const bench_run *r)
{
    char path[PATH_MAX];
    real_file(path, sizeof path, "z3_pigeonhole.smt2");
    char *argv[] = { "/usr/bin/z3", path, NULL };
    real_spawn sp = { .package = "z3", .capture = 1 };
    real_result res;
    real_run(argv, &sp, &res);
    for (char *p = res.output; (p = strchr(p, '\n')) != NULL;) *p = ' '; /* "unsat unsat unsat" */
    real_report(r, "z3", &res);
}

static void real_sqlite(const bench_run *r)
{
    char path[PATH_MAX];
    real_file(path, sizeof path, "sqlite_workload.sql");
    char *argv[] = { "/usr/bin/sqlite3", "-batch", ":memory:", "-cmd",
                     r->quick ? "CREATE TABLE param AS SELECT 30000 AS n" : "CREATE TABLE param AS SELECT 100000 AS n",
                     NULL };
    real_spawn sp = { .package = "sqlite3", .stdin_path = path, .capture = 1 };
    real_result res;
    real_run(argv, &sp, &res);
    real_report(r, "sqlite3", &res);
}

static void real_gs(const bench_run *r)
{
    char path[PATH_MAX];
    real_file(path, sizeof path, "gs_render.ps");
    char *argv[] = { "/usr/bin/gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=ppmraw", "-r150",
                     "-o", "/dev/null", r->quick ? "-dPAGES=1" : "-dPAGES=3", path, NULL };
    real_spawn sp = { .package = "ghostscript", .capture = 1 };
    real_result res;
    real_run(argv, &sp, &res);
    bench_report(r, "wall_s", res.wall_s);
    bench_report(r, "peak_rss_bytes", res.peak_rss_bytes);
    if (res.output[0]) bench_note(r, "gs printed: %.60s", res.output); /* nothing, unless it complains */
}

#define REAL_METRICS { "wall_s", "peak_rss_bytes", NULL }

static const bench_case real_cases[] = {
    { "python3-churn", "Debian's python3, PYTHONMALLOC=malloc: bench/real/py_churn.py (small objects made and dropped)",
      REAL_METRICS, 0, real_python_churn, 0 },
    { "python3-dictstr", "python3: bench/real/py_dictstr.py (word counts in dicts, str format/join/split)",
      REAL_METRICS, 0, real_python_dictstr, 0 },
    { "python3-threads", "python3: bench/real/py_threads.py (4 producer threads, 2 consumers, records freed by another thread)",
      REAL_METRICS, 0, real_python_threads, 0 },
    { "redis-lists", "redis-server under redis-benchmark -r 1000000 -n 10000 -P 16 -t lpush,lrange (unix socket)",
      REAL_METRICS, 0, real_redis_lists, 0 },
    { "redis-getset", "redis-server under redis-benchmark -r 1000000 -n 200000 -P 16 -t get,set (unix socket)",
      REAL_METRICS, 0, real_redis_getset, 0 },
    { "lua5.4", "lua5.4 bench/real/lua_bench.lua (trees of tables, string building, a hash map)",
      REAL_METRICS, 0, real_lua, 0 },
    { "z3", "z3 bench/real/z3_pigeonhole.smt2 (pigeonhole 7/6, three encodings, all unsat)",
      REAL_METRICS, 0, real_z3, 0 },
    { "sqlite3", "sqlite3 :memory: < bench/real/sqlite_workload.sql (100k rows: insert, index, group, join, update)",
      REAL_METRICS, 0, real_sqlite, 0 },
    { "gs", "gs -sDEVICE=ppmraw -r150 bench/real/gs_render.ps (3 pages of curves and text)",
      REAL_METRICS, 0, real_gs, 0 },
};

const bench_suite bench_suite_real = {
    .name = "real",
    .about = "real programs (Debian's) with each malloc preloaded: wall time and peak RSS",
    .subjects = real_subjects,
    .nsubjects = sizeof real_subjects / sizeof real_subjects[0],
    .cases = real_cases,
    .ncases = sizeof real_cases / sizeof real_cases[0],
};
