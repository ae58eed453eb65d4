/* core/dictobject.h — the hash table that dict and set share (core/dict.c implements it, core/set.c
 * uses it): the object layout and the table engine. docs/objects-dict.md has the layout, the probing,
 * the load bound and the lock-free lookup protocol.
 *
 * A set is a dict whose values are all _ouro_set_present (an immortal sentinel): the same table, the
 * same lock-free lookup, the same locked insert and delete. Only the public functions and the repr,
 * eq and traverse differ. */
#ifndef OURO_CORE_DICTOBJECT_H
#define OURO_CORE_DICTOBJECT_H
#ifndef OURO_BUILD_CORE
#error "core/dictobject.h is internal to libouro"
#endif

#include "core/objimpl.h"
#include "ouro/dict.h"

typedef struct dict_keys dict_keys;

/* A dict or set. Concurrency (who writes, who reads each field):
 *   keys     the current table (NULL: empty, nothing allocated). Written under head.lock with release
 *            (dict_publish), read by lock-free lookups with acquire.
 *   used     live entries. Written under head.lock, read anywhere (relaxed).
 *   version  bumped under head.lock by every change to the set of keys (insert of a new key, delete,
 *            table replaced); read under head.lock only. A locked probe that drops the lock to call a
 *            key's eq restarts when it changed meanwhile. Also each new table's generation. */
typedef struct dict_object {
    ouro_object head;
    _Atomic(dict_keys *) keys;
    _Atomic size_t used;
    uint64_t version;
} dict_object;

/* One of a snapshot's items (new references). */
typedef struct dict_item {
    int64_t hash;
    ouro_object *key, *value;
} dict_item;

/* The value a set stores for each of its keys: immortal, never visited, never returned. */
OURO_INTERNAL extern ouro_object _ouro_set_present;

/* Lock-free lookup (with the locked fallback): 1 and *value (a new reference; NULL to not take one),
 * 0 when missing, -1 with an error (an eq failed, or NOMEM attaching the thread). */
OURO_INTERNAL int _ouro_dict_lookup(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value);

/* Stores key -> value. only_if_missing: keep the value already there (setdefault, set add). *current,
 * when not NULL, gets a new reference to the value d holds for key afterwards. 1 when key was added,
 * 0 when it was there, -1 with an error. Takes its own references. */
OURO_INTERNAL int _ouro_dict_store(dict_object *d, ouro_object *key, int64_t hash, ouro_object *value,
                                   bool only_if_missing, ouro_object **current);

/* Removes key: 1 and *value (d's reference handed over; NULL: dropped), 0 when missing, -1 error. */
OURO_INTERNAL int _ouro_dict_remove(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value);

/* Removes the last entry in insertion order: 1 with *key and *value (d's references handed over), 0
 * when empty. */
OURO_INTERNAL int _ouro_dict_pop_last(dict_object *d, ouro_object **key, ouro_object **value);

/* Empties d (the old table is freed after a grace period; its references are dropped unlocked). */
OURO_INTERNAL void _ouro_dict_clear(dict_object *d);

/* Fills dst (empty, not yet shared) with src's entries. 0, or -1 with OURO_ERR_NOMEM. */
OURO_INTERNAL int _ouro_dict_copy_into(dict_object *dst, dict_object *src);

/* The next live entry at or after *pos (an entry index of the current table), locked: 1 with new
 * references (either out pointer may be NULL), 0 at the end. */
OURO_INTERNAL int _ouro_dict_next(dict_object *d, size_t *pos, ouro_object **key, ouro_object **value);

/* A snapshot of d's entries in order (new references; *items from ouro_alloc, NULL when empty). 0, or
 * -1 with OURO_ERR_NOMEM. Release with _ouro_dict_items_free. */
OURO_INTERNAL int _ouro_dict_items(dict_object *d, dict_item **items, size_t *n);
OURO_INTERNAL void _ouro_dict_items_free(dict_item *items, size_t n);

/* Type callbacks shared by dict and set. */
OURO_INTERNAL void _ouro_dict_dealloc(ouro_object *self);
OURO_INTERNAL int _ouro_dict_traverse(ouro_object *self, ouro_visitproc visit, void *arg);
OURO_INTERNAL void _ouro_dict_tp_clear(ouro_object *self);
OURO_INTERNAL size_t _ouro_dict_extra_size(ouro_object *self);

/* The table's shape for ouro_dict_table_info / ouro_set_table_info. */
OURO_INTERNAL void _ouro_dict_table_info(dict_object *d, ouro_dict_table_t *out);

#endif /* OURO_CORE_DICTOBJECT_H */
