/* ouro/list.h — tuple (immutable sequence) and list (mutable, thread-safe sequence).
 *
 * Conventions of this header (those of ouro/error.h): objects passed in are borrowed (never stolen,
 * except by ouro_tuple_set_item_steal), objects returned are new references; an object result is NULL
 * and an int result -1 on error, with the thread's error set: OURO_ERR_INVALID for a NULL argument,
 * OURO_ERR_TYPE for an object of the wrong type, OURO_ERR_INDEX for an index out of range,
 * OURO_ERR_NOMEM when memory runs out.
 *
 * Indices. Tuple indices are size_t: 0 <= i < size, no negative form. List indices are ptrdiff_t with
 * Python's meaning: a negative i counts from the end (-1 is the last item).
 *
 * Threads. Every list function may be called by any number of threads at once on the same list: each
 * mutation is atomic (done under the list's object lock), reads (ouro_list_get, iteration, size,
 * contains, index, equality, repr) take no lock in the common case and never return a freed object.
 * docs/objects-list.md has the layout, the lock-free read protocol and what iteration under
 * concurrent mutation may see. Tuples are immutable once built, so any thread may read one. */
#ifndef OURO_LIST_H
#define OURO_LIST_H

#include <stddef.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

extern ouro_type ouro_tuple_type;
extern ouro_type ouro_list_type;

/* ---- tuple ------------------------------------------------------------------------------------------ */

/* A new tuple of n items, all NULL, for its creator to fill with ouro_tuple_set_item_steal before it
 * shares the tuple. ouro_tuple_new(0) returns the empty tuple, an immortal singleton (it counts as one
 * live tuple in ouro_type_get_stats from its first use). NULL with OURO_ERR_OVERFLOW or
 * OURO_ERR_NOMEM. A tuple with an item still NULL may be freed, but hashing, comparing or printing it
 * fails with OURO_ERR_STATE, and ouro_tuple_get of that item returns NULL with OURO_ERR_STATE. */
ouro_object *ouro_tuple_new(size_t n);

/* Stores v in item i of tuple t (built by the caller, not shared yet: its count must be 1), stealing
 * v's reference; an item already there is dropped. The reference is stolen on failure too (v is
 * dropped). 0, or -1 with OURO_ERR_INVALID (t NULL), OURO_ERR_TYPE (t not a tuple), OURO_ERR_INDEX
 * (i >= size) or OURO_ERR_STATE (t is shared: its reference count is not 1). */
int ouro_tuple_set_item_steal(ouro_object *t, size_t i, ouro_object *v);

/* A new tuple of the n objects that follow (each an ouro_object *, not NULL; new references taken).
 * NULL with OURO_ERR_INVALID when one is NULL. */
ouro_object *ouro_tuple_pack(size_t n, ...);

/* A new tuple of items[0..n) (new references taken). NULL with OURO_ERR_INVALID when items is NULL
 * (and n > 0) or one of them is NULL. */
ouro_object *ouro_tuple_from_array(size_t n, ouro_object *const *items);

/* A new reference to item i of tuple t. No negative indices: i must be below the size (OURO_ERR_INDEX
 * otherwise). */
ouro_object *ouro_tuple_get(ouro_object *t, size_t i);

/* The number of items of tuple t, or (size_t)-1 with OURO_ERR_INVALID / OURO_ERR_TYPE. */
size_t ouro_tuple_size(ouro_object *t);

/* Tuples hash (combining their items' hashes, xxHash-style like CPython's; -1 with OURO_ERR_TYPE when
 * an item is unhashable), compare itemwise with ouro_eq (only with tuples), and print as "(1, 2)",
 * "(1,)" and "()". */

/* ---- list ------------------------------------------------------------------------------------------- */

/* A new empty list with room for capacity items before it grows (0: no array until the first item).
 * Growth then follows CPython: capacities 0, 4, 8, 16, 24, 32, 40, 52, 64, 76, ... for successive
 * appends. NULL with OURO_ERR_OVERFLOW or OURO_ERR_NOMEM. */
ouro_object *ouro_list_new(size_t capacity);

/* Appends v (a new reference taken). 0, or -1. */
int ouro_list_append(ouro_object *l, ouro_object *v);

/* Inserts v before index i (Python's list.insert: a negative i counts from the end, and i is clamped
 * to [0, size], so it never fails for the index). 0, or -1. */
int ouro_list_insert(ouro_object *l, ptrdiff_t i, ouro_object *v);

/* A new reference to item i (negative from the end). Lock-free unless the item has never been read
 * by another thread (then the list's lock is taken once). NULL with OURO_ERR_INDEX when out of range. */
ouro_object *ouro_list_get(ouro_object *l, ptrdiff_t i);

/* Replaces item i with v (a new reference taken; the old item is dropped after the list is unlocked).
 * 0, or -1 with OURO_ERR_INDEX. */
int ouro_list_set(ouro_object *l, ptrdiff_t i, ouro_object *v);

/* Removes item i and returns it (the list's reference becomes the caller's). ouro_list_pop(l, -1) is
 * Python's l.pop(). NULL with OURO_ERR_INDEX when out of range or the list is empty. */
ouro_object *ouro_list_pop(ouro_object *l, ptrdiff_t i);

/* Removes item i (dropped after the list is unlocked). 0, or -1 with OURO_ERR_INDEX. */
int ouro_list_del(ouro_object *l, ptrdiff_t i);

/* Removes the first item equal to v (ouro_eq, called without the list's lock: see docs/objects-list.md
 * "Comparisons"). 0, or -1 with OURO_ERR_VALUE when no item is equal (Python's ValueError), or the
 * error of a failing comparison. */
int ouro_list_remove(ouro_object *l, ouro_object *v);

/* The number of items (a snapshot while other threads mutate), or (size_t)-1 with an error. */
size_t ouro_list_size(ouro_object *l);

/* The number of items the list's array holds, over-allocation included (0 without an array): the
 * growth pattern made visible (a snapshot while other threads mutate). (size_t)-1 with an error. */
size_t ouro_list_capacity(ouro_object *l);

/* 1 when an item equals v (ouro_eq), 0 when none does, -1 with an error (a failing comparison). */
int ouro_list_contains(ouro_object *l, ouro_object *v);

/* The index of the first item equal to v, or -1 with OURO_ERR_VALUE when none is (or another error). */
ptrdiff_t ouro_list_index(ouro_object *l, ouro_object *v);

/* Removes every item (they are dropped after the list is unlocked) and releases the array. 0, or -1. */
int ouro_list_clear(ouro_object *l);

/* A new list with the same items (a snapshot taken under the list's lock). */
ouro_object *ouro_list_copy(ouro_object *l);

/* Appends the items of iterable, a list or a tuple (l itself included: its items are then appended
 * once). Atomic for l: no other item comes between them. -1 with OURO_ERR_TYPE for another type. */
int ouro_list_extend(ouro_object *l, ouro_object *iterable);

/* A new tuple with the list's items (a snapshot taken under the list's lock). */
ouro_object *ouro_list_to_tuple(ouro_object *l);

/* Reverses the list in place. 0, or -1. */
int ouro_list_reverse(ouro_object *l);

/* Iteration. Start with *pos = 0; each call stores a new reference to the item at index *pos in *out,
 * advances *pos and returns 1, or returns 0 (and *out = NULL) when *pos is past the end. -1 with an
 * error (l or pos or out NULL, l not a list).
 *
 *     size_t pos = 0;
 *     ouro_object *item;
 *     while (ouro_list_iter_next(l, &pos, &item) == 1) { use(item); ouro_decref(item); }
 *
 * Lock-free. While other threads mutate the list, each call reads index *pos of the list as it is at
 * that moment: every index is read at most once and every item returned was in the list at the moment
 * it was read (never a freed object), but an item moved by a concurrent insert or delete may be seen
 * twice or not at all, and the iteration ends at the first index that is past the end when read. */
int ouro_list_iter_next(ouro_object *l, size_t *pos, ouro_object **out);

/* Lists are unhashable (ouro_hash fails with OURO_ERR_TYPE), compare itemwise with ouro_eq (only with
 * lists), and print as "[1, 2]" ("[...]" for a list inside its own repr). ouro_sizeof(list) counts
 * the item array with its over-allocation. */

#ifdef __cplusplus
}
#endif
#endif /* OURO_LIST_H */
