/* alloc/alloc.c — the public entry points. The fast paths (a pop from the current pool, a push onto
 * the owner's pool) are here, inline over alloc/internal.h; everything else is a named slow path. */
#include "alloc/internal.h"

/* The bytes a validated block p spans (to the end of its redzone in sanitized builds); hdr is the
 * header of its region. */
static size_t alloc_span(ouro_pool_t *hdr) {
    return hdr->type == OURO_PT_BLOCKS ? hdr->block_size : _ouro_large_usable(hdr);
}

/* The usable size of a validated block p whose region header is hdr (sanitized builds: the size it was
 * asked for, alloc/sanitize.h). */
static size_t alloc_usable(ouro_pool_t *hdr, const void *p) {
    if (OURO_SAN) return _ouro_san_block_size(p, alloc_span(hdr));
    return hdr->type == OURO_PT_BLOCKS ? (size_t)hdr->block_size - OURO_PAD : _ouro_large_usable(hdr);
}

/* ---- sanitized builds (alloc/sanitize.h) ----------------------------------------------------------------- */

size_t _ouro_san_block_size(const void *p, size_t end) { return ouro_san_peek((const char *)p + end - sizeof(uintptr_t)); }

/* Sets the addressable part of an open block p of span bytes to its first size bytes (and memcheck's
 * record of it), records size in the redzone's last word. */
static void san_shape(void *p, size_t span, size_t size, bool object) {
    char *end_word = (char *)p + span - sizeof(uintptr_t);
    ouro_san_unpoison(end_word, sizeof(uintptr_t));
    __atomic_store_n((uintptr_t *)end_word, size, __ATOMIC_RELAXED);
    ouro_san_poison((char *)p + size, span - size);
    ouro_san_give(p, size);
    if (object) ouro_san_unpoison(p, OURO_SAN_HEADER); /* defined: readers may load it (see the header) */
}

/* The header of the region of a block p just handed out: its pool, its run's first pool, or its dedicated
 * mapping's pools[1] (the header is p's arena, or one chunk below it for an aligned block: large_huge). */
static ouro_pool_t *alloc_region_of(const void *p) {
    unsigned chunk = _ouro_addrmap_get(p);
    if (chunk == OURO_CHUNK_HUGE_HEAD) return &ouro_arena_of(p)->pools[1];
    if (chunk == OURO_CHUNK_HUGE_BODY) return &ouro_arena_of((const char *)p - 1)->pools[1];
    return ouro_pool_of(p);
}

void *_ouro_san_handout_slow(void *p, size_t size) {
    if (size == 0) size = 1; /* as the class chose it */
    ouro_pool_t *hdr = alloc_region_of(p);
    size_t span = alloc_span(hdr);
    if (hdr->type != OURO_PT_BLOCKS) ouro_san_unpoison(p, span); /* a large block's pools were poisoned free */
    ouro_san_malloclike(p, size);
    san_shape(p, span, size, hdr->type == OURO_PT_BLOCKS && hdr->kind != OURO_KIND_PLAIN);
    return p;
}

/* Sanitized builds: whether pool block b is handed out (its class's size word and, in debug builds,
 * its canary say so; a plain block's first byte is addressable only while it is live under ASan). */
static __attribute__((unused)) bool san_block_live(const ouro_pool_t *pool, const char *b) {
#if OURO_ASAN
    if (pool->kind == OURO_KIND_PLAIN) return !__asan_address_is_poisoned(b);
#endif
    if (OURO_DEBUG_LEVEL >= 1) return ouro_san_peek(b + pool->block_size - OURO_PAD) == (OURO_CANARY ^ (uintptr_t)b);
    return _ouro_san_block_size(b, pool->block_size) <= (size_t)pool->block_size - OURO_PAD;
}

/* One line saying what addr is to ouro, for a memory checker's report of an access (is_write) there:
 * "read after free", "write after free", "buffer overflow", ... with the block, its class and size. */
static __attribute__((unused)) void san_describe(const char *addr, bool is_write) {
    const char *rw = is_write ? "write" : "read";
    unsigned chunk = _ouro_addrmap_get(addr);
    if (chunk == OURO_CHUNK_NONE) return; /* not ouro's memory */
    ouro_arena_t *a = ouro_arena_of(addr);
    if (chunk != OURO_CHUNK_ARENA) {
        if (chunk == OURO_CHUNK_HUGE_BODY) {
            _ouro_warn("%s at %p: inside a large block's dedicated mapping", rw, (const void *)addr);
            return;
        }
        const char *p = _ouro_large_data(&a->pools[1]);
        size_t size = _ouro_san_block_size(p, a->huge_usable);
        if (addr >= p && (size_t)(addr - p) >= size)
            _ouro_warn("buffer overflow: %s at byte %zu of large block %p, which has %zu bytes", rw, (size_t)(addr - p),
                       (const void *)p, size);
        return;
    }
    ouro_pool_t *pool = ouro_pool_of(addr);
    uint32_t i = ouro_pool_index(pool);
    unsigned state = ouro_load_relaxed(&a->pool_state[i]);
    if (state == OURO_PT_RUN_BODY) /* find the run's first pool */
        while (i > 1 && ouro_load_relaxed(&a->pool_state[i]) == OURO_PT_RUN_BODY) i--;
    pool = &a->pools[i];
    const char *data = ouro_pool_data(pool);
    if (state == OURO_PT_BLOCKS) {
        size_t bs = pool->block_size, n = (size_t)(addr - data) / bs;
        const char *b = data + n * bs;
        size_t off = (size_t)(addr - b);
        if (n >= pool->carved)
            _ouro_warn("%s of never-allocated memory: byte %zu of block %p (class %u, size %zu), not carved yet", rw, off,
                       (const void *)b, pool->cls, bs);
        else if (!san_block_live(pool, b))
            _ouro_warn("%s after free: byte %zu of free %sblock %p (class %u, size %zu)", rw, off,
                       pool->kind == OURO_KIND_PLAIN ? "" : "object ", (const void *)b, pool->cls, bs);
        else
            _ouro_warn("buffer overflow: %s at byte %zu of block %p, which has %zu bytes (class %u, size %zu)", rw, off,
                       (const void *)b, _ouro_san_block_size(b, bs), pool->cls, bs);
    } else if (state == OURO_PT_RUN || (state == OURO_PT_RUN_BODY && ouro_load_relaxed(&a->pool_state[i]) == OURO_PT_RUN)) {
        _ouro_warn("buffer overflow: %s at byte %zu of large block %p, which has %zu bytes", rw, (size_t)(addr - data),
                   (const void *)data, _ouro_san_block_size(data, pool->run_usable));
    } else if (state == OURO_PT_DEFERRED) {
        _ouro_warn("%s after free: %p is in emptied object pool %p (class %u), waiting for a grace period", rw,
                   (const void *)addr, (const void *)data, pool->cls);
    } else {
        _ouro_warn("%s after free: %p is in a free pool (%p): a freed large block, or a pool given back", rw,
                   (const void *)addr, (const void *)data);
    }
}

#if OURO_ASAN
/* ASan calls this when it reports an error, before the report: ouro's line comes first. */
void __asan_on_error(void);
void __asan_on_error(void) {
    const char *addr = __asan_get_report_address();
    if (addr) san_describe(addr, __asan_get_report_access_type() != 0);
}
#endif

/* Returns the header of the region p belongs to when p is a block ouro handed out (as far as can be
 * told without the owner's lists), else NULL with OURO_ERR_INVALID set and a warning printed. */
static const char free_fn[] = "ouro_free";

static OURO_NOINLINE ouro_pool_t *alloc_validate(const void *p, const char *fn) {
    const char *why = NULL;
    ouro_pool_t *pool = NULL;
    unsigned chunk = _ouro_addrmap_get(p);
    if ((uintptr_t)p & (OURO_ALIGN - 1)) {
        why = "is not 16-byte aligned";
    } else if (chunk == OURO_CHUNK_HUGE_HEAD) {
        ouro_arena_t *a = ouro_arena_of(p);
        if ((const char *)p != _ouro_large_data(&a->pools[1])) why = "points inside a large block";
        else pool = &a->pools[1];
    } else if (chunk == OURO_CHUNK_HUGE_BODY && ((uintptr_t)p & (OURO_ARENA_SIZE - 1)) == 0 &&
               _ouro_addrmap_get((const char *)p - OURO_ARENA_SIZE) == OURO_CHUNK_HUGE_HEAD &&
               ouro_arena_of((const char *)p - 1)->huge_offset == OURO_ARENA_SIZE) {
        pool = &ouro_arena_of((const char *)p - 1)->pools[1]; /* an aligned block one chunk above its header */
    } else if (chunk != OURO_CHUNK_ARENA) {
        why = chunk == OURO_CHUNK_HUGE_BODY ? "points inside a large block"
                                            : "was not allocated by ouro (or is a large block freed already)";
    } else {
        pool = ouro_pool_of(p);
        unsigned state = ouro_load_relaxed(&ouro_arena_of(p)->pool_state[ouro_pool_index(pool)]);
        size_t off = (size_t)((const char *)p - ouro_pool_data(pool));
        if (state == OURO_PT_BLOCKS) {
            if (off % pool->block_size != 0 || off / pool->block_size >= pool->capacity) why = "points inside a block";
            /* ouro_free finds a freed block itself (its double-free check names it) */
            else if (OURO_DEBUG_LEVEL >= 1 && fn != free_fn && _ouro_block_freed(p)) why = "was freed already";
        } else if (state == OURO_PT_RUN) {
            if (off != 0) why = "points inside a large block";
        } else if (state == OURO_PT_RUN_BODY) {
            why = "points inside a large block";
        } else {
            why = "is not a live block (a large block freed already?)";
            if ((OURO_DEBUG_LEVEL >= 1 || OURO_HARDENED) && fn == free_fn)
                _ouro_fatal("ouro_free: double free of large block %p (its pools are free)", p);
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
    if (OURO_REDZONE && size > SIZE_MAX - OURO_REDZONE) size = SIZE_MAX - OURO_REDZONE; /* fails as too big */
    return _ouro_large_alloc(size + OURO_REDZONE);
}

void *ouro_alloc(size_t size) {
    ouro_heap_t *h = _ouro_tls_heap;
    /* Without a pad, size 0 wraps around to the slow path; with one, size is compared before adding
     * the pad, so a size near SIZE_MAX cannot wrap into a small class. */
    bool small = OURO_PAD ? size <= OURO_SMALL_MAX - OURO_PAD : size - 1 < OURO_SMALL_MAX;
    if (OURO_LIKELY(small)) {
        ouro_block_t *b = ouro_pool_pop(h->cur[OURO_KIND_PLAIN][(size + OURO_PAD - 1) >> 4]);
        if (OURO_LIKELY(b != NULL)) return ouro_san_handout(b, size);
    }
    return ouro_san_handout(alloc_generic(h, size), size);
}

void *_ouro_alloc_kind(unsigned kind, size_t size) {
    OURO_API_CHECK(kind < OURO_NKINDS && size <= OURO_MEDIUM_MAX - OURO_PAD);
    ouro_heap_t *h = _ouro_tls_heap;
    unsigned cls = ouro_size_class((size ? size : 1) + OURO_PAD);
    ouro_block_t *b = ouro_pool_pop(h->cur[kind][cls]);
    return ouro_san_handout(b ? b : _ouro_heap_alloc_slow(h, kind, cls), size);
}

void *ouro_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        _ouro_err_set(OURO_ERR_OVERFLOW, "ouro_calloc: %zu * %zu overflows", n, size);
        return NULL;
    }
    /* Pool blocks are zeroed whole. Memcheck builds zero every block (memcheck was told that fresh
     * mappings are undefined). */
    if (total <= OURO_MEDIUM_MAX - OURO_PAD || OURO_VALGRIND) {
        void *p = ouro_alloc(total);
        if (p) memset(p, 0, total);
        return p;
    }
    /* A large block: only its pools that may hold old data are zeroed (the zero/decay invariant). */
    uint64_t dirty;
    size_t len, want = OURO_REDZONE && total > SIZE_MAX - OURO_REDZONE ? SIZE_MAX - OURO_REDZONE : total;
    char *p = ouro_san_handout(_ouro_large_alloc_zero(want + OURO_REDZONE, &dirty, &len), total);
    if (!p || dirty == 0) return p;
    if (len > total) len = total;
    if (dirty == ~(uint64_t)0) {
        memset(p, 0, len);
        return p;
    }
    for (; dirty; dirty &= dirty - 1) {
        size_t off = (size_t)__builtin_ctzll(dirty) << OURO_POOL_SHIFT;
        if (off < len) memset(p + off, 0, len - off < OURO_POOL_SIZE ? len - off : OURO_POOL_SIZE);
    }
    return p;
}

/* Blocks of class s start at pool + i * s in POOL_SIZE-aligned pools: a class whose size is a multiple
 * of the alignment gives aligned blocks (alignments up to 8192). Larger blocks start POOL_SIZE-aligned;
 * above that, a dedicated mapping places its block (_ouro_large_alloc_aligned). */
void *ouro_alloc_aligned(size_t alignment, size_t size) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_alloc_aligned: alignment %zu is not a power of two", alignment);
        return NULL;
    }
    if (alignment <= OURO_ALIGN) return ouro_alloc(size);
    size_t req = size ? size : 1;
    if (alignment <= OURO_MEDIUM_MAX && req <= OURO_MEDIUM_MAX - OURO_PAD) {
        for (unsigned cls = ouro_size_class(req + OURO_PAD); cls < OURO_NCLASSES; cls++) {
            if (_ouro_class_size[cls] & (alignment - 1)) continue;
            ouro_heap_t *h = _ouro_tls_heap;
            ouro_block_t *b = ouro_pool_pop(h->cur[OURO_KIND_PLAIN][cls]);
            return ouro_san_handout(b ? b : _ouro_heap_alloc_slow(h, OURO_KIND_PLAIN, cls), size);
        }
    }
    if (OURO_REDZONE && req > SIZE_MAX - OURO_REDZONE) req = SIZE_MAX - OURO_REDZONE; /* fails as too big */
    return ouro_san_handout(_ouro_large_alloc_aligned(req + OURO_REDZONE, alignment), size);
}

/* ---- free ----------------------------------------------------------------------------------------------- */

/* A block whose pool this thread does not own: remote, abandoned, or large. */
static OURO_NOINLINE void free_generic(ouro_pool_t *pool, void *p) {
    if (OURO_DEBUG_LEVEL == 0 && !(pool = alloc_validate(p, free_fn))) return;
    if (pool->type == OURO_PT_BLOCKS) _ouro_pool_free_remote(pool, p);
    else _ouro_large_free(pool);
}

/* Misuse (debug level >= 1): ouro_free of an object's block. */
static OURO_COLD _Noreturn void free_of_object(const char *fn, const void *p) {
    const char *type = _ouro_object_type_name_at(p);
    _ouro_fatal("%s: %p is %s%s object, not a block of ouro_alloc: drop it with ouro_decref", fn, p,
                type ? "a " : "an", type ? type : "");
}

/* Debug builds: whether a validated block p is an object's (in an object or GC pool). */
static inline bool block_is_object(const ouro_pool_t *pool) {
    /* kind describes block pools only: a large block's run keeps the kind of the pool's last use */
    return OURO_UNLIKELY(pool->kind != OURO_KIND_PLAIN) && pool->type == OURO_PT_BLOCKS;
}

static inline void free_block(void *p, bool object) {
    if (OURO_UNLIKELY(p == NULL)) return;
    ouro_pool_t *pool; /* found only once p is known to be in ouro's memory (an arena's base may be NULL) */
    if (OURO_DEBUG_LEVEL >= 1) {
        if (!(pool = alloc_validate(p, free_fn))) return;
        if (!object && block_is_object(pool)) free_of_object(free_fn, p);
    } else if (OURO_UNLIKELY(_ouro_addrmap_get(p) - 1u > OURO_CHUNK_HUGE_HEAD - 1u)) {
        /* Neither in an arena nor in a dedicated mapping's first chunk: not ouro's (malloc's block, the
         * stack, static data: the pool header below it may not be mapped), reported, then ignored; or
         * an aligned block one chunk above its mapping's header (alloc_validate finds it). Two loads of
         * the address map. */
        if ((pool = alloc_validate(p, free_fn))) _ouro_large_free(pool);
        return;
    } else {
        pool = ouro_pool_of(p);
    }
    ouro_heap_t *h = _ouro_tls_heap;
    if (OURO_LIKELY(ouro_load_relaxed(&pool->heap) == h)) {
        uint32_t used = ouro_pool_push_local(pool, p);
        /* Only a listed pool needs care: a full one gained a free block, a partial one may be empty. */
        if (OURO_UNLIKELY(pool->flags != 0) && (pool->flags == OURO_PF_FULL || used == 0))
            _ouro_heap_free_local_slow(h, pool);
        return;
    }
    free_generic(pool, p);
}

void ouro_free(void *p) { free_block(p, false); }

void _ouro_free_object(void *p) { free_block(p, true); }

/* ---- realloc and sizes ------------------------------------------------------------------------------- */

void *ouro_realloc(void *p, size_t size) {
    if (p == NULL) return ouro_alloc(size);
    ouro_pool_t *pool = alloc_validate(p, "ouro_realloc");
    if (!pool) return NULL;
    if (OURO_DEBUG_LEVEL >= 1 && block_is_object(pool)) free_of_object("ouro_realloc", p);
    size_t usable = alloc_usable(pool, p);
    if (size <= usable && size >= usable / 2) { /* fits, and not mostly wasted */
        if (OURO_SAN && size != usable) { /* the addressable part follows the new size */
            ouro_san_resizelike(p, usable, size ? size : 1);
            san_shape(p, alloc_span(pool), size ? size : 1, pool->type == OURO_PT_BLOCKS && pool->kind != OURO_KIND_PLAIN);
        }
        return p;
    }
    void *q = ouro_alloc(size);
    if (!q) return NULL;
    memcpy(q, p, size < usable ? size : usable);
    ouro_free(p);
    return q;
}

size_t ouro_usable_size(const void *p) {
    if (p == NULL) return 0;
    ouro_pool_t *pool = alloc_validate(p, "ouro_usable_size");
    return pool ? alloc_usable(pool, p) : 0;
}

/* ---- maintenance --------------------------------------------------------------------------------------- */

size_t ouro_alloc_collect(void) {
    _ouro_heap_collect(_ouro_tls_heap);
    pthread_mutex_lock(&_ouro_arena_lock);
    size_t bytes = _ouro_arena_trim_locked();
    _ouro_arena_unlock();
    return bytes;
}

int ouro_alloc_check(void) {
    char why[256];
    if (_ouro_heap_check(_ouro_tls_heap, why, sizeof why)) return 0;
    _ouro_err_set(OURO_ERR_STATE, "ouro_alloc_check: %s", why);
    return -1;
}
