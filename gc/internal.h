/* gc/internal.h — what the collector's files share: growable arrays and the full collection's scan.
 * gc.c is the collector (tracking, young lists, collections, the API); scan.c is the full collection's
 * mark over every GC pool, with its counts in a side table instead of the objects' headers. */
#ifndef OURO_GC_INTERNAL_H
#define OURO_GC_INTERNAL_H
#ifndef OURO_BUILD_CORE
#error "gc/internal.h is internal to libouro"
#endif
#include "core/objimpl.h"
#include "alloc/internal.h"

#include <stdbool.h>
#include <stdlib.h>

/* ---- a growable array of object pointers (malloc: never ouro's allocator, whose slow path parks) -- */

typedef struct {
    ouro_object **v;
    size_t n, cap;
} objvec;

/* Appends o; false when out of memory. */
static inline bool objvec_push(objvec *a, ouro_object *o) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        ouro_object **v = _ouro_sys_realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = o;
    return true;
}

static inline void objvec_free(objvec *a) {
    free(a->v);
    *a = (objvec){0};
}

/* ---- gc_bits (core/objimpl.h defines them) ------------------------------------------------------------- */

static inline unsigned gc_bits_of(const ouro_object *o) { return __atomic_load_n(&o->gc_bits, __ATOMIC_RELAXED); }
static inline void gc_bits_set(ouro_object *o, unsigned b) { __atomic_store_n(&o->gc_bits, (uint8_t)b, __ATOMIC_RELAXED); }
static inline unsigned gc_gen_of(unsigned bits) { return (bits & OURO_GC_GEN_MASK) >> OURO_GC_GEN_SHIFT; }
static inline unsigned gc_with_gen(unsigned bits, unsigned g) { return (bits & ~OURO_GC_GEN_MASK) | (g << OURO_GC_GEN_SHIFT); }

/* The true count of a mortal object (world stopped, queues merged). */
static inline intptr_t gc_true_count(const ouro_object *o) {
    return (intptr_t)__atomic_load_n(&o->ref_local, __ATOMIC_RELAXED) +
           (__atomic_load_n(&o->ref_shared, __ATOMIC_RELAXED) >> OURO_SHARED_SHIFT);
}

/* Debug builds (level >= 1): every reference a type's traverse visits is checked not to be a freed
 * block (its canary), and a freed one stops the program naming the type, the object and the reference. */
OURO_INTERNAL _Noreturn void _ouro_gc_traverse_freed(const ouro_object *parent, const ouro_object *child) __attribute__((cold));

typedef struct {
    ouro_visitproc visit;
    void *arg;
    const ouro_object *parent;
} gc_checked_visit;

static inline int gc_visit_checked(ouro_object *child, void *arg) {
    gc_checked_visit *c = arg;
    if (child && OURO_UNLIKELY(_ouro_block_freed(child))) _ouro_gc_traverse_freed(c->parent, child);
    return c->visit(child, c->arg);
}

static inline void gc_traverse(ouro_object *o, ouro_visitproc visit, void *arg) {
    if (!o->type->traverse) return;
    if (OURO_DEBUG_LEVEL >= 1) {
        gc_checked_visit c = {visit, arg, o};
        o->type->traverse(o, gc_visit_checked, &c);
    } else {
        o->type->traverse(o, visit, arg);
    }
}

/* ---- gc.c -------------------------------------------------------------------------------------------- */

/* Calls fn on every GC pool: the registered threads' heaps' and the abandoned ones. World stopped. */
OURO_INTERNAL void _ouro_gc_visit_pools(ouro_pool_visit_fn fn, void *arg);

/* ---- scan.c ------------------------------------------------------------------------------------------- */

/* The full collection's mark, world stopped and every refcount queue merged: finds the garbage among
 * every tracked object of every generation (not frozen, mortal, count > 0: the candidates), lists it
 * in *garbage, and moves every candidate to generation 2. Sets *candidates. SCAN_FALLBACK when out of
 * memory for its tables, or past 2^32 blocks or references (nothing changed but generations, to 2:
 * the caller falls back to the header-based collection); SCAN_NOMEM when the mark is done but there
 * is no memory to list the garbage (nothing changed but generations: the collection gives up). */
typedef enum { SCAN_OK, SCAN_FALLBACK, SCAN_NOMEM } scan_result;
OURO_INTERNAL scan_result _ouro_gc_scan_full(objvec *garbage, size_t *candidates);

/* A fork child: the scan's helper thread is gone (it starts again when needed). */
OURO_INTERNAL void _ouro_gc_scan_atfork_child(void);

#endif
