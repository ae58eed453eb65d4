/* tests/test_lifecycle.c — the lifecycle paths a server walks every day (fork while threads work,
 * ouro_fini, threads that exit or never attached, misuse, out of memory), one regression test per
 * defect of issue 14, each named after it. Every scenario that could crash, hang or abort runs in a
 * forked child with an alarm, so one failure is reported as that test's failure and the rest still
 * run; the child checks its own oracle and exits 0 only when it held. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

enum { CHILD_ALARM_S = 30 };

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A wait step of a thread that may be attached and online: a grace period (and so a deferred
 * callback) waits for its quiescent state. */
static void idle_ms(long ms) {
    ouro_safepoint();
    sleep_ms(ms);
}

/* Joins t offline when the caller is attached: a grace period (the reclaimer's) must not wait for it. */
static void join_offline(pthread_t t) {
    bool offline = ouro_offline_begin() == 0;
    ouro_err_clear();
    pthread_join(t, NULL);
    if (offline) ouro_offline_end();
}

/* Runs fn in a child (it arms an alarm); true when it exited 0, else prints what it said. A test with
 * state of its own to undo asserts after undoing it, so that a failure does not hang the tests after. */
static bool child_ok(void (*fn)(void), const char *name) {
    char out[8192];
    int status = test_in_child(fn, out, sizeof out);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        fprintf(stderr, "%s: child %s %d; it said:\n%s\n", name, WIFEXITED(status) ? "exited" : "killed by signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), out);
    return ok;
}

static void expect_child_ok(void (*fn)(void), const char *name) { assert_true(child_ok(fn, name)); }

/* A child's oracle: exits with code when cond is false, naming it. */
#define CHILD_CHECK(cond, code)                                                                      \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "child check failed: %s (%s:%d) err=%d %s\n", #cond, __FILE__, __LINE__, \
                    ouro_err_occurred(), ouro_err_message());                                        \
            _exit(code);                                                                             \
        }                                                                                            \
    } while (0)

static size_t live_of(const ouro_type *t) {
    ouro_type_stats st;
    if (ouro_type_get_stats(t, &st) != 0) return (size_t)-1;
    return st.live;
}

/* ---- types ---------------------------------------------------------------------------------------- */

static const char *const ab_slots[] = {"a", "b", NULL};
static ouro_type *node_type; /* GC, slots a and b */

static ouro_object *probe_target; /* the probe's dealloc asks for its referrers */
static ouro_object *probe_result;
static ouro_type *probe_type;
static void probe_dealloc(ouro_object *self) {
    (void)self;
    probe_result = ouro_gc_get_referrers(probe_target);
}

static _Atomic int self_decref_armed;
static ouro_type *selfdec_type;
static void selfdec_dealloc(ouro_object *self) {
    if (atomic_exchange(&self_decref_armed, 0)) ouro_decref(self); /* the misuse under test */
}

/* X's dealloc runs inside its owner's exit hook (see test_heap_visible_during_exit_hooks): it waits,
 * polling safepoints, until the test has looked at the heap. */
static _Atomic int xwait_entered, xwait_release;
static ouro_type *xwait_type;
static void xwait_dealloc(ouro_object *self) {
    (void)self;
    atomic_store(&xwait_entered, 1);
    while (!atomic_load(&xwait_release)) {
        ouro_safepoint();
        sched_yield();
    }
}

static void types_setup(void) {
    if (node_type) return;
    ouro_type_spec spec = {.name = "lnode", .basic_size = 0, .flags = OURO_TYPE_GC, .slots = ab_slots};
    node_type = ouro_type_new(&spec);
    ouro_type_spec probe = {.name = "probe", .dealloc = probe_dealloc};
    probe_type = ouro_type_new(&probe);
    ouro_type_spec sd = {.name = "selfdec", .dealloc = selfdec_dealloc};
    selfdec_type = ouro_type_new(&sd);
    ouro_type_spec xw = {.name = "xwait", .dealloc = xwait_dealloc};
    xwait_type = ouro_type_new(&xw);
    assert_non_null(node_type);
    assert_non_null(probe_type);
    assert_non_null(selfdec_type);
    assert_non_null(xwait_type);
}

/* ---- deferred callbacks that count, and one that holds the reclaimer ------------------------------ */

static atomic_long counted;
static void count_cb(void *arg) {
    (void)arg;
    atomic_fetch_add(&counted, 1);
}

static _Atomic int block_entered, block_release;
/* Holds the reclaimer (offline, so stops and forks go on) until block_release. */
static void blocking_cb(void *arg) {
    (void)arg;
    atomic_store(&block_entered, 1);
    ouro_offline_begin();
    while (!atomic_load(&block_release)) idle_ms(1);
    ouro_offline_end();
}

static void hold_reclaimer(void) {
    atomic_store(&block_entered, 0);
    atomic_store(&block_release, 0);
    assert_int_equal(ouro_defer(blocking_cb, NULL), 0);
    while (!atomic_load(&block_entered)) idle_ms(1);
}

/* ---- a full collection over objects without references (the fuzzer's find) ------------------------- */

/* The first full collection of a process, over candidates that refer to nothing: the scan's edge
 * array was never allocated, and the mark computed NULL + 0 (UBSan: gc/scan.c mark_refs). Runs first
 * in this file, in a child of a process that has made no full collection yet. */
static void child_scan_without_references(void) {
    alarm(CHILD_ALARM_S);
    ouro_gc_disable();
    ouro_object *o[16];
    for (int i = 0; i < 16; i++) CHILD_CHECK((o[i] = ouro_new(node_type)) != NULL, 2);
    CHILD_CHECK(ouro_gc_collect(2) == 0, 3);
    CHILD_CHECK(live_of(node_type) == 16, 4);
    for (int i = 0; i < 16; i++) ouro_decref(o[i]);
    CHILD_CHECK(live_of(node_type) == 0 && ouro_gc_collect(2) == 0, 5);
    _exit(0);
}

static void test_full_scan_without_references(void **state) {
    types_setup();
    expect_child_ok(child_scan_without_references, "full_scan_without_references");
}

/* ---- 1. GC queries return objects whose free is pending ------------------------------------------- */

/* A root holds a chain deeper than the dealloc depth limit and a probe; dropping the root frees the
 * chain down to the limit, puts the next node on the pending list (count 0), then frees the probe,
 * whose dealloc asks for the referrers of the node after the pending one. None may be returned: the
 * pending node's free is under way. */
static void child_query_pending(void) {
    alarm(CHILD_ALARM_S);
    ouro_gc_disable();
    enum { N = 120 };
    ouro_object *chain[N];
    for (int i = 0; i < N; i++) CHILD_CHECK((chain[i] = ouro_new(node_type)) != NULL, 2);
    for (int i = 0; i + 1 < N; i++) CHILD_CHECK(ouro_slot_set(chain[i], 0, chain[i + 1]) == 0, 2);
    ouro_object *root = ouro_new(node_type), *probe = ouro_new(probe_type);
    CHILD_CHECK(root && probe, 2);
    CHILD_CHECK(ouro_slot_set(root, 0, chain[0]) == 0 && ouro_slot_set(root, 1, probe) == 0, 2);
    ouro_decref(probe);
    for (int i = 0; i < N; i++) ouro_decref(chain[i]); /* the root holds chain[0], each node the next */
    probe_target = chain[48]; /* chain[47] is the node that waits (freed at depth 48) */
    ouro_decref(root);
    CHILD_CHECK(probe_result != NULL, 3);
    size_t n = ouro_list_size(probe_result);
    if (n) fprintf(stderr, "get_referrers returned %zu object(s) whose free was pending\n", n);
    CHILD_CHECK(n == 0, 4);
    ouro_decref(probe_result);
    ouro_gc_collect(2);
    CHILD_CHECK(live_of(node_type) == 0, 5);
    _exit(0);
}

static void test_query_skips_pending_free(void **state) {
    types_setup();
    expect_child_ok(child_query_pending, "query_skips_pending_free");
}

/* ---- 2. a fork child runs one reclaimer, started once its state is rebuilt ------------------------ */

static _Atomic int worker_ready, worker_go;

/* An attached worker whose objects were all freed (its emptied object pool is current), waiting. */
static void *emptied_worker(void *arg) {
    (void)arg;
    ouro_thread_attach();
    ouro_object *o[300];
    for (int i = 0; i < 300; i++) o[i] = ouro_float_from(i + 0.5);
    for (int i = 0; i < 300; i++) ouro_decref(o[i]);
    atomic_fetch_add(&worker_ready, 1);
    ouro_offline_begin();
    while (!atomic_load(&worker_go)) idle_ms(1);
    ouro_offline_end();
    ouro_thread_detach();
    return NULL;
}

static void child_one_reclaimer(void) {
    alarm(CHILD_ALARM_S);
    long before = atomic_load(&counted);
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 25; i++) CHILD_CHECK(ouro_defer(count_cb, NULL) == 0, 2);
        CHILD_CHECK(ouro_defer_barrier() == 0, 3);
        long got = atomic_load(&counted) - before;
        if (got != 25L * (round + 1)) fprintf(stderr, "round %d: %ld callbacks ran, expected %d\n", round, got, 25 * (round + 1));
        CHILD_CHECK(got == 25L * (round + 1), 4);
    }
    ouro_alloc_stats_t st;
    CHILD_CHECK(ouro_alloc_stats(&st) == 0 && st.pools_deferred == 0, 5);
#if !OURO_TSAN /* TSan's runtime may run a thread of its own */
    int tasks = test_task_count(false); /* this thread and one reclaimer (no stop here: no watchdog) */
    if (tasks != 2) fprintf(stderr, "%d threads in the child, expected 2 (this one and one reclaimer)\n", tasks);
    CHILD_CHECK(tasks == 2, 6);
#endif
    _exit(0);
}

static void test_fork_child_one_reclaimer(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    enum { W = 3 };
    pthread_t t[W];
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    for (int i = 0; i < W; i++) pthread_create(&t[i], NULL, emptied_worker, NULL);
    while (atomic_load(&worker_ready) != W) idle_ms(1);
    bool ok = true;
    for (int i = 0; i < 5 && ok; i++) ok = child_ok(child_one_reclaimer, "fork_child_one_reclaimer");
    atomic_store(&worker_go, 1);
    for (int i = 0; i < W; i++) join_offline(t[i]);
    assert_true(ok);
}

/* ---- 2b. a fork whose prepare starts one of ouro's threads ----------------------------------------
 * The first stop of a process starts the stop watchdog, and a fork's prepare stops the world: in a
 * process that never stopped before, the watchdog is started inside fork() itself. The fork must not
 * copy it half started (under ASan its start holds the sanitizer's allocator lock, and the grandchild's
 * first thread start hung on it every run: core/mem.c). The child (a fresh process, no watchdog yet)
 * attaches and forks; the grandchild starts a thread; both must end in time. */
static void *grandchild_thread(void *arg) {
    (void)arg;
    void *p = malloc(24), *q = ouro_alloc(24);
    free(p);
    ouro_free(q);
    return NULL;
}

static void child_forks_at_first_stop(void) {
    alarm(CHILD_ALARM_S);
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    enum { W = 3 }; /* attached threads, offline: the stop has threads to wait for, like a server's */
    pthread_t w[W];
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    for (int i = 0; i < W; i++) CHILD_CHECK(pthread_create(&w[i], NULL, emptied_worker, NULL) == 0, 2);
    while (atomic_load(&worker_ready) != W) idle_ms(1);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(CHILD_ALARM_S);
        pthread_t t;
        if (pthread_create(&t, NULL, grandchild_thread, NULL) != 0) _exit(2);
        pthread_join(t, NULL);
        _exit(0);
    }
    CHILD_CHECK(pid > 0, 3);
    int status = 0;
    CHILD_CHECK(waitpid(pid, &status, 0) == pid, 4);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "the grandchild %s %d\n", WIFEXITED(status) ? "exited" : "was killed by signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, 5);
    atomic_store(&worker_go, 1);
    for (int i = 0; i < W; i++) join_offline(w[i]);
    _exit(0);
}

static void test_fork_starts_a_thread_in_prepare(void **state) {
    for (int i = 0; i < 3; i++) expect_child_ok(child_forks_at_first_stop, "fork_starts_a_thread_in_prepare");
}

/* ---- 3. a fork child does not follow a barrier node on a vanished thread's stack ------------------ */

static _Atomic int in_barrier;
static void *barrier_waiter(void *arg) {
    (void)arg;
    ouro_thread_attach();
    atomic_fetch_add(&in_barrier, 1);
    ouro_defer_barrier(); /* waits behind blocking_cb */
    ouro_thread_detach();
    return NULL;
}

/* Threads that reuse the vanished threads' cached stacks and scribble over them. */
static void *scribbler(void *arg) {
    (void)arg;
    volatile char buf[256 * 1024];
    memset((char *)buf, 0xa5, sizeof buf);
    return NULL;
}

static void child_after_barrier_fork(void) {
    alarm(CHILD_ALARM_S);
    pthread_t s[4];
    for (int i = 0; i < 4; i++) pthread_create(&s[i], NULL, scribbler, NULL);
    for (int i = 0; i < 4; i++) join_offline(s[i]);
    long before = atomic_load(&counted);
    CHILD_CHECK(ouro_defer(count_cb, NULL) == 0, 2);
    CHILD_CHECK(ouro_defer_barrier() == 0, 3);
    CHILD_CHECK(atomic_load(&counted) == before + 1, 4);
    _exit(0);
}

static void test_fork_drops_vanished_barrier(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    hold_reclaimer();
    enum { W = 4 };
    pthread_t t[W];
    atomic_store(&in_barrier, 0);
    for (int i = 0; i < W; i++) pthread_create(&t[i], NULL, barrier_waiter, NULL);
    while (atomic_load(&in_barrier) != W) idle_ms(1);
    idle_ms(50); /* they are inside ouro_defer_barrier, offline */
    bool ok = child_ok(child_after_barrier_fork, "fork_drops_vanished_barrier");
    atomic_store(&block_release, 1);
    for (int i = 0; i < W; i++) join_offline(t[i]);
    assert_true(ok);
}

/* ---- 4. the refcount module's kick node after fork ------------------------------------------------ */

enum { KICK_DEFERS = 100, KICK_OBJS = 200 };
static ouro_object *kick_objs[KICK_OBJS];
static ouro_object *kick_one;

static void *drop_one(void *arg) {
    ouro_thread_attach();
    ouro_decref((ouro_object *)arg); /* a non-owner's drop below zero: queued to the owner */
    ouro_thread_detach();
    return NULL;
}

static void *drop_kick_objs(void *arg) {
    (void)arg;
    ouro_thread_attach();
    for (int i = 0; i < KICK_OBJS; i++) ouro_decref(kick_objs[i]);
    ouro_thread_detach();
    return NULL;
}

static void child_after_kick_fork(void) {
    alarm(CHILD_ALARM_S);
    /* The queue that made the kick pending is merged: the next drop finds it empty and asks for a
     * grace period again, while the kick node still sits in the carried-over queue. */
    ouro_refcount_merge_queued();
    /* The child's fresh thread drops objects the (surviving) main thread owns: each queues to it. */
    pthread_t t;
    pthread_create(&t, NULL, drop_kick_objs, NULL);
    join_offline(t);
    CHILD_CHECK(ouro_defer_barrier() == 0, 2);
    long got = atomic_load(&counted);
    if (got != KICK_DEFERS) fprintf(stderr, "%ld deferred callbacks ran in the child, expected %d\n", got, KICK_DEFERS);
    CHILD_CHECK(got == KICK_DEFERS, 3);
    ouro_refcount_merge_queued();
    for (int i = 0; i < KICK_OBJS; i++) ouro_decref(kick_objs[i]);
    CHILD_CHECK(ouro_defer_barrier() == 0, 4);
    CHILD_CHECK(atomic_load(&counted) == KICK_DEFERS, 5);
    _exit(0);
}

static void test_fork_kick_node_stays_queued(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    hold_reclaimer();
    atomic_store(&counted, 0);
    for (int i = 0; i < KICK_DEFERS / 2; i++) assert_int_equal(ouro_defer(count_cb, NULL), 0);
    /* A queue turns non-empty: the refcount module pushes its kick node behind them. */
    kick_one = ouro_float_from(1.25);
    ouro_incref(kick_one);
    pthread_t t;
    pthread_create(&t, NULL, drop_one, kick_one);
    join_offline(t);
    for (int i = KICK_DEFERS / 2; i < KICK_DEFERS; i++) assert_int_equal(ouro_defer(count_cb, NULL), 0);
    for (int i = 0; i < KICK_OBJS; i++) {
        kick_objs[i] = ouro_float_from(i + 0.25);
        ouro_incref(kick_objs[i]);
    }
    bool ok = child_ok(child_after_kick_fork, "fork_kick_node_stays_queued");
    atomic_store(&block_release, 1);
    assert_int_equal(ouro_defer_barrier(), 0);
    assert_int_equal(atomic_load(&counted), KICK_DEFERS);
    ouro_refcount_merge_queued();
    ouro_decref(kick_one);
    for (int i = 0; i < KICK_OBJS; i++) {
        ouro_decref(kick_objs[i]);
        ouro_decref(kick_objs[i]);
    }
    assert_true(ok);
}

/* ---- 5. ouro_fini keeps deferred work going ------------------------------------------------------- */

static void make_object_cb(void *arg) {
    (void)arg;
    ouro_object *o[64]; /* the reclaimer's own heap gets an object pool, emptied again */
    for (int i = 0; i < 64; i++) o[i] = ouro_float_from(i);
    for (int i = 0; i < 64; i++) ouro_xdecref(o[i]);
}

static void child_fini_then_defer(void) {
    alarm(CHILD_ALARM_S);
    for (int round = 0; round < 3; round++) {
        CHILD_CHECK(ouro_thread_attach() == 0, 2);
        CHILD_CHECK(ouro_defer(make_object_cb, NULL) == 0 && ouro_defer_barrier() == 0, 3);
        CHILD_CHECK(ouro_fini() == 0, 4);
        CHILD_CHECK(ouro_thread_attach() == 0, 5);
        long before = atomic_load(&counted);
        CHILD_CHECK(ouro_defer(count_cb, NULL) == 0, 6);
        CHILD_CHECK(ouro_defer_barrier() == 0, 7); /* hung when the reclaimer's exit stranded a node */
        CHILD_CHECK(atomic_load(&counted) == before + 1, 8);
        ouro_alloc_stats_t st;
        CHILD_CHECK(ouro_alloc_stats(&st) == 0 && st.pools_deferred == 0, 9);
        CHILD_CHECK(ouro_fini() == 0, 10);
    }
    _exit(0);
}

static void *attached_waiter(void *arg) {
    (void)arg;
    ouro_thread_attach();
    atomic_store(&worker_ready, 1);
    ouro_offline_begin();
    while (!atomic_load(&worker_go)) idle_ms(1);
    ouro_offline_end();
    ouro_thread_detach();
    return NULL;
}

static _Atomic int fini_in_callback = -100;
static void fini_cb(void *arg) {
    (void)arg;
    int r = ouro_fini();
    atomic_store(&fini_in_callback, r == -1 && ouro_err_occurred() == OURO_ERR_STATE ? 0 : 1);
}

/* A refused ouro_fini changes nothing: the reclaimer still runs. */
static void child_fini_refused(void) {
    alarm(CHILD_ALARM_S);
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    CHILD_CHECK(ouro_defer(fini_cb, NULL) == 0 && ouro_defer_barrier() == 0, 3);
    CHILD_CHECK(atomic_load(&fini_in_callback) == 0, 3); /* refused from a deferred callback */
    CHILD_CHECK(ouro_stop_the_world("fini") == 0, 3);
    CHILD_CHECK(ouro_fini() == -1 && ouro_err_occurred() == OURO_ERR_STATE, 3); /* refused: holds a stop */
    CHILD_CHECK(ouro_start_the_world() == 0, 3);
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    pthread_t t;
    pthread_create(&t, NULL, attached_waiter, NULL);
    while (!atomic_load(&worker_ready)) idle_ms(1);
    int before = test_task_count(false);
    CHILD_CHECK(ouro_fini() == -1 && ouro_err_occurred() == OURO_ERR_STATE, 4);
    int after = test_task_count(false);
    if (before != after) fprintf(stderr, "a refused ouro_fini took the thread count from %d to %d\n", before, after);
    CHILD_CHECK(before == after, 5);
    atomic_store(&worker_go, 1);
    join_offline(t);
    CHILD_CHECK(ouro_fini() == 0, 6);
    _exit(0);
}

static void test_fini_keeps_deferring(void **state) {
    expect_child_ok(child_fini_then_defer, "fini_then_defer");
    expect_child_ok(child_fini_refused, "fini_refused");
}

/* ---- 6. a thread that never attached and holds a stop -------------------------------------------- */

static _Atomic int unattached_result = -100;
static void *unattached_stopper_uses_objects(void *arg) {
    (void)arg;
    if (ouro_stop_the_world("unattached") != 0) return NULL;
    ouro_object *l = ouro_list_new(0); /* refused (or made): never a hang */
    int r = l ? 1 : (ouro_err_occurred() == OURO_ERR_STATE ? 0 : -1);
    ouro_start_the_world();
    ouro_xdecref(l);
    atomic_store(&unattached_result, r);
    return NULL;
}

static void child_unattached_stopper(void) {
    alarm(CHILD_ALARM_S);
    pthread_t t;
    pthread_create(&t, NULL, unattached_stopper_uses_objects, NULL);
    join_offline(t);
    CHILD_CHECK(atomic_load(&unattached_result) >= 0, 2);
    _exit(0);
}

static void *unattached_stopper_exits(void *arg) {
    if (arg) ouro_thread_attach(); /* the attached variant */
    ouro_stop_the_world("leaver");
    return NULL; /* exits holding the stop */
}

static void child_stopper_exits(void *attached) {
    alarm(CHILD_ALARM_S);
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    pthread_t t;
    ouro_offline_begin();
    pthread_create(&t, NULL, unattached_stopper_exits, attached);
    pthread_join(t, NULL);
    ouro_offline_end(); /* parks while the world is stopped: the exit must have started it */
    CHILD_CHECK(ouro_stop_the_world("after") == 0 && ouro_start_the_world() == 0, 3);
    _exit(0);
}

static void child_unattached_stopper_exits(void) { child_stopper_exits(NULL); }
static void child_attached_stopper_exits(void) { child_stopper_exits((void *)1); }

static void test_unattached_stopper(void **state) {
    expect_child_ok(child_unattached_stopper, "unattached_stopper");
    void (*children[])(void) = {child_unattached_stopper_exits, child_attached_stopper_exits};
    for (int i = 0; i < 2; i++) {
        char out[4096];
        int status = test_in_child(children[i], out, sizeof out);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child status %#x said: %s\n", status, out);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!strstr(out, "exits holding a stop")) fprintf(stderr, "no warning in: %s\n", out);
        assert_non_null(strstr(out, "exits holding a stop"));
    }
}

/* ---- 7. a thread's heap stays visible while its exit hooks run ----------------------------------- */

enum { EXIT_GC_OBJS = 50 };
static ouro_object *exit_gc_objs[EXIT_GC_OBJS];
static ouro_object *exit_x;

/* Owns X (queued to it: its exit hook frees X, whose dealloc waits) and GC objects the test holds. */
static void *exiting_owner(void *arg) {
    (void)arg;
    ouro_thread_attach();
    for (int i = 0; i < EXIT_GC_OBJS; i++) {
        exit_gc_objs[i] = ouro_new(node_type);
        ouro_incref(exit_gc_objs[i]); /* one for the test */
        ouro_decref(exit_gc_objs[i]);
    }
    exit_x = ouro_new(xwait_type);
    ouro_incref(exit_x); /* the test's reference, counted here: its drop queues X to us */
    atomic_store(&worker_ready, 1);
    ouro_offline_begin();
    while (!atomic_load(&worker_go)) idle_ms(1);
    ouro_offline_end();
    ouro_decref(exit_x); /* ours: X lives on the test's queued drop */
    return NULL;         /* exits attached: the refcount hook merges the queue and frees X */
}

static void child_heap_visible(void) {
    alarm(CHILD_ALARM_S);
    ouro_gc_disable();
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    atomic_store(&xwait_entered, 0);
    atomic_store(&xwait_release, 0);
    pthread_t t;
    pthread_create(&t, NULL, exiting_owner, NULL);
    while (!atomic_load(&worker_ready)) idle_ms(1);
    ouro_decref(exit_x); /* queued to its owner */
    atomic_store(&worker_go, 1);
    while (!atomic_load(&xwait_entered)) idle_ms(1);
    /* The owner is inside its exit hooks: its heap (and its GC objects) must still be walked. */
    ouro_object *all = ouro_gc_get_objects(-1);
    CHILD_CHECK(all != NULL, 3);
    int found = 0;
    for (int i = 0; i < EXIT_GC_OBJS; i++) found += ouro_list_contains(all, exit_gc_objs[i]) == 1;
    ouro_decref(all);
    if (found != EXIT_GC_OBJS) fprintf(stderr, "get_objects found %d of the exiting thread's %d objects\n", found, EXIT_GC_OBJS);
    CHILD_CHECK(found == EXIT_GC_OBJS, 4);
    atomic_store(&xwait_release, 1);
    join_offline(t);
    for (int i = 0; i < EXIT_GC_OBJS; i++) ouro_decref(exit_gc_objs[i]);
    CHILD_CHECK(live_of(node_type) == 0 && live_of(xwait_type) == 0, 5);
    _exit(0);
}

static void test_heap_visible_during_exit_hooks(void **state) {
    types_setup();
    expect_child_ok(child_heap_visible, "heap_visible_during_exit_hooks");
}

/* ---- 8. misuse and edge results ------------------------------------------------------------------- */

static void child_decref_freed(void) {
    ouro_object *a = ouro_float_from(2.5), *b = ouro_float_from(3.5);
    ouro_decref(a);
    ouro_decref(b);
    ouro_decref(b); /* b is freed: its first word is a free-list link to a */
    _exit(0);
}

static void test_decref_of_freed_object(void **state) {
#if OURO_REFCOUNT_ATOMIC && OURO_DEBUG_LEVEL == 0
    test_expect_abort(child_decref_freed, "no reference left to drop");
#else
    test_expect_abort(child_decref_freed, "decref of a freed object");
#endif
}

static void child_free_foreign(void) {
    alarm(CHILD_ALARM_S);
    static char global_block[64] __attribute__((aligned(16)));
    char stack_block[64] __attribute__((aligned(16)));
    void *small = malloc(64), *large = malloc(4 << 20);
    void *ptrs[] = {small, large, global_block, stack_block};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        ouro_err_clear();
        ouro_free(ptrs[i]);
        CHILD_CHECK(ouro_err_occurred() == OURO_ERR_INVALID, 2 + (int)i);
    }
    free(small);
    free(large);
    _exit(0);
}

static void test_free_of_foreign_pointer(void **state) { expect_child_ok(child_free_foreign, "free_of_foreign_pointer"); }

static void test_sizeof_static_objects(void **state) {
    ouro_object *objs[] = {OURO_NONE, ouro_bool_from(1), ouro_bool_from(0), ouro_int_from(0), ouro_int_from(256),
                           ouro_int_from(-5)};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++) {
        ouro_err_clear();
        size_t n = ouro_sizeof(objs[i]);
        if (n == 0 || n == (size_t)-1) fprintf(stderr, "ouro_sizeof(%s) = %zu: %s\n", ouro_type_name(objs[i]), n, ouro_err_message());
        assert_true(n >= sizeof(ouro_object) && n != (size_t)-1);
        assert_int_equal(ouro_err_occurred(), OURO_OK);
        ouro_decref(objs[i]);
    }
    /* a heap int is at least as big as a small one */
    ouro_object *big = ouro_int_from(1 << 20);
    assert_true(ouro_sizeof(big) >= ouro_sizeof(ouro_int_from(7)));
    ouro_decref(big);
}

static void *incref_then_wait(void *arg) {
    ouro_thread_attach();
    ouro_incref((ouro_object *)arg);
    atomic_store(&worker_ready, 1);
    while (!atomic_load(&worker_go)) idle_ms(1);
    atomic_store(&self_decref_armed, 1);
    ouro_decref((ouro_object *)arg); /* merged, count 1 -> 0: freed here, and its dealloc decrefs it again */
    ouro_thread_detach();
    return NULL;
}

static void child_merged_underflow(void) {
    alarm(CHILD_ALARM_S);
    ouro_object *o = ouro_new(selfdec_type);
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    pthread_t t;
    pthread_create(&t, NULL, incref_then_wait, o);
    while (!atomic_load(&worker_ready)) idle_ms(1);
    ouro_decref(o); /* the owner's last local reference: merged, count 1 */
    atomic_store(&worker_go, 1);
    join_offline(t);
    _exit(0);
}

static void test_merged_decref_below_zero(void **state) {
    types_setup();
    test_expect_abort(child_merged_underflow, "no reference left to drop");
}

static _Atomic int cb_entered, cb_finished;
static void slow_gc_callback(int phase, const ouro_gc_info *info, void *arg) {
    (void)info;
    if (phase != OURO_GC_START) return;
    atomic_store(&cb_entered, 1);
    sleep_ms(200);
    atomic_store((_Atomic int *)arg, 1); /* uses arg after the remover was told it could free it */
}

static void *collect_once(void *arg) {
    (void)arg;
    ouro_thread_attach();
    ouro_gc_collect(0);
    ouro_thread_detach();
    return NULL;
}

static void test_gc_callback_remove_waits(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    atomic_store(&cb_entered, 0);
    atomic_store(&cb_finished, 0);
    assert_int_equal(ouro_gc_callback_add(slow_gc_callback, &cb_finished), 0);
    pthread_t t;
    pthread_create(&t, NULL, collect_once, NULL);
    while (!atomic_load(&cb_entered)) idle_ms(1);
    int removed = ouro_gc_callback_remove(slow_gc_callback, &cb_finished);
    int finished = atomic_load(&cb_finished); /* it had returned: arg may go now */
    join_offline(t);
    assert_int_equal(removed, 0);
    assert_int_equal(finished, 1);
}

/* ---- 9. out of memory falls back ------------------------------------------------------------------ */

static void *drop_after_arm(void *arg) {
    ouro_thread_attach();
    ouro_object *warm = ouro_float_from(0.5); /* this thread's records exist before the fault */
    ouro_decref(warm);
    atomic_store(&worker_ready, 1);
    while (!atomic_load(&worker_go)) idle_ms(1);
    ouro_decref((ouro_object *)arg); /* queueing needs a chunk: the allocation fails */
    ouro_thread_detach();
    return NULL;
}

static void child_queue_oom(void) {
    alarm(CHILD_ALARM_S);
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    ouro_object *o = ouro_new(node_type);
    CHILD_CHECK(o != NULL, 2);
    ouro_incref(o);
    atomic_store(&worker_ready, 0);
    atomic_store(&worker_go, 0);
    pthread_t t;
    pthread_create(&t, NULL, drop_after_arm, o);
    while (!atomic_load(&worker_ready)) idle_ms(1);
    ouro_debug_fail_malloc(1);
    atomic_store(&worker_go, 1);
    join_offline(t);
    ouro_debug_fail_malloc(0);
    CHILD_CHECK(live_of(node_type) == 1 && ouro_refcount(o) == 1, 3);
    ouro_decref(o);
    ouro_refcount_merge_queued();
    CHILD_CHECK(live_of(node_type) == 0, 4);
    _exit(0);
}

/* Cycles of nodes; a collection whose nth internal allocation fails either collects all of them or
 * reports OURO_ERR_NOMEM and leaves every one intact. */
static void child_collect_oom(void) {
    alarm(CHILD_ALARM_S * 2);
    ouro_gc_disable();
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    enum { CYCLES = 3000 };
    for (unsigned long nth = 1; nth <= 40; nth++) {
        for (int g = 0; g <= 2; g += 2) {
            for (int i = 0; i < CYCLES; i++) {
                ouro_object *a = ouro_new(node_type), *b = ouro_new(node_type);
                CHILD_CHECK(a && b, 3);
                ouro_slot_set(a, 0, b);
                ouro_slot_set(b, 0, a);
                ouro_decref(a);
                ouro_decref(b);
            }
            ouro_err_clear();
            ouro_debug_fail_malloc(nth);
            long n = ouro_gc_collect(g);
            ouro_debug_fail_malloc(0);
            if (n == -1) {
                CHILD_CHECK(ouro_err_occurred() == OURO_ERR_NOMEM, 4);
                CHILD_CHECK(live_of(node_type) == 2 * CYCLES, 5); /* intact */
                n = ouro_gc_collect(2);
            }
            if (n != 2 * CYCLES) fprintf(stderr, "fault %lu, generation %d: collected %ld\n", nth, g, n);
            CHILD_CHECK(n == 2 * CYCLES, 6);
            CHILD_CHECK(live_of(node_type) == 0, 7);
        }
    }
    _exit(0);
}

/* The reclaimer's own attach (its thread record) fails: it waits and tries again instead of aborting
 * (the fuzzer's find). In a child whose reclaimer is not running yet: the deferral's record is the first
 * internal allocation, the reclaimer's record the second. */
static void child_reclaimer_oom(void) {
    alarm(CHILD_ALARM_S);
    long before = atomic_load(&counted);
    ouro_debug_fail_malloc(2);
    CHILD_CHECK(ouro_defer(count_cb, NULL) == 0, 2);
    CHILD_CHECK(ouro_defer_barrier() == 0, 3);
    ouro_debug_fail_malloc(0);
    CHILD_CHECK(atomic_load(&counted) == before + 1, 4);
    _exit(0);
}

static void test_out_of_memory_falls_back(void **state) {
    types_setup();
    expect_child_ok(child_queue_oom, "queue_oom");
    expect_child_ok(child_collect_oom, "collect_oom");
    assert_int_equal(ouro_fini(), 0); /* no reclaimer in this process: the child starts the first */
    char out[4096];
    int status = test_in_child(child_reclaimer_oom, out, sizeof out);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) || !strstr(out, "cannot attach")) fprintf(stderr, "child status %#x said: %s\n", status, out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "cannot attach")); /* the path under test was taken */
}

/* ---- 10. a collection's garbage does not wait for its owner --------------------------------------- */

enum { SLEEPERS = 3, SLEEPER_CYCLES = 2000 };
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static int sleep_done;

/* Makes cycles (it owns them), then sleeps offline on a condition variable like an idle worker. */
static void *cycle_sleeper(void *arg) {
    (void)arg;
    ouro_thread_attach();
    for (int i = 0; i < SLEEPER_CYCLES; i++) {
        ouro_object *a = ouro_new(node_type), *b = ouro_new(node_type);
        ouro_slot_set(a, 0, b);
        ouro_slot_set(b, 0, a);
        ouro_decref(a);
        ouro_decref(b);
    }
    atomic_fetch_add(&worker_ready, 1);
    ouro_offline_begin();
    pthread_mutex_lock(&sleep_lock);
    while (!sleep_done) pthread_cond_wait(&sleep_cond, &sleep_lock);
    pthread_mutex_unlock(&sleep_lock);
    ouro_offline_end();
    ouro_thread_detach();
    return NULL;
}

static void child_garbage_freed_now(void) {
    alarm(CHILD_ALARM_S);
    ouro_gc_disable();
    CHILD_CHECK(ouro_thread_attach() == 0, 2);
    atomic_store(&worker_ready, 0);
    pthread_t t[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++) pthread_create(&t[i], NULL, cycle_sleeper, NULL);
    while (atomic_load(&worker_ready) != SLEEPERS) idle_ms(1);
    long n = ouro_gc_collect(2);
    size_t live = live_of(node_type);
    if (live) fprintf(stderr, "collected %ld, %zu still live while their owners sleep\n", n, live);
    CHILD_CHECK(n == 2L * SLEEPERS * SLEEPER_CYCLES, 3);
    CHILD_CHECK(live == 0, 4);
    pthread_mutex_lock(&sleep_lock);
    sleep_done = 1;
    pthread_cond_broadcast(&sleep_cond);
    pthread_mutex_unlock(&sleep_lock);
    for (int i = 0; i < SLEEPERS; i++) join_offline(t[i]);
    _exit(0);
}

static void test_garbage_freed_while_owner_sleeps(void **state) {
    types_setup();
    expect_child_ok(child_garbage_freed_now, "garbage_freed_while_owner_sleeps");
}

/* ---- the outside review's finds (after the fixes above) ---------------------------------------------- */

/* Two workers contend for one list's lock while the main thread forks: a worker that waited for the
 * lock took it offline and came online holding it, so it could park for the fork's stop with the lock
 * held, and the child blocked for ever on a lock no thread of its holds. */
static ouro_object *contended_list;
static _Atomic int contend_stop;

static void *list_contender(void *arg) {
    (void)arg;
    ouro_thread_attach();
    for (long n = 0; !atomic_load(&contend_stop); n++) {
        ouro_safepoint(); /* the contract of a long loop: grace periods (the replaced arrays' frees) wait for it */
        ouro_list_append(contended_list, OURO_NONE);
        if (n % 64 == 63) ouro_list_clear(contended_list);
    }
    ouro_thread_detach();
    return NULL;
}

static void child_append_to_contended(void) {
    alarm(10);
    CHILD_CHECK(ouro_list_append(contended_list, OURO_NONE) == 0, 2);
    CHILD_CHECK(ouro_list_clear(contended_list) == 0, 3);
    _exit(0);
}

static void test_fork_while_a_list_lock_is_contended(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    contended_list = ouro_list_new(0);
    atomic_store(&contend_stop, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, list_contender, NULL);
    bool ok = true;
    for (int i = 0; i < 40 && ok; i++) ok = child_ok(child_append_to_contended, "fork_while_a_list_lock_is_contended");
    atomic_store(&contend_stop, 1);
    for (int i = 0; i < 2; i++) join_offline(t[i]);
    ouro_decref(contended_list);
    assert_true(ok);
}

/* ouro_fini after every other thread is joined: the reclaimer, caught attaching, never counts. */
static void *collect_and_defer(void *arg) {
    (void)arg;
    ouro_object *l = ouro_list_new(0);
    ouro_list_append(l, l);
    ouro_decref(l);
    ouro_gc_collect(2);
    ouro_defer(count_cb, NULL);
    return NULL;
}

static void child_fini_after_joins(void) {
    alarm(CHILD_ALARM_S * 2);
    for (int it = 0; it < (OURO_TSAN || test_memcheck() ? 40 : 400); it++) { /* threads start slowly under TSan, memcheck */
        CHILD_CHECK(ouro_thread_attach() == 0, 2);
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, collect_and_defer, NULL);
        for (int i = 0; i < 2; i++) join_offline(t[i]);
        if (ouro_fini() != 0) fprintf(stderr, "iteration %d: %s\n", it, ouro_err_message());
        CHILD_CHECK(ouro_err_occurred() == OURO_OK, 3);
    }
    _exit(0);
}

static void test_fini_after_joins(void **state) { expect_child_ok(child_fini_after_joins, "fini_after_joins"); }

/* ouro_init: the same configuration again is accepted, another is refused until ouro_fini. */
static void child_init_twice(void) {
    alarm(CHILD_ALARM_S);
    CHILD_CHECK(ouro_fini() == 0, 2); /* whatever the parent configured */
    ouro_config c = {.size = sizeof c, .stop_warn_ms = 500}, d = {.size = sizeof d, .stop_warn_ms = 700};
    CHILD_CHECK(ouro_init(&c) == 0 && ouro_init(&c) == 0, 3);
    CHILD_CHECK(ouro_init(&d) == -1 && ouro_err_occurred() == OURO_ERR_STATE, 4);
    ouro_err_clear();
    CHILD_CHECK(ouro_init(NULL) == 0, 5);
    CHILD_CHECK(ouro_fini() == 0 && ouro_init(&d) == 0, 6);
    _exit(0);
}

static void test_init_twice(void **state) { expect_child_ok(child_init_twice, "init_twice"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_scan_without_references), /* first: no full collection before it */
        cmocka_unit_test(test_query_skips_pending_free),
        cmocka_unit_test(test_fork_child_one_reclaimer),
        cmocka_unit_test(test_fork_starts_a_thread_in_prepare),
        cmocka_unit_test(test_fork_drops_vanished_barrier),
        cmocka_unit_test(test_fork_kick_node_stays_queued),
        cmocka_unit_test(test_fini_keeps_deferring),
        cmocka_unit_test(test_unattached_stopper),
        cmocka_unit_test(test_heap_visible_during_exit_hooks),
        cmocka_unit_test(test_decref_of_freed_object),
        cmocka_unit_test(test_free_of_foreign_pointer),
        cmocka_unit_test(test_sizeof_static_objects),
        cmocka_unit_test(test_merged_decref_below_zero),
        cmocka_unit_test(test_gc_callback_remove_waits),
        cmocka_unit_test(test_out_of_memory_falls_back),
        cmocka_unit_test(test_garbage_freed_while_owner_sleeps),
        cmocka_unit_test(test_fork_while_a_list_lock_is_contended),
        cmocka_unit_test(test_fini_after_joins),
        cmocka_unit_test(test_init_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
