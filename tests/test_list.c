/* tests/test_list.c — tuple and list: every function and its errors, CPython's growth pattern, per-type
 * counts back to baseline, deallocation of 10-million-deep chains on a default-stack thread, and
 * threads racing on one list (appends, iteration, get/set/pop, removes, readers against a writer that
 * grows and clears) with oracles checked after the join: exact item accounting and a canary in every
 * object a reader gets (checked again by its dealloc). */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* Smaller runs under TSan (every access instrumented). */
#if OURO_TSAN
#define DEEP 1000000L
#define SCALE 1
#else
#define DEEP 10000000L
#define SCALE 4
#endif

/* ---- a test item with a canary --------------------------------------------------------------------------- */
#define CANARY 0xc0ffee5eedull
#define DEAD 0xdeaddeaddeadull

typedef struct {
    ouro_object head;
    uint64_t canary;
    long id;
} cbox;

static atomic_long cbox_deallocs;

static void cbox_dealloc(ouro_object *self) {
    cbox *b = (cbox *)self;
    if (b->canary != CANARY) {
        fprintf(stderr, "cbox %p (id %ld) freed twice or corrupted: canary %llx\n", (void *)b, b->id,
                (unsigned long long)b->canary);
        abort();
    }
    b->canary = DEAD;
    atomic_fetch_add(&cbox_deallocs, 1);
}

static int cbox_eq(ouro_object *self, ouro_object *other);
static int64_t cbox_hash(ouro_object *self) { return ((cbox *)self)->id == -1 ? -2 : ((cbox *)self)->id; }
static ouro_object *cbox_repr(ouro_object *self) { return ouro_str_from_format("%ld", ((cbox *)self)->id); }

static ouro_type cbox_type = {.head = OURO_TYPE_HEAD,
                              .name = "cbox",
                              .basic_size = sizeof(cbox),
                              .dealloc = cbox_dealloc,
                              .hash = cbox_hash,
                              .eq = cbox_eq,
                              .repr = cbox_repr};

static int cbox_eq(ouro_object *self, ouro_object *other) {
    return other->type == &cbox_type && ((cbox *)self)->id == ((cbox *)other)->id;
}

static ouro_object *cb(long id) {
    cbox *b = (cbox *)ouro_new(&cbox_type);
    if (!b) abort();
    b->canary = CANARY;
    b->id = id;
    return &b->head;
}

static long cb_id(ouro_object *o) { return ((cbox *)o)->id; }

/* A reader's check of an object it got: a live cbox (the canary intact). Workers count failures. */
static bool cb_ok(ouro_object *o) { return o && o->type == &cbox_type && ((cbox *)o)->canary == CANARY; }

/* ---- helpers ----------------------------------------------------------------------------------------------- */

typedef struct {
    ouro_type_stats tuple, list, cbox, str;
} counts;

static counts counts_now(void) {
    counts c;
    ouro_refcount_merge_queued();
    assert_int_equal(ouro_type_get_stats(&ouro_tuple_type, &c.tuple), 0);
    assert_int_equal(ouro_type_get_stats(&ouro_list_type, &c.list), 0);
    assert_int_equal(ouro_type_get_stats(&cbox_type, &c.cbox), 0);
    assert_int_equal(ouro_type_get_stats(&ouro_str_type, &c.str), 0);
    return c;
}

/* Every type's live count back to the baseline. */
static void counts_back(const counts *c0) {
    counts c = counts_now();
    assert_int_equal(c.tuple.live, c0->tuple.live);
    assert_int_equal(c.list.live, c0->list.live);
    assert_int_equal(c.cbox.live, c0->cbox.live);
    assert_int_equal(c.str.live, c0->str.live);
}

static void expect_err(ouro_err code) {
    assert_int_equal(ouro_err_occurred(), code);
    ouro_err_clear();
}

/* repr(o) equals want. */
static void expect_repr(ouro_object *o, const char *want) {
    ouro_object *r = ouro_repr(o);
    assert_non_null(r);
    if (strcmp(ouro_str_utf8(r, NULL), want) != 0) fprintf(stderr, "repr %s, want %s\n", ouro_str_utf8(r, NULL), want);
    assert_string_equal(ouro_str_utf8(r, NULL), want);
    ouro_decref(r);
}

/* A list of cboxes with ids from..to-1. */
static ouro_object *list_of(long from, long to) {
    ouro_object *l = ouro_list_new(0);
    for (long i = from; i < to; i++) {
        ouro_object *b = cb(i);
        assert_int_equal(ouro_list_append(l, b), 0);
        ouro_decref(b);
    }
    return l;
}

/* The ids of l's items (lock-free get), compared with want[0..n). */
static void expect_ids(ouro_object *l, const long *want, size_t n) {
    assert_int_equal(ouro_list_size(l), n);
    for (size_t i = 0; i < n; i++) {
        ouro_object *v = ouro_list_get(l, (ptrdiff_t)i);
        assert_non_null(v);
        assert_int_equal(cb_id(v), want[i]);
        ouro_decref(v);
    }
}

/* Joins t offline: we are attached, and a blocked online thread would stall every grace period. */
static void join_offline(pthread_t t) {
    ouro_offline_begin();
    pthread_join(t, NULL);
    ouro_offline_end();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: deterministic per-thread randomness. */
static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* ---- tuple ------------------------------------------------------------------------------------------------- */

static void test_tuple_basics(void **state) {
    (void)state;
    ouro_decref(ouro_tuple_new(0)); /* the empty tuple (immortal, counted once) exists before the baseline */
    counts c0 = counts_now();
    ouro_object *a = cb(1), *b = cb(2);
    ouro_object *t = ouro_tuple_new(2);
    assert_non_null(t);
    assert_true(ouro_is_type(t, &ouro_tuple_type));
    assert_int_equal(ouro_tuple_size(t), 2);
    assert_null(ouro_tuple_get(t, 0)); /* not set yet */
    expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_tuple_set_item_steal(t, 0, ouro_newref(a)), 0);
    assert_int_equal(ouro_tuple_set_item_steal(t, 1, ouro_newref(a)), 0);
    assert_int_equal(ouro_tuple_set_item_steal(t, 1, ouro_newref(b)), 0); /* replaces: a dropped */
    assert_int_equal(ouro_refcount(a), 2);
    ouro_object *g = ouro_tuple_get(t, 1);
    assert_ptr_equal(g, b);
    ouro_decref(g);
    /* errors of set_item_steal: the reference is stolen anyway */
    assert_int_equal(ouro_tuple_set_item_steal(t, 2, ouro_newref(a)), -1);
    expect_err(OURO_ERR_INDEX);
    assert_int_equal(ouro_tuple_set_item_steal(NULL, 0, ouro_newref(a)), -1);
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_tuple_set_item_steal(a, 0, NULL), -1);
    expect_err(OURO_ERR_TYPE);
    ouro_incref(t); /* shared now */
    assert_int_equal(ouro_tuple_set_item_steal(t, 0, ouro_newref(a)), -1);
    expect_err(OURO_ERR_STATE);
    ouro_decref(t);
    assert_int_equal(ouro_refcount(a), 2);
    /* get / size errors */
    assert_null(ouro_tuple_get(t, 2));
    expect_err(OURO_ERR_INDEX);
    assert_null(ouro_tuple_get(t, (size_t)-1));
    expect_err(OURO_ERR_INDEX);
    assert_null(ouro_tuple_get(NULL, 0));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_tuple_get(a, 0));
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_tuple_size(NULL), (size_t)-1);
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_tuple_size(a), (size_t)-1);
    expect_err(OURO_ERR_TYPE);
    /* pack and from_array take new references */
    ouro_object *p = ouro_tuple_pack(3, a, b, a);
    assert_int_equal(ouro_tuple_size(p), 3);
    assert_int_equal(ouro_refcount(a), 4);
    assert_int_equal(ouro_eq(p, t), 0);
    ouro_object *arr[2] = {a, b};
    ouro_object *f = ouro_tuple_from_array(2, arr);
    assert_int_equal(ouro_eq(f, t), 1);
    assert_int_equal(ouro_hash(f), ouro_hash(t));
    assert_null(ouro_tuple_pack(2, a, (ouro_object *)NULL));
    expect_err(OURO_ERR_INVALID);
    arr[1] = NULL;
    assert_null(ouro_tuple_from_array(2, arr));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_tuple_from_array(1, NULL));
    expect_err(OURO_ERR_INVALID);
    /* the empty tuple: one immortal singleton, whatever makes it */
    ouro_object *e = ouro_tuple_new(0);
    assert_true(ouro_is_immortal(e));
    assert_ptr_equal(ouro_tuple_pack(0), e);
    assert_ptr_equal(ouro_tuple_from_array(0, NULL), e);
    assert_int_equal(ouro_tuple_size(e), 0);
    assert_null(ouro_tuple_get(e, 0));
    expect_err(OURO_ERR_INDEX);
    ouro_decref(e);
    ouro_decref(p);
    ouro_decref(f);
    ouro_decref(t);
    ouro_decref(a);
    ouro_decref(b);
    /* an unfinished tuple may be freed */
    ouro_object *u = ouro_tuple_new(3);
    assert_int_equal(ouro_tuple_set_item_steal(u, 1, cb(7)), 0);
    ouro_decref(u);
    counts_back(&c0);
}

static void test_tuple_hash_eq_repr(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *a = cb(1), *b = cb(2), *a2 = cb(1);
    ouro_object *ab = ouro_tuple_pack(2, a, b), *ba = ouro_tuple_pack(2, b, a), *a2b = ouro_tuple_pack(2, a2, b);
    ouro_object *one = ouro_tuple_pack(1, a), *e = ouro_tuple_new(0);
    assert_int_equal(ouro_eq(ab, a2b), 1); /* itemwise, not identity */
    assert_int_equal(ouro_eq(ab, ba), 0);
    assert_int_equal(ouro_eq(ab, one), 0);
    assert_int_equal(ouro_eq(ab, a), 0);
    assert_int_equal(ouro_hash(ab), ouro_hash(a2b));
    assert_int_not_equal(ouro_hash(ab), ouro_hash(ba));
    assert_int_not_equal(ouro_hash(e), ouro_hash(one));
    assert_int_not_equal(ouro_hash(e), -1);
    /* Python 3's hash(()) on 64 bits: the same algorithm gives the same value */
    assert_int_equal(ouro_hash(e), 5740354900026072187LL);
    expect_repr(ab, "(1, 2)");
    expect_repr(one, "(1,)");
    expect_repr(e, "()");
    ouro_object *nested = ouro_tuple_pack(3, one, e, ab);
    expect_repr(nested, "((1,), (), (1, 2))");
    /* an unhashable item */
    ouro_object *l = ouro_list_new(0);
    ouro_object *tl = ouro_tuple_pack(2, a, l);
    assert_int_equal(ouro_hash(tl), -1);
    expect_err(OURO_ERR_TYPE);
    ouro_object *tl2 = ouro_tuple_pack(2, a, l);
    assert_int_equal(ouro_eq(tl, tl2), 1);
    /* str items */
    ouro_object *s = ouro_str_from_cstr("x");
    ouro_object *ts = ouro_tuple_pack(2, s, s);
    expect_repr(ts, "('x', 'x')");
    /* a tuple with an unset item fails cleanly */
    ouro_object *u = ouro_tuple_new(1);
    assert_int_equal(ouro_hash(u), -1);
    expect_err(OURO_ERR_STATE);
    assert_null(ouro_repr(u));
    expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_eq(u, one), -1);
    expect_err(OURO_ERR_STATE);
    ouro_object *objs[] = {a, b, a2, ab, ba, a2b, one, e, nested, l, tl, tl2, s, ts, u};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ouro_decref(objs[i]);
    counts_back(&c0);
}

static int count_visit(ouro_object *child, void *arg) {
    (void)child;
    (*(int *)arg)++;
    return 0;
}

static void test_tuple_large_traverse_clear(void **state) {
    (void)state;
    counts c0 = counts_now();
    enum { N = 10000 }; /* 80 000 bytes of items: stored out of line */
    ouro_object *t = ouro_tuple_new(N);
    for (long i = 0; i < N; i++) assert_int_equal(ouro_tuple_set_item_steal(t, (size_t)i, cb(i)), 0);
    assert_true(ouro_sizeof(t) >= N * sizeof(ouro_object *));
    for (long i = 0; i < N; i += 97) {
        ouro_object *v = ouro_tuple_get(t, (size_t)i);
        assert_int_equal(cb_id(v), i);
        ouro_decref(v);
    }
    int visits = 0;
    assert_int_equal(ouro_tuple_type.traverse(t, count_visit, &visits), 0);
    assert_int_equal(visits, N);
    ouro_object *half = ouro_tuple_new(4); /* NULL items are not visited */
    ouro_tuple_set_item_steal(half, 2, cb(-1));
    visits = 0;
    ouro_tuple_type.traverse(half, count_visit, &visits);
    assert_int_equal(visits, 1);
    ouro_tuple_type.clear(half); /* the collector's clear drops the items */
    visits = 0;
    ouro_tuple_type.traverse(half, count_visit, &visits);
    assert_int_equal(visits, 0);
    ouro_decref(half);
    ouro_decref(t);
    counts_back(&c0);
}

/* ---- list: single-threaded --------------------------------------------------------------------------------- */

static void test_list_growth(void **state) {
    (void)state;
    counts c0 = counts_now();
    /* CPython's successive capacities for appends (list_resize) */
    static const size_t want[] = {0, 4, 8, 16, 24, 32, 40, 52, 64, 76, 92, 108, 128, 148, 172, 200, 232, 268, 308, 352};
    ouro_object *l = ouro_list_new(0);
    assert_int_equal(ouro_list_capacity(l), 0);
    ouro_object *x = cb(0);
    size_t seen = 1, last = 0;
    for (size_t n = 1; n <= 352; n++) {
        assert_int_equal(ouro_list_append(l, x), 0);
        size_t cap = ouro_list_capacity(l);
        if (cap != last) {
            assert_true(seen < sizeof want / sizeof *want);
            assert_int_equal(cap, want[seen]);
            seen++;
            last = cap;
        }
    }
    assert_int_equal(seen, sizeof want / sizeof *want);
    size_t sz = ouro_sizeof(l);
    assert_true(sz >= sizeof(ouro_object) + 352 * sizeof(ouro_object *)); /* the array, over-allocation too */
    /* removals shrink below half (CPython's rule) and an empty list drops its array */
    while (ouro_list_size(l) > 10) ouro_list_del(l, -1);
    assert_true(ouro_list_capacity(l) < 40);
    assert_true(ouro_list_capacity(l) >= 10);
    assert_true(ouro_sizeof(l) < sz);
    while (ouro_list_size(l) > 0) ouro_list_del(l, 0);
    assert_int_equal(ouro_list_capacity(l), 0);
    /* a hint preallocates exactly */
    ouro_object *h = ouro_list_new(10);
    assert_int_equal(ouro_list_capacity(h), 10);
    for (int i = 0; i < 10; i++) ouro_list_append(h, x);
    assert_int_equal(ouro_list_capacity(h), 10);
    ouro_list_append(h, x);
    assert_int_equal(ouro_list_capacity(h), 16); /* (11 + 1 + 6) & ~3 */
    /* a big extend gets just enough, rounded up to 4 */
    ouro_object *big = list_of(0, 100), *e = ouro_list_new(0);
    assert_int_equal(ouro_list_extend(e, big), 0);
    assert_int_equal(ouro_list_capacity(e), 100);
    ouro_decref(big);
    ouro_decref(e);
    ouro_decref(h);
    ouro_decref(l);
    ouro_decref(x);
    counts_back(&c0);
}

static void test_list_api(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *l = list_of(0, 3); /* [0, 1, 2] */
    expect_repr(l, "[0, 1, 2]");
    /* get: negative from the end, out of range */
    ouro_object *v = ouro_list_get(l, -1);
    assert_int_equal(cb_id(v), 2);
    ouro_decref(v);
    v = ouro_list_get(l, -3);
    assert_int_equal(cb_id(v), 0);
    ouro_decref(v);
    assert_null(ouro_list_get(l, 3));
    expect_err(OURO_ERR_INDEX);
    assert_null(ouro_list_get(l, -4));
    expect_err(OURO_ERR_INDEX);
    /* insert: clamped, negative allowed */
    ouro_object *b10 = cb(10), *b11 = cb(11), *b12 = cb(12), *b13 = cb(13);
    assert_int_equal(ouro_list_insert(l, 100, b10), 0);  /* end */
    assert_int_equal(ouro_list_insert(l, -100, b11), 0); /* start */
    assert_int_equal(ouro_list_insert(l, -1, b12), 0);   /* before the last */
    assert_int_equal(ouro_list_insert(l, 2, b13), 0);
    expect_ids(l, (long[]){11, 0, 13, 1, 2, 12, 10}, 7);
    /* set */
    assert_int_equal(ouro_list_set(l, -1, b11), 0);
    assert_int_equal(ouro_list_set(l, 0, b10), 0);
    expect_ids(l, (long[]){10, 0, 13, 1, 2, 12, 11}, 7);
    assert_int_equal(ouro_list_set(l, 7, b10), -1);
    expect_err(OURO_ERR_INDEX);
    assert_int_equal(ouro_list_set(l, -8, b10), -1);
    expect_err(OURO_ERR_INDEX);
    /* pop, del */
    v = ouro_list_pop(l, -1);
    assert_int_equal(cb_id(v), 11);
    ouro_decref(v);
    v = ouro_list_pop(l, 1);
    assert_int_equal(cb_id(v), 0);
    ouro_decref(v);
    assert_int_equal(ouro_list_del(l, 0), 0);
    expect_ids(l, (long[]){13, 1, 2, 12}, 4);
    assert_null(ouro_list_pop(l, 4));
    expect_err(OURO_ERR_INDEX);
    assert_int_equal(ouro_list_del(l, -5), -1);
    expect_err(OURO_ERR_INDEX);
    /* contains, index, remove (by ouro_eq: a different object with the same id is equal) */
    ouro_object *one = cb(1), *nine = cb(9);
    assert_int_equal(ouro_list_contains(l, one), 1);
    assert_int_equal(ouro_list_contains(l, nine), 0);
    assert_int_equal(ouro_list_index(l, one), 1);
    assert_int_equal(ouro_list_index(l, nine), -1);
    expect_err(OURO_ERR_VALUE);
    assert_int_equal(ouro_list_append(l, one), 0);
    assert_int_equal(ouro_list_remove(l, one), 0); /* the first equal one */
    expect_ids(l, (long[]){13, 2, 12, 1}, 4);
    assert_int_equal(ouro_list_remove(l, nine), -1);
    expect_err(OURO_ERR_VALUE);
    ouro_object *s = ouro_str_from_cstr("s"); /* other types compare unequal */
    assert_int_equal(ouro_list_contains(l, s), 0);
    /* reverse */
    assert_int_equal(ouro_list_reverse(l), 0);
    expect_ids(l, (long[]){1, 12, 2, 13}, 4);
    /* iteration */
    size_t pos = 0;
    long ids[8];
    int n = 0;
    ouro_object *item;
    while (ouro_list_iter_next(l, &pos, &item) == 1) {
        ids[n++] = cb_id(item);
        ouro_decref(item);
    }
    assert_int_equal(n, 4);
    assert_int_equal(pos, 4);
    assert_null(item);
    assert_int_equal(ids[0] * 1000 + ids[3], 1013);
    /* copy, to_tuple, extend (list, tuple, itself) */
    ouro_object *c = ouro_list_copy(l);
    assert_int_equal(ouro_eq(c, l), 1);
    ouro_object *t = ouro_list_to_tuple(l);
    expect_repr(t, "(1, 12, 2, 13)");
    assert_int_equal(ouro_list_extend(c, t), 0);
    assert_int_equal(ouro_list_extend(c, c), 0);
    assert_int_equal(ouro_list_size(c), 16);
    expect_repr(c, "[1, 12, 2, 13, 1, 12, 2, 13, 1, 12, 2, 13, 1, 12, 2, 13]");
    assert_int_equal(ouro_eq(c, l), 0);
    assert_int_equal(ouro_eq(c, t), 0); /* a list never equals a tuple */
    assert_int_equal(ouro_list_extend(c, s), -1);
    expect_err(OURO_ERR_TYPE);
    /* clear */
    assert_int_equal(ouro_list_clear(c), 0);
    assert_int_equal(ouro_list_size(c), 0);
    assert_int_equal(ouro_list_capacity(c), 0);
    expect_repr(c, "[]");
    assert_int_equal(ouro_list_iter_next(c, &(size_t){0}, &item), 0);
    assert_null(ouro_list_pop(c, -1)); /* pop from empty */
    expect_err(OURO_ERR_INDEX);
    ouro_object *empty_t = ouro_list_to_tuple(c);
    assert_ptr_equal(empty_t, ouro_tuple_new(0));
    /* unhashable; equality; a list inside itself */
    assert_int_equal(ouro_hash(l), -1);
    expect_err(OURO_ERR_TYPE);
    ouro_object *c2 = ouro_list_new(0);
    assert_int_equal(ouro_eq(c, c2), 1); /* both empty */
    ouro_list_append(c2, one);
    assert_int_equal(ouro_eq(c, c2), 0);
    ouro_decref(c2);
    ouro_object *self = ouro_list_new(0);
    ouro_list_append(self, self);
    ouro_list_append(self, one);
    expect_repr(self, "[[...], 1]");
    ouro_list_clear(self); /* breaks the cycle */
    ouro_decref(self);
    ouro_object *objs[] = {l, b10, b11, b12, b13, one, nine, s, c, t};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ouro_decref(objs[i]);
    counts_back(&c0);
}

static void test_list_errors(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *l = ouro_list_new(0), *x = cb(0), *s = ouro_str_from_cstr("s");
    ouro_object *item;
    size_t pos = 0;
    /* NULL list: OURO_ERR_INVALID */
    assert_int_equal(ouro_list_append(NULL, x), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_insert(NULL, 0, x), -1), expect_err(OURO_ERR_INVALID);
    assert_null(ouro_list_get(NULL, 0)), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_set(NULL, 0, x), -1), expect_err(OURO_ERR_INVALID);
    assert_null(ouro_list_pop(NULL, 0)), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_del(NULL, 0), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_remove(NULL, x), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_size(NULL), (size_t)-1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_capacity(NULL), (size_t)-1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_contains(NULL, x), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_index(NULL, x), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_clear(NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_null(ouro_list_copy(NULL)), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_extend(NULL, l), -1), expect_err(OURO_ERR_INVALID);
    assert_null(ouro_list_to_tuple(NULL)), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_reverse(NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_iter_next(NULL, &pos, &item), -1), expect_err(OURO_ERR_INVALID);
    /* NULL values */
    assert_int_equal(ouro_list_append(l, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_insert(l, 0, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_set(l, 0, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_remove(l, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_contains(l, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_index(l, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_extend(l, NULL), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_iter_next(l, NULL, &item), -1), expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_list_iter_next(l, &pos, NULL), -1), expect_err(OURO_ERR_INVALID);
    /* not a list: OURO_ERR_TYPE */
    assert_int_equal(ouro_list_append(s, x), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_insert(s, 0, x), -1), expect_err(OURO_ERR_TYPE);
    assert_null(ouro_list_get(s, 0)), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_set(s, 0, x), -1), expect_err(OURO_ERR_TYPE);
    assert_null(ouro_list_pop(s, 0)), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_del(s, 0), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_remove(s, x), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_size(s), (size_t)-1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_capacity(s), (size_t)-1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_contains(s, x), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_index(s, x), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_clear(s), -1), expect_err(OURO_ERR_TYPE);
    assert_null(ouro_list_copy(s)), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_extend(s, l), -1), expect_err(OURO_ERR_TYPE);
    assert_null(ouro_list_to_tuple(s)), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_reverse(s), -1), expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_list_iter_next(s, &pos, &item), -1), expect_err(OURO_ERR_TYPE);
    /* an unfinished tuple cannot extend a list */
    ouro_object *u = ouro_tuple_new(2);
    ouro_tuple_set_item_steal(u, 0, ouro_newref(x));
    assert_int_equal(ouro_list_extend(l, u), -1), expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_list_size(l), 0);
    /* a failing comparison stops contains / index / remove with its error */
    ouro_object *ul = ouro_list_new(0), *ut = ouro_tuple_new(1), *ut2 = ouro_tuple_new(1);
    ouro_list_append(ul, ut);
    assert_int_equal(ouro_list_contains(ul, ut2), -1), expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_list_index(ul, ut2), -1), expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_list_remove(ul, ut2), -1), expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_list_contains(ul, ut), 1); /* identity needs no comparison */
    ouro_object *objs[] = {l, x, s, u, ul, ut, ut2};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ouro_decref(objs[i]);
    counts_back(&c0);
}

static void test_list_traverse_clear(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *l = list_of(0, 50);
    int visits = 0;
    assert_int_equal(ouro_list_type.traverse(l, count_visit, &visits), 0);
    assert_int_equal(visits, 50);
    ouro_list_type.clear(l);
    visits = 0;
    ouro_list_type.traverse(l, count_visit, &visits);
    assert_int_equal(visits, 0);
    assert_int_equal(ouro_list_size(l), 0);
    ouro_decref(l);
    counts_back(&c0);
}

/* ---- deep chains ------------------------------------------------------------------------------------------- */

typedef struct {
    bool list;
    long depth;
    ouro_type_stats before, built, after;
    double build_s, free_s;
} deep_job;

/* Builds a chain of depth nested 1-tuples (or 1-lists) and frees it, all on this thread (its owner:
 * every free is immediate, none queued). */
static void *deep_worker(void *arg) {
    deep_job *j = arg;
    const ouro_type *type = j->list ? &ouro_list_type : &ouro_tuple_type;
    ouro_type_get_stats(type, &j->before);
    double t0 = now_s();
    ouro_object *cur = j->list ? ouro_list_new(0) : ouro_tuple_new(0);
    for (long i = 0; i < j->depth && cur; i++) {
        ouro_object *next;
        if (j->list) {
            next = ouro_list_new(1);
            if (next && ouro_list_append(next, cur) != 0) abort();
            ouro_decref(cur);
        } else {
            next = ouro_tuple_new(1);
            if (next && ouro_tuple_set_item_steal(next, 0, cur) != 0) abort();
        }
        cur = next;
    }
    if (!cur) abort();
    double t1 = now_s();
    ouro_type_get_stats(type, &j->built);
    ouro_decref(cur);
    double t2 = now_s();
    ouro_type_get_stats(type, &j->after);
    j->build_s = t1 - t0;
    j->free_s = t2 - t1;
    return NULL;
}

static void deep_run(bool list) {
    deep_job j = {.list = list, .depth = test_memcheck() ? DEEP / 100 : DEEP}; /* memcheck: testutil.h */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, deep_worker, &j), 0); /* default attributes: default stack */
    join_offline(t);
    /* a list chain starts with an empty list; a tuple chain with the empty tuple (immortal, made before) */
    size_t made = (size_t)j.depth + (list ? 1 : 0);
    assert_int_equal(j.built.allocs - j.before.allocs, made);
    assert_int_equal(j.built.live - j.before.live, made);
    assert_int_equal(j.after.frees - j.built.frees, made);
    assert_int_equal(j.after.live, j.before.live);
    fprintf(stderr, "    deep %s chain of %ld: built in %.2f s, freed in %.2f s on a default-stack thread\n",
            list ? "list" : "tuple", j.depth, j.build_s, j.free_s);
}

static void test_deep_tuple_chain(void **state) {
    (void)state;
    ouro_decref(ouro_tuple_new(0)); /* the immortal empty tuple exists before the baseline */
    counts c0 = counts_now();
    deep_run(false);
    counts_back(&c0);
}

static void test_deep_list_chain(void **state) {
    (void)state;
    counts c0 = counts_now();
    deep_run(true);
    counts_back(&c0);
}

/* ---- threads: appends ---------------------------------------------------------------------------------------- */

enum { THREADS = 4 };

typedef struct {
    ouro_object *list;
    int index;
    long n;
    atomic_int *go;
    long bad; /* the worker's findings, checked after the join */
    long done;
} worker;

static void wait_go(atomic_int *go) {
    while (!atomic_load(go)) ouro_safepoint();
}

static void *append_worker(void *arg) {
    worker *w = arg;
    wait_go(w->go);
    for (long k = 0; k < w->n; k++) {
        ouro_object *b = cb(w->index * w->n + k);
        if (ouro_list_append(w->list, b) != 0) w->bad++;
        ouro_decref(b);
        ouro_safepoint();
    }
    return NULL;
}

/* Runs fn on THREADS workers over l; returns the sum of their bad counts. */
static long run_workers(void *(*fn)(void *), worker *w, ouro_object *l, long n) {
    pthread_t t[THREADS];
    atomic_int go = 0;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.list = l, .index = i, .n = n, .go = &go};
        assert_int_equal(pthread_create(&t[i], NULL, fn, &w[i]), 0);
    }
    atomic_store(&go, 1);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) {
        join_offline(t[i]);
        bad += w[i].bad;
    }
    return bad;
}

static void test_concurrent_append(void **state) {
    (void)state;
    counts c0 = counts_now();
    long n = 5000 * SCALE;
    ouro_object *l = ouro_list_new(0);
    worker w[THREADS];
    assert_int_equal(run_workers(append_worker, w, l, n), 0);
    assert_int_equal(ouro_list_size(l), THREADS * n);
    /* every appended item present exactly once, each thread's in its order */
    char *seen = calloc((size_t)(THREADS * n), 1);
    long last[THREADS];
    for (int i = 0; i < THREADS; i++) last[i] = -1;
    size_t pos = 0;
    ouro_object *v;
    while (ouro_list_iter_next(l, &pos, &v) == 1) {
        assert_true(cb_ok(v));
        long id = cb_id(v);
        assert_true(id >= 0 && id < THREADS * n);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        assert_true(id % n > last[id / n] || last[id / n] == -1);
        last[id / n] = id % n;
        ouro_decref(v);
    }
    for (long i = 0; i < THREADS * n; i++) assert_int_equal(seen[i], 1);
    free(seen);
    ouro_decref(l);
    counts_back(&c0);
}

/* ---- threads: iteration races appends ------------------------------------------------------------------------ */

static atomic_int race_stop;

/* Iterates while another thread appends ids 0, 1, 2, ...: never moved, so each pass must see ids
 * 0..k-1 in order, each once, and every object alive. */
static void *iterate_worker(void *arg) {
    worker *w = arg;
    wait_go(w->go);
    do { /* at least one pass, even when the appender finished before this thread ran */
        size_t pos = 0;
        ouro_object *v;
        long expect = 0;
        while (ouro_list_iter_next(w->list, &pos, &v) == 1) {
            if (!cb_ok(v) || cb_id(v) != expect) w->bad++;
            expect++;
            ouro_decref(v);
            ouro_safepoint();
        }
        w->done++;
    } while (!atomic_load(&race_stop));
    return NULL;
}

static void test_iterate_while_append(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *l = ouro_list_new(0);
    pthread_t t[THREADS - 1];
    worker w[THREADS - 1];
    atomic_int go = 1;
    atomic_store(&race_stop, 0);
    for (int i = 0; i < THREADS - 1; i++) {
        w[i] = (worker){.list = l, .index = i, .go = &go};
        pthread_create(&t[i], NULL, iterate_worker, &w[i]);
    }
    long n = 20000 * SCALE;
    for (long k = 0; k < n; k++) {
        ouro_object *b = cb(k);
        assert_int_equal(ouro_list_append(l, b), 0);
        ouro_decref(b);
        ouro_safepoint();
    }
    atomic_store(&race_stop, 1);
    long bad = 0, passes = 0;
    for (int i = 0; i < THREADS - 1; i++) {
        join_offline(t[i]);
        bad += w[i].bad;
        passes += w[i].done;
    }
    assert_int_equal(bad, 0);
    assert_true(passes > 0);
    assert_int_equal(ouro_list_size(l), n);
    ouro_decref(l);
    counts_back(&c0);
}

/* ---- threads: get / set / pop / insert / append on one list ---------------------------------------------------
 * Conservation oracle: every item made ends exactly one way — still in the list, popped (once), replaced
 * by a successful set, or never inserted (a set that failed for its index) — and the number replaced
 * equals the number of successful sets. Each worker records its items' fates in a per-id array. */
enum { IDS_PER_THREAD = 1 << 20, SEEDS = 64 };
enum { FATE_REPLACED = 0, FATE_POPPED = 1, FATE_IN_LIST = 2, FATE_NOT_INSERTED = 3 };
static atomic_uchar *fate; /* per id (seeds after the workers' ids); FATE_REPLACED until known */
static atomic_long sets_done;

static void *mix_worker(void *arg) {
    worker *w = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(w->index + 1);
    long next = (long)w->index * IDS_PER_THREAD;
    wait_go(w->go);
    for (long k = 0; k < w->n; k++) {
        uint64_t r = rnd(&s);
        ptrdiff_t i = (ptrdiff_t)((r >> 32) % 64) - 32;
        ouro_object *v;
        switch (r % 8) {
        case 0: case 1: /* append */
            v = cb(next++);
            if (ouro_list_append(w->list, v) != 0) w->bad++;
            ouro_decref(v);
            break;
        case 2: /* insert */
            v = cb(next++);
            if (ouro_list_insert(w->list, i, v) != 0) w->bad++;
            ouro_decref(v);
            break;
        case 3: case 4: case 5: /* get */
            v = ouro_list_get(w->list, i);
            if (v) {
                if (!cb_ok(v)) w->bad++;
                ouro_decref(v);
            } else if (ouro_err_occurred() != OURO_ERR_INDEX) {
                w->bad++;
            }
            ouro_err_clear();
            break;
        case 6: /* set: the replaced item is dropped by the list */
            v = cb(next++);
            if (ouro_list_set(w->list, i, v) == 0) {
                atomic_fetch_add(&sets_done, 1);
            } else {
                if (ouro_err_occurred() != OURO_ERR_INDEX) w->bad++;
                atomic_store(&fate[cb_id(v)], FATE_NOT_INSERTED);
            }
            ouro_err_clear();
            ouro_decref(v);
            break;
        case 7: /* pop */
            v = ouro_list_pop(w->list, i);
            if (v) {
                if (!cb_ok(v) || atomic_exchange(&fate[cb_id(v)], FATE_POPPED) != FATE_REPLACED) w->bad++;
                ouro_decref(v);
            } else if (ouro_err_occurred() != OURO_ERR_INDEX) {
                w->bad++;
            }
            ouro_err_clear();
            break;
        }
        ouro_safepoint();
    }
    w->done = next - (long)w->index * IDS_PER_THREAD; /* items made */
    return NULL;
}

static void test_get_set_pop_race(void **state) {
    (void)state;
    counts c0 = counts_now();
    long n = 20000 * SCALE, seed0 = THREADS * (long)IDS_PER_THREAD;
    assert_true(n < IDS_PER_THREAD);
    fate = calloc((size_t)(seed0 + SEEDS), 1);
    atomic_store(&sets_done, 0);
    long d0 = atomic_load(&cbox_deallocs);
    ouro_object *l = list_of(seed0, seed0 + SEEDS);
    worker w[THREADS];
    assert_int_equal(run_workers(mix_worker, w, l, n), 0);
    size_t size = ouro_list_size(l);
    for (size_t i = 0; i < size; i++) {
        ouro_object *v = ouro_list_get(l, (ptrdiff_t)i);
        assert_true(cb_ok(v));
        assert_int_equal(atomic_exchange(&fate[cb_id(v)], FATE_IN_LIST), FATE_REPLACED); /* once, not popped */
        ouro_decref(v);
    }
    long made = SEEDS, replaced = 0, in_list = 0;
    for (int t = 0; t < THREADS; t++) made += w[t].done;
    for (int t = 0; t <= THREADS; t++) {
        long base = (long)t * IDS_PER_THREAD, count = t < THREADS ? w[t].done : SEEDS;
        for (long k = 0; k < count; k++) {
            unsigned char f = atomic_load(&fate[base + k]);
            replaced += f == FATE_REPLACED;
            in_list += f == FATE_IN_LIST;
        }
    }
    assert_int_equal(in_list, size);
    assert_int_equal(replaced, atomic_load(&sets_done));
    ouro_decref(l);
    ouro_refcount_merge_queued();
    assert_int_equal(atomic_load(&cbox_deallocs) - d0, made); /* each freed once (dealloc checks the canary) */
    free(fate);
    counts_back(&c0);
}

/* ---- threads: concurrent removes --------------------------------------------------------------------------- */

static void *remove_worker(void *arg) {
    worker *w = arg;
    wait_go(w->go);
    for (long k = 0; k < w->n; k++) {
        ouro_object *key = cb(w->index * w->n + k); /* equal by id, not identical */
        if (ouro_list_remove(w->list, key) != 0) w->bad++;
        ouro_decref(key);
        ouro_safepoint();
    }
    return NULL;
}

static void test_concurrent_remove(void **state) {
    (void)state;
    counts c0 = counts_now();
    long n = 300 * SCALE;
    ouro_object *l = list_of(0, THREADS * n);
    worker w[THREADS];
    assert_int_equal(run_workers(remove_worker, w, l, n), 0);
    assert_int_equal(ouro_list_size(l), 0);
    assert_int_equal(ouro_list_capacity(l), 0);
    ouro_decref(l);
    counts_back(&c0);
}

/* ---- threads: lock-free readers against a writer that grows and clears -------------------------------------- */

static void *reader_worker(void *arg) {
    worker *w = arg;
    uint64_t s = 0x2545f4914f6cdd1dull * (uint64_t)(w->index + 1);
    wait_go(w->go);
    while (!atomic_load(&race_stop)) {
        uint64_t r = rnd(&s);
        ptrdiff_t i = (ptrdiff_t)(r >> 40) % 300 - 20;
        ouro_object *v = ouro_list_get(w->list, i);
        if (v) {
            if (!cb_ok(v)) w->bad++;
            ouro_decref(v);
            w->done++;
        } else {
            if (ouro_err_occurred() != OURO_ERR_INDEX) w->bad++;
            ouro_err_clear();
        }
        if (r % 64 == 0) { /* a full iteration now and then */
            size_t pos = 0;
            while (ouro_list_iter_next(w->list, &pos, &v) == 1) {
                if (!cb_ok(v)) w->bad++;
                ouro_decref(v);
            }
        }
        if (r % 128 == 1) { /* a lock-free search for an item never in the list */
            ouro_object *key = cb(-1);
            if (ouro_list_contains(w->list, key) != 0) w->bad++;
            ouro_decref(key);
        }
        ouro_safepoint();
    }
    return NULL;
}

static void test_readers_vs_grow_clear(void **state) {
    (void)state;
    counts c0 = counts_now();
    ouro_object *l = ouro_list_new(0);
    pthread_t t[THREADS - 1];
    worker w[THREADS - 1];
    atomic_int go = 1;
    atomic_store(&race_stop, 0);
    for (int i = 0; i < THREADS - 1; i++) {
        w[i] = (worker){.list = l, .index = i, .go = &go};
        pthread_create(&t[i], NULL, reader_worker, &w[i]);
    }
    uint64_t s = 42;
    long rounds = 200 * SCALE;
    for (long round = 0; round < rounds; round++) {
        long k = (long)(rnd(&s) % 300);
        for (long i = 0; i < k; i++) {
            ouro_object *b = cb(i);
            ouro_list_append(l, b);
            ouro_decref(b);
        }
        switch (round % 4) {
        case 0: ouro_list_clear(l); break;
        case 1: while (ouro_list_size(l) > 0) ouro_list_del(l, -1); break; /* shrinks the array */
        case 2: { /* replaces every item */
            for (long i = 0; i < k; i++) {
                ouro_object *b = cb(i);
                ouro_list_set(l, i, b);
                ouro_decref(b);
            }
            ouro_list_reverse(l);
            ouro_list_clear(l);
            break;
        }
        default: while (ouro_list_size(l) > 0) ouro_list_del(l, 0); break;
        }
        ouro_safepoint();
    }
    atomic_store(&race_stop, 1);
    long bad = 0, reads = 0;
    for (int i = 0; i < THREADS - 1; i++) {
        join_offline(t[i]);
        bad += w[i].bad;
        reads += w[i].done;
    }
    assert_int_equal(bad, 0);
    fprintf(stderr, "    %ld successful reads against %ld grow/clear rounds\n", reads, rounds);
    ouro_decref(l);
    ouro_synchronize();
    counts_back(&c0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tuple_basics),
        cmocka_unit_test(test_tuple_hash_eq_repr),
        cmocka_unit_test(test_tuple_large_traverse_clear),
        cmocka_unit_test(test_list_growth),
        cmocka_unit_test(test_list_api),
        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_list_traverse_clear),
        cmocka_unit_test(test_deep_tuple_chain),
        cmocka_unit_test(test_deep_list_chain),
        cmocka_unit_test(test_concurrent_append),
        cmocka_unit_test(test_iterate_while_append),
        cmocka_unit_test(test_get_set_pop_race),
        cmocka_unit_test(test_concurrent_remove),
        cmocka_unit_test(test_readers_vs_grow_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
