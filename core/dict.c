/* core/dict.c — dict, and the hash table dict and set share (core/dictobject.h).
 *
 * The table (CPython 3.6+'s compact dict): an index array of 2^n slots, probed with perturbation, whose
 * slots hold DKIX_EMPTY, DKIX_DUMMY or the number of an entry; and a dense entry array (hash, key,
 * value) in insertion order. Entries are append-only within a table: an entry's hash and key are
 * written once, its key only ever goes from K to NULL (delete), its value from V to another value
 * (replace) or NULL (delete). A full table (entries used == usable) is rebuilt, dropping deleted
 * entries, into a new one sized for three times the live entries; the old one is freed after a grace
 * period. docs/objects-dict.md has the diagram and the safety argument.
 *
 * Invariants (of the current table, under the dict's lock):
 *   nentries <= usable = slots * 2 / 3   (the load bound: a probe always ends at an EMPTY slot, since
 *                                         every non-EMPTY slot took an entry when it was filled)
 *   a slot holding entry j <=> entry j is live (key != NULL); a deleted entry's slot is DUMMY
 *   used = live entries; every live entry holds one reference to its key and one to its value.
 *
 * Lock discipline: every mutation takes the object's lock. No user code (a key's hash or eq, a dealloc
 * through a decref) runs with it held: hashes are computed first, dropped references are dropped after
 * unlocking, the locked probe (dict_find_locked) unlocks around each eq, and nothing is allocated under
 * the lock (an allocation's slow path is a safepoint, whose poll merges queued objects and may run
 * their deallocs): tables and snapshot arrays are allocated unlocked, then the operation re-checks. So
 * an eq, hash or dealloc may use the same dict (even mutate it) without deadlocking on its
 * non-recursive lock. */
#include "core/dictobject.h"
#include "core/repr.h"

#include <string.h>

#include "ouro/str.h"

enum { DKIX_EMPTY = -1, DKIX_DUMMY = -2, DKIX_ERROR = -3 };
enum { DICT_LOG2_MINSIZE = 3, DICT_LOG2_MAXSIZE = 48, PERTURB_SHIFT = 5 };

/* An entry: hash and key written once before the entry is linked from an index slot; key goes to NULL
 * at a delete; value may be replaced. Every field is atomic (lock-free readers load them). */
typedef struct dict_entry {
    _Atomic int64_t hash;
    _Atomic(ouro_object *) key;
    _Atomic(ouro_object *) value;
} dict_entry;

/* A table: this header, 2^log2_size index slots of 2^log2_index_bytes bytes each, then usable entries.
 * The header's fields other than nentries are written before the table is published and never again. */
struct dict_keys {
    ouro_deferred_block defer; /* the free after a grace period (_ouro_free_deferred) */
    uint64_t gen;              /* unique among the tables one dict ever had (its version at creation) */
    uint8_t log2_size;
    uint8_t log2_index_bytes;  /* 0..3: int8, int16, int32, int64 slots */
    size_t usable;             /* entry capacity: slots * 2 / 3 */
    _Atomic size_t nentries;   /* entries used (live and deleted): written under the lock */
    int64_t indices[];         /* the index slots (int64_t only for alignment), then the entries */
};

static inline size_t keys_size(const dict_keys *k) { return (size_t)1 << k->log2_size; }
static inline size_t keys_mask(const dict_keys *k) { return keys_size(k) - 1; }
static inline dict_entry *keys_entries(dict_keys *k) {
    return (dict_entry *)((char *)k->indices + (keys_size(k) << k->log2_index_bytes));
}

/* An index slot. acquire: pairs with the release in keys_index_set(), so the entry a slot names was
 * written (hash, key, value, and the key's and value's contents) before the reader sees the number. */
static inline int64_t keys_index_get(dict_keys *k, size_t i) {
    switch (k->log2_index_bytes) {
    case 0: return __atomic_load_n(&((int8_t *)k->indices)[i], __ATOMIC_ACQUIRE);
    case 1: return __atomic_load_n(&((int16_t *)k->indices)[i], __ATOMIC_ACQUIRE);
    case 2: return __atomic_load_n(&((int32_t *)k->indices)[i], __ATOMIC_ACQUIRE);
    default: return __atomic_load_n(&k->indices[i], __ATOMIC_ACQUIRE);
    }
}

/* Sets an index slot (under the lock, or before the table is published). release: pairs with the
 * acquire in keys_index_get(). */
static inline void keys_index_set(dict_keys *k, size_t i, int64_t ix) {
    switch (k->log2_index_bytes) {
    case 0: __atomic_store_n(&((int8_t *)k->indices)[i], (int8_t)ix, __ATOMIC_RELEASE); break;
    case 1: __atomic_store_n(&((int16_t *)k->indices)[i], (int16_t)ix, __ATOMIC_RELEASE); break;
    case 2: __atomic_store_n(&((int32_t *)k->indices)[i], (int32_t)ix, __ATOMIC_RELEASE); break;
    default: __atomic_store_n(&k->indices[i], ix, __ATOMIC_RELEASE); break;
    }
}

/* The probe sequence (CPython's): i = hash & mask, then i = i*5 + perturb + 1 with perturb shifted
 * right by 5 each step, so all the hash's bits take part and every slot is eventually visited. */
#define PROBE_START(k, hash, i, perturb) ((perturb) = (uint64_t)(hash), (i) = (size_t)(hash) & keys_mask(k))
#define PROBE_NEXT(k, i, perturb) ((perturb) >>= PERTURB_SHIFT, (i) = ((i) * 5 + (size_t)(perturb) + 1) & keys_mask(k))

/* A new table of 2^log2_size slots (all EMPTY, entries zeroed), allocated with no lock held. Its
 * generation is set when it is filled, under the lock. NULL with OURO_ERR_NOMEM. */
static dict_keys *keys_new(unsigned log2_size) {
    if (log2_size > DICT_LOG2_MAXSIZE) {
        _ouro_err_set(OURO_ERR_NOMEM, "dict: table of 2^%u slots is too large", log2_size);
        return NULL;
    }
    size_t size = (size_t)1 << log2_size;
    unsigned lib = log2_size < 8 ? 0 : log2_size < 16 ? 1 : log2_size < 32 ? 2 : 3;
    size_t usable = (size << 1) / 3;
    size_t index_bytes = size << lib;
    dict_keys *k = ouro_alloc(sizeof(dict_keys) + index_bytes + usable * sizeof(dict_entry));
    if (!k) return NULL;
    memset(k, 0, sizeof *k);
    k->log2_size = (uint8_t)log2_size;
    k->log2_index_bytes = (uint8_t)lib;
    k->usable = usable;
    memset(k->indices, 0xff, index_bytes); /* DKIX_EMPTY in every width */
    memset(keys_entries(k), 0, usable * sizeof(dict_entry));
    return k;
}

/* The smallest log2 size whose table has room for n entries with room to grow: slots >= 3n (so a
 * rebuilt table is at most one third full and can double before the next rebuild). */
static unsigned log2_for_growth(size_t n) {
    unsigned log2 = DICT_LOG2_MINSIZE;
    while (log2 < DICT_LOG2_MAXSIZE + 1 && ((size_t)1 << log2) / 3 < n) log2++;
    return log2;
}

/* The smallest log2 size whose usable count holds n entries (a copy: no growth expected). */
static unsigned log2_for_count(size_t n) {
    unsigned log2 = DICT_LOG2_MINSIZE;
    while (log2 < DICT_LOG2_MAXSIZE + 1 && (((size_t)1 << log2) << 1) / 3 < n) log2++;
    return log2;
}

/* The first slot on hash's probe path that holds no entry (EMPTY or DUMMY). */
static size_t keys_find_free(dict_keys *k, int64_t hash) {
    size_t i;
    uint64_t perturb;
    PROBE_START(k, hash, i, perturb);
    while (keys_index_get(k, i) >= 0) PROBE_NEXT(k, i, perturb);
    return i;
}

/* Appends an entry (under the lock, or to a table not yet published; the caller checked nentries <
 * usable) and links it from slot i. The key's and value's references are the caller's to hand over. */
static void keys_append(dict_keys *k, size_t i, int64_t hash, ouro_object *key, ouro_object *value) {
    size_t n = ouro_load_relaxed(&k->nentries);
    OURO_ASSERT(n < k->usable && 3 * (n + 1) <= 2 * keys_size(k));
    dict_entry *e = &keys_entries(k)[n];
    ouro_store_relaxed(&e->hash, hash);
    ouro_store_relaxed(&e->key, key);
    ouro_store_relaxed(&e->value, value);
    keys_index_set(k, i, (int64_t)n); /* release: the entry above first (keys_index_get) */
    ouro_store_relaxed(&k->nentries, n + 1);
}

/* Makes k the current table (under the lock). release: pairs with the acquire in the lock-free lookup,
 * which then sees k's header, slots and entries as written. old (when not NULL) is freed after a grace
 * period: a lock-free reader may still be probing it. */
static void dict_publish(dict_object *d, dict_keys *k, dict_keys *old) {
    ouro_store_release(&d->keys, k);
    if (old) _ouro_free_deferred(&old->defer);
}

/* ---- the locked protocol --------------------------------------------------------------------------------- */

/* Under d's lock: finds key (hash its hash) in d's current table. Returns the entry's number, with
 * *slot its index slot; or DKIX_EMPTY when key is missing, with *slot the first free slot on its probe
 * path (unset when d has no table); or DKIX_ERROR when an eq failed.
 *
 * A candidate with the same hash but another pointer needs the key's eq, which is user code: the probe
 * takes a reference to the candidate, unlocks, calls eq, drops the reference, locks again, and
 * restarts when d's version changed meanwhile (a key was added or deleted, or the table replaced: the
 * path it walked may no longer be the key's path). So eq never runs under the lock, and an eq that uses
 * the same dict cannot deadlock. The lock may thus be dropped inside: callers read d's state after. */
static int64_t dict_find_locked(dict_object *d, ouro_object *key, int64_t hash, size_t *slot) {
restart:;
    dict_keys *k = ouro_load_relaxed(&d->keys); /* under the lock: the writers' view */
    if (!k) return DKIX_EMPTY;
    dict_entry *entries = keys_entries(k);
    size_t i, free_slot = SIZE_MAX;
    uint64_t perturb;
    PROBE_START(k, hash, i, perturb);
    for (;; PROBE_NEXT(k, i, perturb)) {
        int64_t ix = keys_index_get(k, i);
        if (ix == DKIX_EMPTY) {
            *slot = free_slot != SIZE_MAX ? free_slot : i;
            return DKIX_EMPTY;
        }
        if (ix == DKIX_DUMMY) {
            if (free_slot == SIZE_MAX) free_slot = i;
            continue;
        }
        dict_entry *e = &entries[ix];
        ouro_object *ek = ouro_load_relaxed(&e->key);
        OURO_ASSERT(ek != NULL);
        if (ek == key) {
            *slot = i;
            return ix;
        }
        if (ouro_load_relaxed(&e->hash) != hash) continue;
        uint64_t version = d->version;
        ouro_incref(ek);
        _ouro_set_maybe_shared(ek); /* a lock-free reader's try-incref on it succeeds from now on */
        ouro_unlock(&d->head.lock);
        int cmp = ouro_eq(ek, key);
        ouro_decref(ek); /* may be the last reference (deleted meanwhile): a dealloc, unlocked */
        ouro_lock(&d->head.lock);
        if (cmp < 0) return DKIX_ERROR;
        if (d->version != version) goto restart;
        if (cmp) {
            *slot = i;
            return ix;
        }
    }
}

/* Under d's lock: moves the live entries (and their references), in order, into k (fresh, allocated
 * unlocked) and makes it the table; the old one is freed after a grace period. */
static void dict_resize_locked(dict_object *d, dict_keys *k) {
    dict_keys *old = ouro_load_relaxed(&d->keys);
    k->gen = ++d->version;
    if (old) {
        dict_entry *from = keys_entries(old);
        size_t n = ouro_load_relaxed(&old->nentries);
        for (size_t j = 0; j < n; j++) {
            ouro_object *key = ouro_load_relaxed(&from[j].key);
            if (!key) continue;
            int64_t hash = ouro_load_relaxed(&from[j].hash);
            keys_append(k, keys_find_free(k, hash), hash, key, ouro_load_relaxed(&from[j].value));
        }
    }
    dict_publish(d, k, old);
}

enum { DICT_NEED_TABLE = 2 };

/* Under d's lock: the one insert. Adds key -> value, or replaces the value of an equal key (keeping
 * the key already there) unless only_if_missing. *replaced gets the reference to a replaced value, to
 * drop after unlocking; *current (when not NULL) a new reference to the value now stored. 1 when key
 * was added, 0 when it was there, -1 with an error. When the table is full it rebuilds into *spare if
 * that has the size wanted (taking it), else returns DICT_NEED_TABLE with *want the log2 size: the
 * caller allocates it unlocked and calls again. */
static int dict_insert_locked(dict_object *d, ouro_object *key, int64_t hash, ouro_object *value,
                              bool only_if_missing, ouro_object **replaced, ouro_object **current,
                              dict_keys **spare, unsigned *want) {
    size_t slot = 0;
    int64_t ix = dict_find_locked(d, key, hash, &slot);
    if (ix == DKIX_ERROR) return -1;
    dict_keys *k = ouro_load_relaxed(&d->keys);
    if (ix >= 0) {
        dict_entry *e = &keys_entries(k)[ix];
        ouro_object *now = ouro_load_relaxed(&e->value);
        if (!only_if_missing && now != value) {
            ouro_incref(value);
            /* release: pairs with the lookups' acquire of the value: its contents are visible first */
            ouro_store_release(&e->value, value);
            *replaced = now;
            now = value;
        }
        if (current) *current = ouro_newref(now);
        return 0;
    }
    if (!k || ouro_load_relaxed(&k->nentries) == k->usable) {
        *want = log2_for_growth(ouro_load_relaxed(&d->used) + 1);
        if (!*spare || (*spare)->log2_size != *want) return DICT_NEED_TABLE;
        k = *spare;
        *spare = NULL;
        dict_resize_locked(d, k);
        slot = keys_find_free(k, hash);
    }
    ouro_incref(key);
    ouro_incref(value);
    keys_append(k, slot, hash, key, value);
    ouro_store_relaxed(&d->used, ouro_load_relaxed(&d->used) + 1);
    d->version++;
    if (current) *current = ouro_newref(value);
    return 1;
}

/* Under d's lock: deletes entry ix (linked from slot), handing its key's and value's references to
 * the caller, who drops them after unlocking. */
static void dict_unlink_locked(dict_object *d, int64_t ix, size_t slot, ouro_object **key, ouro_object **value) {
    dict_keys *k = ouro_load_relaxed(&d->keys);
    dict_entry *e = &keys_entries(k)[ix];
    *key = ouro_load_relaxed(&e->key);
    *value = ouro_load_relaxed(&e->value);
    keys_index_set(k, slot, DKIX_DUMMY);
    /* NULL publishes no contents: relaxed. A reader that still holds ix re-checks key and value. */
    ouro_store_relaxed(&e->key, NULL);
    ouro_store_relaxed(&e->value, NULL);
    ouro_store_relaxed(&d->used, ouro_load_relaxed(&d->used) - 1);
    d->version++;
}

/* ---- the lock-free lookup --------------------------------------------------------------------------------- */

enum { LOOKUP_FALLBACK = 2, LOOKUP_RETRIES = 8, LOOKUP_HELD = 4 };

/* Whether k (generation gen) is still d's table. Comparing the pointer alone is not enough after an
 * eq (user code may reach a safepoint, k may have been freed and its memory reused for d's next
 * table); a generation is unique among d's tables, and the current table's header is safe to read. */
static inline bool dict_table_is(dict_object *d, dict_keys *k, uint64_t gen) {
    dict_keys *now = ouro_load_acquire(&d->keys); /* pairs with the release in dict_publish() */
    return now == k && now->gen == gen;
}

/* The lock-free lookup (CPython 3.13t's _Py_dict_lookup_threadsafe, with the re-checks described in
 * docs/objects-dict.md). Returns 1 with *value (a new reference, when value is not NULL), 0 when
 * missing, -1 when an eq failed, LOOKUP_FALLBACK when a try-incref failed (an object not marked shared,
 * or dying) or the dict kept changing under it: the caller then takes the lock.
 *
 * The caller is attached and online, so a table it loaded stays allocated until its next quiescent
 * state. The only user code here is a candidate key's eq, which may pass one: after it the lookup
 * re-checks that its table is still d's (by generation) before touching it again. The candidate keys
 * it compared are kept (referenced) until it is done: dropping one could run a dealloc, user code. */
static int dict_lookup_lockfree(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value) {
    ouro_object *held[LOOKUP_HELD];
    size_t nheld = 0;
    int r = LOOKUP_FALLBACK;
    for (int attempt = 0; attempt < LOOKUP_RETRIES; attempt++) {
        dict_keys *k = ouro_load_acquire(&d->keys); /* pairs with the release in dict_publish() */
        if (!k) {
            r = 0;
            break;
        }
        uint64_t gen = k->gen;
        dict_entry *entries = keys_entries(k), *e = NULL;
        ouro_object *ek = NULL;
        bool changed = false;
        size_t i;
        uint64_t perturb;
        PROBE_START(k, hash, i, perturb);
        for (;; PROBE_NEXT(k, i, perturb)) {
            int64_t ix = keys_index_get(k, i); /* acquire: the entry is written (keys_index_set) */
            if (ix == DKIX_EMPTY) break;
            if (ix < 0) continue;
            dict_entry *c = &entries[ix];
            ek = ouro_load_acquire(&c->key); /* pairs with the release in keys_index_set() (entry first) */
            if (ek == key) {
                e = c;
                break;
            }
            if (!ek || ouro_load_relaxed(&c->hash) != hash) continue; /* deleted, or another hash */
            if (nheld == LOOKUP_HELD || !_ouro_try_incref(ek)) goto done; /* LOOKUP_FALLBACK */
            held[nheld++] = ek;
            if (ouro_load_acquire(&c->key) != ek) { /* freed and reused meanwhile: not our candidate */
                changed = true;
                break;
            }
            int cmp = ouro_eq(ek, key); /* user code: k may be freed after it unless still current */
            if (cmp < 0) {
                r = -1;
                goto done;
            }
            if (!dict_table_is(d, k, gen) || ouro_load_acquire(&c->key) != ek) {
                changed = true;
                break;
            }
            if (cmp) {
                e = c;
                break;
            }
        }
        if (changed) continue;
        if (!e) {
            r = 0;
            break;
        }
        /* Found: k is valid here (no quiescent state since it was loaded or re-checked). */
        ouro_object *v = ouro_load_acquire(&e->value); /* pairs with the release of a replace/append */
        if (!v) continue;                               /* deleted meanwhile */
        if (!value) {
            r = 1; /* a live entry of key, seen in a table that was current */
            break;
        }
        if (!_ouro_try_incref(v)) break; /* LOOKUP_FALLBACK */
        /* v may have been freed and reused before the try-incref: the entry must still hold it, in
         * d's current table, under the same key. */
        if (dict_table_is(d, k, gen) && ouro_load_acquire(&e->key) == ek && ouro_load_acquire(&e->value) == v) {
            *value = v;
            r = 1;
            break;
        }
        ouro_decref(v); /* may run a dealloc: the next attempt reloads the table */
    }
done:
    for (size_t j = 0; j < nheld; j++) ouro_decref(held[j]);
    return r;
}

/* The locked lookup: the fallback. It marks the key and value it finds MAYBE_SHARED, so the next
 * lock-free lookup's try-increfs succeed. */
static int dict_lookup_locked(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value) {
    size_t slot;
    ouro_lock(&d->head.lock);
    int64_t ix = dict_find_locked(d, key, hash, &slot);
    int r = ix == DKIX_ERROR ? -1 : ix >= 0;
    if (ix >= 0) {
        dict_entry *e = &keys_entries(ouro_load_relaxed(&d->keys))[ix];
        ouro_object *v = ouro_load_relaxed(&e->value);
        _ouro_set_maybe_shared(ouro_load_relaxed(&e->key));
        _ouro_set_maybe_shared(v);
        if (value) *value = ouro_newref(v);
    }
    ouro_unlock(&d->head.lock);
    return r;
}

int _ouro_dict_lookup(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value) {
    if (!_ouro_object_thread_ready_on("a dict lookup", &d->head)) return -1; /* readers are attached and online */
    int r = dict_lookup_lockfree(d, key, hash, value);
    return r != LOOKUP_FALLBACK ? r : dict_lookup_locked(d, key, hash, value);
}

/* ---- the engine's other operations ------------------------------------------------------------------------- */

int _ouro_dict_store(dict_object *d, ouro_object *key, int64_t hash, ouro_object *value, bool only_if_missing,
                     ouro_object **current) {
    if (!_ouro_object_thread_ready()) return -1;
    ouro_object *replaced = NULL;
    dict_keys *spare = NULL;
    int r;
    for (;;) {
        unsigned want = 0;
        ouro_lock(&d->head.lock);
        r = dict_insert_locked(d, key, hash, value, only_if_missing, &replaced, current, &spare, &want);
        ouro_unlock(&d->head.lock);
        if (r != DICT_NEED_TABLE) break;
        ouro_free(spare); /* the wrong size by now (never published) */
        if (!(spare = keys_new(want))) {
            r = -1;
            break;
        }
    }
    ouro_free(spare);       /* not needed after all (never published) */
    ouro_xdecref(replaced); /* after unlocking: its dealloc is user code */
    return r;
}

int _ouro_dict_remove(dict_object *d, ouro_object *key, int64_t hash, ouro_object **value) {
    if (!_ouro_object_thread_ready()) return -1;
    size_t slot;
    ouro_object *k = NULL, *v = NULL;
    ouro_lock(&d->head.lock);
    int64_t ix = dict_find_locked(d, key, hash, &slot);
    if (ix >= 0) dict_unlink_locked(d, ix, slot, &k, &v);
    ouro_unlock(&d->head.lock);
    if (ix < 0) return ix == DKIX_ERROR ? -1 : 0;
    ouro_decref(k);
    if (value) *value = v;
    else ouro_decref(v);
    return 1;
}

int _ouro_dict_pop_last(dict_object *d, ouro_object **key, ouro_object **value) {
    if (!_ouro_object_thread_ready()) return -1;
    int r = 0;
    ouro_lock(&d->head.lock);
    dict_keys *k = ouro_load_relaxed(&d->keys);
    size_t j = k ? ouro_load_relaxed(&k->nentries) : 0;
    while (j > 0 && !ouro_load_relaxed(&keys_entries(k)[j - 1].key)) j--;
    if (j > 0) {
        int64_t ix = (int64_t)j - 1;
        size_t i;
        uint64_t perturb;
        PROBE_START(k, ouro_load_relaxed(&keys_entries(k)[ix].hash), i, perturb);
        while (keys_index_get(k, i) != ix) PROBE_NEXT(k, i, perturb);
        /* nentries stays: an entry is never reused within a table (lock-free readers rely on it). */
        dict_unlink_locked(d, ix, i, key, value);
        r = 1;
    }
    ouro_unlock(&d->head.lock);
    return r;
}

/* Drops the references of k's live entries and frees k (after a grace period when deferred). k is no
 * longer any dict's table, so nobody writes it any more. */
static void keys_release(dict_keys *k, bool deferred) {
    dict_entry *entries = keys_entries(k);
    size_t n = ouro_load_relaxed(&k->nentries);
    for (size_t j = 0; j < n; j++) {
        ouro_object *key = ouro_load_relaxed(&entries[j].key);
        if (!key) continue;
        ouro_decref(key);
        ouro_decref(ouro_load_relaxed(&entries[j].value));
    }
    if (deferred) _ouro_free_deferred(&k->defer);
    else ouro_free(k);
}

void _ouro_dict_clear(dict_object *d) {
    ouro_lock(&d->head.lock);
    dict_keys *old = ouro_load_relaxed(&d->keys);
    if (old) {
        ouro_store_release(&d->keys, NULL); /* pairs with the lookups' acquire (no contents to publish) */
        ouro_store_relaxed(&d->used, 0);
        d->version++;
    }
    ouro_unlock(&d->head.lock);
    if (old) keys_release(old, true); /* deallocs unlocked; readers may still probe old */
}

int _ouro_dict_copy_into(dict_object *dst, dict_object *src) {
    for (;;) {
        /* The table is allocated unlocked for the size seen, then filled if src still fits it. */
        size_t guess = ouro_load_relaxed(&src->used);
        dict_keys *k = guess ? keys_new(log2_for_count(guess)) : NULL;
        if (guess && !k) return -1;
        ouro_lock(&src->head.lock);
        size_t used = ouro_load_relaxed(&src->used);
        if (used > (k ? k->usable : 0)) {
            ouro_unlock(&src->head.lock);
            ouro_free(k); /* src grew meanwhile: again */
            continue;
        }
        if (used == 0) {
            ouro_unlock(&src->head.lock);
            ouro_free(k);
            return 0;
        }
        dict_keys *from = ouro_load_relaxed(&src->keys);
        dict_entry *e = keys_entries(from);
        size_t n = ouro_load_relaxed(&from->nentries);
        for (size_t j = 0; j < n; j++) {
            ouro_object *key = ouro_load_relaxed(&e[j].key);
            if (!key) continue;
            int64_t hash = ouro_load_relaxed(&e[j].hash);
            keys_append(k, keys_find_free(k, hash), hash, ouro_newref(key), ouro_newref(ouro_load_relaxed(&e[j].value)));
        }
        ouro_unlock(&src->head.lock);
        k->gen = ++dst->version; /* dst is not shared yet */
        ouro_store_relaxed(&dst->used, used);
        dict_publish(dst, k, NULL);
        return 0;
    }
}

int _ouro_dict_next(dict_object *d, size_t *pos, ouro_object **key, ouro_object **value) {
    int r = 0;
    ouro_lock(&d->head.lock);
    dict_keys *k = ouro_load_relaxed(&d->keys);
    size_t n = k ? ouro_load_relaxed(&k->nentries) : 0;
    for (size_t j = *pos; j < n; j++) {
        dict_entry *e = &keys_entries(k)[j];
        ouro_object *ek = ouro_load_relaxed(&e->key);
        if (!ek) continue;
        if (key) *key = ouro_newref(ek);
        if (value) *value = ouro_newref(ouro_load_relaxed(&e->value));
        *pos = j + 1;
        r = 1;
        break;
    }
    if (!r && *pos < n) *pos = n;
    ouro_unlock(&d->head.lock);
    return r;
}

int _ouro_dict_items(dict_object *d, dict_item **items, size_t *n) {
    *items = NULL;
    *n = 0;
    dict_item *it;
    size_t used;
    for (;;) { /* the array is allocated unlocked for the size seen, then filled if d still fits it */
        size_t cap = ouro_load_relaxed(&d->used);
        it = cap ? ouro_alloc(cap * sizeof *it) : NULL;
        if (cap && !it) return -1;
        ouro_lock(&d->head.lock);
        used = ouro_load_relaxed(&d->used);
        if (used <= cap) break;
        ouro_unlock(&d->head.lock);
        ouro_free(it);
    }
    dict_keys *k = ouro_load_relaxed(&d->keys);
    size_t m = 0, total = k ? ouro_load_relaxed(&k->nentries) : 0;
    for (size_t j = 0; j < total; j++) {
        dict_entry *e = &keys_entries(k)[j];
        ouro_object *key = ouro_load_relaxed(&e->key);
        if (!key) continue;
        it[m].hash = ouro_load_relaxed(&e->hash);
        it[m].key = ouro_newref(key);
        it[m].value = ouro_newref(ouro_load_relaxed(&e->value));
        m++;
    }
    OURO_ASSERT(m == used);
    ouro_unlock(&d->head.lock);
    *items = it;
    *n = m;
    return 0;
}

void _ouro_dict_items_free(dict_item *items, size_t n) {
    for (size_t j = 0; j < n; j++) {
        ouro_decref(items[j].key);
        ouro_decref(items[j].value);
    }
    ouro_free(items);
}

void _ouro_dict_table_info(dict_object *d, ouro_dict_table_t *out) {
    memset(out, 0, sizeof *out);
    ouro_lock(&d->head.lock);
    dict_keys *k = ouro_load_relaxed(&d->keys);
    out->used = ouro_load_relaxed(&d->used);
    if (k) {
        out->slots = keys_size(k);
        out->usable = k->usable;
        out->entries = ouro_load_relaxed(&k->nentries);
        out->index_bytes = (size_t)1 << k->log2_index_bytes;
    }
    ouro_unlock(&d->head.lock);
}

/* ---- type callbacks (dict and set) -------------------------------------------------------------------------- */

void _ouro_dict_dealloc(ouro_object *self) {
    dict_object *d = (dict_object *)self;
    dict_keys *k = ouro_load_relaxed(&d->keys);
    if (!k) return;
    ouro_store_relaxed(&d->keys, NULL);
    /* Immediately: a lookup holds a reference to the dict, so none can be probing a dying dict. */
    keys_release(k, false);
}

/* The collector's walk (the world stopped: no lock, a parked thread may hold it). Each live entry's
 * key, then its value (a set's sentinel is not visited). */
int _ouro_dict_traverse(ouro_object *self, ouro_visitproc visit, void *arg) {
    dict_object *d = (dict_object *)self;
    dict_keys *k = ouro_load_acquire(&d->keys); /* pairs with the release in dict_publish() */
    if (!k) return 0;
    dict_entry *e = keys_entries(k);
    size_t n = ouro_load_relaxed(&k->nentries);
    for (size_t j = 0; j < n; j++) {
        ouro_object *key = ouro_load_relaxed(&e[j].key);
        if (!key) continue;
        int r = visit(key, arg);
        if (r) return r;
        ouro_object *v = ouro_load_relaxed(&e[j].value);
        if (v != &_ouro_set_present && (r = visit(v, arg))) return r;
    }
    return 0;
}

void _ouro_dict_tp_clear(ouro_object *self) { _ouro_dict_clear((dict_object *)self); }

size_t _ouro_dict_extra_size(ouro_object *self) {
    /* A table replaced meanwhile stays allocated until our next quiescent state. */
    dict_keys *k = ouro_load_acquire(&((dict_object *)self)->keys); /* pairs with dict_publish() */
    return k ? ouro_usable_size(k) : 0;
}

/* ---- dict ------------------------------------------------------------------------------------------------------ */

static ouro_object *dict_repr(ouro_object *self);
static int dict_eq(ouro_object *self, ouro_object *other);

ouro_type ouro_dict_type = {
    .head = OURO_TYPE_HEAD,
    .name = "dict",
    .basic_size = sizeof(dict_object),
    .flags = OURO_TYPE_GC,
    .dealloc = _ouro_dict_dealloc,
    .traverse = _ouro_dict_traverse,
    .clear = _ouro_dict_tp_clear,
    .hash = ouro_unhashable,
    .eq = dict_eq,
    .repr = dict_repr,
    .extra_size = _ouro_dict_extra_size,
};

/* d as a dict, or NULL with INVALID (NULL) / TYPE (another type). */
static dict_object *dict_arg(ouro_object *d, const char *fn) { return _ouro_arg(d, &ouro_dict_type, fn); }

#define key_hash _ouro_key_hash

static int err_missing(const char *fn, ouro_object *key) {
    _ouro_err_set(OURO_ERR_KEY, "%s: key not found (a '%s')", fn, key->type->name);
    return -1;
}

ouro_object *ouro_dict_new(void) { return ouro_new(&ouro_dict_type); }

int ouro_dict_set(ouro_object *d, ouro_object *key, ouro_object *value) {
    dict_object *o = dict_arg(d, "ouro_dict_set");
    if (!o) return -1;
    if (!value) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_dict_set: value is NULL");
        return -1;
    }
    int64_t hash = key_hash(key, "ouro_dict_set");
    if (hash == -1) return -1;
    return _ouro_dict_store(o, key, hash, value, false, NULL) < 0 ? -1 : 0;
}

int ouro_dict_get_ref(ouro_object *d, ouro_object *key, ouro_object **out) {
    if (!out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_dict_get_ref: out is NULL");
        return -1;
    }
    *out = NULL;
    dict_object *o = dict_arg(d, "ouro_dict_get_ref");
    if (!o) return -1;
    int64_t hash = key_hash(key, "ouro_dict_get_ref");
    if (hash == -1) return -1;
    return _ouro_dict_lookup(o, key, hash, out);
}

ouro_object *ouro_dict_get(ouro_object *d, ouro_object *key) {
    ouro_object *v;
    int r = ouro_dict_get_ref(d, key, &v);
    if (r == 0) err_missing("ouro_dict_get", key);
    return v;
}

int ouro_dict_del(ouro_object *d, ouro_object *key) {
    dict_object *o = dict_arg(d, "ouro_dict_del");
    if (!o) return -1;
    int64_t hash = key_hash(key, "ouro_dict_del");
    if (hash == -1) return -1;
    int r = _ouro_dict_remove(o, key, hash, NULL);
    return r < 0 ? -1 : r == 0 ? err_missing("ouro_dict_del", key) : 0;
}

ouro_object *ouro_dict_pop(ouro_object *d, ouro_object *key, ouro_object *dflt) {
    dict_object *o = dict_arg(d, "ouro_dict_pop");
    if (!o) return NULL;
    int64_t hash = key_hash(key, "ouro_dict_pop");
    if (hash == -1) return NULL;
    ouro_object *v = NULL;
    int r = _ouro_dict_remove(o, key, hash, &v);
    if (r != 0) return v;
    if (dflt) return ouro_newref(dflt);
    err_missing("ouro_dict_pop", key);
    return NULL;
}

int ouro_dict_contains(ouro_object *d, ouro_object *key) {
    dict_object *o = dict_arg(d, "ouro_dict_contains");
    if (!o) return -1;
    int64_t hash = key_hash(key, "ouro_dict_contains");
    if (hash == -1) return -1;
    return _ouro_dict_lookup(o, key, hash, NULL);
}

size_t ouro_dict_size(ouro_object *d) {
    dict_object *o = dict_arg(d, "ouro_dict_size");
    return o ? ouro_load_relaxed(&o->used) : (size_t)-1;
}

int ouro_dict_clear(ouro_object *d) {
    dict_object *o = dict_arg(d, "ouro_dict_clear");
    if (!o) return -1;
    _ouro_dict_clear(o);
    return 0;
}

ouro_object *ouro_dict_copy(ouro_object *d) {
    dict_object *o = dict_arg(d, "ouro_dict_copy");
    if (!o) return NULL;
    ouro_object *c = ouro_dict_new();
    if (c && _ouro_dict_copy_into((dict_object *)c, o) != 0) {
        ouro_decref(c);
        return NULL;
    }
    return c;
}

int ouro_dict_update(ouro_object *d, ouro_object *other) {
    dict_object *o = dict_arg(d, "ouro_dict_update");
    dict_object *src = o ? dict_arg(other, "ouro_dict_update") : NULL;
    if (!src) return -1;
    dict_item *items;
    size_t n;
    if (_ouro_dict_items(src, &items, &n) != 0) return -1;
    int r = 0;
    for (size_t j = 0; j < n && r == 0; j++)
        if (_ouro_dict_store(o, items[j].key, items[j].hash, items[j].value, false, NULL) < 0) r = -1;
    _ouro_dict_items_free(items, n);
    return r;
}

ouro_object *ouro_dict_setdefault(ouro_object *d, ouro_object *key, ouro_object *dflt) {
    dict_object *o = dict_arg(d, "ouro_dict_setdefault");
    if (!o) return NULL;
    if (!dflt) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_dict_setdefault: default is NULL");
        return NULL;
    }
    int64_t hash = key_hash(key, "ouro_dict_setdefault");
    if (hash == -1) return NULL;
    ouro_object *now = NULL;
    return _ouro_dict_store(o, key, hash, dflt, true, &now) < 0 ? NULL : now;
}

int ouro_dict_next(ouro_object *d, size_t *pos, ouro_object **key, ouro_object **value) {
    dict_object *o = dict_arg(d, "ouro_dict_next");
    if (!o) return -1;
    if (!pos) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_dict_next: pos is NULL");
        return -1;
    }
    return _ouro_dict_next(o, pos, key, value);
}

int ouro_dict_table_info(ouro_object *d, ouro_dict_table_t *out) {
    dict_object *o = dict_arg(d, "ouro_dict_table_info");
    if (!o) return -1;
    if (!out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_dict_table_info: out is NULL");
        return -1;
    }
    _ouro_dict_table_info(o, out);
    return 0;
}

static ouro_object *dict_repr(ouro_object *self) {
    repr_frame frame;
    int active = _ouro_repr_enter(&frame, self);
    if (active) return active < 0 ? NULL : ouro_str_from_cstr("{...}");
    repr_buf b = {0};
    dict_item *items;
    size_t n;
    if (_ouro_dict_items((dict_object *)self, &items, &n) != 0) b.failed = true;
    else {
        _ouro_repr_put(&b, "{", 1);
        for (size_t j = 0; j < n; j++) {
            if (j) _ouro_repr_put(&b, ", ", 2);
            _ouro_repr_put_obj(&b, items[j].key); /* user code, unlocked: a snapshot's references */
            _ouro_repr_put(&b, ": ", 2);
            _ouro_repr_put_obj(&b, items[j].value);
        }
        _ouro_repr_put(&b, "}", 1);
        _ouro_dict_items_free(items, n);
    }
    _ouro_repr_leave(&frame);
    return _ouro_repr_finish(&b);
}

/* Same keys, equal values (a snapshot of self against lookups in other). */
static int dict_eq(ouro_object *self, ouro_object *other) {
    if (!ouro_is_type(other, &ouro_dict_type)) return 0;
    dict_object *a = (dict_object *)self, *b = (dict_object *)other;
    if (ouro_load_relaxed(&a->used) != ouro_load_relaxed(&b->used)) return 0;
    dict_item *items;
    size_t n;
    if (_ouro_dict_items(a, &items, &n) != 0) return -1;
    int r = n == ouro_load_relaxed(&b->used);
    for (size_t j = 0; j < n && r == 1; j++) {
        ouro_object *v;
        r = _ouro_dict_lookup(b, items[j].key, items[j].hash, &v);
        if (r == 1) {
            r = ouro_eq(items[j].value, v);
            ouro_decref(v);
        }
    }
    _ouro_dict_items_free(items, n);
    return r;
}
