/* core/tuple.c — tuple: an immutable sequence of object references; the empty tuple singleton; the
 * sequence repr shared with list (core/seq.h).
 *
 * A tuple is a variable-size object (ouro_varobject): size items of type ouro_object *, right after
 * the header, or in a separate block for tuples bigger than OURO_OBJECT_MAX_SIZE (ouro_new_var decides,
 * object.c frees it). Immutable once its creator has filled it, so it is read without locks or
 * atomics: whatever shares the tuple with another thread (a list's release store, a queue, a join)
 * orders the creator's stores before the other thread's loads. */
#include "core/repr.h"
#include "core/seq.h"

#include <stdarg.h>
#include <string.h>

#include "ouro/list.h"
#include "ouro/str.h"

static void tuple_dealloc(ouro_object *self);
static int tuple_traverse(ouro_object *self, ouro_visitproc visit, void *arg);
static void tuple_clear(ouro_object *self);
static int64_t tuple_hash(ouro_object *self);
static int tuple_eq(ouro_object *self, ouro_object *other);
static ouro_object *tuple_repr(ouro_object *self);

ouro_type ouro_tuple_type = {
    .head = OURO_TYPE_HEAD,
    .name = "tuple",
    .basic_size = sizeof(ouro_varobject),
    .item_size = sizeof(ouro_object *),
    .flags = OURO_TYPE_GC,
    .dealloc = tuple_dealloc,
    .traverse = tuple_traverse,
    .clear = tuple_clear,
    .hash = tuple_hash,
    .eq = tuple_eq,
    .repr = tuple_repr,
};

static inline ouro_object **tuple_items(ouro_object *t) { return ((ouro_varobject *)t)->items; }
static inline size_t tuple_len(ouro_object *t) { return ((ouro_varobject *)t)->size; }

/* Checks that t is a tuple, setting the error for fn. */
static bool tuple_check(ouro_object *t, const char *fn) { return _ouro_arg(t, &ouro_tuple_type, fn) != NULL; }

/* ---- the type's callbacks ------------------------------------------------------------------------------ */

static void tuple_dealloc(ouro_object *self) {
    ouro_object **items = tuple_items(self);
    for (size_t i = tuple_len(self); i-- > 0;) ouro_xdecref(items[i]);
}

/* Visits every non-NULL item once. */
static int tuple_traverse(ouro_object *self, ouro_visitproc visit, void *arg) {
    ouro_object **items = tuple_items(self);
    for (size_t i = 0, n = tuple_len(self); i < n; i++) {
        if (items[i]) {
            int r = visit(items[i], arg);
            if (r) return r;
        }
    }
    return 0;
}

/* The collector's: drops every item (the tuple is unreachable, nobody reads it). */
static void tuple_clear(ouro_object *self) {
    ouro_object **items = tuple_items(self);
    for (size_t i = 0, n = tuple_len(self); i < n; i++) ouro_setref(&items[i], NULL);
}

static bool tuple_item_unset(ouro_object *t, size_t i, const char *fn) {
    _ouro_err_set(OURO_ERR_STATE, "%s: item %zu of the tuple is not set (a tuple still being built)", fn, i);
    (void)t;
    return false;
}

/* CPython's tuplehash (after xxHash's round: multiply, rotate, multiply), 64-bit lanes. */
#define TUPLE_XXPRIME_1 11400714785074694791ull
#define TUPLE_XXPRIME_2 14029467366897019727ull
#define TUPLE_XXPRIME_5 2870177450012600261ull

static int64_t tuple_hash(ouro_object *self) {
    ouro_object **items = tuple_items(self);
    size_t n = tuple_len(self);
    uint64_t acc = TUPLE_XXPRIME_5;
    for (size_t i = 0; i < n; i++) {
        if (!items[i]) return tuple_item_unset(self, i, "ouro_hash"), -1;
        int64_t lane = ouro_hash(items[i]);
        if (lane == -1) return -1;
        acc += (uint64_t)lane * TUPLE_XXPRIME_2;
        acc = (acc << 31) | (acc >> 33);
        acc *= TUPLE_XXPRIME_1;
    }
    acc += (uint64_t)n ^ (TUPLE_XXPRIME_5 ^ 3527539ull); /* the length, so () and (x,) with x's hash differ */
    return acc == (uint64_t)-1 ? 1546275796 : (int64_t)acc;
}

static int tuple_eq(ouro_object *self, ouro_object *other) {
    if (other->type != &ouro_tuple_type) return 0;
    size_t n = tuple_len(self);
    if (tuple_len(other) != n) return 0;
    ouro_object **a = tuple_items(self), **b = tuple_items(other);
    for (size_t i = 0; i < n; i++) {
        if (!a[i] || !b[i]) return tuple_item_unset(!a[i] ? self : other, i, "ouro_eq"), -1;
        int r = ouro_eq(a[i], b[i]);
        if (r != 1) return r;
    }
    return 1;
}

static ouro_object *tuple_repr_item(ouro_object *t, size_t i, bool *error) {
    if (i >= tuple_len(t)) return NULL;
    ouro_object *v = tuple_items(t)[i];
    if (!v) {
        *error = !tuple_item_unset(t, i, "ouro_repr");
        return NULL;
    }
    return ouro_newref(v);
}

static ouro_object *tuple_repr(ouro_object *self) { return _ouro_seq_repr(self, "(", ")", true, tuple_repr_item); }

/* ---- the empty tuple --------------------------------------------------------------------------------------
 * Made at first use and published with a CAS: the loser of a race frees its own (still private) one. */
static ouro_object *tuple_empty; /* acquire/release: pairs with the CAS in tuple_empty_get() */

static ouro_object *tuple_empty_get(void) {
    /* acquire: pairs with the release CAS below, so the winner's header stores are visible */
    ouro_object *e = __atomic_load_n(&tuple_empty, __ATOMIC_ACQUIRE);
    if (OURO_LIKELY(e != NULL)) return e;
    ouro_object *mine = ouro_new_var(&ouro_tuple_type, 0);
    if (!mine) return NULL;
    uint32_t local = __atomic_load_n(&mine->ref_local, __ATOMIC_RELAXED);
    uintptr_t tid = __atomic_load_n(&mine->tid, __ATOMIC_RELAXED);
    ouro_immortalize(mine);
    /* release: pairs with the acquire load above (and this one's failure load, for the loser) */
    if (__atomic_compare_exchange_n(&tuple_empty, &e, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return mine;
    /* Lost: nobody else saw ours; make it mortal again (its creator's owner and count) and free it. */
    __atomic_store_n(&mine->tid, tid, __ATOMIC_RELAXED);
    __atomic_store_n(&mine->ref_local, local, __ATOMIC_RELAXED);
    ouro_decref(mine);
    return e;
}

/* ---- public API ---------------------------------------------------------------------------------------- */

ouro_object *ouro_tuple_new(size_t n) {
    if (n == 0) return tuple_empty_get();
    return ouro_new_var(&ouro_tuple_type, n);
}

int ouro_tuple_set_item_steal(ouro_object *t, size_t i, ouro_object *v) {
    const char *why = NULL;
    ouro_err code = OURO_ERR_INDEX;
    if (!tuple_check(t, "ouro_tuple_set_item_steal")) {
        ouro_xdecref(v);
        return -1;
    }
    if (i >= tuple_len(t)) why = "index out of range";
    else if (ouro_refcount(t) != 1) why = "the tuple is shared (its reference count is not 1)", code = OURO_ERR_STATE;
    if (why) {
        _ouro_err_set(code, "ouro_tuple_set_item_steal: %s (index %zu, size %zu)", why, i, tuple_len(t));
        ouro_xdecref(v);
        return -1;
    }
    ouro_setref(&tuple_items(t)[i], v);
    return 0;
}

ouro_object *ouro_tuple_from_array(size_t n, ouro_object *const *items) {
    if (n && !items) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_tuple_from_array: items is NULL");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!items[i]) {
            _ouro_err_set(OURO_ERR_INVALID, "ouro_tuple_from_array: item %zu is NULL", i);
            return NULL;
        }
    }
    ouro_object *t = ouro_tuple_new(n);
    if (!t) return NULL;
    ouro_object **dst = tuple_items(t);
    for (size_t i = 0; i < n; i++) dst[i] = ouro_newref(items[i]);
    return t;
}

ouro_object *_ouro_tuple_steal_array(size_t n, ouro_object **items) {
    ouro_object *t = ouro_tuple_new(n);
    if (!t) {
        for (size_t i = 0; i < n; i++) ouro_decref(items[i]);
        return NULL;
    }
    if (n) memcpy(tuple_items(t), items, n * sizeof *items);
    return t;
}

ouro_object *ouro_tuple_pack(size_t n, ...) {
    ouro_object *t = ouro_tuple_new(n);
    if (!t) return NULL;
    ouro_object **dst = tuple_items(t);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        ouro_object *v = va_arg(ap, ouro_object *);
        if (!v) {
            va_end(ap);
            ouro_decref(t); /* the items stored so far go with it */
            _ouro_err_set(OURO_ERR_INVALID, "ouro_tuple_pack: item %zu is NULL", i);
            return NULL;
        }
        dst[i] = ouro_newref(v);
    }
    va_end(ap);
    return t;
}

ouro_object *ouro_tuple_get(ouro_object *t, size_t i) {
    if (!tuple_check(t, "ouro_tuple_get")) return NULL;
    if (i >= tuple_len(t)) {
        _ouro_err_set(OURO_ERR_INDEX, "ouro_tuple_get: index %zu out of range (size %zu)", i, tuple_len(t));
        return NULL;
    }
    ouro_object *v = tuple_items(t)[i];
    if (!v) return tuple_item_unset(t, i, "ouro_tuple_get"), NULL;
    return ouro_newref(v);
}

size_t ouro_tuple_size(ouro_object *t) {
    if (!tuple_check(t, "ouro_tuple_size")) return (size_t)-1;
    return tuple_len(t);
}

/* ---- the sequence repr (core/seq.h) ----------------------------------------------------------------------- */

ouro_object *_ouro_seq_repr(ouro_object *seq, const char *open, const char *close, bool one_comma,
                            _ouro_seq_item_fn item) {
    repr_frame frame;
    int active = _ouro_repr_enter(&frame, seq);
    if (active) return active < 0 ? NULL : ouro_str_from_format("%s...%s", open, close);
    repr_buf b = {0};
    _ouro_repr_put_cstr(&b, open);
    size_t i = 0;
    for (; !b.failed; i++) {
        bool error = false;
        ouro_object *v = item(seq, i, &error);
        if (!v) {
            b.failed = error;
            break;
        }
        if (i) _ouro_repr_put(&b, ", ", 2);
        _ouro_repr_put_obj(&b, v);
        ouro_decref(v);
    }
    if (one_comma && i == 1) _ouro_repr_put(&b, ",", 1);
    _ouro_repr_put_cstr(&b, close);
    _ouro_repr_leave(&frame);
    return _ouro_repr_finish(&b);
}
