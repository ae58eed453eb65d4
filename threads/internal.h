/* threads/internal.h — the thread registry and the stop protocol's shared state.
 *
 * Thread states (docs/threads.md has the diagram). Written by the thread itself, read by the stopper:
 *   ONLINE   may touch the heap; must reach safepoints;
 *   OFFLINE  inside an offline section (or attaching/detaching): touches nothing of ouro's;
 *   PARKED   stopped at a safepoint (or on its way online) while the world is stopped.
 * Every store of a state is seq_cst and pairs with the stopper's seq_cst loads (a thread that comes
 * online stores ONLINE then loads the stop flag; the stopper stores the flag then loads the states);
 * a store of OFFLINE or PARKED also releases what the thread wrote before to the stopper's acquire.
 *
 * Lock order (docs/threads.md): object locks -> stw_lock -> registry_lock -> liburcu's locks;
 * registry_lock -> park_lock; defer gp_lock -> liburcu's locks; the leaves: park_lock, watch_lock, the
 * defer queue's lock, parking-lot buckets, alloc's heap_lock and arena_lock. No internal lock is held
 * across a safepoint, and no thread blocks on one while online unless it is the stopper or the lock is
 * a leaf held only briefly by threads that never wait for a stop while holding it. */
#ifndef OURO_THREADS_INTERNAL_H
#define OURO_THREADS_INTERNAL_H
#ifndef OURO_BUILD_CORE
#error "threads/internal.h is internal to libouro"
#endif

#include "core/atomic.h"
#include "core/debug.h"
#include "core/defer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

enum { OURO_TS_ONLINE = 1, OURO_TS_OFFLINE = 2, OURO_TS_PARKED = 3 };

struct urcu_qsbr_reader;
struct ouro_heap_s;

typedef struct ouro_thread_s ouro_thread_t;
struct ouro_thread_s {
    _Atomic int state;          /* OURO_TS_*: the thread writes, the stopper and watchdog read */
    _Atomic bool waking;        /* released from a park, not yet past its flag check: the next stopper
                                 * lets it come online first (threads/stw.c, "no starvation") */
    _Atomic uint64_t quiescent; /* bumped (release) at each quiescent state: the TSan-visible edge of a
                                 * grace period (threads/defer.c) */
    struct urcu_qsbr_reader *urcu_reader; /* the thread's liburcu reader (fork: unlinked in the child) */
    struct ouro_heap_s *heap;   /* the thread's heap (fork: abandoned in the child) */
    int offline_depth;          /* nested offline sections (the thread only) */
    bool stopper;               /* holds the stop (the thread only) */
    bool internal;              /* ouro's own thread (the reclaimer): ouro_fini does not wait for it */
    pid_t os_tid;               /* for diagnostics */
    char name[32];              /* for diagnostics (the thread writes under registry_lock) */
    ouro_thread_t *next, *prev; /* the registry (registry_lock) */
};

OURO_INTERNAL extern __thread ouro_thread_t *_ouro_tls_thread OURO_TLS_FAST;
/* Set by ouro's own threads (the reclaimer) before they attach: their record is published as internal
 * (ouro_fini does not count it), never seen half made. */
OURO_INTERNAL extern __thread bool _ouro_tls_attach_internal OURO_TLS_FAST;
OURO_INTERNAL extern pthread_mutex_t _ouro_registry_lock;
OURO_INTERNAL extern ouro_thread_t *_ouro_registry;
OURO_INTERNAL extern _Atomic unsigned _ouro_stop_warn_ms;

/* thread.c */
/* Reports a quiescent state to ouro's grace-period edge (before liburcu's): see threads/defer.c. */
static inline void _ouro_thread_quiescent(ouro_thread_t *me) {
    atomic_fetch_add_explicit(&me->quiescent, 1, memory_order_release); /* pairs with defer_gp_edge() */
}

/* Starts the runtime (once): environment tunables, the thread-exit key, the stop protocol, fork
 * handlers. Every entry point that can create state of threads/ calls it first. */
OURO_INTERNAL void _ouro_runtime_init(void);

/* Exit hooks: run online, in ascending order, when an attached thread detaches or exits (before it
 * leaves the registry). Modules register theirs once, at their start-up; at most 8. Returns 0, or -1
 * (OURO_ERR_INVALID: fn NULL; OURO_ERR_STATE: table full). A hook must not poll a safepoint once it has started tearing down state a fork or a stop could see
 * half done (the heap hook relies on this). */
enum {
    OURO_EXIT_ORDER_REFCOUNT = 20, /* core/: merge the objects the thread owns, drain its queue */
    OURO_EXIT_ORDER_GC = 30,       /* gc/: hand the thread's young objects to the collector (after the
                                      refcount hook, whose frees may make objects) */
    OURO_EXIT_ORDER_HEAP = 100,    /* alloc/: abandon the heap to the arena (last) */
};
OURO_INTERNAL int _ouro_thread_exit_hook_add(int order, void (*fn)(void));

/* fork() child hooks: run by threads/fork.c's child handler, in ascending order, on the child's only
 * thread, once the threads module has rebuilt its own state (the registry holds only the forking
 * thread; vanished threads' heaps are abandoned; liburcu and the parking lot are reset) and before any
 * thread is started (the reclaimer starts after them). A hook re-creates the locks a vanished thread
 * may have held and forgets the vanished threads. Modules register theirs once, at their start-up. */
enum {
    OURO_FORK_ORDER_WEAKREF = 10,  /* core/weakref.c: its bucket mutexes (frees below clear weakrefs) */
    OURO_FORK_ORDER_GC = 15,       /* gc/: its locks, the scan's helper, a collection that vanished */
    OURO_FORK_ORDER_REFCOUNT = 20, /* core/object.c: merges the vanished threads' objects (may free) */
};
OURO_INTERNAL int _ouro_fork_child_hook_add(int order, void (*fn)(void));
OURO_INTERNAL void _ouro_fork_run_child_hooks(void);

/* A function the safepoint slow path calls last, online, outside any lock (core/ merges the objects
 * queued to the thread there). Set once at start-up. */
OURO_INTERNAL void _ouro_thread_set_poll_hook(size_t (*fn)(void));

/* fork.c: registers the fork handlers (from _ouro_runtime_init). */
OURO_INTERNAL void _ouro_fork_init(void);

/* fork() child: the registry holds only the forking thread (attached or not). */
OURO_INTERNAL void _ouro_threads_after_fork_child(size_t attached);

/* stw.c */
OURO_INTERNAL extern _Atomic int _ouro_stop_requested;
/* The calling thread holds the stop of the world (attached or not). */
OURO_INTERNAL extern __thread bool _ouro_tls_holds_stop OURO_TLS_FAST;
/* Initialises the stop protocol's condition variables (once; before any thread can park). */
OURO_INTERNAL void _ouro_stw_init(void);
/* Sets state ONLINE and comes online in liburcu; parks first while a stop is pending. */
OURO_INTERNAL void _ouro_thread_come_online(ouro_thread_t *me);
/* Goes offline in liburcu and stores state (OFFLINE or PARKED); wakes a waiting stopper. */
OURO_INTERNAL void _ouro_thread_go_offline(ouro_thread_t *me, int state);
/* fork()'s prepare handler: stops the world (the caller may be attached online, attached offline, or
 * not attached; when it holds a stop already, that one spans the fork and false is returned), then
 * takes the stop protocol's leaf locks. */
OURO_INTERNAL bool _ouro_stw_stop_for_fork(void);
/* Parent and child: releases the leaf locks (the child also resets the condition variables and the
 * watchdog, whose waiters are gone) and starts the world when stopped says the prepare stopped it. */
OURO_INTERNAL void _ouro_stw_start_after_fork(bool child, bool stopped);

/* Set by a successful ouro_fini, cleared by ouro_init and ouro_thread_attach: debug builds catch a
 * decref in between (core/object.c). */
OURO_INTERNAL extern _Atomic bool _ouro_runtime_finished;

/* defer.c */
/* Waits for a grace period; the caller (attached or not) is offline while it waits. */
OURO_INTERNAL void _ouro_defer_synchronize(void);
/* fork(): the reclaimer's lock and batch (prepare, parent, child). */
OURO_INTERNAL void _ouro_defer_before_fork(void);
OURO_INTERNAL void _ouro_defer_after_fork_parent(void);
/* ouro_fini: runs what is queued and stops the reclaimer thread. */
OURO_INTERNAL void _ouro_defer_shutdown(void);
/* true on the reclaimer thread (inside a deferred callback). */
OURO_INTERNAL bool _ouro_defer_on_reclaimer(void);
/* A slow safepoint's back-pressure: while the reclaimer works through an oversized batch, an attached
 * thread (me, online, not the stopper) waits for it offline, for a bounded time (threads/defer.c). */
OURO_INTERNAL void _ouro_defer_throttle(ouro_thread_t *me);
/* How many times threads waited in _ouro_defer_throttle (tests, statistics). */
OURO_INTERNAL unsigned long _ouro_defer_throttled(void);
/* fork() child: before anything else, resets the reclaimer's state and holds its start (pushes queue
 * work without starting a thread); the batch in flight goes back in front of the queue, and barrier
 * nodes (on vanished threads' stacks: no thread of the child is waiting in a barrier) are dropped. */
OURO_INTERNAL void _ouro_defer_child_reset(void);
/* fork() child, last: starts the reclaimer when work is queued. */
OURO_INTERNAL void _ouro_defer_child_resume(void);
/* fork() child: true when node is queued (the carried-over queue), for modules that keep a node's
 * "pending" flag. */
OURO_INTERNAL bool _ouro_defer_child_queued(const ouro_defer_node *node);

/* lock.c: fork() child: resets the parking lot (its waiters are gone). */
OURO_INTERNAL void _ouro_lock_after_fork_child(void);
/* Debug builds: fatal, naming `what` ("thread 12 detaches") and a lock, when the calling thread still
 * holds an object lock (threads/lock.c). */
OURO_INTERNAL void _ouro_lock_debug_check_released(const char *what);

#endif /* OURO_THREADS_INTERNAL_H */
