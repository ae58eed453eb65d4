/* core/repr.c — the containers' shared repr machinery (core/repr.h). The guard keeps its frames on the
 * callers' stacks, so it costs one thread-local pointer and no table: a static TLS block stays small,
 * which a dlopen of libouro.so needs (core/debug.h, OURO_TLS_FAST). */
#include "core/repr.h"

#include <string.h>

static __thread repr_frame *tls_repr_top;   /* innermost container being printed */
static __thread unsigned tls_repr_depth;     /* frames from tls_repr_top outwards */

int _ouro_repr_enter(repr_frame *f, ouro_object *self) {
    for (repr_frame *g = tls_repr_top; g; g = g->outer)
        if (g->obj == self) return 1;
    if (tls_repr_depth >= OURO_REPR_MAX_DEPTH) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_repr: %s nested deeper than %d", self->type->name, OURO_REPR_MAX_DEPTH);
        return -1;
    }
    *f = (repr_frame){self, tls_repr_top};
    tls_repr_top = f;
    tls_repr_depth++;
    return 0;
}

void _ouro_repr_leave(repr_frame *f) {
    OURO_ASSERT(tls_repr_top == f && tls_repr_depth > 0);
    tls_repr_top = f->outer;
    tls_repr_depth--;
}

void _ouro_repr_put(repr_buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (n >= b->cap - b->len) { /* room for n bytes and a NUL */
        size_t cap = b->cap ? b->cap : 64;
        while (n >= cap - b->len) {
            if (cap > SIZE_MAX / 2) {
                _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_repr: the text is too long");
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *p = ouro_realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void _ouro_repr_put_cstr(repr_buf *b, const char *s) { _ouro_repr_put(b, s, strlen(s)); }

void _ouro_repr_put_obj(repr_buf *b, ouro_object *o) {
    if (b->failed) return;
    ouro_object *r = ouro_repr(o);
    if (!r) {
        b->failed = true;
        return;
    }
    size_t n;
    const char *s = ouro_str_utf8(r, &n);
    _ouro_repr_put(b, s, n);
    ouro_decref(r);
}

ouro_object *_ouro_repr_finish(repr_buf *b) {
    ouro_object *s = b->failed ? NULL : ouro_str_from_utf8(b->p ? b->p : "", b->len);
    ouro_free(b->p);
    return s;
}
