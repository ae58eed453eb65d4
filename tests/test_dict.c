/* tests/test_dict.c — dict and set: every function and its errors, insertion order across deletes and
 * rebuilds, the 2/3 load bound, colliding hashes, an eq that re-enters the dict, per-type counts back
 * to baseline; and concurrency with oracles checked after join: threads inserting their own keys,
 * racing get/set/clear on canary values, iteration during mutation, lock-free readers during rebuilds,
 * racing setdefault, racing set add/contains. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* Smaller runs under TSan (10x slower). */
#define SCALE(n) (OURO_TSAN ? (n) / 8 : (n))

/* ---- a value type with a canary checked at free and by readers -------------------------------------- */
#define CANARY 0xc0ffee5eed0b1ec7ull

typedef struct {
    ouro_object head;
    uint64_t canary;
    long idx; /* what the value stands for (the tests' oracle) */
} cval;

static atomic_long cval_deallocs;

static void cval_dealloc(ouro_object *self) {
    cval *v = (cval *)self;
    if (v->canary != CANARY) {
        fprintf(stderr, "cval %p freed twice or corrupted\n", (void *)v);
        abort();
    }
    v->canary = 0xdeadull; /* a reader that sees this read a freed value */
    atomic_fetch_add(&cval_deallocs, 1);
}

static ouro_type cval_type = {.head = OURO_TYPE_HEAD, .name = "cval", .basic_size = sizeof(cval), .dealloc = cval_dealloc};

static ouro_object *cval_new(long idx) {
    cval *v = (cval *)ouro_new(&cval_type);
    if (!v) abort();
    v->canary = CANARY;
    v->idx = idx;
    return &v->head;
}

/* 1 when o is a live cval standing for idx (idx < 0: any). */
static int cval_ok(ouro_object *o, long idx) {
    if (!o || o->type != &cval_type) return 0;
    cval *v = (cval *)o;
    return v->canary == CANARY && (idx < 0 || v->idx == idx);
}

/* ---- a key type with colliding hashes (id % 4) and an eq by id --------------------------------------- */
typedef struct {
    ouro_object head;
    long id;
} ckey;

static ouro_type *ckey_type;
static ouro_object *reenter_dict; /* the dict a re-entrant key's eq mutates */
static atomic_long ckey_eq_calls;

static int64_t ckey_hash(ouro_object *self) { return ((ckey *)self)->id % 4; }

static int ckey_eq(ouro_object *self, ouro_object *other) {
    atomic_fetch_add(&ckey_eq_calls, 1);
    if (other->type != self->type) return 0;
    long a = ((ckey *)self)->id, b = ((ckey *)other)->id;
    if (a == 666 || b == 666) { /* an eq that fails: set an error through the API */
        assert_null(ouro_dict_get(NULL, NULL));
        return -1;
    }
    if ((a == 777 || b == 777) && reenter_dict) { /* an eq that uses the same dict: must not deadlock */
        ouro_object *k = ouro_str_from_cstr("set by eq");
        assert_int_equal(ouro_dict_set(reenter_dict, k, k), 0);
        assert_int_equal(ouro_dict_contains(reenter_dict, k), 1);
        ouro_decref(k);
    }
    return a == b;
}

static ouro_object *ckey_new(long id) {
    ckey *k = (ckey *)ouro_new(ckey_type);
    assert_non_null(k);
    k->id = id;
    return &k->head;
}

/* ---- helpers ------------------------------------------------------------------------------------------- */

static ouro_type_stats stats_of(const ouro_type *t) {
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(t, &st), 0);
    return st;
}

typedef struct {
    size_t dict, set, str, cval, ckey;
} live_counts;

static live_counts live_now(void) {
    ouro_refcount_merge_queued();
    live_counts c = {stats_of(&ouro_dict_type).live, stats_of(&ouro_set_type).live, stats_of(&ouro_str_type).live,
                     stats_of(&cval_type).live, ckey_type ? stats_of(ckey_type).live : 0};
    return c;
}

static void assert_live_back(live_counts before) {
    live_counts now = live_now();
    assert_int_equal(now.dict, before.dict);
    assert_int_equal(now.set, before.set);
    assert_int_equal(now.str, before.str);
    assert_int_equal(now.cval, before.cval);
    assert_int_equal(now.ckey, before.ckey);
}

static ouro_object *S(const char *s) {
    ouro_object *o = ouro_str_from_cstr(s);
    assert_non_null(o);
    return o;
}

static ouro_object *SF(const char *prefix, long i) {
    ouro_object *o = ouro_str_from_format("%s%ld", prefix, i);
    if (!o) abort();
    return o;
}

/* repr of o as a C string compared with want. */
static void assert_repr(ouro_object *o, const char *want) {
    ouro_object *r = ouro_repr(o);
    assert_non_null(r);
    assert_string_equal(ouro_str_utf8(r, NULL), want);
    ouro_decref(r);
}

static void assert_err(ouro_err code) {
    assert_int_equal(ouro_err_occurred(), code);
    ouro_err_clear();
}

static void join_all(pthread_t *t, int n) {
    ouro_offline_begin(); /* the test thread is attached: a blocking join is offline */
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    ouro_offline_end();
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64* with a fixed seed per thread */
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

/* ---- dict: the API --------------------------------------------------------------------------------------- */

static void test_dict_basic(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    assert_non_null(d);
    assert_int_equal(ouro_dict_size(d), 0);
    assert_repr(d, "{}");
    ouro_object *a = S("a"), *b = S("b"), *x = S("x"), *y = S("y");
    assert_int_equal(ouro_dict_set(d, a, x), 0);
    assert_int_equal(ouro_dict_set(d, b, y), 0);
    assert_int_equal(ouro_dict_size(d), 2);
    assert_repr(d, "{'a': 'x', 'b': 'y'}");
    assert_int_equal(ouro_refcount(a), 2); /* the dict holds one; arguments are not stolen */
    assert_int_equal(ouro_refcount(x), 2);

    /* lookups by identity and by an equal str */
    ouro_object *a2 = S("a"), *v = NULL;
    assert_int_equal(ouro_dict_get_ref(d, a, &v), 1);
    assert_ptr_equal(v, x);
    ouro_decref(v);
    assert_int_equal(ouro_dict_get_ref(d, a2, &v), 1);
    assert_ptr_equal(v, x);
    ouro_decref(v);
    v = ouro_dict_get(d, b);
    assert_ptr_equal(v, y);
    ouro_decref(v);
    assert_int_equal(ouro_dict_contains(d, a2), 1);
    ouro_object *zz = S("zz");
    assert_int_equal(ouro_dict_contains(d, zz), 0);
    assert_int_equal(ouro_dict_get_ref(d, zz, &v), 0);
    assert_null(v);
    assert_int_equal(ouro_err_occurred(), OURO_OK);
    assert_null(ouro_dict_get(d, zz));
    assert_err(OURO_ERR_KEY);

    /* replace keeps the first key and its position; the old value is dropped */
    assert_int_equal(ouro_dict_set(d, a2, y), 0);
    assert_int_equal(ouro_refcount(x), 1);
    assert_int_equal(ouro_refcount(a2), 1); /* the key already there stays */
    assert_repr(d, "{'a': 'y', 'b': 'y'}");

    /* setdefault */
    v = ouro_dict_setdefault(d, a, x);
    assert_ptr_equal(v, y);
    ouro_decref(v);
    v = ouro_dict_setdefault(d, zz, x);
    assert_ptr_equal(v, x);
    ouro_decref(v);
    assert_repr(d, "{'a': 'y', 'b': 'y', 'zz': 'x'}");

    /* pop, del */
    v = ouro_dict_pop(d, zz, NULL);
    assert_ptr_equal(v, x);
    ouro_decref(v);
    assert_null(ouro_dict_pop(d, zz, NULL));
    assert_err(OURO_ERR_KEY);
    v = ouro_dict_pop(d, zz, a);
    assert_ptr_equal(v, a);
    ouro_decref(v);
    assert_int_equal(ouro_dict_del(d, b), 0);
    assert_int_equal(ouro_dict_del(d, b), -1);
    assert_err(OURO_ERR_KEY);
    assert_int_equal(ouro_dict_size(d), 1);

    /* copy, update, eq */
    ouro_object *c = ouro_dict_copy(d);
    assert_non_null(c);
    assert_int_equal(ouro_eq(c, d), 1);
    assert_int_equal(ouro_dict_set(c, b, x), 0);
    assert_int_equal(ouro_eq(c, d), 0);
    assert_int_equal(ouro_dict_update(d, c), 0);
    assert_int_equal(ouro_eq(c, d), 1);
    assert_repr(d, "{'a': 'y', 'b': 'x'}");
    assert_int_equal(ouro_dict_set(c, b, y), 0);
    assert_int_equal(ouro_eq(c, d), 0); /* same keys, a different value */
    assert_int_equal(ouro_dict_update(d, d), 0);
    assert_int_equal(ouro_eq(d, x), 0);

    /* iteration */
    size_t pos = 0;
    ouro_object *k;
    assert_int_equal(ouro_dict_next(d, &pos, &k, &v), 1);
    assert_ptr_equal(k, a);
    assert_ptr_equal(v, y);
    ouro_decref(k);
    ouro_decref(v);
    assert_int_equal(ouro_dict_next(d, &pos, &k, NULL), 1);
    assert_ptr_equal(k, b);
    ouro_decref(k);
    assert_int_equal(ouro_dict_next(d, &pos, NULL, NULL), 0);

    /* clear, then reuse */
    assert_int_equal(ouro_dict_clear(d), 0);
    assert_int_equal(ouro_dict_size(d), 0);
    assert_int_equal(ouro_dict_contains(d, a), 0);
    pos = 0;
    assert_int_equal(ouro_dict_next(d, &pos, &k, &v), 0);
    assert_int_equal(ouro_dict_set(d, y, x), 0);
    assert_repr(d, "{'y': 'x'}");

    /* a dict that contains itself */
    assert_int_equal(ouro_dict_set(d, a, d), 0);
    assert_repr(d, "{'y': 'x', 'a': {...}}");
    assert_int_equal(ouro_dict_clear(d), 0); /* breaks the cycle */

    ouro_object *objs[] = {d, c, a, b, x, y, a2, zz};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ouro_decref(objs[i]);
    assert_live_back(base);
}

static void test_dict_errors(void **state) {
    (void)state;
    ouro_object *d = ouro_dict_new(), *k = S("k"), *v = NULL, *s = ouro_set_new();
    ouro_err_clear();
    /* NULL arguments */
    assert_int_equal(ouro_dict_set(NULL, k, k), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_set(d, NULL, k), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_set(d, k, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_get_ref(d, NULL, &v), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_get_ref(d, k, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_null(ouro_dict_get(NULL, k));
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_del(d, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_null(ouro_dict_pop(NULL, k, NULL));
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_contains(NULL, k), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_size(NULL), (size_t)-1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_clear(NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_null(ouro_dict_copy(NULL));
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_update(d, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_null(ouro_dict_setdefault(d, k, NULL));
    assert_err(OURO_ERR_INVALID);
    size_t pos = 0;
    assert_int_equal(ouro_dict_next(d, NULL, NULL, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_dict_table_info(d, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    /* wrong types */
    assert_int_equal(ouro_dict_set(k, k, k), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_get_ref(s, k, &v), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_contains(k, k), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_size(s), (size_t)-1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_update(d, s), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_next(s, &pos, NULL, NULL), -1);
    assert_err(OURO_ERR_TYPE);
    assert_null(ouro_dict_copy(s));
    assert_err(OURO_ERR_TYPE);
    /* unhashable keys: a dict, a set */
    assert_int_equal(ouro_dict_set(d, d, k), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_set(d, s, k), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_get_ref(d, d, &v), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_contains(d, s), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_hash(d), -1);
    assert_non_null(strstr(ouro_err_message(), "unhashable type: 'dict'"));
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_set_add(s, s), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_dict_size(d), 0);
    /* a missing key sets no error for get_ref and contains */
    assert_int_equal(ouro_dict_get_ref(d, k, &v), 0);
    assert_int_equal(ouro_err_occurred(), OURO_OK);
    ouro_decref(d);
    ouro_decref(s);
    ouro_decref(k);
}

/* Insertion order survives deletes and rebuilds (oracle: an array in insertion order). */
static void test_dict_order(void **state) {
    (void)state;
    live_counts base = live_now();
    enum { N = 3000 };
    ouro_object *d = ouro_dict_new();
    long order[2 * N];
    bool alive[2 * N] = {false};
    size_t norder = 0;
    for (long i = 0; i < N; i++) {
        ouro_object *k = SF("k", i), *v = cval_new(i);
        assert_int_equal(ouro_dict_set(d, k, v), 0);
        ouro_decref(k);
        ouro_decref(v);
        order[norder++] = i;
        alive[i] = true;
        if (i % 3 == 2) { /* delete an earlier one */
            long j = i / 2;
            if (alive[j]) {
                ouro_object *kj = SF("k", j);
                assert_int_equal(ouro_dict_del(d, kj), 0);
                ouro_decref(kj);
                alive[j] = false;
            }
        }
    }
    for (long i = N; i < 2 * N; i += 7) { /* more inserts after deletes: rebuilds compact dummies */
        ouro_object *k = SF("k", i), *v = cval_new(i);
        assert_int_equal(ouro_dict_set(d, k, v), 0);
        ouro_decref(k);
        ouro_decref(v);
        order[norder++] = i;
        alive[i] = true;
    }
    /* replacing a value keeps the position */
    long first = 0;
    while (!alive[first]) first++;
    ouro_object *k0 = SF("k", first), *v0 = cval_new(first);
    assert_int_equal(ouro_dict_set(d, k0, v0), 0);
    ouro_decref(k0);
    ouro_decref(v0);
    size_t pos = 0, seen = 0, o = 0;
    ouro_object *k, *v;
    while (ouro_dict_next(d, &pos, &k, &v) == 1) {
        while (!alive[order[o]]) o++;
        long want = order[o++];
        char buf[32];
        snprintf(buf, sizeof buf, "k%ld", want);
        assert_string_equal(ouro_str_utf8(k, NULL), buf);
        assert_true(cval_ok(v, want));
        ouro_decref(k);
        ouro_decref(v);
        seen++;
    }
    assert_int_equal(seen, ouro_dict_size(d));
    ouro_decref(d);
    assert_live_back(base);
}

/* The load bound after every insert and delete; index widths; ouro_sizeof counts the table. */
static void test_dict_load_bound(void **state) {
    (void)state;
    ouro_object *d = ouro_dict_new();
    ouro_dict_table_t t;
    assert_int_equal(ouro_dict_table_info(d, &t), 0);
    assert_int_equal(t.slots, 0);
    size_t empty_size = ouro_sizeof(d), last_slots = 0;
    int widths_seen = 0;
    for (long i = 0; i < 40000; i++) {
        ouro_object *k = SF("k", i);
        assert_int_equal(ouro_dict_set(d, k, k), 0);
        if (i % 5 == 4) {
            ouro_object *kd = SF("k", i - 2);
            assert_int_equal(ouro_dict_del(d, kd), 0);
            ouro_decref(kd);
        }
        ouro_decref(k);
        assert_int_equal(ouro_dict_table_info(d, &t), 0);
        assert_true(t.entries <= t.usable);
        assert_true(3 * t.usable <= 2 * t.slots); /* load <= 2/3 */
        assert_true(t.used <= t.entries);
        assert_int_equal(t.used, ouro_dict_size(d));
        assert_int_equal(t.slots & (t.slots - 1), 0);
        if (t.slots != last_slots) {
            /* rebuilt: at most a third full, plus the insert that triggered it */
            assert_true(3 * (t.used - 1) <= t.slots);
            assert_true(t.entries == t.used || t.entries == t.used + 1);
            last_slots = t.slots;
            assert_true(ouro_sizeof(d) >= empty_size + t.slots * t.index_bytes + t.usable * 3 * sizeof(void *));
        }
        widths_seen |= (int)t.index_bytes;
    }
    assert_int_equal(widths_seen, 1 | 2 | 4); /* int8, int16, int32 slots */
    assert_int_equal(ouro_dict_clear(d), 0);
    assert_int_equal(ouro_sizeof(d), empty_size);
    ouro_decref(d);
}

/* Colliding hashes, an eq that fails, an eq that re-enters the dict. */
static void test_dict_collisions(void **state) {
    (void)state;
    if (!ckey_type) {
        ouro_type_spec spec = {.name = "ckey", .basic_size = sizeof(ckey), .hash = ckey_hash, .eq = ckey_eq};
        ckey_type = ouro_type_new(&spec);
        assert_non_null(ckey_type);
    }
    live_counts base = live_now();
    enum { N = 200 };
    ouro_object *d = ouro_dict_new();
    for (long i = 0; i < N; i++) {
        ouro_object *k = ckey_new(i), *v = cval_new(i);
        assert_int_equal(ouro_dict_set(d, k, v), 0);
        ouro_decref(k);
        ouro_decref(v);
    }
    for (long i = 0; i < N; i++) { /* lookups with equal, non-identical keys: eq on each candidate */
        ouro_object *k = ckey_new(i), *v;
        assert_int_equal(ouro_dict_get_ref(d, k, &v), 1);
        assert_true(cval_ok(v, i));
        ouro_decref(v);
        if (i % 2) assert_int_equal(ouro_dict_del(d, k), 0);
        ouro_decref(k);
    }
    assert_int_equal(ouro_dict_size(d), N / 2);
    ouro_object *missing = ckey_new(N + 1);
    assert_int_equal(ouro_dict_contains(d, missing), 0);
    ouro_decref(missing);
    /* an eq that fails: the error comes back */
    ouro_object *bad = ckey_new(666);
    ouro_err_clear();
    assert_int_equal(ouro_dict_contains(d, bad), -1);
    assert_int_not_equal(ouro_err_occurred(), OURO_OK);
    ouro_err_clear();
    assert_int_equal(ouro_dict_set(d, bad, bad), -1);
    ouro_err_clear();
    ouro_decref(bad);
    /* an eq that sets a key in the same dict: no deadlock (the lock is not held around eq) */
    ouro_object *d2 = ouro_dict_new(), *k4 = ckey_new(4), *k8 = ckey_new(8), *re = ckey_new(777);
    reenter_dict = d2;
    assert_int_equal(ouro_dict_set(d2, k4, k4), 0);
    assert_int_equal(ouro_dict_set(d2, k8, k8), 0);
    assert_int_equal(ouro_dict_set(d2, re, re), 0); /* hash 1: no candidate */
    ouro_object *re2 = ckey_new(777);
    assert_int_equal(ouro_dict_set(d2, re2, k4), 0); /* eq(re, re2) re-enters d2 */
    assert_int_equal(ouro_dict_size(d2), 4);
    ouro_object *v = ouro_dict_pop(d2, re2, NULL);
    assert_ptr_equal(v, k4);
    ouro_decref(v);
    reenter_dict = NULL;
    ouro_decref(re2);
    ouro_decref(re);
    ouro_decref(k4);
    ouro_decref(k8);
    ouro_decref(d2);
    ouro_decref(d);
    assert_live_back(base);
}

/* The collector's callbacks: traverse visits every key and value exactly once (a set's keys only);
 * clear drops everything. */
typedef struct {
    ouro_object *seen[16];
    size_t n;
} visit_log;

static int visit_record(ouro_object *child, void *arg) {
    visit_log *l = arg;
    if (l->n < 16) l->seen[l->n] = child;
    l->n++;
    return 0;
}

static int visit_stop(ouro_object *child, void *arg) {
    (void)child;
    return ++*(int *)arg == 2 ? 42 : 0;
}

static void test_gc_callbacks(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new(), *s = ouro_set_new(), *a = S("a"), *b = S("b"), *x = S("x");
    assert_true(ouro_dict_type.flags & OURO_TYPE_GC);
    assert_true(ouro_set_type.flags & OURO_TYPE_GC);
    assert_int_equal(ouro_dict_set(d, a, x), 0);
    assert_int_equal(ouro_dict_set(d, b, x), 0);
    assert_int_equal(ouro_dict_set(d, x, x), 0);
    assert_int_equal(ouro_dict_del(d, b), 0); /* a deleted entry is not visited */
    visit_log l = {0};
    assert_int_equal(ouro_dict_type.traverse(d, visit_record, &l), 0);
    assert_int_equal(l.n, 4);
    assert_ptr_equal(l.seen[0], a);
    assert_ptr_equal(l.seen[1], x);
    assert_ptr_equal(l.seen[2], x);
    assert_ptr_equal(l.seen[3], x);
    int calls = 0;
    assert_int_equal(ouro_dict_type.traverse(d, visit_stop, &calls), 42); /* a visit's non-zero stops it */
    assert_int_equal(ouro_set_add(s, a), 0);
    assert_int_equal(ouro_set_add(s, b), 0);
    l.n = 0;
    assert_int_equal(ouro_set_type.traverse(s, visit_record, &l), 0);
    assert_int_equal(l.n, 2); /* keys only */
    assert_ptr_equal(l.seen[0], a);
    assert_ptr_equal(l.seen[1], b);
    /* a cycle broken by clear */
    assert_int_equal(ouro_dict_set(d, b, d), 0);
    assert_int_equal(ouro_set_add(s, x), 0);
    ouro_dict_type.clear(d);
    ouro_set_type.clear(s);
    assert_int_equal(ouro_dict_size(d), 0);
    assert_int_equal(ouro_set_size(s), 0);
    assert_int_equal(ouro_refcount(d), 1);
    assert_int_equal(ouro_refcount(x), 1);
    ouro_object *objs[] = {d, s, a, b, x};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ouro_decref(objs[i]);
    assert_live_back(base);
}

/* A value whose dealloc uses the dict that held it: replaced values and cleared tables are dropped
 * after the lock is released, so this does not deadlock. */
static ouro_object *hook_dict;
static atomic_long hook_runs;

static void hook_dealloc(ouro_object *self) {
    (void)self;
    atomic_fetch_add(&hook_runs, 1);
    ouro_object *k = ouro_str_from_format("from dealloc %ld", atomic_load(&hook_runs));
    if (ouro_dict_set(hook_dict, k, k) != 0 || ouro_dict_contains(hook_dict, k) != 1) abort();
    ouro_decref(k);
}

static ouro_type hook_type = {.head = OURO_TYPE_HEAD, .name = "hook", .basic_size = sizeof(ouro_object), .dealloc = hook_dealloc};

static void test_dealloc_reenters_dict(void **state) {
    (void)state;
    live_counts base = live_now();
    hook_dict = ouro_dict_new();
    ouro_object *k = S("k"), *h = ouro_new(&hook_type);
    assert_int_equal(ouro_dict_set(hook_dict, k, h), 0);
    ouro_decref(h);
    assert_int_equal(ouro_dict_set(hook_dict, k, k), 0); /* replaces h: its dealloc sets a key */
    assert_int_equal(atomic_load(&hook_runs), 1);
    assert_int_equal(ouro_dict_size(hook_dict), 2);
    h = ouro_new(&hook_type);
    assert_int_equal(ouro_dict_set(hook_dict, k, h), 0);
    ouro_decref(h);
    assert_int_equal(ouro_dict_clear(hook_dict), 0); /* drops h unlocked: its dealloc sets a key */
    assert_int_equal(atomic_load(&hook_runs), 2);
    assert_int_equal(ouro_dict_size(hook_dict), 1);
    h = ouro_new(&hook_type);
    assert_int_equal(ouro_dict_set(hook_dict, k, h), 0);
    ouro_decref(h);
    assert_int_equal(ouro_dict_del(hook_dict, k), 0); /* del, too */
    assert_int_equal(atomic_load(&hook_runs), 3);
    assert_int_equal(ouro_dict_size(hook_dict), 2);
    ouro_decref(k);
    ouro_decref(hook_dict);
    assert_live_back(base);
}

/* ---- set -------------------------------------------------------------------------------------------------- */

static void test_set_basic(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *s = ouro_set_new(), *a = S("a"), *b = S("b"), *c = S("c"), *a2 = S("a");
    assert_repr(s, "set()");
    assert_int_equal(ouro_set_add(s, a), 0);
    assert_int_equal(ouro_set_add(s, b), 0);
    assert_int_equal(ouro_set_add(s, a2), 0); /* present: the first stays */
    assert_int_equal(ouro_set_size(s), 2);
    assert_int_equal(ouro_refcount(a2), 1);
    assert_repr(s, "{'a', 'b'}");
    assert_int_equal(ouro_set_contains(s, a2), 1);
    assert_int_equal(ouro_set_contains(s, c), 0);
    assert_int_equal(ouro_set_discard(s, c), 0);
    assert_int_equal(ouro_set_remove(s, c), -1);
    assert_err(OURO_ERR_KEY);
    assert_int_equal(ouro_set_add(s, c), 0);
    assert_int_equal(ouro_set_discard(s, c), 1);
    /* iteration */
    size_t pos = 0;
    ouro_object *k;
    assert_int_equal(ouro_set_next(s, &pos, &k), 1);
    assert_ptr_equal(k, a);
    ouro_decref(k);
    assert_int_equal(ouro_set_next(s, &pos, &k), 1);
    assert_ptr_equal(k, b);
    ouro_decref(k);
    assert_int_equal(ouro_set_next(s, &pos, &k), 0);
    /* copy, eq */
    ouro_object *t = ouro_set_copy(s);
    assert_int_equal(ouro_set_eq(s, t), 1);
    assert_int_equal(ouro_eq(s, t), 1);
    assert_int_equal(ouro_set_remove(t, b), 0);
    assert_int_equal(ouro_set_eq(s, t), 0);
    assert_int_equal(ouro_set_add(t, c), 0);
    assert_int_equal(ouro_set_eq(s, t), 0); /* same size, other elements */
    assert_int_equal(ouro_set_eq(s, a), 0);
    /* operations: s = {a, b}, t = {a, c} */
    ouro_object *u = ouro_set_union(s, t), *i = ouro_set_intersection(s, t), *df = ouro_set_difference(s, t);
    assert_repr(u, "{'a', 'b', 'c'}");
    assert_repr(i, "{'a'}");
    assert_repr(df, "{'b'}");
    assert_int_equal(ouro_set_update(i, df), 0);
    assert_int_equal(ouro_set_eq(i, s), 1);
    /* pop: last added first */
    k = ouro_set_pop(u);
    assert_ptr_equal(k, c);
    ouro_decref(k);
    assert_int_equal(ouro_set_clear(u), 0);
    assert_null(ouro_set_pop(u));
    assert_err(OURO_ERR_KEY);
    ouro_dict_table_t ti;
    assert_int_equal(ouro_set_table_info(s, &ti), 0);
    assert_int_equal(ti.used, 2);
    /* errors */
    assert_int_equal(ouro_set_add(NULL, a), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_set_add(s, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_set_contains(a, a), -1);
    assert_err(OURO_ERR_TYPE);
    ouro_object *d = ouro_dict_new();
    assert_int_equal(ouro_set_add(d, a), -1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_set_contains(s, d), -1); /* unhashable */
    assert_err(OURO_ERR_TYPE);
    assert_null(ouro_set_union(s, d));
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_set_size(d), (size_t)-1);
    assert_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_set_next(s, NULL, &k), -1);
    assert_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_set_eq(s, NULL), -1);
    assert_err(OURO_ERR_INVALID);
    assert_null(ouro_set_pop(NULL));
    assert_err(OURO_ERR_INVALID);
    /* a set in a dict's repr, a set with many elements */
    assert_int_equal(ouro_dict_set(d, a, s), 0);
    assert_repr(d, "{'a': {'a', 'b'}}");
    for (long n = 0; n < 1000; n++) {
        ouro_object *e = SF("e", n);
        assert_int_equal(ouro_set_add(u, e), 0);
        ouro_decref(e);
    }
    assert_int_equal(ouro_set_size(u), 1000);
    assert_true(ouro_sizeof(u) > ouro_sizeof(s));
    ouro_object *objs[] = {s, t, u, i, df, d, a, b, c, a2};
    for (size_t j = 0; j < sizeof objs / sizeof *objs; j++) ouro_decref(objs[j]);
    assert_live_back(base);
}

/* ---- concurrency --------------------------------------------------------------------------------------------- */

enum { THREADS = 4 };

typedef struct {
    ouro_object *d;
    long id;
    long n;
    long failures; /* the worker's own count; checked by the test thread after join */
    long found, missing;
} worker;

static atomic_int go;
static atomic_int stop;

static void wait_go(void) {
    while (!atomic_load(&go)) ouro_safepoint();
}

/* N threads each set their own keys, then check that all their keys are there. */
static void *own_keys(void *arg) {
    worker *w = arg;
    wait_go();
    for (long i = 0; i < w->n; i++) {
        ouro_object *k = ouro_str_from_format("t%ld-%ld", w->id, i), *v = cval_new(w->id * 1000000 + i);
        if (ouro_dict_set(w->d, k, v) != 0) w->failures++;
        ouro_decref(k);
        ouro_decref(v);
    }
    for (long i = 0; i < w->n; i++) {
        ouro_object *k = ouro_str_from_format("t%ld-%ld", w->id, i), *v = NULL;
        if (ouro_dict_get_ref(w->d, k, &v) != 1 || !cval_ok(v, w->id * 1000000 + i)) w->failures++;
        ouro_xdecref(v);
        ouro_decref(k);
    }
    return NULL;
}

static void test_threads_own_keys(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    pthread_t t[THREADS];
    worker w[THREADS];
    atomic_store(&go, 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.d = d, .id = i, .n = SCALE(4000)};
        pthread_create(&t[i], NULL, own_keys, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, THREADS);
    for (int i = 0; i < THREADS; i++) assert_int_equal(w[i].failures, 0);
    assert_int_equal(ouro_dict_size(d), THREADS * SCALE(4000));
    for (int i = 0; i < THREADS; i++)
        for (long j = 0; j < SCALE(4000); j++) {
            ouro_object *k = ouro_str_from_format("t%d-%ld", i, j), *v = NULL;
            assert_int_equal(ouro_dict_get_ref(d, k, &v), 1);
            assert_true(cval_ok(v, i * 1000000 + j));
            ouro_decref(v);
            ouro_decref(k);
        }
    ouro_decref(d);
    assert_live_back(base);
}

/* Racing get / set / del / clear on a few keys: a reader sees either a missing key or a live value
 * (intact canary) standing for that key. */
enum { RACE_KEYS = 32 };
static ouro_object *race_keys[RACE_KEYS];

static void *race_writer(void *arg) {
    worker *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    wait_go();
    for (long it = 0; it < w->n; it++) {
        long i = (long)(rng_next(&rng) % RACE_KEYS);
        unsigned op = (unsigned)(rng_next(&rng) % 100);
        if (op < 80) {
            ouro_object *v = cval_new(i);
            if (ouro_dict_set(w->d, race_keys[i], v) != 0) w->failures++;
            ouro_decref(v);
        } else if (op < 95) {
            ouro_object *v = ouro_dict_pop(w->d, race_keys[i], race_keys[i]);
            if (!v || (v != race_keys[i] && !cval_ok(v, i))) w->failures++;
            ouro_xdecref(v);
        } else if (op < 98) {
            ouro_object *k = ouro_str_from_format("k%ld", i), *v = cval_new(i); /* an equal key */
            ouro_object *now = ouro_dict_setdefault(w->d, k, v);
            if (!cval_ok(now, i)) w->failures++;
            ouro_xdecref(now);
            ouro_decref(v);
            ouro_decref(k);
        } else {
            ouro_dict_clear(w->d);
        }
        ouro_safepoint();
    }
    return NULL;
}

static void *race_reader(void *arg) {
    worker *w = arg;
    uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(w->id + 1);
    wait_go();
    for (long it = 0; it < w->n; it++) {
        long i = (long)(rng_next(&rng) % RACE_KEYS);
        ouro_object *v = NULL, *k = race_keys[i], *fresh = NULL;
        if (it % 4 == 0) k = fresh = ouro_str_from_format("k%ld", i); /* equal, not identical: eq path */
        int r = ouro_dict_get_ref(w->d, k, &v);
        if (r == 1) {
            w->found++;
            if (!cval_ok(v, i)) w->failures++;
            ouro_decref(v);
        } else if (r == 0) {
            w->missing++;
        } else {
            w->failures++;
        }
        if (ouro_dict_contains(w->d, k) < 0) w->failures++;
        ouro_xdecref(fresh);
        ouro_safepoint();
    }
    return NULL;
}

static void test_threads_race_get_set_clear(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    for (long i = 0; i < RACE_KEYS; i++) race_keys[i] = SF("k", i);
    enum { WRITERS = 2, READERS = 4 };
    pthread_t t[WRITERS + READERS];
    worker w[WRITERS + READERS];
    atomic_store(&go, 0);
    for (int i = 0; i < WRITERS + READERS; i++) {
        w[i] = (worker){.d = d, .id = i, .n = i < WRITERS ? SCALE(40000) : SCALE(80000)};
        pthread_create(&t[i], NULL, i < WRITERS ? race_writer : race_reader, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, WRITERS + READERS);
    long found = 0;
    for (int i = 0; i < WRITERS + READERS; i++) {
        assert_int_equal(w[i].failures, 0);
        found += w[i].found;
    }
    assert_true(found > 0);
    /* after join: every value still in d is live and stands for its key */
    size_t pos = 0, n = 0;
    ouro_object *k, *v;
    while (ouro_dict_next(d, &pos, &k, &v) == 1) {
        n++;
        long idx = atol(ouro_str_utf8(k, NULL) + 1);
        assert_true(cval_ok(v, idx));
        ouro_decref(k);
        ouro_decref(v);
    }
    assert_int_equal(n, ouro_dict_size(d));
    ouro_decref(d);
    for (long i = 0; i < RACE_KEYS; i++) ouro_decref(race_keys[i]);
    assert_live_back(base);
}

/* Iteration while another thread inserts and deletes: only live objects, each value matching its key. */
static void *iter_mutator(void *arg) {
    worker *w = arg;
    uint64_t rng = 77;
    wait_go();
    for (long it = 0; it < w->n; it++) {
        long i = (long)(rng_next(&rng) % 2000);
        ouro_object *k = SF("m", i);
        if (rng_next(&rng) % 3) {
            ouro_object *v = cval_new(i);
            if (ouro_dict_set(w->d, k, v) != 0) w->failures++;
            ouro_decref(v);
        } else {
            ouro_object *v = ouro_dict_pop(w->d, k, k);
            if (!v) w->failures++;
            ouro_xdecref(v);
        }
        if (it % 5000 == 4999) ouro_dict_clear(w->d);
        ouro_decref(k);
    }
    atomic_store(&stop, 1);
    return NULL;
}

static void *iter_walker(void *arg) {
    worker *w = arg;
    wait_go();
    while (!atomic_load(&stop)) {
        size_t pos = 0;
        ouro_object *k, *v;
        while (ouro_dict_next(w->d, &pos, &k, &v) == 1) {
            w->found++;
            size_t len;
            const char *s = ouro_str_utf8(k, &len);
            if (!s || s[0] != 'm' || !cval_ok(v, atol(s + 1))) w->failures++;
            ouro_decref(k);
            ouro_decref(v);
            ouro_safepoint();
        }
        w->missing++; /* walks */
    }
    return NULL;
}

static void test_threads_iterate_while_mutating(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    enum { WALKERS = 3 };
    pthread_t t[1 + WALKERS];
    worker w[1 + WALKERS];
    atomic_store(&go, 0);
    atomic_store(&stop, 0);
    for (int i = 0; i < 1 + WALKERS; i++) {
        w[i] = (worker){.d = d, .id = i, .n = SCALE(60000)};
        pthread_create(&t[i], NULL, i == 0 ? iter_mutator : iter_walker, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, 1 + WALKERS);
    for (int i = 0; i < 1 + WALKERS; i++) assert_int_equal(w[i].failures, 0);
    assert_true(w[1].missing > 0);
    ouro_decref(d);
    assert_live_back(base);
}

/* Lock-free readers while a writer grows and shrinks the table: the stable keys are always found, with
 * their own values. */
enum { STABLE = 200 };
static ouro_object *stable_keys[STABLE];

static void *resize_writer(void *arg) {
    worker *w = arg;
    wait_go();
    for (long round = 0; round < w->n; round++) {
        for (long i = 0; i < 1500; i++) { /* grows the table through several rebuilds */
            ouro_object *k = SF("x", i), *v = cval_new(-1 - i);
            if (ouro_dict_set(w->d, k, v) != 0) w->failures++;
            ouro_decref(k);
            ouro_decref(v);
        }
        for (long i = 0; i < 1500; i++) { /* deletes: dummies, so the next round rebuilds again */
            ouro_object *k = SF("x", i);
            if (ouro_dict_del(w->d, k) != 0) w->failures++;
            ouro_decref(k);
        }
    }
    atomic_store(&stop, 1);
    return NULL;
}

static void *resize_reader(void *arg) {
    worker *w = arg;
    uint64_t rng = 1234567 + (uint64_t)w->id;
    wait_go();
    ouro_object *mine[STABLE]; /* equal keys of our own: lookups go through eq */
    for (long i = 0; i < STABLE; i++) mine[i] = SF("s", i);
    do { /* at least one lookup, even when the writer finished before this thread ran */
        long i = (long)(rng_next(&rng) % STABLE);
        ouro_object *v = NULL;
        int r = ouro_dict_get_ref(w->d, (w->found & 1) ? mine[i] : stable_keys[i], &v);
        if (r != 1 || !cval_ok(v, i)) w->failures++;
        ouro_xdecref(v);
        w->found++;
        ouro_safepoint();
    } while (!atomic_load(&stop));
    for (long i = 0; i < STABLE; i++) ouro_decref(mine[i]);
    return NULL;
}

static void test_threads_readers_during_resize(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    for (long i = 0; i < STABLE; i++) {
        stable_keys[i] = SF("s", i);
        ouro_object *v = cval_new(i);
        assert_int_equal(ouro_dict_set(d, stable_keys[i], v), 0);
        ouro_decref(v);
    }
    enum { READERS = 4 };
    pthread_t t[1 + READERS];
    worker w[1 + READERS];
    atomic_store(&go, 0);
    atomic_store(&stop, 0);
    for (int i = 0; i < 1 + READERS; i++) {
        w[i] = (worker){.d = d, .id = i, .n = SCALE(40)};
        pthread_create(&t[i], NULL, i == 0 ? resize_writer : resize_reader, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, 1 + READERS);
    for (int i = 0; i < 1 + READERS; i++) assert_int_equal(w[i].failures, 0);
    for (int i = 1; i < 1 + READERS; i++) assert_true(w[i].found > 0);
    assert_int_equal(ouro_dict_size(d), STABLE);
    ouro_decref(d);
    for (long i = 0; i < STABLE; i++) ouro_decref(stable_keys[i]);
    assert_live_back(base);
}

/* Racing setdefault on the same keys: every thread gets the same value per key. */
static ouro_object *sd_got[THREADS][64];

static void *setdefault_racer(void *arg) {
    worker *w = arg;
    wait_go();
    for (long i = 0; i < 64; i++) {
        ouro_object *k = SF("sd", i), *v = cval_new(i);
        sd_got[w->id][i] = ouro_dict_setdefault(w->d, k, v);
        ouro_decref(v);
        ouro_decref(k);
    }
    return NULL;
}

static void test_threads_setdefault(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new();
    pthread_t t[THREADS];
    worker w[THREADS];
    atomic_store(&go, 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.d = d, .id = i};
        pthread_create(&t[i], NULL, setdefault_racer, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, THREADS);
    for (long i = 0; i < 64; i++) {
        ouro_object *k = SF("sd", i), *v = ouro_dict_get(d, k);
        for (int j = 0; j < THREADS; j++) {
            assert_ptr_equal(sd_got[j][i], v);
            ouro_decref(sd_got[j][i]);
        }
        ouro_decref(v);
        ouro_decref(k);
    }
    ouro_decref(d);
    assert_live_back(base);
}

/* Sets: threads add their own elements and discard half while others test membership. */
static void *set_worker(void *arg) {
    worker *w = arg;
    wait_go();
    for (long i = 0; i < w->n; i++) {
        ouro_object *k = ouro_str_from_format("e%ld-%ld", w->id, i);
        if (ouro_set_add(w->d, k) != 0 || ouro_set_contains(w->d, k) != 1) w->failures++;
        if (i % 2 && ouro_set_discard(w->d, k) != 1) w->failures++;
        ouro_decref(k);
        ouro_object *other = ouro_str_from_format("e%ld-%ld", (w->id + 1) % THREADS, i);
        if (ouro_set_contains(w->d, other) < 0) w->failures++;
        ouro_decref(other);
    }
    return NULL;
}

static void test_threads_set(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *s = ouro_set_new();
    pthread_t t[THREADS];
    worker w[THREADS];
    atomic_store(&go, 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.d = s, .id = i, .n = SCALE(4000)};
        pthread_create(&t[i], NULL, set_worker, &w[i]);
    }
    atomic_store(&go, 1);
    join_all(t, THREADS);
    for (int i = 0; i < THREADS; i++) assert_int_equal(w[i].failures, 0);
    assert_int_equal(ouro_set_size(s), THREADS * SCALE(4000) / 2);
    for (int i = 0; i < THREADS; i++)
        for (long j = 0; j < SCALE(4000); j++) {
            ouro_object *k = ouro_str_from_format("e%d-%ld", i, j);
            assert_int_equal(ouro_set_contains(s, k), j % 2 == 0);
            ouro_decref(k);
        }
    ouro_decref(s);
    assert_live_back(base);
}

/* A thread that was never attached looks up (the lookup attaches it). */
static void *unattached_lookup(void *arg) {
    worker *w = arg;
    ouro_object *v = NULL;
    if (ouro_dict_get_ref(w->d, stable_keys[0], &v) != 1 || !cval_ok(v, 7)) w->failures++;
    ouro_xdecref(v);
    return NULL;
}

static void test_unattached_thread(void **state) {
    (void)state;
    live_counts base = live_now();
    ouro_object *d = ouro_dict_new(), *v = cval_new(7);
    stable_keys[0] = S("s0");
    assert_int_equal(ouro_dict_set(d, stable_keys[0], v), 0);
    ouro_decref(v);
    worker w = {.d = d};
    pthread_t t;
    pthread_create(&t, NULL, unattached_lookup, &w);
    join_all(&t, 1);
    assert_int_equal(w.failures, 0);
    ouro_decref(stable_keys[0]);
    ouro_decref(d);
    assert_live_back(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dict_basic),
        cmocka_unit_test(test_dict_errors),
        cmocka_unit_test(test_dict_order),
        cmocka_unit_test(test_dict_load_bound),
        cmocka_unit_test(test_dict_collisions),
        cmocka_unit_test(test_gc_callbacks),
        cmocka_unit_test(test_dealloc_reenters_dict),
        cmocka_unit_test(test_set_basic),
        cmocka_unit_test(test_threads_own_keys),
        cmocka_unit_test(test_threads_race_get_set_clear),
        cmocka_unit_test(test_threads_iterate_while_mutating),
        cmocka_unit_test(test_threads_readers_during_resize),
        cmocka_unit_test(test_threads_setdefault),
        cmocka_unit_test(test_threads_set),
        cmocka_unit_test(test_unattached_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
