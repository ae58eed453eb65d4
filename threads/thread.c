/* threads/thread.c — the runtime's start, the thread registry, attach and detach, offline sections,
 * and the ordered exit hooks that run when an attached thread leaves. */
#include "threads/internal.h"
#include "alloc/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

__thread ouro_thread_t *_ouro_tls_thread OURO_TLS_FAST;
__thread bool _ouro_tls_attach_internal OURO_TLS_FAST;
pthread_mutex_t _ouro_registry_lock = PTHREAD_MUTEX_INITIALIZER;
ouro_thread_t *_ouro_registry;
_Atomic unsigned _ouro_stop_warn_ms = 1000; /* read by the watchdog thread */

static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_exit_key;
static bool runtime_configured; /* config_lock: ouro_init() set a configuration (until ouro_fini) */
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER; /* a leaf */
static size_t threads_attached;        /* registry_lock */

static void thread_exit(void *arg);
static void thread_leave(ouro_thread_t *me);

/* Takes registry_lock offline: a stopper holds it while it waits for online threads to reach a
 * safepoint, so an online thread must never block on it. Returns whether the caller was online. The
 * caller does not hold the stop. */
static bool registry_lock_offline(ouro_thread_t *me) {
    bool online = me && me->offline_depth == 0;
    if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&_ouro_registry_lock);
    return online;
}

static void registry_unlock_online(ouro_thread_t *me, bool online) {
    pthread_mutex_unlock(&_ouro_registry_lock);
    if (online) _ouro_thread_come_online(me);
}

/* ---- hooks: at thread exit, in a fork child ------------------------------------------------------------ */

enum { HOOKS_MAX = 8 };
typedef struct {
    int order;
    void (*fn)(void);
} hook;
typedef struct {
    pthread_mutex_t lock; /* a leaf */
    const char *what;
    unsigned n;
    hook h[HOOKS_MAX]; /* sorted by order */
} hook_table;

static hook_table exit_hooks = {.lock = PTHREAD_MUTEX_INITIALIZER, .what = "exit hook"};
static hook_table fork_child_hooks = {.lock = PTHREAD_MUTEX_INITIALIZER, .what = "fork child hook"};

static int hook_add(hook_table *t, int order, void (*fn)(void)) {
    if (!fn) {
        _ouro_err_set(OURO_ERR_INVALID, "%s: fn is NULL", t->what);
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    if (t->n == HOOKS_MAX) {
        pthread_mutex_unlock(&t->lock);
        _ouro_err_set(OURO_ERR_STATE, "%s: %d hooks registered already", t->what, HOOKS_MAX);
        return -1;
    }
    unsigned i = t->n++;
    for (; i > 0 && t->h[i - 1].order > order; i--) t->h[i] = t->h[i - 1];
    t->h[i] = (hook){order, fn};
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Runs a copy of the table (hooks may be registered meanwhile; a hook may take any lock). */
static void hooks_run(hook_table *t) {
    hook copy[HOOKS_MAX];
    pthread_mutex_lock(&t->lock);
    unsigned n = t->n;
    memcpy(copy, t->h, n * sizeof copy[0]);
    pthread_mutex_unlock(&t->lock);
    for (unsigned i = 0; i < n; i++) copy[i].fn();
}

int _ouro_thread_exit_hook_add(int order, void (*fn)(void)) { return hook_add(&exit_hooks, order, fn); }
int _ouro_fork_child_hook_add(int order, void (*fn)(void)) { return hook_add(&fork_child_hooks, order, fn); }

void _ouro_fork_run_child_hooks(void) {
    pthread_mutex_init(&fork_child_hooks.lock, NULL); /* a vanished thread may have held it */
    pthread_mutex_init(&exit_hooks.lock, NULL);
    hooks_run(&fork_child_hooks);
}

/* The heap's exit hook: the record names the heap until it is abandoned, so a stop, a collection's
 * pool walk or a fork that happens while the earlier hooks run (their deallocs may reach safepoints)
 * sees the thread's pools; abandoning polls no safepoint, so nobody sees the heap half handed over. */
static void thread_heap_exit(void) {
    _ouro_alloc_thread_exit();
    _ouro_tls_thread->heap = NULL;
}

/* alloc's heap destructor ran before ours: the whole detach happens now, so that the heap is abandoned
 * online (never during a stop) and the record forgets it (installed in alloc/). */
static bool thread_exit_guard(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me) return false;
    thread_exit(me);
    return true;
}

static void thread_global_init(void) {
    const char *env = getenv("OURO_STOP_WARN_MS");
    if (env && *env) {
        char *end;
        unsigned long ms = strtoul(env, &end, 10);
        if (*end == '\0' && ms > 0 && ms < 3600000) _ouro_stop_warn_ms = (unsigned)ms;
        else _ouro_warn("OURO_STOP_WARN_MS=%s is not a number of milliseconds in 1..3600000; ignored", env);
    }
    if (pthread_key_create(&thread_exit_key, thread_exit) != 0) _ouro_fatal("pthread_key_create failed");
    _ouro_stw_init();
    _ouro_fork_init();
    if (_ouro_thread_exit_hook_add(OURO_EXIT_ORDER_HEAP, thread_heap_exit) != 0)
        _ouro_fatal("cannot register the heap's exit hook: %s", ouro_err_message());
    ouro_store_release(&_ouro_alloc_exit_guard, thread_exit_guard); /* pairs with heap_thread_exit() */
}

void _ouro_runtime_init(void) { pthread_once(&thread_once, thread_global_init); }

_Atomic bool _ouro_runtime_finished;

int ouro_init(const ouro_config *cfg) {
    if (cfg && cfg->size != 0 && cfg->size != sizeof *cfg) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_init: config size %zu, expected %zu", cfg->size, sizeof *cfg);
        return -1;
    }
    _ouro_runtime_init();
    atomic_store_explicit(&_ouro_runtime_finished, false, memory_order_relaxed);
    if (!cfg) return 0;
    pthread_mutex_lock(&config_lock);
    unsigned warn_ms = cfg->stop_warn_ms ? cfg->stop_warn_ms : _ouro_stop_warn_ms; /* 0: keep the default */
    bool other = runtime_configured && warn_ms != _ouro_stop_warn_ms;
    if (!other) {
        runtime_configured = true;
        _ouro_stop_warn_ms = warn_ms;
    }
    pthread_mutex_unlock(&config_lock);
    if (other) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_init: the runtime runs with another configuration (stop_warn_ms %u); ouro_fini first",
                      (unsigned)_ouro_stop_warn_ms);
        return -1;
    }
    return 0;
}

int ouro_thread_attach(void) {
    if (_ouro_tls_thread) return 0;
    if (_ouro_tls_holds_stop) { /* registry_lock is the stop's: attaching would wait for ourselves */
        _ouro_err_set(OURO_ERR_STATE, "ouro_thread_attach: the calling thread holds a stop of the world (attach before stopping it)");
        return -1;
    }
    _ouro_runtime_init();
    atomic_store_explicit(&_ouro_runtime_finished, false, memory_order_relaxed);
    ouro_thread_t *me = _ouro_sys_calloc(1, sizeof *me);
    if (!me) {
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_thread_attach: out of memory");
        return -1;
    }
    me->os_tid = (pid_t)syscall(SYS_gettid);
    atomic_init(&me->state, OURO_TS_OFFLINE);
    me->urcu_reader = &URCU_TLS(urcu_qsbr_reader);
    me->internal = _ouro_tls_attach_internal; /* before the record is published: ouro_fini reads it */
    /* Under registry_lock (which a stopper, fork's included, holds for the whole stop): liburcu's
     * registration, which starts the thread online there, then offline at once; then the registry.
     * The thread comes online the checked way below. */
    pthread_mutex_lock(&_ouro_registry_lock);
    rcu_register_thread();
    rcu_thread_offline();
    me->next = _ouro_registry;
    if (me->next) me->next->prev = me;
    _ouro_registry = me;
    threads_attached++;
    pthread_mutex_unlock(&_ouro_registry_lock);
    _ouro_tls_thread = me;
    pthread_setspecific(thread_exit_key, me);
    _ouro_thread_come_online(me);
    me->heap = _ouro_alloc_thread_heap(); /* online: may touch the heap */
    if (!me->heap) {
        ouro_err saved = ouro_err_occurred();
        thread_leave(me);
        _ouro_err_set(saved ? saved : OURO_ERR_NOMEM, "ouro_thread_attach: cannot make the thread's heap");
        return -1;
    }
    return 0;
}

/* Leaves: exit hooks online, then offline out of the registry and liburcu. */
static void thread_leave(ouro_thread_t *me) {
    if (OURO_DEBUG_LEVEL >= 1) {
        char what[64];
        snprintf(what, sizeof what, "thread %d detaches (or exits)", (int)me->os_tid);
        _ouro_lock_debug_check_released(what);
    }
    if (me->offline_depth > 0) {
        me->offline_depth = 0;
        _ouro_thread_come_online(me);
    }
    hooks_run(&exit_hooks); /* online, in order; the heap's is the last (it forgets me->heap) */
    _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&_ouro_registry_lock);
    if (me->prev) me->prev->next = me->next; else _ouro_registry = me->next;
    if (me->next) me->next->prev = me->prev;
    threads_attached--;
    rcu_unregister_thread();
    pthread_mutex_unlock(&_ouro_registry_lock);
    _ouro_tls_thread = NULL;
    ouro_safepoint_seen_ = 0; /* an unattached thread's polls take the slow path (threads/stw.c) */
    pthread_setspecific(thread_exit_key, NULL);
    free(me);
}

/* pthread key destructor: the thread exits attached. */
static void thread_exit(void *arg) {
    ouro_thread_t *me = arg;
    if (_ouro_tls_thread != me) return;
    if (me->stopper) {
        _ouro_warn("thread %d exits holding a stop of the world; starting it", (int)me->os_tid);
        ouro_start_the_world();
    }
    thread_leave(me);
}

int ouro_thread_detach(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me) return 0;
    if (me->stopper || me->offline_depth > 0) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_thread_detach: %s", me->stopper ? "the thread holds a stop" : "inside an offline section");
        return -1;
    }
    thread_leave(me);
    return 0;
}

int ouro_thread_set_name(const char *name) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me || !name) {
        _ouro_err_set(me ? OURO_ERR_INVALID : OURO_ERR_STATE, "ouro_thread_set_name: %s", me ? "name is NULL" : "thread not attached");
        return -1;
    }
    if (me->stopper) { /* holds registry_lock for its stop */
        snprintf(me->name, sizeof me->name, "%s", name);
        return 0;
    }
    bool online = registry_lock_offline(me);
    snprintf(me->name, sizeof me->name, "%s", name); /* the watchdog reads names under the stop */
    registry_unlock_online(me, online);
    return 0;
}

int ouro_offline_begin(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_offline_begin: thread not attached");
        return -1;
    }
    if (me->offline_depth++ == 0) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    return 0;
}

int ouro_offline_end(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me || me->offline_depth == 0) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_offline_end: %s", me ? "not offline" : "thread not attached");
        return -1;
    }
    if (--me->offline_depth == 0) _ouro_thread_come_online(me);
    return 0;
}

void _ouro_threads_after_fork_child(size_t attached) { threads_attached = attached; }

int ouro_fini(void) {
    if (_ouro_tls_holds_stop) { /* the reclaimer could not finish: it may be parked */
        _ouro_err_set(OURO_ERR_STATE, "ouro_fini: the thread holds a stop of the world");
        return -1;
    }
    if (_ouro_defer_on_reclaimer()) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_fini: called from a deferred callback");
        return -1;
    }
    /* Every check before anything is shut down: a refused fini changes nothing. */
    ouro_thread_t *me = _ouro_tls_thread;
    bool online = registry_lock_offline(me);
    size_t others = 0;
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next) others += t != me && !t->internal;
    registry_unlock_online(me, online);
    if (others) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_fini: %zu other threads are still attached", others);
        return -1;
    }
    if (ouro_thread_detach() != 0) return -1;
    _ouro_defer_shutdown(); /* after the detach, whose exit hooks may defer (the heap's emptied pools) */
    pthread_mutex_lock(&config_lock);
    runtime_configured = false; /* a later ouro_init may configure it anew */
    pthread_mutex_unlock(&config_lock);
    atomic_store_explicit(&_ouro_runtime_finished, true, memory_order_relaxed);
    return 0;
}
