/* core/bytes.c — bytes: an immutable string of bytes.
 *
 * Layout (bytes_object): the variable-size header (size: the bytes without the NUL that follows them;
 * items: after the struct, or a separate block beyond OURO_OBJECT_MAX_SIZE) and the cached hash (-1
 * until computed, relaxed atomics; the same keyed hash as str, so a bytes and a str of the same bytes
 * hash alike, as CPython's do for ASCII). Written once before anyone else sees it: no lock. */
#include "core/objimpl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    ouro_varobject var; /* size: bytes, without the NUL; items: size + 1 bytes */
    int64_t hash;       /* -1 until computed; relaxed atomics */
} bytes_object;

static int64_t bytes_hash(ouro_object *self);
static int bytes_eq_cb(ouro_object *self, ouro_object *other);
static ouro_object *bytes_repr(ouro_object *self);

ouro_type ouro_bytes_type = {
    .head = OURO_TYPE_HEAD,
    .name = "bytes",
    .basic_size = sizeof(bytes_object),
    .item_size = 1,
    .hash = bytes_hash,
    .eq = bytes_eq_cb,
    .repr = bytes_repr,
};

static inline bytes_object *bytes_of(ouro_object *o) { return (bytes_object *)o; }

/* The bytes b is, or NULL with OURO_ERR_INVALID / OURO_ERR_TYPE naming fn. */
static bytes_object *bytes_check(ouro_object *b, const char *fn) { return _ouro_arg(b, &ouro_bytes_type, fn); }

/* A new bytes of n uninitialised bytes (and the NUL), not the empty singleton. */
static bytes_object *bytes_alloc(size_t n, const char *fn) {
    if (n > (size_t)PTRDIFF_MAX - 1) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "%s: %zu bytes is too long for a bytes", fn, n);
        return NULL;
    }
    bytes_object *o = (bytes_object *)ouro_new_var(&ouro_bytes_type, n + 1);
    if (!o) return NULL;
    o->var.size = n;
    ((char *)o->var.items)[n] = '\0';
    o->hash = -1;
    return o;
}

/* The empty bytes: made at first use, immortal, published once (acquire/release on bytes_empty). */
static _Atomic(ouro_object *) bytes_empty;

static ouro_object *bytes_empty_get(void) {
    ouro_object *e = atomic_load_explicit(&bytes_empty, memory_order_acquire); /* pairs with the CAS below */
    if (OURO_LIKELY(e != NULL)) return e;
    bytes_object *o = bytes_alloc(0, "ouro_bytes_new");
    if (!o) return NULL;
    ouro_object *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&bytes_empty, &expected, &o->var.head, memory_order_acq_rel,
                                                memory_order_acquire)) {
        ouro_immortalize(&o->var.head); /* its owner, holding its only reference: no count is lost */
        return &o->var.head;
    }
    ouro_decref(&o->var.head);
    return expected;
}

/* A new bytes of n bytes at p (p valid). */
static ouro_object *bytes_make(const void *p, size_t n, const char *fn) {
    if (n == 0) return bytes_empty_get();
    bytes_object *o = bytes_alloc(n, fn);
    if (!o) return NULL;
    memcpy(o->var.items, p, n);
    return &o->var.head;
}

ouro_object *ouro_bytes_new(const void *p, size_t n) {
    if (!p && n) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_bytes_new: p is NULL");
        return NULL;
    }
    return bytes_make(p, n, "ouro_bytes_new");
}

const void *ouro_bytes_data(ouro_object *b) {
    bytes_object *o = bytes_check(b, "ouro_bytes_data");
    return o ? o->var.items : NULL;
}

ptrdiff_t ouro_bytes_size(ouro_object *b) {
    bytes_object *o = bytes_check(b, "ouro_bytes_size");
    return o ? (ptrdiff_t)o->var.size : -1;
}

ouro_object *ouro_bytes_concat(ouro_object *a, ouro_object *b) {
    bytes_object *x = bytes_check(a, "ouro_bytes_concat"), *y = x ? bytes_check(b, "ouro_bytes_concat") : NULL;
    if (!y) return NULL;
    if (y->var.size == 0) return ouro_newref(a);
    if (x->var.size == 0) return ouro_newref(b);
    size_t n;
    if (__builtin_add_overflow(x->var.size, y->var.size, &n) || n > (size_t)PTRDIFF_MAX - 1) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_bytes_concat: %zu + %zu bytes is too long", x->var.size, y->var.size);
        return NULL;
    }
    bytes_object *o = bytes_alloc(n, "ouro_bytes_concat");
    if (!o) return NULL;
    memcpy(o->var.items, x->var.items, x->var.size);
    memcpy((char *)o->var.items + x->var.size, y->var.items, y->var.size);
    return &o->var.head;
}

ouro_object *ouro_bytes_slice(ouro_object *b, ptrdiff_t start, ptrdiff_t stop) {
    bytes_object *o = bytes_check(b, "ouro_bytes_slice");
    if (!o) return NULL;
    ptrdiff_t len = (ptrdiff_t)o->var.size;
    /* Python's bounds (as ouro_str_slice's): from the end when negative, clamped to 0..len. */
    if (start < 0) start = start + len < 0 ? 0 : start + len;
    else if (start > len) start = len;
    if (stop < 0) stop = stop + len < 0 ? 0 : stop + len;
    else if (stop > len) stop = len;
    if (stop <= start) return bytes_empty_get();
    if (start == 0 && stop == len) return ouro_newref(b);
    return bytes_make((const char *)o->var.items + start, (size_t)(stop - start), "ouro_bytes_slice");
}

int ouro_bytes_eq(ouro_object *a, ouro_object *b) {
    bytes_object *x = bytes_check(a, "ouro_bytes_eq"), *y = x ? bytes_check(b, "ouro_bytes_eq") : NULL;
    if (!y) return -1;
    return x->var.size == y->var.size && memcmp(x->var.items, y->var.items, x->var.size) == 0;
}

/* ---- the type's callbacks ----------------------------------------------------------------------------- */

static int64_t bytes_hash(ouro_object *self) {
    bytes_object *o = bytes_of(self);
    int64_t h = __atomic_load_n(&o->hash, __ATOMIC_RELAXED);
    if (h != -1) return h;
    h = ouro_hash_bytes(o->var.items, o->var.size); /* never -1 */
    __atomic_store_n(&o->hash, h, __ATOMIC_RELAXED); /* racing writers store the same value */
    return h;
}

static int bytes_eq_cb(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_bytes_type)) return 0;
    return ouro_bytes_eq(self, other);
}

/* Python's repr: b'...' (b"..." when the bytes hold ' and no "), with \\, the quote, \t, \n, \r
 * escaped and every byte outside 0x20..0x7e as \xNN. */
static ouro_object *bytes_repr(ouro_object *self) {
    bytes_object *o = bytes_of(self);
    const unsigned char *p = o->var.items;
    size_t n = o->var.size, cap;
    if (__builtin_mul_overflow(n, (size_t)4, &cap) || __builtin_add_overflow(cap, (size_t)4, &cap) ||
        cap > (size_t)PTRDIFF_MAX) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "repr: a bytes of %zu bytes is too long to show", n);
        return NULL;
    }
    char *buf = ouro_alloc(cap);
    if (!buf) return NULL;
    char quote = memchr(p, '\'', n) && !memchr(p, '"', n) ? '"' : '\'';
    size_t k = 0;
    buf[k++] = 'b';
    buf[k++] = quote;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        char esc = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : c == (unsigned char)quote ? quote : 0;
        if (esc) {
            buf[k++] = '\\';
            buf[k++] = esc;
        } else if (c < 0x20 || c >= 0x7f) {
            buf[k++] = '\\';
            buf[k++] = 'x';
            buf[k++] = hex[c >> 4];
            buf[k++] = hex[c & 15];
        } else {
            buf[k++] = (char)c;
        }
    }
    buf[k++] = quote;
    ouro_object *r = ouro_str_from_utf8(buf, k); /* ASCII */
    ouro_free(buf);
    return r;
}
