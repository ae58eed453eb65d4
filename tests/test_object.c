/* tests/test_object.c — the object header and biased reference counting: every path (owner, non-owner,
 * queue, merge, owner exit with queued objects, objects of an exited owner), each object freed exactly
 * once (per-type counts back to baseline), immortality, errors. */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* The owner exited first: its exit merged its objects; other threads count them in the shared field and
 * the last decrement frees. */
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
    for (int i = 0; i < HANDED; i++) ouro_decref(&handed[i]->head); /* merged at the owner's exit: freed */
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


/* ---- types from a spec, slots ------------------------------------------------------------------------- */
typedef struct {
    ouro_object head;
    uint64_t payload;
} node_head;

static atomic_long node_deallocs;
static void node_dealloc(ouro_object *self) { atomic_fetch_add(&node_deallocs, 1); }

static const char *const node_slots[] = {"left", "right", NULL};

static ouro_type *node_type_new(void) {
    ouro_type_spec spec = {.name = "node", .basic_size = sizeof(node_head), .flags = OURO_TYPE_GC, .slots = node_slots, .dealloc = node_dealloc};
    ouro_type *t = ouro_type_new(&spec);
    assert_non_null(t);
    return t;
}

static int count_visit(ouro_object *child, void *arg) {
    (void)child;
    ++*(int *)arg;
    return 0;
}

static void test_type_from_spec(void **state) {
    ouro_type *t = node_type_new();
    assert_string_equal(t->name, "node");
    assert_true(ouro_is_immortal(&t->head));
    assert_int_equal(t->nslots, 2);
    assert_int_equal(ouro_slot_index(t, "right"), 1);
    assert_int_equal(ouro_slot_index(t, "nope"), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    long b0 = atomic_load(&box_deallocs), n0 = atomic_load(&node_deallocs);
    ouro_object *n = ouro_new(t);
    assert_non_null(n);
    assert_string_equal(ouro_type_name(n), "node");
    assert_null(ouro_slot_get(n, 0)); /* empty, no error */
    box *a = box_new(), *b = box_new();
    assert_int_equal(ouro_slot_set(n, 0, &a->head), 0);
    assert_int_equal(ouro_slot_set(n, 1, &b->head), 0);
    assert_int_equal(ouro_refcount(&a->head), 2);
    ouro_object *got = ouro_slot_get(n, 0);
    assert_ptr_equal(got, &a->head);
    assert_int_equal(ouro_refcount(&a->head), 3);
    ouro_decref(got);
    int visits = 0;
    assert_int_equal(t->traverse(n, count_visit, &visits), 0);
    assert_int_equal(visits, 2);
    ouro_decref(&a->head); /* the slot holds the last reference now */
    ouro_decref(&b->head);
    assert_int_equal(atomic_load(&box_deallocs), b0);
    assert_int_equal(ouro_slot_set(n, 1, NULL), 0); /* drops b */
    assert_int_equal(atomic_load(&box_deallocs), b0 + 1);
    t->clear(n); /* the collector's clear empties every slot: drops a */
    assert_int_equal(atomic_load(&box_deallocs), b0 + 2);
    visits = 0;
    t->traverse(n, count_visit, &visits);
    assert_int_equal(visits, 0);
    /* errors */
    ouro_err_clear();
    assert_null(ouro_slot_get(n, 2));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INDEX);
    assert_int_equal(ouro_slot_set(n, 5, NULL), -1);
    assert_int_equal(ouro_slot_set(NULL, 0, NULL), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_type_free(t), -1); /* n is alive */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_type_free(&box_type), -1); /* static */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    /* dealloc drops the slots after the spec's dealloc */
    box *c = box_new();
    ouro_slot_set(n, 0, &c->head);
    ouro_decref(&c->head);
    ouro_decref(n);
    assert_int_equal(atomic_load(&node_deallocs), n0 + 1);
    assert_int_equal(atomic_load(&box_deallocs), b0 + 3);
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(t, &st), 0);
    assert_int_equal(st.allocs, 1);
    assert_int_equal(st.live, 0);
    assert_int_equal(ouro_type_free(t), 0);
    ouro_err_clear();
}

static void test_type_spec_errors(void **state) {
    const char *const dup[] = {"x", "x", NULL};
    const char *const empty[] = {"", NULL};
    ouro_type_spec bad[] = {
        {.name = NULL},
        {.name = ""},
        {.name = "dup", .slots = dup},
        {.name = "empty", .slots = empty},
        {.name = "small", .basic_size = 8},
        {.name = "big", .basic_size = OURO_OBJECT_MAX_SIZE + 1},
        {.name = "var-slots", .item_size = 8, .slots = node_slots},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ouro_err_clear();
        assert_null(ouro_type_new(&bad[i]));
        assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    }
    assert_null(ouro_type_new(NULL));
    assert_int_equal(ouro_type_free(NULL), -1);
    ouro_err_clear();
}

/* Readers get a slot lock-free while the owner keeps replacing what it holds: each get returns a live
 * box (canary intact), and every box is freed exactly once. */
enum { SLOT_READERS = 3, SLOT_SWAPS = 20000 };
static atomic_int slot_stop;

static atomic_long slot_gets;    /* successful gets over all readers */
static atomic_int slot_readers_up; /* readers that have started */

static void *slot_reader(void *arg) {
    ouro_object *n = arg;
    long got = 0;
    atomic_fetch_add(&slot_readers_up, 1);
    while (!atomic_load(&slot_stop)) {
        box *b = (box *)ouro_slot_get(n, 0);
        if (b) {
            if (b->canary != CANARY) fail_msg("slot_get returned a freed box %p", (void *)b);
            got++;
            atomic_fetch_add_explicit(&slot_gets, 1, memory_order_relaxed);
            ouro_decref(&b->head);
        }
        ouro_safepoint();
    }
    ouro_thread_detach();
    return (void *)got;
}

static void test_slot_readers_race(void **state) {
    ouro_type *t = node_type_new();
    ouro_type_stats s0 = box_stats();
    ouro_object *n = ouro_new(t);
    atomic_store(&slot_stop, 0);
    atomic_store(&slot_gets, 0);
    atomic_store(&slot_readers_up, 0);
    pthread_t r[SLOT_READERS];
    for (int i = 0; i < SLOT_READERS; i++) pthread_create(&r[i], NULL, slot_reader, n);
    ouro_offline_begin();
    while (atomic_load(&slot_readers_up) != SLOT_READERS) sched_yield();
    ouro_offline_end();
    /* At least SLOT_SWAPS replacements, and on until the readers have got a few (a fast build can
     * finish the swaps before a reader's first get). */
    long swaps = 0;
    for (int i = 0; i < SLOT_SWAPS || (atomic_load(&slot_gets) < 100 && i < 100 * SLOT_SWAPS); i++, swaps++) {
        box *b = box_new();
        ouro_slot_set(n, 0, &b->head);
        ouro_decref(&b->head); /* the slot's is the only reference: replacing it frees it */
        if (i % 64 == 0) ouro_safepoint();
    }
    atomic_store(&slot_stop, 1);
    long total = 0;
    ouro_offline_begin();
    for (int i = 0; i < SLOT_READERS; i++) {
        void *got;
        pthread_join(r[i], &got);
        total += (long)got;
    }
    ouro_offline_end();
    ouro_decref(n);
    ouro_refcount_merge_queued();
    ouro_type_stats s1 = box_stats();
    assert_int_equal(s1.allocs - s0.allocs, swaps);
    assert_int_equal(s1.live, s0.live); /* every box freed exactly once */
    assert_true(total > 0);
    assert_int_equal(ouro_type_free(t), 0);
}

/* ---- variable-size objects ---------------------------------------------------------------------------- */
static ouro_type vec_type = {.head = OURO_TYPE_HEAD, .name = "vec", .basic_size = sizeof(ouro_varobject), .item_size = sizeof(uint64_t)};

static void test_new_var(void **state) {
    ouro_varobject *small = (ouro_varobject *)ouro_new_var(&vec_type, 10);
    assert_non_null(small);
    assert_int_equal(small->size, 10);
    assert_ptr_equal(small->items, (char *)small + sizeof(ouro_varobject)); /* inline */
    for (int i = 0; i < 10; i++) assert_int_equal(((uint64_t *)small->items)[i], 0);
    size_t sz_small = ouro_sizeof(&small->head);
    assert_true(sz_small >= sizeof(ouro_varobject) + 80);
    ouro_varobject *big = (ouro_varobject *)ouro_new_var(&vec_type, 100000);
    assert_non_null(big);
    assert_ptr_not_equal(big->items, (char *)big + sizeof(ouro_varobject)); /* its own block */
    ((uint64_t *)big->items)[99999] = 7;
    assert_true(ouro_sizeof(&big->head) >= 800000);
    ouro_type_stats s0;
    ouro_type_get_stats(&vec_type, &s0);
    assert_int_equal(s0.live, 2);
    ouro_decref(&small->head);
    ouro_decref(&big->head);
    ouro_type_get_stats(&vec_type, &s0);
    assert_int_equal(s0.live, 0);
    ouro_err_clear();
    assert_null(ouro_new_var(&vec_type, SIZE_MAX / 4));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_OVERFLOW);
    assert_null(ouro_new(&vec_type)); /* variable-size */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_null(ouro_new_var(&box_type, 3)); /* fixed-size */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_sizeof(NULL), (size_t)-1);
    assert_string_equal(ouro_type_name(NULL), "NULL");
    ouro_err_clear();
}

/* ---- freeing a long chain takes bounded stack ----------------------------------------------------------- */
#if OURO_TSAN
enum { CHAIN = 200000 };
#else
enum { CHAIN = 2000000 };
#endif

static void *build_and_free_chain(void *arg) {
    ouro_type *t = arg;
    ouro_object *head = NULL;
    for (long i = 0; i < CHAIN; i++) {
        ouro_object *n = ouro_new(t);
        if (!n) return (void *)1;
        if (head) {
            ouro_slot_set(n, 0, head);
            ouro_decref(head);
        }
        head = n;
    }
    ouro_decref(head); /* frees the whole chain: a recursive free would need CHAIN frames */
    ouro_thread_detach();
    return NULL;
}

static void test_deep_chain_freed(void **state) {
    ouro_type *t = node_type_new();
    long n0 = atomic_load(&node_deallocs);
    void *r;
    pthread_t th;
    pthread_create(&th, NULL, build_and_free_chain, t); /* default attributes: the default stack */
    ouro_offline_begin();
    pthread_join(th, &r);
    ouro_offline_end();
    assert_null(r);
    assert_int_equal(atomic_load(&node_deallocs) - n0, CHAIN);
    ouro_type_stats st;
    ouro_type_get_stats(t, &st);
    assert_int_equal(st.allocs, CHAIN);
    assert_int_equal(st.live, 0);
    assert_int_equal(ouro_type_free(t), 0);
}

/* ---- statistics over threads ---------------------------------------------------------------------------- */
enum { STAT_THREADS = 4, STAT_EACH = 1000 };

static void *make_boxes(void *arg) {
    box **out = arg;
    for (int i = 0; i < STAT_EACH; i++) {
        out[i] = box_new();
        if (i % 2) {
            ouro_decref(&out[i]->head);
            out[i] = NULL;
        }
    }
    return NULL; /* exits attached: its counts move to the retired ones */
}

static void test_stats_over_threads(void **state) {
    ouro_type_stats s0 = box_stats();
    static box *made[STAT_THREADS][STAT_EACH];
    pthread_t t[STAT_THREADS];
    for (int i = 0; i < STAT_THREADS; i++) pthread_create(&t[i], NULL, make_boxes, made[i]);
    ouro_offline_begin();
    for (int i = 0; i < STAT_THREADS; i++) pthread_join(t[i], NULL);
    ouro_offline_end();
    ouro_type_stats s1 = box_stats();
    assert_int_equal(s1.allocs - s0.allocs, STAT_THREADS * STAT_EACH);
    assert_int_equal(s1.frees - s0.frees, STAT_THREADS * STAT_EACH / 2);
    assert_int_equal(s1.live - s0.live, STAT_THREADS * STAT_EACH / 2);
    for (int i = 0; i < STAT_THREADS; i++)
        for (int j = 0; j < STAT_EACH; j++)
            if (made[i][j]) ouro_decref(&made[i][j]->head); /* owners exited: merged here */
    s1 = box_stats();
    assert_int_equal(s1.live, s0.live);
    assert_int_equal(ouro_type_get_stats(NULL, &s1), -1);
    ouro_err_clear();
}

/* ---- generic hash and equality --------------------------------------------------------------------------- */
typedef struct {
    ouro_object head;
    int64_t v;
} num;

static int64_t num_hash(ouro_object *self) { return ((num *)self)->v == -1 ? -2 : ((num *)self)->v; }
static int num_eq(ouro_object *self, ouro_object *other) {
    return other->type == self->type && ((num *)self)->v == ((num *)other)->v;
}

static void test_hash_and_eq(void **state) {
    ouro_type_spec spec = {.name = "num", .basic_size = sizeof(num), .hash = num_hash, .eq = num_eq};
    ouro_type *t = ouro_type_new(&spec);
    num *a = (num *)ouro_new(t), *b = (num *)ouro_new(t);
    a->v = b->v = 42;
    assert_int_equal(ouro_hash(&a->head), 42);
    assert_int_equal(ouro_eq(&a->head, &b->head), 1);
    b->v = 43;
    assert_int_equal(ouro_eq(&a->head, &b->head), 0);
    box *x = box_new();
    assert_int_equal(ouro_eq(&a->head, &x->head), 0);
    assert_int_equal(ouro_eq(&x->head, &x->head), 1); /* identity */
    assert_int_equal(ouro_hash(&x->head), ouro_hash_pointer(x)); /* by identity */
    assert_true(ouro_hash(&x->head) != -1);
    ouro_type_spec uspec = {.name = "unhashable", .hash = ouro_unhashable};
    ouro_type *ut = ouro_type_new(&uspec);
    ouro_object *u = ouro_new(ut);
    ouro_err_clear();
    assert_int_equal(ouro_hash(u), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE);
    assert_non_null(strstr(ouro_err_message(), "unhashable type: 'unhashable'"));
    assert_int_equal(ouro_hash(NULL), -1);
    assert_int_equal(ouro_eq(NULL, u), -1);
    ouro_err_clear();
    ouro_object *r = ouro_repr(&x->head);
    assert_non_null(r);
    assert_non_null(strstr(ouro_str_utf8(r, NULL), "<box object at 0x"));
    ouro_decref(r);
    ouro_decref(u);
    ouro_decref(&a->head);
    ouro_decref(&b->head);
    ouro_decref(&x->head);
    assert_int_equal(ouro_type_free(ut), 0);
    assert_int_equal(ouro_type_free(t), 0);
}

/* ---- owner ids are thread pointers: a thread merges everything it owns when it exits ---------------- */
enum { KEPT = 300 };
static box *kept[KEPT];

/* Makes KEPT objects; odd ones get a second local reference (handed to the test). */
static void make_kept(void) {
    for (int i = 0; i < KEPT; i++) {
        kept[i] = box_new();
        if (i % 2) ouro_incref(&kept[i]->head);
    }
}

/* 0 when every kept object is merged (no owner) with its exact count. */
static int kept_merged_wrongly(void) {
    for (int i = 0; i < KEPT; i++) {
        ouro_object *o = &kept[i]->head;
        if (o->tid != 0 || (o->ref_shared & OURO_SHARED_STATE) != OURO_SHARED_MERGED) return i + 1;
        if (ouro_refcount(o) != (size_t)(i % 2 ? 2 : 1) || kept[i]->canary != CANARY) return i + 1;
    }
    return 0;
}

static void *owner_makes_and_exits(void *arg) {
    *(uintptr_t *)arg = ouro_thread_id();
    make_kept();
    return NULL; /* exits attached: its exit hook merges every object it owns */
}

/* Counts every kept object up and down, then drops all its references. */
static void *count_and_drop_kept(void *arg) {
    *(uintptr_t *)arg = ouro_thread_id();
    for (int i = 0; i < KEPT; i++) {
        ouro_object *o = &kept[i]->head;
        ouro_incref(o);
        ouro_decref(o);
        ouro_decref(o);
        if (i % 2) ouro_decref(o);
    }
    return NULL;
}

static void test_exit_merges_owned_objects(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    uintptr_t a = 0, b = 0;
    on_thread(owner_makes_and_exits, &a);
    assert_true(a != 0 && (a & 1) == 0); /* a thread pointer: even, never 0 */
    assert_int_equal(kept_merged_wrongly(), 0);
    /* glibc gives the next thread the exited one's stack, so usually its thread pointer too: it must
     * count as a non-owner (a stale owner id would make it write ref_local unsynchronised). */
    on_thread(count_and_drop_kept, &b);
    assert_int_equal(atomic_load(&box_deallocs), d0 + KEPT);
    if (a != b) print_message("  (the second thread had another thread pointer: reuse not exercised)\n");
}

/* A thread that detaches gives its objects up and owns the ones it makes afterwards. */
static void *detach_and_go_on(void *arg) {
    int *bad = arg;
    box *b = box_new();
    *bad |= b->head.tid != ouro_thread_id();
    ouro_thread_detach();
    *bad |= (b->head.tid != 0 || ouro_refcount(&b->head) != 1) << 1;
    box *c = box_new(); /* attaches again */
    *bad |= (c->head.tid != ouro_thread_id()) << 2;
    ouro_incref(&b->head);
    ouro_decref(&b->head);
    *bad |= (b->head.ref_local != 0) << 3; /* counted in the shared field */
    ouro_decref(&b->head);
    ouro_decref(&c->head);
    return NULL;
}

static void test_detach_merges_owned_objects(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    int bad = 0;
    on_thread(detach_and_go_on, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(atomic_load(&box_deallocs), d0 + 2);
}

/* fork(): the child merges the objects of the threads that did not survive it; a thread it starts on
 * a vanished thread's stack counts them as a non-owner. */
static atomic_int parked_phase;

static void *owner_parks(void *arg) {
    (void)arg;
    make_kept();
    atomic_store(&parked_phase, 1);
    while (atomic_load(&parked_phase) != 2) {
        ouro_offline_begin();
        sleep_ms(1);
        ouro_offline_end();
    }
    return NULL;
}

static void test_fork_merges_vanished_owners(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    atomic_store(&parked_phase, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, owner_parks, NULL), 0);
    while (atomic_load(&parked_phase) != 1) sleep_ms(1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* no cmocka in the child: an exit code */
        int code = kept_merged_wrongly() ? 1 : 0;
        uintptr_t id;
        on_thread(count_and_drop_kept, &id);
        if (!code && atomic_load(&box_deallocs) != d0 + KEPT) code = 2;
        _exit(code);
    }
    int status = 0;
    ouro_offline_begin();
    assert_int_equal(waitpid(pid, &status, 0), pid);
    ouro_offline_end();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent: the owner is alive and still owns them */
    for (int i = 0; i < KEPT; i++) assert_int_not_equal(kept[i]->head.tid, 0);
    atomic_store(&parked_phase, 2);
    pthread_join(t, NULL);
    assert_int_equal(kept_merged_wrongly(), 0);
    uintptr_t id;
    count_and_drop_kept(&id);
    assert_int_equal(atomic_load(&box_deallocs), d0 + KEPT);
}

/* ---- every type's counts --------------------------------------------------------------------------- */
static void test_type_stats_all(void **state) {
    box *b = box_new();
    ouro_type *t = node_type_new();
    ouro_object *n = ouro_new(t);
    size_t total = ouro_type_stats_all(NULL, 0);
    assert_true(total >= 2);
    ouro_type_stats_entry e[64];
    assert_true(total <= 64);
    assert_int_equal(ouro_type_stats_all(e, 64), total);
    int seen = 0;
    for (size_t i = 0; i < total; i++) {
        if (e[i].type == &box_type) seen |= 1, assert_true(e[i].stats.live >= 1);
        if (e[i].type == t) seen |= 2, assert_int_equal(e[i].stats.live, 1), assert_string_equal(e[i].name, t->name);
    }
    assert_int_equal(seen, 3);
    ouro_decref(n);
    assert_int_equal(ouro_type_free(t), 0);
    assert_int_equal(ouro_type_stats_all(e, 64), total - 1); /* a freed type is no longer listed */
    for (size_t i = 0; i < total - 1; i++) assert_ptr_not_equal(e[i].type, t);
    ouro_decref(&b->head);
    assert_int_equal(ouro_type_stats_all(NULL, 3), (size_t)-1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
}

/* An object queued to its owner and then immortalized stays immortal through the merge. */
static void test_immortalized_while_queued(void **state) {
    BIASED_ONLY();
    long d0 = atomic_load(&box_deallocs);
    box *b = box_new();
    ouro_incref(&b->head);
    on_thread(decref_once, &b->head); /* queued to us */
    assert_int_equal(b->head.ref_shared, OURO_SHARED_QUEUED);
    ouro_immortalize(&b->head);
    assert_int_equal(ouro_refcount_merge_queued(), 1);
    assert_true(ouro_is_immortal(&b->head));
    ouro_decref(&b->head);
    assert_int_equal(atomic_load(&box_deallocs), d0);
}

/* Hash and equality of objects nested deeper than the generic operations allow: an error, not a
 * stack overflow. */
static ouro_object *nested_tuples(int depth) {
    ouro_object *t = ouro_tuple_pack(0);
    for (int i = 0; i < depth; i++) {
        ouro_object *outer = ouro_tuple_pack(1, t);
        ouro_decref(t);
        t = outer;
    }
    return t;
}

static void test_deep_hash_eq_is_an_error(void **state) {
    ouro_object *a = nested_tuples(100000), *b = nested_tuples(100000);
    ouro_err_clear();
    assert_int_equal(ouro_hash(a), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_OVERFLOW);
    ouro_err_clear();
    assert_int_equal(ouro_eq(a, b), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_OVERFLOW);
    ouro_err_clear();
    ouro_object *c = nested_tuples(100), *d = nested_tuples(100);
    assert_true(ouro_hash(c) != -1);
    assert_int_equal(ouro_eq(c, d), 1);
    ouro_decref(a);
    ouro_decref(b);
    ouro_decref(c);
    ouro_decref(d);
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
        cmocka_unit_test(test_type_from_spec),
        cmocka_unit_test(test_type_spec_errors),
        cmocka_unit_test(test_slot_readers_race),
        cmocka_unit_test(test_new_var),
        cmocka_unit_test(test_deep_chain_freed),
        cmocka_unit_test(test_stats_over_threads),
        cmocka_unit_test(test_hash_and_eq),
        cmocka_unit_test(test_exit_merges_owned_objects),
        cmocka_unit_test(test_detach_merges_owned_objects),
        cmocka_unit_test(test_fork_merges_vanished_owners),
        cmocka_unit_test(test_type_stats_all),
        cmocka_unit_test(test_immortalized_while_queued),
        cmocka_unit_test(test_deep_hash_eq_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
