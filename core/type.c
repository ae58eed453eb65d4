/* core/type.c — types: the type of types, types made from a spec (with object-reference slots), the
 * generic hash and equality, and the errors the built-in types share. */
#include "core/objimpl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

ouro_type ouro_type_type = {
    .head = OURO_TYPE_HEAD,
    .name = "type",
    .basic_size = sizeof(ouro_type),
    .hash = NULL, /* by identity */
};

/* ---- errors --------------------------------------------------------------------------------------------- */

void *_ouro_err_type(const char *fn, const char *expected, const ouro_object *got) {
    _ouro_err_set(OURO_ERR_TYPE, "%s: expected %s, got %s", fn, expected, got ? got->type->name : "NULL");
    return NULL;
}

void *_ouro_arg_error(const ouro_object *o, const ouro_type *t, const char *fn) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "%s: %s is NULL", fn, t->name);
        return NULL;
    }
    _ouro_err_set(OURO_ERR_TYPE, "%s: expected a %s, got %s", fn, t->name, o->type->name);
    return NULL;
}

int64_t _ouro_key_hash(ouro_object *key, const char *fn) {
    if (!key) {
        _ouro_err_set(OURO_ERR_INVALID, "%s: key is NULL", fn);
        return -1;
    }
    return ouro_hash(key);
}

int _ouro_err_type_int(const char *fn, const char *expected, const ouro_object *got) {
    _ouro_err_type(fn, expected, got);
    return -1;
}

/* ---- generic operations -------------------------------------------------------------------------------- */

int64_t ouro_hash_pointer(const void *p) {
    /* CPython's: rotate the alignment zeros away so nearby objects spread over a table. */
    uint64_t y = (uint64_t)(uintptr_t)p;
    int64_t h = (int64_t)((y >> 4) | (y << 60));
    return h == -1 ? -2 : h;
}

int64_t ouro_unhashable(ouro_object *self) {
    _ouro_err_set(OURO_ERR_TYPE, "unhashable type: '%s'", self->type->name);
    return -1;
}

/* Nesting of the generic operations (a tuple's hash hashes its items, ...): a 10-million-deep tuple
 * must give an error, not overflow the stack. */
enum { TYPE_MAX_DEPTH = 4000 };
static __thread unsigned tls_type_depth;

static bool type_enter(const char *fn) {
    if (tls_type_depth >= TYPE_MAX_DEPTH) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "%s: objects nested more than %d deep", fn, TYPE_MAX_DEPTH);
        return false;
    }
    tls_type_depth++;
    return true;
}

static void type_leave(void) { tls_type_depth--; }

int64_t ouro_hash(ouro_object *o) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_hash: object is NULL");
        return -1;
    }
    if (!o->type->hash) return ouro_hash_pointer(o);
    if (!type_enter("ouro_hash")) return -1;
    int64_t h = o->type->hash(o);
    type_leave();
    if (h == -1 && !ouro_err_occurred())
        _ouro_err_set(OURO_ERR_TYPE, "ouro_hash: the hash of '%s' failed without an error", o->type->name);
    return h;
}

int ouro_eq(ouro_object *a, ouro_object *b) {
    if (!a || !b) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_eq: object is NULL");
        return -1;
    }
    if (a == b) return 1;
    if (!type_enter("ouro_eq")) return -1;
    int r = 0;
    if (a->type->eq) r = a->type->eq(a, b);
    if (r == 0 && b->type != a->type && b->type->eq) r = b->type->eq(b, a);
    type_leave();
    return r;
}

/* ---- types from a spec --------------------------------------------------------------------------------- */

int _ouro_type_traverse_slots(ouro_object *self, ouro_visitproc visit, void *arg) {
    return _ouro_slots_traverse(self, visit, arg);
}

/* The spec's callbacks, kept after the type for the generated traverse and clear. */
typedef struct heap_type {
    ouro_type type;
    int (*traverse)(ouro_object *self, ouro_visitproc visit, void *arg);
    void (*clear)(ouro_object *self);
    struct heap_type *freed_next; /* debug builds: on the quarantine of freed types */
    char names[]; /* the name, then the slot names, NUL-separated */
} heap_type;

/* Debug builds (level >= 1): freed heap types are kept, marked, so that a second ouro_type_free or an
 * ouro_new of a freed type is an error naming it rather than a use of freed memory. A few hundred
 * bytes per freed type; the list keeps them reachable for leak checkers. */
ouro_type _ouro_type_freed = {.name = "(freed type)"};
static pthread_mutex_t freed_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static heap_type *freed_types;                                 /* freed_lock */

static int heap_type_traverse(ouro_object *self, ouro_visitproc visit, void *arg) {
    const heap_type *h = (const heap_type *)self->type;
    if (h->traverse) {
        int r = h->traverse(self, visit, arg);
        if (r) return r;
    }
    return _ouro_type_traverse_slots(self, visit, arg);
}

static void heap_type_clear(ouro_object *self) {
    const heap_type *h = (const heap_type *)self->type;
    if (h->clear) h->clear(self);
    for (size_t i = 0; i < self->type->nslots; i++) ouro_slot_set(self, i, NULL);
}

ouro_type *ouro_type_new(const ouro_type_spec *spec) {
    const char *why = NULL;
    size_t nslots = 0, names_len = 0;
    if (!spec) why = "spec is NULL";
    else if (!spec->name || !spec->name[0]) why = "the spec has no name";
    else if (spec->basic_size && spec->basic_size < (spec->item_size ? sizeof(ouro_varobject) : sizeof(ouro_object)))
        why = "basic_size is smaller than the header";
    if (!why) {
        names_len = strlen(spec->name) + 1;
        for (const char *const *s = spec->slots; s && *s; s++, nslots++) {
            if (!**s) why = "a slot name is empty";
            for (const char *const *d = spec->slots; d != s; d++)
                if (strcmp(*d, *s) == 0) why = "two slots have the same name";
            names_len += strlen(*s) + 1;
        }
    }
    if (!why && (spec->basic_size > OURO_OBJECT_MAX_SIZE ||
                 nslots > OURO_OBJECT_MAX_SIZE / sizeof(ouro_object *)))
        why = "the instances would be larger than OURO_OBJECT_MAX_SIZE";
    size_t base = spec && spec->basic_size ? spec->basic_size : (spec && spec->item_size ? sizeof(ouro_varobject) : sizeof(ouro_object));
    size_t slot_offset = (base + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
    if (!why && (slot_offset + nslots * sizeof(ouro_object *) > OURO_OBJECT_MAX_SIZE))
        why = "the instances would be larger than OURO_OBJECT_MAX_SIZE";
    if (!why && spec->item_size && nslots) why = "a variable-size type cannot have slots";
    if (why) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_type_new: %s", why);
        return NULL;
    }
    heap_type *h = _ouro_sys_calloc(1, sizeof *h + names_len + (nslots + 1) * sizeof(char *));
    if (!h) {
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_type_new: out of memory");
        return NULL;
    }
    const char **names = (const char **)((char *)(h + 1));
    char *p = (char *)(names + nslots + 1);
    size_t n = strlen(spec->name) + 1;
    memcpy(p, spec->name, n);
    h->type.name = p;
    p += n;
    for (size_t i = 0; i < nslots; i++) {
        n = strlen(spec->slots[i]) + 1;
        memcpy(p, spec->slots[i], n);
        names[i] = p;
        p += n;
    }
    ouro_type *t = &h->type;
    t->head = (ouro_object)OURO_TYPE_HEAD;
    t->basic_size = nslots ? slot_offset + nslots * sizeof(ouro_object *) : base;
    t->item_size = spec->item_size;
    t->flags = (spec->flags & OURO_TYPE_GC) | OURO_TYPE_HEAP;
    t->nslots = nslots;
    t->slot_offset = slot_offset;
    t->slot_names = names;
    t->dealloc = spec->dealloc;
    t->traverse = spec->traverse ? heap_type_traverse : nslots ? _ouro_type_traverse_slots : NULL;
    t->clear = spec->clear || nslots ? heap_type_clear : NULL;
    h->traverse = spec->traverse;
    h->clear = spec->clear;
    t->finalize = spec->finalize;
    t->hash = spec->hash;
    t->eq = spec->eq;
    t->repr = spec->repr;
    return t;
}

int ouro_type_free(ouro_type *type) {
    if (type && type->head.type == &_ouro_type_freed) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_type_free: type %p ('%s') was freed already", (void *)type, type->name);
        return -1;
    }
    if (!type || type->head.type != &ouro_type_type || !(type->flags & OURO_TYPE_HEAP)) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_type_free: %s", !type ? "type is NULL" : "not a type made by ouro_type_new");
        return -1;
    }
    ouro_type_stats st;
    ouro_type_get_stats(type, &st);
    if (st.live) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_type_free: %zu instances of '%s' are alive", st.live, type->name);
        return -1;
    }
    _ouro_type_forget(type);
    if (OURO_DEBUG_LEVEL >= 1) {
        heap_type *h = (heap_type *)type;
        pthread_mutex_lock(&freed_lock);
        type->head.type = &_ouro_type_freed;
        h->freed_next = freed_types;
        freed_types = h;
        pthread_mutex_unlock(&freed_lock);
        return 0;
    }
    free(type); /* the heap_type starts with it */
    return 0;
}

/* ---- slots --------------------------------------------------------------------------------------------- */

long ouro_slot_index(const ouro_type *type, const char *name) {
    if (type && name)
        for (size_t i = 0; i < type->nslots; i++)
            if (strcmp(type->slot_names[i], name) == 0) return (long)i;
    _ouro_err_set(OURO_ERR_INVALID, "ouro_slot_index: %s%s%s", !type ? "type is NULL" : !name ? "name is NULL" : "'",
                  type && name ? type->name : "", type && name ? "' has no slot of that name" : "");
    return -1;
}

static bool slot_check(const ouro_object *o, size_t i, const char *fn) {
    if (!o) {
        _ouro_err_set(OURO_ERR_INVALID, "%s: object is NULL", fn);
        return false;
    }
    if (i >= o->type->nslots) {
        _ouro_err_set(OURO_ERR_INDEX, "%s: '%s' has %zu slots, not %zu", fn, o->type->name, o->type->nslots, i + 1);
        return false;
    }
    return true;
}

ouro_object *ouro_slot_get(ouro_object *o, size_t i) {
    if (!slot_check(o, i, "ouro_slot_get") || !_ouro_object_thread_ready_on("ouro_slot_get", o)) return NULL;
    ouro_object **slot = &_ouro_slots_of(o)[i];
    for (;;) { /* lock-free: core/objimpl.h */
        ouro_object *v = _ouro_slot_load(slot);
        if (!v) return NULL;
        if (_ouro_try_incref(v)) {
            if (_ouro_slot_load(slot) == v) return v;
            ouro_decref(v);
            continue;
        }
        ouro_lock(&o->lock);
        v = _ouro_slot_load(slot);
        if (v) {
            ouro_incref(v);
            _ouro_set_maybe_shared(v);
        }
        ouro_unlock(&o->lock);
        return v;
    }
}

int ouro_slot_set(ouro_object *o, size_t i, ouro_object *value) {
    if (!slot_check(o, i, "ouro_slot_set")) return -1;
    ouro_object **slot = &_ouro_slots_of(o)[i];
    ouro_xincref(value);
    ouro_lock(&o->lock);
    ouro_object *old = _ouro_slot_load(slot);
    _ouro_slot_store(slot, value);
    ouro_unlock(&o->lock);
    ouro_xdecref(old);
    return 0;
}
