/* core/repr.h — what every container's repr shares (tuple, list, dict, set): a recursion guard whose
 * frames live on the C stack, and a growing UTF-8 buffer. */
#ifndef OURO_CORE_REPR_H
#define OURO_CORE_REPR_H

#include "core/objimpl.h"

/* One container this thread is printing; the innermost is the thread's top (core/repr.c). */
typedef struct repr_frame {
    ouro_object *obj;
    struct repr_frame *outer;
} repr_frame;

/* Containers nest at most this deep in one repr; deeper fails with OURO_ERR_STATE instead of
 * exhausting the stack. */
#define OURO_REPR_MAX_DEPTH 1000

/* The recursion guard (a container that contains itself, directly or not, prints "[...]" or "{...}"):
 * 1 when self is already being printed by this thread; 0 when entered, with f (the caller's, on its
 * stack) pushed: call _ouro_repr_leave(f) before returning; -1 with OURO_ERR_STATE when too deep. */
OURO_INTERNAL int _ouro_repr_enter(repr_frame *f, ouro_object *self);
OURO_INTERNAL void _ouro_repr_leave(repr_frame *f);

/* A growing UTF-8 buffer; after a failure (out of memory, too long, a failed item repr) every put is
 * a no-op and finish returns NULL with the error set. */
typedef struct repr_buf {
    char *p;
    size_t len, cap;
    bool failed;
} repr_buf;
OURO_INTERNAL void _ouro_repr_put(repr_buf *b, const char *s, size_t n);
OURO_INTERNAL void _ouro_repr_put_cstr(repr_buf *b, const char *s);
OURO_INTERNAL void _ouro_repr_put_obj(repr_buf *b, ouro_object *o); /* ouro_repr(o) */
OURO_INTERNAL ouro_object *_ouro_repr_finish(repr_buf *b);          /* the str, buffer freed */

#endif /* OURO_CORE_REPR_H */
