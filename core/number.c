/* core/number.c — None, bool, int and float: the immortal singletons and small ints, checked int
 * arithmetic, exact int/float comparison, Python's numeric hash and shortest float repr.
 * docs/objects-number.md has the rules (hash, overflow, repr). */
#include "core/objimpl.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ouro/number.h"
#include "ouro/str.h"

/* An int, and a bool (the same layout: a bool's value is 0 or 1 and every int function reads it). */
struct ouro_int_object {
    ouro_object head;
    int64_t value;
};
typedef struct ouro_int_object int_object;

typedef struct {
    ouro_object head;
    double value;
} float_object;

static int64_t none_hash(ouro_object *self);
static ouro_object *none_repr(ouro_object *self);
static int64_t int_hash(ouro_object *self);
static int number_eq(ouro_object *self, ouro_object *other);
static ouro_object *int_repr(ouro_object *self);
static ouro_object *bool_repr(ouro_object *self);
static int64_t float_hash(ouro_object *self);
static ouro_object *float_repr(ouro_object *self);

ouro_type ouro_none_type = {
    .head = OURO_TYPE_HEAD,
    .name = "NoneType",
    .basic_size = sizeof(ouro_object),
    .hash = none_hash,
    .repr = none_repr, /* eq NULL: by identity */
};

ouro_type ouro_bool_type = {
    .head = OURO_TYPE_HEAD,
    .name = "bool",
    .basic_size = sizeof(int_object),
    .hash = int_hash,
    .eq = number_eq,
    .repr = bool_repr,
};

ouro_type ouro_int_type = {
    .head = OURO_TYPE_HEAD,
    .name = "int",
    .basic_size = sizeof(int_object),
    .hash = int_hash,
    .eq = number_eq,
    .repr = int_repr,
};

ouro_type ouro_float_type = {
    .head = OURO_TYPE_HEAD,
    .name = "float",
    .basic_size = sizeof(float_object),
    .hash = float_hash,
    .eq = number_eq,
    .repr = float_repr,
};

/* The header of a static immortal instance of type t. */
#define NUMBER_STATIC_HEAD(t) {.ref_local = OURO_IMMORTAL_LOCAL, .ref_shared = OURO_SHARED_MERGED, .type = (t)}

ouro_object ouro_None_object = NUMBER_STATIC_HEAD(&ouro_none_type);
int_object ouro_False_object = {.head = NUMBER_STATIC_HEAD(&ouro_bool_type), .value = 0};
int_object ouro_True_object = {.head = NUMBER_STATIC_HEAD(&ouro_bool_type), .value = 1};

/* The small ints, OURO_SMALL_INT_MIN..OURO_SMALL_INT_MAX, immortal and shared by every thread. */
#define SMALL_INT(v) {.head = NUMBER_STATIC_HEAD(&ouro_int_type), .value = (v)}
#define SMALL_INT4(v) SMALL_INT(v), SMALL_INT((v) + 1), SMALL_INT((v) + 2), SMALL_INT((v) + 3)
#define SMALL_INT16(v) SMALL_INT4(v), SMALL_INT4((v) + 4), SMALL_INT4((v) + 8), SMALL_INT4((v) + 12)
#define SMALL_INT64(v) SMALL_INT16(v), SMALL_INT16((v) + 16), SMALL_INT16((v) + 32), SMALL_INT16((v) + 48)
#define SMALL_INT256(v) SMALL_INT64(v), SMALL_INT64((v) + 64), SMALL_INT64((v) + 128), SMALL_INT64((v) + 192)

static int_object small_ints[] = {SMALL_INT256(-5), SMALL_INT4(251), SMALL_INT(255), SMALL_INT(256)};
_Static_assert(sizeof small_ints / sizeof small_ints[0] == OURO_SMALL_INT_MAX - OURO_SMALL_INT_MIN + 1,
               "the small-int table covers OURO_SMALL_INT_MIN..OURO_SMALL_INT_MAX");

/* ---- type checks ------------------------------------------------------------------------------------- */

static inline bool is_intlike(const ouro_object *o) { return o->type == &ouro_int_type || o->type == &ouro_bool_type; }

int ouro_is_number(const ouro_object *o) {
    return o && (is_intlike(o) || o->type == &ouro_float_type);
}

/* NULL check of an operand: sets OURO_ERR_INVALID. */
static bool number_null(const char *fn, const ouro_object *a, const ouro_object *b) {
    if (a && b) return false;
    _ouro_err_set(OURO_ERR_INVALID, "%s: operand is NULL", fn);
    return true;
}

/* The values of two int/bool operands; false with an error. */
static bool int_operands(const char *fn, ouro_object *a, ouro_object *b, int64_t *x, int64_t *y) {
    if (number_null(fn, a, b)) return false;
    if (!is_intlike(a)) return _ouro_err_type_int(fn, "an int", a), false;
    if (!is_intlike(b)) return _ouro_err_type_int(fn, "an int", b), false;
    *x = ((int_object *)a)->value;
    *y = ((int_object *)b)->value;
    return true;
}

static bool int_operand(const char *fn, ouro_object *a, int64_t *x) {
    return int_operands(fn, a, a, x, x);
}

/* The value of a number as a double (an int rounded to nearest). */
static inline double number_as_double(const ouro_object *o) {
    return o->type == &ouro_float_type ? ((const float_object *)o)->value : (double)((const int_object *)o)->value;
}

static bool float_operands(const char *fn, ouro_object *a, ouro_object *b, double *x, double *y) {
    if (number_null(fn, a, b)) return false;
    if (!ouro_is_number(a)) return _ouro_err_type_int(fn, "a number", a), false;
    if (!ouro_is_number(b)) return _ouro_err_type_int(fn, "a number", b), false;
    *x = number_as_double(a);
    *y = number_as_double(b);
    return true;
}

/* ---- None and bool ----------------------------------------------------------------------------------- */

/* A fixed hash (CPython 3.12's constant): None's hash does not depend on where it lives. */
static int64_t none_hash(ouro_object *self) {
    (void)self;
    return 0xFCA86420;
}

static ouro_object *none_repr(ouro_object *self) {
    (void)self;
    return ouro_str_from_cstr("None");
}

static ouro_object *bool_repr(ouro_object *self) {
    return ouro_str_from_cstr(((int_object *)self)->value ? "True" : "False");
}

ouro_object *ouro_bool_from(int v) { return v ? OURO_TRUE : OURO_FALSE; }

int ouro_is_true(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_is_true: object is NULL");
        return -1;
    }
    if (o == OURO_NONE) return 0;
    if (is_intlike(o)) return ((int_object *)o)->value != 0;
    if (o->type == &ouro_float_type) return ((float_object *)o)->value != 0.0; /* NaN != 0.0: true */
    return _ouro_err_type_int("ouro_is_true", "None, a bool, an int or a float", o);
}

/* ---- int --------------------------------------------------------------------------------------------- */

ouro_object *ouro_int_from(int64_t v) {
    if (v >= OURO_SMALL_INT_MIN && v <= OURO_SMALL_INT_MAX) return &small_ints[v - OURO_SMALL_INT_MIN].head;
    int_object *o = (int_object *)ouro_new(&ouro_int_type);
    if (!o) return NULL;
    o->value = v;
    return &o->head;
}

int ouro_int_value(ouro_object *o, int64_t *out) {
    if (!o || !out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_int_value: %s is NULL", !o ? "object" : "out");
        return -1;
    }
    if (!is_intlike(o)) return _ouro_err_type_int("ouro_int_value", "an int", o);
    *out = ((int_object *)o)->value;
    return 0;
}

static ouro_object *int_overflow(const char *fn) {
    _ouro_err_set(OURO_ERR_OVERFLOW, "%s: the result does not fit in 64 bits", fn);
    return NULL;
}

static ouro_object *int_zero_division(const char *fn) {
    _ouro_err_set(OURO_ERR_VALUE, "%s: integer division or modulo by zero", fn);
    return NULL;
}

ouro_object *ouro_int_add(ouro_object *a, ouro_object *b) {
    int64_t x, y, r;
    if (!int_operands("ouro_int_add", a, b, &x, &y)) return NULL;
    if (__builtin_add_overflow(x, y, &r)) return int_overflow("ouro_int_add");
    return ouro_int_from(r);
}

ouro_object *ouro_int_sub(ouro_object *a, ouro_object *b) {
    int64_t x, y, r;
    if (!int_operands("ouro_int_sub", a, b, &x, &y)) return NULL;
    if (__builtin_sub_overflow(x, y, &r)) return int_overflow("ouro_int_sub");
    return ouro_int_from(r);
}

ouro_object *ouro_int_mul(ouro_object *a, ouro_object *b) {
    int64_t x, y, r;
    if (!int_operands("ouro_int_mul", a, b, &x, &y)) return NULL;
    if (__builtin_mul_overflow(x, y, &r)) return int_overflow("ouro_int_mul");
    return ouro_int_from(r);
}

/* C division truncates toward zero; floor division rounds down: one less when the remainder is not 0
 * and the operands' signs differ. The caller excludes y == 0 and INT64_MIN / -1. */
static int64_t int_floor_div(int64_t x, int64_t y) {
    int64_t q = x / y;
    if (x % y != 0 && ((x < 0) != (y < 0))) q--;
    return q;
}

/* The remainder with the divisor's sign. y == -1 is answered first: INT64_MIN % -1 traps in C. */
static int64_t int_floor_mod(int64_t x, int64_t y) {
    if (y == -1) return 0;
    int64_t r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
}

ouro_object *ouro_int_floordiv(ouro_object *a, ouro_object *b) {
    int64_t x, y;
    if (!int_operands("ouro_int_floordiv", a, b, &x, &y)) return NULL;
    if (y == 0) return int_zero_division("ouro_int_floordiv");
    if (x == INT64_MIN && y == -1) return int_overflow("ouro_int_floordiv");
    return ouro_int_from(int_floor_div(x, y));
}

ouro_object *ouro_int_mod(ouro_object *a, ouro_object *b) {
    int64_t x, y;
    if (!int_operands("ouro_int_mod", a, b, &x, &y)) return NULL;
    if (y == 0) return int_zero_division("ouro_int_mod");
    return ouro_int_from(int_floor_mod(x, y));
}

ouro_object *ouro_int_pow(ouro_object *a, ouro_object *b) {
    int64_t base, e;
    if (!int_operands("ouro_int_pow", a, b, &base, &e)) return NULL;
    if (e < 0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_int_pow: negative exponent %" PRId64 " (the result is not an int)", e);
        return NULL;
    }
    /* Square and multiply; the square is only needed (and only checked) while bits of e remain, so
     * e.g. (-2) ** 63 == INT64_MIN does not fail on a square it never uses. */
    int64_t result = 1;
    for (;;) {
        if ((e & 1) && __builtin_mul_overflow(result, base, &result)) return int_overflow("ouro_int_pow");
        e >>= 1;
        if (!e) break;
        if (__builtin_mul_overflow(base, base, &base)) return int_overflow("ouro_int_pow");
    }
    return ouro_int_from(result);
}

ouro_object *ouro_int_neg(ouro_object *a) {
    int64_t x;
    if (!int_operand("ouro_int_neg", a, &x)) return NULL;
    if (x == INT64_MIN) return int_overflow("ouro_int_neg");
    return ouro_int_from(-x);
}

ouro_object *ouro_int_abs(ouro_object *a) {
    int64_t x;
    if (!int_operand("ouro_int_abs", a, &x)) return NULL;
    if (x == INT64_MIN) return int_overflow("ouro_int_abs");
    return ouro_int_from(x < 0 ? -x : x);
}

ouro_object *ouro_int_and(ouro_object *a, ouro_object *b) {
    int64_t x, y;
    if (!int_operands("ouro_int_and", a, b, &x, &y)) return NULL;
    return ouro_int_from(x & y);
}

ouro_object *ouro_int_or(ouro_object *a, ouro_object *b) {
    int64_t x, y;
    if (!int_operands("ouro_int_or", a, b, &x, &y)) return NULL;
    return ouro_int_from(x | y);
}

ouro_object *ouro_int_xor(ouro_object *a, ouro_object *b) {
    int64_t x, y;
    if (!int_operands("ouro_int_xor", a, b, &x, &y)) return NULL;
    return ouro_int_from(x ^ y);
}

ouro_object *ouro_int_invert(ouro_object *a) {
    int64_t x;
    if (!int_operand("ouro_int_invert", a, &x)) return NULL;
    return ouro_int_from(~x);
}

static ouro_object *int_negative_shift(const char *fn) {
    _ouro_err_set(OURO_ERR_VALUE, "%s: negative shift count", fn);
    return NULL;
}

ouro_object *ouro_int_lshift(ouro_object *a, ouro_object *b) {
    int64_t x, n;
    if (!int_operands("ouro_int_lshift", a, b, &x, &n)) return NULL;
    if (n < 0) return int_negative_shift("ouro_int_lshift");
    if (x == 0) return ouro_int_from(0);
    if (n >= 64) return int_overflow("ouro_int_lshift");
    /* x << n fits when x lies in [INT64_MIN >> n, INT64_MAX >> n] ([-1, 0] for n == 63). */
    if (x > (INT64_MAX >> n) || x < ~(INT64_MAX >> n)) return int_overflow("ouro_int_lshift");
    return ouro_int_from((int64_t)((uint64_t)x << n));
}

ouro_object *ouro_int_rshift(ouro_object *a, ouro_object *b) {
    int64_t x, n;
    if (!int_operands("ouro_int_rshift", a, b, &x, &n)) return NULL;
    if (n < 0) return int_negative_shift("ouro_int_rshift");
    if (n >= 63) return ouro_int_from(x < 0 ? -1 : 0);
    /* Floor of x / 2^n without relying on the implementation-defined shift of a negative value. */
    int64_t r = x >= 0 ? x >> n : ~(~x >> n);
    return ouro_int_from(r);
}

int ouro_int_compare(ouro_object *a, ouro_object *b, int *cmp) {
    int64_t x, y;
    if (!cmp) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_int_compare: cmp is NULL");
        return -1;
    }
    if (!int_operands("ouro_int_compare", a, b, &x, &y)) return -1;
    *cmp = (x > y) - (x < y);
    return 0;
}

static ouro_object *int_repr(ouro_object *self) {
    return ouro_str_from_format("%" PRId64, ((int_object *)self)->value);
}

/* ---- the numeric hash ----------------------------------------------------------------------------------
 * Python's rule: a number's hash is its value modulo the prime P = 2^61 - 1, with the sign of the value
 * (hash(-x) == -hash(x)), and -1 (reserved for errors) replaced by -2. Rationals reduce the same way, so
 * equal numbers of different types hash equal. 2^61 == 1 (mod P), which makes multiplying by 2^k a
 * rotation of the 61-bit residue by k bits. */
#define HASH_BITS 61
#define HASH_MODULUS (((uint64_t)1 << HASH_BITS) - 1)
#define HASH_INF 314159

static int64_t hash_fix(int64_t h) { return h == -1 ? -2 : h; }

static int64_t hash_int64(int64_t v) {
    /* |INT64_MIN| = 2^63 is representable in uint64_t. */
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    int64_t r = (int64_t)(mag % HASH_MODULUS);
    return hash_fix(v < 0 ? -r : r);
}

/* Rotates the 61-bit residue x left by k bits: x * 2^k mod P (0 <= k < 61). */
static uint64_t hash_rotate(uint64_t x, int k) {
    if (k == 0) return x;
    return ((x << k) & HASH_MODULUS) | (x >> (HASH_BITS - k));
}

int64_t ouro_hash_double(double v) {
    if (isinf(v)) return v > 0 ? HASH_INF : -HASH_INF;
    if (isnan(v)) return 0;
    int e;
    double m = frexp(v, &e); /* v = m * 2^e, 0.5 <= |m| < 1 */
    int sign = 1;
    if (m < 0) {
        sign = -1;
        m = -m;
    }
    /* Consume the mantissa 28 bits at a time (53 bits: two steps): x = x * 2^28 + next 28 bits, each
     * step exact in double and the sum kept below P; e counts the bits moved left of the point. */
    uint64_t x = 0;
    while (m != 0.0) {
        x = hash_rotate(x, 28);
        m *= 268435456.0; /* 2^28 */
        e -= 28;
        uint64_t y = (uint64_t)m;
        m -= (double)y;
        x += y;
        if (x >= HASH_MODULUS) x -= HASH_MODULUS;
    }
    /* v = x * 2^e now: multiply by 2^e mod P, e reduced modulo 61 (2^-1 == 2^60 mod P). */
    int k = e >= 0 ? e % HASH_BITS : HASH_BITS - 1 - ((-1 - e) % HASH_BITS);
    x = hash_rotate(x, k);
    return hash_fix(sign * (int64_t)x);
}

static int64_t int_hash(ouro_object *self) { return hash_int64(((int_object *)self)->value); }

static int64_t float_hash(ouro_object *self) {
    double v = ((float_object *)self)->value;
    /* A NaN is equal to nothing (but itself): its identity keeps distinct NaNs apart in a table. */
    if (isnan(v)) return ouro_hash_pointer(self);
    return ouro_hash_double(v);
}

/* ---- comparison ------------------------------------------------------------------------------------------ */

/* Compares int x with double d exactly: -1, 0, 1, or OURO_UNORDERED (NaN). Rounding x to a double
 * would call 2^53 + 1 equal to 2.0^53; instead d is split into its integral part (exact as an int64
 * when |d| < 2^63) and its fraction. */
static int compare_int_double(int64_t x, double d) {
    if (isnan(d)) return OURO_UNORDERED;
    if (d >= 9223372036854775808.0) return -1; /* 2^63 and above, +inf */
    if (d < -9223372036854775808.0) return 1;  /* below -2^63, -inf */
    double whole = trunc(d);
    int64_t t = (int64_t)whole;
    if (x != t) return x < t ? -1 : 1;
    double frac = d - whole; /* exact */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int compare_numbers(const ouro_object *a, const ouro_object *b) {
    bool ai = is_intlike(a), bi = is_intlike(b);
    if (ai && bi) {
        int64_t x = ((const int_object *)a)->value, y = ((const int_object *)b)->value;
        return (x > y) - (x < y);
    }
    if (ai) return compare_int_double(((const int_object *)a)->value, ((const float_object *)b)->value);
    if (bi) {
        int r = compare_int_double(((const int_object *)b)->value, ((const float_object *)a)->value);
        return r == OURO_UNORDERED ? r : -r;
    }
    double x = ((const float_object *)a)->value, y = ((const float_object *)b)->value;
    if (isnan(x) || isnan(y)) return OURO_UNORDERED;
    return (x > y) - (x < y);
}

int ouro_number_compare(ouro_object *a, ouro_object *b, int *cmp) {
    if (!cmp) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_number_compare: cmp is NULL");
        return -1;
    }
    if (number_null("ouro_number_compare", a, b)) return -1;
    if (!ouro_is_number(a)) return _ouro_err_type_int("ouro_number_compare", "a number", a);
    if (!ouro_is_number(b)) return _ouro_err_type_int("ouro_number_compare", "a number", b);
    *cmp = compare_numbers(a, b);
    return 0;
}

/* The eq of int, bool and float: equal by value across the three types, never equal to anything else. */
static int number_eq(ouro_object *self, ouro_object *other) {
    if (!ouro_is_number(other)) return 0;
    return compare_numbers(self, other) == 0;
}

/* ---- float ----------------------------------------------------------------------------------------------- */

ouro_object *ouro_float_from(double v) {
    float_object *o = (float_object *)ouro_new(&ouro_float_type);
    if (!o) return NULL;
    o->value = v;
    return &o->head;
}

int ouro_float_value(ouro_object *o, double *out) {
    if (!o || !out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_float_value: %s is NULL", !o ? "object" : "out");
        return -1;
    }
    if (!ouro_is_number(o)) return _ouro_err_type_int("ouro_float_value", "a number", o);
    *out = number_as_double(o);
    return 0;
}

ouro_object *ouro_float_add(ouro_object *a, ouro_object *b) {
    double x, y;
    if (!float_operands("ouro_float_add", a, b, &x, &y)) return NULL;
    return ouro_float_from(x + y);
}

ouro_object *ouro_float_sub(ouro_object *a, ouro_object *b) {
    double x, y;
    if (!float_operands("ouro_float_sub", a, b, &x, &y)) return NULL;
    return ouro_float_from(x - y);
}

ouro_object *ouro_float_mul(ouro_object *a, ouro_object *b) {
    double x, y;
    if (!float_operands("ouro_float_mul", a, b, &x, &y)) return NULL;
    return ouro_float_from(x * y);
}

ouro_object *ouro_float_truediv(ouro_object *a, ouro_object *b) {
    double x, y;
    if (!float_operands("ouro_float_truediv", a, b, &x, &y)) return NULL;
    if (y == 0.0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_float_truediv: division by zero");
        return NULL;
    }
    return ouro_float_from(x / y);
}

/* ---- float repr ------------------------------------------------------------------------------------------
 * Python's repr: the shortest decimal that reads back as the same double, laid out in positional
 * notation when its decimal point falls within 16 digits of the start (-4 < decpt <= 16: "0.0001",
 * "1e+16" and "1e-05" are the edges), else as d.ddde+XX (at least two exponent digits). Positional
 * output always shows a fraction ("1.0"). The digits: the correctly rounded %.*e at 1, 2, ... 17
 * significant digits, the first that strtod reads back exactly (17 always does). */
enum { FLOAT_REPR_MAX = 32 };

/* Parses "d[.ddd]e[+-]XX" into its digits (NUL-terminated) and exponent; returns the digit count. */
static int float_parse_e(const char *buf, char digits[static 18], int *exp10) {
    int n = 0;
    const char *p = buf;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[n++] = *p;
    digits[n] = '\0';
    *exp10 = (int)strtol(p + 1, NULL, 10);
    return n;
}

/* The double that digits (n of them) times 10^(exp10 - n + 1) reads as. */
static double float_read_digits(const char *digits, int n, int exp10) {
    char buf[FLOAT_REPR_MAX];
    snprintf(buf, sizeof buf, "%c.%se%d", digits[0], n > 1 ? digits + 1 : "0", exp10);
    return strtod(buf, NULL);
}

/* The shortest round-trip digits of finite v > 0 (NUL-terminated, no trailing zeros) and the decimal
 * exponent of the first one. Returns the digit count. At each length the candidate is the correctly
 * rounded one; when it reads back below v, the next p-digit decimal up is tried too: at a power of two
 * the doubles below are twice as close as those above, so the nearest p-digit decimal can miss v's
 * rounding interval on the narrow side while the next one up is inside it on the wide side. */
static int float_shortest_digits(double v, char digits[static 18], int *exp10) {
    char buf[FLOAT_REPR_MAX];
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        n = float_parse_e(buf, digits, exp10);
        double back = strtod(buf, NULL);
        if (back == v || prec == 17) break;
        if (back < v) {
            char up[18];
            int e = *exp10, i = n - 1;
            memcpy(up, digits, (size_t)n + 1);
            while (i >= 0 && up[i] == '9') up[i--] = '0';
            if (i >= 0) {
                up[i]++;
            } else { /* 99..9 + 1 = 100..0 */
                up[0] = '1';
                e++;
            }
            if (float_read_digits(up, n, e) == v) {
                memcpy(digits, up, (size_t)n + 1);
                *exp10 = e;
                break;
            }
        }
    }
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    return n;
}

/* Writes Python's repr of v into out (at least FLOAT_REPR_MAX bytes). */
static void float_format_repr(double v, char *out) {
    if (isnan(v)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "inf" : "-inf");
        return;
    }
    char *w = out;
    if (signbit(v)) {
        *w++ = '-';
        v = -v;
    }
    if (v == 0.0) {
        strcpy(w, "0.0");
        return;
    }
    char digits[18];
    int exp10;
    int n = float_shortest_digits(v, digits, &exp10);
    int decpt = exp10 + 1; /* digits before the decimal point */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            w += sprintf(w, "0.");
            for (int i = 0; i < -decpt; i++) *w++ = '0';
            strcpy(w, digits);
        } else if (decpt >= n) {
            memcpy(w, digits, (size_t)n);
            w += n;
            for (int i = n; i < decpt; i++) *w++ = '0';
            strcpy(w, ".0");
        } else {
            memcpy(w, digits, (size_t)decpt);
            w += decpt;
            *w++ = '.';
            strcpy(w, digits + decpt);
        }
    } else {
        *w++ = digits[0];
        if (n > 1) {
            *w++ = '.';
            memcpy(w, digits + 1, (size_t)n - 1);
            w += n - 1;
        }
        sprintf(w, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static ouro_object *float_repr(ouro_object *self) {
    char buf[FLOAT_REPR_MAX];
    float_format_repr(((float_object *)self)->value, buf);
    return ouro_str_from_cstr(buf);
}
