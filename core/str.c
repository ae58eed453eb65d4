/* core/str.c — str: immutable validated UTF-8 text; the intern table; ouro_repr.
 *
 * Layout (str_object): the variable-size header (size: bytes without the NUL; items: the bytes, right
 * after the struct, or a separate block when the str would not fit OURO_OBJECT_MAX_SIZE), the number of
 * code points, the cached hash and the state bits. The bytes are written once, before the str is
 * returned to anyone, and never again: readers need no lock.
 *
 * Cached hash: -1 until first computed (ouro_hash_bytes never returns -1); racing threads compute the
 * same value and store it with relaxed atomics (a torn or stale read is impossible: one 64-bit atomic).
 *
 * Intern table (docs/objects-str.md, "Interning"): liburcu's lock-free resizable hash table (rculfhash)
 * of intern_entry nodes, on the QSBR flavour ouro's threads run. Entries are never removed and interned
 * strings are immortal, so no grace period is ever needed to reclaim anything: readers (lookups, and
 * add_unique walking a chain) only need to be QSBR readers (attached and online), so that the table's
 * resize, which frees old bucket-index arrays after a grace period, cannot free what they walk.
 *
 * Concurrency of interning:
 *   | operation pair                         | synchronisation                                         |
 *   |----------------------------------------|---------------------------------------------------------|
 *   | lookup  x  lookup                      | none (read-only)                                        |
 *   | lookup  x  insert                      | rculfhash publication (full barrier in add_unique) for   |
 *   |                                        | the machine; entry->str release/acquire for the C11      |
 *   |                                        | model and TSan (liburcu's asm is invisible to TSan)      |
 *   | insert  x  insert of equal text        | cds_lfht_add_unique: exactly one wins, the loser gets   |
 *   |                                        | the winner's node and frees its own entry                |
 *   | insert  x  resize (liburcu's worker)   | rculfhash's own design                                   |
 * Why the found str is alive: a str in the table is either immortal or the candidate of an insert in
 * progress, whose caller holds a reference until it has made the str immortal. */
#include "core/objimpl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

/* A str (see the head comment). */
typedef struct {
    ouro_varobject var; /* size: bytes, without the NUL; items: size + 1 bytes */
    size_t length;      /* code points (== size: all ASCII) */
    int64_t hash;       /* -1 until computed; relaxed atomics */
    uint32_t state;     /* STR_* bits; relaxed atomics */
} str_object;

#define STR_INTERNED 1u /* the str the intern table holds for its text */

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

static inline str_object *str_of(ouro_object *o) { return (str_object *)o; }
static inline const char *str_bytes(const str_object *s) { return s->var.items; }

/* The str s is, or NULL with OURO_ERR_INVALID / OURO_ERR_TYPE naming fn. */
static str_object *str_check(ouro_object *s, const char *fn) { return _ouro_arg(s, &ouro_str_type, fn); }

/* ---- UTF-8 ------------------------------------------------------------------------------------------ */

/* Validates UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). Returns the number of code
 * points, or -1 with *bad set to the offset of the first byte of the first invalid sequence. */
static ptrdiff_t utf8_count(const unsigned char *s, size_t n, size_t *bad) {
    ptrdiff_t cps = 0;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { /* the common case: a run of ASCII */
            i++;
            cps++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
            if (c == 0xed) hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
            if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
        } else { /* a continuation byte, an overlong lead (c0, c1) or f5..ff */
            *bad = i;
            return -1;
        }
        if (len > n - i) {
            *bad = i;
            return -1;
        }
        for (size_t k = 1; k < len; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) {
                *bad = i;
                return -1;
            }
        }
        i += len;
        cps++;
    }
    return cps;
}

/* Decodes the (valid) code point at p, setting *len to its byte count. */
static uint32_t utf8_decode(const unsigned char *p, size_t *len) {
    uint32_t c = p[0];
    if (c < 0x80) { *len = 1; return c; }
    if (c < 0xe0) { *len = 2; return (c & 0x1f) << 6 | (p[1] & 0x3fu); }
    if (c < 0xf0) { *len = 3; return (c & 0x0f) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu); }
    *len = 4;
    return (c & 0x07) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
}

/* The byte offset of the code point count code points after byte offset from (a code point start) in
 * s; count must not pass the end. */
static size_t str_advance(const str_object *s, size_t from, size_t count) {
    if (s->length == s->var.size) return from + count; /* ASCII */
    const unsigned char *p = (const unsigned char *)str_bytes(s);
    size_t i = from;
    for (; count > 0; count--) {
        i++;
        while (i < s->var.size && (p[i] & 0xc0) == 0x80) i++;
    }
    return i;
}

/* The number of code points in n bytes of valid UTF-8 (the lead bytes). */
static size_t utf8_points(const unsigned char *p, size_t n) {
    size_t cps = 0;
    for (size_t i = 0; i < n; i++) cps += (p[i] & 0xc0) != 0x80;
    return cps;
}

/* ---- creation --------------------------------------------------------------------------------------- */

/* A new str of n bytes (the bytes uninitialised but the NUL; length 0), not the empty singleton.
 * NULL with OURO_ERR_OVERFLOW / OURO_ERR_NOMEM. */
static str_object *str_alloc(size_t n, const char *fn) {
    if (n > (size_t)PTRDIFF_MAX - 1) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "%s: %zu bytes is too long for a str", fn, n);
        return NULL;
    }
    str_object *o = (str_object *)ouro_new_var(&ouro_str_type, n + 1);
    if (!o) return NULL;
    o->var.size = n;
    ((char *)o->var.items)[n] = '\0';
    o->hash = -1;
    return o;
}

/* The empty str: made at first use, immortal, published once (acquire/release on str_empty). */
static _Atomic(ouro_object *) str_empty;

static ouro_object *str_empty_get(void) {
    ouro_object *e = atomic_load_explicit(&str_empty, memory_order_acquire); /* pairs with the CAS below */
    if (OURO_LIKELY(e != NULL)) return e;
    str_object *o = str_alloc(0, "ouro_str_from_utf8");
    if (!o) return NULL;
    ouro_object *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&str_empty, &expected, &o->var.head, memory_order_acq_rel,
                                                memory_order_acquire)) {
        ouro_immortalize(&o->var.head); /* its owner, holding its only reference: no count is lost */
        return &o->var.head;
    }
    ouro_decref(&o->var.head); /* another thread's won */
    return expected;
}

/* A new str of n bytes at p that are known to be valid UTF-8 with cps code points. */
static ouro_object *str_new_trusted(const char *p, size_t n, size_t cps, const char *fn) {
    if (n == 0) return str_empty_get();
    str_object *o = str_alloc(n, fn);
    if (!o) return NULL;
    memcpy(o->var.items, p, n);
    o->length = cps;
    return &o->var.head;
}

ouro_object *ouro_str_from_utf8(const char *s, size_t n) {
    if (!s && n) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_from_utf8: s is NULL");
        return NULL;
    }
    if (n > (size_t)PTRDIFF_MAX - 1) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_str_from_utf8: %zu bytes is too long for a str", n);
        return NULL;
    }
    size_t bad = 0;
    ptrdiff_t cps = utf8_count((const unsigned char *)s, n, &bad);
    if (cps < 0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_str_from_utf8: invalid UTF-8 at byte %zu", bad);
        return NULL;
    }
    return str_new_trusted(s, n, (size_t)cps, "ouro_str_from_utf8");
}

ouro_object *ouro_str_from_cstr(const char *s) {
    if (!s) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_from_cstr: s is NULL");
        return NULL;
    }
    return ouro_str_from_utf8(s, strlen(s));
}

ouro_object *ouro_str_from_format(const char *fmt, ...) {
    if (!fmt) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_from_format: fmt is NULL");
        return NULL;
    }
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

/* ---- access ----------------------------------------------------------------------------------------- */

const char *ouro_str_utf8(ouro_object *s, size_t *len) {
    str_object *o = str_check(s, "ouro_str_utf8");
    if (!o) return NULL;
    if (len) *len = o->var.size;
    return str_bytes(o);
}

ptrdiff_t ouro_str_len(ouro_object *s) {
    str_object *o = str_check(s, "ouro_str_len");
    return o ? (ptrdiff_t)o->length : -1;
}

ptrdiff_t ouro_str_size(ouro_object *s) {
    str_object *o = str_check(s, "ouro_str_size");
    return o ? (ptrdiff_t)o->var.size : -1;
}

/* ---- operations ------------------------------------------------------------------------------------- */

ouro_object *ouro_str_concat(ouro_object *a, ouro_object *b) {
    str_object *x = str_check(a, "ouro_str_concat"), *y = x ? str_check(b, "ouro_str_concat") : NULL;
    if (!y) return NULL;
    if (y->var.size == 0) return ouro_newref(a); /* immutable: the operand is the result */
    if (x->var.size == 0) return ouro_newref(b);
    size_t n;
    if (__builtin_add_overflow(x->var.size, y->var.size, &n) || n > (size_t)PTRDIFF_MAX - 1) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_str_concat: %zu + %zu bytes is too long for a str", x->var.size,
                      y->var.size);
        return NULL;
    }
    str_object *o = str_alloc(n, "ouro_str_concat");
    if (!o) return NULL;
    memcpy(o->var.items, x->var.items, x->var.size);
    memcpy((char *)o->var.items + x->var.size, y->var.items, y->var.size);
    o->length = x->length + y->length; /* valid UTF-8 + valid UTF-8 is valid UTF-8 */
    return &o->var.head;
}

/* Python's slice bounds: negative indices count from the end, then both are clamped to 0..len and
 * stop to at least start. */
static void slice_bounds(ptrdiff_t len, ptrdiff_t *start, ptrdiff_t *stop) {
    if (*start < 0) *start = *start + len < 0 ? 0 : *start + len; /* no overflow: len >= 0 */
    else if (*start > len) *start = len;
    if (*stop < 0) *stop = *stop + len < 0 ? 0 : *stop + len;
    else if (*stop > len) *stop = len;
    if (*stop < *start) *stop = *start;
}

ouro_object *ouro_str_slice(ouro_object *s, ptrdiff_t start, ptrdiff_t stop) {
    str_object *o = str_check(s, "ouro_str_slice");
    if (!o) return NULL;
    slice_bounds((ptrdiff_t)o->length, &start, &stop);
    if (start == 0 && (size_t)stop == o->length) return ouro_newref(s);
    size_t from = str_advance(o, 0, (size_t)start);
    size_t to = str_advance(o, from, (size_t)(stop - start));
    return str_new_trusted(str_bytes(o) + from, to - from, (size_t)(stop - start), "ouro_str_slice");
}

int ouro_str_compare(ouro_object *a, ouro_object *b) {
    str_object *x = str_check(a, "ouro_str_compare"), *y = x ? str_check(b, "ouro_str_compare") : NULL;
    if (!y) return -2;
    size_t n = x->var.size < y->var.size ? x->var.size : y->var.size;
    int c = memcmp(x->var.items, y->var.items, n); /* UTF-8's byte order is its code point order */
    if (c == 0) return x->var.size < y->var.size ? -1 : x->var.size > y->var.size;
    return c < 0 ? -1 : 1;
}

int ouro_str_eq_cstr(ouro_object *s, const char *cstr) {
    str_object *o = str_check(s, "ouro_str_eq_cstr");
    if (!o) return -1;
    if (!cstr) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_eq_cstr: cstr is NULL");
        return -1;
    }
    size_t n = strlen(cstr);
    return n == o->var.size && memcmp(cstr, o->var.items, n) == 0;
}

ptrdiff_t ouro_str_find(ouro_object *s, ouro_object *sub) {
    str_object *o = str_check(s, "ouro_str_find"), *p = o ? str_check(sub, "ouro_str_find") : NULL;
    if (!p) return -2;
    /* A match of valid UTF-8 in valid UTF-8 starts on a code point (a lead byte is never a continuation
     * byte), so a byte search is a code point search. */
    const char *at = memmem(o->var.items, o->var.size, p->var.items, p->var.size);
    if (!at) return -1;
    size_t off = (size_t)(at - str_bytes(o));
    return (ptrdiff_t)(o->length == o->var.size ? off : utf8_points((const unsigned char *)str_bytes(o), off));
}

int ouro_str_startswith(ouro_object *s, ouro_object *prefix) {
    str_object *o = str_check(s, "ouro_str_startswith"), *p = o ? str_check(prefix, "ouro_str_startswith") : NULL;
    if (!p) return -1;
    return p->var.size <= o->var.size && memcmp(o->var.items, p->var.items, p->var.size) == 0;
}

int ouro_str_endswith(ouro_object *s, ouro_object *suffix) {
    str_object *o = str_check(s, "ouro_str_endswith"), *p = o ? str_check(suffix, "ouro_str_endswith") : NULL;
    if (!p) return -1;
    return p->var.size <= o->var.size &&
           memcmp(str_bytes(o) + (o->var.size - p->var.size), p->var.items, p->var.size) == 0;
}

/* ---- the type's callbacks ----------------------------------------------------------------------------- */

static int64_t str_hash(ouro_object *self) {
    str_object *o = str_of(self);
    int64_t h = __atomic_load_n(&o->hash, __ATOMIC_RELAXED);
    if (h != -1) return h;
    h = ouro_hash_bytes(o->var.items, o->var.size); /* never -1 */
    __atomic_store_n(&o->hash, h, __ATOMIC_RELAXED); /* racing writers store the same value */
    return h;
}

static int str_eq(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_str_type)) return 0;
    str_object *a = str_of(self), *b = str_of(other);
    if (a->var.size != b->var.size) return 0;
    int64_t ha = __atomic_load_n(&a->hash, __ATOMIC_RELAXED), hb = __atomic_load_n(&b->hash, __ATOMIC_RELAXED);
    if (ha != -1 && hb != -1 && ha != hb) return 0; /* both cached and different: not equal */
    return memcmp(a->var.items, b->var.items, a->var.size) == 0;
}

/* 1 when Python's repr shows code point c as itself. Python asks the Unicode database (categories Cc,
 * Cf, Cs, Co, Cn, Zl, Zp, Zs but space are not printable); this covers the control, format, separator
 * and private-use code points, and the non-characters, without the tables: unassigned code points show
 * as themselves. */
static bool cp_printable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return false; /* C0, DEL, C1, NBSP, soft hyphen */
    if (c < 0x300) return true;
    switch (c) {
    case 0x061c: case 0x1680: case 0x180e: case 0x202f: case 0x205f: case 0x3000: case 0xfeff:
        return false;
    default:
        break;
    }
    if (c >= 0x0600 && c <= 0x0605) return false; /* Arabic number signs (Cf) */
    if (c >= 0x2000 && c <= 0x200f) return false; /* spaces (Zs), zero-width and direction marks (Cf) */
    if (c >= 0x2028 && c <= 0x202e) return false; /* line and paragraph separators, embeddings */
    if (c >= 0x2060 && c <= 0x206f) return false; /* invisible operators, deprecated format marks */
    if (c >= 0xe000 && c <= 0xf8ff) return false; /* private use */
    if (c >= 0xfff0 && c <= 0xfffb) return false; /* unassigned and interlinear annotation */
    if ((c & 0xfffe) == 0xfffe || (c >= 0xfdd0 && c <= 0xfdef)) return false; /* non-characters */
    if (c >= 0xe0000 && c <= 0xe0fff) return false; /* tags and variation selectors supplement (Cf) */
    if (c >= 0xf0000) return false;                   /* supplementary private use */
    return true;
}

/* The quote Python's repr uses for n bytes at p: ' unless the text holds ' and no ". */
static char repr_quote(const char *p, size_t n) {
    return memchr(p, '\'', n) && !memchr(p, '"', n) ? '"' : '\'';
}

static ouro_object *str_repr(ouro_object *self) {
    str_object *o = str_of(self);
    const unsigned char *p = (const unsigned char *)str_bytes(o);
    size_t n = o->var.size, cap;
    /* At most 4 bytes out per byte in (a 1-byte \xNN), plus the quotes. */
    if (__builtin_mul_overflow(n, (size_t)4, &cap) || __builtin_add_overflow(cap, (size_t)3, &cap) ||
        cap > (size_t)PTRDIFF_MAX) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "repr: a str of %zu bytes is too long to show", n);
        return NULL;
    }
    char *buf = ouro_alloc(cap);
    if (!buf) return NULL;
    char quote = repr_quote((const char *)p, n);
    size_t k = 0, cps = 0;
    buf[k++] = quote;
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t c = utf8_decode(p + i, &len);
        const char *esc = NULL;
        switch (c) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: break;
        }
        if (esc) {
            memcpy(buf + k, esc, 2);
            k += 2;
            cps += 2;
        } else if (c == (uint32_t)quote) {
            buf[k++] = '\\';
            buf[k++] = quote;
            cps += 2;
        } else if (cp_printable(c)) {
            memcpy(buf + k, p + i, len);
            k += len;
            cps++;
        } else {
            int w = c < 0x100 ? snprintf(buf + k, cap - k, "\\x%02x", (unsigned)c)
                    : c < 0x10000 ? snprintf(buf + k, cap - k, "\\u%04x", (unsigned)c)
                                  : snprintf(buf + k, cap - k, "\\U%08x", (unsigned)c);
            k += (size_t)w;
            cps += (size_t)w;
        }
        i += len;
    }
    buf[k++] = quote;
    ouro_object *r = str_new_trusted(buf, k, cps + 2, "repr");
    ouro_free(buf);
    return r;
}

/* ---- interning ------------------------------------------------------------------------------------------ */

/* A node of the intern table (never removed, never freed). */
typedef struct intern_entry {
    struct cds_lfht_node node;
    str_object *str; /* release-stored before the node is published; acquire-loaded by readers */
} intern_entry;

/* What lookups compare against: text, not a str (ouro_str_intern_cstr looks up before making one). */
typedef struct {
    const char *p;
    size_t n;
} intern_key;

static struct cds_lfht *intern_table; /* written once under intern_once */
static pthread_once_t intern_once = PTHREAD_ONCE_INIT;

static void intern_table_init(void) {
    /* 256 buckets to start, grown by liburcu's resize worker as chains lengthen (never shrunk: nothing
     * is removed). max_nr_buckets 0 picks the "order" bucket allocator (calloc'd tables). */
    intern_table = cds_lfht_new_flavor(256, 256, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_qsbr_flavor,
                                       NULL);
}

static inline str_object *intern_entry_str(struct cds_lfht_node *node) {
    intern_entry *e = caa_container_of(node, intern_entry, node);
    return __atomic_load_n(&e->str, __ATOMIC_ACQUIRE); /* pairs with the release in intern_insert() */
}

static int intern_match(struct cds_lfht_node *node, const void *key) {
    const str_object *s = intern_entry_str(node);
    const intern_key *k = key;
    return s->var.size == k->n && memcmp(s->var.items, k->p, k->n) == 0;
}

/* The calling thread ready to read the table: attached, online, the table made. false with an error. */
static bool intern_reader_ready(const char *fn) {
    /* Offline: an error in every build (checked first, so debug builds report it the same way). */
    if (_ouro_tls_thread && _ouro_tls_thread->offline_depth > 0) {
        _ouro_err_set(OURO_ERR_STATE, "%s: called inside an offline section (the intern table is read online)", fn);
        return false;
    }
    if (!_ouro_object_thread_ready_on(fn, NULL)) return false;
    pthread_once(&intern_once, intern_table_init);
    if (!intern_table) {
        _ouro_err_set(OURO_ERR_NOMEM, "%s: cannot create the intern table", fn);
        return false;
    }
    return true;
}

/* A new reference to the interned str of k, or NULL (no error) when there is none. */
static ouro_object *intern_lookup(const intern_key *k, int64_t hash) {
    struct cds_lfht_iter it;
    ouro_object *r = NULL;
    rcu_read_lock(); /* QSBR: a no-op; the caller is online, a reader already */
    cds_lfht_lookup(intern_table, (unsigned long)hash, intern_match, k, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node) {
        r = &intern_entry_str(node)->var.head;
        ouro_incref(r); /* alive: see the head comment */
    }
    rcu_read_unlock();
    return r;
}

/* Interns s (a str whose text is not found in the table a moment ago). The caller is a ready reader. */
static ouro_object *intern_insert(str_object *s, int64_t hash) {
    ouro_object *so = &s->var.head;
    /* The candidate becomes immortal. Only s's owner may immortalize it without losing a count the
     * owner makes meanwhile (ouro_immortalize); with atomic counts there is no owner. */
    bool own = OURO_REFCOUNT_ATOMIC || ouro_is_immortal(so) ||
               __atomic_load_n(&so->tid, __ATOMIC_RELAXED) == ouro_thread_id();
    str_object *cand = s;
    if (!own) {
        cand = str_alloc(s->var.size, "ouro_str_intern");
        if (!cand) return NULL;
        memcpy(cand->var.items, s->var.items, s->var.size);
        cand->length = s->length;
        cand->hash = hash;
    }
    intern_entry *e = ouro_alloc(sizeof *e);
    if (!e) {
        if (!own) ouro_decref(&cand->var.head);
        return NULL;
    }
    cds_lfht_node_init(&e->node);
    __atomic_fetch_or(&cand->state, STR_INTERNED, __ATOMIC_RELAXED);
    __atomic_store_n(&e->str, cand, __ATOMIC_RELEASE); /* pairs with the acquire in intern_entry_str() */
    intern_key k = {str_bytes(s), s->var.size};
    ouro_object *winner = NULL;
    rcu_read_lock();
    struct cds_lfht_node *got = cds_lfht_add_unique(intern_table, (unsigned long)hash, intern_match, &k, &e->node);
    if (got != &e->node) {
        winner = &intern_entry_str(got)->var.head;
        ouro_incref(winner);
    }
    rcu_read_unlock();
    if (winner) { /* another thread interned equal text first */
        ouro_free(e); /* never published */
        /* The winner may be cand itself: another thread interning the same immortal str (or, with
         * atomic counts, any str) at once. Then the flag stays. */
        if (winner != &cand->var.head) __atomic_fetch_and(&cand->state, ~STR_INTERNED, __ATOMIC_RELAXED);
        if (!own) ouro_decref(&cand->var.head);
        return winner;
    }
    /* Published: immortal from now on. Until this store, the caller's reference keeps it alive for the
     * readers that find it (they count it like any str). */
    ouro_immortalize(&cand->var.head);
    return own ? ouro_newref(so) : &cand->var.head;
}

ouro_object *ouro_str_intern(ouro_object *s) {
    str_object *o = str_check(s, "ouro_str_intern");
    if (!o) return NULL;
    if ((__atomic_load_n(&o->state, __ATOMIC_RELAXED) & STR_INTERNED) && ouro_is_immortal(s)) return s;
    if (!intern_reader_ready("ouro_str_intern")) return NULL;
    int64_t hash = str_hash(s);
    intern_key k = {str_bytes(o), o->var.size};
    ouro_object *r = intern_lookup(&k, hash);
    return r ? r : intern_insert(o, hash);
}

ouro_object *ouro_str_intern_cstr(const char *s) {
    if (!s) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_str_intern_cstr: s is NULL");
        return NULL;
    }
    size_t n = strlen(s), bad = 0;
    ptrdiff_t cps = utf8_count((const unsigned char *)s, n, &bad);
    if (cps < 0) {
        _ouro_err_set(OURO_ERR_VALUE, "ouro_str_intern_cstr: invalid UTF-8 at byte %zu", bad);
        return NULL;
    }
    if (!intern_reader_ready("ouro_str_intern_cstr")) return NULL;
    int64_t hash = ouro_hash_bytes(s, n); /* a str's hash is its bytes' */
    intern_key k = {s, n};
    ouro_object *r = intern_lookup(&k, hash);
    if (r) return r;
    ouro_object *fresh = str_new_trusted(s, n, (size_t)cps, "ouro_str_intern_cstr");
    if (!fresh) return NULL;
    __atomic_store_n(&str_of(fresh)->hash, hash, __ATOMIC_RELAXED);
    r = intern_insert(str_of(fresh), hash);
    ouro_decref(fresh); /* a no-op when fresh became the interned str (immortal) */
    return r;
}

int ouro_str_is_interned(ouro_object *s) {
    str_object *o = str_check(s, "ouro_str_is_interned");
    if (!o) return -1;
    return (__atomic_load_n(&o->state, __ATOMIC_RELAXED) & STR_INTERNED) != 0;
}

/* ---- repr of any object --------------------------------------------------------------------------------- */

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
