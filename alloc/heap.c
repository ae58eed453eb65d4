/* alloc/heap.c — per-thread heaps: the pool life cycle, remote frees and their collection, thread
 * attach on first use and abandonment at thread exit.
 *
 * The remote-free protocol (docs/alloc.md has the diagram and the argument), all on one word:
 *   free_remote:  push the block on pool->xfree with one CAS that also sets the claim bit; the push
 *                 that found the bit clear owns the claim and puts the pool on its owner's inbox.
 *   owner:        takes its inbox whole; for each pool, one exchange takes the list and clears the bit
 *                 (_ouro_pool_take_inbox_claim), then it settles the pool (full -> partial, empty ->
 *                 arena). A push after that exchange finds the bit clear and notifies again.
 * A pool is on at most one inbox (only the claim winner pushes it, only the consumer clears the bit),
 * and no pool is released while its bit is set, so a notifier never touches a released pool. */
#include "alloc/internal.h"

#include <sys/random.h>
#include <time.h>
#include <sys/mman.h>

ouro_heap_t _ouro_heap_none;
ouro_pool_t _ouro_pool_empty = {.heap = &_ouro_heap_none, .xfree = OURO_XFREE_CLAIMED};
/* Statically complete, so an allocation made before any constructor runs finds its sentinels. */
ouro_heap_t _ouro_heap_empty = {.cur = {[0 ... OURO_NKINDS - 1] = {[0 ... OURO_NCLASSES - 1] = &_ouro_pool_empty}}};
ouro_heap_t _ouro_heap_abandoned;
__thread ouro_heap_t *_ouro_tls_heap OURO_TLS_FAST = &_ouro_heap_empty;

const uint16_t _ouro_class_size[OURO_NCLASSES] = {
    16,   32,   48,   64,   80,   96,   112,  128,  144,  160,  176,  192,  208,  224,  240,
    256,  272,  288,  304,  320,  336,  352,  368,  384,  400,  416,  432,  448,  464,  480,
    496,  512,  640,  768,  896,  1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5456, 8192,
};

/* Heap registry: every heap ever made (they are never unmapped), guarded by heap_lock. */
static pthread_mutex_t heap_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
static ouro_heap_t *heap_registry;
static size_t heaps_live, heaps_cached;
static pthread_key_t heap_exit_key;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

static void heap_thread_exit(void *arg);

/* fork(): no lock of the allocator may be held by a thread that does not exist in the child. */
static void heap_atfork_prepare(void) {
    /* No thread of ouro's half started or half ended (core/mem.c); before any lock. */
    _ouro_sys_thread_atfork_begin();
    _ouro_arena_decay_reap();
    _ouro_sys_thread_atfork_wait();
    pthread_mutex_lock(&heap_lock);
    pthread_mutex_lock(&_ouro_arena_lock);
}
static void heap_atfork_parent(void) {
    _ouro_arena_unlock();
    pthread_mutex_unlock(&heap_lock);
    _ouro_sys_thread_atfork_release(false);
}
static void heap_atfork_child(void) {
    _ouro_arena_atfork_child();
    _ouro_arena_unlock(); /* the child's only thread is the one that locked them */
    pthread_mutex_unlock(&heap_lock);
    _ouro_sys_thread_atfork_release(true);
}

/* Without a pthread key (a program took all of them before ouro's first allocation) a heap's thread
 * exit is registered like a C++ thread_local's destructor (glibc's __cxa_thread_atexit_impl). */
static bool heap_key_ok;
extern int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol) __attribute__((weak));
extern void *__dso_handle __attribute__((weak));

static void heap_global_init(void) {
    heap_key_ok = pthread_key_create(&heap_exit_key, heap_thread_exit) == 0;
    if (!heap_key_ok && !__cxa_thread_atexit_impl)
        _ouro_fatal("pthread_key_create failed, and the C library has no __cxa_thread_atexit_impl");
}

void _ouro_alloc_global_init(void) { pthread_once(&heap_once, heap_global_init); }

/* Registers h's thread exit for the calling thread (heap_attach). */
static void heap_register_exit(ouro_heap_t *h) {
    if (heap_key_ok) pthread_setspecific(heap_exit_key, h);
    else if (__cxa_thread_atexit_impl(heap_thread_exit, h, &__dso_handle) != 0)
        _ouro_warn("cannot register the thread's exit: its heap is not given back when it exits");
}

/* The fork handlers must be in place before any thread can hold a lock, heap or not. threads/ registers
 * its own later (after calling _ouro_alloc_global_init), so that its prepare handler runs first. They
 * are registered here, not by the first allocation: that one may be made by pthread_atfork itself
 * (glibc grows its list of handlers with malloc, holding the lock that a registration takes). */
__attribute__((constructor(101))) static void heap_constructor(void) {
    _ouro_alloc_global_init();
    pthread_atfork(heap_atfork_prepare, heap_atfork_parent, heap_atfork_child);
    _ouro_leak_check_init(); /* here so that a static link pulls core/leak.c in */
}

static uint64_t heap_splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A fresh heap struct: mapped in slabs, never unmapped. heap_lock held. */
static ouro_heap_t *heap_new_locked(void) {
    static char *slab, *slab_end;
    size_t size = (sizeof(ouro_heap_t) + 63) & ~(size_t)63;
    if (slab == NULL || slab + size > slab_end) {
        size_t n = 64 * 1024;
        void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            _ouro_err_set(OURO_ERR_NOMEM, "out of memory: cannot map a thread heap");
            return NULL;
        }
        slab = m;
        slab_end = slab + n;
    }
    ouro_heap_t *h = (ouro_heap_t *)slab;
    slab += size;
    h->reg_next = heap_registry;
    heap_registry = h;
    return h;
}

/* Set while the calling thread runs heap_global_init from heap_attach: an allocation made inside it (the
 * C library's, when ouro is the process's malloc: libouro-malloc) would wait for the pthread_once that
 * it runs under; it fails instead, and the malloc shim serves it elsewhere (_ouro_heap_attaching). */
static __thread bool heap_in_global_init __attribute__((tls_model("initial-exec")));

bool _ouro_heap_attaching(void) { return heap_in_global_init; }

/* Gives the calling thread a heap: a cached one of an exited thread, or a new one. */
static ouro_heap_t *heap_attach(void) {
    if (heap_in_global_init) {
        _ouro_err_set(OURO_ERR_NOMEM, "allocation while the allocator initialises (re-entered)");
        return NULL;
    }
    heap_in_global_init = true;
    pthread_once(&heap_once, heap_global_init);
    heap_in_global_init = false;
    pthread_mutex_lock(&heap_lock);
    ouro_heap_t *h = NULL;
    if (heaps_cached) {
        for (h = heap_registry; h && h->live; h = h->reg_next) {
        }
    }
    if (h) heaps_cached--;
    else h = heap_new_locked();
    if (h) {
        h->live = true;
        heaps_live++;
    }
    pthread_mutex_unlock(&heap_lock);
    if (!h) return NULL;
    OURO_ASSERT(ouro_load_relaxed(&h->inbox) == NULL);
    for (unsigned k = 0; k < OURO_NKINDS; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++) {
            h->cur[k][c] = &_ouro_pool_empty;
            h->partial[k][c] = h->full[k][c] = (ouro_pool_list){NULL, NULL};
        }
    /* Hardened builds draw each heap's keys from the OS (a leaked key tells nothing of another heap's);
     * others only need distinct values and save the syscall on every thread start. */
    uint64_t seed[2] = {0, 0};
    if (!OURO_HARDENED || _ouro_sys_getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)h;
        seed[1] = heap_splitmix(&seed[0]) ^ (uintptr_t)&seed;
    }
    h->rng = seed[0] ^ seed[1];
    /* odd: an encoded link (next ^ key, next 16-aligned) is always odd, so it is never a thread pointer
     * (an object's owner id; see the pool visitors) */
    h->key = heap_splitmix(&h->rng) | 1;
    /* The heap is ready before pthread_setspecific, which may allocate (a key past the first 32 needs a
     * second-level array): with ouro as the process's malloc that allocation comes from h. */
    _ouro_tls_heap = h;
    heap_register_exit(h);
    return h;
}

/* ---- pools ----------------------------------------------------------------------------------------- */

void _ouro_pool_init(ouro_pool_t *pool, ouro_heap_t *h, unsigned kind, unsigned cls) {
    pool->free = NULL;
    ouro_store_relaxed(&pool->heap, h);
    ouro_store_relaxed(&pool->used, 0);
    pool->block_size = _ouro_class_size[cls];
    pool->capacity = (uint16_t)(OURO_POOL_SIZE / pool->block_size);
    pool->carved = 0;
    pool->magic = OURO_POOL_MAGIC;
    pool->cls = (uint8_t)cls;
    pool->kind = (uint8_t)kind;
    pool->flags = 0;
    pool->type = OURO_PT_BLOCKS;
    uint64_t mix = (uintptr_t)pool * 0x9e3779b97f4a7c15ULL;
    pool->key = (h->key ^ mix ^ (mix >> 29)) | 1; /* odd: links stay odd (see heap_attach) */
    pool->next = pool->prev = NULL;
    ouro_store_relaxed(&pool->xfree, 0);
    pool->inbox_next = NULL;
    if (OURO_SAN) { /* alloc/sanitize.h: poisoned but the object headers at the class's block boundaries */
        char *data = ouro_pool_data(pool);
        ouro_san_poison(data, OURO_POOL_SIZE);
        if (kind != OURO_KIND_PLAIN)
            for (uint32_t i = 0; i < pool->capacity; i++) ouro_san_unpoison(data + (size_t)i * pool->block_size, OURO_SAN_HEADER);
    }
}

static void block_poison(const ouro_pool_t *pool, ouro_block_t *b);

/* Makes a never-used block of an object pool read as a freed object: header words 1..2 (counts, lock,
 * gc_bits, flags) zeroed. The pool's memory may hold anything from its previous use (a large block, a
 * plain pool's data, another class's blocks), and the collector's pool walks (gc/gc.c walk_pool) take
 * every carved block whose gc_bits say TRACKED for a tracked object. Relaxed atomic stores: in a
 * retained GC pool reused by its class, another thread's stale young-list entry may read the gc_bits
 * of this block meanwhile (gc/gc.c young_compact); it reads 0 before and after. */
static void block_clear_header(ouro_block_t *b) {
    uintptr_t *w = (uintptr_t *)b;
    __atomic_store_n(&w[1], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&w[2], 0, __ATOMIC_RELAXED);
}

/* Threads up to 4 KiB of never-used blocks onto the empty local free list (lazy carving keeps a new
 * pool's untouched pages out of RSS). */
static void pool_carve(ouro_pool_t *pool) {
    OURO_ASSERT(pool->free == NULL && pool->carved < pool->capacity);
    OURO_ASSERT(pool->kind == OURO_KIND_PLAIN || pool->block_size >= OURO_OBJECT_KEEP);
    uint32_t n = pool->capacity - pool->carved, bs = pool->block_size;
    uint32_t batch = 4096 / bs ? 4096 / bs : 1;
    if (n > batch) n = batch;
    char *first = ouro_pool_data(pool) + (size_t)pool->carved * bs;
    for (uint32_t i = 0; i < n; i++) {
        ouro_block_t *b = (ouro_block_t *)(first + (size_t)i * bs);
        ouro_san_block_open(pool, b);
        if (pool->kind != OURO_KIND_PLAIN) block_clear_header(b);
        if (OURO_DEBUG_LEVEL >= 1) block_poison(pool, b);
        ouro_san_block_close(pool, b);
        ouro_block_set_free_link(pool, b, ouro_block_encode(pool, i + 1 < n ? (uintptr_t)b + bs : 0));
    }
    pool->free = (ouro_block_t *)first;
    pool->carved = (uint16_t)(pool->carved + n);
}

bool _ouro_pool_try_claim(ouro_pool_t *pool) {
    uintptr_t zero = 0;
    /* pairs with the release CAS of _ouro_pool_unclaim() and the exchange of
     * _ouro_pool_take_inbox_claim(): the last claim holder's writes (pool->heap) are visible */
    return ouro_cas_acq_rel(&pool->xfree, &zero, OURO_XFREE_CLAIMED);
}

/* Pushes pool onto h's inbox (the caller holds the pool's claim). */
static void heap_inbox_push(ouro_heap_t *h, ouro_pool_t *pool) {
    ouro_pool_t *head = ouro_load_relaxed(&h->inbox);
    do {
        pool->inbox_next = head;
    } while (!ouro_cas_weak_release(&h->inbox, &head, pool)); /* pairs with the acq_rel exchange in heap_inbox_take() */
}

/* Hands a claimed pool with pending remote frees to its owner: onto the owner's inbox. */
static void pool_notify(ouro_pool_t *pool) {
    /* The owner changes only under the claim we hold; the last changer's release is visible. */
    ouro_heap_t *h = ouro_load_relaxed(&pool->heap);
    heap_inbox_push(h, pool);
    if (h != &_ouro_heap_abandoned) return;
    /* Nobody owns it: collect it now if the lock is free, else leave it to the holder, which looks at
     * the inbox after its release. The fence pairs with the one in _ouro_arena_unlock(): either our
     * trylock sees that release (or a later holder's), or that holder sees our push. */
    ouro_fence_seq_cst();
    if (pthread_mutex_trylock(&_ouro_arena_lock) == 0) {
        _ouro_arena_collect_abandoned_locked();
        _ouro_arena_unlock();
        _ouro_arena_decay_start(); /* a remote free (the lock was free): no heap is half changed */
    }
}

void _ouro_pool_unclaim(ouro_pool_t *pool) {
    uintptr_t claimed = OURO_XFREE_CLAIMED;
    /* release: pairs with the acquire of the next claim winner (try_claim or a remote free's CAS) */
    if (ouro_cas_acq_rel(&pool->xfree, &claimed, 0)) return;
    pool_notify(pool); /* blocks arrived while we held the claim: the claim goes to the inbox */
}

void _ouro_pool_free_remote(ouro_pool_t *pool, ouro_block_t *b) {
    if (ouro_block_suspect(pool, b)) _ouro_block_double_free(pool, b); /* the owner's lists are not ours to walk */
    ouro_san_block_freeing(pool, b);
    if (OURO_DEBUG_LEVEL >= 1) _ouro_block_debug_on_free(pool, b);
    ouro_san_block_close(pool, b); /* before the CAS: after it the owner may pop and open it */
    uintptr_t old = ouro_load_relaxed(&pool->xfree);
    do {
        ouro_block_set_free_link(pool, b, ouro_block_encode(pool, old & ~OURO_XFREE_CLAIMED));
        /* release: publishes the block's link and poison (pairs with the exchange/CAS that takes
         * the list); acquire: a claim we win sees the last holder's writes (pool->heap) */
    } while (!ouro_cas_acq_rel(&pool->xfree, &old, (uintptr_t)b | OURO_XFREE_CLAIMED));
    if (!(old & OURO_XFREE_CLAIMED)) pool_notify(pool); /* we won the claim */
}

/* Splices a taken remote-free list onto the pool's local list; returns its length. */
static uint32_t pool_splice(ouro_pool_t *pool, uintptr_t list) {
    if (!list) return 0;
    uint32_t n = 1;
    ouro_block_t *tail = (ouro_block_t *)list;
    for (;;) {
        uintptr_t next = ouro_block_decode(pool, ouro_block_link(tail));
        if (OURO_UNLIKELY(!ouro_link_ok(tail, next) || n > pool->capacity))
            _ouro_fatal("corrupted remote-free list: block %p of class %u (size %u), link %p after %u blocks",
                        (void *)tail, pool->cls, pool->block_size, (void *)next, n);
        if (!next) break;
        tail = (ouro_block_t *)next;
        n++;
    }
    ouro_block_set_free_link(pool, tail, ouro_block_encode(pool, (uintptr_t)pool->free));
    pool->free = (ouro_block_t *)list;
    uint32_t used = ouro_load_relaxed(&pool->used);
    if (OURO_UNLIKELY(n > used))
        _ouro_fatal("remote-free list of pool %p (class %u) holds %u blocks but only %u are in use",
                    (void *)pool, pool->cls, n, used);
    ouro_store_relaxed(&pool->used, used - n);
    return n;
}

uint32_t _ouro_pool_collect(ouro_pool_t *pool) {
    uintptr_t old = ouro_load_relaxed(&pool->xfree);
    if ((old & ~OURO_XFREE_CLAIMED) == 0) return 0;
    /* Take the list, keep the claim bit. acquire: pairs with the CAS in _ouro_pool_free_remote(). */
    while (!ouro_cas_acq_rel(&pool->xfree, &old, old & OURO_XFREE_CLAIMED)) {
    }
    return pool_splice(pool, old & ~OURO_XFREE_CLAIMED);
}

uint32_t _ouro_pool_take_inbox_claim(ouro_pool_t *pool) {
    /* acquire: pairs with the CAS in _ouro_pool_free_remote(); release: a later claim winner reads
     * this consumer's writes to the pool */
    uintptr_t old = ouro_xchg_acq_rel(&pool->xfree, 0);
    return pool_splice(pool, old & ~OURO_XFREE_CLAIMED);
}

/* ---- the owner's lists ------------------------------------------------------------------------------ */

static ouro_pool_list *heap_list_of(ouro_heap_t *h, ouro_pool_t *pool) {
    return pool->flags == OURO_PF_FULL ? &h->full[pool->kind][pool->cls] : &h->partial[pool->kind][pool->cls];
}

static void heap_unlink(ouro_heap_t *h, ouro_pool_t *pool) {
    ouro_pool_list *l = heap_list_of(h, pool);
    if (pool->prev) pool->prev->next = pool->next; else l->head = pool->next;
    if (pool->next) pool->next->prev = pool->prev; else l->tail = pool->prev;
    pool->next = pool->prev = NULL;
    pool->flags = 0;
}

/* Appends pool at the tail of the list that flags names. */
static void heap_link(ouro_heap_t *h, ouro_pool_t *pool, uint8_t flags) {
    pool->flags = flags;
    ouro_pool_list *l = heap_list_of(h, pool);
    pool->next = NULL;
    pool->prev = l->tail;
    if (l->tail) l->tail->next = pool; else l->head = pool;
    l->tail = pool;
}

/* Puts a listed pool where its counts say: an empty one goes back to the arena, a full one that got
 * a free block moves to the partial list. The current pool (flags 0) stays. */
static void heap_settle(ouro_heap_t *h, ouro_pool_t *pool) {
    if (pool->flags == 0) return;
    if (ouro_load_relaxed(&pool->used) == 0) {
        /* A pool on our inbox is claimed by its notifier: it is settled when the inbox is taken. */
        if (!_ouro_pool_try_claim(pool)) return;
        heap_unlink(h, pool);
        _ouro_arena_release_pool(pool);
    } else if (pool->flags == OURO_PF_FULL && ouro_pool_has_free(pool)) {
        heap_unlink(h, pool);
        heap_link(h, pool, OURO_PF_PARTIAL);
    }
}

void _ouro_heap_free_local_slow(ouro_heap_t *h, ouro_pool_t *pool) {
    heap_settle(h, pool);
    _ouro_arena_decay_start(); /* the heap is consistent again */
}

/* Takes the inbox whole (owner only). */
static ouro_pool_t *heap_inbox_take(ouro_heap_t *h) {
    if (ouro_load_relaxed(&h->inbox) == NULL) return NULL;
    return ouro_xchg_acq_rel(&h->inbox, NULL); /* pairs with the release CAS in heap_inbox_push() */
}

/* Collects every pool on the inbox; settles them unless abandoning. */
static void heap_inbox_collect(ouro_heap_t *h, bool settle) {
    for (ouro_pool_t *pool = heap_inbox_take(h), *next; pool; pool = next) {
        next = pool->inbox_next; /* before the claim goes: a new notifier rewrites it */
        _ouro_pool_take_inbox_claim(pool);
        if (settle) heap_settle(h, pool);
    }
}

/* ---- allocation slow path ---------------------------------------------------------------------------- */

static void *heap_alloc_refill(ouro_heap_t *h, unsigned kind, unsigned cls);

void *_ouro_heap_alloc_slow(ouro_heap_t *h, unsigned kind, unsigned cls) {
    void *b = heap_alloc_refill(h, kind, cls);
    _ouro_arena_decay_start(); /* here, where the heap is consistent again (see its comment) */
    return b;
}

/* Refills the current pool of (kind, cls) and takes a block from it. */
static void *heap_alloc_refill(ouro_heap_t *h, unsigned kind, unsigned cls) {
    ouro_safepoint(); /* every allocation slow path is a safepoint (docs/threads.md) */
    if (h == &_ouro_heap_empty) {
        h = heap_attach();
        if (!h) return NULL;
    }
    heap_inbox_collect(h, true);
    if (OURO_DEBUG_LEVEL >= 3) {
        char why[256];
        if (!_ouro_heap_check(h, why, sizeof why)) _ouro_fatal("heap check failed: %s", why);
    }
    ouro_pool_t *pool = h->cur[kind][cls];
    for (;;) {
        if (pool != &_ouro_pool_empty) {
            ouro_block_t *b = ouro_pool_pop(pool);
            if (b) return b;
            if (_ouro_pool_collect(pool) == 0 && pool->carved < pool->capacity) pool_carve(pool);
            if ((b = ouro_pool_pop(pool))) return b;
            heap_link(h, pool, OURO_PF_FULL); /* exhausted: a free moves it back to partial */
        }
        if ((pool = h->partial[kind][cls].head)) {
            heap_unlink(h, pool);
        } else if ((pool = _ouro_arena_adopt(h, kind, cls))) {
            _ouro_pool_unclaim(pool); /* adopted under our claim: now ours */
            _ouro_pool_collect(pool);
        } else if (!(pool = _ouro_arena_take_pool(h, kind, cls))) {
            h->cur[kind][cls] = &_ouro_pool_empty;
            return NULL; /* error set by the OS layer */
        }
        h->cur[kind][cls] = pool;
    }
}

/* ---- thread exit ---------------------------------------------------------------------------------------- */

/* Hands every pool of h to the arena: empty ones are released, the others abandoned (owned by
 * _ouro_heap_abandoned, adoptable by any thread). Runs on the exiting thread. */
static void heap_abandon(ouro_heap_t *h) {
    /* Gather every pool on one list (through `next`); the heap's lists are then empty. */
    ouro_pool_t *all = NULL;
    for (unsigned k = 0; k < OURO_NKINDS; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++) {
            ouro_pool_t *lists[3] = {h->partial[k][c].head, h->full[k][c].head, NULL};
            if (h->cur[k][c] != &_ouro_pool_empty) {
                lists[2] = h->cur[k][c];
                lists[2]->next = NULL;
            }
            for (int l = 0; l < 3; l++)
                for (ouro_pool_t *p = lists[l], *n; p; p = n) {
                    n = p->next;
                    p->next = all;
                    all = p;
                }
            h->cur[k][c] = &_ouro_pool_empty;
            h->partial[k][c] = h->full[k][c] = (ouro_pool_list){NULL, NULL};
        }
    pthread_mutex_lock(&_ouro_arena_lock);
    for (ouro_pool_t *pool = all, *next; pool; pool = next) {
        next = pool->next;
        /* Win the claim; a pool that is claimed is on our inbox (or about to be): collect it. */
        while (!_ouro_pool_try_claim(pool)) heap_inbox_collect(h, false);
        ouro_store_relaxed(&pool->heap, &_ouro_heap_abandoned); /* under the claim */
        pool->next = pool->prev = NULL;
        if (ouro_load_relaxed(&pool->used) == 0) {
            _ouro_arena_release_pool_locked(pool); /* keeps the claim: a free pool takes no notices */
        } else {
            _ouro_arena_abandon_locked(pool);
            _ouro_pool_unclaim(pool); /* under the lock: nobody can release it before we are done */
        }
    }
    _ouro_arena_collect_abandoned_locked(); /* frees that arrived during the hand-over */
    _ouro_arena_unlock();
    OURO_ASSERT(ouro_load_relaxed(&h->inbox) == NULL); /* every pool now names another owner */
}

bool (*_Atomic _ouro_alloc_exit_guard)(void);

/* Abandons h and puts the struct on the cache for the next thread. */
static void heap_retire(ouro_heap_t *h) {
    heap_abandon(h);
    pthread_mutex_lock(&heap_lock);
    h->live = false;
    heaps_live--;
    heaps_cached++;
    pthread_mutex_unlock(&heap_lock);
}

/* pthread key destructor: the thread is exiting with heap arg. */
static void heap_thread_exit(void *arg) {
    ouro_heap_t *h = arg;
    if (_ouro_tls_heap != h) return; /* given back already (_ouro_alloc_thread_exit; keyless registration) */
    bool (*guard)(void) = ouro_load_acquire(&_ouro_alloc_exit_guard); /* pairs with its release store */
    if (guard && guard()) return; /* the thread was attached: its detach abandoned the heap */
    _ouro_arena_decay_expect(); /* the pools it gives back decay even if no other thread allocates */
    heap_retire(h);
    _ouro_tls_heap = &_ouro_heap_empty;
}

void _ouro_alloc_abandon_vanished(ouro_heap_t *h) {
    if (h && h != &_ouro_heap_empty) heap_retire(h);
}

ouro_heap_t *_ouro_alloc_thread_heap(void) {
    ouro_heap_t *h = _ouro_tls_heap;
    return h != &_ouro_heap_empty ? h : heap_attach();
}

void _ouro_alloc_thread_exit(void) {
    ouro_heap_t *h = _ouro_tls_heap;
    if (h == &_ouro_heap_empty) return;
    if (heap_key_ok) pthread_setspecific(heap_exit_key, NULL);
    heap_retire(h); /* without a key, the registered exit finds the heap empty: heap_thread_exit */
    _ouro_tls_heap = &_ouro_heap_empty;
}

void _ouro_heap_visit_object_pools(ouro_heap_t *h, ouro_pool_visit_fn fn, void *arg) {
    if (h == &_ouro_heap_empty) return;
    for (unsigned k = OURO_KIND_OBJECT; k <= OURO_KIND_GC; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++) {
            if (h->cur[k][c] != &_ouro_pool_empty) fn(h->cur[k][c], arg);
            for (ouro_pool_t *p = h->partial[k][c].head; p; p = p->next) fn(p, arg);
            for (ouro_pool_t *p = h->full[k][c].head; p; p = p->next) fn(p, arg);
        }
}

void _ouro_heap_counts(size_t *live, size_t *cached) {
    pthread_mutex_lock(&heap_lock);
    *live = heaps_live;
    *cached = heaps_cached;
    pthread_mutex_unlock(&heap_lock);
}

/* ---- collection and checks ----------------------------------------------------------------------------- */

void _ouro_heap_collect(ouro_heap_t *h) {
    if (h == &_ouro_heap_empty) return;
    heap_inbox_collect(h, true);
    for (unsigned k = 0; k < OURO_NKINDS; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++) {
            ouro_pool_t *cur = h->cur[k][c];
            _ouro_pool_collect(cur);
            /* An empty current pool goes back too: after a collect, RSS is back to what is in use. */
            if (cur != &_ouro_pool_empty && ouro_load_relaxed(&cur->used) == 0 && _ouro_pool_try_claim(cur)) {
                h->cur[k][c] = &_ouro_pool_empty;
                _ouro_arena_release_pool(cur);
            }
            for (int full = 0; full < 2; full++) {
                ouro_pool_t *p = full ? h->full[k][c].head : h->partial[k][c].head;
                while (p) {
                    ouro_pool_t *n = p->next;
                    _ouro_pool_collect(p);
                    heap_settle(h, p);
                    p = n;
                }
            }
        }
}

/* Walks pool's free list, at most limit + 1 blocks (one more than limit: a list longer than it has a
 * block twice, or a cycle). Returns the count; UINT32_MAX when a link fails its check, with that block
 * in *bad and its decoded link in *bad_next. */
static uint32_t pool_free_count(const ouro_pool_t *pool, uint32_t limit, const ouro_block_t **bad, uintptr_t *bad_next) {
    uint32_t n = 0;
    for (const ouro_block_t *b = pool->free; b && n <= limit; n++) {
        uintptr_t next = ouro_block_decode(pool, ouro_block_link(b));
        if (!ouro_link_ok(b, next)) {
            *bad = b;
            *bad_next = next;
            return UINT32_MAX;
        }
        b = (const ouro_block_t *)next;
    }
    return n;
}

bool _ouro_pool_check(ouro_pool_t *pool, char *why, size_t n) {
    if (pool->magic != OURO_POOL_MAGIC || pool->type != OURO_PT_BLOCKS) {
        snprintf(why, n, "pool %p: bad magic or type", (void *)pool);
        return false;
    }
    const ouro_block_t *bad = NULL;
    uintptr_t bad_next = 0;
    uint32_t len = pool_free_count(pool, pool->capacity, &bad, &bad_next);
    if (len == UINT32_MAX || len > pool->capacity) {
        snprintf(why, n, "pool %p (class %u): free list broken%s%p", (void *)pool, pool->cls,
                 bad ? " at block " : " (longer than its capacity) from ", bad ? (const void *)bad : (const void *)pool->free);
        return false;
    }
    uint32_t used = ouro_load_relaxed(&pool->used);
    if (used + len != pool->carved || pool->carved > pool->capacity) {
        snprintf(why, n, "pool %p (class %u): used %u + free %u != carved %u (capacity %u)", (void *)pool,
                 pool->cls, used, len, pool->carved, pool->capacity);
        return false;
    }
    return true;
}

bool _ouro_heap_check(ouro_heap_t *h, char *why, size_t n) {
    if (h == &_ouro_heap_empty) return true;
    for (unsigned k = 0; k < OURO_NKINDS; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++) {
            ouro_pool_t *cur = h->cur[k][c];
            if (cur != &_ouro_pool_empty && (cur->flags != 0 || !_ouro_pool_check(cur, why, n))) return false;
            for (int full = 0; full < 2; full++)
                for (ouro_pool_t *p = full ? h->full[k][c].head : h->partial[k][c].head; p; p = p->next) {
                    if (!_ouro_pool_check(p, why, n)) return false;
                    if (p->flags != (full ? OURO_PF_FULL : OURO_PF_PARTIAL) || p->kind != k || p->cls != c ||
                        ouro_load_relaxed(&p->heap) != h) {
                        snprintf(why, n, "pool %p (class %u) is on the wrong list", (void *)p, c);
                        return false;
                    }
                }
        }
    return true;
}

/* ---- debug and hardening checks ------------------------------------------------------------------------ */

/* First byte after the words a free block keeps (link word; object header words in object pools). */
static size_t block_keep(const ouro_pool_t *pool) {
    return pool->kind == OURO_KIND_PLAIN ? sizeof(uintptr_t) : OURO_OBJECT_KEEP;
}

static void block_poison(const ouro_pool_t *pool, ouro_block_t *b) {
    size_t bs = pool->block_size, keep = block_keep(pool);
    if (bs > keep) memset((char *)b + keep, OURO_POISON, bs - keep);
}

void _ouro_block_debug_on_free(ouro_pool_t *pool, ouro_block_t *b) {
    uintptr_t *canary = (uintptr_t *)((char *)b + pool->block_size - OURO_PAD), poison;
    memset(&poison, OURO_POISON, sizeof poison);
    if (*canary != (OURO_CANARY ^ (uintptr_t)b))
        _ouro_fatal("%s: block %p (class %u, size %u)",
                    *canary == poison ? "double free (the block is poisoned already)" : "buffer overflow: canary overwritten",
                    (void *)b, pool->cls, pool->block_size);
    block_poison(pool, b);
}

void _ouro_block_debug_on_alloc(ouro_pool_t *pool, ouro_block_t *b) {
    size_t bs = pool->block_size, keep = block_keep(pool);
    const unsigned char *q = (const unsigned char *)b;
    for (size_t i = keep; i < bs; i++)
        if (q[i] != OURO_POISON)
            _ouro_fatal("write after free: byte %zu of free block %p (class %u, size %u) changed", i, (void *)b,
                        pool->cls, pool->block_size);
    *(uintptr_t *)((char *)b + bs - OURO_PAD) = OURO_CANARY ^ (uintptr_t)b;
}

bool _ouro_block_freed(const void *p) {
    if (OURO_DEBUG_LEVEL < 1 || _ouro_addrmap_get(p) != OURO_CHUNK_ARENA) return false;
    ouro_pool_t *pool = ouro_pool_of(p);
    if (ouro_load_relaxed(&ouro_arena_of(p)->pool_state[ouro_pool_index(pool)]) != OURO_PT_BLOCKS) return true;
    const char *canary = (const char *)p + pool->block_size - OURO_PAD;
    return (OURO_SAN ? ouro_san_peek(canary) : *(const uintptr_t *)canary) != (OURO_CANARY ^ (uintptr_t)p);
}

void _ouro_block_double_free(const ouro_pool_t *pool, const ouro_block_t *b) {
    _ouro_fatal("double free of block %p (class %u, size %u)", (const void *)b, pool->cls, pool->block_size);
}

void _ouro_free_list_corrupt(const ouro_pool_t *pool, const ouro_block_t *b, uintptr_t next) {
    _ouro_fatal("corrupted free list (a double free, or a write after free): block %p of class %u (size %u) "
                "links to %p", (const void *)b, pool->cls, pool->block_size, (void *)next);
}

void _ouro_pool_check_emptied(const ouro_pool_t *pool) {
    if (!OURO_HARDENED) return;
    const ouro_block_t *bad = NULL;
    uintptr_t bad_next = 0;
    uint32_t n = pool_free_count(pool, pool->carved, &bad, &bad_next);
    if (n == UINT32_MAX) _ouro_free_list_corrupt(pool, bad, bad_next);
    if (n != pool->carved)
        _ouro_fatal("double free in pool %p (class %u, size %u): %u blocks carved, the emptied pool's free list "
                    "holds %s%u", (const void *)pool, pool->cls, pool->block_size, pool->carved,
                    n > pool->carved ? "more than " : "", n > pool->carved ? pool->carved : n);
}
