/* bench/gc_suite.c — the `gc` suite: what a collection costs, ouro's cycle collector against CPython's
 * gc module and the Boehm-Demers-Weiser collector (bdwgc).
 *
 * Subjects: `ouro`; `cpython`, the python3 found in PATH, run as a subprocess of the child with a script
 * that builds the same heap and times gc.collect() itself; `bdwgc` and `bdwgc-2`, Debian's libgc
 * (dlopen'ed, no LD_PRELOAD: malloc stays glibc's) with 1 and 2 marker threads. The peers are in-child
 * programs that call no ouro code, so they are plain peers (bench_subject.ouro 0, no preload).
 *
 * The heaps. Every object holds two references (ouro: a type made by ouro_type_new with OURO_TYPE_GC
 * and slots a, b: 48 B; cpython: a class with __slots__ = ('a', 'b'); bdwgc: GC_malloc of two
 * pointers). The live heap is a binary tree in heap order — node i refers to nodes 2i+1 and 2i+2 — and
 * the references a node has no child for (the leaves') are cross links to a pseudo-random node of the
 * subtree of the node's 6th ancestor (gc_shape_cross): every node is reachable from node 0, the one root
 * the benchmark holds, and every leaf is on a cycle through its ancestors. The cross links stay local
 * because links to uniformly random nodes make the mark stack of a depth-first marker grow with the
 * heap: bdwgc's (4096 entries at first, doubled once per collection that overflows it) overflows a few
 * hundred times per collection and it spends ~5x longer rescanning than marking (docs/bench.md). The
 * garbage heap is rings of 10 doubly-linked objects (a: next, b: previous). The C shapes and the Python
 * script's compute the same indices, so every subject collects the same graph.
 *
 * The convention is Python's: build with automatic collection off (ouro_gc_disable, gc.disable,
 * GC_disable), run one untimed full collection so every subject starts from its steady state (all
 * objects in the oldest generation; bdwgc's mark stack grown, its heap sized), then time the next one.
 * Oracles: what each collection returns (0 for a live heap, every object for the garbage one), ouro's
 * live-instance count back to 0 at the end, bdwgc's memory in use still covering the live heap and its
 * marker threads really started. */
#include "bench.h"

#include <ouro.h>
#include <ouro/gc.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The subjects, in the order of gc_subjects[]. */
enum { GC_OURO, GC_CPYTHON, GC_BDWGC, GC_BDWGC_2, GC_OURO_SO, GC_NSUBJECTS };

static const bench_subject gc_subjects[] = {
    [GC_OURO] = BENCH_SUBJECT_OURO,
    [GC_CPYTHON] = { "cpython", NULL, NULL, "python3", NULL, 0, NULL },
    [GC_BDWGC] = { "bdwgc", NULL, NULL, "libgc1", NULL, 0, NULL },
    [GC_BDWGC_2] = { "bdwgc-2", NULL, NULL, "libgc1", NULL, 0, NULL },
    [GC_OURO_SO] = BENCH_SUBJECT_OURO_SO("young-pause-100k"),
};

#define GC_BIT(i) BENCH_SUBJECT_BIT(i)

enum {
    GC_CROSS_HEIGHT = 6,     /* a leaf's cross links go into the subtree of its 6th ancestor */
    GC_RING = 10,            /* objects per ring of the garbage shapes */
    GC_YOUNG = 10000,        /* young objects made before each timed young collection */
    GC_YOUNG_ROUNDS = 100,   /* timed young collections: the p99 is then the second-largest */
    GC_YOUNG_QUICK_ROUNDS = 30,
    GC_CHURN_THREADS = 2,    /* the machine has 2 cores: one mutator each */
    GC_CHURN_MAX_PAUSES = 1 << 16,
};

#define GC_CHURN_S 2.0       /* how long the churn runs */
#define GC_CHURN_QUICK_S 0.5

/* ==== the shapes, shared by every subject ========================================================== */

/* The target of node i's reference k (0: a, 1: b) that has no child to point to: a node of the subtree
 * of i's GC_CROSS_HEIGHT-th ancestor (the root's subtree near the top), at a depth below that ancestor
 * of 0..GC_CROSS_HEIGHT drawn from a hash of (i, k); the ancestor itself when that node does not exist.
 * The Python script's cross() is the same function. */
static size_t gc_shape_cross(size_t i, unsigned k, size_t n)
{
    uint64_t h = (2 * (uint64_t)i + k) * 0x9E3779B97F4A7C15u;
    h ^= h >> 29;
    size_t a = i;
    for (int s = 0; s < GC_CROSS_HEIGHT && a > 0; s++) a = (a - 1) / 2;
    unsigned d = (unsigned)((h >> 40) % (GC_CROSS_HEIGHT + 1));
    size_t t = ((a + 1) << d) - 1 + (size_t)((h >> 8) & ((1u << d) - 1));
    return t < n ? t : a;
}

/* The target of node i's reference k in the live shape of n nodes: its child, else a cross link. */
static size_t gc_shape_ref(size_t i, unsigned k, size_t n)
{
    size_t child = 2 * i + 1 + k;
    return child < n ? child : gc_shape_cross(i, k, n);
}

/* The target of object i's reference k in the ring shape: the next object of its ring (k 0) or the
 * previous one (k 1). */
static size_t gc_shape_ring(size_t i, unsigned k)
{
    size_t base = i - i % GC_RING, pos = i % GC_RING;
    return base + (pos + (k ? GC_RING - 1 : 1)) % GC_RING;
}

static int gc_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank pct-th percentile (1..100) of v[0..n), n >= 1. Sorts v (so v[n - 1] is the max). */
static uint64_t gc_percentile(uint64_t *v, size_t n, unsigned pct)
{
    qsort(v, n, sizeof *v, gc_cmp_u64);
    size_t rank = (pct * n + 99) / 100; /* ceil(pct / 100 * n) */
    return v[rank > 0 ? rank - 1 : 0];
}

/* ==== ouro ========================================================================================== */

/* Attaches the calling thread, or fails the run. */
static void gc_attach(void)
{
    if (ouro_thread_attach() != 0) bench_fail("ouro_thread_attach: %s", ouro_err_message());
}

/* The benchmark's object: a tracked type with two reference slots (48 B: header + 2 pointers). */
static ouro_type *gc_node_type_new(void)
{
    static const char *const slots[] = { "a", "b", NULL };
    ouro_type_spec spec = { .name = "gc-node", .flags = OURO_TYPE_GC, .slots = slots };
    ouro_type *t = ouro_type_new(&spec);
    if (!t) bench_fail("ouro_type_new: %s", ouro_err_message());
    return t;
}

static ouro_object *gc_node_new(ouro_type *t)
{
    ouro_object *o = ouro_new(t);
    if (!o) bench_fail("ouro_new: %s", ouro_err_message());
    return o;
}

static void gc_slot_set(ouro_object *o, size_t i, ouro_object *v)
{
    if (ouro_slot_set(o, i, v) != 0) bench_fail("ouro_slot_set: %s", ouro_err_message());
}

/* The number of live instances of t. */
static size_t gc_live(const ouro_type *t)
{
    ouro_type_stats st;
    if (ouro_type_get_stats(t, &st) != 0) bench_fail("ouro_type_get_stats: %s", ouro_err_message());
    return st.live;
}

/* Collects generations 0..gen; fails the run unless it found `expect` unreachable objects. Returns
 * the collection's wall time in ns. */
static uint64_t gc_ouro_collect(int gen, long expect)
{
    uint64_t t0 = bench_now_ns();
    long found = ouro_gc_collect(gen);
    uint64_t ns = bench_now_ns() - t0;
    if (found != expect)
        bench_fail("ouro_gc_collect(%d) found %ld unreachable objects, not %ld%s%s", gen, found, expect,
                   found < 0 ? ": " : "", found < 0 ? ouro_err_message() : "");
    return ns;
}

/* Builds the live shape of n nodes of type t and returns its root, whose one reference is the caller's
 * (the other nodes are held by their parents). */
static ouro_object *gc_ouro_build_tree(ouro_type *t, size_t n)
{
    ouro_object **node = malloc(n * sizeof *node);
    if (!node) bench_fail("out of memory for %zu node pointers", n);
    for (size_t i = 0; i < n; i++) node[i] = gc_node_new(t);
    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < 2; k++) gc_slot_set(node[i], k, node[gc_shape_ref(i, k, n)]);
    ouro_object *root = node[0];
    for (size_t i = 1; i < n; i++) ouro_decref(node[i]);
    free(node);
    return root;
}

/* Builds one ring of GC_RING nodes (the ring shape) and returns its first node, whose one reference is
 * the caller's. */
static ouro_object *gc_ouro_build_ring(ouro_type *t)
{
    ouro_object *node[GC_RING];
    for (size_t i = 0; i < GC_RING; i++) node[i] = gc_node_new(t);
    for (size_t i = 0; i < GC_RING; i++)
        for (unsigned k = 0; k < 2; k++) gc_slot_set(node[i], k, node[gc_shape_ring(i, k)]);
    for (size_t i = 1; i < GC_RING; i++) ouro_decref(node[i]);
    return node[0];
}

/* Drops the last references to everything of type t that the caller made, collects, and fails the run
 * unless every instance is gone; then frees the type. */
static void gc_ouro_finish(ouro_type *t)
{
    if (ouro_gc_collect(2) < 0) bench_fail("ouro_gc_collect(2): %s", ouro_err_message());
    size_t live = gc_live(t);
    if (live != 0) bench_fail("%zu gc-node instances alive after the last collection", live);
    if (ouro_type_free(t) != 0) bench_fail("ouro_type_free: %s", ouro_err_message());
}

/* full-live for ouro: a tree of n live nodes, one untimed and one timed ouro_gc_collect(2). */
static void gc_full_live_ouro(const bench_run *r, size_t n)
{
    gc_attach();
    ouro_gc_disable(); /* explicit collections only: none may run while the heap is built */
    ouro_type *t = gc_node_type_new();
    ouro_object *root = gc_ouro_build_tree(t, n);
    gc_ouro_collect(2, 0);
    uint64_t ns = gc_ouro_collect(2, 0);
    if (gc_live(t) != n) bench_fail("%zu nodes alive after the collections, not %zu", gc_live(t), n);
    bench_report(r, "ns_per_object", (double)ns / (double)n);
    bench_note(r, "heap-order binary tree of %zu 2-ref objects (ouro 48 B, python __slots__ a b, bdwgc "
                  "GC_malloc(16)); leaves cross-link into their 6th ancestor's subtree", n);
    ouro_decref(root);
    gc_ouro_finish(t);
    ouro_gc_enable();
    ouro_thread_detach();
}

/* garbage-cycles for ouro: n nodes in rings, made live and collected once (none found), then dropped;
 * the timed collection frees them all. */
static void gc_garbage_cycles_ouro(const bench_run *r, size_t n)
{
    gc_attach();
    ouro_gc_disable();
    ouro_type *t = gc_node_type_new();
    size_t nrings = n / GC_RING;
    ouro_object **head = malloc(nrings * sizeof *head);
    if (!head) bench_fail("out of memory for %zu ring heads", nrings);
    for (size_t i = 0; i < nrings; i++) head[i] = gc_ouro_build_ring(t);
    gc_ouro_collect(2, 0); /* all in the oldest generation, as the untimed collection does for python */
    for (size_t i = 0; i < nrings; i++) ouro_decref(head[i]);
    free(head);
    uint64_t ns = gc_ouro_collect(2, (long)(nrings * GC_RING));
    bench_report(r, "ns_per_object", (double)ns / (double)(nrings * GC_RING));
    bench_note(r, "%zu rings of %d doubly-linked 2-ref objects, collected once while live, then dropped",
               nrings, GC_RING);
    gc_ouro_finish(t);
    ouro_gc_enable();
    ouro_thread_detach();
}

/* young-pause: n old nodes (the live tree, promoted to generation 2 by two full collections) and an
 * old list; each round makes GC_YOUNG young nodes — half in garbage rings, half in live chains of
 * GC_RING hung from the old list (released at the next round, freed by reference counting) — and times
 * ouro_gc_collect(0), which must find exactly the garbage half. */
static void case_young_pause(const bench_run *r, size_t n)
{
    gc_attach();
    ouro_gc_disable();
    ouro_type *t = gc_node_type_new();
    ouro_object *root = gc_ouro_build_tree(t, n);
    ouro_object *holder = ouro_list_new(0);
    if (!holder) bench_fail("ouro_list_new: %s", ouro_err_message());
    gc_ouro_collect(2, 0);
    gc_ouro_collect(2, 0);

    int rounds = r->quick ? GC_YOUNG_QUICK_ROUNDS : GC_YOUNG_ROUNDS;
    uint64_t pause[GC_YOUNG_ROUNDS];
    for (int round = 0; round < rounds; round++) {
        if (ouro_list_clear(holder) != 0) bench_fail("ouro_list_clear: %s", ouro_err_message());
        for (size_t j = 0; j < GC_YOUNG / GC_RING; j++) {
            if (j % 2 == 0) { /* a garbage ring */
                ouro_decref(gc_ouro_build_ring(t));
                continue;
            }
            ouro_object *head = gc_node_new(t), *last = head; /* a live chain */
            for (size_t k = 1; k < GC_RING; k++) {
                ouro_object *next = gc_node_new(t);
                gc_slot_set(last, 0, next);
                ouro_decref(next);
                last = next;
            }
            if (ouro_list_append(holder, head) != 0) bench_fail("ouro_list_append: %s", ouro_err_message());
            ouro_decref(head);
        }
        pause[round] = gc_ouro_collect(0, GC_YOUNG / 2);
    }
    bench_report(r, "us_p50", (double)gc_percentile(pause, (size_t)rounds, 50) / 1e3);
    bench_report(r, "us_p99", (double)gc_percentile(pause, (size_t)rounds, 99) / 1e3);
    bench_note(r, "%zu old objects (tree, 2 full collections); %d rounds of %d young: half garbage rings "
                  "of %d, half live chains held by an old list", n, rounds, GC_YOUNG, GC_RING);

    ouro_decref(holder);
    ouro_decref(root);
    gc_ouro_finish(t);
    ouro_gc_enable();
    ouro_thread_detach();
}

/* ---- pause-under-churn --------------------------------------------------------------------------- */

/* The collections' durations, appended by gc_churn_callback() on whichever thread collects (the
 * index is atomic for that). The main thread reads them after joining the mutators: the joins order
 * every append before the reads. */
static struct {
    _Atomic size_t count;
    uint64_t ns[GC_CHURN_MAX_PAUSES];
} gc_churn_pauses;

/* An ouro_gc_callback: records the duration of each finished collection. */
static void gc_churn_callback(int phase, const ouro_gc_info *info, void *arg)
{
    (void)arg;
    if (phase != OURO_GC_STOP) return;
    size_t i = atomic_fetch_add_explicit(&gc_churn_pauses.count, 1, memory_order_relaxed);
    if (i < GC_CHURN_MAX_PAUSES) gc_churn_pauses.ns[i] = info->duration_ns;
}

typedef struct gc_churn {
    ouro_type *type;
    _Atomic int stop;   /* set (relaxed) by the main thread when the time is up */
    uint64_t rings;     /* rings made: written by the mutator, read after its join */
} gc_churn;

/* A mutator: makes garbage rings and drops them until told to stop, polling a safepoint after each
 * ring as a runtime's mutator would. */
static void *gc_churn_mutator(void *arg)
{
    gc_churn *c = arg;
    gc_attach();
    uint64_t rings = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        ouro_decref(gc_ouro_build_ring(c->type));
        rings++;
        ouro_safepoint();
    }
    c->rings = rings;
    ouro_thread_detach();
    return NULL;
}

/* pause-under-churn: GC_CHURN_THREADS mutators make cyclic garbage for a fixed time with ouro's default
 * automatic collection; the collections' durations come from the OURO_GC_STOP callbacks. */
static void case_pause_under_churn(const bench_run *r)
{
    gc_attach();
    ouro_gc_enable();
    static gc_churn c[GC_CHURN_THREADS];
    ouro_type *t = gc_node_type_new();
    atomic_store_explicit(&gc_churn_pauses.count, 0, memory_order_relaxed);
    if (ouro_gc_callback_add(gc_churn_callback, NULL) != 0)
        bench_fail("ouro_gc_callback_add: %s", ouro_err_message());
    ouro_gc_gen_stats before[OURO_GC_GENERATIONS], after[OURO_GC_GENERATIONS];
    ouro_gc_get_stats(before);

    /* The main thread only waits: offline, so that it never holds up a stop. */
    if (ouro_offline_begin() != 0) bench_fail("ouro_offline_begin: %s", ouro_err_message());
    pthread_t th[GC_CHURN_THREADS];
    for (int i = 0; i < GC_CHURN_THREADS; i++) {
        c[i] = (gc_churn){ .type = t };
        th[i] = bench_thread_start(gc_churn_mutator, &c[i]);
    }
    double secs = r->quick ? GC_CHURN_QUICK_S : GC_CHURN_S;
    struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    for (int i = 0; i < GC_CHURN_THREADS; i++) atomic_store_explicit(&c[i].stop, 1, memory_order_relaxed);
    uint64_t rings = 0;
    for (int i = 0; i < GC_CHURN_THREADS; i++) {
        bench_thread_join(th[i]);
        rings += c[i].rings;
    }
    if (ouro_offline_end() != 0) bench_fail("ouro_offline_end: %s", ouro_err_message());

    if (ouro_gc_callback_remove(gc_churn_callback, NULL) != 0)
        bench_fail("ouro_gc_callback_remove: %s", ouro_err_message());
    ouro_gc_get_stats(after);
    size_t n = atomic_load_explicit(&gc_churn_pauses.count, memory_order_relaxed);
    if (n == 0) bench_fail("no automatic collection in %.1f s of churn (%llu rings)", secs, (unsigned long long)rings);
    if (n > GC_CHURN_MAX_PAUSES) n = GC_CHURN_MAX_PAUSES;
    uint64_t *v = gc_churn_pauses.ns;
    bench_report(r, "us_p50", (double)gc_percentile(v, n, 50) / 1e3);
    bench_report(r, "us_p99", (double)gc_percentile(v, n, 99) / 1e3);
    bench_report(r, "us_max", (double)v[n - 1] / 1e3); /* v is sorted */
    bench_note(r, "%d mutators, %.1f s, %.1fM objects in rings of %d; %zu collections (gen0/1/2: %llu/%llu/%llu)",
               GC_CHURN_THREADS, secs, (double)rings * GC_RING / 1e6, GC_RING, n,
               (unsigned long long)(after[0].collections - before[0].collections),
               (unsigned long long)(after[1].collections - before[1].collections),
               (unsigned long long)(after[2].collections - before[2].collections));
    uint64_t stw_max = 0;
    for (int g = 0; g < OURO_GC_GENERATIONS; g++)
        if (after[g].pause_max_ns > stw_max) stw_max = after[g].pause_max_ns;
    bench_note(r, "durations from OURO_GC_STOP callbacks (start to stop); longest stop of the world "
                  "(ouro_gc_get_stats pause_max) %.0f us", (double)stw_max / 1e3);
    gc_ouro_finish(t);
    ouro_thread_detach();
}

/* ==== cpython ======================================================================================= */

/* The script: argv[1] is "live" or "garbage", argv[2] the object count. It builds the shape with
 * automatic collection off, collects once untimed, drops the ring heads (garbage), times one
 * gc.collect() and prints: ns, what the untimed and the timed collections found, the tracked objects
 * besides the shape's, and the version. cross() is gc_shape_cross(). */
static const char gc_python_script[] =
    "import gc, sys, time\n"
    "mode, n = sys.argv[1], int(sys.argv[2])\n"
    "class Node:\n"
    "    __slots__ = ('a', 'b')\n"
    "M = (1 << 64) - 1\n"
    "def cross(i, k):\n"
    "    h = ((2 * i + k) * 0x9E3779B97F4A7C15) & M\n"
    "    h ^= h >> 29\n"
    "    a = i\n"
    "    for _ in range(6):\n"
    "        if a == 0: break\n"
    "        a = (a - 1) // 2\n"
    "    d = (h >> 40) % 7\n"
    "    t = ((a + 1) << d) - 1 + ((h >> 8) & ((1 << d) - 1))\n"
    "    return t if t < n else a\n"
    "gc.disable()\n"
    "nodes = [Node() for _ in range(n)]\n"
    "if mode == 'live':\n"
    "    for i, o in enumerate(nodes):\n"
    "        j = 2 * i + 1\n"
    "        o.a = nodes[j] if j < n else nodes[cross(i, 0)]\n"
    "        o.b = nodes[j + 1] if j + 1 < n else nodes[cross(i, 1)]\n"
    "    keep = nodes[0]\n"
    "else:\n"
    "    for i, o in enumerate(nodes):\n"
    "        base, pos = i - i % 10, i % 10\n"
    "        o.a = nodes[base + (pos + 1) % 10]\n"
    "        o.b = nodes[base + (pos + 9) % 10]\n"
    "    keep = nodes[::10]\n"
    "del nodes, o\n"
    "first = gc.collect()\n"
    "others = len(gc.get_objects()) - n\n"
    "if mode != 'live': del keep\n"
    "t0 = time.perf_counter_ns()\n"
    "found = gc.collect()\n"
    "t1 = time.perf_counter_ns()\n"
    "print(t1 - t0, first, found, others, sys.version.split()[0])\n";

/* Finds name in PATH (an executable file); returns 0 with the path in buf, or -1. */
static int gc_find_in_path(const char *name, char *buf, size_t len)
{
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t dirlen = strcspn(p, ":");
        snprintf(buf, len, "%.*s/%s", (int)dirlen, dirlen ? p : ".", name);
        if (access(buf, X_OK) == 0) return 0;
        p += dirlen + (p[dirlen] == ':');
    }
    return -1;
}

/* Runs the script with mode and n under python3 and parses its line. The child's stdout is the pipe
 * to the driver, so the interpreter writes into a pipe of its own. */
static void gc_python_run(const bench_run *r, const char *mode, size_t n, uint64_t *ns, long *first, long *found)
{
    char exe[4096], count[32];
    if (gc_find_in_path("python3", exe, sizeof exe) != 0)
        bench_fail("python3 not found in PATH (Debian package python3)");
    snprintf(count, sizeof count, "%zu", n);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) bench_fail("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO); /* dup2 clears O_CLOEXEC */
    char *argv[] = { "python3", "-c", (char *)gc_python_script, (char *)mode, count, NULL };
    pid_t pid;
    int err = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err) bench_fail("posix_spawn %s: %s", exe, strerror(err));

    char line[256] = "";
    FILE *in = fdopen(fds[0], "r");
    if (!in || !fgets(line, sizeof line, in)) line[0] = '\0';
    if (in) fclose(in);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_fail("%s exited with status %d (signal %d)", exe, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                   WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    unsigned long long t;
    long others;
    char version[32];
    if (sscanf(line, "%llu %ld %ld %ld %31s", &t, first, found, &others, version) != 5)
        bench_fail("unexpected output of %s: '%.80s'", exe, line);
    *ns = t;
    bench_note(r, "cpython %s (%s), gc.collect() timed with perf_counter_ns; %ld other tracked objects",
               version, exe, others);
}

/* full-live for cpython: the timed gc.collect() must find nothing. */
static void gc_full_live_python(const bench_run *r, size_t n)
{
    uint64_t ns;
    long first, found;
    gc_python_run(r, "live", n, &ns, &first, &found);
    if (found != 0) bench_fail("python's timed gc.collect() found %ld unreachable objects, not 0", found);
    bench_report(r, "ns_per_object", (double)ns / (double)n);
}

/* garbage-cycles for cpython: the untimed collection finds nothing of the live rings (at most the
 * interpreter's own garbage), the timed one every object of them. */
static void gc_garbage_cycles_python(const bench_run *r, size_t n)
{
    uint64_t ns;
    long first, found;
    gc_python_run(r, "garbage", n, &ns, &first, &found);
    if (found != (long)n) bench_fail("python's timed gc.collect() found %ld unreachable objects, not %zu", found, n);
    bench_report(r, "ns_per_object", (double)ns / (double)n);
}

/* ==== bdwgc ========================================================================================= */

/* The part of bdwgc's struct GC_prof_stats_s (gc/gc.h, 8.x) read here. GC_get_prof_stats fills as
 * many leading fields as the size passed says, so a prefix is ABI-safe (no libgc-dev headers needed). */
typedef struct gc_bdw_prof_stats {
    size_t heapsize_full, free_bytes_full, unmapped_bytes, bytes_allocd_since_gc, allocd_bytes_before_gc,
        non_gc_bytes, gc_no, markers_m1;
} gc_bdw_prof_stats;

/* libgc's entry points, dlopen'ed: the child links nothing of it, and ouro's own children never load it. */
typedef struct gc_bdw {
    void (*set_markers_count)(unsigned);
    void (*init)(void);
    void (*start_mark_threads)(void);
    int (*get_parallel)(void);
    void (*disable)(void);
    void (*enable)(void);
    void *(*malloc)(size_t);
    void *(*malloc_uncollectable)(size_t);
    void (*free)(void *);
    void (*gcollect)(void);
    size_t (*size)(const void *);
    size_t (*get_memory_use)(void);
    size_t (*get_prof_stats)(gc_bdw_prof_stats *, size_t);
} gc_bdw;

/* The threads of this process (/proc/self/status). */
static int gc_thread_count(void)
{
    char buf[4096] = "";
    FILE *f = fopen("/proc/self/status", "r");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[got] = '\0';
    const char *line = strstr(buf, "\nThreads:");
    return line ? atoi(line + 9) : -1;
}

/* Loads libgc and initialises it with `markers` marker threads (the initiating one included). The
 * count is set with GC_set_markers_count before GC_init (a GC_MARKERS in the environment would
 * override it, so it is removed). bdwgc starts its helper markers only when the client creates its
 * first thread through GC_pthread_create, or calls GC_start_mark_threads: without that call
 * GC_MARKERS=2 marks with one thread. Fails unless GC_get_parallel() (helpers) is markers - 1. */
static void gc_bdw_open(gc_bdw *g, unsigned markers)
{
    void *lib = dlopen("libgc.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) bench_fail("dlopen libgc.so.1: %s (Debian package libgc1, or libgc-dev)", dlerror());
    struct {
        const char *name;
        void **fn;
    } syms[] = {
        { "GC_set_markers_count", (void **)&g->set_markers_count },
        { "GC_init", (void **)&g->init },
        { "GC_start_mark_threads", (void **)&g->start_mark_threads },
        { "GC_get_parallel", (void **)&g->get_parallel },
        { "GC_disable", (void **)&g->disable },
        { "GC_enable", (void **)&g->enable },
        { "GC_malloc", (void **)&g->malloc },
        { "GC_malloc_uncollectable", (void **)&g->malloc_uncollectable },
        { "GC_free", (void **)&g->free },
        { "GC_gcollect", (void **)&g->gcollect },
        { "GC_size", (void **)&g->size },
        { "GC_get_memory_use", (void **)&g->get_memory_use },
        { "GC_get_prof_stats", (void **)&g->get_prof_stats },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].fn = dlsym(lib, syms[i].name)))
            bench_fail("libgc.so.1 has no %s (a libgc without parallel marking?)", syms[i].name);
    unsetenv("GC_MARKERS");
    g->set_markers_count(markers);
    g->init();
    g->start_mark_threads();
    if (g->get_parallel() != (int)markers - 1)
        bench_fail("bdwgc runs %d helper markers, not %u (GC_get_parallel)", g->get_parallel(), markers - 1);
}

/* full-live for bdwgc: the tree in GC_malloc'd objects of two pointers, rooted in one uncollectable
 * cell; one untimed and one timed GC_gcollect(). */
static void gc_full_live_bdwgc(const bench_run *r, size_t n, unsigned markers)
{
    gc_bdw g;
    gc_bdw_open(&g, markers);
    g.disable(); /* node[] is glibc memory, which bdwgc does not scan: no collection while it holds them */
    void ***root = g.malloc_uncollectable(sizeof(void *));
    void ***node = malloc(n * sizeof *node);
    if (!root || !node) bench_fail("out of memory building the bdwgc heap");
    for (size_t i = 0; i < n; i++)
        if (!(node[i] = g.malloc(2 * sizeof(void *)))) bench_fail("GC_malloc failed at object %zu", i);
    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < 2; k++) node[i][k] = node[gc_shape_ref(i, k, n)];
    *root = node[0];
    size_t size = g.size(node[0]);
    free(node);
    g.enable();

    g.gcollect();
    uint64_t t0 = bench_now_ns();
    g.gcollect();
    uint64_t ns = bench_now_ns() - t0;

    size_t used = g.get_memory_use();
    if (used < n * size) bench_fail("bdwgc uses %zu bytes after the collections, less than %zu live objects of %zu B", used, n, size);
    gc_bdw_prof_stats st = { 0 };
    g.get_prof_stats(&st, sizeof st);
    int threads = gc_thread_count();
    if (st.markers_m1 != markers - 1 || threads != (int)markers)
        bench_fail("bdwgc reports %zu helper markers and the process has %d threads; wanted %u markers", st.markers_m1,
                   threads, markers);
    bench_report(r, "ns_per_object", (double)ns / (double)n);
    bench_note(r, "bdwgc: %u marker thread%s (GC_set_markers_count + GC_start_mark_threads), objects of %zu B "
                  "(GC_malloc(16) + the interior-pointer byte)", markers, markers > 1 ? "s" : "", size);
    *root = NULL;
    g.free(root);
}

/* ==== the cases ===================================================================================== */

/* full-live-N: one collection of n live objects, for r's subject. */
static void gc_full_live(const bench_run *r, size_t n)
{
    switch (r->subject_index) {
    case GC_OURO: gc_full_live_ouro(r, n); break;
    case GC_CPYTHON: gc_full_live_python(r, n); break;
    case GC_BDWGC: gc_full_live_bdwgc(r, n, 1); break;
    case GC_BDWGC_2: gc_full_live_bdwgc(r, n, 2); break;
    default: bench_fail("no such subject");
    }
}

static void case_full_live_1m(const bench_run *r) { gc_full_live(r, 1000000); }
static void case_full_live_4m(const bench_run *r) { gc_full_live(r, 4000000); }

static void case_garbage_cycles_1m(const bench_run *r)
{
    if (r->subject_index == GC_OURO) gc_garbage_cycles_ouro(r, 1000000);
    else gc_garbage_cycles_python(r, 1000000);
}

static void case_young_pause_100k(const bench_run *r) { case_young_pause(r, 100000); }
static void case_young_pause_1m(const bench_run *r) { case_young_pause(r, 1000000); }
static void case_young_pause_10m(const bench_run *r) { case_young_pause(r, 10000000); }

#define GC_PEERS (GC_BIT(GC_OURO) | GC_BIT(GC_CPYTHON) | GC_BIT(GC_BDWGC) | GC_BIT(GC_BDWGC_2))
#define GC_YOUNG_ABOUT "pause of ouro_gc_collect(0) after 10k young objects (half garbage), old heap of "

static const bench_case gc_cases[] = {
    { .name = "full-live-1M",
      .about = "one full collection of 1M live tracked objects (tree + cross links), per object",
      .metrics = { "ns_per_object" },
      .run = case_full_live_1m,
      .subjects = GC_PEERS },
    { .name = "full-live-4M",
      .about = "one full collection of 4M live tracked objects (tree + cross links), per object",
      .metrics = { "ns_per_object" },
      .run = case_full_live_4m,
      .subjects = GC_PEERS },
    { .name = "garbage-cycles-1M",
      .about = "the full collection that frees 1M objects in unreachable rings of 10, per object",
      .metrics = { "ns_per_object" },
      .run = case_garbage_cycles_1m,
      .subjects = GC_BIT(GC_OURO) | GC_BIT(GC_CPYTHON) },
    { .name = "young-pause-100k",
      .about = GC_YOUNG_ABOUT "100k",
      .metrics = { "us_p50", "us_p99" },
      .run = case_young_pause_100k,
      .subjects = GC_BIT(GC_OURO) | GC_BIT(GC_OURO_SO) },
    { .name = "young-pause-1M",
      .about = GC_YOUNG_ABOUT "1M",
      .metrics = { "us_p50", "us_p99" },
      .run = case_young_pause_1m,
      .subjects = GC_BIT(GC_OURO) },
    { .name = "young-pause-10M",
      .about = GC_YOUNG_ABOUT "10M",
      .metrics = { "us_p50", "us_p99" },
      .run = case_young_pause_10m,
      .subjects = GC_BIT(GC_OURO) },
    { .name = "pause-under-churn",
      .about = "durations of the automatic collections while 2 threads make and drop cyclic garbage",
      .metrics = { "us_p50", "us_p99", "us_max" },
      .run = case_pause_under_churn,
      .subjects = GC_BIT(GC_OURO) },
};

const bench_suite bench_suite_gc = {
    .name = "gc",
    .about = "the cycle collector: full collections against CPython and bdwgc, young pauses, pauses under churn",
    .subjects = gc_subjects,
    .nsubjects = GC_NSUBJECTS,
    .cases = gc_cases,
    .ncases = sizeof gc_cases / sizeof gc_cases[0],
};
