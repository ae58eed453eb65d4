/* alloc/arena.c — the shared arena: arenas of pools, pool runs for large blocks, dedicated mappings
 * for the largest, abandoned pools, and the policy for giving memory back to the OS.
 *
 * Everything here runs under _ouro_arena_lock (the slow path of the slow path: a heap comes here once
 * per pool, not per block). Arena policy: a pool is taken from the fullest arena that has one
 * (pymalloc's usable_arenas order), so the emptiest arenas drain.
 *
 * Return to the OS by decay (docs/alloc.md, "Decay"): a free pool stays resident ("dirty") — taken
 * again, it costs no syscall and no page fault — until it has aged. Time is cut into epochs of
 * OURO_DECAY_MS; a decay tick at the end of each purges (MADV_DONTNEED) the dirty pools that were
 * already dirty at the previous tick and ages the ones freed since (young_map), so a pool goes back
 * to the OS between one and two epochs after it became free. Empty arenas wait on the empty list
 * likewise and are unmapped by the tick that finds them purged (OURO_KEEP_EMPTY stay mapped, purged);
 * freed dedicated mappings wait in a cache (reused by a request of about their size) and are unmapped
 * by the tick after the one that aged them. Ticks run on whichever thread holds this lock when an
 * epoch ends, and on the decay thread (arena_decay_main), which sleeps while nothing is dirty, so an
 * idle program gives its memory back too. One rule shortens the wait: while resident memory grows,
 * aged memory does not wait for the tick — each OURO_GROW_STEP of purged pools taken, and each new
 * dedicated mapping, returns as much aged dirty memory at once (decay_offset_locked). */
#include "alloc/internal.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

#define OURO_KEEP_EMPTY (OURO_TORTURE ? 0u : 1u)
#define POOLS ((uint32_t)OURO_POOLS_PER_ARENA)
#define ALL_POOLS_MAP ((POOLS == 64 ? ~(uint64_t)0 : (((uint64_t)1 << POOLS) - 1)) & ~(uint64_t)1)
/* The decay epoch: a free pool, empty arena or cached mapping goes back to the OS one to two epochs
 * after it became free. Torture builds: 2 ms, so that ticks happen all the time. */
#define OURO_DECAY_MS (OURO_TORTURE ? 2u : 250u)
/* Resident growth (purged or fresh pools taken) that makes as much dirty memory go back at once. */
#define OURO_GROW_STEP (OURO_TORTURE ? OURO_POOL_SIZE : (size_t)1 << 20)
/* Freed dedicated mappings kept for reuse: at most OURO_HUGE_CACHE_MAX bytes plus 1/OURO_HUGE_CACHE_SHARE
 * of the rest of what is mapped; none in torture and sanitized builds (the checkers track each mapping). */
#define OURO_HUGE_CACHE_MAX (OURO_TORTURE || OURO_SAN ? (size_t)0 : (size_t)64 << 20)
#define OURO_HUGE_CACHE_SHARE 8

/* Adaptive: held for short stretches by many threads; spinning briefly beats sleeping on 2 cores. */
pthread_mutex_t _ouro_arena_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;

void _ouro_arena_unlock(void) {
    pthread_mutex_unlock(&_ouro_arena_lock);
    /* pairs with the fence in pool_notify() (heap.c): a notifier whose trylock failed on our hold
     * pushed before it, so we see its pool here (or a later holder does, after its own release) */
    ouro_fence_seq_cst();
    while (ouro_load_relaxed(&_ouro_heap_abandoned.inbox) && pthread_mutex_trylock(&_ouro_arena_lock) == 0) {
        _ouro_arena_collect_abandoned_locked(); /* the decay thread is asked for (decay.wanted) if needed */
        pthread_mutex_unlock(&_ouro_arena_lock);
        ouro_fence_seq_cst();
    }
}

/* Guarded by the arena lock. */
static struct {
    ouro_arena_t *bucket[64];        /* usable arenas by nfree (1..POOLS-2), doubly linked */
    uint64_t bucket_map;             /* bit n: bucket[n] non-empty */
    ouro_arena_t *kept;              /* empty arenas (the empty list), newest first */
    uint32_t nkept;
    ouro_pool_t *abandoned_avail[OURO_NKINDS][OURO_NCLASSES]; /* abandoned, with free blocks */
    ouro_pool_t *abandoned_full[OURO_NKINDS][OURO_NCLASSES];  /* abandoned, without */
    _Atomic size_t nabandoned;       /* written under the lock, peeked at without it */
    size_t ndirty;                   /* free pools not purged, in every mapped arena */
    ouro_arena_t *all;               /* every mapped arena (all_next/all_prev) */
    bool gc_retain;                  /* emptied GC pools are retained (the collector is running) */
    ouro_pool_t *gc_retained[OURO_NCLASSES]; /* retained GC pools by class (pool->next) */
    size_t ngc_retained;
    uint64_t epoch_end;              /* ms (CLOCK_MONOTONIC): the next decay tick is due */
    size_t grown;                    /* bytes of purged pools taken since the last offset */
    ouro_arena_t *huge_cache;        /* freed dedicated mappings (next/prev), newest first */
    size_t huge_cached;              /* their bytes */
} arena_state;

/* The decay thread (arena_decay_main). started and wanted are also read without the lock (a peek
 * before taking it); mu, cond and kick are the thread's sleep, which it takes without the arena lock
 * (lock order: arena lock, then mu), so that every release of the arena lock is _ouro_arena_unlock's;
 * everything else is guarded by the arena lock. */
static struct {
    pthread_mutex_t mu;              /* guards kick; cond's mutex */
    pthread_cond_t cond;             /* signalled when memory turns dirty while the thread idles */
    bool kick;                       /* mu: memory turned dirty while the thread was idle */
    _Atomic bool started;            /* a thread was started (or is being started) */
    _Atomic bool wanted;             /* memory turned dirty before a thread was started */
    bool idle;                       /* waiting for memory to turn dirty: nothing is */
    bool cond_ready;                 /* mu and cond are initialised */
    bool has_zombie;                 /* a thread ended and waits to be joined (zombie) */
    bool stay;                       /* the process is exiting: the thread no longer ends (decay_at_exit) */
    pthread_t zombie;
    uint64_t retry_ms;               /* a refused start is tried again from this time on */
} decay;

/* How long the decay thread waits, with nothing dirty, before it ends (the next memory to turn dirty
 * starts a new one): a thread of ouro's must not be what keeps a process alive. */
#define OURO_DECAY_IDLE_EXIT_MS (OURO_TORTURE ? 5u : 2000u)

/* The epoch and the idle period, and the decay threads started so far (tests shorten both to make the
 * thread come and go: _ouro_arena_decay_timing). */
static _Atomic unsigned decay_epoch_ms = OURO_DECAY_MS, decay_idle_exit_ms = OURO_DECAY_IDLE_EXIT_MS;
static _Atomic unsigned long decay_starts, decay_ends;

void _ouro_arena_decay_timing(unsigned epoch_ms, unsigned idle_exit_ms) {
    ouro_store_relaxed(&decay_epoch_ms, epoch_ms ? epoch_ms : OURO_DECAY_MS);
    ouro_store_relaxed(&decay_idle_exit_ms, idle_exit_ms ? idle_exit_ms : OURO_DECAY_IDLE_EXIT_MS);
}

unsigned long _ouro_arena_decay_starts(unsigned long *ends) {
    if (ends) *ends = ouro_load_acquire(&decay_ends);
    return ouro_load_relaxed(&decay_starts);
}

static __thread bool decay_self; /* the calling thread is the decay thread */

static void decay_offset_locked(size_t bytes, bool pools_first);

static ouro_defer_fn defer_hook = _ouro_defer_push; /* arena_lock */

void _ouro_alloc_set_defer_hook(ouro_defer_fn fn) {
    pthread_mutex_lock(&_ouro_arena_lock);
    defer_hook = fn ? fn : _ouro_defer_push;
    _ouro_arena_unlock();
}

/* Sets up the descriptor of a region that is not a block pool: no owner, claimed for good. */
static void arena_pool_describe(ouro_pool_t *pool, uint8_t type) {
    pool->type = type;
    pool->magic = OURO_POOL_MAGIC;
    ouro_store_relaxed(&pool->heap, &_ouro_heap_none);
    ouro_store_relaxed(&pool->xfree, OURO_XFREE_CLAIMED);
}

/* ---- doubly linked lists (arenas on buckets, pools on abandoned lists) --------------------------- */
#define LIST_PUSH(head, x)                                                                         \
    do {                                                                                          \
        (x)->prev = NULL;                                                                         \
        (x)->next = (head);                                                                       \
        if (head) (head)->prev = (x);                                                             \
        (head) = (x);                                                                             \
    } while (0)
#define LIST_UNLINK(head, x)                                                                       \
    do {                                                                                          \
        if ((x)->prev) (x)->prev->next = (x)->next; else (head) = (x)->next;                      \
        if ((x)->next) (x)->next->prev = (x)->prev;                                               \
        (x)->next = (x)->prev = NULL;                                                             \
    } while (0)

/* Takes a off the list it is on (a bucket or the kept list). */
static void arena_unlist(ouro_arena_t *a) {
    if (a->bucket) {
        LIST_UNLINK(arena_state.bucket[a->bucket], a);
        if (!arena_state.bucket[a->bucket]) arena_state.bucket_map &= ~((uint64_t)1 << a->bucket);
        a->bucket = 0;
    } else if (a->on_kept) {
        LIST_UNLINK(arena_state.kept, a);
        arena_state.nkept--;
        a->on_kept = false;
    }
}

/* Free pools of a whose pages are still resident. */
static uint32_t arena_dirty(const ouro_arena_t *a) {
    return (uint32_t)__builtin_popcountll(a->free_map & ~a->purged_map);
}

static void arena_unmap(ouro_arena_t *a) {
    arena_state.ndirty -= arena_dirty(a);
    if (a->all_prev) a->all_prev->all_next = a->all_next; else arena_state.all = a->all_next;
    if (a->all_next) a->all_next->all_prev = a->all_prev;
    _ouro_addrmap_set(a, OURO_ARENA_SIZE, OURO_CHUNK_NONE);
    ouro_fetch_sub_relaxed(&_ouro_counters.arenas, 1);
    ouro_fetch_add_relaxed(&_ouro_counters.arenas_reclaimed, 1);
    ouro_san_unpoison(a, OURO_ARENA_SIZE); /* sanitized builds: the next mapping here starts clean */
    _ouro_os_unmap(a, OURO_ARENA_SIZE);
}

/* Returns the pages of the dirty pools of a in m (a subset of free_map & ~purged_map) to the OS;
 * returns the bytes. */
static size_t arena_purge_mask(ouro_arena_t *a, uint64_t m) {
    size_t bytes = 0;
    a->purged_map |= m;
    a->young_map &= ~m;
    arena_state.ndirty -= (size_t)__builtin_popcountll(m);
    for (uint32_t i = 1; i < POOLS;) {
        if (!(m >> i & 1)) { i++; continue; }
        uint32_t j = i;
        while (j < POOLS && (m >> j & 1)) j++;
        _ouro_os_purge((char *)a + (size_t)i * OURO_POOL_SIZE, (size_t)(j - i) * OURO_POOL_SIZE);
        bytes += (size_t)(j - i) * OURO_POOL_SIZE;
        i = j;
    }
    return bytes;
}

/* Purges every dirty pool of a; returns the bytes. */
static size_t arena_purge_free(ouro_arena_t *a) { return arena_purge_mask(a, a->free_map & ~a->purged_map); }

/* Puts a where its counts say it belongs (arena counts invariant); may unmap it. */
static void arena_relist(ouro_arena_t *a) {
    arena_unlist(a);
    if (a->nfree == POOLS - 1 && a->ndeferred == 0) {
        LIST_PUSH(arena_state.kept, a); /* the decay tick unmaps it once purged (see the top) */
        arena_state.nkept++;
        a->on_kept = true;
    } else if (a->nfree > 0) {
        a->bucket = a->nfree;
        LIST_PUSH(arena_state.bucket[a->bucket], a);
        arena_state.bucket_map |= (uint64_t)1 << a->bucket;
    }
}

static ouro_arena_t *arena_new(void) {
    ouro_arena_t *a = _ouro_os_map_aligned(OURO_ARENA_SIZE, OURO_ARENA_SIZE);
    if (!a) return NULL;
    arena_pool_describe(&a->pools[0], OURO_PT_ARENA);
    for (uint32_t i = 1; i < POOLS; i++) arena_pool_describe(&a->pools[i], OURO_PT_FREE);
    a->magic = OURO_ARENA_MAGIC;
    a->nfree = POOLS - 1;
    a->free_map = ALL_POOLS_MAP;
    a->map_size = OURO_ARENA_SIZE;
    a->purged_map = ALL_POOLS_MAP; /* fresh pages are not resident */
    ouro_store_relaxed(&a->pool_state[0], OURO_PT_ARENA);
    a->all_next = arena_state.all;
    if (a->all_next) a->all_next->all_prev = a;
    arena_state.all = a;
    _ouro_addrmap_set(a, OURO_ARENA_SIZE, OURO_CHUNK_ARENA);
    size_t n = ouro_fetch_add_relaxed(&_ouro_counters.arenas, 1) + 1;
    if (n > ouro_load_relaxed(&_ouro_counters.arenas_peak)) ouro_store_relaxed(&_ouro_counters.arenas_peak, n);
    ouro_fetch_add_relaxed(&_ouro_counters.arenas_allocated, 1);
    return a;
}

/* Lowest index where free_map has `count` consecutive free pools, or 0 when none. */
static uint32_t arena_find_run(const ouro_arena_t *a, uint32_t count) {
    uint64_t m = a->free_map;
    for (uint32_t j = 1; j < count && m; j++) m &= a->free_map >> j;
    return m ? (uint32_t)__builtin_ctzll(m) : 0;
}

/* An arena with `count` consecutive free pools (fullest first), mapping a new one if needed. */
static ouro_arena_t *arena_with_room(uint32_t count, uint32_t *index) {
    for (uint64_t bm = arena_state.bucket_map & ~(((uint64_t)1 << count) - 1); bm; bm &= bm - 1) {
        for (ouro_arena_t *a = arena_state.bucket[__builtin_ctzll(bm)]; a; a = a->next) {
            if ((*index = arena_find_run(a, count))) return a;
        }
    }
    ouro_arena_t *a = arena_state.kept ? arena_state.kept : arena_new();
    if (a) *index = 1;
    return a;
}

/* Marks pools [i, i + count) of a as taken with the given state of the first. */
static void arena_take_locked(ouro_arena_t *a, uint32_t i, uint32_t count, uint8_t state) {
    /* Purged (or fresh) pools become resident as they are used: once that adds up to OURO_GROW_STEP,
     * as much dirty memory goes back (decay_offset_locked), if there is any. */
    arena_state.grown += (size_t)__builtin_popcountll(a->purged_map >> i & (((uint64_t)1 << count) - 1)) * OURO_POOL_SIZE;
    for (uint32_t j = i; j < i + count; j++) {
        OURO_ASSERT(a->free_map >> j & 1);
        if (!(a->purged_map >> j & 1)) arena_state.ndirty--;
        a->free_map &= ~((uint64_t)1 << j);
        a->purged_map &= ~((uint64_t)1 << j);
        a->young_map &= ~((uint64_t)1 << j);
        ouro_store_relaxed(&a->pool_state[j], j == i ? state : OURO_PT_RUN_BODY);
    }
    a->nfree -= count;
    arena_relist(a);
    if (arena_state.grown >= OURO_GROW_STEP) {
        decay_offset_locked(arena_state.grown, true);
        arena_state.grown = 0;
    }
}

/* ---- decay (see the policy at the top) ------------------------------------------------------------ */

static uint64_t decay_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Whether anything waits for a tick: dirty pools (empty arenas' included) or cached mappings. */
static bool decay_pending(void) { return arena_state.ndirty != 0 || arena_state.huge_cache != NULL; }

static void huge_uncache(ouro_arena_t *a) {
    LIST_UNLINK(arena_state.huge_cache, a);
    arena_state.huge_cached -= a->map_size;
}

/* Unmaps every empty arena that has no dirty pool left, but OURO_KEEP_EMPTY of them. */
static void decay_unmap_empty(void) {
    uint32_t kept = 0;
    for (ouro_arena_t *a = arena_state.kept, *next; a; a = next) {
        next = a->next;
        if (arena_dirty(a) != 0) continue;
        if (kept < OURO_KEEP_EMPTY) {
            kept++;
            continue;
        }
        arena_unlist(a);
        arena_unmap(a);
    }
}

/* The decay tick: purges the dirty pools that were dirty at the last tick, unmaps the cached mappings
 * that were cached at the last tick and the purged empty arenas; what turned dirty since is aged. */
static void decay_tick_locked(uint64_t now) {
    arena_state.epoch_end = now + ouro_load_relaxed(&decay_epoch_ms);
    for (ouro_arena_t *a = arena_state.all; a; a = a->all_next) {
        uint64_t aged = a->free_map & ~a->purged_map & ~a->young_map;
        if (aged) arena_purge_mask(a, aged);
        a->young_map = 0;
    }
    decay_unmap_empty();
    for (ouro_arena_t *a = arena_state.huge_cache, *next; a; a = next) {
        next = a->next;
        if (a->young) {
            a->young = false;
            continue;
        }
        huge_uncache(a);
        _ouro_os_unmap(a, a->map_size);
    }
}

/* Runs the tick when an epoch has ended (any lock holder that gives memory back or takes it). */
static void decay_maybe_tick_locked(void) {
    if (!decay_pending()) return;
    uint64_t now = decay_now_ms();
    if (now >= arena_state.epoch_end) decay_tick_locked(now);
}

/* Memory just turned dirty: wakes the idle decay thread, or asks for one to be started (by
 * decay_start(), which runs without the lock: a thread's start may allocate). */
static void decay_arm_locked(void) {
    if (!ouro_load_relaxed(&decay.started)) {
        ouro_store_relaxed(&decay.wanted, true);
    } else if (decay.idle) {
        decay.idle = false;
        pthread_mutex_lock(&decay.mu); /* kick stays set until the thread looks: no wake-up is lost */
        decay.kick = true;
        pthread_cond_signal(&decay.cond);
        pthread_mutex_unlock(&decay.mu);
    }
}

/* Unmaps cached mappings, oldest first, until done >= bytes; returns done. */
static size_t decay_offset_huge(size_t done, size_t bytes) {
    while (done < bytes && arena_state.huge_cache) {
        ouro_arena_t *a = arena_state.huge_cache;
        while (a->next) a = a->next; /* the oldest */
        huge_uncache(a);
        done += a->map_size;
        _ouro_os_unmap(a, a->map_size);
    }
    return done;
}

/* Resident memory is about to grow by bytes (purged pools taken when pools_first, else a new dedicated
 * mapping): returns up to as many bytes of *aged* dirty memory to the OS — pools free since before the
 * last tick, cached mappings oldest first (before the pools when a mapping is wanted: none of them had
 * its size) — so that the peak of resident memory is not raised by memory that only waits for its
 * decay. Young pools (free since the last tick) stay: a program whose live set swings reuses them a
 * moment later. Purging them too (tried) made mimalloc's test-stress re-fault them: 1.27x the wall
 * time and 2.2x the page faults, for 2-9% less peak RSS. */
static void decay_offset_locked(size_t bytes, bool pools_first) {
    if (!decay_pending()) return;
    size_t done = pools_first ? 0 : decay_offset_huge(0, bytes);
    for (ouro_arena_t *a = arena_state.all; a && done < bytes; a = a->all_next) {
        uint64_t aged = a->free_map & ~a->purged_map & ~a->young_map;
        if (aged) done += arena_purge_mask(a, aged);
    }
    if (pools_first) decay_offset_huge(done, bytes);
}

/* The decay thread: ticks at the end of each epoch while anything is dirty; otherwise it waits for memory
 * to turn dirty, and after OURO_DECAY_IDLE_EXIT_MS of that it ends, so that it never keeps a process
 * alive whose own threads have all ended by pthread_exit (a main thread's, or a fork child's only thread
 * when it was not main: CPython's test_threading does that). Its end is counted with ouro's thread starts
 * until it is joined (core/mem.c: no fork copies a thread half torn down), by the next start or by
 * fork's prepare; a fork under way when it decides keeps it for another idle period. It sleeps on its
 * own mutex, so it releases the arena lock like every holder (_ouro_arena_unlock). */
static void *arena_decay_main(void *arg) {
    (void)arg;
    decay_self = true;
    bool idle_expired = false;
    for (;;) {
        pthread_mutex_lock(&_ouro_arena_lock);
        uint64_t now = decay_now_ms();
        if (decay_pending() && now >= arena_state.epoch_end) decay_tick_locked(now);
        bool pending = decay_pending();
        if (!pending && idle_expired && !decay.stay && _ouro_sys_thread_leave_begin()) {
            ouro_store_relaxed(&decay.started, false); /* decay_arm_locked() asks for a new one */
            decay.idle = false;
            decay.zombie = pthread_self();
            decay.has_zombie = true;
            _ouro_arena_unlock();
            atomic_fetch_add_explicit(&decay_ends, 1, memory_order_release);
            return NULL;
        }
        decay.idle = !pending; /* decay_arm_locked() kicks an idle thread */
        uint64_t end = pending ? arena_state.epoch_end : now + ouro_load_relaxed(&decay_idle_exit_ms);
        _ouro_arena_unlock();
        struct timespec ts = {.tv_sec = (time_t)(end / 1000u), .tv_nsec = (long)(end % 1000u) * 1000000L};
        idle_expired = false;
        pthread_mutex_lock(&decay.mu);
        while (!decay.kick) {
            if (pthread_cond_timedwait(&decay.cond, &decay.mu, &ts) == ETIMEDOUT) {
                idle_expired = !pending;
                break;
            }
        }
        /* after an idle stretch the first tick only ages what turned dirty meanwhile (its epoch_end
         * lies in the past: the tick runs at once and starts a new epoch) */
        decay.kick = false;
        pthread_mutex_unlock(&decay.mu);
    }
}

/* Takes the ended decay thread to join, if any (arena lock held). */
static bool decay_take_zombie_locked(pthread_t *t) {
    if (!decay.has_zombie) return false;
    *t = decay.zombie;
    decay.has_zombie = false;
    return true;
}

/* Joins an ended decay thread taken by decay_take_zombie_locked (no lock held: it may still be freeing
 * its thread's memory, through ouro's malloc under the shim) and ends its count (core/mem.c). */
static void decay_join(pthread_t t) {
    pthread_join(t, NULL);
    _ouro_sys_thread_leave_end();
}

/* Joins an ended decay thread; stay: and no thread ends from now on. */
static void decay_reap(bool stay) {
    pthread_t t;
    pthread_mutex_lock(&_ouro_arena_lock);
    if (stay) decay.stay = true;
    bool had = decay_take_zombie_locked(&t);
    _ouro_arena_unlock();
    if (had) decay_join(t);
}

void _ouro_arena_decay_reap(void) { decay_reap(false); }

/* At exit (or the library's unload): an ended thread nobody joined is a leak to ThreadSanitizer (and
 * its exit status 66), so the ended one is joined and the running one no longer ends. */
__attribute__((destructor)) static void decay_at_exit(void) { decay_reap(true); }

/* Initialises decay.mu and decay.cond (on CLOCK_MONOTONIC, the clock of epoch_end). Arena lock held. */
static void decay_cond_init(void) {
    pthread_mutex_init(&decay.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&decay.cond, &ca);
    pthread_condattr_destroy(&ca);
    decay.kick = false;
}

/* Starts the decay thread once memory has turned dirty (called without the arena lock, where no
 * allocator state is half changed: pthread_create may call malloc, which may be ouro's). A refused start
 * (ouro_debug_fail_thread_create, or the OS) is tried again a second later by the next caller; meanwhile
 * ticks still run on the threads that take and give back memory. */
static void decay_start(void) {
    if (OURO_LIKELY(ouro_load_relaxed(&decay.started)) || !ouro_load_relaxed(&decay.wanted)) return;
    if (decay_self) return; /* the ending decay thread's own exit (its heap's, under the shim) */
    pthread_mutex_lock(&_ouro_arena_lock);
    bool go = !ouro_load_relaxed(&decay.started) && decay_now_ms() >= decay.retry_ms;
    pthread_t zombie;
    bool had = false;
    if (go) {
        ouro_store_relaxed(&decay.started, true);
        if (!decay.cond_ready) decay_cond_init();
        decay.cond_ready = true;
        had = decay_take_zombie_locked(&zombie);
    }
    _ouro_arena_unlock();
    if (had) decay_join(zombie);
    if (!go) return;
    pthread_attr_t attr;
    pthread_attr_init(&attr); /* joinable: its end is joined (decay_join) */
    pthread_attr_setstacksize(&attr, 256 * 1024); /* it calls madvise and munmap, nothing deep */
    sigset_t all, old; /* the thread takes no signals: the program's handlers run on its own threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = _ouro_sys_thread_create(&t, &attr, arena_decay_main, NULL);
    if (rc == 0) {
        pthread_setname_np(t, "ouro-decay");
        atomic_fetch_add_explicit(&decay_starts, 1, memory_order_relaxed);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&_ouro_arena_lock);
        decay.retry_ms = rc == EINTR ? 0 : decay_now_ms() + 1000; /* EINTR: a fork() was under way */
        ouro_store_relaxed(&decay.started, false);
        _ouro_arena_unlock();
    }
}

void _ouro_arena_decay_start(void) { decay_start(); }

void _ouro_arena_decay_expect(void) {
    ouro_store_relaxed(&decay.wanted, true); /* the thread sleeps until memory turns dirty */
    decay_start();
}

void _ouro_arena_atfork_child(void) {
    /* The thread did not survive the fork; its mutex may be held, its condition variable may record it
     * as a waiter. */
    decay_cond_init();
    decay.cond_ready = true;
    decay.idle = false;
    decay.has_zombie = false; /* fork's prepare joined it */
    decay.retry_ms = 0;
    ouro_store_relaxed(&decay.wanted, decay_pending());
    ouro_store_relaxed(&decay.started, false);
}

/* Marks pools [i, i + count) free again (dirty) and relists a (which may unmap it). */
static void arena_give_back_locked(ouro_arena_t *a, uint32_t i, uint32_t count) {
    /* Sanitized builds: a free pool is poisoned whole (alloc/sanitize.h); nobody reads it until it is
     * taken again (_ouro_pool_init, or a large block's hand-out). */
    ouro_san_poison((char *)a + (size_t)i * OURO_POOL_SIZE, (size_t)count * OURO_POOL_SIZE);
    for (uint32_t j = i; j < i + count; j++) {
        a->free_map |= (uint64_t)1 << j;
        ouro_store_relaxed(&a->pool_state[j], OURO_PT_FREE);
    }
    a->nfree += count;
    a->young_map |= (((uint64_t)1 << count) - 1) << i; /* count <= 63 */
    arena_state.ndirty += count;
    arena_relist(a);
    decay_maybe_tick_locked();
    decay_arm_locked();
}

ouro_pool_t *_ouro_arena_take_pool(ouro_heap_t *h, unsigned kind, unsigned cls) {
    pthread_mutex_lock(&_ouro_arena_lock);
    if (kind == OURO_KIND_GC && arena_state.gc_retained[cls]) { /* same kind and class: see retain */
        ouro_pool_t *pool = arena_state.gc_retained[cls];
        arena_state.gc_retained[cls] = pool->next;
        arena_state.ngc_retained--;
        ouro_arena_t *a = ouro_arena_of(pool);
        a->ndeferred--;
        ouro_store_relaxed(&a->pool_state[ouro_pool_index(pool)], OURO_PT_BLOCKS);
        _ouro_pool_init(pool, h, kind, cls);
        _ouro_arena_unlock();
        return pool;
    }
    uint32_t i = 0;
    ouro_arena_t *a = arena_with_room(1, &i);
    ouro_pool_t *pool = NULL;
    if (a) {
        uint64_t dirty = a->free_map & ~a->purged_map; /* a resident pool saves page faults */
        i = (uint32_t)__builtin_ctzll(dirty ? dirty : a->free_map);
        arena_take_locked(a, i, 1, OURO_PT_BLOCKS);
        pool = &a->pools[i];
        _ouro_pool_init(pool, h, kind, cls);
    }
    decay_maybe_tick_locked();
    _ouro_arena_unlock();
    return pool;
}

/* Callback of the grace-period hook: the deferred pool may now be reused or unmapped. */
static void arena_deferred_done(void *arg) {
    ouro_pool_t *pool = arg;
    pthread_mutex_lock(&_ouro_arena_lock);
    ouro_arena_t *a = ouro_arena_of(pool);
    OURO_ASSERT(ouro_load_relaxed(&a->pool_state[ouro_pool_index(pool)]) == OURO_PT_DEFERRED);
    a->ndeferred--;
    pool->type = OURO_PT_FREE;
    arena_give_back_locked(a, ouro_pool_index(pool), 1);
    _ouro_arena_unlock();
    decay_start();
}

/* Gives an emptied pool back; the caller holds its claim, which stays set while the
 * pool is not a block pool, so no remote free can notify about it. */
static void release_pool_locked(ouro_pool_t *pool) {
    ouro_arena_t *a = ouro_arena_of(pool);
    uint32_t i = ouro_pool_index(pool);
    OURO_ASSERT(ouro_load_relaxed(&pool->used) == 0 && ouro_load_relaxed(&pool->xfree) == OURO_XFREE_CLAIMED);
    OURO_ASSERT(ouro_load_relaxed(&a->pool_state[i]) == OURO_PT_BLOCKS);
    ouro_store_relaxed(&pool->heap, &_ouro_heap_none);
    if (pool->kind != OURO_KIND_PLAIN) {
        pool->type = OURO_PT_DEFERRED;
        ouro_store_relaxed(&a->pool_state[i], OURO_PT_DEFERRED);
        a->ndeferred++;
        if (pool->kind == OURO_KIND_GC && arena_state.gc_retain) {
            pool->next = arena_state.gc_retained[pool->cls];
            arena_state.gc_retained[pool->cls] = pool;
            arena_state.ngc_retained++;
            return;
        }
        pool->defer.fn = arena_deferred_done;
        pool->defer.arg = pool;
        defer_hook(&pool->defer); /* queues only: the callback runs later, on another thread */
        return;
    }
    pool->type = OURO_PT_FREE;
    arena_give_back_locked(a, i, 1);
}

void _ouro_alloc_gc_retain(bool on) {
    pthread_mutex_lock(&_ouro_arena_lock);
    arena_state.gc_retain = on;
    _ouro_arena_unlock();
    if (!on) _ouro_alloc_gc_release_retained();
}

size_t _ouro_alloc_gc_release_retained(void) {
    pthread_mutex_lock(&_ouro_arena_lock);
    size_t n = arena_state.ngc_retained;
    for (unsigned c = 0; c < OURO_NCLASSES; c++)
        while (arena_state.gc_retained[c]) {
            ouro_pool_t *pool = arena_state.gc_retained[c];
            arena_state.gc_retained[c] = pool->next;
            pool->next = NULL;
            pool->defer.fn = arena_deferred_done; /* the grace period every emptied object pool waits */
            pool->defer.arg = pool;
            defer_hook(&pool->defer);
        }
    arena_state.ngc_retained = 0;
    _ouro_arena_unlock();
    return n;
}

void _ouro_arena_release_pool_locked(ouro_pool_t *pool) {
    _ouro_pool_check_emptied(pool);
    release_pool_locked(pool);
}

void _ouro_arena_release_pool(ouro_pool_t *pool) {
    _ouro_pool_check_emptied(pool); /* before the lock: it walks the pool */
    pthread_mutex_lock(&_ouro_arena_lock);
    release_pool_locked(pool);
    _ouro_arena_unlock();
}

/* ---- large blocks ----------------------------------------------------------------------------------- */
#define RUN_MAX_POOLS (POOLS - 1)
#define RUN_MAX_USABLE ((size_t)RUN_MAX_POOLS * OURO_POOL_SIZE)

static void large_account(size_t usable, int sign) {
    if (sign > 0) {
        ouro_fetch_add_relaxed(&_ouro_counters.large_blocks, 1);
        ouro_fetch_add_relaxed(&_ouro_counters.large_bytes, usable);
    } else {
        ouro_fetch_sub_relaxed(&_ouro_counters.large_blocks, 1);
        ouro_fetch_sub_relaxed(&_ouro_counters.large_bytes, usable);
    }
}

/* A freed dedicated mapping of at least map bytes, and at most a quarter more, taken off the cache (the
 * smallest that fits); NULL when none. Arena lock held. */
static ouro_arena_t *huge_cache_take(size_t map) {
    ouro_arena_t *best = NULL;
    for (ouro_arena_t *a = arena_state.huge_cache; a; a = a->next)
        if (a->map_size >= map && a->map_size - map <= map / 4 && (!best || a->map_size < best->map_size)) best = a;
    if (best) huge_uncache(best);
    return best;
}

static void *large_huge(size_t size, size_t align, uint64_t *dirty, size_t *dirty_len);

void *_ouro_large_alloc(size_t size) {
    uint64_t dirty;
    size_t len;
    return _ouro_large_alloc_zero(size, &dirty, &len);
}

void *_ouro_large_alloc_zero(size_t size, uint64_t *dirty, size_t *dirty_len) {
    ouro_safepoint(); /* an allocation slow path: a safepoint (docs/threads.md) */
    if (size <= RUN_MAX_USABLE) {
        uint32_t count = (uint32_t)((size + OURO_POOL_SIZE - 1) >> OURO_POOL_SHIFT);
        pthread_mutex_lock(&_ouro_arena_lock);
        uint32_t i = 0;
        ouro_arena_t *a = arena_with_room(count, &i);
        ouro_pool_t *hdr = NULL;
        if (a) {
            /* pools that were not purged may hold old data (zero/decay invariant); count <= 63 */
            *dirty = (~a->purged_map >> i) & (((uint64_t)1 << count) - 1);
            *dirty_len = SIZE_MAX;
            arena_take_locked(a, i, count, OURO_PT_RUN);
            hdr = &a->pools[i];
        }
        decay_maybe_tick_locked();
        _ouro_arena_unlock();
        decay_start();
        if (!hdr) return NULL;
        arena_pool_describe(hdr, OURO_PT_RUN);
        hdr->run_pools = count;
        hdr->run_usable = (size_t)count * OURO_POOL_SIZE;
        large_account(hdr->run_usable, 1);
        return ouro_pool_data(hdr);
    }
    return large_huge(size, 0, dirty, dirty_len);
}

/* A dedicated mapping: the arena header at its start, the block `off` bytes after it (POOL_SIZE: pool 1,
 * pools[1] describes it). An aligned block (align > POOL_SIZE) starts at off = align while align <
 * ARENA_SIZE, so that it lies in the header's chunk; above that at off = ARENA_SIZE, the first byte of
 * the second chunk, with the mapping placed so that this byte is aligned. Either way the header is at
 * ouro_arena_of(p) or one chunk below it, which is how alloc_validate finds it. */
static void *large_huge(size_t size, size_t align, uint64_t *dirty, size_t *dirty_len) {
    if (size > ((size_t)1 << 46) || align > ((size_t)1 << 46)) {
        _ouro_err_set(OURO_ERR_NOMEM, "out of memory: %zu bytes aligned to %zu is more than an address space", size, align);
        return NULL;
    }
    size_t off = align <= OURO_POOL_SIZE ? OURO_POOL_SIZE : align < OURO_ARENA_SIZE ? align : OURO_ARENA_SIZE;
    size_t map = (size + off + 4095) & ~(size_t)4095;
    size_t usable = map - off;
    ouro_arena_t *a = NULL;
    pthread_mutex_lock(&_ouro_arena_lock);
    if (off == OURO_POOL_SIZE) a = huge_cache_take(map); /* the cache holds unaligned mappings only */
    if (a) _ouro_addrmap_set(a, a->map_size, OURO_CHUNK_HUGE_HEAD);
    else decay_offset_locked(map, false); /* mapping more: give back as much dirty memory */
    _ouro_arena_unlock();
    *dirty = ~(uint64_t)0;
    if (a) { /* its header is as the free left it, but for the type and the sizes (see _ouro_large_free) */
        char *p = ouro_pool_data(&a->pools[1]);
        if (a->huge_dirty > usable) { /* a larger mapping: its old data past this block goes back */
            _ouro_os_purge(p + usable, a->huge_dirty - usable);
            a->huge_dirty = usable;
        }
        *dirty_len = a->huge_dirty;
        a->huge_dirty = usable; /* the caller may write all of it */
        a->huge_usable = usable;
        a->pools[1].type = OURO_PT_HUGE;
        large_account(usable, 1);
        return p;
    }
    *dirty_len = 0; /* fresh from the OS */
    a = align <= OURO_ARENA_SIZE ? _ouro_os_map_aligned(map, OURO_ARENA_SIZE)
                                 : _ouro_os_map_aligned_at(map, align, OURO_ARENA_SIZE);
    if (!a) return NULL;
    arena_pool_describe(&a->pools[0], OURO_PT_ARENA);
    arena_pool_describe(&a->pools[1], OURO_PT_HUGE);
    a->magic = OURO_ARENA_MAGIC;
    a->map_size = map;
    a->huge_offset = off;
    a->huge_usable = usable;
    a->huge_dirty = usable;
    pthread_mutex_lock(&_ouro_arena_lock);
    _ouro_addrmap_set(a, map, OURO_CHUNK_HUGE_HEAD);
    _ouro_arena_unlock();
    large_account(a->huge_usable, 1);
    return (char *)a + off;
}

void *_ouro_large_alloc_aligned(size_t size, size_t align) {
    if (align <= OURO_POOL_SIZE) return _ouro_large_alloc(size); /* runs and mappings start POOL_SIZE-aligned */
    ouro_safepoint();
    uint64_t dirty;
    size_t len;
    return large_huge(size, align, &dirty, &len);
}

char *_ouro_large_data(ouro_pool_t *hdr) {
    if (hdr->type == OURO_PT_RUN) return ouro_pool_data(hdr);
    ouro_arena_t *a = ouro_arena_of(hdr);
    return (char *)a + a->huge_offset;
}

size_t _ouro_large_usable(ouro_pool_t *hdr) {
    return hdr->type == OURO_PT_RUN ? hdr->run_usable : ouro_arena_of(hdr)->huge_usable;
}

void _ouro_large_free(ouro_pool_t *hdr) {
    large_account(_ouro_large_usable(hdr), -1);
    if (OURO_SAN) ouro_san_freelike(_ouro_large_data(hdr));
    if (hdr->type == OURO_PT_HUGE) {
        ouro_arena_t *a = ouro_arena_of(hdr);
        size_t map = a->map_size;
        if (OURO_SAN) { /* only the redzone was poisoned: clean it before the range goes back to the OS */
            char *p = _ouro_large_data(hdr);
            size_t size = _ouro_san_block_size(p, a->huge_usable);
            ouro_san_unpoison(p + size, a->huge_usable - size);
        }
        pthread_mutex_lock(&_ouro_arena_lock);
        /* A stray pointer into a cached mapping is not ouro's (a second free is reported, ignored). */
        _ouro_addrmap_set(a, map, OURO_CHUNK_NONE);
        size_t cached = arena_state.huge_cached, cap = OURO_HUGE_CACHE_MAX;
        if (cap) cap += (ouro_load_relaxed(&_ouro_counters.bytes_mapped) - cached) / OURO_HUGE_CACHE_SHARE;
        bool keep = a->huge_offset == OURO_POOL_SIZE && cached + map <= cap; /* aligned ones are unmapped */
        if (keep) { /* the decay tick after the next unmaps it, unless a request of its size takes it */
            hdr->type = OURO_PT_FREE;
            a->young = true;
            LIST_PUSH(arena_state.huge_cache, a);
            arena_state.huge_cached = cached + map;
            decay_arm_locked();
        }
        _ouro_arena_unlock();
        if (keep) decay_start();
        else _ouro_os_unmap(a, map);
        return;
    }
    uint32_t count = hdr->run_pools, i = ouro_pool_index(hdr);
    hdr->type = OURO_PT_FREE; /* a second free of this block now fails validation */
    ouro_store_relaxed(&hdr->heap, &_ouro_heap_none);
    pthread_mutex_lock(&_ouro_arena_lock);
    arena_give_back_locked(ouro_arena_of(hdr), i, count);
    _ouro_arena_unlock();
    decay_start();
}

/* ---- abandoned pools --------------------------------------------------------------------------------
 * A pool whose thread exited is owned by _ouro_heap_abandoned and sits on abandoned_avail (it has a
 * free block) or abandoned_full. Its remote frees notify _ouro_heap_abandoned's inbox, collected under
 * this lock by ouro_alloc_collect, by adopters, and by a notifier that finds the lock free. */

static ouro_pool_t **abandoned_list(ouro_pool_t *pool, bool avail) {
    return avail ? &arena_state.abandoned_avail[pool->kind][pool->cls]
                 : &arena_state.abandoned_full[pool->kind][pool->cls];
}

void _ouro_arena_abandon_locked(ouro_pool_t *pool) {
    bool avail = ouro_pool_has_free(pool);
    pool->flags = avail ? OURO_PF_PARTIAL : OURO_PF_FULL;
    ouro_pool_t **head = abandoned_list(pool, avail);
    LIST_PUSH(*head, pool);
    ouro_fetch_add_relaxed(&arena_state.nabandoned, 1);
}

static void abandoned_unlink(ouro_pool_t *pool) {
    ouro_pool_t **head = abandoned_list(pool, pool->flags == OURO_PF_PARTIAL);
    LIST_UNLINK(*head, pool);
    ouro_fetch_sub_relaxed(&arena_state.nabandoned, 1);
}

void _ouro_arena_collect_abandoned_locked(void) {
    /* Take the whole inbox; pairs with the release CAS in heap_inbox_push(). */
    ouro_pool_t *pool = ouro_xchg_acq_rel(&_ouro_heap_abandoned.inbox, NULL);
    while (pool) {
        ouro_pool_t *next = pool->inbox_next; /* read before the claim is released */
        _ouro_pool_take_inbox_claim(pool);
        if (ouro_load_relaxed(&pool->used) == 0) {
            if (_ouro_pool_try_claim(pool)) {
                abandoned_unlink(pool);
                _ouro_arena_release_pool_locked(pool);
            }
        } else if (pool->flags == OURO_PF_FULL && ouro_pool_has_free(pool)) {
            abandoned_unlink(pool);
            _ouro_arena_abandon_locked(pool);
        }
        pool = next;
    }
}

ouro_pool_t *_ouro_arena_adopt(ouro_heap_t *h, unsigned kind, unsigned cls) {
    if (!ouro_load_relaxed(&arena_state.nabandoned)) return NULL; /* a peek; the lock below decides */
    pthread_mutex_lock(&_ouro_arena_lock);
    _ouro_arena_collect_abandoned_locked();
    ouro_pool_t *pool = arena_state.abandoned_avail[kind][cls];
    for (; pool; pool = pool->next) {
        if (_ouro_pool_try_claim(pool)) break;
    }
    if (pool) {
        abandoned_unlink(pool);
        pool->flags = 0;
        ouro_store_relaxed(&pool->heap, h); /* published by the claim release below */
    }
    _ouro_arena_unlock();
    return pool;
}

void _ouro_arena_visit_abandoned_object_pools_locked(ouro_pool_visit_fn fn, void *arg) {
    for (unsigned k = OURO_KIND_OBJECT; k <= OURO_KIND_GC; k++)
        for (unsigned c = 0; c < OURO_NCLASSES; c++)
            for (int avail = 0; avail < 2; avail++)
                for (ouro_pool_t *p = avail ? arena_state.abandoned_avail[k][c] : arena_state.abandoned_full[k][c];
                     p; p = p->next)
                    fn(p, arg);
}

size_t _ouro_arena_abandoned_count_locked(void) { return ouro_load_relaxed(&arena_state.nabandoned); }

size_t _ouro_arena_trim_locked(void) {
    size_t bytes = 0;
    _ouro_arena_collect_abandoned_locked();
    while (arena_state.huge_cache) {
        ouro_arena_t *a = arena_state.huge_cache;
        huge_uncache(a);
        bytes += a->map_size;
        _ouro_os_unmap(a, a->map_size);
    }
    while (arena_state.kept) {
        ouro_arena_t *a = arena_state.kept;
        arena_unlist(a);
        bytes += OURO_ARENA_SIZE;
        arena_unmap(a);
    }
    for (uint64_t bm = arena_state.bucket_map; bm; bm &= bm - 1) {
        for (ouro_arena_t *a = arena_state.bucket[__builtin_ctzll(bm)]; a; a = a->next) bytes += arena_purge_free(a);
    }
    return bytes;
}

/* ---- walking (stats) ------------------------------------------------------------------------------ */

/* Calls fn on every mapped arena (lock held by the caller). */
OURO_INTERNAL void _ouro_arena_foreach_locked(void (*fn)(ouro_arena_t *, void *), void *arg);
void _ouro_arena_foreach_locked(void (*fn)(ouro_arena_t *, void *), void *arg) {
    for (ouro_arena_t *a = arena_state.all; a; a = a->all_next) fn(a, arg);
}
