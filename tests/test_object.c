/* tests/test_object.c — the object header and biased reference counting: every path (owner, non-owner,
 * queue, merge, owner exit with queued objects, objects of an exited owner), each object freed exactly
 * once (per-type counts back to baseline), immortality, errors. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define CANARY 0x5eed0b1ec7ull

typedef struct {
    ouro_object head;
    uint64_t canary;
    uintptr_t freed_by; /* set by dealloc: the thread that freed it */
} box;

static atomic_long box_deallocs;
static _Atomic uintptr_t last_dealloc_thread;

static void box_dealloc(ouro_object *self) {
    box *b = (box *)self;
    if (b->canary != CANARY) {
        fprintf(stderr, "box %p freed twice or corrupted\n", (void *)b);
        abort();
    }
    b->canary = 0;
    atomic_store(&last_dealloc_thread, ouro_thread_id());
    atomic_fetch_add(&box_deallocs, 1);
}

static ouro_type box_type = {.head = OURO_TYPE_HEAD, .name = "box", .basic_size = sizeof(box), .dealloc = box_dealloc};

static ouro_type_stats box_stats(void) {
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(&box_type, &st), 0);
    return st;
}

static box *box_new(void) {
    box *b = (box *)ouro_new(&box_type);
    assert_non_null(b);
    b->canary = CANARY;
    return b;
}

/* Tests of the biased scheme's fields and queues; -Drefcount=atomic has neither. */
#define BIASED_ONLY()                  \
    do {                               \
        if (OURO_REFCOUNT_ATOMIC) skip(); \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Runs fn(arg) on a new thread and joins it. */
static void on_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    pthread_join(t, NULL);
}

/* ---- the owner's path ------------------------------------------------------------------------------ */
static void test_owner_counts(void **state) {
    long d0 = atomic_load(&box_deallocs);
    ouro_type_stats s0 = box_stats();
    box *b = box_new();
    ouro_object *o = &b->head;
    assert_int_equal(ouro_refcount(o), 1);
    ouro_incref(o);
    ouro_incref(o);
    assert_int_equal(ouro_refcount(o), 3);
    if (!OURO_REFCOUNT_ATOMIC) {
        assert_int_equal(o->tid, ouro_thread_id());
        assert_int_equal(o->ref_local, 3);
        assert_int_equal(o->ref_shared, 0); /* the owner touched no atomic field */
    }
    assert_ptr_equal(ouro_newref(o), o);
    ouro_decref(o);
    ouro_decref(o);
    ouro_decref(o);
    assert_int_equal(atomic_load(&box_deallocs), d0);
    ouro_decref(o); /* the last one: local 0, shared 0: dead */
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
    ouro_type_stats s1 = box_stats();
    assert_int_equal(s1.allocs, s0.allocs + 1);
    assert_int_equal(s1.frees, s0.frees + 1);
    assert_int_equal(s1.live, s0.live);
    ouro_xincref(NULL);
    ouro_xdecref(NULL);
}

/* ---- a non-owner counts in the shared field -------------------------------------------------------- */
static void *incref_twice_decref_once(void *arg) {
    ouro_object *o = arg;
    ouro_incref(o);
    ouro_incref(o);
    ouro_decref(o);
    return NULL;
}

static void *decref_once(void *arg) {
    ouro_decref(arg);
    return NULL;
}

static void test_nonowner_counts(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_object *o = &b->head;
    on_thread(incref_twice_decref_once, o);
    assert_int_equal(o->ref_local, 1);
    assert_int_equal(o->ref_shared, 1 << OURO_SHARED_SHIFT);
    assert_int_equal(ouro_refcount(o), 2);
    on_thread(decref_once, o); /* shared 1 -> 0: no queue */
    assert_int_equal(o->ref_shared, 0);
    assert_int_equal(ouro_refcount(o), 1);
    assert_int_equal(ouro_refcount_merge_queued(), 0);
    ouro_decref(o);
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
}

/* ---- a non-owner's decrement below zero queues the object to its owner ----------------------------- */
static void test_queue_and_merge(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_object *o = &b->head;
    ouro_incref(o);              /* local 2: one reference for us, one handed to another thread */
    on_thread(decref_once, o);   /* drops the handed reference: shared 0 -> QUEUED */
    assert_int_equal(o->ref_shared, OURO_SHARED_QUEUED);
    assert_int_equal(ouro_refcount(o), 2); /* the queue holds the dropped reference until the merge */
    assert_int_equal(ouro_refcount_merge_queued(), 1);
    assert_int_equal(o->tid, 0); /* merged: no owner any more */
    assert_int_equal(o->ref_shared, (1 << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED);
    assert_int_equal(ouro_refcount(o), 1);
    assert_int_equal(atomic_load(&box_deallocs), d0);
    ouro_decref(o); /* shared path now: MERGED with count 0 -> freed */
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
    /* The queue's reference can be the last: the merge frees. */
    b = box_new();
    o = &b->head;
    on_thread(decref_once, o); /* the only reference, dropped by another thread */
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
    assert_int_equal(ouro_refcount_merge_queued(), 1);
    assert_int_equal(atomic_load(&box_deallocs), d0 + 2);
    assert_int_equal(atomic_load(&last_dealloc_thread), ouro_thread_id());
}

/* ---- the owner's local count reaches zero while others hold references: it gives the object up ----- */
static void test_merge_zero_local(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_object *o = &b->head;
    on_thread(incref_twice_decref_once, o); /* shared 1 */
    ouro_decref(o);                          /* local 0: merged, tid 0 */
    assert_int_equal(o->tid, 0);
    assert_int_equal(o->ref_shared, (1 << OURO_SHARED_SHIFT) | OURO_SHARED_MERGED);
    assert_int_equal(atomic_load(&box_deallocs), d0);
    on_thread(decref_once, o); /* MERGED, count 0: freed by that thread */
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
    assert_int_not_equal(atomic_load(&last_dealloc_thread), ouro_thread_id());
}

/* ---- owners that exit ------------------------------------------------------------------------------- */
enum { HANDED = 500 };
static box *handed[HANDED];
static atomic_int owner_phase;

static void *owner_makes_then_waits(void *arg) {
    for (int i = 0; i < HANDED; i++) handed[i] = box_new();
    atomic_store(&owner_phase, 1);
    if (arg) /* wait (offline: a blocking wait) until the objects are queued, then exit with them */
        while (atomic_load(&owner_phase) != 2) {
            ouro_offline_begin();
            sleep_ms(1);
            ouro_offline_end();
        }
    return NULL; /* exits attached: the refcount exit hook runs */
}

/* The owner exits with objects queued to it: its exit hook merges and frees them. */
static void test_owner_exit_merges_queue(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    atomic_store(&owner_phase, 0);
    pthread_t t;
    pthread_create(&t, NULL, owner_makes_then_waits, (void *)1);
    while (atomic_load(&owner_phase) != 1) sleep_ms(1);
    for (int i = 0; i < HANDED; i++) ouro_decref(&handed[i]->head); /* each queued to the owner */
    assert_int_equal(atomic_load(&box_deallocs), d0);
    atomic_store(&owner_phase, 2);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&box_deallocs), d0 + HANDED);
}

/* The owner exited first: a non-owner's decrement merges directly. */
static void test_exited_owner_merged_directly(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    atomic_store(&owner_phase, 0);
    on_thread(owner_makes_then_waits, NULL);
    for (int i = 0; i < HANDED; i++) {
        ouro_incref(&handed[i]->head); /* shared 1 */
        ouro_decref(&handed[i]->head); /* shared 0 */
    }
    assert_int_equal(atomic_load(&box_deallocs), d0);
    for (int i = 0; i < HANDED; i++) ouro_decref(&handed[i]->head); /* queue: owner gone: merge */
    assert_int_equal(atomic_load(&box_deallocs), d0 + HANDED);
}

/* An owner that stays online and polls merges its queue by itself (a grace period is requested). */
static atomic_int poller_run;

static void *owner_polls(void *arg) {
    for (int i = 0; i < HANDED; i++) handed[i] = box_new();
    atomic_store(&owner_phase, 1);
    while (atomic_load(&poller_run)) ouro_safepoint();
    return NULL;
}

static void test_online_owner_merges_at_safepoints(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    atomic_store(&owner_phase, 0);
    atomic_store(&poller_run, 1);
    pthread_t t;
    pthread_create(&t, NULL, owner_polls, NULL);
    while (atomic_load(&owner_phase) != 1) sleep_ms(1);
    for (int i = 0; i < HANDED; i++) ouro_decref(&handed[i]->head);
    for (int w = 0; w < 5000 && atomic_load(&box_deallocs) != d0 + HANDED; w++) {
        ouro_offline_begin(); /* we are attached: a blocking wait is offline, or no grace period ends */
        sleep_ms(1);
        ouro_offline_end();
    }
    long done = atomic_load(&box_deallocs) - d0;
    atomic_store(&poller_run, 0);
    pthread_join(t, NULL);
    assert_int_equal(done, HANDED); /* freed by the owner before it exited */
}

/* ---- many threads count one object ------------------------------------------------------------------ */
enum { COUNTERS = 4, COUNTS = 100000 };

static void *count_a_lot(void *arg) {
    ouro_object *o = arg;
    for (int i = 0; i < COUNTS; i++) {
        ouro_incref(o);
        if (i % 3 == 0) ouro_incref(o), ouro_decref(o);
        ouro_decref(o);
        if (i % 1024 == 0) ouro_safepoint();
    }
    return NULL;
}

static void test_concurrent_counts(void **state) {
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_object *o = &b->head;
    pthread_t t[COUNTERS];
    for (int i = 0; i < COUNTERS; i++) pthread_create(&t[i], NULL, count_a_lot, o);
    count_a_lot(o); /* the owner too */
    for (int i = 0; i < COUNTERS; i++) pthread_join(t[i], NULL);
    ouro_refcount_merge_queued();
    assert_int_equal(ouro_refcount(o), 1);
    assert_int_equal(atomic_load(&box_deallocs), d0);
    ouro_decref(o);
    ouro_refcount_merge_queued();
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
}

/* ---- immortal objects, errors ----------------------------------------------------------------------- */
static void *decref_many(void *arg) {
    for (int i = 0; i < 1000; i++) ouro_decref(arg);
    return NULL;
}

static void test_immortal_and_errors(void **state) {
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_object *o = &b->head;
    assert_false(ouro_is_immortal(o));
    assert_int_equal(ouro_immortalize(o), 0);
    assert_true(ouro_is_immortal(o));
    for (int i = 0; i < 1000; i++) ouro_decref(o);
    on_thread(decref_many, o);
    assert_int_equal(ouro_refcount(o), (size_t)-1);
    assert_int_equal(atomic_load(&box_deallocs), d0); /* never freed */
    ouro_err_clear();
    assert_null(ouro_new(NULL));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_type tiny = {.head = OURO_TYPE_HEAD, .name = "tiny", .basic_size = 8};
    assert_null(ouro_new(&tiny));
    ouro_type huge = {.head = OURO_TYPE_HEAD, .name = "huge", .basic_size = OURO_OBJECT_MAX_SIZE + 1};
    assert_null(ouro_new(&huge));
    ouro_type nohead = {.name = "nohead", .basic_size = sizeof(box)};
    assert_null(ouro_new(&nohead));
    assert_non_null(strstr(ouro_err_message(), "OURO_TYPE_HEAD"));
    assert_int_equal(ouro_immortalize(NULL), -1);
    assert_int_equal(ouro_refcount(NULL), (size_t)-1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
}

static void decref_dead(void) {
    box *b = box_new();
    ouro_decref(&b->head);
    ouro_object again = {.tid = ouro_thread_id(), .ref_local = 0, .type = &box_type};
    ouro_decref(&again); /* the owner drops a reference it does not have */
}

static void test_underflow_is_fatal(void **state) { test_expect_abort(decref_dead, "has no reference left to drop"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_counts),
        cmocka_unit_test(test_nonowner_counts),
        cmocka_unit_test(test_queue_and_merge),
        cmocka_unit_test(test_merge_zero_local),
        cmocka_unit_test(test_owner_exit_merges_queue),
        cmocka_unit_test(test_exited_owner_merged_directly),
        cmocka_unit_test(test_online_owner_merges_at_safepoints),
        cmocka_unit_test(test_concurrent_counts),
        cmocka_unit_test(test_immortal_and_errors),
        cmocka_unit_test(test_underflow_is_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
