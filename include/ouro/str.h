/* ouro/str.h — str (immutable UTF-8 text) and bytes, keyed hashing, interning, repr.
 *
 * A str holds validated UTF-8 (RFC 3629: no surrogates, no overlongs, nothing above U+10FFFF; NUL is
 * allowed), NUL-terminated for C callers, with its length in bytes and in code points and a cached
 * hash. A bytes holds any bytes (NUL-terminated too). Both are immutable: any thread may read them
 * without a lock. The empty str and the empty bytes are immortal singletons. docs/objects-str.md.
 *
 * Conventions (ouro/error.h): objects come back as NEW references (the caller decrefs them), or NULL
 * with the thread's error set; arguments are borrowed, never stolen. Every function checks its
 * arguments: NULL -> OURO_ERR_INVALID, an object of another type -> OURO_ERR_TYPE. Sizes and indices
 * are ptrdiff_t (no str or bytes is longer than PTRDIFF_MAX bytes): -1 is the error return where no
 * valid result is negative; where -1 is a valid result (find, compare) the error return is -2. */
#ifndef OURO_STR_H
#define OURO_STR_H

#include <stddef.h>
#include <stdint.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- keyed hashing ---------------------------------------------------------------------------------- *
 * str and bytes hash with SipHash-1-3 under a 128-bit key chosen per process at the first hash: random
 * (getrandom) unless the environment variable OURO_HASH_SEED holds a decimal number (0..2^64-1), from
 * which a fixed key is derived (like PYTHONHASHSEED; "random" or unset: random). */

/* Fixes the process key to the one derived from seed (as OURO_HASH_SEED=seed would; it overrides the
 * variable). Allowed only before the first hash of the process: 0, or -1 with OURO_ERR_STATE once a
 * str/bytes hash (or ouro_hash_bytes) was computed. */
int ouro_hash_set_seed(uint64_t seed);

/* The keyed hash of n bytes at p under the process key: the hash of a str or bytes of those bytes.
 * Never -1 (a -1 becomes -2). p may be NULL when n is 0; NULL with n > 0 sets OURO_ERR_INVALID and
 * returns 0. */
int64_t ouro_hash_bytes(const void *p, size_t n);

/* SipHash-1-3 of n bytes at p under an explicit 16-byte key (k0 then k1, each little-endian; NULL: the
 * zero key): the raw 64-bit output, for callers with their own key. p NULL with n > 0 sets
 * OURO_ERR_INVALID and hashes the empty message. */
uint64_t ouro_siphash13(const void *key, const void *p, size_t n);

/* ---- str ---------------------------------------------------------------------------------------------- */

extern ouro_type ouro_str_type;

/* A new str from n bytes of UTF-8 at s (n == 0: the empty str, an immortal singleton). NULL with
 * OURO_ERR_VALUE (invalid UTF-8, with the offset in the message), OURO_ERR_INVALID (s NULL with n > 0),
 * OURO_ERR_OVERFLOW (n > PTRDIFF_MAX - 1) or OURO_ERR_NOMEM. */
ouro_object *ouro_str_from_utf8(const char *s, size_t n);

/* A new str from a NUL-terminated UTF-8 string (OURO_ERR_INVALID for NULL). */
ouro_object *ouro_str_from_cstr(const char *s);

/* A new str from printf-style arguments (OURO_ERR_VALUE when the result is not valid UTF-8). */
ouro_object *ouro_str_from_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The UTF-8 bytes of str s (NUL-terminated, valid as long as s is) and, when len is not NULL, their
 * count. NULL with OURO_ERR_TYPE / OURO_ERR_INVALID when s is not a str. */
const char *ouro_str_utf8(ouro_object *s, size_t *len);

/* The number of code points of s; -1 with an error when s is not a str. */
ptrdiff_t ouro_str_len(ouro_object *s);

/* The number of UTF-8 bytes of s (without the terminating NUL); -1 with an error when s is not a str. */
ptrdiff_t ouro_str_size(ouro_object *s);

/* A new str a + b (a new reference to a or b when the other is empty). NULL with an error for a
 * non-str, OURO_ERR_OVERFLOW or OURO_ERR_NOMEM. */
ouro_object *ouro_str_concat(ouro_object *a, ouro_object *b);

/* A new str of the code points start..stop-1 of s, with Python's slice semantics (s[start:stop]): a
 * negative index counts from the end (len + index), then both are clamped to 0..len; stop <= start gives
 * the empty str. A new reference to s when the slice is all of it. NULL with an error. */
ouro_object *ouro_str_slice(ouro_object *s, ptrdiff_t start, ptrdiff_t stop);

/* Orders a and b by code point (for UTF-8 that is bytewise order, then length): -1 (a < b), 0 (equal)
 * or 1 (a > b). -2 with an error when either is not a str. */
int ouro_str_compare(ouro_object *a, ouro_object *b);

/* 1 when the UTF-8 bytes of s equal the NUL-terminated cstr, 0 when not; -1 with an error (s not a
 * str, cstr NULL). A str holding an embedded NUL never equals a C string. */
int ouro_str_eq_cstr(ouro_object *s, const char *cstr);

/* The code point index of the first occurrence of sub in s (0 for an empty sub), -1 when there is none
 * (no error set), -2 with an error (either not a str). */
ptrdiff_t ouro_str_find(ouro_object *s, ouro_object *sub);

/* 1 when s starts (ends) with prefix (suffix), else 0; -1 with an error (either not a str). */
int ouro_str_startswith(ouro_object *s, ouro_object *prefix);
int ouro_str_endswith(ouro_object *s, ouro_object *suffix);

/* ---- interning ----------------------------------------------------------------------------------------- *
 * The intern table maps text to one immortal str per distinct text, process-wide; lookups are lock-free
 * (liburcu's rculfhash under ouro's RCU). Interned strings compare equal by identity. The calling
 * thread is attached if it is not; it must not be inside an offline section (OURO_ERR_STATE). */

/* A new reference to the interned str equal to s. When no equal str is interned yet, s itself becomes
 * the interned one (and immortal) if the calling thread owns it, else an immortal copy of it does (a
 * non-owner could lose a concurrent count of the owner's). Two threads interning equal text at once get
 * the same object. NULL with OURO_ERR_TYPE (not a str), OURO_ERR_INVALID, OURO_ERR_STATE or
 * OURO_ERR_NOMEM. */
ouro_object *ouro_str_intern(ouro_object *s);

/* A new reference to the interned str of the NUL-terminated UTF-8 string s (no str is made when it is
 * interned already). NULL with OURO_ERR_INVALID, OURO_ERR_VALUE (invalid UTF-8), OURO_ERR_STATE or
 * OURO_ERR_NOMEM. */
ouro_object *ouro_str_intern_cstr(const char *s);

/* 1 when s is the interned str of its text, 0 when not (an equal str may be), -1 with an error (s not a
 * str). While another thread interns s itself the answer may be either. */
int ouro_str_is_interned(ouro_object *s);

/* ---- bytes --------------------------------------------------------------------------------------------- */

extern ouro_type ouro_bytes_type;

/* A new bytes holding a copy of n bytes at p (n == 0: the empty bytes, an immortal singleton). NULL
 * with OURO_ERR_INVALID (p NULL with n > 0), OURO_ERR_OVERFLOW (n > PTRDIFF_MAX - 1) or
 * OURO_ERR_NOMEM. */
ouro_object *ouro_bytes_new(const void *p, size_t n);

/* The bytes of b (followed by a NUL, valid as long as b is). NULL with an error when b is not a bytes. */
const void *ouro_bytes_data(ouro_object *b);

/* The number of bytes of b; -1 with an error when b is not a bytes. */
ptrdiff_t ouro_bytes_size(ouro_object *b);

/* A new bytes a + b (a new reference to a or b when the other is empty). NULL with an error. */
ouro_object *ouro_bytes_concat(ouro_object *a, ouro_object *b);

/* A new bytes of b[start:stop] with Python's slice semantics (see ouro_str_slice; indices in bytes). */
ouro_object *ouro_bytes_slice(ouro_object *b, ptrdiff_t start, ptrdiff_t stop);

/* 1 when a and b hold the same bytes, 0 when not; -1 with an error when either is not a bytes. */
int ouro_bytes_eq(ouro_object *a, ouro_object *b);

/* ---- repr ------------------------------------------------------------------------------------------------
 * ouro_repr (ouro/object.h) of a str is Python's: quoted with ' (or " when the text holds ' and no "),
 * with \\, the quote, \t, \n, \r escaped, and other non-printable code points as \xNN, \uNNNN or
 * \UNNNNNNNN. Of a bytes: b'...' with \xNN for bytes outside 0x20..0x7e. */

#ifdef __cplusplus
}
#endif
#endif /* OURO_STR_H */
