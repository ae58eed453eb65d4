/* tests/test_faults.c — failure injection at every kind of allocation ouro makes.
 *
 * For each fault kind (the C library's malloc inside ouro, OS mappings, the threads ouro starts,
 * getrandom) the sweep arms the nth call, n = 1, 2, ..., and runs one workload that touches every
 * module: numbers, strings, bytes, tuples, lists, dicts, sets, interning, weakrefs with callbacks,
 * cycles and a full collection, a thread that attaches, stops of the world, deferral and a barrier, and
 * a fork whose child runs the same workload. It stops when a run leaves the fault unfired (n walked past
 * the last call of that kind). Oracle, for every n: no abort and no hang; every call that failed
 * failed with OURO_ERR_NOMEM (or with the error its API documents); then, disarmed, the same workload
 * runs clean, and after a full collection and a deferral barrier the live objects of every type are
 * back to the baseline taken before the sweep. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

/* A call's outcome: fine, or failed with an expected error (counted); anything else fails the test. */
static long failures_seen, unexpected;

static bool failed(bool bad, const char *what) {
    if (!bad) return false;
    ouro_err e = ouro_err_occurred();
    if (e == OURO_ERR_NOMEM) {
        failures_seen++;
    } else {
        unexpected++;
        fprintf(stderr, "fault sweep: %s failed with error %d (%s), not OURO_ERR_NOMEM\n", what, (int)e, ouro_err_message());
    }
    ouro_err_clear();
    return true;
}

#define TRY(expr) (!failed(!(expr), #expr))

static atomic_int callbacks_run;
static void weak_cb(ouro_object *ref, void *arg) {
    (void)ref;
    (void)arg;
    atomic_fetch_add(&callbacks_run, 1);
}
static void deferred(void *arg) {
    (void)arg;
    atomic_fetch_add(&callbacks_run, 1);
}

static void join_offline(pthread_t t) {
    bool offline = ouro_offline_begin() == 0; /* not attached when its attach failed */
    pthread_join(t, NULL);
    if (offline) ouro_offline_end();
    ouro_err_clear();
}

/* Containers, numbers, strings, interning, weakrefs, cycles. Every object it makes is dropped. */
static void objects_workload(void) {
    ouro_object *l = ouro_list_new(0), *d = ouro_dict_new(), *s = ouro_set_new();
    if (TRY(l) && TRY(d) && TRY(s)) {
        for (long i = 0; i < 200; i++) {
            ouro_object *n = ouro_int_from(1000000 + i), *str = ouro_str_from_format("key-%ld", i);
            ouro_object *b = ouro_bytes_new("abc", 3);
            if (TRY(n) && TRY(str) && TRY(b)) {
                ouro_object *t = ouro_tuple_pack(3, n, str, b);
                if (TRY(t)) {
                    (void)TRY(ouro_list_append(l, t) == 0);
                    ouro_decref(t);
                }
                (void)TRY(ouro_dict_set(d, str, n) == 0);
                (void)TRY(ouro_set_add(s, n) == 0);
            }
            ouro_xdecref(n);
            ouro_xdecref(str);
            ouro_xdecref(b);
        }
        ouro_object *in = ouro_str_intern_cstr("fault-sweep-interned");
        if (TRY(in)) ouro_decref(in);
        /* a cycle with a weakref to it: collected by the full collection, the callback runs */
        ouro_object *ring = ouro_list_new(0);
        if (TRY(ring)) {
            (void)TRY(ouro_list_append(ring, ring) == 0);
            ouro_object *w = ouro_weakref_new(ring, weak_cb, NULL);
            if (TRY(w)) {
                ouro_decref(ring);
                ring = NULL;
                long n = ouro_gc_collect(2);
                (void)TRY(n >= 0);
                ouro_decref(w);
            }
            ouro_xdecref(ring);
        }
    }
    ouro_xdecref(l);
    ouro_xdecref(d);
    ouro_xdecref(s);
    char *p = ouro_alloc(100000); /* a large block: an OS mapping of its own */
    if (TRY(p)) ouro_free(p);
    /* enough small blocks for new arenas: ouro_alloc_collect() gave the last ones back */
    enum { BIG = 40000 };
    void **v = malloc(BIG * sizeof *v);
    assert_non_null(v);
    size_t got = 0;
    for (; got < BIG; got++)
        if (!TRY(v[got] = ouro_alloc(64 + (got % 8) * 32))) break;
    while (got) ouro_free(v[--got]);
    free(v);
}

static void *thread_workload(void *arg) {
    (void)arg;
    if (TRY(ouro_thread_attach() == 0)) {
        objects_workload();
        ouro_thread_detach();
    }
    return NULL;
}

/* Everything, from a fresh start: the runtime shut down and the memory it kept given back, so that the
 * run makes its thread records, threads, heaps and arenas anew (and meets the faults armed for them). */
static void workload(bool with_fork) {
    ouro_alloc_collect();
    if (ouro_fini() != 0) {
        fprintf(stderr, "fault sweep: ouro_fini: %s\n", ouro_err_message());
        unexpected++;
    }
    objects_workload();
    pthread_t t;
    if (pthread_create(&t, NULL, thread_workload, NULL) == 0) {
        join_offline(t);
    }
    if (TRY(ouro_stop_the_world("fault sweep") == 0)) ouro_start_the_world();
    (void)TRY(ouro_defer(deferred, NULL) == 0);
    assert_int_equal(ouro_defer_barrier(), 0);
    ouro_thread_attach(); /* again, when its first attach failed: the sweep goes on attached */
    ouro_err_clear();
    if (with_fork) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(30);
            workload(false);
            _exit(unexpected ? 3 : 0);
        }
        assert_true(pid > 0);
        int status = 0;
        bool offline = ouro_offline_begin() == 0; /* not attached when its attach failed */
        waitpid(pid, &status, 0);
        if (offline) ouro_offline_end();
        ouro_err_clear();
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            fprintf(stderr, "fault sweep: the fork child ended with status %#x\n", status);
            unexpected++;
        }
    }
}

static size_t live_total(void) {
    ouro_type_stats_entry e[256];
    size_t n = ouro_type_stats_all(e, 256), total = 0;
    for (size_t i = 0; i < n && i < 256; i++) total += e[i].stats.live;
    return total;
}

static void settle(void) {
    for (int i = 0; i < 3; i++) {
        ouro_gc_collect(2);
        ouro_defer_barrier();
        ouro_refcount_merge_queued();
    }
}

static void sweep(ouro_fault kind, const char *name, unsigned long max_n) {
    assert_int_equal(ouro_thread_attach(), 0);
    workload(true); /* warm: interned strings, caches, the reclaimer and helper threads */
    settle();
    size_t baseline = live_total();
    unsigned long n = 1;
    long fired = 0;
    for (; n <= max_n; n++) {
        assert_int_equal(ouro_debug_fail(kind, n), 0);
        workload(n % 8 == 1); /* a fork every 8th run: forks are slow */
        bool walked_past = ouro_debug_fault_pending(kind) != 0;
        ouro_debug_fail(kind, 0);
        fired += !walked_past;
        assert_int_equal(unexpected, 0);
        workload(false); /* disarmed: everything works again */
        assert_int_equal(unexpected, 0);
        settle();
        size_t live = live_total();
        if (live != baseline) fprintf(stderr, "fault sweep (%s, n = %lu): %zu live objects, baseline %zu\n", name, n, live, baseline);
        assert_int_equal(live, baseline);
        if (walked_past) break;
    }
    printf("fault sweep, %s: %ld injected faults survived (n = 1..%lu), %ld calls failed with OURO_ERR_NOMEM\n", name, fired,
           n, failures_seen);
    assert_true(fired > 0 || kind == OURO_FAULT_THREAD || kind == OURO_FAULT_RANDOM);
}

static void test_sweep_malloc(void **state) { sweep(OURO_FAULT_MALLOC, "malloc", 4000); }
static void test_sweep_os_map(void **state) { sweep(OURO_FAULT_OS_MAP, "os map", 4000); }
static void test_sweep_threads(void **state) { sweep(OURO_FAULT_THREAD, "thread create", 100); }
static void test_sweep_getrandom(void **state) { sweep(OURO_FAULT_RANDOM, "getrandom", 100); }

/* The threads ouro starts once per process (the stop watchdog, the collector's helper) and the
 * reclaimer, each refused in turn in a fresh fork child (whose threads did not survive the fork): the
 * stops, the collection and the deferral still work, and the next use starts the thread. */
static void child_threads_refused(void) {
    alarm(30);
    if (ouro_thread_attach() != 0) _exit(2);
    for (unsigned long n = 1; n <= 3; n++) {
        ouro_debug_fail(OURO_FAULT_THREAD, n);
        ouro_object *ring = ouro_list_new(0);
        if (!ring || ouro_list_append(ring, ring) != 0) _exit(3);
        ouro_decref(ring);
        if (ouro_stop_the_world("threads refused") != 0 || ouro_start_the_world() != 0) _exit(4);
        if (ouro_gc_collect(2) < 1) _exit(5); /* the ring, with or without the helper */
        if (ouro_defer(deferred, NULL) != 0 || ouro_defer_barrier() != 0) _exit(6);
        ouro_debug_fail(OURO_FAULT_THREAD, 0);
    }
    _exit(0);
}

static void test_threads_refused(void **state) { test_expect_child_ok(child_threads_refused); }

/* getrandom() refused for the hash key (drawn at the process's first hash; this test runs first so the
 * fork child draws it): the key comes from /dev/urandom and hashing works. */
static void child_getrandom_refused(void) {
    alarm(30);
    ouro_debug_fail(OURO_FAULT_RANDOM, 1);
    ouro_object *k = ouro_str_from_cstr("a key"), *d = ouro_dict_new(), *v = NULL;
    if (!k || !d || ouro_dict_set(d, k, k) != 0 || ouro_dict_get_ref(d, k, &v) != 1 || v != k) _exit(2);
    if (ouro_debug_fault_pending(OURO_FAULT_RANDOM) != 0) _exit(3); /* the key's draw met the fault */
    ouro_decref(v);
    ouro_decref(d);
    ouro_decref(k);
    _exit(0);
}

static void test_getrandom_refused(void **state) { test_expect_child_ok(child_getrandom_refused); }

static void test_bad_kind(void **state) {
    assert_int_equal(ouro_debug_fail((ouro_fault)99, 1), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
    assert_int_equal(ouro_debug_fault_pending((ouro_fault)99), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_getrandom_refused), /* first: no hash before it */
        cmocka_unit_test(test_bad_kind),
        cmocka_unit_test(test_threads_refused),
        cmocka_unit_test(test_sweep_malloc),
        cmocka_unit_test(test_sweep_os_map),
        cmocka_unit_test(test_sweep_threads),
        cmocka_unit_test(test_sweep_getrandom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
