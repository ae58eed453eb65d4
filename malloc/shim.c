/* malloc/shim.c — libouro-malloc: ouro's allocator as the process's malloc (docs/alloc.md, "Drop-in
 * malloc").
 *
 * What is linked: the allocator layer (every file of alloc/) with core/error.c and core/mem.c, nothing of threads/,
 * core/'s objects or gc/. The allocator needs no ouro_init and no thread attach: a thread gets a heap on
 * its first allocation and hands it back at exit (a pthread key's destructor). The safepoint it polls on
 * slow paths and the grace-period hook of object pools (which malloc never uses) are stubbed below.
 * Compiled with -fvisibility=hidden: only the functions marked SHIM_API leave the library (and the
 * static archive's one object has every other symbol made local), so a program may also link libouro,
 * whose allocator is then a second, separate instance.
 *
 * Pointers ouro did not hand out (the address map says so) go to the C library's own allocator: free
 * and realloc pass them to __libc_free and __libc_realloc, malloc_usable_size reports 0 for them (it
 * cannot ask glibc without risking a crash on a wild pointer). The only allocations this library does
 * not serve from ouro are the ones made while a thread runs the allocator's once-only set-up (glibc's
 * pthread_atfork may allocate): those come from a static bootstrap buffer (boot_*), never given back. */
#include "alloc/internal.h"
#include "ouro/malloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHIM_API __attribute__((visibility("default")))

void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

/* ---- the layers that are not linked ----------------------------------------------------------------- */

/* The safepoint's counters: equal, so ouro_safepoint() never takes its slow path. */
static unsigned long shim_gp;
unsigned long *ouro_safepoint_gp_ = &shim_gp;
__thread unsigned long ouro_safepoint_seen_;
void ouro_safepoint_slow(void) {}

/* Only emptied object pools wait for a grace period; malloc makes plain blocks only. */
void _ouro_defer_push(ouro_defer_node *node) {
    _ouro_fatal("libouro-malloc: a grace period was asked for (node %p): no object pools here", (void *)node);
}

const char *_ouro_object_type_name_at(const void *p) {
    (void)p;
    return NULL;
}

void _ouro_leak_check_init(void) {}

/* ---- bootstrap buffer --------------------------------------------------------------------------------
 * Allocations made while the calling thread runs the allocator's set-up (_ouro_heap_attaching): a bump
 * pointer over a static buffer, each block preceded by its size; never freed. */
#define BOOT_SIZE ((size_t)256 << 10)
static char boot_buf[BOOT_SIZE] __attribute__((aligned(4096)));
static _Atomic size_t boot_top;

static bool boot_owns(const void *p) { return (const char *)p >= boot_buf && (const char *)p < boot_buf + BOOT_SIZE; }

static void *boot_alloc(size_t n, size_t align) {
    if (align < OURO_ALIGN) align = OURO_ALIGN;
    if (n > BOOT_SIZE || align > 4096) return NULL;
    size_t top = ouro_load_relaxed(&boot_top), start, end;
    do {
        start = (top + sizeof(size_t) + align - 1) & ~(align - 1);
        end = start + ((n + OURO_ALIGN - 1) & ~(size_t)(OURO_ALIGN - 1));
        if (end > BOOT_SIZE) return NULL;
    } while (!atomic_compare_exchange_weak(&boot_top, &top, end));
    memcpy(boot_buf + start - sizeof(size_t), &n, sizeof n);
    return boot_buf + start;
}

static size_t boot_usable(const void *p) {
    size_t n;
    memcpy(&n, (const char *)p - sizeof n, sizeof n);
    return n;
}

/* ---- helpers ----------------------------------------------------------------------------------------- */

static inline bool shim_owns(const void *p) { return _ouro_addrmap_get(p) != OURO_CHUNK_NONE; }

/* ouro returned NULL for n bytes aligned to align: the allocator was being set up on this thread (served
 * from the bootstrap buffer) or memory is out. */
static OURO_NOINLINE void *shim_failed(size_t n, size_t align, bool zero) {
    if (_ouro_heap_attaching()) {
        void *p = boot_alloc(n, align);
        if (p) {
            if (zero) memset(p, 0, n);
            return p;
        }
    }
    errno = ENOMEM;
    return NULL;
}

/* A pointer ouro did not hand out, given to free. */
static OURO_NOINLINE void shim_free_foreign(void *p) {
    if (boot_owns(p)) return;
    __libc_free(p);
}

/* realloc of a block from the bootstrap buffer: moves it to ouro. */
static OURO_NOINLINE void *shim_realloc_boot(void *p, size_t n) {
    void *q = ouro_alloc(n);
    if (!q) return shim_failed(n, OURO_ALIGN, false);
    size_t old = boot_usable(p);
    memcpy(q, p, old < n ? old : n);
    return q;
}

static size_t shim_page_size(void) {
    static _Atomic size_t page;
    size_t s = ouro_load_relaxed(&page);
    if (!s) {
        long v = sysconf(_SC_PAGESIZE);
        s = v > 0 ? (size_t)v : 4096;
        ouro_store_relaxed(&page, s);
    }
    return s;
}

/* ---- the C API --------------------------------------------------------------------------------------- */

SHIM_API void *malloc(size_t n) {
    void *p = ouro_alloc(n);
    return OURO_LIKELY(p != NULL) ? p : shim_failed(n, OURO_ALIGN, false);
}

SHIM_API void free(void *p) {
    if (OURO_UNLIKELY(p != NULL && !shim_owns(p))) {
        shim_free_foreign(p);
        return;
    }
    ouro_free(p);
}

SHIM_API void *calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = ouro_calloc(n, size);
    return OURO_LIKELY(p != NULL) ? p : shim_failed(total, OURO_ALIGN, true);
}

SHIM_API void *realloc(void *p, size_t n) {
    if (p == NULL) return malloc(n);
    if (OURO_UNLIKELY(!shim_owns(p))) {
        if (boot_owns(p)) return shim_realloc_boot(p, n);
        return __libc_realloc(p, n);
    }
    if (n == 0) { /* glibc's rule: realloc(p, 0) frees p and returns NULL */
        ouro_free(p);
        return NULL;
    }
    void *q = ouro_realloc(p, n);
    if (OURO_UNLIKELY(q == NULL)) errno = ENOMEM; /* p is untouched */
    return q;
}

SHIM_API void *reallocarray(void *p, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

/* Every aligned entry point: alignment a power of two (checked by the caller). */
static void *shim_aligned(size_t alignment, size_t n) {
    void *p = ouro_alloc_aligned(alignment, n);
    return OURO_LIKELY(p != NULL) ? p : shim_failed(n, alignment, false);
}

SHIM_API int posix_memalign(void **out, size_t alignment, size_t n) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    int saved = errno; /* posix_memalign reports through its result, errno untouched */
    void *p = shim_aligned(alignment, n);
    errno = saved;
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* C17 (and glibc 2.38): an alignment that is not a power of two is an error. */
SHIM_API void *aligned_alloc(size_t alignment, size_t n) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return shim_aligned(alignment, n);
}

/* glibc's memalign: an alignment that is not a power of two is rounded up to one. */
SHIM_API void *memalign(size_t alignment, size_t n) {
    if (alignment > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment & (alignment - 1)) alignment = (size_t)1 << (64 - __builtin_clzll((unsigned long long)alignment));
    return shim_aligned(alignment ? alignment : 1, n);
}

SHIM_API void *valloc(size_t n) { return shim_aligned(shim_page_size(), n); }

SHIM_API void *pvalloc(size_t n) {
    size_t page = shim_page_size(), rounded;
    if (__builtin_add_overflow(n, page - 1, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    rounded &= ~(page - 1);
    return shim_aligned(page, rounded ? rounded : page);
}

SHIM_API size_t malloc_usable_size(void *p) {
    if (p == NULL) return 0;
    if (OURO_UNLIKELY(!shim_owns(p))) return boot_owns(p) ? boot_usable(p) : 0;
    return ouro_usable_size(p);
}

SHIM_API int malloc_trim(size_t pad) {
    (void)pad;
    return ouro_alloc_collect() != 0;
}

SHIM_API void malloc_stats(void) { ouro_alloc_dump(stderr); }

/* ---- ouro/malloc.h ------------------------------------------------------------------------------------ */

SHIM_API int ouro_malloc_owns(const void *p) { return p != NULL && shim_owns(p); }
SHIM_API int ouro_malloc_stats(ouro_alloc_stats_t *out) { return ouro_alloc_stats(out); }
SHIM_API int ouro_malloc_stats_json(FILE *out) { return ouro_alloc_stats_json(out); }
SHIM_API int ouro_malloc_dump(FILE *out) { return ouro_alloc_dump(out); }
SHIM_API size_t ouro_malloc_collect(void) { return ouro_alloc_collect(); }

/* ---- set-up and OURO_STATS --------------------------------------------------------------------------- */

/* OURO_STATS, read when the library loads: 0 off, 1 the human report, 2 the JSON object; and the
 * descriptor the report goes to: a duplicate of stderr taken then, since a program may close stderr before
 * it exits (coreutils' close_stdout does), with the file it names: a program may also close every
 * descriptor (closefrom) and open its own data file under that number. */
static int stats_mode, stats_fd = -1;
static dev_t stats_dev;
static ino_t stats_ino;

/* Whether fd still names the file the report's duplicate was taken of. */
static bool stats_fd_same(int fd) {
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == stats_dev && st.st_ino == stats_ino;
}

/* Runs before the program's constructors when preloaded (after them, perhaps, when linked statically:
 * no matter, the first allocation sets everything up by itself). */
__attribute__((constructor(101))) static void shim_init(void) {
    _ouro_alloc_global_init();
    const char *v = getenv("OURO_STATS");
    if (!v || !*v || strcmp(v, "0") == 0) return;
    stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    struct stat st;
    if (stats_fd < 0 || fstat(stats_fd, &st) != 0) return;
    stats_dev = st.st_dev;
    stats_ino = st.st_ino;
    stats_mode = strcmp(v, "json") == 0 ? 2 : 1;
}

/* OURO_STATS=1 (or any value but "", "0" and "json"): the human report at exit (ouro_alloc_dump);
 * OURO_STATS=json: the JSON object (ouro_alloc_stats_json). On the process's stderr as it was at start,
 * after the program's own destructors and atexit handlers (not on _exit or a fatal signal). */
__attribute__((destructor)) static void shim_fini(void) {
    if (!stats_mode) return;
    /* The duplicate, else stderr if it is still that file; else the report has nowhere of its own to go */
    int fd = stats_fd_same(stats_fd) ? stats_fd : stats_fd_same(STDERR_FILENO) ? dup(STDERR_FILENO) : -1;
    int mode = stats_mode;
    stats_mode = 0;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) return;
    fprintf(f, "ouro-malloc: allocator statistics at exit (pid %ld)\n", (long)getpid());
    if (mode == 2) ouro_alloc_stats_json(f);
    else ouro_alloc_dump(f);
    fclose(f);
}
