/* ouro/weakref.h — weak references.
 *
 * A weakref (type "weakref") refers to an object without keeping it alive. While the referent lives,
 * ouro_weakref_get() hands out new (strong) references to it; once the referent's count reaches zero
 * the weakref is cleared — before the referent's type dealloc runs — and every get from then on
 * returns NULL. Each weakref's callback, if it has one, is then called once, on the thread that frees
 * the referent, with the weakref (a borrowed reference, kept alive across the call) and its arg —
 * unless the weakref itself died first. Callbacks run outside ouro's internal locks: they may drop
 * references, make objects and weakrefs, and call ouro_weakref_get (which returns NULL for the weakrefs
 * just cleared). They run inside the referent's free, so they must not block for long; an error a
 * callback leaves set is discarded (the thread's error is restored).
 *
 * Any object can be referred to weakly. An immortal referent never dies: its weakrefs never clear and
 * never call back. All functions are thread-safe; the design and the races it closes are in
 * docs/objects-number.md "Weak references". */
#ifndef OURO_WEAKREF_H
#define OURO_WEAKREF_H

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

extern ouro_type ouro_weakref_type; /* "weakref" */

/* Called when a weakref's referent dies: weakref is the (cleared) weakref, arg the pointer given to
 * ouro_weakref_new. */
typedef void (*ouro_weakref_callback)(ouro_object *weakref, void *arg);

/* A new weakref to referent (the caller holds a reference to it) with an optional callback (NULL: none)
 * and its arg. Every call makes a new weakref. NULL with OURO_ERR_INVALID (referent NULL) or
 * OURO_ERR_NOMEM. */
ouro_object *ouro_weakref_new(ouro_object *referent, ouro_weakref_callback callback, void *arg);

/* A new reference to weakref wr's referent, or NULL without an error once the referent is dead (or
 * dying: its count reached zero on another thread and its weakrefs are being cleared). NULL with
 * OURO_ERR_TYPE when wr is not a weakref, OURO_ERR_INVALID when it is NULL (or OURO_ERR_NOMEM when the
 * calling thread, not attached yet, cannot be). */
ouro_object *ouro_weakref_get(ouro_object *wr);

/* 1 when wr's referent is alive, 0 when it is dead (final: it stays 0), -1 with an error as for
 * ouro_weakref_get. A 1 is a snapshot: the referent may die right after unless the caller holds a
 * reference to it. */
int ouro_weakref_alive(ouro_object *wr);

/* The number of live weakrefs to o (0 for an immortal or never weakly-referenced object). For tests and
 * diagnostics; -1 / OURO_ERR_INVALID for NULL. */
long ouro_weakref_count(ouro_object *o);

#ifdef __cplusplus
}
#endif
#endif /* OURO_WEAKREF_H */
