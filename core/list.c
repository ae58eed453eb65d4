/* core/list.c — list: a mutable sequence that any number of threads may use at once. Mutations take
 * the list's object lock; item reads are lock-free (CPython 3.13t's design, docs/objects-list.md).
 *
 * Layout. The list object holds a pointer to its array (NULL when it has none), its size and the
 * array's capacity. The array is a separate block that carries its own capacity, so a reader that
 * loaded an old array still knows its bounds, and the node with which a replaced array is freed after
 * a grace period:
 *
 *     list_object { head | array ──┐ | size | allocated }
 *                                  v
 *                     list_array { defer | capacity | items[0] ... items[capacity-1] }
 *
 * Invariants (the list's lock held, or no other thread able to reach the list):
 *   L1  array == NULL iff allocated == 0, and then size == 0; else array->capacity == allocated.
 *   L2  items[0..size) are the list's references (non-NULL); items[size..capacity) are NULL.
 *   L3  an array, once replaced (grown, shrunk, cleared), is never written again and is freed only after
 *       a grace period (_ouro_free_deferred), except at the list's dealloc, when no reader can hold the
 *       list (a reader holds a reference to it).
 *   L4  an array pointer is never stored again once replaced (arrays live until a grace period, so no
 *       reader can see one array address stand for two arrays).
 * Who writes and who reads:
 *   array, size, allocated  written under the lock (release stores of array and size), read lock-free
 *                           (acquire) by readers and ouro_sizeof.
 *   items[i]                written under the lock (release stores: each pairs with the acquire loads
 *                           in list_item_ref()), read lock-free.
 *   moves                   bumped under the lock (relaxed) before any slot store that moves, replaces
 *                           or removes an item (not by appends); read by the searches (list_find).
 * Lock discipline: no function holds two lists' locks at once, and nothing that can run other code —
 * ouro_eq, a decref that may free, an allocation (its slow path is a safepoint, which may merge queued
 * objects and free them) — runs under a list's lock: removed items are dropped after the unlock, and
 * arrays are allocated before the lock is taken (list_lock_room). Incref and deferral pushes are fine. */
#include "core/seq.h"

#include <string.h>

#include "ouro/list.h"

typedef struct list_array {
    ouro_deferred_block defer; /* the free after a grace period, once replaced */
    size_t capacity;           /* set before the array is published; never changes */
    ouro_object *items[];      /* release stores under the lock, acquire loads (see above) */
} list_array;

typedef struct {
    ouro_object head;
    list_array *array; /* release store under the lock; acquire loads */
    size_t size;       /* release store under the lock; acquire or relaxed loads */
    size_t allocated;  /* array's capacity (0 without one); relaxed, written under the lock */
    uint64_t moves;    /* bumped under the lock before items move or change (list_moving_locked) */
} list_object;

static void list_dealloc(ouro_object *self);
static int list_traverse(ouro_object *self, ouro_visitproc visit, void *arg);
static void list_gc_clear(ouro_object *self);
static int list_eq(ouro_object *self, ouro_object *other);
static ouro_object *list_repr(ouro_object *self);
static size_t list_extra_size(ouro_object *self);

ouro_type ouro_list_type = {
    .head = OURO_TYPE_HEAD,
    .name = "list",
    .basic_size = sizeof(list_object),
    .flags = OURO_TYPE_GC,
    .dealloc = list_dealloc,
    .traverse = list_traverse,
    .clear = list_gc_clear,
    .hash = ouro_unhashable,
    .eq = list_eq,
    .repr = list_repr,
    .extra_size = list_extra_size,
};

/* The most items a list may hold (so sizes fit a ptrdiff_t and array sizes a size_t). */
#define LIST_MAX_ITEMS ((size_t)(PTRDIFF_MAX - sizeof(list_array)) / sizeof(ouro_object *))

/* ---- fields ---------------------------------------------------------------------------------------------- */

static inline list_array *list_array_acquire(list_object *l) {
    /* acquire: pairs with the release store in list_publish(), so the array's capacity and the items
     * copied into it before its publication are visible */
    return __atomic_load_n(&l->array, __ATOMIC_ACQUIRE);
}
static inline size_t list_size_relaxed(list_object *l) { return __atomic_load_n(&l->size, __ATOMIC_RELAXED); }
static inline void list_size_store(list_object *l, size_t n) {
    /* release: pairs with the acquire load in ouro_list_size() (a caller that sees n items can read
     * them); the slots themselves are published by their own release stores */
    __atomic_store_n(&l->size, n, __ATOMIC_RELEASE);
}
static inline ouro_object *list_slot_get(list_array *a, size_t i) { return _ouro_slot_load(&a->items[i]); }
static inline void list_slot_put(list_array *a, size_t i, ouro_object *v) { _ouro_slot_store(&a->items[i], v); }

/* Called under the lock before items move, are replaced or removed: a lock-free search that reads a
 * slot written after this sees the new count (the slot stores that follow are release stores, the
 * search's slot loads acquire), so it knows its scan may have missed an item. */
static inline void list_moving_locked(list_object *l) {
    __atomic_store_n(&l->moves, __atomic_load_n(&l->moves, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static inline void list_lock(list_object *l) { ouro_lock(&l->head.lock); }
static inline void list_unlock(list_object *l) { ouro_unlock(&l->head.lock); }

/* ---- arrays --------------------------------------------------------------------------------------------- */

/* A zeroed array of capacity items (capacity > 0). NULL with an error. */
static list_array *list_array_new(size_t capacity, const char *fn) {
    if (capacity > LIST_MAX_ITEMS) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "%s: a list of %zu items is too large", fn, capacity);
        return NULL;
    }
    list_array *a = ouro_calloc(1, sizeof(list_array) + capacity * sizeof(ouro_object *));
    if (a) a->capacity = capacity;
    return a;
}

/* CPython's list_resize(): the capacity for newsize items when the array must change. Over-allocates
 * by about 1/8 (+6, rounded down to a multiple of 4): 0, 4, 8, 16, 24, 32, 40, 52, 64, 76, ... for
 * successive appends; an extend that would outgrow that gets just enough (rounded up to 4); 0 for an
 * empty list. */
static size_t list_capacity_for(size_t newsize, size_t oldsize) {
    if (newsize == 0) return 0;
    size_t cap = (newsize + (newsize >> 3) + 6) & ~(size_t)3;
    if (newsize > oldsize && newsize - oldsize > cap - newsize) cap = (newsize + 3) & ~(size_t)3;
    return cap;
}

/* Replaces l's array with fresh (NULL: none), moving the items (the lock held, L2 holding for fresh's
 * capacity). The old array is freed after a grace period (L3). */
static void list_publish(list_object *l, list_array *fresh) {
    list_array *old = __atomic_load_n(&l->array, __ATOMIC_RELAXED); /* the lock orders writers */
    size_t n = list_size_relaxed(l);
    if (n) memcpy(fresh->items, old->items, n * sizeof(ouro_object *)); /* fresh is private until the store */
    /* release: pairs with the acquire in list_array_acquire() */
    __atomic_store_n(&l->array, fresh, __ATOMIC_RELEASE);
    __atomic_store_n(&l->allocated, fresh ? fresh->capacity : 0, __ATOMIC_RELAXED);
    if (old) _ouro_free_deferred(&old->defer);
}

/* Takes l's lock with room in its array for extra more items, growing it by CPython's rule when it has
 * none. The new array is allocated with the lock released (see the lock discipline above), so the size
 * may change meanwhile: the loop re-checks. 0 with the lock held, or -1 with an error (lock not held). */
static int list_lock_room(list_object *l, size_t extra, const char *fn) {
    list_array *fresh = NULL;
    for (;;) {
        list_lock(l);
        size_t size = list_size_relaxed(l);
        if (extra > LIST_MAX_ITEMS - size) {
            list_unlock(l);
            ouro_free(fresh);
            _ouro_err_set(OURO_ERR_OVERFLOW, "%s: a list of %zu + %zu items is too large", fn, size, extra);
            return -1;
        }
        size_t need = size + extra;
        if (need <= __atomic_load_n(&l->allocated, __ATOMIC_RELAXED)) {
            if (fresh) _ouro_free_deferred(&fresh->defer); /* lost a race; a push is fine under the lock */
            return 0;
        }
        if (fresh && fresh->capacity >= need) {
            list_publish(l, fresh);
            return 0;
        }
        size_t capacity = list_capacity_for(need, size);
        list_unlock(l);
        ouro_free(fresh);
        if (!(fresh = list_array_new(capacity, fn))) return -1;
    }
}

/* After a removal (the lock not held): gives the list a smaller array when it uses less than half of
 * its capacity (CPython's rule; no array at all when empty). Best effort: on no memory the list keeps
 * its array and no error is left set. */
static void list_maybe_shrink(list_object *l) {
    size_t size = list_size_relaxed(l);
    if (size >= __atomic_load_n(&l->allocated, __ATOMIC_RELAXED) >> 1) return;
    size_t capacity = list_capacity_for(size, size);
    list_array *fresh = NULL;
    if (capacity) {
        ouro_err saved = ouro_err_occurred();
        fresh = list_array_new(capacity, "ouro_list (shrink)");
        if (!fresh) {
            if (!saved) ouro_err_clear();
            return;
        }
    }
    list_lock(l);
    size = list_size_relaxed(l);
    bool install = size <= capacity && size < __atomic_load_n(&l->allocated, __ATOMIC_RELAXED) >> 1;
    if (install) list_publish(l, fresh);
    list_unlock(l);
    if (!install) ouro_free(fresh);
}

/* ---- the lock-free read (core/objimpl.h's protocol) ---------------------------------------------------
 * The one reader of items outside the lock; every lock-free read (get, iteration, contains, index,
 * remove's search, equality, repr) goes through it. Why it never returns a freed object:
 *   - the caller is attached and online, and holds a reference to the list, so every array it loads
 *     stays allocated until its next quiescent state (L3); the capacity check keeps it in bounds;
 *   - object memory stays object memory while it is online, so _ouro_try_incref on an item that was
 *     removed and freed meanwhile reads zero counts and fails (then the locked path reads again);
 *   - when the try-incref succeeds, the re-check finds the slot still holding v and the array still
 *     the list's (L4: no array ABA), so at that moment v was the list's item i and held by it: the
 *     object we counted is that live item, not a freed one whose memory was reused. A stale array's
 *     slot may still point at a freed object's address, hence the array re-check; the slots past the
 *     size are NULL (L2), so a removed item is never found there.
 * A NULL slot or an index past the array's capacity reads as the end of the list: at the moment of
 * the load the list had no item i (a replaced array is never written again, so its slots show the
 * list as it was when it was replaced, which is after this read began). */

/* The locked path: the item at i, marked MAYBE_SHARED so that the next lock-free read of it succeeds. */
static OURO_NOINLINE ouro_object *list_item_ref_locked(list_object *l, size_t i) {
    ouro_object *v = NULL;
    list_lock(l);
    if (i < list_size_relaxed(l)) {
        v = list_slot_get(__atomic_load_n(&l->array, __ATOMIC_RELAXED), i);
        ouro_incref(v);
        _ouro_set_maybe_shared(v);
    }
    list_unlock(l);
    return v;
}

/* A new reference to item i of l, or NULL (no error) when l has no item i. */
static ouro_object *list_item_ref(list_object *l, size_t i) {
    for (;;) {
        list_array *a = list_array_acquire(l);
        if (!a || i >= a->capacity) return NULL;
        ouro_object *v = list_slot_get(a, i); /* acquire: pairs with list_slot_put()'s release */
        if (!v) return NULL;
        if (_ouro_try_incref(v)) {
            if (list_slot_get(a, i) == v && list_array_acquire(l) == a) return v;
            ouro_decref(v); /* moved or replaced meanwhile: read again */
            continue;
        }
        return list_item_ref_locked(l, i);
    }
}

/* ---- the type's callbacks ------------------------------------------------------------------------------- */

static void list_dealloc(ouro_object *self) {
    list_object *l = (list_object *)self;
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    if (!a) return;
    for (size_t i = list_size_relaxed(l); i-- > 0;) ouro_decref(a->items[i]);
    ouro_free(a); /* no reader holds the list any more (L3) */
}

static int list_traverse(ouro_object *self, ouro_visitproc visit, void *arg) {
    list_object *l = (list_object *)self;
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED); /* the collector stops the world */
    for (size_t i = 0, n = list_size_relaxed(l); a && i < n; i++) {
        ouro_object *v = __atomic_load_n(&a->items[i], __ATOMIC_RELAXED);
        if (v) {
            int r = visit(v, arg);
            if (r) return r;
        }
    }
    return 0;
}

/* Empties l: detaches the array under the lock, drops the items after (L3 for the array). */
static void list_clear_items(list_object *l) {
    list_lock(l);
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    size_t n = list_size_relaxed(l);
    list_moving_locked(l);
    list_size_store(l, 0);
    /* release: pairs with the acquire in list_array_acquire() (readers then see no array) */
    __atomic_store_n(&l->array, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&l->allocated, 0, __ATOMIC_RELAXED);
    list_unlock(l);
    if (!a) return;
    for (size_t i = 0; i < n; i++) ouro_decref(list_slot_get(a, i)); /* may run deallocs: no lock held */
    _ouro_free_deferred(&a->defer);
}

static void list_gc_clear(ouro_object *self) { list_clear_items((list_object *)self); }

/* Itemwise ouro_eq on lock-free reads (no lock held while comparing); a list that changes meanwhile
 * gives the answer for some mix of its states. */
static int list_eq(ouro_object *self, ouro_object *other) {
    if (other->type != &ouro_list_type) return 0;
    list_object *a = (list_object *)self, *b = (list_object *)other;
    if (list_size_relaxed(a) != list_size_relaxed(b)) return 0;
    for (size_t i = 0;; i++) {
        ouro_object *x = list_item_ref(a, i), *y = list_item_ref(b, i);
        if (!x || !y) {
            ouro_xdecref(x);
            ouro_xdecref(y);
            return !x && !y;
        }
        int r = ouro_eq(x, y);
        ouro_decref(x);
        ouro_decref(y);
        if (r != 1) return r;
    }
}

static ouro_object *list_repr_item(ouro_object *l, size_t i, bool *error) {
    (void)error;
    return list_item_ref((list_object *)l, i);
}

static ouro_object *list_repr(ouro_object *self) { return _ouro_seq_repr(self, "[", "]", false, list_repr_item); }

static size_t list_extra_size(ouro_object *self) {
    list_array *a = list_array_acquire((list_object *)self); /* stays allocated while we are online (L3) */
    return a ? ouro_usable_size(a) : 0;
}

/* ---- argument checks ------------------------------------------------------------------------------------ */

/* l as a list, the calling thread ready to read it lock-free (attached); NULL with the error set. */
static list_object *list_check(ouro_object *l, const char *fn) {
    if (!_ouro_arg(l, &ouro_list_type, fn) || !_ouro_object_thread_ready_on(fn, l)) return NULL;
    return (list_object *)l;
}

static bool list_check_value(const ouro_object *v, const char *fn) {
    if (v) return true;
    _ouro_err_set(OURO_ERR_INVALID, "%s: value is NULL", fn);
    return false;
}

/* Python's index: i (negative from the end) as an index below n; false when out of range. */
static bool list_index_in(ptrdiff_t i, size_t n, size_t *out) {
    if (i < 0) i += (ptrdiff_t)n; /* n <= LIST_MAX_ITEMS fits */
    if (i < 0 || (size_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

static void list_err_index(const char *fn, ptrdiff_t i, size_t n) {
    _ouro_err_set(OURO_ERR_INDEX, "%s: index %td out of range (size %zu)", fn, i, n);
}

/* ---- mutations (all under the lock) ---------------------------------------------------------------------- */

/* Removes item i (< size) under the lock, shifting the rest down one slot at a time (each slot store
 * atomic, so readers see each slot's old or new item) and clearing the last slot (L2). Returns it. */
static ouro_object *list_remove_at_locked(list_object *l, size_t i) {
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    size_t n = list_size_relaxed(l);
    ouro_object *v = list_slot_get(a, i);
    list_moving_locked(l);
    for (size_t k = i; k + 1 < n; k++) list_slot_put(a, k, list_slot_get(a, k + 1));
    list_slot_put(a, n - 1, NULL);
    list_size_store(l, n - 1);
    return v;
}

ouro_object *ouro_list_new(size_t capacity) {
    list_array *a = NULL;
    if (capacity && !(a = list_array_new(capacity, "ouro_list_new"))) return NULL;
    list_object *l = (list_object *)ouro_new(&ouro_list_type);
    if (!l) {
        ouro_free(a);
        return NULL;
    }
    l->array = a; /* private until returned */
    l->allocated = capacity;
    return &l->head;
}

int ouro_list_append(ouro_object *lo, ouro_object *v) {
    static const char fn[] = "ouro_list_append";
    list_object *l = list_check(lo, fn);
    if (!l || !list_check_value(v, fn) || list_lock_room(l, 1, fn) != 0) return -1;
    size_t n = list_size_relaxed(l);
    ouro_incref(v);
    list_slot_put(__atomic_load_n(&l->array, __ATOMIC_RELAXED), n, v);
    list_size_store(l, n + 1);
    list_unlock(l);
    return 0;
}

int ouro_list_insert(ouro_object *lo, ptrdiff_t i, ouro_object *v) {
    static const char fn[] = "ouro_list_insert";
    list_object *l = list_check(lo, fn);
    if (!l || !list_check_value(v, fn) || list_lock_room(l, 1, fn) != 0) return -1;
    size_t n = list_size_relaxed(l);
    if (i < 0) {
        i += (ptrdiff_t)n;
        if (i < 0) i = 0;
    }
    size_t at = (size_t)i > n ? n : (size_t)i;
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    if (at < n) list_moving_locked(l);
    for (size_t k = n; k > at; k--) list_slot_put(a, k, list_slot_get(a, k - 1)); /* from the end: no hole */
    ouro_incref(v);
    list_slot_put(a, at, v);
    list_size_store(l, n + 1);
    list_unlock(l);
    return 0;
}

ouro_object *ouro_list_get(ouro_object *lo, ptrdiff_t i) {
    list_object *l = list_check(lo, "ouro_list_get");
    if (!l) return NULL;
    size_t at = (size_t)i;
    if (i < 0 && !list_index_in(i, __atomic_load_n(&l->size, __ATOMIC_ACQUIRE), &at)) {
        list_err_index("ouro_list_get", i, list_size_relaxed(l));
        return NULL;
    }
    ouro_object *v = list_item_ref(l, at);
    if (!v) list_err_index("ouro_list_get", i, list_size_relaxed(l));
    return v;
}

int ouro_list_set(ouro_object *lo, ptrdiff_t i, ouro_object *v) {
    static const char fn[] = "ouro_list_set";
    list_object *l = list_check(lo, fn);
    if (!l || !list_check_value(v, fn)) return -1;
    list_lock(l);
    size_t n = list_size_relaxed(l), at;
    if (!list_index_in(i, n, &at)) {
        list_unlock(l);
        list_err_index(fn, i, n);
        return -1;
    }
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    ouro_object *old = list_slot_get(a, at);
    list_moving_locked(l);
    ouro_incref(v);
    list_slot_put(a, at, v);
    list_unlock(l);
    ouro_decref(old);
    return 0;
}

ouro_object *ouro_list_pop(ouro_object *lo, ptrdiff_t i) {
    static const char fn[] = "ouro_list_pop";
    list_object *l = list_check(lo, fn);
    if (!l) return NULL;
    list_lock(l);
    size_t n = list_size_relaxed(l), at;
    if (!list_index_in(i, n, &at)) {
        list_unlock(l);
        if (n == 0) _ouro_err_set(OURO_ERR_INDEX, "%s: pop from an empty list", fn);
        else list_err_index(fn, i, n);
        return NULL;
    }
    ouro_object *v = list_remove_at_locked(l, at);
    list_unlock(l);
    list_maybe_shrink(l);
    return v; /* the list's reference, now the caller's */
}

int ouro_list_del(ouro_object *l, ptrdiff_t i) {
    ouro_object *v = ouro_list_pop(l, i);
    if (!v) {
        if (ouro_err_occurred() == OURO_ERR_INDEX) /* name the right function */
            _ouro_err_set(OURO_ERR_INDEX, "ouro_list_del: index %td out of range", i);
        return -1;
    }
    ouro_decref(v);
    return 0;
}

size_t ouro_list_capacity(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_capacity");
    return l ? __atomic_load_n(&l->allocated, __ATOMIC_RELAXED) : (size_t)-1;
}

size_t ouro_list_size(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_size");
    if (!l) return (size_t)-1;
    /* acquire: pairs with list_size_store()'s release */
    return __atomic_load_n(&l->size, __ATOMIC_ACQUIRE);
}

/* ---- searches: comparisons run without the lock ------------------------------------------------------------
 * CPython compares under the list's critical section, which it gives up whenever the comparison blocks
 * or re-enters. ouro's lock cannot be given up that way (and an eq may use the list), so the search is
 * a lock-free scan — item i read through list_item_ref(), compared with no lock held — and remove then
 * locks and deletes the very object it compared (by identity: at index i if it is still there, else at
 * its first position), rescanning from the start when another thread removed it meanwhile.
 * A scan races with inserts and deletes that shift items under it, so it could miss an item that was
 * in the list all along: "not found" is answered only by a scan during which `moves` did not change
 * (else it scans again), so it is true of the list at the end of that scan. A found item was in the
 * list, at that index, when it was read. */

/* The index of the first item equal to v, with a new reference to it in *found; -1 and *found NULL
 * when none is; -2 with an error from a comparison. */
static ptrdiff_t list_find(list_object *l, ouro_object *v, ouro_object **found) {
    *found = NULL;
    for (;;) {
        uint64_t moves = __atomic_load_n(&l->moves, __ATOMIC_RELAXED);
        ouro_object *item;
        for (size_t i = 0; (item = list_item_ref(l, i)); i++) {
            int r = ouro_eq(item, v);
            if (r == 1) {
                *found = item;
                return (ptrdiff_t)i;
            }
            ouro_decref(item);
            if (r < 0) return -2;
        }
        /* acquire: orders this load after the scan's slot loads; a bump that precedes a slot store
         * the scan saw (list_moving_locked) is visible here */
        if (__atomic_load_n(&l->moves, __ATOMIC_ACQUIRE) == moves) return -1;
        ouro_safepoint(); /* a long search under heavy mutation still lets grace periods end */
    }
}

int ouro_list_contains(ouro_object *lo, ouro_object *v) {
    list_object *l = list_check(lo, "ouro_list_contains");
    if (!l || !list_check_value(v, "ouro_list_contains")) return -1;
    ouro_object *found;
    ptrdiff_t i = list_find(l, v, &found);
    ouro_xdecref(found);
    return i >= 0 ? 1 : i == -1 ? 0 : -1;
}

ptrdiff_t ouro_list_index(ouro_object *lo, ouro_object *v) {
    list_object *l = list_check(lo, "ouro_list_index");
    if (!l || !list_check_value(v, "ouro_list_index")) return -1;
    ouro_object *found;
    ptrdiff_t i = list_find(l, v, &found);
    ouro_xdecref(found);
    if (i == -1) _ouro_err_set(OURO_ERR_VALUE, "ouro_list_index: the value is not in the list");
    return i < 0 ? -1 : i;
}

int ouro_list_remove(ouro_object *lo, ouro_object *v) {
    static const char fn[] = "ouro_list_remove";
    list_object *l = list_check(lo, fn);
    if (!l || !list_check_value(v, fn)) return -1;
    for (;;) {
        ouro_object *item;
        ptrdiff_t i = list_find(l, v, &item);
        if (i == -2) return -1;
        if (i == -1) {
            _ouro_err_set(OURO_ERR_VALUE, "%s: the value is not in the list", fn);
            return -1;
        }
        list_lock(l);
        list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
        size_t n = list_size_relaxed(l), at = (size_t)i;
        if (at >= n || list_slot_get(a, at) != item)
            for (at = 0; at < n && list_slot_get(a, at) != item; at++) {}
        ouro_object *removed = at < n ? list_remove_at_locked(l, at) : NULL;
        list_unlock(l);
        ouro_decref(item);
        if (removed) {
            ouro_decref(removed);
            list_maybe_shrink(l);
            return 0;
        }
        /* another thread removed it first: search again */
    }
}

/* ---- whole-list operations ---------------------------------------------------------------------------------- */

/* New references to l's items, in an ouro_alloc'd block (the caller frees it), taken under the lock.
 * The block is allocated with the lock released (retrying when the list grew meanwhile). */
static ouro_object **list_snapshot(list_object *l, size_t *count) {
    size_t want = list_size_relaxed(l);
    for (;;) {
        ouro_object **buf = ouro_alloc(want * sizeof *buf);
        if (!buf) return NULL;
        list_lock(l);
        size_t n = list_size_relaxed(l);
        if (n <= want) {
            list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
            for (size_t i = 0; i < n; i++) buf[i] = ouro_newref(list_slot_get(a, i));
            list_unlock(l);
            *count = n;
            return buf;
        }
        list_unlock(l);
        ouro_free(buf);
        want = n;
    }
}

int ouro_list_clear(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_clear");
    if (!l) return -1;
    list_clear_items(l);
    return 0;
}

ouro_object *ouro_list_copy(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_copy");
    if (!l) return NULL;
    size_t n;
    ouro_object **items = list_snapshot(l, &n);
    if (!items) return NULL;
    list_object *copy = (list_object *)ouro_list_new(n);
    if (copy) {
        if (n) memcpy(copy->array->items, items, n * sizeof *items); /* copy is private */
        copy->size = n;
    } else {
        for (size_t i = 0; i < n; i++) ouro_decref(items[i]);
    }
    ouro_free(items);
    return copy ? &copy->head : NULL;
}

ouro_object *ouro_list_to_tuple(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_to_tuple");
    if (!l) return NULL;
    size_t n;
    ouro_object **items = list_snapshot(l, &n);
    if (!items) return NULL;
    ouro_object *t = _ouro_tuple_steal_array(n, items);
    ouro_free(items);
    return t;
}

int ouro_list_extend(ouro_object *lo, ouro_object *iterable) {
    static const char fn[] = "ouro_list_extend";
    list_object *l = list_check(lo, fn);
    if (!l || !list_check_value(iterable, fn)) return -1;
    size_t n;
    ouro_object **items; /* new references to what is appended */
    if (iterable->type == &ouro_tuple_type) {
        n = ouro_tuple_size(iterable);
        if (!(items = ouro_alloc(n * sizeof *items))) return -1;
        for (size_t i = 0; i < n; i++) {
            if (!(items[i] = ouro_tuple_get(iterable, i))) { /* an item not set yet: OURO_ERR_STATE */
                while (i-- > 0) ouro_decref(items[i]);
                ouro_free(items);
                return -1;
            }
        }
    } else if (iterable->type == &ouro_list_type) {
        if (!(items = list_snapshot((list_object *)iterable, &n))) return -1;
    } else {
        return _ouro_err_type_int(fn, "a list or a tuple", iterable);
    }
    int r = list_lock_room(l, n, fn);
    if (r == 0) {
        size_t size = list_size_relaxed(l);
        list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
        for (size_t i = 0; i < n; i++) list_slot_put(a, size + i, items[i]);
        list_size_store(l, size + n);
        list_unlock(l);
    } else {
        for (size_t i = 0; i < n; i++) ouro_decref(items[i]);
    }
    ouro_free(items);
    return r;
}

int ouro_list_reverse(ouro_object *lo) {
    list_object *l = list_check(lo, "ouro_list_reverse");
    if (!l) return -1;
    list_lock(l);
    list_array *a = __atomic_load_n(&l->array, __ATOMIC_RELAXED);
    size_t n = list_size_relaxed(l);
    list_moving_locked(l);
    for (size_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) {
        ouro_object *x = list_slot_get(a, i);
        list_slot_put(a, i, list_slot_get(a, j));
        list_slot_put(a, j, x);
    }
    list_unlock(l);
    return 0;
}

int ouro_list_iter_next(ouro_object *lo, size_t *pos, ouro_object **out) {
    static const char fn[] = "ouro_list_iter_next";
    if (out) *out = NULL;
    if (!pos || !out) {
        _ouro_err_set(OURO_ERR_INVALID, "%s: %s is NULL", fn, !pos ? "pos" : "out");
        return -1;
    }
    list_object *l = list_check(lo, fn);
    if (!l) return -1;
    ouro_object *v = list_item_ref(l, *pos);
    if (!v) return 0;
    *out = v;
    (*pos)++;
    return 1;
}
