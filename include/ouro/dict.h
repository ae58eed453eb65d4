/* ouro/dict.h — dict and set: thread-safe hash tables with lock-free lookups.
 *
 * A dict is compact and keeps insertion order (CPython 3.6+'s layout): an index array probed with
 * perturbation, and a dense array of (hash, key, value) entries in insertion order. A set is the same
 * table without values. docs/objects-dict.md has the layout and the concurrency protocol.
 *
 * Thread safety. Every function may be called from any thread on a shared dict or set. Mutations
 * take the object's lock (ouro/lock.h); lookups (ouro_dict_get_ref, get, contains, ouro_set_contains)
 * are lock-free in the common case and take the lock only once for an object not yet marked shared.
 * A key's hash and eq, and any dealloc a dropped reference triggers, never run with the lock held, so
 * they may use the same dict without deadlocking. Iteration under concurrent mutation never crashes
 * and yields only live objects, but may miss or repeat entries when the table is rebuilt meanwhile.
 *
 * Conventions: arguments are borrowed (never stolen); returned objects are new references. Errors:
 * NULL / -1 with the thread's error set: OURO_ERR_INVALID (a NULL argument), OURO_ERR_TYPE (not a
 * dict/set, or an unhashable key such as a dict), OURO_ERR_KEY (a missing key), OURO_ERR_NOMEM, or
 * whatever a key's hash or eq set. Calling threads are attached on first use. */
#ifndef OURO_DICT_H
#define OURO_DICT_H

#include <stddef.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

extern ouro_type ouro_dict_type; /* "dict": GC-tracked, unhashable */
extern ouro_type ouro_set_type;  /* "set": GC-tracked, unhashable */

/* The shape of a dict's or set's table (introspection and tests). */
typedef struct ouro_dict_table {
    size_t slots;       /* index slots (a power of two; 0 before the first insert) */
    size_t usable;      /* entry capacity: slots * 2 / 3 */
    size_t entries;     /* entries used, live and deleted (a rebuild drops the deleted ones) */
    size_t used;        /* live entries */
    size_t index_bytes; /* bytes per index slot: 1, 2, 4 or 8 */
} ouro_dict_table_t;

/* ---- dict --------------------------------------------------------------------------------------------- */

/* A new empty dict (no table is allocated until the first insert). NULL with OURO_ERR_NOMEM. */
ouro_object *ouro_dict_new(void);

/* d[key] = value: adds key (in last position) or replaces its value (keeping its position). The hash
 * is computed before the lock is taken; the replaced value is dropped after it is released. 0, or -1
 * (INVALID, TYPE for a non-dict or an unhashable key, NOMEM, a hash/eq error). */
int ouro_dict_set(ouro_object *d, ouro_object *key, ouro_object *value);

/* Looks key up (like CPython's PyDict_GetItemRef): 1 with *out a new reference to the value, 0 with
 * *out NULL when key is missing (no error set), -1 with *out NULL and an error. Lock-free. */
int ouro_dict_get_ref(ouro_object *d, ouro_object *key, ouro_object **out);

/* d[key]: a new reference to the value, or NULL with OURO_ERR_KEY when missing (or another error). */
ouro_object *ouro_dict_get(ouro_object *d, ouro_object *key);

/* del d[key]: 0, or -1 with OURO_ERR_KEY when missing (or another error). */
int ouro_dict_del(ouro_object *d, ouro_object *key);

/* d.pop(key, default): removes key and returns its value (a new reference); when key is missing,
 * returns a new reference to dflt, or NULL with OURO_ERR_KEY when dflt is NULL. */
ouro_object *ouro_dict_pop(ouro_object *d, ouro_object *key, ouro_object *dflt);

/* key in d: 1, 0, or -1 with an error. Lock-free. */
int ouro_dict_contains(ouro_object *d, ouro_object *key);

/* len(d) (a snapshot while other threads mutate it), or (size_t)-1 with INVALID / TYPE. */
size_t ouro_dict_size(ouro_object *d);

/* Removes every entry. The references are dropped after the lock is released; lock-free readers
 * still reading the old table keep it until a grace period ends. 0, or -1 with INVALID / TYPE. */
int ouro_dict_clear(ouro_object *d);

/* A shallow copy (same keys and values, same order; deleted entries dropped). NULL with an error. */
ouro_object *ouro_dict_copy(ouro_object *d);

/* d.update(other) for a dict other: sets each of other's entries in d, in other's order. other is
 * read as a snapshot first (never both locks at once: two threads updating each other cannot
 * deadlock). 0, or -1 with an error (d keeps the entries set before it). */
int ouro_dict_update(ouro_object *d, ouro_object *other);

/* d.setdefault(key, dflt): a new reference to d[key], first setting it to dflt when missing (one
 * atomic step: two racing setdefaults return the same value). NULL with an error. */
ouro_object *ouro_dict_setdefault(ouro_object *d, ouro_object *key, ouro_object *dflt);

/* Iteration in insertion order. Start with *pos = 0; each call returning 1 sets *key and *value (new
 * references; either pointer may be NULL) and advances *pos; 0 at the end; -1 with INVALID / TYPE.
 * Each step takes the lock briefly. Under concurrent mutation each step still returns a live entry,
 * but entries added or deleted meanwhile may or may not be seen, and a rebuild of the table (growth,
 * clear) may make the walk miss or repeat entries. */
int ouro_dict_next(ouro_object *d, size_t *pos, ouro_object **key, ouro_object **value);

/* The table's shape (a locked snapshot). 0, or -1 with INVALID / TYPE. */
int ouro_dict_table_info(ouro_object *d, ouro_dict_table_t *out);

/* The dict type's repr is "{k: v, ...}" (ouro_repr of each key and value; "{...}" for a dict that
 * contains itself), and its eq is "same keys with equal values" (ouro_eq). */

/* ---- set ---------------------------------------------------------------------------------------------- */

/* A new empty set. NULL with OURO_ERR_NOMEM. */
ouro_object *ouro_set_new(void);

/* Adds key (nothing happens when an equal key is there). 0, or -1 with an error. */
int ouro_set_add(ouro_object *s, ouro_object *key);

/* Removes key when present: 1 removed, 0 absent, -1 with an error. */
int ouro_set_discard(ouro_object *s, ouro_object *key);

/* Removes key: 0, or -1 with OURO_ERR_KEY when absent (or another error). */
int ouro_set_remove(ouro_object *s, ouro_object *key);

/* key in s: 1, 0, or -1 with an error. Lock-free. */
int ouro_set_contains(ouro_object *s, ouro_object *key);

/* len(s), or (size_t)-1 with INVALID / TYPE. */
size_t ouro_set_size(ouro_object *s);

/* Removes and returns (a new reference) the most recently added element; NULL with OURO_ERR_KEY when
 * s is empty (Python's KeyError). */
ouro_object *ouro_set_pop(ouro_object *s);

/* Removes every element. 0, or -1 with INVALID / TYPE. */
int ouro_set_clear(ouro_object *s);

/* A shallow copy. NULL with an error. */
ouro_object *ouro_set_copy(ouro_object *s);

/* Iteration in insertion order, as ouro_dict_next: 1 with *key (a new reference), 0 at the end. */
int ouro_set_next(ouro_object *s, size_t *pos, ouro_object **key);

/* Adds every element of other (a set) to s. 0, or -1 with an error. */
int ouro_set_update(ouro_object *s, ouro_object *other);

/* New sets: a | b, a & b, a - b (a and b are sets, read as snapshots). NULL with an error. */
ouro_object *ouro_set_union(ouro_object *a, ouro_object *b);
ouro_object *ouro_set_intersection(ouro_object *a, ouro_object *b);
ouro_object *ouro_set_difference(ouro_object *a, ouro_object *b);

/* a == b: both sets with the same elements. 1, 0 (also when b is not a set), -1 with an error. The
 * set type's eq is this; its repr is "{k1, k2}" ("set()" when empty). */
int ouro_set_eq(ouro_object *a, ouro_object *b);

/* The table's shape. 0, or -1 with INVALID / TYPE. */
int ouro_set_table_info(ouro_object *s, ouro_dict_table_t *out);

#ifdef __cplusplus
}
#endif
#endif /* OURO_DICT_H */
