/* ouro/number.h — None, bool, int (64-bit signed) and float (IEEE double).
 *
 * None, True and False are static immortal objects (never counted, never freed); so are the small
 * ints -5..256, which ouro_int_from() returns without allocating. Every other int and float is a new
 * immutable object. Functions that return an object return a new reference (for the immortal ones the
 * reference is not counted, so dropping it is harmless either way).
 *
 * The numeric tower (docs/objects-number.md): bool is an int (True == 1, False == 0) and every int
 * function accepts it; float functions accept int and bool operands and convert them. Numbers that
 * compare equal hash equal across the three types (Python's numeric hash: the value modulo 2^61 - 1),
 * so hash(1) == hash(1.0) == hash(True). int arithmetic is checked: a result outside int64_t is NULL
 * with OURO_ERR_OVERFLOW (ouro has no big ints); division by zero is OURO_ERR_VALUE. Errors: NULL /
 * -1 with OURO_ERR_INVALID for a NULL argument, OURO_ERR_TYPE for an object of the wrong type. */
#ifndef OURO_NUMBER_H
#define OURO_NUMBER_H

#include <stdint.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

extern ouro_type ouro_none_type;  /* "NoneType" */
extern ouro_type ouro_bool_type;  /* "bool" */
extern ouro_type ouro_int_type;   /* "int" */
extern ouro_type ouro_float_type; /* "float" */

/* The singletons. Their storage is ouro's (an int's layout for the two bools); use the macros. */
struct ouro_int_object;
extern ouro_object ouro_None_object;
extern struct ouro_int_object ouro_True_object, ouro_False_object;

#define OURO_NONE (&ouro_None_object)
#define OURO_TRUE ((ouro_object *)&ouro_True_object)
#define OURO_FALSE ((ouro_object *)&ouro_False_object)
/* CPython's spelling of the same pointers. */
#define ouro_None OURO_NONE
#define ouro_True OURO_TRUE
#define ouro_False OURO_FALSE

/* The smallest and largest int that ouro_int_from() returns from the immortal cache. */
#define OURO_SMALL_INT_MIN (-5)
#define OURO_SMALL_INT_MAX 256

/* ---- None and bool ---------------------------------------------------------------------------------- */

/* OURO_TRUE when v is not 0, else OURO_FALSE. */
ouro_object *ouro_bool_from(int v);

/* Truthiness: None is false; a bool is itself; an int is true unless 0; a float is true unless 0.0 or
 * -0.0 (NaN is true, as in Python). 1 true, 0 false, or -1 with OURO_ERR_TYPE for any other type
 * (containers decide their own truth; ouro has no generic rule) or OURO_ERR_INVALID for NULL. */
int ouro_is_true(ouro_object *o);

/* ---- int ------------------------------------------------------------------------------------------------ */

/* A new int of value v: the immortal cached object for -5..256 (the same pointer every time), else a
 * new object. NULL with OURO_ERR_NOMEM. */
ouro_object *ouro_int_from(int64_t v);

/* Stores the value of int or bool o in *out. 0, or -1 with OURO_ERR_TYPE (another type) or
 * OURO_ERR_INVALID (o or out NULL). */
int ouro_int_value(ouro_object *o, int64_t *out);

/* Checked arithmetic on ints and bools: a new int, or NULL with OURO_ERR_OVERFLOW when the exact result
 * is outside int64_t, OURO_ERR_VALUE for a zero divisor (and the other domain errors named below),
 * OURO_ERR_TYPE / OURO_ERR_INVALID for bad operands. */
ouro_object *ouro_int_add(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_sub(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_mul(ouro_object *a, ouro_object *b);
/* Floor division (rounds toward negative infinity): -7 // 2 == -4. INT64_MIN // -1 overflows. */
ouro_object *ouro_int_floordiv(ouro_object *a, ouro_object *b);
/* The remainder of floor division: its sign is the divisor's (-7 % 2 == 1, 7 % -2 == -1), and
 * a == (a // b) * b + a % b. */
ouro_object *ouro_int_mod(ouro_object *a, ouro_object *b);
/* a ** b for b >= 0 (0 ** 0 == 1); a negative exponent is OURO_ERR_VALUE (its result is not an int). */
ouro_object *ouro_int_pow(ouro_object *a, ouro_object *b);
/* -a and |a| (both overflow for INT64_MIN). */
ouro_object *ouro_int_neg(ouro_object *a);
ouro_object *ouro_int_abs(ouro_object *a);
/* Bitwise operations on the two's complement value (never overflow), ~a == -a - 1. */
ouro_object *ouro_int_and(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_or(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_xor(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_invert(ouro_object *a);
/* a << b (overflow when bits would be lost) and a >> b (arithmetic: rounds toward negative infinity,
 * any b >= 0). A negative shift count is OURO_ERR_VALUE. */
ouro_object *ouro_int_lshift(ouro_object *a, ouro_object *b);
ouro_object *ouro_int_rshift(ouro_object *a, ouro_object *b);

/* Three-way comparison of two ints or bools: *cmp = -1, 0 or 1 (a < b, ==, >). 0, or -1 with an error. */
int ouro_int_compare(ouro_object *a, ouro_object *b, int *cmp);

/* ---- float ---------------------------------------------------------------------------------------------- */

/* A new float of value v. NULL with OURO_ERR_NOMEM. */
ouro_object *ouro_float_from(double v);

/* Stores the value of float o in *out, converting an int or bool (rounded to the nearest double). 0, or
 * -1 with OURO_ERR_TYPE / OURO_ERR_INVALID. */
int ouro_float_value(ouro_object *o, double *out);

/* IEEE arithmetic on any two numbers (ints and bools are converted first): a new float, or NULL with
 * OURO_ERR_VALUE for a division by zero (Python's ZeroDivisionError, also 0.0 / 0.0),
 * OURO_ERR_TYPE / OURO_ERR_INVALID for bad operands. Infinities and NaNs propagate otherwise. */
ouro_object *ouro_float_add(ouro_object *a, ouro_object *b);
ouro_object *ouro_float_sub(ouro_object *a, ouro_object *b);
ouro_object *ouro_float_mul(ouro_object *a, ouro_object *b);
ouro_object *ouro_float_truediv(ouro_object *a, ouro_object *b);

/* The result of a comparison involving a NaN. */
#define OURO_UNORDERED 2

/* Three-way comparison of any two numbers (int, bool, float, mixed), exact: an int is compared with a
 * float by value, without rounding the int (2**53 + 1 > 2.0**53). *cmp = -1, 0, 1, or OURO_UNORDERED
 * when either is a NaN. 0, or -1 with an error. */
int ouro_number_compare(ouro_object *a, ouro_object *b, int *cmp);

/* 1 when o is an int, bool or float (NULL tolerated: 0). */
int ouro_is_number(const ouro_object *o);

/* Python's hash of a double: the value modulo 2^61 - 1 with its sign (equal to the int's hash for an
 * integral value), +-314159 for infinities. A NaN has no value hash: this returns 0 for it and the
 * float object's hash uses its identity instead (Python 3.10+). Never -1. */
int64_t ouro_hash_double(double v);

#ifdef __cplusplus
}
#endif
#endif /* OURO_NUMBER_H */
