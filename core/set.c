/* core/set.c — set: the dict's table (core/dictobject.h) with every value the immortal sentinel
 * _ouro_set_present. Insert, delete, the lock-free contains and the table's life cycle are the dict's
 * (one copy of each protocol); this file adds the set's API, its eq, its repr and the set operations
 * (each reads its operands as snapshots, so no two locks are ever held at once). */
#include "core/dictobject.h"
#include "core/repr.h"

#include "ouro/str.h"

static ouro_type set_present_type = {.head = OURO_TYPE_HEAD, .name = "set.present", .basic_size = sizeof(ouro_object)};

ouro_object _ouro_set_present = {
    .ref_local = OURO_IMMORTAL_LOCAL,
    .ref_shared = OURO_SHARED_MERGED,
    .type = &set_present_type,
};

static ouro_object *set_repr(ouro_object *self);
static int set_eq_slot(ouro_object *self, ouro_object *other);

ouro_type ouro_set_type = {
    .head = OURO_TYPE_HEAD,
    .name = "set",
    .basic_size = sizeof(dict_object),
    .flags = OURO_TYPE_GC,
    .dealloc = _ouro_dict_dealloc,
    .traverse = _ouro_dict_traverse,
    .clear = _ouro_dict_tp_clear,
    .hash = ouro_unhashable,
    .eq = set_eq_slot,
    .repr = set_repr,
    .extra_size = _ouro_dict_extra_size,
};

/* s as a set, or NULL with INVALID (NULL) / TYPE (another type). */
static dict_object *set_arg(ouro_object *s, const char *fn) { return _ouro_arg(s, &ouro_set_type, fn); }

#define elem_hash _ouro_key_hash

ouro_object *ouro_set_new(void) { return ouro_new(&ouro_set_type); }

int ouro_set_add(ouro_object *s, ouro_object *key) {
    dict_object *o = set_arg(s, "ouro_set_add");
    if (!o) return -1;
    int64_t hash = elem_hash(key, "ouro_set_add");
    if (hash == -1) return -1;
    return _ouro_dict_store(o, key, hash, &_ouro_set_present, true, NULL) < 0 ? -1 : 0;
}

int ouro_set_discard(ouro_object *s, ouro_object *key) {
    dict_object *o = set_arg(s, "ouro_set_discard");
    if (!o) return -1;
    int64_t hash = elem_hash(key, "ouro_set_discard");
    if (hash == -1) return -1;
    return _ouro_dict_remove(o, key, hash, NULL);
}

int ouro_set_remove(ouro_object *s, ouro_object *key) {
    int r = ouro_set_discard(s, key);
    if (r == 0) _ouro_err_set(OURO_ERR_KEY, "ouro_set_remove: key not found (a '%s')", key->type->name);
    return r == 1 ? 0 : -1;
}

int ouro_set_contains(ouro_object *s, ouro_object *key) {
    dict_object *o = set_arg(s, "ouro_set_contains");
    if (!o) return -1;
    int64_t hash = elem_hash(key, "ouro_set_contains");
    if (hash == -1) return -1;
    return _ouro_dict_lookup(o, key, hash, NULL);
}

size_t ouro_set_size(ouro_object *s) {
    dict_object *o = set_arg(s, "ouro_set_size");
    return o ? ouro_load_relaxed(&o->used) : (size_t)-1;
}

ouro_object *ouro_set_pop(ouro_object *s) {
    dict_object *o = set_arg(s, "ouro_set_pop");
    if (!o) return NULL;
    ouro_object *key, *present;
    int r = _ouro_dict_pop_last(o, &key, &present);
    if (r < 0) return NULL;
    if (r == 0) {
        _ouro_err_set(OURO_ERR_KEY, "ouro_set_pop: pop from an empty set");
        return NULL;
    }
    ouro_decref(present); /* the sentinel: immortal */
    return key;
}

int ouro_set_clear(ouro_object *s) {
    dict_object *o = set_arg(s, "ouro_set_clear");
    if (!o) return -1;
    _ouro_dict_clear(o);
    return 0;
}

ouro_object *ouro_set_copy(ouro_object *s) {
    dict_object *o = set_arg(s, "ouro_set_copy");
    if (!o) return NULL;
    ouro_object *c = ouro_set_new();
    if (c && _ouro_dict_copy_into((dict_object *)c, o) != 0) {
        ouro_decref(c);
        return NULL;
    }
    return c;
}

int ouro_set_next(ouro_object *s, size_t *pos, ouro_object **key) {
    dict_object *o = set_arg(s, "ouro_set_next");
    if (!o) return -1;
    if (!pos) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_set_next: pos is NULL");
        return -1;
    }
    return _ouro_dict_next(o, pos, key, NULL);
}

/* Adds the elements of src's snapshot to dst: all of them, or (filter_by set) those that are
 * (want = 1) or are not (want = 0) in filter_by. 0, or -1 with an error. */
static int set_merge(dict_object *dst, dict_object *src, dict_object *filter_by, int want) {
    dict_item *items;
    size_t n;
    if (_ouro_dict_items(src, &items, &n) != 0) return -1;
    int r = 0;
    for (size_t j = 0; j < n && r == 0; j++) {
        if (filter_by) {
            int in = _ouro_dict_lookup(filter_by, items[j].key, items[j].hash, NULL);
            if (in < 0) r = -1;
            if (in != want) continue;
        }
        if (_ouro_dict_store(dst, items[j].key, items[j].hash, &_ouro_set_present, true, NULL) < 0) r = -1;
    }
    _ouro_dict_items_free(items, n);
    return r;
}

int ouro_set_update(ouro_object *s, ouro_object *other) {
    dict_object *o = set_arg(s, "ouro_set_update");
    dict_object *src = o ? set_arg(other, "ouro_set_update") : NULL;
    return src ? set_merge(o, src, NULL, 0) : -1;
}

/* A new set from a's elements (filtered by b as set_merge does), then, for a union, b's. */
static ouro_object *set_operation(ouro_object *a, ouro_object *b, const char *fn, int op) {
    dict_object *x = set_arg(a, fn);
    dict_object *y = x ? set_arg(b, fn) : NULL;
    if (!y) return NULL;
    ouro_object *c = ouro_set_new();
    if (!c) return NULL;
    int r = op == '|' ? set_merge((dict_object *)c, x, NULL, 0) : set_merge((dict_object *)c, x, y, op == '&');
    if (r == 0 && op == '|') r = set_merge((dict_object *)c, y, NULL, 0);
    if (r != 0) {
        ouro_decref(c);
        return NULL;
    }
    return c;
}

ouro_object *ouro_set_union(ouro_object *a, ouro_object *b) { return set_operation(a, b, "ouro_set_union", '|'); }
ouro_object *ouro_set_intersection(ouro_object *a, ouro_object *b) {
    return set_operation(a, b, "ouro_set_intersection", '&');
}
ouro_object *ouro_set_difference(ouro_object *a, ouro_object *b) {
    return set_operation(a, b, "ouro_set_difference", '-');
}

/* Same size, and each of self's elements (a snapshot) is in other. */
static int set_eq_slot(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_set_type)) return 0;
    dict_object *a = (dict_object *)self, *b = (dict_object *)other;
    if (a == b) return 1;
    dict_item *items;
    size_t n;
    if (_ouro_dict_items(a, &items, &n) != 0) return -1;
    int r = n == ouro_load_relaxed(&b->used);
    for (size_t j = 0; j < n && r == 1; j++) r = _ouro_dict_lookup(b, items[j].key, items[j].hash, NULL);
    _ouro_dict_items_free(items, n);
    return r;
}

int ouro_set_eq(ouro_object *a, ouro_object *b) {
    if (!set_arg(a, "ouro_set_eq")) return -1;
    if (!b) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_set_eq: other is NULL");
        return -1;
    }
    return set_eq_slot(a, b);
}

int ouro_set_table_info(ouro_object *s, ouro_dict_table_t *out) {
    dict_object *o = set_arg(s, "ouro_set_table_info");
    if (!o) return -1;
    if (!out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_set_table_info: out is NULL");
        return -1;
    }
    _ouro_dict_table_info(o, out);
    return 0;
}

static ouro_object *set_repr(ouro_object *self) {
    repr_frame frame;
    int active = _ouro_repr_enter(&frame, self);
    if (active) return active < 0 ? NULL : ouro_str_from_cstr("{...}");
    repr_buf b = {0};
    dict_item *items;
    size_t n;
    if (_ouro_dict_items((dict_object *)self, &items, &n) != 0) b.failed = true;
    else {
        if (n == 0) _ouro_repr_put(&b, "set()", 5);
        else _ouro_repr_put(&b, "{", 1);
        for (size_t j = 0; j < n; j++) {
            if (j) _ouro_repr_put(&b, ", ", 2);
            _ouro_repr_put_obj(&b, items[j].key);
        }
        if (n) _ouro_repr_put(&b, "}", 1);
        _ouro_dict_items_free(items, n);
    }
    _ouro_repr_leave(&frame);
    return _ouro_repr_finish(&b);
}
