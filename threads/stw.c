/* threads/stw.c — safepoints, parking and stop-the-world on liburcu QSBR.
 *
 * The stop protocol (docs/threads.md has the argument):
 *   stopper:  takes stw_lock (offline while it waits for it) and registry_lock (no attach/detach
 *             during the stop); stores stop_requested = 1; calls synchronize_rcu(), which moves the
 *             grace-period counter so that every online thread's safepoint falls into its slow path;
 *             then waits until every other registered thread is PARKED or OFFLINE (acquire).
 *   mutator:  at a safepoint whose compare fails, reports a quiescent state, then loads the flag; when
 *             set it goes offline and parks until the flag is cleared.
 *   online:   a thread coming online stores ONLINE, comes online in liburcu, then loads the flag;
 *             when set it goes offline again and parks.
 *   start:    the stopper clears the flag under park_lock and wakes the parked threads.
 * A watchdog thread prints, every stop_warn_ms while a stop waits, the threads not yet stopped. */
#include "threads/internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

_Atomic int _ouro_stop_requested;

static pthread_mutex_t stw_lock = PTHREAD_MUTEX_INITIALIZER; /* one stop at a time */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;    /* parked threads wait for the start */
static pthread_cond_t stopped_cond; /* the stopper waits for parked threads (timed: monotonic clock) */

/* The watchdog: a thread that wakes every quarter of stop_warn_ms and, while a stop is armed for
 * longer than stop_warn_ms, reports once per stop_warn_ms. Arming and disarming take watch_lock but
 * wake nobody: a stop pays two uncontended lock round trips, not two thread wake-ups. The watchdog
 * reports under watch_lock while the stop is armed, so the registry it walks is the stopper's. */
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cond; /* never signalled: a timed sleep (monotonic clock) */
static pthread_once_t stw_once = PTHREAD_ONCE_INIT;

/* The timed condition variables measure the monotonic clock, like their deadlines. */
static void stw_init(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&stopped_cond, &attr);
    pthread_cond_init(&watch_cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* A thread that never attached and exits holding a stop would leave the world stopped for good: this
 * key's destructor (set while such a thread holds a stop) warns and starts it. Attached threads are
 * handled by their detach at exit (threads/thread.c). */
static pthread_key_t stopper_key;

static void stw_stopper_exit(void *arg) {
    (void)arg;
    if (!_ouro_tls_holds_stop) return;
    _ouro_warn("thread %d exits holding a stop of the world; starting it", (int)syscall(SYS_gettid));
    ouro_start_the_world();
}

static void stw_once_init(void) {
    stw_init();
    if (pthread_key_create(&stopper_key, stw_stopper_exit) != 0) _ouro_fatal("pthread_key_create failed");
}

void _ouro_stw_init(void) { pthread_once(&stw_once, stw_once_init); }
static struct {
    bool started;       /* this process has a watchdog (reset in a fork child) */
    bool armed;         /* a stop is waiting for threads */
    uint64_t seq;       /* the stop armed last */
    const char *reason;
    struct timespec since;
} watch;                /* watch_lock */

static struct timespec stw_deadline(unsigned ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Prints the registered threads that are still online (registry stable: the stopper holds its lock
 * and stays armed while we hold watch_lock). */
static void stw_report_laggards(const char *reason, double waited_s) {
    char line[160];
    int n = 0;
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next) {
        if (t->stopper || ouro_load_acquire(&t->state) != OURO_TS_ONLINE) continue;
        snprintf(line, sizeof line, "thread %d%s%s%s has not reached a safepoint", (int)t->os_tid,
                 t->name[0] ? " (" : "", t->name, t->name[0] ? ")" : "");
        _ouro_warn("stop '%s' waiting %.1f s: %s", reason, waited_s, line);
        n++;
    }
    if (n == 0) _ouro_warn("stop '%s' waiting %.1f s: threads are parking", reason, waited_s);
}

static void *stw_watchdog(void *arg) {
    uint64_t seq = 0;      /* the stop reported on last */
    unsigned reported = 0; /* reports made for it */
    pthread_mutex_lock(&watch_lock);
    for (;;) {
        unsigned warn_ms = _ouro_stop_warn_ms;
        struct timespec deadline = stw_deadline(warn_ms / 4 ? warn_ms / 4 : 1);
        while (pthread_cond_timedwait(&watch_cond, &watch_lock, &deadline) != ETIMEDOUT) {
        }
        if (!watch.armed) continue;
        if (watch.seq != seq) {
            seq = watch.seq;
            reported = 0;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - watch.since.tv_sec) + (now.tv_nsec - watch.since.tv_nsec) * 1e-9;
        if (waited * 1000.0 >= (double)warn_ms * (reported + 1)) {
            stw_report_laggards(watch.reason, waited);
            reported++;
        }
    }
    return NULL;
}

static void stw_watch(bool arm, const char *reason) {
    pthread_mutex_lock(&watch_lock);
    if (arm && !watch.started) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        watch.started = _ouro_sys_thread_create(&t, &attr, stw_watchdog, NULL) == 0; /* else the next stop tries again */
        pthread_attr_destroy(&attr);
    }
    watch.armed = arm;
    if (arm) {
        watch.seq++;
        watch.reason = reason;
        clock_gettime(CLOCK_MONOTONIC, &watch.since);
    }
    pthread_mutex_unlock(&watch_lock);
}

/* ---- thread side ------------------------------------------------------------------------------------ */

/* Parks the calling thread (already offline in liburcu) until no stop is requested. */
static void stw_park(ouro_thread_t *me) {
    pthread_mutex_lock(&park_lock);
    ouro_store_release(&me->state, OURO_TS_PARKED); /* pairs with the stopper's acquire in stw_all_stopped() */
    pthread_cond_broadcast(&stopped_cond);
    while (ouro_load_acquire(&_ouro_stop_requested)) pthread_cond_wait(&park_cond, &park_lock);
    pthread_mutex_unlock(&park_lock);
}

void _ouro_thread_come_online(ouro_thread_t *me) {
    for (;;) {
        /* Online in liburcu first, then the flag: if the load finds no stop, the stopper's flag store
         * (seq_cst) follows it, and so does the start of the stopper's grace period; that grace period
         * then waits for this thread (online with an older counter), whose next safepoint takes the
         * slow path and sees the flag. Were the flag loaded first, the thread could come online after
         * the grace period began, with the new counter, and poll fast until some later grace period. */
        atomic_store(&me->state, OURO_TS_ONLINE); /* seq_cst: pairs with the stopper's state loads */
        rcu_thread_online();                       /* reads the grace-period counter, then a full fence */
        if (me->stopper || !atomic_load(&_ouro_stop_requested)) break;
        _ouro_thread_go_offline(me, OURO_TS_PARKED);
        stw_park(me);
    }
    if (atomic_load_explicit(&me->waking, memory_order_relaxed))
        atomic_store(&me->waking, false); /* seq_cst: after the flag load that found no stop */
}

void _ouro_thread_go_offline(ouro_thread_t *me, int state) {
    _ouro_thread_quiescent(me);
    rcu_thread_offline();
    atomic_store(&me->state, state); /* seq_cst: also releases the thread's writes to the stopper */
    if (atomic_load(&_ouro_stop_requested)) { /* a stopper may be waiting for us */
        pthread_mutex_lock(&park_lock);
        pthread_cond_broadcast(&stopped_cond);
        pthread_mutex_unlock(&park_lock);
    }
}

static size_t (*_Atomic poll_hook)(void);

void _ouro_thread_set_poll_hook(size_t (*fn)(void)) { ouro_store_release(&poll_hook, fn); }

/* The inline safepoint's words (ouro/threads.h). `seen` is set only here, to the thread's liburcu
 * reader counter right after it reported a quiescent state (it then equals the grace-period counter),
 * and reset to 0 when the thread leaves. Why comparing with it is exact: liburcu sets a reader's counter
 * to the current grace-period counter whenever it reports or comes online, and to 0 offline, and the
 * grace-period counter only grows; so while the thread is online, seen <= its reader counter <= the
 * grace-period counter. seen == the counter means no grace period waits for the thread; seen != the
 * counter sends it to the slow path (at worst once more than needed, after it came online). 0 is never
 * current (liburcu's counter is odd), so an unattached thread always takes the slow path, which
 * returns at once. */
unsigned long *ouro_safepoint_gp_ = &urcu_qsbr_gp.ctr;
__thread unsigned long ouro_safepoint_seen_;

void ouro_safepoint_slow(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!me || me->offline_depth > 0) return; /* not attached, or offline: nothing to report */
    _ouro_thread_quiescent(me);
    rcu_quiescent_state();
    /* The flag was stored before the grace period that sent us here began: we see it. */
    if (!me->stopper && atomic_load(&_ouro_stop_requested)) {
        _ouro_thread_go_offline(me, OURO_TS_PARKED);
        stw_park(me);
        _ouro_thread_come_online(me);
    }
    _ouro_defer_throttle(me);
    ouro_safepoint_seen_ = URCU_TLS(urcu_qsbr_reader).ctr; /* online: what it last reported */
    size_t (*hook)(void) = ouro_load_acquire(&poll_hook); /* pairs with the release in the setter */
    if (hook) hook();
}

/* ---- stopper side ----------------------------------------------------------------------------------- */

enum { STW_SPIN_NS = 50000 };

static uint64_t stw_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* true when every registered thread but the stopper is parked or offline (the registry is stable: the
 * stopper holds registry_lock; the states are atomics). */
static bool stw_all_stopped(void) {
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next) {
        if (t->stopper) continue;
        /* seq_cst (acquire): pairs with the thread's state stores */
        if (atomic_load(&t->state) == OURO_TS_ONLINE) return false;
    }
    return true;
}

__thread bool _ouro_tls_holds_stop OURO_TLS_FAST;

/* No starvation (finding F1 of the stop model, docs/threads.md "Model checking"; CPython's gh-151518).
 * A thread released from a park comes online by taking park_lock to leave its wait, storing ONLINE,
 * coming online in liburcu, then loading the stop flag; were the next stop's flag stored before that
 * load, the thread would park again, and back-to-back stops could keep it from ever running. So the
 * start marks every thread on its way online `waking` (ouro_start_the_world), the thread clears it past
 * its flag check (_ouro_thread_come_online), and a stopper, before it stores the flag, waits until no
 * thread is waking: with the flag still 0 such a thread passes the check and runs until its next
 * safepoint. (Marking at the thread's own wake-up is too late: the next stopper can store the flag
 * before the woken thread gets park_lock back; the model found that too.) The wait needs no lock of the stopper's
 * (a waking thread takes only park_lock, to leave its condition wait), and ends: every waking thread is
 * runnable and the flag it will read is 0 (seq_cst: the stopper's load of `waking` false follows the
 * thread's flag load, which so precedes the stopper's flag store). Registry stable: registry_lock held. */
static void stw_wait_for_waking(void) {
    for (unsigned spins = 0;; spins++) {
        bool any = false;
        for (ouro_thread_t *t = _ouro_registry; t && !any; t = t->next) any = !t->stopper && atomic_load(&t->waking);
        if (!any) return;
        if (spins < 64) sched_yield();
        else {
            struct timespec pause = {0, 50 * 1000};
            nanosleep(&pause, NULL);
        }
    }
}

/* Takes the stop for the calling thread (me: its record, NULL when not attached). An online caller waits
 * for stw_lock and registry_lock offline (the stopper ahead of it waits for it to park; an attach may
 * hold registry_lock while a grace period waits for online threads) and holds the stop online; an
 * offline caller stays offline. Returns with every other attached thread parked or offline. */
static void stw_stop(ouro_thread_t *me, const char *reason) {
    _ouro_runtime_init();
    bool online = me && me->offline_depth == 0;
    if (online) _ouro_thread_go_offline(me, OURO_TS_OFFLINE);
    pthread_mutex_lock(&stw_lock);
    if (me) me->stopper = true;
    /* Offline until registry_lock is ours too: its holder may be an attaching thread waiting inside
     * rcu_register_thread() for liburcu's registry lock, which a grace period in flight holds while
     * it waits for online threads. */
    pthread_mutex_lock(&_ouro_registry_lock);
    if (online) _ouro_thread_come_online(me); /* no stop can be pending: we hold stw_lock */
    stw_wait_for_waking(); /* the threads the last start released come online first */
    atomic_store(&_ouro_stop_requested, 1); /* seq_cst: pairs with the threads' state stores */
    stw_watch(true, reason ? reason : "(no reason)");
    synchronize_rcu(); /* every online thread passes a safepoint: it sees the flag */
    /* Threads that passed their safepoint are parking now: yield for up to STW_SPIN_NS (a sleeping
     * stopper costs a wake-up of 5-40 us; a PAUSE-only spin would hold a CPU a parking thread needs),
     * then sleep on stopped_cond, which parking threads broadcast under park_lock. */
    uint64_t spin_start = stw_now_ns();
    while (!stw_all_stopped()) {
        if (stw_now_ns() - spin_start < STW_SPIN_NS) {
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&park_lock);
        if (!stw_all_stopped()) {
            struct timespec deadline = stw_deadline(1);
            pthread_cond_timedwait(&stopped_cond, &park_lock, &deadline);
        }
        pthread_mutex_unlock(&park_lock);
    }
    stw_watch(false, NULL);
    _ouro_tls_holds_stop = true;
    if (!me) pthread_setspecific(stopper_key, (void *)1); /* its exit starts the world (stw_stopper_exit) */
}

int ouro_stop_the_world(const char *reason) {
    if (_ouro_tls_holds_stop) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_stop_the_world: this thread already holds a stop");
        return -1;
    }
    stw_stop(_ouro_tls_thread, reason);
    return 0;
}

int ouro_start_the_world(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (!_ouro_tls_holds_stop) {
        _ouro_err_set(OURO_ERR_STATE, "ouro_start_the_world: this thread holds no stop");
        return -1;
    }
    pthread_mutex_lock(&park_lock);
    /* The threads on their way online are released: each is `waking` until it is past its flag check,
     * and the next stopper waits for that (stw_wait_for_waking). Those are the parked ones and the ones
     * whose state reads ONLINE during the stop (no thread runs online code then: it is between storing
     * ONLINE and finding the flag set, or between finding it set and storing PARKED; the model showed a
     * thread that is always there when the world starts). Marked under park_lock, before the flag is
     * cleared: a parked thread leaves its wait only after both. */
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next)
        if (t != me && atomic_load(&t->state) != OURO_TS_OFFLINE) atomic_store(&t->waking, true);
    ouro_store_release(&_ouro_stop_requested, 0); /* pairs with the acquire in stw_park() */
    pthread_cond_broadcast(&park_cond);
    pthread_mutex_unlock(&park_lock);
    pthread_mutex_unlock(&_ouro_registry_lock);
    if (me) me->stopper = false;
    else pthread_setspecific(stopper_key, NULL);
    _ouro_tls_holds_stop = false;
    pthread_mutex_unlock(&stw_lock);
    return 0;
}

/* ---- fork ------------------------------------------------------------------------------------------------ */

bool _ouro_stw_stop_for_fork(void) {
    bool stopped = !_ouro_tls_holds_stop; /* else the caller's own stop spans the fork */
    if (stopped) stw_stop(_ouro_tls_thread, "fork");
    /* Threads that stored OFFLINE may still be about to take park_lock to wake us, and the watchdog
     * may be printing: no lock of ours may be held by a thread that the child will not have. */
    pthread_mutex_lock(&park_lock);
    pthread_mutex_lock(&watch_lock);
    return stopped;
}

static void stw_after_fork_child(void) {
    /* The parked threads, the watchdog and their condition-variable waits are gone. */
    pthread_cond_init(&park_cond, NULL);
    stw_init();
    watch.armed = false;
    watch.started = false;
}

void _ouro_stw_start_after_fork(bool child, bool stopped) {
    pthread_mutex_unlock(&watch_lock);
    pthread_mutex_unlock(&park_lock);
    if (child) stw_after_fork_child();
    if (stopped) ouro_start_the_world();
}
