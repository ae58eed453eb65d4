/* tests/testutil.h — helpers shared by the cmocka tests (header-only: each test is one executable). */
#ifndef OURO_TESTUTIL_H
#define OURO_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include "ouro.h"

/* Threads of this process (/proc/self/task), the allocator's decay thread ("ouro-decay": it comes and
 * goes with dirty memory, alloc/arena.c) counted only when count_decay. -1 when /proc cannot be read. */
static inline int test_task_count(bool count_decay) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = count_decay ? NULL : fopen(path, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
            fclose(f);
        }
        n += strncmp(comm, "ouro-decay", 10) != 0;
    }
    closedir(d);
    return n;
}

/* 1 in an AddressSanitizer build (the asan step): its quarantine keeps freed malloc blocks resident
 * (256 MiB by default), so RSS bounds on code that mallocs and frees (the collector's young lists and
 * their compaction tables) do not hold there. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

/* true under ./zigw build memcheck (it sets OURO_MEMCHECK=1): memcheck runs code some 30 times slower,
 * so the tests that build millions of objects scale down there. */
static inline bool test_memcheck(void) {
    const char *e = getenv("OURO_MEMCHECK");
    return e && *e && strcmp(e, "0") != 0;
}

/* Resident set size of this process in bytes (/proc/self/statm). */
static inline size_t test_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Blocks in use over every size class. */
static inline size_t test_blocks_in_use(const ouro_alloc_stats_t *st) {
    size_t n = 0;
    for (size_t c = 0; c < st->nclasses; c++) n += st->classes[c].blocks_in_use;
    return n;
}

/* Snapshot after collecting the calling thread's and the abandoned pools' remote frees. */
static inline ouro_alloc_stats_t test_stats(void) {
    ouro_alloc_stats_t st;
    ouro_alloc_collect();
    assert_int_equal(ouro_alloc_stats(&st), 0);
    return st;
}

/* Runs fn in a forked child with stderr captured; returns the child's wait status and copies what
 * it printed into out. The death tests use it: the child must die with SIGABRT and say why. The parent
 * waits offline when it is attached: blocked online, it would hold up every grace period (and the frees
 * they release) for as long as the child runs. */
static inline int test_in_child(void (*fn)(void), char *out, size_t n) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0);
    }
    close(fd[1]);
    bool offline = ouro_offline_begin() == 0;
    if (!offline) ouro_err_clear(); /* not attached */
    size_t len = 0;
    ssize_t r;
    while (len + 1 < n && (r = read(fd[0], out + len, n - 1 - len)) > 0) len += (size_t)r;
    out[len] = '\0';
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (offline) ouro_offline_end();
    return status;
}

/* Asserts that fn, run in a child, exits with status 0 (printing what it said otherwise). */
static inline void test_expect_child_ok(void (*fn)(void)) {
    char out[4096];
    int status = test_in_child(fn, out, sizeof out);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child status %#x, said: %s\n", status, out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Asserts that fn aborts in a child and that its message contains what. */
static inline void test_expect_abort(void (*fn)(void), const char *what) {
    char out[4096];
    int status = test_in_child(fn, out, sizeof out);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)) fprintf(stderr, "child status %d, said: %s\n", status, out);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!strstr(out, what)) fprintf(stderr, "expected '%s' in: %s\n", what, out);
    assert_non_null(strstr(out, what));
}

#endif /* OURO_TESTUTIL_H */
