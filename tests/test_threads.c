/* tests/test_threads.c — attach/detach, offline sections, safepoints and stop-the-world.
 * Workers record what they saw; the test thread asserts after join. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <time.h>

#include "ouro/lock.h"

#define OURO_BUILD_CORE 1 /* white box: the exit-hook table */
#include "threads/internal.h"

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
static void *_Atomic exit_keep; /* reachable: memcheck's leak check (the memcheck step) would call it lost */

static void *exits_during_stop(void *arg) {
    ouro_thread_attach();
    atomic_store(&exit_keep, ouro_alloc(100)); /* the heap has a block: abandoning touches the arena */
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

/* ---- a forked child works ---------------------------------------------------------------------------- */
enum { FORK_WORKERS = 3, FORK_BLOCKS = 200 };
static void *fork_blocks[FORK_WORKERS][FORK_BLOCKS]; /* published by each worker before fork_ready */
static atomic_int fork_ready, fork_run;

static void *fork_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    ouro_thread_attach();
    for (int i = 0; i < FORK_BLOCKS; i++) {
        fork_blocks[id][i] = ouro_alloc(48);
        memset(fork_blocks[id][i], 0x40 + id, 48);
    }
    atomic_fetch_add(&fork_ready, 1);
    while (atomic_load_explicit(&fork_run, memory_order_relaxed)) { /* keep allocating */
        void *p = ouro_alloc(16 + (size_t)(id * 24));
        ouro_free(p);
        ouro_safepoint();
    }
    for (int i = 0; i < FORK_BLOCKS; i++) ouro_free(fork_blocks[id][i]);
    return NULL;
}

static atomic_int child_deferred_ran;
static void child_deferred(void *arg) { atomic_fetch_add(&child_deferred_ran, (int)(intptr_t)arg); }

static void *child_thread(void *arg) {
    if (ouro_thread_attach() != 0) return (void *)1;
    void *p = ouro_alloc(300);
    ouro_free(p);
    ouro_thread_detach();
    return NULL;
}

/* In the child: only this thread is attached; the workers' heaps were abandoned, their blocks can be
 * freed here; the child allocates, starts threads, stops the world, defers, and exits cleanly. */
static void child_after_fork(void) {
#define CHILD_CHECK(c) do { if (!(c)) { fprintf(stderr, "child check failed: %s\n", #c); _exit(3); } } while (0)
    ouro_alloc_stats_t st0, st1;
    CHILD_CHECK(ouro_alloc_stats(&st0) == 0);
    CHILD_CHECK(st0.heaps == 1); /* the forking thread's; the workers' are abandoned */
    CHILD_CHECK(st0.pools_abandoned > 0);
    for (int id = 0; id < FORK_WORKERS; id++)
        for (int i = 0; i < FORK_BLOCKS; i++) {
            unsigned char *b = fork_blocks[id][i];
            for (int k = 0; k < 48; k++) CHILD_CHECK(b[k] == 0x40 + id);
            ouro_free(b);
        }
    CHILD_CHECK(ouro_alloc_stats(&st1) == 0);
    CHILD_CHECK(test_blocks_in_use(&st1) == test_blocks_in_use(&st0) - FORK_WORKERS * FORK_BLOCKS);
    void *p = ouro_alloc(1000);
    CHILD_CHECK(p != NULL);
    ouro_free(p);
    pthread_t t;
    void *r = (void *)9;
    CHILD_CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0);
    pthread_join(t, &r);
    CHILD_CHECK(r == NULL);
    CHILD_CHECK(ouro_stop_the_world("child") == 0);
    CHILD_CHECK(ouro_start_the_world() == 0);
    CHILD_CHECK(ouro_defer(child_deferred, (void *)5) == 0);
    CHILD_CHECK(ouro_defer_barrier() == 0);
    CHILD_CHECK(atomic_load(&child_deferred_ran) == 5);
    CHILD_CHECK(ouro_synchronize() == 0);
    CHILD_CHECK(ouro_thread_detach() == 0);
    CHILD_CHECK(ouro_fini() == 0);
#undef CHILD_CHECK
}

static void test_fork_child_works(void **state) {
    assert_int_equal(ouro_thread_attach(), 0);
    pthread_t th[FORK_WORKERS];
    atomic_store(&fork_ready, 0);
    atomic_store(&fork_run, 1);
    for (int i = 0; i < FORK_WORKERS; i++) pthread_create(&th[i], NULL, fork_worker, (void *)(intptr_t)i);
    while (atomic_load(&fork_ready) != FORK_WORKERS) sleep_ms(1);
    for (int round = 0; round < 3; round++) {
        char out[4096];
        int status = test_in_child(child_after_fork, out, sizeof out);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child status %#x said: %s\n", status, out);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* The parent goes on: its workers still run and free their blocks. */
    atomic_store(&fork_run, 0);
    for (int i = 0; i < FORK_WORKERS; i++) pthread_join(th[i], NULL);
    assert_int_equal(ouro_stop_the_world("after fork"), 0);
    assert_int_equal(ouro_start_the_world(), 0);
    assert_int_equal(ouro_thread_detach(), 0);
}

/* ---- a deferred callback waits for every thread's quiescent state ----------------------------------- */
static atomic_int reader_phase; /* 1: reading (online, no safepoint); 2: may pass a safepoint; 3: passed */
static atomic_int reader_passed; /* set just before the reader's safepoint */
static atomic_int deferred_saw_passed = -1;

static void *slow_reader(void *arg) {
    ouro_thread_attach();
    ouro_safepoint();
    atomic_store(&reader_phase, 1);
    while (atomic_load(&reader_phase) != 2) { /* a read-side section: online, no quiescent state */
    }
    atomic_store(&reader_passed, 1);
    ouro_safepoint();
    atomic_store(&reader_phase, 3);
    ouro_offline_begin(); /* offline: delays no grace period */
    while (atomic_load(&reader_phase) != 4) sleep_ms(1);
    ouro_offline_end();
    ouro_thread_detach();
    return NULL;
}

static void record_reader_passed(void *arg) {
    atomic_store(&deferred_saw_passed, atomic_load(&reader_passed));
    *(int *)arg = 1; /* plain write read by the test after the barrier: TSan checks the edge */
}

static void test_defer_waits_for_quiescent_states(void **state) {
    static int ran;
    pthread_t t;
    atomic_store(&reader_phase, 0);
    atomic_store(&reader_passed, 0);
    pthread_create(&t, NULL, slow_reader, NULL);
    while (atomic_load(&reader_phase) != 1) sleep_ms(1);
    assert_int_equal(ouro_defer(record_reader_passed, &ran), 0);
    sleep_ms(100);
    assert_int_equal(atomic_load(&deferred_saw_passed), -1); /* the reader has not passed one */
    atomic_store(&reader_phase, 2);
    assert_int_equal(ouro_defer_barrier(), 0);
    assert_int_equal(atomic_load(&deferred_saw_passed), 1);
    assert_int_equal(ran, 1);
    while (atomic_load(&reader_phase) != 3) sleep_ms(1);
    /* The reader is offline now: a grace period does not wait for it. */
    double t0 = now_s();
    assert_int_equal(ouro_synchronize(), 0);
    assert_int_equal(ouro_defer(record_reader_passed, &ran), 0);
    assert_int_equal(ouro_defer_barrier(), 0);
    assert_true(now_s() - t0 < 2.0);
    atomic_store(&reader_phase, 4);
    pthread_join(t, NULL);
}

/* ---- back-pressure: pushers wait while the reclaimer works through an oversized batch -------------------- */
enum { FLOOD_NODES = 3 << 16, FLOOD_PUSHERS = 2 }; /* together three times the congestion threshold */
static atomic_int flood_gate;     /* 0: the reclaimer is held in gate_callback; 1: released */
static atomic_long flood_ran;
static atomic_int flood_pushed;   /* pushers done pushing */
static atomic_int flood_go_on;    /* pushers may stop polling safepoints */
static atomic_ulong flood_waits;  /* throttled waits the pushers saw */
static atomic_int flood_in_gate;  /* the reclaimer reached gate_callback */

static void gate_callback(void *arg) {
    (void)arg;
    atomic_store(&flood_in_gate, 1);
    ouro_offline_begin(); /* holds the reclaimer without holding grace periods */
    while (!atomic_load(&flood_gate)) sleep_ms(1);
    ouro_offline_end();
}

static void flood_callback(void *arg) {
    (void)arg;
    atomic_fetch_add_explicit(&flood_ran, 1, memory_order_relaxed);
}

static void *flood_pusher(void *arg) {
    (void)arg;
    ouro_thread_attach();
    for (int i = 0; i < FLOOD_NODES / FLOOD_PUSHERS; i++) {
        if (ouro_defer(flood_callback, NULL) != 0) abort();
        ouro_safepoint();
    }
    atomic_fetch_add(&flood_pushed, 1);
    unsigned long before = _ouro_defer_throttled();
    while (!atomic_load(&flood_go_on)) { /* the reclaimer's next grace period sends these to the throttle */
        ouro_safepoint();
        if (_ouro_defer_throttled() != before) atomic_store(&flood_waits, _ouro_defer_throttled() - before);
        sched_yield();
    }
    ouro_thread_detach();
    return NULL;
}

static void test_defer_backpressure(void **state) {
    atomic_store(&flood_gate, 0);
    atomic_store(&flood_ran, 0);
    atomic_store(&flood_pushed, 0);
    atomic_store(&flood_go_on, 0);
    atomic_store(&flood_waits, 0);
    assert_int_equal(ouro_defer(gate_callback, NULL), 0);
    bool offline = ouro_offline_begin() == 0; /* this thread's waits must not hold grace periods */
    if (!offline) ouro_err_clear();
    while (!atomic_load(&flood_in_gate)) sleep_ms(1);
    pthread_t t[FLOOD_PUSHERS];
    for (int i = 0; i < FLOOD_PUSHERS; i++) pthread_create(&t[i], NULL, flood_pusher, NULL);
    while (atomic_load(&flood_pushed) != FLOOD_PUSHERS) sleep_ms(1);
    assert_int_equal(atomic_load(&flood_ran), 0); /* all queued behind the gate */
    atomic_store(&flood_gate, 1); /* the reclaimer's next batch is three times the threshold */
    for (int ms = 0; ms < 20000 && !atomic_load(&flood_waits); ms++) sleep_ms(1);
    atomic_store(&flood_go_on, 1);
    for (int i = 0; i < FLOOD_PUSHERS; i++) pthread_join(t[i], NULL);
    if (offline) ouro_offline_end();
    assert_int_equal(ouro_defer_barrier(), 0);
    assert_true(atomic_load(&flood_waits) > 0);
    assert_int_equal(atomic_load(&flood_ran), FLOOD_NODES / FLOOD_PUSHERS * FLOOD_PUSHERS);
    atomic_store(&flood_in_gate, 0);
}

/* ---- errors of the runtime and the deferral API ---------------------------------------------------- */
static atomic_int nested_result = 99;
static void nested_barrier(void *arg) {
    ouro_err_clear();
    int r = ouro_defer_barrier();
    int s = ouro_synchronize();
    atomic_store(&nested_result, r == -1 && s == -1 && ouro_err_occurred() == OURO_ERR_STATE ? 0 : 1);
}

static void test_runtime_errors(void **state) {
    ouro_err_clear();
    assert_int_equal(ouro_defer(NULL, NULL), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_config bad = {.size = sizeof bad + 8};
    assert_int_equal(ouro_init(&bad), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_init(NULL), 0); /* defaults: always fine */
    /* From a callback, barrier and synchronize would wait for themselves. */
    assert_int_equal(ouro_defer(nested_barrier, NULL), 0);
    assert_int_equal(ouro_defer_barrier(), 0);
    assert_int_equal(atomic_load(&nested_result), 0);
    /* Nor while holding a stop (the reclaimer may be parked). */
    assert_int_equal(ouro_stop_the_world("errors"), 0);
    ouro_err_clear();
    assert_int_equal(ouro_defer_barrier(), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_synchronize(), -1);
    assert_int_equal(ouro_start_the_world(), 0);
    ouro_err_clear();
}

/* ---- the object lock -------------------------------------------------------------------------------- */
enum { LOCKERS = 4, LOCK_ROUNDS = 20000 };
static ouro_lock_t shared_lock = OURO_LOCK_INIT;
static long locked_counter; /* plain: only under shared_lock */
static int lock_inside;     /* plain: 0 outside, 1 inside; checked under the lock */
static atomic_int lock_violations;

static void *locker(void *arg) {
    bool attach = (intptr_t)arg & 1; /* half attached, half not */
    if (attach) ouro_thread_attach();
    for (int i = 0; i < LOCK_ROUNDS; i++) {
        if (ouro_lock(&shared_lock) != 0) atomic_fetch_add(&lock_violations, 1);
        if (lock_inside++ != 0) atomic_fetch_add(&lock_violations, 1);
        locked_counter++;
        if (i % 512 == 0) sched_yield(); /* hold it across a reschedule: waiters park */
        lock_inside--;
        if (ouro_unlock(&shared_lock) != 0) atomic_fetch_add(&lock_violations, 1);
        if (attach) ouro_safepoint();
    }
    if (attach) ouro_thread_detach();
    return NULL;
}

static void test_lock_mutual_exclusion(void **state) {
    pthread_t th[LOCKERS];
    for (intptr_t i = 0; i < LOCKERS; i++) pthread_create(&th[i], NULL, locker, (void *)i);
    /* Stops while lockers contend: a waiter is offline, a holder may park holding the lock. */
    for (int s = 0; s < 20; s++) {
        assert_int_equal(ouro_stop_the_world("lock test"), 0);
        assert_int_equal(ouro_start_the_world(), 0);
        sleep_ms(1);
    }
    for (int i = 0; i < LOCKERS; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&lock_violations), 0);
    assert_int_equal(locked_counter, (long)LOCKERS * LOCK_ROUNDS);
    assert_false(ouro_lock_is_held(&shared_lock));
}

static ouro_lock_t held_lock = OURO_LOCK_INIT;
static atomic_int waiter_phase;

static void *lock_waiter(void *arg) {
    ouro_thread_attach();
    atomic_store(&waiter_phase, 1);
    ouro_lock(&held_lock); /* waits (offline) until the main thread unlocks */
    atomic_store(&waiter_phase, 2);
    ouro_unlock(&held_lock);
    ouro_thread_detach();
    return NULL;
}

static void test_lock_waiter_does_not_stall_stop(void **state) {
    assert_int_equal(ouro_lock(&held_lock), 0);
    assert_true(ouro_lock_is_held(&held_lock));
    assert_false(ouro_lock_try(&held_lock));
    pthread_t t;
    atomic_store(&waiter_phase, 0);
    pthread_create(&t, NULL, lock_waiter, NULL);
    while (atomic_load(&waiter_phase) != 1) sleep_ms(1);
    sleep_ms(50); /* past the spins: parked */
    double t0 = now_s();
    assert_int_equal(ouro_stop_the_world("waiter"), 0);
    double took = now_s() - t0;
    assert_int_equal(ouro_start_the_world(), 0);
    assert_true(took < 0.5);
    assert_int_equal(atomic_load(&waiter_phase), 1);
    assert_int_equal(ouro_unlock(&held_lock), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&waiter_phase), 2);
    assert_false(ouro_lock_is_held(&held_lock));
    /* Errors. */
    ouro_err_clear();
    assert_int_equal(ouro_unlock(&held_lock), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_lock(NULL), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_unlock(NULL), -1);
    assert_false(ouro_lock_try(NULL));
    assert_false(ouro_lock_is_held(NULL));
    ouro_err_clear();
}

/* ---- attach, name and detach while another thread stops the world (regression: naming took the
 * registry lock online, which the stopper holds while it waits for online threads) ------------------ */
static atomic_int namers_run;

static void *namer(void *arg) {
    while (atomic_load(&namers_run)) {
        ouro_thread_attach();
        ouro_thread_set_name("namer");
        void *p = ouro_alloc(32);
        ouro_free(p);
        ouro_safepoint();
        ouro_thread_detach();
    }
    return NULL;
}

static void test_name_and_attach_during_stops(void **state) {
    pthread_t t[2];
    atomic_store(&namers_run, 1);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, namer, NULL);
    assert_int_equal(ouro_thread_attach(), 0); /* an attached stopper too */
    for (int s = 0; s < 300; s++) {
        assert_int_equal(ouro_stop_the_world("namers"), 0);
        assert_int_equal(ouro_thread_set_name("stopper"), 0); /* holds the registry lock: allowed */
        ouro_err_clear();
        assert_int_equal(ouro_fini(), -1); /* not while holding a stop */
        assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
        assert_int_equal(ouro_start_the_world(), 0);
        if (s % 50 == 0) assert_int_equal(ouro_synchronize(), 0);
    }
    atomic_store(&namers_run, 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_int_equal(ouro_thread_detach(), 0);
    ouro_err_clear();
}

/* ---- exit hooks run in order, online, before the heap is abandoned ---------------------------------- */
static __thread bool hook_thread; /* only the test's thread records */
static int hook_log[4], hook_n;    /* written by the exiting thread, read after join */

static void hook_record(int id) {
    if (!hook_thread || hook_n >= 4) return;
    void *p = ouro_alloc(64); /* the heap is still the thread's */
    hook_log[hook_n++] = p && ouro_alloc_check() == 0 ? id : -id;
    ouro_free(p);
}
static void hook_late(void) { hook_record(50); }
static void hook_early(void) { hook_record(5); }

static void *exits_with_hooks(void *arg) {
    ouro_thread_attach();
    hook_thread = true;
    void *keep = ouro_alloc(80);
    (void)keep;
    return NULL; /* exits attached */
}

static void test_exit_hooks_ordered(void **state) {
    assert_int_equal(_ouro_thread_exit_hook_add(50, hook_late), 0);
    assert_int_equal(_ouro_thread_exit_hook_add(5, hook_early), 0);
    ouro_err_clear();
    assert_int_equal(_ouro_thread_exit_hook_add(1, NULL), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_alloc_stats_t base;
    ouro_alloc_stats(&base);
    pthread_t t;
    pthread_create(&t, NULL, exits_with_hooks, NULL);
    pthread_join(t, NULL);
    assert_int_equal(hook_n, 2);
    assert_int_equal(hook_log[0], 5);
    assert_int_equal(hook_log[1], 50);
    ouro_alloc_stats_t after;
    ouro_alloc_stats(&after);
    assert_int_equal(after.heaps, base.heaps); /* then the heap hook abandoned the heap */
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
        cmocka_unit_test(test_fork_child_works),
        cmocka_unit_test(test_defer_waits_for_quiescent_states),
        cmocka_unit_test(test_defer_backpressure),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_lock_mutual_exclusion),
        cmocka_unit_test(test_lock_waiter_does_not_stall_stop),
        cmocka_unit_test(test_exit_hooks_ordered),
        cmocka_unit_test(test_name_and_attach_during_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
