/* alloc/alloc.c — the public entry points. The fast paths (a pop from the current pool, a push onto
 * the owner's pool) are here, inline over alloc/internal.h; everything else is a named slow path. */
#include "alloc/internal.h"

/* The usable size of a validated block whose region header is hdr. */
static size_t alloc_usable(ouro_pool_t *hdr) {
    return hdr->type == OURO_PT_BLOCKS ? (size_t)hdr->block_size - OURO_PAD : _ouro_large_usable(hdr);
}

/* Returns the header of the region p belongs to when p is a block ouro handed out (as far as can be
 * told without the owner's lists), else NULL with OURO_ERR_INVALID set and a warning printed. */
static OURO_NOINLINE ouro_pool_t *alloc_validate(const void *p, const char *fn) {
    const char *why = NULL;
    ouro_pool_t *pool = NULL;
    unsigned chunk = _ouro_addrmap_get(p);
    if ((uintptr_t)p & (OURO_ALIGN - 1)) {
        why = "is not 16-byte aligned";
    } else if (chunk == OURO_CHUNK_HUGE_HEAD) {
        ouro_arena_t *a = ouro_arena_of(p);
        if ((char *)p != ouro_pool_data(&a->pools[1])) why = "points inside a large block";
        else pool = &a->pools[1];
    } else if (chunk != OURO_CHUNK_ARENA) {
        why = chunk == OURO_CHUNK_HUGE_BODY ? "points inside a large block" : "was not allocated by ouro";
    } else {
        pool = ouro_pool_of(p);
        unsigned state = ouro_load_relaxed(&ouro_arena_of(p)->pool_state[ouro_pool_index(pool)]);
        size_t off = (size_t)((const char *)p - ouro_pool_data(pool));
        if (state == OURO_PT_BLOCKS) {
            if (off % pool->block_size != 0 || off / pool->block_size >= pool->capacity) why = "points inside a block";
        } else if (state == OURO_PT_RUN) {
            if (off != 0) why = "points inside a large block";
        } else {
            why = state == OURO_PT_RUN_BODY ? "points inside a large block" : "is not a live block (freed twice?)";
        }
    }
    if (!why) return pool;
    _ouro_err_set(OURO_ERR_INVALID, "%s: pointer %p %s", fn, p, why);
    _ouro_warn("%s: pointer %p %s; ignored", fn, p, why);
    return NULL;
}

/* ---- allocation --------------------------------------------------------------------------------------- */

/* Everything but a small request whose current pool has a free block. */
static OURO_NOINLINE void *alloc_generic(ouro_heap_t *h, size_t size) {
    if (size == 0) size = 1; /* a unique pointer, like any other block */
    if (size <= OURO_MEDIUM_MAX - OURO_PAD) {
        unsigned cls = ouro_size_class(size + OURO_PAD);
        ouro_block_t *b = ouro_pool_pop(h->cur[OURO_KIND_PLAIN][cls]);
        return b ? b : _ouro_heap_alloc_slow(h, OURO_KIND_PLAIN, cls);
    }
    return _ouro_large_alloc(size);
}

void *ouro_alloc(size_t size) {
    ouro_heap_t *h = _ouro_tls_heap;
    /* Without a pad, size 0 wraps around to the slow path; with one, size is compared before adding
     * the pad, so a size near SIZE_MAX cannot wrap into a small class. */
    bool small = OURO_PAD ? size <= OURO_SMALL_MAX - OURO_PAD : size - 1 < OURO_SMALL_MAX;
    if (OURO_LIKELY(small)) {
        ouro_block_t *b = ouro_pool_pop(h->cur[OURO_KIND_PLAIN][(size + OURO_PAD - 1) >> 4]);
        if (OURO_LIKELY(b != NULL)) return b;
    }
    return alloc_generic(h, size);
}

void *_ouro_alloc_kind(unsigned kind, size_t size) {
    OURO_API_CHECK(kind < OURO_NKINDS && size <= OURO_MEDIUM_MAX - OURO_PAD);
    ouro_heap_t *h = _ouro_tls_heap;
    unsigned cls = ouro_size_class((size ? size : 1) + OURO_PAD);
    ouro_block_t *b = ouro_pool_pop(h->cur[kind][cls]);
    return b ? b : _ouro_heap_alloc_slow(h, kind, cls);
}

void *ouro_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_calloc: %zu * %zu overflows", n, size);
        return NULL;
    }
    void *p = ouro_alloc(total);
    if (p && !(total > OURO_MEDIUM_MAX && ouro_pool_of(p)->type == OURO_PT_HUGE))
        memset(p, 0, total); /* a dedicated mapping is fresh from the OS: already zero */
    return p;
}

/* ---- free ----------------------------------------------------------------------------------------------- */

/* A local free whose link word looks like a free block's (hardened builds): confirm, then free. */
static OURO_NOINLINE void free_local_suspect(ouro_heap_t *h, ouro_pool_t *pool, ouro_block_t *b) {
    _ouro_block_check_double_free(pool, b, true); /* does not return on a double free */
    uint32_t used = ouro_pool_push_local(pool, b);
    if (pool->flags != 0 && (pool->flags == OURO_PF_FULL || used == 0)) _ouro_heap_free_local_slow(h, pool);
}

/* A block whose pool this thread does not own: remote, abandoned, or large. */
static OURO_NOINLINE void free_generic(ouro_pool_t *pool, void *p) {
    if (OURO_DEBUG_LEVEL == 0 && !(pool = alloc_validate(p, "ouro_free"))) return;
    if (pool->type == OURO_PT_BLOCKS) _ouro_pool_free_remote(pool, p);
    else _ouro_large_free(pool);
}

void ouro_free(void *p) {
    if (OURO_UNLIKELY(p == NULL)) return;
    ouro_pool_t *pool = ouro_pool_of(p);
    if (OURO_DEBUG_LEVEL >= 1) {
        if (!(pool = alloc_validate(p, "ouro_free"))) return;
    } else if (OURO_UNLIKELY(_ouro_addrmap_get(p) == OURO_CHUNK_NONE)) {
        /* Not in an arena (malloc's block, the stack, static data): the pool header below it may not
         * be mapped. Two loads of the address map; reported, then ignored. */
        alloc_validate(p, "ouro_free");
        return;
    }
    ouro_heap_t *h = _ouro_tls_heap;
    if (OURO_LIKELY(ouro_load_relaxed(&pool->heap) == h)) {
        if (ouro_block_suspect(pool, p)) {
            free_local_suspect(h, pool, p);
            return;
        }
        uint32_t used = ouro_pool_push_local(pool, p);
        /* Only a listed pool needs care: a full one gained a free block, a partial one may be empty. */
        if (OURO_UNLIKELY(pool->flags != 0) && (pool->flags == OURO_PF_FULL || used == 0))
            _ouro_heap_free_local_slow(h, pool);
        return;
    }
    free_generic(pool, p);
}

/* ---- realloc and sizes ------------------------------------------------------------------------------- */

void *ouro_realloc(void *p, size_t size) {
    if (p == NULL) return ouro_alloc(size);
    ouro_pool_t *pool = alloc_validate(p, "ouro_realloc");
    if (!pool) return NULL;
    size_t usable = alloc_usable(pool);
    if (size <= usable && size >= usable / 2) return p; /* fits, and not mostly wasted */
    void *q = ouro_alloc(size);
    if (!q) return NULL;
    memcpy(q, p, size < usable ? size : usable);
    ouro_free(p);
    return q;
}

size_t ouro_usable_size(const void *p) {
    if (p == NULL) return 0;
    ouro_pool_t *pool = alloc_validate(p, "ouro_usable_size");
    return pool ? alloc_usable(pool) : 0;
}

/* ---- maintenance --------------------------------------------------------------------------------------- */

size_t ouro_alloc_collect(void) {
    _ouro_heap_collect(_ouro_tls_heap);
    pthread_mutex_lock(&_ouro_arena_lock);
    size_t bytes = _ouro_arena_trim_locked();
    pthread_mutex_unlock(&_ouro_arena_lock);
    return bytes;
}

int ouro_alloc_check(void) {
    char why[256];
    if (_ouro_heap_check(_ouro_tls_heap, why, sizeof why)) return 0;
    _ouro_err_set(OURO_ERR_STATE, "ouro_alloc_check: %s", why);
    return -1;
}
