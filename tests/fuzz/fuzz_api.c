/* tests/fuzz/fuzz_api.c — a libFuzzer target that runs its input as a program over ouro's public API.
 *
 * The input is a byte-code of 4-byte ops: [thread << 5 | opcode, a, b, c]. Threads 1..4 are workers
 * (started on their first op, each with a queue of commands it runs asynchronously, so the main
 * thread's ops and the workers' overlap); 0 and 5..7 are the main thread. Operands are bytes, every
 * count and depth is capped (FZ_*), so no input loops for long or holds unbounded memory. A fork op
 * takes the ops that follow it as the child's program.
 *
 * State: each thread has its own table of object slots; a shared table (fz_shared, under
 * fz_shared_mu) passes references between threads. Under that mutex a thread only increfs and swaps
 * pointers, never a call that may reach a safepoint: a thread blocked on the mutex while online would
 * otherwise keep a stop of the world waiting for ever. Every blocking wait of the harness (queues,
 * joins, a fork child) runs inside an offline section for the same reason.
 *
 * Checks: every API result (NULL / -1 only with an error set, and only an error the op may give;
 * OURO_ERR_NOMEM whenever a fault may be armed); canaries and once-only counters in the user type's
 * dealloc and finalizer, in weakref, deferred and gc callbacks. Oracles after each program: workers
 * joined, every reference dropped, full collections until nothing is found, per-type live counts
 * back to the program's start, ouro_alloc_check() clean, every deferred callback run exactly once
 * after ouro_defer_barrier(), no fork child failed. A failed check prints one "ouro-fuzz: FAIL" line
 * and aborts (the fuzzer keeps the input). A watchdog aborts an input that runs longer than
 * OURO_FUZZ_TIMEOUT seconds (default 30), naming each thread's last op.
 *
 * OURO_FUZZ_SKIP (environment): a comma-separated list of op variants to turn into no-ops, to fuzz
 * past a defect that is known and open (names: fz_variant_names below). docs/building.md, "Fuzzing". */
#include <ouro.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- bounds ----------------------------------------------------------------------------------------- */

#define FZ_SLOTS 16          /* object slots per thread */
#define FZ_SHARED 8          /* slots of the shared table */
#define FZ_WORKERS 4
#define FZ_QUEUE 32          /* commands queued per worker */
#define FZ_MAX_OPS 256       /* ops per program (the rest of a longer input is ignored) */
#define FZ_MAX_SPAWNS 12     /* threads started per program (workers, exiters, stoppers) */
#define FZ_BUDGET 40000      /* objects made by chains and churn per program */
#define FZ_CHAIN_MAX 5000    /* links of a deep chain */
#define FZ_TUPLE_CHAIN 200   /* nested tuples hash and compare recursively: kept shallow */
#define FZ_RAW 8             /* raw ouro_alloc blocks per thread */
#define FZ_DEFERS 512        /* deferred callbacks per program */
#define FZ_WEAKREFS 64       /* weakrefs with a callback per program */
#define FZ_GC_CBS 4          /* distinct gc callback args */
#define FZ_CHILD_OPS 8       /* ops of a fork child's program */
#define FZ_CHILD_TIMEOUT_S 10

#define FZ_CANARY 0x6f75726f66757a7aull /* "ourofuzz" */
#define FZ_DEAD 0xdeaddeaddeaddeadull

/* ---- failure reporting --------------------------------------------------------------------------------- */

/* One thread's harness state: its slots and raw blocks are read and written by that thread only. */
typedef struct fz_ctx {
    int id; /* 0 main, 1..4 workers, 5 fork child, 6 exiter, 7 stopper */
    bool attached;
    ouro_object *slot[FZ_SLOTS];
    unsigned char *raw[FZ_RAW];
    size_t raw_size[FZ_RAW];
} fz_ctx;

static _Thread_local fz_ctx *fz_self;
static _Thread_local const char *fz_where = "start";
/* Each thread's last op (index << 8 | opcode), for the hang report; relaxed, diagnostics only. */
static atomic_uint fz_trace[8];

__attribute__((noreturn, format(printf, 1, 2))) static void fz_fail(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ouro-fuzz: FAIL [pid %d, thread %d, op %s]: %s\n", (int)getpid(), fz_self ? fz_self->id : -1,
            fz_where, msg);
    fflush(stderr);
    abort();
}

#define FZ_CHECK(cond, ...) \
    do {                    \
        if (!(cond)) fz_fail(__VA_ARGS__); \
    } while (0)

/* ---- result checks --------------------------------------------------------------------------------------- */

/* Nonzero while a fault may be armed (from the op that armed it to the end of the program): any call
 * may then fail with OURO_ERR_NOMEM. */
static atomic_int fz_faults;

#define E(code) (1u << (code))
#define E_NONE 0u

/* A call failed: its error must be set and be one it may give (allowed, or NOMEM under a fault). */
static void fz_failed(unsigned allowed, const char *what) {
    ouro_err e = ouro_err_occurred();
    if (e == OURO_OK) fz_fail("%s failed without setting an error", what);
    if (!(allowed & E(e)) && !(e == OURO_ERR_NOMEM && atomic_load_explicit(&fz_faults, memory_order_relaxed)))
        fz_fail("%s failed: error %d: %s", what, (int)e, ouro_err_message());
    ouro_err_clear();
}

static ouro_object *fz_obj(ouro_object *o, unsigned allowed, const char *what) {
    if (!o) fz_failed(allowed, what);
    return o;
}

static int fz_rc(int r, unsigned allowed, const char *what) {
    if (r == -1) fz_failed(allowed, what);
    else if (r != 0 && r != 1) fz_fail("%s returned %d", what, r);
    return r;
}

/* An int call that must fail with exactly the error code. */
static void fz_refused(int r, ouro_err code, const char *what) {
    if (r != -1) fz_fail("%s returned %d, expected -1 with error %d", what, r, (int)code);
    if (ouro_err_occurred() != code) fz_fail("%s: error %d (%s), expected %d", what, (int)ouro_err_occurred(), ouro_err_message(), (int)code);
    ouro_err_clear();
}

/* ---- op variants that can be skipped (OURO_FUZZ_SKIP) --------------------------------------------------- */

enum {
    FZ_V_FORK,
    FZ_V_FINI,
    FZ_V_FAIL_OS_MAP,
    FZ_V_FAIL_MALLOC,
    FZ_V_STOP_UNATTACHED,
    FZ_V_STOP_UNATTACHED_API,
    FZ_V_STOP_UNATTACHED_EXIT,
    FZ_V_QUERY_IN_DEALLOC,
    FZ_V_SIZEOF_SINGLETONS,
    FZ_V_GC_CALLBACKS,
    FZ_V_COUNT
};
static const char *const fz_variant_names[FZ_V_COUNT] = {
    "fork", "fini", "fail-os-map", "fail-malloc", "stop-unattached", "stop-unattached-api",
    "stop-unattached-exit", "query-in-dealloc", "sizeof-singletons", "gc-callbacks",
};
static bool fz_skip[FZ_V_COUNT]; /* written once, before any worker starts */

static void fz_parse_skip(void) {
    const char *s = getenv("OURO_FUZZ_SKIP");
    if (!s) return;
    for (int v = 0; v < FZ_V_COUNT; v++) {
        size_t n = strlen(fz_variant_names[v]);
        for (const char *p = s; (p = strstr(p, fz_variant_names[v])) != NULL; p += n)
            if ((p == s || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) fz_skip[v] = true;
    }
}

/* ---- the user types ------------------------------------------------------------------------------------- */

/* A GC type with three slots, a finalizer and an identity hash. mode (atomic: the finalizer and
 * dealloc may run on any thread) picks extra behaviour. */
typedef struct fz_node {
    ouro_object head;
    uint64_t canary;       /* FZ_CANARY while alive, FZ_DEAD after dealloc */
    atomic_int finalized;  /* finalizer runs: at most one (PEP 442) */
    atomic_int mode;       /* FZ_MODE_* */
} fz_node;

enum { FZ_MODE_PLAIN, FZ_MODE_RESURRECT, FZ_MODE_QUERY };

/* A non-GC type without slots (a non-GC type holding references could make uncollectable cycles). */
typedef struct fz_blob {
    ouro_object head;
    uint64_t canary;
} fz_blob;

static ouro_type *fz_node_type, *fz_blob_type;
static const char *const fz_node_slots[] = {"left", "right", "extra", NULL};
/* A resurrected node, held until the epilogue drops it. */
static _Atomic(ouro_object *) fz_resurrected;

static void fz_node_finalize(ouro_object *self) {
    fz_node *n = (fz_node *)self;
    FZ_CHECK(n->canary == FZ_CANARY, "finalizer of node %p with canary %#" PRIx64, (void *)self, n->canary);
    FZ_CHECK(atomic_fetch_add(&n->finalized, 1) == 0, "finalizer ran twice on node %p", (void *)self);
    if (atomic_load_explicit(&n->mode, memory_order_relaxed) == FZ_MODE_RESURRECT) {
        ouro_object *old = atomic_exchange(&fz_resurrected, ouro_newref(self));
        ouro_xdecref(old);
    }
}

static void fz_node_dealloc(ouro_object *self) {
    fz_node *n = (fz_node *)self;
    FZ_CHECK(n->canary == FZ_CANARY, "dealloc of node %p with canary %#" PRIx64 " (freed twice?)", (void *)self, n->canary);
    n->canary = FZ_DEAD;
    if (atomic_load_explicit(&n->mode, memory_order_relaxed) == FZ_MODE_QUERY) {
        /* A query from a dealloc (issue 14, defect 1): refused inside a collection, else a list that
         * must hold no object whose free is pending. */
        ouro_object *l = fz_obj(ouro_gc_get_objects(0), E(OURO_ERR_STATE), "ouro_gc_get_objects in a dealloc");
        ouro_xdecref(l);
    }
}

static int64_t fz_node_hash(ouro_object *self) { return ouro_hash_pointer(self); }

static void fz_blob_dealloc(ouro_object *self) {
    fz_blob *b = (fz_blob *)self;
    FZ_CHECK(b->canary == FZ_CANARY, "dealloc of blob %p with canary %#" PRIx64, (void *)self, b->canary);
    b->canary = FZ_DEAD;
}

static ouro_object *fz_node_new(int mode) {
    ouro_object *o = fz_obj(ouro_new(fz_node_type), E_NONE, "ouro_new(node)");
    if (!o) return NULL;
    fz_node *n = (fz_node *)o;
    n->canary = FZ_CANARY;
    atomic_store_explicit(&n->mode, mode, memory_order_relaxed);
    return o;
}

static ouro_object *fz_blob_new(void) {
    ouro_object *o = fz_obj(ouro_new(fz_blob_type), E_NONE, "ouro_new(blob)");
    if (o) ((fz_blob *)o)->canary = FZ_CANARY;
    return o;
}

static bool fz_is_node(const ouro_object *o) { return o && o->type == fz_node_type; }

/* ---- strings: a fixed set of texts, interned once at start-up ------------------------------------------- */

/* Interned strings are immortal: interning only these texts (interned before the first program) keeps
 * the str live count of each program balanced. */
#define FZ_TEXTS 16
static const char *const fz_texts[FZ_TEXTS] = {
    "k0", "k1", "key", "value", "", "caf\xc3\xa9", "\xe2\x82\xac", "a\tb", "name", "x",
    "long-key-0123456789", "\xf0\x9f\x90\x8d", "y", "z", "__init__", "k15",
};
static ouro_object *fz_names[FZ_TEXTS];

/* ---- per-program records --------------------------------------------------------------------------------- */

static atomic_int fz_defer_runs[FZ_DEFERS], fz_defer_expected[FZ_DEFERS];
static atomic_int fz_defer_next;
static atomic_int fz_wr_runs[FZ_WEAKREFS];
static atomic_int fz_wr_next;
static atomic_long fz_budget;
static atomic_int fz_spawns;
/* gc callbacks: registrations of (fz_gc_callback, &fz_cb_reg[i]), counted by the main thread before
 * an add and after a remove returns, so a callback that finds 0 ran after its removal returned. */
static atomic_int fz_cb_reg[FZ_GC_CBS];
static int fz_cb_total; /* main's */
static atomic_long fz_cb_calls;

static void fz_defer_cb(void *arg) {
    atomic_int *runs = arg;
    FZ_CHECK(atomic_fetch_add(runs, 1) == 0, "deferred callback %td ran twice", runs - fz_defer_runs);
}

/* Makes and drops an object from the reclaimer (issue 14, defect 5's trigger). */
static void fz_defer_cb_obj(void *arg) {
    fz_defer_cb(arg);
    ouro_object *o = fz_obj(ouro_int_from(123456789), E_NONE, "ouro_int_from in a deferred callback");
    ouro_xdecref(o);
}

static void fz_weakref_cb(ouro_object *wr, void *arg) {
    atomic_int *runs = arg;
    FZ_CHECK(atomic_fetch_add(runs, 1) == 0, "weakref callback %td ran twice", runs - fz_wr_runs);
    FZ_CHECK(ouro_is_type(wr, &ouro_weakref_type), "weakref callback got a %s", ouro_type_name(wr));
    ouro_object *r = ouro_weakref_get(wr);
    FZ_CHECK(r == NULL, "weakref_get in its callback returned a live referent");
    if (ouro_err_occurred()) fz_failed(E_NONE, "ouro_weakref_get in a callback");
}

static void fz_gc_callback(int phase, const ouro_gc_info *info, void *arg) {
    atomic_int *reg = arg;
    FZ_CHECK(atomic_load(reg) > 0, "gc callback %td ran after ouro_gc_callback_remove returned", reg - fz_cb_reg);
    FZ_CHECK(info && (phase == OURO_GC_START || phase == OURO_GC_STOP) && info->generation >= 0 &&
                 info->generation < OURO_GC_GENERATIONS,
             "gc callback: phase %d generation %d", phase, info ? info->generation : -1);
    FZ_CHECK(phase == OURO_GC_STOP || (info->collected == 0 && info->uncollectable == 0 && info->duration_ns == 0),
             "gc callback: start with collected %ld", info->collected);
    atomic_fetch_add_explicit(&fz_cb_calls, 1, memory_order_relaxed);
}

/* ---- small helpers ---------------------------------------------------------------------------------------- */

static void fz_sleep_us(unsigned us) {
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double fz_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Takes n units of the program's budget: false (nothing taken) when it is spent. */
static bool fz_take_budget(long n) {
    if (atomic_fetch_sub(&fz_budget, n) >= n) return true;
    atomic_fetch_add(&fz_budget, n);
    return false;
}

static void fz_attach(fz_ctx *c) {
    if (c->attached) return;
    if (fz_rc(ouro_thread_attach(), E_NONE, "ouro_thread_attach") == 0) c->attached = true;
}

/* Offline around a blocking wait of the harness (no-op for a thread that is not attached). */
static void fz_offline_begin(fz_ctx *c) {
    if (c->attached) fz_rc(ouro_offline_begin(), E_NONE, "ouro_offline_begin");
}
static void fz_offline_end(fz_ctx *c) {
    if (c->attached) fz_rc(ouro_offline_end(), E_NONE, "ouro_offline_end");
}

static void fz_join(fz_ctx *c, pthread_t t) {
    fz_offline_begin(c);
    pthread_join(t, NULL);
    fz_offline_end(c);
}

static bool fz_spawn(pthread_t *t, void *(*fn)(void *), void *arg) {
    if (atomic_fetch_add(&fz_spawns, 1) >= FZ_MAX_SPAWNS) return false;
    FZ_CHECK(pthread_create(t, NULL, fn, arg) == 0, "pthread_create");
    return true;
}

/* ---- the shared table ------------------------------------------------------------------------------------- */

static pthread_mutex_t fz_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static ouro_object *fz_shared[FZ_SHARED]; /* under fz_shared_mu: only increfs and pointer swaps */

static ouro_object *fz_shared_get(unsigned j) {
    pthread_mutex_lock(&fz_shared_mu);
    ouro_object *o = ouro_xnewref(fz_shared[j % FZ_SHARED]);
    pthread_mutex_unlock(&fz_shared_mu);
    return o;
}

/* Stores o (a new reference taken; NULL empties the slot); the old one is dropped outside the lock. */
static void fz_shared_put(unsigned j, ouro_object *o) {
    ouro_xincref(o);
    pthread_mutex_lock(&fz_shared_mu);
    ouro_object *old = fz_shared[j % FZ_SHARED];
    fz_shared[j % FZ_SHARED] = o;
    pthread_mutex_unlock(&fz_shared_mu);
    ouro_xdecref(old);
}

/* ---- making objects ----------------------------------------------------------------------------------------- */

static ouro_object *fz_int_small(unsigned v) { return ouro_int_from((int64_t)(v % 262) - 5); }

/* A new reference to a value to store: an int, a slot's object, an interned name or None. */
static ouro_object *fz_value(fz_ctx *c, unsigned v) {
    switch (v & 3) {
    case 0: return fz_obj(ouro_int_from(100000 + (int64_t)v), E_NONE, "ouro_int_from");
    case 1: return ouro_newref(c->slot[(v >> 2) % FZ_SLOTS] ? c->slot[(v >> 2) % FZ_SLOTS] : OURO_NONE);
    case 2: return ouro_newref(fz_names[(v >> 2) % FZ_TEXTS]);
    default: return OURO_NONE;
    }
}

static ouro_object *fz_make_weakref(ouro_object *referent, bool with_callback) {
    if (!referent) return NULL;
    atomic_int *rec = NULL;
    if (with_callback) {
        int i = atomic_fetch_add(&fz_wr_next, 1);
        if (i < FZ_WEAKREFS) rec = &fz_wr_runs[i];
    }
    return fz_obj(ouro_weakref_new(referent, rec ? fz_weakref_cb : NULL, rec), E_NONE, "ouro_weakref_new");
}

/* A new object of kind (0..15) with a variant byte v; arg is another slot's object (may be NULL).
 * NULL when the kind needs an argument it lacks, or the call failed as it may. */
static ouro_object *fz_make(fz_ctx *c, unsigned kind, unsigned v, ouro_object *arg) {
    switch (kind % 16) {
    case 0: { /* a small int: immortal, never allocated */
        ouro_object *o = fz_obj(fz_int_small(v), E_NONE, "ouro_int_from(small)");
        FZ_CHECK(o && ouro_is_immortal(o), "small int %d is not immortal", (int)(v % 262) - 5);
        return o;
    }
    case 1: return fz_obj(ouro_int_from(1000 + (int64_t)v * 7919), E_NONE, "ouro_int_from");
    case 2: return fz_obj(ouro_float_from(v == 255 ? NAN : v * 0.5 - 3), E_NONE, "ouro_float_from");
    case 3:
        if ((v & 0xc0) == 0xc0) { /* invalid UTF-8 is refused */
            ouro_object *o = ouro_str_from_utf8("a\xc3\x28", 3);
            FZ_CHECK(!o && ouro_err_occurred() == OURO_ERR_VALUE, "invalid UTF-8 accepted");
            ouro_err_clear();
            return NULL;
        }
        if (v & 0x80) return fz_obj(ouro_str_from_cstr(fz_texts[v % FZ_TEXTS]), E_NONE, "ouro_str_from_cstr");
        return fz_obj(ouro_str_from_format("s%u-%s", v, fz_texts[v % FZ_TEXTS]), E_NONE, "ouro_str_from_format");
    case 4: {
        unsigned char buf[40];
        for (unsigned i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(v * 31 + i);
        return fz_obj(ouro_bytes_new(buf, v % sizeof buf), E_NONE, "ouro_bytes_new");
    }
    case 5:
        if (v % 3 == 0) return fz_obj(ouro_tuple_new(0), E_NONE, "ouro_tuple_new(0)");
        if (v % 3 == 1) return fz_obj(ouro_tuple_pack(1, arg ? arg : OURO_NONE), E_NONE, "ouro_tuple_pack");
        return fz_obj(ouro_tuple_pack(2, arg ? arg : OURO_NONE, OURO_TRUE), E_NONE, "ouro_tuple_pack");
    case 6: return fz_obj(ouro_list_new(v % 8), E_NONE, "ouro_list_new");
    case 7: return fz_obj(ouro_dict_new(), E_NONE, "ouro_dict_new");
    case 8: return fz_obj(ouro_set_new(), E_NONE, "ouro_set_new");
    case 9: return fz_make_weakref(arg, false);
    case 10: return fz_make_weakref(arg, true);
    case 11: {
        int mode = FZ_MODE_PLAIN;
        if (v % 8 == 1) mode = FZ_MODE_RESURRECT;
        else if (v % 64 == 2 && !fz_skip[FZ_V_QUERY_IN_DEALLOC]) mode = FZ_MODE_QUERY;
        return fz_node_new(mode);
    }
    case 12: return fz_blob_new();
    case 13: { /* an interned text: the object interned at start-up, whatever the path */
        unsigned i = v % FZ_TEXTS;
        ouro_object *o;
        if (v & 0x10) {
            ouro_object *s = fz_obj(ouro_str_from_cstr(fz_texts[i]), E_NONE, "ouro_str_from_cstr");
            if (!s) return NULL;
            o = fz_obj(ouro_str_intern(s), E_NONE, "ouro_str_intern");
            FZ_CHECK(!o || ouro_str_is_interned(s) == (s == fz_names[i]), "ouro_str_is_interned of a copy");
            ouro_decref(s);
        } else {
            o = fz_obj(ouro_str_intern_cstr(fz_texts[i]), E_NONE, "ouro_str_intern_cstr");
        }
        FZ_CHECK(!o || o == fz_names[i], "interning '%s' gave %p, not %p", fz_texts[i], (void *)o, (void *)fz_names[i]);
        FZ_CHECK(!o || ouro_str_is_interned(o) == 1, "an interned str is not interned");
        return o;
    }
    case 14: {
        static ouro_object *const singletons[] = {OURO_NONE, OURO_TRUE, OURO_FALSE};
        ouro_object *o = singletons[v % 3];
        if (!fz_skip[FZ_V_SIZEOF_SINGLETONS]) {
            size_t n = ouro_sizeof(o);
            FZ_CHECK(n != 0 && n != (size_t)-1, "ouro_sizeof(%s) = %zu (%s)", ouro_type_name(o), n, ouro_err_message());
        }
        return o;
    }
    default: /* a copy of arg */
        if (!arg) return NULL;
        if (ouro_is_type(arg, &ouro_list_type))
            return fz_obj(v & 1 ? ouro_list_copy(arg) : ouro_list_to_tuple(arg), E_NONE, "ouro_list_copy/to_tuple");
        if (ouro_is_type(arg, &ouro_dict_type)) return fz_obj(ouro_dict_copy(arg), E_NONE, "ouro_dict_copy");
        if (ouro_is_type(arg, &ouro_set_type)) return fz_obj(ouro_set_copy(arg), E_NONE, "ouro_set_copy");
        if (ouro_is_type(arg, &ouro_str_type)) return fz_obj(ouro_str_concat(arg, arg), E_NONE, "ouro_str_concat");
        if (ouro_is_type(arg, &ouro_bytes_type)) return fz_obj(ouro_bytes_concat(arg, arg), E_NONE, "ouro_bytes_concat");
        return ouro_newref(arg);
    }
}

/* Hashability as the types define it: a key that may be refused with OURO_ERR_TYPE (a container, a
 * tuple that may hold one, a weakref whose referent died before its hash was taken). */
static unsigned fz_key_errors(const ouro_object *k) {
    if (ouro_is_type(k, &ouro_list_type) || ouro_is_type(k, &ouro_dict_type) || ouro_is_type(k, &ouro_set_type) ||
        ouro_is_type(k, &ouro_tuple_type) || ouro_is_type(k, &ouro_weakref_type))
        return E(OURO_ERR_TYPE);
    return E_NONE;
}

/* ---- linking: what makes cycles ------------------------------------------------------------------------ */

static void fz_link(fz_ctx *c, ouro_object *d, ouro_object *s, unsigned how) {
    if (!d) return;
    if (ouro_is_type(d, &ouro_list_type)) {
        switch (how % 5) {
        case 0: if (s) fz_rc(ouro_list_append(d, s), E_NONE, "ouro_list_append"); break;
        case 1: if (s) fz_rc(ouro_list_insert(d, (ptrdiff_t)(how >> 3) - 16, s), E_NONE, "ouro_list_insert"); break;
        case 2: if (s) fz_rc(ouro_list_set(d, how & 8 ? -1 : 0, s), E(OURO_ERR_INDEX), "ouro_list_set"); break;
        case 3:
            if (s && ouro_list_size(d) < 64)
                fz_rc(ouro_list_extend(d, s),
                      ouro_is_type(s, &ouro_list_type) || ouro_is_type(s, &ouro_tuple_type) ? E_NONE : E(OURO_ERR_TYPE),
                      "ouro_list_extend");
            break;
        default: fz_rc(ouro_list_append(d, d), E_NONE, "ouro_list_append(self)"); break;
        }
    } else if (ouro_is_type(d, &ouro_dict_type)) {
        switch (how % 4) {
        case 0: if (s) fz_rc(ouro_dict_set(d, fz_names[(how >> 2) % FZ_TEXTS], s), E_NONE, "ouro_dict_set"); break;
        case 1: if (s) fz_rc(ouro_dict_set(d, s, d), fz_key_errors(s), "ouro_dict_set(key, self)"); break;
        case 2:
            if (s) ouro_xdecref(fz_obj(ouro_dict_setdefault(d, fz_names[(how >> 2) % FZ_TEXTS], s), E_NONE, "ouro_dict_setdefault"));
            break;
        default:
            if (s) fz_rc(ouro_dict_update(d, s), ouro_is_type(s, &ouro_dict_type) ? E_NONE : E(OURO_ERR_TYPE), "ouro_dict_update");
            break;
        }
    } else if (ouro_is_type(d, &ouro_set_type)) {
        switch (how % 3) {
        case 0: if (s) fz_rc(ouro_set_add(d, s), fz_key_errors(s), "ouro_set_add"); break;
        case 1: if (s) fz_rc(ouro_set_update(d, s), ouro_is_type(s, &ouro_set_type) ? E_NONE : E(OURO_ERR_TYPE), "ouro_set_update"); break;
        default: fz_refused(ouro_set_add(d, d), OURO_ERR_TYPE, "ouro_set_add(self)"); break;
        }
    } else if (fz_is_node(d)) {
        if (how % 8 == 7) fz_refused(ouro_slot_set(d, 3, s), OURO_ERR_INDEX, "ouro_slot_set(3)");
        else fz_rc(ouro_slot_set(d, how % 3, s), E_NONE, "ouro_slot_set");
    } else if (ouro_is_type(d, &ouro_tuple_type) && s && !ouro_is_type(s, &ouro_tuple_type)) {
        /* Allowed only while the tuple is unshared (count 1); never a tuple item (no tuple cycles:
         * tuple hashing and comparison recurse). */
        size_t n = ouro_tuple_size(d);
        fz_rc(ouro_tuple_set_item_steal(d, n ? how % n : 0, ouro_newref(s)), E(OURO_ERR_STATE) | E(OURO_ERR_INDEX),
              "ouro_tuple_set_item_steal");
    }
    (void)c;
}

/* ---- poking: one read or mutation of an object, by its type --------------------------------------------- */

static void fz_poke_list(fz_ctx *c, ouro_object *l, unsigned how, unsigned v) {
    switch (how % 12) {
    case 0: {
        ouro_object *x = fz_obj(ouro_int_from(v), E_NONE, "ouro_int_from");
        if (x) fz_rc(ouro_list_append(l, x), E_NONE, "ouro_list_append");
        ouro_xdecref(x);
        break;
    }
    case 1: {
        ouro_object *x = fz_value(c, v);
        if (x) fz_rc(ouro_list_append(l, x), E_NONE, "ouro_list_append");
        ouro_xdecref(x);
        break;
    }
    case 2: ouro_xdecref(fz_obj(ouro_list_pop(l, -1), E(OURO_ERR_INDEX), "ouro_list_pop")); break;
    case 3: fz_rc(ouro_list_del(l, 0), E(OURO_ERR_INDEX), "ouro_list_del"); break;
    case 4: {
        ouro_object *x = fz_value(c, v);
        if (x) fz_rc(ouro_list_set(l, (ptrdiff_t)(v % 4) - 2, x), E(OURO_ERR_INDEX), "ouro_list_set");
        ouro_xdecref(x);
        break;
    }
    case 5: ouro_xdecref(fz_obj(ouro_list_get(l, (ptrdiff_t)(v % 6) - 3), E(OURO_ERR_INDEX), "ouro_list_get")); break;
    case 6: {
        size_t pos = 0;
        ouro_object *item;
        int r;
        for (int n = 0; n < 10000 && (r = ouro_list_iter_next(l, &pos, &item)) == 1; n++) ouro_decref(item);
        break;
    }
    case 7:
        FZ_CHECK(ouro_list_size(l) != (size_t)-1 && ouro_list_capacity(l) != (size_t)-1, "ouro_list_size");
        break;
    case 8: { /* comparisons with an int only: list equality recurses */
        ouro_object *x = fz_int_small(v);
        fz_rc(ouro_list_contains(l, x), E_NONE, "ouro_list_contains");
        if (ouro_list_index(l, x) == -1) fz_failed(E(OURO_ERR_VALUE), "ouro_list_index");
        fz_rc(ouro_list_remove(l, x), E(OURO_ERR_VALUE), "ouro_list_remove");
        break;
    }
    case 9:
        ouro_xdecref(fz_obj(ouro_list_copy(l), E_NONE, "ouro_list_copy"));
        ouro_xdecref(fz_obj(ouro_list_to_tuple(l), E_NONE, "ouro_list_to_tuple"));
        break;
    case 10: fz_rc(ouro_list_reverse(l), E_NONE, "ouro_list_reverse"); break;
    default:
        if (v % 4 == 0) fz_rc(ouro_list_clear(l), E_NONE, "ouro_list_clear");
        else if (ouro_list_size(l) < 64) fz_rc(ouro_list_extend(l, l), E_NONE, "ouro_list_extend(self)");
        break;
    }
}

static void fz_poke_dict(fz_ctx *c, ouro_object *d, unsigned how, unsigned v) {
    ouro_object *key = fz_names[v % FZ_TEXTS], *out = NULL;
    switch (how % 10) {
    case 0: {
        ouro_object *x = fz_value(c, v >> 4);
        if (x) fz_rc(ouro_dict_set(d, key, x), E_NONE, "ouro_dict_set");
        ouro_xdecref(x);
        break;
    }
    case 1: {
        ouro_object *k = fz_obj(ouro_int_from(100000 + v), E_NONE, "ouro_int_from");
        if (k) fz_rc(ouro_dict_set(d, k, d), E_NONE, "ouro_dict_set(int, self)");
        ouro_xdecref(k);
        break;
    }
    case 2:
        fz_rc(ouro_dict_get_ref(d, key, &out), E_NONE, "ouro_dict_get_ref");
        ouro_xdecref(out);
        break;
    case 3: ouro_xdecref(fz_obj(ouro_dict_get(d, key), E(OURO_ERR_KEY), "ouro_dict_get")); break;
    case 4: fz_rc(ouro_dict_del(d, key), E(OURO_ERR_KEY), "ouro_dict_del"); break;
    case 5: ouro_xdecref(fz_obj(ouro_dict_pop(d, key, v & 1 ? OURO_NONE : NULL), v & 1 ? E_NONE : E(OURO_ERR_KEY), "ouro_dict_pop")); break;
    case 6: {
        size_t pos = 0;
        ouro_object *k, *val;
        for (int n = 0; n < 10000 && ouro_dict_next(d, &pos, &k, &val) == 1; n++) {
            ouro_decref(k);
            ouro_decref(val);
        }
        break;
    }
    case 7: {
        ouro_dict_table_t t;
        fz_rc(ouro_dict_contains(d, key), E_NONE, "ouro_dict_contains");
        FZ_CHECK(ouro_dict_size(d) != (size_t)-1, "ouro_dict_size");
        fz_rc(ouro_dict_table_info(d, &t), E_NONE, "ouro_dict_table_info");
        break;
    }
    case 8:
        ouro_xdecref(fz_obj(ouro_dict_copy(d), E_NONE, "ouro_dict_copy"));
        fz_rc(ouro_dict_update(d, d), E_NONE, "ouro_dict_update(self)");
        break;
    default:
        if (v % 4 == 0) fz_rc(ouro_dict_clear(d), E_NONE, "ouro_dict_clear");
        else {
            ouro_object *x = fz_obj(ouro_list_new(0), E_NONE, "ouro_list_new");
            if (x) ouro_xdecref(fz_obj(ouro_dict_setdefault(d, key, x), E_NONE, "ouro_dict_setdefault"));
            ouro_xdecref(x);
        }
        break;
    }
}

static void fz_poke_set(fz_ctx *c, ouro_object *s, unsigned how, unsigned v) {
    ouro_object *key = fz_names[v % FZ_TEXTS];
    switch (how % 8) {
    case 0: {
        ouro_object *x = fz_value(c, v >> 4);
        if (x) fz_rc(ouro_set_add(s, x), fz_key_errors(x), "ouro_set_add");
        ouro_xdecref(x);
        break;
    }
    case 1: fz_rc(ouro_set_add(s, key), E_NONE, "ouro_set_add"); break;
    case 2: fz_rc(ouro_set_discard(s, key), E_NONE, "ouro_set_discard"); break;
    case 3: fz_rc(ouro_set_remove(s, key), E(OURO_ERR_KEY), "ouro_set_remove"); break;
    case 4: ouro_xdecref(fz_obj(ouro_set_pop(s), E(OURO_ERR_KEY), "ouro_set_pop")); break;
    case 5: {
        size_t pos = 0;
        ouro_object *k;
        for (int n = 0; n < 10000 && ouro_set_next(s, &pos, &k) == 1; n++) ouro_decref(k);
        fz_rc(ouro_set_contains(s, key), E_NONE, "ouro_set_contains");
        break;
    }
    case 6:
        ouro_xdecref(fz_obj(ouro_set_union(s, s), E_NONE, "ouro_set_union"));
        ouro_xdecref(fz_obj(ouro_set_intersection(s, s), E_NONE, "ouro_set_intersection"));
        ouro_xdecref(fz_obj(ouro_set_difference(s, s), E_NONE, "ouro_set_difference"));
        FZ_CHECK(ouro_set_eq(s, s) == 1, "a set is not equal to itself");
        break;
    default:
        if (v % 4 == 0) fz_rc(ouro_set_clear(s), E_NONE, "ouro_set_clear");
        else fz_rc(ouro_set_update(s, s), E_NONE, "ouro_set_update(self)");
        break;
    }
}

static void fz_poke_node(fz_ctx *c, ouro_object *o, unsigned how, unsigned v) {
    switch (how % 6) {
    case 0: {
        ouro_object *x = v & 0x80 ? NULL : fz_value(c, v);
        fz_rc(ouro_slot_set(o, v % 3, x), E_NONE, "ouro_slot_set");
        ouro_xdecref(x);
        break;
    }
    case 1: {
        ouro_object *x = ouro_slot_get(o, v % 3); /* NULL without an error: an empty slot */
        if (!x && ouro_err_occurred()) fz_failed(E_NONE, "ouro_slot_get");
        ouro_xdecref(x);
        break;
    }
    case 2: {
        ouro_object *x = fz_node_new(FZ_MODE_PLAIN);
        if (x) {
            fz_rc(ouro_slot_set(x, 0, o), E_NONE, "ouro_slot_set");
            fz_rc(ouro_slot_set(o, v % 3, x), E_NONE, "ouro_slot_set"); /* a two-node cycle */
        }
        ouro_xdecref(x);
        break;
    }
    case 3:
        FZ_CHECK(ouro_refcount(o) >= 1 && ouro_refcount(o) != (size_t)-1, "refcount of a held node: %zu", ouro_refcount(o));
        FZ_CHECK(ouro_sizeof(o) >= sizeof(fz_node), "ouro_sizeof(node)");
        FZ_CHECK(ouro_weakref_count(o) >= 0, "ouro_weakref_count");
        break;
    case 4: {
        int t = ouro_gc_is_tracked(o), f = ouro_gc_is_finalized(o);
        FZ_CHECK((t == 0 || t == 1) && (f == 0 || f == 1), "is_tracked %d is_finalized %d", t, f);
        FZ_CHECK(ouro_hash(o) == ouro_hash_pointer(o), "a node's hash is not its identity");
        break;
    }
    default: {
        ouro_object *l = fz_obj(ouro_gc_get_referents(o), E_NONE, "ouro_gc_get_referents");
        FZ_CHECK(!l || ouro_list_size(l) <= 3, "a node has %zu referents", ouro_list_size(l));
        ouro_xdecref(l);
        break;
    }
    }
}

static void fz_poke_scalar(fz_ctx *c, ouro_object *o, unsigned how, unsigned v) {
    if (ouro_is_type(o, &ouro_int_type)) {
        ouro_object *b = fz_int_small(v), *r;
        int cmp;
        switch (how % 4) {
        case 0: r = fz_obj(ouro_int_add(o, b), E(OURO_ERR_OVERFLOW), "ouro_int_add"); break;
        case 1: r = fz_obj(ouro_int_floordiv(o, b), E(OURO_ERR_VALUE) | E(OURO_ERR_OVERFLOW), "ouro_int_floordiv"); break;
        case 2: r = fz_obj(ouro_int_lshift(o, b), E(OURO_ERR_VALUE) | E(OURO_ERR_OVERFLOW), "ouro_int_lshift"); break;
        default:
            fz_rc(ouro_int_compare(o, b, &cmp), E_NONE, "ouro_int_compare");
            r = fz_obj(ouro_repr(o), E_NONE, "ouro_repr(int)");
            break;
        }
        ouro_xdecref(r);
    } else if (ouro_is_type(o, &ouro_float_type)) {
        ouro_object *r = how & 1 ? fz_obj(ouro_float_truediv(o, fz_int_small(v)), E(OURO_ERR_VALUE), "ouro_float_truediv")
                                 : fz_obj(ouro_repr(o), E_NONE, "ouro_repr(float)");
        ouro_xdecref(r);
        FZ_CHECK(ouro_hash(o) != -1, "hash of a float");
    } else if (ouro_is_type(o, &ouro_str_type)) {
        ouro_object *r;
        switch (how % 4) {
        case 0: r = fz_obj(ouro_str_slice(o, (ptrdiff_t)(v % 8) - 4, (ptrdiff_t)(v >> 4)), E_NONE, "ouro_str_slice"); break;
        case 1: r = fz_obj(ouro_str_concat(o, fz_names[v % FZ_TEXTS]), E_NONE, "ouro_str_concat"); break;
        case 2: r = fz_obj(ouro_repr(o), E_NONE, "ouro_repr(str)"); break;
        default:
            FZ_CHECK(ouro_str_len(o) >= 0 && ouro_str_find(o, fz_names[v % FZ_TEXTS]) >= -1 && ouro_hash(o) != -1, "str queries");
            FZ_CHECK(ouro_str_is_interned(o) >= 0, "ouro_str_is_interned");
            r = NULL;
            break;
        }
        ouro_xdecref(r);
    } else if (ouro_is_type(o, &ouro_bytes_type)) {
        ouro_object *r = how & 1 ? fz_obj(ouro_bytes_slice(o, 1, (ptrdiff_t)v), E_NONE, "ouro_bytes_slice")
                                 : fz_obj(ouro_repr(o), E_NONE, "ouro_repr(bytes)");
        ouro_xdecref(r);
        FZ_CHECK(ouro_bytes_eq(o, o) == 1 && ouro_hash(o) != -1, "bytes queries");
    } else if (ouro_is_type(o, &ouro_tuple_type)) {
        size_t n = ouro_tuple_size(o);
        FZ_CHECK(n != (size_t)-1, "ouro_tuple_size");
        ouro_xdecref(fz_obj(ouro_tuple_get(o, v % (n + 1)), v % (n + 1) == n ? E(OURO_ERR_INDEX) : E_NONE, "ouro_tuple_get"));
        if (ouro_hash(o) == -1) fz_failed(E(OURO_ERR_TYPE), "ouro_hash(tuple)");
    } else if (ouro_is_type(o, &ouro_weakref_type)) {
        ouro_object *r = ouro_weakref_get(o);
        if (!r && ouro_err_occurred()) fz_failed(E_NONE, "ouro_weakref_get");
        int alive = ouro_weakref_alive(o);
        FZ_CHECK(alive == 0 || alive == 1, "ouro_weakref_alive %d", alive);
        FZ_CHECK(!r || alive == 1, "a weakref whose referent is held reads dead");
        ouro_xdecref(r);
        if (ouro_hash(o) == -1) fz_failed(E(OURO_ERR_TYPE), "ouro_hash(weakref)");
    } else if (ouro_is_type(o, fz_blob_type)) {
        FZ_CHECK(((fz_blob *)o)->canary == FZ_CANARY && ouro_hash(o) != -1, "blob queries");
    } else {
        int t = ouro_is_true(o);
        FZ_CHECK(t == 0 || t == 1, "ouro_is_true(%s) = %d", ouro_type_name(o), t);
    }
    (void)c;
}

static void fz_poke(fz_ctx *c, ouro_object *o, unsigned how, unsigned v) {
    if (!o) return;
    if (ouro_is_type(o, &ouro_list_type)) fz_poke_list(c, o, how, v);
    else if (ouro_is_type(o, &ouro_dict_type)) fz_poke_dict(c, o, how, v);
    else if (ouro_is_type(o, &ouro_set_type)) fz_poke_set(c, o, how, v);
    else if (fz_is_node(o)) fz_poke_node(c, o, how, v);
    else fz_poke_scalar(c, o, how, v);
}

/* ---- deep chains ---------------------------------------------------------------------------------------------- */

/* A chain of n linked objects (nodes, lists, tuples or dicts), closed into one cycle when kind & 4; a
 * chain of nodes gets a querying node on its head when kind & 8. */
static ouro_object *fz_chain(unsigned kind, unsigned len) {
    long n = 100 + (long)len * 20;
    if (n > FZ_CHAIN_MAX) n = FZ_CHAIN_MAX;
    if (kind % 4 == 2 && n > FZ_TUPLE_CHAIN) n = FZ_TUPLE_CHAIN;
    if (!fz_take_budget(n)) return NULL;
    bool close = kind & 4;
    ouro_object *head = NULL, *tail = NULL; /* tail: borrowed, held by the chain */
    switch (kind % 4) {
    case 0:
        head = tail = fz_node_new(FZ_MODE_PLAIN);
        for (long i = 1; tail && i < n; i++) {
            ouro_object *x = fz_node_new(FZ_MODE_PLAIN);
            if (!x) break;
            fz_rc(ouro_slot_set(tail, 0, x), E_NONE, "ouro_slot_set(chain)");
            ouro_decref(x);
            tail = x;
            ouro_safepoint();
        }
        if (tail && close) fz_rc(ouro_slot_set(tail, 1, head), E_NONE, "ouro_slot_set(close)");
        if (head && (kind & 8) && !fz_skip[FZ_V_QUERY_IN_DEALLOC]) {
            /* A node that queries the collector from its dealloc, freed after the chain below the
             * head, whose deep links then wait on the deferred-free list (issue 14, defect 1). */
            ouro_object *q = fz_node_new(FZ_MODE_QUERY);
            if (q) fz_rc(ouro_slot_set(head, 2, q), E_NONE, "ouro_slot_set(query node)");
            ouro_xdecref(q);
        }
        break;
    case 1:
        head = tail = fz_obj(ouro_list_new(0), E_NONE, "ouro_list_new");
        for (long i = 1; tail && i < n; i++) {
            ouro_object *x = fz_obj(ouro_list_new(0), E_NONE, "ouro_list_new");
            if (!x) break;
            int r = fz_rc(ouro_list_append(tail, x), E_NONE, "ouro_list_append(chain)");
            ouro_decref(x);
            if (r) break;
            tail = x;
            ouro_safepoint();
        }
        if (tail && close) fz_rc(ouro_list_append(tail, head), E_NONE, "ouro_list_append(close)");
        break;
    case 2:
        head = fz_obj(ouro_tuple_pack(1, OURO_NONE), E_NONE, "ouro_tuple_pack");
        for (long i = 1; head && i < n; i++) {
            ouro_object *x = fz_obj(ouro_tuple_pack(1, head), E_NONE, "ouro_tuple_pack(chain)");
            if (!x) break;
            ouro_decref(head);
            head = x;
            ouro_safepoint();
        }
        break;
    default:
        head = tail = fz_obj(ouro_dict_new(), E_NONE, "ouro_dict_new");
        for (long i = 1; tail && i < n; i++) {
            ouro_object *x = fz_obj(ouro_dict_new(), E_NONE, "ouro_dict_new");
            if (!x) break;
            int r = fz_rc(ouro_dict_set(tail, fz_names[i % FZ_TEXTS], x), E_NONE, "ouro_dict_set(chain)");
            ouro_decref(x);
            if (r) break;
            tail = x;
            ouro_safepoint();
        }
        if (tail && close) fz_rc(ouro_dict_set(tail, fz_names[0], head), E_NONE, "ouro_dict_set(close)");
        break;
    }
    return head;
}

/* ---- stops of the world ------------------------------------------------------------------------------------- */

/* Held briefly by the caller, with the refusals a holder must get. */
static void fz_stop_here(fz_ctx *c, unsigned us) {
    fz_refused(ouro_start_the_world(), OURO_ERR_STATE, "ouro_start_the_world without a stop");
    fz_rc(ouro_stop_the_world("fuzz"), E_NONE, "ouro_stop_the_world");
    fz_refused(ouro_stop_the_world("fuzz again"), OURO_ERR_STATE, "a second ouro_stop_the_world");
    fz_refused(ouro_defer_barrier(), OURO_ERR_STATE, "ouro_defer_barrier holding a stop");
    if (c->attached) {
        fz_refused((int)ouro_gc_collect(0), OURO_ERR_STATE, "ouro_gc_collect holding a stop");
        fz_refused(ouro_thread_detach(), OURO_ERR_STATE, "ouro_thread_detach holding a stop");
        if (!fz_skip[FZ_V_FINI]) fz_refused(ouro_fini(), OURO_ERR_STATE, "ouro_fini holding a stop");
    }
    fz_sleep_us(us % 200);
    fz_rc(ouro_start_the_world(), E_NONE, "ouro_start_the_world");
}

typedef struct fz_stopper_arg {
    unsigned variant, us;
} fz_stopper_arg;

/* A thread that never attached and stops the world; variant 1 calls an object API while holding the
 * stop, variant 2 exits holding it (docs/threads.md: a warning, and the world is started). */
static void *fz_stopper_main(void *p) {
    fz_stopper_arg *a = p;
    fz_ctx ctx = {.id = 7};
    fz_self = &ctx;
    fz_where = "unattached stopper";
    fz_rc(ouro_stop_the_world("fuzz-unattached"), E_NONE, "ouro_stop_the_world (unattached)");
    fz_sleep_us(a->us % 200);
    if (a->variant == 2) return NULL;
    if (a->variant == 1) {
        /* Either refused (OURO_ERR_STATE) or working; never a hang (issue 14, defect 6). */
        ouro_object *o = fz_obj(ouro_list_new(0), E(OURO_ERR_STATE), "ouro_list_new holding a stop (unattached)");
        ouro_xdecref(o);
    }
    fz_rc(ouro_start_the_world(), E_NONE, "ouro_start_the_world (unattached)");
    return NULL;
}

/* ---- common ops (any thread) -------------------------------------------------------------------------------- */

enum {
    OP_NOP,
    OP_MAKE,     /* a: slot, b: kind, c: variant (arg: slot c % 16) */
    OP_LINK,     /* a: dst slot, b: src slot, c: how */
    OP_DROP,     /* a: slot */
    OP_TAKE,     /* a: slot, b: shared index */
    OP_PUT,      /* a: shared index, b: slot */
    OP_MUTATE,   /* a: shared index, b: how, c: value: one poke of a shared object */
    OP_CHURN,    /* a: shared index, b: count, c: seed: pokes from a PRNG */
    OP_POKE,     /* a: slot, b: how, c: value: one poke of an own object */
    OP_CHAIN,    /* a: slot, b: kind, c: length */
    OP_COLLECT,  /* a: generation */
    OP_STOP,     /* a: variant, b: microseconds */
    OP_OFFLINE,  /* a: nested, b: microseconds */
    OP_DETACH,
    OP_ATTACH,
    OP_DEFER,    /* a: count, b: kind, c: barrier after */
    OP_BARRIER,  /* a: barrier or synchronize */
    OP_FREEZE,   /* a: freeze or unfreeze */
    OP_QUERY,    /* a: slot, b: kind */
    OP_MODE,     /* a: slot, b: mode */
    OP_RAW,      /* a: index, b: action, c: size */
    OP_MISC,     /* a: variant */
    OP_MAIN_ONLY, /* opcodes from here on are the main thread's */
    OP_FORK = OP_MAIN_ONLY, /* a: child ops; the child's program follows */
    OP_FINI,     /* a: re-init how */
    OP_JOIN,     /* a: worker, b: how it quits */
    OP_SYNC,     /* a: worker */
    OP_FAULT,    /* a: kind, b: nth */
    OP_GC_CB,    /* a: add/remove, b: which */
    OP_GC_CONFIG, /* a: variant, b: value */
    OP_EXITER,   /* a: mode */
    OP_COUNT = 32
};

static const char *const fz_op_names[OP_COUNT] = {
    "nop", "make", "link", "drop", "take", "put", "mutate", "churn", "poke", "chain", "collect", "stop",
    "offline", "detach", "attach", "defer", "barrier", "freeze", "query", "mode", "raw", "misc",
    "fork", "fini", "join", "sync", "fault", "gc-cb", "gc-config", "exiter", "nop30", "nop31",
};

/* Whether the op touches objects (and so needs the thread attached first). */
static bool fz_op_needs_attach(unsigned op) {
    switch (op) {
    case OP_NOP: case OP_STOP: case OP_OFFLINE: case OP_DETACH: case OP_RAW: case OP_BARRIER:
    case OP_FORK: case OP_FINI: case OP_JOIN: case OP_SYNC: case OP_FAULT: case OP_GC_CB: case OP_GC_CONFIG: case OP_EXITER:
        return false;
    default: return true;
    }
}

static uint32_t fz_xorshift(uint32_t *s) {
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void fz_defer_n(unsigned count, unsigned kind) {
    unsigned n = count % 16 + 1;
    for (unsigned k = 0; k < n; k++) {
        int i = atomic_fetch_add(&fz_defer_next, 1);
        if (i >= FZ_DEFERS) return;
        atomic_store(&fz_defer_expected[i], 1);
        if (fz_rc(ouro_defer(kind & 1 ? fz_defer_cb_obj : fz_defer_cb, &fz_defer_runs[i]), E_NONE, "ouro_defer") != 0)
            atomic_store(&fz_defer_expected[i], 0);
    }
}

static void fz_raw(fz_ctx *c, unsigned idx, unsigned action, unsigned size) {
    unsigned i = idx % FZ_RAW;
    size_t n = (size_t)size * size + (action & 8 ? 20000 : 0); /* up to ~85 KiB: pools, runs and mappings */
    unsigned char *p = c->raw[i];
    if (p) { /* the pattern written at allocation must still be there */
        size_t keep = c->raw_size[i] < 64 ? c->raw_size[i] : 64;
        for (size_t k = 0; k < keep; k++)
            FZ_CHECK(p[k] == (unsigned char)(i * 37 + k), "raw block %u byte %zu overwritten", i, k);
    }
    switch (action % 3) {
    case 0:
        ouro_free(p);
        c->raw[i] = NULL;
        p = ouro_alloc(n);
        if (!p) fz_failed(E_NONE, "ouro_alloc");
        break;
    case 1:
        if (!p) return;
        {
            unsigned char *q = ouro_realloc(p, n);
            if (!q) {
                fz_failed(E_NONE, "ouro_realloc");
                return; /* p stays valid */
            }
            p = q;
        }
        break;
    default:
        ouro_free(p);
        c->raw[i] = NULL;
        return;
    }
    c->raw[i] = p;
    c->raw_size[i] = n;
    if (p) {
        FZ_CHECK(ouro_usable_size(p) >= n, "usable size %zu < %zu", ouro_usable_size(p), n);
        for (size_t k = 0; k < n && k < 64; k++) p[k] = (unsigned char)(i * 37 + k);
    }
}

/* Runs op on the calling thread. Returns false for an op of the main thread's only. */
static bool fz_common_op(fz_ctx *c, unsigned op, unsigned a, unsigned b, unsigned cc) {
    if (op >= OP_MAIN_ONLY) return false;
    fz_where = fz_op_names[op];
    if (fz_op_needs_attach(op)) {
        fz_attach(c);
        if (!c->attached) return true; /* attach failed under a fault */
    }
    ouro_object **s = c->slot;
    switch (op) {
    case OP_NOP: break;
    case OP_MAKE: {
        ouro_object *o = fz_make(c, b, cc, s[cc % FZ_SLOTS]);
        ouro_setref(&s[a % FZ_SLOTS], o);
        break;
    }
    case OP_LINK: fz_link(c, s[a % FZ_SLOTS], s[b % FZ_SLOTS], cc); break;
    case OP_DROP: ouro_setref(&s[a % FZ_SLOTS], NULL); break;
    case OP_TAKE: ouro_setref(&s[a % FZ_SLOTS], fz_shared_get(b)); break;
    case OP_PUT: fz_shared_put(a, s[b % FZ_SLOTS]); break;
    case OP_MUTATE: {
        ouro_object *o = fz_shared_get(a);
        fz_poke(c, o, b, cc);
        ouro_xdecref(o);
        break;
    }
    case OP_CHURN: {
        unsigned n = b % 64 + 1;
        if (!fz_take_budget(n)) break;
        uint32_t rng = cc * 2654435761u + a;
        for (unsigned i = 0; i < n; i++) {
            uint32_t r = fz_xorshift(&rng);
            ouro_object *o = fz_shared_get(a + (r >> 24) % 2);
            fz_poke(c, o, r & 0xff, (r >> 8) & 0xff);
            ouro_xdecref(o);
            if (r % 16 == 0) fz_shared_put(r >> 28, s[(r >> 16) % FZ_SLOTS]);
            ouro_safepoint();
        }
        break;
    }
    case OP_POKE: fz_poke(c, s[a % FZ_SLOTS], b, cc); break;
    case OP_CHAIN: ouro_setref(&s[a % FZ_SLOTS], fz_chain(b, cc)); break;
    case OP_COLLECT: {
        int gen = (int)(a % 4) - 1;
        long n = ouro_gc_collect(gen);
        if (n == -1) fz_failed(E_NONE, "ouro_gc_collect");
        FZ_CHECK(n >= -1, "ouro_gc_collect returned %ld", n);
        break;
    }
    case OP_STOP: {
        unsigned v = a % 4;
        if (v == 0) {
            fz_stop_here(c, b);
            break;
        }
        static const int skip_of[4] = {0, FZ_V_STOP_UNATTACHED, FZ_V_STOP_UNATTACHED_API, FZ_V_STOP_UNATTACHED_EXIT};
        if (fz_skip[FZ_V_STOP_UNATTACHED] || fz_skip[skip_of[v]]) break;
        fz_stopper_arg arg = {.variant = v - 1, .us = b};
        pthread_t t;
        if (fz_spawn(&t, fz_stopper_main, &arg)) fz_join(c, t);
        break;
    }
    case OP_OFFLINE:
        if (!c->attached) {
            int r = ouro_offline_begin();
            if (r == 0) { /* attached after all, by a call that attaches its caller */
                c->attached = true;
                fz_rc(ouro_offline_end(), E_NONE, "ouro_offline_end");
            } else {
                fz_refused(r, OURO_ERR_STATE, "ouro_offline_begin unattached");
            }
            break;
        }
        fz_rc(ouro_offline_begin(), E_NONE, "ouro_offline_begin");
        if (a & 1) fz_rc(ouro_offline_begin(), E_NONE, "ouro_offline_begin (nested)");
        fz_sleep_us(b % 200);
        if (a & 1) fz_rc(ouro_offline_end(), E_NONE, "ouro_offline_end (nested)");
        fz_rc(ouro_offline_end(), E_NONE, "ouro_offline_end");
        fz_refused(ouro_offline_end(), OURO_ERR_STATE, "ouro_offline_end while online");
        break;
    case OP_DETACH:
        fz_rc(ouro_thread_detach(), E_NONE, "ouro_thread_detach");
        c->attached = false;
        break;
    case OP_ATTACH:
        fz_rc(ouro_thread_set_name(a & 1 ? "fuzz-worker" : "fuzz-a-rather-long-thread-name-over-31-bytes"), E_NONE,
              "ouro_thread_set_name");
        break;
    case OP_DEFER:
        fz_defer_n(a, b);
        if (cc & 1) fz_rc(ouro_defer_barrier(), E_NONE, "ouro_defer_barrier");
        break;
    case OP_BARRIER:
        fz_rc(a & 1 ? ouro_synchronize() : ouro_defer_barrier(), E_NONE, a & 1 ? "ouro_synchronize" : "ouro_defer_barrier");
        break;
    case OP_FREEZE:
        fz_rc(a & 1 ? ouro_gc_unfreeze() : ouro_gc_freeze(), E_NONE, a & 1 ? "ouro_gc_unfreeze" : "ouro_gc_freeze");
        break;
    case OP_QUERY: {
        ouro_object *o = s[a % FZ_SLOTS], *l = NULL;
        switch (b % 4) {
        case 0: if (o) l = fz_obj(ouro_gc_get_referrers(o), E_NONE, "ouro_gc_get_referrers"); break;
        case 1: if (o) l = fz_obj(ouro_gc_get_referents(o), E_NONE, "ouro_gc_get_referents"); break;
        case 2: l = fz_obj(ouro_gc_get_objects((int)(cc % 4) - 1), E_NONE, "ouro_gc_get_objects"); break;
        default: {
            long count[OURO_GC_GENERATIONS];
            ouro_gc_gen_stats st[OURO_GC_GENERATIONS];
            ouro_gc_get_count(count);
            fz_rc(ouro_gc_get_stats(st), E_NONE, "ouro_gc_get_stats");
            FZ_CHECK(count[0] >= 0 && count[1] >= 0 && count[2] >= 0, "negative gc count");
            break;
        }
        }
        if (l) { /* every object listed is alive: the list holds a reference to it */
            size_t pos = 0;
            ouro_object *item;
            for (int n = 0; n < 64 && ouro_list_iter_next(l, &pos, &item) == 1; n++) {
                size_t rc = ouro_refcount(item);
                FZ_CHECK(rc >= 1, "a gc query listed %s %p with reference count %zu", ouro_type_name(item), (void *)item, rc);
                ouro_decref(item);
            }
            ouro_decref(l);
        }
        break;
    }
    case OP_MODE:
        if (fz_is_node(s[a % FZ_SLOTS]) && (b % 3 != FZ_MODE_QUERY || !fz_skip[FZ_V_QUERY_IN_DEALLOC]))
            atomic_store_explicit(&((fz_node *)s[a % FZ_SLOTS])->mode, (int)(b % 3), memory_order_relaxed);
        break;
    case OP_RAW: fz_raw(c, a, b, cc); break;
    default: /* OP_MISC */
        switch (a % 6) {
        case 0: ouro_safepoint(); break;
        case 1: ouro_refcount_merge_queued(); break;
        case 2: ouro_alloc_collect(); break;
        case 3:
            FZ_CHECK(ouro_alloc_check() == 0, "ouro_alloc_check: %s", ouro_err_message());
            break;
        case 4: {
            ouro_alloc_stats_t st;
            fz_rc(ouro_alloc_stats(&st), E_NONE, "ouro_alloc_stats");
            FZ_CHECK(st.bytes_mapped <= st.bytes_mapped_peak && st.arenas <= st.arenas_peak, "alloc stats out of order");
            break;
        }
        default: {
            ouro_type_stats st;
            fz_rc(ouro_type_get_stats(fz_node_type, &st), E_NONE, "ouro_type_get_stats");
            break;
        }
        }
        break;
    }
    return true;
}

/* ---- workers ---------------------------------------------------------------------------------------------------- */

typedef struct fz_cmd {
    uint8_t op, a, b, c;
} fz_cmd;

enum { FZ_QUIT_ATTACHED, FZ_QUIT_DETACHED, FZ_QUIT_OFFLINE_DROP };

typedef struct fz_worker {
    pthread_t thread;
    bool running;            /* main's: started and not joined */
    pthread_mutex_t mu;      /* the queue's: never held across an ouro call */
    pthread_cond_t cv;
    fz_cmd q[FZ_QUEUE];
    unsigned head, tail;     /* under mu */
    unsigned long posted, done; /* under mu */
    atomic_bool attached;    /* the worker's, read by main once the queue is drained */
    fz_ctx ctx;              /* the worker's */
} fz_worker;

#define FZ_QUIT 0xff

static fz_worker fz_workers[FZ_WORKERS];

static fz_cmd fz_worker_pop(fz_worker *w) {
    fz_offline_begin(&w->ctx);
    pthread_mutex_lock(&w->mu);
    while (w->head == w->tail) pthread_cond_wait(&w->cv, &w->mu);
    fz_cmd cmd = w->q[w->head % FZ_QUEUE];
    w->head++;
    pthread_mutex_unlock(&w->mu);
    fz_offline_end(&w->ctx);
    return cmd;
}

static void fz_drop_all(fz_ctx *c) {
    for (int i = 0; i < FZ_SLOTS; i++) ouro_setref(&c->slot[i], NULL);
    for (int i = 0; i < FZ_RAW; i++) {
        ouro_free(c->raw[i]);
        c->raw[i] = NULL;
    }
}

static void *fz_worker_main(void *p) {
    fz_worker *w = p;
    fz_ctx *c = &w->ctx;
    fz_self = c;
    fz_where = "worker start";
    fz_attach(c);
    atomic_store(&w->attached, c->attached);
    for (;;) {
        fz_where = "worker idle";
        fz_cmd cmd = fz_worker_pop(w);
        if (cmd.op == FZ_QUIT) {
            fz_where = "worker quit";
            fz_attach(c); /* the drops touch objects */
            if (cmd.a == FZ_QUIT_OFFLINE_DROP) ouro_safepoint();
            fz_drop_all(c);
            if (cmd.a == FZ_QUIT_DETACHED) fz_rc(ouro_thread_detach(), E_NONE, "ouro_thread_detach (quit)");
            return NULL; /* attached: the exit hook detaches it, maybe while main collects */
        }
        atomic_store_explicit(&fz_trace[c->id], cmd.op, memory_order_relaxed);
        fz_common_op(c, cmd.op, cmd.a, cmd.b, cmd.c);
        if (c->attached) ouro_safepoint();
        atomic_store(&w->attached, c->attached);
        pthread_mutex_lock(&w->mu);
        w->done++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static fz_ctx fz_main_ctx = {.id = 0};

static void fz_post(unsigned wi, fz_cmd cmd) {
    fz_worker *w = &fz_workers[wi % FZ_WORKERS];
    if (!w->running) {
        if (cmd.op == FZ_QUIT) return;
        memset(&w->ctx, 0, sizeof w->ctx);
        w->ctx.id = 1 + (int)(wi % FZ_WORKERS);
        w->head = w->tail = 0;
        w->posted = w->done = 0;
        atomic_store(&w->attached, false);
        if (!fz_spawn(&w->thread, fz_worker_main, w)) return;
        w->running = true;
    }
    fz_ctx *c = &fz_main_ctx;
    pthread_mutex_lock(&w->mu);
    if (w->tail - w->head == FZ_QUEUE) { /* full: wait offline (the worker may stop the world) */
        pthread_mutex_unlock(&w->mu);
        fz_offline_begin(c);
        pthread_mutex_lock(&w->mu);
        while (w->tail - w->head == FZ_QUEUE) pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        fz_offline_end(c);
        pthread_mutex_lock(&w->mu);
    }
    w->q[w->tail % FZ_QUEUE] = cmd;
    w->tail++;
    if (cmd.op != FZ_QUIT) w->posted++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits until worker wi has run every command posted to it. */
static void fz_sync(unsigned wi) {
    fz_worker *w = &fz_workers[wi % FZ_WORKERS];
    if (!w->running) return;
    fz_ctx *c = &fz_main_ctx;
    fz_offline_begin(c);
    pthread_mutex_lock(&w->mu);
    while (w->done != w->posted) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    fz_offline_end(c);
}

static void fz_quit(unsigned wi, unsigned how, bool collect_meanwhile) {
    fz_worker *w = &fz_workers[wi % FZ_WORKERS];
    if (!w->running) return;
    fz_post(wi, (fz_cmd){.op = FZ_QUIT, .a = (uint8_t)(how % 3)});
    if (collect_meanwhile && fz_main_ctx.attached) { /* a thread exiting while another collects */
        long n = ouro_gc_collect(2);
        if (n == -1) fz_failed(E_NONE, "ouro_gc_collect (while a worker exits)");
    }
    fz_join(&fz_main_ctx, w->thread);
    w->running = false;
}

/* ---- a thread that makes garbage and exits ------------------------------------------------------------------------ */

static void *fz_exiter_main(void *p) {
    unsigned mode = (unsigned)(uintptr_t)p;
    fz_ctx ctx = {.id = 6};
    fz_self = &ctx;
    fz_where = "exiter";
    if (mode & 1) fz_attach(&ctx);
    ouro_object *a = fz_node_new(FZ_MODE_PLAIN); /* attaches the thread when it is not */
    ctx.attached = true;
    ouro_object *b = fz_node_new(mode & 8 ? FZ_MODE_RESURRECT : FZ_MODE_PLAIN);
    if (a && b) {
        fz_rc(ouro_slot_set(a, 0, b), E_NONE, "ouro_slot_set");
        fz_rc(ouro_slot_set(b, 0, a), E_NONE, "ouro_slot_set");
    }
    ouro_object *l = fz_obj(ouro_list_new(0), E_NONE, "ouro_list_new");
    if (l) {
        fz_rc(ouro_list_append(l, l), E_NONE, "ouro_list_append(self)");
        if (a) fz_rc(ouro_list_append(l, a), E_NONE, "ouro_list_append");
    }
    if (mode & 4) fz_shared_put(mode >> 4, b); /* one object outlives its owner */
    ouro_xdecref(a);
    ouro_xdecref(b);
    ouro_xdecref(l);
    if (mode & 2) fz_rc(ouro_thread_detach(), E_NONE, "ouro_thread_detach (exiter)");
    return NULL;
}

/* ---- fork ------------------------------------------------------------------------------------------------------------ */

static void *fz_child_thread(void *p) {
    fz_ctx ctx = {.id = 5};
    fz_self = &ctx;
    fz_where = "fork child thread";
    ouro_object *x = fz_chain(4, (unsigned)(uintptr_t)p); /* a closed chain of nodes: garbage once dropped */
    ouro_xdecref(x);
    return NULL;
}

typedef struct fz_live {
    size_t n;
    ouro_type_stats_entry e[256];
} fz_live;

static void fz_live_snapshot(fz_live *l) {
    size_t n = ouro_type_stats_all(l->e, 256);
    FZ_CHECK(n != (size_t)-1, "ouro_type_stats_all: %s", ouro_err_message());
    l->n = n < 256 ? n : 256;
}

/* Every type's live count in now equals before's (a type absent from before: 0). With at_most, fewer
 * is accepted too: a fork child's program may free objects made before the fork (what the vanished
 * threads held, dropped by merges and carried-over work) but must not leave its own behind. */
static void fz_live_compare(const fz_live *before, const fz_live *now, const char *when, bool at_most) {
    for (size_t i = 0; i < now->n; i++) {
        size_t was = 0;
        for (size_t k = 0; k < before->n; k++)
            if (before->e[k].type == now->e[i].type) was = before->e[k].stats.live;
        size_t live = now->e[i].stats.live;
        FZ_CHECK(at_most ? live <= was : live == was, "%s: %zu live '%s' objects, %zu before the program", when,
                 live, now->e[i].type->name, was);
    }
}

/* Merges and collects until a full collection finds nothing (at most 10 rounds). */
static void fz_collect_all(void) {
    for (int round = 0; round < 10; round++) {
        size_t merged = ouro_refcount_merge_queued();
        long n = ouro_gc_collect(2);
        if (n == -1) fz_failed(E_NONE, "ouro_gc_collect(2) (epilogue)");
        ouro_object *r = atomic_exchange(&fz_resurrected, NULL);
        merged += ouro_refcount_merge_queued();
        if (n == 0 && merged == 0 && !r) return;
        ouro_xdecref(r);
    }
    fz_fail("full collections still find garbage after 10 rounds");
}

static void fz_check_defers(void) {
    int n = atomic_load(&fz_defer_next);
    if (n > FZ_DEFERS) n = FZ_DEFERS;
    for (int i = 0; i < n; i++)
        FZ_CHECK(atomic_load(&fz_defer_runs[i]) == atomic_load(&fz_defer_expected[i]),
                 "deferred callback %d ran %d times after ouro_defer_barrier, expected %d", i,
                 atomic_load(&fz_defer_runs[i]), atomic_load(&fz_defer_expected[i]));
}

/* The child's program: ops of 4 bytes, from a small set; then its own oracles. Never returns. */
static void fz_child_run(const uint8_t *ops, size_t nops) {
    static fz_ctx ctx; /* the parent's objects (and locks vanished threads may hold) are left alone */
    memset(&ctx, 0, sizeof ctx);
    ctx.id = 5;
    ctx.attached = fz_main_ctx.attached;
    fz_self = &ctx;
    fz_where = "fork child";
    fz_attach(&ctx);
    atomic_store(&fz_defer_next, FZ_DEFERS / 2); /* the parent's records stay as they were copied */
    for (int i = FZ_DEFERS / 2; i < FZ_DEFERS; i++) {
        atomic_store(&fz_defer_runs[i], 0);
        atomic_store(&fz_defer_expected[i], 0);
    }
    /* The parent's SAVEALL and garbage list come over: the child's program runs with neither, or what it
     * collects would stay live in the list and its live counts would not come back. */
    ouro_gc_set_debug(0);
    ouro_object *g = fz_obj(ouro_gc_garbage(), E_NONE, "ouro_gc_garbage (child)");
    if (g) {
        fz_rc(ouro_list_clear(g), E_NONE, "ouro_list_clear(garbage) (child)");
        ouro_decref(g);
    }
    fz_collect_all();
    static fz_live before, after;
    fz_live_snapshot(&before);
    for (size_t k = 0; k < nops; k++) {
        const uint8_t *o = ops + 4 * k;
        unsigned a = o[1], b = o[2];
        switch (o[0] % 8) {
        case 0: { /* a ring of nodes */
            ouro_object *first = fz_node_new(FZ_MODE_PLAIN), *prev = first;
            for (unsigned i = 0; first && prev && i < a % 8; i++) {
                ouro_object *x = fz_node_new(b & 1 ? FZ_MODE_RESURRECT : FZ_MODE_PLAIN);
                if (!x) break;
                fz_rc(ouro_slot_set(prev, 0, x), E_NONE, "ouro_slot_set");
                ouro_decref(x);
                prev = x;
            }
            if (first && prev) fz_rc(ouro_slot_set(prev, 1, first), E_NONE, "ouro_slot_set");
            ouro_setref(&ctx.slot[b % FZ_SLOTS], first);
            break;
        }
        case 1: fz_common_op(&ctx, OP_MAKE, a, b, o[3]); break;
        case 2: fz_common_op(&ctx, OP_COLLECT, a, 0, 0); break;
        case 3: fz_common_op(&ctx, OP_DEFER, a, b, 1); break;
        case 4: {
            pthread_t t;
            FZ_CHECK(pthread_create(&t, NULL, fz_child_thread, (void *)(uintptr_t)(a % 16)) == 0, "pthread_create");
            fz_join(&ctx, t);
            break;
        }
        case 5: fz_common_op(&ctx, OP_STOP, 0, b, 0); break;
        case 6: fz_common_op(&ctx, OP_LINK, a, b, o[3]); break;
        default: fz_common_op(&ctx, OP_CHAIN, a, b, o[3] % 8); break;
        }
    }
    fz_where = "fork child epilogue";
    ouro_debug_fail_os_map(0);
#ifdef OURO_HAVE_DEBUG_FAIL_MALLOC
    ouro_debug_fail_malloc(0);
#endif
    atomic_store(&fz_faults, 0);
    fz_drop_all(&ctx);
    fz_collect_all();
    fz_rc(ouro_defer_barrier(), E_NONE, "ouro_defer_barrier (child)");
    fz_check_defers();
    fz_live_snapshot(&after);
    fz_live_compare(&before, &after, "fork child", true);
    FZ_CHECK(ouro_alloc_check() == 0, "ouro_alloc_check (child): %s", ouro_err_message());
    fflush(NULL);
    _exit(0);
}

static int fz_child_timeout_s(void) {
    const char *s = getenv("OURO_FUZZ_CHILD_TIMEOUT");
    int v = s ? atoi(s) : 0;
    return v > 0 ? v : FZ_CHILD_TIMEOUT_S;
}

static void fz_fork(const uint8_t *ops, size_t nops) {
    fz_ctx *c = &fz_main_ctx;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) fz_child_run(ops, nops);
    if (pid < 0) {
        fz_failed(E_NONE, "fork"); /* ouro's handlers ran: an error means fork itself failed */
        return;
    }
    int status = 0;
    bool hung = false;
    fz_offline_begin(c);
    double deadline = fz_now() + fz_child_timeout_s();
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        FZ_CHECK(r == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
        if (fz_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            hung = true;
            break;
        }
        fz_sleep_us(500);
    }
    fz_offline_end(c);
    FZ_CHECK(!hung, "fork child %d still running after %d s: killed (hang)", (int)pid, fz_child_timeout_s());
    FZ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child %d %s %d", (int)pid,
             WIFSIGNALED(status) ? "died of signal" : "exited with status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* ---- the watchdog ------------------------------------------------------------------------------------------------------ */

static pthread_mutex_t fz_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fz_wd_cv;
static bool fz_wd_armed;          /* under fz_wd_mu */
static struct timespec fz_wd_deadline; /* under fz_wd_mu */
static int fz_wd_seconds;

static void *fz_watchdog_main(void *p) {
    (void)p;
    pthread_mutex_lock(&fz_wd_mu);
    for (;;) {
        if (!fz_wd_armed) {
            pthread_cond_wait(&fz_wd_cv, &fz_wd_mu);
            continue;
        }
        if (pthread_cond_timedwait(&fz_wd_cv, &fz_wd_mu, &fz_wd_deadline) == ETIMEDOUT && fz_wd_armed) {
            fprintf(stderr, "ouro-fuzz: FAIL [pid %d]: input still running after %d s (hang); last op per thread:",
                    (int)getpid(), fz_wd_seconds);
            for (int i = 0; i < 5; i++) {
                unsigned t = atomic_load_explicit(&fz_trace[i], memory_order_relaxed);
                fprintf(stderr, " %s%d=%s", i ? "worker" : "main", i, fz_op_names[t % OP_COUNT]);
            }
            fprintf(stderr, "\n");
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

static void fz_watchdog_arm(bool on) {
    pthread_mutex_lock(&fz_wd_mu);
    fz_wd_armed = on;
    if (on) {
        clock_gettime(CLOCK_MONOTONIC, &fz_wd_deadline);
        fz_wd_deadline.tv_sec += fz_wd_seconds;
    }
    pthread_cond_signal(&fz_wd_cv);
    pthread_mutex_unlock(&fz_wd_mu);
}

/* ---- start-up, a program's prologue and epilogue ------------------------------------------------------------------- */

static long fz_default_threshold[OURO_GC_GENERATIONS];

static void fz_init_once(void) {
    static bool done;
    if (done) return;
    done = true;
    fz_self = &fz_main_ctx;
    fz_where = "init";
    fz_parse_skip();
    FZ_CHECK(ouro_config_check() == 0, "ouro_config_check: %s", ouro_err_message());
    fz_attach(&fz_main_ctx);
    FZ_CHECK(fz_main_ctx.attached, "the main thread could not attach");
    ouro_type_spec node = {.name = "fuzz-node", .basic_size = sizeof(fz_node), .flags = OURO_TYPE_GC,
                           .slots = fz_node_slots, .dealloc = fz_node_dealloc, .finalize = fz_node_finalize,
                           .hash = fz_node_hash};
    fz_node_type = ouro_type_new(&node);
    ouro_type_spec blob = {.name = "fuzz-blob", .basic_size = sizeof(fz_blob), .dealloc = fz_blob_dealloc};
    fz_blob_type = ouro_type_new(&blob);
    FZ_CHECK(fz_node_type && fz_blob_type, "ouro_type_new: %s", ouro_err_message());
    FZ_CHECK(ouro_slot_index(fz_node_type, "extra") == 2, "slot index of 'extra'");
    /* What lives for ever once used (and counts as live from then on): the interned names, the
     * empty str, bytes and tuple, the garbage list. */
    for (int i = 0; i < FZ_TEXTS; i++) {
        fz_names[i] = ouro_str_intern_cstr(fz_texts[i]);
        FZ_CHECK(fz_names[i], "ouro_str_intern_cstr: %s", ouro_err_message());
    }
    ouro_decref(ouro_tuple_new(0));
    ouro_decref(ouro_bytes_new(NULL, 0));
    ouro_decref(ouro_str_from_utf8(NULL, 0));
    ouro_object *g = ouro_gc_garbage();
    FZ_CHECK(g, "ouro_gc_garbage: %s", ouro_err_message());
    ouro_decref(g);
    ouro_gc_get_threshold(fz_default_threshold);
    const char *t = getenv("OURO_FUZZ_TIMEOUT");
    fz_wd_seconds = t && atoi(t) > 0 ? atoi(t) : 30;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fz_wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < FZ_WORKERS; i++) {
        pthread_mutex_init(&fz_workers[i].mu, NULL);
        pthread_cond_init(&fz_workers[i].cv, NULL);
    }
    pthread_t wd;
    FZ_CHECK(pthread_create(&wd, NULL, fz_watchdog_main, NULL) == 0, "pthread_create(watchdog)");
    pthread_detach(wd);
    /* Between programs the main thread is offline: the fuzzer's own work is not a safepoint. */
    fz_rc(ouro_offline_begin(), E_NONE, "ouro_offline_begin");
}

static fz_live fz_before, fz_after;

static void fz_prologue(void) {
    fz_self = &fz_main_ctx;
    fz_where = "prologue";
    fz_watchdog_arm(true);
    fz_rc(ouro_offline_end(), E_NONE, "ouro_offline_end");
    for (int i = 0; i < 8; i++) atomic_store_explicit(&fz_trace[i], 0, memory_order_relaxed);
    atomic_store(&fz_budget, FZ_BUDGET);
    atomic_store(&fz_spawns, 0);
    atomic_store(&fz_defer_next, 0);
    atomic_store(&fz_wr_next, 0);
    for (int i = 0; i < FZ_DEFERS; i++) {
        atomic_store(&fz_defer_runs[i], 0);
        atomic_store(&fz_defer_expected[i], 0);
    }
    for (int i = 0; i < FZ_WEAKREFS; i++) atomic_store(&fz_wr_runs[i], 0);
    fz_live_snapshot(&fz_before);
}

static void fz_epilogue(void) {
    fz_ctx *c = &fz_main_ctx;
    fz_where = "epilogue";
    for (unsigned w = 0; w < FZ_WORKERS; w++) fz_sync(w);
    /* Disarmed once no op runs, so that no failure it caused is reported after fz_faults is cleared. */
    ouro_debug_fail_os_map(0);
#ifdef OURO_HAVE_DEBUG_FAIL_MALLOC
    ouro_debug_fail_malloc(0);
#endif
    for (unsigned w = 0; w < FZ_WORKERS; w++) fz_quit(w, FZ_QUIT_ATTACHED, false);
    atomic_store(&fz_faults, 0);
    fz_attach(c);
    FZ_CHECK(c->attached, "the main thread could not attach again");
    ouro_gc_enable();
    fz_rc(ouro_gc_set_threshold(fz_default_threshold[0], fz_default_threshold[1], fz_default_threshold[2]), E_NONE,
          "ouro_gc_set_threshold");
    ouro_gc_set_debug(0);
    for (int i = 0; i < FZ_GC_CBS; i++)
        while (atomic_load(&fz_cb_reg[i]) > 0) {
            fz_rc(ouro_gc_callback_remove(fz_gc_callback, &fz_cb_reg[i]), E_NONE, "ouro_gc_callback_remove");
            atomic_fetch_sub(&fz_cb_reg[i], 1);
            fz_cb_total--;
        }
    fz_drop_all(c);
    for (unsigned j = 0; j < FZ_SHARED; j++) fz_shared_put(j, NULL);
    ouro_object *g = fz_obj(ouro_gc_garbage(), E_NONE, "ouro_gc_garbage");
    if (g) {
        fz_rc(ouro_list_clear(g), E_NONE, "ouro_list_clear(garbage)");
        ouro_decref(g);
    }
    fz_rc(ouro_gc_unfreeze(), E_NONE, "ouro_gc_unfreeze");
    FZ_CHECK(ouro_gc_get_freeze_count() == 0, "freeze count %zu after unfreeze", ouro_gc_get_freeze_count());
    fz_collect_all();
    fz_where = "epilogue: barrier";
    fz_rc(ouro_defer_barrier(), E_NONE, "ouro_defer_barrier");
    fz_check_defers();
    fz_where = "epilogue: live counts";
    fz_live_snapshot(&fz_after);
    fz_live_compare(&fz_before, &fz_after, "after the program", false);
    ouro_type_stats st;
    fz_rc(ouro_type_get_stats(fz_node_type, &st), E_NONE, "ouro_type_get_stats");
    FZ_CHECK(st.live == 0, "%zu fuzz-node objects alive after the program", st.live);
    FZ_CHECK(ouro_alloc_check() == 0, "ouro_alloc_check: %s", ouro_err_message());
    ouro_err_clear();
    fz_rc(ouro_offline_begin(), E_NONE, "ouro_offline_begin");
    fz_watchdog_arm(false);
}

/* ---- main-only ops --------------------------------------------------------------------------------------------------- */

static void fz_fini(unsigned how) {
    fz_ctx *c = &fz_main_ctx;
    bool others = false;
    for (unsigned w = 0; w < FZ_WORKERS; w++) {
        fz_sync(w); /* idle: its attachment cannot change until the next command */
        if (fz_workers[w].running && atomic_load(&fz_workers[w].attached)) others = true;
    }
    int r = ouro_fini();
    if (others) {
        fz_refused(r, OURO_ERR_STATE, "ouro_fini with other threads attached");
        return;
    }
    fz_rc(r, E_NONE, "ouro_fini");
    if (r == 0) c->attached = false;
    switch (how % 3) {
    case 0: break; /* the next op that needs it attaches */
    case 1: fz_rc(ouro_init(NULL), E_NONE, "ouro_init(NULL)"); break;
    default: fz_attach(c); break;
    }
}

static void fz_main_op(const uint8_t *data, size_t size, size_t *pos, unsigned op, unsigned a, unsigned b, unsigned cc) {
    fz_ctx *c = &fz_main_ctx;
    if (fz_common_op(c, op, a, b, cc)) return;
    fz_where = fz_op_names[op % OP_COUNT];
    switch (op) {
    case OP_FORK: {
        size_t n = a % FZ_CHILD_OPS + 1, avail = (size - *pos) / 4;
        if (n > avail) n = avail;
        const uint8_t *ops = data + *pos;
        *pos += 4 * n;
        if (!fz_skip[FZ_V_FORK]) fz_fork(ops, n);
        break;
    }
    case OP_FINI:
        if (!fz_skip[FZ_V_FINI]) fz_fini(a);
        break;
    case OP_JOIN: fz_quit(a, b, b & 4); break;
    case OP_SYNC: fz_sync(a); break;
    case OP_FAULT:
        if (a & 1) {
#ifdef OURO_HAVE_DEBUG_FAIL_MALLOC
            if (fz_skip[FZ_V_FAIL_MALLOC]) break;
            atomic_store(&fz_faults, 1);
            ouro_debug_fail_malloc(b % 32 + 1);
#endif
        } else if (!fz_skip[FZ_V_FAIL_OS_MAP]) {
            atomic_store(&fz_faults, 1);
            ouro_debug_fail_os_map(b % 8 + 1);
        }
        break;
    case OP_GC_CB: {
        if (fz_skip[FZ_V_GC_CALLBACKS]) break;
        atomic_int *reg = &fz_cb_reg[b % FZ_GC_CBS];
        if (a & 1) {
            int r = ouro_gc_callback_remove(fz_gc_callback, reg);
            if (atomic_load(reg) > 0) {
                fz_rc(r, E_NONE, "ouro_gc_callback_remove");
                atomic_fetch_sub(reg, 1);
                fz_cb_total--;
            } else {
                fz_refused(r, OURO_ERR_INVALID, "ouro_gc_callback_remove of an unregistered callback");
            }
        } else {
            atomic_fetch_add(reg, 1); /* before: the callback may run as soon as it is added */
            int r = ouro_gc_callback_add(fz_gc_callback, reg);
            if (fz_cb_total < 16) {
                fz_rc(r, E_NONE, "ouro_gc_callback_add");
                fz_cb_total++;
            } else {
                fz_refused(r, OURO_ERR_INVALID, "ouro_gc_callback_add past 16");
                atomic_fetch_sub(reg, 1);
            }
        }
        break;
    }
    case OP_GC_CONFIG:
        fz_attach(c);
        switch (a % 8) {
        case 0: ouro_gc_disable(); FZ_CHECK(ouro_gc_is_enabled() == 0, "gc enabled after disable"); break;
        case 1: ouro_gc_enable(); FZ_CHECK(ouro_gc_is_enabled() == 1, "gc disabled after enable"); break;
        case 2: fz_rc(ouro_gc_set_threshold((long)(b % 64) + 1, 2, 2), E_NONE, "ouro_gc_set_threshold"); break;
        case 3:
            fz_rc(ouro_gc_set_threshold(fz_default_threshold[0], fz_default_threshold[1], fz_default_threshold[2]), E_NONE,
                  "ouro_gc_set_threshold");
            break;
        case 4: ouro_gc_set_debug(OURO_GC_DEBUG_SAVEALL); break;
        case 5: ouro_gc_set_debug(0); break;
        case 6: fz_refused(ouro_gc_set_threshold(-1, 10, 10), OURO_ERR_INVALID, "ouro_gc_set_threshold(-1)"); break;
        default: fz_refused((int)ouro_gc_collect(3), OURO_ERR_INVALID, "ouro_gc_collect(3)"); break;
        }
        break;
    case OP_EXITER: {
        pthread_t t;
        if (!fz_spawn(&t, fz_exiter_main, (void *)(uintptr_t)a)) break;
        if ((b & 1) && c->attached) {
            long n = ouro_gc_collect(2);
            if (n == -1) fz_failed(E_NONE, "ouro_gc_collect (while a thread exits)");
        }
        fz_join(c, t);
        break;
    }
    default: break;
    }
}

/* ---- the entry point ------------------------------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_init_once();
    fz_prologue();
    size_t pos = 0;
    for (unsigned n = 0; n < FZ_MAX_OPS && pos + 4 <= size; n++) {
        unsigned thread = data[pos] >> 5, op = data[pos] & 31, a = data[pos + 1], b = data[pos + 2], cc = data[pos + 3];
        pos += 4;
        if (thread >= 1 && thread <= FZ_WORKERS) {
            if (op < OP_MAIN_ONLY) fz_post(thread - 1, (fz_cmd){.op = (uint8_t)op, .a = (uint8_t)a, .b = (uint8_t)b, .c = (uint8_t)cc});
            continue;
        }
        atomic_store_explicit(&fz_trace[0], n << 8 | op, memory_order_relaxed);
        fz_main_op(data, size, &pos, op, a, b, cc);
    }
    fz_epilogue();
    return 0;
}
