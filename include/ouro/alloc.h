/* ouro/alloc.h — the allocator: per-thread heaps of pools over a shared arena.
 *
 * Requests of 1..512 bytes come from 16-byte size classes (pymalloc's), 513..8192 bytes from a few
 * wider classes, both carved out of 16 KiB pools that belong to one thread's heap; larger requests take
 * a run of pools, and the largest a dedicated mapping. Every pointer returned is 16-byte aligned.
 * Any thread may free any block; a thread that never called ouro before gets a heap on its first
 * allocation, and its heap is handed back (abandoned) when the thread exits.
 *
 * Errors follow ouro/error.h: NULL / -1 and the calling thread's error set. See docs/alloc.md. */
#ifndef OURO_ALLOC_H
#define OURO_ALLOC_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates size bytes (16-byte aligned, uninitialised). size 0 gives a unique pointer that must be
 * freed like any other. NULL with OURO_ERR_NOMEM when the OS refuses memory. */
void *ouro_alloc(size_t size);

/* Allocates n * size zeroed bytes. NULL with OURO_ERR_OVERFLOW when n * size overflows, with
 * OURO_ERR_NOMEM when the OS refuses memory. */
void *ouro_calloc(size_t n, size_t size);

/* Allocates size bytes (uninitialised) at an address that is a multiple of alignment, a power of two
 * (any: 1 .. 2^46); freed with ouro_free, sized by ouro_usable_size, resized by ouro_realloc (which
 * keeps only the 16-byte alignment when it moves the block). NULL with OURO_ERR_INVALID when alignment
 * is not a power of two, with OURO_ERR_NOMEM when the OS refuses memory. Cost by alignment: up to 16
 * the same as ouro_alloc; up to 8192 a block of the smallest size class that is a multiple of the
 * alignment (at most 2x the size asked for, no extra work); up to 16 KiB (the pool size) a large block
 * (a run of pools, from 16 KiB); above that a dedicated mapping, one mmap and munmap per block, its
 * block placed `alignment` bytes (at most 1 MiB) after a 16 KiB header, so the untouched gap costs
 * address space, not memory. docs/alloc.md, "Aligned allocation". */
void *ouro_alloc_aligned(size_t alignment, size_t size);

/* Resizes the block at p to size bytes, keeping the first min(old, new) bytes; may move it.
 * ouro_realloc(NULL, n) is ouro_alloc(n). ouro_realloc(p, 0) returns a unique minimal block (p is
 * freed or kept), never NULL on success. On failure returns NULL and p is untouched and still valid;
 * OURO_ERR_INVALID when p is not a live ouro block (detected in debug builds and on slow paths). */
void *ouro_realloc(void *p, size_t size);

/* Frees the block at p; any thread may free any block. ouro_free(NULL) does nothing. A pointer ouro
 * did not allocate is reported (OURO_ERR_INVALID, and a line on stderr) and ignored where it can be
 * detected: a pointer outside ouro's arenas always (malloc's, the stack, static data), one inside an
 * arena on the slow paths and on every call in debug builds (-Ddebug-level >= 1). A double free is
 * fatal in debug builds, and in hardened builds (-Dhardened=true; off by default for libouro, on for
 * libouro-malloc) before it can corrupt the heap: at the second free of the block freed last, else at
 * the block's second hand-out or when its pool empties (docs/alloc.md, "Hardening"). */
void ouro_free(void *p);

/* Usable bytes of the block at p (>= the size asked for; may be written in full). 0 for NULL; 0 with
 * OURO_ERR_INVALID for a pointer ouro did not allocate. */
size_t ouro_usable_size(const void *p);

/* Releases what can be released now: collects the calling thread's pending remote frees and the
 * abandoned pools' ones, returns its empty pools (the current ones included) to their arenas, and
 * returns empty arenas and the pages of free pools to the OS. Returns the number of bytes returned to
 * the OS by this call. Without it memory still goes back by itself (docs/alloc.md); what a thread
 * keeps is at most its current pool of each class it used. */
size_t ouro_alloc_collect(void);

/* ---- statistics --------------------------------------------------------------------------------- */

#define OURO_ALLOC_MAX_CLASSES 48

/* One size class. A block freed by a thread other than its pool's owner counts as in use until the
 * owner collects it (on its slow path or in ouro_alloc_collect). */
typedef struct ouro_alloc_class_stats {
    size_t block_size;    /* bytes per block (usable size is this, less 8 in debug builds) */
    size_t pools;         /* pools of this class, all kinds, owned or abandoned */
    size_t blocks_in_use; /* blocks handed out and not yet collected back */
    size_t blocks_free;   /* blocks available in those pools */
} ouro_alloc_class_stats;

/* A snapshot of the whole allocator, taken under the arena lock. Counters of other threads' pools are
 * read with relaxed loads: exact when those threads are quiescent, approximate while they run. */
typedef struct ouro_alloc_stats_t {
    size_t nclasses;                                   /* entries used in classes[] */
    ouro_alloc_class_stats classes[OURO_ALLOC_MAX_CLASSES];
    size_t pool_size;             /* bytes per pool */
    size_t arena_size;            /* bytes per arena */
    size_t arenas;                /* arenas mapped now */
    size_t arenas_peak;           /* most arenas mapped at once */
    size_t arenas_allocated;      /* arenas ever mapped */
    size_t arenas_reclaimed;      /* arenas ever unmapped */
    size_t pools_total;           /* pools in the mapped arenas */
    size_t pools_free;            /* empty pools in the arenas, ready for any use */
    size_t pools_deferred;        /* empty object pools waiting for a grace period */
    size_t pools_abandoned;       /* pools owned by no thread (their thread exited) */
    size_t large_blocks;          /* live blocks above the size classes (pool runs and own mappings) */
    size_t large_bytes;           /* their usable bytes */
    size_t bytes_mapped;          /* bytes mapped from the OS now (arenas and own mappings) */
    size_t bytes_mapped_peak;     /* most bytes mapped at once */
    size_t bytes_returned;        /* bytes given back to the OS so far (unmapped or purged) */
    size_t os_map_calls;          /* successful OS mappings so far */
    size_t os_map_failures;       /* refused OS mappings so far (fault injection included) */
    size_t heaps;                 /* thread heaps in use */
    size_t heaps_cached;          /* heaps of exited threads kept for reuse */
} ouro_alloc_stats_t;

/* Fills *out. Returns 0, or -1 with OURO_ERR_INVALID when out is NULL. */
int ouro_alloc_stats(ouro_alloc_stats_t *out);

/* Writes the statistics as one JSON object (followed by a newline) to out. Returns 0, or -1 with
 * OURO_ERR_INVALID when out is NULL. */
int ouro_alloc_stats_json(FILE *out);

/* Writes a human-readable report like CPython's sys._debugmallocstats() to out: per class, pools,
 * blocks in use and available, then arena and byte totals with the overheads. Returns 0, or -1 with
 * OURO_ERR_INVALID when out is NULL. */
int ouro_alloc_dump(FILE *out);

/* Checks the calling thread's heap: every pool's free list decodes, stays inside its pool, and free
 * plus used blocks add up to the pool's carved blocks. Returns 0, or -1 with OURO_ERR_STATE and a
 * message naming the first inconsistency. Cost: a walk of every block of the heap. */
int ouro_alloc_check(void);

/* ---- testing aids ------------------------------------------------------------------------------- */

/* Fault injection: the nth OS mapping from now (1 = the next one) fails as if the OS refused it, and
 * the allocation that needed it returns NULL with OURO_ERR_NOMEM. 0 disarms. Process-wide. */
void ouro_debug_fail_os_map(unsigned long nth);

/* Fault injection: the nth allocation of ouro's own bookkeeping from now (thread records, refcount
 * queue chunks, the collector's work space, deferral records: the C library's malloc, calloc and
 * realloc inside ouro; 1 = the next one) fails. Each caller copes: the public call returns NULL / -1
 * with OURO_ERR_NOMEM, or falls back (a decref that cannot queue merges with the world stopped; a
 * collection that cannot get its work space gives up and leaves every object intact). 0 disarms.
 * Process-wide. */
void ouro_debug_fail_malloc(unsigned long nth);
#define OURO_HAVE_DEBUG_FAIL_MALLOC 1

/* Fault injection: the nth thread ouro starts from now (its deferred-callback reclaimer, the stop
 * watchdog, the collector's helper, the allocator's decay thread; 1 = the next one) is not created, as
 * if pthread_create failed with EAGAIN. Each copes: the reclaimer is started again by the next deferral
 * and by a waiting barrier (a warning once), the watchdog at the next stop, a collector without its
 * helper scans alone, and the decay thread is tried again a second later (meanwhile the threads that
 * take and give back memory run its ticks). 0 disarms. Process-wide. */
void ouro_debug_fail_thread_create(unsigned long nth);

/* Fault injection: the nth getrandom() call of ouro from now (the hash key, a hardened heap's keys)
 * fails with ENOSYS; the hash key then comes from /dev/urandom, a heap's keys from the clock. 0 disarms.
 * Process-wide. */
void ouro_debug_fail_getrandom(unsigned long nth);
#define OURO_HAVE_DEBUG_FAIL_THREADS 1

/* The kinds of injected faults, for the general form below. */
typedef enum ouro_fault {
    OURO_FAULT_MALLOC,  /* ouro_debug_fail_malloc */
    OURO_FAULT_OS_MAP,  /* ouro_debug_fail_os_map */
    OURO_FAULT_THREAD,  /* ouro_debug_fail_thread_create */
    OURO_FAULT_RANDOM,  /* ouro_debug_fail_getrandom */
    OURO_FAULT_KINDS
} ouro_fault;

/* Arms fault injection of kind what: the nth such call from now fails (0 disarms). 0, or -1 with
 * OURO_ERR_INVALID for an unknown kind. */
int ouro_debug_fail(ouro_fault what, unsigned long nth);

/* How many calls of kind what are left before the armed fault (0: it fired, or none is armed): a sweep
 * that arms the nth call knows it has walked past the last one when a run leaves this non-zero. 0 with
 * OURO_ERR_INVALID for an unknown kind. */
unsigned long ouro_debug_fault_pending(ouro_fault what);

#ifdef __cplusplus
}
#endif
#endif /* OURO_ALLOC_H */
