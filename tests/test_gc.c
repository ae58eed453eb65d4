/* tests/test_gc.c — the cycle collector: C ports of CPython's test_gc scenarios (self-cycles through
 * every container, cycles of user types, finalizers and resurrection, weakrefs during collection,
 * counts and thresholds, freeze, callbacks, get_objects/referrers/referents) and ouro's own: cycles
 * owned by several threads with queued merges, a thread that exits with young objects, collections
 * while other threads mutate the graph, a GC pool carved out of memory that held other data. Each
 * collected count is exact; per-type alloc/free counts return to baseline. Automatic collection is off except where a test turns it on. */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define CANARY 0x6c0cafe5eedull

/* ---- a user type: a node with two reference slots and a canary ------------------------------------ */

static atomic_long node_deallocs, node_finalized;
static ouro_object *_Atomic resurrect_into; /* a finalizer stores its object here (one reference) */
static atomic_int finalizer_collect_result = 1;

typedef struct {
    ouro_object head;
    uint64_t canary;
    int finalize_mode; /* 0: count only; 1: resurrect; 2: collect from inside */
} node_payload;

static ouro_type *node_type, *fnode_type; /* fnode: has a finalizer */

static void node_dealloc(ouro_object *self) {
    node_payload *n = (node_payload *)self;
    if (n->canary != CANARY) {
        fprintf(stderr, "node %p freed twice or corrupted\n", (void *)self);
        abort();
    }
    n->canary = 0;
    atomic_fetch_add(&node_deallocs, 1);
}

static void pace_finalizer(void);

static void node_finalize(ouro_object *self) {
    node_payload *n = (node_payload *)self;
    atomic_fetch_add(&node_finalized, 1);
    if (n->finalize_mode == 1) {
        ouro_object *old = atomic_exchange(&resurrect_into, ouro_newref(self));
        ouro_xdecref(old);
    } else if (n->finalize_mode == 2) {
        atomic_store(&finalizer_collect_result, (int)ouro_gc_collect(2)); /* refused: inside a collection */
    } else if (n->finalize_mode == 3) {
        pace_finalizer();
    }
}

static const char *const node_slots[] = {"a", "b", NULL};

static void types_setup(void) {
    if (node_type) return;
    ouro_type_spec spec = {.name = "node", .basic_size = sizeof(node_payload), .flags = OURO_TYPE_GC,
                           .slots = node_slots, .dealloc = node_dealloc};
    node_type = ouro_type_new(&spec);
    spec.name = "fnode";
    spec.finalize = node_finalize;
    fnode_type = ouro_type_new(&spec);
    assert_non_null(node_type);
    assert_non_null(fnode_type);
}

static ouro_object *node_new(ouro_type *t) {
    ouro_object *o = ouro_new(t);
    assert_non_null(o);
    ((node_payload *)o)->canary = CANARY;
    return o;
}

/* a.slot = b (a new reference to b). */
static void link_to(ouro_object *a, size_t slot, ouro_object *b) { assert_int_equal(ouro_slot_set(a, slot, b), 0); }

static int setup(void **state) {
    (void)state;
    types_setup();
    ouro_gc_disable();
    ouro_gc_collect(2); /* start from a clean heap */
    atomic_store(&node_deallocs, 0);
    atomic_store(&node_finalized, 0);
    return 0;
}

static ouro_type_stats stats_of(const ouro_type *t) {
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(t, &st), 0);
    return st;
}

/* ---- self-cycles through every container -------------------------------------------------------------- */

static void test_list_self_cycle(void **state) {
    size_t live0 = stats_of(&ouro_list_type).live;
    ouro_object *l = ouro_list_new(0);
    assert_int_equal(ouro_list_append(l, l), 0);
    ouro_decref(l);
    assert_int_equal(stats_of(&ouro_list_type).live, live0 + 1);
    assert_int_equal(ouro_gc_collect(0), 1);
    assert_int_equal(stats_of(&ouro_list_type).live, live0);
}

static void test_dict_self_cycle(void **state) {
    size_t live0 = stats_of(&ouro_dict_type).live;
    ouro_object *d = ouro_dict_new(), *k = ouro_str_from_cstr("self");
    assert_int_equal(ouro_dict_set(d, k, d), 0);
    ouro_decref(k);
    ouro_decref(d);
    assert_int_equal(ouro_gc_collect(2), 1);
    assert_int_equal(stats_of(&ouro_dict_type).live, live0);
}

static void test_tuple_list_cycle(void **state) {
    size_t tuples0 = stats_of(&ouro_tuple_type).live, lists0 = stats_of(&ouro_list_type).live;
    ouro_object *l = ouro_list_new(0);
    ouro_object *t = ouro_tuple_pack(1, l);
    assert_int_equal(ouro_list_append(l, t), 0);
    ouro_decref(t);
    ouro_decref(l);
    assert_int_equal(ouro_gc_collect(1), 2);
    assert_int_equal(stats_of(&ouro_tuple_type).live, tuples0);
    assert_int_equal(stats_of(&ouro_list_type).live, lists0);
}

static void test_user_type_ring(void **state) {
    enum { N = 10 };
    ouro_object *n[N];
    for (int i = 0; i < N; i++) n[i] = node_new(node_type);
    for (int i = 0; i < N; i++) link_to(n[i], 0, n[(i + 1) % N]);
    link_to(n[3], 1, n[3]); /* and a self-reference */
    for (int i = 0; i < N; i++) ouro_decref(n[i]);
    assert_int_equal(atomic_load(&node_deallocs), 0);
    assert_int_equal(ouro_gc_collect(0), N);
    assert_int_equal(atomic_load(&node_deallocs), N);
    assert_int_equal(stats_of(node_type).live, 0);
}

/* A cycle through a node, a list, a dict and a set member: four types in one cycle. */
static void test_cycle_through_several_types(void **state) {
    ouro_object *n = node_new(node_type), *l = ouro_list_new(0), *d = ouro_dict_new();
    ouro_object *k = ouro_int_from(7);
    link_to(n, 0, l);
    assert_int_equal(ouro_list_append(l, d), 0);
    assert_int_equal(ouro_dict_set(d, k, n), 0);
    ouro_decref(k);
    ouro_decref(n);
    ouro_decref(l);
    ouro_decref(d);
    assert_int_equal(ouro_gc_collect(2), 3);
    assert_int_equal(atomic_load(&node_deallocs), 1);
}

/* Objects reachable from outside survive; once let go, they are collected. */
static void test_reachable_survive(void **state) {
    ouro_object *a = node_new(node_type), *b = node_new(node_type);
    link_to(a, 0, b);
    link_to(b, 0, a);
    ouro_decref(b); /* a is still held */
    assert_int_equal(ouro_gc_collect(2), 0);
    assert_int_equal(((node_payload *)b)->canary, CANARY);
    ouro_decref(a);
    assert_int_equal(ouro_gc_collect(2), 2);
    assert_int_equal(atomic_load(&node_deallocs), 2);
}

/* ---- finalizers and resurrection (PEP 442) ---------------------------------------------------------------- */

static void test_finalizer_runs_once(void **state) {
    ouro_object *a = node_new(fnode_type), *b = node_new(node_type);
    link_to(a, 0, b);
    link_to(b, 0, a);
    ouro_decref(a);
    ouro_decref(b);
    assert_int_equal(ouro_gc_collect(0), 2);
    assert_int_equal(atomic_load(&node_finalized), 1);
    assert_int_equal(atomic_load(&node_deallocs), 2);
}

static void test_resurrection(void **state) {
    /* a (finalizer resurrects it) <-> b; c <-> d is an independent cycle in the same collection */
    ouro_object *a = node_new(fnode_type), *b = node_new(node_type), *c = node_new(node_type), *d = node_new(node_type);
    ((node_payload *)a)->finalize_mode = 1;
    link_to(a, 0, b);
    link_to(b, 0, a);
    link_to(c, 0, d);
    link_to(d, 0, c);
    ouro_object *w = ouro_weakref_new(a, NULL, NULL);
    ouro_decref(a);
    ouro_decref(b);
    ouro_decref(c);
    ouro_decref(d);
    assert_int_equal(ouro_gc_collect(2), 2);                 /* c and d; a and b are resurrected */
    assert_int_equal(atomic_load(&node_deallocs), 2);         /* resurrection did not block c and d */
    assert_int_equal(atomic_load(&node_finalized), 1);
    ouro_object *back = atomic_exchange(&resurrect_into, NULL);
    assert_ptr_equal(back, a);
    assert_int_equal(ouro_gc_is_finalized(a), 1);
    assert_int_equal(((node_payload *)b)->canary, CANARY);    /* transitive: b lives too */
    assert_null(ouro_weakref_get(w));                         /* cleared before finalizers, even so */
    ouro_decref(back);
    assert_int_equal(ouro_gc_collect(2), 2);
    assert_int_equal(atomic_load(&node_finalized), 1);        /* never finalized twice */
    assert_int_equal(atomic_load(&node_deallocs), 4);
    ouro_decref(w);
}

/* ---- weakrefs during collection -------------------------------------------------------------------------- */

static ouro_object *watched_list;
static atomic_int callback_saw_intact = -1;

static void wr_callback(ouro_object *wr, void *arg) {
    (void)arg;
    /* The referent is cleared from the weakref, but the cycle is not yet broken: the list still
     * holds its items (nothing of the garbage was cleared before the callbacks). */
    int intact = ouro_weakref_get(wr) == NULL && ouro_list_size(watched_list) == 2;
    atomic_store(&callback_saw_intact, intact);
}

static void test_weakref_callback_sees_intact_garbage(void **state) {
    ouro_object *l = ouro_list_new(0), *n = node_new(node_type);
    watched_list = l;
    link_to(n, 0, l);
    assert_int_equal(ouro_list_append(l, n), 0);
    assert_int_equal(ouro_list_append(l, l), 0);
    ouro_object *w = ouro_weakref_new(n, wr_callback, NULL);
    ouro_decref(n);
    ouro_decref(l);
    assert_int_equal(ouro_gc_collect(2), 2);
    assert_int_equal(atomic_load(&callback_saw_intact), 1);
    ouro_decref(w);
}

/* ---- counts, thresholds, automatic collection ---------------------------------------------------------- */

static void test_counts_move(void **state) {
    long c[3];
    ouro_gc_collect(2);
    ouro_gc_get_count(c);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 0);
    assert_int_equal(c[2], 0);
    ouro_object *l[5];
    for (int i = 0; i < 5; i++) l[i] = ouro_list_new(0);
    ouro_gc_get_count(c);
    assert_int_equal(c[0], 5);
    ouro_decref(l[4]);
    ouro_gc_get_count(c);
    assert_int_equal(c[0], 4); /* allocations minus deallocations */
    ouro_gc_collect(0);
    ouro_gc_get_count(c);
    assert_true(c[0] == 0 && c[1] == 1 && c[2] == 0);
    ouro_gc_collect(0);
    ouro_gc_collect(1);
    ouro_gc_get_count(c);
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 1);
    ouro_gc_collect(2);
    ouro_gc_get_count(c);
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 0);
    /* generations: survivors move up one per collection */
    ouro_object *young = ouro_list_new(0);
    ouro_object *g0 = ouro_gc_get_objects(0);
    assert_true(ouro_list_index(g0, young) >= 0);
    ouro_decref(g0);
    ouro_gc_collect(0);
    ouro_object *g1 = ouro_gc_get_objects(1);
    assert_true(ouro_list_index(g1, young) >= 0);
    ouro_decref(g1);
    ouro_gc_collect(1);
    ouro_object *g2 = ouro_gc_get_objects(2);
    assert_true(ouro_list_index(g2, young) >= 0);
    ouro_decref(g2);
    ouro_decref(young);
    for (int i = 0; i < 4; i++) ouro_decref(l[i]);
}

static void test_thresholds_and_automatic(void **state) {
    long t[3];
    ouro_gc_get_threshold(t);
    assert_true(t[0] == 2000 && t[1] == 10 && t[2] == 10);
    assert_int_equal(ouro_gc_set_threshold(-1, 10, 10), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_gc_set_threshold(100, 10, 10), 0);
    ouro_gc_gen_stats s0[3], s1[3];
    ouro_gc_get_stats(s0);
    ouro_gc_enable();
    assert_int_equal(ouro_gc_is_enabled(), 1);
    for (int i = 0; i < 5000; i++) { /* garbage 2-cycles: only the collector frees them */
        ouro_object *a = node_new(node_type), *b = node_new(node_type);
        link_to(a, 0, b);
        link_to(b, 0, a);
        ouro_decref(a);
        ouro_decref(b);
    }
    ouro_gc_disable();
    ouro_gc_get_stats(s1);
    assert_true(s1[0].collections > s0[0].collections);
    assert_true(s1[1].collections > s0[1].collections); /* every 10 young ones */
    ouro_gc_collect(2);
    assert_int_equal(atomic_load(&node_deallocs), 10000);
    assert_int_equal(stats_of(node_type).live, 0);
    assert_int_equal(ouro_gc_set_threshold(2000, 10, 10), 0);
}

/* ---- pacing: a thread that allocates while another collects waits for it ------------------------------ */

static atomic_long pace_made;  /* GC objects the allocating thread made */
static atomic_int pace_phase;  /* 1: allocate; 2: stop */
static atomic_long pace_blocked_at = -1; /* pace_made before the first ouro_new that took >= 2 ms */

static long mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000L;
}

/* The collection's finalizer: lets the allocator go, then waits until one of its ouro_new calls has
 * blocked (paced: it waits for this collection), or it has made far more than pacing allows, or 2 s
 * pass. Only the allocator's own view counts, so a busy machine that delays this thread cannot make
 * the test fail; one that delays the allocator can only make it block sooner. */
static void pace_finalizer(void) {
    atomic_store(&pace_phase, 1);
    long start = mono_us();
    while (mono_us() - start < 2000000 && atomic_load(&pace_blocked_at) < 0 && atomic_load(&pace_made) <= 20000) {
        struct timespec t = {0, 200000};
        nanosleep(&t, NULL);
    }
}

static void *pace_allocator(void *arg) {
    ouro_object *keep = ouro_list_new(0); /* keeps everything alive: count0 only grows */
    while (atomic_load(&pace_phase) == 0) {
        ouro_offline_begin();
        struct timespec t = {0, 100000};
        nanosleep(&t, NULL);
        ouro_offline_end();
    }
    while (atomic_load(&pace_phase) == 1) {
        long t0 = mono_us();
        ouro_object *o = node_new(node_type);
        if (mono_us() - t0 >= 2000 && atomic_load(&pace_blocked_at) < 0) atomic_store(&pace_blocked_at, atomic_load(&pace_made));
        ouro_list_append(keep, o);
        ouro_decref(o);
        atomic_fetch_add(&pace_made, 1);
    }
    ouro_decref(keep);
    return arg;
}

static void test_allocating_thread_paced_by_collection(void **state) {
    enum { T0 = 100 };
    assert_int_equal(ouro_gc_set_threshold(T0, 10, 10), 0);
    atomic_store(&pace_made, 0);
    atomic_store(&pace_phase, 0);
    atomic_store(&pace_blocked_at, -1);
    ouro_object *a = node_new(fnode_type), *b = node_new(node_type); /* garbage with a finalizer */
    ((node_payload *)a)->finalize_mode = 3;
    link_to(a, 0, b);
    link_to(b, 0, a);
    ouro_decref(a);
    ouro_decref(b);
    pthread_t t;
    pthread_create(&t, NULL, pace_allocator, NULL);
    ouro_gc_enable();
    assert_int_equal(ouro_gc_collect(0), 2); /* its finalizer runs while the other thread allocates */
    long blocked = atomic_load(&pace_blocked_at), made = atomic_load(&pace_made);
    atomic_store(&pace_phase, 2);
    ouro_offline_begin(); /* the allocator may collect meanwhile: it must not wait for us */
    pthread_join(t, NULL);
    ouro_offline_end();
    ouro_gc_disable();
    assert_int_equal(ouro_gc_set_threshold(2000, 10, 10), 0);
    /* It made at most 4 thresholds' worth (plus the 32 a thread holds back) before it waited. */
    if (blocked < 0) fail_msg("the allocating thread made %ld objects during the collection and never waited", made);
    if (blocked > 4 * T0 + 64) fail_msg("the allocating thread made %ld objects before it waited", blocked);
    ouro_gc_collect(2);
    assert_int_equal(stats_of(node_type).live, 0);
}

/* A program that makes cyclic garbage at a steady rate: every automatic collection finds about a
 * threshold's worth (the frees of one collection's garbage must not put off the next). */
static long auto_max_collected, auto_collections;

static void auto_cb(int phase, const ouro_gc_info *info, void *arg) {
    if (phase != OURO_GC_STOP) return;
    auto_collections++;
    if (info->collected > auto_max_collected) auto_max_collected = info->collected;
}

static void test_automatic_collections_stay_bounded(void **state) {
    enum { CYCLES = 100000 };
    auto_max_collected = auto_collections = 0;
    assert_int_equal(ouro_gc_callback_add(auto_cb, NULL), 0);
    ouro_gc_enable();
    for (int i = 0; i < CYCLES; i++) {
        ouro_object *a = ouro_list_new(0), *b = ouro_list_new(0);
        assert_int_equal(ouro_list_append(a, b), 0);
        assert_int_equal(ouro_list_append(b, a), 0);
        ouro_decref(a);
        ouro_decref(b);
    }
    ouro_gc_disable();
    assert_int_equal(ouro_gc_callback_remove(auto_cb, NULL), 0);
    /* 2 * CYCLES objects at threshold 2000 (each thread's count is flushed 32 at a time) */
    if (auto_collections < 2 * CYCLES / 2100 || auto_max_collected > 2 * 2100)
        fail_msg("%ld automatic collections for %d objects, the largest freed %ld", auto_collections, 2 * CYCLES,
                 auto_max_collected);
    ouro_gc_collect(2);
}

/* ---- freeze -------------------------------------------------------------------------------------------- */

static void test_freeze(void **state) {
    ouro_object *a = node_new(node_type), *b = node_new(node_type);
    link_to(a, 0, b);
    link_to(b, 0, a);
    ouro_decref(a);
    ouro_decref(b);
    ouro_object *c = node_new(node_type); /* frozen, then freed: the count drops */
    size_t f0 = ouro_gc_get_freeze_count();
    assert_int_equal(ouro_gc_freeze(), 0);
    size_t f1 = ouro_gc_get_freeze_count();
    assert_true(f1 >= f0 + 3);
    ouro_decref(c);
    assert_int_equal(ouro_gc_get_freeze_count(), f1 - 1);
    assert_int_equal(ouro_gc_collect(2), 0); /* frozen: ignored */
    assert_int_equal(ouro_gc_unfreeze(), 0);
    assert_int_equal(ouro_gc_get_freeze_count(), 0);
    assert_int_equal(ouro_gc_collect(2), 2);
}

/* ---- callbacks --------------------------------------------------------------------------------------------- */

static int cb_phases[2];
static ouro_gc_info cb_last;

static void gc_cb(int phase, const ouro_gc_info *info, void *arg) {
    assert_ptr_equal(arg, cb_phases);
    cb_phases[phase]++;
    if (phase == OURO_GC_STOP) cb_last = *info;
}

static void test_callbacks(void **state) {
    assert_int_equal(ouro_gc_callback_add(gc_cb, cb_phases), 0);
    ouro_object *l = ouro_list_new(0);
    ouro_list_append(l, l);
    ouro_decref(l);
    assert_int_equal(ouro_gc_collect(1), 1);
    assert_int_equal(cb_phases[0], 1);
    assert_int_equal(cb_phases[1], 1);
    assert_int_equal(cb_last.generation, 1);
    assert_int_equal(cb_last.collected, 1);
    assert_true(cb_last.duration_ns > 0);
    assert_int_equal(ouro_gc_callback_remove(gc_cb, cb_phases), 0);
    assert_int_equal(ouro_gc_callback_remove(gc_cb, cb_phases), -1);
    ouro_gc_collect(0);
    assert_int_equal(cb_phases[0], 1);
    assert_int_equal(ouro_gc_callback_add(NULL, NULL), -1);
}

/* ---- introspection ------------------------------------------------------------------------------------------ */

static void test_referrers_referents_tracked(void **state) {
    ouro_object *x = node_new(node_type), *holder = ouro_list_new(0), *s = ouro_str_from_cstr("not tracked");
    assert_int_equal(ouro_list_append(holder, x), 0);
    assert_int_equal(ouro_list_append(holder, s), 0);
    ouro_object *r = ouro_gc_get_referrers(x);
    assert_non_null(r);
    assert_int_equal(ouro_list_size(r), 1);
    assert_int_equal(ouro_list_index(r, holder), 0);
    ouro_decref(r);
    ouro_object *e = ouro_gc_get_referents(holder);
    assert_int_equal(ouro_list_size(e), 2);
    assert_int_equal(ouro_list_index(e, x), 0);
    assert_int_equal(ouro_list_index(e, s), 1);
    ouro_decref(e);
    assert_int_equal(ouro_gc_is_tracked(holder), 1);
    assert_int_equal(ouro_gc_is_tracked(s), 0);
    assert_int_equal(ouro_gc_untrack(holder), 0);
    assert_int_equal(ouro_gc_is_tracked(holder), 0);
    ouro_object *all = ouro_gc_get_objects(-1);
    assert_true(ouro_list_index(all, holder) < 0);
    ouro_err_clear();
    assert_true(ouro_list_index(all, x) >= 0);
    ouro_decref(all);
    assert_int_equal(ouro_gc_track(holder), 0);
    assert_int_equal(ouro_gc_is_tracked(holder), 1);
    assert_int_equal(ouro_gc_track(s), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_int_equal(ouro_gc_is_tracked(NULL), -1);
    assert_null(ouro_gc_get_objects(3));
    assert_int_equal(ouro_gc_collect(3), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_decref(s);
    ouro_decref(x);
    ouro_decref(holder);
}

/* ---- a deep chain freed with a collection asked for inside a finalizer ---------------------------------- */

static void test_deep_chain_collect_in_finalizer(void **state) {
    enum { DEPTH = 200000 };
    ouro_object *head = node_new(fnode_type);
    ((node_payload *)head)->finalize_mode = 2;
    link_to(head, 1, head); /* a cycle through the head */
    ouro_object *cur = head;
    for (int i = 0; i < DEPTH; i++) {
        ouro_object *n = node_new(node_type);
        link_to(cur, 0, n);
        ouro_decref(n);
        cur = n;
    }
    ouro_decref(head);
    assert_int_equal(ouro_gc_collect(2), DEPTH + 1); /* the chain hangs from the cycle: garbage too */
    assert_int_equal(atomic_load(&finalizer_collect_result), -1);
    assert_int_equal(atomic_load(&node_deallocs), DEPTH + 1);
}

/* ---- a program that never reaches threshold 0 keeps its young list short ------------------------------ */

static void test_churn_without_collections(void **state) {
    enum { WINDOW = 1000, ROUNDS = 2000000 };
    ouro_object *ring[WINDOW] = {0};
    ouro_gc_gen_stats s0[3], s1[3];
    ouro_gc_get_stats(s0);
    size_t rss0 = 0;
    for (int i = 0; i < ROUNDS; i++) { /* FIFO: a freed object is never its list's last entry */
        ouro_xdecref(ring[i % WINDOW]);
        ring[i % WINDOW] = ouro_list_new(0);
        if (i == WINDOW * 4) rss0 = test_rss();
    }
    size_t rss1 = test_rss();
    size_t grown = rss1 > rss0 ? rss1 - rss0 : 0; /* RSS may shrink: another test's pages returned */
    ouro_gc_get_stats(s1);
    assert_int_equal(s1[0].collections, s0[0].collections); /* disabled: none ran */
    /* 2M entries would be 16 MB; compaction keeps the list near the live count (not measurable under
     * ASan: its quarantine keeps the compaction's freed tables resident; see TEST_ASAN) */
    if (!TEST_ASAN && grown > 4u << 20) fail_msg("RSS grew %zu bytes over %d rounds of churn", grown, ROUNDS);
    for (int i = 0; i < WINDOW; i++) ouro_decref(ring[i]);
}

/* ---- the full collection's scan against an oracle ------------------------------------------------------
 * A random graph of nodes (clusters of random links, forwards and backwards in allocation order, and
 * a few links between clusters), some held as roots. The test computes what is reachable itself; a full
 * collection must free exactly the rest, and the survivors keep their links. Sizes on both sides of
 * the size at which the collector's helper thread takes half of the first pass. */

static uint64_t graph_next(uint64_t *x) { /* splitmix64 */
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void random_graph_round(uint64_t seed, size_t n, size_t nroots) {
    uint64_t x = seed;
    ouro_object **v = malloc(n * sizeof *v);
    uint32_t *adj = malloc(n * 2 * sizeof *adj); /* UINT32_MAX: no link */
    uint32_t *queue = malloc(n * sizeof *queue);
    char *seen = calloc(n, 1);
    size_t *roots = malloc(nroots * sizeof *roots);
    assert_true(v && adj && queue && seen && roots);
    for (size_t i = 0; i < n; i++) v[i] = node_new(node_type);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < 2; k++) {
            uint64_t r = graph_next(&x);
            /* a: a node of the same cluster of 50 (a random functional graph: each cluster holds a
             * cycle); b: now and then, any node (forwards or backwards) */
            size_t base = i - i % 50, size = n - base < 50 ? n - base : 50;
            size_t t = k == 0 ? base + (r >> 8) % size : r % 32 == 0 ? (r >> 8) % n : SIZE_MAX;
            adj[2 * i + k] = t == SIZE_MAX ? UINT32_MAX : (uint32_t)t;
            if (t != SIZE_MAX) link_to(v[i], k, v[t]);
        }
    for (size_t r = 0; r < nroots; r++) roots[r] = graph_next(&x) % n;
    for (size_t r = 0; r < nroots; r++) ouro_incref(v[roots[r]]);
    long d0 = atomic_load(&node_deallocs);
    for (size_t i = 0; i < n; i++) ouro_decref(v[i]); /* frees what no cycle or root holds */
    long by_count = atomic_load(&node_deallocs) - d0;
    size_t head = 0, tail = 0; /* the oracle: breadth first from the roots */
    for (size_t r = 0; r < nroots; r++)
        if (!seen[roots[r]]) seen[roots[r]] = 1, queue[tail++] = (uint32_t)roots[r];
    while (head < tail) {
        uint32_t i = queue[head++];
        for (size_t k = 0; k < 2; k++) {
            uint32_t t = adj[2 * i + k];
            if (t != UINT32_MAX && !seen[t]) seen[t] = 1, queue[tail++] = t;
        }
    }
    assert_true(by_count < (long)(n - tail)); /* some garbage is cyclic: the seeds make sure of it */
    assert_int_equal(ouro_gc_collect(2), (long)(n - tail) - by_count);
    assert_int_equal(atomic_load(&node_deallocs) - d0, (long)(n - tail));
    for (size_t q = 0; q < tail; q++) { /* the survivors are intact, links and all */
        uint32_t i = queue[q];
        assert_int_equal(((node_payload *)v[i])->canary, CANARY);
        for (size_t k = 0; k < 2; k++) {
            ouro_object *c = ouro_slot_get(v[i], k);
            assert_ptr_equal(c, adj[2 * i + k] == UINT32_MAX ? NULL : v[adj[2 * i + k]]);
            ouro_xdecref(c);
        }
    }
    for (size_t r = 0; r < nroots; r++) ouro_decref(v[roots[r]]);
    by_count = atomic_load(&node_deallocs) - d0 - (long)(n - tail);
    assert_int_equal(ouro_gc_collect(2), (long)tail - by_count);
    assert_int_equal(atomic_load(&node_deallocs) - d0, (long)n);
    free(v), free(adj), free(queue), free(seen), free(roots);
}

static void test_full_scan_random_graphs(void **state) {
    for (uint64_t seed = 1; seed <= 4; seed++) random_graph_round(seed, 3000, 1 + seed * 3);
    random_graph_round(42, 150000, 20); /* large enough for the helper thread */
    random_graph_round(43, 150000, 0);  /* all garbage */
}

/* A ring of n nodes linked in a random order, held by one root, a node in the middle of allocation
 * order: all of it survives a full collection, links intact; without the root, all of it is garbage.
 * The sweep mark finds little ahead of it here (the ring goes backwards in table order half the time):
 * most of the ring is expanded from its stack; and with the helper, about half of the references
 * cross between the two workers' halves of pass 1. */
static void random_ring_round(uint64_t seed, size_t n) {
    uint64_t x = seed;
    ouro_object **v = malloc(n * sizeof *v);
    uint32_t *perm = malloc(n * sizeof *perm);
    assert_true(v && perm);
    for (size_t i = 0; i < n; i++) v[i] = node_new(node_type), perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t r = graph_next(&x) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[r], perm[r] = t;
    }
    for (size_t i = 0; i < n; i++) link_to(v[perm[i]], 0, v[perm[(i + 1) % n]]);
    ouro_object *root = v[n / 2];
    ouro_incref(root);
    long d0 = atomic_load(&node_deallocs);
    for (size_t i = 0; i < n; i++) ouro_decref(v[i]);
    assert_int_equal(ouro_gc_collect(2), 0);
    assert_int_equal(atomic_load(&node_deallocs), d0);
    for (size_t i = 0; i < n; i++) {
        ouro_object *c = ouro_slot_get(v[perm[i]], 0);
        assert_ptr_equal(c, v[perm[(i + 1) % n]]);
        assert_int_equal(((node_payload *)c)->canary, CANARY);
        ouro_decref(c);
    }
    ouro_decref(root);
    assert_int_equal(ouro_gc_collect(2), (long)n);
    assert_int_equal(atomic_load(&node_deallocs) - d0, (long)n);
    free(v), free(perm);
}

static void test_full_scan_random_ring(void **state) {
    random_ring_round(7, 3000);
    random_ring_round(8, 200000); /* with the helper thread */
}

/* Frozen and untracked objects are not candidates: what they refer to survives a full collection, and
 * so does what hangs from that. */
static void test_full_scan_frozen_and_untracked_referrers(void **state) {
    ouro_object *frozen = node_new(node_type), *untracked = node_new(node_type);
    assert_int_equal(ouro_gc_freeze(), 0);
    ouro_object *a = node_new(node_type), *b = node_new(node_type), *c = node_new(node_type);
    link_to(frozen, 0, a); /* a is held by the frozen node only; a <-> c is a cycle hanging from it */
    link_to(a, 0, c);
    link_to(c, 0, a);
    assert_int_equal(ouro_gc_untrack(untracked), 0);
    link_to(untracked, 0, b); /* b, a self-cycle, is held by the untracked node only */
    link_to(b, 0, b);
    ouro_decref(a), ouro_decref(b), ouro_decref(c);
    assert_int_equal(ouro_gc_collect(2), 0);
    assert_int_equal(((node_payload *)a)->canary, CANARY);
    assert_int_equal(((node_payload *)b)->canary, CANARY);
    assert_int_equal(((node_payload *)c)->canary, CANARY);
    assert_int_equal(ouro_gc_unfreeze(), 0);
    assert_int_equal(ouro_gc_track(untracked), 0);
    long d0 = atomic_load(&node_deallocs);
    ouro_decref(frozen); /* frees frozen; a <-> c is garbage now */
    ouro_decref(untracked);
    assert_int_equal(atomic_load(&node_deallocs) - d0, 2);
    assert_int_equal(ouro_gc_collect(2), 3);
    assert_int_equal(atomic_load(&node_deallocs) - d0, 5);
}

/* ---- a GC pool carved out of memory that held other data ----------------------------------------------- */

/* After a collect (every free pool purged), one-pool large blocks (not poisoned at free) full of 0x01
 * take the free pools the allocator would hand out next and go back dirty; a new GC pool of a fresh
 * class then reuses one. Its never-used blocks must not read as tracked objects (gc_bits 0x01 is
 * TRACKED, generation 0): the full walks of get_objects and collect(2) trust the gc_bits of every
 * carved block. */
static void test_gc_pool_over_dirty_memory(void **state) {
    enum { BIG = 8, SIZE = 16000, OBJECTS = 2 }; /* fewer than a carved batch: never-used blocks follow */
    void *big[BIG];
    ouro_object *objs[OBJECTS];
    ouro_type_spec spec = {.name = "wide-node", .basic_size = 1000, .flags = OURO_TYPE_GC}; /* a class of its own */
    ouro_type *wide = ouro_type_new(&spec);
    assert_non_null(wide);
    ouro_object *all = ouro_gc_get_objects(-1);
    size_t before = ouro_list_size(all);
    ouro_decref(all);
    ouro_alloc_collect(); /* emptied object pools come back after a grace period: */
    ouro_defer_barrier();
    ouro_alloc_collect(); /* now every free pool is purged */
    for (int i = 0; i < BIG; i++) {
        assert_non_null(big[i] = ouro_alloc(SIZE));
        memset(big[i], 0x01, SIZE);
    }
    for (int i = 0; i < BIG; i++) ouro_free(big[i]);
    for (int i = 0; i < OBJECTS; i++) assert_non_null(objs[i] = ouro_new(wide));
    all = ouro_gc_get_objects(-1);
    assert_int_equal(ouro_list_size(all), before + OBJECTS);
    ouro_decref(all);
    assert_int_equal(ouro_gc_collect(2), 0);
    for (int i = 0; i < OBJECTS; i++) ouro_decref(objs[i]);
    assert_int_equal(stats_of(wide).live, 0);
    assert_int_equal(ouro_type_free(wide), 0);
}

/* ---- SAVEALL and the garbage list ------------------------------------------------------------------------ */

static void test_saveall(void **state) {
    ouro_gc_set_debug(OURO_GC_DEBUG_SAVEALL);
    ouro_object *l = ouro_list_new(0);
    ouro_list_append(l, l);
    ouro_decref(l);
    ouro_gc_gen_stats s0[3], s1[3];
    ouro_gc_get_stats(s0);
    assert_int_equal(ouro_gc_collect(2), 0);
    ouro_gc_get_stats(s1);
    assert_int_equal(s1[2].uncollectable, s0[2].uncollectable + 1);
    ouro_gc_set_debug(0);
    ouro_object *g = ouro_gc_garbage();
    assert_int_equal(ouro_list_size(g), 1);
    assert_int_equal(ouro_list_clear(g), 0);
    assert_int_equal(ouro_gc_collect(2), 1);
    /* Saved by a young collection: it is in generation 2 after (in no young list), where the next
     * full collection finds it once the garbage list lets go. */
    ouro_gc_set_debug(OURO_GC_DEBUG_SAVEALL);
    l = ouro_list_new(0);
    ouro_list_append(l, l);
    ouro_decref(l);
    assert_int_equal(ouro_gc_collect(0), 0);
    ouro_gc_set_debug(0);
    assert_int_equal(ouro_list_size(g), 1);
    ouro_object *gen2 = ouro_gc_get_objects(2);
    bool found = false;
    for (size_t i = 0; i < ouro_list_size(gen2); i++) {
        ouro_object *x = ouro_list_get(gen2, (ptrdiff_t)i);
        found |= x == l;
        ouro_decref(x);
    }
    assert_true(found);
    ouro_decref(gen2);
    assert_int_equal(ouro_list_clear(g), 0);
    assert_int_equal(ouro_gc_collect(0), 0);
    assert_int_equal(ouro_gc_collect(2), 1);
    ouro_decref(g);
}

/* ---- threads ---------------------------------------------------------------------------------------------- */

/* Two threads each own one half of a cycle; the main thread's decrement of one half is queued to its
 * owner, which waits offline: the collection merges the queue itself. */
static ouro_object *half[2];
static atomic_int halves_phase;

static void *make_half(void *arg) {
    intptr_t i = (intptr_t)arg;
    half[i] = ouro_list_new(0);
    ouro_incref(half[i]); /* two references handed to the main thread, both in the local count */
    atomic_fetch_add(&halves_phase, 1);
    while (atomic_load(&halves_phase) < 3) {
        ouro_offline_begin();
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
        ouro_offline_end();
    }
    return NULL;
}

static void test_cycle_across_threads_with_queued_merge(void **state) {
    size_t lists0 = stats_of(&ouro_list_type).live;
    atomic_store(&halves_phase, 0);
    pthread_t t[2];
    for (intptr_t i = 0; i < 2; i++) pthread_create(&t[i], NULL, make_half, (void *)i);
    while (atomic_load(&halves_phase) < 2) sched_yield();
    assert_int_equal(ouro_list_append(half[0], half[1]), 0);
    assert_int_equal(ouro_list_append(half[1], half[0]), 0);
    for (int i = 0; i < 2; i++) { /* the owners' references, handed to us: the second one is queued */
        ouro_decref(half[i]);
        ouro_decref(half[i]);
    }
    if (!OURO_REFCOUNT_ATOMIC) /* -Drefcount=atomic: born merged, nothing is queued */
        assert_int_equal(half[0]->ref_shared & OURO_SHARED_STATE, OURO_SHARED_QUEUED);
    assert_int_equal(ouro_gc_collect(0), 2);
    assert_int_equal(stats_of(&ouro_list_type).live, lists0);
    atomic_store(&halves_phase, 3);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
}

/* A thread exits with cyclic garbage in its young list: the next young collection finds it. */
static void *make_garbage_and_exit(void *arg) {
    for (int i = 0; i < 100; i++) {
        ouro_object *a = node_new(node_type), *b = node_new(node_type);
        link_to(a, 0, b);
        link_to(b, 0, a);
        ouro_decref(a);
        ouro_decref(b);
    }
    return arg;
}

static void test_thread_exit_with_young_objects(void **state) {
    pthread_t t;
    pthread_create(&t, NULL, make_garbage_and_exit, NULL);
    pthread_join(t, NULL);
    assert_int_equal(ouro_gc_collect(0), 200);
    assert_int_equal(atomic_load(&node_deallocs), 200);
}

/* Threads build and drop cycles and keep a canary structure alive while the main thread collects. */
enum { MUTATORS = 3, MUTATOR_ROUNDS = 3000 };
static atomic_int mutators_done;

static void *mutate(void *arg) {
    (void)arg;
    ouro_object *keep = node_new(node_type); /* reachable all along: never collected */
    ouro_object *keep_list = ouro_list_new(0);
    link_to(keep, 0, keep_list);
    for (int i = 0; i < MUTATOR_ROUNDS; i++) {
        ouro_object *a = node_new(node_type), *l = ouro_list_new(0);
        link_to(a, 0, l);
        ouro_list_append(l, a);
        if (i % 7 == 0) ouro_list_append(keep_list, a); /* some stay reachable */
        ouro_decref(a);
        ouro_decref(l);
        if (((node_payload *)keep)->canary != CANARY) abort();
        if (i % 64 == 0) ouro_safepoint();
    }
    size_t kept = ouro_list_size(keep_list);
    if (kept != (MUTATOR_ROUNDS + 6) / 7) abort();
    for (size_t i = 0; i < kept; i++) {
        ouro_object *a = ouro_list_get(keep_list, i);
        if (((node_payload *)a)->canary != CANARY) abort();
        ouro_decref(a);
    }
    ouro_decref(keep_list);
    ouro_decref(keep);
    atomic_fetch_add(&mutators_done, 1);
    return NULL;
}

static void test_collect_while_mutating(void **state) {
    atomic_store(&mutators_done, 0);
    pthread_t t[MUTATORS];
    for (int i = 0; i < MUTATORS; i++) pthread_create(&t[i], NULL, mutate, NULL);
    long collected = 0;
    for (int g = 0; atomic_load(&mutators_done) < MUTATORS; g++) {
        long n = ouro_gc_collect(g % 3);
        assert_true(n >= 0);
        collected += n;
    }
    for (int i = 0; i < MUTATORS; i++) pthread_join(t[i], NULL);
    collected += ouro_gc_collect(2);
    /* every node made was freed: the cycles by the collector, the rest by counting */
    assert_int_equal(atomic_load(&node_deallocs), MUTATORS * (MUTATOR_ROUNDS + 1));
    assert_int_equal(stats_of(node_type).live, 0);
    assert_true(collected > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_list_self_cycle, setup),
        cmocka_unit_test_setup(test_dict_self_cycle, setup),
        cmocka_unit_test_setup(test_tuple_list_cycle, setup),
        cmocka_unit_test_setup(test_user_type_ring, setup),
        cmocka_unit_test_setup(test_cycle_through_several_types, setup),
        cmocka_unit_test_setup(test_reachable_survive, setup),
        cmocka_unit_test_setup(test_finalizer_runs_once, setup),
        cmocka_unit_test_setup(test_resurrection, setup),
        cmocka_unit_test_setup(test_weakref_callback_sees_intact_garbage, setup),
        cmocka_unit_test_setup(test_counts_move, setup),
        cmocka_unit_test_setup(test_thresholds_and_automatic, setup),
        cmocka_unit_test_setup(test_allocating_thread_paced_by_collection, setup),
        cmocka_unit_test_setup(test_automatic_collections_stay_bounded, setup),
        cmocka_unit_test_setup(test_freeze, setup),
        cmocka_unit_test_setup(test_callbacks, setup),
        cmocka_unit_test_setup(test_referrers_referents_tracked, setup),
        cmocka_unit_test_setup(test_deep_chain_collect_in_finalizer, setup),
        cmocka_unit_test_setup(test_churn_without_collections, setup),
        cmocka_unit_test_setup(test_full_scan_random_graphs, setup),
        cmocka_unit_test_setup(test_full_scan_random_ring, setup),
        cmocka_unit_test_setup(test_full_scan_frozen_and_untracked_referrers, setup),
        cmocka_unit_test_setup(test_gc_pool_over_dirty_memory, setup),
        cmocka_unit_test_setup(test_saveall, setup),
        cmocka_unit_test_setup(test_cycle_across_threads_with_queued_merge, setup),
        cmocka_unit_test_setup(test_thread_exit_with_young_objects, setup),
        cmocka_unit_test_setup(test_collect_while_mutating, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
