/* ouro/gc.h — the cycle collector, with Python's gc module as its API.
 *
 * Reference counting frees most objects; the collector frees the cycles. Instances of types with
 * OURO_TYPE_GC are tracked from birth (ouro_new; a type's traverse must accept the zeroed state it
 * returns). A collection stops the world, finds the tracked objects that only other candidates
 * reference (CPython's algorithm), restarts the world, clears weak references to them, runs their
 * finalizers (once per object; an object a finalizer resurrects survives) and breaks the cycles with
 * the types' clear callbacks. User code (finalizers, weakref callbacks, the callbacks below) never
 * runs while the world is stopped. docs/gc.md has the algorithm, the generations and the triggers.
 *
 * Three generations: 0 (young), 1, 2 (old). Every function here may be called from any attached
 * thread; the ones that collect or walk the heap (collect, freeze, get_objects, get_referrers) must
 * be called online, outside a stop, and not from a finalizer or callback of a running collection
 * (they return -1 / NULL with OURO_ERR_STATE there). */
#ifndef OURO_GC_H
#define OURO_GC_H

#include <stddef.h>
#include <stdint.h>

#include "ouro/object.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OURO_GC_GENERATIONS 3

/* Collects generations 0..generation (2: a full collection; -1 means 2). Returns the number of
 * unreachable objects found (as Python's: those a finalizer resurrected are not counted; an object
 * whose type has no clear is counted even if its cycle then keeps it alive), or -1 with
 * OURO_ERR_INVALID (generation out of range), OURO_ERR_STATE (called from a collection's callback,
 * finalizer, or while holding a stop), or OURO_ERR_NOMEM (no memory for the collection's work space:
 * it gave up, nothing was collected and every object is as it was). */
long ouro_gc_collect(int generation);

/* Automatic collection on (the default) or off; is_enabled returns 1 or 0. Explicit collections
 * run either way. */
void ouro_gc_enable(void);
void ouro_gc_disable(void);
int ouro_gc_is_enabled(void);

/* Python's gc.get_count(): count[0] = tracked allocations minus deallocations since the last
 * collection of generation 0; count[1] = collections of generation 0 since the last collection of
 * generation 1; count[2] = collections of generation 1 since the last of generation 2. */
void ouro_gc_get_count(long count[OURO_GC_GENERATIONS]);

/* Thresholds (2000, 10, 10 by default). set: -1 / OURO_ERR_INVALID for a negative value. 0 turns
 * that generation's automatic collection off: for threshold 0 as in Python; for 1 and 2 Python would
 * collect that generation every time instead. */
void ouro_gc_get_threshold(long threshold[OURO_GC_GENERATIONS]);
int ouro_gc_set_threshold(long threshold0, long threshold1, long threshold2);

/* Per generation, since the process started. Pauses are the stop-the-world time of a collection
 * (both stops when a finalizer ran), in nanoseconds. */
typedef struct ouro_gc_gen_stats {
    uint64_t collections;
    uint64_t collected;     /* unreachable objects freed */
    uint64_t uncollectable; /* unreachable objects kept: in the garbage list (OURO_GC_DEBUG_SAVEALL) */
    uint64_t candidates;    /* objects examined */
    uint64_t pause_total_ns;
    uint64_t pause_max_ns;
} ouro_gc_gen_stats;

/* Fills out[0..2]; -1 / OURO_ERR_INVALID for NULL. */
int ouro_gc_get_stats(ouro_gc_gen_stats out[OURO_GC_GENERATIONS]);

/* Moves every tracked object to a permanent generation that collections ignore (for a server that
 * forks workers after start-up: their pages stay shared). unfreeze moves them back to the oldest
 * generation. get_freeze_count is how many are frozen. freeze: -1 / OURO_ERR_STATE as collect. */
int ouro_gc_freeze(void);
int ouro_gc_unfreeze(void);
size_t ouro_gc_get_freeze_count(void);

/* Callbacks on the start and stop of every collection (Python's gc.callbacks). They run on the
 * collecting thread with the world running: phase 0 start, 1 stop; at start collected, uncollectable
 * and duration are 0. */
typedef struct ouro_gc_info {
    int generation;
    long collected;
    long uncollectable;
    uint64_t duration_ns; /* the collection, from start to stop, finalizers included */
} ouro_gc_info;
typedef void (*ouro_gc_callback)(int phase, const ouro_gc_info *info, void *arg);
#define OURO_GC_START 0
#define OURO_GC_STOP 1

/* Registers fn(arg) (at most 16); remove takes the first registration of the same fn and arg and
 * returns once no call of it is running on the collecting thread (at once when called from a
 * callback: that call is the caller's own), so arg may be freed when it returns; it waits offline.
 * -1 / OURO_ERR_INVALID (NULL fn, full, not registered). */
int ouro_gc_callback_add(ouro_gc_callback fn, void *arg);
int ouro_gc_callback_remove(ouro_gc_callback fn, void *arg);

/* A new list of the tracked objects in generation (0..2), or in all when generation is -1 (frozen
 * ones excluded, as Python's). NULL with an error (OURO_ERR_INVALID, OURO_ERR_STATE, OURO_ERR_NOMEM). */
ouro_object *ouro_gc_get_objects(int generation);

/* A new list of the tracked objects that refer to o (found by their traverse), or NULL with an error. */
ouro_object *ouro_gc_get_referrers(ouro_object *o);
/* A new list of the objects o's traverse visits (empty when o's type has no traverse). */
ouro_object *ouro_gc_get_referents(ouro_object *o);

/* 1 when o is tracked / its finalizer has run, else 0; -1 / OURO_ERR_INVALID for NULL. */
int ouro_gc_is_tracked(const ouro_object *o);
int ouro_gc_is_finalized(const ouro_object *o);

/* Tracks / untracks o (a GC type's instance; it joins generation 0). Idempotent. The caller holds a
 * reference and no other thread tracks or untracks o at the same time. -1 / OURO_ERR_INVALID (NULL,
 * not an OURO_TYPE_GC instance). */
int ouro_gc_track(ouro_object *o);
int ouro_gc_untrack(ouro_object *o);

/* Debug flags (Python's gc.DEBUG_*): reports go to stderr. */
#define OURO_GC_DEBUG_STATS 1u         /* a line per collection */
#define OURO_GC_DEBUG_COLLECTABLE 2u   /* each collectable object found */
#define OURO_GC_DEBUG_UNCOLLECTABLE 4u /* each object put in the garbage list */
#define OURO_GC_DEBUG_SAVEALL 32u      /* keep every unreachable object in the garbage list, unfreed */
#define OURO_GC_DEBUG_LEAK (OURO_GC_DEBUG_COLLECTABLE | OURO_GC_DEBUG_UNCOLLECTABLE | OURO_GC_DEBUG_SAVEALL)
void ouro_gc_set_debug(unsigned flags);
unsigned ouro_gc_get_debug(void);

/* The garbage list (Python's gc.garbage): a list object, owned by the collector, that SAVEALL
 * collections append to. Returns a new reference; the caller may clear it (ouro_list_clear). */
ouro_object *ouro_gc_garbage(void);

#ifdef __cplusplus
}
#endif

#endif /* OURO_GC_H */
