/* tests/embed/tsan_server.c — a small server built against the installed TSan flavour of ouro.
 *
 * tests/embed/tsan_check.sh builds it with gcc and with clang -fsanitize=thread, against
 * libouro-tsan.so and libouro-tsan.a, runs it, and expects exactly one ThreadSanitizer report: the race
 * planted in planted_race(). Everything else goes through ouro and must be race-free under TSan, each
 * edge the way docs/embedding.md tells an embedder to make it:
 *
 *   - objects made by one thread, counted and dropped by others (a shared inbox list; cross-thread
 *     decrefs queue them to their owner);
 *   - a shared dict read lock-free (ouro_dict_get_ref) while others write it, and an immortal
 *     configuration dict every worker reads;
 *   - reference cycles the collector frees (ouro_gc_collect from a housekeeping thread);
 *   - plain per-worker counters written online and read by the housekeeper while the world is stopped
 *     (a stop orders every online thread's accesses before the stopper's);
 *   - an RCU-published snapshot: plain fields read by workers between safepoints, replaced by the
 *     housekeeper and freed with ouro_defer (the grace period orders the readers' loads before the free).
 *
 * Its own oracle: served counts, snapshot versions that never go back, every list freed; it prints
 * "tsan_server: ok" and returns 0, whatever TSan reports (TSan then changes the exit status to 66). */
#define _POSIX_C_SOURCE 200809L /* pthread barriers, nanosleep */
#include <ouro.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum { WORKERS = 4, ROUNDS = 2000, PLANTED_ROUNDS = 1000 };

/* ---- the planted race ----------------------------------------------------------------------------
 * Two threads increment a plain int with no synchronisation: the one report the check expects. */
static int planted_counter;
static pthread_barrier_t planted_start;

__attribute__((noinline)) static void planted_race(void) { planted_counter++; }

static void *planted_thread(void *arg) {
    (void)arg;
    pthread_barrier_wait(&planted_start); /* both loops after the barrier: unordered by TSan's clocks */
    for (int i = 0; i < PLANTED_ROUNDS; i++) planted_race();
    return NULL;
}

/* ---- state shared through ouro -------------------------------------------------------------------- */

/* A configuration published by RCU: replaced whole, the old one freed after a grace period. Readers are
 * attached, online threads; a snapshot they loaded stays valid until their next safepoint. */
typedef struct snapshot {
    long version;
    long limit;
} snapshot;

static _Atomic(snapshot *) current; /* release store in publish(), acquire load in worker() */
static ouro_object *config;         /* immortal: "limit" -> int */
static ouro_object *registry;       /* worker id -> its latest list */
static ouro_object *inbox;          /* ints made by one worker, popped and dropped by another */
static ouro_object *limit_key;      /* interned */
static long served[WORKERS];        /* plain: written online by worker i, read by the stopper */
static atomic_int workers_left = WORKERS;

static void snapshot_free(void *p) { ouro_free(p); }

static int publish(long version) {
    snapshot *s = ouro_alloc(sizeof *s);
    if (!s) return -1;
    s->version = version;
    s->limit = 64 + version % 7;
    snapshot *old = atomic_exchange_explicit(&current, s, memory_order_acq_rel); /* pairs with the acquire in worker() */
    return old ? ouro_defer(snapshot_free, old) : 0;
}

static void *worker(void *arg) {
    long id = (long)(intptr_t)arg, last_version = 0;
    if (ouro_thread_attach() != 0) return (void *)1;
    ouro_thread_set_name("worker");
    for (long i = 0; i < ROUNDS; i++) {
        /* the snapshot: plain reads of a block another thread frees after a grace period */
        const snapshot *s = atomic_load_explicit(&current, memory_order_acquire); /* pairs with publish() */
        if (s->version < last_version || s->limit < 64) return (void *)1;
        last_version = s->version;

        /* objects of this thread, dropped by another: the inbox */
        ouro_object *v = ouro_int_from(1000000 + id * ROUNDS + i); /* not cached: a new object */
        if (!v || ouro_list_append(inbox, v) != 0) return (void *)1;
        ouro_decref(v);
        ouro_object *got = ouro_list_pop(inbox, 0);
        if (got) ouro_decref(got); /* often another worker's: a cross-thread decref */
        else ouro_err_clear();     /* another worker emptied it first */

        /* a shared dict: write this worker's latest list, read another's lock-free */
        ouro_object *mine = ouro_list_new(0), *key = ouro_int_from(id);
        ouro_object *other_key = ouro_int_from((id + 1) % WORKERS), *other = NULL;
        if (!mine || ouro_list_append(mine, key) != 0 || ouro_dict_set(registry, key, mine) != 0) return (void *)1;
        if (ouro_dict_get_ref(registry, other_key, &other) == 1) {
            ouro_object *item = ouro_list_get(other, 0); /* the other worker's list, read lock-free */
            if (!item) return (void *)1;
            ouro_decref(item);
            ouro_decref(other);
        }
        ouro_decref(mine);

        /* a cycle: two lists holding each other, freed only by the collector */
        ouro_object *a = ouro_list_new(1), *b = ouro_list_new(1);
        if (!a || !b || ouro_list_append(a, b) != 0 || ouro_list_append(b, a) != 0) return (void *)1;
        ouro_decref(a);
        ouro_decref(b);

        ouro_object *limit = NULL; /* the immortal configuration */
        if (ouro_dict_get_ref(config, limit_key, &limit) != 1) return (void *)1;
        ouro_decref(limit);

        served[id]++; /* plain: the housekeeper reads it only while the world is stopped */
        ouro_safepoint();
    }
    atomic_fetch_sub_explicit(&workers_left, 1, memory_order_release);
    return NULL; /* exits attached: the exit hook detaches the thread */
}

/* Stops the world, collects, replaces the snapshot, while the workers run. */
static void *housekeeping(void *arg) {
    (void)arg;
    if (ouro_thread_attach() != 0) return (void *)1;
    ouro_thread_set_name("housekeeping");
    long version = 1, seen = 0;
    for (unsigned tick = 1; atomic_load_explicit(&workers_left, memory_order_acquire) > 0; tick++) {
        ouro_offline_begin(); /* blocking: offline */
        nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
        ouro_offline_end();
        if (ouro_stop_the_world("tsan-server") != 0) return (void *)1;
        long total = 0;
        for (int i = 0; i < WORKERS; i++) total += served[i]; /* plain reads: every worker is parked */
        if (ouro_start_the_world() != 0 || total < seen) return (void *)1;
        seen = total;
        if (publish(++version) != 0) return (void *)1;
        if (ouro_gc_collect(tick % 8 == 0 ? 2 : 0) < 0) return (void *)1;
    }
    return NULL;
}

int main(void) {
    if (ouro_config_check() != 0 || ouro_init(NULL) != 0 || ouro_thread_attach() != 0) {
        fprintf(stderr, "tsan_server: %s\n", ouro_err_message());
        return 1;
    }
    limit_key = ouro_str_intern_cstr("limit");
    config = ouro_dict_new();
    registry = ouro_dict_new();
    inbox = ouro_list_new(0);
    ouro_object *limit = ouro_int_from(64);
    if (!limit_key || !config || !registry || !inbox || !limit || ouro_dict_set(config, limit_key, limit) != 0 ||
        publish(1) != 0)
        return 1;
    ouro_decref(limit);
    ouro_immortalize(config); /* read by every worker */

    pthread_t planted[2], hk, t[WORKERS];
    pthread_barrier_init(&planted_start, NULL, 2);
    for (int i = 0; i < 2; i++) pthread_create(&planted[i], NULL, planted_thread, NULL);
    pthread_create(&hk, NULL, housekeeping, NULL);
    for (long i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);

    int failed = 0;
    ouro_offline_begin(); /* blocking: a stop of the world does not wait for this thread */
    for (int i = 0; i < WORKERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed |= r != NULL;
    }
    void *r;
    pthread_join(hk, &r);
    failed |= r != NULL;
    for (int i = 0; i < 2; i++) pthread_join(planted[i], NULL);
    ouro_offline_end();

    long total = 0;
    for (int i = 0; i < WORKERS; i++) total += served[i];
    ouro_decref(registry);
    ouro_decref(inbox);
    snapshot *last = atomic_exchange_explicit(&current, NULL, memory_order_acq_rel);
    ouro_gc_collect(2); /* the cycles the workers dropped since the last collection */
    ouro_type_stats lists = {0};
    if (failed || total != (long)WORKERS * ROUNDS || ouro_defer(snapshot_free, last) != 0 ||
        ouro_defer_barrier() != 0 || ouro_type_get_stats(&ouro_list_type, &lists) != 0 || lists.live != 0) {
        fprintf(stderr, "tsan_server: failed (served %ld of %d, %zu lists live)\n", total, WORKERS * ROUNDS,
                lists.live);
        return 1;
    }
    if (ouro_fini() != 0) {
        fprintf(stderr, "tsan_server: %s\n", ouro_err_message());
        return 1;
    }
    printf("tsan_server: ok: %ld requests served, planted counter %d\n", total, planted_counter);
    return 0;
}
