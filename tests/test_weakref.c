/* tests/test_weakref.c — weak references: get while alive and after death, callbacks exactly once
 * with their arg on the freeing thread, weakrefs that die first, many weakrefs to one object,
 * immortal referents, weakrefs to weakrefs, hash/eq/repr, errors; and the races: getters looping
 * while the owner drops the last reference (every successful get sees an intact canary, each referent
 * freed once, each callback once), weakrefs dying while their referent dies. Oracles after join. */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define CANARY 0xC0FFEE5EEDull

typedef struct {
    ouro_object head;
    uint64_t canary;
} box;

static atomic_long box_deallocs;
static atomic_long box_corrupt; /* deallocs that found a bad canary (a double free) */
static _Atomic uintptr_t box_freed_by; /* the thread of the last dealloc */

static void box_dealloc(ouro_object *self) {
    box *b = (box *)self;
    if (b->canary != CANARY) atomic_fetch_add(&box_corrupt, 1);
    b->canary = 0;
    atomic_store(&box_freed_by, ouro_thread_id());
    atomic_fetch_add(&box_deallocs, 1);
}

static ouro_type box_type = {.head = OURO_TYPE_HEAD, .name = "box", .basic_size = sizeof(box), .dealloc = box_dealloc};

static ouro_object *box_new(void) {
    box *b = (box *)ouro_new(&box_type);
    assert_non_null(b);
    b->canary = CANARY;
    return &b->head;
}

static size_t live_of(ouro_type *t) {
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(t, &st), 0);
    return st.live;
}

/* Per-test baseline of live boxes and weakrefs. */
typedef struct {
    size_t boxes, weakrefs;
} wr_baseline;

static wr_baseline baseline(void) { return (wr_baseline){live_of(&box_type), live_of(&ouro_weakref_type)}; }

static void check_baseline(wr_baseline b0) {
    ouro_refcount_merge_queued();
    assert_int_equal(live_of(&box_type), b0.boxes);
    assert_int_equal(live_of(&ouro_weakref_type), b0.weakrefs);
    assert_int_equal(atomic_load(&box_corrupt), 0);
}

/* A callback's record: how often it ran, with which weakref, on which thread, and what get said. */
typedef struct {
    atomic_int calls;
    ouro_object *_Atomic seen;
    _Atomic uintptr_t thread;
    atomic_int get_was_null;
} cb_record;

static void record_cb(ouro_object *wr, void *arg) {
    cb_record *r = arg;
    atomic_fetch_add(&r->calls, 1);
    atomic_store(&r->seen, wr);
    atomic_store(&r->thread, ouro_thread_id());
    ouro_object *got = ouro_weakref_get(wr);
    atomic_store(&r->get_was_null, got == NULL);
    ouro_xdecref(got);
}

/* ---- basics ------------------------------------------------------------------------------------------ */
static void test_get_alive_then_dead(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    long d0 = atomic_load(&box_deallocs);
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, NULL, NULL);
    assert_non_null(w);
    assert_string_equal(ouro_type_name(w), "weakref");
    assert_int_equal(ouro_refcount(o), 1); /* a weakref holds no reference */
    assert_int_equal(ouro_weakref_count(o), 1);
    ouro_object *got = ouro_weakref_get(w);
    assert_ptr_equal(got, o);
    assert_int_equal(ouro_refcount(o), 2);
    ouro_decref(got);
    assert_int_equal(ouro_weakref_alive(w), 1);
    assert_int_equal(atomic_load(&box_deallocs), d0);
    ouro_decref(o);
    assert_int_equal(atomic_load(&box_deallocs), d0 + 1);
    ouro_err_clear();
    assert_null(ouro_weakref_get(w));
    assert_int_equal(ouro_err_occurred(), OURO_OK); /* dead is not an error */
    assert_int_equal(ouro_weakref_alive(w), 0);
    assert_null(ouro_weakref_get(w)); /* and stays dead */
    ouro_decref(w);
    check_baseline(b0);
}

static void test_callback_once(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    cb_record rec = {0};
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, record_cb, &rec);
    ouro_object *w2 = ouro_weakref_new(o, NULL, NULL); /* no callback */
    assert_int_equal(ouro_weakref_count(o), 2);
    ouro_decref(o);
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_ptr_equal(atomic_load(&rec.seen), w);
    assert_int_equal(atomic_load(&rec.thread), ouro_thread_id());
    assert_int_equal(atomic_load(&rec.get_was_null), 1); /* cleared before the callback */
    assert_null(ouro_weakref_get(w2));
    ouro_decref(w);
    ouro_decref(w2);
    assert_int_equal(atomic_load(&rec.calls), 1);
    check_baseline(b0);
}

static void test_weakref_dies_first(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    cb_record rec = {0};
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, record_cb, &rec);
    ouro_object *keep = ouro_weakref_new(o, NULL, NULL);
    ouro_decref(w); /* dies first: unlinked, never called back */
    assert_int_equal(ouro_weakref_count(o), 1);
    ouro_decref(keep);
    assert_int_equal(ouro_weakref_count(o), 0);
    ouro_decref(o);
    assert_int_equal(atomic_load(&rec.calls), 0);
    check_baseline(b0);
}

/* The callback owns the weakref's only reference and drops it: the clear's own reference keeps the
 * weakref alive until the callback returns. */
static void drop_own_weakref(ouro_object *wr, void *arg) {
    ouro_object **slot = arg;
    assert_ptr_equal(*slot, wr);
    *slot = NULL;
    ouro_decref(wr);
    assert_string_equal(ouro_type_name(wr), "weakref"); /* still a weakref */
}

static void test_callback_drops_weakref(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    ouro_object *o = box_new();
    ouro_object *slot = NULL;
    slot = ouro_weakref_new(o, drop_own_weakref, &slot);
    ouro_decref(o);
    assert_null(slot);
    check_baseline(b0);
}

/* A callback that fails does not leave its error to the code whose decref freed the referent. */
static void failing_cb(ouro_object *wr, void *arg) {
    (void)arg;
    (void)wr;
    assert_null(ouro_weakref_get(NULL)); /* sets OURO_ERR_INVALID */
}

static void test_callback_error_contained(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, failing_cb, NULL);
    ouro_err_clear();
    ouro_decref(o);
    assert_int_equal(ouro_err_occurred(), OURO_OK);
    ouro_decref(w);
    o = box_new();
    w = ouro_weakref_new(o, failing_cb, NULL);
    assert_null(ouro_weakref_get(OURO_NONE)); /* OURO_ERR_TYPE */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE);
    ouro_decref(o);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE); /* the earlier error is restored */
    ouro_err_clear();
    ouro_decref(w);
    check_baseline(b0);
}

enum { MANY = 1000 };

typedef struct {
    atomic_int calls[MANY];
    atomic_int order[MANY]; /* the call's rank */
    atomic_int next_rank;
} many_record;

static many_record *many_rec;

static void slot_cb(ouro_object *wr, void *arg) {
    (void)wr;
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&many_rec->calls[i], 1);
    atomic_store(&many_rec->order[i], atomic_fetch_add(&many_rec->next_rank, 1));
}

static void test_many_weakrefs(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    many_rec = calloc(1, sizeof *many_rec);
    ouro_object *o = box_new();
    static ouro_object *w[MANY];
    for (intptr_t i = 0; i < MANY; i++) {
        w[i] = ouro_weakref_new(o, i % 3 == 2 ? NULL : slot_cb, (void *)i);
        assert_non_null(w[i]);
    }
    assert_int_equal(ouro_weakref_count(o), MANY);
    /* other referents in the table meanwhile */
    ouro_object *others[64], *other_w[64];
    for (int i = 0; i < 64; i++) {
        others[i] = box_new();
        other_w[i] = ouro_weakref_new(others[i], NULL, NULL);
    }
    for (int i = 0; i < MANY; i += 4) { /* a quarter die first, heads and middles alike */
        ouro_decref(w[i]);
        w[i] = NULL;
    }
    assert_int_equal(ouro_weakref_count(o), MANY - MANY / 4);
    ouro_decref(o);
    int called = 0;
    int last_rank = -1;
    for (int i = MANY - 1; i >= 0; i--) { /* newest first */
        int want = w[i] && i % 3 != 2;
        assert_int_equal(atomic_load(&many_rec->calls[i]), want);
        if (want) {
            called++;
            assert_true(atomic_load(&many_rec->order[i]) > last_rank);
            last_rank = atomic_load(&many_rec->order[i]);
        }
        if (w[i]) {
            assert_int_equal(ouro_weakref_alive(w[i]), 0);
            ouro_decref(w[i]);
        }
    }
    assert_int_equal(atomic_load(&many_rec->next_rank), called);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(ouro_weakref_alive(other_w[i]), 1);
        ouro_decref(others[i]);
        assert_int_equal(ouro_weakref_alive(other_w[i]), 0);
        ouro_decref(other_w[i]);
    }
    free(many_rec);
    check_baseline(b0);
}

static void test_immortal_referent(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    cb_record rec = {0};
    ouro_object *referents[] = {OURO_NONE, OURO_TRUE, ouro_int_from(7), (ouro_object *)&box_type};
    for (size_t i = 0; i < sizeof referents / sizeof referents[0]; i++) {
        ouro_object *w = ouro_weakref_new(referents[i], record_cb, &rec);
        assert_non_null(w);
        assert_ptr_equal(ouro_weakref_get(w), referents[i]);
        assert_int_equal(ouro_weakref_alive(w), 1);
        assert_int_equal(ouro_weakref_count(referents[i]), 0); /* not registered */
        ouro_decref(referents[i]);
        assert_ptr_equal(ouro_weakref_get(w), referents[i]);
        ouro_decref(w);
    }
    /* made immortal after the weakref: registered, never cleared, unlinked when the weakref dies */
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, record_cb, &rec);
    assert_int_equal(ouro_immortalize(o), 0);
    ouro_decref(o);
    ouro_object *got = ouro_weakref_get(w);
    assert_ptr_equal(got, o);
    assert_int_equal(ouro_weakref_count(o), 1);
    ouro_decref(w);
    assert_int_equal(ouro_weakref_count(o), 0);
    assert_int_equal(atomic_load(&rec.calls), 0);
    /* the immortal box stays: count it in the baseline */
    b0.boxes++;
    check_baseline(b0);
}

static void test_weakref_to_weakref(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    cb_record r1 = {0}, r2 = {0};
    ouro_object *o = box_new();
    ouro_object *w1 = ouro_weakref_new(o, record_cb, &r1);
    ouro_object *w2 = ouro_weakref_new(w1, record_cb, &r2);
    ouro_object *got = ouro_weakref_get(w2);
    assert_ptr_equal(got, w1);
    ouro_decref(got);
    ouro_decref(o); /* w1 cleared and called back, w2 untouched */
    assert_int_equal(atomic_load(&r1.calls), 1);
    assert_int_equal(atomic_load(&r2.calls), 0);
    assert_int_equal(ouro_weakref_alive(w2), 1);
    ouro_decref(w1); /* now w2's referent dies */
    assert_int_equal(atomic_load(&r2.calls), 1);
    assert_ptr_equal(atomic_load(&r2.seen), w2);
    assert_null(ouro_weakref_get(w2));
    ouro_decref(w2);
    check_baseline(b0);
}

static void test_hash_eq_repr(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    ouro_object *a = ouro_int_from(100000), *b = ouro_int_from(100000); /* equal, not identical */
    ouro_object *wa = ouro_weakref_new(a, NULL, NULL), *wb = ouro_weakref_new(b, NULL, NULL);
    ouro_object *wa2 = ouro_weakref_new(a, NULL, NULL);
    assert_ptr_not_equal(wa, wa2); /* every call makes a new weakref */
    assert_int_equal(ouro_hash(wa), ouro_hash(a));
    assert_int_equal(ouro_eq(wa, wb), 1);
    assert_int_equal(ouro_eq(wa, wa2), 1);
    assert_int_equal(ouro_eq(wa, a), 0);
    ouro_object *r = ouro_repr(wa);
    assert_non_null(strstr(ouro_str_utf8(r, NULL), "to 'int'"));
    ouro_decref(r);
    ouro_decref(a);
    ouro_decref(b);
    assert_int_equal(ouro_hash(wa), 100000); /* taken while alive: kept */
    ouro_err_clear();
    assert_int_equal(ouro_hash(wb), -1);      /* never taken, referent gone */
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE);
    ouro_err_clear();
    assert_int_equal(ouro_eq(wa, wa2), 0); /* dead: by identity */
    assert_int_equal(ouro_eq(wa, wa), 1);
    r = ouro_repr(wa);
    assert_non_null(strstr(ouro_str_utf8(r, NULL), "dead"));
    ouro_decref(r);
    ouro_decref(wa);
    ouro_decref(wb);
    ouro_decref(wa2);
    check_baseline(b0);
}

static void test_errors(void **state) {
    (void)state;
    ouro_err_clear();
    assert_null(ouro_weakref_new(NULL, NULL, NULL));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
    assert_null(ouro_weakref_get(NULL));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
    assert_null(ouro_weakref_get(OURO_NONE));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE);
    ouro_err_clear();
    assert_int_equal(ouro_weakref_alive(OURO_TRUE), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_TYPE);
    ouro_err_clear();
    assert_int_equal(ouro_weakref_count(NULL), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
}

/* ---- other threads ------------------------------------------------------------------------------------ */
static void join_offline(pthread_t t, void **ret) {
    ouro_offline_begin(); /* we are attached: a blocking wait is offline */
    pthread_join(t, ret);
    ouro_offline_end();
}

/* A thread that was never attached calls get: it is attached for it. */
static void *get_unattached(void *arg) {
    ouro_object *r = ouro_weakref_get(arg);
    bool ok = r && ((box *)r)->canary == CANARY;
    ouro_xdecref(r);
    return (void *)(intptr_t)ok;
}

static void *drop(void *arg) {
    ouro_decref(arg);
    return NULL;
}

typedef struct {
    ouro_object *o, *w;
    cb_record *rec;
} other_job;

static void *make_weakref_and_drop(void *arg) {
    other_job *job = arg;
    job->w = ouro_weakref_new(job->o, record_cb, job->rec);
    ouro_decref(job->o); /* the handed reference: queued to the owner */
    return NULL;
}

static void test_other_threads(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    cb_record rec = {0};
    ouro_object *o = box_new();
    ouro_object *w = ouro_weakref_new(o, record_cb, &rec);
    pthread_t t;
    void *ok = NULL;
    pthread_create(&t, NULL, get_unattached, w);
    join_offline(t, &ok);
    assert_non_null(ok);
    /* the last reference dropped on another thread: the callback runs there */
    pthread_create(&t, NULL, drop, o);
    join_offline(t, NULL);
    ouro_refcount_merge_queued(); /* a non-owner's drop of the owner's count queues it to us */
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_null(ouro_weakref_get(w));
    ouro_decref(w);
    /* a weakref made by a non-owner with a reference handed to it, the referent freed here */
    o = box_new();
    ouro_incref(o);
    cb_record rec2 = {0};
    other_job job = {o, NULL, &rec2};
    pthread_create(&t, NULL, make_weakref_and_drop, &job);
    join_offline(t, NULL);
    assert_non_null(job.w);
    ouro_refcount_merge_queued();
    assert_int_equal(ouro_refcount(o), 1);
    assert_int_equal(atomic_load(&rec2.calls), 0);
    ouro_decref(o);
    assert_int_equal(atomic_load(&rec2.calls), 1);
    assert_int_equal(atomic_load(&rec2.thread), ouro_thread_id());
    ouro_decref(job.w); /* made there, dropped here */
    check_baseline(b0);
}

/* ---- the race: getters while the owner drops the last reference ------------------------------------------ */
enum { GETTERS = 4 };

static struct {
    ouro_object *_Atomic wr;    /* this round's weakref */
    atomic_int round;          /* > 0: a round is on; -1: stop */
    atomic_int done;           /* getters done with this round */
    atomic_int dropped;        /* the owner dropped this round's reference */
    atomic_long successes;     /* gets that returned the referent */
    atomic_long bad_canary;    /* gets that returned an object with a broken canary */
    atomic_long callbacks;     /* callbacks run */
    atomic_long wrong_arg;     /* callbacks with the wrong weakref or arg */
} race;

static void race_cb(ouro_object *wr, void *arg) {
    if (wr != atomic_load(&race.wr) || arg != &race) atomic_fetch_add(&race.wrong_arg, 1);
    atomic_fetch_add(&race.callbacks, 1);
}

static void *race_getter(void *arg) {
    (void)arg;
    ouro_thread_attach();
    int seen = 0;
    for (;;) {
        int round = atomic_load(&race.round);
        if (round < 0) break;
        if (round == seen) {
            ouro_safepoint();
            sched_yield();
            continue;
        }
        ouro_object *w = atomic_load(&race.wr);
        long after_drop = 0;
        for (long n = 0;; n++) {
            ouro_object *r = ouro_weakref_get(w);
            if (!r) break;
            if (((box *)r)->canary != CANARY) atomic_fetch_add(&race.bad_canary, 1);
            atomic_fetch_add(&race.successes, 1);
            if (n % 8 == 0) sched_yield(); /* hold it a little longer now and then */
            ouro_decref(r);
            if (n % 64 == 0) ouro_safepoint();
            /* Getters holding references in turn could keep the referent alive forever: a few gets
             * past the owner's drop, then let it die. */
            if (atomic_load(&race.dropped) && ++after_drop > 32) break;
        }
        seen = round;
        atomic_fetch_add(&race.done, 1);
    }
    return NULL;
}

/* Waits (online, polling) until *p reaches want, up to about 10 s. */
static bool wait_for(atomic_long *p, long want) {
    for (long i = 0; i < 10000000 && atomic_load(p) < want; i++) {
        ouro_refcount_merge_queued();
        ouro_safepoint();
        sched_yield();
    }
    return atomic_load(p) >= want;
}

static void test_race_get_vs_death(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    const int rounds = OURO_TSAN ? 100 : 1000;
    long d0 = atomic_load(&box_deallocs);
    memset(&race, 0, sizeof race);
    pthread_t t[GETTERS];
    for (int i = 0; i < GETTERS; i++) pthread_create(&t[i], NULL, race_getter, NULL);
    long failures = 0, freed_elsewhere = 0;
    for (int round = 1; round <= rounds; round++) {
        ouro_object *o = box_new();
        ouro_object *w = ouro_weakref_new(o, race_cb, &race);
        atomic_store(&race.wr, w);
        atomic_store(&race.dropped, 0);
        long s0 = atomic_load(&race.successes);
        atomic_store(&race.round, round);
        /* let some gets succeed first (most rounds), then drop the only reference */
        if (round % 4 != 0) wait_for(&race.successes, s0 + 1 + round % 7);
        ouro_decref(o);
        atomic_store(&race.dropped, 1);
        for (long i = 0; i < 10000000 && atomic_load(&race.done) < GETTERS * round; i++) {
            ouro_refcount_merge_queued();
            ouro_safepoint();
            sched_yield();
        }
        if (atomic_load(&race.done) != GETTERS * round) failures++;
        if (!wait_for(&race.callbacks, round)) failures++;
        if (!wait_for(&box_deallocs, d0 + round)) failures++;
        if (atomic_load(&race.callbacks) != round || atomic_load(&box_deallocs) != d0 + round) failures++;
        if (ouro_weakref_get(w) != NULL) failures++;
        freed_elsewhere += atomic_load(&box_freed_by) != ouro_thread_id();
        ouro_decref(w);
        if (failures) break;
    }
    atomic_store(&race.round, -1);
    for (int i = 0; i < GETTERS; i++) join_offline(t[i], NULL);
    assert_int_equal(failures, 0);
    assert_int_equal(atomic_load(&race.bad_canary), 0);
    assert_int_equal(atomic_load(&race.wrong_arg), 0);
    assert_int_equal(atomic_load(&race.callbacks), rounds);
    assert_int_equal(atomic_load(&box_deallocs), d0 + rounds); /* each referent freed exactly once */
    assert_true(atomic_load(&race.successes) > 0);
    printf("get vs death: %d rounds, %ld successful gets, %ld referents freed by a getter\n", rounds,
           (long)atomic_load(&race.successes), freed_elsewhere);
    check_baseline(b0);
}

/* ---- the race: weakrefs dying while their referent dies ----------------------------------------------------- */
enum { DYERS = 4, DYER_WEAKREFS = 64 };

static struct {
    ouro_object *_Atomic referent;
    atomic_int round;
    atomic_int ready;  /* dyers that made their weakrefs this round */
    atomic_int go;     /* the round's referent may die now */
    atomic_long freed_target; /* box_deallocs once this round's referent is freed */
    atomic_int alive_after_free;
    atomic_int done;
    atomic_int calls[DYERS][DYER_WEAKREFS];
} dye;

static void dye_cb(ouro_object *wr, void *arg) {
    (void)wr;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Each round: make DYER_WEAKREFS weakrefs to the referent (with a reference the main thread handed
 * over, dropped after), then drop the even ones while the referent dies; the odd ones are kept until
 * it is dead, so their callbacks must have run exactly once. */
static void *dyer(void *arg) {
    int me = (int)(intptr_t)arg;
    ouro_thread_attach();
    int seen = 0;
    ouro_object *w[DYER_WEAKREFS];
    for (;;) {
        int round = atomic_load(&dye.round);
        if (round < 0) break;
        if (round == seen) {
            ouro_safepoint();
            sched_yield();
            continue;
        }
        ouro_object *r = atomic_load(&dye.referent);
        for (int i = 0; i < DYER_WEAKREFS; i++) w[i] = ouro_weakref_new(r, dye_cb, &dye.calls[me][i]);
        ouro_decref(r); /* the handed reference (counted by the owner: queued to it) */
        atomic_fetch_add(&dye.ready, 1);
        while (!atomic_load(&dye.go)) {
            ouro_safepoint();
            sched_yield();
        }
        for (int i = 0; i < DYER_WEAKREFS; i += 2) ouro_decref(w[i]);
        /* get says NULL from the moment the count reaches zero; the clear (and the callbacks) may come
         * a little later: wait for the free itself, which follows them */
        while (atomic_load(&box_deallocs) < atomic_load(&dye.freed_target)) {
            ouro_safepoint();
            sched_yield();
        }
        if (ouro_weakref_alive(w[1]) != 0) atomic_store(&dye.alive_after_free, 1);
        for (int i = 1; i < DYER_WEAKREFS; i += 2) ouro_decref(w[i]);
        seen = round;
        atomic_fetch_add(&dye.done, 1);
    }
    return NULL;
}

static void test_race_weakref_death_vs_referent_death(void **state) {
    (void)state;
    wr_baseline b0 = baseline();
    const int rounds = OURO_TSAN ? 30 : 200;
    long d0 = atomic_load(&box_deallocs);
    memset(&dye, 0, sizeof dye);
    pthread_t t[DYERS];
    for (int i = 0; i < DYERS; i++) pthread_create(&t[i], NULL, dyer, (void *)(intptr_t)i);
    int bad = 0;
    for (int round = 1; round <= rounds && !bad; round++) {
        ouro_object *o = box_new();
        for (int i = 0; i < DYERS; i++) ouro_incref(o);
        atomic_store(&dye.referent, o);
        atomic_store(&dye.ready, 0);
        atomic_store(&dye.go, 0);
        atomic_store(&dye.freed_target, d0 + round);
        atomic_store(&dye.round, round);
        while (atomic_load(&dye.ready) != DYERS) {
            ouro_refcount_merge_queued();
            ouro_safepoint();
            sched_yield();
        }
        atomic_store(&dye.go, 1);
        ouro_decref(o); /* ours; the dyers' handed references are in our queue or merged already */
        for (long i = 0; atomic_load(&dye.done) < DYERS * round; i++) {
            ouro_refcount_merge_queued(); /* the free may happen here */
            ouro_safepoint();
            sched_yield();
            if (i > 10000000) {
                bad = 1;
                break;
            }
        }
        for (int d = 0; d < DYERS; d++)
            for (int i = 0; i < DYER_WEAKREFS; i++) {
                int c = atomic_load(&dye.calls[d][i]);
                if (c > 1 || (i % 2 == 1 && c != 1)) bad = 2;
                atomic_store(&dye.calls[d][i], 0);
            }
        if (atomic_load(&box_deallocs) != d0 + round) bad = 3;
    }
    atomic_store(&dye.round, -1);
    for (int i = 0; i < DYERS; i++) join_offline(t[i], NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(atomic_load(&dye.alive_after_free), 0);
    assert_int_equal(atomic_load(&box_deallocs), d0 + rounds);
    check_baseline(b0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_alive_then_dead),
        cmocka_unit_test(test_callback_once),
        cmocka_unit_test(test_weakref_dies_first),
        cmocka_unit_test(test_callback_drops_weakref),
        cmocka_unit_test(test_callback_error_contained),
        cmocka_unit_test(test_many_weakrefs),
        cmocka_unit_test(test_immortal_referent),
        cmocka_unit_test(test_weakref_to_weakref),
        cmocka_unit_test(test_hash_eq_repr),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_other_threads),
        cmocka_unit_test(test_race_get_vs_death),
        cmocka_unit_test(test_race_weakref_death_vs_referent_death),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
