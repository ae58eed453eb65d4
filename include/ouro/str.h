/* ouro/str.h — str (immutable UTF-8 text) and bytes, keyed hashing, interning, repr.
 *
 * A str holds validated UTF-8 (no surrogates, no overlongs), NUL-terminated for C callers, with its
 * length in bytes and in code points and a cached hash. */
#ifndef OURO_STR_H
#define OURO_STR_H

#include <stddef.h>
#include <stdint.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

extern ouro_type ouro_str_type;

/* A new str from n bytes of UTF-8 at s. NULL with OURO_ERR_VALUE (invalid UTF-8, with the offset),
 * OURO_ERR_INVALID (s NULL with n > 0) or OURO_ERR_NOMEM. */
ouro_object *ouro_str_from_utf8(const char *s, size_t n);

/* A new str from a NUL-terminated UTF-8 string. */
ouro_object *ouro_str_from_cstr(const char *s);

/* A new str from printf-style arguments (the result must be valid UTF-8). */
ouro_object *ouro_str_from_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The UTF-8 bytes of str s (NUL-terminated, valid as long as s is) and, when len is not NULL, their
 * count. NULL with OURO_ERR_TYPE when s is not a str. */
const char *ouro_str_utf8(ouro_object *s, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* OURO_STR_H */
