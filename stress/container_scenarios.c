/* stress/container_scenarios.c — the built-in containers' stress scenario.
 *
 *   containers-race  threads share one list and one dict and race every operation on them: append,
 *                    lock-free get, set, pop, delete, iterate; set, lock-free get, delete, iterate,
 *                    clear. Values are canary objects counted by every thread.
 *
 * Oracles. Every value a thread gets out of a container (get, pop, iteration) has an intact canary
 * while it holds the reference (a value freed early — a get that returned an object whose count had
 * reached zero — shows a poisoned canary), and the value type's dealloc checks it once more (a double
 * free). The list is emptied only by pops, each counted, so after the join its length must equal
 * appends - successful pops - successful deletes. At the end the containers are dropped: values made
 * == values freed, the value type, list, dict and str types show their starting live counts, and the
 * allocator is back at its baseline. */
#include "stress/stress.h"

#include <ouro.h>

#include <stdio.h>
#include <string.h>

typedef struct containers_params {
    size_t keys;     /* dict keys */
    size_t list_max; /* a thread empties the list by pops when it grows past this */
} containers_params;

static const containers_params containers_full = { .keys = 512, .list_max = 4096 };
static const containers_params containers_short = { .keys = 64, .list_max = 256 };

#define CONTAINERS_POISON 0xdeadbeefdeadbeefull

typedef struct cval {
    ouro_object head;
    uint64_t serial;
    uint64_t canary;
} cval;

typedef struct containers_state {
    const containers_params *p;
    unsigned n;
    ouro_type *type;
    ouro_object *list, *dict;
    ouro_object **keys;
    _Atomic uint64_t made, freed, bad_dealloc;
    _Atomic uint64_t appends, removed, gets, iterated;
    ouro_alloc_stats_t base;
} containers_state;

static containers_state *containers_current;

static uint64_t cval_canary(const void *o, uint64_t serial) {
    return stress_mix64((uint64_t)(uintptr_t)o + serial * 0x9e3779b97f4a7c15ull);
}

static void cval_dealloc(ouro_object *self) {
    cval *v = (cval *)self;
    if (v->canary != cval_canary(v, v->serial)) atomic_fetch_add(&containers_current->bad_dealloc, 1);
    v->canary = CONTAINERS_POISON;
    atomic_fetch_add_explicit(&containers_current->freed, 1, memory_order_relaxed);
}

static ouro_object *cval_new(stress_worker *w, containers_state *st) {
    cval *v = (cval *)ouro_new(st->type);
    if (!v) {
        stress_fail(w->ctx, "ouro_new: %s", ouro_err_message());
        return NULL;
    }
    v->serial = atomic_fetch_add_explicit(&st->made, 1, memory_order_relaxed);
    v->canary = cval_canary(v, v->serial);
    return &v->head;
}

/* Checks a value the caller holds a reference to, then drops that reference. */
static bool cval_check_drop(stress_worker *w, ouro_object *o, const char *from) {
    if (o->type != containers_current->type)
        return stress_fail(w->ctx, "%s returned a %s, not a value (freed and reused?)", from, ouro_type_name(o));
    cval *v = (cval *)o;
    if (v->canary != cval_canary(v, v->serial))
        return stress_fail(w->ctx, "%s returned value %p (serial %llu) with canary %#llx%s", from, (void *)v,
                           (unsigned long long)v->serial, (unsigned long long)v->canary,
                           v->canary == CONTAINERS_POISON ? ": freed while referenced" : "");
    stress_count_checks(w, 1);
    ouro_decref(o);
    return true;
}

/* Pops the list empty (the only way it shrinks in bulk, so its length stays accountable). */
static bool containers_drain(stress_worker *w, containers_state *st) {
    for (;;) {
        ouro_object *v = ouro_list_pop(st->list, -1);
        if (!v) {
            if (ouro_err_occurred() != OURO_ERR_INDEX)
                return stress_fail(w->ctx, "ouro_list_pop: %s", ouro_err_message());
            ouro_err_clear();
            return true;
        }
        atomic_fetch_add_explicit(&st->removed, 1, memory_order_relaxed);
        if (!cval_check_drop(w, v, "ouro_list_pop")) return false;
    }
}

static bool containers_list_op(stress_worker *w, containers_state *st, uint64_t r) {
    ouro_object *l = st->list;
    size_t size = ouro_list_size(l);
    ptrdiff_t i = size ? (ptrdiff_t)stress_rng_below(&w->rng, size) : 0;
    if (r < 30) {
        ouro_object *v = cval_new(w, st);
        if (!v) return false;
        if (ouro_list_append(l, v) != 0) return stress_fail(w->ctx, "ouro_list_append: %s", ouro_err_message());
        ouro_decref(v);
        atomic_fetch_add_explicit(&st->appends, 1, memory_order_relaxed);
        if (size > st->p->list_max) return containers_drain(w, st);
    } else if (r < 60) { /* lock-free get: the index may be gone already */
        ouro_object *v = ouro_list_get(l, i);
        if (v) {
            atomic_fetch_add_explicit(&st->gets, 1, memory_order_relaxed);
            return cval_check_drop(w, v, "ouro_list_get");
        }
        if (ouro_err_occurred() != OURO_ERR_INDEX) return stress_fail(w->ctx, "ouro_list_get: %s", ouro_err_message());
        ouro_err_clear();
    } else if (r < 72) {
        ouro_object *v = cval_new(w, st);
        if (!v) return false;
        if (ouro_list_set(l, i, v) != 0) {
            if (ouro_err_occurred() != OURO_ERR_INDEX) return stress_fail(w->ctx, "ouro_list_set: %s", ouro_err_message());
            ouro_err_clear();
        }
        ouro_decref(v);
    } else if (r < 84) {
        ouro_object *v = ouro_list_pop(l, i);
        if (v) {
            atomic_fetch_add_explicit(&st->removed, 1, memory_order_relaxed);
            return cval_check_drop(w, v, "ouro_list_pop");
        }
        if (ouro_err_occurred() != OURO_ERR_INDEX) return stress_fail(w->ctx, "ouro_list_pop: %s", ouro_err_message());
        ouro_err_clear();
    } else if (r < 97) {
        if (ouro_list_del(l, i) == 0) atomic_fetch_add_explicit(&st->removed, 1, memory_order_relaxed);
        else if (ouro_err_occurred() != OURO_ERR_INDEX) return stress_fail(w->ctx, "ouro_list_del: %s", ouro_err_message());
        else ouro_err_clear();
    } else { /* iterate while the others mutate */
        size_t pos = 0;
        ouro_object *v;
        int rc;
        while ((rc = ouro_list_iter_next(l, &pos, &v)) == 1) {
            atomic_fetch_add_explicit(&st->iterated, 1, memory_order_relaxed);
            if (!cval_check_drop(w, v, "ouro_list_iter_next")) return false;
        }
        if (rc < 0) return stress_fail(w->ctx, "ouro_list_iter_next: %s", ouro_err_message());
    }
    return true;
}

static bool containers_dict_op(stress_worker *w, containers_state *st, uint64_t r) {
    ouro_object *d = st->dict, *key = st->keys[stress_rng_below(&w->rng, st->p->keys)];
    if (r < 30) {
        ouro_object *v = cval_new(w, st);
        if (!v) return false;
        if (ouro_dict_set(d, key, v) != 0) return stress_fail(w->ctx, "ouro_dict_set: %s", ouro_err_message());
        ouro_decref(v);
    } else if (r < 75) { /* lock-free lookup */
        ouro_object *v = NULL;
        int rc = ouro_dict_get_ref(d, key, &v);
        if (rc < 0) return stress_fail(w->ctx, "ouro_dict_get_ref: %s", ouro_err_message());
        if (rc == 1) {
            atomic_fetch_add_explicit(&st->gets, 1, memory_order_relaxed);
            return cval_check_drop(w, v, "ouro_dict_get_ref");
        }
    } else if (r < 96) {
        if (ouro_dict_del(d, key) != 0) {
            if (ouro_err_occurred() != OURO_ERR_KEY) return stress_fail(w->ctx, "ouro_dict_del: %s", ouro_err_message());
            ouro_err_clear();
        }
    } else if (r < 99) {
        size_t pos = 0;
        ouro_object *k, *v;
        int rc;
        while ((rc = ouro_dict_next(d, &pos, &k, &v)) == 1) {
            atomic_fetch_add_explicit(&st->iterated, 1, memory_order_relaxed);
            if (!ouro_is_type(k, &ouro_str_type)) return stress_fail(w->ctx, "ouro_dict_next: a key of type %s", ouro_type_name(k));
            ouro_decref(k);
            if (!cval_check_drop(w, v, "ouro_dict_next")) return false;
        }
        if (rc < 0) return stress_fail(w->ctx, "ouro_dict_next: %s", ouro_err_message());
    } else {
        if (ouro_dict_clear(d) != 0) return stress_fail(w->ctx, "ouro_dict_clear: %s", ouro_err_message());
    }
    return true;
}

static void containers_worker(stress_worker *w) {
    containers_state *st = w->arg;
    if (ouro_thread_attach() != 0) {
        stress_fail(w->ctx, "ouro_thread_attach: %s", ouro_err_message());
        return;
    }
    bool ok = true;
    while (ok && stress_running(w->ctx)) {
        uint64_t r = stress_rng_below(&w->rng, 200);
        ok = r < 100 ? containers_list_op(w, st, r) : containers_dict_op(w, st, r - 100);
        stress_count_ops(w, 1);
        if (stress_rng_one_in(&w->rng, 8)) ouro_safepoint();
    }
    if (w->index % 2) ouro_thread_detach(); /* the others exit attached */
}

static bool containers_type_live(stress_worker *w, const ouro_type *t, size_t want, const char *when) {
    ouro_type_stats s;
    ouro_type_get_stats(t, &s);
    if (s.live != want) return stress_fail(w->ctx, "%s: %zu %s objects alive, %zu expected", when, s.live, t->name, want);
    stress_count_checks(w, 1);
    return true;
}

static bool containers_race(stress_ctx *ctx) {
    containers_state *st = stress_map(ctx, sizeof *st);
    if (!st) return false;
    st->p = ctx->short_run ? &containers_short : &containers_full;
    st->n = ctx->threads;
    containers_current = st;
    stress_worker mw;
    stress_main_worker(ctx, &mw, st);
    bool ok = false;
    const ouro_type *watched[] = { &ouro_list_type, &ouro_dict_type, &ouro_str_type };
    ouro_type_stats before[3];
    ouro_type_spec spec = { .name = "stress-value", .basic_size = sizeof(cval), .dealloc = cval_dealloc };
    if (!stress_start_baseline(ctx, &st->base, &spec, &st->type)) goto out;
    for (int i = 0; i < 3; i++) ouro_type_get_stats(watched[i], &before[i]);
    st->keys = stress_map(ctx, st->p->keys * sizeof *st->keys);
    st->list = ouro_list_new(0);
    st->dict = ouro_dict_new();
    if (!st->keys || !st->list || !st->dict) {
        stress_fail(ctx, "set-up: %s", ouro_err_message());
        goto out;
    }
    for (size_t i = 0; i < st->p->keys; i++)
        if (!(st->keys[i] = ouro_str_from_format("key-%zu", i))) {
            stress_fail(ctx, "ouro_str_from_format: %s", ouro_err_message());
            goto out;
        }
    ouro_thread_detach(); /* not attached while the workers run: a blocked attached thread stalls grace periods */
    ok = stress_run_threads(ctx, 0, st->n, 0, containers_worker, st) && !stress_failed(ctx);
    uint64_t appends = atomic_load(&st->appends), removed = atomic_load(&st->removed);
    size_t len = ouro_list_size(st->list);
    if (ok && len != appends - removed)
        ok = stress_fail(ctx, "list length %zu after the join, %llu appends - %llu removals = %llu", len,
                         (unsigned long long)appends, (unsigned long long)removed, (unsigned long long)(appends - removed));
    if (ok && (atomic_load(&st->gets) == 0 || atomic_load(&st->iterated) == 0))
        ok = stress_fail(ctx, "no get or no iteration succeeded: nothing was tested");
    stress_note(ctx, "%llu values, %llu appends, %llu removals, %llu lock-free gets, %llu items iterated; dict %zu keys at the end",
                (unsigned long long)atomic_load(&st->made), (unsigned long long)appends, (unsigned long long)removed,
                (unsigned long long)atomic_load(&st->gets), (unsigned long long)atomic_load(&st->iterated),
                ouro_dict_size(st->dict));
out:
    if (st->list) ouro_decref(st->list);
    if (st->dict) ouro_decref(st->dict);
    for (size_t i = 0; st->keys && i < st->p->keys; i++) ouro_xdecref(st->keys[i]);
    ouro_thread_detach();
    if (ok && atomic_load(&st->bad_dealloc))
        ok = stress_fail(ctx, "%llu values had a broken canary when freed", (unsigned long long)atomic_load(&st->bad_dealloc));
    if (ok && atomic_load(&st->made) != atomic_load(&st->freed))
        ok = stress_fail(ctx, "%llu values made, %llu freed", (unsigned long long)atomic_load(&st->made),
                         (unsigned long long)atomic_load(&st->freed));
    for (int i = 0; ok && i < 3; i++) ok = containers_type_live(&mw, watched[i], before[i].live, "after the end");
    if (ok) ok = containers_type_live(&mw, st->type, 0, "after the end");
    if (ok && ouro_type_free(st->type) != 0) ok = stress_fail(ctx, "ouro_type_free: %s", ouro_err_message());
    if (ok && ouro_fini() != 0) ok = stress_fail(ctx, "ouro_fini after the join: %s", ouro_err_message());
    if (ok) {
        ouro_alloc_collect();
        ok = stress_expect_alloc_baseline(&mw, &st->base);
    }
    if (st->keys) stress_unmap(st->keys, st->p->keys * sizeof *st->keys);
    stress_unmap(st, sizeof *st);
    return ok && !stress_failed(ctx);
}

const stress_scenario stress_container_scenarios[] = {
    { "containers-race", "threads race every list and dict operation; values intact, list length exact, all freed",
      containers_race },
    { NULL, NULL, NULL },
};
