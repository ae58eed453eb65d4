/* tests/test_number.c — None, bool, int, float: singletons and the small-int cache (identity,
 * immortality), every int operation with its overflow edges and floor signs, exact int/float
 * comparison, the numeric hash across types, float repr, errors, per-type counts back to baseline. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <pthread.h>

/* Per-type counts at the start of a test; number_check_baseline() asserts nothing leaked. */
typedef struct {
    ouro_type_stats in, fl;
} number_baseline;

static number_baseline number_stats(void) {
    number_baseline b;
    assert_int_equal(ouro_type_get_stats(&ouro_int_type, &b.in), 0);
    assert_int_equal(ouro_type_get_stats(&ouro_float_type, &b.fl), 0);
    return b;
}

static void number_check_baseline(number_baseline b0) {
    number_baseline b1 = number_stats();
    assert_int_equal(b1.in.live, b0.in.live);
    assert_int_equal(b1.fl.live, b0.fl.live);
}

/* The value of int o (which the test then drops). */
static int64_t ival(ouro_object *o) {
    assert_non_null(o);
    int64_t v = 0;
    assert_int_equal(ouro_int_value(o, &v), 0);
    ouro_decref(o);
    return v;
}

static double fval(ouro_object *o) {
    assert_non_null(o);
    double v = 0;
    assert_int_equal(ouro_float_value(o, &v), 0);
    ouro_decref(o);
    return v;
}

/* op(x, y) on fresh ints, the result's value (the operands dropped). */
typedef ouro_object *(*binop)(ouro_object *, ouro_object *);

static int64_t iop(binop op, int64_t x, int64_t y) {
    ouro_object *a = ouro_int_from(x), *b = ouro_int_from(y);
    ouro_object *r = op(a, b);
    if (!r) fprintf(stderr, "unexpected error: %s\n", ouro_err_message());
    int64_t v = ival(r);
    ouro_decref(a);
    ouro_decref(b);
    return v;
}

/* op(x, y) must fail with err. */
static void iop_fails(binop op, int64_t x, int64_t y, ouro_err err) {
    ouro_object *a = ouro_int_from(x), *b = ouro_int_from(y);
    ouro_err_clear();
    assert_null(op(a, b));
    assert_int_equal(ouro_err_occurred(), err);
    ouro_err_clear();
    ouro_decref(a);
    ouro_decref(b);
}

/* ---- singletons ------------------------------------------------------------------------------------- */
static void test_singletons(void **state) {
    (void)state;
    assert_true(ouro_is_immortal(OURO_NONE));
    assert_true(ouro_is_immortal(OURO_TRUE));
    assert_true(ouro_is_immortal(OURO_FALSE));
    assert_ptr_equal(ouro_None, OURO_NONE);
    assert_ptr_equal(ouro_True, OURO_TRUE);
    assert_string_equal(ouro_type_name(OURO_NONE), "NoneType");
    assert_string_equal(ouro_type_name(OURO_TRUE), "bool");
    assert_ptr_equal(ouro_bool_from(42), OURO_TRUE);
    assert_ptr_equal(ouro_bool_from(-1), OURO_TRUE);
    assert_ptr_equal(ouro_bool_from(0), OURO_FALSE);
    for (int i = 0; i < 1000; i++) { /* never counted, never freed */
        ouro_decref(OURO_NONE);
        ouro_decref(OURO_TRUE);
        ouro_decref(OURO_FALSE);
    }
    assert_int_equal(ouro_refcount(OURO_NONE), (size_t)-1);
    assert_int_equal(ouro_is_true(OURO_NONE), 0);
    assert_int_equal(ouro_is_true(OURO_TRUE), 1);
    assert_int_equal(ouro_is_true(OURO_FALSE), 0);
    int64_t v = -1;
    assert_int_equal(ouro_int_value(OURO_TRUE, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ouro_int_value(OURO_FALSE, &v), 0);
    assert_int_equal(v, 0);
    /* hash: True == 1, False == 0, None a fixed constant */
    assert_int_equal(ouro_hash(OURO_TRUE), 1);
    assert_int_equal(ouro_hash(OURO_FALSE), 0);
    assert_int_equal(ouro_hash(OURO_NONE), 0xFCA86420);
    /* None equals only itself */
    ouro_object *zero = ouro_int_from(0);
    assert_int_equal(ouro_eq(OURO_NONE, OURO_NONE), 1);
    assert_int_equal(ouro_eq(OURO_NONE, zero), 0);
    assert_int_equal(ouro_eq(zero, OURO_NONE), 0);
    assert_int_equal(ouro_eq(OURO_NONE, OURO_FALSE), 0);
    assert_int_equal(ouro_eq(zero, OURO_FALSE), 1); /* bool is an int */
    assert_int_equal(ouro_eq(OURO_TRUE, OURO_FALSE), 0);
}

static void check_repr(ouro_object *o, const char *want) {
    assert_non_null(o);
    ouro_object *r = ouro_repr(o);
    assert_non_null(r);
    const char *got = ouro_str_utf8(r, NULL);
    if (strcmp(got, want) != 0) fprintf(stderr, "repr: got '%s', want '%s'\n", got, want);
    assert_string_equal(got, want);
    ouro_decref(r);
}

static void test_singleton_repr(void **state) {
    (void)state;
    check_repr(OURO_NONE, "None");
    check_repr(OURO_TRUE, "True");
    check_repr(OURO_FALSE, "False");
}

/* ---- small ints ----------------------------------------------------------------------------------------- */
static void *small_int_from_thread(void *arg) {
    (void)arg;
    return ouro_int_from(7);
}

static void test_small_int_cache(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    for (int64_t v = OURO_SMALL_INT_MIN; v <= OURO_SMALL_INT_MAX; v++) {
        ouro_object *a = ouro_int_from(v), *b = ouro_int_from(v);
        assert_ptr_equal(a, b);
        assert_true(ouro_is_immortal(a));
        assert_int_equal(ival(a), v);
    }
    number_baseline b1 = number_stats();
    assert_int_equal(b1.in.allocs, b0.in.allocs); /* the cache allocates nothing */
    /* the same object from another thread */
    pthread_t t;
    void *other = NULL;
    pthread_create(&t, NULL, small_int_from_thread, NULL);
    ouro_offline_begin();
    pthread_join(t, &other);
    ouro_offline_end();
    assert_ptr_equal(other, ouro_int_from(7));
    /* outside the cache: new objects */
    ouro_object *a = ouro_int_from(257), *b = ouro_int_from(257), *c = ouro_int_from(-6);
    assert_ptr_not_equal(a, b);
    assert_false(ouro_is_immortal(a));
    assert_int_equal(ouro_refcount(a), 1);
    assert_int_equal(ouro_eq(a, b), 1);
    assert_int_equal(ouro_hash(a), ouro_hash(b));
    ouro_decref(a);
    ouro_decref(b);
    ouro_decref(c);
    number_check_baseline(b0);
}

/* ---- int arithmetic --------------------------------------------------------------------------------------- */
static void test_int_add_sub_mul(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    assert_int_equal(iop(ouro_int_add, 2, 3), 5);
    assert_int_equal(iop(ouro_int_add, -1000, 1), -999);
    assert_int_equal(iop(ouro_int_add, INT64_MAX, 0), INT64_MAX);
    assert_int_equal(iop(ouro_int_add, INT64_MIN, INT64_MAX), -1);
    iop_fails(ouro_int_add, INT64_MAX, 1, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_add, INT64_MIN, -1, OURO_ERR_OVERFLOW);
    assert_int_equal(iop(ouro_int_sub, 3, 5), -2);
    assert_int_equal(iop(ouro_int_sub, INT64_MIN, INT64_MIN), 0);
    assert_int_equal(iop(ouro_int_sub, -1, INT64_MAX), INT64_MIN);
    iop_fails(ouro_int_sub, INT64_MIN, 1, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_sub, 0, INT64_MIN, OURO_ERR_OVERFLOW);
    assert_int_equal(iop(ouro_int_mul, -7, 6), -42);
    assert_int_equal(iop(ouro_int_mul, INT64_MIN, 1), INT64_MIN);
    assert_int_equal(iop(ouro_int_mul, 3037000499, 3037000499), 9223372030926249001);
    iop_fails(ouro_int_mul, 3037000500, 3037000500, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_mul, INT64_MIN, -1, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_mul, INT64_MAX, 2, OURO_ERR_OVERFLOW);
    /* bools are ints */
    assert_int_equal(ival(ouro_int_add(OURO_TRUE, OURO_TRUE)), 2);
    assert_int_equal(ival(ouro_int_mul(OURO_FALSE, OURO_TRUE)), 0);
    number_check_baseline(b0);
}

static void test_int_floordiv_mod(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    /* Python: 7//2 == 3, -7//2 == -4, 7//-2 == -4, -7//-2 == 3; 7%2 == 1, -7%2 == 1, 7%-2 == -1, -7%-2 == -1 */
    static const int64_t cases[][4] = {
        {7, 2, 3, 1},     {-7, 2, -4, 1},    {7, -2, -4, -1},   {-7, -2, 3, -1},   {6, 3, 2, 0},
        {-6, 3, -2, 0},   {0, 5, 0, 0},      {1, 1000, 0, 1},   {-1, 1000, -1, 999}, {1, -1000, -1, -999},
        {INT64_MAX, 2, 4611686018427387903, 1},
        {INT64_MIN, 2, -4611686018427387904, 0},
        {INT64_MIN, 3, -3074457345618258603, 1},
        {INT64_MIN, -2, 4611686018427387904, 0},
        {INT64_MIN, INT64_MAX, -2, INT64_MAX - 1},
        {INT64_MAX, INT64_MIN, -1, -1},
        {INT64_MAX, -1, -INT64_MAX, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t x = cases[i][0], y = cases[i][1];
        int64_t q = iop(ouro_int_floordiv, x, y), r = iop(ouro_int_mod, x, y);
        if (q != cases[i][2] || r != cases[i][3])
            fprintf(stderr, "case %zu: %lld divmod %lld = (%lld, %lld)\n", i, (long long)x, (long long)y, (long long)q,
                    (long long)r);
        assert_int_equal(q, cases[i][2]);
        assert_int_equal(r, cases[i][3]);
        if (!(x == INT64_MIN && y == -1)) assert_true((__int128)q * y + r == x);
    }
    assert_int_equal(iop(ouro_int_mod, INT64_MIN, -1), 0); /* C's INT64_MIN % -1 traps: answered directly */
    iop_fails(ouro_int_floordiv, INT64_MIN, -1, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_floordiv, 1, 0, OURO_ERR_VALUE);
    iop_fails(ouro_int_floordiv, 0, 0, OURO_ERR_VALUE);
    iop_fails(ouro_int_mod, 1, 0, OURO_ERR_VALUE);
    ouro_err_clear();
    assert_null(ouro_int_floordiv(OURO_TRUE, OURO_FALSE));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_VALUE);
    ouro_err_clear();
    number_check_baseline(b0);
}

static int64_t iunop(ouro_object *(*op)(ouro_object *), int64_t x) {
    ouro_object *a = ouro_int_from(x);
    int64_t v = ival(op(a));
    ouro_decref(a);
    return v;
}

static void iunop_fails(ouro_object *(*op)(ouro_object *), int64_t x, ouro_err err) {
    ouro_object *a = ouro_int_from(x);
    ouro_err_clear();
    assert_null(op(a));
    assert_int_equal(ouro_err_occurred(), err);
    ouro_err_clear();
    ouro_decref(a);
}

static void test_int_unary_pow_bits(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    assert_int_equal(iunop(ouro_int_neg, 5), -5);
    assert_int_equal(iunop(ouro_int_neg, INT64_MAX), -INT64_MAX);
    iunop_fails(ouro_int_neg, INT64_MIN, OURO_ERR_OVERFLOW);
    assert_int_equal(iunop(ouro_int_abs, -5), 5);
    assert_int_equal(iunop(ouro_int_abs, INT64_MIN + 1), INT64_MAX);
    iunop_fails(ouro_int_abs, INT64_MIN, OURO_ERR_OVERFLOW);
    assert_int_equal(iunop(ouro_int_invert, 0), -1);
    assert_int_equal(iunop(ouro_int_invert, INT64_MIN), INT64_MAX);
    assert_int_equal(ival(ouro_int_neg(OURO_TRUE)), -1);
    /* pow */
    assert_int_equal(iop(ouro_int_pow, 2, 10), 1024);
    assert_int_equal(iop(ouro_int_pow, 0, 0), 1);
    assert_int_equal(iop(ouro_int_pow, -3, 3), -27);
    assert_int_equal(iop(ouro_int_pow, 2, 62), (int64_t)1 << 62);
    assert_int_equal(iop(ouro_int_pow, -2, 63), INT64_MIN);
    assert_int_equal(iop(ouro_int_pow, 1, INT64_MAX), 1);
    assert_int_equal(iop(ouro_int_pow, -1, INT64_MAX), -1);
    assert_int_equal(iop(ouro_int_pow, 3, 39), 4052555153018976267);
    iop_fails(ouro_int_pow, 2, 63, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_pow, 3, 40, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_pow, 2, -1, OURO_ERR_VALUE);
    /* bits */
    assert_int_equal(iop(ouro_int_and, 12, 10), 8);
    assert_int_equal(iop(ouro_int_or, 12, 10), 14);
    assert_int_equal(iop(ouro_int_xor, 12, 10), 6);
    assert_int_equal(iop(ouro_int_and, -1, 1234567), 1234567);
    assert_int_equal(iop(ouro_int_lshift, 1, 62), (int64_t)1 << 62);
    assert_int_equal(iop(ouro_int_lshift, -1, 63), INT64_MIN);
    assert_int_equal(iop(ouro_int_lshift, 0, 1000), 0);
    assert_int_equal(iop(ouro_int_lshift, -3, 2), -12);
    iop_fails(ouro_int_lshift, 1, 63, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_lshift, -2, 63, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_lshift, 1, 64, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_lshift, INT64_MAX, 1, OURO_ERR_OVERFLOW);
    iop_fails(ouro_int_lshift, 1, -1, OURO_ERR_VALUE);
    assert_int_equal(iop(ouro_int_rshift, 1024, 3), 128);
    assert_int_equal(iop(ouro_int_rshift, -7, 1), -4); /* floor */
    assert_int_equal(iop(ouro_int_rshift, -1, 1000), -1);
    assert_int_equal(iop(ouro_int_rshift, INT64_MAX, 63), 0);
    assert_int_equal(iop(ouro_int_rshift, INT64_MIN, 63), -1);
    assert_int_equal(iop(ouro_int_rshift, INT64_MIN, 62), -2);
    iop_fails(ouro_int_rshift, 1, -1, OURO_ERR_VALUE);
    number_check_baseline(b0);
}

static void test_int_compare_repr(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    ouro_object *a = ouro_int_from(INT64_MIN), *b = ouro_int_from(INT64_MAX), *c = ouro_int_from(-5);
    int cmp = 9;
    assert_int_equal(ouro_int_compare(a, b, &cmp), 0);
    assert_int_equal(cmp, -1);
    assert_int_equal(ouro_int_compare(b, a, &cmp), 0);
    assert_int_equal(cmp, 1);
    assert_int_equal(ouro_int_compare(c, c, &cmp), 0);
    assert_int_equal(cmp, 0);
    assert_int_equal(ouro_int_compare(OURO_TRUE, c, &cmp), 0);
    assert_int_equal(cmp, 1);
    check_repr(a, "-9223372036854775808");
    check_repr(b, "9223372036854775807");
    check_repr(c, "-5");
    ouro_object *z = ouro_int_from(0);
    check_repr(z, "0");
    ouro_decref(a);
    ouro_decref(b);
    ouro_decref(c);
    number_check_baseline(b0);
}

/* ---- hashes across the tower -------------------------------------------------------------------------------- */
static int64_t hash_of_int(int64_t v) {
    ouro_object *o = ouro_int_from(v);
    int64_t h = ouro_hash(o);
    ouro_decref(o);
    return h;
}

static int64_t hash_of_float(double v) {
    ouro_object *o = ouro_float_from(v);
    int64_t h = ouro_hash(o);
    ouro_decref(o);
    return h;
}

static void test_numeric_hash(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    /* Python's values (3.12, 64-bit) */
    assert_int_equal(hash_of_int(0), 0);
    assert_int_equal(hash_of_int(1), 1);
    assert_int_equal(hash_of_int(-1), -2); /* -1 is the error value */
    assert_int_equal(hash_of_int(-2), -2);
    assert_int_equal(hash_of_int(12345), 12345);
    assert_int_equal(hash_of_int((INT64_C(1) << 61) - 1), 0);
    assert_int_equal(hash_of_int(INT64_C(1) << 61), 1);
    assert_int_equal(hash_of_int(INT64_MAX), 3);  /* hash(2**63-1) */
    assert_int_equal(hash_of_int(INT64_MIN), -4);                    /* hash(-2**63) */
    assert_int_equal(hash_of_float(0.5), 1152921504606846976);        /* hash(0.5) */
    assert_int_equal(hash_of_float(1.5), 1152921504606846977);        /* hash(1.5) */
    assert_int_equal(hash_of_float(-0.5), -1152921504606846976);
    assert_int_equal(hash_of_float(0.1), 230584300921369408);         /* hash(0.1) */
    assert_int_equal(hash_of_float(1e100), 1822893315824342674);
    assert_int_equal(hash_of_float(1e-300), 482449582752280463);
    assert_int_equal(hash_of_float(3.14159), 326484311674566659);
    assert_int_equal(hash_of_float(-1e22), -1864712049423028464);
    assert_int_equal(hash_of_float(INFINITY), 314159);
    assert_int_equal(hash_of_float(-INFINITY), -314159);
    assert_int_equal(hash_of_float(-0.0), 0);
    assert_int_equal(hash_of_float(-1.0), -2);
    assert_int_equal(ouro_hash_double(NAN), 0);
    /* equal numbers hash equal, whatever their type */
    static const int64_t ints[] = {0, 1, -1, 2, -2, 7, 1000000, -1000000, INT64_C(1) << 53, -(INT64_C(1) << 53),
                                   INT64_C(1) << 61, INT64_C(1) << 62, INT64_MIN,
                                   INT64_C(1) << 60, 3LL << 59, -(3LL << 59)};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        double d = (double)ints[i];
        assert_true((int64_t)d == ints[i]); /* each exact as a double */
        ouro_object *a = ouro_int_from(ints[i]), *f = ouro_float_from(d);
        assert_int_equal(ouro_eq(a, f), 1);
        assert_int_equal(ouro_eq(f, a), 1);
        assert_int_equal(ouro_hash(a), ouro_hash(f));
        ouro_decref(a);
        ouro_decref(f);
    }
    ouro_object *one = ouro_int_from(1), *onef = ouro_float_from(1.0);
    assert_int_equal(ouro_hash(one), ouro_hash(onef));
    assert_int_equal(ouro_hash(one), ouro_hash(OURO_TRUE));
    assert_int_equal(ouro_eq(onef, OURO_TRUE), 1);
    assert_int_equal(ouro_eq(OURO_TRUE, onef), 1);
    ouro_decref(onef);
    /* NaN: identity hash, equal only to itself (ouro_eq's identity rule) */
    ouro_object *n1 = ouro_float_from(NAN), *n2 = ouro_float_from(NAN);
    assert_int_not_equal(ouro_hash(n1), ouro_hash(n2));
    assert_int_equal(ouro_eq(n1, n1), 1);
    assert_int_equal(ouro_eq(n1, n2), 0);
    ouro_decref(n1);
    ouro_decref(n2);
    number_check_baseline(b0);
}

/* ---- exact int/float comparison ------------------------------------------------------------------------------ */
static int ncmp(ouro_object *a, ouro_object *b) {
    int cmp = 99;
    assert_int_equal(ouro_number_compare(a, b, &cmp), 0);
    ouro_decref(a);
    ouro_decref(b);
    return cmp;
}

static void test_number_compare(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    int64_t p53 = INT64_C(1) << 53;
    /* 2**53 + 1 is not a double: it differs from 2.0**53 (Python: 2**53+1 == 2.0**53 is False) */
    assert_int_equal(ncmp(ouro_int_from(p53 + 1), ouro_float_from(9007199254740992.0)), 1);
    assert_int_equal(ncmp(ouro_float_from(9007199254740992.0), ouro_int_from(p53 + 1)), -1);
    assert_int_equal(ncmp(ouro_int_from(p53), ouro_float_from(9007199254740992.0)), 0);
    ouro_object *big = ouro_int_from(p53 + 1), *bigf = ouro_float_from((double)(p53 + 1));
    assert_int_equal(ouro_eq(big, bigf), 0); /* the double rounded to 2**53 */
    ouro_decref(big);
    ouro_decref(bigf);
    /* INT64_MAX vs 2.0**63 (the double INT64_MAX rounds to) */
    assert_int_equal(ncmp(ouro_int_from(INT64_MAX), ouro_float_from(9223372036854775808.0)), -1);
    assert_int_equal(ncmp(ouro_int_from(INT64_MIN), ouro_float_from(-9223372036854775808.0)), 0);
    assert_int_equal(ncmp(ouro_int_from(INT64_MIN), ouro_float_from(-9223372036854777856.0)), 1);
    /* fractions */
    assert_int_equal(ncmp(ouro_int_from(1), ouro_float_from(1.5)), -1);
    assert_int_equal(ncmp(ouro_int_from(2), ouro_float_from(1.5)), 1);
    assert_int_equal(ncmp(ouro_int_from(-1), ouro_float_from(-1.5)), 1);
    assert_int_equal(ncmp(ouro_int_from(-2), ouro_float_from(-1.5)), -1);
    assert_int_equal(ncmp(ouro_int_from(0), ouro_float_from(-0.0)), 0);
    assert_int_equal(ncmp(ouro_int_from(0), ouro_float_from(1e-300)), -1);
    /* infinities, NaN */
    assert_int_equal(ncmp(ouro_int_from(INT64_MAX), ouro_float_from(INFINITY)), -1);
    assert_int_equal(ncmp(ouro_int_from(INT64_MIN), ouro_float_from(-INFINITY)), 1);
    assert_int_equal(ncmp(ouro_int_from(0), ouro_float_from(NAN)), OURO_UNORDERED);
    assert_int_equal(ncmp(ouro_float_from(NAN), ouro_float_from(NAN)), OURO_UNORDERED);
    assert_int_equal(ncmp(ouro_float_from(NAN), ouro_int_from(3)), OURO_UNORDERED);
    assert_int_equal(ncmp(ouro_float_from(1.0), ouro_float_from(2.0)), -1);
    assert_int_equal(ncmp(ouro_float_from(-INFINITY), ouro_float_from(INFINITY)), -1);
    assert_int_equal(ncmp(OURO_TRUE, ouro_float_from(0.5)), 1);
    assert_int_equal(ncmp(OURO_FALSE, OURO_TRUE), -1);
    number_check_baseline(b0);
}

/* ---- float arithmetic, value, truth ----------------------------------------------------------------------------- */
static void test_float_ops(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    ouro_object *x = ouro_float_from(1.5), *y = ouro_float_from(0.25), *i3 = ouro_int_from(3), *z = ouro_float_from(0.0);
    assert_true(fval(ouro_float_add(x, y)) == 1.75);
    assert_true(fval(ouro_float_sub(x, y)) == 1.25);
    assert_true(fval(ouro_float_mul(x, y)) == 0.375);
    assert_true(fval(ouro_float_truediv(x, y)) == 6.0);
    assert_true(fval(ouro_float_add(x, i3)) == 4.5); /* mixed: the int is converted */
    assert_true(fval(ouro_float_mul(i3, OURO_TRUE)) == 3.0);
    assert_true(fval(ouro_float_truediv(i3, OURO_TRUE)) == 3.0);
    ouro_object *two = ouro_int_from(2);
    assert_true(fval(ouro_float_truediv(i3, two)) == 1.5); /* int / int is a float */
    ouro_decref(two);
    ouro_object *inf = ouro_float_from(INFINITY);
    assert_true(isinf(fval(ouro_float_add(inf, x))));
    assert_true(isnan(fval(ouro_float_sub(inf, inf))));
    ouro_decref(inf);
    ouro_err_clear();
    assert_null(ouro_float_truediv(x, z));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_VALUE);
    ouro_err_clear();
    assert_null(ouro_float_truediv(z, z));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_VALUE);
    ouro_err_clear();
    assert_null(ouro_float_truediv(x, OURO_FALSE));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_VALUE);
    ouro_err_clear();
    double d = 0;
    assert_int_equal(ouro_float_value(i3, &d), 0);
    assert_true(d == 3.0);
    ouro_object *big = ouro_int_from((INT64_C(1) << 53) + 1);
    assert_int_equal(ouro_float_value(big, &d), 0);
    assert_true(d == 9007199254740992.0); /* rounded to nearest (even) */
    ouro_decref(big);
    assert_int_equal(ouro_float_value(OURO_TRUE, &d), 0);
    assert_true(d == 1.0);
    /* truth */
    ouro_object *nz = ouro_float_from(-0.0), *nan = ouro_float_from(NAN), *zero = ouro_int_from(0), *m = ouro_int_from(-9);
    assert_int_equal(ouro_is_true(z), 0);
    assert_int_equal(ouro_is_true(nz), 0);
    assert_int_equal(ouro_is_true(nan), 1);
    assert_int_equal(ouro_is_true(x), 1);
    assert_int_equal(ouro_is_true(zero), 0);
    assert_int_equal(ouro_is_true(m), 1);
    ouro_decref(nz);
    ouro_decref(nan);
    ouro_decref(m);
    ouro_decref(x);
    ouro_decref(y);
    ouro_decref(i3);
    ouro_decref(z);
    number_check_baseline(b0);
}

/* ---- float repr --------------------------------------------------------------------------------------------------- */
static void frepr(double v, const char *want) {
    ouro_object *o = ouro_float_from(v);
    check_repr(o, want);
    ouro_object *r = ouro_repr(o);
    assert_true(strtod(ouro_str_utf8(r, NULL), NULL) == v || isnan(v)); /* round-trips */
    ouro_decref(r);
    ouro_decref(o);
}

static void test_float_repr(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    /* Python's repr() of each */
    frepr(1.0, "1.0");
    frepr(0.0, "0.0");
    frepr(-0.0, "-0.0");
    frepr(0.1, "0.1");
    frepr(0.1 + 0.2, "0.30000000000000004");
    frepr(1.0 / 3.0, "0.3333333333333333");
    frepr(2.0 / 3.0, "0.6666666666666666");
    frepr(-2.5, "-2.5");
    frepr(100.0, "100.0");
    frepr(123456789.0, "123456789.0");
    frepr(1e15, "1000000000000000.0");
    frepr(1e16, "1e+16");
    frepr(1.5e16, "1.5e+16");
    frepr(1234567890123456.7, "1234567890123456.8");
    frepr(12345678901234567.0, "1.2345678901234568e+16");
    frepr(0.0001, "0.0001");
    frepr(0.00001, "1e-05");
    frepr(0.000123, "0.000123");
    frepr(1.5e-7, "1.5e-07");
    frepr(1e100, "1e+100");
    frepr(1e-100, "1e-100");
    frepr(1.7976931348623157e308, "1.7976931348623157e+308");
    frepr(5e-324, "5e-324");
    frepr(2.2250738585072014e-308, "2.2250738585072014e-308");
    frepr(9007199254740993.0, "9007199254740992.0");
    frepr(3.14159, "3.14159");
    frepr(INFINITY, "inf");
    frepr(-INFINITY, "-inf");
    frepr(NAN, "nan");
    /* powers of two whose nearest 16-digit decimal misses on the narrow side (Python's repr) */
    frepr(ldexp(1.0, -1017), "7.120236347223045e-307");
    frepr(ldexp(1.0, -1007), "7.291122019556398e-304");
    frepr(ldexp(1.0, -957), "8.209073602596753e-289");
    frepr(ldexp(1.0, 1023), "8.98846567431158e+307");
    frepr(ldexp(1.0, 60), "1.152921504606847e+18");
    /* every value read back from its repr, over a spread of magnitudes */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double v;
        uint64_t bits = s;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        ouro_object *o = ouro_float_from(v), *r = ouro_repr(o);
        assert_non_null(r);
        const char *txt = ouro_str_utf8(r, NULL);
        if (strtod(txt, NULL) != v) fprintf(stderr, "repr %s does not read back as %.17g\n", txt, v);
        assert_true(strtod(txt, NULL) == v);
        ouro_decref(r);
        ouro_decref(o);
    }
    number_check_baseline(b0);
}

/* ---- errors -------------------------------------------------------------------------------------------------------- */
static void test_errors(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    ouro_object *one = ouro_int_from(1), *f = ouro_float_from(1.0), *s = ouro_str_from_cstr("1");
    int64_t v;
    double d;
    int cmp;
    ouro_err_clear();
    /* NULL: OURO_ERR_INVALID */
#define EXPECT_ERR(expr, err)                          \
    do {                                               \
        ouro_err_clear();                              \
        assert_true((expr));                           \
        assert_int_equal(ouro_err_occurred(), (err));  \
    } while (0)
    EXPECT_ERR(ouro_int_add(NULL, one) == NULL, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_add(one, NULL) == NULL, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_neg(NULL) == NULL, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_value(NULL, &v) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_value(one, NULL) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_float_value(NULL, &d) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_float_add(NULL, f) == NULL, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_float_truediv(f, NULL) == NULL, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_is_true(NULL) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_compare(one, NULL, &cmp) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_int_compare(one, one, NULL) == -1, OURO_ERR_INVALID);
    EXPECT_ERR(ouro_number_compare(NULL, one, &cmp) == -1, OURO_ERR_INVALID);
    /* wrong types: OURO_ERR_TYPE */
    EXPECT_ERR(ouro_int_add(one, f) == NULL, OURO_ERR_TYPE); /* int functions take no float */
    EXPECT_ERR(ouro_int_mul(s, one) == NULL, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_int_abs(OURO_NONE) == NULL, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_int_value(f, &v) == -1, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_int_value(OURO_NONE, &v) == -1, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_float_value(s, &d) == -1, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_float_sub(f, OURO_NONE) == NULL, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_is_true(s) == -1, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_int_compare(one, f, &cmp) == -1, OURO_ERR_TYPE);
    EXPECT_ERR(ouro_number_compare(one, s, &cmp) == -1, OURO_ERR_TYPE);
    assert_non_null(strstr(ouro_err_message(), "str"));
#undef EXPECT_ERR
    ouro_err_clear();
    assert_false(ouro_is_number(NULL));
    assert_false(ouro_is_number(s));
    assert_false(ouro_is_number(OURO_NONE));
    assert_true(ouro_is_number(OURO_TRUE));
    assert_int_equal(ouro_eq(one, s), 0);
    ouro_decref(one);
    ouro_decref(f);
    ouro_decref(s);
    number_check_baseline(b0);
}

/* ---- many threads make and drop numbers: counts back to baseline ------------------------------------------------- */
enum { NUMBER_THREADS = 4, NUMBER_ROUNDS = 20000 };

static void *number_churn(void *arg) {
    ouro_object *shared_f = arg;
    ouro_object *acc = ouro_int_from(0);
    for (int i = 0; i < NUMBER_ROUNDS; i++) {
        ouro_object *k = ouro_int_from(i), *sum = ouro_int_add(acc, k);
        ouro_decref(k);
        ouro_decref(acc);
        acc = sum;
        ouro_object *g = ouro_float_mul(shared_f, acc);
        ouro_decref(g);
        if (i % 256 == 0) ouro_safepoint();
    }
    int64_t v = 0;
    ouro_int_value(acc, &v);
    ouro_decref(acc);
    return (void *)(intptr_t)(v == (int64_t)NUMBER_ROUNDS * (NUMBER_ROUNDS - 1) / 2);
}

static void test_threads_churn(void **state) {
    (void)state;
    number_baseline b0 = number_stats();
    ouro_object *f = ouro_float_from(0.5);
    pthread_t t[NUMBER_THREADS];
    for (int i = 0; i < NUMBER_THREADS; i++) pthread_create(&t[i], NULL, number_churn, f);
    int ok = 0;
    ouro_offline_begin();
    for (int i = 0; i < NUMBER_THREADS; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        ok += r != NULL;
    }
    ouro_offline_end();
    assert_int_equal(ok, NUMBER_THREADS);
    ouro_decref(f);
    ouro_refcount_merge_queued();
    number_check_baseline(b0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_singletons),
        cmocka_unit_test(test_singleton_repr),
        cmocka_unit_test(test_small_int_cache),
        cmocka_unit_test(test_int_add_sub_mul),
        cmocka_unit_test(test_int_floordiv_mod),
        cmocka_unit_test(test_int_unary_pow_bits),
        cmocka_unit_test(test_int_compare_repr),
        cmocka_unit_test(test_numeric_hash),
        cmocka_unit_test(test_number_compare),
        cmocka_unit_test(test_float_ops),
        cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_threads_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
