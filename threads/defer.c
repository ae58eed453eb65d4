/* threads/defer.c — deferred reclamation on liburcu-qsbr grace periods (core/defer.h).
 *
 * Pushers put caller-owned nodes on a lock-free stack (CAS, release). ouro's reclaimer thread, an
 * attached thread named "ouro-reclaim", takes the whole stack (exchange, acquire), reverses it so that
 * callbacks run in push order, waits for a grace period offline, and runs the callbacks online with a
 * safepoint between two (so a long batch never delays a stop). The batch being worked on is `inflight`:
 * the reclaimer changes it only while online and between safepoints, so a stop of the world (fork's)
 * always finds it whole.
 *
 * Why liburcu is not enough for TSan: liburcu 0.13 is built without TSan, so the ordering its grace
 * period gives (a reader's accesses before its quiescent state happen before the callback) is invisible.
 * Each attached thread therefore bumps its `quiescent` counter with release order at every quiescent
 * state (slow safepoint, going offline) before telling liburcu; after synchronize_rcu() returns the
 * reclaimer loads every registered thread's counter with acquire order (defer_gp_edge). The value it
 * reads was stored at or after the quiescent state that ended the grace period, so the edge holds in the
 * C11 model and TSan sees it. Threads that detached meanwhile published their last accesses by
 * unlocking registry_lock, which the edge takes.
 *
 * Lock order: qlock is a leaf (pushers may hold alloc's arena_lock). gp_lock is taken offline, never
 * with registry_lock held by the same thread except by fork's prepare (which holds the stop, so the
 * reclaimer cannot be waiting for registry_lock while holding gp_lock: it never nests them). */
#include "threads/internal.h"
#include "core/defer.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

static _Atomic(ouro_defer_node *) defer_head;      /* pushed, not yet taken */
static ouro_defer_node *inflight;                   /* the reclaimer's batch (the reclaimer, online) */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER; /* sleep and wake-up of the reclaimer */
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;   /* work arrived / reclaimer should exit */
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER; /* a barrier's node ran */
static pthread_mutex_t gp_lock = PTHREAD_MUTEX_INITIALIZER; /* around ouro's synchronize_rcu() calls */
static pid_t reclaimer_pid;     /* qlock: the process whose reclaimer runs (0: none; the reclaimer
                                 * clears it itself, under qlock, when it leaves an empty queue) */
static pthread_t reclaimer;     /* qlock */
static bool reclaimer_exit;     /* qlock: ouro_fini asks it to leave */
static bool reclaimer_hold;     /* qlock: a fork child rebuilding its state: start no thread yet */
static _Atomic bool reclaimer_missing; /* its start failed (written under qlock): pushes try again */
static __thread bool tls_is_reclaimer;

/* Back-pressure. One reclaimer serves every pusher; were pushers to outrun it (it is starved of CPU, or
 * a fork stalled it), its queue would grow without bound and so would the memory waiting in it. When
 * the reclaimer takes a batch of more than DEFER_CONGESTED nodes it sets `congested` until that batch
 * has run; meanwhile attached threads that reach a slow safepoint (every grace period sends them there)
 * wait for it offline, at most DEFER_THROTTLE_MS each time, so that a callback waiting for a lock such
 * a thread holds delays it and never deadlocks it. */
enum { DEFER_CONGESTED = 1 << 16, DEFER_THROTTLE_MS = 50 };
static _Atomic bool defer_congested;           /* set and cleared by the reclaimer (cleared under qlock) */
static pthread_cond_t congest_cond = PTHREAD_COND_INITIALIZER; /* qlock: congested was cleared */
static _Atomic unsigned long defer_throttled;  /* waits, for the statistics */

/* The C11 edge of a grace period (see the head comment). The caller is offline and holds no lock, or
 * holds registry_lock (the stopper): held says which. */
static void defer_gp_edge(bool held) {
    if (!held) pthread_mutex_lock(&_ouro_registry_lock);
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next)
        (void)atomic_load_explicit(&t->quiescent, memory_order_acquire); /* pairs with _ouro_thread_quiescent */
    if (!held) pthread_mutex_unlock(&_ouro_registry_lock);
}

void _ouro_defer_synchronize(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    bool online = me && me->offline_depth == 0 && atomic_load_explicit(&me->state, memory_order_relaxed) == OURO_TS_ONLINE;
    if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&gp_lock);
    synchronize_rcu();
    pthread_mutex_unlock(&gp_lock);
    defer_gp_edge(_ouro_tls_holds_stop);
    if (online) _ouro_thread_come_online(me);
}

/* Runs the batch in `inflight`, one callback at a time, with a safepoint after each. */
static void defer_run_batch(void) {
    while (inflight) {
        ouro_defer_node *n = inflight;
        inflight = n->next; /* before fn: fn may free the node */
        n->fn(n->arg);
        ouro_safepoint();
    }
}

/* Attaches the reclaimer. Out of memory for its record it waits and tries again (a warning once): the
 * queued work must not be stranded, and memory comes back when other threads free theirs. */
static void defer_attach(void) {
    _ouro_tls_attach_internal = true;
    for (unsigned tries = 0; ouro_thread_attach() != 0; tries++) {
        if (tries == 0) _ouro_warn("the reclaimer thread cannot attach (%s); retrying", ouro_err_message());
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    ouro_thread_set_name("ouro-reclaim");
}

/* Leaves for good when the queue is still empty once the thread has detached (its detach's exit hooks
 * may defer: its heap's emptied object pools). Returns false when work arrived meanwhile: the thread
 * attaches again and goes on. Deciding under qlock closes the gap: a push that finds the queue empty
 * after this takes qlock and, seeing no reclaimer, starts one. */
static bool defer_leave(void) {
    ouro_thread_detach();
    pthread_mutex_lock(&qlock);
    bool empty = ouro_load_relaxed(&defer_head) == NULL;
    if (empty) reclaimer_pid = 0;
    pthread_mutex_unlock(&qlock);
    if (!empty) defer_attach();
    return empty;
}

static void *defer_reclaimer(void *arg) {
    (void)arg;
    tls_is_reclaimer = true;
    defer_attach();
    for (;;) {
        ouro_thread_t *me = _ouro_tls_thread;
        if (!ouro_load_relaxed(&defer_head)) {
            _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
            pthread_mutex_lock(&qlock);
            while (!ouro_load_relaxed(&defer_head) && !reclaimer_exit) pthread_cond_wait(&qcond, &qlock);
            bool leave = reclaimer_exit && !ouro_load_relaxed(&defer_head);
            pthread_mutex_unlock(&qlock);
            _ouro_thread_come_online(me);
            if (leave && defer_leave()) return NULL;
            continue;
        }
        /* Online, no safepoint until inflight holds the batch: a stop sees either both or neither. */
        ouro_defer_node *stack = atomic_exchange_explicit(&defer_head, NULL, memory_order_acquire); /* pairs with the push CAS */
        ouro_defer_node *fifo = NULL;
        size_t count = 0;
        for (; stack; count++) { /* reverse: callbacks run in push order (barriers rely on it) */
            ouro_defer_node *next = stack->next;
            stack->next = fifo;
            fifo = stack;
            stack = next;
        }
        inflight = fifo;
        if (count > DEFER_CONGESTED) atomic_store_explicit(&defer_congested, true, memory_order_relaxed);
        _ouro_defer_synchronize();
        defer_run_batch();
        if (atomic_load_explicit(&defer_congested, memory_order_relaxed)) {
            pthread_mutex_lock(&qlock);
            atomic_store_explicit(&defer_congested, false, memory_order_relaxed);
            pthread_cond_broadcast(&congest_cond);
            pthread_mutex_unlock(&qlock);
        }
    }
}

/* Starts the reclaimer of this process if it has none (qlock held). */
static void defer_start_locked(void) {
    if (reclaimer_pid == getpid() || reclaimer_hold) return;
    _ouro_runtime_init(); /* fork handlers: the reclaimer's state must be reset in a child */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    reclaimer_exit = false;
    int rc = _ouro_sys_thread_create(&reclaimer, &attr, defer_reclaimer, NULL);
    bool started = rc == 0;
    if (started) reclaimer_pid = getpid();
    else if (rc != EINTR && !atomic_load_explicit(&reclaimer_missing, memory_order_relaxed)) /* EINTR: a fork */
        _ouro_warn("cannot start the reclaimer thread; the next deferral or a waiting barrier tries again");
    atomic_store_explicit(&reclaimer_missing, !started, memory_order_relaxed);
    pthread_attr_destroy(&attr);
}

void _ouro_defer_push(ouro_defer_node *node) {
    OURO_ASSERT(node && node->fn);
    ouro_defer_node *old = ouro_load_relaxed(&defer_head);
    do node->next = old;
    while (!atomic_compare_exchange_weak_explicit(&defer_head, &old, node, memory_order_release, memory_order_relaxed));
    /* The reclaimer may be asleep (it sleeps only on an empty stack), or missing (its start failed). */
    if (old == NULL || atomic_load_explicit(&reclaimer_missing, memory_order_relaxed)) {
        pthread_mutex_lock(&qlock);
        defer_start_locked();
        pthread_cond_signal(&qcond);
        pthread_mutex_unlock(&qlock);
    }
}

/* ---- public API --------------------------------------------------------------------------------------- */

typedef struct {
    ouro_defer_node node;
    void (*fn)(void *);
    void *arg;
} defer_call;

static void defer_call_run(void *arg) {
    defer_call *c = arg;
    void (*fn)(void *) = c->fn;
    void *a = c->arg;
    free(c);
    fn(a);
}

int ouro_defer(void (*fn)(void *arg), void *arg) {
    if (!fn) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_defer: fn is NULL");
        return -1;
    }
    defer_call *c = _ouro_sys_malloc(sizeof *c);
    if (!c) {
        _ouro_err_set(OURO_ERR_NOMEM, "ouro_defer: out of memory");
        return -1;
    }
    c->fn = fn;
    c->arg = arg;
    c->node.fn = defer_call_run;
    c->node.arg = c;
    _ouro_defer_push(&c->node);
    return 0;
}

typedef struct {
    ouro_defer_node node;
    bool done; /* qlock */
} defer_barrier_t;

static void defer_barrier_run(void *arg) {
    defer_barrier_t *b = arg;
    pthread_mutex_lock(&qlock);
    b->done = true;
    pthread_cond_broadcast(&done_cond);
    pthread_mutex_unlock(&qlock);
}

/* true when the calling thread cannot wait for callbacks (it would wait for itself). */
static bool defer_cannot_wait(const char *fn) {
    if (tls_is_reclaimer || _ouro_tls_holds_stop) {
        _ouro_err_set(OURO_ERR_STATE, "%s: called %s", fn, tls_is_reclaimer ? "from a deferred callback" : "while holding a stop of the world");
        return true;
    }
    return false;
}

int ouro_defer_barrier(void) {
    if (defer_cannot_wait("ouro_defer_barrier")) return -1;
    defer_barrier_t b = {.node = {.fn = defer_barrier_run, .arg = &b}, .done = false};
    _ouro_defer_push(&b.node); /* runs after every node pushed before it */
    ouro_thread_t *me = _ouro_tls_thread;
    bool online = me && me->offline_depth == 0;
    if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&qlock);
    while (!b.done) {
        if (atomic_load_explicit(&reclaimer_missing, memory_order_relaxed)) { /* try again every 10 ms */
            defer_start_locked();
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 10 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&done_cond, &qlock, &until);
        } else {
            pthread_cond_wait(&done_cond, &qlock);
        }
    }
    pthread_mutex_unlock(&qlock);
    if (online) _ouro_thread_come_online(me);
    return 0;
}

int ouro_synchronize(void) {
    if (defer_cannot_wait("ouro_synchronize")) return -1;
    _ouro_defer_synchronize();
    return 0;
}

/* ouro_fini: the reclaimer runs what is queued, then leaves (a later push starts another). */
void _ouro_defer_shutdown(void) {
    pthread_mutex_lock(&qlock);
    if (ouro_load_relaxed(&defer_head) && atomic_load_explicit(&reclaimer_missing, memory_order_relaxed))
        defer_start_locked(); /* its start failed: what is queued must still run before fini returns */
    bool running = reclaimer_pid == getpid();
    pthread_t t = reclaimer;
    reclaimer_exit = true;
    pthread_cond_signal(&qcond);
    pthread_mutex_unlock(&qlock);
    if (!running) return;
    ouro_thread_t *me = _ouro_tls_thread;
    bool online = me && me->offline_depth == 0;
    if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_join(t, NULL); /* it cleared reclaimer_pid itself; a push since may have started another */
    if (online) _ouro_thread_come_online(me);
}

bool _ouro_defer_on_reclaimer(void) { return tls_is_reclaimer; }

void _ouro_defer_throttle(ouro_thread_t *me) {
    if (!atomic_load_explicit(&defer_congested, memory_order_relaxed) || tls_is_reclaimer || me->stopper ||
        _ouro_tls_holds_stop)
        return;
    atomic_fetch_add_explicit(&defer_throttled, 1, memory_order_relaxed);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += DEFER_THROTTLE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&qlock);
    while (atomic_load_explicit(&defer_congested, memory_order_relaxed))
        if (pthread_cond_timedwait(&congest_cond, &qlock, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&qlock);
    _ouro_thread_come_online(me);
}

unsigned long _ouro_defer_throttled(void) { return atomic_load_explicit(&defer_throttled, memory_order_relaxed); }

/* ---- fork ------------------------------------------------------------------------------------------------ */

/* Prepare (the world is stopped, the caller is offline in liburcu): no ouro synchronize_rcu() may be in
 * flight across the fork, since liburcu's grace-period lock would stay held in the child. qlock is not
 * taken: it is a leaf under alloc's arena_lock, whose handler runs after this one. A thread that holds it
 * at fork only wakes the reclaimer or marks a barrier done; the child re-creates it and resets every
 * field it guards. */
void _ouro_defer_before_fork(void) {
    pthread_mutex_lock(&gp_lock);
}

void _ouro_defer_after_fork_parent(void) { pthread_mutex_unlock(&gp_lock); }

void _ouro_defer_child_reset(void) {
    /* The child's only thread: the reclaimer is gone; its batch (whole: it was stopped) waits for a grace
     * period again, ahead of what was pushed meanwhile. Waiting barriers' threads are gone too: their
     * nodes live on stacks the child's new threads will reuse, so they leave the queue. */
    pthread_mutex_init(&qlock, NULL);
    pthread_mutex_init(&gp_lock, NULL);
    pthread_cond_init(&qcond, NULL);
    pthread_cond_init(&done_cond, NULL);
    pthread_cond_init(&congest_cond, NULL);
    atomic_store_explicit(&defer_congested, false, memory_order_relaxed); /* its batch waits again */
    reclaimer_pid = 0;
    reclaimer_exit = false;
    reclaimer_hold = true;
    atomic_store_explicit(&reclaimer_missing, false, memory_order_relaxed);
    ouro_defer_node *older = NULL; /* the inflight batch, reversed: it goes below what the stack holds */
    for (ouro_defer_node *n = inflight, *next; n; n = next) {
        next = n->next;
        n->next = older;
        older = n;
    }
    inflight = NULL;
    ouro_defer_node **link = (ouro_defer_node **)&defer_head; /* the child's only thread: plain access */
    while (*link) link = &(*link)->next;
    *link = older;
    for (link = (ouro_defer_node **)&defer_head; *link;) {
        if ((*link)->fn == defer_barrier_run) *link = (*link)->next;
        else link = &(*link)->next;
    }
}

void _ouro_defer_child_resume(void) {
    pthread_mutex_lock(&qlock);
    reclaimer_hold = false;
    if (ouro_load_relaxed(&defer_head)) defer_start_locked();
    pthread_mutex_unlock(&qlock);
}

bool _ouro_defer_child_queued(const ouro_defer_node *node) {
    for (ouro_defer_node *n = ouro_load_relaxed(&defer_head); n; n = n->next)
        if (n == node) return true;
    return false;
}
