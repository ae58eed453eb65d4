/* tests/test_alloc_threads.c — the allocator across threads: remote frees from N threads, threads
 * that exit holding blocks, abandoned pools adopted, heaps reused, concurrent exchange with canaries.
 * Workers record what they saw; the test thread asserts after join. */
#define OURO_BUILD_CORE 1 /* white-box: the decay thread's timing (_ouro_arena_decay_timing) */
#include "testutil.h"
#include "alloc/internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
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

/* ---- the decay thread never keeps a process alive ------------------------------------------------------
 * A process ends when its last thread does. The child frees memory (the decay thread starts), then its
 * only thread of its own leaves by pthread_exit: the decay thread must follow once nothing has been dirty
 * for its idle period (2 s; CPython's test_threading forks from a thread and lets that thread end so). */

static void test_decay_thread_never_keeps_process_alive(void **state) {
    /* Not under TSan: its runtime runs a thread of its own (a raw clone that wakes every 100 ms), so any
     * TSan program whose threads all end by pthread_exit stays alive (checked without ouro). Not under
     * ASan: LeakSanitizer checks such a process as it ends, and what only the gone main thread's stack
     * pointed to (the test harness's state) then looks leaked. */
    if (OURO_TSAN || TEST_ASAN) skip();
    pid_t pid = fork();
    if (pid == 0) {
        enum { N = 4096 };
        void *v[N];
        for (int i = 0; i < N; i++) v[i] = ouro_alloc(1000);
        for (int i = 0; i < N; i++) ouro_free(v[i]); /* whole pools go back: dirty */
        if (test_task_count(true) < 2) _exit(3);              /* no decay thread: nothing tested */
        pthread_exit(NULL);
    }
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 800 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++) usleep(25000); /* 20 s */
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the child was still alive 20 s after its last thread exited");
    }
    if (!WIFEXITED(status)) fail_msg("the child ended by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- fork() while the decay thread comes and goes ---------------------------------------------------
 * No child may inherit a lock of a thread half started or half ended (ASan's allocator is not locked
 * around fork by Debian's clang 14: core/mem.c). With a 1 ms epoch and a 2 ms idle period the decay
 * thread starts and ends hundreds of times a second. Part 1: the test thread itself makes memory dirty
 * once the thread has ended (its free starts a new one) and forks at once. Part 2: workers free whole
 * pools in bursts while the test thread forks. Each child starts a thread of its own (the ASan hang was
 * there) and its own decay thread, and must exit within its alarm. */
static atomic_int churn_done;

static void make_dirty(void) {
    enum { N = 64 };
    void *v[N];
    for (int i = 0; i < N; i++) v[i] = ouro_alloc(3000); /* a few blocks a pool: whole pools go back */
    for (int i = 0; i < N; i++) ouro_free(v[i]);
}

static void *churn_bursts(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&churn_done)) {
        make_dirty();
        seed = seed * 1103515245u + 12345u;
        usleep(2000 + (seed >> 16) % 8000); /* idle long enough for the thread to end, often */
    }
    return NULL;
}

static atomic_int dirtied;

static void *dirty_then_wait(void *arg) {
    (void)arg;
    make_dirty();
    atomic_store(&dirtied, 1);
    while (!atomic_load(&churn_done)) usleep(1000);
    return NULL;
}

static void *child_thread_allocates(void *arg) {
    (void)arg;
    void *p = ouro_alloc(100);
    ouro_free(p);
    return p;
}

/* Forks a child that starts a thread and exits; returns 0 when it exited 0. */
static int fork_child_starts_thread(int round) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        make_dirty(); /* the child's decay thread starts */
        pthread_t t;
        if (pthread_create(&t, NULL, child_thread_allocates, NULL) != 0) _exit(2);
        pthread_join(t, NULL);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    fprintf(stderr, "fork %d: child %s %d\n", round, WIFEXITED(status) ? "exited" : "killed by signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return 1;
}

static void test_fork_while_decay_thread_comes_and_goes(void **state) {
    _ouro_arena_decay_timing(1, 2);
    unsigned long ends = 0, starts0 = _ouro_arena_decay_starts(NULL);
    int bad = 0, own = 0;
    for (int round = 0; round < 40; round++) { /* part 1: fork right after a start */
        unsigned long s = 0;
        for (int i = 0; i < 2000 && (s = _ouro_arena_decay_starts(&ends)) != ends; i++) usleep(500);
        if (round % 2) { /* by this thread */
            make_dirty();
        } else { /* by another, which then waits */
            atomic_store(&dirtied, 0);
            atomic_store(&churn_done, 0);
            pthread_t t;
            pthread_create(&t, NULL, dirty_then_wait, NULL);
            while (!atomic_load(&dirtied)) sched_yield();
            own += _ouro_arena_decay_starts(NULL) != s;
            bad += fork_child_starts_thread(round);
            atomic_store(&churn_done, 1);
            pthread_join(t, NULL);
            continue;
        }
        own += _ouro_arena_decay_starts(NULL) != s;
        bad += fork_child_starts_thread(round);
    }
    atomic_store(&churn_done, 0);
    pthread_t th[2];
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, churn_bursts, (void *)(uintptr_t)(t + 1));
    for (int round = 0; round < 150; round++) { /* part 2: workers' starts and ends */
        bad += fork_child_starts_thread(100 + round);
        usleep((unsigned)(round % 7) * 300);
    }
    atomic_store(&churn_done, 1);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    unsigned long starts = _ouro_arena_decay_starts(&ends) - starts0;
    _ouro_arena_decay_timing(0, 0);
    assert_int_equal(bad, 0);
    if (own < 20) fail_msg("the test thread started the decay thread before %d forks of 40", own);
    if (starts < (unsigned long)own + 10) fail_msg("the decay thread started %lu times: it did not come and go", starts);
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
        cmocka_unit_test(test_fork_while_decay_thread_comes_and_goes),
        cmocka_unit_test(test_decay_thread_never_keeps_process_alive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
