/* tests/test_threads.c — attach/detach, offline sections, safepoints and stop-the-world.
 * Workers record what they saw; the test thread asserts after join. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void test_attach_detach_idempotent(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    assert_int_equal(ouro_thread_attach(), 0);
    assert_int_equal(ouro_thread_set_name("main"), 0);
    assert_int_equal(ouro_thread_set_name(NULL), -1);
    assert_int_equal(ouro_thread_detach(), 0);
    assert_int_equal(ouro_thread_detach(), 0);
    ouro_err_clear();
    assert_int_equal(ouro_offline_begin(), -1); /* not attached */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_thread_attach(), 0);
    assert_int_equal(ouro_offline_end(), -1); /* not offline */
    assert_int_equal(ouro_offline_begin(), 0);
    assert_int_equal(ouro_offline_begin(), 0); /* nests */
    assert_int_equal(ouro_thread_detach(), -1); /* inside an offline section */
    assert_int_equal(ouro_offline_end(), 0);
    assert_int_equal(ouro_offline_end(), 0);
    ouro_safepoint();
    assert_int_equal(ouro_start_the_world(), -1); /* holds no stop */
    assert_int_equal(ouro_thread_detach(), 0);
    ouro_err_clear();
}

/* ---- a stop excludes every mutator ------------------------------------------------------------------ */
enum { MUTATORS = 3, STOPS = 30 };
static long counters[MUTATORS]; /* plain: written by its mutator while online, read by the stopper */
static atomic_int mutators_run;

static void *mutator(void *arg) {
    long *mine = arg;
    ouro_thread_attach();
    while (atomic_load_explicit(&mutators_run, memory_order_relaxed)) {
        (*mine)++;
        void *p = ouro_alloc(64 + (size_t)(*mine % 512));
        ouro_free(p);
        ouro_safepoint();
    }
    return NULL; /* exits attached: the exit hook detaches */
}

static void test_stop_excludes_mutators(void **state) {
    pthread_t th[MUTATORS];
    atomic_store(&mutators_run, 1);
    for (int i = 0; i < MUTATORS; i++) pthread_create(&th[i], NULL, mutator, &counters[i]);
    sleep_ms(20);
    long moved = 0, seen[MUTATORS], before[MUTATORS] = {0};
    for (int s = 0; s < STOPS; s++) {
        assert_int_equal(ouro_stop_the_world("test"), 0);
        for (int i = 0; i < MUTATORS; i++) seen[i] = counters[i];
        sleep_ms(5);
        for (int i = 0; i < MUTATORS; i++) moved += counters[i] - seen[i]; /* must stay 0 */
        for (int i = 0; i < MUTATORS; i++) {
            assert_true(counters[i] >= before[i]);
            before[i] = counters[i];
        }
        assert_int_equal(ouro_start_the_world(), 0);
        sleep_ms(2);
    }
    assert_int_equal(moved, 0);
    atomic_store(&mutators_run, 0);
    for (int i = 0; i < MUTATORS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < MUTATORS; i++) assert_true(counters[i] > 0);
}

/* ---- a thread blocked offline does not delay a stop ------------------------------------------------ */
static atomic_int blocked_ready;

static void *blocked_in_syscall(void *arg) {
    ouro_thread_attach();
    ouro_offline_begin();
    atomic_store(&blocked_ready, 1);
    sleep_ms(5000); /* a blocking call, offline */
    ouro_offline_end();
    ouro_thread_detach();
    return NULL;
}

static void test_offline_does_not_delay_stop(void **state) {
    pthread_t t;
    pthread_create(&t, NULL, blocked_in_syscall, NULL);
    while (!atomic_load(&blocked_ready)) sleep_ms(1);
    double t0 = now_s();
    assert_int_equal(ouro_stop_the_world("offline test"), 0);
    double took = now_s() - t0;
    assert_int_equal(ouro_start_the_world(), 0);
    pthread_join(t, NULL);
    assert_true(took < 1.0);
}

/* ---- a thread coming online during a stop waits ---------------------------------------------------- */
static atomic_int online_phase;

static void *comes_online(void *arg) {
    ouro_thread_attach();
    ouro_offline_begin();
    atomic_store(&online_phase, 1);
    while (atomic_load(&online_phase) != 2) sleep_ms(1); /* the main thread stops the world */
    ouro_offline_end();                                   /* must wait for the start */
    atomic_store(&online_phase, 3);
    ouro_thread_detach();
    return NULL;
}

static void test_online_during_stop_waits(void **state) {
    pthread_t t;
    atomic_store(&online_phase, 0);
    pthread_create(&t, NULL, comes_online, NULL);
    while (atomic_load(&online_phase) != 1) sleep_ms(1);
    assert_int_equal(ouro_stop_the_world("online test"), 0);
    atomic_store(&online_phase, 2);
    sleep_ms(100);
    int during = atomic_load(&online_phase);
    assert_int_equal(ouro_start_the_world(), 0);
    pthread_join(t, NULL);
    assert_int_equal(during, 2);
    assert_int_equal(atomic_load(&online_phase), 3);
}

/* ---- a thread exits during a stop ----------------------------------------------------------------------- */
static atomic_int exit_phase;

static void *exits_during_stop(void *arg) {
    ouro_thread_attach();
    void *keep = ouro_alloc(100); /* the heap has a block: abandoning touches the arena */
    (void)keep;
    ouro_offline_begin();
    atomic_store(&exit_phase, 1);
    while (atomic_load(&exit_phase) != 2) sleep_ms(1);
    return NULL; /* exits offline during the stop: its heap waits for the start */
}

static void test_exit_during_stop(void **state) {
    ouro_alloc_stats_t base;
    ouro_alloc_stats(&base);
    pthread_t t;
    atomic_store(&exit_phase, 0);
    pthread_create(&t, NULL, exits_during_stop, NULL);
    while (atomic_load(&exit_phase) != 1) sleep_ms(1);
    assert_int_equal(ouro_stop_the_world("exit test"), 0);
    ouro_alloc_stats_t during;
    atomic_store(&exit_phase, 2);
    sleep_ms(100);
    ouro_alloc_stats(&during); /* the exiting thread is parked: its heap is still live */
    assert_int_equal(ouro_start_the_world(), 0);
    pthread_join(t, NULL);
    assert_int_equal(during.heaps, base.heaps + 1);
    assert_int_equal(during.pools_abandoned, base.pools_abandoned);
    ouro_alloc_stats_t after;
    ouro_alloc_stats(&after);
    assert_int_equal(after.heaps, base.heaps);
}

/* ---- stops from several threads, unattached stopper, nested stop ------------------------------------- */
static void *stopper_loop(void *arg) {
    for (int i = 0; i < 20; i++) {
        if (ouro_stop_the_world("concurrent") != 0) return (void *)1;
        if (ouro_start_the_world() != 0) return (void *)2;
    }
    return NULL;
}

static void *attached_stopper_loop(void *arg) {
    ouro_thread_attach();
    void *r = stopper_loop(arg);
    ouro_thread_detach();
    return r;
}

static void test_concurrent_stoppers(void **state) {
    pthread_t mut[MUTATORS], st[3];
    atomic_store(&mutators_run, 1);
    for (int i = 0; i < MUTATORS; i++) pthread_create(&mut[i], NULL, mutator, &counters[i]);
    pthread_create(&st[0], NULL, stopper_loop, NULL); /* not attached */
    pthread_create(&st[1], NULL, attached_stopper_loop, NULL);
    pthread_create(&st[2], NULL, attached_stopper_loop, NULL);
    void *r[3];
    for (int i = 0; i < 3; i++) pthread_join(st[i], &r[i]);
    atomic_store(&mutators_run, 0);
    for (int i = 0; i < MUTATORS; i++) pthread_join(mut[i], NULL);
    for (int i = 0; i < 3; i++) assert_null(r[i]);
    /* A stop while holding one is refused. */
    assert_int_equal(ouro_stop_the_world("outer"), 0);
    ouro_err_clear();
    assert_int_equal(ouro_stop_the_world("inner"), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_start_the_world(), 0);
    ouro_err_clear();
}

/* ---- the slow-stop diagnostic (in a child: stderr is captured) ---------------------------------------- */
static atomic_int spin_go;

static void *spins_without_safepoint(void *arg) {
    ouro_thread_attach();
    ouro_thread_set_name("spinner");
    atomic_store(&spin_go, 1);
    double t0 = now_s();
    while (now_s() - t0 < 0.5) {
    } /* online, no safepoint for half a second */
    ouro_safepoint();
    ouro_thread_detach();
    return NULL;
}

static void child_slow_stop(void) {
    ouro_config cfg = {.size = sizeof cfg, .stop_warn_ms = 100};
    ouro_init(&cfg);
    pthread_t t;
    pthread_create(&t, NULL, spins_without_safepoint, NULL);
    while (!atomic_load(&spin_go)) sleep_ms(1);
    ouro_stop_the_world("diagnostic test");
    ouro_start_the_world();
    pthread_join(t, NULL);
    fflush(stderr);
}

static void test_slow_stop_diagnostic(void **state) {
    char out[8192];
    int status = test_in_child(child_slow_stop, out, sizeof out);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child status %#x said: %s\n", status, out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!strstr(out, "(spinner) has not reached a safepoint")) fprintf(stderr, "child said: %s\n", out);
    assert_non_null(strstr(out, "stop 'diagnostic test' waiting"));
    assert_non_null(strstr(out, "(spinner) has not reached a safepoint"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_detach_idempotent),
        cmocka_unit_test(test_stop_excludes_mutators),
        cmocka_unit_test(test_offline_does_not_delay_stop),
        cmocka_unit_test(test_online_during_stop_waits),
        cmocka_unit_test(test_exit_during_stop),
        cmocka_unit_test(test_concurrent_stoppers),
        cmocka_unit_test(test_slow_stop_diagnostic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
