/* bench/rc_suite.c — the `rc` suite: what reference counting costs, by the owner, by other threads, on
 * a hot shared object, and in the built-in types' hot paths.
 *
 * Subjects: ouro and in-process references (never peers): `plain` (a non-atomic counter), `atomic` (a
 * C11 atomic counter: what every count costs without biasing), and the thread-count variants of the
 * scaling cases (`ouro-1t`, `ouro-2t`, `atomic-1t`, `atomic-2t`). A case runs for the subjects it names
 * (bench_case.subjects); a case without `ouro` prints ratios against its first subject, so for the
 * scaling cases "ouro-1t/ouro-2t" is the 2-thread speed-up (2.0 is perfect scaling).
 *
 * Every loop does what a real incref/decref pair does: the count goes up, then down with a test for
 * zero; a compiler barrier between the two keeps the pair from being folded (the same for every
 * subject). The counted object is live throughout, so the zero branch is never taken. */
#include "bench.h"

#include <ouro.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define RC_INLINE static inline __attribute__((always_inline))

/* The subjects, in the order of rc_subjects[]. */
enum { RC_OURO, RC_PLAIN, RC_ATOMIC, RC_OURO_1T, RC_OURO_2T, RC_ATOMIC_1T, RC_ATOMIC_2T, RC_OURO_SO, RC_NSUBJECTS };

static const bench_subject rc_subjects[] = {
    [RC_OURO] = BENCH_SUBJECT_OURO,
    [RC_PLAIN] = { "plain", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_ATOMIC] = { "atomic", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_OURO_1T] = { "ouro-1t", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_OURO_2T] = { "ouro-2t", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_ATOMIC_1T] = { "atomic-1t", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_ATOMIC_2T] = { "atomic-2t", NULL, NULL, NULL, NULL, 1, NULL },
    [RC_OURO_SO] = BENCH_SUBJECT_OURO_SO("owner-pair"),
};

#define RC_BIT(i) BENCH_SUBJECT_BIT(i)

/* The references: a plain and an atomic counter in an object of the same size as ouro's header. */
typedef struct {
    long count;
    char pad[24];
} rc_plain_obj;

typedef struct {
    _Atomic long count;
    char pad[24];
} __attribute__((aligned(64))) rc_atomic_obj;

static void rc_barrier(void) { __asm__ volatile("" ::: "memory"); }

static void rc_attach(void)
{
    if (ouro_thread_attach() != 0) bench_fail("ouro_thread_attach: %s", ouro_err_message());
}

static void rc_report(const bench_run *r, uint64_t t0, uint64_t ops)
{
    bench_report(r, "ns_per_op", (double)(bench_now_ns() - t0) / (double)ops);
}

/* ---- the pairs --------------------------------------------------------------------------------------- */

RC_INLINE void pair_ouro(ouro_object *o, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        ouro_incref(o);
        rc_barrier();
        ouro_decref(o);
        rc_barrier();
    }
}

static __attribute__((noinline)) void rc_plain_free(rc_plain_obj *o) { bench_fail("plain object %p freed", (void *)o); }

RC_INLINE void pair_plain(rc_plain_obj *o, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        o->count++;
        rc_barrier();
        if (--o->count == 0) rc_plain_free(o);
        rc_barrier();
    }
}

static __attribute__((noinline)) void rc_atomic_free(rc_atomic_obj *o) { bench_fail("atomic object %p freed", (void *)o); }

RC_INLINE void pair_atomic(rc_atomic_obj *o, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&o->count, 1, memory_order_relaxed);
        rc_barrier();
        if (atomic_fetch_sub_explicit(&o->count, 1, memory_order_acq_rel) == 1) rc_atomic_free(o);
        rc_barrier();
    }
}

/* A small fixed-size type for the counted objects. */
static ouro_type rc_box_type = { .head = OURO_TYPE_HEAD, .name = "rc-box", .basic_size = 64 };

static ouro_object *rc_box_new(void)
{
    ouro_object *o = ouro_new(&rc_box_type);
    if (!o) bench_fail("ouro_new: %s", ouro_err_message());
    return o;
}

/* ---- owner-pair ---------------------------------------------------------------------------------------- */

static void case_owner_pair(const bench_run *r)
{
    rc_attach();
    uint64_t warm = r->ops / 16, t0;
    if (r->subject_index == RC_OURO || r->subject_index == RC_OURO_SO) {
        ouro_object *o = rc_box_new();
        pair_ouro(o, warm);
        t0 = bench_now_ns();
        pair_ouro(o, r->ops);
        rc_report(r, t0, r->ops);
        if (ouro_refcount(o) != 1) bench_fail("count %zu after the pairs", ouro_refcount(o));
        ouro_decref(o);
    } else if (r->subject_index == RC_PLAIN) {
        static rc_plain_obj o = { .count = 1 }; /* static: the barriers must reach it, as ouro's heap object */
        pair_plain(&o, warm);
        t0 = bench_now_ns();
        pair_plain(&o, r->ops);
        rc_report(r, t0, r->ops);
    } else {
        static rc_atomic_obj o = { .count = 1 };
        pair_atomic(&o, warm);
        t0 = bench_now_ns();
        pair_atomic(&o, r->ops);
        rc_report(r, t0, r->ops);
    }
    ouro_thread_detach();
}

/* ---- nonowner-pair: the object was made by a thread that has exited ---------------------------------- */

static void *make_foreign(void *arg)
{
    *(ouro_object **)arg = rc_box_new();
    ouro_thread_detach();
    return NULL;
}

static void case_nonowner_pair(const bench_run *r)
{
    rc_attach();
    uint64_t warm = r->ops / 16, t0;
    if (r->subject_index == RC_OURO) {
        ouro_object *o = NULL;
        ouro_offline_begin();
        bench_thread_join(bench_thread_start(make_foreign, &o));
        ouro_offline_end();
        ouro_incref(o); /* shared count 1: the pairs below never take it to zero (no queueing) */
        pair_ouro(o, warm);
        t0 = bench_now_ns();
        pair_ouro(o, r->ops);
        rc_report(r, t0, r->ops);
        if (ouro_refcount(o) != 2) bench_fail("count %zu after the pairs", ouro_refcount(o));
        ouro_decref(o);
        ouro_decref(o);
    } else {
        static rc_atomic_obj o = { .count = 1 };
        pair_atomic(&o, warm);
        t0 = bench_now_ns();
        pair_atomic(&o, r->ops);
        rc_report(r, t0, r->ops);
    }
    ouro_thread_detach();
}

/* ---- scaling cases: N threads share one object (or one dict) ----------------------------------------- */

enum { RC_MAX_THREADS = 2 };

typedef struct {
    const bench_run *r;
    void (*body)(void *ctx, uint64_t n); /* the work of one thread */
    void *ctx;
    uint64_t n;
    _Atomic int *ready, *go;
} rc_worker;

static void *rc_worker_run(void *arg)
{
    rc_worker *w = arg;
    rc_attach();
    w->body(w->ctx, w->n / 16); /* warm */
    atomic_fetch_add(w->ready, 1);
    unsigned spins = 0;
    ouro_offline_begin();
    while (!atomic_load(w->go)) bench_spin_wait(&spins);
    ouro_offline_end();
    w->body(w->ctx, w->n);
    ouro_thread_detach();
    return NULL;
}

/* Runs body on nthreads threads, r->ops each, and reports wall time over all their operations. */
static void rc_scaled(const bench_run *r, int nthreads, void (*body)(void *, uint64_t), void *ctx)
{
    _Atomic int ready = 0, go = 0;
    rc_worker w[RC_MAX_THREADS];
    pthread_t t[RC_MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        w[i] = (rc_worker){ .r = r, .body = body, .ctx = ctx, .n = r->ops, .ready = &ready, .go = &go };
        t[i] = bench_thread_start(rc_worker_run, &w[i]);
    }
    unsigned spins = 0;
    while (atomic_load(&ready) != nthreads) bench_spin_wait(&spins);
    uint64_t t0 = bench_now_ns();
    atomic_store(&go, 1);
    for (int i = 0; i < nthreads; i++) bench_thread_join(t[i]);
    rc_report(r, t0, r->ops * (uint64_t)nthreads);
}

static int rc_threads_of(const bench_run *r)
{
    return r->subject_index == RC_OURO_2T || r->subject_index == RC_ATOMIC_2T ? 2 : 1;
}

static void hot_ouro_body(void *ctx, uint64_t n) { pair_ouro(ctx, n); }
static void hot_atomic_body(void *ctx, uint64_t n) { pair_atomic(ctx, n); }

static void case_shared_hot(const bench_run *r)
{
    int nt = rc_threads_of(r);
    if (r->subject_index == RC_OURO_1T || r->subject_index == RC_OURO_2T) {
        rc_attach();
        ouro_object *o = rc_box_new();
        if (ouro_immortalize(o) != 0) bench_fail("ouro_immortalize: %s", ouro_err_message()); /* the remedy */
        ouro_offline_begin();
        rc_scaled(r, nt, hot_ouro_body, o);
        ouro_offline_end();
        ouro_thread_detach(); /* o is immortal: never freed */
    } else {
        static rc_atomic_obj o = { .count = 1 };
        rc_scaled(r, nt, hot_atomic_body, &o);
        if (atomic_load(&o.count) != 1) bench_fail("atomic count %ld after the pairs", atomic_load(&o.count));
    }
}

/* ---- dict-get: lookups in one shared dict --------------------------------------------------------------- */

enum { DICT_KEYS = 1024 };

typedef struct {
    ouro_object *dict;
    ouro_object *keys[DICT_KEYS];
} dict_ctx;

static void dict_get_body(void *arg, uint64_t n)
{
    dict_ctx *c = arg;
    uint64_t x = (uint64_t)(uintptr_t)&n; /* a different key order per thread */
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        ouro_object *v = NULL;
        if (ouro_dict_get_ref(c->dict, c->keys[(x >> 33) % DICT_KEYS], &v) != 1) bench_fail("dict lookup failed");
        ouro_decref(v);
        if ((i & 255) == 0) ouro_safepoint();
    }
}

/* The dict: DICT_KEYS interned str keys (immortal, as identifiers are) mapping to str values made by
 * the building thread. counted: the values are ordinary counted objects (every lookup counts one up and
 * down: both threads write the same values' shared counts); else they are immortalized, the remedy for
 * read-mostly shared objects, and a lookup writes nothing shared. */
static void dict_get_run(const bench_run *r, int counted)
{
    rc_attach();
    static dict_ctx c;
    c.dict = ouro_dict_new();
    if (!c.dict) bench_fail("ouro_dict_new: %s", ouro_err_message());
    for (int i = 0; i < DICT_KEYS; i++) {
        char name[32];
        snprintf(name, sizeof name, "key_%d", i);
        c.keys[i] = ouro_str_intern_cstr(name);
        ouro_object *v = ouro_str_from_format("value %d", i);
        if (!c.keys[i] || !v || ouro_dict_set(c.dict, c.keys[i], v) != 0) bench_fail("building the dict: %s", ouro_err_message());
        if (!counted) ouro_immortalize(v);
        ouro_decref(v);
    }
    ouro_offline_begin();
    rc_scaled(r, rc_threads_of(r), dict_get_body, &c);
    ouro_offline_end();
    ouro_decref(c.dict);
    for (int i = 0; i < DICT_KEYS; i++) ouro_decref(c.keys[i]);
    ouro_thread_detach();
}

static void case_dict_get(const bench_run *r) { dict_get_run(r, 0); }
static void case_dict_get_counted(const bench_run *r) { dict_get_run(r, 1); }

/* ---- object-pair: make and free a small tuple ------------------------------------------------------------ */

static void case_object_pair(const bench_run *r)
{
    rc_attach();
    ouro_object *a = ouro_int_from(1), *b = ouro_int_from(2); /* small ints: immortal */
    uint64_t warm = r->ops / 16, t0 = 0;
    for (uint64_t i = 0; i < warm + r->ops; i++) {
        if (i == warm) t0 = bench_now_ns();
        ouro_object *t = ouro_tuple_pack(2, a, b);
        if (!t) bench_fail("ouro_tuple_pack: %s", ouro_err_message());
        bench_escape(t);
        ouro_decref(t);
    }
    rc_report(r, t0, r->ops);
    ouro_thread_detach();
}

/* ---- the suite ------------------------------------------------------------------------------------------ */

static const bench_case rc_cases[] = {
    { .name = "owner-pair",
      .about = "op = incref + decref (test for zero) by the object's owner thread",
      .metrics = { "ns_per_op" },
      .sized = 1000000,
      .run = case_owner_pair,
      .subjects = RC_BIT(RC_OURO) | RC_BIT(RC_PLAIN) | RC_BIT(RC_ATOMIC) | RC_BIT(RC_OURO_SO) },
    { .name = "nonowner-pair",
      .about = "op = incref + decref by a thread that does not own the object (ouro: the shared count)",
      .metrics = { "ns_per_op" },
      .sized = 1000000,
      .run = case_nonowner_pair,
      .subjects = RC_BIT(RC_OURO) | RC_BIT(RC_ATOMIC) },
    { .name = "shared-hot",
      .about = "op = incref + decref of one object shared by 1 or 2 threads (ouro: immortalized, the "
               "remedy); wall time over all threads' ops",
      .metrics = { "ns_per_op" },
      .sized = 1000000,
      .run = case_shared_hot,
      .subjects = RC_BIT(RC_OURO_1T) | RC_BIT(RC_OURO_2T) | RC_BIT(RC_ATOMIC_1T) | RC_BIT(RC_ATOMIC_2T) },
    { .name = "dict-get",
      .about = "op = ouro_dict_get_ref + decref in one dict of 1024 interned keys and immortalized str "
               "values (the remedy), shared by 1 or 2 threads; wall time over all threads' ops",
      .metrics = { "ns_per_op" },
      .sized = 100000,
      .run = case_dict_get,
      .subjects = RC_BIT(RC_OURO_1T) | RC_BIT(RC_OURO_2T) },
    { .name = "dict-get-counted",
      .about = "dict-get with counted values: each lookup's try-incref and decref write the value's shared "
               "count, so two threads contend on the values' cache lines",
      .metrics = { "ns_per_op" },
      .sized = 100000,
      .run = case_dict_get_counted,
      .subjects = RC_BIT(RC_OURO_1T) | RC_BIT(RC_OURO_2T) },
    { .name = "object-pair",
      .about = "op = ouro_tuple_pack(2, 1, 2) + decref (made and freed by one thread)",
      .metrics = { "ns_per_op" },
      .sized = 1000000,
      .run = case_object_pair,
      .subjects = RC_BIT(RC_OURO) },
};

const bench_suite bench_suite_rc = {
    .name = "rc",
    .about = "reference counting: owner, non-owner, a hot shared object, built-in types' hot paths",
    .subjects = rc_subjects,
    .nsubjects = RC_NSUBJECTS,
    .cases = rc_cases,
    .ncases = sizeof rc_cases / sizeof rc_cases[0],
};
