/* tests/malloc/test_malloc.c — libouro-malloc as the process's malloc, run with
 * LD_PRELOAD=zig-out/lib/libouro-malloc.so (build.zig runs it so; argv[1] is tests/malloc/dso.c built as
 * a library). Not linked with libouro: ouro/malloc.h's functions come from the preloaded library
 * (dlsym), so every block checked here came through the C library's names.
 *
 * Also linked statically with libouro-malloc.a and libouro.a (test_malloc_static, OURO_TEST_STATIC): the
 * same checks with no preload, and ouro_alloc's blocks (libouro's own allocator) kept apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ouro/malloc.h"
#ifdef OURO_TEST_STATIC
#include "ouro.h"
#endif

static int (*owns)(const void *);
static int (*stats)(ouro_alloc_stats_t *);
static size_t (*collect)(void);
static const char *dso_path;

static void resolve(void) {
    if (owns) return;
#ifdef OURO_TEST_STATIC
    owns = ouro_malloc_owns;
    stats = ouro_malloc_stats;
    collect = ouro_malloc_collect;
    return;
#endif
    owns = (int (*)(const void *))dlsym(RTLD_DEFAULT, "ouro_malloc_owns");
    stats = (int (*)(ouro_alloc_stats_t *))dlsym(RTLD_DEFAULT, "ouro_malloc_stats");
    collect = (size_t (*)(void))dlsym(RTLD_DEFAULT, "ouro_malloc_collect");
}

/* The earliest code of the program: a constructor of the first priority, whose malloc may be the first
 * call into the allocator (the static link runs it before or after the shim's own constructor). It first
 * registers 64 fork handlers: past 47, glibc grows its list with malloc while it holds the lock that a
 * registration takes, so the allocator's first call comes from inside pthread_atfork (the set-up used
 * to register its own handlers there, and hung). */
static void *ctor_block;
static int ctor_owned = -1;
static void atfork_noop(void) {}
__attribute__((constructor(101))) static void test_early_constructor(void) {
    for (int i = 0; i < 64; i++) pthread_atfork(atfork_noop, atfork_noop, atfork_noop);
    ctor_block = malloc(40);
    if (ctor_block) memset(ctor_block, 0x11, 40);
    resolve();
    ctor_owned = owns ? owns(ctor_block) : -2;
}

static size_t in_use(void) {
    ouro_alloc_stats_t st;
    assert_int_equal(stats(&st), 0);
    size_t n = 0;
    for (size_t c = 0; c < st.nclasses; c++) n += st.classes[c].blocks_in_use;
    return n + st.large_blocks;
}

/* ---- basics ------------------------------------------------------------------------------------------ */

static void test_preloaded(void **state) {
    (void)state;
    resolve();
    assert_non_null(owns);
    assert_non_null(stats);
    assert_non_null(collect);
    assert_int_equal(ctor_owned, 1);
    for (int i = 0; i < 40; i++) assert_int_equal(((unsigned char *)ctor_block)[i], 0x11);
    free(ctor_block);
    void *p = malloc(100);
    assert_true(owns(p));
    char *s = strdup("the C library's own allocations come here too");
    assert_true(owns(s));
    free(s);
    free(p);
    int local;
    assert_false(owns(&local));
    assert_false(owns(&dso_path));
}

/* dlsym's failure and dlerror's message allocate inside the C library (and the dynamic loader). */
static void test_dlerror_allocates(void **state) {
    (void)state;
    dlerror();
    assert_null(dlsym(RTLD_DEFAULT, "no_such_symbol_anywhere_42"));
    const char *msg = dlerror();
    assert_non_null(msg);
    assert_non_null(strstr(msg, "no_such_symbol_anywhere_42"));
    void *h = dlopen("/no/such/library.so", RTLD_NOW);
    assert_null(h);
    assert_non_null(strstr(dlerror(), "/no/such/library.so"));
}

/* The class of n bytes from the stats' class table; 0 when above the classes. */
static size_t class_size(const ouro_alloc_stats_t *st, size_t n) {
    for (size_t c = 0; c < st->nclasses; c++)
        if (st->classes[c].block_size >= n) return st->classes[c].block_size;
    return 0;
}

static void test_usable_size_agrees(void **state) {
    (void)state;
    ouro_alloc_stats_t st;
    assert_int_equal(stats(&st), 0);
    assert_int_equal(st.classes[st.nclasses - 1].block_size, 8192);
    for (size_t n = 0; n <= 8192; n++) {
        unsigned char *p = malloc(n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        size_t u = malloc_usable_size(p);
        assert_int_equal(u, class_size(&st, n ? n : 1)); /* the shim is built without a debug pad */
        memset(p, 0xab, u); /* all of it may be written */
        free(p);
    }
    /* runs of pools (up to an arena less its header pool), then dedicated mappings (whole pages); the
     * geometry from the stats, so that a torture build (8 KiB pools, 128 KiB arenas) checks the same */
    size_t pool = st.pool_size, run_max = (st.arena_size / pool - 1) * pool, pg = 4096;
    struct { size_t n, usable; } large[] = {
        {8193, (8192 / pool + 1) * pool}, {pool, pool}, {pool + 1, 2 * pool}, {run_max, run_max},
        {run_max + 1, run_max + pg}, {(size_t)5 << 20, (size_t)5 << 20},
    };
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        void *p = malloc(large[i].n);
        assert_true(owns(p));
        assert_int_equal(malloc_usable_size(p), large[i].usable);
        free(p);
    }
    /* Not ouro's: 0, no crash. */
    int local;
    static char data[64];
    assert_int_equal(malloc_usable_size(&local), 0);
    assert_int_equal(malloc_usable_size(data), 0);
    assert_int_equal(malloc_usable_size(NULL), 0);
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(page != MAP_FAILED);
    assert_int_equal(malloc_usable_size(page + 64), 0);
    munmap(page, 4096);
}

static void test_blocks_counted(void **state) {
    (void)state;
    enum { N = 2000 };
    static void *blocks[N];
    size_t before = in_use();
    for (int i = 0; i < N; i++) blocks[i] = malloc(48);
    assert_true(in_use() >= before + N);
    for (int i = 0; i < N; i++) free(blocks[i]);
    assert_true(in_use() < before + N);
}

/* ---- aligned entry points ------------------------------------------------------------------------------ */

/* Sizes and alignments through a volatile, so that the compiler neither warns about them nor folds the calls. */
static volatile size_t vsize_max = SIZE_MAX, v24 = 24, v48 = 48, v0 = 0;

/* p, hidden from the optimiser: a compiler may elide an allocation whose result is only compared with
 * NULL and take it as successful (LLVM does at -O2), so a failure test must let the result escape. */
static void *kept(void *p) {
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static void check_aligned(void *p, size_t align, size_t n) {
    assert_non_null(p);
    assert_int_equal((uintptr_t)p & (align - 1), 0);
    assert_true(owns(p));
    size_t u = malloc_usable_size(p);
    assert_true(u >= n);
    memset(p, 0x5c, u);
    /* realloc within the usable size keeps the block; beyond it, the contents */
    unsigned char *q = realloc(p, u + 1);
    assert_non_null(q);
    for (size_t i = 0; i < u; i += 97) assert_int_equal(q[i], 0x5c);
    free(q);
}

static void test_alignments(void **state) {
    (void)state;
    size_t sizes[] = {0, 1, 100, 4000, 5000, 70000};
    size_t large_before;
    ouro_alloc_stats_t st;
    assert_int_equal(stats(&st), 0);
    large_before = st.large_blocks;
    for (size_t align = 16; align <= ((size_t)4 << 20); align *= 2)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            void *p = NULL;
            assert_int_equal(posix_memalign(&p, align, n), 0);
            check_aligned(p, align, n);
            check_aligned(aligned_alloc(align, n), align, n);
            check_aligned(memalign(align, n), align, n);
            /* several at once: distinct, aligned, each freed by its own pointer */
            void *many[5];
            for (int i = 0; i < 5; i++) {
                many[i] = aligned_alloc(align, n);
                assert_int_equal((uintptr_t)many[i] & (align - 1), 0);
                for (int j = 0; j < i; j++) assert_ptr_not_equal(many[i], many[j]);
            }
            for (int i = 0; i < 5; i++) free(many[i]);
        }
    assert_int_equal(stats(&st), 0);
    assert_int_equal(st.large_blocks, large_before); /* every aligned large block went back */
    long page = sysconf(_SC_PAGESIZE);
    check_aligned(valloc(10), (size_t)page, 10);
    void *p = pvalloc(1);
    check_aligned(p, (size_t)page, (size_t)page);
    /* small alignments come from size classes: no large block */
    p = aligned_alloc(64, 100);
    assert_true(malloc_usable_size(p) < 4096);
    assert_int_equal(malloc_usable_size(p) % 64, 0);
    free(p);
    /* memalign rounds a non-power-of-two alignment up (glibc's rule) */
    p = memalign(v48, 10);
    assert_int_equal((uintptr_t)p % 64, 0);
    free(p);
}


static void test_errno_conventions(void **state) {
    (void)state;
    size_t huge = vsize_max;
    void *p = (void *)0x1;
    errno = 0;
    assert_int_equal(posix_memalign(&p, 24, 10), EINVAL);
    assert_int_equal(posix_memalign(&p, 4, 10), EINVAL); /* less than sizeof(void *) */
    assert_int_equal(posix_memalign(&p, 0, 10), EINVAL);
    assert_ptr_equal(p, (void *)0x1); /* untouched on failure */
    assert_int_equal(posix_memalign(&p, 64, huge - 8), ENOMEM);
    assert_int_equal(posix_memalign(&p, (size_t)1 << 21, (size_t)1 << 60), ENOMEM);
    assert_int_equal(errno, 0); /* posix_memalign reports through its result only */
    assert_int_equal(posix_memalign(&p, 8, 10), 0);
    free(p);

    errno = 0;
    assert_null(kept(aligned_alloc(v24, 48)));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(kept(aligned_alloc(v0, 48)));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(kept(aligned_alloc(64, huge - 8)));
    assert_int_equal(errno, ENOMEM);

    errno = 0;
    assert_null(kept(malloc(huge)));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kept(calloc(huge / 2, 3)));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kept(reallocarray(NULL, huge / 2, 3)));
    assert_int_equal(errno, ENOMEM);
    char *q = malloc(32);
    strcpy(q, "kept");
    errno = 0;
    assert_null(kept(reallocarray(q, huge / 4, 8)));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kept(realloc(q, huge - 100)));
    assert_int_equal(errno, ENOMEM);
    assert_string_equal(q, "kept"); /* a failed realloc leaves the block alone */
    char *r = reallocarray(q, 16, 4);
    assert_non_null(r);
    q = r;
    assert_string_equal(q, "kept");
    assert_true(malloc_usable_size(q) >= 64);
    /* glibc's realloc(p, 0): frees p, returns NULL */
    size_t before = in_use();
    assert_null(kept(realloc(q, 0)));
    assert_int_equal(in_use(), before - 1);
    errno = 0;
    assert_null(kept(memalign(huge / 2 + 2, 10)));
    assert_int_equal(errno, EINVAL);
}

/* ---- realloc and calloc ------------------------------------------------------------------------------- */

static void test_realloc_keeps_contents(void **state) {
    (void)state;
    size_t steps[] = {1, 15, 16, 17, 100, 512, 513, 4096, 4097, 16384, 50000, 1000000, 1040000, 3000000, 40000, 3000, 200, 8, 1};
    unsigned char *p = NULL;
    size_t have = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        p = realloc(p, n);
        assert_non_null(p);
        assert_true(owns(p));
        size_t keep = have < n ? have : n;
        for (size_t k = 0; k < keep; k++)
            if (p[k] != (unsigned char)(k * 7 + 3)) fail_msg("byte %zu lost growing/shrinking to %zu", k, n);
        for (size_t k = keep; k < n; k++) p[k] = (unsigned char)(k * 7 + 3);
        have = n;
    }
    free(p);
}

static void test_calloc_zeroes(void **state) {
    (void)state;
    size_t sizes[] = {1, 24, 100, 512, 1000, 4096, 5000, 40000, (size_t)2 << 20};
    for (int round = 0; round < 3; round++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            /* dirty blocks of the size first, so calloc reuses memory that held data */
            void *dirty[8];
            for (int i = 0; i < 8; i++) {
                dirty[i] = malloc(n);
                memset(dirty[i], 0xee, malloc_usable_size(dirty[i]));
            }
            for (int i = 0; i < 8; i++) free(dirty[i]);
            for (int i = 0; i < 8; i++) {
                unsigned char *z = calloc(1, n);
                assert_non_null(z);
                for (size_t k = 0; k < n; k++)
                    if (z[k]) fail_msg("calloc(1, %zu): byte %zu is %#x", n, k, z[k]);
                dirty[i] = z;
            }
            for (int i = 0; i < 8; i++) free(dirty[i]);
        }
}

/* ---- threads that never attach to ouro --------------------------------------------------------------- */

enum { XT = 4, XN = 3000 };
static void *xblocks[XT][XN];
static pthread_barrier_t xbarrier;
static atomic_int xerrors;

static void *exchange_thread(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < XN; i++) {
        size_t n = 8 + (size_t)((i * 37 + t * 11) % 3000);
        if (i % 500 == 0) n = 20000 + (size_t)i; /* some large ones */
        unsigned char *p = malloc(n);
        if (!p) {
            atomic_fetch_add(&xerrors, 1);
            continue;
        }
        p[0] = (unsigned char)t;
        p[n - 1] = (unsigned char)i;
        xblocks[t][i] = p;
    }
    pthread_barrier_wait(&xbarrier);
    int victim = (t + 1) % XT; /* free the next thread's blocks */
    for (int i = 0; i < XN; i++) {
        unsigned char *p = xblocks[victim][i];
        if (!p) continue;
        if (p[0] != (unsigned char)victim) atomic_fetch_add(&xerrors, 1);
        free(p);
    }
    pthread_barrier_wait(&xbarrier);
    return NULL;
}

static void test_unattached_threads_exchange(void **state) {
    (void)state;
    size_t before = in_use();
    pthread_t th[XT];
    pthread_barrier_init(&xbarrier, NULL, XT);
    for (int t = 0; t < XT; t++) assert_int_equal(pthread_create(&th[t], NULL, exchange_thread, (void *)(intptr_t)t), 0);
    for (int t = 0; t < XT; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&xbarrier);
    assert_int_equal(atomic_load(&xerrors), 0);
    collect(); /* the exited threads' pools are abandoned; their remote frees collected */
    ouro_alloc_stats_t st;
    assert_int_equal(stats(&st), 0);
    assert_true(st.heaps_cached >= 1); /* the threads' heaps went back at their exit */
    assert_true(in_use() <= before + 64);
}

/* ---- fork with threads allocating ------------------------------------------------------------------ */

static atomic_bool churn_stop;

static void *churn_thread(void *arg) {
    (void)arg;
    void *keep[64] = {0};
    unsigned r = (unsigned)(uintptr_t)&keep;
    while (!atomic_load(&churn_stop)) {
        r = r * 1103515245u + 12345u;
        int i = (int)((r >> 8) % 64);
        free(keep[i]);
        size_t n = (r >> 16) % 3 == 0 ? 20000 + (r >> 20) % 100000 : (r >> 16) % 2000;
        keep[i] = malloc(n);
        if (keep[i]) memset(keep[i], 0x33, n < 64 ? n : 64);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    void **slot = arg;
    for (int i = 0; i < 1000; i++) free(malloc((size_t)i * 3 + 1));
    *slot = malloc(123);
    return NULL;
}

/* The child: allocates and frees in every size range, frees a block the parent made, runs a thread. */
static int fork_child(char *from_parent) {
    alarm(30); /* a deadlock fails the test instead of hanging it */
    if (strcmp(from_parent, "from the parent") != 0) return 1;
    free(from_parent);
    void *blocks[300];
    for (int i = 0; i < 300; i++) {
        blocks[i] = malloc((size_t)(i % 3 == 0 ? 70000 + i : i * 13 + 1));
        if (!blocks[i] || !owns(blocks[i])) return 2;
    }
    for (int i = 0; i < 300; i++) free(blocks[i]);
    void *from_thread = NULL;
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, &from_thread) != 0) return 3;
    pthread_join(t, NULL);
    if (!from_thread || !owns(from_thread)) return 4;
    free(from_thread);
    char *s = strdup("child");
    return s && owns(s) ? 0 : 5;
}

static void test_fork_with_threads_allocating(void **state) {
    (void)state;
    enum { NT = 3, FORKS = 40 };
    pthread_t th[NT];
    atomic_store(&churn_stop, false);
    for (int t = 0; t < NT; t++) assert_int_equal(pthread_create(&th[t], NULL, churn_thread, NULL), 0);
    for (int f = 0; f < FORKS; f++) {
        char *shared = strdup("from the parent");
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(fork_child(shared));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("fork %d: child status %#x", f, status);
        free(shared);
    }
    atomic_store(&churn_stop, true);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
}

/* ---- dlopen / dlclose ---------------------------------------------------------------------------------- */

static void test_dlopen_boundary(void **state) {
    (void)state;
    for (int round = 0; round < 3; round++) {
        void *h = dlopen(dso_path, RTLD_NOW | RTLD_LOCAL);
        if (!h) fail_msg("dlopen %s: %s", dso_path, dlerror());
        void *(*dso_alloc)(size_t, int) = (void *(*)(size_t, int))dlsym(h, "dso_alloc");
        void (*dso_free)(void *) = (void (*)(void *))dlsym(h, "dso_free");
        char *(*dso_strdup)(const char *) = (char *(*)(const char *))dlsym(h, "dso_strdup");
        void *(*dso_grow)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "dso_grow");
        assert_non_null(dso_alloc);
        assert_non_null(dso_free);
        unsigned char *a = dso_alloc(300, 0x42); /* the library allocates, the program frees */
        assert_true(owns(a));
        assert_int_equal(a[299], 0x42);
        char *s = dso_strdup("across");
        assert_true(owns(s));
        unsigned char *b = malloc(5000); /* the program allocates, the library frees and grows */
        memset(b, 0x24, 5000);
        b = dso_grow(b, 90000);
        assert_int_equal(b[4999], 0x24);
        assert_true(owns(b));
        dso_free(b);
        char *kept = dso_strdup("outlives dlclose");
        assert_int_equal(dlclose(h), 0);
        free(a);
        free(s);
        assert_string_equal(kept, "outlives dlclose");
        free(kept);
    }
}

#ifdef OURO_TEST_STATIC
/* Linked with libouro.a beside libouro-malloc.a: two allocators, neither's blocks in the other's map. */
static void test_static_beside_libouro(void **state) {
    (void)state;
    void *o = ouro_alloc(100);
    void *m = malloc(100);
    assert_non_null(o);
    assert_false(ouro_malloc_owns(o));
    assert_true(ouro_malloc_owns(m));
    assert_int_equal(ouro_usable_size(o), 112 - (OURO_DEBUG_LEVEL >= 1 ? 8 : 0));
    ouro_free(o);
    free(m);
    ouro_object *list = ouro_list_new(0); /* the object API on libouro's heaps, its bookkeeping on malloc's */
    assert_non_null(list);
    ouro_object *seven = ouro_int_from(7);
    assert_int_equal(ouro_list_append(list, seven), 0);
    ouro_decref(seven);
    assert_false(ouro_malloc_owns(list));
    ouro_decref(list);
}
#endif

int main(int argc, char **argv) {
    resolve();
    if (!owns) {
        fprintf(stderr, "test_malloc: libouro-malloc is not loaded (run with LD_PRELOAD=.../libouro-malloc.so)\n");
        return 1;
    }
    dso_path = argc > 1 ? argv[1] : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preloaded),
        cmocka_unit_test(test_dlerror_allocates),
        cmocka_unit_test(test_usable_size_agrees),
        cmocka_unit_test(test_blocks_counted),
        cmocka_unit_test(test_alignments),
        cmocka_unit_test(test_errno_conventions),
        cmocka_unit_test(test_realloc_keeps_contents),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_unattached_threads_exchange),
        cmocka_unit_test(test_fork_with_threads_allocating),
        cmocka_unit_test(test_dlopen_boundary),
#ifdef OURO_TEST_STATIC
        cmocka_unit_test(test_static_beside_libouro),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
