/* alloc/internal.h — the allocator's data structures and the invariants that hold them together.
 *
 * Layering (one file per layer): os.c (mappings, fault injection, the address map) -> arena.c (arenas
 * of pools, pool runs, own mappings, abandoned pools) -> heap.c (per-thread heaps, pool life cycle,
 * remote frees) -> alloc.c (the public entry points and their fast paths) ; stats.c reads them all.
 * docs/alloc.md draws the layout and the state machines; the invariants are stated once, here. */
#ifndef OURO_ALLOC_INTERNAL_H
#define OURO_ALLOC_INTERNAL_H
#ifndef OURO_BUILD_CORE
#error "alloc/internal.h is internal to libouro"
#endif

#include "core/atomic.h"
#include "core/defer.h"
#include "core/debug.h"
#include "alloc/sanitize.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- geometry -------------------------------------------------------------------------------------
 * Pools are POOL_SIZE-aligned, arenas ARENA_SIZE-aligned, so a block's pool header is found by
 * masking its address and a pool's arena by masking again. Torture builds shrink both. */
#define OURO_POOL_SHIFT (OURO_TORTURE ? 13 : 14)  /* 8 KiB / 16 KiB (pymalloc's) */
#define OURO_ARENA_SHIFT (OURO_TORTURE ? 17 : 20) /* 128 KiB / 1 MiB (pymalloc's) */
#define OURO_POOL_SIZE ((size_t)1 << OURO_POOL_SHIFT)
#define OURO_ARENA_SIZE ((size_t)1 << OURO_ARENA_SHIFT)
#define OURO_POOLS_PER_ARENA (OURO_ARENA_SIZE / OURO_POOL_SIZE) /* pool 0 holds the arena header */

#define OURO_NSMALL 32         /* 16..512 in 16-byte steps */
#define OURO_SMALL_MAX 512
#define OURO_NCLASSES 46       /* + 640..4096, four classes per doubling, + 5456 and 8192 */
#define OURO_MEDIUM_MAX 8192
#define OURO_ALIGN 16

/* Debug builds keep an 8-byte canary at the end of every block, sanitized builds a redzone after it
 * (alloc/sanitize.h): a request is served from the class that fits size + OURO_PAD, and the usable size
 * is the class size less OURO_PAD (sanitized builds: the requested size). The canary sits right after
 * the usable size. */
#define OURO_PAD ((OURO_DEBUG_LEVEL >= 1 ? 8 : 0) + OURO_REDZONE)
#define OURO_CANARY ((uintptr_t)0x5ca1ab1e0dd5ca1bULL)
#define OURO_POISON 0xdd /* freed blocks, debug builds */

/* Pool kinds: which layer owns the blocks. The words that an object header keeps its refcount and
 * type in are never written by the allocator in OBJECT and GC pools (see the block invariant). */
enum { OURO_KIND_PLAIN = 0, OURO_KIND_OBJECT = 1, OURO_KIND_GC = 2, OURO_NKINDS = 3 };

/* Bytes at the start of a block that the allocator may use while it is free: the link word only.
 * In OBJECT/GC pools the next OURO_OBJECT_KEEP bytes (refcount, lock, GC bits, type) are preserved
 * across free and reuse: debug poisoning skips them. */
#define OURO_OBJECT_KEEP 32

/* What a POOL_SIZE-aligned region is (pool->type; arena->pool_state[]). */
enum {
    OURO_PT_FREE = 0,  /* in an arena, unused */
    OURO_PT_BLOCKS,    /* a pool of one size class */
    OURO_PT_RUN,       /* first pool of a run serving one large block */
    OURO_PT_RUN_BODY,  /* later pools of a run (no header: user data) */
    OURO_PT_DEFERRED,  /* an emptied object pool waiting for a grace period */
    OURO_PT_ARENA,     /* pool 0 of an arena: the arena header */
    OURO_PT_HUGE,      /* the header of a dedicated mapping */
};

#define OURO_POOL_MAGIC 0x0a1c
#define OURO_ARENA_MAGIC 0x0a7e4a01u

typedef struct ouro_block_s ouro_block_t;
typedef struct ouro_pool_s ouro_pool_t;
typedef struct ouro_heap_s ouro_heap_t;
typedef struct ouro_arena_s ouro_arena_t;

/* A free block: its first word links it into a free list, encoded (see block_encode). */
struct ouro_block_s {
    uintptr_t next;
};

/* Writes a freed block's link word. A relaxed atomic store (a plain store on every target): in object
 * pools the word is a dead object's tid, which lock-free readers may still load (core/objimpl.h's
 * try-incref) until a grace period ends; the atomic store keeps that benign race visible as one. */
static inline void ouro_block_set_link(ouro_block_t *b, uintptr_t link) { __atomic_store_n(&b->next, link, __ATOMIC_RELAXED); }

/* Reads a block's link word: a free block's, or a live block's first word (the double-free checks).
 * Sanitized builds read it without a report (it may be poisoned: alloc/sanitize.h). */
static inline uintptr_t ouro_block_link(const ouro_block_t *b) { return OURO_SAN ? ouro_san_peek(&b->next) : b->next; }
/* ---- pool ----------------------------------------------------------------------------------------
 * The descriptor of one POOL_SIZE region of an arena: it serves blocks (type BLOCKS), starts a run
 * (type RUN), or is free. Descriptors live together in the arena header (pool 0), like mimalloc's page
 * descriptors in its segment header: a pool's blocks start at its first byte, and the descriptors of
 * busy pools do not all fall into the same cache sets (headers at 16 KiB-aligned addresses would).
 * Line 0 is the owner's, line 1 is written by other threads (remote frees).
 *
 * Counts invariant (BLOCKS), the owner's view: carved == used + len(free) <= capacity. A block
 * freed by another thread sits on xfree and stays counted in used until _ouro_pool_collect moves it
 * to free, so the program holds used - len(xfree) blocks.
 * Ownership invariant: `heap` is a live heap (the owner), &_ouro_heap_abandoned (no owner, in the
 * arena's abandoned list) or &_ouro_heap_none (not a block pool). It is never NULL, so a thread
 * without a heap never takes the owner's path. `heap` changes only while the changer holds the
 * pool's claim, so whoever wins the claim reads the current owner.
 * Claim invariant: xfree is (list of remote-freed blocks) | OURO_XFREE_CLAIMED. The bit is set by
 * the remote free that finds it clear (that thread then pushes the pool on its owner's inbox) or by
 * _ouro_pool_try_claim (xfree 0 -> CLAIMED: adopt, abandon, release); it is cleared only by the
 * inbox's consumer (taking the list with it) or by _ouro_pool_unclaim. While it is set the pool is
 * not released, so a remote free never touches a pool after publishing its block unless it holds
 * the claim. A list is never pending without the bit. Pools that are not block pools keep the bit.
 * List invariant: an owned pool is exactly one of: its heap's current pool for (kind, cls) (flags 0),
 * on the heap's partial list (OURO_PF_PARTIAL, has a free block) or on its full list (OURO_PF_FULL). */
struct ouro_pool_s {
    /* line 0: owner (written by the owner only; heap and used also read by others) */
    ouro_block_t *free;             /* local free list (links encoded) */
    _Atomic(ouro_heap_t *) heap;    /* owner; see ownership invariant */
    _Atomic uint32_t used;          /* blocks handed out, remote-freed ones until collected */
    uint16_t capacity;              /* blocks in the pool */
    uint16_t carved;                /* blocks threaded so far (lazy carving, 4 KiB at a time) */
    uint16_t block_size;            /* bytes per block */
    uint16_t magic;                 /* OURO_POOL_MAGIC */
    uint8_t cls;                    /* size class */
    uint8_t kind;                   /* OURO_KIND_* */
    uint8_t flags;                  /* OURO_PF_*: owner's list membership */
    uint8_t type;                   /* OURO_PT_* */
    uintptr_t key;                  /* link encoding key, odd (from the owning heap's at init) */
    ouro_pool_t *next, *prev;       /* owner's partial/full list, or the arena's abandoned list */
    /* line 1: shared (remote frees) */
    _Atomic uintptr_t xfree __attribute__((aligned(64))); /* remote frees | claim bit (see above) */
    uint32_t run_pools;             /* RUN: pools in the run */
    ouro_pool_t *inbox_next;        /* link on a heap inbox (written by the claim winner) */
    size_t run_usable;              /* RUN: usable bytes */
    ouro_defer_node defer;          /* DEFERRED: the grace-period callback's node */
};

#define OURO_XFREE_CLAIMED ((uintptr_t)1)

#define OURO_PF_PARTIAL 1
#define OURO_PF_FULL 2

_Static_assert(sizeof(ouro_pool_t) == 128, "a pool descriptor is two cache lines");

/* Link encoding (hardened builds): a link word holds next ^ key, the pool's random key, so a stray
 * pointer write into a freed block does not become a usable free-list entry, and decoding checks that
 * the result stays inside the pool (or is NULL). One xor, not mimalloc's xor-rotate-add: the link is on
 * the critical path of every alloc/free pair, and a second key (tried: (next ^ k0) + k1) cost 6% more on
 * pair-32 while only a second leaked link would reveal it too (docs/alloc.md, "Hardening"). Non-hardened
 * builds store plain pointers. */
static inline uintptr_t ouro_block_encode(const ouro_pool_t *pool, uintptr_t next) {
    return OURO_HARDENED ? next ^ pool->key : next;
}

static inline uintptr_t ouro_block_decode(const ouro_pool_t *pool, uintptr_t word) {
    return OURO_HARDENED ? word ^ pool->key : word;
}

/* true when next is NULL or a 16-byte-aligned address inside the pool of block b. b is 16-byte aligned,
 * so (next ^ b) has next's low four bits: one mask tests both (an and with a sign-extended immediate). */
static inline bool ouro_link_ok(const void *b, uintptr_t next) {
    return (next == 0) | (((next ^ (uintptr_t)b) & (~(uintptr_t)(OURO_POOL_SIZE - 1) | 15)) == 0);
}

/* ---- arena ---------------------------------------------------------------------------------------
 * Lives in pool 0 of its mapping, followed by the pool descriptors. All fields but the descriptors are
 * guarded by the arena lock. A dedicated mapping (HUGE) has the same header; its block starts at pool
 * 1 and pools[1] describes it.
 * Counts invariant: nfree == popcount(free_map) == pools in state FREE; an arena with nfree ==
 * POOLS_PER_ARENA - 1 and ndeferred == 0 is empty: it is on the empty list (unmapped by the decay
 * tick once its pools are purged, except OURO_KEEP_EMPTY of them) or unmapped. An arena with
 * 0 < nfree < POOLS_PER_ARENA - 1 is on usable bucket [nfree] (fullest first).
 * Zero/decay invariant: purged_map is a subset of free_map; a pool in it reads as zeros (fresh from
 * mmap, or purged with MADV_DONTNEED). young_map is a subset of free_map & ~purged_map: the dirty pools
 * freed since the last decay tick (arena.c), which the next tick ages instead of purging. */
/* Where a full collection keeps the counts of one GC pool's blocks (gc/scan.c): block i's entry is
 * index - 1 + i of the collection's side table; index 0 means the pool is not in the collection. magic
 * turns a byte offset into a block index: off * magic >> 32 (exact for off < 2^32 / block_size). Set and
 * cleared by the collector while the world is stopped; nobody else reads it. */
typedef struct ouro_gc_slot {
    uint32_t index;
    uint32_t magic;
} ouro_gc_slot;

struct ouro_arena_s {
    uint32_t magic;
    uint32_t nfree;                 /* free pools */
    uint32_t ndeferred;             /* pools waiting for a grace period */
    uint32_t bucket;                /* usable bucket it is on, 0 when none */
    uint64_t free_map;              /* bit i: pool i is FREE */
    uint64_t purged_map;            /* bit i: free pool i's pages are returned to the OS (read as zeros) */
    uint64_t young_map;             /* bit i: free pool i became dirty in the current decay epoch */
    ouro_arena_t *next, *prev;      /* bucket, empty list, or (HUGE) the cache of free mappings */
    ouro_arena_t *all_next, *all_prev; /* every mapped arena */
    size_t map_size;                /* bytes mapped (HUGE: the whole mapping) */
    size_t huge_usable;             /* HUGE: usable bytes (reused from the cache: those of this request) */
    size_t huge_offset;             /* HUGE: where the block starts, from the header (POOL_SIZE; an aligned
                                     * block: its alignment, at most ARENA_SIZE: see _ouro_large_alloc_aligned) */
    size_t huge_dirty;              /* HUGE: bytes from the block's start that may hold old data */
    bool on_kept;                   /* on the empty list */
    bool young;                     /* HUGE, cached: freed in the current decay epoch */
    _Atomic uint8_t pool_state[64]; /* OURO_PT_* of each pool (written under the lock, read by validation) */
    ouro_pool_t pools[OURO_POOLS_PER_ARENA] __attribute__((aligned(64))); /* [0]: the header itself */
    ouro_gc_slot gc_slot[OURO_POOLS_PER_ARENA]; /* the collector's, during a full collection (gc/scan.c) */
};
_Static_assert(sizeof(ouro_arena_t) <= OURO_POOL_SIZE, "the arena header must fit pool 0");

static inline ouro_arena_t *ouro_arena_of(const void *p) {
    return (ouro_arena_t *)((uintptr_t)p & ~(OURO_ARENA_SIZE - 1));
}

/* The descriptor of the pool that address p lies in (p inside an arena or a HUGE block's first pool). */
static inline ouro_pool_t *ouro_pool_of(const void *p) {
    return &ouro_arena_of(p)->pools[((uintptr_t)p >> OURO_POOL_SHIFT) & (OURO_POOLS_PER_ARENA - 1)];
}

/* Index of a pool in its arena, and the first byte of its region (its first block). */
static inline uint32_t ouro_pool_index(const ouro_pool_t *pool) {
    return (uint32_t)(pool - ouro_arena_of(pool)->pools);
}
static inline char *ouro_pool_data(const ouro_pool_t *pool) {
    return (char *)ouro_arena_of(pool) + (size_t)ouro_pool_index(pool) * OURO_POOL_SIZE;
}
_Static_assert(OURO_ARENA_SIZE / OURO_POOL_SIZE <= 64, "free_map is 64 bits");

/* A pool can serve another block: its free list is not empty or it has blocks left to carve. */
static inline bool ouro_pool_has_free(const ouro_pool_t *pool) {
    return pool->free != NULL || pool->carved < pool->capacity;
}

/* ---- heap ----------------------------------------------------------------------------------------
 * One per thread that allocates (type-stable: never unmapped, reused after its thread exits, so a
 * late pool_notify never pushes onto freed memory). cur/partial/full are the owner's only; inbox is
 * an MPSC stack of pools with pending remote frees (pushed by claim winners, taken whole by the
 * owner — or, for _ouro_heap_abandoned, by whoever holds the arena lock). A pool that turns partial
 * joins the tail of its partial list and allocation takes the head, so a pool has collected the most
 * frees by the time it is reused (a full pool that gets one free is not refilled at once). */
typedef struct ouro_pool_list {
    ouro_pool_t *head, *tail;
} ouro_pool_list;

struct ouro_heap_s {
    ouro_pool_t *cur[OURO_NKINDS][OURO_NCLASSES];        /* never NULL: &_ouro_pool_empty when none */
    ouro_pool_list partial[OURO_NKINDS][OURO_NCLASSES];  /* pools with free blocks, oldest first */
    ouro_pool_list full[OURO_NKINDS][OURO_NCLASSES];     /* pools without */
    _Atomic(ouro_pool_t *) inbox;
    uintptr_t key;                  /* hardened builds: each pool's link key derives from it */
    uint64_t rng;
    ouro_heap_t *reg_next;          /* registry of every heap ever made (heap lock) */
    bool live;                      /* owned by a thread (heap lock) */
};

/* Sentinels: _ouro_pool_empty has no free block (the fast path falls through to the slow one);
 * _ouro_heap_empty is every thread's heap before its first allocation (all cur = empty pool);
 * _ouro_heap_abandoned owns abandoned pools; _ouro_heap_none owns regions that are not block pools. */
OURO_INTERNAL extern ouro_pool_t _ouro_pool_empty;
OURO_INTERNAL extern ouro_heap_t _ouro_heap_empty;
OURO_INTERNAL extern ouro_heap_t _ouro_heap_abandoned;
OURO_INTERNAL extern ouro_heap_t _ouro_heap_none;

/* The calling thread's heap (&_ouro_heap_empty until its first allocation). Initial-exec TLS: one
 * %fs-relative load, also in the shared library. */
OURO_INTERNAL extern __thread ouro_heap_t *_ouro_tls_heap OURO_TLS_FAST;

/* ---- size classes --------------------------------------------------------------------------------- */
OURO_INTERNAL extern const uint16_t _ouro_class_size[OURO_NCLASSES];

/* Class of a request of req bytes, 1 <= req <= OURO_MEDIUM_MAX. Above 4096 two classes: 5456 and 8192,
 * the largest 16-byte multiples of which a 16 KiB pool holds 3 and 2 (a program's 4-5 KiB buffers,
 * SQLite's pages with their headers, would otherwise take a 16 KiB run each). */
static inline unsigned ouro_size_class(size_t req) {
    if (req <= OURO_SMALL_MAX) return (unsigned)((req - 1) >> 4);
    if (req > 4096) return req <= 5456 ? OURO_NCLASSES - 2 : OURO_NCLASSES - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)(req - 1)); /* 9..11 */
    return OURO_NSMALL + (b - 9) * 4 + (unsigned)((req - 1) >> (b - 2)) - 4;
}

/* ---- os.c ----------------------------------------------------------------------------------------- */
/* Maps size bytes aligned to align (a power of two >= page size); NULL on failure (error set). */
OURO_INTERNAL void *_ouro_os_map_aligned(size_t size, size_t align);
/* Maps size bytes at p such that p + at is a multiple of align (a power of two >= page size; at a
 * multiple of the page size); NULL on failure (error set). */
OURO_INTERNAL void *_ouro_os_map_aligned_at(size_t size, size_t align, size_t at);
OURO_INTERNAL void _ouro_os_unmap(void *p, size_t size);
/* Returns the pages to the OS; the range stays mapped and reads back as zeros. */
OURO_INTERNAL void _ouro_os_purge(void *p, size_t size);
/* Address map: what each ARENA_SIZE chunk of the address space is to ouro (pointer validation). */
enum { OURO_CHUNK_NONE = 0, OURO_CHUNK_ARENA, OURO_CHUNK_HUGE_HEAD, OURO_CHUNK_HUGE_BODY };
/* Marks [chunk, chunk + size) as kind (the chunks after a HUGE_HEAD one as HUGE_BODY). Arena lock. */
OURO_INTERNAL void _ouro_addrmap_set(void *chunk, size_t size, unsigned kind);
/* Two levels over ARENA_SIZE chunks of the 48-bit address space: a static root of leaf pointers and
 * leaves mapped on first use (never freed). Written under the arena lock; read lock-free: a reader asks
 * only about memory it claims to own, whose registration happened-before it got the pointer. */
#define OURO_ADDRMAP_CHUNK_BITS (48 - OURO_ARENA_SHIFT)
#define OURO_ADDRMAP_LEAF_BITS (OURO_ADDRMAP_CHUNK_BITS / 2)
#define OURO_ADDRMAP_ROOT_BITS (OURO_ADDRMAP_CHUNK_BITS - OURO_ADDRMAP_LEAF_BITS)
typedef struct ouro_addrmap_leaf {
    _Atomic uint8_t chunk[1u << OURO_ADDRMAP_LEAF_BITS];
} ouro_addrmap_leaf;
OURO_INTERNAL extern _Atomic(ouro_addrmap_leaf *) _ouro_addrmap_root[1u << OURO_ADDRMAP_ROOT_BITS];
/* The OURO_CHUNK_* kind of the chunk that p lies in (inline: the collector asks once per reference). */
static inline unsigned _ouro_addrmap_get(const void *p) {
    uintptr_t c = (uintptr_t)p >> OURO_ARENA_SHIFT;
    if (c >> OURO_ADDRMAP_CHUNK_BITS) return OURO_CHUNK_NONE;
    ouro_addrmap_leaf *leaf = ouro_load_acquire(&_ouro_addrmap_root[c >> OURO_ADDRMAP_LEAF_BITS]); /* pairs with the release in _ouro_addrmap_set() */
    return leaf ? ouro_load_relaxed(&leaf->chunk[c & ((1u << OURO_ADDRMAP_LEAF_BITS) - 1)]) : OURO_CHUNK_NONE;
}

/* Counters shared by the layers; updated under the arena lock or with relaxed atomics. */
typedef struct ouro_alloc_counters {
    _Atomic size_t bytes_mapped, bytes_mapped_peak, bytes_returned, os_map_calls, os_map_failures;
    _Atomic size_t arenas, arenas_peak, arenas_allocated, arenas_reclaimed;
    _Atomic size_t large_blocks, large_bytes;
} ouro_alloc_counters;
OURO_INTERNAL extern ouro_alloc_counters _ouro_counters;

/* ---- arena.c (all take the arena lock themselves unless named _locked) -------------------------- */
OURO_INTERNAL extern pthread_mutex_t _ouro_arena_lock;
/* Releases the arena lock; every holder releases it here (pthread_mutex_lock, then this). A remote free
 * into an abandoned pool leaves the pool on _ouro_heap_abandoned's inbox and collects it only if its
 * trylock wins; when the lock was held, the holder collects it here, after its release (both sides
 * fence: pool_notify in heap.c), so an emptied abandoned pool goes back without anyone calling collect. */
OURO_INTERNAL void _ouro_arena_unlock(void);
/* A fresh pool for (kind, cls) owned by h, initialised under the lock; NULL (error set). */
OURO_INTERNAL ouro_pool_t *_ouro_arena_take_pool(ouro_heap_t *h, unsigned kind, unsigned cls);
/* Gives back an emptied pool whose claim the caller holds. Object/GC pools go through the
 * grace-period hook first. */
OURO_INTERNAL void _ouro_arena_release_pool(ouro_pool_t *pool);
OURO_INTERNAL void _ouro_arena_release_pool_locked(ouro_pool_t *pool);
/* A large block of size usable bytes (a pool run or a dedicated mapping); NULL with error set. */
OURO_INTERNAL void *_ouro_large_alloc(size_t size);
/* A large block of size usable bytes whose address is a multiple of align (a power of two): a pool run
 * or a dedicated mapping up to POOL_SIZE, above it a dedicated mapping whose block starts align bytes
 * (at most ARENA_SIZE) after its header; NULL with error set. */
OURO_INTERNAL void *_ouro_large_alloc_aligned(size_t size, size_t align);
/* The first byte of the large block that hdr (a RUN's first pool, or a HUGE mapping's pools[1]) describes. */
OURO_INTERNAL char *_ouro_large_data(ouro_pool_t *hdr);
/* The same for calloc: the block reads as zeros except, perhaps, in its first *dirty_len bytes where
 * bit j of *dirty is set (bytes [j, j + 1) * POOL_SIZE); the rest is fresh or purged pages (the
 * zero/decay invariant). A run sets *dirty_len = SIZE_MAX, a dedicated mapping *dirty = ~0. */
OURO_INTERNAL void *_ouro_large_alloc_zero(size_t size, uint64_t *dirty, size_t *dirty_len);
OURO_INTERNAL void _ouro_large_free(ouro_pool_t *hdr);
OURO_INTERNAL size_t _ouro_large_usable(ouro_pool_t *hdr);
/* Abandoned pools, by (kind, cls): push one, adopt one with free blocks for heap h. */
OURO_INTERNAL void _ouro_arena_abandon_locked(ouro_pool_t *pool);
OURO_INTERNAL ouro_pool_t *_ouro_arena_adopt(ouro_heap_t *h, unsigned kind, unsigned cls);
/* Collects pending remote frees of abandoned pools; releases the emptied ones. */
OURO_INTERNAL void _ouro_arena_collect_abandoned_locked(void);
/* Purges free pools, unmaps every empty arena and cached mapping; returns bytes returned to the OS. */
OURO_INTERNAL size_t _ouro_arena_trim_locked(void);
/* Starts the decay thread if memory has turned dirty and none runs yet (one relaxed load otherwise).
 * Called without the arena lock, where the calling heap is consistent: the thread's start may allocate,
 * through ouro when ouro is the program's malloc. */
OURO_INTERNAL void _ouro_arena_decay_start(void);
/* Starts the decay thread before memory turns dirty: a thread about to give its heap back (after that,
 * under the malloc shim, pthread_create's allocations would make the exiting thread a new heap). */
OURO_INTERNAL void _ouro_arena_decay_expect(void);
/* Joins a decay thread that ended (fork's prepare, before any lock: core/mem.c). */
OURO_INTERNAL void _ouro_arena_decay_reap(void);
/* Tests: the decay epoch and the decay thread's idle period in ms (0: the default), and how many decay
 * threads were started (and how many ended, in *ends unless NULL). */
OURO_INTERNAL void _ouro_arena_decay_timing(unsigned epoch_ms, unsigned idle_exit_ms);
OURO_INTERNAL unsigned long _ouro_arena_decay_starts(unsigned long *ends);
/* fork() child (arena lock held): the decay thread did not survive the fork; the next dirty pool
 * starts a new one. */
OURO_INTERNAL void _ouro_arena_atfork_child(void);
OURO_INTERNAL size_t _ouro_arena_abandoned_count_locked(void);

/* The grace-period hook for emptied OBJECT/GC pools (the brief's constraint (1)): until it is
 * called back, a pool is DEFERRED: not reused for another class, not unmapped. The hook is called with
 * arena_lock held and must only queue the node (the default, _ouro_defer_push of threads/defer.c, runs
 * the callback on the reclaimer thread after a grace period). */
typedef void (*ouro_defer_fn)(ouro_defer_node *node);
/* Replaces the hook (white-box tests); NULL restores the default. */
OURO_INTERNAL void _ouro_alloc_set_defer_hook(ouro_defer_fn fn);

/* GC pool retention (for gc/): while on, an emptied GC pool is not given back but retained, and the
 * next GC pool of its size class is taken from the retained ones. The collector's lists of young
 * objects may hold pointers to freed objects; retention keeps every such pointer pointing at a block
 * boundary of a GC pool of the same class (whose words 1..3 the allocator never writes) until the
 * collector has emptied its lists, then it releases them (through the grace period every emptied
 * object pool waits). Returns how many it released. */
OURO_INTERNAL void _ouro_alloc_gc_retain(bool on);
OURO_INTERNAL size_t _ouro_alloc_gc_release_retained(void);

/* Creates the allocator's thread-exit key and registers its fork handlers (once; also a constructor). */
OURO_INTERNAL void _ouro_alloc_global_init(void);

/* ---- thread exit (heap.c) ------------------------------------------------------------------------- */
/* Abandons the calling thread's heap now (the threads module's last exit hook); idempotent. */
OURO_INTERNAL void _ouro_alloc_thread_exit(void);
/* true while the calling thread initialises the allocator (its first heap_attach runs the once-only
 * set-up): an allocation it makes meanwhile fails, and the malloc shim serves it from the C library. */
OURO_INTERNAL bool _ouro_heap_attaching(void);
/* The calling thread's heap, made now if it has none (attach); NULL with an error when out of memory. */
OURO_INTERNAL ouro_heap_t *_ouro_alloc_thread_heap(void);
/* fork() child: abandons the heap of a thread that did not survive the fork (it was stopped at a
 * safepoint, so the heap is consistent). The caller is the child's only thread. */
OURO_INTERNAL void _ouro_alloc_abandon_vanished(ouro_heap_t *h);
/* Called when the heap's thread-exit destructor runs: threads/ installs one that detaches an attached
 * thread (its exit hooks abandon the heap online, so an exit during a stop never touches the heap) and
 * returns true; false leaves the heap to the destructor. */
OURO_INTERNAL extern bool (*_Atomic _ouro_alloc_exit_guard)(void);

/* ---- visiting object pools (core/ and gc/) ------------------------------------------------------------
 * A visitor sees every carved block of a pool: live objects and free blocks alike. A free block's word 0
 * is its link: in an OBJECT/GC pool an address inside the pool, NULL, or (hardened builds) an odd
 * encoded word; never a thread pointer, so a test of word 0 against an owner id tells them apart. */
typedef void (*ouro_pool_visit_fn)(ouro_pool_t *pool, void *arg);
/* Calls fn on each OBJECT and GC pool that h owns. h's owner only; fn must not allocate from h or free
 * blocks of h (the lists would change under the walk). */
OURO_INTERNAL void _ouro_heap_visit_object_pools(ouro_heap_t *h, ouro_pool_visit_fn fn, void *arg);
/* Calls fn on each abandoned OBJECT and GC pool (arena lock held; fn must not take it). */
OURO_INTERNAL void _ouro_arena_visit_abandoned_object_pools_locked(ouro_pool_visit_fn fn, void *arg);

/* Block i (< pool->carved) of a block pool. */
static inline void *ouro_pool_block(const ouro_pool_t *pool, uint32_t i) {
    return ouro_pool_data(pool) + (size_t)i * pool->block_size;
}

/* ---- alloc.c ---------------------------------------------------------------------------------------- */
/* A block from a pool of the given kind (core/ and gc/ allocate objects here); freed with ouro_free.
 * size <= OURO_MEDIUM_MAX - OURO_PAD. */
OURO_INTERNAL void *_ouro_alloc_kind(unsigned kind, size_t size);
/* Frees a block of an OBJECT or GC pool (ouro_free refuses them in debug builds: user code that frees
 * an object's block instead of dropping its reference). */
OURO_INTERNAL void _ouro_free_object(void *p);

/* Sanitized builds: makes the first size bytes of block p (a pool block just popped, or a large block)
 * addressable and the rest up to its end its redzone, whose last word records size; returns p. */
OURO_INTERNAL void *_ouro_san_handout_slow(void *p, size_t size);
static inline void *ouro_san_handout(void *p, size_t size) { return OURO_SAN && p ? _ouro_san_handout_slow(p, size) : p; }
/* Sanitized builds: the size a block was handed out with (its redzone's last word). */
OURO_INTERNAL size_t _ouro_san_block_size(const void *p, size_t end);

/* ---- heap.c ---------------------------------------------------------------------------------------- */
/* The slow path of allocation from class cls of the given kind: refills the current pool. */
OURO_INTERNAL void *_ouro_heap_alloc_slow(ouro_heap_t *h, unsigned kind, unsigned cls);
/* A local free hit a pool that is full or on the partial list and may now be empty. */
OURO_INTERNAL void _ouro_heap_free_local_slow(ouro_heap_t *h, ouro_pool_t *pool);
/* Pushes b onto pool's remote-free list (any thread). */
OURO_INTERNAL void _ouro_pool_free_remote(ouro_pool_t *pool, ouro_block_t *b);
/* Moves the pool's remote frees onto its local list, leaving the claim bit as it is; returns how
 * many. The owner only (or the arena lock for abandoned pools). */
OURO_INTERNAL uint32_t _ouro_pool_collect(ouro_pool_t *pool);
/* Initialises a FREE pool for (kind, cls) owned by h (arena lock held). */
OURO_INTERNAL void _ouro_pool_init(ouro_pool_t *pool, ouro_heap_t *h, unsigned kind, unsigned cls);
/* Claims pool (xfree 0 -> CLAIMED); false when it is claimed or has pending remote frees. */
OURO_INTERNAL bool _ouro_pool_try_claim(ouro_pool_t *pool);
/* Releases the claim; remote frees that arrived meanwhile hand it on: the pool goes on its owner's
 * inbox. The caller must not touch the pool afterwards unless it owns it. */
OURO_INTERNAL void _ouro_pool_unclaim(ouro_pool_t *pool);
/* The inbox consumer's step: releases the claim and collects the pending list at once. */
OURO_INTERNAL uint32_t _ouro_pool_take_inbox_claim(ouro_pool_t *pool);
/* Collects the calling thread's inbox and every pool it owns; releases empty non-current pools. */
OURO_INTERNAL void _ouro_heap_collect(ouro_heap_t *h);
/* Checks every pool of h (ouro_alloc_check). */
OURO_INTERNAL bool _ouro_heap_check(ouro_heap_t *h, char *why, size_t n);
OURO_INTERNAL bool _ouro_pool_check(ouro_pool_t *pool, char *why, size_t n);
/* Counts heaps (heap lock). */
OURO_INTERNAL void _ouro_heap_counts(size_t *live, size_t *cached);

/* Debug builds: checks and restores what a free block must look like. */
OURO_INTERNAL void _ouro_block_debug_on_alloc(ouro_pool_t *pool, ouro_block_t *b);
OURO_INTERNAL void _ouro_block_debug_on_free(ouro_pool_t *pool, ouro_block_t *b);
/* Debug builds (level >= 1): true when p, an object-sized block of an arena pool, is free (its canary
 * is gone: freed blocks are poisoned) or its pool is no block pool any more. false in other builds and
 * for addresses outside ouro's arenas. */
OURO_INTERNAL bool _ouro_block_freed(const void *p);
/* Hardened builds: the fatal reports of the free-list checks (docs/alloc.md, "Hardening"). */
OURO_INTERNAL OURO_COLD _Noreturn void _ouro_block_double_free(const ouro_pool_t *pool, const ouro_block_t *b);
OURO_INTERNAL OURO_COLD _Noreturn void _ouro_free_list_corrupt(const ouro_pool_t *pool, const ouro_block_t *b, uintptr_t next);
/* Hardened builds: checks that an emptied pool's free list holds every carved block once (a double free
 * that went unnoticed at the free shows here, before the pool's memory can serve another class). */
OURO_INTERNAL void _ouro_pool_check_emptied(const ouro_pool_t *pool);

/* ---- the pop/push every path shares --------------------------------------------------------------- */

/* Sanitized builds (alloc/sanitize.h): a pool block the allocator is about to write all over (popped,
 * or being freed) becomes addressable and defined; closing it poisons what a free block poisons. */
static inline void ouro_san_block_open(const ouro_pool_t *pool, ouro_block_t *b) {
    if (OURO_SAN) ouro_san_unpoison(b, pool->block_size);
}
static inline void ouro_san_block_close(const ouro_pool_t *pool, ouro_block_t *b) {
    size_t keep = pool->kind == OURO_KIND_PLAIN ? 0 : OURO_SAN_HEADER;
    if (OURO_SAN) ouro_san_poison((char *)b + keep, pool->block_size - keep);
}
/* A handed-out pool block is being freed: memcheck records the free; then it is opened. */
static inline void ouro_san_block_freeing(const ouro_pool_t *pool, ouro_block_t *b) {
    if (!OURO_SAN) return;
    ouro_san_freelike(b);
    ouro_san_block_open(pool, b);
}

/* Writes a free block's link word. Sanitized builds: the block is closed (its word 0 poisoned in a
 * plain pool), so the word is opened around the store, and closed before the caller publishes it. */
static inline void ouro_block_set_free_link(const ouro_pool_t *pool, ouro_block_t *b, uintptr_t link) {
    bool plain = OURO_SAN && pool->kind == OURO_KIND_PLAIN;
    if (plain) ouro_san_unpoison(b, sizeof b->next);
    ouro_block_set_link(b, link);
    if (plain) ouro_san_poison(b, sizeof b->next);
}

/* Takes a block from the pool's local free list (owner only); NULL when the list is empty. */
static inline ouro_block_t *ouro_pool_pop(ouro_pool_t *pool) {
    ouro_block_t *b = pool->free;
    if (OURO_UNLIKELY(b == NULL)) return NULL;
    uintptr_t next = ouro_block_decode(pool, ouro_block_link(b));
    if (OURO_HARDENED && OURO_UNLIKELY(!ouro_link_ok(b, next))) _ouro_free_list_corrupt(pool, b, next);
    pool->free = (ouro_block_t *)next;
    ouro_san_block_open(pool, b); /* the caller hands it out: _ouro_san_handout() */
    /* Hardened: a live block's link word must not decode into its pool. A block freed twice sits on the
     * list twice; its first pop clears the word, so its second pop fails the check above (unless the
     * program wrote one of the 2^-50 values that decode into the pool), and it is never handed out
     * twice. The remote-free check relies on it too. */
    if (OURO_HARDENED) ouro_block_set_link(b, 0);
    ouro_owner_add(&pool->used, 1);
    if (OURO_DEBUG_LEVEL >= 1) _ouro_block_debug_on_alloc(pool, b);
    return b;
}

/* Hardened builds: true when b's link word decodes into its pool, so b is free already (the remote-free
 * check: pop clears the word). */
static inline bool ouro_block_suspect(const ouro_pool_t *pool, const ouro_block_t *b) {
    return OURO_HARDENED && OURO_UNLIKELY(ouro_link_ok(b, ouro_block_decode(pool, ouro_block_link(b))));
}

/* Puts b back on the pool's local free list (owner only; the caller handles list transitions). Returns
 * the pool's new used count. Hardened builds check what needs no read of the block (a read right after
 * the program's last narrow store to it stalls on store forwarding): b is not the block freed last, and
 * the pool has a block out. Other double frees are caught at the second pop, or when the pool empties
 * (_ouro_pool_check_emptied). */
static inline uint32_t ouro_pool_push_local(ouro_pool_t *pool, ouro_block_t *b) {
    uint32_t used = ouro_load_relaxed(&pool->used); /* the owner's counter: loaded once */
    if (OURO_HARDENED && OURO_UNLIKELY((b == pool->free) | (used == 0))) _ouro_block_double_free(pool, b);
    ouro_san_block_freeing(pool, b);
    if (OURO_DEBUG_LEVEL >= 1) _ouro_block_debug_on_free(pool, b);
    ouro_san_block_close(pool, b);
    ouro_block_set_free_link(pool, b, ouro_block_encode(pool, (uintptr_t)pool->free));
    pool->free = b;
    ouro_store_relaxed(&pool->used, used - 1);
    return used - 1;
}

#endif /* OURO_ALLOC_INTERNAL_H */
