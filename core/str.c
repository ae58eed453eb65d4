/* core/str.c — str: immutable validated UTF-8 text; ouro_repr. */
#include "core/objimpl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A str: its bytes follow the header (items, NUL-terminated). */
typedef struct {
    ouro_varobject var; /* size: bytes (without the NUL) */
    size_t length;      /* code points */
    int64_t hash;       /* -1 until computed */
} str_object;

static int64_t str_hash(ouro_object *self);
static int str_eq(ouro_object *self, ouro_object *other);
static ouro_object *str_repr(ouro_object *self);

ouro_type ouro_str_type = {
    .head = OURO_TYPE_HEAD,
    .name = "str",
    .basic_size = sizeof(str_object),
    .item_size = 1,
    .hash = str_hash,
    .eq = str_eq,
    .repr = str_repr,
};

/* Validates UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). Returns the number of code
 * points, or -1 with *bad set to the offset of the first invalid byte. */
static long utf8_count(const unsigned char *s, size_t n, size_t *bad) {
    long cps = 0;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) len = 1;
        else if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        else { *bad = i; return -1; }
        if (len > n - i) { *bad = i; return -1; }
        for (size_t k = 1; k < len; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) { *bad = i; return -1; }
        }
        i += len;
        cps++;
    }
    return cps;
}

ouro_object *ouro_str_from_utf8(const char *s, size_t n) {
    if (!s && n) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_from_utf8: s is NULL");
        return NULL;
    }
    size_t bad = 0;
    long cps = utf8_count((const unsigned char *)s, n, &bad);
    if (cps < 0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_str_from_utf8: invalid UTF-8 at byte %zu", bad);
        return NULL;
    }
    if (n == SIZE_MAX) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_str_from_utf8: too long");
        return NULL;
    }
    str_object *o = (str_object *)ouro_new_var(&ouro_str_type, n + 1);
    if (!o) return NULL;
    o->var.size = n;
    if (n) memcpy(o->var.items, s, n);
    ((char *)o->var.items)[n] = '\0';
    o->length = (size_t)cps;
    o->hash = -1;
    return &o->var.head;
}

ouro_object *ouro_str_from_cstr(const char *s) {
    if (!s) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_from_cstr: s is NULL");
        return NULL;
    }
    return ouro_str_from_utf8(s, strlen(s));
}

ouro_object *ouro_str_from_format(const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_str_from_format: bad format");
        return NULL;
    }
    if ((size_t)n < sizeof small) return ouro_str_from_utf8(small, (size_t)n);
    char *big = ouro_alloc((size_t)n + 1);
    if (!big) return NULL;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ouro_object *s = ouro_str_from_utf8(big, (size_t)n);
    ouro_free(big);
    return s;
}

const char *ouro_str_utf8(ouro_object *s, size_t *len) {
    if (!ouro_is_type(s, &ouro_str_type)) return _ouro_err_type("ouro_str_utf8", "a str", s);
    str_object *o = (str_object *)s;
    if (len) *len = o->var.size;
    return o->var.items;
}

/* FNV-1a for now (a keyed hash replaces it). Never -1. */
static int64_t str_hash(ouro_object *self) {
    str_object *o = (str_object *)self;
    int64_t h = __atomic_load_n(&o->hash, __ATOMIC_RELAXED);
    if (h != -1) return h;
    uint64_t x = 1469598103934665603ull;
    const unsigned char *p = o->var.items;
    for (size_t i = 0; i < o->var.size; i++) x = (x ^ p[i]) * 1099511628211ull;
    h = (int64_t)x == -1 ? -2 : (int64_t)x;
    __atomic_store_n(&o->hash, h, __ATOMIC_RELAXED); /* racing writers store the same value */
    return h;
}

static int str_eq(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_str_type)) return 0;
    str_object *a = (str_object *)self, *b = (str_object *)other;
    return a->var.size == b->var.size && memcmp(a->var.items, b->var.items, a->var.size) == 0;
}

static ouro_object *str_repr(ouro_object *self) {
    str_object *o = (str_object *)self;
    return ouro_str_from_format("'%s'", (const char *)o->var.items);
}

ouro_object *ouro_repr(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_repr: object is NULL");
        return NULL;
    }
    if (o->type->repr) {
        ouro_object *r = o->type->repr(o);
        if (r && !ouro_is_type(r, &ouro_str_type)) {
            _ouro_err_type("ouro_repr", "a str from the type's repr", r);
            ouro_decref(r);
            return NULL;
        }
        return r;
    }
    return ouro_str_from_format("<%s object at %p>", o->type->name, (void *)o);
}
