/* threads/fork.c — fork() with attached threads (pthread_atfork).
 *
 * Like CPython's free-threaded build, ouro stops the world around fork(): every other attached thread is
 * parked at a safepoint (its heap consistent) or offline (touching nothing of ouro's) when the process is
 * copied. Prepare, in order: stop the world; leave liburcu's online set (the caller's own grace-period
 * waiters must finish); pause liburcu's call_rcu threads (call_rcu_before_fork); wait for ouro's grace
 * period in flight (defer gp_lock); take the stop protocol's leaf locks. Alloc's prepare handler, which
 * was registered earlier, runs after ours and takes the allocator's locks.
 * In the child, with the allocator's locks already released by its child handler: the reclaimer is
 * reset and held (no thread starts until the state is rebuilt), every vanished thread's liburcu reader
 * is unlinked from liburcu's registry (else a grace period would wait for it forever), its heap is
 * abandoned (other threads adopt the pools), and its record is freed; only the forking thread remains
 * attached (if it was). Then the parking lot is reset, the world is started, the modules' child hooks
 * run (_ouro_fork_child_hook_add: core's and gc's state), and last the reclaimer may start. Threads
 * registered with liburcu-qsbr by the application itself must be offline at
 * fork (liburcu-qsbr has no fork support of its own). */
#include "threads/internal.h"
#include "alloc/internal.h"

#include <stdlib.h>
#include <unistd.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

static __thread bool fork_stopped;  /* prepare stopped the world (not the caller's own stop) */
static __thread bool fork_was_online; /* the caller was online in liburcu at prepare */

static void fork_prepare(void) {
    fork_stopped = _ouro_stw_stop_for_fork();
    ouro_thread_t *me = _ouro_tls_thread;
    fork_was_online = me && me->offline_depth == 0;
    if (fork_was_online) rcu_thread_offline();
    call_rcu_before_fork();
    _ouro_defer_before_fork();
}

static void fork_parent(void) {
    _ouro_defer_after_fork_parent();
    call_rcu_after_fork_parent();
    if (fork_was_online) rcu_thread_online();
    _ouro_stw_start_after_fork(false, fork_stopped);
}

/* The child's only thread rebuilds ouro's state before anything can run on another thread: the
 * reclaimer is held first (abandoning a heap may defer its emptied pools, and a thread started now
 * would run on state still being rebuilt and could get a vanished thread's cached stack whose liburcu
 * reader is still linked), every vanished reader leaves liburcu's registry before anything else
 * happens, then heaps are abandoned and records freed, then the world restarts (its leaf locks are
 * released), the modules' child hooks run, and last the reclaimer may start. */
static void fork_child(void) {
    ouro_thread_t *me = _ouro_tls_thread;
    if (me) me->os_tid = getpid(); /* the child's one thread (its tid is its pid): diagnostics name it */
    _ouro_defer_child_reset();
    /* registry_lock is held by the stop (ours or the caller's): the registry is ours to edit. */
    for (ouro_thread_t *t = _ouro_registry; t; t = t->next)
        if (t != me) cds_list_del(&t->urcu_reader->node);
    for (ouro_thread_t *t = _ouro_registry, *next; t; t = next) {
        next = t->next;
        if (t == me) continue;
        _ouro_alloc_abandon_vanished(t->heap);
        if (t->prev) t->prev->next = t->next; else _ouro_registry = t->next;
        if (t->next) t->next->prev = t->prev;
        free(t);
    }
    _ouro_threads_after_fork_child(me ? 1 : 0);
    _ouro_lock_after_fork_child();
    call_rcu_after_fork_child();
    if (fork_was_online) rcu_thread_online();
    _ouro_stw_start_after_fork(true, fork_stopped); /* releases the stop's leaf locks the hooks may take */
    _ouro_fork_run_child_hooks();
    _ouro_defer_child_resume();
}

/* Called once by the runtime's start (not a constructor: a static library would drop this object). After
 * alloc's registration, so that our prepare handler runs before its one and our child handler after. */
void _ouro_fork_init(void) {
    _ouro_alloc_global_init();
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0) _ouro_fatal("pthread_atfork failed");
}
