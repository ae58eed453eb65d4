/* tests/test_alloc_threads.c — the allocator across threads: remote frees from N threads, threads
 * that exit holding blocks, abandoned pools adopted, heaps reused, concurrent exchange with canaries.
 * Workers record what they saw; the test thread asserts after join. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

enum { NTHREADS = 4 };

/* A block's canary: every byte derived from its address and tag. */
static void canary_fill(unsigned char *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(((uintptr_t)p >> 4) + i * 31 + tag);
}
static bool canary_ok(const unsigned char *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(((uintptr_t)p >> 4) + i * 31 + tag)) return false;
    return true;
}

static size_t size_of(size_t i) { return 1 + (i * 53) % 700; }

/* ---- remote frees from N threads ---------------------------------------------------------------- */
enum { PER_THREAD = 5000 };
static void *shared_blocks[NTHREADS][PER_THREAD];
static atomic_int bad_canaries;

static void *free_share(void *arg) {
    void **mine = arg;
    for (size_t i = 0; i < PER_THREAD; i++) {
        if (!canary_ok(mine[i], size_of(i), 7)) atomic_fetch_add(&bad_canaries, 1);
        ouro_free(mine[i]);
    }
    return NULL;
}

/* Large blocks (pool runs and own mappings) freed by another thread. */
static void *free_one(void *p) {
    ouro_free(p);
    return NULL;
}

static void test_remote_large_frees(void **state) {
    ouro_alloc_stats_t base = test_stats();
    const size_t sizes[] = {5000, 70000, 900000, 3u << 20, 9u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = ouro_alloc(sizes[i]);
        assert_non_null(p);
        canary_fill(p, sizes[i], 9);
        assert_true(canary_ok(p, sizes[i], 9));
        pthread_t t;
        pthread_create(&t, NULL, free_one, p);
        pthread_join(t, NULL);
    }
    ouro_alloc_stats_t st = test_stats();
    assert_int_equal(st.large_blocks, base.large_blocks);
    assert_int_equal(st.large_bytes, base.large_bytes);
    assert_true(st.bytes_mapped <= base.bytes_mapped + (1u << 20));
}

static void test_remote_frees(void **state) {
    ouro_alloc_stats_t base = test_stats();
    for (int t = 0; t < NTHREADS; t++)
        for (size_t i = 0; i < PER_THREAD; i++) {
            shared_blocks[t][i] = ouro_alloc(size_of(i));
            canary_fill(shared_blocks[t][i], size_of(i), 7);
        }
    ouro_alloc_stats_t mid = test_stats();
    assert_int_equal(test_blocks_in_use(&mid), test_blocks_in_use(&base) + NTHREADS * PER_THREAD);
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) pthread_create(&th[t], NULL, free_share, shared_blocks[t]);
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);
    assert_int_equal(atomic_load(&bad_canaries), 0);
    ouro_alloc_stats_t st = test_stats(); /* collects the remote frees */
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base));
    assert_int_equal(ouro_alloc_check(), 0);
}

/* ---- a thread exits holding blocks; another frees them later --------------------------------------- */
enum { HELD = 20000 };
static void *held[HELD];

static void *alloc_and_exit(void *arg) {
    for (size_t i = 0; i < HELD; i++) {
        held[i] = ouro_alloc(size_of(i));
        canary_fill(held[i], size_of(i), 3);
    }
    /* Free every third block locally: the abandoned pools have free blocks to adopt. */
    for (size_t i = 0; i < HELD; i += 3) {
        ouro_free(held[i]);
        held[i] = NULL;
    }
    return NULL;
}

static void *free_held(void *arg) {
    for (size_t i = 0; i < HELD; i++)
        if (held[i]) {
            if (!canary_ok(held[i], size_of(i), 3)) atomic_fetch_add(&bad_canaries, 1);
            ouro_free(held[i]);
        }
    return NULL;
}

static void test_exit_holding_blocks(void **state) {
    ouro_alloc_stats_t base = test_stats();
    pthread_t a, b;
    pthread_create(&a, NULL, alloc_and_exit, NULL);
    pthread_join(a, NULL);
    ouro_alloc_stats_t st = test_stats();
    assert_int_equal(st.heaps, base.heaps); /* the exited thread's heap is no longer live */
    assert_true(st.pools_abandoned > base.pools_abandoned);
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base) + HELD - (HELD + 2) / 3);
    pthread_create(&b, NULL, free_held, NULL);
    pthread_join(b, NULL);
    assert_int_equal(atomic_load(&bad_canaries), 0);
    /* Without any collect call: the frees into abandoned pools notified the abandoned inbox, which the
     * notifier collected itself (the arena lock was free) or left to the lock's holder (the decay thread,
     * say), which collects it after its release; so every emptied pool goes back. A holder may still be
     * about to release when b has exited: the count settles within a few of those releases. */
    for (int i = 0; i < 2000; i++) {
        ouro_alloc_stats(&st);
        if (st.pools_abandoned == base.pools_abandoned) break;
        usleep(1000);
    }
    assert_int_equal(st.pools_abandoned, base.pools_abandoned);
    st = test_stats();
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base));
    assert_int_equal(st.pools_abandoned, base.pools_abandoned);
}

/* ---- abandoned pools are adopted ------------------------------------------------------------------------ */
static void *alloc_48_and_exit(void *arg) {
    for (size_t i = 0; i < HELD; i++) held[i] = ouro_alloc(40);
    for (size_t i = 0; i < HELD; i += 2) ouro_free(held[i]);
    return NULL;
}

static void test_abandoned_adopted(void **state) {
    pthread_t a;
    ouro_alloc_stats_t base = test_stats();
    pthread_create(&a, NULL, alloc_48_and_exit, NULL);
    pthread_join(a, NULL);
    ouro_alloc_stats_t st = test_stats();
    size_t abandoned = st.pools_abandoned, pools = st.pools_total - st.pools_free;
    assert_true(abandoned > base.pools_abandoned);
    /* This thread's allocations of the same class fill the abandoned pools before new ones. */
    void *mine[HELD / 2];
    for (size_t i = 0; i < HELD / 2; i++) mine[i] = ouro_alloc(40);
    st = test_stats();
    assert_true(st.pools_abandoned < abandoned);
    assert_true(st.pools_total - st.pools_free <= pools + 1);
    for (size_t i = 0; i < HELD / 2; i++) ouro_free(mine[i]);
    for (size_t i = 1; i < HELD; i += 2) ouro_free(held[i]);
    st = test_stats();
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base));
    assert_int_equal(st.pools_abandoned, base.pools_abandoned);
}

/* ---- heaps are reused, not leaked ------------------------------------------------------------------------ */
static void *alloc_one(void *arg) {
    ouro_free(ouro_alloc(100));
    return NULL;
}

static void test_heap_reuse(void **state) {
    ouro_alloc_stats_t base = test_stats();
    for (int i = 0; i < 50; i++) {
        pthread_t t;
        pthread_create(&t, NULL, alloc_one, NULL);
        pthread_join(t, NULL);
    }
    ouro_alloc_stats_t st = test_stats();
    assert_int_equal(st.heaps, base.heaps);
    assert_true(st.heaps_cached <= base.heaps_cached + 1);
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base));
}

/* ---- concurrent exchange through a shared array (mimalloc test-stress in small) ------------------------ */
enum { SLOTS = 256, ROUNDS = 20000 };
static _Atomic(uintptr_t) slots[SLOTS];
static atomic_long freed_by_exchange;

static void *exchange_worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
    for (int r = 0; r < ROUNDS; r++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* A block: its size in the first two bytes, then a canary over the rest. */
        size_t size = 2 + s % 1000;
        unsigned char *p = ouro_alloc(size);
        *(uint16_t *)p = (uint16_t)size;
        canary_fill(p + 2, size - 2, (unsigned)size);
        uintptr_t old = atomic_exchange(&slots[(s >> 20) % SLOTS], (uintptr_t)p);
        if (old) {
            unsigned char *q = (unsigned char *)old;
            size_t qs = *(uint16_t *)q;
            if (qs < 2 || !canary_ok(q + 2, qs - 2, (unsigned)qs)) atomic_fetch_add(&bad_canaries, 1);
            ouro_free(q);
            atomic_fetch_add(&freed_by_exchange, 1);
        }
    }
    return NULL;
}

static void test_concurrent_exchange(void **state) {
    ouro_alloc_stats_t base = test_stats();
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) pthread_create(&th[t], NULL, exchange_worker, (void *)(uintptr_t)(t + 1));
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);
    long left = 0;
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t v = atomic_exchange(&slots[i], 0);
        if (v) {
            ouro_free((void *)v);
            left++;
        }
    }
    assert_int_equal(atomic_load(&bad_canaries), 0);
    assert_int_equal(atomic_load(&freed_by_exchange) + left, (long)NTHREADS * ROUNDS);
    ouro_alloc_stats_t st = test_stats();
    assert_int_equal(test_blocks_in_use(&st), test_blocks_in_use(&base));
    assert_int_equal(st.large_blocks, base.large_blocks);
    assert_int_equal(st.pools_abandoned, base.pools_abandoned);
}

/* ---- fork while other threads allocate: the child can allocate and free ---------------------------- */
static atomic_int forking_done;

static void *alloc_until_done(void *arg) {
    while (!atomic_load(&forking_done)) {
        void *v[64];
        for (int i = 0; i < 64; i++) v[i] = ouro_alloc(16 + (size_t)i * 97); /* small, medium, runs */
        for (int i = 0; i < 64; i++) ouro_free(v[i]);
    }
    return NULL;
}

static void test_fork_while_allocating(void **state) {
    pthread_t th[2];
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, alloc_until_done, NULL);
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *v[1000];
            for (int i = 0; i < 1000; i++) v[i] = ouro_alloc((size_t)i * 7);
            for (int i = 0; i < 1000; i++) ouro_free(v[i]);
            _exit(ouro_alloc_check() == 0 ? 0 : 3);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    atomic_store(&forking_done, 1);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_frees),
        cmocka_unit_test(test_remote_large_frees),
        cmocka_unit_test(test_exit_holding_blocks),
        cmocka_unit_test(test_abandoned_adopted),
        cmocka_unit_test(test_heap_reuse),
        cmocka_unit_test(test_concurrent_exchange),
        cmocka_unit_test(test_fork_while_allocating),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
